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
//!
//! On a replica of a cluster (issue 29) the log is Raft's: the service is
//! the state machine's ([`crate::replicated`]), and only the leader's
//! engine serves peers. It proposes each batch (several may be in flight,
//! in order) and answers it once Raft says it is committed and applied;
//! a follower turns peers away with the leader's address. On taking the
//! lead it first applies everything committed before (the read index),
//! so that peers' sequences are the log's; a command a peer resends to it
//! that the old leader got committed after all is skipped when applied.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
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
use crate::replicated::{LedgerMachine, LedgerRaft, MachineError};
use crate::service::{Committed, JournalEntry, LedgerService, ServiceError, Submitted};

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
    /// A replica's: a proposal was answered, or the replica's role changed.
    Wake,
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error("Raft stopped on this replica ({0}); see the log above for why, fix it, and start the daemon again")]
    RaftStopped(String),
}

type Answer = Result<Outcome, LedgerError>;

/// What a replica's engine drives: the state machine it reads, Raft it
/// proposes to, and where the other replicas serve peers.
pub struct ReplicaLedger {
    pub machine: LedgerMachine,
    pub raft: openraft::Raft<LedgerRaft>,
    pub id: consensus::NodeId,
    /// Each replica's ledger address (cluster.toml), for the leader's hint.
    pub ledger_addresses: BTreeMap<consensus::NodeId, String>,
    pub runtime: tokio::runtime::Handle,
    /// How long proposals may wait for their commit before the replica
    /// stops leading: a leader cut off from its majority lets its peers go.
    pub commit_timeout: Duration,
}

/// Batches proposed and not yet answered, at most: beyond, the engine
/// waits for the oldest.
const IN_FLIGHT_MAX: usize = 64;

/// How a proposal ended.
enum Reply {
    Committed(Committed),
    /// Not committed by this leader (it lost the lead, or Raft stopped): a
    /// later leader may still commit it; its peers resend, and the copy
    /// is skipped.
    Lost(String),
}

/// A batch proposed to Raft whose reply has not been handled.
struct InFlight {
    id: u64,
    senders: Vec<(PeerId, u64)>,
    taken: Vec<Instant>,
    started: Instant,
    reply: Option<Reply>,
}

struct Replica {
    ledger: ReplicaLedger,
    in_flight: VecDeque<InFlight>,
    next_batch: u64,
    replies: mpsc::Sender<(u64, Reply)>,
    replied: Receiver<(u64, Reply)>,
    /// Wakes the engine when a reply comes or the role changes.
    wake: SyncSender<Inbound>,
    /// The term this replica leads in and serves peers, once it applied
    /// everything committed before it.
    serving: Option<u64>,
}

/// The ledger the engine drives.
// One per process: boxing the one-host service would add a pointer to its hot path for nothing.
#[allow(clippy::large_enum_variant)]
enum Ledgers {
    /// One host with its own journal: the engine owns the service.
    Own(LedgerService),
    /// A replica: the service is Raft's state machine's.
    Replica(Box<Replica>),
}

/// A batch whose outcomes are known and may be sent.
struct Answered {
    senders: Vec<(PeerId, u64)>,
    taken: Vec<Instant>,
    /// `None`: skipped, applied before (a replica's log held it twice).
    outcomes: Vec<Option<Answer>>,
    order_updates: Vec<ledger_api::spot::OrderRecord>,
    through: u64,
    started: Instant,
}

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
    ledgers: Ledgers,
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

/// The ledger's own command due at `now`, if any (see `Engine::expire_due`).
fn due_command(ledger: &products::Ledger, now: TimestampMs) -> Option<LedgerCommand> {
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
        return None;
    };
    Some(command)
}

/// Tells a peer that this replica does not lead, and where the leader
/// serves (`hint`, empty while an election runs), then closes.
fn turn_away(connection: &Connection, hint: &str) {
    let error = connection.outbox.try_send(Arc::new(wire::encode_error(ProtocolErrorCode::NotLeader, hint)));
    // The writer closes after the error frame; if it cannot take it, close now.
    if error.is_err() || connection.outbox.try_send(Arc::new(Vec::new())).is_err() {
        connection.closer.shutdown();
    }
}

