//! How the ledger's state and history sit in RocksDB: one file per part,
//! this one the registry.
//!
//! Keys are big-endian integers so that RocksDB's byte order is numeric
//! order and a prefix of a composite key (user, id) lists one user's records
//! oldest to newest. Values are postcard of `ledger-api`'s records (what
//! reads return) or of the stored types the files here declare (what only
//! start-up reads), never a kernel type, so that a change inside the kernel
//! changes no file. One exception: spot's counters are stored as
//! `products::spot::SpotCounters` (three integers). Balances and open records are written in their current
//! form after each batch; history (transfers, trades, finished orders and
//! withdrawals) is written once and never changed, except an order's
//! record, which follows its status.
//!
//! [`META`] holds the version, the journal position the stored state
//! includes, each part's counters, each peer's last applied sequence:
//! everything a batch changed and that position land in one atomic write, so
//! the store is always the state after some journal prefix.

use ledger_api::{Answer, Query};
use ledger_core::KernelState;
use products::{Changes, Ledger, LedgerState};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use storage::{Batch, StorageError, Store, Table};

use crate::query::Read;

pub mod convert;
pub mod donations;
pub mod house;
pub mod kernel;
pub mod link;
pub mod operators;
pub mod perpetual;
pub mod spot;
pub mod tokenization;
pub mod wallet;

pub use kernel::TransferChains;

/// The daemon's own: version, journal position, counters, peers.
pub const META: Table = Table::new("meta");

const META_JOURNAL_APPLIED: &[u8] = b"journal_applied";
const META_SCHEMA_VERSION: &[u8] = b"schema_version";
/// A replica's only: see [`Replication`].
const META_REPLICATION: &[u8] = b"replication";

/// What a replica's state finds again at start (openraft's applied state):
/// the last Raft log id it applied and the membership in force then,
/// written in the same batch as what that entry changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replication {
    pub applied: Option<openraft::LogId<u64>>,
    pub membership: openraft::StoredMembership<u64, openraft::BasicNode>,
}

pub fn write_replication(batch: &mut Batch, replication: &Replication) {
    put_encoded(batch, META, META_REPLICATION, replication);
}

/// The replication state written last, or `None` for a database no replica wrote.
pub fn load_replication(store: &Store) -> Result<Option<Replication>, SchemaError> {
    meta(store, META_REPLICATION)
}

/// 2-4: the records of the unversioned core types (release 0.1.0's first
/// builds). 5: `ledger-api`'s records and the stored types declared here,
/// accounts as (owner, asset, purpose), one table set per product. 6:
/// operators, proposals and the audit log. 7: frozen accounts, and the
/// thresholds with `account_freeze`. 8: users' tiers, and the thresholds
/// with `tier`. 9: spot's candles. 10: each candle's last trade. 11:
/// markets' tick-lot scale, orders' filled ticks x lots, candles' turnover.
/// 12: whether a market is trading or halted; users' kill switches. 13:
/// orders' amends on their way and refused, stop orders' triggers. 14: the
/// other order of an OCO list. 15: convert's pairs, quotes and
/// conversions, and the thresholds with `convert_pair`. 16: perpetual
/// markets, positions, fundings and liquidations. 17: orders' reduce-only
/// flag. 18: tokenization's issuers, claims, tokens, offerings,
/// subscriptions and tranches, and the thresholds with `issuer` and
/// `investor_claims`. 19: offerings carry the platform's fee the operators
/// set (`tokenization.offering_fee_bps` in meta). 20: offerings carry their
/// listing; the listings' fees (`tokenization.listing_fees_ppm` in meta).
/// 21: investors' claims carry their withholding rate; distributions and
/// their entitlements. 22: the thresholds with `token_agent`. 23:
/// donations' organisers, campaigns, gifts, receipts, pools and payouts,
/// and the thresholds with `organiser` and `donation_payout`.
pub const SCHEMA_VERSION: u32 = 23;

/// Generates, from the list of products (the variant of `ledger_api::Query`,
/// the module here, named as the product's module in `products`), the
/// products' part of the store: their tables, writes, loads and reads. Each
/// module declares `TABLES`, `write`, `load` and `answer`.
macro_rules! registry {
    ($($variant:ident => $module:ident),* $(,)?) => {
        /// Every table, the daemon's own and then each part's in its declared order.
        pub fn tables() -> Vec<Table> {
            [&[META][..], kernel::TABLES, link::TABLES, operators::TABLES, $($module::TABLES),*].concat()
        }

        fn write_products(batch: &mut Batch, ledger: &Ledger, changes: &Changes) {
            operators::write(batch, ledger.operators(), &changes.operators);
            $($module::write(batch, ledger.$module(), &changes.$module);)*
        }

        fn load_products(store: &Store, kernel: KernelState) -> Result<LedgerState, SchemaError> {
            Ok(LedgerState { kernel, operators: operators::load(store)?, $($module: $module::load(store)?,)* })
        }

        /// A product's read, answered by its module; `Err(query)` hands the
        /// kernel's reads back to the caller.
        pub(crate) fn answer_product<'q>(store: &Store, query: &'q Query) -> Result<Result<Answer, Read>, &'q Query> {
            match query {
                Query::Operators(query) => Ok(operators::answer(store, query).map(Answer::Operators)),
                $(Query::$variant(query) => Ok($module::answer(store, query).map(Answer::$variant)),)*
                query => Err(query),
            }
        }
    };
}

