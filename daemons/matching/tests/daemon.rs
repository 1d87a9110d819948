//! The real `marionette-matching` binary on a temporary directory, driven over
//! its Unix socket: exactly-once across kill -9, snapshot + replay state
//! hashes, torn tails, corruption, and bad input.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use link::{CertifiedRole, LinkTls};
use matching::client::{MatchingClient, Welcome};
use matching::config::{Address, MatchingConfig};
use matching::metrics::Metrics;
use matching::service::EngineService;
use matching_core::*;
use wire::{Message, Role};

struct Daemon {
    child: Child,
    dir: PathBuf,
    metrics_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn socket(dir: &Path) -> Address {
    Address::Unix(dir.join("matching.sock"))
}

fn write_config(dir: &Path, metrics_port: u16, extra: &str) -> PathBuf {
    let path = dir.join("matching.toml");
    let listen = extra.split("||").next().unwrap_or("");
    let address = if listen.contains("address") { String::new() } else { format!("address = \"unix:{}\"\n", dir.join("matching.sock").display()) };
    let text = format!(
        "[listen]\n{address}metrics_address = \"127.0.0.1:{metrics_port}\"\n{listen}\n[storage]\ndata_dir = \"{}\"\n{}\n[engine]\n{}\n[log]\nformat = \"text\"\n",
        dir.join("data").display(),
        extra.split("||").nth(1).unwrap_or(""),
        extra.split("||").nth(2).unwrap_or(""),
    );
    std::fs::write(&path, text).unwrap();
    path
}

impl Daemon {
    /// `extra`: lines for [listen], then `||`, lines for [storage], `||`, lines for [engine].
    fn start(dir: &Path, extra: &str) -> Daemon {
        let metrics_port = free_port();
        let config = write_config(dir, metrics_port, extra);
        // A socket file left by a killed run would pass for this one's below.
        let _ = std::fs::remove_file(dir.join("matching.sock"));
        let over_tcp = extra.contains("address = \"tcp:");
        let child = Process::new(env!("CARGO_BIN_EXE_marionette-matching"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("SHOW_DAEMON_LOG").is_some() { Stdio::inherit() } else { Stdio::piped() })
            .spawn()
            .unwrap();
        let daemon = Daemon { child, dir: dir.into(), metrics_port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // The metrics port is bound after the peer socket, so this means both are up. The socket
            // file is checked too: another test's daemon may have taken the port this one was given.
            if (over_tcp || dir.join("matching.sock").exists()) && std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_ok() {
                return daemon;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not become ready");
    }

    fn client(&self, peer: u32, outputs_applied: u64) -> (MatchingClient, Welcome) {
        MatchingClient::connect(&socket(&self.dir), peer, Role::Test, outputs_applied, true).unwrap()
    }

    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stop(mut self) {
        // SAFETY: kill(2) on our own child process, by its pid; it touches no memory of ours.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "SIGTERM must stop the daemon cleanly: {status}");
    }

    fn wait_for_metric(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.metrics().lines().any(|l| l == line) {
            assert!(Instant::now() < deadline, "metric never reached {line:?}:\n{}", self.metrics());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn metrics(&self) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }
}

/// A failing test must not leave its daemon running.
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

fn market() -> Command {
    Command::AddMarket(MarketSpec {
        id: 1,
        quote_units_per_tick_lot: 1,
        tick_lot_scale: 0,
        maker_fee_ppm: 1_000,
        taker_fee_ppm: 2_000,
        price_ticks_max: 1_000_000,
        quantity_lots_max: 1_000_000,
        price_band_ppm: 0,
    })
}

fn limit(order_id: u64, user: u64, side: Side, price: u64, quantity: u64) -> Command {
    Command::Place(NewOrder {
        market: 1,
        order_id,
        user,
        side,
        kind: OrderKind::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price: Some(price),
        quantity,
        self_trade: SelfTradePrevention::CancelTaker,
    })
}

/// The next output: (output sequence, peer sequence, events).
fn next_output(client: &mut MatchingClient) -> (u64, u64, Vec<Event>) {
    match client.recv().unwrap() {
        wire::Frame { sequence, message: Message::Events { peer_sequence, events, .. } } => (sequence, peer_sequence, events),
        other => panic!("expected Events, got {other:?}"),
    }
}

fn journal_segments(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("journal-"))
        .collect();
    segments.sort();
    segments
}

#[test]
fn acknowledged_orders_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "");
    let (mut client, welcome) = daemon.client(1, 0);
    assert_eq!(welcome, Welcome { commands_applied: 0, outputs_last: 0 });
    client.send_command(1, &market()).unwrap();
    client.send_command(2, &limit(10, 100, Side::Sell, 50, 4)).unwrap();
    client.send_command(3, &limit(11, 200, Side::Buy, 55, 3)).unwrap();
    assert_eq!(next_output(&mut client).2, vec![Event::MarketAdded { market: 1 }]);
    assert_eq!(next_output(&mut client).0, 2);
    let (sequence, peer_sequence, events) = next_output(&mut client);
    assert_eq!((sequence, peer_sequence), (3, 3));
    let fill = events.iter().find_map(|e| if let Event::Fill(f) = e { Some(*f) } else { None }).expect("the orders cross");
    assert_eq!((fill.price, fill.quantity, fill.notional, fill.maker_fee, fill.taker_fee), (50, 3, 150, 1, 1));
    // The book after the fill, read by another peer that does not subscribe: 1 lot left at 50.
    let (mut reader, _) = MatchingClient::connect(&socket(dir.path()), 9, Role::Gateway, 0, false).unwrap();
    reader.send(7, &Message::DepthQuery { market: 1, levels: 10 }).unwrap();
    let answer = reader.recv().unwrap();
    assert_eq!(answer.sequence, 7);
    let Message::Depth(Some(depth)) = answer.message else { panic!("{answer:?}") };
    assert_eq!((depth.output_last, depth.bids.len()), (3, 0));
    assert_eq!(depth.asks, vec![PriceLevel { price: 50, quantity: 1, orders: 1 }]);
    reader.send(8, &Message::DepthQuery { market: 99, levels: 10 }).unwrap();
    assert_eq!(reader.recv().unwrap().message, Message::Depth(None));
    let metrics = daemon.metrics();
    assert!(metrics.contains("marionette_matching_commands_total 3"), "{metrics}");
    assert!(metrics.contains("marionette_matching_fills_total 1"), "{metrics}");
    daemon.kill_9();

    let daemon = Daemon::start(dir.path(), "");
    // The client says it applied only output 2: the daemon replays 3, identical.
    let (mut client, welcome) = daemon.client(1, 2);
    assert_eq!(welcome, Welcome { commands_applied: 3, outputs_last: 3 });
    assert_eq!(next_output(&mut client), (3, 3, events));
    // Resending an applied command changes nothing; the next new one is output 4.
    client.send_command(3, &limit(11, 200, Side::Buy, 55, 3)).unwrap();
    client.send_command(4, &Command::Cancel { market: 1, order_id: 10, user: 100 }).unwrap();
    let (sequence, peer_sequence, events) = next_output(&mut client);
    assert_eq!((sequence, peer_sequence), (4, 4));
    assert_eq!(events, vec![Event::Cancelled { market: 1, order_id: 10, user: 100, side: Side::Sell, remaining: 1, reason: CancelReason::User }]);
    assert!(daemon.metrics().contains("marionette_matching_duplicate_commands_total 1"));
    // A gap is refused with a code.
    client.send_command(6, &Command::Cancel { market: 1, order_id: 11, user: 200 }).unwrap();
    let error = client.recv().unwrap_err().to_string();
    assert!(error.contains("skipped ahead"), "{error}");
    daemon.stop();
}

#[test]
fn a_closed_log_pipe_does_not_stop_the_daemon_from_serving_or_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), "");
    drop(daemon.child.stderr.take()); // the log reader goes away
    let (mut client, _) = daemon.client(1, 0); // logs "peer connected" into the closed pipe
    client.send_command(1, &market()).unwrap();
    assert_eq!(next_output(&mut client).2, vec![Event::MarketAdded { market: 1 }]);
    daemon.stop(); // logs "stopping" into the closed pipe, and must still exit cleanly
}

