//! The daemons speak systemd's notify protocol as their `Type=notify` units
//! expect: STATUS while starting, READY once they serve, watchdog heartbeats
//! from the engine loop while idle, STOPPING on SIGTERM. A Unix datagram
//! socket stands in for systemd's (`NOTIFY_SOCKET`); the booted-Debian test
//! shows the same with systemd itself.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn binary(name: &str) -> PathBuf {
    std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `daemon` with a 400 ms watchdog and collects its notifications
/// until `until` has been seen in them (or 20 s pass).
fn notifications_until(daemon: &mut Child, socket: &UnixDatagram, until: &str, log: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buffer = [0u8; 4096];
    let said = || std::fs::read_to_string(log).unwrap_or_default();
    while Instant::now() < deadline && !seen.iter().any(|m: &String| m.contains(until)) {
        // Checked before reading: a daemon that stops right after STOPPING=1
        // has exited by now on a loaded machine, its datagrams still queued.
        let exited = daemon.try_wait().unwrap().is_some();
        match socket.recv(&mut buffer) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buffer[..n]).into_owned()),
            Err(_) if exited => panic!("the daemon exited before {until}; notifications: {seen:?}; it logged:\n{}", said()),
            Err(_) => {}
        }
    }
    assert!(seen.iter().any(|m| m.contains(until)), "no {until} within 20 s: {seen:?}; it logged:\n{}", said());
    seen
}

fn check(name: &str, config: &Path, dir: &Path) {
    let socket_path = dir.join(format!("{name}-notify.sock"));
    let log = dir.join(format!("{name}.log"));
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut daemon = Command::new(binary(name))
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let starting = notifications_until(&mut daemon, &socket, "READY=1", &log);
    assert!(starting.first().is_some_and(|m| m.starts_with("STATUS=")), "{name}: a status line before READY: {starting:?}");
    assert!(starting.last().unwrap().contains("STATUS=serving"), "{name}: READY says where it serves: {starting:?}");

    // Idle, the engine loop keeps beating at half the watchdog interval.
    let started = Instant::now();
    let mut beats = 0;
    let mut buffer = [0u8; 4096];
    while started.elapsed() < Duration::from_millis(1_500) {
        if let Ok(n) = socket.recv(&mut buffer) {
            beats += usize::from(&buffer[..n] == b"WATCHDOG=1\n");
        }
    }
    assert!((4..=10).contains(&beats), "{name}: {beats} heartbeats in 1.5 s with a 400 ms watchdog");

    assert!(Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap().success());
    let stopping = notifications_until(&mut daemon, &socket, "STOPPING=1", &log);
    assert!(!stopping.iter().any(|m| m.contains("READY=1")), "{stopping:?}");
    assert!(daemon.wait().unwrap().success(), "{name} stops cleanly on SIGTERM");
}

#[test]
fn the_gateway_says_ready_beats_from_its_runtime_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let gateway = dir.path().join("gateway.toml");
    // The ledger is not running: the gateway serves (and says so) while it
    // reconnects, since systemd orders the start-up, not the gateway.
    std::fs::write(
        &gateway,
        format!(
            "[listen]\naddress = \"127.0.0.1:{}\"\nmetrics_address = \"127.0.0.1:{}\"\n[ledger]\naddress = \"unix:{d}/ledger.sock\"\n\
             [matching]\naddress = \"unix:{d}/matching.sock\"\n[admin]\nsocket = \"{d}/gateway-admin.sock\"\n[auth]\nkeys_dir = \"{d}/keys\"\n\
             [storage]\ndata_dir = \"{d}/db\"\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    check("marionette-gateway", &gateway, dir.path());
}

#[test]
fn matching_and_ledger_say_ready_beat_from_the_engine_and_say_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let matching = dir.path().join("matching.toml");
    std::fs::write(
        &matching,
        format!("[listen]\naddress = \"unix:{d}/matching.sock\"\nmetrics_address = \"127.0.0.1:{}\"\n[storage]\ndata_dir = \"{d}/matching\"\n", free_port()),
    )
    .unwrap();
    let ledger = dir.path().join("ledger.toml");
    std::fs::write(
        &ledger,
        format!(
            "[listen]\naddress = \"unix:{d}/ledger.sock\"\nmetrics_address = \"127.0.0.1:{}\"\n[matching]\naddress = \"unix:{d}/matching.sock\"\n[storage]\ndata_dir = \"{d}/ledger\"\n",
            free_port()
        ),
    )
    .unwrap();
    check("marionette-matching", &matching, dir.path());
    check("marionette-ledger", &ledger, dir.path());
}
