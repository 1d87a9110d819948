//! The ledger state machine.
//!
//! Every balance change is a [`Transfer`] from one account to another of the
//! same asset, so the sum over all accounts of an asset is zero by
//! construction; [`Ledger::check_invariants`] verifies it along with the
//! rest. A command either applies all its legs or none: each one validates
//! everything before it moves money.
//!
//! Memory holds what the next command may need: balances, open orders,
//! pending withdrawals, idempotency keys. Transfers, trades and finished
//! orders and withdrawals leave through [`Changes`], which the daemon writes to
//! storage in the same batch.

use std::collections::BTreeMap;

use compact_str::{format_compact, CompactString};
use matching_core::{Command, Event, Fill, NewOrder, OrderKind, RejectCode, SelfTradePrevention, Side, TimeInForce};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::idempotency::IdempotencyTable;
use crate::types::*;

pub const DESTINATION_BYTES_MAX: usize = 256;

/// Also the `[limits]` section of `ledger.toml`: every key optional, unknown keys refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerLimits {
    pub open_orders_per_user_max: u32,
    pub open_orders_max: u32,
    pub pending_withdrawals_max: u32,
    pub assets_max: u32,
    pub markets_max: u32,
    /// Not a limit: idempotency keys the ledger makes room for at start, so
    /// that it does not stop to grow its table (a pause of tens of
    /// milliseconds at a million keys) until it holds more than these.
    /// About 100 bytes each: two 48-byte slots and a list entry (the slots
    /// mapped in by [`Ledger::touch_reserved`]).
    pub idempotency_keys_reserved: u32,
}

impl Default for LedgerLimits {
    fn default() -> Self {
        LedgerLimits {
            open_orders_per_user_max: 1_000,
            open_orders_max: 10_000_000,
            pending_withdrawals_max: 1_000_000,
            assets_max: 1_024,
            markets_max: 1_024,
            idempotency_keys_reserved: 1 << 20,
        }
    }
}

/// What a user asks for when placing an order; the ledger assigns the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderRequest {
    pub market: MarketId,
    pub side: Side,
    pub kind: OrderKind,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub price: Option<u64>,
    pub quantity: u64,
    pub self_trade: SelfTradePrevention,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LedgerCommand {
    CreateAsset(AssetSpec),
    CreateMarket(LedgerMarket),
    /// Custody to the user's AVAILABLE; idempotent by `reference`.
    Deposit {
        user: UserId,
        asset: AssetId,
        amount: Amount,
        reference: String,
    },
    /// One user's AVAILABLE to another's; idempotent by `key`.
    Transfer {
        from: UserId,
        to: UserId,
        asset: AssetId,
        amount: Amount,
        key: String,
    },
    /// AVAILABLE to pending withdrawals; idempotent by the user's `key`.
    RequestWithdrawal {
        user: UserId,
        asset: AssetId,
        amount: Amount,
        destination: String,
        key: String,
    },
    /// Pending to custody (approve) or back to AVAILABLE (reject).
    DecideWithdrawal {
        id: WithdrawalId,
        approve: bool,
    },
    /// Holds the worst case and yields the command to send to matching.
    PlaceOrder {
        user: UserId,
        request: OrderRequest,
        client_order_id: Option<String>,
    },
    CancelOrder {
        user: UserId,
        order_id: OrderId,
    },
    /// Matching's events for its output `sequence`, applied exactly once in order.
    ApplyMatching {
        sequence: u64,
        events: Vec<Event>,
    },
}

/// What a repeated idempotency key points back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Recorded {
    Deposit(TransferId),
    Transfer(TransferId),
    Withdrawal(WithdrawalId),
    Order(OrderId),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    AssetCreated(AssetId),
    MarketCreated(MarketId),
    Deposited(TransferId),
    Transferred(TransferId),
    WithdrawalRequested(WithdrawalId),
    WithdrawalDecided(WithdrawalId),
    /// `forward` goes to matching.
    OrderPlaced {
        order_id: OrderId,
        forward: Command,
    },
    CancelRequested {
        forward: Command,
    },
    /// The orders whose state changed.
    MatchingApplied {
        orders: Vec<OrderId>,
    },
    /// The same request was applied before: here is its result.
    Replayed(Recorded),
}

/// What an idempotency key says about a request.
enum Idempotent {
    Replay(Recorded),
    New(Digest),
}

/// A 128-bit digest of an idempotency key (kind, owner, key text) or of a request's fields.
pub type Digest = [u8; 16];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyEntry {
    pub fingerprint: Digest,
    pub recorded: Recorded,
}

/// Everything the ledger holds in memory, in canonical order: the storage
/// writes it piecewise and restores it whole; its hash is the state hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    pub assets: BTreeMap<AssetId, AssetSpec>,
    pub markets: BTreeMap<MarketId, LedgerMarket>,
    pub balances: BTreeMap<(UserId, AssetId), Balance>,
    /// Per asset: custody, fees, pending withdrawals.
    pub system: BTreeMap<AssetId, [Amount; 3]>,
    pub open_orders: BTreeMap<OrderId, OrderRecord>,
    pub pending_withdrawals: BTreeMap<WithdrawalId, Withdrawal>,
    pub idempotency: BTreeMap<Digest, IdempotencyEntry>,
    pub counters: Counters,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Counters {
    pub next_transfer: TransferId,
    pub next_withdrawal: WithdrawalId,
    pub next_order: OrderId,
    pub next_trade: TradeId,
    /// The last matching output sequence applied.
    pub matching_applied: u64,
}

