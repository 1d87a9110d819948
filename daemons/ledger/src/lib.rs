//! `marionette-ledger`: the system of record for money. The pure ledger core
//! behind an io_uring journal and RocksDB ([`service`]), one engine thread
//! that owns it ([`engine`]), peers served over the wire protocol
//! ([`server`], reads in [`query`]), and a durable link to matching
//! ([`matching_link`]); the ledger as a Raft replica's state machine
//! ([`replicated`], issue 29, not yet what the daemon runs).

pub mod config;
pub mod engine;
pub mod matching_link;
pub mod metrics;
pub mod query;
pub mod replicated;
pub mod schema;
pub mod server;
pub mod service;