// The products: one line each.
registry! {
    Wallet => wallet,
    Spot => spot,
    House => house,
    Convert => convert,
    Tokenization => tokenization,
    Donations => donations,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the ledger database has a damaged {table} record (key {key}): {detail}. Restore the data directory from a backup; the journal alone cannot rebuild history it has already dropped")]
    Corrupt { table: &'static str, key: String, detail: String },
    #[error(
        "the ledger database has schema version {found}; this build reads version {SCHEMA_VERSION} and does not migrate it. Run the release that wrote \
         it, or move the data directory aside to start empty (a release before 0.1.0's final one holds no site's data)"
    )]
    Version { found: u32 },
}

/// Opens the ledger's store with every table.
pub fn open(path: &std::path::Path) -> Result<Store, StorageError> {
    Store::open(path, &tables())
}

/// `value` in postcard, straight into the batch's buffer.
pub(crate) fn put_encoded<T: Serialize + ?Sized>(batch: &mut Batch, table: Table, key: &[u8], value: &T) {
    batch.put_with(table, key, |out| *out = postcard::to_extend(value, std::mem::take(out)).expect("encoding into a vector cannot fail"));
}

pub(crate) fn decode<T: DeserializeOwned>(table: Table, key: &[u8], bytes: &[u8]) -> Result<T, SchemaError> {
    postcard::from_bytes(bytes).map_err(|error| corrupt(table, key, error.to_string()))
}

pub(crate) fn corrupt(table: Table, key: &[u8], detail: impl Into<String>) -> SchemaError {
    SchemaError::Corrupt { table: table.name(), key: hex(key), detail: detail.into() }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn key2(a: u64, b: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&a.to_be_bytes());
    key[8..].copy_from_slice(&b.to_be_bytes());
    key
}

pub(crate) fn fixed<const N: usize>(store: &Store, table: Table, key: &[u8]) -> Result<Option<[u8; N]>, SchemaError> {
    store.get(table, key)?.map(|value| exact(table, &value)).transpose()
}

pub(crate) fn exact<const N: usize>(table: Table, bytes: &[u8]) -> Result<[u8; N], SchemaError> {
    bytes.try_into().map_err(|_| corrupt(table, bytes, format!("expected {N} bytes, found {}", bytes.len())))
}

/// The value stored under `key` in [`META`], if any.
pub(crate) fn meta<T: DeserializeOwned>(store: &Store, key: &[u8]) -> Result<Option<T>, SchemaError> {
    store.get(META, key)?.map(|value| decode(META, key, &value)).transpose()
}

pub(crate) fn by_id<T: DeserializeOwned>(store: &Store, table: Table, id: u64) -> Result<Option<T>, SchemaError> {
    let key = id.to_be_bytes();
    store.get(table, &key)?.map(|value| decode(table, &key, &value)).transpose()
}

/// Records listed in `index` under `owner`, newest first, at most `limit`,
/// looked up in `table`.
pub(crate) fn newest_of<T: DeserializeOwned>(store: &Store, index: Table, table: Table, owner: u64, limit: usize) -> Result<Vec<T>, SchemaError> {
    let mut out = Vec::new();
    for (key, _) in store.scan_prefix(index, &owner.to_be_bytes(), limit, true)? {
        let id = u64::from_be_bytes(exact::<16>(index, &key)?[8..].try_into().expect("8 bytes"));
        let record = by_id(store, table, id)?.ok_or_else(|| corrupt(index, &key, "the index names a missing record"))?;
        out.push(record);
    }
    Ok(out)
}

/// Index entries a filtered list looks at, at most: a filter that matches
/// little cannot make one query walk a user's whole history.
pub const FILTER_SCAN_MAX: usize = 10_000;

/// Like [`newest_of`], keeping only records that pass `keep`: looks at the
/// newest [`FILTER_SCAN_MAX`] index entries.
pub(crate) fn newest_where<T: DeserializeOwned>(
    store: &Store,
    index: Table,
    table: Table,
    owner: u64,
    limit: usize,
    keep: impl Fn(&T) -> bool,
) -> Result<Vec<T>, SchemaError> {
    let mut records = newest_of(store, index, table, owner, FILTER_SCAN_MAX)?;
    records.retain(|record| keep(record));
    records.truncate(limit);
    Ok(records)
}

/// Adds to `batch` everything `changes` says moved, read from `ledger` after
/// the commands were applied, and the journal position they bring the store
/// to. `chains` links the new transfers and moves on to them.
pub fn write_changes(batch: &mut Batch, ledger: &Ledger, changes: &Changes, chains: &mut TransferChains, journal_applied: u64) {
    kernel::write(batch, ledger.kernel(), &changes.kernel, chains, journal_applied);
    write_products(batch, ledger, changes);
    batch.put(META, META_JOURNAL_APPLIED, &journal_applied.to_be_bytes());
    batch.put(META, META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes());
}

/// What start-up reads from the store.
#[derive(Debug)]
pub struct Loaded {
    pub state: LedgerState,
    /// The journal position the state includes.
    pub journal_applied: u64,
    pub chains: TransferChains,
}

/// The stored state, or None for a new database. A database of another
/// schema version is refused, naming it.
pub fn load(store: &Store) -> Result<Option<Loaded>, SchemaError> {
    // Every batch writes the version: a database without one has none.
    let Some(version) = fixed::<4>(store, META, META_SCHEMA_VERSION)?.map(u32::from_be_bytes) else { return Ok(None) };
    if version != SCHEMA_VERSION {
        return Err(SchemaError::Version { found: version });
    }
    let journal_applied = fixed::<8>(store, META, META_JOURNAL_APPLIED)?.map(u64::from_be_bytes).unwrap_or(0);
    let (kernel, chains) = kernel::load(store)?;
    let state = load_products(store, kernel)?;
    Ok(Some(Loaded { state, journal_applied, chains }))
}
