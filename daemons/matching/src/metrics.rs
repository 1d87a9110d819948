//! Prometheus metrics, served as text on `listen.metrics_address`.

use std::net::TcpListener;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use matching_core::Event;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub commands: Counter,
    pub duplicate_commands: Counter,
    pub batches: Counter,
    pub fills: Counter,
    pub rejections: Counter,
    pub connections: Gauge<i64, AtomicI64>,
    pub subscribers: Gauge<i64, AtomicI64>,
    pub output_sequence: Gauge<i64, AtomicI64>,
    pub journal_batch_seconds: Histogram,
    /// The order path's stages (see `scripts/bench gateway`'s breakdown).
    pub command_seconds: Histogram,
    pub apply_seconds: Histogram,
    pub journal_sync_wait_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("marionette_matching");
        let metrics = Metrics {
            commands: Counter::default(),
            duplicate_commands: Counter::default(),
            batches: Counter::default(),
            fills: Counter::default(),
            rejections: Counter::default(),
            connections: Gauge::default(),
            subscribers: Gauge::default(),
            output_sequence: Gauge::default(),
            journal_batch_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            command_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            apply_seconds: Histogram::new(exponential_buckets(0.000_001, 2.0, 24)),
            journal_sync_wait_seconds: Histogram::new(exponential_buckets(0.000_001, 2.0, 24)),
            registry: Registry::default(),
        };
        registry.register("commands", "Commands journaled and applied", metrics.commands.clone());
        registry.register("duplicate_commands", "Resent commands dropped because they were already applied", metrics.duplicate_commands.clone());
        registry.register("batches", "Group commits", metrics.batches.clone());
        registry.register("fills", "Trades", metrics.fills.clone());
        registry.register("rejections", "Commands rejected with a code", metrics.rejections.clone());
        registry.register("connections", "Open peer connections", metrics.connections.clone());
        registry.register("subscribers", "Peers receiving outputs", metrics.subscribers.clone());
        registry.register("output_sequence", "Last durable journal sequence", metrics.output_sequence.clone());
        registry.register("journal_batch_seconds", "Journal write + fdatasync + apply time per group commit", metrics.journal_batch_seconds.clone());
        registry.register("command_seconds", "A command, from the engine taking it to its output published", metrics.command_seconds.clone());
        registry.register(
            "apply_seconds",
            "Per group commit: encoding its commands for the journal and matching them (while the journal writes and syncs)",
            metrics.apply_seconds.clone(),
        );
        registry.register(
            "journal_sync_wait_seconds",
            "Per group commit: waiting for the journal's write and fdatasync once its commands are matched",
            metrics.journal_sync_wait_seconds.clone(),
        );
        Metrics { registry, ..metrics }
    }

    pub fn count_events(&self, events: &[Event]) {
        for event in events {
            match event {
                Event::Fill(_) => {
                    self.fills.inc();
                }
                Event::Rejected { .. } | Event::MarketRejected { .. } => {
                    self.rejections.inc();
                }
                _ => {}
            }
        }
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

/// Serves `GET /metrics` and `GET /healthz` on `listener`, forever.
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    link::http::serve(listener, || metrics.render());
}
