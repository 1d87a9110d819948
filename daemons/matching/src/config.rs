//! `matching.toml`: every key has a documented default, unknown keys are an
//! error that names the key, and the whole file is validated once at start.

use std::path::{Path, PathBuf};

use matching_core::{BookLimits, EngineLimits};
use serde::Deserialize;

pub use link::Address;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchingConfig {
    pub listen: ListenConfig,
    pub engine: EngineConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    /// Who may connect to `listen.address`, and the certificates for `tcp:` links.
    pub link: link::LinkConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// `unix:/path/to.sock` (default) or `tcp:host:port`.
    pub address: String,
    /// `host:port` for Prometheus `GET /metrics`; empty disables it.
    pub metrics_address: String,
    pub connections_max: usize,
    pub frame_bytes_max: u32,
    /// Frames queued for one slow peer before it is disconnected (it reconnects and replays).
    pub peer_queue_batches_max: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdleStrategy {
    /// Busy-poll: lowest latency, burns the pinned CPU. For isolated cores only.
    Spin,
    /// Poll and yield the CPU between polls.
    Yield,
    /// Block until work arrives. The right choice on small or shared hosts.
    Park,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// The CPU the engine thread is pinned to; none leaves it to the scheduler.
    pub cpu: Option<usize>,
    pub idle: IdleStrategy,
    /// Commands journaled and applied as one group commit, at most.
    pub batch_commands_max: usize,
    /// Commands waiting for the engine thread, at most; senders block beyond it.
    pub inbound_queue_max: usize,
    /// Outputs kept in memory for peers that reconnect and replay.
    pub retained_outputs_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// A snapshot of all books is written after this many journaled commands.
    pub snapshot_every_commands: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub markets_max: u32,
    pub resting_orders_per_market_max: u32,
    pub orders_per_user_per_market_max: u32,
    pub price_levels_per_side_max: u32,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            address: "unix:/run/marionette/matching.sock".into(),
            metrics_address: "127.0.0.1:9102".into(),
            connections_max: 16,
            frame_bytes_max: wire::PAYLOAD_BYTES_MAX_DEFAULT,
            peer_queue_batches_max: 65_536,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { cpu: None, idle: IdleStrategy::Park, batch_commands_max: 4_096, inbound_queue_max: 65_536, retained_outputs_max: 1_000_000 }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { data_dir: "/var/lib/marionette/matching".into(), snapshot_every_commands: 1_000_000 }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let book = BookLimits::default();
        LimitsConfig {
            markets_max: EngineLimits::default().markets_max,
            resting_orders_per_market_max: book.resting_orders_max,
            orders_per_user_per_market_max: book.orders_per_user_max,
            price_levels_per_side_max: book.price_levels_per_side_max,
        }
    }
}

impl Default for MatchingConfig {
    fn default() -> Self {
        MatchingConfig {
            listen: ListenConfig::default(),
            engine: EngineConfig::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            // The packages' users (debian/marionette-common.sysusers): the
            // ledger sends orders, the gateway reads depth.
            link: link::LinkConfig {
                unix_peers: [("marionette-ledger".to_string(), vec![wire::Role::Ledger]), ("marionette-gateway".to_string(), vec![wire::Role::Gateway])].into(),
                ..link::LinkConfig::default()
            },
            log: LogConfig::default(),
        }
    }
}

pub use shell::{ConfigError, LogConfig};

impl MatchingConfig {
    pub fn load(path: &Path) -> Result<MatchingConfig, ConfigError> {
        shell::load(path)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        use shell::Validate as _;
        let invalid = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.into() });
        Address::parse(&self.listen.address).map_err(|reason| ConfigError::Invalid { key: "listen.address", reason })?;
        self.link.check_tcp_addresses(&[("listen.address", &self.listen.address)]).map_err(|(key, reason)| ConfigError::Invalid { key, reason })?;
        if self.listen.connections_max == 0 {
            return invalid("listen.connections_max", "must be at least 1");
        }
        if self.listen.frame_bytes_max < 1024 {
            return invalid("listen.frame_bytes_max", "must be at least 1024");
        }
        if self.listen.peer_queue_batches_max == 0 {
            return invalid("listen.peer_queue_batches_max", "must be at least 1");
        }
        if self.engine.batch_commands_max == 0 || self.engine.inbound_queue_max == 0 || self.engine.retained_outputs_max == 0 {
            return invalid("engine", "batch_commands_max, inbound_queue_max and retained_outputs_max must be at least 1");
        }
        if let Some(cpu) = self.engine.cpu {
            let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            if cpu >= cpus * 64 {
                return invalid("engine.cpu", "is not a plausible CPU number");
            }
        }
        if self.storage.snapshot_every_commands == 0 {
            return invalid("storage.snapshot_every_commands", "must be at least 1");
        }
        let l = &self.limits;
        if l.markets_max == 0 || l.resting_orders_per_market_max == 0 || l.orders_per_user_per_market_max == 0 || l.price_levels_per_side_max == 0 {
            return invalid("limits", "every limit must be at least 1");
        }
        self.log.validate()?;
        Ok(())
    }

    pub fn engine_limits(&self) -> EngineLimits {
        EngineLimits {
            markets_max: self.limits.markets_max,
            book: BookLimits {
                resting_orders_max: self.limits.resting_orders_per_market_max,
                orders_per_user_max: self.limits.orders_per_user_per_market_max,
                price_levels_per_side_max: self.limits.price_levels_per_side_max,
            },
        }
    }
}

impl shell::Validate for MatchingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        MatchingConfig::validate(self)
    }
}
