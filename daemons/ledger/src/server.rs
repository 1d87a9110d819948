//! Peer connections (gateways, marionettectl, tests): a reader and a writer
//! thread each, at most `listen.connections_max` of them. The reader hands
//! commands to the engine thread and answers reads itself from RocksDB; the
//! writer sends both.

use std::io::Write;
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;

use ledger_api::{operators, spot, Command};
use link::{Admission, ConnectionId, ConnectionLimit, FrameReader, Listener, Outgoing, Peer, ReadError, Stream};
use storage::Store;
use wire::{Message, ProtocolErrorCode, Role};

use crate::config::LedgerConfig;
use crate::engine::{Inbound, MATCHING_PEER, SYSTEM_PEER};
use crate::metrics::Metrics;
use crate::query::{self, Progress};

/// What every connection thread shares.
pub struct Shared {
    pub config: LedgerConfig,
    pub inbox: SyncSender<Inbound>,
    pub store: Arc<Store>,
    pub progress: Arc<Progress>,
    pub metrics: Arc<Metrics>,
}

pub fn accept_loop(listener: Listener, admission: Admission, shared: Arc<Shared>) {
    let metrics = shared.metrics.clone();
    let limit = ConnectionLimit {
        connections_max: shared.config.listen.connections_max,
        on_change: Arc::new(move |open| {
            metrics.connections.set(open as i64);
        }),
    };
    link::serve(listener, limit, admission, move |connection, stream, peer| serve_connection(connection, stream, &peer, &shared));
}

fn refuse(stream: &mut Stream, code: ProtocolErrorCode, detail: &str) {
    let _ = stream.write_all(&wire::encode_error(code, detail));
}

/// Why no peer may send `command`, if none may: matching's outputs come
/// only over the ledger's own link, the thresholds only from its config,
/// and an operator's action only inside a proposal that names the operator.
fn not_for_peers(command: &Command) -> Option<&'static str> {
    match command {
        Command::Spot(spot::Command::ApplyMatching { .. }) => Some("only the ledger's link to matching applies matching outputs"),
        Command::Operators(operators::Command::Configure(_)) => Some("only the ledger's own config sets the approval thresholds"),
        command if command.operator_action().is_some() => {
            Some("an operator's action comes inside a proposal that names the operator (operators::Command::Propose)")
        }
        _ => None,
    }
}

/// Why a peer in `role` may not send `command`, if it may not: user
/// commands come from gateways (and test harnesses, trusted users only); an
/// operator's connection sends operator commands only.
fn not_for_role(role: Role, command: &Command) -> Option<&'static str> {
    match (role, command) {
        (Role::Gateway | Role::Test, _) | (Role::Operator, Command::Operators(_)) => None,
        (Role::Operator, _) => Some("an operator's connection sends operator commands only"),
        (Role::Ledger, _) => Some("the ledger role sends nothing to a ledger"),
    }
}

/// Whether a peer in `role` may ask for every order's updates (they name users).
fn may_subscribe(role: Role) -> bool {
    matches!(role, Role::Gateway | Role::Test)
}

fn serve_connection(connection: ConnectionId, mut stream: Stream, proven: &Peer, shared: &Shared) {
    let mut reader = FrameReader::new(shared.config.listen.frame_bytes_max);
    // Set by Hello: the peer, its role and the queue its writer drains.
    let mut peer: Option<(u32, Role, SyncSender<Outgoing>)> = None;
    loop {
        let frame = match reader.next(&mut stream) {
            Ok(frame) => frame,
            Err(ReadError::Closed | ReadError::Io(_)) => break,
            Err(ReadError::Wire(error)) => {
                tracing::warn!(connection, %error, "undecodable frame; closing the connection");
                refuse(&mut stream, ProtocolErrorCode::MalformedFrame, &error.to_string());
                break;
            }
        };
        match (frame.message, &peer) {
            (Message::Hello { peer: id, role, subscribe, .. }, None) => {
                if id == MATCHING_PEER || id == SYSTEM_PEER || role == Role::Ledger {
                    refuse(&mut stream, ProtocolErrorCode::Forbidden, "that peer id or role is reserved");
                    break;
                }
                if !proven.may_claim(role) {
                    tracing::warn!(connection, peer = id, ?role, %proven, "a peer claimed a role it may not; closing the connection");
                    refuse(&mut stream, ProtocolErrorCode::Forbidden, &format!("{proven} may not claim the role {role:?}"));
                    break;
                }
                if subscribe && !may_subscribe(role) {
                    refuse(&mut stream, ProtocolErrorCode::Forbidden, &format!("the role {role:?} may not subscribe to order updates"));
                    break;
                }
                tracing::info!(connection, peer = id, ?role, %proven, "peer says hello");
                let (outbox, outgoing) = mpsc::sync_channel::<Outgoing>(shared.config.listen.peer_queue_frames_max);
                let (Ok(writer_stream), Ok(closer)) = (stream.try_clone(), stream.try_clone()) else { break };
                if link::spawn_writer(connection, writer_stream, outgoing).is_err() {
                    break;
                }
                if shared.inbox.send(Inbound::Connect { connection, peer: id, subscribe, outbox: outbox.clone(), closer }).is_err() {
                    break;
                }
                peer = Some((id, role, outbox));
            }
            (Message::LedgerCommand(command), Some((id, role, _))) if not_for_peers(&command).or(not_for_role(*role, &command)).is_some() => {
                let reason = not_for_peers(&command).or(not_for_role(*role, &command)).unwrap_or_default();
                tracing::warn!(connection, peer = id, reason, "a peer sent a command peers may not send; closing the connection");
                refuse(&mut stream, ProtocolErrorCode::Forbidden, reason);
                break;
            }
            (Message::LedgerCommand(command), Some((id, _, _))) => {
                if shared.inbox.send(Inbound::Command { connection, peer: *id, sequence: frame.sequence, command }).is_err() {
                    break;
                }
            }
            (Message::LedgerQuery(request), Some((_, _, outbox))) => {
                shared.metrics.queries.inc();
                let answer = query::answer(&shared.store, &shared.progress, &request);
                let mut bytes = Vec::new();
                wire::encode_frame(frame.sequence, &Message::LedgerAnswer(answer), &mut bytes);
                // Blocks while the writer's queue is full: a peer that does
                // not read its answers stops being read from.
                if outbox.send(Arc::new(bytes)).is_err() {
                    break;
                }
            }
            (Message::Heartbeat, _) => {}
            (_, None) => {
                refuse(&mut stream, ProtocolErrorCode::HelloExpected, "send Hello first");
                break;
            }
            (other, Some(_)) => {
                tracing::warn!(connection, message = ?other, "unexpected message from a peer; ignoring it");
            }
        }
    }
    stream.shutdown();
    let _ = shared.inbox.send(Inbound::Disconnect { connection });
}