/// What one or more commands changed, for the storage to write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub assets: Vec<AssetSpec>,
    pub markets: Vec<LedgerMarket>,
    /// The user accounts whose balance changed: every user side of `transfers` is one.
    pub balances: FxHashSet<(UserId, AssetId)>,
    pub system: FxHashSet<AssetId>,
    pub transfers: Vec<Transfer>,
    pub trades: Vec<TradeRecord>,
    /// Open orders whose record changed (current values are in the ledger).
    pub orders: FxHashSet<OrderId>,
    /// Orders that reached a final state: their last record; they left memory.
    pub closed_orders: Vec<OrderRecord>,
    pub withdrawals: Vec<Withdrawal>,
    pub idempotency: Vec<(Digest, IdempotencyEntry)>,
}

impl Changes {
    /// Empties every collection and keeps its memory.
    fn clear(&mut self) {
        let Changes { assets, markets, balances, system, transfers, trades, orders, closed_orders, withdrawals, idempotency } = self;
        assets.clear();
        markets.clear();
        balances.clear();
        system.clear();
        transfers.clear();
        trades.clear();
        orders.clear();
        closed_orders.clear();
        withdrawals.clear();
        idempotency.clear();
    }
}

/// The slots of [`Ledger::system_balances`]: custody (the world outside; negative by what came in net),
/// fees collected, withdrawals pending.
pub const SYSTEM_CUSTODY: usize = 0;
pub const SYSTEM_FEES: usize = 1;
pub const SYSTEM_PENDING: usize = 2;

pub struct Ledger {
    limits: LedgerLimits,
    assets: FxHashMap<AssetId, AssetSpec>,
    markets: FxHashMap<MarketId, LedgerMarket>,
    balances: FxHashMap<(UserId, AssetId), Balance>,
    system: FxHashMap<AssetId, [Amount; 3]>,
    orders: FxHashMap<OrderId, OrderRecord>,
    open_orders_by_user: FxHashMap<UserId, u32>,
    withdrawals: FxHashMap<WithdrawalId, Withdrawal>,
    idempotency: IdempotencyTable,
    counters: Counters,
    changes: Changes,
    /// [`Ledger::apply_all`]'s idempotency digests, one per command, kept for the next batch.
    batch_keys: Vec<Option<Digest>>,
}

/// Each part behind its length, so that no two lists of parts give the same
/// input, hashed in one call: the inputs are short (one blake3 block for most
/// keys), and a streamed hasher per part cost more than the hashing. Longer
/// inputs take a vector; a bigger stack buffer costs its zeroing every call.
fn framed(parts: &[&[u8]], hash: impl FnOnce(&[u8]) -> Digest) -> Digest {
    let framed_len: usize = parts.iter().map(|part| 8 + part.len()).sum();
    let mut stack = [0u8; 160];
    let mut heap = Vec::new();
    let input = if framed_len <= stack.len() {
        &mut stack[..framed_len]
    } else {
        heap.resize(framed_len, 0);
        &mut heap[..]
    };
    let mut at = 0;
    for part in parts {
        input[at..at + 8].copy_from_slice(&(part.len() as u64).to_le_bytes());
        input[at + 8..at + 8 + part.len()].copy_from_slice(part);
        at += 8 + part.len();
    }
    hash(input)
}

/// An idempotency key's digest: blake3, because it is what tells one
/// owner's keys from another's, and nobody may craft a key that lands on
/// someone else's.
fn digest(parts: &[&[u8]]) -> Digest {
    framed(parts, |input| {
        let mut out = [0; 16];
        out.copy_from_slice(&blake3::hash(input).as_bytes()[..16]);
        out
    })
}

/// A request's fingerprint, stored with its idempotency key to tell a
/// replay (the same fields) from a reuse (DUPLICATE). XXH3-128, not blake3:
/// it only ever compares two requests of one owner under one key, so the
/// only collision anyone could craft would fool its own author, and a chance
/// one is 2^-128. At a tenth of blake3's cost for these short inputs, this
/// was the largest single saving per transfer in `scripts/bench ledger`.
/// Stores written before hold blake3 fingerprints; `idempotent` accepts those.
fn fingerprint(parts: &[&[u8]]) -> Digest {
    framed(parts, |input| xxhash_rust::xxh3::xxh3_128(input).to_le_bytes())
}

fn deposit_key(asset: AssetId, reference: &str) -> Digest {
    digest(&[b"deposit", &asset.to_le_bytes(), reference.as_bytes()])
}

fn transfer_key(from: UserId, key: &str) -> Digest {
    digest(&[b"transfer", &from.to_le_bytes(), key.as_bytes()])
}

fn withdrawal_key(user: UserId, key: &str) -> Digest {
    digest(&[b"withdrawal", &user.to_le_bytes(), key.as_bytes()])
}

fn order_key(user: UserId, client_order_id: &str) -> Digest {
    digest(&[b"order", &user.to_le_bytes(), client_order_id.as_bytes()])
}

/// The digest a command's own step would compute for its idempotency key,
/// for the commands that carry a valid one.
fn idempotency_key(command: &LedgerCommand) -> Option<Digest> {
    match command {
        LedgerCommand::Deposit { asset, reference, .. } => check_key(reference).ok().map(|()| deposit_key(*asset, reference)),
        LedgerCommand::Transfer { from, key, .. } => check_key(key).ok().map(|()| transfer_key(*from, key)),
        LedgerCommand::RequestWithdrawal { user, key, .. } => check_key(key).ok().map(|()| withdrawal_key(*user, key)),
        LedgerCommand::PlaceOrder { user, client_order_id: Some(id), .. } => check_key(id).ok().map(|()| order_key(*user, id)),
        _ => None,
    }
}

