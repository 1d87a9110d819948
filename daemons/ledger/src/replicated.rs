//! The ledger as a Raft state machine (issue 29): each replica applies the
//! entries its cluster committed through the same pure core into its own
//! RocksDB, and sends or receives its state as a snapshot.
//!
//! An entry is one group-commit batch of [`JournalEntry`]s, stamped by the
//! leader's clock, so every replica computes the same outcomes. RocksDB
//! holds, in each batch it writes, the log id of the entry the batch ends
//! with (`schema::Replication`), so at start openraft learns from it where
//! to apply from; the log store keeps every entry after the last snapshot,
//! and a snapshot is taken only from flushed files, so nothing RocksDB had
//! not flushed is ever purged from the log.
//!
//! A snapshot is a RocksDB checkpoint packed into one archive
//! (`consensus::snapshot_archive`) under `snapshots/` beside the database,
//! with its meta in a synced file. Installing one unpacks it beside the
//! database, opens it to check that it holds the state its meta names
//! (invariants, conservation included), and only then swaps the
//! directories; a crash in between is finished at the next start.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use consensus::snapshot_archive::{self, ArchiveError};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use products::LedgerLimits;

use crate::schema::Replication;
use crate::service::{close_after_readers, Committed, JournalEntry, LedgerService, ServiceError, StoreHandle};

