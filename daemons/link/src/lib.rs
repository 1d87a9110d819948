//! Connections between Marionette's daemons.
//!
//! Everything here is transport: where a daemon listens ([`Address`]), the
//! sockets behind it ([`Stream`], [`Listener`]), who is on the other end
//! ([`Peer`]: SO_PEERCRED on Unix sockets, mutual TLS over TCP, [`tls`]) and
//! the site's certificates for it ([`pki`]), reading whole frames off a
//! byte stream ([`FrameReader`]), a blocking client that says Hello
//! ([`Client`]), the accept loop that admits and bounds connections
//! ([`serve`]), and the tiny HTTP endpoint for Prometheus ([`http::serve`]).
//! What the frames mean is each daemon's business; how they are encoded is
//! `wire`'s.

mod client;
pub mod http;
mod net;
mod peers;
pub mod pki;
mod reader;
mod server;
pub mod tls;

use std::path::PathBuf;

pub use client::{Client, NotLeader, Welcome};
pub use net::{Listener, Stream};
pub use peers::{CertifiedRole, LinkConfig, Peer, PeerError, UnixPeers};
pub use reader::{FrameReader, ReadError};
pub use server::{serve, spawn_writer, Admission, AdmissionError, ConnectionId, ConnectionLimit, Outgoing};
pub use tls::LinkTls;

/// Where a daemon listens or a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl Address {
    /// `unix:/path/to.sock` or `tcp:host:port`.
    pub fn parse(text: &str) -> Result<Address, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            Ok(Address::Unix(path.into()))
        } else if let Some(host_port) = text.strip_prefix("tcp:") {
            if !host_port.contains(':') {
                return Err("tcp: needs host:port".into());
            }
            Ok(Address::Tcp(host_port.into()))
        } else {
            Err(format!("{text:?} must start with unix: or tcp:"))
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Tcp(host_port) => write!(f, "tcp:{host_port}"),
        }
    }
}
