//! The client's address behind a reverse proxy. Every limit keyed by
//! address (requests, logins, connections' subscriptions) must see the
//! client, not the proxy; but `X-Forwarded-For` is whatever the sender wrote,
//! so it is believed only from the proxies the operator configured
//! (`listen.trusted_proxies`), and only as far as the chain of trusted hops
//! goes: each proxy appends the address it saw, so the rightmost entry that
//! no trusted proxy wrote is the client.

use std::net::IpAddr;

use ipnet::IpNet;

/// A trusted proxy given as an address (`10.0.0.5`) or a network (`10.0.0.0/24`).
pub fn parse_proxy(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The client's address: the connection's `peer`, or, when the peer is a
/// trusted proxy, the rightmost `X-Forwarded-For` entry (over every such
/// header, in order) that is not a trusted proxy. An entry that is not an
/// address stops the walk at the last trusted hop: a garbled header never
/// lets its sender pick the address it is counted under.
pub fn client_address<'a>(peer: IpAddr, forwarded_for: impl DoubleEndedIterator<Item = &'a str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer;
    if !is_trusted(&client) {
        return client;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|header| header.split(',')).collect();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else { return client };
        client = ip;
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

/// One entry: an address, an IPv6 one possibly in brackets; v4-mapped IPv6 as IPv4.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let hop = hop.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(hop);
    let ip: IpAddr = hop.parse().ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|p| parse_proxy(p).unwrap()).collect()
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy_and_only_as_far_as_trusted_hops_go() {
        let trusted = proxies(&["10.0.0.5", "10.1.0.0/16"]);
        let peer = ip("10.0.0.5");
        assert_eq!(client_address(ip("198.51.100.9"), ["203.0.113.7"].into_iter(), &trusted), ip("198.51.100.9"), "not from a proxy: ignored");
        assert_eq!(client_address(peer, ["203.0.113.7"].into_iter(), &trusted), ip("203.0.113.7"));
        assert_eq!(client_address(peer, std::iter::empty(), &trusted), peer, "a proxy's own request");
        // The client wrote "1.2.3.4" itself; the proxy appended what it saw.
        assert_eq!(client_address(peer, ["1.2.3.4, 203.0.113.7"].into_iter(), &trusted), ip("203.0.113.7"));
        // Two proxies, the inner one trusted by network; two headers read in order.
        assert_eq!(client_address(peer, ["1.2.3.4, 203.0.113.7", "10.1.2.3"].into_iter(), &trusted), ip("203.0.113.7"));
        assert_eq!(client_address(peer, ["[2001:db8::1]", " ::ffff:192.0.2.1 "].into_iter(), &[]), peer, "nothing trusted: the peer");
        assert_eq!(client_address(peer, ["2001:db8::1, ::ffff:192.0.2.1"].into_iter(), &trusted), ip("192.0.2.1"));
        assert_eq!(client_address(peer, ["203.0.113.7, unknown"].into_iter(), &trusted), peer, "garbled: the last trusted hop");
        assert_eq!(parse_proxy("10.0.0.0/33"), None);
        assert_eq!(parse_proxy("proxy.example"), None);
    }

    proptest! {
        #[test]
        fn without_a_trusted_proxy_the_sender_cannot_choose_its_address(peer in any::<IpAddr>(), header in "\\PC{0,80}") {
            prop_assert_eq!(client_address(peer, [header.as_str()].into_iter(), &[]), peer);
        }

        #[test]
        fn what_the_client_wrote_left_of_the_proxy_s_entry_never_counts(
            written in "\\PC{0,60}",
            seen in any::<std::net::Ipv4Addr>().prop_filter("not the proxy", |a| a.octets()[0] != 10),
        ) {
            let trusted = proxies(&["10.0.0.0/8"]);
            let header = format!("{written}, {seen}");
            prop_assert_eq!(client_address(ip("10.0.0.5"), [header.as_str()].into_iter(), &trusted), IpAddr::V4(seen));
        }
    }
}
