//! How the ledger's state and history sit in RocksDB.
//!
//! Keys are big-endian integers so that RocksDB's byte order is numeric
//! order and a prefix of a composite key (user, id) lists one user's records
//! oldest to newest. Values are postcard. Balances and open records are
//! written in their current form after each batch; history (transfers,
//! trades, finished orders and withdrawals) is written once and never
//! changed, except an order's record, which follows its status.
//!
//! `Meta` holds the counters and the journal position the stored state
//! includes: everything the batch changed and that position land in one
//! atomic write, so the store is always the state after some journal prefix.

use ledger_core::*;
use rustc_hash::FxHashMap;
use serde::{de::DeserializeOwned, Serialize};
use storage::{Batch, Durability, StorageError, Store, Table};

const META_COUNTERS: &[u8] = b"counters";
const META_JOURNAL_APPLIED: &[u8] = b"journal_applied";
const META_SCHEMA_VERSION: &[u8] = b"schema_version";
const META_FORWARDED_LAST: &[u8] = b"forwarded_last";
/// 2: idempotency records keyed by journal position instead of digest.
/// 3: open orders keyed by (user, order id), so that a user's open orders
/// are found however long their history (2 keyed them by order id alone).
/// 4: each account's transfers chained newest first ([`TransferChains`])
/// instead of listed in the `transfers_by_user` index, and one idempotency
/// record per batch (3 wrote one per command).
pub const SCHEMA_VERSION: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the ledger database has a damaged {table} record (key {key}): {detail}. Restore the data directory from a backup; the journal alone cannot rebuild history it has already dropped")]
    Corrupt { table: &'static str, key: String, detail: String },
    #[error("the ledger database has schema version {found}, this build reads {SCHEMA_VERSION}. Run the matching release of marionette-ledger")]
    Version { found: u32 },
}

/// `value` in postcard, straight into the batch's buffer.
fn put_encoded<T: Serialize>(batch: &mut Batch, table: Table, key: &[u8], value: &T) {
    batch.put_with(table, key, |out| *out = postcard::to_extend(value, std::mem::take(out)).expect("encoding into a vector cannot fail"));
}

fn decode<T: DeserializeOwned>(table: Table, key: &[u8], bytes: &[u8]) -> Result<T, SchemaError> {
    postcard::from_bytes(bytes).map_err(|error| SchemaError::Corrupt { table: table.name(), key: hex(key), detail: error.to_string() })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key2(a: u64, b: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&a.to_be_bytes());
    key[8..].copy_from_slice(&b.to_be_bytes());
    key
}

fn balance_key(user: UserId, asset: AssetId) -> [u8; 12] {
    let mut key = [0; 12];
    key[..8].copy_from_slice(&user.to_be_bytes());
    key[8..].copy_from_slice(&asset.to_be_bytes());
    key
}

/// Each user account's transfers, per asset, form a chain from the newest
/// back: the account's balance record names its newest transfer, and each
/// stored transfer names the one before it on each user side. A user's
/// history is read by walking the chains, so storing a transfer costs one
/// write keyed by its (increasing) id and the balance writes the batch makes
/// anyway. A per-user index, (user, transfer id) -> (), cost two writes at
/// random places per transfer, and keeping that index sorted was most of
/// RocksDB's work in `scripts/bench ledger` (BENCHMARKS.md).
#[derive(Debug, Default)]
pub struct TransferChains {
    newest: FxHashMap<(UserId, AssetId), TransferId>,
}

impl TransferChains {
    /// The newest transfer of `user`'s account in `asset`.
    pub fn newest(&self, user: UserId, asset: AssetId) -> Option<TransferId> {
        self.newest.get(&(user, asset)).copied()
    }

    /// Makes `transfer` the newest of each user side and returns the previous
    /// newest of each, [debit, credit] (one chain when both sides are the same
    /// user, as for a hold).
    fn link(&mut self, transfer: &Transfer) -> [Option<TransferId>; 2] {
        let users = [transfer.debit.user(), transfer.credit.user()];
        let previous = users.map(|user| user.and_then(|user| self.newest(user, transfer.asset)));
        for user in users.into_iter().flatten() {
            self.newest.insert((user, transfer.asset), transfer.id);
        }
        previous
    }
}

/// A transfer as stored: the transfer, and the previous transfer of its debit
/// and credit user accounts ([`TransferChains`]).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StoredTransfer<T = Transfer> {
    pub transfer: T,
    pub previous: [Option<TransferId>; 2],
}