#[test]
fn tcp_transport_and_a_pinned_engine_thread() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cpu = std::thread::available_parallelism().unwrap().get() - 1;
    // TCP links are mutual TLS: the site's CA, matching's certificate, and the peers'.
    let ca = dir.path().join("pki");
    link::pki::init(&ca, "Test Bank").unwrap();
    let issue = |role| link::pki::issue(&ca, role, &["127.0.0.1".into()], &ca).unwrap();
    let tls_of = |issued: link::pki::Issued| link::LinkConfig {
        ca_file: ca.join(link::pki::CA_CERTIFICATE),
        certificate_file: issued.certificate_file,
        private_key_file: issued.private_key_file,
        ..link::LinkConfig::default()
    };
    let own = tls_of(issue(CertifiedRole::Matching));
    let section = format!(
        "[link]\nca_file = \"{}\"\ncertificate_file = \"{}\"\nprivate_key_file = \"{}\"\n",
        own.ca_file.display(),
        own.certificate_file.display(),
        own.private_key_file.display()
    );
    let daemon = Daemon::start(dir.path(), &format!("address = \"tcp:127.0.0.1:{port}\"||{section}||cpu = {cpu}\nidle = \"yield\""));
    let address = Address::Tcp(format!("127.0.0.1:{port}"));
    assert!(MatchingClient::connect(&address, 1, Role::Test, 0, true).is_err(), "plain TCP is refused");
    // A gateway's certificate reads depth; it neither subscribes nor sends orders.
    let gateway = LinkTls::load(&tls_of(issue(CertifiedRole::Gateway))).unwrap().unwrap();
    let refused = MatchingClient::connect_tls(&address, Some(&gateway), CertifiedRole::Matching, 9, Role::Gateway, 0, true).err().expect("subscribe");
    assert!(refused.to_string().contains("may not subscribe"), "{refused}");
    let (mut reader, _) = MatchingClient::connect_tls(&address, Some(&gateway), CertifiedRole::Matching, 9, Role::Gateway, 0, false).unwrap();
    reader.send_command(1, &market()).unwrap();
    let refused = reader.recv().expect_err("a gateway's order is refused");
    assert!(refused.to_string().contains("may not send orders"), "{refused}");
    let test = LinkTls::load(&tls_of(issue(CertifiedRole::Test))).unwrap().unwrap();
    let (mut client, _) = MatchingClient::connect_tls(&address, Some(&test), CertifiedRole::Matching, 1, Role::Test, 0, true).unwrap();
    client.send_command(1, &market()).unwrap();
    assert_eq!(next_output(&mut client).2, vec![Event::MarketAdded { market: 1 }]);
    // The engine thread, and only it, is pinned to the configured CPU.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", daemon.child.id())).unwrap();
    let mut engine_cpus = None;
    let mut other_threads_on_engine_cpu = Vec::new();
    let mut io_workers = 0;
    for task in tasks {
        let task = task.unwrap().path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap();
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let allowed = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")).unwrap().split(':').nth(1).unwrap().trim().to_string();
        if name.trim().starts_with("iou-wrk") {
            io_workers += 1;
        }
        if name.trim() == "engine" {
            engine_cpus = Some(allowed);
        } else if allowed.split(',').any(|range| range == cpu.to_string()) && cpu > 0 {
            // io_uring's workers (iou-wrk-*) run the fdatasync: they must stay off the engine's CPU.
            other_threads_on_engine_cpu.push(format!("{} ({allowed})", name.trim()));
        }
    }
    assert_eq!(engine_cpus, Some(cpu.to_string()));
    assert_eq!(other_threads_on_engine_cpu, Vec::<String>::new(), "only the engine thread may run on its CPU");
    assert!(io_workers > 0, "the journal's fdatasync runs on an io_uring worker, which must exist by now");
    daemon.stop();
}

