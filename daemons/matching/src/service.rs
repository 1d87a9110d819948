//! The engine thread: the only owner of the books and the journal.
//!
//! Each turn it takes up to `batch_commands_max` commands from its inbox,
//! drops those already applied (a peer resending after a reconnect), submits
//! the rest to the journal as one write + fdatasync, applies them to the
//! books while the disk works, waits for durability, and only then publishes
//! the outputs. Nothing is published that is not durable.
//!
//! Every output frame carries the journal sequence of its command, so a peer
//! that durably records the last output it applied can ask for a replay from
//! there after a reconnect; a command carries the peer's own sequence, and
//! `peers_applied` (restored from snapshot + journal) makes resends no-ops.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use journal::{Content, Journal, JournalError};
pub use matching_api::JournalEntry;
use matching_core::{Command, EngineSnapshot, Event, FastEngine, MarketId, OrderBook, Side, SnapshotError};
use shell::service_manager::Watchdog;
use wire::{Admission, Message, PeerId, ProtocolErrorCode};

use crate::config::{IdleStrategy, MatchingConfig};
use crate::metrics::Metrics;
use crate::snapshot::{self, SnapshotFile, SnapshotFileError};

/// What the journal holds: `matching-api`'s journal entries, in its format version.
pub const JOURNAL_CONTENT: Content = Content { kind: *b"MTCH", version: matching_api::FORMAT_VERSION };

pub use link::{ConnectionId, Outgoing};

pub enum Inbound {
    Connect {
        connection: ConnectionId,
        peer: PeerId,
        outputs_applied: u64,
        subscribe: bool,
        outbox: SyncSender<Outgoing>,
    },
    Command {
        connection: ConnectionId,
        peer: PeerId,
        sequence: u64,
        command: Command,
    },
    Disconnect {
        connection: ConnectionId,
    },
    /// A read of one book's depth, answered on the asking connection.
    Depth {
        connection: ConnectionId,
        request: u64,
        market: MarketId,
        levels: u32,
    },
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotFileError),
    #[error("snapshot content: {0}")]
    SnapshotContent(#[from] SnapshotError),
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("journal record {sequence} does not decode ({detail}); it passed its checksum and its segment names this build's format, so the build that wrote it was broken. Report this with the data directory")]
    Entry { sequence: u64, detail: String },
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
}

/// One output retained for replay: its bytes are `range` of a batch buffer.
struct Retained {
    sequence: u64,
    batch: Outgoing,
    range: Range<usize>,
}

struct Subscriber {
    connection: ConnectionId,
    peer: PeerId,
    outbox: SyncSender<Outgoing>,
}

pub struct EngineService {
    config: MatchingConfig,
    engine: FastEngine,
    journal: Journal,
    peers_applied: BTreeMap<PeerId, u64>,
    /// The connection each peer currently speaks through; commands from an
    /// older connection of the same peer are ignored.
    current_connection: HashMap<PeerId, ConnectionId>,
    retained: VecDeque<Retained>,
    subscribers: Vec<Subscriber>,
    /// Every said-Hello connection's writer, for answers to its reads.
    outboxes: HashMap<ConnectionId, SyncSender<Outgoing>>,
    commands_since_snapshot: u64,
    metrics: Arc<Metrics>,
    // Buffers reused across batches.
    pending: Vec<JournalEntry>,
    /// When the engine took each pending entry.
    pending_taken: Vec<Instant>,
    payloads: Vec<Vec<u8>>,
    events: Vec<Event>,
}

/// What start-up found, for the log and for tests.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    pub snapshot_sequence: u64,
    pub replayed_commands: usize,
    pub truncated_tail_bytes: u64,
    pub next_sequence: u64,
    pub state_hash: String,
}

