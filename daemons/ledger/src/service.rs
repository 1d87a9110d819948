//! The durable ledger: the pure core behind the journal and RocksDB.
//!
//! One batch of commands at a time: the batch is submitted to the journal
//! (write linked to fdatasync), applied to the core while the disk works,
//! and once the journal says durable, everything it changed is encoded into
//! one WriteBatch, with the journal position and each peer's last applied
//! sequence, and handed to the store writer, a thread of its own that writes
//! it to RocksDB without RocksDB's own log. While it writes, the next batch
//! is journaled and applied ([`LedgerService::submit`]); a batch's outcomes
//! are acknowledged once its write is done ([`LedgerService::wait_written`]),
//! so a reader of RocksDB sees every acknowledged command. A crash loses
//! what RocksDB had not flushed, and start-up replays the journal from the
//! position RocksDB's files hold. RocksDB is never written ahead of the
//! journal, and batches reach it one at a time in journal order, so it is
//! always the state after a prefix of the journal.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use journal::{Content, Journal, JournalError};
pub use ledger_api::JournalEntry;
use ledger_api::{LedgerError, Outcome};
use matching_api::Command;
use products::{Ledger, LedgerLimits};
use rustc_hash::FxHashMap;
use storage::{Batch, Durability, StorageError, Store};

use crate::schema::{self, Replication, SchemaError, TransferChains};

/// Who sent a command and its sequence in that sender's stream.
pub type PeerId = u32;

/// What the ledger's journal holds: `ledger-api`'s journal entries, in its format version.
pub const JOURNAL_CONTENT: Content = Content { kind: *b"LDGR", version: ledger_api::FORMAT_VERSION };

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot start the RocksDB writer thread: {0}. The host is out of threads or memory; free some and start again")]
    WriterSpawn(std::io::Error),
    #[error("journal record {sequence} cannot be decoded ({detail}); it passed its checksum and its segment names this build's format, so the build that wrote it was broken. Report this with the data directory")]
    UndecodableRecord { sequence: u64, detail: String },
    #[error("RocksDB holds the state through journal sequence {store_applied} but the journal does not reach it ({detail}): the journal directory is not the one this database was written with. Point it back at that one, or restore both from the same backup")]
    StoreAheadOfJournal { store_applied: u64, detail: String },
    #[error("the journal directory {dir} has no segments but RocksDB holds the state through journal sequence {store_applied}; acknowledged commands RocksDB had not flushed would be lost. Restore the journal directory (or both directories from the same backup)")]
    JournalMissing { dir: PathBuf, store_applied: u64 },
    #[error("the ledger database is missing or empty but the journal no longer starts at its beginning ({detail}): the older records were removed once RocksDB held them durably. Restore the database directory from a backup")]
    DatabaseMissing { detail: String },
    #[error("ledger invariant broken after journal sequence {sequence}: {detail}. The daemon stopped before acknowledging anything of this batch; report this with the data directory")]
    Invariant { sequence: u64, detail: String },
    #[error("the RocksDB writer thread is gone (it panicked; see the log above). Restart the daemon: start-up replays the journal")]
    WriterGone,
    #[error("this ledger's input log is its cluster's (Raft): commands reach it committed, through apply_committed, never through its own journal")]
    Replicated,
    #[error("this ledger keeps its own journal: apply_committed is a replica's")]
    NotReplicated,
    #[error(
        "the ledger database in {dir} was written by {written_by}, and this ledger runs {running}: opened so, it would apply its input twice or \
         lose it. Point the daemon at its own data directory, or move this one aside and let the replica take a snapshot from its cluster"
    )]
    OtherMode { dir: PathBuf, written_by: &'static str, running: &'static str },
}

const OWN_JOURNAL: &str = "a ledger with its own journal (one host)";
const REPLICA: &str = "a replica of a cluster (Raft)";

/// A batch journaled and applied, its RocksDB write handed to the writer.
#[derive(Debug)]
pub struct Submitted {
    pub outcomes: Vec<Result<Outcome, LedgerError>>,
    /// The records of the orders the batch changed, in their state after it.
    pub order_updates: Vec<ledger_api::spot::OrderRecord>,
    /// The journal position of the batch's last command.
    pub through: u64,
    pub times: BatchTimes,
}

