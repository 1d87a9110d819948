//! Marionette's storage: RocksDB with one column family per kind of record.
//! The only crate that knows RocksDB. Keys and values are bytes; the daemon
//! that owns a schema encodes them.
//!
//! Every write goes through a [`Batch`], applied atomically. The ledger
//! writes with [`Durability::Journaled`]: RocksDB's own write-ahead log is
//! off because the ledger's journal already is one, and start-up replays
//! from it whatever RocksDB had not flushed. Flushes are atomic across the
//! column families, so the files always hold the state after a whole number
//! of batches. [`Durability::Synced`] is for callers without a journal.

use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, DBCompactionStyle, DBCompressionType, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

/// The column families, fixed at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Counters, applied sequences, schema version.
    Meta,
    Assets,
    Markets,
    Balances,
    SystemAccounts,
    /// Every order ever placed, by id.
    Orders,
    /// The orders still open, (user, order id) -> (): start-up loads these, not
    /// all history, and a user's open orders are found without walking it.
    OpenOrders,
    /// Secondary index: (user, order id) -> ().
    OrdersByUser,
    Trades,
    /// Secondary index: (market, trade id) -> ().
    TradesByMarket,
    /// Secondary index: (user, trade id) -> ().
    TradesByUser,
    /// Every transfer by id, with the previous transfer of each user side
    /// (the ledger chains each account's history instead of indexing it).
    Transfers,
    /// Secondary index: (user, transfer id) -> (), until the ledger's schema
    /// version 4, whose migration empties it. Kept so that databases that
    /// have it open.
    TransfersByUser,
    Withdrawals,
    /// The withdrawals awaiting an operator's decision (id -> ()).
    PendingWithdrawals,
    /// Secondary index: (user, withdrawal id) -> ().
    WithdrawalsByUser,
    /// Idempotency records in the order they were made, a batch's in one
    /// value (an append-only log the ledger loads whole at start-up).
    Idempotency,
    /// Commands for another daemon, by the sender's sequence, kept until that
    /// daemon confirms it applied them.
    Outbox,
    /// The gateway's accounts: user id -> record.
    Users,
    /// Secondary index: normalized email -> user id.
    UsersByEmail,
}

impl Table {
    pub const ALL: [Table; 20] = [
        Table::Meta,
        Table::Assets,
        Table::Markets,
        Table::Balances,
        Table::SystemAccounts,
        Table::Orders,
        Table::OpenOrders,
        Table::OrdersByUser,
        Table::Trades,
        Table::TradesByMarket,
        Table::TradesByUser,
        Table::Transfers,
        Table::TransfersByUser,
        Table::Withdrawals,
        Table::PendingWithdrawals,
        Table::WithdrawalsByUser,
        Table::Idempotency,
        Table::Outbox,
        Table::Users,
        Table::UsersByEmail,
    ];

    /// Secondary indexes keyed (owner, id): each new entry lands next to
    /// its owner's, so writes scatter over the whole table for as long as
    /// the history grows.
    pub fn is_scattered_index(self) -> bool {
        matches!(self, Table::OrdersByUser | Table::TradesByUser | Table::TransfersByUser | Table::WithdrawalsByUser)
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Assets => "assets",
            Table::Markets => "markets",
            Table::Balances => "balances",
            Table::SystemAccounts => "system_accounts",
            Table::Orders => "orders",
            Table::OpenOrders => "open_orders",
            Table::OrdersByUser => "orders_by_user",
            Table::Trades => "trades",
            Table::TradesByMarket => "trades_by_market",
            Table::TradesByUser => "trades_by_user",
            Table::Transfers => "transfers",
            Table::TransfersByUser => "transfers_by_user",
            Table::Withdrawals => "withdrawals",
            Table::PendingWithdrawals => "pending_withdrawals",
            Table::WithdrawalsByUser => "withdrawals_by_user",
            Table::Idempotency => "idempotency",
            Table::Outbox => "outbox",
            Table::Users => "users",
            Table::UsersByEmail => "users_by_email",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("RocksDB at {path}: {source}. Check the disk and permissions; if the files are damaged, restore the data directory from a backup")]
    Open { path: PathBuf, source: rocksdb::Error },
    #[error("RocksDB {operation} failed: {source}")]
    Operation { operation: &'static str, source: rocksdb::Error },
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
}

struct Write {
    /// The table and the key's first bytes as one number, which orders
    /// writes as (table, key) does except between keys it cannot tell
    /// apart: the sort compares those by their bytes, the rest by integer
    /// comparisons alone (in `scripts/bench ledger` comparing bytes was
    /// nearly half of the sort, and the sort a fifth of a write).
    order: u128,
    table: Table,
    /// Where the key starts in `bytes`; the value follows it.
    start: usize,
    key_len: usize,
    /// None deletes.
    value_len: Option<usize>,
}

/// The table's byte, then the key's first 15 bytes, zero-padded. Where two
/// of these differ, they order as (table, key) does: at the first byte they
/// differ in, either both keys have that byte, or the shorter key ended
/// there and is a prefix of the other. Equal ones may belong to different
/// keys ("a" and "a\0", or keys alike in their first 15 bytes).
fn write_order(table: Table, key: &[u8]) -> u128 {
    let mut bytes = [0; 16];
    bytes[0] = table as u8;
    let prefix = key.len().min(15);
    bytes[1..1 + prefix].copy_from_slice(&key[..prefix]);
    u128::from_be_bytes(bytes)
}

impl Batch {
    pub fn put(&mut self, table: Table, key: &[u8], value: &[u8]) {
        self.put_with(table, key, |out| out.extend_from_slice(value));
    }

