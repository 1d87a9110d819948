//! Floods: one address opening thousands of connections must not take the
//! places every other client needs.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::time::Duration;

use acceptance::{Daemon, Options, System, NO_RATE_LIMITS};
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
    let metrics = system.metrics(Daemon::Gateway);
    let refused: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("marionette_gateway_connections_refused_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no refused-connections counter: {metrics}"));
    assert!(refused >= 2_000 - 64, "{refused} refused");
    drop(held);
    system.stop();
}

#[test]
fn clients_trickling_their_requests_are_cut_off_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        gateway_listen: "header_read_timeout_seconds = 2\nbody_read_timeout_seconds = 2".into(),
        gateway_limits: NO_RATE_LIMITS.into(),
        ..Options::default()
    };
    let system = System::start_with(dir.path(), &options);
    let (slow, other) = (IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3]));
    // Well under the defaults of 30 s, so that a timeout not taken from config fails too.
    let patience = Duration::from_secs(20);

    tried("slowloris: request headers sent one byte every 200 ms, never finished");
    let mut trickle = connect_from(slow, system.port).unwrap();
    trickle.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = std::time::Instant::now();
    let mut others_served = 0;
    let cut_off = loop {
        // A write fails once the gateway has closed its end (the first after the close draws a reset).
        if trickle.write_all(b"a").is_err() {
            break started.elapsed();
        }
        assert!(started.elapsed() < patience, "the trickling client was never cut off");
        if others_served < 3 {
            let answer = post_from(other, system.port, "", "{ markets { id } }", json!({}));
            assert_eq!(answer["data"]["markets"], json!([]), "another client is served meanwhile: {answer}");
            others_served += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("cut off after {cut_off:?} (header_read_timeout_seconds = 2)");

    tried("a connection opened and never written to");
    let mut silent = connect_from(slow, system.port).unwrap();
    silent.set_read_timeout(Some(patience)).unwrap();
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 64];
    assert!(matches!(silent.read(&mut buffer), Ok(0) | Err(_)), "a silent connection is closed, not answered");
    assert!(started.elapsed() < patience, "a silent connection was held past the timeout");
    eprintln!("silent connection closed after {:?}", started.elapsed());

    tried("a request body of 1,000 bytes announced, 10 sent, then nothing");
    let mut stalled = connect_from(slow, system.port).unwrap();
    stalled.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"query\":").unwrap();
    stalled.set_read_timeout(Some(patience)).unwrap();
    let mut response = String::new();
    let _ = stalled.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 408"), "answered 408 Request Timeout: {response:?}");
    assert!(response.contains("\"code\":\"BAD_REQUEST\"") && response.contains("send it whole"), "{response}");

    // Still serving.
    let answer = post_from(slow, system.port, "", "{ markets { id } }", json!({}));
    assert_eq!(answer["data"]["markets"], json!([]), "{answer}");
    system.stop();
}
