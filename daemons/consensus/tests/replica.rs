//! A replica started from the cluster's file: a cluster of one forms
//! itself and comes back formed; replicas of three never form on their own
//! (a wiped one must not come back as a new voter), are formed once from
//! one of them, and each reports the cluster as an operator needs it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Config, Machine, PATIENCE_POLLS};
use consensus::cluster::{ClusterConfig, ReplicaAddress, Snapshots, Timeouts};
use consensus::replica::{FollowerStatus, Formed, Replica, ReplicaStatus, Role, FOLLOWER_BEHIND_WARN};
use journal::Content;
use openraft::error::Fatal;
use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, RaftMetrics, ServerState, StoredMembership};

const CONTENT: Content = Content { kind: *b"TRFT", version: 1 };

/// The clusters one at a time: their votes each sync a state file on both ends.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn until<F: FnMut() -> bool>(what: &str, mut done: F) {
    for _ in 0..PATIENCE_POLLS {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never: {what}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_one_forms_itself_and_comes_back_formed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = ClusterConfig::single("127.0.0.1:7001");
    let machine = Machine::default();
    let (replica, opened) = Replica::<Config>::start(&cluster, dir.path(), CONTENT, machine.clone(), None).await.unwrap();
    assert!(opened.new);
    assert_eq!(replica.listening, None, "the single host listens for no peer");
    until("the replica of one leads", || replica.status().role == Role::Leader).await;
    for number in [5, 6, 7] {
        replica.raft.client_write(number).await.unwrap();
    }
    let status = replica.status();
    assert_eq!((status.voters.clone(), status.learners.clone(), status.leader), (vec![1], vec![], Some(1)));
    assert!(status.followers.is_empty() && status.warnings.is_empty(), "{status:?}");
    replica.stop().await;

    let machine = Machine::default();
    let (replica, opened) = Replica::<Config>::start(&cluster, dir.path(), CONTENT, machine.clone(), None).await.unwrap();
    assert!(!opened.new);
    assert_eq!(replica.form(&cluster).await.unwrap(), Formed::Already, "a replica with a log is formed");
    until("the log is applied again", || machine.applied() == [5, 6, 7]).await;
    replica.raft.client_write(8).await.unwrap();
    assert_eq!(machine.applied(), [5, 6, 7, 8]);
    replica.stop().await;
}

fn three(id: u64, ports: &[u16; 3]) -> ClusterConfig {
    let replicas = (1..=3u64)
        .map(|id| (id, ReplicaAddress { raft: format!("127.0.0.1:{}", ports[id as usize - 1]), ledger: format!("127.0.0.1:{}", 9000 + id) }))
        .collect();
    ClusterConfig { cluster: "test-cluster".into(), id, replicas, timeouts: Timeouts::default(), snapshots: Snapshots::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_wait_to_be_formed_then_report_their_cluster() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports = [free_port(), free_port(), free_port()];
    let mut replicas = BTreeMap::new();
    let mut machines = BTreeMap::new();
    for id in 1..=3u64 {
        let machine = Machine::default();
        let (replica, _) = Replica::<Config>::start(&three(id, &ports), dirs[id as usize - 1].path(), CONTENT, machine.clone(), None).await.unwrap();
        assert_eq!(replica.listening.map(|address| address.port()), Some(ports[id as usize - 1]));
        replicas.insert(id, replica);
        machines.insert(id, machine);
    }
    // Unformed, they elect no one, however long: two election timeouts and more.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for replica in replicas.values() {
        let status = replica.status();
        assert_eq!((status.leader, status.last_log_index, status.voters.is_empty()), (None, None, true), "{status:?}");
        assert!(status.warnings.iter().any(|warning| warning.contains("no leader")), "{status:?}");
    }

    assert_eq!(replicas[&2].form(&three(2, &ports)).await.unwrap(), Formed::Now);
    until("a leader all three know", || {
        let leaders: BTreeSet<_> = replicas.values().map(|replica| replica.status().leader).collect();
        leaders.len() == 1 && leaders.first().unwrap().is_some()
    })
    .await;
    assert_eq!(replicas[&1].form(&three(1, &ports)).await.unwrap(), Formed::Already, "formed once, from one replica");
    let leader = replicas[&1].status().leader.unwrap();
    for number in 1..=20u64 {
        replicas[&leader].raft.client_write(number).await.unwrap();
    }
    until("every replica applied the writes", || machines.values().all(|machine| machine.applied() == (1..=20).collect::<Vec<_>>())).await;
    until("the leader knows every follower caught up", || replicas[&leader].status().followers.iter().all(|follower| follower.behind == Some(0))).await;

    let status = replicas[&leader].status();
    assert_eq!((status.role, status.voters.clone(), status.followers.len()), (Role::Leader, vec![1, 2, 3], 2), "{status:?}");
    assert!(status.warnings.is_empty(), "{status:?}");
    let follower = *replicas.keys().find(|id| **id != leader).unwrap();
    let status = replicas[&follower].status();
    assert_eq!((status.role, status.leader, status.followers.is_empty()), (Role::Follower, Some(leader), true), "{status:?}");

    // A follower stops: the leader still commits with the other, and says
    // the stopped one falls behind.
    replicas.remove(&follower).unwrap().stop().await;
    for number in 21..=25u64 {
        replicas[&leader].raft.client_write(number).await.unwrap();
    }
    let behind = replicas[&leader].status().followers.into_iter().find(|status| status.id == follower).unwrap();
    assert!(behind.behind.unwrap() >= 5, "{behind:?}");
    for (_, replica) in replicas {
        replica.stop().await;
    }
}