impl Engine {
    /// The engine of a ledger with its own journal (one host).
    pub fn new(config: LedgerConfig, service: LedgerService, metrics: Arc<Metrics>, progress: Arc<Progress>) -> Engine {
        let matching_seen = service.ledger().spot().counters().matching_applied;
        // Always its own leader.
        progress.leading.store(true, Ordering::Release);
        Engine::with_ledgers(config, Ledgers::Own(service), matching_seen, metrics, progress)
    }

    /// The engine of a replica: it serves peers while it leads. `wake` is
    /// the sending end of the inbox it will run on.
    pub fn replica(config: LedgerConfig, ledger: ReplicaLedger, wake: SyncSender<Inbound>, metrics: Arc<Metrics>, progress: Arc<Progress>) -> Engine {
        // Changes of role (not every applied entry) wake the engine.
        let (mut roles, role_wake) = (ledger.raft.server_metrics(), wake.clone());
        ledger.runtime.spawn(async move {
            while roles.changed().await.is_ok() {
                let _ = role_wake.try_send(Inbound::Wake);
            }
        });
        let (mut raft_metrics, gauges) = (ledger.raft.metrics(), metrics.clone());
        ledger.runtime.spawn(async move {
            loop {
                {
                    let now = raft_metrics.borrow_and_update();
                    gauges.replica_term.set(now.current_term as i64);
                    gauges.replica_applied_index.set(now.last_applied.map_or(-1, |log_id| log_id.index as i64));
                }
                if raft_metrics.changed().await.is_err() {
                    return;
                }
            }
        });
        let (replies, replied) = mpsc::channel();
        let replica = Replica { ledger, in_flight: VecDeque::new(), next_batch: 0, replies, replied, wake, serving: None };
        progress.leading.store(false, Ordering::Release);
        Engine::with_ledgers(config, Ledgers::Replica(Box::new(replica)), 0, metrics, progress)
    }

    fn with_ledgers(config: LedgerConfig, ledgers: Ledgers, matching_seen: u64, metrics: Arc<Metrics>, progress: Arc<Progress>) -> Engine {
        Engine {
            config,
            ledgers,
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
        }
    }

    /// Runs `work` on the service: the engine's own, or the state machine's.
    fn with<T>(&mut self, work: impl FnOnce(&mut LedgerService) -> T) -> Result<T, EngineError> {
        match &mut self.ledgers {
            Ledgers::Own(service) => Ok(work(service)),
            Ledgers::Replica(replica) => Ok(replica.ledger.machine.with_service(work)?),
        }
    }

    /// Whether peers are served: always with its own journal; a replica's
    /// while it leads.
    fn serving(&self) -> bool {
        match &self.ledgers {
            Ledgers::Own(_) => true,
            Ledgers::Replica(replica) => replica.serving.is_some(),
        }
    }

