//! Three real `marionette-ledger` replicas of one cluster on loopback,
//! over mutual TLS. Formed once with `form-cluster`; only the leader
//! serves peers, and the others turn them away naming it. A peer places
//! orders one after another; the leader is killed with SIGKILL in the
//! middle; the peer follows the hint to the new leader (the time from the
//! kill to the first acknowledgement there is printed), resends what was
//! not acknowledged, and goes on. The killed replica comes back and
//! catches up. Then every acknowledged order is there once, the log's
//! duplicates were skipped, and the three replicas hold the same state,
//! every invariant (conservation included) holding on each.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use common::{market, BTC, USD};
use ledger::replicated::LedgerMachine;
use ledger_api::spot::OrderRequest;
use ledger_api::{operators, spot, wallet, Answer, AssetSpec, Command as LedgerCommand, LedgerError, Outcome, Query, UserId};
use link::{Address, CertifiedRole, Client, LinkTls, NotLeader};
use matching_core::{OrderKind, SelfTradePrevention, Side, TimeInForce};
use products::LedgerLimits;
use wire::{Message, Role};

mod common;

const REPLICAS: u64 = 3;
const USERS: u64 = 8;
const OPERATOR: UserId = 1_000_000;
/// Orders placed in all; the leader dies after `ORDERS / 2`.
const ORDERS: u64 = 240;
const BINARY: &str = env!("CARGO_BIN_EXE_marionette-ledger");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