impl EngineService {
    /// Loads the newest readable snapshot and replays the journal after it.
    pub fn recover(config: &MatchingConfig, metrics: Arc<Metrics>) -> Result<(EngineService, RecoveryReport), RecoveryError> {
        let dir = &config.storage.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| RecoveryError::DataDir { path: dir.clone(), source })?;
        let limits = config.engine_limits();
        // Replay from the second-newest snapshot when it is readable: the state
        // reached is the same (the core is deterministic), and the outputs
        // retained for reconnecting peers then cover at least one whole snapshot
        // interval, so a peer that lagged behind the newest snapshot still gets
        // its replay. The newest is the fallback, then anything older.
        let mut candidates = snapshot::list(dir)?;
        if candidates.len() >= 2 {
            candidates.swap(0, 1);
        }
        let mut loaded = None;
        for (sequence, path) in candidates {
            match snapshot::read(&path) {
                Ok(file) => {
                    loaded = Some(file);
                    break;
                }
                // An older one is of the same format or older: none can be read.
                Err(error @ SnapshotFileError::Version { .. }) => return Err(error.into()),
                Err(error) => tracing::error!(sequence, %error, "snapshot unreadable; trying the one before it"),
            }
        }
        let file = loaded.unwrap_or(SnapshotFile { sequence: 0, peers_applied: BTreeMap::new(), engine: EngineSnapshot::default() });
        let mut engine = FastEngine::restore(limits, &file.engine)?;
        let (journal, recovery) = Journal::open(dir, file.sequence + 1, JOURNAL_CONTENT)?;
        let mut service = EngineService {
            config: config.clone(),
            engine: FastEngine::new(limits),
            journal,
            peers_applied: file.peers_applied,
            current_connection: HashMap::new(),
            retained: VecDeque::new(),
            subscribers: Vec::new(),
            outboxes: HashMap::new(),
            commands_since_snapshot: 0,
            metrics,
            pending: Vec::new(),
            pending_taken: Vec::new(),
            payloads: Vec::new(),
            events: Vec::new(),
        };
        let replayed_commands = recovery.records.len();
        for record in recovery.records {
            let entry: JournalEntry =
                postcard::from_bytes(&record.payload).map_err(|e| RecoveryError::Entry { sequence: record.sequence, detail: e.to_string() })?;
            service.events.clear();
            engine.execute(&entry.command, &mut service.events);
            service.peers_applied.insert(entry.peer, entry.peer_sequence);
            let mut batch = Vec::new();
            let range = service.encode_output(record.sequence, &entry, &mut batch);
            service.retain(record.sequence, Arc::new(batch), range);
            service.commands_since_snapshot += 1;
        }
        service.engine = engine;
        let report = RecoveryReport {
            snapshot_sequence: file.sequence,
            replayed_commands,
            truncated_tail_bytes: recovery.truncated.map(|t| t.2).unwrap_or(0),
            next_sequence: service.journal.next_sequence(),
            state_hash: service.engine.state_hash().to_string(),
        };
        service.metrics.output_sequence.set(report.next_sequence as i64 - 1);
        Ok((service, report))
    }

    /// See [`Journal::set_worker_cpus`]; call it from the engine thread.
    pub fn set_journal_worker_cpus(&mut self, cpus: &[usize]) -> Result<(), JournalError> {
        self.journal.set_worker_cpus(cpus)
    }

    pub fn engine(&self) -> &FastEngine {
        &self.engine
    }

    /// Runs until `Shutdown` or until every sender is gone. A journal error
    /// ends it: the caller must exit non-zero so that the supervisor restarts
    /// the daemon into recovery. The watchdog's heartbeats come from this
    /// loop, also when idle, so systemd sees a stuck engine, not just a live process.
    pub fn run(mut self, inbox: Receiver<Inbound>, mut watchdog: Watchdog) -> Result<(), JournalError> {
        let batch_max = self.config.engine.batch_commands_max;
        let mut items = Vec::with_capacity(batch_max);
        loop {
            watchdog.beat();
            let first = match wait(&inbox, self.config.engine.idle, watchdog.wait_max()) {
                Waited::Item(item) => item,
                Waited::Idle => continue,
                Waited::Closed => return self.flush(),
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
                    Inbound::Connect { connection, peer, outputs_applied, subscribe, outbox } => {
                        self.flush()?;
                        self.connect(connection, peer, outputs_applied, subscribe, outbox);
                    }
                    Inbound::Depth { connection, request, market, levels } => {
                        // Answer from published state only: what is pending is not durable yet.
                        self.flush()?;
                        self.answer_depth(connection, request, market, levels);
                    }
                    Inbound::Disconnect { connection } => {
                        self.outboxes.remove(&connection);
                        self.subscribers.retain(|s| s.connection != connection);
                        self.current_connection.retain(|_, c| *c != connection);
                        self.metrics.subscribers.set(self.subscribers.len() as i64);
                    }
                    Inbound::Shutdown => {
                        self.flush()?;
                        tracing::info!(next_sequence = self.journal.next_sequence(), "engine stopped cleanly");
                        return Ok(());
                    }
                }
            }
            self.flush()?;
        }
    }

    /// Queues a command for the next group commit, unless it was applied already.
    fn admit(&mut self, connection: ConnectionId, peer: PeerId, sequence: u64, command: Command) {
        if self.current_connection.get(&peer) != Some(&connection) {
            return; // from a connection this peer has since replaced
        }
        let applied = self.peers_applied.get(&peer).copied().unwrap_or(0);
        match wire::admission(applied, sequence) {
            Admission::Next => {}
            Admission::Duplicate => {
                self.metrics.duplicate_commands.inc();
                return;
            }
            Admission::Gap { expected } => {
                let detail = format!("expected command sequence {expected} from peer {peer}, got {sequence}");
                tracing::warn!(peer, sequence, expected, "sequence gap; disconnecting the peer");
                self.refuse(connection, ProtocolErrorCode::SequenceGap, detail);
                return;
            }
        }
        self.peers_applied.insert(peer, sequence);
        self.pending.push(JournalEntry { peer, peer_sequence: sequence, command });
        self.pending_taken.push(Instant::now());
    }

    fn refuse(&mut self, connection: ConnectionId, code: ProtocolErrorCode, detail: String) {
        if let Some(i) = self.subscribers.iter().position(|s| s.connection == connection) {
            let subscriber = self.subscribers.remove(i);
            let _ = subscriber.outbox.try_send(Arc::new(wire::encode_error(code, detail)));
        }
        self.current_connection.retain(|_, c| *c != connection);
        self.metrics.subscribers.set(self.subscribers.len() as i64);
    }

    fn answer_depth(&mut self, connection: ConnectionId, request: u64, market: MarketId, levels: u32) {
        let Some(outbox) = self.outboxes.get(&connection) else { return };
        let levels = levels.min(wire::DEPTH_LEVELS_MAX) as usize;
        let depth = self.engine.book(market).map(|book| wire::BookDepth {
            market,
            output_last: self.journal.next_sequence() - 1,
            bids: book.depth(Side::Buy, levels),
            asks: book.depth(Side::Sell, levels),
        });
        let mut bytes = Vec::new();
        wire::encode_frame(request, &Message::Depth(depth), &mut bytes);
        let _ = outbox.try_send(Arc::new(bytes));
    }

    fn connect(&mut self, connection: ConnectionId, peer: PeerId, outputs_applied: u64, subscribe: bool, outbox: SyncSender<Outgoing>) {
        self.outboxes.insert(connection, outbox.clone());
        // A peer speaks through one connection at a time: the newest wins.
        self.subscribers.retain(|s| s.peer != peer);
        self.current_connection.insert(peer, connection);
        let outputs_last = self.journal.next_sequence() - 1;
        let commands_applied = self.peers_applied.get(&peer).copied().unwrap_or(0);
        let mut hello = Vec::new();
        wire::encode_frame(0, &Message::Welcome { commands_applied, outputs_last }, &mut hello);
        if subscribe && outputs_applied < outputs_last {
            let oldest = self.retained.front().map(|r| r.sequence).unwrap_or(u64::MAX);
            if outputs_applied + 1 < oldest {
                let detail = format!(
                    "replay from output {} requested but the oldest retained is {oldest}; raise engine.retained_outputs_max or resynchronise the peer",
                    outputs_applied + 1
                );
                tracing::error!(peer, outputs_applied, oldest, "replay unavailable");
                let _ = outbox.try_send(Arc::new(wire::encode_error(ProtocolErrorCode::ReplayUnavailable, detail)));
                self.current_connection.remove(&peer);
                return;
            }
            let skip = (outputs_applied + 1 - oldest) as usize;
            for retained in self.retained.iter().skip(skip) {
                hello.extend_from_slice(&retained.batch[retained.range.clone()]);
            }
            tracing::info!(peer, from = outputs_applied + 1, to = outputs_last, "replaying outputs to a reconnected peer");
        }
        if outbox.try_send(Arc::new(hello)).is_err() {
            return;
        }
        if subscribe {
            self.subscribers.push(Subscriber { connection, peer, outbox });
        }
        self.metrics.subscribers.set(self.subscribers.len() as i64);
    }

    /// Group commit: journal, apply while the disk works, wait, publish.
    fn flush(&mut self) -> Result<(), JournalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        self.payloads.resize_with(self.pending.len(), Vec::new);
        for (payload, entry) in self.payloads.iter_mut().zip(&self.pending) {
            payload.clear();
            *payload = postcard::to_extend(entry, std::mem::take(payload)).expect("encoding into a vector cannot fail");
        }
        let sequences = self.journal.begin(self.payloads.iter().map(Vec::as_slice))?;
        let mut batch = Vec::new();
        let mut ranges = Vec::with_capacity(self.pending.len());
        let pending = std::mem::take(&mut self.pending);
        for (sequence, entry) in sequences.clone().zip(&pending) {
            self.events.clear();
            self.engine.execute(&entry.command, &mut self.events);
            self.metrics.count_events(&self.events);
            ranges.push(self.encode_output(sequence, entry, &mut batch));
        }
        self.pending = pending;
        let applied = Instant::now();
        self.journal.finish()?;
        let synced = Instant::now();
        self.metrics.apply_seconds.observe(applied.duration_since(started).as_secs_f64());
        self.metrics.journal_sync_wait_seconds.observe(synced.duration_since(applied).as_secs_f64());
        // Count before publishing: a peer that sees an output sees it counted.
        let commands = self.pending.len() as u64;
        self.metrics.journal_batch_seconds.observe(started.elapsed().as_secs_f64());
        self.metrics.commands.inc_by(commands);
        self.metrics.batches.inc();
        self.metrics.output_sequence.set(sequences.end as i64 - 1);
        let batch = Arc::new(batch);
        self.subscribers.retain(|s| match s.outbox.try_send(batch.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                tracing::warn!(peer = s.peer, "peer is not keeping up; disconnecting it (it will reconnect and replay)");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        for (sequence, range) in sequences.clone().zip(ranges) {
            self.retain(sequence, batch.clone(), range);
        }
        for taken in self.pending_taken.drain(..) {
            self.metrics.command_seconds.observe(synced.saturating_duration_since(taken).as_secs_f64());
        }
        self.pending.clear();
        self.metrics.subscribers.set(self.subscribers.len() as i64);
        self.commands_since_snapshot += commands;
        if self.commands_since_snapshot >= self.config.storage.snapshot_every_commands {
            self.write_snapshot();
        }
        Ok(())
    }

    fn encode_output(&mut self, sequence: u64, entry: &JournalEntry, batch: &mut Vec<u8>) -> Range<usize> {
        let start = batch.len();
        let message = Message::Events { peer: entry.peer, peer_sequence: entry.peer_sequence, events: std::mem::take(&mut self.events) };
        wire::encode_frame(sequence, &message, batch);
        if let Message::Events { events, .. } = message {
            self.events = events;
        }
        start..batch.len()
    }

    fn retain(&mut self, sequence: u64, batch: Outgoing, range: Range<usize>) {
        if self.retained.len() == self.config.engine.retained_outputs_max {
            self.retained.pop_front();
        }
        self.retained.push_back(Retained { sequence, batch, range });
    }

    /// Writes a snapshot, starts a new journal segment, and removes what the
    /// previous snapshot already covered. One older snapshot and its journal
    /// are kept so that a damaged newest snapshot is not fatal. A failure here
    /// is logged and retried at the next interval: the journal still holds
    /// everything.
    pub fn write_snapshot(&mut self) {
        let dir = self.config.storage.data_dir.clone();
        let sequence = self.journal.next_sequence() - 1;
        let started = Instant::now();
        let file = SnapshotFile { sequence, peers_applied: self.peers_applied.clone(), engine: self.engine.snapshot() };
        let result = snapshot::write(&dir, &file).map_err(|e| e.to_string()).and_then(|path| {
            self.journal.rotate().map_err(|e| e.to_string())?;
            let previous = snapshot::list(&dir).map_err(|e| e.to_string())?.get(1).map(|s| s.0);
            if let Some(previous) = previous {
                self.journal.remove_segments_through(previous).map_err(|e| e.to_string())?;
            }
            snapshot::prune(&dir, 2).map_err(|e| e.to_string())?;
            Ok(path)
        });
        match result {
            Ok(path) => {
                self.commands_since_snapshot = 0;
                tracing::info!(sequence, path = %path.display(), millis = started.elapsed().as_millis() as u64, "snapshot written");
            }
            Err(error) => tracing::error!(sequence, %error, "snapshot failed; the journal still holds everything, retrying later"),
        }
    }
}

enum Waited {
    Item(Inbound),
    /// Nothing came within the wait: time for a heartbeat.
    Idle,
    Closed,
}

fn wait(inbox: &Receiver<Inbound>, idle: IdleStrategy, wait_max: Duration) -> Waited {
    match idle {
        IdleStrategy::Park => match inbox.recv_timeout(wait_max) {
            Ok(item) => Waited::Item(item),
            Err(RecvTimeoutError::Timeout) => Waited::Idle,
            Err(RecvTimeoutError::Disconnected) => Waited::Closed,
        },
        IdleStrategy::Yield | IdleStrategy::Spin => {
            let started = Instant::now();
            loop {
                match inbox.try_recv() {
                    Ok(item) => return Waited::Item(item),
                    Err(TryRecvError::Disconnected) => return Waited::Closed,
                    Err(TryRecvError::Empty) if started.elapsed() >= wait_max => return Waited::Idle,
                    Err(TryRecvError::Empty) if idle == IdleStrategy::Yield => std::thread::yield_now(),
                    Err(TryRecvError::Empty) => std::hint::spin_loop(),
                }
            }
        }
    }
}