    /// Journals the config's approval thresholds if they are not the ones
    /// in force (a fresh ledger's are the defaults): the change is applied
    /// like any command, so replay and the audit log see it.
    /// A replica does it when it takes the lead.
    pub fn configure(&mut self) -> Result<(), EngineError> {
        if !self.serving() {
            return Ok(());
        }
        let thresholds = self.config.approvals;
        let in_force = self.with(|service| service.ledger().operators().thresholds())?;
        if thresholds == in_force {
            return Ok(());
        }
        tracing::info!(?in_force, ?thresholds, "the config changes the approval thresholds; journaling the change");
        let peer_sequence = self.with(|service| service.peer_applied(SYSTEM_PEER))? + 1;
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
    pub fn run(mut self, inbox: Receiver<Inbound>, mut watchdog: Watchdog) -> Result<(), EngineError> {
        let batch_max = self.config.engine.batch_commands_max;
        let mut items = Vec::with_capacity(batch_max);
        self.publish_progress()?;
        loop {
            watchdog.beat();
            self.follow_raft()?;
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
                let until_expiry = self.next_expiry()?.map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
                match inbox.recv_timeout(until_expiry.map_or(watchdog.wait_max(), |until| until.min(watchdog.wait_max()))) {
                    Ok(item) => item,
                    Err(RecvTimeoutError::Timeout) => {
                        self.expire_due()?;
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
                    Inbound::Command { connection, peer, sequence, command } => self.admit(connection, peer, sequence, command)?,
                    Inbound::MatchingOutput { .. } if !self.serving() => {}
                    Inbound::MatchingOutput { sequence, peer, peer_sequence, events } => self.admit_matching(sequence, peer, peer_sequence, events)?,
                    Inbound::Connect { connection, subscribe, outbox, closer, .. } if !self.serving() => {
                        let hint = self.leader_hint();
                        turn_away(&Connection { id: connection, subscribe, outbox, closer }, &hint);
                    }
                    Inbound::Connect { connection, peer, subscribe, outbox, closer } => {
                        // The Welcome must not promise what is still pending.
                        self.flush()?;
                        let connection = Connection { id: connection, subscribe, outbox, closer };
                        match self.serving() {
                            true => self.connect(connection, peer)?,
                            // It lost the lead while answering what was pending.
                            false => turn_away(&connection, &self.leader_hint()),
                        }
                    }
                    Inbound::Disconnect { connection } => self.disconnect(connection),
                    Inbound::MatchingUp { .. } if self.halted() || !self.serving() => {}
                    Inbound::MatchingUp { commands_applied, sender } => {
                        self.flush()?;
                        let outbox = self.with(|service| {
                            service.confirm_forwarded(commands_applied);
                            service.outbox_len()
                        })?;
                        tracing::info!(commands_applied, outbox, "link to matching up; resending what it has not applied");
                        self.matching = Some(sender);
                        self.forwarded_sent = commands_applied;
                        self.send_forwards()?;
                    }
                    Inbound::MatchingDown => self.matching = None,
                    Inbound::Wake => {}
                    Inbound::Shutdown => {
                        self.flush()?;
                        if let Ledgers::Own(service) = &mut self.ledgers {
                            service.checkpoint()?;
                        }
                        let journal_applied = self.with(|service| service.journal_applied())?;
                        tracing::info!(journal_applied, "engine stopped cleanly");
                        return Ok(());
                    }
                }
            }
            self.expire_due()?;
            self.submit()?;
        }
    }

    /// A replica's: handles the replies that came, and takes or gives up
    /// the lead as Raft's role says.
    fn follow_raft(&mut self) -> Result<(), EngineError> {
        let Ledgers::Replica(replica) = &self.ledgers else { return Ok(()) };
        let (id, serving) = (replica.ledger.id, replica.serving);
        let (leads, term) = {
            let metrics = replica.ledger.raft.metrics();
            let metrics = metrics.borrow();
            if let Err(fatal) = &metrics.running_state {
                return Err(EngineError::RaftStopped(fatal.to_string()));
            }
            (metrics.state == openraft::ServerState::Leader && metrics.current_leader == Some(id), metrics.current_term)
        };
        self.take_replies()?;
        match serving {
            Some(serving) if leads && serving == term => Ok(()),
            Some(_) => {
                self.step_down("another replica leads, or a newer term began");
                Ok(())
            }
            None if leads => self.step_up(term),
            None => Ok(()),
        }
    }

    /// Serves peers as the leader of `term`, once everything committed
    /// before it is applied here: peers' and matching's sequences are then
    /// the log's. Tried again on the next turn if the majority cannot
    /// confirm the lead in time.
    fn step_up(&mut self, term: u64) -> Result<(), EngineError> {
        let Ledgers::Replica(replica) = &mut self.ledgers else { return Ok(()) };
        let (raft, timeout) = (replica.ledger.raft.clone(), replica.ledger.commit_timeout);
        let confirmed = replica.ledger.runtime.block_on(async move { tokio::time::timeout(timeout, raft.ensure_linearizable()).await });
        if let Err(reason) = confirmed.map_err(|_| "timed out".to_string()).and_then(|result| result.map_err(|error| error.to_string())) {
            tracing::warn!(term, %reason, "elected, but the majority did not confirm the lead yet; trying again");
            return Ok(());
        }
        replica.serving = Some(term);
        self.peers.clear();
        self.connections.clear();
        self.matching = None;
        self.forwarded_sent = 0;
        self.matching_seen = self.with(|service| service.ledger().spot().counters().matching_applied)?;
        self.progress.leading.store(true, Ordering::Release);
        self.metrics.replica_leading.set(1);
        tracing::info!(term, "leading the cluster: serving peers");
        self.configure()?;
        self.publish_progress()
    }

    /// Stops serving: every peer is turned away with the leader's address,
    /// what was not proposed is dropped (the peers resend it), and
    /// proposals still in flight are forgotten (a later leader may commit
    /// them; the resent copies are then skipped).
    fn step_down(&mut self, reason: &str) {
        let hint = self.leader_hint();
        let Ledgers::Replica(replica) = &mut self.ledgers else { return };
        let Some(term) = replica.serving.take() else { return };
        let forgotten = replica.in_flight.len();
        replica.in_flight.clear();
        for (_, peer) in self.peers.drain() {
            if let Some(connection) = peer.connection {
                turn_away(&connection, &hint);
            }
        }
        self.connections.clear();
        self.pending.clear();
        self.pending_taken.clear();
        self.matching = None;
        self.progress.leading.store(false, Ordering::Release);
        self.metrics.replica_leading.set(0);
        tracing::warn!(term, reason, forgotten, leader = %hint, "no longer leading: peers sent to the leader");
    }

    /// The ledger address of the replica that leads, as far as this one
    /// knows; empty while an election runs.
    fn leader_hint(&self) -> String {
        let Ledgers::Replica(replica) = &self.ledgers else { return String::new() };
        let leader = replica.ledger.raft.metrics().borrow().current_leader;
        leader.filter(|leader| *leader != replica.ledger.id).and_then(|leader| replica.ledger.ledger_addresses.get(&leader).cloned()).unwrap_or_default()
    }

    /// Answers, in order, the proposals whose replies came.
    fn take_replies(&mut self) -> Result<(), EngineError> {
        loop {
            let batch = {
                let Ledgers::Replica(replica) = &mut self.ledgers else { return Ok(()) };
                while let Ok((id, reply)) = replica.replied.try_recv() {
                    // Forgotten ones (the lead was lost meanwhile) are not there.
                    if let Some(batch) = replica.in_flight.iter_mut().find(|batch| batch.id == id) {
                        batch.reply = Some(reply);
                    }
                }
                match replica.in_flight.front() {
                    Some(batch) if batch.reply.is_some() => replica.in_flight.pop_front(),
                    _ => None,
                }
            };
            let Some(InFlight { senders, taken, started, reply, .. }) = batch else { return Ok(()) };
            match reply {
                Some(Reply::Committed(Committed { outcomes, order_updates, through })) => {
                    self.answer(Answered { senders, taken, outcomes, order_updates, through, started })?
                }
                Some(Reply::Lost(reason)) => {
                    self.step_down(&format!("a proposal was not committed: {reason}"));
                    return Ok(());
                }
                None => return Ok(()),
            }
        }
    }

    /// Waits for replies until at most `in_flight_max` proposals are in
    /// flight, or gives up the lead when none comes in time.
    fn await_replies(&mut self, in_flight_max: usize) -> Result<(), EngineError> {
        let Ledgers::Replica(replica) = &self.ledgers else { return Ok(()) };
        let deadline = Instant::now() + replica.ledger.commit_timeout;
        loop {
            self.take_replies()?;
            let Ledgers::Replica(replica) = &mut self.ledgers else { return Ok(()) };
            if replica.in_flight.len() <= in_flight_max {
                return Ok(());
            }
            match replica.replied.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((id, reply)) => {
                    if let Some(batch) = replica.in_flight.iter_mut().find(|batch| batch.id == id) {
                        batch.reply = Some(reply);
                    }
                }
                Err(_) => {
                    let timeout_ms = replica.ledger.commit_timeout.as_millis();
                    self.step_down(&format!("proposals not committed within {timeout_ms} ms: no majority reachable"));
                    return Ok(());
                }
            }
        }
    }

