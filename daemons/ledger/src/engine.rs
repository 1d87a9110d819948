//! The engine thread: the only owner of the [`LedgerService`].
//!
//! Each turn it takes up to `batch_commands_max` items from its inbox:
//! peers' commands (each peer's sequence must follow on from the last one
//! applied; a resend gets the retained outcome again, never a second
//! application) and matching's outputs (applied exactly once, in matching's
//! order, by its output sequence). The batch is made durable and applied by
//! the service, which hands its RocksDB write to the store writer; the
//! engine goes on with the next batch, and once the write is done (the next
//! batch is submitted, or the inbox is empty) the outcomes go to peers and
//! the commands the batch produced for matching leave the outbox. Reads do
//! not come here: the connection threads answer them from RocksDB, which
//! holds every acknowledged command.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ledger_api::{convert, spot, Command as LedgerCommand, LedgerError, Outcome, TimestampMs};
use link::{ConnectionId, Outgoing, Stream};
use matching_api::{Command, Event};
use shell::service_manager::Watchdog;
use wire::{Admission, Message, PeerId, ProtocolErrorCode};

use crate::config::LedgerConfig;
use crate::metrics::Metrics;
use crate::query::Progress;
use crate::service::{JournalEntry, LedgerService, ServiceError, Submitted};

/// The journal's peer id for matching's outputs; their peer sequence is
/// matching's output sequence. Peers may not use it.
pub const MATCHING_PEER: PeerId = u32::MAX;

/// The journal's peer id for the ledger's own commands (its config's
/// approval thresholds). Peers may not use it.
pub const SYSTEM_PEER: PeerId = u32::MAX - 1;

/// Forwarded commands, by forward sequence, for the link to matching to send.
pub type Forwards = Vec<(u64, Command)>;

pub enum Inbound {
    /// `closer` is a handle on the socket, to close it when the peer must go.
    Connect {
        connection: ConnectionId,
        peer: PeerId,
        subscribe: bool,
        outbox: SyncSender<Outgoing>,
        closer: Stream,
    },
    Command {
        connection: ConnectionId,
        peer: PeerId,
        sequence: u64,
        command: LedgerCommand,
    },
    Disconnect {
        connection: ConnectionId,
    },
    /// The link to matching is up; matching applied our forwards through `commands_applied`.
    MatchingUp {
        commands_applied: u64,
        sender: SyncSender<Forwards>,
    },
    /// One output of matching: `peer` and `peer_sequence` say whose command caused it.
    MatchingOutput {
        sequence: u64,
        peer: PeerId,
        peer_sequence: u64,
        events: Vec<Event>,
    },
    MatchingDown,
    Shutdown,
}

type Answer = Result<Outcome, LedgerError>;

struct Connection {
    id: ConnectionId,
    /// Whether it receives order updates.
    subscribe: bool,
    outbox: SyncSender<Outgoing>,
    closer: Stream,
}

struct Peer {
    /// The connection the peer currently speaks through.
    connection: Option<Connection>,
    /// The last sequence admitted (applied, or pending in this turn).
    admitted: u64,
    /// The last sequence whose outcome was sent (or, before a restart, lost).
    answered: u64,
    retained: VecDeque<(u64, Answer)>,
}

/// A batch submitted to the service whose RocksDB write is not known done:
/// its outcomes wait for it.
struct Unanswered {
    entries: Vec<JournalEntry>,
    /// When the engine took each entry.
    taken: Vec<Instant>,
    submitted: Submitted,
    started: Instant,
}

pub struct Engine {
    config: LedgerConfig,
    service: LedgerService,
    metrics: Arc<Metrics>,
    progress: Arc<Progress>,
    peers: HashMap<PeerId, Peer>,
    connections: HashMap<ConnectionId, PeerId>,
    pending: Vec<JournalEntry>,
    /// When the engine took each pending entry.
    pending_taken: Vec<Instant>,
    unanswered: Option<Unanswered>,
    /// The last matching output admitted (applied, or pending in this turn).
    matching_seen: u64,
    matching: Option<SyncSender<Forwards>>,
    /// The newest forward sequence handed to the current link.
    forwarded_sent: u64,
}

fn now_ms() -> TimestampMs {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as TimestampMs).unwrap_or(0)
}

impl Engine {
    pub fn new(config: LedgerConfig, service: LedgerService, metrics: Arc<Metrics>, progress: Arc<Progress>) -> Engine {
        let matching_seen = service.ledger().spot().counters().matching_applied;
        let engine = Engine {
            config,
            service,
            metrics,
            progress,
            peers: HashMap::new(),
            connections: HashMap::new(),
            pending: Vec::new(),
            pending_taken: Vec::new(),
            unanswered: None,
            matching_seen,
            matching: None,
            forwarded_sent: 0,
        };
        engine.publish_progress();
        engine
    }

