//! The log store on real files: openraft's own storage suite, then a real
//! `openraft::Raft` over it, a cluster of one and of three (in one process,
//! joined by a network of channels), stopped and started again on the same
//! directories.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use consensus::{LogStore, ReplicaState};
use journal::Content;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{BasicNode, Raft, StorageError};

const CONTENT: Content = Content { kind: *b"TRFT", version: 1 };

use common::{shipped_raft_config, Config, Machine, PATIENCE_POLLS};

struct Builder;

impl StoreBuilder<Config, LogStore<Config>, Machine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore<Config>, Machine), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let (store, opened) = LogStore::open(dir.path(), CONTENT).unwrap();
        assert!(opened.new);
        Ok((dir, store, Machine::default()))
    }
}

type TheSuite = Suite<Config, LogStore<Config>, Machine, Builder, tempfile::TempDir>;

/// openraft's storage suite, test by test on fresh directories, so that a
/// failure names its test.
#[test]
fn openraft_storage_suite_passes_on_the_journal() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut failed = Vec::new();
    macro_rules! run {
        ($name:ident) => {
            let result = runtime.block_on(async {
                let (_dir, store, machine) = Builder.build().await?;
                TheSuite::$name(store, machine).await
            });
            if let Err(error) = result {
                failed.push(format!("{}: {error}", stringify!($name)));
            }
        };
    }
    run!(last_membership_in_log_initial);
    run!(last_membership_in_log);
    run!(last_membership_in_log_multi_step);
    run!(get_membership_initial);
    run!(get_membership_from_log_and_empty_sm);
    run!(get_membership_from_empty_log_and_sm);
    run!(get_membership_from_log_le_sm_last_applied);
    run!(get_membership_from_log_gt_sm_last_applied_1);
    run!(get_membership_from_log_gt_sm_last_applied_2);
    run!(get_initial_state_without_init);
    run!(get_initial_state_membership_from_log_and_sm);
    run!(get_initial_state_with_state);
    run!(get_initial_state_last_log_gt_sm);
    run!(get_initial_state_last_log_lt_sm);
    run!(get_initial_state_log_ids);
    run!(get_initial_state_re_apply_committed);
    run!(save_vote);
    run!(get_log_entries);
    run!(limited_get_log_entries);
    run!(try_get_log_entry);
    run!(initial_logs);
    run!(get_log_state);
    run!(get_log_id);
    run!(last_id_in_log);
    run!(last_applied_state);
    run!(purge_logs_upto_0);
    run!(purge_logs_upto_5);
    run!(purge_logs_upto_20);
    run!(delete_logs_since_11);
    run!(delete_logs_since_0);
    run!(append_to_log);
    run!(snapshot_meta);
    run!(apply_single);
    run!(apply_multiple);
    if let Err(error) = runtime.block_on(TheSuite::transfer_snapshot(&Builder)) {
        failed.push(format!("transfer_snapshot: {error}"));
    }
    // One test of the suite appends entry 1 to a log whose entries through 2
    // were purged (an in-memory map takes it); openraft never asks that of a
    // running replica, and this store refuses any append that does not follow
    // the log's last entry, rather than leave entries below its purge point.
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(
        failed[0].starts_with("get_initial_state_membership_from_log_and_sm:") && failed[0].contains("entry 1 does not follow the log's last entry 2"),
        "{failed:#?}"
    );
}

/// The network of an in-process cluster: each call goes straight to the
/// target's `Raft`, unless the target is down or cut off.
#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, Raft<Config>>>>,
    cut_off: Arc<Mutex<BTreeSet<u64>>>,
}

struct Connection {
    from: u64,
    to: u64,
    router: Router,
}

impl Router {
    fn target(&self, from: u64, to: u64) -> Result<Raft<Config>, Unreachable> {
        let cut_off = self.cut_off.lock().unwrap();
        if cut_off.contains(&from) || cut_off.contains(&to) {
            return Err(Unreachable::new(&std::io::Error::other("cut off")));
        }
        self.nodes.lock().unwrap().get(&to).cloned().ok_or_else(|| Unreachable::new(&std::io::Error::other("down")))
    }
}

impl RaftNetworkFactory<Config> for Router {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Connection {
        // Which node is asking is not known here; the node's own router is made with it.
        Connection { from: u64::MAX, to: target, router: self.clone() }
    }
}

/// A node's own view of the router, so that a cut-off node cannot send either.
#[derive(Clone)]
struct NodeRouter {
    id: u64,
    router: Router,
}

impl RaftNetworkFactory<Config> for NodeRouter {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Connection {
        Connection { from: self.id, to: target, router: self.router.clone() }
    }
}

impl RaftNetwork<Config> for Connection {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<Config>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let target = self.router.target(self.from, self.to).map_err(RPCError::Unreachable)?;
        target.append_entries(request).await.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.to, e)))
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<Config>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        let target = self.router.target(self.from, self.to).map_err(RPCError::Unreachable)?;
        target.install_snapshot(request).await.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.to, e)))
    }

    async fn vote(&mut self, request: VoteRequest<u64>, _option: RPCOption) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let target = self.router.target(self.from, self.to).map_err(RPCError::Unreachable)?;
        target.vote(request).await.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.to, e)))
    }
}

