//! Marionette's storage: RocksDB with one column family per kind of record.
//! The only crate that knows RocksDB, and it knows no table: keys and values
//! are bytes, and each daemon's schema declares its [`Table`]s and encodes
//! what they hold.
//!
//! Every write goes through a [`Batch`], applied atomically. The ledger
//! writes with [`Durability::Journaled`]: RocksDB's own write-ahead log is
//! off because the ledger's journal already is one, and start-up replays
//! from it whatever RocksDB had not flushed. Flushes are atomic across the
//! column families, so the files always hold the state after a whole number
//! of batches. [`Durability::Synced`] is for callers without a journal.

use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, DBCompactionStyle, DBCompressionType, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

/// A column family, declared by the schema that owns it: its name and how
/// RocksDB compacts it. This crate knows no table; each daemon's schema
/// lists its own and opens the store with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Table {
    name: &'static str,
    compaction: Compaction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compaction {
    /// RocksDB's default: good for keys that arrive roughly in order.
    Leveled,
    /// For tables whose inserts land all over the table for as long as it
    /// grows (an index keyed (owner, id)): leveled compaction rewrites every
    /// file of the next level for each small flushed file, a rewrite that
    /// grows with the history, where universal merges files of like size. In
    /// `scripts/bench ledger -- --transfers 3000000` the ledger daemon's
    /// compactions took 36% less CPU and wrote 69% fewer bytes. The price is
    /// space: a full merge needs the table's size again free while it runs.
    Universal,
}

impl Table {
    pub const fn new(name: &'static str) -> Table {
        Table { name, compaction: Compaction::Leveled }
    }

