//! The ledger as a Raft state machine on real files: replicas over loopback
//! apply the same committed batches to the same state, a replica that
//! starts after the log it needs was purged installs a snapshot, and a
//! snapshot that does not hold what its meta says is refused with nothing
//! changed. Conservation and the other invariants are checked on every
//! replica after each scenario.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{random_command, setup};
use consensus::cluster::{ClusterConfig, ReplicaAddress, Snapshots, Timeouts};
use consensus::replica::{Formed, Replica};
use ledger::replicated::{LedgerMachine, LedgerRaft, MachineError, RAFT_LOG_CONTENT};
use ledger::service::{JournalEntry, LedgerService, ServiceError};
use openraft::storage::RaftStateMachine;
use openraft::{RaftSnapshotBuilder, ServerState};
use products::LedgerLimits;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Polls of 25 ms: a minute, for clusters on a machine other suites share.
const PATIENCE_POLLS: usize = 2_400;

/// The clusters one at a time: their votes each sync a state file on both ends.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn cluster(id: u64, ports: &[u16; 3]) -> ClusterConfig {
    let replicas = (1..=3u64)
        .map(|id| (id, ReplicaAddress { raft: format!("127.0.0.1:{}", ports[id as usize - 1]), ledger: format!("127.0.0.1:{}", 9100 + id) }))
        .collect();
    // Small snapshots, nothing kept behind them: a late replica must install one.
    // Named for this process: concurrent runs of the suite never talk to each other's replicas.
    ClusterConfig {
        cluster: format!("ledger-test-{}", std::process::id()),
        id,
        replicas,
        timeouts: Timeouts::default(),
        snapshots: Snapshots { every_entries: 10, keep_entries: 0 },
    }
}

struct Node {
    replica: Replica<LedgerRaft>,
    machine: LedgerMachine,
}

/// Opens a replica's ledger; a stopped replica's state machine may still
/// be letting go of RocksDB's lock for a moment.
async fn open_machine(dir: &Path) -> LedgerMachine {
    for _ in 0..PATIENCE_POLLS {
        match LedgerMachine::open(dir, LedgerLimits::default()) {
            Ok(machine) => return machine,
            Err(error) if error.to_string().contains("lock") => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(error) => panic!("{error}"),
        }
    }
    panic!("RocksDB's lock in {} was never released", dir.display());
}

async fn start(id: u64, ports: &[u16; 3], dir: &Path) -> Node {
    let machine = open_machine(dir).await;
    let (replica, _) = Replica::start(&cluster(id, ports), &dir.join("raft"), RAFT_LOG_CONTENT, machine.clone(), None).await.unwrap();
    Node { replica, machine }
}

