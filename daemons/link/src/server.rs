//! The accept loop every daemon runs: one thread per connection, at most
//! `connections_max` at once; a connection over the limit is told why and
//! closed. Each connection first proves who it is ([`Admission`]): nothing
//! of it is read before.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use wire::ProtocolErrorCode;

use crate::net::{Listener, Stream};
use crate::peers::{LinkConfig, Peer, PeerError, UnixPeers};
use crate::tls::{LinkTls, TlsError};

pub type ConnectionId = u64;
/// Bytes of one or more encoded frames, shared between the peers they go to.
pub type Outgoing = Arc<Vec<u8>>;

/// How many connections may be open, and where to report the count.
#[derive(Clone)]
pub struct ConnectionLimit {
    pub connections_max: usize,
    /// Called with the number of open connections whenever it changes.
    pub on_change: Arc<dyn Fn(usize) + Send + Sync>,
}

/// Who may connect: local users by SO_PEERCRED, `tcp:` peers by mutual TLS.
#[derive(Clone, Debug)]
pub struct Admission {
    pub unix: UnixPeers,
    pub tls: Option<LinkTls>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("link TLS: {0}")]
    Tls(#[from] TlsError),
}

impl Admission {
    pub fn from_config(config: &LinkConfig) -> Result<Admission, AdmissionError> {
        Ok(Admission { unix: UnixPeers::resolve(config), tls: LinkTls::load(config)? })
    }

    /// Who `stream` is; a TCP stream comes back as the TLS session's plaintext.
    /// A refused local user is told why before the connection closes.
    pub fn admit(&self, stream: Stream) -> Result<(Stream, Peer), PeerError> {
        match stream {
            Stream::Unix(socket) => match self.unix.identify_socket(&socket) {
                Ok(peer) => Ok((Stream::Unix(socket), peer)),
                Err(error) => {
                    let _ = (&socket).write_all(&wire::encode_error(ProtocolErrorCode::Forbidden, error.to_string()));
                    Err(error)
                }
            },
            Stream::Tcp(socket) => match &self.tls {
                Some(tls) => tls.accept(socket),
                None => Err(PeerError::TlsNotConfigured),
            },
        }
    }
}

/// Accepts forever, running `handle` for each admitted connection on its own thread.
pub fn serve<H>(listener: Listener, limit: ConnectionLimit, admission: Admission, handle: H)
where
    H: Fn(ConnectionId, Stream, Peer) + Send + Sync + 'static,
{
    let admission = Arc::new(admission);
    let handle = Arc::new(handle);
    let open = Arc::new(AtomicUsize::new(0));
    let next_id = AtomicU64::new(1);
    loop {
        let mut stream = match listener.accept() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
        };
        if open.load(Ordering::Acquire) >= limit.connections_max {
            tracing::warn!(limit = limit.connections_max, "connection refused: at listen.connections_max");
            let _ = stream.write_all(&wire::encode_error(ProtocolErrorCode::TooManyConnections, "the server is at its connection limit"));
            continue;
        }
        (limit.on_change)(open.fetch_add(1, Ordering::AcqRel) + 1);
        let connection = next_id.fetch_add(1, Ordering::Relaxed);
        let (handle, open, limit, admission) = (handle.clone(), open.clone(), limit.clone(), admission.clone());
        let spawned = std::thread::Builder::new().name(format!("peer-{connection}")).spawn(move || {
            match admission.admit(stream) {
                Ok((stream, peer)) => handle(connection, stream, peer),
                Err(error) => tracing::warn!(connection, %error, "connection refused: the peer did not prove who it is"),
            }
            (limit.on_change)(open.fetch_sub(1, Ordering::AcqRel) - 1);
        });
        if let Err(error) = spawned {
            // Out of threads: the connection was dropped with the closure; keep serving the others.
            tracing::error!(%error, "cannot start a connection thread; the connection was closed");
        }
    }
}

/// Writes what arrives on `outgoing` to `stream` on a thread of its own,
/// until every sender is dropped, a write fails, or an empty buffer arrives
/// (a request to close); then closes the stream so that the connection's
/// reader stops too. An error (out of threads) means
/// the caller must close the connection.
pub fn spawn_writer(connection: ConnectionId, mut stream: Stream, outgoing: Receiver<Outgoing>) -> std::io::Result<()> {
    std::thread::Builder::new().name(format!("peer-{connection}-writer")).spawn(move || {
        for bytes in outgoing {
            if bytes.is_empty() || stream.write_all(&bytes).is_err() {
                break;
            }
        }
        stream.shutdown();
    })?;
    Ok(())
}
