//! Where connections go: `ws://host[:port][/path]` and `wss://...` URLs parsed and resolved
//! once, up front.
//!
//! Resolution happens while the plan is built so a bad host name is a one-line input error,
//! not a failure counted per connection. A `wss://` target is reached over TLS (`tls`), with
//! the host as the name the certificate must carry.

use std::net::{SocketAddr, ToSocketAddrs};

use thiserror::Error;

/// A parsed and resolved WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as the user wrote it, for reports.
    pub url: String,
    /// The address connections are made to.
    pub addr: SocketAddr,
    /// The `Host` header value (host and port as written).
    pub host: String,
    /// The request target: path and query, at least `/`.
    pub path: String,
    /// `wss://`: connections speak TLS, and the certificate must name `server_name`.
    pub tls: bool,
    /// The host without port or brackets (the TLS server name).
    pub server_name: String,
}

/// Why a `--url` is unusable.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("invalid URL {0:?}: expected ws://host[:port]/path or wss://host[:port]/path")]
    Syntax(String),
    #[error("invalid URL {0:?}: bad port")]
    Port(String),
    #[error("cannot resolve host in {url:?}: {reason}")]
    Resolve { url: String, reason: String },
}

impl Target {
    /// Parses `url` and resolves its host to the first address.
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let syntax = || TargetError::Syntax(url.to_string());
        let (rest, tls) = if let Some(rest) = url.strip_prefix("ws://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (rest, true)
        } else {
            return Err(syntax());
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.is_empty() || authority.contains('@') || path.contains(char::is_whitespace) {
            return Err(syntax());
        }
        let (host, port) = split_host_port(authority).ok_or_else(syntax)?;
        let port: u16 = match port {
            Some(p) => p.parse().map_err(|_| TargetError::Port(url.to_string()))?,
            None if tls => 443,
            None => 80,
        };
        if host.is_empty() {
            return Err(syntax());
        }
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| TargetError::Resolve {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| TargetError::Resolve {
                url: url.to_string(),
                reason: "no addresses".to_string(),
            })?;
        Ok(Target {
            url: url.to_string(),
            addr,
            host: authority.to_string(),
            path,
            tls,
            server_name: host.to_string(),
        })
    }
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]`; the host comes back without brackets.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_default() {
        let t = Target::parse("ws://127.0.0.1:9998/echo").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9998".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:9998");
        assert_eq!(t.path, "/echo");
    }

    #[test]
    fn wss_means_tls_on_port_443_by_default() {
        let t = Target::parse("wss://localhost/echo").unwrap();
        assert!(t.tls);
        assert_eq!((t.addr.port(), t.server_name.as_str()), (443, "localhost"));
        let t = Target::parse("wss://[::1]:9443/").unwrap();
        assert_eq!((t.addr.port(), t.server_name.as_str()), (9443, "::1"));
        assert!(!Target::parse("ws://127.0.0.1/").unwrap().tls);
    }

    #[test]
    fn defaults_port_and_path_and_handles_v6() {
        let t = Target::parse("ws://127.0.0.1").unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (80, "/"));
        let t = Target::parse("ws://[::1]:9/broadcast/a?x=1").unwrap();
        assert_eq!(t.addr, "[::1]:9".parse().unwrap());
        assert_eq!(t.path, "/broadcast/a?x=1");
        assert_eq!(Target::parse("ws://127.0.0.1:1?q").unwrap().path, "/?q");
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(matches!(
            Target::parse("http://x/"),
            Err(TargetError::Syntax(_))
        ));
        assert!(matches!(
            Target::parse("ws://127.0.0.1:99999/"),
            Err(TargetError::Port(_))
        ));
        assert!(matches!(
            Target::parse("ws:///echo"),
            Err(TargetError::Syntax(_))
        ));
        assert!(matches!(
            Target::parse("ws://[::1/echo"),
            Err(TargetError::Syntax(_))
        ));
        assert!(matches!(
            Target::parse("ws://no-such-host.invalid/"),
            Err(TargetError::Resolve { .. })
        ));
    }
}