async fn start(id: u64, dir: &std::path::Path, router: &Router) -> (Raft<Config>, Machine, LogStore<Config>) {
    let (store, _) = LogStore::open(dir, CONTENT).unwrap();
    let machine = Machine::default();
    let config = shipped_raft_config("test");
    let raft = Raft::new(id, config.clone(), NodeRouter { id, router: router.clone() }, store.clone(), machine.clone()).await.unwrap();
    let watcher = raft.clone();
    tokio::spawn(async move { consensus::elections::break_split_votes(watcher, &config, id).await });
    router.nodes.lock().unwrap().insert(id, raft.clone());
    (raft, machine, store)
}

async fn leader_of(rafts: &[&Raft<Config>]) -> u64 {
    for _ in 0..PATIENCE_POLLS {
        for raft in rafts {
            if let Some(leader) = raft.current_leader().await {
                if rafts.iter().any(|r| r.metrics().borrow().id == leader) {
                    return leader;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no leader elected");
}

/// One test at a time in this file: the suite's fsyncs would otherwise
/// stall the clusters' votes (each a synced state file on both ends).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_one_keeps_every_acknowledged_entry_and_its_vote_across_a_restart() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let (raft, machine, _) = start(1, dir.path(), &router).await;
    raft.initialize(BTreeMap::from([(1, BasicNode::new("one"))])).await.unwrap();
    leader_of(&[&raft]).await;
    let mut sums = Vec::new();
    for number in 1..=20u64 {
        sums.push(raft.client_write(number).await.unwrap().data);
    }
    assert_eq!(sums.last(), Some(&210));
    assert_eq!(machine.applied(), (1..=20).collect::<Vec<_>>());
    let vote = raft.metrics().borrow().vote;
    raft.shutdown().await.unwrap();
    router.nodes.lock().unwrap().clear();
    // The writer thread records how far it is durable when idle (at most every 200 ms).
    let mut state = ReplicaState::read(dir.path()).unwrap().unwrap();
    for _ in 0..PATIENCE_POLLS {
        if state.durable.is_some_and(|durable| durable >= 21) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        state = ReplicaState::read(dir.path()).unwrap().unwrap();
    }
    assert_eq!(state.vote, Some(vote), "the vote is on disk");
    assert!(state.durable.is_some_and(|durable| durable >= 21), "the blank, the membership and 20 numbers are durable: {:?}", state.durable);

    // Started again on the same directory, with an empty state machine: the log replays into it.
    let (raft, machine, _) = start(1, dir.path(), &router).await;
    leader_of(&[&raft]).await;
    assert_eq!(raft.client_write(1000).await.unwrap().data, 1210);
    assert_eq!(machine.applied().len(), 21);
    assert_eq!(machine.applied()[..20], (1..=20).collect::<Vec<_>>()[..]);
    assert!(raft.metrics().borrow().vote.leader_id.term >= vote.leader_id.term);
    raft.shutdown().await.unwrap();
    router.nodes.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Its state file lost beside its entries: the vote is gone, so it must not start as new.
    std::fs::remove_file(dir.path().join(consensus::replica_state::STATE_FILE)).unwrap();
    match LogStore::<Config>::open(dir.path(), CONTENT) {
        Err(error @ consensus::LogStoreError::StateMissing { .. }) => assert!(error.to_string().contains("rejoin"), "{error}"),
        Err(other) => panic!("expected StateMissing, got {other}"),
        Ok(_) => panic!("a replica without its vote opened"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_a_new_leader_when_the_leader_is_cut_off_and_lose_nothing_committed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let router = Router::default();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        nodes.push(start(i as u64 + 1, dir.path(), &router).await);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3).map(|id| (id, BasicNode::new(format!("node {id}")))).collect();
    nodes[0].0.initialize(members).await.unwrap();
    let rafts: Vec<&Raft<Config>> = nodes.iter().map(|(raft, _, _)| raft).collect();
    let first_leader = leader_of(&rafts).await;
    let leader = &nodes[first_leader as usize - 1].0;
    for number in 1..=10u64 {
        leader.client_write(number).await.unwrap();
    }
    // Cut the leader off: the other two elect one of them and go on.
    router.cut_off.lock().unwrap().insert(first_leader);
    let others: Vec<&Raft<Config>> = nodes.iter().filter(|(raft, _, _)| raft.metrics().borrow().id != first_leader).map(|(raft, _, _)| raft).collect();
    let mut second_leader = first_leader;
    for _ in 0..PATIENCE_POLLS {
        if let Some(leader) = others[0].current_leader().await.filter(|l| *l != first_leader) {
            second_leader = leader;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_ne!(second_leader, first_leader, "a new leader among the two that can talk");
    let new_leader = &nodes[second_leader as usize - 1].0;
    for number in 11..=15u64 {
        new_leader.client_write(number).await.unwrap();
    }
    // The deposed leader cannot commit: a write to it is not acknowledged.
    let deposed = tokio::time::timeout(Duration::from_millis(1500), leader.client_write(99)).await;
    assert!(!matches!(deposed, Ok(Ok(_))), "a leader cut off from its majority acknowledged a write");
    // Healed: it follows the new leader, its uncommitted 99 is truncated, and all three apply the same.
    router.cut_off.lock().unwrap().clear();
    new_leader.client_write(16).await.unwrap();
    for _ in 0..PATIENCE_POLLS {
        if nodes.iter().all(|(_, machine, _)| machine.applied().len() == 16) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for (raft, machine, _) in &nodes {
        assert_eq!(machine.applied(), (1..=16).collect::<Vec<_>>(), "node {}", raft.metrics().borrow().id);
    }
    for (raft, _, _) in nodes {
        raft.shutdown().await.unwrap();
    }
}
