//! Source addresses: which local addresses connections bind to, so a large run does not run out
//! of ephemeral ports.
//!
//! Two limits per (source, destination) pair: the hard one is the port range (less a margin for
//! sockets of earlier runs in TIME_WAIT). The comfortable one is a quarter of it: Linux searches
//! for a free port by probing (even ports first), and once a pair holds more than roughly a third
//! of the range each connect() spends milliseconds of system time probing, which stalled a
//! 50,000-connection ramp in testing. Extra loopback addresses cost nothing, so loopback runs stay
//! under the comfortable limit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use thiserror::Error;

use crate::target::Target;

/// Linux's default ephemeral port range size, used when the real one cannot be read.
const DEFAULT_PORT_RANGE: u32 = 28_232;

/// Why the connections cannot all get a port.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SourceError {
    #[error(
        "{busiest} connections to one address need {needed} source addresses \
         (about {ports} ports each); --source-ips gives {given}"
    )]
    TooFew {
        busiest: u32,
        needed: u32,
        ports: u32,
        given: usize,
    },
    #[error(
        "{busiest} connections to one address need {needed} source addresses \
         (about {ports} ports each): pass --source-ips"
    )]
    Needed {
        busiest: u32,
        needed: u32,
        ports: u32,
    },
}

/// Explicit `--source-ips` when given (checked to be enough); otherwise none when one source
/// address is comfortable, or 127.0.0.1..=127.0.0.N for a loopback target.
pub fn choose(
    targets: &[Target],
    conns: u32,
    explicit: Vec<IpAddr>,
) -> Result<Vec<IpAddr>, SourceError> {
    choose_in(targets, conns, explicit, port_range())
}

/// `choose` for an ephemeral port range of `range` ports.
fn choose_in(
    targets: &[Target],
    conns: u32,
    explicit: Vec<IpAddr>,
    range: u32,
) -> Result<Vec<IpAddr>, SourceError> {
    // Connections per destination address (URLs may share one).
    let mut per_dest: Vec<(SocketAddr, u32)> = Vec::new();
    for i in 0..targets.len().min(conns as usize) {
        let n = (conns - i as u32).div_ceil(targets.len() as u32);
        match per_dest.iter_mut().find(|(a, _)| *a == targets[i].addr) {
            Some((_, c)) => *c += n,
            None => per_dest.push((targets[i].addr, n)),
        }
    }
    let busiest = per_dest.iter().map(|(_, c)| *c).max().unwrap_or(0);
    let hard = range * 9 / 10;
    let needed = busiest.div_ceil(hard).max(1);
    if !explicit.is_empty() {
        if (explicit.len() as u32) < needed {
            return Err(SourceError::TooFew {
                busiest,
                needed,
                ports: hard,
                given: explicit.len(),
            });
        }
        return Ok(explicit);
    }
    let all_v4_loopback = targets
        .iter()
        .all(|t| matches!(t.addr.ip(), IpAddr::V4(ip) if ip.is_loopback()));
    if all_v4_loopback {
        let comfortable = busiest.div_ceil(range / 4).max(1);
        return Ok(match comfortable {
            1 => Vec::new(),
            n => (1..=n.min(254))
                .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n as u8)))
                .collect(),
        });
    }
    if needed > 1 {
        return Err(SourceError::Needed {
            busiest,
            needed,
            ports: hard,
        });
    }
    Ok(Vec::new())
}

/// The size of this machine's ephemeral port range.
fn port_range() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u32>().ok());
            Some(it.next()??.abs_diff(it.next()??) + 1)
        })
        .unwrap_or(DEFAULT_PORT_RANGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn loopback_runs_stay_under_a_quarter_of_the_range_per_address() {
        let t = [target("ws://127.0.0.1:9998/echo")];
        assert!(choose_in(&t, 1000, Vec::new(), 28_232).unwrap().is_empty());
        let ips = choose_in(&t, 50_000, Vec::new(), 28_232).unwrap();
        // A quarter of the range is 7,058 ports: 50,000 connections need 8 addresses.
        assert_eq!(ips.len(), 8);
        assert_eq!(ips[0], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(ips[7], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 8)));
    }

    #[test]
    fn explicit_addresses_must_cover_the_hard_limit() {
        let t = [target("ws://127.0.0.1:9998/echo")];
        let one = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        assert_eq!(choose_in(&t, 20_000, one.clone(), 28_232), Ok(one.clone()));
        let err = choose_in(&t, 60_000, one, 28_232).unwrap_err();
        assert_eq!(
            err,
            SourceError::TooFew {
                busiest: 60_000,
                needed: 3,
                ports: 25_408,
                given: 1
            }
        );
    }

    #[test]
    fn a_remote_target_beyond_one_address_asks_for_source_ips() {
        let t = [target("ws://10.1.2.3:9998/echo")];
        assert!(choose_in(&t, 20_000, Vec::new(), 28_232)
            .unwrap()
            .is_empty());
        let err = choose_in(&t, 30_000, Vec::new(), 28_232).unwrap_err();
        assert!(err.to_string().ends_with("pass --source-ips"), "{err}");
    }

    #[test]
    fn urls_sharing_an_address_share_its_ports() {
        let t = [
            target("ws://10.1.2.3:9998/a"),
            target("ws://10.1.2.3:9998/b"),
        ];
        assert!(choose_in(&t, 30_000, Vec::new(), 28_232).is_err());
        let apart = [
            target("ws://10.1.2.3:9998/a"),
            target("ws://10.1.2.4:9998/b"),
        ];
        assert!(choose_in(&apart, 30_000, Vec::new(), 28_232).is_ok());
    }
}