/// What a committed Raft entry did on a replica ([`LedgerService::apply_committed`]):
/// openraft hands it to the leader's engine, which answers the peers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Committed {
    /// Each command's outcome, in order; `None` for one skipped because
    /// its peer had it applied before.
    pub outcomes: Vec<Option<Result<Outcome, LedgerError>>>,
    /// The records of the orders the entry changed, in their state after it.
    pub order_updates: Vec<ledger_api::spot::OrderRecord>,
    /// The entry's log index plus one: its position in the ledger's input.
    pub through: u64,
}

/// A batch handed to the journal (its write and fdatasync under way) and
/// applied in memory: nothing of it may leave before [`LedgerService::finish`].
#[derive(Debug)]
#[must_use = "a staged batch must be finished before anything of it leaves"]
pub struct Staged {
    outcomes: Vec<Result<Outcome, LedgerError>>,
    /// The journal positions of its commands; empty for an empty batch.
    sequences: std::ops::Range<u64>,
    journal_started: Instant,
    apply: Duration,
}

/// Where a batch's time went, for the metrics behind the order path's
/// breakdown (`scripts/bench gateway`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchTimes {
    /// Applying the commands in the core, while the journal writes and syncs.
    pub apply: Duration,
    /// From handing the journal the batch until its write and fdatasync are
    /// done (the apply runs meanwhile).
    pub journal: Duration,
    /// Checking the invariants and encoding the RocksDB batch.
    pub encode: Duration,
    /// Waiting for the store writer to finish the batch before.
    pub store_wait: Duration,
}

/// A batch back from the writer, emptied, with how its write went and how long it took.
type Written = (Batch, Result<(), StorageError>, Duration);

/// The thread that writes batches to RocksDB, one at a time, in the order
/// given. It hands each batch back emptied, so its buffers serve again.
struct StoreWriter {
    batches: Option<SyncSender<Batch>>,
    written: Receiver<Written>,
    thread: Option<JoinHandle<()>>,
}

impl StoreWriter {
    fn spawn(store: Arc<Store>) -> std::io::Result<StoreWriter> {
        let (batches, to_write) = mpsc::sync_channel::<Batch>(1);
        let (done, written) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new().name("store-writer".into()).spawn(move || {
            for mut batch in to_write {
                let started = Instant::now();
                let result = store.write(&mut batch, Durability::Journaled);
                if done.send((batch, result, started.elapsed())).is_err() {
                    return;
                }
            }
        })?;
        Ok(StoreWriter { batches: Some(batches), written, thread: Some(thread) })
    }

    fn start(&self, batch: Batch) -> Result<(), ServiceError> {
        self.batches.as_ref().expect("set until drop").send(batch).map_err(|_| ServiceError::WriterGone)
    }

    fn finish(&self) -> Result<Written, ServiceError> {
        self.written.recv().map_err(|_| ServiceError::WriterGone)
    }
}

