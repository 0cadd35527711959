//! Listening sockets: one per worker, all bound to the same address with SO_REUSEPORT so the
//! kernel spreads incoming connections across workers without any shared accept queue.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Opens a non-blocking listener on `addr` with SO_REUSEADDR and SO_REUSEPORT.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// Opens `n` listeners on one address. With port 0 the first picks a free port and the rest
/// join it.
pub fn bind_all(
    addr: SocketAddr,
    n: usize,
    backlog: u32,
) -> io::Result<Vec<mio::net::TcpListener>> {
    let first = bind(addr, backlog)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(bind(actual, backlog)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    #[test]
    fn listeners_share_one_port() {
        let ls = super::bind_all("127.0.0.1:0".parse().unwrap(), 3, 16).unwrap();
        let port = ls[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(ls.iter().all(|l| l.local_addr().unwrap().port() == port));
    }
}
