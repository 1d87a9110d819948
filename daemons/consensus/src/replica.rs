//! A replica in this process, started from cluster.toml: openraft over the
//! journal's log store, the listener for its peers' Raft messages, and the
//! split-vote watcher; the cluster formed once; its status for operators.
//!
//! A cluster of one forms itself at its first start (one host is a cluster
//! of one, through the same path). A cluster of several is formed by the
//! operator, once, on one replica ([`Replica::form`], `marionettectl
//! cluster init`): a replica that formed on its own whenever it found an
//! empty directory would, wiped, come back as a new voter with none of the
//! entries it had acknowledged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use journal::Content;
use link::LinkTls;
use openraft::error::{InitializeError, RaftError};
use openraft::storage::RaftStateMachine;
use openraft::{BasicNode, Entry, Raft, RaftMetrics, RaftTypeConfig, ServerState};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::cluster::{ClusterConfig, ClusterConfigError};
use crate::log_store::{LogStore, LogStoreError, Opened};
use crate::network::{self, Network};
use crate::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Config(#[from] ClusterConfigError),
    #[error(transparent)]
    LogStore(#[from] LogStoreError),
    #[error(
        "cannot listen for the other replicas on {address}: {source}. Another process holds the port, or the address is not this host's: check cluster.toml"
    )]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Raft did not start: {0}. Report this with the data directory")]
    Start(String),
    #[error("the cluster cannot be formed from this replica: {0}")]
    Form(String),
}

/// What [`Replica::form`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formed {
    /// This call formed the cluster: its membership is the first entry of the log.
    Now,
    /// The replica already holds a log or a vote: the cluster was formed before.
    Already,
}

pub struct Replica<C: RaftTypeConfig> {
    pub raft: Raft<C>,
    pub id: NodeId,
    /// Where it listens for its peers (the port chosen, if cluster.toml
    /// gave 0); `None` for the single host's cluster of one.
    pub listening: Option<SocketAddr>,
    config: Arc<openraft::Config>,
    server: Option<JoinHandle<()>>,
    elections: JoinHandle<()>,
}

impl<C> Replica<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Node = BasicNode, Entry = Entry<C>>,
    C::D: Clone,
{
    /// Opens the log in `dir`, starts Raft with `machine`, listens on this
    /// replica's Raft address and watches for split votes; a fresh cluster
    /// of one forms itself.
    pub async fn start<M>(cluster: &ClusterConfig, dir: &Path, content: Content, machine: M, tls: Option<LinkTls>) -> Result<(Replica<C>, Opened), ReplicaError>
    where
        M: RaftStateMachine<C>,
    {
        let id = cluster.id;
        // The single host's cluster of one (`ClusterConfig::single`) has no peer to listen for.
        let alone = cluster.replicas.len() == 1 && cluster.replicas.get(&id).is_some_and(|replica| replica.raft.is_empty());
        if !alone {
            cluster.validate()?;
        }
        let config = Arc::new(cluster.raft_config()?);
        let listener = match alone {
            true => None,
            false => {
                let address = cluster.replicas[&id].raft.clone();
                Some(TcpListener::bind(&address).await.map_err(|source| ReplicaError::Bind { address, source })?)
            }
        };
        let listening = listener.as_ref().and_then(|listener| listener.local_addr().ok());
        let (store, opened) = LogStore::<C>::open(dir, content)?;
        let network = Network { cluster: cluster.cluster.clone(), id, tls: tls.clone() };
        let raft = Raft::new(id, config.clone(), network, store, machine).await.map_err(|error| ReplicaError::Start(error.to_string()))?;
        let server = listener.map(|listener| tokio::spawn(network::serve(listener, cluster.cluster.clone(), id, raft.clone(), tls)));
        let (watched, watcher_config) = (raft.clone(), config.clone());
        let elections = tokio::spawn(async move { crate::elections::break_split_votes(watched, &watcher_config, id).await });
        let replica = Replica { raft, id, listening, config, server, elections };
        if cluster.replicas.len() == 1 {
            replica.form(cluster).await?;
        }
        Ok((replica, opened))
    }

    /// Forms the cluster of `cluster`'s replicas, once: only a replica with
    /// neither log nor vote may, and every replica of a formed cluster
    /// answers [`Formed::Already`].
    pub async fn form(&self, cluster: &ClusterConfig) -> Result<Formed, ReplicaError> {
        match self.raft.initialize(members(cluster)).await {
            Ok(()) => {
                tracing::info!(cluster = cluster.cluster, voters = ?cluster.voters(), "formed the cluster");
                Ok(Formed::Now)
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(Formed::Already),
            Err(other) => Err(ReplicaError::Form(other.to_string())),
        }
    }

    /// What an operator asks of a replica (`marionettectl cluster status`).
    pub fn status(&self) -> ReplicaStatus {
        ReplicaStatus::of(&self.raft.metrics().borrow(), self.config.election_timeout_max)
    }

    /// Stops listening, then Raft (its log store's writer finishes what it holds).
    pub async fn stop(self) {
        self.elections.abort();
        let _ = self.elections.await;
        if let Some(server) = self.server {
            server.abort();
            let _ = server.await;
        }
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "Raft stopped with an error");
        }
    }
}