fn check_key(key: &str) -> Result<(), LedgerError> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(LedgerError::BadInput("an idempotency key or reference must be 1 to 128 bytes".into()));
    }
    Ok(())
}

fn check_amount(amount: Amount) -> Result<(), LedgerError> {
    if amount <= 0 {
        return Err(LedgerError::BadInput("amount must be positive".into()));
    }
    Ok(())
}

impl Ledger {
    pub fn new(limits: LedgerLimits) -> Ledger {
        Ledger::restore(
            limits,
            LedgerState {
                counters: Counters { next_transfer: 1, next_withdrawal: 1, next_order: 1, next_trade: 1, matching_applied: 0 },
                ..LedgerState::default()
            },
        )
    }

    pub fn restore(limits: LedgerLimits, state: LedgerState) -> Ledger {
        let mut open_orders_by_user: FxHashMap<UserId, u32> = FxHashMap::default();
        for order in state.open_orders.values() {
            *open_orders_by_user.entry(order.order.user).or_default() += 1;
        }
        Ledger {
            limits,
            assets: state.assets.into_iter().collect(),
            markets: state.markets.into_iter().collect(),
            balances: state.balances.into_iter().collect(),
            system: state.system.into_iter().collect(),
            orders: state.open_orders.into_iter().collect(),
            open_orders_by_user,
            withdrawals: state.pending_withdrawals.into_iter().collect(),
            idempotency: {
                let mut keys = IdempotencyTable::with_capacity(state.idempotency.len().max(limits.idempotency_keys_reserved as usize));
                keys.extend(state.idempotency);
                keys
            },
            counters: state.counters,
            changes: Changes::default(),
            batch_keys: Vec::new(),
        }
    }

    pub fn state(&self) -> LedgerState {
        LedgerState {
            assets: self.assets.iter().map(|(k, v)| (*k, v.clone())).collect(),
            markets: self.markets.iter().map(|(k, v)| (*k, *v)).collect(),
            balances: self.balances.iter().filter(|(_, b)| **b != Balance::default()).map(|(k, v)| (*k, *v)).collect(),
            system: self.system.iter().map(|(k, v)| (*k, *v)).collect(),
            open_orders: self.orders.iter().map(|(k, v)| (*k, v.clone())).collect(),
            pending_withdrawals: self.withdrawals.iter().map(|(k, v)| (*k, v.clone())).collect(),
            idempotency: self.idempotency.iter().collect(),
            counters: self.counters,
        }
    }

    /// blake3 of the canonical state.
    pub fn state_hash(&self) -> [u8; 32] {
        *blake3::hash(&postcard::to_stdvec(&self.state()).expect("encoding into a vector cannot fail")).as_bytes()
    }

    /// Maps in the memory reserved for idempotency keys now, in huge pages
    /// where the host allows (see [`IdempotencyTable::touch_pages`]); the
    /// daemon does at start. Returns its bytes.
    pub fn touch_reserved(&mut self) -> usize {
        self.idempotency.touch_pages()
    }

    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// Hands back taken changes once written: they are emptied and collect
    /// the next batch's, so a batch does not grow its sets and vectors from
    /// nothing (a tenth of the core's work per transfer, in the benchmark).
    pub fn recycle(&mut self, mut changes: Changes) {
        changes.clear();
        if self.changes == Changes::default() {
            self.changes = changes;
        }
    }

    pub fn balance(&self, user: UserId, asset: AssetId) -> Balance {
        self.balances.get(&(user, asset)).copied().unwrap_or_default()
    }

    pub fn system_balances(&self, asset: AssetId) -> [Amount; 3] {
        self.system.get(&asset).copied().unwrap_or_default()
    }

    pub fn order(&self, order_id: OrderId) -> Option<&OrderRecord> {
        self.orders.get(&order_id)
    }

    pub fn withdrawal(&self, id: WithdrawalId) -> Option<&Withdrawal> {
        self.withdrawals.get(&id)
    }

    pub fn asset(&self, id: AssetId) -> Option<&AssetSpec> {
        self.assets.get(&id)
    }

