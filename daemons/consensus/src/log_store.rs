//! openraft's log store over the journal.
//!
//! Entry `index` is the journal's record `index + 1` (Raft counts from 0,
//! the journal from 1), its term in the record's header, its payload
//! postcard-encoded. `append` keeps the entries in memory, readable at
//! once, and hands them to the writer thread, which journals whatever has
//! queued up as one group commit (a write linked to an fdatasync) and only
//! then tells openraft they are flushed: a replica acknowledges nothing it
//! could lose. Truncations, purges and votes go through the same thread, so
//! they happen in the order openraft asked for them, each durable before it
//! is answered.
//!
//! The replica's [`ReplicaState`] says through which index the journal was
//! synced: at start, damage at or before it is refused, never cut off as a
//! torn tail ([`journal::Journal::open_durable`]). The thread writes it
//! with every vote and purge, lowers it before a truncation, and raises it
//! when its queue runs empty (at most every 200 ms), so that the last batch
//! before a crash is covered too (the last committed id goes with it).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use journal::{Content, Journal, JournalError, Record};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftTypeConfig, StorageError, StorageIOError, Vote};
use tokio::sync::{mpsc, oneshot};

use crate::replica_state::{ReplicaState, StateError};
use crate::NodeId;

/// Entries kept in memory after they are flushed, for followers a little
/// behind; older ones are read back from the journal.
pub const CACHED_ENTRIES_MAX: usize = 4_096;
/// Requests waiting for the writer thread; `append` waits when it is full.
pub const WRITER_QUEUE_MAX: usize = 1_024;
/// The state file is written when the writer is idle at most this often (votes, truncations and purges write it at once).
pub const STATE_WRITES_INTERVAL_MS: u64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "the replica's journal in {dir} starts at entry {starts} but the entries after {purged} were never purged: \
         segments were removed by hand. Move the directory aside and rejoin the replica (marionettectl cluster rejoin)"
    )]
    Hole { dir: PathBuf, starts: u64, purged: u64 },
    #[error("journal record {sequence} cannot be decoded ({detail}); it passed its checksum, so the build that wrote it was broken")]
    Undecodable { sequence: u64, detail: String },
    #[error("entry {index} does not follow the log's last entry {last}: Raft must never leave a hole in a log")]
    NotContiguous { index: u64, last: u64 },
    #[error(
        "the replica's journal in {dir} holds entries but its state file ({file}) is gone: the vote it gave is lost, and it could \
         vote twice in a term. Move the directory aside and rejoin the replica (marionettectl cluster rejoin)"
    )]
    StateMissing { dir: PathBuf, file: &'static str },
    #[error("cannot start the journal writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the journal writer thread is gone (it failed before; see the log): the replica must restart")]
    WriterGone,
}

impl From<LogStoreError> for std::io::Error {
    fn from(error: LogStoreError) -> std::io::Error {
        std::io::Error::other(error.to_string())
    }
}

