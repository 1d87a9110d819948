//! `marionette-matching`: the pure matching core on one pinned thread, with an
//! io_uring journal, snapshots, and the wire protocol on a Unix or TCP socket.

pub mod client;
pub mod config;
pub mod metrics;
pub mod net;
pub mod server;
pub mod service;
pub mod snapshot;