    /// A put whose value `encode` appends to the buffer it is given, so the
    /// caller needs no buffer of its own.
    pub fn put_with(&mut self, table: Table, key: &[u8], encode: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        encode(&mut self.bytes);
        self.writes.push(Write { order: write_order(table, key), table, start, key_len: key.len(), value_len: Some(self.bytes.len() - start - key.len()) });
    }

    pub fn delete(&mut self, table: Table, key: &[u8]) {
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

/// Memtable size per column family. Small on purpose: the ledger's keys
/// (balances, idempotency digests, per-user indexes) land at random places,
/// and a skiplist insert costs a cache miss per level, so a 64 MiB memtable
/// (RocksDB's default) made writes twice as slow as a 2 MiB one in
/// `scripts/bench ledger` (BENCHMARKS.md). Flushing more often moves the
/// work to RocksDB's background thread.
const WRITE_BUFFER_BYTES: usize = 2 << 20;

impl Store {
    pub fn open(path: &Path) -> Result<Store, StorageError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Bounded background work and memory: the daemons share the host.
        options.increase_parallelism(2);
        options.set_max_open_files(1_024);
        // Without RocksDB's log, a crash falls back to the last flush: it must
        // cover every column family at the same batch.
        options.set_atomic_flush(true);
        let families = Table::ALL.iter().map(|t| {
            let mut family = Options::default();
            family.set_write_buffer_size(WRITE_BUFFER_BYTES);
            // The upper levels are rewritten soon anyway: compressing them
            // costs CPU the engine thread needs and saves little space.
            family.set_compression_per_level(&[
                DBCompressionType::None,
                DBCompressionType::None,
                DBCompressionType::Lz4,
                DBCompressionType::Lz4,
                DBCompressionType::Lz4,
                DBCompressionType::Lz4,
                DBCompressionType::Lz4,
            ]);
            // Leveled compaction rewrites every file of the next level for
            // each small flushed file of a scattered index, a rewrite that
            // grows with the history: universal merges files of like size
            // instead. In `scripts/bench ledger -- --transfers 3000000` the
            // daemon's compactions took 36% less CPU and wrote 69% fewer
            // bytes. The price is space: a full merge needs the table's size
            // again free while it runs. Existing leveled tables open as they are.
            if t.is_scattered_index() {
                family.set_compaction_style(DBCompactionStyle::Universal);
            }
            ColumnFamilyDescriptor::new(t.name(), family)
        });
        let db = DB::open_cf_descriptors(&options, path, families).map_err(|source| StorageError::Open { path: path.into(), source })?;
        Ok(Store { db })
    }

    fn cf(&self, table: Table) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(table.name()).expect("every table is created at open")
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
                    let cf = self.cf(write.table);
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
        self.db.get_cf(self.cf(table), key).map_err(|source| StorageError::Operation { operation: "get", source })
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
        for item in self.db.iterator_cf(self.cf(table), mode) {
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

    /// Every entry of a table, in key order (start-up loads).
    pub fn scan_all(&self, table: Table) -> impl Iterator<Item = Result<BoxedRow, StorageError>> + '_ {
        self.db.iterator_cf(self.cf(table), IteratorMode::Start).map(|item| item.map_err(|source| StorageError::Operation { operation: "scan", source }))
    }

    /// Makes everything written so far durable, in one atomic flush of every
    /// column family (before a journal drops what it held).
    pub fn flush(&self) -> Result<(), StorageError> {
        let families: Vec<_> = Table::ALL.iter().map(|&t| self.cf(t)).collect();
        let mut options = rocksdb::FlushOptions::default();
        options.set_wait(true);
        self.db.flush_cfs_opt(&families, &options).map_err(|source| StorageError::Operation { operation: "flush", source })
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