fn sequence(index: u64) -> u64 {
    // Saturating: an unbounded range's end is u64::MAX.
    index.saturating_add(1)
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

/// What the writer thread is asked to do, in order.
enum Request<C: RaftTypeConfig> {
    /// `epoch`: the cache's when the entries were appended (see [`Cache::epoch`]).
    Append {
        records: Vec<(u64, Vec<u8>)>,
        first_index: u64,
        epoch: u64,
        callback: LogFlushed<C>,
    },
    Truncate {
        from_index: u64,
        reply: oneshot::Sender<Result<(), LogStoreError>>,
    },
    Purge {
        upto: LogId<NodeId>,
        reply: oneshot::Sender<Result<(), LogStoreError>>,
    },
    SaveVote {
        vote: Vote<NodeId>,
        reply: oneshot::Sender<Result<(), LogStoreError>>,
    },
}

/// The entries readable now: flushed or not, newest last.
struct Cache<C: RaftTypeConfig> {
    entries: BTreeMap<u64, Entry<C>>,
    last: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
    /// The last index the writer thread journaled: only entries up to it
    /// may leave the cache, the others are not readable from the journal yet.
    flushed: Option<u64>,
    /// Counts truncations: an append journaled after a truncation that came
    /// after it (its entries cut again) must not raise `flushed`.
    epoch: u64,
    /// The last committed id openraft told of; written with the state when
    /// the writer is idle (a stale one only means replaying a little more).
    committed: Option<LogId<NodeId>>,
}

struct Shared<C: RaftTypeConfig> {
    dir: PathBuf,
    journal: Mutex<Journal>,
    cache: Mutex<Cache<C>>,
    state: Mutex<ReplicaState>,
    /// When the state file was last written.
    state_written: Mutex<Instant>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere aborts the process (release profile); never poisoned in use.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The log store openraft drives: clone it for as many readers as it asks for.
pub struct LogStore<C: RaftTypeConfig> {
    shared: Arc<Shared<C>>,
    writer: mpsc::Sender<Request<C>>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore { shared: self.shared.clone(), writer: self.writer.clone() }
    }
}

/// What `open` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// No state file was there: a replica that never started, or a wiped one.
    pub new: bool,
    pub entries: u64,
    pub truncated_tail: Option<String>,
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Entry = Entry<C>>,
    C::D: Clone,
{
    /// Opens the replica's log in `dir` (its journal of `content` and its
    /// state file) and starts the writer thread.
    pub fn open(dir: &Path, content: Content) -> Result<(LogStore<C>, Opened), LogStoreError> {
        std::fs::create_dir_all(dir).map_err(|source| JournalError::Io { operation: "create directory", path: dir.to_path_buf(), source })?;
        let found = ReplicaState::read(dir)?;
        let new = found.is_none();
        let state = found.unwrap_or_default();
        let durable_through = state.durable.map_or(0, sequence);
        let (journal, recovery) = Journal::open_durable(dir, 0, content, durable_through)?;
        if new && !recovery.records.is_empty() {
            return Err(LogStoreError::StateMissing { dir: dir.to_path_buf(), file: crate::replica_state::STATE_FILE });
        }
        let purged_through = state.last_purged.map_or(0, |purged| sequence(purged.index));
        if !recovery.records.is_empty() && journal.first_sequence() > purged_through + 1 {
            return Err(LogStoreError::Hole { dir: dir.to_path_buf(), starts: journal.first_sequence() - 1, purged: purged_through.saturating_sub(1) });
        }
        let kept = recovery.records.iter().filter(|record| record.sequence > purged_through);
        let mut entries = BTreeMap::new();
        let mut last = state.last_purged;
        let count = kept.clone().count();
        for record in kept.skip(count.saturating_sub(CACHED_ENTRIES_MAX)) {
            let entry = decode::<C>(record)?;
            last = Some(entry.log_id);
            entries.insert(entry.log_id.index, entry);
        }
        let opened = Opened { new, entries: count as u64, truncated_tail: recovery.truncated_text() };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            journal: Mutex::new(journal),
            cache: Mutex::new(Cache {
                entries,
                last,
                last_purged: state.last_purged,
                flushed: last.map(|last| last.index),
                epoch: 0,
                committed: state.committed,
            }),
            state: Mutex::new(state),
            state_written: Mutex::new(Instant::now()),
        });
        let (writer, requests) = mpsc::channel(WRITER_QUEUE_MAX);
        let thread_shared = shared.clone();
        std::thread::Builder::new().name("raft-journal".into()).spawn(move || write_loop(thread_shared, requests)).map_err(LogStoreError::Thread)?;
        Ok((LogStore { shared, writer }, opened))
    }

    /// The state as the writer thread last wrote it.
    pub fn replica_state(&self) -> ReplicaState {
        lock(&self.shared.state).clone()
    }

    async fn ask(&self, request: impl FnOnce(oneshot::Sender<Result<(), LogStoreError>>) -> Request<C>) -> Result<(), LogStoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(request(reply)).await.map_err(|_| LogStoreError::WriterGone)?;
        answer.await.map_err(|_| LogStoreError::WriterGone)?
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Entry<C>>, LogStoreError> {
        let (mut from_cache, cached_first, purged) = {
            let cache = lock(&self.shared.cache);
            let purged = cache.last_purged.map_or(0, |purged| purged.index + 1);
            let start = start.max(purged);
            if start >= end {
                return Ok(Vec::new());
            }
            let found: Vec<_> = cache.entries.range(start..end).map(|(_, entry)| entry.clone()).collect();
            (found, cache.entries.keys().next().copied(), start)
        };
        let start = purged;
        // Older than the cache: from the journal's files.
        let read_end = cached_first.map_or(end, |first| first.min(end));
        if start >= read_end {
            return Ok(from_cache);
        }
        let records = lock(&self.shared.journal).read(sequence(start)..sequence(read_end))?;
        let mut entries = records.iter().map(decode::<C>).collect::<Result<Vec<_>, _>>()?;
        entries.append(&mut from_cache);
        Ok(entries)
    }
}

