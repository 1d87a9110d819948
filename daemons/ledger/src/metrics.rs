//! Prometheus metrics, served as text on `listen.metrics_address`.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub commands: Counter,
    pub rejections: Counter,
    pub duplicate_commands: Counter,
    pub matching_outputs: Counter,
    pub forwarded: Counter,
    pub queries: Counter,
    pub queries_refused: Counter,
    pub batches: Counter,
    pub connections: Gauge<i64, AtomicI64>,
    pub matching_connected: Gauge<i64, AtomicI64>,
    pub matching_halted: Gauge<i64, AtomicI64>,
    pub journal_applied: Gauge<i64, AtomicI64>,
    pub outbox_pending: Gauge<i64, AtomicI64>,
    /// A replica's Raft: its term, whether it leads, the last log index it applied.
    pub replica_term: Gauge<i64, AtomicI64>,
    pub replica_leading: Gauge<i64, AtomicI64>,
    pub replica_applied_index: Gauge<i64, AtomicI64>,
    pub batch_seconds: Histogram,
    /// The order path's stages (see `scripts/bench gateway`'s breakdown).
    pub command_seconds: Histogram,
    pub matching_output_seconds: Histogram,
    pub journal_seconds: Histogram,
    pub apply_seconds: Histogram,
    pub encode_seconds: Histogram,
    pub store_wait_seconds: Histogram,
    pub store_write_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("marionette_ledger");
        let metrics = Metrics {
            commands: Counter::default(),
            rejections: Counter::default(),
            duplicate_commands: Counter::default(),
            matching_outputs: Counter::default(),
            forwarded: Counter::default(),
            queries: Counter::default(),
            queries_refused: Counter::default(),
            batches: Counter::default(),
            connections: Gauge::default(),
            matching_connected: Gauge::default(),
            matching_halted: Gauge::default(),
            journal_applied: Gauge::default(),
            outbox_pending: Gauge::default(),
            replica_term: Gauge::default(),
            replica_leading: Gauge::default(),
            replica_applied_index: Gauge::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            command_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            matching_output_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            journal_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            apply_seconds: Histogram::new(exponential_buckets(0.000_001, 2.0, 24)),
            encode_seconds: Histogram::new(exponential_buckets(0.000_001, 2.0, 24)),
            store_wait_seconds: Histogram::new(exponential_buckets(0.000_001, 2.0, 24)),
            store_write_seconds: Histogram::new(exponential_buckets(0.000_001, 2.0, 24)),
            registry: Registry::default(),
        };
        registry.register("commands", "Peer commands journaled and applied", metrics.commands.clone());
        registry.register("rejections", "Commands refused with a business code (nothing changed)", metrics.rejections.clone());
        registry.register(
            "duplicate_commands",
            "Resent commands answered from retained outcomes without applying them again",
            metrics.duplicate_commands.clone(),
        );
        registry.register("matching_outputs", "Matching outputs journaled and applied (fills, cancels, acceptances)", metrics.matching_outputs.clone());
        registry.register("forwarded", "Commands sent to matching (resends after a reconnect included)", metrics.forwarded.clone());
        registry.register("queries", "Reads answered", metrics.queries.clone());
        registry.register("queries_refused", "Reads answered Unavailable because the connection had too many waiting", metrics.queries_refused.clone());
        registry.register("batches", "Group commits", metrics.batches.clone());
        registry.register("connections", "Open peer connections", metrics.connections.clone());
        registry.register("matching_connected", "1 while the link to matching is up", metrics.matching_connected.clone());
        registry.register(
            "matching_halted",
            "1 once the ledger stopped its link to matching over an output it could not settle (the log says what it saw)",
            metrics.matching_halted.clone(),
        );
        registry.register("journal_applied", "Last durable and applied journal sequence", metrics.journal_applied.clone());
        registry.register("outbox_pending", "Commands forwarded to matching and not yet confirmed by it", metrics.outbox_pending.clone());
        registry.register("replica_term", "A replica's Raft term (0 with its own journal)", metrics.replica_term.clone());
        registry.register(
            "replica_leading",
            "1 while this replica leads its cluster and serves peers (after applying everything committed before its term)",
            metrics.replica_leading.clone(),
        );
        registry.register("replica_applied_index", "The last Raft log index this replica applied (-1 before its first)", metrics.replica_applied_index.clone());
        registry.register("batch_seconds", "Journal write + fdatasync + apply + RocksDB write per group commit", metrics.batch_seconds.clone());
        registry.register(
            "command_seconds",
            "A peer's command, from the engine taking it to its outcome sent (its group commit and RocksDB write included)",
            metrics.command_seconds.clone(),
        );
        registry.register(
            "matching_output_seconds",
            "A matching output, from the engine taking it to the order updates it caused sent",
            metrics.matching_output_seconds.clone(),
        );
        registry.register("journal_seconds", "Per group commit: the journal's write and fdatasync (the apply runs meanwhile)", metrics.journal_seconds.clone());
        registry.register("apply_seconds", "Per group commit: applying its commands in the core", metrics.apply_seconds.clone());
        registry.register("encode_seconds", "Per group commit: checking the invariants and encoding its RocksDB batch", metrics.encode_seconds.clone());
        registry.register("store_wait_seconds", "Per group commit: waiting for the RocksDB write of the batch before", metrics.store_wait_seconds.clone());
        registry.register("store_write_seconds", "Per group commit: its RocksDB write, on the store writer thread", metrics.store_write_seconds.clone());
        Metrics { registry, ..metrics }
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