/// A deterministic stream over a few users and prices, so that orders cross.
fn stream(count: u64) -> Vec<Command> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut commands = vec![market()];
    for i in 0..count {
        let order_id = 1 + next(300);
        let user = 1 + next(8);
        let side = if next(2) == 0 { Side::Buy } else { Side::Sell };
        commands.push(match next(12) {
            0..=5 => limit(order_id.max(i), user, side, 95 + next(11), 1 + next(9)),
            6..=7 => Command::Cancel { market: 1, order_id, user },
            8..=9 => Command::Amend { market: 1, order_id, user, price: 95 + next(11), quantity: 1 + next(9) },
            // Stops and OCO lists, so that snapshots hold armed ones and
            // linked ones, and replays fire and end them.
            _ => {
                let Command::Place(order) = limit(order_id.max(i), user, side, 95 + next(11), 1 + next(9)) else { unreachable!("a place") };
                let direction = if next(2) == 0 { TriggerDirection::AtOrAbove } else { TriggerDirection::AtOrBelow };
                let trigger = Trigger { source: TriggerSource::LastTrade, direction, price: 95 + next(11) };
                if next(2) == 0 {
                    Command::PlaceStop(ArmedStop { order, trigger })
                } else {
                    let limit = NewOrder { order_id: 1_000 + order.order_id, post_only: true, price: Some(95 + next(11)), ..order };
                    Command::PlaceOco(OcoList { limit, stop_order_id: order.order_id, stop_kind: OrderKind::Limit, stop_price: order.price, trigger })
                }
            }
        });
    }
    commands
}