    /// A table keyed (owner, id) whose inserts scatter: see [`Compaction::Universal`].
    pub const fn scattered(name: &'static str) -> Table {
        Table { name, compaction: Compaction::Universal }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn compaction(&self) -> Compaction {
        self.compaction
    }

    fn is(&self, other: &Table) -> bool {
        std::ptr::eq(self.name, other.name) || self.name == other.name
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("RocksDB at {path}: {source}. Check the disk and permissions; if the files are damaged, restore the data directory from a backup")]
    Open { path: PathBuf, source: rocksdb::Error },
    #[error("RocksDB {operation} failed: {source}")]
    Operation { operation: &'static str, source: rocksdb::Error },
    #[error("table {0} is not one this store was opened with")]
    UnknownTable(&'static str),
    #[error("table {0} is declared twice")]
    TableTwice(&'static str),
}

/// What a write promises when it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// In RocksDB's log, fsync'd.
    Synced,
    /// In memory only until the next flush (automatic, at close, or
    /// [`Store::flush`]); the caller's own journal must hold it until then.
    Journaled,
}

/// A key and its value as stored.
pub type Row = (Vec<u8>, Vec<u8>);
/// A row as the iterator yields it.
pub type BoxedRow = (Box<[u8]>, Box<[u8]>);

pub struct Store {
    db: DB,
    tables: Vec<Table>,
}

/// Writes that land together or not at all.
///
/// The writes are kept and sorted by table and key when the batch is
/// written: RocksDB's memtable skiplist reuses its search path between
/// ascending inserts, and ledger batches are full of random keys (idempotency
/// digests, balances), which otherwise spend most of a write searching.
/// The sort is stable, so the last write to a key still wins. Keys and
/// values share one buffer: a ledger batch holds tens of thousands of
/// writes, and two allocations each were a sizeable part of its cost.
#[derive(Default)]
pub struct Batch {
    bytes: Vec<u8>,
    writes: Vec<Write>,
    /// The tables this batch (and the ones before it, reusing it) wrote to:
    /// a write names its table by its place here.
    tables: Vec<Table>,
    /// The place of the table written last: writes come in runs of one table.
    last_table: usize,
}

struct Write {
    /// The table and the key's first bytes as one number, which orders
    /// writes as (table, key) does except between keys it cannot tell
    /// apart: the sort compares those by their bytes, the rest by integer
    /// comparisons alone (in `scripts/bench ledger` comparing bytes was
    /// nearly half of the sort, and the sort a fifth of a write).
    order: u128,
    /// Its table's place in the batch's `tables`.
    table: u8,
    /// Where the key starts in `bytes`; the value follows it.
    start: usize,
    key_len: usize,
    /// None deletes.
    value_len: Option<usize>,
}

/// The table's place, then the key's first 15 bytes, zero-padded. Where two
/// of these differ, they order as (table, key) does: at the first byte they
/// differ in, either both keys have that byte, or the shorter key ended
/// there and is a prefix of the other. Equal ones may belong to different
/// keys ("a" and "a\0", or keys alike in their first 15 bytes).
fn write_order(table: u8, key: &[u8]) -> u128 {
    let mut bytes = [0; 16];
    bytes[0] = table;
    let prefix = key.len().min(15);
    bytes[1..1 + prefix].copy_from_slice(&key[..prefix]);
    u128::from_be_bytes(bytes)
}

/// More tables than one batch's writes can name in their byte.
const BATCH_TABLES_MAX: usize = 256;

impl Batch {
    /// `table`'s place in this batch's tables, added if new.
    #[inline]
    fn table_index(&mut self, table: Table) -> u8 {
        if self.tables.get(self.last_table).is_none_or(|last| !last.is(&table)) {
            self.last_table = match self.tables.iter().position(|t| t.is(&table)) {
                Some(at) => at,
                None => {
                    assert!(self.tables.len() < BATCH_TABLES_MAX, "a batch writes to at most {BATCH_TABLES_MAX} tables");
                    self.tables.push(table);
                    self.tables.len() - 1
                }
            };
        }
        self.last_table as u8
    }

    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) {
        self.put_with(table, key, |out| out.extend_from_slice(value));
    }

    /// A put whose value `encode` appends to the buffer it is given, so the
    /// caller needs no buffer of its own.
    pub fn put_with(&mut self, table: Table, key: &[u8], encode: impl FnOnce(&mut Vec<u8>)) {
        let table = self.table_index(table);
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        encode(&mut self.bytes);
        self.writes.push(Write { order: write_order(table, key), table, start, key_len: key.len(), value_len: Some(self.bytes.len() - start - key.len()) });
    }

    pub fn delete(&mut self, table: Table, key: &[u8]) {
        let table = self.table_index(table);
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        self.writes.push(Write { order: write_order(table, key), table, start, key_len: key.len(), value_len: None });
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    fn key(&self, write: &Write) -> &[u8] {
        &self.bytes[write.start..write.start + write.key_len]
    }

    fn value(&self, write: &Write) -> Option<&[u8]> {
        let start = write.start + write.key_len;
        write.value_len.map(|len| &self.bytes[start..start + len])
    }
}

fn family_options(compaction: Compaction) -> Options {
    let mut family = Options::default();
    family.set_write_buffer_size(WRITE_BUFFER_BYTES);
    // The upper levels are rewritten soon anyway: compressing them costs CPU
    // the engine thread needs and saves little space.
    family.set_compression_per_level(&[
        DBCompressionType::None,
        DBCompressionType::None,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
        DBCompressionType::Lz4,
    ]);
    if compaction == Compaction::Universal {
        family.set_compaction_style(DBCompactionStyle::Universal);
    }
    family
}

/// Memtable size per column family. Small on purpose: the ledger's keys
/// (balances, idempotency digests, per-user indexes) land at random places,
/// and a skiplist insert costs a cache miss per level, so a 64 MiB memtable
/// (RocksDB's default) made writes twice as slow as a 2 MiB one in
/// `scripts/bench ledger` (BENCHMARKS.md). Flushing more often moves the
/// work to RocksDB's background thread.
const WRITE_BUFFER_BYTES: usize = 2 << 20;

impl Store {
    /// Opens (or creates) the database at `path` with `tables`. Tables the
    /// database has and `tables` lacks (an earlier schema's) open too, so
    /// that the caller can read its version and say what to do.
    pub fn open(path: &Path, tables: &[Table]) -> Result<Store, StorageError> {
        for (i, table) in tables.iter().enumerate() {
            if tables[..i].iter().any(|t| t.is(table)) {
                return Err(StorageError::TableTwice(table.name));
            }
        }
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Bounded background work and memory: the daemons share the host.
        options.increase_parallelism(2);
        options.set_max_open_files(1_024);
        // Without RocksDB's log, a crash falls back to the last flush: it must
        // cover every column family at the same batch.
        options.set_atomic_flush(true);
        let existing = DB::list_cf(&options, path).unwrap_or_default();
        let others = existing.into_iter().filter(|name| name != "default" && !tables.iter().any(|t| t.name == name.as_str()));
        let families = tables
            .iter()
            .map(|table| ColumnFamilyDescriptor::new(table.name, family_options(table.compaction)))
            .chain(others.map(|name| ColumnFamilyDescriptor::new(name, family_options(Compaction::Leveled))));
        let db = DB::open_cf_descriptors(&options, path, families).map_err(|source| StorageError::Open { path: path.into(), source })?;
        Ok(Store { db, tables: tables.to_vec() })
    }

    /// A declared table's column family: an undeclared one is refused even
    /// when the database has it (an earlier schema's, opened only to be read
    /// about).
    fn cf(&self, table: Table) -> Result<&rocksdb::ColumnFamily, StorageError> {
        if !self.tables.iter().any(|declared| declared.is(&table)) {
            return Err(StorageError::UnknownTable(table.name));
        }
        self.db.cf_handle(table.name).ok_or(StorageError::UnknownTable(table.name))
    }

    /// Writes `batch` and leaves it empty, its memory kept for the next one.
    pub fn write(&self, batch: &mut Batch, durability: Durability) -> Result<(), StorageError> {
        let mut writes = std::mem::take(&mut batch.writes);
        writes.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| batch.key(a).cmp(batch.key(b))));
        let result = self.write_in_order(batch, &writes, durability);
        writes.clear();
        batch.writes = writes;
        batch.bytes.clear();
        result
    }

    fn write_in_order(&self, batch: &Batch, writes: &[Write], durability: Durability) -> Result<(), StorageError> {
        // RocksDB's record of a write: a tag, the family, two lengths, the key and the value.
        let mut rocks = WriteBatch::with_capacity_bytes(batch.bytes.len() + 16 * writes.len());
        // Sorted by table: one family lookup (by name) per run of the same table.
        let mut family = None;
        for write in writes {
            let cf = match family {
                Some((table, cf)) if table == write.table => cf,
                _ => {
                    let cf = self.cf(batch.tables[write.table as usize])?;
                    family = Some((write.table, cf));
                    cf
                }
            };
            let key = batch.key(write);
            match batch.value(write) {
                Some(value) => rocks.put_cf(cf, key, value),
                None => rocks.delete_cf(cf, key),
            }
        }
        let mut options = WriteOptions::default();
        match durability {
            Durability::Synced => options.set_sync(true),
            Durability::Journaled => options.disable_wal(true),
        }
        self.db.write_opt(rocks, &options).map_err(|source| StorageError::Operation { operation: "write", source })
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db.get_cf(self.cf(table)?, key).map_err(|source| StorageError::Operation { operation: "get", source })
    }

    /// Up to `limit` entries whose key starts with `prefix`, in key order or
    /// (with `newest_first`) reverse key order.
    pub fn scan_prefix(&self, table: Table, prefix: &[u8], limit: usize, newest_first: bool) -> Result<Vec<Row>, StorageError> {
        // Reverse scans start just past the prefix range and walk back.
        let mut end = prefix.to_vec();
        let has_end = increment(&mut end);
        let mode = match (newest_first, has_end) {
            (false, _) => IteratorMode::From(prefix, Direction::Forward),
            (true, true) => IteratorMode::From(&end, Direction::Reverse),
            (true, false) => IteratorMode::End,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(table)?, mode) {
            let (key, value) = item.map_err(|source| StorageError::Operation { operation: "scan", source })?;
            if !key.starts_with(prefix) {
                if newest_first && key.as_ref() > prefix {
                    continue; // the seek landed on the first key after the range
                }
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Up to `limit` entries with keys in `start..end`, in key order or
    /// (with `newest_first`) from the last one back.
    pub fn scan_range(&self, table: Table, start: &[u8], end: &[u8], limit: usize, newest_first: bool) -> Result<Vec<Row>, StorageError> {
        let mode = match newest_first {
            false => IteratorMode::From(start, Direction::Forward),
            // A reverse seek lands on the last key at or before `end`.
            true => IteratorMode::From(end, Direction::Reverse),
        };
        let mut out = Vec::new();
        if start >= end || limit == 0 {
            return Ok(out);
        }
        for item in self.db.iterator_cf(self.cf(table)?, mode) {
            let (key, value) = item.map_err(|source| StorageError::Operation { operation: "scan", source })?;
            let key = key.as_ref();
            if key >= end {
                if newest_first {
                    continue;
                }
                break;
            }
            if key < start {
                if newest_first {
                    break;
                }
                continue;
            }
            out.push((key.to_vec(), value.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Every entry of a table, in key order (start-up loads).
    pub fn scan_all(&self, table: Table) -> impl Iterator<Item = Result<BoxedRow, StorageError>> + '_ {
        let (rows, unknown) = match self.cf(table) {
            Ok(cf) => (Some(self.db.iterator_cf(cf, IteratorMode::Start)), None),
            Err(error) => (None, Some(Err(error))),
        };
        unknown.into_iter().chain(rows.into_iter().flatten().map(|item| item.map_err(|source| StorageError::Operation { operation: "scan", source })))
    }

    /// Makes everything written so far durable, in one atomic flush of every
    /// column family (before a journal drops what it held).
    pub fn flush(&self) -> Result<(), StorageError> {
        let families = self.tables.iter().map(|&t| self.cf(t)).collect::<Result<Vec<_>, _>>()?;
        let mut options = rocksdb::FlushOptions::default();
        options.set_wait(true);
        self.db.flush_cfs_opt(&families, &options).map_err(|source| StorageError::Operation { operation: "flush", source })
    }
}

impl Store {
    /// A copy of the database as it stands, in the new directory `into`:
    /// every column family flushed at once, then RocksDB's checkpoint (its
    /// files hard-linked where the file system allows, copied elsewhere).
    /// It opens as a database of its own; later writes here do not reach
    /// it. The caller keeps writes out meanwhile, so the copy is the state
    /// after a batch it knows.
    pub fn checkpoint(&self, into: &Path) -> Result<(), StorageError> {
        self.flush()?;
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(|source| StorageError::Operation { operation: "checkpoint", source })?;
        checkpoint.create_checkpoint(into).map_err(|source| StorageError::Operation { operation: "checkpoint", source })
    }
}

/// The smallest byte string greater than every string with this prefix; false if there is none.
fn increment(bytes: &mut Vec<u8>) -> bool {
    while let Some(last) = bytes.pop() {
        if last < u8::MAX {
            bytes.push(last + 1);
            return true;
        }
    }
    false
}