openraft::declare_raft_types!(
    /// The ledger cluster's types: an entry carries a batch of commands,
    /// its response their outcomes and the orders they changed.
    pub LedgerRaft:
        D = Vec<JournalEntry>,
        R = Committed,
        NodeId = u64,
        Node = BasicNode,
        Entry = Entry<LedgerRaft>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A snapshot's meta in this cluster: the log id it ends at, the membership then, its name.
type Meta = SnapshotMeta<u64, BasicNode>;

/// What the replica's Raft log holds: openraft's entries of `ledger-api`'s
/// journal entries, in its format version.
pub const RAFT_LOG_CONTENT: journal::Content = journal::Content { kind: *b"LRFT", version: ledger_api::FORMAT_VERSION };

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    State(#[from] journal::JournalError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the snapshot's database holds the state after {found:?}, not after {expected:?} as its meta says: refused, nothing installed. Ask the leader for it again")]
    SnapshotMismatch { expected: Option<LogId<u64>>, found: Option<LogId<u64>> },
    #[error("the snapshot meta file {path} cannot be decoded ({detail}); remove it, and the replica takes a new snapshot")]
    Meta { path: PathBuf, detail: String },
    #[error("a snapshot was installed without being received first")]
    NotReceiving,
    #[error("the ledger is closed: a snapshot's install failed halfway; restart the daemon, which finishes or undoes it")]
    Closed,
    #[error("a reader held the ledger's database for longer than {}s while a snapshot was being installed; restart the daemon, which finishes or undoes the install", READERS_PATIENCE.as_secs())]
    ReadersHold,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> MachineError + 'a {
    move |source| MachineError::Io { action, path: path.to_path_buf(), source }
}

/// A replica's ledger: the service (RocksDB and the pure core) behind a
/// lock, shared by openraft's state machine and snapshot builder.
#[derive(Clone)]
pub struct LedgerMachine {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` only while a snapshot's install swaps the databases.
    service: Mutex<Option<LedgerService>>,
    /// The replica's directory: `db/` (RocksDB), `snapshots/`.
    data_dir: PathBuf,
    limits: LedgerLimits,
    /// The file a snapshot is being received into.
    receiving: Mutex<Option<PathBuf>>,
    /// The database the daemon's readers use: the installed snapshot's, once installed.
    readers: StoreHandle,
}

impl LedgerMachine {
    /// Opens the replica's RocksDB in `data_dir/db`, first finishing or
    /// undoing a snapshot install a crash interrupted.
    pub fn open(data_dir: &Path, limits: LedgerLimits) -> Result<LedgerMachine, MachineError> {
        recover_install(data_dir)?;
        let service = LedgerService::open_replicated(&data_dir.join(DB), limits)?;
        // Only once the database is known a replica's: a refused directory is left as it was.
        fs::create_dir_all(data_dir.join(SNAPSHOTS)).map_err(io("cannot create", data_dir))?;
        let readers = StoreHandle::new(service.shared_store());
        let inner = Inner { service: Mutex::new(Some(service)), data_dir: data_dir.to_path_buf(), limits, receiving: Mutex::new(None), readers };
        Ok(LedgerMachine { inner: Arc::new(inner) })
    }

    /// The database for the daemon's readers, which follows snapshot installs.
    pub fn readers(&self) -> StoreHandle {
        self.inner.readers.clone()
    }

    /// Runs `read` on the ledger as applied so far.
    pub fn with_service<T>(&self, read: impl FnOnce(&mut LedgerService) -> T) -> Result<T, MachineError> {
        let mut guard = self.inner.lock_service();
        guard.as_mut().map(read).ok_or(MachineError::Closed)
    }
}

/// How long an install waits for the readers of the old database to let go.
const READERS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

const DB: &str = "db";
const SNAPSHOTS: &str = "snapshots";
/// A received snapshot, unpacked and checked, before it replaces `db`.
const DB_INSTALLING: &str = "db.installing";
/// The database a snapshot replaced, until the new one is in place.
const DB_REPLACED: &str = "db.replaced";

/// Finishes an install a crash interrupted after the old database was
/// moved aside, or forgets one interrupted before: the checked snapshot
/// is either wholly in place or not at all.
fn recover_install(data_dir: &Path) -> Result<(), MachineError> {
    let (db, installing, replaced) = (data_dir.join(DB), data_dir.join(DB_INSTALLING), data_dir.join(DB_REPLACED));
    if !db.exists() && installing.exists() && replaced.exists() {
        tracing::warn!(dir = %data_dir.display(), "finishing a snapshot install a stop interrupted");
        fs::rename(&installing, &db).map_err(io("cannot rename into place", &db))?;
        sync_dir(data_dir)?;
    }
    for leftover in [installing, replaced, snapshot_archive::partial_path(&data_dir.join(DB_INSTALLING))] {
        if leftover.exists() {
            fs::remove_dir_all(&leftover).map_err(io("cannot remove", &leftover))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), MachineError> {
    fs::File::open(dir).and_then(|file| file.sync_all()).map_err(io("cannot sync", dir))
}

/// A snapshot's name: the log id it ends at, so that names sort with it.
fn snapshot_id(last: Option<LogId<u64>>) -> String {
    match last {
        Some(log_id) => format!("{:020}-{:020}", log_id.leader_id.term, log_id.index),
        None => "empty".into(),
    }
}

impl Inner {
    fn lock_service(&self) -> MutexGuard<'_, Option<LedgerService>> {
        // A panic while holding it aborts the process (release profile): never poisoned in use.
        self.service.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshots(&self) -> PathBuf {
        self.data_dir.join(SNAPSHOTS)
    }

    fn apply(&self, entries: Vec<Entry<LedgerRaft>>) -> Result<Vec<Committed>, MachineError> {
        let mut guard = self.lock_service();
        let service = guard.as_mut().ok_or(MachineError::Closed)?;
        let mut responses = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut replication = service.replication().cloned().unwrap_or_default();
            replication.applied = Some(entry.log_id);
            let commands = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(commands) => commands,
                EntryPayload::Membership(membership) => {
                    replication.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            responses.push(service.apply_committed(entry.log_id.index + 1, commands, replication)?);
        }
        // Answered once RocksDB holds them: whoever is told reads them there.
        service.wait_written()?;
        Ok(responses)
    }

    /// Checkpoints RocksDB as of the last applied entry (applies wait
    /// meanwhile), then packs it while they go on.
    fn build_snapshot(&self) -> Result<(Meta, PathBuf), MachineError> {
        let (meta, checkpoint) = {
            let mut guard = self.lock_service();
            let service = guard.as_mut().ok_or(MachineError::Closed)?;
            service.wait_written()?;
            let replication = service.replication().cloned().unwrap_or_default();
            let snapshot_id = snapshot_id(replication.applied);
            let checkpoint = self.snapshots().join(format!("{snapshot_id}.checkpoint"));
            if checkpoint.exists() {
                fs::remove_dir_all(&checkpoint).map_err(io("cannot remove", &checkpoint))?;
            }
            service.store().checkpoint(&checkpoint)?;
            (SnapshotMeta { last_log_id: replication.applied, last_membership: replication.membership, snapshot_id }, checkpoint)
        };
        let archive = self.snapshots().join(format!("{}.tar", meta.snapshot_id));
        let packed = snapshot_archive::pack(&checkpoint, &archive)?;
        fs::remove_dir_all(&checkpoint).map_err(io("cannot remove", &checkpoint))?;
        self.keep_snapshot(&meta)?;
        tracing::info!(snapshot = meta.snapshot_id, files = packed.files, bytes = packed.bytes, "snapshot taken");
        Ok((meta, archive))
    }

    /// Makes `meta`'s archive the current snapshot (its meta written and
    /// synced after the archive) and removes the ones before it.
    fn keep_snapshot(&self, meta: &Meta) -> Result<(), MachineError> {
        let bytes = postcard::to_stdvec(meta).expect("encoding into a vector cannot fail");
        journal::state_file::write(&self.snapshots().join(format!("{}.meta", meta.snapshot_id)), &bytes)?;
        let keep = [format!("{}.tar", meta.snapshot_id), format!("{}.meta", meta.snapshot_id)];
        for entry in fs::read_dir(self.snapshots()).map_err(io("cannot read", &self.snapshots()))? {
            let entry = entry.map_err(io("cannot read", &self.snapshots()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let older = (name.ends_with(".tar") || name.ends_with(".meta")) && !name.starts_with("incoming-") && !keep.contains(&name);
            if older {
                fs::remove_file(entry.path()).map_err(io("cannot remove", &entry.path()))?;
            }
        }
        Ok(())
    }

    /// The newest snapshot whose meta and archive are both there.
    fn current_snapshot(&self) -> Result<Option<(Meta, PathBuf)>, MachineError> {
        let mut metas: Vec<PathBuf> = fs::read_dir(self.snapshots())
            .map_err(io("cannot read", &self.snapshots()))?
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "meta"))
            .collect();
        metas.sort();
        while let Some(path) = metas.pop() {
            let archive = path.with_extension("tar");
            if !archive.exists() {
                continue;
            }
            let Some(bytes) = journal::state_file::read(&path)? else { continue };
            let meta = postcard::from_bytes(&bytes).map_err(|error| MachineError::Meta { path: path.clone(), detail: error.to_string() })?;
            return Ok(Some((meta, archive)));
        }
        Ok(None)
    }

    fn begin_receiving(&self) -> Result<(fs::File, PathBuf), MachineError> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = self.snapshots().join(format!("incoming-{nanos}.tar"));
        let file = fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(io("cannot create", &path))?;
        let mut receiving = self.receiving.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(abandoned) = receiving.replace(path.clone()) {
            let _ = fs::remove_file(abandoned);
        }
        Ok((file, path))
    }

    /// Unpacks the received snapshot beside the database, checks it holds
    /// the state `meta` names, and swaps it in.
    fn install(&self, meta: &Meta) -> Result<(), MachineError> {
        let received = self.receiving.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take().ok_or(MachineError::NotReceiving)?;
        let data_dir = &self.data_dir;
        let installing = data_dir.join(DB_INSTALLING);
        recover_install(data_dir)?;
        let unpacked = snapshot_archive::unpack(&received, &installing);
        let unpacked = match unpacked {
            Ok(unpacked) => unpacked,
            Err(error) => {
                let _ = fs::remove_file(&received);
                return Err(error.into());
            }
        };
        // Opened and checked (invariants, conservation) before anything is replaced.
        let found = LedgerService::open_replicated(&installing, self.limits)?.replication().and_then(|replication| replication.applied);
        if found != meta.last_log_id {
            let _ = fs::remove_dir_all(&installing);
            let _ = fs::remove_file(&received);
            return Err(MachineError::SnapshotMismatch { expected: meta.last_log_id, found });
        }
        let mut guard = self.lock_service();
        // Closes RocksDB (the writer finishes first, the readers let go) so
        // that its directory can move and the new one open at its path.
        let readers = self.readers.take();
        drop(guard.take());
        if let Some(store) = readers {
            close_after_readers(store, READERS_PATIENCE).map_err(|_| MachineError::ReadersHold)?;
        }
        let (db, replaced) = (data_dir.join(DB), data_dir.join(DB_REPLACED));
        fs::rename(&db, &replaced).map_err(io("cannot move aside", &db))?;
        fs::rename(&installing, &db).map_err(io("cannot rename into place", &db))?;
        sync_dir(data_dir)?;
        fs::remove_dir_all(&replaced).map_err(io("cannot remove", &replaced))?;
        let service = LedgerService::open_replicated(&db, self.limits)?;
        self.readers.put(service.shared_store());
        *guard = Some(service);
        drop(guard);
        // Kept as this replica's current snapshot, to send on in its turn.
        let archive = self.snapshots().join(format!("{}.tar", snapshot_id(meta.last_log_id)));
        fs::rename(&received, &archive).map_err(io("cannot rename into place", &archive))?;
        let meta = SnapshotMeta { snapshot_id: snapshot_id(meta.last_log_id), ..meta.clone() };
        self.keep_snapshot(&meta)?;
        tracing::info!(snapshot = meta.snapshot_id, files = unpacked.files, bytes = unpacked.bytes, "snapshot installed");
        Ok(())
    }
}

fn storage_error(error: MachineError) -> StorageError<u64> {
    tracing::error!(%error, "the ledger's state machine failed; Raft stops on this replica");
    StorageIOError::write_state_machine(AnyError::new(&error)).into()
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, MachineError> + Send + 'static) -> Result<T, StorageError<u64>> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(storage_error),
        Err(join) => Err(StorageIOError::write_state_machine(AnyError::new(&join)).into()),
    }
}

impl RaftSnapshotBuilder<LedgerRaft> for LedgerMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<LedgerRaft>, StorageError<u64>> {
        let inner = self.inner.clone();
        let (meta, archive) = blocking(move || inner.build_snapshot()).await?;
        let file = tokio::fs::File::open(&archive).await.map_err(|error| StorageError::from(StorageIOError::read_snapshot(None, &error)))?;
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

impl RaftStateMachine<LedgerRaft> for LedgerMachine {
    type SnapshotBuilder = LedgerMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let replication = self.with_service(|service| service.replication().cloned().unwrap_or_default()).map_err(storage_error)?;
        let Replication { applied, membership } = replication;
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Committed>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<LedgerRaft>> + OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let inner = self.inner.clone();
        blocking(move || inner.apply(entries)).await
    }

    async fn get_snapshot_builder(&mut self) -> LedgerMachine {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError<u64>> {
        let inner = self.inner.clone();
        let (file, _) = blocking(move || inner.begin_receiving()).await?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<tokio::fs::File>) -> Result<(), StorageError<u64>> {
        snapshot.sync_all().await.map_err(|error| StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &error)))?;
        drop(snapshot);
        let (inner, meta) = (self.inner.clone(), meta.clone());
        blocking(move || inner.install(&meta)).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<LedgerRaft>>, StorageError<u64>> {
        let inner = self.inner.clone();
        let Some((meta, archive)) = blocking(move || inner.current_snapshot()).await? else { return Ok(None) };
        let file = tokio::fs::File::open(&archive).await.map_err(|error| StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &error)))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
    }
}