impl StoredTransfer {
    /// The transfer before this one in `user`'s chain.
    fn previous_of(&self, user: UserId) -> Option<TransferId> {
        if self.transfer.debit.user() == Some(user) {
            self.previous[0]
        } else {
            self.previous[1]
        }
    }
}

/// A user account's balance as stored, with the head of its transfer chain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct StoredBalance {
    pub balance: Balance,
    pub newest_transfer: Option<TransferId>,
}

fn put_balance(batch: &mut Batch, user: UserId, asset: AssetId, balance: Balance, newest_transfer: Option<TransferId>) {
    let key = balance_key(user, asset);
    // An empty balance without history is the default: storing it would make the store differ from the state.
    if balance == Balance::default() && newest_transfer.is_none() {
        batch.delete(Table::Balances, &key);
    } else {
        put_encoded(batch, Table::Balances, &key, &StoredBalance { balance, newest_transfer });
    }
}

/// Adds to `batch` everything `changes` says moved, read from `ledger` after
/// the commands were applied, and the journal position they bring the store
/// to. `chains` links the new transfers and moves on to them.
pub fn write_changes(batch: &mut Batch, ledger: &Ledger, changes: &Changes, chains: &mut TransferChains, journal_applied: u64) {
    for asset in &changes.assets {
        put_encoded(batch, Table::Assets, &asset.id.to_be_bytes(), asset);
    }
    for market in &changes.markets {
        put_encoded(batch, Table::Markets, &market.id().to_be_bytes(), market);
    }
    for transfer in &changes.transfers {
        let previous = chains.link(transfer);
        put_encoded(batch, Table::Transfers, &transfer.id.to_be_bytes(), &StoredTransfer { transfer, previous });
    }
    // Every leg changes its account's balance, so the heads that moved are
    // written with the changed balances.
    for &(user, asset) in &changes.balances {
        put_balance(batch, user, asset, ledger.balance(user, asset), chains.newest(user, asset));
    }
    for &asset in &changes.system {
        put_encoded(batch, Table::SystemAccounts, &asset.to_be_bytes(), &ledger.system_balances(asset));
    }
    for trade in &changes.trades {
        put_encoded(batch, Table::Trades, &trade.id.to_be_bytes(), trade);
        batch.put(Table::TradesByMarket, &key2(trade.fill.market as u64, trade.id), &[]);
        batch.put(Table::TradesByUser, &key2(trade.fill.maker_user, trade.id), &[]);
        batch.put(Table::TradesByUser, &key2(trade.fill.taker_user, trade.id), &[]);
    }
    for &order_id in &changes.orders {
        // An order that opened and closed in the same batch is only in closed_orders.
        if let Some(record) = ledger.order(order_id) {
            write_order(batch, record);
            batch.put(Table::OpenOrders, &key2(record.order.user, order_id), &[]);
        }
    }
    for record in &changes.closed_orders {
        write_order(batch, record);
        batch.delete(Table::OpenOrders, &key2(record.order.user, record.order.order_id));
    }
    for withdrawal in &changes.withdrawals {
        let id = withdrawal.id.to_be_bytes();
        put_encoded(batch, Table::Withdrawals, &id, withdrawal);
        batch.put(Table::WithdrawalsByUser, &key2(withdrawal.user, withdrawal.id), &[]);
        if withdrawal.status == WithdrawalStatus::Pending {
            batch.put(Table::PendingWithdrawals, &id, &[]);
        } else {
            batch.delete(Table::PendingWithdrawals, &id);
        }
    }
    // One record per batch, keyed by where it was written, not by digest:
    // appending keeps the memtable inserts and RocksDB's compactions cheap
    // (the digests are random), and only start-up reads them, all at once.
    // The batch's position is unique, and RocksDB never holds a batch after
    // one it lost.
    if !changes.idempotency.is_empty() {
        put_encoded(batch, Table::Idempotency, &journal_applied.to_be_bytes(), &changes.idempotency);
    }
    put_encoded(batch, Table::Meta, META_COUNTERS, &ledger.counters());
    batch.put(Table::Meta, META_JOURNAL_APPLIED, &journal_applied.to_be_bytes());
    batch.put(Table::Meta, META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes());
}