/// The voters of `cluster`, by id, at their Raft addresses.
pub fn members(cluster: &ClusterConfig) -> BTreeMap<NodeId, BasicNode> {
    cluster.replicas.iter().map(|(id, address)| (*id, BasicNode::new(address.raft.clone()))).collect()
}

/// A replica's role, as an operator reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    /// Receives the log but does not vote: new, or rejoining from a snapshot.
    Learner,
    Stopped,
}

/// How a leader's follower stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerStatus {
    pub id: NodeId,
    /// The last index it holds synced, as the leader knows; `None` before its first answer.
    pub matched: Option<u64>,
    /// Entries it lacks of the leader's log; `None` before its first answer.
    pub behind: Option<u64>,
}

/// One replica's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub id: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot: Option<u64>,
    pub purged: Option<u64>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// On a leader, every other replica; elsewhere empty.
    pub followers: Vec<FollowerStatus>,
    /// On a leader, how long since a majority last acknowledged it.
    pub quorum_ack_ms: Option<u64>,
    /// What an operator should look at, if anything.
    pub warnings: Vec<String>,
}

impl ReplicaStatus {
    /// From openraft's metrics; a leader whose majority has been silent for
    /// longer than `election_timeout_max_ms` is warned of.
    pub fn of(metrics: &RaftMetrics<NodeId, BasicNode>, election_timeout_max_ms: u64) -> ReplicaStatus {
        let role = match metrics.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Stopped,
        };
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        let followers: Vec<FollowerStatus> = metrics
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != metrics.id)
            .map(|(id, matched)| {
                let matched = matched.map(|log_id| log_id.index);
                let behind = matched.map(|matched| metrics.last_log_index.unwrap_or(0).saturating_sub(matched));
                FollowerStatus { id: *id, matched, behind }
            })
            .collect();
        let mut warnings = Vec::new();
        if let Err(fatal) = &metrics.running_state {
            warnings.push(format!("Raft stopped: {fatal}; the log above says why, and a restart recovers from the files"));
        }
        if metrics.current_leader.is_none() && role != Role::Stopped {
            warnings.push("no leader known: a majority of the voters cannot reach each other; check the hosts and the network between them".into());
        }
        if role == Role::Leader && metrics.millis_since_quorum_ack.is_some_and(|ms| ms > election_timeout_max_ms) {
            warnings.push("no majority has acknowledged this leader within an election timeout: it may be cut off, and a new leader elected elsewhere".into());
        }
        for follower in &followers {
            match follower.matched {
                None => warnings.push(format!("replica {} has not answered this leader: is it running and reachable?", follower.id)),
                Some(_) if follower.behind.is_some_and(|behind| behind > FOLLOWER_BEHIND_WARN) => warnings.push(format!(
                    "replica {} is {} entries behind: its disk or its link is slower than the others'",
                    follower.id,
                    follower.behind.unwrap_or_default()
                )),
                Some(_) => {}
            }
        }
        ReplicaStatus {
            id: metrics.id,
            role,
            term: metrics.current_term,
            leader: metrics.current_leader,
            last_log_index: metrics.last_log_index,
            applied: metrics.last_applied.map(|log_id| log_id.index),
            snapshot: metrics.snapshot.map(|log_id| log_id.index),
            purged: metrics.purged.map(|log_id| log_id.index),
            voters,
            learners,
            followers,
            quorum_ack_ms: metrics.millis_since_quorum_ack,
            warnings,
        }
    }
}

/// Entries a follower may lag before the status warns: a few group commits' worth.
pub const FOLLOWER_BEHIND_WARN: u64 = 10_000;