    /// Journals the config's approval thresholds if they are not the ones
    /// in force (a fresh ledger's are the defaults): the change is applied
    /// like any command, so replay and the audit log see it.
    pub fn configure(&mut self) -> Result<(), ServiceError> {
        let thresholds = self.config.approvals;
        let in_force = self.service.ledger().operators().thresholds();
        if thresholds == in_force {
            return Ok(());
        }
        tracing::info!(?in_force, ?thresholds, "the config changes the approval thresholds; journaling the change");
        let peer_sequence = self.service.peer_applied(SYSTEM_PEER) + 1;
        self.queue(JournalEntry {
            peer: SYSTEM_PEER,
            peer_sequence,
            at_ms: now_ms(),
            command: LedgerCommand::Operators(ledger_api::operators::Command::Configure(thresholds)),
        });
        self.flush()
    }

    /// Runs until `Shutdown` or until every sender is gone. An error ends it:
    /// the in-memory state may be ahead of the disk, so the caller must exit
    /// non-zero and let start-up recover from the journal.
    /// The watchdog's heartbeats come from this loop, also when idle, so
    /// systemd sees a stuck engine, not just a live process.
    pub fn run(mut self, inbox: Receiver<Inbound>, mut watchdog: Watchdog) -> Result<(), ServiceError> {
        let batch_max = self.config.engine.batch_commands_max;
        let mut items = Vec::with_capacity(batch_max);
        loop {
            watchdog.beat();
            let first = if self.unanswered.is_some() {
                // A batch is being written: take what came meanwhile, or else
                // wait for the write and answer.
                match inbox.try_recv() {
                    Ok(item) => item,
                    Err(TryRecvError::Empty) => {
                        self.answer_written()?;
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => return self.flush(),
                }
            } else {
                // Woken for the next order expiry too, when nothing else comes.
                let until_expiry = self.next_expiry().map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
                match inbox.recv_timeout(until_expiry.map_or(watchdog.wait_max(), |until| until.min(watchdog.wait_max()))) {
                    Ok(item) => item,
                    Err(RecvTimeoutError::Timeout) => {
                        self.expire_due();
                        self.submit()?;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return self.flush(),
                }
            };
            items.push(first);
            while items.len() < batch_max {
                match inbox.try_recv() {
                    Ok(item) => items.push(item),
                    Err(_) => break,
                }
            }
            for item in items.drain(..) {
                match item {
                    Inbound::Command { connection, peer, sequence, command } => self.admit(connection, peer, sequence, command),
                    Inbound::MatchingOutput { sequence, peer, peer_sequence, events } => self.admit_matching(sequence, peer, peer_sequence, events),
                    Inbound::Connect { connection, peer, subscribe, outbox, closer } => {
                        // The Welcome must not promise what is still pending.
                        self.flush()?;
                        self.connect(Connection { id: connection, subscribe, outbox, closer }, peer);
                    }
                    Inbound::Disconnect { connection } => self.disconnect(connection),
                    Inbound::MatchingUp { .. } if self.halted() => {}
                    Inbound::MatchingUp { commands_applied, sender } => {
                        self.flush()?;
                        tracing::info!(commands_applied, outbox = self.service.outbox_len(), "link to matching up; resending what it has not applied");
                        self.service.confirm_forwarded(commands_applied);
                        self.matching = Some(sender);
                        self.forwarded_sent = commands_applied;
                        self.send_forwards();
                    }
                    Inbound::MatchingDown => self.matching = None,
                    Inbound::Shutdown => {
                        self.flush()?;
                        self.service.checkpoint()?;
                        tracing::info!(journal_applied = self.service.journal_applied(), "engine stopped cleanly");
                        return Ok(());
                    }
                }
            }
            self.expire_due();
            self.submit()?;
        }
    }

    /// When the ledger's clock next has something to do: an order or a
    /// quote to expire, a perpetual market's mark or funding.
    fn next_expiry(&self) -> Option<u64> {
        let ledger = self.service.ledger();
        [
            ledger.spot().next_expiry(),
            ledger.convert().next_expiry(),
            ledger.spot().next_perpetual_tick(),
            ledger.tokenization().next_tick(),
            ledger.donations().next_tick(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Journals the ledger's own ExpireOrders once its clock reaches the
    /// next order expiry, or ExpireQuotes the next quote's, or a perpetual
    /// Tick the next mark interval or funding time, or tokenization's Tick
    /// an offering's end or a tranche's vesting (one at a time).
    /// The commands carry no time: the entry's stamp is what the orders and
    /// quotes are measured against, so a replay expires the same.
    fn expire_due(&mut self) {
        let now = now_ms();
        if self.pending.iter().any(|entry| entry.peer == SYSTEM_PEER) {
            return;
        }
        let ledger = self.service.ledger();
        let command = if ledger.spot().next_expiry().is_some_and(|at| at <= now) {
            LedgerCommand::Spot(spot::Command::ExpireOrders)
        } else if ledger.convert().next_expiry().is_some_and(|at| at <= now) {
            LedgerCommand::Convert(convert::Command::ExpireQuotes)
        } else if ledger.spot().next_perpetual_tick().is_some_and(|at| at <= now) {
            LedgerCommand::Spot(spot::Command::Perpetual(ledger_api::perpetual::Command::Tick))
        } else if ledger.tokenization().next_tick().is_some_and(|at| at <= now) {
            LedgerCommand::Tokenization(ledger_api::tokenization::Command::Tick)
        } else if ledger.donations().next_tick().is_some_and(|at| at <= now) {
            LedgerCommand::Donations(ledger_api::donations::Command::Tick)
        } else {
            return;
        };
        let peer_sequence = self.service.peer_applied(SYSTEM_PEER) + 1;
        self.queue(JournalEntry { peer: SYSTEM_PEER, peer_sequence, at_ms: now, command });
    }

    fn peer(&mut self, peer: PeerId) -> &mut Peer {
        let applied = self.service.peer_applied(peer);
        self.peers.entry(peer).or_insert_with(|| Peer { connection: None, admitted: applied, answered: applied, retained: VecDeque::new() })
    }

    fn connect(&mut self, connection: Connection, peer: PeerId) {
        let commands_applied = self.service.peer_applied(peer);
        let outputs_last = self.service.journal_applied();
        let mut hello = Vec::new();
        wire::encode_frame(0, &Message::Welcome { commands_applied, outputs_last }, &mut hello);
        let _ = connection.outbox.try_send(Arc::new(hello));
        tracing::info!(connection = connection.id, peer, commands_applied, "peer connected");
        let id = connection.id;
        // A peer speaks through one connection at a time: the newest wins.
        if let Some(old) = self.peer(peer).connection.replace(connection) {
            self.connections.remove(&old.id);
            old.closer.shutdown();
        }
        self.connections.insert(id, peer);
    }

    fn disconnect(&mut self, connection: ConnectionId) {
        if let Some(peer) = self.connections.remove(&connection) {
            if let Some(state) = self.peers.get_mut(&peer) {
                if state.connection.as_ref().is_some_and(|c| c.id == connection) {
                    state.connection = None;
                }
            }
        }
    }

    fn admit(&mut self, connection: ConnectionId, peer: PeerId, sequence: u64, command: LedgerCommand) {
        if self.connections.get(&connection) != Some(&peer) {
            return; // from a connection this peer has since replaced
        }
        let metrics = self.metrics.clone();
        let state = self.peer(peer);
        match wire::admission(state.admitted, sequence) {
            Admission::Next => {}
            Admission::Duplicate => {
                metrics.duplicate_commands.inc();
                if sequence <= state.answered {
                    // Applied and answered before: answer again, never apply again.
                    let answer = state.retained.iter().find(|(s, _)| *s == sequence).map(|(_, a)| a.clone());
                    let mut bytes = Vec::new();
                    wire::encode_frame(0, &Message::LedgerOutcome { peer_sequence: sequence, outcome: answer }, &mut bytes);
                    self.send_to(peer, bytes);
                }
                // Otherwise it is pending, or written but not yet answered, and
                // its outcome goes to the current connection.
                return;
            }
            Admission::Gap { expected } => {
                let detail = format!("expected command sequence {expected} from peer {peer}, got {sequence}");
                tracing::warn!(peer, sequence, expected, "sequence gap; disconnecting the peer");
                self.refuse(peer, ProtocolErrorCode::SequenceGap, detail);
                return;
            }
        }
        state.admitted = sequence;
        self.queue(JournalEntry { peer, peer_sequence: sequence, at_ms: now_ms(), command });
    }

    /// Stops the link to matching for good (until a restart): matching sent
    /// what the ledger cannot settle, so nothing more from it is applied and
    /// nothing more is sent to it. The ledger keeps serving everything else;
    /// orders wait in the outbox. A restart links again, and the same output
    /// is refused again, not applied, so there is no crash loop.
    fn halt_matching(&mut self, reason: String) {
        let mut alarm = self.progress.matching_alarm.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if alarm.is_none() {
            tracing::error!(
                alarm = true,
                %reason,
                "stopped the link to matching: it reported what the ledger cannot settle. The ledger keeps serving; orders wait. \
                 Compare matching's journal with the ledger's orders, restore the one that is wrong, and restart"
            );
            *alarm = Some(reason);
        }
        drop(alarm);
        self.metrics.matching_halted.set(1);
        self.matching = None;
    }

    fn halted(&self) -> bool {
        self.progress.alarm().is_some()
    }

    fn admit_matching(&mut self, sequence: u64, peer: PeerId, peer_sequence: u64, events: Vec<Event>) {
        if self.halted() {
            return;
        }
        if peer == self.config.matching.peer_id {
            // Matching journaled our forward `peer_sequence` before publishing this.
            self.service.confirm_forwarded(peer_sequence);
        }
        match wire::admission(self.matching_seen, sequence) {
            Admission::Next => {}
            // Replayed after a reconnect, and already applied or pending.
            Admission::Duplicate => return,
            Admission::Gap { expected } => {
                tracing::error!(sequence, expected, "matching output sequence gap; resetting the link to replay");
                self.matching = None;
                return;
            }
        }
        self.matching_seen = sequence;
        self.queue(JournalEntry {
            peer: MATCHING_PEER,
            peer_sequence: sequence,
            at_ms: now_ms(),
            command: LedgerCommand::Spot(spot::Command::ApplyMatching { sequence, events }),
        });
    }

    fn queue(&mut self, entry: JournalEntry) {
        self.pending.push(entry);
        self.pending_taken.push(Instant::now());
    }

    fn refuse(&mut self, peer: PeerId, code: ProtocolErrorCode, detail: String) {
        if let Some(state) = self.peers.get_mut(&peer) {
            if let Some(connection) = state.connection.take() {
                self.connections.remove(&connection.id);
                let error = connection.outbox.try_send(Arc::new(wire::encode_error(code, detail)));
                // The writer closes after the error frame; if it cannot take it, close now.
                if error.is_err() || connection.outbox.try_send(Arc::new(Vec::new())).is_err() {
                    connection.closer.shutdown();
                }
            }
        }
    }

    fn send_to(&mut self, peer: PeerId, bytes: Vec<u8>) {
        self.send_shared(peer, Arc::new(bytes));
    }

    fn send_shared(&mut self, peer: PeerId, bytes: Outgoing) {
        let Some(state) = self.peers.get_mut(&peer) else { return };
        let Some(connection) = &state.connection else { return };
        match connection.outbox.try_send(bytes) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => tracing::warn!(peer, "peer is not reading its outcomes; disconnecting it (it reconnects and resends)"),
            Err(TrySendError::Disconnected(_)) => {}
        }
        if let Some(connection) = state.connection.take() {
            self.connections.remove(&connection.id);
            connection.closer.shutdown();
        }
    }

    /// Group commit, whole: the pending commands are journaled, applied and
    /// written, and every outcome is sent.
    fn flush(&mut self) -> Result<(), ServiceError> {
        self.submit()?;
        self.answer_written()
    }

    /// Journals and applies the pending commands and hands their write to
    /// the store writer. The batch before is answered while this one's
    /// journal syncs, as soon as RocksDB holds it.
    fn submit(&mut self) -> Result<(), ServiceError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let entries = std::mem::take(&mut self.pending);
        let taken = std::mem::take(&mut self.pending_taken);
        let staged = self.service.begin(&entries)?;
        if self.unanswered.is_some() {
            // Its write is shorter than this batch's sync: waiting for it
            // here answers it one sync earlier than after this batch.
            self.answer_written()?;
        }
        let submitted = self.service.finish(staged)?;
        // The batch's orders go to matching now, durable in the journal,
        // while RocksDB writes them: forwards need no reader to see them, and
        // a crash before the write replays the journal, outbox included.
        self.send_forwards();
        let times = submitted.times;
        self.metrics.journal_seconds.observe(times.journal.as_secs_f64());
        self.metrics.apply_seconds.observe(times.apply.as_secs_f64());
        self.metrics.encode_seconds.observe(times.encode.as_secs_f64());
        self.metrics.store_wait_seconds.observe(times.store_wait.as_secs_f64());
        self.observe_store_writes();
        let answered_before = self.unanswered.replace(Unanswered { entries, taken, submitted, started });
        debug_assert!(answered_before.is_none(), "the batch before was answered during this one's sync");
        Ok(())
    }

    /// Waits for the write of the last batch submitted and answers it.
    fn answer_written(&mut self) -> Result<(), ServiceError> {
        self.service.wait_written()?;
        self.observe_store_writes();
        if let Some(written) = self.unanswered.take() {
            self.answer(written);
        }
        Ok(())
    }

    fn observe_store_writes(&mut self) {
        for took in self.service.take_store_writes() {
            self.metrics.store_write_seconds.observe(took.as_secs_f64());
        }
    }

    /// Sends a written batch's outcomes and order updates, and forwards.
    fn answer(&mut self, batch: Unanswered) {
        let Unanswered { mut entries, mut taken, submitted: Submitted { outcomes, order_updates, through, .. }, started } = batch;
        let mut replies: HashMap<PeerId, Vec<u8>> = HashMap::new();
        let retained_max = self.config.engine.outcomes_retained_per_peer;
        // Everything is sent below: from taken to now is what a peer sees of the ledger.
        let answered = Instant::now();
        for ((entry, outcome), taken) in entries.iter().zip(outcomes).zip(&taken) {
            let seconds = answered.saturating_duration_since(*taken).as_secs_f64();
            if entry.peer == SYSTEM_PEER {
                if let Err(error) = &outcome {
                    tracing::error!(%error, "the ledger's own command was refused");
                }
                continue;
            }
            if entry.peer == MATCHING_PEER {
                self.metrics.matching_outputs.inc();
                self.metrics.matching_output_seconds.observe(seconds);
                match outcome {
                    Ok(_) => {}
                    Err(LedgerError::MatchingOutputRefused(reason)) => self.halt_matching(reason),
                    // An output after a refused one in the same batch.
                    Err(error) => tracing::error!(sequence = entry.peer_sequence, %error, "matching output refused"),
                }
                continue;
            }
            self.metrics.commands.inc();
            self.metrics.command_seconds.observe(seconds);
            if outcome.is_err() {
                self.metrics.rejections.inc();
            }
            let bytes = replies.entry(entry.peer).or_default();
            wire::encode_frame(0, &Message::LedgerOutcome { peer_sequence: entry.peer_sequence, outcome: Some(outcome.clone()) }, bytes);
            let state = self.peer(entry.peer);
            if state.retained.len() == retained_max {
                state.retained.pop_front();
            }
            state.retained.push_back((entry.peer_sequence, outcome));
            state.answered = entry.peer_sequence;
        }
        if self.pending.is_empty() {
            // Its memory serves the next batch.
            entries.clear();
            self.pending = entries;
            taken.clear();
            self.pending_taken = taken;
        }
        if !order_updates.is_empty() {
            let mut bytes = Vec::new();
            wire::encode_frame(through, &Message::OrderUpdates(order_updates), &mut bytes);
            let bytes = Arc::new(bytes);
            let subscribers: Vec<PeerId> = self.peers.iter().filter(|(_, p)| p.connection.as_ref().is_some_and(|c| c.subscribe)).map(|(id, _)| *id).collect();
            for peer in subscribers {
                // Outcomes first: a peer sees its command answered before the updates it caused.
                if let Some(own) = replies.remove(&peer) {
                    self.send_to(peer, own);
                }
                self.send_shared(peer, bytes.clone());
            }
        }
        for (peer, bytes) in replies {
            self.send_to(peer, bytes);
        }
        self.send_forwards();
        self.metrics.batches.inc();
        self.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
        self.publish_progress();
    }

    /// Hands the link every outbox entry it has not been given yet.
    fn send_forwards(&mut self) {
        let Some(sender) = &self.matching else { return };
        let forwards: Forwards = self.service.outbox_after(self.forwarded_sent).copied().collect();
        let Some(&(last, _)) = forwards.last() else { return };
        let count = forwards.len() as u64;
        match sender.try_send(forwards) {
            Ok(()) => {
                self.forwarded_sent = last;
                self.metrics.forwarded.inc_by(count);
            }
            Err(_) => {
                // The link is gone or stuck: drop it; on reconnect matching says where it is.
                tracing::warn!("the link to matching is not keeping up; resetting it");
                self.matching = None;
            }
        }
    }

    fn publish_progress(&self) {
        let journal_applied = self.service.journal_applied();
        let matching_applied = self.service.ledger().spot().counters().matching_applied;
        let outbox = self.service.outbox_len() as u64;
        self.progress.journal_applied.store(journal_applied, Ordering::Release);
        self.progress.matching_applied.store(matching_applied, Ordering::Release);
        self.progress.outbox_pending.store(outbox, Ordering::Release);
        self.metrics.journal_applied.set(journal_applied as i64);
        self.metrics.outbox_pending.set(outbox as i64);
    }
}
