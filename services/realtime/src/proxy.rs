//! Which peers may name the client in `X-Forwarded-For`. Behind a proxy (nginx, an
//! ingress) every connection comes from the proxy's address, so a per-IP limit would
//! count the proxy; a proxy named in `CHAT_TRUSTED_PROXIES` is believed about who it
//! forwards for. Nobody else is: a client that sends the header itself changes nothing.

use std::net::IpAddr;
use std::str::FromStr;

/// An address or a CIDR block: `10.0.0.0/8`, `127.0.0.1`, `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<IpNet, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is not an IP address or CIDR block (10.0.0.0/8, ::1)");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { net, prefix })
    }
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The trusted proxies: `CHAT_TRUSTED_PROXIES`, comma-separated; empty trusts nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies(Vec<IpNet>);

impl FromStr for Proxies {
    type Err = String;

    fn from_str(s: &str) -> Result<Proxies, String> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Proxies)
    }
}

impl Proxies {
    /// Whether `peer` is a trusted proxy (whose own address is never the client).
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.iter().any(|n| n.contains(peer))
    }

    /// The client behind `peer`: the peer itself, unless it is a trusted proxy; then
    /// the right-most address of `X-Forwarded-For` (`forwarded`, the header's values
    /// in order) that is not a trusted proxy. Entries left of that one were written by
    /// the client and are never read; an unreadable entry stops the walk at the last
    /// proxy passed.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        client_ip(peer, forwarded, &self.0)
    }
}

fn client_ip<'a>(
    peer: IpAddr,
    forwarded: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.into_iter().flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            return client;
        };
        client = ip.to_canonical();
        if !is_trusted(client) {
            return client;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_what_their_prefix_covers() {
        let n: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains(ip("10.1.200.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(n.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped peers count");
        assert!(!n.contains(ip("::1")));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("192.0.2.1")));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "nowhere",
            "10.0.0.0/x",
            "1.2.3/8",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lists_parse_and_an_empty_one_trusts_nobody() {
        assert_eq!("".parse::<Proxies>(), Ok(Proxies::default()));
        assert_eq!(
            " 10.0.0.0/8, ::1 ,".parse::<Proxies>().map(|p| p.0.len()),
            Ok(2)
        );
        assert!("10.0.0.0/8,bad".parse::<Proxies>().is_err());
    }

    #[test]
    fn only_a_trusted_peer_names_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        // Not through a trusted proxy: the header is the client's own words.
        assert_eq!(
            client_ip(ip("203.0.113.7"), ["1.1.1.1"], &trusted),
            ip("203.0.113.7")
        );
        // Through one proxy.
        assert_eq!(
            client_ip(ip("10.0.0.5"), ["198.51.100.2"], &trusted),
            ip("198.51.100.2")
        );
        // The client prepended a lie; two proxies appended what they saw.
        assert_eq!(
            client_ip(
                ip("10.0.0.5"),
                ["6.6.6.6, 198.51.100.2", "10.0.0.9"],
                &trusted
            ),
            ip("198.51.100.2")
        );
        // No header, or garbage where the proxy's entry should be: the proxy itself.
        assert_eq!(client_ip(ip("10.0.0.5"), [], &trusted), ip("10.0.0.5"));
        assert_eq!(
            client_ip(ip("10.0.0.5"), ["198.51.100.2, junk"], &trusted),
            ip("10.0.0.5")
        );
        // Nothing trusted: every header is ignored.
        assert_eq!(
            client_ip(ip("10.0.0.5"), ["198.51.100.2"], &[]),
            ip("10.0.0.5")
        );
    }
}