#[test]
fn snapshot_plus_journal_replay_reaches_the_same_state_hash() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "||snapshot_every_commands = 37");
    let (mut client, _) = daemon.client(1, 0);
    let commands = stream(600);
    let mut expected = FastEngine::new(MatchingConfig::default().engine_limits());
    let mut events = Vec::new();
    // Rounds of 50, each answered before the next, so that there are many group commits.
    for (round, chunk) in commands.chunks(50).enumerate() {
        for (i, command) in chunk.iter().enumerate() {
            client.queue_command((round * 50 + i) as u64 + 1, command);
        }
        client.flush().unwrap();
        for (i, command) in chunk.iter().enumerate() {
            events.clear();
            expected.execute(command, &mut events);
            let (sequence, _, published) = next_output(&mut client);
            assert_eq!(sequence, (round * 50 + i) as u64 + 1);
            assert_eq!(published, events, "the daemon published different events for command {}", sequence);
        }
    }
    daemon.stop();

    let snapshots =
        std::fs::read_dir(dir.path().join("data")).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("snapshot-")).count();
    assert_eq!(snapshots, 2, "the newest two snapshots are kept");
    assert!(journal_segments(dir.path()).len() <= 3, "segments covered by older snapshots are removed");

    let mut config = MatchingConfig::default();
    config.storage.data_dir = dir.path().join("data");
    let (service, report) = EngineService::recover(&config, std::sync::Arc::new(Metrics::new())).unwrap();
    assert!(report.snapshot_sequence >= 500, "recovery starts from a snapshot, not from scratch: {report:?}");
    assert!(report.replayed_commands <= 101, "and replays only the journal after it: {report:?}");
    assert_eq!(service.engine().state_hash(), expected.state_hash());
    drop(service);

    // A peer that lagged behind the newest snapshot still gets every output it missed.
    let newest_snapshot = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .filter_map(|e| {
            e.unwrap().file_name().to_string_lossy().strip_prefix("snapshot-").and_then(|n| n.strip_suffix(".bin")).and_then(|n| n.parse::<u64>().ok())
        })
        .max()
        .unwrap();
    let daemon = Daemon::start(dir.path(), "");
    let lagging = newest_snapshot - 20;
    let (mut client, welcome) = daemon.client(1, lagging);
    assert_eq!(welcome.outputs_last, commands.len() as u64);
    let mut replay = FastEngine::new(MatchingConfig::default().engine_limits());
    let mut events = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        events.clear();
        replay.execute(command, &mut events);
        if i as u64 + 1 > lagging {
            assert_eq!(next_output(&mut client), (i as u64 + 1, i as u64 + 1, events.clone()), "replayed output {}", i + 1);
        }
    }
    daemon.stop();
}