impl Drop for StoreWriter {
    /// Waits for the write in progress: whoever opens the database next
    /// (a restart in the same process) must find it closed.
    fn drop(&mut self) {
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What start-up did, for the log and the operator.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StartupReport {
    pub created: bool,
    /// The journal position RocksDB held.
    pub store_applied: u64,
    pub replayed: usize,
    pub truncated_tail: Option<String>,
}

pub struct LedgerService {
    ledger: Ledger,
    /// The heads of the accounts' transfer chains, as the batches handed to the writer leave them.
    chains: TransferChains,
    store: Arc<Store>,
    writer: StoreWriter,
    /// The journal position of the batch the writer is writing, if any.
    writing: Option<u64>,
    /// An emptied batch, for the next one to fill.
    spare: Batch,
    /// The input log when this host keeps its own; `None` on a replica,
    /// whose log is Raft's (`consensus`): it is given committed entries.
    journal: Option<Journal>,
    /// A replica's applied Raft log id and membership, written with every batch.
    replication: Option<Replication>,
    /// The journal position RocksDB holds (written, not necessarily flushed).
    journal_applied: u64,
    peers_applied: FxHashMap<PeerId, u64>,
    encoded: Vec<Vec<u8>>,
    segment_records_max: u64,
    segment_first: u64,
    /// Commands for matching not yet confirmed by it, oldest first, by forward sequence.
    outbox: VecDeque<(u64, Command)>,
    forwarded_last: u64,
    /// The last forward whose command is durable in the journal: only those
    /// may reach matching.
    forwarded_durable: u64,
    /// A batch is between [`Self::begin`] and [`Self::finish`]: the journal
    /// must not change segments under its write.
    staged: bool,
    /// Outbox entries added and confirmed since the last RocksDB write.
    outbox_added: Vec<(u64, Command)>,
    outbox_confirmed_through: u64,
    outbox_deleted_through: u64,
    /// How long the store writer took over each write finished since [`Self::take_store_writes`].
    store_writes: Vec<Duration>,
    /// How long the last `submit` waited for the write before its own.
    store_wait: Duration,
}

/// Journal records per segment before it is rotated and, once RocksDB has
/// flushed what they hold, removed.
pub const SEGMENT_RECORDS_MAX_DEFAULT: u64 = 1 << 20;

impl LedgerService {
    /// Opens RocksDB in `data_dir/db` and the journal in `data_dir/journal`,
    /// loads the stored state and replays the journal past it.
    pub fn open(data_dir: &Path, limits: LedgerLimits) -> Result<(LedgerService, StartupReport), ServiceError> {
        let (mut service, created) = LedgerService::open_store(&data_dir.join("db"), limits)?;
        if schema::load_replication(&service.store)?.is_some() {
            return Err(ServiceError::OtherMode { dir: data_dir.join("db"), written_by: REPLICA, running: OWN_JOURNAL });
        }
        let journal_applied = service.journal_applied;
        let mut report = StartupReport { created, store_applied: journal_applied, ..StartupReport::default() };
        let journal_dir = data_dir.join("journal");
        // The journal keeps its current segment forever, so an existing database
        // without one lost the records RocksDB may not have made durable.
        if !report.created && !has_segments(&journal_dir) {
            return Err(ServiceError::JournalMissing { dir: journal_dir, store_applied: journal_applied });
        }
        let (journal, recovery) = Journal::open(&journal_dir, journal_applied + 1, JOURNAL_CONTENT).map_err(|error| match error {
            // Segments RocksDB had made durable are gone, and so is the database.
            JournalError::Gap { detail } if report.created => ServiceError::DatabaseMissing { detail },
            JournalError::Gap { detail } => ServiceError::StoreAheadOfJournal { store_applied: journal_applied, detail },
            other => other.into(),
        })?;
        report.truncated_tail = recovery.truncated_text();
        if journal.next_sequence() <= journal_applied {
            let detail = format!("it ends at sequence {}", journal.next_sequence() - 1);
            return Err(ServiceError::StoreAheadOfJournal { store_applied: journal_applied, detail });
        }
        service.segment_first = journal.next_sequence();
        service.journal = Some(journal);
        service.check(journal_applied)?;
        // Replay in bounded batches so memory for the changes stays bounded.
        for chunk in recovery.records.chunks(4_096) {
            let entries = chunk
                .iter()
                .map(|record| {
                    postcard::from_bytes(&record.payload).map_err(|e| ServiceError::UndecodableRecord { sequence: record.sequence, detail: e.to_string() })
                })
                .collect::<Result<Vec<JournalEntry>, _>>()?;
            // The outcomes were returned (or the process died before they could be) the first time.
            service.apply(&entries);
            let last = chunk.last().expect("chunks are not empty").sequence;
            // The chunk's order updates went out (or died with the process) the first time.
            service.persist(last)?;
            report.replayed += chunk.len();
        }
        service.wait_written()?;
        service.forwarded_durable = service.forwarded_last;
        Ok((service, report))
    }

    /// RocksDB in `db_dir` and the state it holds, with no input log yet;
    /// whether the database was new.
    fn open_store(db_dir: &Path, limits: LedgerLimits) -> Result<(LedgerService, bool), ServiceError> {
        let store = Arc::new(schema::open(db_dir)?);
        let (ledger, journal_applied, chains, created) = match schema::load(&store)? {
            Some(loaded) => (Ledger::restore(limits, loaded.state), loaded.journal_applied, loaded.chains, false),
            None => (Ledger::new(limits), 0, TransferChains::default(), true),
        };
        let peers_applied = schema::link::load_peers(&store)?;
        let (outbox, forwarded_last) = schema::link::load_outbox(&store)?;
        let outbox_first = outbox.first().map(|(sequence, _)| sequence - 1).unwrap_or(forwarded_last);
        let service = LedgerService {
            ledger,
            chains,
            writer: StoreWriter::spawn(store.clone()).map_err(ServiceError::WriterSpawn)?,
            store,
            writing: None,
            spare: Batch::default(),
            journal: None,
            replication: None,
            journal_applied,
            peers_applied,
            encoded: Vec::new(),
            segment_records_max: SEGMENT_RECORDS_MAX_DEFAULT,
            segment_first: journal_applied + 1,
            outbox: outbox.into(),
            forwarded_last,
            forwarded_durable: forwarded_last,
            staged: false,
            outbox_added: Vec::new(),
            outbox_confirmed_through: outbox_first,
            outbox_deleted_through: outbox_first,
            store_writes: Vec::new(),
            store_wait: Duration::ZERO,
        };
        Ok((service, created))
    }

    /// Opens a replica's RocksDB in `db_dir`: the state after the last
    /// Raft entry it applied ([`Self::replication`]). Its input log is
    /// Raft's, kept beside it by `consensus`; it is given committed
    /// entries ([`Self::apply_committed`]) and replays nothing itself:
    /// openraft applies again what was committed after that entry.
    pub fn open_replicated(db_dir: &Path, limits: LedgerLimits) -> Result<LedgerService, ServiceError> {
        let (mut service, created) = LedgerService::open_store(db_dir, limits)?;
        let replication = schema::load_replication(&service.store)?;
        if replication.is_none() && !created {
            return Err(ServiceError::OtherMode { dir: db_dir.to_path_buf(), written_by: OWN_JOURNAL, running: REPLICA });
        }
        service.replication = Some(replication.unwrap_or_default());
        service.check(service.journal_applied)?;
        Ok(service)
    }

    /// A replica's applied Raft log id and membership, as RocksDB holds
    /// them once [`Self::wait_written`] returns; `None` for a ledger with
    /// its own journal.
    pub fn replication(&self) -> Option<&Replication> {
        self.replication.as_ref()
    }

    /// Applies `entries`, the Raft entry at log index `through - 1` that
    /// its cluster committed (a majority holds it synced), and hands what
    /// they changed to the store writer with `replication` (that entry's
    /// log id, the membership then in force). An entry with no commands
    /// (a leader's first, a membership change) moves the applied id alone.
    /// A command its peer had applied before is skipped, its outcome
    /// `None`: a peer that lost its leader resends to the next one what
    /// the first may still have got committed, and the log then holds it
    /// twice; every replica skips the same copy. The outcomes may be
    /// acknowledged once [`Self::wait_written`] (or the next call) has
    /// returned.
    pub fn apply_committed(&mut self, through: u64, entries: Vec<JournalEntry>, replication: Replication) -> Result<Committed, ServiceError> {
        if self.replication.is_none() {
            return Err(ServiceError::NotReplicated);
        }
        let mut seen: FxHashMap<PeerId, u64> = FxHashMap::default();
        let fresh: Vec<bool> = entries
            .iter()
            .map(|entry| {
                let last = seen.entry(entry.peer).or_insert_with(|| self.peer_applied(entry.peer));
                let fresh = entry.peer_sequence > *last;
                *last = (*last).max(entry.peer_sequence);
                fresh
            })
            .collect();
        let skipped = fresh.iter().filter(|fresh| !**fresh).count();
        let applied = if skipped == 0 {
            self.apply(&entries)
        } else {
            tracing::info!(skipped, through, "commands the log holds twice (resent through a new leader) skipped");
            let kept: Vec<JournalEntry> = entries.into_iter().zip(&fresh).filter(|(_, fresh)| **fresh).map(|(entry, _)| entry).collect();
            self.apply(&kept)
        };
        let mut applied = applied.into_iter();
        let outcomes = fresh.iter().map(|fresh| if *fresh { applied.next() } else { None }).collect();
        // Committed: durable on a majority, so its forwards may leave.
        self.forwarded_durable = self.forwarded_last;
        self.replication = Some(replication);
        let order_updates = self.persist(through)?;
        Ok(Committed { outcomes, order_updates, through })
    }

    /// Makes `entries` durable, applies them in order, writes what they
    /// changed to RocksDB and returns each one's outcome: [`Self::submit`]
    /// then [`Self::wait_written`].
    pub fn execute(&mut self, entries: &[JournalEntry]) -> Result<Vec<Result<Outcome, LedgerError>>, ServiceError> {
        let submitted = self.submit(entries)?;
        self.wait_written()?;
        Ok(submitted.outcomes)
    }

    /// Makes `entries` durable in the journal, applies them in order and
    /// hands what they changed to the store writer, after the previous
    /// batch's write is done. The outcomes may be acknowledged once
    /// [`Self::wait_written`] (or the next `submit`) has returned: then
    /// RocksDB's readers see them too. Entries a peer already had applied (a
    /// resend after a reconnect) must be filtered out by the caller with
    /// [`Self::peer_applied`]. After an `Err` the in-memory state may hold
    /// commands that are not durable: the caller must stop and let start-up
    /// recover from the files.
    pub fn submit(&mut self, entries: &[JournalEntry]) -> Result<Submitted, ServiceError> {
        let staged = self.begin(entries)?;
        self.finish(staged)
    }

    /// The first half of [`Self::submit`]: hands `entries` to the journal
    /// (write linked to fdatasync) and applies them while the disk works.
    /// Meanwhile the caller may wait for the previous batch's write
    /// ([`Self::wait_written`]) and acknowledge it; then [`Self::finish`].
    pub fn begin(&mut self, entries: &[JournalEntry]) -> Result<Staged, ServiceError> {
        let journal_started = Instant::now();
        let Some(journal) = self.journal.as_mut() else { return Err(ServiceError::Replicated) };
        if entries.is_empty() {
            let next = journal.next_sequence();
            return Ok(Staged { outcomes: Vec::new(), sequences: next..next, journal_started, apply: Duration::ZERO });
        }
        self.encoded.resize_with(entries.len(), Vec::new);
        for (entry, buffer) in entries.iter().zip(&mut self.encoded) {
            buffer.clear();
            *buffer = postcard::to_extend(entry, std::mem::take(buffer)).expect("encoding into a vector cannot fail");
        }
        let sequences = journal.begin(self.encoded[..entries.len()].iter().map(Vec::as_slice))?;
        self.staged = true;
        // The core works while the disk syncs (and the writer writes the
        // previous batch); nothing leaves before finish().
        let outcomes = self.apply(entries);
        Ok(Staged { outcomes, sequences, journal_started, apply: journal_started.elapsed() })
    }

    /// The second half of [`Self::submit`]: waits for the journal's sync,
    /// then hands what the batch changed to the store writer (after the
    /// previous batch's write is done). From here its forwards may go to
    /// matching ([`Self::outbox_after`]).
    pub fn finish(&mut self, staged: Staged) -> Result<Submitted, ServiceError> {
        let Staged { outcomes, sequences, journal_started, apply } = staged;
        if sequences.is_empty() {
            let through = sequences.start - 1;
            return Ok(Submitted { outcomes, order_updates: Vec::new(), through, times: BatchTimes::default() });
        }
        self.journal.as_mut().ok_or(ServiceError::Replicated)?.finish()?;
        self.staged = false;
        self.forwarded_durable = self.forwarded_last;
        let journal = journal_started.elapsed();
        let through = sequences.end - 1;
        let order_updates = self.persist(through)?;
        let encode = journal_started.elapsed().saturating_sub(journal + self.store_wait);
        let times = BatchTimes { apply, journal, encode, store_wait: self.store_wait };
        Ok(Submitted { outcomes, order_updates, through, times })
    }

    /// Waits until RocksDB holds every submitted batch, and returns the
    /// journal position it holds. Removes journal segments RocksDB no
    /// longer needs when the current one is full.
    pub fn wait_written(&mut self) -> Result<u64, ServiceError> {
        self.finish_write()?;
        self.trim_journal_if_full()?;
        Ok(self.journal_applied)
    }

    /// Between two writes, so that `journal_applied` is what RocksDB holds;
    /// under a steady load that is in `submit`, which never waits idle.
    fn trim_journal_if_full(&mut self) -> Result<(), ServiceError> {
        let full = self.journal.as_ref().is_some_and(|journal| journal.next_sequence() - self.segment_first >= self.segment_records_max);
        if !self.staged && full {
            self.trim_journal()?;
        }
        Ok(())
    }

    fn finish_write(&mut self) -> Result<(), ServiceError> {
        let started = Instant::now();
        if self.writing.is_some() {
            let written = self.writer.finish()?;
            self.written_through(written)?;
        }
        self.store_wait = started.elapsed();
        Ok(())
    }

    /// How long each RocksDB write finished since the last call took.
    pub fn take_store_writes(&mut self) -> impl Iterator<Item = Duration> + '_ {
        self.store_writes.drain(..)
    }

    fn written_through(&mut self, (batch, result, took): Written) -> Result<(), ServiceError> {
        let through = self.writing.take().expect("a write was under way");
        self.spare = batch;
        // Bounded for callers that never take them (tests, start-up's replay).
        if self.store_writes.len() < 64 {
            self.store_writes.push(took);
        }
        result?;
        self.journal_applied = through;
        Ok(())
    }

    /// Starts a new segment and removes the ones RocksDB no longer needs:
    /// RocksDB is flushed first, so every removed record is in its files.
    /// Only with no write in progress: `journal_applied` is what RocksDB holds.
    fn trim_journal(&mut self) -> Result<(), ServiceError> {
        debug_assert!(self.writing.is_none());
        let Some(journal) = self.journal.as_mut() else { return Ok(()) };
        journal.rotate()?;
        self.segment_first = journal.next_sequence();
        self.store.flush()?;
        let removed = journal.remove_segments_through(self.journal_applied)?;
        tracing::info!(removed, through = self.journal_applied, "journal segments removed after RocksDB flush");
        Ok(())
    }

    /// On a clean stop: waits for the last write and flushes RocksDB, so
    /// the next start replays nothing and RocksDB's files alone hold the
    /// state (what a backup of a stopped ledger copies).
    pub fn checkpoint(&mut self) -> Result<(), ServiceError> {
        self.finish_write()?;
        self.store.flush()?;
        Ok(())
    }

    pub fn set_segment_records_max(&mut self, records: u64) {
        self.segment_records_max = records.max(1);
    }

    pub fn journal_segments(&self) -> usize {
        self.journal.as_ref().map_or(0, Journal::segment_count)
    }

    fn apply(&mut self, entries: &[JournalEntry]) -> Vec<Result<Outcome, LedgerError>> {
        for entry in entries {
            let applied = self.peers_applied.entry(entry.peer).or_default();
            *applied = (*applied).max(entry.peer_sequence);
        }
        let mut outcomes = Vec::with_capacity(entries.len());
        let LedgerService { ledger, forwarded_last, outbox, outbox_added, .. } = self;
        ledger.apply_all(entries.iter().map(|entry| (&entry.command, entry.at_ms)), |_, applied| {
            // Numbered here, on the journal's order, so replay numbers them the same.
            for command in applied.forward.into_iter().chain(applied.forward_more) {
                *forwarded_last += 1;
                outbox.push_back((*forwarded_last, command));
                outbox_added.push((*forwarded_last, command));
            }
            outcomes.push(applied.outcome);
        });
        outcomes
    }

    /// Commands for matching after forward sequence `after`, oldest first:
    /// what a fresh connection to matching must (re)send. Only commands
    /// whose batch is synced in the journal are given.
    pub fn outbox_after(&self, after: u64) -> impl Iterator<Item = &(u64, Command)> {
        let skip = self.outbox.partition_point(|(sequence, _)| *sequence <= after);
        let durable = self.outbox.partition_point(|(sequence, _)| *sequence <= self.forwarded_durable);
        self.outbox.range(skip..durable.max(skip))
    }

    /// Matching applied every forwarded command through `through`: they
    /// leave the outbox (in memory now, in RocksDB with the next batch).
    pub fn confirm_forwarded(&mut self, through: u64) {
        let through = through.min(self.forwarded_last);
        while self.outbox.front().is_some_and(|(sequence, _)| *sequence <= through) {
            self.outbox.pop_front();
        }
        self.outbox_confirmed_through = self.outbox_confirmed_through.max(through);
    }

    /// The newest forward sequence assigned.
    pub fn forwarded_last(&self) -> u64 {
        self.forwarded_last
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Checks the invariants and hands what the applied commands changed,
    /// through journal position `sequence`, to the writer, once it has
    /// written the previous batch. Returns the changed orders' records.
    fn persist(&mut self, sequence: u64) -> Result<Vec<ledger_api::spot::OrderRecord>, ServiceError> {
        self.check(sequence)?;
        let changes = self.ledger.take_changes();
        for record in &changes.operators.audit {
            // Durable in the journal by now; also for the host's journal and a SIEM.
            let event = serde_json::to_string(&record.event).unwrap_or_default();
            tracing::info!(target: "marionette::audit", sequence = record.sequence, at_ms = record.at_ms, hash = %record.hash.hex(), event, "audit record");
        }
        let mut order_updates: Vec<_> = changes.spot.orders.iter().filter_map(|id| self.ledger.spot().order(*id)).cloned().collect();
        order_updates.extend(changes.spot.closed_orders.iter().cloned());
        // Encoded now, from the state after this batch: the core moves on
        // with the next one while the writer writes it.
        let mut batch = std::mem::take(&mut self.spare);
        schema::write_changes(&mut batch, &self.ledger, &changes, &mut self.chains, sequence);
        schema::link::write_peers(&mut batch, &self.peers_applied);
        if let Some(replication) = &self.replication {
            schema::write_replication(&mut batch, replication);
        }
        let added = std::mem::take(&mut self.outbox_added);
        // Entries added and confirmed in the same interval are put and deleted
        // in one batch; the batch is sorted stably, so the delete wins.
        let confirmed = self.outbox_deleted_through + 1..=self.outbox_confirmed_through;
        schema::link::write_outbox(&mut batch, &added, confirmed, self.forwarded_last);
        self.ledger.recycle(changes);
        self.outbox_deleted_through = self.outbox_confirmed_through;
        self.finish_write()?;
        self.trim_journal_if_full()?;
        self.writer.start(batch)?;
        self.writing = Some(sequence);
        Ok(order_updates)
    }

    fn check(&self, sequence: u64) -> Result<(), ServiceError> {
        self.ledger.check_invariants().map_err(|detail| ServiceError::Invariant { sequence, detail })
    }

    /// The last sequence applied from `peer` (0 for none).
    pub fn peer_applied(&self, peer: PeerId) -> u64 {
        self.peers_applied.get(&peer).copied().unwrap_or(0)
    }

    /// The journal position RocksDB holds: the last batch written, which
    /// may be behind the last one submitted.
    pub fn journal_applied(&self) -> u64 {
        self.journal_applied
    }

    /// See [`Ledger::touch_reserved`].
    pub fn touch_reserved(&mut self) -> usize {
        self.ledger.touch_reserved()
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A handle for readers on other threads: RocksDB serves them
    /// concurrently, and every batch is visible whole or not at all.
    pub fn shared_store(&self) -> Arc<Store> {
        self.store.clone()
    }
}

/// The database readers on other threads answer from: a replica replaces
/// it whole when it installs a snapshot. RocksDB allows one open instance
/// of a path per process, so the old one must be closed, every reader
/// done with it, before the new one opens: meanwhile there is none.
#[derive(Clone)]
pub struct StoreHandle(Arc<std::sync::RwLock<Option<Arc<Store>>>>);

impl StoreHandle {
    pub fn new(store: Arc<Store>) -> StoreHandle {
        StoreHandle(Arc::new(std::sync::RwLock::new(Some(store))))
    }

    /// The database as of now (none while a snapshot is installed); hold
    /// it for one read, not longer.
    pub fn current(&self) -> Option<Arc<Store>> {
        // Only assignments run under the write lock: never poisoned in use.
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Takes the database from the readers: none is given out until [`Self::put`].
    pub fn take(&self) -> Option<Arc<Store>> {
        self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    pub fn put(&self, store: Arc<Store>) {
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(store);
    }
}

/// Closes `store` once the readers still reading it are done: they hold
/// it for one read each, so this waits at most `patience` for them.
pub fn close_after_readers(mut store: Arc<Store>, patience: Duration) -> Result<(), Arc<Store>> {
    let deadline = Instant::now() + patience;
    loop {
        match Arc::try_unwrap(store) {
            Ok(store) => {
                drop(store);
                return Ok(());
            }
            Err(shared) if Instant::now() < deadline => {
                store = shared;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(shared) => return Err(shared),
        }
    }
}

fn has_segments(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("journal-"))).unwrap_or(false)
}
