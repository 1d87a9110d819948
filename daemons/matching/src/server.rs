//! Peer connections: a reader and a writer thread each, at most
//! `connections_max` of them (see `link::serve`). The reader decodes frames
//! and hands commands to the engine thread; the writer sends what the engine
//! publishes.

use std::io::Write;
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;

use link::{Admission, ConnectionId, ConnectionLimit, FrameReader, Listener, Peer, ReadError, Stream};
use wire::{Message, ProtocolErrorCode, Role};

use crate::config::MatchingConfig;
use crate::metrics::Metrics;
use crate::service::{Inbound, Outgoing};

pub fn accept_loop(listener: Listener, admission: Admission, config: MatchingConfig, inbox: SyncSender<Inbound>, metrics: Arc<Metrics>) {
    let limit = ConnectionLimit {
        connections_max: config.listen.connections_max,
        on_change: Arc::new(move |open| {
            metrics.connections.set(open as i64);
        }),
    };
    link::serve(listener, limit, admission, move |connection, stream, peer| serve_connection(connection, stream, &peer, &config, &inbox));
}

/// Orders and their outputs (which name users) are the ledger's business:
/// only it (and test harnesses, trusted users only) sends commands or
/// subscribes. Anyone admitted may read the book's depth.
fn may_trade(role: Role) -> bool {
    matches!(role, Role::Ledger | Role::Test)
}

fn refuse(stream: &mut Stream, detail: &str) {
    let _ = stream.write_all(&wire::encode_error(ProtocolErrorCode::Forbidden, detail));
}

fn serve_connection(connection: ConnectionId, mut stream: Stream, proven: &Peer, config: &MatchingConfig, inbox: &SyncSender<Inbound>) {
    let mut reader = FrameReader::new(config.listen.frame_bytes_max);
    let mut peer = None;
    loop {
        let frame = match reader.next(&mut stream) {
            Ok(frame) => frame,
            Err(ReadError::Closed | ReadError::Io(_)) => break,
            Err(ReadError::Wire(error)) => {
                tracing::warn!(connection, %error, "undecodable frame; closing the connection");
                let _ = stream.write_all(&wire::encode_error(ProtocolErrorCode::MalformedFrame, error.to_string()));
                break;
            }
        };
        match (frame.message, peer) {
            (Message::Hello { peer: id, role, outputs_applied, subscribe }, None) => {
                if !proven.may_claim(role) {
                    tracing::warn!(connection, peer = id, ?role, %proven, "a peer claimed a role it may not; closing the connection");
                    refuse(&mut stream, &format!("{proven} may not claim the role {role:?}"));
                    break;
                }
                if subscribe && !may_trade(role) {
                    refuse(&mut stream, &format!("the role {role:?} may not subscribe to matching's outputs"));
                    break;
                }
                tracing::info!(connection, peer = id, ?role, %proven, outputs_applied, "peer connected");
                let (outbox, outgoing) = mpsc::sync_channel::<Outgoing>(config.listen.peer_queue_batches_max);
                let Ok(writer_stream) = stream.try_clone() else {
                    break;
                };
                if link::spawn_writer(connection, writer_stream, outgoing).is_err() {
                    break;
                }
                if inbox.send(Inbound::Connect { connection, peer: id, outputs_applied, subscribe, outbox }).is_err() {
                    break;
                }
                peer = Some((id, role));
            }
            (Message::Command(_), Some((id, role))) if !may_trade(role) => {
                tracing::warn!(connection, peer = id, ?role, "a peer that may not trade sent a command; closing the connection");
                refuse(&mut stream, &format!("the role {role:?} may not send orders: only the ledger does"));
                break;
            }
            (Message::Command(command), Some((id, _))) => {
                if inbox.send(Inbound::Command { connection, peer: id, sequence: frame.sequence, command }).is_err() {
                    break;
                }
            }
            (Message::DepthQuery { market, levels }, Some(_)) => {
                if inbox.send(Inbound::Depth { connection, request: frame.sequence, market, levels }).is_err() {
                    break;
                }
            }
            (Message::Heartbeat, _) => {}
            (_, None) => {
                let _ = stream.write_all(&wire::encode_error(ProtocolErrorCode::HelloExpected, "send Hello first"));
                break;
            }
            (other, Some(_)) => {
                tracing::warn!(connection, message = ?other, "unexpected message from a peer; ignoring it");
            }
        }
    }
    stream.shutdown();
    let _ = inbox.send(Inbound::Disconnect { connection });
}