/// Polls `done` until it holds; fails with what `context` says then.
async fn until(what: &str, mut done: impl FnMut() -> bool, context: impl Fn() -> String) {
    for _ in 0..PATIENCE_POLLS {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never: {what}\n{}", context());
}

/// Each replica's view, for a failure's message.
fn describe(nodes: &BTreeMap<u64, Node>) -> String {
    nodes.iter().map(|(id, node)| format!("replica {id}: {:?}\n", node.replica.status())).collect()
}

fn state_hash(machine: &LedgerMachine) -> [u8; 32] {
    machine.with_service(|service| service.ledger().state_hash()).unwrap()
}

fn applied(node: &Node) -> Option<u64> {
    node.replica.raft.metrics().borrow().last_applied.map(|log_id| log_id.index)
}

/// Every invariant, conservation over every account included, on a replica's ledger.
fn check(machine: &LedgerMachine) {
    machine.with_service(|service| service.ledger().check_invariants()).unwrap().unwrap_or_else(|detail| panic!("invariant broken: {detail}"));
}

/// The assets, market and funded users of `common::setup`, from peer 9.
fn setup_entries() -> Vec<JournalEntry> {
    setup().into_iter().enumerate().map(|(i, command)| JournalEntry { peer: 9, peer_sequence: i as u64 + 1, at_ms: 1, command }).collect()
}

fn batch(rng: &mut SmallRng, next: &mut u64) -> Vec<JournalEntry> {
    (0..rng.random_range(1..40))
        .map(|_| {
            *next += 1;
            JournalEntry { peer: 1, peer_sequence: *next, at_ms: 1_700_000_000_000 + *next, command: random_command(rng, *next) }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_apply_the_same_batches_and_a_late_one_installs_a_snapshot() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    let _one = ONE_AT_A_TIME.lock().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports = [free_port(), free_port(), free_port()];
    let mut nodes = BTreeMap::new();
    for id in [1, 2] {
        nodes.insert(id, start(id, &ports, dirs[id as usize - 1].path()).await);
    }
    // Formed with three voters while the third is down: two are a majority.
    assert_eq!(nodes[&1].replica.form(&cluster(1, &ports)).await.unwrap(), Formed::Now);
    until("a leader", || nodes.values().any(|node| node.replica.status().role == consensus::replica::Role::Leader), || describe(&nodes)).await;
    let leader = *nodes.iter().find(|(_, node)| node.replica.status().role == consensus::replica::Role::Leader).unwrap().0;

    let setup = setup_entries();
    let written = nodes[&leader].replica.raft.client_write(setup.clone()).await.unwrap();
    assert_eq!(written.data.outcomes.len(), setup.len());
    assert!(written.data.outcomes.iter().all(|outcome| matches!(outcome, Some(Ok(_)))), "{:?}", written.data);
    let mut rng = SmallRng::seed_from_u64(29);
    let mut next = 0;
    let mut refused = 0;
    // The index of the last entry written: its answer names it (the
    // metrics may still show the one before when the answer arrives).
    let mut last = written.log_id.index;
    for _ in 0..60 {
        let entries = batch(&mut rng, &mut next);
        let written = nodes[&leader].replica.raft.client_write(entries.clone()).await.unwrap();
        assert_eq!(written.data.outcomes.len(), entries.len(), "an outcome for each command");
        assert!(written.data.outcomes.iter().all(Option::is_some), "nothing skipped: each command is new");
        refused += written.data.outcomes.iter().filter(|outcome| matches!(outcome, Some(Err(_)))).count();
        last = written.log_id.index;
    }
    assert!(refused > 0 && refused < next as usize, "a mix of applied and refused commands: {refused} of {next} refused");

    until("both replicas applied every entry", || nodes.values().all(|node| applied(node) == Some(last)), || describe(&nodes)).await;
    until(
        "the leader snapshotted and purged its log",
        || {
            let metrics = nodes[&leader].replica.raft.metrics().borrow().clone();
            metrics.snapshot.is_some() && metrics.purged.is_some()
        },
        || describe(&nodes),
    )
    .await;
    assert_eq!(state_hash(&nodes[&1].machine), state_hash(&nodes[&2].machine), "the same batches, the same state");

    // The third starts on an empty directory: the log it lacks is purged,
    // so the leader sends its snapshot, then the entries after it.
    nodes.insert(3, start(3, &ports, dirs[2].path()).await);
    let more = batch(&mut rng, &mut next);
    let last = nodes[&leader].replica.raft.client_write(more).await.unwrap().log_id.index;
    until("the third replica caught up", || applied(&nodes[&3]) == Some(last), || describe(&nodes)).await;
    let third = nodes[&3].replica.raft.metrics().borrow().clone();
    assert!(third.snapshot.is_some(), "it installed a snapshot: {third:?}");
    // The daemon's readers read the installed database, not the one it replaced.
    let readers = ledger::schema::load_replication(&nodes[&3].machine.readers().current().unwrap()).unwrap().unwrap_or_default();
    assert_eq!(readers.applied.map(|log_id| log_id.index), Some(last), "the readers' database is the replica's current one");
    assert_eq!(third.state, ServerState::Follower);
    let snapshots: Vec<_> = std::fs::read_dir(dirs[2].path().join("snapshots")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(snapshots.iter().any(|name| name.ends_with(".tar")) && snapshots.iter().any(|name| name.ends_with(".meta")), "{snapshots:?}");
    let hash = state_hash(&nodes[&leader].machine);
    for (id, node) in &nodes {
        assert_eq!(state_hash(&node.machine), hash, "replica {id}");
        check(&node.machine);
    }

    // Restarted on its directory, it holds the same state and goes on.
    let third = nodes.remove(&3).unwrap();
    third.replica.stop().await;
    drop(third.machine);
    nodes.insert(3, start(3, &ports, dirs[2].path()).await);
    until("the restarted replica applied the log again", || applied(&nodes[&3]) == Some(last), || describe(&nodes)).await;
    assert_eq!(state_hash(&nodes[&3].machine), hash);
    let more = batch(&mut rng, &mut next);
    let last = nodes[&leader].replica.raft.client_write(more).await.unwrap().log_id.index;
    until("all three applied the next batch", || nodes.values().all(|node| applied(node) == Some(last)), || describe(&nodes)).await;
    let hash = state_hash(&nodes[&leader].machine);
    for (id, node) in &nodes {
        assert_eq!(state_hash(&node.machine), hash, "replica {id}");
        check(&node.machine);
    }
    for (_, node) in nodes {
        node.replica.stop().await;
    }
}

/// A peer whose leader fell resends to the next one what the first may
/// have got committed: the log then holds those commands twice, and every
/// replica applies the first copy and skips the second, with no outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_log_holds_twice_is_applied_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let single = ClusterConfig::single("127.0.0.1:7000");
    let machine = open_machine(dir.path()).await;
    let (replica, _) = Replica::start(&single, &dir.path().join("raft"), RAFT_LOG_CONTENT, machine.clone(), None).await.unwrap();
    until("the replica of one leads", || replica.status().role == consensus::replica::Role::Leader, String::new).await;
    replica.raft.client_write(setup_entries()).await.unwrap();
    let mut rng = SmallRng::seed_from_u64(2929);
    let mut next = 0;
    let first = batch(&mut rng, &mut next);
    let written = replica.raft.client_write(first.clone()).await.unwrap();
    assert!(written.data.outcomes.iter().all(Option::is_some));
    let hash = state_hash(&machine);
    let peer_applied = machine.with_service(|service| service.peer_applied(1)).unwrap();
    assert_eq!(peer_applied, next);

    // The same commands again, whole: all skipped, nothing changes.
    let again = replica.raft.client_write(first.clone()).await.unwrap();
    assert_eq!(again.data.outcomes.len(), first.len());
    assert!(again.data.outcomes.iter().all(Option::is_none), "{:?}", again.data.outcomes);
    assert_eq!(state_hash(&machine), hash, "a skipped command changes nothing");

    // The tail of them with new ones after: the old skipped, the new applied.
    let tail = first.len().saturating_sub(3);
    let mut mixed = first[tail..].to_vec();
    let fresh = batch(&mut rng, &mut next);
    mixed.extend(fresh.iter().cloned());
    let written = replica.raft.client_write(mixed.clone()).await.unwrap();
    let (old, new) = written.data.outcomes.split_at(first.len() - tail);
    assert!(old.iter().all(Option::is_none) && new.iter().all(Option::is_some), "{:?}", written.data.outcomes);
    assert_eq!(machine.with_service(|service| service.peer_applied(1)).unwrap(), next);

    // The same state as a ledger given each command once.
    let once_dir = tempfile::tempdir().unwrap();
    let once_machine = open_machine(once_dir.path()).await;
    let (once, _) = Replica::start(&single, &once_dir.path().join("raft"), RAFT_LOG_CONTENT, once_machine.clone(), None).await.unwrap();
    until("the other replica of one leads", || once.status().role == consensus::replica::Role::Leader, String::new).await;
    once.raft.client_write(setup_entries()).await.unwrap();
    once.raft.client_write(first).await.unwrap();
    once.raft.client_write(fresh).await.unwrap();
    assert_eq!(state_hash(&once_machine), state_hash(&machine));
    check(&machine);
    replica.stop().await;
    once.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_does_not_hold_what_it_says_is_refused_and_changes_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (source_dir, target_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let single = ClusterConfig::single("127.0.0.1:7000");
    let source = LedgerMachine::open(source_dir.path(), LedgerLimits::default()).unwrap();
    let (replica, _) = Replica::<LedgerRaft>::start(&single, &source_dir.path().join("raft"), RAFT_LOG_CONTENT, source.clone(), None).await.unwrap();
    until("the replica of one leads", || replica.status().role == consensus::replica::Role::Leader, String::new).await;
    let setup = setup_entries();
    replica.raft.client_write(setup).await.unwrap();
    let (mut rng, mut next) = (SmallRng::seed_from_u64(7), 0);
    for _ in 0..5 {
        replica.raft.client_write(batch(&mut rng, &mut next)).await.unwrap();
    }
    let mut builder = source.clone().get_snapshot_builder().await;
    let mut snapshot = builder.build_snapshot().await.unwrap();
    let mut bytes = Vec::new();
    snapshot.snapshot.read_to_end(&mut bytes).await.unwrap();
    let source_hash = state_hash(&source);
    replica.stop().await;

    let mut target = LedgerMachine::open(target_dir.path(), LedgerLimits::default()).unwrap();
    let empty_hash = state_hash(&target);
    let receive = |target: &mut LedgerMachine, bytes: Vec<u8>| {
        let mut target = target.clone();
        async move {
            let mut file = target.begin_receiving_snapshot().await.unwrap();
            file.write_all(&bytes).await.unwrap();
            file.flush().await.unwrap();
            file
        }
    };

    // Bytes flipped all through the archive: refused by its digests or its headers.
    let mut damaged = bytes.clone();
    for at in (700..damaged.len()).step_by(4_099) {
        damaged[at] ^= 0x40;
    }
    let file = receive(&mut target, damaged).await;
    let error = target.install_snapshot(&snapshot.meta, file).await.expect_err("a damaged snapshot is refused");
    assert!(error.to_string().contains("damaged") || error.to_string().contains("SHA256SUMS"), "{error}");
    assert_eq!(state_hash(&target), empty_hash, "nothing installed");

    // Whole, but its meta names another entry than the one its database holds.
    let mut lying = snapshot.meta.clone();
    lying.last_log_id = lying.last_log_id.map(|mut log_id| {
        log_id.index += 1;
        log_id
    });
    let file = receive(&mut target, bytes.clone()).await;
    let error = target.install_snapshot(&lying, file).await.expect_err("a snapshot unlike its meta is refused");
    assert!(error.to_string().contains("not after"), "{error}");
    assert_eq!(state_hash(&target), empty_hash, "nothing installed");

    // As sent: installed, the same state, the same applied id, and kept as the current snapshot.
    let file = receive(&mut target, bytes).await;
    target.install_snapshot(&snapshot.meta, file).await.unwrap();
    assert_eq!(state_hash(&target), source_hash);
    check(&target);
    let (applied, _) = target.applied_state().await.unwrap();
    assert_eq!(applied, snapshot.meta.last_log_id);
    let current = target.get_current_snapshot().await.unwrap().expect("the installed snapshot is the current one");
    assert_eq!(current.meta.last_log_id, snapshot.meta.last_log_id);
    let leftovers: Vec<_> = std::fs::read_dir(target_dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!leftovers.iter().any(|name| name.starts_with("db.")), "no install directory left: {leftovers:?}");
    let received: Vec<_> = std::fs::read_dir(target_dir.path().join("snapshots")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!received.iter().any(|name| name.starts_with("incoming-")), "refused snapshots are removed: {received:?}");
    drop(target);
    let reopened = LedgerMachine::open(target_dir.path(), LedgerLimits::default()).unwrap();
    assert_eq!(state_hash(&reopened), source_hash, "the installed database is the one that opens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_other_mode_is_refused() {
    let _one = ONE_AT_A_TIME.lock().await;
    // A one-host ledger's data directory, opened as a replica: its state
    // has no applied log id, so openraft would apply the log again on top.
    let own = tempfile::tempdir().unwrap();
    let (mut service, _) = LedgerService::open(own.path(), LedgerLimits::default()).unwrap();
    let setup = setup_entries();
    service.execute(&setup).unwrap();
    drop(service);
    let error = LedgerMachine::open(own.path(), LedgerLimits::default()).err().expect("refused");
    assert!(matches!(&error, MachineError::Service(ServiceError::OtherMode { .. })), "{error}");
    assert!(error.to_string().contains("its own journal") && error.to_string().contains("move this one aside"), "{error}");
    assert!(!own.path().join("snapshots").exists(), "a refused directory is left as it was");
    let (service, _) = LedgerService::open(own.path(), LedgerLimits::default()).unwrap();
    assert!(service.ledger().check_invariants().is_ok(), "and still opens as what it is");
    drop(service);

    // A replica's, opened with a journal of its own: it would replay a journal it never had.
    let replica_dir = tempfile::tempdir().unwrap();
    let machine = LedgerMachine::open(replica_dir.path(), LedgerLimits::default()).unwrap();
    let (replica, _) =
        Replica::<LedgerRaft>::start(&ClusterConfig::single("127.0.0.1:7000"), &replica_dir.path().join("raft"), RAFT_LOG_CONTENT, machine.clone(), None)
            .await
            .unwrap();
    until("the replica of one leads", || replica.status().role == consensus::replica::Role::Leader, String::new).await;
    replica.raft.client_write(setup).await.unwrap();
    replica.stop().await;
    drop(machine);
    let mut refused = None;
    for _ in 0..PATIENCE_POLLS {
        match LedgerService::open(replica_dir.path(), LedgerLimits::default()) {
            Err(ServiceError::OtherMode { written_by, .. }) => {
                refused = Some(written_by);
                break;
            }
            Err(other) if other.to_string().contains("lock") => tokio::time::sleep(Duration::from_millis(25)).await,
            other => panic!("expected a refusal: {:?}", other.map(|_| ())),
        }
    }
    assert!(refused.expect("the lock was never released").contains("replica"));
}