#[tokio::test]
async fn a_replica_whose_raft_port_is_taken_says_so() {
    // Not beside the clusters: their free ports are chosen before they are bound.
    let _one = ONE_AT_A_TIME.lock().await;
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let error = Replica::<Config>::start(&three(1, &[port, free_port(), free_port()]), dir.path(), CONTENT, Machine::default(), None).await.err().unwrap();
    assert!(error.to_string().contains(&format!("127.0.0.1:{port}")) && error.to_string().contains("cluster.toml"), "{error}");
}

fn leader_metrics() -> RaftMetrics<u64, BasicNode> {
    let mut metrics = RaftMetrics::new_initial(1);
    metrics.state = ServerState::Leader;
    metrics.current_leader = Some(1);
    metrics.current_term = 4;
    metrics.last_log_index = Some(50_000);
    let log_id = LogId::new(CommittedLeaderId::new(4, 1), 1);
    let nodes: BTreeMap<u64, BasicNode> = (1..=4).map(|id| (id, BasicNode::new(format!("10.0.0.{id}:7100")))).collect();
    metrics.membership_config = std::sync::Arc::new(StoredMembership::new(Some(log_id), Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)));
    metrics.millis_since_quorum_ack = Some(40);
    metrics
}

#[test]
fn the_status_tells_an_operator_what_to_look_at() {
    let mut metrics = leader_metrics();
    let matched = |index| Some(LogId::new(CommittedLeaderId::new(4, 1), index));
    metrics.replication = Some(BTreeMap::from([(1, matched(50_000)), (2, matched(50_000)), (3, matched(49_990)), (4, None)]));
    let status = ReplicaStatus::of(&metrics, 1_000);
    assert_eq!((status.role, status.term, status.voters.clone(), status.learners.clone()), (Role::Leader, 4, vec![1, 2, 3], vec![4]));
    assert_eq!(
        status.followers,
        [
            FollowerStatus { id: 2, matched: Some(50_000), behind: Some(0) },
            FollowerStatus { id: 3, matched: Some(49_990), behind: Some(10) },
            FollowerStatus { id: 4, matched: None, behind: None },
        ],
        "every replica but the leader itself"
    );
    assert_eq!(status.warnings, ["replica 4 has not answered this leader: is it running and reachable?"]);

    // A follower far behind, and a majority silent for longer than an election timeout.
    metrics.replication = Some(BTreeMap::from([(2, matched(50_000)), (3, matched(50_000 - FOLLOWER_BEHIND_WARN - 1))]));
    metrics.millis_since_quorum_ack = Some(1_001);
    let warnings = ReplicaStatus::of(&metrics, 1_000).warnings;
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("no majority has acknowledged this leader"), "{warnings:?}");
    assert!(warnings[1].contains(&format!("replica 3 is {} entries behind", FOLLOWER_BEHIND_WARN + 1)), "{warnings:?}");
    metrics.millis_since_quorum_ack = Some(1_000);
    metrics.replication = Some(BTreeMap::from([(2, matched(50_000)), (3, matched(50_000 - FOLLOWER_BEHIND_WARN))]));
    assert!(ReplicaStatus::of(&metrics, 1_000).warnings.is_empty(), "at the limits, nothing to say");

    // A follower with no leader, and a replica whose Raft stopped.
    let mut metrics = leader_metrics();
    metrics.state = ServerState::Follower;
    metrics.current_leader = None;
    let status = ReplicaStatus::of(&metrics, 1_000);
    assert_eq!((status.role, status.followers.len()), (Role::Follower, 0));
    assert!(status.warnings[0].contains("no leader known"), "{status:?}");
    metrics.running_state = Err(Fatal::Stopped);
    metrics.state = ServerState::Shutdown;
    let status = ReplicaStatus::of(&metrics, 1_000);
    assert_eq!(status.role, Role::Stopped);
    assert_eq!(status.warnings.len(), 1, "{status:?}");
    assert!(status.warnings[0].contains("Raft stopped"), "{status:?}");

    // What marionettectl prints as JSON reads back the same.
    let json = serde_json::to_string(&status).unwrap();
    assert!(json.contains("\"role\":\"stopped\""), "{json}");
    assert_eq!(serde_json::from_str::<ReplicaStatus>(&json).unwrap(), status);
}
