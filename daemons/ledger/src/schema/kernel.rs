//! The kernel's tables: assets, accounts, transfers, holds, idempotency keys.
//!
//! An account's key is its owner (a kind byte and an id), its asset and its
//! purpose, so a prefix scan by owner lists everything one user holds.
//! Each account's transfers form a chain from the newest back: the
//! account's record names its newest transfer, and each stored transfer
//! names the one before it on each side. A user's history is read by
//! walking their accounts' chains, so storing a transfer costs one write
//! keyed by its (increasing) id and the account writes the batch makes
//! anyway; a per-user index had cost two writes at random places per
//! transfer, most of RocksDB's work in `scripts/bench ledger`.

use std::collections::BTreeMap;

use ledger_api::TransferId;
use ledger_api::{Account, AssetReserve, AssetSpec, OwnerKind, Transfer};
use ledger_core::{tables, AccountId, Digest, Hold, HoldId, IdempotencyEntry, Kernel, KernelChanges, KernelState, Owner, Purpose, Recorded};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use storage::{Batch, Store, Table};

use super::{corrupt, decode, exact, meta, put_encoded, SchemaError, META};

pub const ASSETS: Table = Table::new(tables::ASSETS);
pub const ACCOUNTS: Table = Table::new(tables::ACCOUNTS);
pub const TRANSFERS: Table = Table::new(tables::TRANSFERS);
pub const HOLDS: Table = Table::new(tables::HOLDS);
/// One value per batch, keyed by its journal position, not by digest:
/// appending keeps the memtable inserts and RocksDB's compactions cheap
/// (the digests are random), and only start-up reads them, all at once.
pub const IDEMPOTENCY: Table = Table::new(tables::IDEMPOTENCY);

pub const TABLES: &[Table] = &[ASSETS, ACCOUNTS, TRANSFERS, HOLDS, IDEMPOTENCY];

const META_NEXT_TRANSFER: &[u8] = b"kernel.next_transfer";

pub const ACCOUNT_KEY_BYTES: usize = 14;

fn owner_parts(owner: Owner) -> (u8, u64) {
    match owner {
        Owner::User(user) => (0, user),
        Owner::House => (1, 0),
        Owner::Entity(id) => (2, id),
    }
}

/// The first bytes of every key of `owner`'s accounts.
pub fn owner_prefix(owner: Owner) -> [u8; 9] {
    let (kind, id) = owner_parts(owner);
    let mut prefix = [0; 9];
    prefix[0] = kind;
    prefix[1..].copy_from_slice(&id.to_be_bytes());
    prefix
}

pub fn account_key(account: AccountId) -> [u8; ACCOUNT_KEY_BYTES] {
    let mut key = [0; ACCOUNT_KEY_BYTES];
    key[..9].copy_from_slice(&owner_prefix(account.owner));
    key[9..13].copy_from_slice(&account.asset.to_be_bytes());
    key[13] = account.purpose.0;
    key
}

fn split_account_key(key: &[u8]) -> Result<AccountId, SchemaError> {
    let key: [u8; ACCOUNT_KEY_BYTES] = exact(ACCOUNTS, key)?;
    let id = u64::from_be_bytes(key[1..9].try_into().expect("8 bytes"));
    let owner = match key[0] {
        0 => Owner::User(id),
        1 => Owner::House,
        2 => Owner::Entity(id),
        other => return Err(corrupt(ACCOUNTS, &key, format!("unknown owner kind {other}"))),
    };
    Ok(AccountId { owner, asset: u32::from_be_bytes(key[9..13].try_into().expect("4 bytes")), purpose: Purpose(key[13]) })
}

/// The kernel's account in the API's words.
pub fn api_account(account: AccountId) -> Account {
    let owner = match account.owner {
        Owner::User(user) => ledger_api::Owner::User(user),
        Owner::House => ledger_api::Owner::House,
        Owner::Entity(id) => ledger_api::Owner::Entity(id),
    };
    Account { owner, asset: account.asset, purpose: account.purpose.0 }
}

fn kernel_account(account: Account) -> AccountId {
    let owner = match account.owner {
        ledger_api::Owner::User(user) => Owner::User(user),
        ledger_api::Owner::House => Owner::House,
        ledger_api::Owner::Entity(id) => Owner::Entity(id),
    };
    AccountId { owner, asset: account.asset, purpose: Purpose(account.purpose) }
}

