//! Raft for the ledger's input log (issue 29), on openraft: its log store
//! over Marionette's journal ([`log_store`]), what a replica must never
//! forget between two starts ([`replica_state`]), and Raft's messages
//! between replicas over TCP ([`network`]), the cluster's file
//! ([`cluster`]), split votes broken ([`elections`]), a snapshot as one
//! file for openraft to send ([`snapshot_archive`]), and a replica started
//! from the cluster's file, the cluster formed once, and its status for
//! operators ([`replica`]).
//!
//! The journal is the log: an entry's index is a record's sequence less
//! one, its term in the record's header. What openraft asks of a log store
//! (entries readable as soon as they are appended, flushed before they are
//! acknowledged, a vote durable before it is answered, truncation without
//! a hole) is held by `tests/log_store.rs`, openraft's own storage suite
//! among them.

pub mod cluster;
pub mod elections;
pub mod log_store;
pub mod network;
pub mod replica;
pub mod replica_state;
pub mod snapshot_archive;

pub use log_store::{LogStore, LogStoreError, Opened};
pub use replica_state::{ReplicaState, StateError};

/// A replica's id in its cluster (`/etc/marionette/cluster.toml`).
pub type NodeId = u64;