/// Version 2 to 3: open orders re-keyed from order id to (user, order id), in one batch.
fn migrate_open_orders_to_3(store: &Store) -> Result<(), SchemaError> {
    let mut batch = Batch::default();
    let mut moved = 0u64;
    for item in store.scan_all(Table::OpenOrders) {
        let (key, _) = item?;
        let order_id = u64::from_be_bytes(exact(Table::OpenOrders, &key)?);
        let record = open_order(store, &key, order_id)?;
        batch.delete(Table::OpenOrders, &key);
        batch.put(Table::OpenOrders, &key2(record.order.user, order_id), &[]);
        moved += 1;
    }
    batch.put(Table::Meta, META_SCHEMA_VERSION, &3u32.to_be_bytes());
    // Not in the journal: synced by RocksDB's own log.
    store.write(&mut batch, Durability::Synced)?;
    tracing::info!(open_orders = moved, "ledger database migrated from schema version 2 to 3");
    Ok(())
}

/// A batch's idempotency records, as stored (in the order it made them).
type BatchIdempotency = Vec<(Digest, IdempotencyEntry)>;

/// Records rewritten per write during the migration to version 4.
const MIGRATION_WRITES_PER_BATCH: usize = 65_536;

/// Version 3 to 4: every transfer rewritten in id order with the previous
/// transfer of each side, the chains' heads added to the balance records,
/// the `transfers_by_user` index emptied, and the idempotency records grouped
/// per batch. Idempotent: the version is written last, and a migration
/// stopped part-way links the same chains again when it runs from the start
/// (a record already rewritten reads either way).
fn migrate_transfer_chains_to_4(store: &Store) -> Result<(), SchemaError> {
    let started = std::time::Instant::now();
    let total = store
        .get(Table::Meta, META_COUNTERS)?
        .map(|value| decode::<Counters>(Table::Meta, META_COUNTERS, &value))
        .transpose()?
        .map_or(0, |c| c.next_transfer.saturating_sub(1));
    tracing::info!(transfers = total, "migrating the ledger database from schema version 3 to 4: chaining each account's transfers");
    let mut chains = TransferChains::default();
    let mut batch = Batch::default();
    let mut migrated = 0u64;
    for item in store.scan_all(Table::Transfers) {
        let (key, value) = item?;
        let transfer = match postcard::from_bytes::<StoredTransfer>(&value) {
            Ok(stored) => stored.transfer,
            Err(_) => decode::<Transfer>(Table::Transfers, &key, &value)?,
        };
        let previous = chains.link(&transfer);
        put_encoded(&mut batch, Table::Transfers, &key, &StoredTransfer { transfer: &transfer, previous });
        for user in [transfer.debit.user(), transfer.credit.user()].into_iter().flatten() {
            batch.delete(Table::TransfersByUser, &key2(user, transfer.id));
        }
        migrated += 1;
        if batch.len() >= MIGRATION_WRITES_PER_BATCH {
            store.write(&mut batch, Durability::Synced)?;
            tracing::info!(transfers_done = migrated, transfers = total, elapsed_ms = started.elapsed().as_millis() as u64, "migrating to schema version 4");
        }
    }
    // Idempotency records, one per command in version 3 ((position, index)
    // keys), become one per batch (position keys). Each batch's records move
    // in one write, so a rerun finds each batch in one form or the other.
    let mut group: Option<([u8; 8], BatchIdempotency)> = None;
    let mut records = store.scan_all(Table::Idempotency).peekable();
    while let Some(item) = records.next() {
        let (key, value) = item?;
        if key.len() == 8 {
            continue;
        }
        let position: [u8; 12] = exact(Table::Idempotency, &key)?;
        let (group_key, group_records) = group.get_or_insert_with(|| (position[..8].try_into().unwrap(), Vec::new()));
        group_records.push(decode(Table::Idempotency, &key, &value)?);
        batch.delete(Table::Idempotency, &key);
        let group_ends = match records.peek() {
            Some(Ok((next, _))) => !next.starts_with(group_key.as_slice()),
            _ => true,
        };
        if group_ends {
            let (group_key, group_records) = group.take().expect("a group was started");
            put_encoded(&mut batch, Table::Idempotency, &group_key, &group_records);
            if batch.len() >= MIGRATION_WRITES_PER_BATCH {
                store.write(&mut batch, Durability::Synced)?;
            }
        }
    }
    // Accounts back at zero have no balance record in version 3, but may have history.
    let mut heads = chains.newest;
    for item in store.scan_all(Table::Balances) {
        let (key, value) = item?;
        let (user, asset) = split_balance_key(&key)?;
        let balance = match postcard::from_bytes::<StoredBalance>(&value) {
            Ok(stored) => stored.balance,
            Err(_) => decode::<Balance>(Table::Balances, &key, &value)?,
        };
        put_balance(&mut batch, user, asset, balance, heads.remove(&(user, asset)));
        if batch.len() >= MIGRATION_WRITES_PER_BATCH {
            store.write(&mut batch, Durability::Synced)?;
        }
    }
    for ((user, asset), newest) in heads {
        put_balance(&mut batch, user, asset, Balance::default(), Some(newest));
    }
    batch.put(Table::Meta, META_SCHEMA_VERSION, &4u32.to_be_bytes());
    // Not in the journal: synced by RocksDB's own log.
    store.write(&mut batch, Durability::Synced)?;
    tracing::info!(transfers = migrated, elapsed_ms = started.elapsed().as_millis() as u64, "ledger database migrated from schema version 3 to 4");
    Ok(())
}