#[test]
fn torn_tail_is_truncated_and_corruption_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "");
    let (mut client, _) = daemon.client(1, 0);
    // One command per group commit: damage in an earlier batch is then
    // provably in synced data (damage in the last batch is a torn write).
    for (i, command) in stream(10).iter().enumerate() {
        client.send_command(i as u64 + 1, command).unwrap();
        next_output(&mut client);
    }
    daemon.stop();
    let segment = journal_segments(dir.path()).pop().unwrap();
    // The records, without the zeros the journal writes ahead of its end.
    let clean = journal::segment_written_bytes(&segment).unwrap();

    // A crash mid-write: half a record at the end.
    let mut torn = clean.clone();
    torn.extend_from_slice(&clean[..30]);
    std::fs::write(&segment, &torn).unwrap();
    let daemon = Daemon::start(dir.path(), "");
    let (_client, welcome) = daemon.client(1, 11);
    assert_eq!(welcome.commands_applied, 11, "everything acknowledged is still there");
    daemon.stop();
    assert_eq!(std::fs::read(&segment).unwrap(), clean, "the torn tail was cut off");

    // Damage inside acknowledged records: refuse to start, say where, touch nothing.
    let mut corrupt = clean.clone();
    corrupt[clean.len() / 2] ^= 0x40;
    std::fs::write(&segment, &corrupt).unwrap();
    let config = write_config(dir.path(), free_port(), "");
    let output = Process::new(env!("CARGO_BIN_EXE_marionette-matching")).arg("--config").arg(&config).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("corrupt at byte"), "{stderr}");
    assert!(stderr.contains(&segment.display().to_string()), "{stderr}");
    assert_eq!(std::fs::read(&segment).unwrap(), corrupt);
}

#[test]
fn bad_input_gets_a_coded_error_and_the_daemon_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "connections_max = 2");
    let raw = |bytes: &[u8]| {
        let mut stream = std::os::unix::net::UnixStream::connect(dir.path().join("matching.sock")).unwrap();
        stream.write_all(bytes).unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        wire::decode_frame(&reply, 1 << 20).unwrap().map(|(f, _)| f.message)
    };
    let garbage = raw(b"GET / HTTP/1.1\r\n\r\n");
    assert!(matches!(garbage, Some(Message::Error { code: wire::ProtocolErrorCode::MalformedFrame, .. })), "{garbage:?}");
    let mut early = Vec::new();
    wire::encode_frame(1, &Message::Command(market()), &mut early);
    assert!(matches!(raw(&early), Some(Message::Error { code: wire::ProtocolErrorCode::HelloExpected, .. })));

    daemon.wait_for_metric("marionette_matching_connections 0");
    let (first, _) = daemon.client(1, 0);
    let (_second, _) = daemon.client(2, 0);
    daemon.wait_for_metric("marionette_matching_connections 2");
    let third = MatchingClient::connect(&socket(dir.path()), 3, Role::Test, 0, true).err().expect("over connections_max");
    assert!(third.to_string().contains("connection limit"), "{third}");
    drop(first);
    daemon.wait_for_metric("marionette_matching_connections 1");
    let (mut client, _) = daemon.client(4, 0);
    client.send_command(1, &market()).unwrap();
    assert_eq!(next_output(&mut client).2, vec![Event::MarketAdded { market: 1 }], "still serving after all that");
    daemon.stop();
}
