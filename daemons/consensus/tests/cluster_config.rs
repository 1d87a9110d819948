//! cluster.toml: a three-host file read as written, every mistake refused
//! with what to change, and any text read or refused without a panic.

use consensus::cluster::{ClusterConfig, ClusterConfigError, Snapshots, Timeouts};
use proptest::prelude::*;

const THREE: &str = r#"
cluster = "bank-exchange"
id = 2

[replicas.1]
raft = "10.0.0.1:7401"
ledger = "10.0.0.1:7400"

[replicas.2]
raft = "10.0.0.2:7401"
ledger = "10.0.0.2:7400"

[replicas.3]
raft = "ledger-3.bank.example:7401"
ledger = "ledger-3.bank.example:7400"
"#;

#[test]
fn a_three_host_cluster_is_read_as_written_with_timeouts_for_fsync_stalls() {
    let config = ClusterConfig::parse(THREE).unwrap();
    assert_eq!(config.cluster, "bank-exchange");
    assert_eq!(config.id, 2);
    assert_eq!(config.voters().into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(config.replicas[&3].raft, "ledger-3.bank.example:7401");
    assert_eq!(config.timeouts, Timeouts { heartbeat_ms: 150, election_min_ms: 500, election_max_ms: 1_000 });
    let raft = config.raft_config().unwrap();
    assert_eq!((raft.heartbeat_interval, raft.election_timeout_min, raft.election_timeout_max), (150, 500, 1_000));
    assert_eq!(raft.cluster_name, "bank-exchange");
    let tuned = ClusterConfig::parse(&format!("{THREE}\n[timeouts]\nheartbeat_ms = 100\nelection_min_ms = 700\nelection_max_ms = 900\n")).unwrap();
    assert_eq!(tuned.timeouts, Timeouts { heartbeat_ms: 100, election_min_ms: 700, election_max_ms: 900 });

    // Snapshots every 100 000 entries unless told, 20 000 kept behind one.
    assert_eq!(config.snapshots, Snapshots { every_entries: 100_000, keep_entries: 20_000 });
    assert_eq!((raft.snapshot_policy.clone(), raft.max_in_snapshot_log_to_keep), (openraft::SnapshotPolicy::LogsSinceLast(100_000), 20_000));
    let tuned = ClusterConfig::parse(&format!("{THREE}\n[snapshots]\nevery_entries = 500\nkeep_entries = 0\n")).unwrap();
    let raft = tuned.raft_config().unwrap();
    assert_eq!((raft.snapshot_policy.clone(), raft.max_in_snapshot_log_to_keep), (openraft::SnapshotPolicy::LogsSinceLast(500), 0));
}

/// A file, whether its error is the one expected, and what the message must say.
type Case = (String, fn(&ClusterConfigError) -> bool, &'static str);

#[test]
fn every_mistake_is_refused_with_what_to_change() {
    let cases: Vec<Case> = vec![
        (format!("{THREE}\n[snapshots]\nevery_entries = 0\n"), |e| matches!(e, ClusterConfigError::Snapshots(0)), "at least 1"),
        (THREE.replace("id = 2", "id = 4"), |e| matches!(e, ClusterConfigError::NotListed { id: 4, .. }), "is not among `replicas` (1, 2, 3)"),
        (THREE.replace("bank-exchange", "Bank Exchange"), |e| matches!(e, ClusterConfigError::Name(_)), "lowercase letters"),
        (
            THREE.replace("10.0.0.2:7401", "10.0.0.1:7401"),
            |e| matches!(e, ClusterConfigError::SharedAddress { first: 1, second: 2, .. }),
            "share the raft address",
        ),
        (THREE.replace("10.0.0.2:7400", "10.0.0.2"), |e| matches!(e, ClusterConfigError::Address { id: 2, which: "ledger", .. }), "is not host:port"),
        (THREE.replace("10.0.0.2:7401", "10.0.0.2:0"), |e| matches!(e, ClusterConfigError::Address { id: 2, .. }), "is not host:port"),
        (THREE.split("[replicas.3]").next().unwrap().to_string(), |e| matches!(e, ClusterConfigError::Even { count: 2, odd: 1 }), "use 1"),
        (format!("{THREE}\n[timeouts]\nheartbeat_ms = 300\n"), |e| matches!(e, ClusterConfigError::Timeouts(_)), "at least three heartbeats"),
        (format!("{THREE}\n[timeouts]\nelection_max_ms = 400\n"), |e| matches!(e, ClusterConfigError::Timeouts(_)), "must be above election_min_ms"),
        (THREE.replace("id = 2", "id = 2\nleader = 1"), |e| matches!(e, ClusterConfigError::Syntax(_)), "unknown field `leader`"),
        ("cluster = \"x\"\nid = 1\n[replicas]\n".to_string(), |e| matches!(e, ClusterConfigError::Count { count: 0 }), "1 to 7"),
    ];
    for (text, is_expected, says) in cases {
        let error = ClusterConfig::parse(&text).expect_err(&text);
        assert!(is_expected(&error), "{text}\n-> {error:?}");
        assert!(error.to_string().contains(says), "{error} should say {says:?}");
    }
}

#[test]
fn a_single_host_is_a_cluster_of_one() {
    let single = ClusterConfig::single("unix:/run/marionette/ledger.sock");
    assert_eq!(single.voters().len(), 1);
    assert_eq!(single.id, 1);
    let one = ClusterConfig::parse("cluster = \"solo\"\nid = 1\n[replicas.1]\nraft = \"127.0.0.1:7401\"\nledger = \"127.0.0.1:7400\"\n").unwrap();
    assert_eq!(one.voters().len(), 1);
}

proptest! {
    #[test]
    fn any_text_is_read_or_refused_without_a_panic(text in ".{0,200}", id in any::<u64>(), heartbeat in any::<u64>(), min in any::<u64>(), max in any::<u64>()) {
        let _ = ClusterConfig::parse(&text);
        let with_numbers = format!(
            "cluster = \"c\"\nid = {}\n[replicas.1]\nraft = \"a:1\"\nledger = \"a:2\"\n[timeouts]\nheartbeat_ms = {}\nelection_min_ms = {}\nelection_max_ms = {}\n",
            id % 3, heartbeat >> 1, min >> 1, max >> 1
        );
        // toml integers are i64: halved to stay in range. Whatever is accepted makes a valid openraft config.
        if let Ok(config) = ClusterConfig::parse(&with_numbers) {
            prop_assert!(config.raft_config().is_ok());
        }
    }
}
