//! Floods: one address opening thousands of connections must not take the
//! places every other client needs.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::time::Duration;

use acceptance::{Options, System, NO_RATE_LIMITS};
use security::{connect_from, post_from, tried};
use serde_json::json;

#[test]
fn two_thousand_connections_from_one_address_leave_room_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { gateway_listen: "connections_per_ip_max = 64".into(), gateway_limits: NO_RATE_LIMITS.into(), ..Options::default() };
    let system = System::start_with(dir.path(), &options);
    let flooder = IpAddr::from([127, 0, 0, 2]);

    tried("2,000 connections from one address, all held open");
    let mut held = Vec::new();
    for _ in 0..2_000 {
        // The kernel completes the handshake before the gateway decides, so every connect succeeds.
        held.push(connect_from(flooder, system.port).unwrap());
    }
    // Those over the cap were closed by the gateway: a request on them gets no answer.
    let mut served = 0;
    for stream in &mut held {
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut head = [0u8; 12];
        if stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200") {
            served += 1;
            // Failing here, at once, beats waiting on the connections a broken cap leaves in the backlog.
            assert!(served <= 64, "more than the address's cap of 64 connections are served");
        }
    }
    assert_eq!(served, 64, "the address's cap, no more, were kept");

    tried("a request from another address while the flood holds its connections");
    let other = post_from(IpAddr::from([127, 0, 0, 3]), system.port, "", "{ markets { id } }", json!({}));
    assert_eq!(other["data"]["markets"], json!([]), "{other}");
    let (_, _, metrics) = system.get("/metrics");
    let refused: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("marionette_gateway_connections_refused_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no refused-connections counter: {metrics}"));
    assert!(refused >= 2_000 - 64, "{refused} refused");
    drop(held);
    system.stop();
}
