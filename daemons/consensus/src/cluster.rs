//! `/etc/marionette/cluster.toml`: which replicas make the ledger's
//! cluster, which one this host is, and Raft's timeouts. No file is the
//! default: a cluster of one. Unknown keys are an error naming the key, and
//! the whole file is validated once, at start, each error saying what to
//! change.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use crate::NodeId;

/// Where the file is read from unless the daemon is told otherwise.
pub const CLUSTER_FILE: &str = "/etc/marionette/cluster.toml";
/// Voters at most: each commit waits for a majority of them.
pub const VOTERS_MAX: usize = 7;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name: replicas refuse another cluster's messages.
    pub cluster: String,
    /// This host's replica, one of `replicas`.
    pub id: NodeId,
    /// Every voter, by id. An id is never reused for another host's data.
    pub replicas: BTreeMap<NodeId, ReplicaAddress>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub snapshots: Snapshots,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaAddress {
    /// `host:port` where the replica takes Raft's messages from the others.
    pub raft: String,
    /// `host:port` where the replica's ledger takes gateways' connections:
    /// the leader's is the hint any replica gives.
    pub ledger: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// How often the leader tells the others it is there.
    pub heartbeat_ms: u64,
    /// A follower that hears nothing for a random time between these calls an election.
    /// Long enough that an fsync stall (hundreds of ms on a busy disk) starts none.
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts { heartbeat_ms: 150, election_min_ms: 500, election_max_ms: 1_000 }
    }
}

/// When a replica snapshots its state and drops the log the snapshot covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Snapshots {
    /// Entries applied since the last snapshot before the next is taken.
    /// Each entry is a group-commit batch; a snapshot is a RocksDB
    /// checkpoint (hard links), cheap to take, sent whole to a replica
    /// that is behind the log's start.
    pub every_entries: u64,
    /// Entries kept in the log behind a snapshot, so that a follower a
    /// little behind catches up from the log rather than a whole snapshot.
    pub keep_entries: u64,
}

impl Default for Snapshots {
    fn default() -> Snapshots {
        Snapshots { every_entries: 100_000, keep_entries: 20_000 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterConfigError {
    #[error("{0}")]
    Syntax(String),
    #[error("`cluster` must be 1 to 64 lowercase letters, digits and '-' (it names the cluster in every connection), not {0:?}")]
    Name(String),
    #[error("`id` {id} is not among `replicas` ({listed}): list this host's replica, or set `id` to its number")]
    NotListed { id: NodeId, listed: String },
    #[error("{count} replicas: a cluster has 1 to {VOTERS_MAX} (3 survive the loss of one host, 5 of two)")]
    Count { count: usize },
    #[error("{count} replicas: an even number survives no more failures than one fewer, and splits in two halves that cannot elect; use {odd}")]
    Even { count: usize, odd: usize },
    #[error("replica {id}'s {which} address {address:?} is not host:port")]
    Address { id: NodeId, which: &'static str, address: String },
    #[error("replicas {first} and {second} share the {which} address {address:?}")]
    SharedAddress { first: NodeId, second: NodeId, which: &'static str, address: String },
    #[error("timeouts: {0}")]
    Timeouts(String),
    #[error("snapshots: every_entries must be at least 1 (a snapshot every N applied entries), not {0}")]
    Snapshots(u64),
}

fn host_port(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok_and(|port| port > 0),
        None => false,
    }
}

impl ClusterConfig {
    /// Parses and validates a cluster.toml.
    pub fn parse(text: &str) -> Result<ClusterConfig, ClusterConfigError> {
        let config: ClusterConfig = toml::from_str(text).map_err(|error| ClusterConfigError::Syntax(error.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// A cluster of one: the single host, with no file (no other replica
    /// to reach, so no Raft address).
    pub fn single(ledger_address: &str) -> ClusterConfig {
        let replica = ReplicaAddress { raft: String::new(), ledger: ledger_address.to_string() };
        ClusterConfig {
            cluster: "single".into(),
            id: 1,
            replicas: BTreeMap::from([(1, replica)]),
            timeouts: Timeouts::default(),
            snapshots: Snapshots::default(),
        }
    }

    pub fn validate(&self) -> Result<(), ClusterConfigError> {
        let name_ok = (1..=64).contains(&self.cluster.len()) && self.cluster.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(ClusterConfigError::Name(self.cluster.clone()));
        }
        let count = self.replicas.len();
        if !(1..=VOTERS_MAX).contains(&count) {
            return Err(ClusterConfigError::Count { count });
        }
        if count % 2 == 0 {
            return Err(ClusterConfigError::Even { count, odd: count - 1 });
        }
        if !self.replicas.contains_key(&self.id) {
            let listed = self.replicas.keys().map(|id| id.to_string()).collect::<Vec<_>>().join(", ");
            return Err(ClusterConfigError::NotListed { id: self.id, listed });
        }
        for which in ["raft", "ledger"] {
            let mut seen: BTreeMap<&str, NodeId> = BTreeMap::new();
            for (id, replica) in &self.replicas {
                let address = if which == "raft" { &replica.raft } else { &replica.ledger };
                if !host_port(address) {
                    return Err(ClusterConfigError::Address { id: *id, which, address: address.clone() });
                }
                if let Some(first) = seen.insert(address, *id) {
                    return Err(ClusterConfigError::SharedAddress { first, second: *id, which, address: address.clone() });
                }
            }
        }
        let Timeouts { heartbeat_ms, election_min_ms, election_max_ms } = self.timeouts;
        if heartbeat_ms == 0 || election_min_ms < heartbeat_ms.saturating_mul(3) {
            return Err(ClusterConfigError::Timeouts(format!(
                "election_min_ms ({election_min_ms}) must be at least three heartbeats (heartbeat_ms {heartbeat_ms}, above 0), or a follower calls elections under a live leader"
            )));
        }
        if election_max_ms <= election_min_ms || election_max_ms > 60_000 {
            return Err(ClusterConfigError::Timeouts(format!(
                "election_max_ms ({election_max_ms}) must be above election_min_ms ({election_min_ms}), so that replicas wait different times, and at most 60000"
            )));
        }
        if self.snapshots.every_entries == 0 {
            return Err(ClusterConfigError::Snapshots(0));
        }
        self.raft_config().map(drop)
    }

    /// openraft's settings for this cluster.
    pub fn raft_config(&self) -> Result<openraft::Config, ClusterConfigError> {
        let config = openraft::Config {
            cluster_name: self.cluster.clone(),
            heartbeat_interval: self.timeouts.heartbeat_ms,
            election_timeout_min: self.timeouts.election_min_ms,
            election_timeout_max: self.timeouts.election_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshots.every_entries),
            max_in_snapshot_log_to_keep: self.snapshots.keep_entries,
            ..Default::default()
        };
        config.validate().map_err(|error| ClusterConfigError::Timeouts(error.to_string()))
    }

    /// The voters' ids.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.replicas.keys().copied().collect()
    }

    /// How long a client of the cluster waits before asking another replica.
    pub fn election_max(&self) -> Duration {
        Duration::from_millis(self.timeouts.election_max_ms)
    }
}
