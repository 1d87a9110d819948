//! Peer connections (gateways, marionettectl, tests): a reader, a query and
//! a writer thread each, at most `listen.connections_max` of them. The
//! reader hands commands to the engine thread and reads to the query
//! thread, which answers them from RocksDB, so that a heavy read never holds
//! up the orders behind it on the same connection; the writer sends both.

use std::io::Write;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_api::{convert, operators, spot, Command, Query, QueryError};
use link::{Admission, ConnectionId, ConnectionLimit, FrameReader, Listener, Outgoing, Peer, ReadError, Stream};
use wire::{Message, ProtocolErrorCode, Role};

use crate::config::LedgerConfig;
use crate::engine::{Inbound, MATCHING_PEER, SYSTEM_PEER};
use crate::metrics::Metrics;
use crate::query::{self, Progress};
use crate::service::StoreHandle;

/// What every connection thread shares.
pub struct Shared {
    pub config: LedgerConfig,
    pub inbox: SyncSender<Inbound>,
    /// The database reads are answered from (a replica's is replaced by a snapshot's install).
    pub store: StoreHandle,
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

/// Reads a connection may have waiting for its query thread; beyond them a
/// read is answered Unavailable at once rather than stalling the commands
/// behind it.
pub const READS_WAITING_MAX: usize = 1024;

/// How often a connection whose reads are being refused is warned about.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(1);

/// A read waiting for its connection's query thread: its frame's sequence and the query.
type Read = (u64, Query);

/// Answers one connection's reads in order, until the connection ends.
fn spawn_query_thread(connection: ConnectionId, shared: &Shared, outbox: SyncSender<Outgoing>) -> std::io::Result<SyncSender<Read>> {
    let (reads, waiting) = mpsc::sync_channel::<Read>(READS_WAITING_MAX);
    let (store, progress) = (shared.store.clone(), shared.progress.clone());
    std::thread::Builder::new().name(format!("ledger-reads-{connection}")).spawn(move || {
        for (sequence, query) in waiting {
            let answer = match store.current() {
                Some(store) => query::answer(&store, &progress, &query),
                // A snapshot is being installed: a moment.
                None => Err(ledger_api::QueryError::Unavailable),
            };
            // Blocks while the writer's queue is full: a peer that does not
            // read its answers gets no more of them, and its reads wait.
            if outbox.send(answer_frame(sequence, answer)).is_err() {
                break;
            }
        }
    })?;
    Ok(reads)
}

fn answer_frame(sequence: u64, answer: Result<ledger_api::Answer, QueryError>) -> Outgoing {
    let mut bytes = Vec::new();
    wire::encode_frame(sequence, &Message::LedgerAnswer(answer), &mut bytes);
    Arc::new(bytes)
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
        Command::Spot(spot::Command::ExpireOrders) => Some("only the ledger's own clock expires orders"),
        Command::Convert(convert::Command::ExpireQuotes) => Some("only the ledger's own clock expires quotes"),
        Command::Spot(spot::Command::Perpetual(ledger_api::perpetual::Command::Tick)) => {
            Some("only the ledger's own clock marks perpetual markets and pays their funding")
        }
        Command::Tokenization(ledger_api::tokenization::Command::Tick) => Some("only the ledger's own clock closes offerings and vests tranches"),
        Command::Donations(ledger_api::donations::Command::Tick) => Some("only the ledger's own clock ends campaigns and closes matching pools"),
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
    // Set by Hello: the peer, its role, the queue its writer drains and the one its query thread does.
    let mut peer: Option<(u32, Role, SyncSender<Outgoing>, SyncSender<Read>)> = None;
    // Reads refused since the last warning: a peer flooding reads gets a
    // warning a second with their count, not a log line for each.
    let (mut reads_refused, mut refusal_warned_at) = (0u64, None::<Instant>);
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
                let Ok(reads) = spawn_query_thread(connection, shared, outbox.clone()) else { break };
                if shared.inbox.send(Inbound::Connect { connection, peer: id, subscribe, outbox: outbox.clone(), closer }).is_err() {
                    break;
                }
                peer = Some((id, role, outbox, reads));
            }
            (Message::LedgerCommand(command), Some((id, role, ..))) if not_for_peers(&command).or(not_for_role(*role, &command)).is_some() => {
                let reason = not_for_peers(&command).or(not_for_role(*role, &command)).unwrap_or_default();
                tracing::warn!(connection, peer = id, reason, "a peer sent a command peers may not send; closing the connection");
                refuse(&mut stream, ProtocolErrorCode::Forbidden, reason);
                break;
            }
            (Message::LedgerCommand(command), Some((id, ..))) => {
                if shared.inbox.send(Inbound::Command { connection, peer: *id, sequence: frame.sequence, command }).is_err() {
                    break;
                }
            }
            (Message::LedgerQuery(request), Some((_, _, outbox, reads))) => {
                shared.metrics.queries.inc();
                match reads.try_send((frame.sequence, request)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        shared.metrics.queries_refused.inc();
                        reads_refused += 1;
                        if refusal_warned_at.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY) {
                            tracing::warn!(
                                connection,
                                refused_since_last_warning = reads_refused,
                                waiting = READS_WAITING_MAX,
                                "a peer's reads are queued to the limit; answering Unavailable until they drain"
                            );
                            (reads_refused, refusal_warned_at) = (0, Some(Instant::now()));
                        }
                        if outbox.send(answer_frame(frame.sequence, Err(QueryError::Unavailable))).is_err() {
                            break;
                        }
                    }
                    Err(TrySendError::Disconnected(_)) => break,
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