/// A user's open orders (pending, open or partly filled) that pass `keep`,
/// newest first: all of them, however long the user's history.
pub fn open_orders_of_user_where(store: &Store, user: UserId, limit: usize, keep: impl Fn(&OrderRecord) -> bool) -> Result<Vec<OrderRecord>, SchemaError> {
    let mut out = Vec::new();
    for (key, _) in store.scan_prefix(Table::OpenOrders, &user.to_be_bytes(), usize::MAX, true)? {
        let order_id = open_order_id(&key)?;
        let record = open_order(store, &key, order_id)?;
        if keep(&record) {
            out.push(record);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

/// The record an `open_orders` key names; a key without one is corruption.
fn open_order(store: &Store, key: &[u8], order_id: OrderId) -> Result<OrderRecord, SchemaError> {
    order(store, order_id)?.ok_or_else(|| SchemaError::Corrupt { table: Table::OpenOrders.name(), key: hex(key), detail: "an open order has no record".into() })
}

/// The order id in an `open_orders` key, (user, order id).
fn open_order_id(key: &[u8]) -> Result<OrderId, SchemaError> {
    Ok(u64::from_be_bytes(exact::<16>(Table::OpenOrders, key)?[8..].try_into().unwrap()))
}

fn write_order(batch: &mut Batch, record: &OrderRecord) {
    put_encoded(batch, Table::Orders, &record.order.order_id.to_be_bytes(), record);
    batch.put(Table::OrdersByUser, &key2(record.order.user, record.order.order_id), &[]);
}

/// What start-up reads from the store.
#[derive(Debug)]
pub struct Loaded {
    pub state: LedgerState,
    /// The journal position the state includes.
    pub journal_applied: u64,
    pub chains: TransferChains,
}

/// The stored state, or None for a new database.
pub fn load(store: &Store) -> Result<Option<Loaded>, SchemaError> {
    let Some(counters) = store.get(Table::Meta, META_COUNTERS)? else { return Ok(None) };
    let mut version = fixed::<4>(store, Table::Meta, META_SCHEMA_VERSION)?.map(u32::from_be_bytes).unwrap_or(0);
    if version == 2 {
        migrate_open_orders_to_3(store)?;
        version = 3;
    }
    if version == 3 {
        migrate_transfer_chains_to_4(store)?;
        version = 4;
    }
    if version != SCHEMA_VERSION {
        return Err(SchemaError::Version { found: version });
    }
    let journal_applied = fixed::<8>(store, Table::Meta, META_JOURNAL_APPLIED)?.map(u64::from_be_bytes).unwrap_or(0);
    let mut state = LedgerState { counters: decode(Table::Meta, META_COUNTERS, &counters)?, ..LedgerState::default() };
    for item in store.scan_all(Table::Assets) {
        let (key, value) = item?;
        let asset: AssetSpec = decode(Table::Assets, &key, &value)?;
        state.assets.insert(asset.id, asset);
    }
    for item in store.scan_all(Table::Markets) {
        let (key, value) = item?;
        let market: LedgerMarket = decode(Table::Markets, &key, &value)?;
        state.markets.insert(market.id(), market);
    }
    let mut chains = TransferChains::default();
    for item in store.scan_all(Table::Balances) {
        let (key, value) = item?;
        let (user, asset) = split_balance_key(&key)?;
        let stored: StoredBalance = decode(Table::Balances, &key, &value)?;
        if stored.balance != Balance::default() {
            state.balances.insert((user, asset), stored.balance);
        }
        if let Some(newest) = stored.newest_transfer {
            chains.newest.insert((user, asset), newest);
        }
    }
    for item in store.scan_all(Table::SystemAccounts) {
        let (key, value) = item?;
        let asset = u32::from_be_bytes(exact(Table::SystemAccounts, &key)?);
        state.system.insert(asset, decode(Table::SystemAccounts, &key, &value)?);
    }
    for item in store.scan_all(Table::OpenOrders) {
        let (key, _) = item?;
        let order_id = open_order_id(&key)?;
        let record = open_order(store, &key, order_id)?;
        state.open_orders.insert(order_id, record);
    }
    for item in store.scan_all(Table::PendingWithdrawals) {
        let (key, _) = item?;
        let id = u64::from_be_bytes(exact(Table::PendingWithdrawals, &key)?);
        let withdrawal = withdrawal(store, id)?.ok_or_else(|| SchemaError::Corrupt {
            table: Table::PendingWithdrawals.name(),
            key: hex(&key),
            detail: "a pending withdrawal has no record".into(),
        })?;
        state.pending_withdrawals.insert(id, withdrawal);
    }
    for item in store.scan_all(Table::Idempotency) {
        let (key, value) = item?;
        let records: BatchIdempotency = decode(Table::Idempotency, &key, &value)?;
        state.idempotency.extend(records);
    }
    Ok(Some(Loaded { state, journal_applied, chains }))
}

fn fixed<const N: usize>(store: &Store, table: Table, key: &[u8]) -> Result<Option<[u8; N]>, SchemaError> {
    store.get(table, key)?.map(|value| exact(table, &value)).transpose()
}

fn exact<const N: usize>(table: Table, bytes: &[u8]) -> Result<[u8; N], SchemaError> {
    bytes.try_into().map_err(|_| SchemaError::Corrupt { table: table.name(), key: hex(bytes), detail: format!("expected {N} bytes, found {}", bytes.len()) })
}

fn split_balance_key(key: &[u8]) -> Result<(UserId, AssetId), SchemaError> {
    let key: [u8; 12] = exact(Table::Balances, key)?;
    Ok((u64::from_be_bytes(key[..8].try_into().unwrap()), u32::from_be_bytes(key[8..].try_into().unwrap())))
}

fn by_id<T: DeserializeOwned>(store: &Store, table: Table, id: u64) -> Result<Option<T>, SchemaError> {
    let key = id.to_be_bytes();
    store.get(table, &key)?.map(|value| decode(table, &key, &value)).transpose()
}

pub fn order(store: &Store, order_id: OrderId) -> Result<Option<OrderRecord>, SchemaError> {
    by_id(store, Table::Orders, order_id)
}

pub fn withdrawal(store: &Store, id: WithdrawalId) -> Result<Option<Withdrawal>, SchemaError> {
    by_id(store, Table::Withdrawals, id)
}

/// Records listed in `index` under `owner`, newest first, at most `limit`,
/// looked up in `table`.
fn newest_of<T: DeserializeOwned>(store: &Store, index: Table, table: Table, owner: u64, limit: usize) -> Result<Vec<T>, SchemaError> {
    let mut out = Vec::new();
    for (key, _) in store.scan_prefix(index, &owner.to_be_bytes(), limit, true)? {
        let id = u64::from_be_bytes(exact::<16>(index, &key)?[8..].try_into().unwrap());
        let record = by_id(store, table, id)?.ok_or_else(|| SchemaError::Corrupt {
            table: index.name(),
            key: hex(&key),
            detail: "the index names a missing record".into(),
        })?;
        out.push(record);
    }
    Ok(out)
}

/// Index entries a filtered list looks at, at most: a filter that matches
/// little cannot make one query walk a user's whole history.
pub const FILTER_SCAN_MAX: usize = 10_000;

/// Like [`newest_of`], keeping only records that pass `keep`: looks at the
/// newest [`FILTER_SCAN_MAX`] index entries.
fn newest_where<T: DeserializeOwned>(
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

pub fn orders_of_user_where(store: &Store, user: UserId, limit: usize, keep: impl Fn(&OrderRecord) -> bool) -> Result<Vec<OrderRecord>, SchemaError> {
    newest_where(store, Table::OrdersByUser, Table::Orders, user, limit, keep)
}

pub fn trades_of_user_where(store: &Store, user: UserId, limit: usize, keep: impl Fn(&TradeRecord) -> bool) -> Result<Vec<TradeRecord>, SchemaError> {
    newest_where(store, Table::TradesByUser, Table::Trades, user, limit, keep)
}

/// A user's transfers, newest first, at most `limit`, in one asset or all:
/// the newest of the heads of the user's chains, one after another.
pub fn transfers_of_user(store: &Store, user: UserId, asset: Option<AssetId>, limit: usize) -> Result<Vec<Transfer>, SchemaError> {
    let mut next = Vec::new();
    for (key, value) in store.scan_prefix(Table::Balances, &user.to_be_bytes(), usize::MAX, false)? {
        let (_, account_asset) = split_balance_key(&key)?;
        let stored: StoredBalance = decode(Table::Balances, &key, &value)?;
        if let (Some(newest), true) = (stored.newest_transfer, asset.is_none_or(|a| a == account_asset)) {
            next.push(chained_transfer(store, newest, Table::Balances, &key)?);
        }
    }
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(newest) = next.iter().enumerate().max_by_key(|(_, stored)| stored.transfer.id).map(|(index, _)| index) else { break };
        let previous = next[newest].previous_of(user);
        let key = next[newest].transfer.id.to_be_bytes();
        let stored = match previous {
            Some(id) => std::mem::replace(&mut next[newest], chained_transfer(store, id, Table::Transfers, &key)?),
            None => next.swap_remove(newest),
        };
        out.push(stored.transfer);
    }
    Ok(out)
}

/// The transfer `id`, which the record `(table, key)` names: missing is corruption.
fn chained_transfer(store: &Store, id: TransferId, table: Table, key: &[u8]) -> Result<StoredTransfer, SchemaError> {
    by_id(store, Table::Transfers, id)?.ok_or_else(|| SchemaError::Corrupt {
        table: table.name(),
        key: hex(key),
        detail: format!("it names transfer {id}, which is missing"),
    })
}

pub fn withdrawals_of_user_where(store: &Store, user: UserId, limit: usize, keep: impl Fn(&Withdrawal) -> bool) -> Result<Vec<Withdrawal>, SchemaError> {
    newest_where(store, Table::WithdrawalsByUser, Table::Withdrawals, user, limit, keep)
}

/// Everyone's withdrawals, newest first (the newest [`FILTER_SCAN_MAX`] looked at).
pub fn withdrawals_where(store: &Store, limit: usize, keep: impl Fn(&Withdrawal) -> bool) -> Result<Vec<Withdrawal>, SchemaError> {
    let mut out = Vec::new();
    for (key, value) in store.scan_prefix(Table::Withdrawals, &[], FILTER_SCAN_MAX, true)? {
        let withdrawal: Withdrawal = decode(Table::Withdrawals, &key, &value)?;
        if keep(&withdrawal) {
            out.push(withdrawal);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

/// A user's balances by asset (assets never held are absent).
pub fn balances_of_user(store: &Store, user: UserId) -> Result<Vec<(AssetId, Balance)>, SchemaError> {
    let mut out = Vec::new();
    for (key, value) in store.scan_prefix(Table::Balances, &user.to_be_bytes(), usize::MAX, false)? {
        let (_, asset) = split_balance_key(&key)?;
        let stored: StoredBalance = decode(Table::Balances, &key, &value)?;
        // A balance back at zero is stored for its history only.
        if stored.balance != Balance::default() {
            out.push((asset, stored.balance));
        }
    }
    Ok(out)
}

/// Every asset's reserve: its system accounts, and a scan of every balance.
pub fn reserves(store: &Store) -> Result<Vec<wire::ledger::AssetReserve>, SchemaError> {
    let mut users: std::collections::BTreeMap<AssetId, Amount> = Default::default();
    for item in store.scan_all(Table::Balances) {
        let (key, value) = item?;
        let (_, asset) = split_balance_key(&key)?;
        let stored: StoredBalance = decode(Table::Balances, &key, &value)?;
        *users.entry(asset).or_default() += stored.balance.available + stored.balance.locked;
    }
    let mut reserves = Vec::new();
    for asset in assets(store)? {
        let system: [Amount; 3] = match store.get(Table::SystemAccounts, &asset.id.to_be_bytes())? {
            Some(value) => decode(Table::SystemAccounts, &asset.id.to_be_bytes(), &value)?,
            None => [0; 3],
        };
        reserves.push(wire::ledger::AssetReserve {
            asset: asset.id,
            deposited: -system[ledger_core::SYSTEM_CUSTODY],
            users: users.get(&asset.id).copied().unwrap_or(0),
            fees: system[ledger_core::SYSTEM_FEES],
            pending_withdrawals: system[ledger_core::SYSTEM_PENDING],
        });
    }
    Ok(reserves)
}

pub fn assets(store: &Store) -> Result<Vec<AssetSpec>, SchemaError> {
    store.scan_all(Table::Assets).map(|item| item.map_err(SchemaError::from).and_then(|(key, value)| decode(Table::Assets, &key, &value))).collect()
}

pub fn markets(store: &Store) -> Result<Vec<LedgerMarket>, SchemaError> {
    store.scan_all(Table::Markets).map(|item| item.map_err(SchemaError::from).and_then(|(key, value)| decode(Table::Markets, &key, &value))).collect()
}

pub fn orders_of_user(store: &Store, user: UserId, limit: usize) -> Result<Vec<OrderRecord>, SchemaError> {
    newest_of(store, Table::OrdersByUser, Table::Orders, user, limit)
}

pub fn trades_of_user(store: &Store, user: UserId, limit: usize) -> Result<Vec<TradeRecord>, SchemaError> {
    newest_of(store, Table::TradesByUser, Table::Trades, user, limit)
}

pub fn trades_of_market(store: &Store, market: MarketId, limit: usize) -> Result<Vec<TradeRecord>, SchemaError> {
    newest_of(store, Table::TradesByMarket, Table::Trades, market as u64, limit)
}

pub fn withdrawals_of_user(store: &Store, user: UserId, limit: usize) -> Result<Vec<Withdrawal>, SchemaError> {
    newest_of(store, Table::WithdrawalsByUser, Table::Withdrawals, user, limit)
}

const META_PEER_PREFIX: &[u8] = b"peer/";

fn peer_key(peer: u32) -> [u8; 9] {
    let mut key = [0; 9];
    key[..5].copy_from_slice(META_PEER_PREFIX);
    key[5..].copy_from_slice(&peer.to_be_bytes());
    key
}

/// Records each peer's last applied command sequence (in the batch that applied it).
pub fn write_peers(batch: &mut Batch, peers: &rustc_hash::FxHashMap<u32, u64>) {
    for (&peer, &applied) in peers {
        batch.put(Table::Meta, &peer_key(peer), &applied.to_be_bytes());
    }
}

pub fn load_peers(store: &Store) -> Result<rustc_hash::FxHashMap<u32, u64>, SchemaError> {
    let mut peers = rustc_hash::FxHashMap::default();
    for (key, value) in store.scan_prefix(Table::Meta, META_PEER_PREFIX, usize::MAX, false)? {
        let key: [u8; 9] = exact(Table::Meta, &key)?;
        peers.insert(u32::from_be_bytes(key[5..].try_into().unwrap()), u64::from_be_bytes(exact(Table::Meta, &value)?));
    }
    Ok(peers)
}

/// Adds commands for matching to the outbox, by their forward sequence, and
/// removes those matching confirmed; `forwarded_last` is the newest sequence
/// ever assigned (kept even when the outbox is empty).
pub fn write_outbox(batch: &mut Batch, added: &[(u64, matching_core::Command)], confirmed: std::ops::RangeInclusive<u64>, forwarded_last: u64) {
    for (sequence, command) in added {
        put_encoded(batch, Table::Outbox, &sequence.to_be_bytes(), command);
    }
    for sequence in confirmed {
        batch.delete(Table::Outbox, &sequence.to_be_bytes());
    }
    batch.put(Table::Meta, META_FORWARDED_LAST, &forwarded_last.to_be_bytes());
}

/// The unconfirmed commands for matching, oldest first, and the newest forward sequence.
pub fn load_outbox(store: &Store) -> Result<(Vec<(u64, matching_core::Command)>, u64), SchemaError> {
    let forwarded_last = fixed::<8>(store, Table::Meta, META_FORWARDED_LAST)?.map(u64::from_be_bytes).unwrap_or(0);
    let mut outbox = Vec::new();
    for item in store.scan_all(Table::Outbox) {
        let (key, value) = item?;
        outbox.push((u64::from_be_bytes(exact(Table::Outbox, &key)?), decode(Table::Outbox, &key, &value)?));
    }
    Ok((outbox, forwarded_last))
}