/// An account as stored: its balance, and the head of its transfer chain.
/// An account back at zero keeps its record while it has history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAccount {
    pub balance: i128,
    pub newest_transfer: Option<TransferId>,
}

/// A transfer as stored: the API's record, and the previous transfer of
/// its debit and its credit account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredTransfer {
    pub transfer: Transfer,
    pub previous: [Option<TransferId>; 2],
}

/// [`StoredTransfer`]'s encoding, written from the kernel's transfer
/// without copying its reference (postcard encodes `&str` as `String`; a
/// test holds the two equal).
#[derive(Serialize)]
pub struct TransferRow<'a> {
    pub transfer: TransferFields<'a>,
    pub previous: [Option<TransferId>; 2],
}

/// `ledger_api::Transfer`'s fields, borrowed.
#[derive(Serialize)]
pub struct TransferFields<'a> {
    pub id: TransferId,
    pub debit: Account,
    pub credit: Account,
    pub amount: i128,
    pub code: u16,
    pub reference: &'a str,
    pub at_ms: u64,
}

impl<'a> TransferFields<'a> {
    pub fn of(transfer: &'a ledger_core::Transfer) -> TransferFields<'a> {
        TransferFields {
            id: transfer.id,
            debit: api_account(transfer.debit),
            credit: api_account(transfer.credit),
            amount: transfer.amount,
            code: transfer.code.0,
            reference: transfer.reference.as_str(),
            at_ms: transfer.at_ms,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StoredHold {
    origin: Account,
    held: Account,
    remaining: i128,
}

/// One idempotency key as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StoredKey {
    key: Digest,
    fingerprint: Digest,
    kind: u8,
    id: u64,
}

fn hold_key(id: HoldId) -> [u8; 9] {
    let mut key = [0; 9];
    key[0] = id.kind;
    key[1..].copy_from_slice(&id.id.to_be_bytes());
    key
}

/// The newest transfer of every account that has any, as the batches
/// handed to the writer leave them.
#[derive(Debug, Default)]
pub struct TransferChains {
    newest: FxHashMap<AccountId, TransferId>,
}

impl TransferChains {
    pub fn newest(&self, account: AccountId) -> Option<TransferId> {
        self.newest.get(&account).copied()
    }

    /// Makes `transfer` the newest of both its accounts and returns the
    /// previous newest of each, [debit, credit].
    fn link(&mut self, transfer: &ledger_core::Transfer) -> [Option<TransferId>; 2] {
        [transfer.debit, transfer.credit].map(|account| self.newest.insert(account, transfer.id))
    }
}

/// Adds what the kernel's part of a batch changed.
pub fn write(batch: &mut Batch, kernel: &Kernel, changes: &KernelChanges, chains: &mut TransferChains, journal_applied: u64) {
    for asset in &changes.assets {
        put_encoded(batch, ASSETS, &asset.id.to_be_bytes(), &AssetSpec { id: asset.id, symbol: asset.symbol.clone(), scale: asset.scale });
    }
    for transfer in &changes.transfers {
        let previous = chains.link(transfer);
        put_encoded(batch, TRANSFERS, &transfer.id.to_be_bytes(), &TransferRow { transfer: TransferFields::of(transfer), previous });
    }
    // Every leg changes both its accounts' balances, so the heads that moved
    // are written with the changed balances.
    for &account in &changes.accounts {
        let stored = StoredAccount { balance: kernel.balance(account), newest_transfer: chains.newest(account) };
        put_encoded(batch, ACCOUNTS, &account_key(account), &stored);
    }
    for &id in &changes.holds {
        match kernel.hold_of(id) {
            Some(hold) => put_encoded(
                batch,
                HOLDS,
                &hold_key(id),
                &StoredHold { origin: api_account(hold.origin), held: api_account(hold.held), remaining: hold.remaining },
            ),
            None => batch.delete(HOLDS, &hold_key(id)),
        }
    }
    // The batch's position is unique, and RocksDB never holds a batch after one it lost.
    if !changes.idempotency.is_empty() {
        let keys: Vec<StoredKey> = changes
            .idempotency
            .iter()
            .map(|(key, entry)| StoredKey { key: *key, fingerprint: entry.fingerprint, kind: entry.recorded.kind, id: entry.recorded.id })
            .collect();
        put_encoded(batch, IDEMPOTENCY, &journal_applied.to_be_bytes(), &keys);
    }
    put_encoded(batch, META, META_NEXT_TRANSFER, &kernel.next_transfer());
}

pub fn load(store: &Store) -> Result<(KernelState, TransferChains), SchemaError> {
    let mut state = KernelState { next_transfer: meta(store, META_NEXT_TRANSFER)?.unwrap_or(1), ..KernelState::default() };
    for asset in assets(store)? {
        state.assets.insert(asset.id, ledger_core::AssetSpec { id: asset.id, symbol: asset.symbol, scale: asset.scale });
    }
    let mut chains = TransferChains::default();
    for item in store.scan_all(ACCOUNTS) {
        let (key, value) = item?;
        let account = split_account_key(&key)?;
        let stored: StoredAccount = decode(ACCOUNTS, &key, &value)?;
        if stored.balance != 0 {
            state.balances.insert(account, stored.balance);
        }
        if let Some(newest) = stored.newest_transfer {
            chains.newest.insert(account, newest);
        }
    }
    for item in store.scan_all(HOLDS) {
        let (key, value) = item?;
        let key: [u8; 9] = exact(HOLDS, &key)?;
        let id = HoldId { kind: key[0], id: u64::from_be_bytes(key[1..].try_into().expect("8 bytes")) };
        let stored: StoredHold = decode(HOLDS, &key, &value)?;
        state.holds.insert(id, Hold { origin: kernel_account(stored.origin), held: kernel_account(stored.held), remaining: stored.remaining });
    }
    // A kind no product declares is damage (and 0 would read as a free slot in the kernel's table).
    let record_kinds = products::record_kinds();
    for item in store.scan_all(IDEMPOTENCY) {
        let (key, value) = item?;
        let keys: Vec<StoredKey> = decode(IDEMPOTENCY, &key, &value)?;
        if let Some(stray) = keys.iter().find(|k| !record_kinds.contains(&k.kind)) {
            return Err(corrupt(IDEMPOTENCY, &key, format!("an idempotency key of kind {}, which no product declares", stray.kind)));
        }
        state
            .idempotency
            .extend(keys.into_iter().map(|k| (k.key, IdempotencyEntry { fingerprint: k.fingerprint, recorded: Recorded { kind: k.kind, id: k.id } })));
    }
    Ok((state, chains))
}

pub fn assets(store: &Store) -> Result<Vec<AssetSpec>, SchemaError> {
    store.scan_all(ASSETS).map(|item| item.map_err(SchemaError::from).and_then(|(key, value)| decode(ASSETS, &key, &value))).collect()
}

/// Every account `owner` has a record of (history included), in key order.
pub fn accounts_of(store: &Store, owner: Owner) -> Result<Vec<(AccountId, StoredAccount)>, SchemaError> {
    let mut out = Vec::new();
    for (key, value) in store.scan_prefix(ACCOUNTS, &owner_prefix(owner), usize::MAX, false)? {
        out.push((split_account_key(&key)?, decode(ACCOUNTS, &key, &value)?));
    }
    Ok(out)
}

/// Every nonzero account of `asset`: a scan of every account, as the
/// reserves are (the cap table's read, not the hot path).
pub fn accounts_of_asset(store: &Store, asset: u32) -> Result<Vec<(AccountId, i128)>, SchemaError> {
    Ok(stored_accounts_of_asset(store, asset)?
        .into_iter()
        .filter(|(_, stored)| stored.balance != 0)
        .map(|(account, stored)| (account, stored.balance))
        .collect())
}

/// Every account of `asset` with a record (history included, zero
/// balances too): a scan of every account, as [`accounts_of_asset`].
pub fn stored_accounts_of_asset(store: &Store, asset: u32) -> Result<Vec<(AccountId, StoredAccount)>, SchemaError> {
    let mut out = Vec::new();
    for item in store.scan_all(ACCOUNTS) {
        let (key, value) = item?;
        let account = split_account_key(&key)?;
        if account.asset == asset {
            out.push((account, decode(ACCOUNTS, &key, &value)?));
        }
    }
    Ok(out)
}

/// The account's balance as it stood after every transfer stamped at or
/// before `at_ms`: today's, with the transfers after it undone, walking
/// its chain from the newest back (a read as long as what came since).
pub fn balance_at(store: &Store, account: AccountId, stored: &StoredAccount, at_ms: u64) -> Result<i128, SchemaError> {
    let (mut balance, mut next) = (stored.balance, stored.newest_transfer);
    let side = api_account(account);
    let key = account_key(account);
    while let Some(id) = next {
        let StoredTransfer { transfer, previous } = chained_transfer(store, id, ACCOUNTS, &key)?;
        if transfer.at_ms <= at_ms {
            break;
        }
        // A debit took the amount out of the account, a credit put it in.
        if transfer.debit == side {
            balance += transfer.amount;
            next = previous[0];
        } else {
            balance -= transfer.amount;
            next = previous[1];
        }
    }
    Ok(balance)
}

pub fn account(store: &Store, account: AccountId) -> Result<Option<StoredAccount>, SchemaError> {
    let key = account_key(account);
    store.get(ACCOUNTS, &key)?.map(|value| decode(ACCOUNTS, &key, &value)).transpose()
}

pub fn transfer(store: &Store, id: TransferId) -> Result<Option<StoredTransfer>, SchemaError> {
    super::by_id(store, TRANSFERS, id)
}

/// The transfer `id`, which the record `(table, key)` names: missing is corruption.
fn chained_transfer(store: &Store, id: TransferId, table: Table, key: &[u8]) -> Result<StoredTransfer, SchemaError> {
    super::by_id(store, TRANSFERS, id)?.ok_or_else(|| corrupt(table, key, format!("it names transfer {id}, which is missing")))
}

/// A user's transfers, newest first, at most `limit`, in one asset or all:
/// the newest of the heads of the user's accounts' chains, one after
/// another. A transfer between two of the user's accounts (a hold) is in
/// both chains and listed once.
pub fn transfers_of_user(store: &Store, user: u64, asset: Option<u32>, limit: usize) -> Result<Vec<Transfer>, SchemaError> {
    // (the account whose chain it is, its next transfer)
    let mut next: Vec<(Account, StoredTransfer)> = Vec::new();
    for (account, stored) in accounts_of(store, Owner::User(user))? {
        if let (Some(newest), true) = (stored.newest_transfer, asset.is_none_or(|a| a == account.asset)) {
            next.push((api_account(account), chained_transfer(store, newest, ACCOUNTS, &account_key(account))?));
        }
    }
    let mut out: Vec<Transfer> = Vec::new();
    while out.len() < limit {
        let Some(newest) = next.iter().enumerate().max_by_key(|(_, (_, stored))| stored.transfer.id).map(|(index, _)| index) else { break };
        let (account, stored) = &next[newest];
        let previous = if stored.transfer.debit == *account { stored.previous[0] } else { stored.previous[1] };
        let key = stored.transfer.id.to_be_bytes();
        let (_, stored) = match previous {
            Some(id) => {
                let account = *account;
                std::mem::replace(&mut next[newest], (account, chained_transfer(store, id, TRANSFERS, &key)?))
            }
            None => next.swap_remove(newest),
        };
        if out.last().is_none_or(|last| last.id != stored.transfer.id) {
            out.push(stored.transfer);
        }
    }
    Ok(out)
}

/// Every asset's reserve: every stored account summed by owner kind and
/// purpose, read from the store independently of the ledger's memory.
pub fn reserves(store: &Store) -> Result<Vec<AssetReserve>, SchemaError> {
    let mut totals: BTreeMap<(u32, OwnerKind, u8), i128> = BTreeMap::new();
    for item in store.scan_all(ACCOUNTS) {
        let (key, value) = item?;
        let account = split_account_key(&key)?;
        let stored: StoredAccount = decode(ACCOUNTS, &key, &value)?;
        let owner = match account.owner {
            Owner::User(_) => OwnerKind::Users,
            Owner::House => OwnerKind::House,
            Owner::Entity(_) => OwnerKind::Entities,
        };
        *totals.entry((account.asset, owner, account.purpose.0)).or_default() += stored.balance;
    }
    Ok(assets(store)?
        .into_iter()
        .map(|asset| AssetReserve {
            asset: asset.id,
            totals: totals
                .range((asset.id, OwnerKind::Users, 0)..=(asset.id, OwnerKind::Entities, u8::MAX))
                .filter(|(_, total)| **total != 0)
                .map(|(&(_, owner, purpose), &total)| (owner, purpose, total))
                .collect(),
        })
        .collect())
}
