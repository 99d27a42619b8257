//! Trusted proxies: only when the peer is one of `trusted_proxies` (CIDR blocks) is the client
//! address taken from `X-Forwarded-For` (or, without it, RFC 7239 `Forwarded: for=`), walking the
//! chain from the right past trusted hops to the first untrusted one. From any other peer those
//! headers are ignored: a client cannot forge its way out of its rate limit or lockout.

use std::net::IpAddr;

/// A CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parse `ADDR/PREFIX` or a bare address.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be 0..={max}"))?,
        };
        Ok(Self { net, prefix })
    }

    /// True when `ip` is inside the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn strip(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    // "[v6]:port", "[v6]" or "v4:port".
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':')?.0.parse().ok()
}

/// The hops of `X-Forwarded-For`, or of `Forwarded`'s `for=` parameters, left to right; `None`
/// when neither header is there or a hop is not an address.
fn hops(xff: Option<&str>, forwarded: Option<&str>) -> Option<Vec<IpAddr>> {
    if let Some(x) = xff {
        return x.split(',').map(strip).collect();
    }
    let f = forwarded?;
    f.split(',')
        .filter_map(|el| {
            el.split(';').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v)
            })
        })
        .map(strip)
        .collect()
}

/// The client address of a request from `peer`.
pub(crate) fn client(
    peer: IpAddr,
    trusted: &[Cidr],
    xff: Option<&str>,
    forwarded: Option<&str>,
) -> IpAddr {
    if !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let Some(hops) = hops(xff, forwarded) else {
        return peer;
    };
    let mut client = peer;
    for &h in hops.iter().rev() {
        client = h;
        if !trusted.iter().any(|c| c.contains(h)) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.1.2.3")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.9.9.9")), "IPv4-mapped");
        let c = Cidr::parse("fd00::/8").unwrap();
        assert!(c.contains(ip("fd12::1")));
        assert!(!c.contains(ip("fe80::1")));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope/8").is_err());
    }

    #[test]
    fn only_trusted_peers_may_name_the_client() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let proxy = ip("10.0.0.5");
        // From the proxy: the rightmost untrusted hop.
        assert_eq!(
            client(proxy, &trusted, Some("203.0.113.7, 10.0.0.9"), None),
            ip("203.0.113.7")
        );
        // A forged left-most entry does not help: the proxy appended the real one.
        assert_eq!(
            client(proxy, &trusted, Some("1.2.3.4, 198.51.100.2"), None),
            ip("198.51.100.2")
        );
        // From an untrusted peer the header is ignored.
        let stranger = ip("198.51.100.99");
        assert_eq!(client(stranger, &trusted, Some("1.2.3.4"), None), stranger);
        // RFC 7239.
        assert_eq!(
            client(
                proxy,
                &trusted,
                None,
                Some("for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"")
            ),
            ip("2001:db8::1")
        );
        // Garbage: the peer itself.
        assert_eq!(client(proxy, &trusted, Some("not-an-ip"), None), proxy);
        // Every hop trusted: the left-most.
        assert_eq!(
            client(proxy, &trusted, Some("10.1.1.1, 10.2.2.2"), None),
            ip("10.1.1.1")
        );
    }
}