    pub fn market(&self, id: MarketId) -> Option<&LedgerMarket> {
        self.markets.get(&id)
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Applies one command at `at_ms`. An `Err` changed nothing.
    pub fn apply(&mut self, command: &LedgerCommand, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        self.apply_keyed(command, at_ms, None)
    }

    /// Applies `commands` in order, exactly as [`Self::apply`] one by one
    /// would, and hands `each` every outcome with the ledger as that
    /// command left it. First it computes the commands' idempotency digests
    /// and asks the CPU for their slots in the key table: a new key's slot
    /// is a cache miss in a table of a million keys, and these overlap with
    /// the hashing instead of stalling each command in turn (with
    /// hashbrown, the two misses of a new key were about 30% of the core's
    /// time per transfer in `scripts/bench ledger`).
    pub fn apply_all<'c, I>(&mut self, commands: I, mut each: impl FnMut(&Ledger, Result<Outcome, LedgerError>))
    where
        I: IntoIterator<Item = (&'c LedgerCommand, TimestampMs)>,
        I::IntoIter: Clone,
    {
        let commands = commands.into_iter();
        let mut keys = std::mem::take(&mut self.batch_keys);
        keys.clear();
        keys.extend(commands.clone().map(|(command, _)| {
            let key = idempotency_key(command);
            if let Some(key) = &key {
                self.idempotency.prefetch(key);
            }
            key
        }));
        for ((command, at_ms), key) in commands.zip(&keys) {
            let outcome = self.apply_keyed(command, at_ms, *key);
            each(self, outcome);
        }
        self.batch_keys = keys;
    }

    /// [`Self::apply`] with the command's idempotency digest if computed
    /// already ([`idempotency_key`]); `None` computes it where needed.
    fn apply_keyed(&mut self, command: &LedgerCommand, at_ms: TimestampMs, known_key: Option<Digest>) -> Result<Outcome, LedgerError> {
        match command {
            LedgerCommand::CreateAsset(spec) => self.create_asset(spec),
            LedgerCommand::CreateMarket(market) => self.create_market(market),
            LedgerCommand::Deposit { user, asset, amount, reference } => self.deposit(*user, *asset, *amount, reference, at_ms, known_key),
            LedgerCommand::Transfer { from, to, asset, amount, key } => self.transfer_between_users(*from, *to, *asset, *amount, key, at_ms, known_key),
            LedgerCommand::RequestWithdrawal { user, asset, amount, destination, key } => {
                self.request_withdrawal(*user, *asset, *amount, destination, key, at_ms, known_key)
            }
            LedgerCommand::DecideWithdrawal { id, approve } => self.decide_withdrawal(*id, *approve, at_ms),
            LedgerCommand::PlaceOrder { user, request, client_order_id } => self.place_order(*user, request, client_order_id.as_deref(), at_ms, known_key),
            LedgerCommand::CancelOrder { user, order_id } => self.cancel_order(*user, *order_id),
            LedgerCommand::ApplyMatching { sequence, events } => self.apply_matching(*sequence, events, at_ms),
        }
    }

    fn create_asset(&mut self, spec: &AssetSpec) -> Result<Outcome, LedgerError> {
        let symbol_ok =
            !spec.symbol.is_empty() && spec.symbol.len() <= SYMBOL_BYTES_MAX && spec.symbol.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !symbol_ok {
            return Err(LedgerError::BadInput("an asset symbol is 1 to 16 characters A-Z and 0-9".into()));
        }
        if spec.scale > SCALE_MAX {
            return Err(LedgerError::BadInput("an asset's scale is 0 to 18".into()));
        }
        if self.assets.contains_key(&spec.id) || self.assets.values().any(|a| a.symbol == spec.symbol) {
            return Err(LedgerError::AssetExists(spec.id));
        }
        if self.assets.len() >= self.limits.assets_max as usize {
            return Err(LedgerError::LimitReached("assets_max".into()));
        }
        self.assets.insert(spec.id, spec.clone());
        self.changes.assets.push(spec.clone());
        Ok(Outcome::AssetCreated(spec.id))
    }

    fn create_market(&mut self, market: &LedgerMarket) -> Result<Outcome, LedgerError> {
        for asset in [market.base, market.quote] {
            if !self.assets.contains_key(&asset) {
                return Err(LedgerError::UnknownAsset(asset));
            }
        }
        if market.base == market.quote {
            return Err(LedgerError::BadInput("a market's base and quote differ".into()));
        }
        if market.base_units_per_lot == 0 || market.spec.validate().is_err() {
            return Err(LedgerError::BadInput("the market's tick, lot, fee rates or bounds are out of range".into()));
        }
        if self.markets.contains_key(&market.id()) {
            return Err(LedgerError::MarketExists(market.id()));
        }
        if market.id() >= self.limits.markets_max {
            return Err(LedgerError::LimitReached("markets_max".into()));
        }
        self.markets.insert(market.id(), *market);
        self.changes.markets.push(*market);
        Ok(Outcome::MarketCreated(market.id()))
    }

    /// Looks up an idempotency key with the request's fields: a replay (the
    /// first result), a new key (with the fingerprint to remember), or
    /// `Err(Duplicate)`, the key reused with other fields.
    fn idempotent(&self, key: &Digest, fields: &[&[u8]]) -> Result<Idempotent, LedgerError> {
        let fingerprint = fingerprint(fields);
        match self.idempotency.get(key) {
            None => Ok(Idempotent::New(fingerprint)),
            // Stores written before fingerprints were XXH3 hold blake3 ones
            // (digest() of the same fields); only a mismatch pays for it.
            Some(entry) if entry.fingerprint == fingerprint || entry.fingerprint == digest(fields) => Ok(Idempotent::Replay(entry.recorded)),
            Some(_) => Err(LedgerError::Duplicate),
        }
    }

    fn remember(&mut self, key: Digest, fingerprint: Digest, recorded: Recorded) {
        let entry = IdempotencyEntry { fingerprint, recorded };
        self.idempotency.insert(key, entry);
        self.changes.idempotency.push((key, entry));
    }

    fn known_asset(&self, asset: AssetId) -> Result<(), LedgerError> {
        if self.assets.contains_key(&asset) {
            Ok(())
        } else {
            Err(LedgerError::UnknownAsset(asset))
        }
    }

    fn available(&self, user: UserId, asset: AssetId) -> Amount {
        self.balance(user, asset).available
    }

    fn require_available(&self, user: UserId, asset: AssetId, needed: Amount) -> Result<(), LedgerError> {
        let available = self.available(user, asset);
        if available < needed {
            return Err(LedgerError::InsufficientFunds { needed, available });
        }
        Ok(())
    }

    fn account_mut(&mut self, account: Account) -> &mut Amount {
        match account {
            Account::Available(user, asset) => {
                self.changes.balances.insert((user, asset));
                &mut self.balances.entry((user, asset)).or_default().available
            }
            Account::Locked(user, asset) => {
                self.changes.balances.insert((user, asset));
                &mut self.balances.entry((user, asset)).or_default().locked
            }
            Account::Custody(asset) => {
                self.changes.system.insert(asset);
                &mut self.system.entry(asset).or_default()[SYSTEM_CUSTODY]
            }
            Account::Fees(asset) => {
                self.changes.system.insert(asset);
                &mut self.system.entry(asset).or_default()[SYSTEM_FEES]
            }
            Account::PendingWithdrawals(asset) => {
                self.changes.system.insert(asset);
                &mut self.system.entry(asset).or_default()[SYSTEM_PENDING]
            }
        }
    }

    /// Moves `amount` and records the leg. Callers have checked every
    /// precondition; a user account going negative here is a bug.
    fn post(&mut self, debit: Account, credit: Account, amount: Amount, kind: TransferKind, reference: CompactString, at_ms: TimestampMs) -> TransferId {
        debug_assert_eq!(debit.asset(), credit.asset());
        assert!(amount > 0, "a transfer moves a positive amount");
        let debited = self.account_mut(debit);
        *debited -= amount;
        let after = *debited;
        assert!(after >= 0 || debit.user().is_none(), "{debit:?} went negative: a precondition was not checked");
        *self.account_mut(credit) += amount;
        let id = self.counters.next_transfer;
        self.counters.next_transfer += 1;
        self.changes.transfers.push(Transfer { id, debit, credit, asset: debit.asset(), amount, kind, reference, at_ms });
        id
    }

    fn deposit(
        &mut self,
        user: UserId,
        asset: AssetId,
        amount: Amount,
        reference: &str,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> Result<Outcome, LedgerError> {
        check_key(reference)?;
        let key = known_key.unwrap_or_else(|| deposit_key(asset, reference));
        let fingerprint = match self.idempotent(&key, &[&user.to_le_bytes(), &amount.to_le_bytes()])? {
            Idempotent::Replay(recorded) => return Ok(Outcome::Replayed(recorded)),
            Idempotent::New(fingerprint) => fingerprint,
        };
        self.known_asset(asset)?;
        check_amount(amount)?;
        let id = self.post(Account::Custody(asset), Account::Available(user, asset), amount, TransferKind::Deposit, reference.into(), at_ms);
        self.remember(key, fingerprint, Recorded::Deposit(id));
        Ok(Outcome::Deposited(id))
    }

    #[allow(clippy::too_many_arguments)]
    fn transfer_between_users(
        &mut self,
        from: UserId,
        to: UserId,
        asset: AssetId,
        amount: Amount,
        key: &str,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> Result<Outcome, LedgerError> {
        check_key(key)?;
        let digest_key = known_key.unwrap_or_else(|| transfer_key(from, key));
        let fingerprint = match self.idempotent(&digest_key, &[&to.to_le_bytes(), &asset.to_le_bytes(), &amount.to_le_bytes()])? {
            Idempotent::Replay(recorded) => return Ok(Outcome::Replayed(recorded)),
            Idempotent::New(fingerprint) => fingerprint,
        };
        self.known_asset(asset)?;
        check_amount(amount)?;
        if from == to {
            return Err(LedgerError::BadInput("a transfer needs two different users".into()));
        }
        self.require_available(from, asset, amount)?;
        let id = self.post(Account::Available(from, asset), Account::Available(to, asset), amount, TransferKind::Transfer, key.into(), at_ms);
        self.remember(digest_key, fingerprint, Recorded::Transfer(id));
        Ok(Outcome::Transferred(id))
    }

    #[allow(clippy::too_many_arguments)]
    fn request_withdrawal(
        &mut self,
        user: UserId,
        asset: AssetId,
        amount: Amount,
        destination: &str,
        key: &str,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> Result<Outcome, LedgerError> {
        check_key(key)?;
        let digest_key = known_key.unwrap_or_else(|| withdrawal_key(user, key));
        let fingerprint = match self.idempotent(&digest_key, &[&asset.to_le_bytes(), &amount.to_le_bytes(), destination.as_bytes()])? {
            Idempotent::Replay(recorded) => return Ok(Outcome::Replayed(recorded)),
            Idempotent::New(fingerprint) => fingerprint,
        };
        self.known_asset(asset)?;
        check_amount(amount)?;
        if destination.is_empty() || destination.len() > DESTINATION_BYTES_MAX {
            return Err(LedgerError::BadInput("a destination is 1 to 256 bytes".into()));
        }
        if self.withdrawals.len() >= self.limits.pending_withdrawals_max as usize {
            return Err(LedgerError::LimitReached("pending_withdrawals_max".into()));
        }
        self.require_available(user, asset, amount)?;
        let id = self.counters.next_withdrawal;
        self.counters.next_withdrawal += 1;
        self.post(
            Account::Available(user, asset),
            Account::PendingWithdrawals(asset),
            amount,
            TransferKind::WithdrawalRequest,
            format_compact!("withdrawal:{id}"),
            at_ms,
        );
        let withdrawal = Withdrawal {
            id,
            user,
            asset,
            amount,
            destination: destination.to_string(),
            status: WithdrawalStatus::Pending,
            created_ms: at_ms,
            updated_ms: at_ms,
        };
        self.changes.withdrawals.push(withdrawal.clone());
        self.withdrawals.insert(id, withdrawal);
        self.remember(digest_key, fingerprint, Recorded::Withdrawal(id));
        Ok(Outcome::WithdrawalRequested(id))
    }

    fn decide_withdrawal(&mut self, id: WithdrawalId, approve: bool, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let Some(withdrawal) = self.withdrawals.remove(&id) else {
            return Err(LedgerError::NotFound);
        };
        let (user, asset, amount) = (withdrawal.user, withdrawal.asset, withdrawal.amount);
        let reference = format_compact!("withdrawal:{id}");
        let status = if approve {
            self.post(Account::PendingWithdrawals(asset), Account::Custody(asset), amount, TransferKind::WithdrawalApproval, reference, at_ms);
            WithdrawalStatus::Approved
        } else {
            self.post(Account::PendingWithdrawals(asset), Account::Available(user, asset), amount, TransferKind::WithdrawalRejection, reference, at_ms);
            WithdrawalStatus::Rejected
        };
        self.changes.withdrawals.push(Withdrawal { status, updated_ms: at_ms, ..withdrawal });
        Ok(Outcome::WithdrawalDecided(id))
    }

    fn place_order(
        &mut self,
        user: UserId,
        request: &OrderRequest,
        client_order_id: Option<&str>,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> Result<Outcome, LedgerError> {
        let idempotency = match client_order_id {
            Some(client_order_id) => {
                check_key(client_order_id)?;
                let key = known_key.unwrap_or_else(|| order_key(user, client_order_id));
                let fingerprint = match self.idempotent(&key, &[&postcard::to_stdvec(request).expect("encoding into a vector cannot fail")])? {
                    Idempotent::Replay(recorded) => return Ok(Outcome::Replayed(recorded)),
                    Idempotent::New(fingerprint) => fingerprint,
                };
                Some((key, fingerprint))
            }
            None => None,
        };
        let market = *self.markets.get(&request.market).ok_or(LedgerError::UnknownMarket(request.market))?;
        if request.kind == OrderKind::Market && request.side == Side::Buy && request.price.is_none() {
            return Err(LedgerError::BadInput("a MARKET buy needs a protection price to size its hold".into()));
        }
        let order_id = self.counters.next_order;
        let order = NewOrder {
            market: request.market,
            order_id,
            user,
            side: request.side,
            kind: request.kind,
            time_in_force: request.time_in_force,
            post_only: request.post_only,
            price: request.price,
            quantity: request.quantity,
            self_trade: request.self_trade,
        };
        // The same checks matching applies, so that a hold is never taken for an order it would refuse outright.
        matching_core::rules::check_new_order(&market.spec, &order).map_err(|code| LedgerError::BadInput(reject_text(code).into()))?;
        let user_orders = self.open_orders_by_user.get(&user).copied().unwrap_or(0);
        if user_orders >= self.limits.open_orders_per_user_max {
            return Err(LedgerError::LimitReached("open_orders_per_user_max".into()));
        }
        if self.orders.len() >= self.limits.open_orders_max as usize {
            return Err(LedgerError::LimitReached("open_orders_max".into()));
        }
        let (hold_asset, hold) = match request.side {
            Side::Buy => (market.quote, market.buy_hold(request.price.expect("checked above"), request.quantity)),
            Side::Sell => (market.base, market.base_amount(request.quantity)),
        };
        self.require_available(user, hold_asset, hold)?;
        self.counters.next_order += 1;
        self.post(
            Account::Available(user, hold_asset),
            Account::Locked(user, hold_asset),
            hold,
            TransferKind::Hold,
            format_compact!("order:{order_id}"),
            at_ms,
        );
        let record = OrderRecord {
            order,
            client_order_id: client_order_id.map(str::to_string),
            status: OrderStatus::Pending,
            filled: 0,
            filled_notional: 0,
            fees_paid: 0,
            hold_remaining: hold,
            hold_asset,
            reject_reason: None,
            created_ms: at_ms,
            updated_ms: at_ms,
        };
        self.orders.insert(order_id, record);
        *self.open_orders_by_user.entry(user).or_default() += 1;
        self.changes.orders.insert(order_id);
        if let Some((key, fingerprint)) = idempotency {
            self.remember(key, fingerprint, Recorded::Order(order_id));
        }
        Ok(Outcome::OrderPlaced { order_id, forward: Command::Place(order) })
    }

    fn cancel_order(&mut self, user: UserId, order_id: OrderId) -> Result<Outcome, LedgerError> {
        match self.orders.get(&order_id) {
            // Another user's order answers as if it did not exist.
            Some(record) if record.order.user == user => {
                Ok(Outcome::CancelRequested { forward: Command::Cancel { market: record.order.market, order_id, user } })
            }
            _ => Err(LedgerError::NotFound),
        }
    }

    fn apply_matching(&mut self, sequence: u64, events: &[Event], at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let expected = self.counters.matching_applied + 1;
        if sequence < expected {
            return Ok(Outcome::MatchingApplied { orders: Vec::new() }); // applied before: exactly once
        }
        if sequence != expected {
            return Err(LedgerError::OutOfSequence { expected, got: sequence });
        }
        self.counters.matching_applied = sequence;
        let mut touched = Vec::new();
        for event in events {
            match *event {
                Event::Accepted { order_id, .. } => {
                    if let Some(record) = self.orders.get_mut(&order_id) {
                        if record.status == OrderStatus::Pending {
                            record.status = OrderStatus::Open;
                            record.updated_ms = at_ms;
                            // Storage and subscribers must see it open, not still pending.
                            self.changes.orders.insert(order_id);
                            touched.push(order_id);
                        }
                    }
                }
                Event::Fill(fill) => {
                    self.settle(&fill, at_ms);
                    touched.extend([fill.maker_order, fill.taker_order]);
                }
                Event::Cancelled { order_id, .. } => {
                    self.close_order(order_id, OrderStatus::Cancelled, None, at_ms);
                    touched.push(order_id);
                }
                Event::Done { order_id, .. } => {
                    self.close_order(order_id, OrderStatus::Filled, None, at_ms);
                    touched.push(order_id);
                }
                Event::Rejected { order_id, code, .. } => {
                    // A refused cancel leaves the order as it is; a refused order releases its hold.
                    if matches!(self.orders.get(&order_id), Some(r) if r.status == OrderStatus::Pending) {
                        self.close_order(order_id, OrderStatus::Rejected, Some(reject_text(code).to_string()), at_ms);
                        touched.push(order_id);
                    }
                }
                Event::Amended { .. } | Event::MarketAdded { .. } | Event::MarketRejected { .. } | Event::TradingSet { .. } => {}
            }
        }
        touched.dedup();
        Ok(Outcome::MatchingApplied { orders: touched })
    }

    /// Four legs at most: buyer's quote to the seller, the buyer's fee, the
    /// seller's fee out of the proceeds, seller's base to the buyer.
    fn settle(&mut self, fill: &Fill, at_ms: TimestampMs) {
        let (Some(maker), Some(taker)) = (self.orders.get(&fill.maker_order), self.orders.get(&fill.taker_order)) else {
            panic!("matching filled an order the ledger does not hold: {fill:?}");
        };
        let market = *self.markets.get(&maker.order.market).expect("an order's market exists");
        let (maker_user, taker_user) = (maker.order.user, taker.order.user);
        let (buyer_order, seller_order, buyer, seller, buyer_fee, seller_fee) = match fill.taker_side {
            Side::Buy => (fill.taker_order, fill.maker_order, taker_user, maker_user, fill.taker_fee, fill.maker_fee),
            Side::Sell => (fill.maker_order, fill.taker_order, maker_user, taker_user, fill.maker_fee, fill.taker_fee),
        };
        let (notional, buyer_fee, seller_fee) = (fill.notional as Amount, buyer_fee as Amount, seller_fee as Amount);
        let base = market.base_amount(fill.quantity);
        let trade_id = self.counters.next_trade;
        self.counters.next_trade += 1;
        let reference = format_compact!("trade:{trade_id}");
        let (quote_asset, base_asset) = (market.quote, market.base);
        self.post(Account::Locked(buyer, quote_asset), Account::Available(seller, quote_asset), notional, TransferKind::Trade, reference.clone(), at_ms);
        if buyer_fee > 0 {
            self.post(Account::Locked(buyer, quote_asset), Account::Fees(quote_asset), buyer_fee, TransferKind::Fee, reference.clone(), at_ms);
        }
        if seller_fee > 0 {
            self.post(Account::Available(seller, quote_asset), Account::Fees(quote_asset), seller_fee, TransferKind::Fee, reference.clone(), at_ms);
        }
        self.post(Account::Locked(seller, base_asset), Account::Available(buyer, base_asset), base, TransferKind::Trade, reference, at_ms);
        for (order_id, consumed, fee) in [(buyer_order, notional + buyer_fee, buyer_fee), (seller_order, base, seller_fee)] {
            let record = self.orders.get_mut(&order_id).expect("looked up above");
            record.hold_remaining -= consumed;
            assert!(record.hold_remaining >= 0, "order {order_id} spent more than its hold: {fill:?}");
            record.filled += fill.quantity;
            record.filled_notional += fill.notional;
            record.fees_paid += fee;
            record.status = OrderStatus::PartiallyFilled;
            record.updated_ms = at_ms;
            self.changes.orders.insert(order_id);
        }
        self.changes.trades.push(TradeRecord { id: trade_id, fill: *fill, buyer_fee, seller_fee, at_ms });
    }

    /// Releases what is left of the hold and moves the order out of memory.
    fn close_order(&mut self, order_id: OrderId, status: OrderStatus, reason: Option<String>, at_ms: TimestampMs) {
        let Some(mut record) = self.orders.remove(&order_id) else { return };
        if record.hold_remaining > 0 {
            let (user, asset) = (record.order.user, record.hold_asset);
            self.post(
                Account::Locked(user, asset),
                Account::Available(user, asset),
                record.hold_remaining,
                TransferKind::Release,
                format_compact!("order:{order_id}"),
                at_ms,
            );
            record.hold_remaining = 0;
        }
        record.status = status;
        record.reject_reason = reason;
        record.updated_ms = at_ms;
        let user = record.order.user;
        let count = self.open_orders_by_user.get_mut(&user).expect("an open order's user is counted");
        *count -= 1;
        if *count == 0 {
            self.open_orders_by_user.remove(&user);
        }
        self.changes.orders.remove(&order_id);
        self.changes.closed_orders.push(record);
    }

    /// Every invariant, over the whole state. Tests run it after every
    /// command; the daemon at start-up and after every batch.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut sums: BTreeMap<AssetId, Amount> = BTreeMap::new();
        for (&(user, asset), balance) in &self.balances {
            if balance.available < 0 || balance.locked < 0 {
                return Err(format!("user {user} asset {asset} is negative: {balance:?}"));
            }
            *sums.entry(asset).or_default() += balance.available + balance.locked;
        }
        for (&asset, system) in &self.system {
            *sums.entry(asset).or_default() += system.iter().sum::<Amount>();
            if system[SYSTEM_FEES] < 0 || system[SYSTEM_PENDING] < 0 {
                return Err(format!("asset {asset}: fee or pending-withdrawal account negative: {system:?}"));
            }
        }
        if let Some((asset, sum)) = sums.iter().find(|(_, sum)| **sum != 0) {
            return Err(format!("asset {asset}: accounts sum to {sum}, not zero"));
        }
        let mut holds: FxHashMap<(UserId, AssetId), Amount> = FxHashMap::default();
        for record in self.orders.values() {
            *holds.entry((record.order.user, record.hold_asset)).or_default() += record.hold_remaining;
        }
        for (&(user, asset), balance) in &self.balances {
            let held = holds.get(&(user, asset)).copied().unwrap_or(0);
            if balance.locked != held {
                return Err(format!("user {user} asset {asset}: LOCKED {} but open holds sum to {held}", balance.locked));
            }
        }
        if let Some(key) = holds.keys().find(|k| !self.balances.contains_key(k)) {
            return Err(format!("holds for {key:?} without a balance"));
        }
        let pending: BTreeMap<AssetId, Amount> = self.withdrawals.values().fold(BTreeMap::new(), |mut m, w| {
            *m.entry(w.asset).or_default() += w.amount;
            m
        });
        for (&asset, system) in &self.system {
            if system[SYSTEM_PENDING] != pending.get(&asset).copied().unwrap_or(0) {
                return Err(format!("asset {asset}: pending-withdrawal account differs from the pending withdrawals"));
            }
        }
        Ok(())
    }
}

fn reject_text(code: RejectCode) -> &'static str {
    match code {
        RejectCode::InvalidPrice => "INVALID_PRICE",
        RejectCode::InvalidQuantity => "INVALID_QUANTITY",
        RejectCode::InvalidOrder => "INVALID_ORDER",
        RejectCode::PostOnlyWouldTake => "POST_ONLY_WOULD_TAKE",
        RejectCode::MarketClosed => "MARKET_CLOSED",
        RejectCode::UnknownMarket => "UNKNOWN_MARKET",
        RejectCode::DuplicateOrderId => "DUPLICATE_ORDER_ID",
        RejectCode::UnknownOrder => "UNKNOWN_ORDER",
        RejectCode::BookFull => "BOOK_FULL",
        RejectCode::UserOrderLimit => "USER_ORDER_LIMIT",
        RejectCode::PriceLevelLimit => "PRICE_LEVEL_LIMIT",
        RejectCode::MarketExists | RejectCode::MarketLimit | RejectCode::InvalidMarketSpec => "INVALID_MARKET",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored idempotency records hold these digests: framing in one buffer
    /// must give exactly what streaming the framed parts gives, on both sides
    /// of the stack buffer.
    #[test]
    fn one_call_digests_equal_streamed_ones() {
        for key_bytes in [0, 1, 12, 36, 63, 64, 65, 119, 120, 121, 128, 300] {
            let key = "k".repeat(key_bytes);
            let parts: [&[u8]; 3] = [b"transfer", &7u64.to_le_bytes(), key.as_bytes()];
            let mut streamed = blake3::Hasher::new();
            let mut streamed_fingerprint = xxhash_rust::xxh3::Xxh3::new();
            for part in parts {
                streamed.update(&(part.len() as u64).to_le_bytes()).update(part);
                streamed_fingerprint.update(&(part.len() as u64).to_le_bytes());
                streamed_fingerprint.update(part);
            }
            assert_eq!(digest(&parts)[..], streamed.finalize().as_bytes()[..16], "key of {key_bytes} bytes");
            assert_eq!(fingerprint(&parts), streamed_fingerprint.digest128().to_le_bytes(), "key of {key_bytes} bytes");
            assert_ne!(digest(&parts), fingerprint(&parts));
        }
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]), "the lengths keep the parts apart");
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]), "the lengths keep the parts apart");
    }

    /// A store written when fingerprints were blake3 (before XXH3) still
    /// answers replays, and still refuses reuses, without a migration.
    #[test]
    fn blake3_fingerprints_of_earlier_stores_still_tell_replays_from_reuses() {
        let mut ledger = Ledger::new(LedgerLimits::default());
        ledger.apply(&LedgerCommand::CreateAsset(AssetSpec { id: 1, symbol: "USD".into(), scale: 2 }), 0).unwrap();
        ledger.apply(&LedgerCommand::Deposit { user: 1, asset: 1, amount: 1_000, reference: "opening".into() }, 0).unwrap();
        let transfer = LedgerCommand::Transfer { from: 1, to: 2, asset: 1, amount: 10, key: "k".into() };
        let Ok(Outcome::Transferred(id)) = ledger.apply(&transfer, 0) else { panic!("the transfer applies") };
        // The state as an earlier build stored it.
        let mut state = ledger.state();
        let fields: [&[u8]; 3] = [&2u64.to_le_bytes(), &1u32.to_le_bytes(), &10i128.to_le_bytes()];
        let entry = state.idempotency.get_mut(&digest(&[b"transfer", &1u64.to_le_bytes(), b"k"])).expect("the transfer's key");
        assert_eq!(entry.fingerprint, fingerprint(&fields));
        entry.fingerprint = digest(&fields);
        let mut restored = Ledger::restore(LedgerLimits::default(), state);
        assert_eq!(restored.apply(&transfer, 1), Ok(Outcome::Replayed(Recorded::Transfer(id))));
        let reused = LedgerCommand::Transfer { from: 1, to: 2, asset: 1, amount: 11, key: "k".into() };
        assert_eq!(restored.apply(&reused, 1), Err(LedgerError::Duplicate));
        assert_eq!(restored.balance(1, 1).available, 990, "neither moved money");
        assert_eq!(restored.balance(2, 1).available, 10);
    }
}