fn decode<C>(record: &Record) -> Result<Entry<C>, LogStoreError>
where
    C: RaftTypeConfig<NodeId = NodeId, Entry = Entry<C>>,
    C::D: Clone,
{
    let payload: EntryPayload<C> =
        postcard::from_bytes(&record.payload).map_err(|error| LogStoreError::Undecodable { sequence: record.sequence, detail: error.to_string() })?;
    Ok(Entry { log_id: log_id(record.term, record.sequence - 1), payload })
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&start) => start,
        Bound::Excluded(&start) => start.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&end) => end.saturating_add(1),
        Bound::Excluded(&end) => end,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

/// The writer thread: takes requests in order, journals runs of appends as one group commit.
fn write_loop<C>(shared: Arc<Shared<C>>, mut requests: mpsc::Receiver<Request<C>>)
where
    C: RaftTypeConfig<NodeId = NodeId, Entry = Entry<C>>,
    C::D: Clone,
{
    let mut next = requests.blocking_recv();
    while let Some(request) = next.take() {
        match request {
            Request::Append { records, first_index, mut epoch, callback } => {
                let mut records = records;
                let mut callbacks = vec![callback];
                let mut last_index = first_index + records.len() as u64 - 1;
                // Everything that queued up meanwhile goes in the same write and sync.
                loop {
                    match requests.try_recv() {
                        Ok(Request::Append { records: more, first_index: more_first, epoch: more_epoch, callback }) if more_first == last_index + 1 => {
                            last_index = more_first + more.len() as u64 - 1;
                            epoch = more_epoch;
                            records.extend(more);
                            callbacks.push(callback);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let result = append_records(&shared, &records, first_index);
                if result.is_ok() {
                    let mut cache = lock(&shared.cache);
                    if cache.epoch == epoch {
                        cache.flushed = Some(last_index);
                    }
                }
                let failed = result.is_err();
                for callback in callbacks {
                    callback.log_io_completed(result.as_ref().map(|_| ()).map_err(|error| std::io::Error::other(error.to_string())));
                }
                if failed {
                    // The journal refuses further writes; openraft stops on the error.
                    tracing::error!("the replica's journal failed; it accepts nothing more until the daemon restarts");
                }
            }
            Request::Truncate { from_index, reply } => {
                let _ = reply.send(truncate(&shared, from_index));
            }
            Request::Purge { upto, reply } => {
                let _ = reply.send(purge(&shared, upto));
            }
            Request::SaveVote { vote, reply } => {
                let _ = reply.send(write_state(&shared, |state| state.vote = Some(vote)));
            }
        }
        if next.is_none() {
            next = next_when_idle(&shared, &mut requests);
        }
    }
}

/// Waits for the next request. While there is none, records how far the
/// journal is synced, so that the last batch is covered too, but not
/// sooner than [`STATE_WRITES_INTERVAL_MS`] after the last such write: a
/// state file costs two fsyncs, and under a trickle of appends writing it
/// at every pause would triple the disk's work.
fn next_when_idle<C: RaftTypeConfig>(shared: &Shared<C>, requests: &mut mpsc::Receiver<Request<C>>) -> Option<Request<C>> {
    loop {
        match requests.try_recv() {
            Ok(request) => return Some(request),
            Err(mpsc::error::TryRecvError::Disconnected) => {
                let _ = write_state(shared, |_| {});
                return None;
            }
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        let since = lock(&shared.state_written).elapsed();
        if since >= Duration::from_millis(STATE_WRITES_INTERVAL_MS) {
            if let Err(error) = write_state(shared, |_| {}) {
                tracing::error!(%error, "could not record the replica's durable index");
            }
            return requests.blocking_recv();
        }
        std::thread::sleep(Duration::from_millis(STATE_WRITES_INTERVAL_MS).saturating_sub(since).min(Duration::from_millis(10)));
    }
}

/// The last index the journal holds synced.
fn durable_index(shared: &Shared<impl RaftTypeConfig>) -> Option<u64> {
    lock(&shared.journal).next_sequence().checked_sub(2)
}

/// Writes the state with `change`, the journal's durable index and the
/// last committed id, unless that is what the file already says.
fn write_state<C: RaftTypeConfig>(shared: &Shared<C>, change: impl FnOnce(&mut ReplicaState)) -> Result<(), LogStoreError> {
    let durable = durable_index(shared);
    let committed = lock(&shared.cache).committed;
    let mut state = lock(&shared.state);
    let mut changed = state.clone();
    change(&mut changed);
    changed.durable = durable;
    changed.committed = committed;
    if changed == *state {
        return Ok(());
    }
    changed.write(&shared.dir)?;
    *state = changed;
    *lock(&shared.state_written) = Instant::now();
    Ok(())
}

fn append_records<C: RaftTypeConfig>(shared: &Shared<C>, records: &[(u64, Vec<u8>)], first_index: u64) -> Result<(), LogStoreError> {
    let mut journal = lock(&shared.journal);
    let first = sequence(first_index);
    if journal.next_sequence() != first {
        let empty = journal.next_sequence() == journal.first_sequence();
        if empty && journal.next_sequence() < first {
            // An empty log starting past a snapshot.
            journal.reset(first)?;
        } else {
            return Err(LogStoreError::NotContiguous { index: first_index, last: journal.next_sequence().saturating_sub(2) });
        }
    }
    journal.append_entries(records.iter().map(|(term, payload)| (*term, payload.as_slice())))?;
    Ok(())
}

fn truncate<C: RaftTypeConfig>(shared: &Shared<C>, from_index: u64) -> Result<(), LogStoreError> {
    // The durable mark comes down first: a crash after the cut must not find it above the journal's end.
    {
        let mut state = lock(&shared.state);
        if state.durable.is_some_and(|durable| durable >= from_index) {
            let mut changed = state.clone();
            changed.durable = from_index.checked_sub(1);
            changed.write(&shared.dir)?;
            *state = changed;
        }
    }
    let mut journal = lock(&shared.journal);
    if sequence(from_index) < journal.first_sequence() {
        // Nothing kept of the journal from there: start it over.
        journal.reset(sequence(from_index))?;
    } else {
        journal.truncate_after(sequence(from_index) - 1)?;
    }
    Ok(())
}

fn purge<C: RaftTypeConfig>(shared: &Shared<C>, upto: LogId<NodeId>) -> Result<(), LogStoreError> {
    // Recorded before anything is removed: the log's start is known after any crash.
    write_state(shared, |state| state.last_purged = Some(upto))?;
    let mut journal = lock(&shared.journal);
    if sequence(upto.index) + 1 >= journal.next_sequence() {
        // Everything is purged (a snapshot at or past the log's end): the log starts after it.
        journal.reset(sequence(upto.index) + 1)?;
    } else {
        journal.remove_segments_through(sequence(upto.index))?;
    }
    Ok(())
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Entry = Entry<C>>,
    C::D: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(&mut self, range: RB) -> Result<Vec<Entry<C>>, StorageError<NodeId>> {
        let (start, end) = bounds(&range);
        self.entries(start, end).map_err(|error| StorageIOError::read_logs(&std::io::Error::from(error)).into())
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Entry = Entry<C>>,
    C::D: Clone,
{
    type LogReader = LogStore<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<NodeId>> {
        let cache = lock(&self.shared.cache);
        Ok(LogState { last_purged_log_id: cache.last_purged, last_log_id: cache.last.or(cache.last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.ask(|reply| Request::SaveVote { vote, reply }).await.map_err(|error| StorageIOError::write_vote(&std::io::Error::from(error)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(lock(&self.shared.state).vote)
    }

    /// Kept in memory and written when the writer is next idle: a sync per
    /// commit would halve the log's throughput, and openraft only uses it to
    /// replay committed entries sooner after a restart.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        lock(&self.shared.cache).committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(lock(&self.shared.cache).committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        let mut first_index = None;
        let epoch;
        {
            let mut cache = lock(&self.shared.cache);
            epoch = cache.epoch;
            for entry in entries {
                let index = entry.log_id.index;
                let last = cache.last.map(|last| last.index);
                if let Some(last) = last.filter(|last| index != last + 1) {
                    return Err(StorageIOError::write_logs(&std::io::Error::from(LogStoreError::NotContiguous { index, last })).into());
                }
                first_index.get_or_insert(index);
                let payload = postcard::to_stdvec(&entry.payload).expect("encoding into a vector cannot fail");
                records.push((entry.log_id.leader_id.term, payload));
                cache.last = Some(entry.log_id);
                cache.entries.insert(index, entry);
            }
            while cache.entries.len() > CACHED_ENTRIES_MAX
                && cache.entries.first_key_value().is_some_and(|(index, _)| cache.flushed.is_some_and(|flushed| *index <= flushed))
            {
                cache.entries.pop_first();
            }
        }
        let Some(first_index) = first_index else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        self.writer
            .send(Request::Append { records, first_index, epoch, callback })
            .await
            .map_err(|_| StorageIOError::write_logs(&std::io::Error::from(LogStoreError::WriterGone)).into())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let from_index = log_id.index;
        // The entry before the cut, from the cache or else the journal (where it is flushed: the cache keeps the others).
        let before = match from_index.checked_sub(1) {
            Some(before) => self.entries(before, from_index).map_err(|error| StorageIOError::read_logs(&std::io::Error::from(error)))?.pop(),
            None => None,
        };
        {
            let mut cache = lock(&self.shared.cache);
            cache.entries.split_off(&from_index);
            cache.last = before.map(|entry| entry.log_id).or(cache.last_purged);
            cache.flushed = cache.flushed.filter(|_| from_index > 0).map(|flushed| flushed.min(from_index - 1));
            cache.epoch += 1;
        }
        self.ask(|reply| Request::Truncate { from_index, reply }).await.map_err(|error| StorageIOError::write_logs(&std::io::Error::from(error)).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        {
            let mut cache = lock(&self.shared.cache);
            cache.entries = cache.entries.split_off(&(log_id.index + 1));
            cache.last_purged = Some(log_id);
            if cache.last.is_none_or(|last| last.index <= log_id.index) {
                cache.last = Some(log_id);
            }
            cache.flushed = Some(cache.flushed.map_or(log_id.index, |flushed| flushed.max(log_id.index)));
        }
        self.ask(|reply| Request::Purge { upto: log_id, reply }).await.map_err(|error| StorageIOError::write_logs(&std::io::Error::from(error)).into())
    }
}
