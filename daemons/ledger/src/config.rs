//! `ledger.toml`: every key has a documented default, unknown keys are an
//! error that names the key, and the whole file is validated once at start.

use std::path::{Path, PathBuf};

use ledger_api::operators::Thresholds;
use link::Address;
use products::LedgerLimits;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    pub listen: ListenConfig,
    pub matching: MatchingLinkConfig,
    pub engine: EngineConfig,
    pub storage: StorageConfig,
    pub cluster: ReplicaConfig,
    /// The core's limits, read as they are.
    pub limits: LedgerLimits,
    /// Approvals each kind of operator action needs, the proposer's included.
    pub approvals: Thresholds,
    /// Who may connect to `listen.address`, and the certificates for `tcp:` links.
    pub link: link::LinkConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Where gateways and the operator CLI connect: `unix:/path` or `tcp:host:port`.
    pub address: String,
    /// `host:port` for Prometheus `GET /metrics`; empty disables it.
    pub metrics_address: String,
    pub connections_max: usize,
    pub frame_bytes_max: u32,
    /// Frames queued for one slow peer before it is disconnected.
    pub peer_queue_frames_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchingLinkConfig {
    /// The matching daemon's `listen.address`.
    pub address: String,
    /// The peer id this ledger uses with matching; matching records its
    /// progress against it, so it must never change for a data directory.
    pub peer_id: u32,
    /// Wait between attempts to reach matching.
    pub reconnect_ms: u64,
    /// Forwarded commands queued for the link before it is reset (it then
    /// reconnects and resends from the outbox).
    pub send_queue_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// The CPU the engine thread is pinned to; none leaves it to the scheduler.
    pub cpu: Option<usize>,
    /// Commands journaled and applied as one group commit, at most.
    pub batch_commands_max: usize,
    /// Commands waiting for the engine thread, at most; senders block beyond it.
    pub inbound_queue_max: usize,
    /// Outcomes kept per peer so that a command resent after a reconnect gets its answer again.
    pub outcomes_retained_per_peer: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// RocksDB (`db/`) and the journal (`journal/`). Put it on local NVMe.
    pub data_dir: PathBuf,
    /// Journal records per segment; older segments are removed once RocksDB has flushed them.
    pub segment_records_max: u64,
}

/// Whether this ledger is a replica of a cluster, and how it leads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicaConfig {
    /// The cluster's file (replicas, addresses, timeouts); empty: this host
    /// keeps its own journal, alone.
    pub file: PathBuf,
    /// How long a leader's proposals may wait for a majority before it
    /// stops leading and sends its peers to whichever replica leads.
    pub commit_timeout_ms: u64,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig { file: PathBuf::new(), commit_timeout_ms: 3_000 }
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            address: "unix:/run/marionette/ledger.sock".into(),
            metrics_address: "127.0.0.1:9103".into(),
            connections_max: 64,
            frame_bytes_max: wire::PAYLOAD_BYTES_MAX_DEFAULT,
            peer_queue_frames_max: 65_536,
        }
    }
}

impl Default for MatchingLinkConfig {
    fn default() -> Self {
        MatchingLinkConfig { address: "unix:/run/marionette/matching.sock".into(), peer_id: 1, reconnect_ms: 500, send_queue_max: 65_536 }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { cpu: None, batch_commands_max: 4_096, inbound_queue_max: 65_536, outcomes_retained_per_peer: 65_536 }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { data_dir: "/var/lib/marionette/ledger".into(), segment_records_max: crate::service::SEGMENT_RECORDS_MAX_DEFAULT }
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            listen: ListenConfig::default(),
            matching: MatchingLinkConfig::default(),
            engine: EngineConfig::default(),
            storage: StorageConfig::default(),
            cluster: ReplicaConfig::default(),
            limits: LedgerLimits::default(),
            approvals: Thresholds::default(),
            // The packages' gateway user (debian/marionette-common.sysusers).
            link: link::LinkConfig { unix_peers: [("marionette-gateway".to_string(), vec![wire::Role::Gateway])].into(), ..link::LinkConfig::default() },
            log: LogConfig::default(),
        }
    }
}

pub use shell::{ConfigError, LogConfig};

impl LedgerConfig {
    pub fn load(path: &Path) -> Result<LedgerConfig, ConfigError> {
        shell::load(path)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        use shell::Validate as _;
        let invalid = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.into() });
        Address::parse(&self.listen.address).map_err(|reason| ConfigError::Invalid { key: "listen.address", reason })?;
        Address::parse(&self.matching.address).map_err(|reason| ConfigError::Invalid { key: "matching.address", reason })?;
        self.link
            .check_tcp_addresses(&[("listen.address", &self.listen.address), ("matching.address", &self.matching.address)])
            .map_err(|(key, reason)| ConfigError::Invalid { key, reason })?;
        if self.listen.connections_max == 0 {
            return invalid("listen.connections_max", "must be at least 1");
        }
        if self.listen.frame_bytes_max < 1024 {
            return invalid("listen.frame_bytes_max", "must be at least 1024");
        }
        if self.listen.peer_queue_frames_max == 0 {
            return invalid("listen.peer_queue_frames_max", "must be at least 1");
        }
        if self.matching.peer_id == 0 {
            return invalid("matching.peer_id", "must be at least 1");
        }
        if self.matching.reconnect_ms == 0 || self.matching.send_queue_max == 0 {
            return invalid("matching", "reconnect_ms and send_queue_max must be at least 1");
        }
        if self.engine.batch_commands_max == 0 || self.engine.inbound_queue_max == 0 || self.engine.outcomes_retained_per_peer == 0 {
            return invalid("engine", "batch_commands_max, inbound_queue_max and outcomes_retained_per_peer must be at least 1");
        }
        if self.cluster.commit_timeout_ms == 0 {
            return invalid("cluster.commit_timeout_ms", "must be at least 1");
        }
        if self.storage.segment_records_max < 1024 {
            return invalid("storage.segment_records_max", "must be at least 1024");
        }
        let l = &self.limits;
        if l.open_orders_per_user_max == 0 || l.open_orders_max == 0 || l.pending_withdrawals_max == 0 || l.assets_max == 0 || l.markets_max == 0 {
            return invalid("limits", "every limit must be at least 1");
        }
        self.approvals.validate().map_err(|reason| ConfigError::Invalid { key: "approvals", reason })?;
        self.log.validate()?;
        Ok(())
    }
}

impl shell::Validate for LedgerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        LedgerConfig::validate(self)
    }
}