struct Node {
    id: u64,
    dir: PathBuf,
    config: PathBuf,
    ledger_port: u16,
    metrics_port: u16,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        assert!(self.child.is_none());
        let child = Process::new(BINARY)
            .arg("--config")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("SHOW_DAEMON_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).is_err() {
            assert!(Instant::now() < deadline, "replica {} did not start", self.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill_9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child process, by its pid; it touches no memory of ours.
        unsafe { libc_kill(child.id() as i32, 15) };
        let status = child.wait().unwrap();
        assert!(status.success(), "SIGTERM must stop replica {} cleanly: {status}", self.id);
    }

    /// One gauge of its Prometheus metrics.
    fn gauge(&self, name: &str) -> i64 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let line = response.lines().find(|line| line.starts_with(&format!("marionette_ledger_{name} "))).unwrap_or_else(|| panic!("no {name} in:\n{response}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The three replicas' files: the site's CA, one certificate for the
/// ledgers and one for the test's peer, cluster.toml and ledger.toml each.
fn cluster(dir: &Path) -> (Vec<Node>, LinkTls) {
    let pki = dir.join("pki");
    link::pki::init(&pki, "Test Bank").unwrap();
    let ledger = link::pki::issue(&pki, CertifiedRole::Ledger, &["127.0.0.1".into()], &pki).unwrap();
    let test = link::pki::issue(&pki, CertifiedRole::Test, &["127.0.0.1".into()], &pki).unwrap();
    let ca = pki.join(link::pki::CA_CERTIFICATE);
    let peer_tls = LinkTls::load(&link::LinkConfig {
        ca_file: ca.clone(),
        certificate_file: test.certificate_file,
        private_key_file: test.private_key_file,
        ..link::LinkConfig::default()
    })
    .unwrap()
    .unwrap();
    let ports: BTreeMap<u64, (u16, u16, u16)> = (1..=REPLICAS).map(|id| (id, (free_port(), free_port(), free_port()))).collect();
    let replicas: String =
        ports.iter().map(|(id, (raft, ledger, _))| format!("[replicas.{id}]\nraft = \"127.0.0.1:{raft}\"\nledger = \"127.0.0.1:{ledger}\"\n")).collect();
    let nodes = ports
        .iter()
        .map(|(&id, &(_, ledger_port, metrics_port))| {
            let node_dir = dir.join(format!("replica-{id}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            let cluster_file = node_dir.join("cluster.toml");
            // Named for this process: concurrent runs of the suite never talk to each other's replicas.
            std::fs::write(&cluster_file, format!("cluster = \"ledger-daemons-{}\"\nid = {id}\n{replicas}", std::process::id())).unwrap();
            let config = node_dir.join("ledger.toml");
            std::fs::write(
                &config,
                format!(
                    "[listen]\naddress = \"tcp:127.0.0.1:{ledger_port}\"\nmetrics_address = \"127.0.0.1:{metrics_port}\"\n\
                     [matching]\naddress = \"unix:{}\"\nreconnect_ms = 100\n\
                     [storage]\ndata_dir = \"{}\"\n\
                     [cluster]\nfile = \"{}\"\ncommit_timeout_ms = 3000\n\
                     [approvals]\ndeposit = 1\nwithdrawal_approval = 1\nhouse_inventory = 1\nasset = 1\nmarket = 1\noperator = 1\n\
                     [link]\nca_file = \"{}\"\ncertificate_file = \"{}\"\nprivate_key_file = \"{}\"\n\
                     [log]\nformat = \"text\"\n",
                    node_dir.join("no-matching.sock").display(),
                    node_dir.join("data").display(),
                    cluster_file.display(),
                    ca.display(),
                    ledger.certificate_file.display(),
                    ledger.private_key_file.display(),
                ),
            )
            .unwrap();
            Node { id, dir: node_dir, config, ledger_port, metrics_port, child: None }
        })
        .collect();
    (nodes, peer_tls)
}

/// What became of a command the peer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Its outcome came back.
    Acknowledged,
    /// Its connection died before the outcome came, and the next leader
    /// had applied it: applied, outcome unknown.
    AppliedUnanswered,
}

/// A peer of the cluster: it speaks to whichever replica leads, following
/// the hints, and resends what was not acknowledged.
struct Peer {
    addresses: Vec<String>,
    tls: LinkTls,
    client: Option<Client>,
    peer: u32,
    next: u64,
    /// Connections lost and made again.
    reconnects: u32,
}

impl Peer {
    /// Connects to the leader; returns the last sequence it applied from this peer.
    fn connect(&mut self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut candidates: Vec<String> = self.addresses.clone();
        let mut refusals = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "no replica served the peer within a minute: {refusals:?}");
            let address = candidates.remove(0);
            candidates.push(address.clone());
            let host_port = address.trim_start_matches("tcp:").to_string();
            match Client::connect_tls(&Address::Tcp(host_port), Some(&self.tls), CertifiedRole::Ledger, self.peer, Role::Test, 0, false) {
                Ok((client, welcome)) => {
                    self.client = Some(client);
                    return welcome.commands_applied;
                }
                Err(error) => {
                    if let Some(NotLeader { leader }) = NotLeader::of(&error) {
                        if !leader.is_empty() {
                            candidates.retain(|candidate| candidate != leader);
                            candidates.insert(0, leader.clone());
                        }
                    }
                    refusals.push(format!("{address}: {error}"));
                    if refusals.len() > 12 {
                        refusals.remove(0);
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
        }
    }

    /// Sends `command` as the next in sequence until some leader answers
    /// it or says it applied it.
    fn send(&mut self, command: LedgerCommand) -> (Fate, Option<Result<Outcome, LedgerError>>) {
        let sequence = self.next;
        self.next += 1;
        loop {
            if self.client.is_none() {
                let applied = self.connect();
                self.reconnects += 1;
                assert!(applied < sequence + 1, "the cluster applied {applied}, beyond what this peer ever sent ({sequence})");
                if applied == sequence {
                    return (Fate::AppliedUnanswered, None);
                }
                assert_eq!(applied + 1, sequence, "a command acknowledged before was lost: the leader applied only through {applied}");
            }
            let client = self.client.as_mut().unwrap();
            let answered = client.send(sequence, &Message::LedgerCommand(command.clone())).and_then(|()| loop {
                match client.recv()?.message {
                    Message::LedgerOutcome { peer_sequence, outcome } if peer_sequence == sequence => return Ok(outcome),
                    _ => continue,
                }
            });
            match answered {
                Ok(Some(outcome)) => return (Fate::Acknowledged, Some(outcome)),
                // Applied before through another leader, its outcome not known here.
                Ok(None) => return (Fate::AppliedUnanswered, None),
                Err(_) => self.client = None,
            }
        }
    }

    /// An operator's action, as the operator's proposal (one approval is enough here).
    fn operate(&mut self, command: LedgerCommand, bootstrapped: &mut bool) {
        if !*bootstrapped {
            let (_, outcome) = self.send(LedgerCommand::Operators(operators::Command::Bootstrap { operator: OPERATOR }));
            outcome.unwrap().unwrap();
            *bootstrapped = true;
        }
        let (_, outcome) = self.send(LedgerCommand::Operators(operators::Command::Propose {
            operator: OPERATOR,
            action: operators::Action::Ledger(command.to_action().unwrap()),
        }));
        match outcome.unwrap().unwrap() {
            Outcome::Operators(operators::Outcome::Executed { .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    fn query(&mut self, query: Query) -> Answer {
        loop {
            if self.client.is_none() {
                self.connect();
            }
            let client = self.client.as_mut().unwrap();
            let answered = client.send(1, &Message::LedgerQuery(query.clone())).and_then(|()| loop {
                if let Message::LedgerAnswer(answer) = client.recv()?.message {
                    return Ok(answer);
                }
            });
            match answered {
                Ok(answer) => return answer.unwrap(),
                Err(_) => self.client = None,
            }
        }
    }
}

/// The `index`th order: a buy of one lot at a price that names it.
fn order(index: u64) -> LedgerCommand {
    LedgerCommand::Spot(spot::Command::PlaceOrder {
        user: index % USERS + 1,
        request: OrderRequest {
            market: 1,
            side: Side::Buy,
            kind: OrderKind::Limit,
            time_in_force: TimeInForce::Gtc,
            post_only: false,
            price: Some(10_000 + index),
            quantity: 1,
            self_trade: SelfTradePrevention::CancelTaker,
            expires_at_ms: None,
            trigger: None,
            reduce_only: false,
        },
        client_order_id: None,
    })
}

fn leader(nodes: &[Node]) -> Option<usize> {
    let leading: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].child.is_some() && nodes[i].gauge("replica_leading") == 1).collect();
    (leading.len() == 1).then(|| leading[0])
}

#[test]
fn a_killed_leader_loses_nothing_acknowledged_and_the_replicas_end_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, tls) = cluster(dir.path());

    // Formed once, on one replica, with its daemon stopped.
    let formed = Process::new(BINARY).arg("--config").arg(&nodes[0].config).arg("form-cluster").output().unwrap();
    assert!(formed.status.success(), "{}", String::from_utf8_lossy(&formed.stderr));
    assert!(String::from_utf8_lossy(&formed.stdout).contains("formed the cluster"), "{formed:?}");
    let again = Process::new(BINARY).arg("--config").arg(&nodes[0].config).arg("form-cluster").output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("formed before; nothing changed"), "{again:?}");

    for node in &mut nodes {
        node.start();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_leader = loop {
        if let Some(leader) = leader(&nodes) {
            break leader;
        }
        assert!(Instant::now() < deadline, "no leader within a minute");
        std::thread::sleep(Duration::from_millis(50));
    };

    // A follower turns a peer away, and names the leader once it heard from it.
    let follower = (first_leader + 1) % nodes.len();
    let follower_address = Address::Tcp(format!("127.0.0.1:{}", nodes[follower].ledger_port));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let refused =
            Client::connect_tls(&follower_address, Some(&tls), CertifiedRole::Ledger, 7, Role::Test, 0, false).err().expect("a follower serves no peer");
        let hint = NotLeader::of(&refused).unwrap_or_else(|| panic!("{refused}"));
        if !hint.leader.is_empty() || Instant::now() > deadline {
            assert_eq!(hint.leader, format!("tcp:127.0.0.1:{}", nodes[first_leader].ledger_port));
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }

    let addresses = nodes.iter().map(|node| format!("tcp:127.0.0.1:{}", node.ledger_port)).collect();
    let mut peer = Peer { addresses, tls, client: None, peer: 7, next: 1, reconnects: 0 };
    peer.next = peer.connect() + 1;
    let mut bootstrapped = false;
    peer.operate(LedgerCommand::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }), &mut bootstrapped);
    peer.operate(LedgerCommand::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }), &mut bootstrapped);
    peer.operate(LedgerCommand::Spot(spot::Command::CreateMarket(market())), &mut bootstrapped);
    for user in 1..=USERS {
        peer.operate(
            LedgerCommand::Wallet(wallet::Command::Deposit { user, asset: USD, amount: 1_000_000_000, reference: format!("usd-{user}") }),
            &mut bootstrapped,
        );
    }

    let mut fates = BTreeMap::new();
    let mut killed = None;
    let mut failover = None;
    for index in 0..ORDERS {
        if index == ORDERS / 2 {
            let leader = leader(&nodes).expect("one leader");
            nodes[leader].kill_9();
            killed = Some((leader, Instant::now()));
        }
        let (fate, outcome) = peer.send(order(index));
        if let (Some((_, killed_at)), None, Fate::Acknowledged) = (killed, failover, fate) {
            failover = Some(killed_at.elapsed());
        }
        if let Some(outcome) = outcome {
            assert!(matches!(outcome, Ok(Outcome::Spot(spot::Outcome::OrderPlaced(_)))), "order {index}: {outcome:?}");
        }
        fates.insert(index, fate);
    }
    // Once at least (a noisy host may see another election).
    assert!(peer.reconnects >= 1, "the peer never lost its leader");
    let failover = failover.expect("acknowledgements after the kill");
    println!("from the leader's kill to the first acknowledgement by the next: {} ms", failover.as_millis());

    // Every order is there once: each price names one order.
    for user in 1..=USERS {
        let orders = match peer.query(Query::Spot(spot::Query::Orders { user, market: Some(1), status: None, limit: 1_000 })) {
            Answer::Spot(spot::Answer::Orders(orders)) => orders,
            other => panic!("{other:?}"),
        };
        let mut prices: Vec<u64> = orders.iter().map(|record| record.order.price.unwrap() - 10_000).collect();
        prices.sort_unstable();
        let expected: Vec<u64> = (0..ORDERS).filter(|index| index % USERS + 1 == user).collect();
        assert_eq!(prices, expected, "user {user}: every order placed exactly once ({fates:?})");
    }

    // The killed replica comes back and catches up; then all stop cleanly.
    let (killed, _) = killed.unwrap();
    nodes[killed].start();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let applied: Vec<i64> = nodes.iter().map(|node| node.gauge("replica_applied_index")).collect();
        if applied.iter().all(|index| *index == applied[0] && *index > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "the replicas never applied the same log: {applied:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(peer);
    for node in &mut nodes {
        node.stop();
    }
    let hashes: Vec<[u8; 32]> = nodes
        .iter()
        .map(|node| {
            let machine = LedgerMachine::open(&node.dir.join("data"), LedgerLimits::default()).unwrap();
            machine
                .with_service(|service| {
                    service.ledger().check_invariants().unwrap_or_else(|detail| panic!("replica {}: {detail}", node.id));
                    service.ledger().state_hash()
                })
                .unwrap()
        })
        .collect();
    assert!(hashes.iter().all(|hash| *hash == hashes[0]), "the replicas' states differ");
}