    /// Proposes the pending commands to Raft as one entry; its reply
    /// comes through the inbox's wake.
    fn propose(&mut self) -> Result<(), EngineError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if !self.serving() {
            // Their peers were turned away and resend to the leader.
            self.pending.clear();
            self.pending_taken.clear();
            return Ok(());
        }
        self.await_replies(IN_FLIGHT_MAX - 1)?;
        let Ledgers::Replica(replica) = &mut self.ledgers else { return Ok(()) };
        if replica.serving.is_none() {
            self.pending.clear();
            self.pending_taken.clear();
            return Ok(());
        }
        let entries = std::mem::take(&mut self.pending);
        let taken = std::mem::take(&mut self.pending_taken);
        let senders = entries.iter().map(|entry| (entry.peer, entry.peer_sequence)).collect();
        let raft = replica.ledger.raft.clone();
        let receiver =
            replica.ledger.runtime.block_on(async move { raft.client_write_ff(entries).await }).map_err(|fatal| EngineError::RaftStopped(fatal.to_string()))?;
        let id = replica.next_batch;
        replica.next_batch += 1;
        let (replies, wake) = (replica.replies.clone(), replica.wake.clone());
        replica.ledger.runtime.spawn(async move {
            let reply = match receiver.await {
                Ok(Ok(response)) => Reply::Committed(response.data),
                Ok(Err(error)) => Reply::Lost(error.to_string()),
                Err(_) => Reply::Lost("Raft stopped before answering".into()),
            };
            if replies.send((id, reply)).is_ok() {
                // A full inbox means the engine is busy: it looks at replies every turn.
                let _ = wake.try_send(Inbound::Wake);
            }
        });
        replica.in_flight.push_back(InFlight { id, senders, taken, started: Instant::now(), reply: None });
        Ok(())
    }

    /// When the ledger's clock next has something to do: an order or a
    /// quote to expire, a perpetual market's mark or funding.
    fn next_expiry(&mut self) -> Result<Option<u64>, EngineError> {
        if !self.serving() {
            return Ok(None);
        }
        self.with(|service| {
            let ledger = service.ledger();
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
        })
    }

    /// Journals the ledger's own ExpireOrders once its clock reaches the
    /// next order expiry, or ExpireQuotes the next quote's, or a perpetual
    /// Tick the next mark interval or funding time, or tokenization's Tick
    /// an offering's end or a tranche's vesting (one at a time).
    /// The commands carry no time: the entry's stamp is what the orders and
    /// quotes are measured against, so a replay expires the same.
    /// On a replica, only the leader's, and one at a time: until the one
    /// in flight is applied, the state still says it is due.
    fn expire_due(&mut self) -> Result<(), EngineError> {
        let now = now_ms();
        let system_in_flight = match &self.ledgers {
            Ledgers::Own(_) => false,
            Ledgers::Replica(replica) => replica.in_flight.iter().any(|batch| batch.senders.iter().any(|(peer, _)| *peer == SYSTEM_PEER)),
        };
        if !self.serving() || system_in_flight || self.pending.iter().any(|entry| entry.peer == SYSTEM_PEER) {
            return Ok(());
        }
        let due = self.with(|service| (due_command(service.ledger(), now), service.peer_applied(SYSTEM_PEER)))?;
        if let (Some(command), applied) = due {
            self.queue(JournalEntry { peer: SYSTEM_PEER, peer_sequence: applied + 1, at_ms: now, command });
        }
        Ok(())
    }

    fn peer(&mut self, peer: PeerId) -> Result<&mut Peer, EngineError> {
        let applied = match self.peers.contains_key(&peer) {
            true => 0,
            false => self.with(|service| service.peer_applied(peer))?,
        };
        Ok(self.peers.entry(peer).or_insert_with(|| Peer { connection: None, admitted: applied, answered: applied, retained: VecDeque::new() }))
    }

    fn connect(&mut self, connection: Connection, peer: PeerId) -> Result<(), EngineError> {
        let (commands_applied, outputs_last) = self.with(|service| (service.peer_applied(peer), service.journal_applied()))?;
        let mut hello = Vec::new();
        wire::encode_frame(0, &Message::Welcome { commands_applied, outputs_last }, &mut hello);
        let _ = connection.outbox.try_send(Arc::new(hello));
        tracing::info!(connection = connection.id, peer, commands_applied, "peer connected");
        let id = connection.id;
        // A peer speaks through one connection at a time: the newest wins.
        if let Some(old) = self.peer(peer)?.connection.replace(connection) {
            self.connections.remove(&old.id);
            old.closer.shutdown();
        }
        self.connections.insert(id, peer);
        Ok(())
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

    fn admit(&mut self, connection: ConnectionId, peer: PeerId, sequence: u64, command: LedgerCommand) -> Result<(), EngineError> {
        if self.connections.get(&connection) != Some(&peer) {
            return Ok(()); // from a connection this peer has since replaced, or turned away
        }
        let metrics = self.metrics.clone();
        let state = self.peer(peer)?;
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
                return Ok(());
            }
            Admission::Gap { expected } => {
                let detail = format!("expected command sequence {expected} from peer {peer}, got {sequence}");
                tracing::warn!(peer, sequence, expected, "sequence gap; disconnecting the peer");
                self.refuse(peer, ProtocolErrorCode::SequenceGap, detail);
                return Ok(());
            }
        }
        state.admitted = sequence;
        self.queue(JournalEntry { peer, peer_sequence: sequence, at_ms: now_ms(), command });
        Ok(())
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

    fn admit_matching(&mut self, sequence: u64, peer: PeerId, peer_sequence: u64, events: Vec<Event>) -> Result<(), EngineError> {
        if self.halted() {
            return Ok(());
        }
        if peer == self.config.matching.peer_id {
            // Matching journaled our forward `peer_sequence` before publishing this.
            self.with(|service| service.confirm_forwarded(peer_sequence))?;
        }
        match wire::admission(self.matching_seen, sequence) {
            Admission::Next => {}
            // Replayed after a reconnect, and already applied or pending.
            Admission::Duplicate => return Ok(()),
            Admission::Gap { expected } => {
                tracing::error!(sequence, expected, "matching output sequence gap; resetting the link to replay");
                self.matching = None;
                return Ok(());
            }
        }
        self.matching_seen = sequence;
        self.queue(JournalEntry {
            peer: MATCHING_PEER,
            peer_sequence: sequence,
            at_ms: now_ms(),
            command: LedgerCommand::Spot(spot::Command::ApplyMatching { sequence, events }),
        });
        Ok(())
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
    /// written, and every outcome is sent. On a replica: proposed, and
    /// every proposal in flight answered (or the lead given up).
    fn flush(&mut self) -> Result<(), EngineError> {
        self.submit()?;
        match self.ledgers {
            Ledgers::Own(_) => self.answer_written(),
            Ledgers::Replica(_) => self.await_replies(0),
        }
    }

    /// Journals and applies the pending commands and hands their write to
    /// the store writer. The batch before is answered while this one's
    /// journal syncs, as soon as RocksDB holds it. A replica proposes them.
    fn submit(&mut self) -> Result<(), EngineError> {
        if matches!(self.ledgers, Ledgers::Replica(_)) {
            return self.propose();
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let entries = std::mem::take(&mut self.pending);
        let taken = std::mem::take(&mut self.pending_taken);
        let Ledgers::Own(service) = &mut self.ledgers else { return Ok(()) };
        let staged = service.begin(&entries)?;
        if self.unanswered.is_some() {
            // Its write is shorter than this batch's sync: waiting for it
            // here answers it one sync earlier than after this batch.
            self.answer_written()?;
        }
        let Ledgers::Own(service) = &mut self.ledgers else { return Ok(()) };
        let submitted = service.finish(staged)?;
        // The batch's orders go to matching now, durable in the journal,
        // while RocksDB writes them: forwards need no reader to see them, and
        // a crash before the write replays the journal, outbox included.
        self.send_forwards()?;
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
    fn answer_written(&mut self) -> Result<(), EngineError> {
        let Ledgers::Own(service) = &mut self.ledgers else { return Ok(()) };
        service.wait_written()?;
        self.observe_store_writes();
        let Some(Unanswered { mut entries, taken, submitted: Submitted { outcomes, order_updates, through, .. }, started }) = self.unanswered.take() else {
            return Ok(());
        };
        let senders = entries.iter().map(|entry| (entry.peer, entry.peer_sequence)).collect();
        if self.pending.is_empty() {
            // Its memory serves the next batch.
            entries.clear();
            self.pending = entries;
        }
        let outcomes = outcomes.into_iter().map(Some).collect();
        self.answer(Answered { senders, taken, outcomes, order_updates, through, started })
    }

    fn observe_store_writes(&mut self) {
        let Ledgers::Own(service) = &mut self.ledgers else { return };
        for took in service.take_store_writes() {
            self.metrics.store_write_seconds.observe(took.as_secs_f64());
        }
    }

    /// Sends a batch's outcomes and order updates, and forwards.
    fn answer(&mut self, batch: Answered) -> Result<(), EngineError> {
        let Answered { senders, mut taken, outcomes, order_updates, through, started } = batch;
        let mut replies: HashMap<PeerId, Vec<u8>> = HashMap::new();
        let retained_max = self.config.engine.outcomes_retained_per_peer;
        // Everything is sent below: from taken to now is what a peer sees of the ledger.
        let answered = Instant::now();
        for ((&(peer, peer_sequence), outcome), taken) in senders.iter().zip(outcomes).zip(&taken) {
            let seconds = answered.saturating_duration_since(*taken).as_secs_f64();
            if peer == SYSTEM_PEER {
                if let Some(Err(error)) = &outcome {
                    tracing::error!(%error, "the ledger's own command was refused");
                }
                continue;
            }
            if peer == MATCHING_PEER {
                // None: an output the log held twice, applied once.
                let Some(outcome) = outcome else { continue };
                self.metrics.matching_outputs.inc();
                self.metrics.matching_output_seconds.observe(seconds);
                match outcome {
                    Ok(_) => {}
                    Err(LedgerError::MatchingOutputRefused(reason)) => self.halt_matching(reason),
                    // An output after a refused one in the same batch.
                    Err(error) => tracing::error!(sequence = peer_sequence, %error, "matching output refused"),
                }
                continue;
            }
            let bytes = replies.entry(peer).or_default();
            let Some(outcome) = outcome else {
                // Applied before, through the leader before this one: its
                // outcome is not known here, as for a resend not retained.
                self.metrics.duplicate_commands.inc();
                wire::encode_frame(0, &Message::LedgerOutcome { peer_sequence, outcome: None }, bytes);
                let state = self.peer(peer)?;
                state.answered = state.answered.max(peer_sequence);
                continue;
            };
            self.metrics.commands.inc();
            self.metrics.command_seconds.observe(seconds);
            if outcome.is_err() {
                self.metrics.rejections.inc();
            }
            wire::encode_frame(0, &Message::LedgerOutcome { peer_sequence, outcome: Some(outcome.clone()) }, bytes);
            let state = self.peer(peer)?;
            if state.retained.len() == retained_max {
                state.retained.pop_front();
            }
            state.retained.push_back((peer_sequence, outcome));
            state.answered = peer_sequence;
        }
        if self.pending_taken.is_empty() {
            // Its memory serves the next batch.
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
        self.send_forwards()?;
        self.metrics.batches.inc();
        self.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
        self.publish_progress()
    }

    /// Hands the link every outbox entry it has not been given yet.
    fn send_forwards(&mut self) -> Result<(), EngineError> {
        if self.matching.is_none() {
            return Ok(());
        }
        let after = self.forwarded_sent;
        let forwards: Forwards = self.with(|service| service.outbox_after(after).copied().collect())?;
        let Some(sender) = &self.matching else { return Ok(()) };
        let Some(&(last, _)) = forwards.last() else { return Ok(()) };
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
        Ok(())
    }

    fn publish_progress(&mut self) -> Result<(), EngineError> {
        let (journal_applied, matching_applied, outbox) =
            self.with(|service| (service.journal_applied(), service.ledger().spot().counters().matching_applied, service.outbox_len() as u64))?;
        self.progress.journal_applied.store(journal_applied, Ordering::Release);
        self.progress.matching_applied.store(matching_applied, Ordering::Release);
        self.progress.outbox_pending.store(outbox, Ordering::Release);
        self.metrics.journal_applied.set(journal_applied as i64);
        self.metrics.outbox_pending.set(outbox as i64);
        Ok(())
    }
}
