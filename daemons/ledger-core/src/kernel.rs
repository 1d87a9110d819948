//! The money kernel: assets, accounts, transfers, holds and idempotency keys.
//!
//! Every balance change is a [`Transfer`] from one account to another of
//! the same asset, so per asset the accounts sum to zero by construction;
//! [`Kernel::check_invariants`] verifies it with the rest. Every operation
//! validates all it will do before it moves anything: an `Err` changed
//! nothing.
//!
//! Memory holds what the next command may need: the assets, the balance
//! of every account that has had one, the open holds and the idempotency keys. Transfers leave
//! through [`KernelChanges`], which the daemon writes to storage with the
//! rest of the batch.

use std::collections::BTreeMap;

use compact_str::CompactString;
use ids::{Amount, AssetId, TimestampMs, TransferId, UserId};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::account::{AccountId, PackedAccount, Purposes};
use crate::idempotency::{fingerprint, Digest, IdempotencyEntry, IdempotencyTable, Recorded};

pub const SYMBOL_BYTES_MAX: usize = 16;
pub const SCALE_MAX: u8 = 18;
/// Idempotency keys and references: a client's text, bounded.
pub const KEY_BYTES_MAX: usize = 128;

/// What a transfer was for: a code its product declared (a deposit, a
/// trade, a fee). The kernel only carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TransferCode(pub u16);

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AssetSpec {
    pub id: AssetId,
    pub symbol: String,
    /// Minor units per whole unit are 10^scale.
    pub scale: u8,
}

/// One movement of money: `amount` leaves `debit` and arrives in `credit`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transfer {
    pub id: TransferId,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Amount,
    pub code: TransferCode,
    /// What caused it (a deposit reference, an order, a trade), inline up
    /// to 24 bytes: a settlement's legs share one.
    pub reference: CompactString,
    pub at_ms: TimestampMs,
}

impl Transfer {
    pub fn asset(&self) -> AssetId {
        self.debit.asset
    }
}

/// A hold's id: a kind its product declared and the id of what it holds for
/// (an order, a withdrawal, a subscription).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HoldId {
    pub kind: u8,
    pub id: u64,
}

/// Money set aside: it moved from `origin` into `held` (an account of a
/// holds-only purpose) and waits there to be captured, in parts and for any
/// receivers, or released back to `origin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hold {
    pub origin: AccountId,
    pub held: AccountId,
    /// Still held: what was held less what was captured.
    pub remaining: Amount,
}

/// One transfer to make: `amount` from `debit` to `credit`, for `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Amount,
    pub code: TransferCode,
}

/// One receiver's part of a capture: `amount` out of the hold to `credit`, for `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payout {
    pub credit: AccountId,
    pub amount: Amount,
    pub code: TransferCode,
}

/// Why the kernel refused. Nothing changed when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("unknown asset {0}")]
    UnknownAsset(AssetId),
    #[error("asset {0} already exists")]
    AssetExists(AssetId),
    #[error("{0}")]
    BadInput(&'static str),
    #[error("insufficient funds: {needed} needed, {available} available")]
    InsufficientFunds { needed: Amount, available: Amount },
    #[error("this idempotency key was used before with different fields")]
    Duplicate,
    #[error("no open hold {0:?}")]
    UnknownHold(HoldId),
    #[error("hold {0:?} exists")]
    HoldExists(HoldId),
    #[error("a capture of {wanted} from a hold of {remaining}")]
    HoldExceeded { remaining: Amount, wanted: Amount },
    #[error("a configured limit was reached ({0})")]
    LimitReached(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelLimits {
    pub assets_max: u32,
    /// Idempotency keys the kernel makes room for at start (see
    /// [`IdempotencyTable::with_capacity`]): not a limit.
    pub idempotency_keys_reserved: u32,
}

/// Everything the kernel holds, in canonical order: the storage writes it
/// piecewise and restores it whole; products add theirs for the state hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelState {
    pub assets: BTreeMap<AssetId, AssetSpec>,
    /// Every nonzero balance.
    pub balances: BTreeMap<AccountId, Amount>,
    pub holds: BTreeMap<HoldId, Hold>,
    pub idempotency: BTreeMap<Digest, IdempotencyEntry>,
    pub next_transfer: TransferId,
}

/// What the kernel's operations changed since the last [`Kernel::take_changes`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelChanges {
    pub assets: Vec<AssetSpec>,
    /// Accounts whose balance changed (both sides of every transfer), each once.
    pub accounts: Vec<AccountId>,
    pub transfers: Vec<Transfer>,
    /// Holds opened, changed or closed (closed ones are gone from the kernel).
    pub holds: FxHashSet<HoldId>,
    pub idempotency: Vec<(Digest, IdempotencyEntry)>,
}

impl KernelChanges {
    /// Empties every collection and keeps its memory.
    pub fn clear(&mut self) {
        let KernelChanges { assets, accounts, transfers, holds, idempotency } = self;
        assets.clear();
        accounts.clear();
        transfers.clear();
        holds.clear();
        idempotency.clear();
    }
}

/// What an idempotency key says about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotent {
    /// Seen before with the same fields: what the first one made.
    Replay(Recorded),
    /// A new key: the fingerprint to remember with it.
    New(Digest),
}

/// An account's balance and the batch of changes that last changed it: an
/// account joins [`KernelChanges::accounts`] once per batch, found by the
/// lookup that moves its money rather than by one more in a set (two set
/// lookups were a fifth of a transfer's instructions, most of them hits on
/// the same few busy accounts). Packed to 8-byte alignment: an `i128`'s 16
/// would pad it to 32 bytes and each entry of the balances to 48.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed(8))]
struct Balance {
    amount: Amount,
    changed_in: u64,
}

impl Balance {
    /// Moves `delta` and lists `account` among `changes` if it is the first move in batch `batch`.
    #[inline]
    fn change(&mut self, account: AccountId, delta: Amount, batch: u64, changes: &mut KernelChanges, holders: &mut Holders) {
        let before = self.amount;
        self.amount += delta;
        holders.note(account, before, self.amount);
        if self.changed_in != batch {
            self.changed_in = batch;
            changes.accounts.push(account);
        }
    }
}

/// The users who hold each asset a product asked the kernel to follow
/// ([`Kernel::follow_holders`]): a token's holders, which its rules count
/// and its cap table lists. Kept as balances cross zero, so that nothing
/// scans every account to count them; derived from the balances, so not
/// part of the state.
#[derive(Default)]
struct Holders {
    /// Per followed asset, each holder's accounts of it that are not zero.
    by_asset: FxHashMap<AssetId, BTreeMap<UserId, u32>>,
}

impl Holders {
    #[inline]
    fn note(&mut self, account: AccountId, before: Amount, after: Amount) {
        if (before == 0) == (after == 0) || self.by_asset.is_empty() {
            return;
        }
        self.note_crossing(account, after != 0);
    }

    #[cold]
    fn note_crossing(&mut self, account: AccountId, nonzero: bool) {
        let (Some(user), Some(holders)) = (account.user_id(), self.by_asset.get_mut(&account.asset)) else { return };
        if nonzero {
            *holders.entry(user).or_insert(0) += 1;
        } else if let Some(accounts) = holders.get_mut(&user) {
            *accounts -= 1;
            if *accounts == 0 {
                holders.remove(&user);
            }
        }
    }
}

// What the packing is for (see `PackedAccount`): an entry of the balances in 40 bytes.
const _: () = assert!(std::mem::size_of::<(PackedAccount, Balance)>() == 40);

pub struct Kernel {
    purposes: Purposes,
    limits: KernelLimits,
    assets: FxHashMap<AssetId, AssetSpec>,
    balances: FxHashMap<PackedAccount, Balance>,
    holds: FxHashMap<HoldId, Hold>,
    idempotency: IdempotencyTable,
    next_transfer: TransferId,
    changes: KernelChanges,
    holders: Holders,
    /// The batch of `changes`: [`Kernel::take_changes`] starts the next. Balances restored are of batch 0.
    batch: u64,
}

pub fn check_key(key: &str) -> Result<(), KernelError> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(KernelError::BadInput("an idempotency key or reference must be 1 to 128 bytes"));
    }
    Ok(())
}

fn check_amount(amount: Amount) -> Result<(), KernelError> {
    if amount <= 0 {
        return Err(KernelError::BadInput("amount must be positive"));
    }
    Ok(())
}

impl Kernel {
    pub fn new(purposes: Purposes, limits: KernelLimits) -> Kernel {
        Kernel::restore(purposes, limits, KernelState { next_transfer: 1, ..KernelState::default() })
    }

    pub fn restore(purposes: Purposes, limits: KernelLimits, state: KernelState) -> Kernel {
        let mut idempotency = IdempotencyTable::with_capacity(state.idempotency.len().max(limits.idempotency_keys_reserved as usize));
        idempotency.extend(state.idempotency);
        Kernel {
            purposes,
            limits,
            assets: state.assets.into_iter().collect(),
            balances: state.balances.into_iter().map(|(account, amount)| (account.into(), Balance { amount, changed_in: 0 })).collect(),
            holds: state.holds.into_iter().collect(),
            idempotency,
            next_transfer: state.next_transfer,
            changes: KernelChanges::default(),
            holders: Holders::default(),
            batch: 1,
        }
    }

    pub fn state(&self) -> KernelState {
        KernelState {
            assets: self.assets.iter().map(|(id, spec)| (*id, spec.clone())).collect(),
            balances: self.balances.iter().filter(|(_, balance)| balance.amount != 0).map(|(account, balance)| ((*account).into(), balance.amount)).collect(),
            holds: self.holds.iter().map(|(id, hold)| (*id, *hold)).collect(),
            idempotency: self.idempotency.iter().collect(),
            next_transfer: self.next_transfer,
        }
    }

    pub fn purposes(&self) -> &Purposes {
        &self.purposes
    }

    /// See [`IdempotencyTable::touch_pages`]; the daemon does it at start.
    pub fn touch_reserved(&mut self) -> usize {
        self.idempotency.touch_pages()
    }

    pub fn take_changes(&mut self) -> KernelChanges {
        self.batch += 1;
        std::mem::take(&mut self.changes)
    }

    /// Hands back taken changes once written: emptied, they collect the
    /// next batch's, which then grows no set or vector from nothing.
    pub fn recycle(&mut self, mut changes: KernelChanges) {
        changes.clear();
        if self.changes == KernelChanges::default() {
            self.changes = changes;
        }
    }

    pub fn next_transfer(&self) -> TransferId {
        self.next_transfer
    }

    // ---- assets ----

    pub fn create_asset(&mut self, spec: &AssetSpec) -> Result<(), KernelError> {
        let symbol_ok =
            !spec.symbol.is_empty() && spec.symbol.len() <= SYMBOL_BYTES_MAX && spec.symbol.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !symbol_ok {
            return Err(KernelError::BadInput("an asset symbol is 1 to 16 characters A-Z and 0-9"));
        }
        if spec.scale > SCALE_MAX {
            return Err(KernelError::BadInput("an asset's scale is 0 to 18"));
        }
        if self.assets.contains_key(&spec.id) || self.assets.values().any(|a| a.symbol == spec.symbol) {
            return Err(KernelError::AssetExists(spec.id));
        }
        if self.assets.len() >= self.limits.assets_max as usize {
            return Err(KernelError::LimitReached("assets_max"));
        }
        self.assets.insert(spec.id, spec.clone());
        self.changes.assets.push(spec.clone());
        Ok(())
    }

    pub fn asset(&self, id: AssetId) -> Option<&AssetSpec> {
        self.assets.get(&id)
    }

    /// Every asset, in no order.
    pub fn assets(&self) -> impl Iterator<Item = &AssetSpec> {
        self.assets.values()
    }

    /// Follows who holds `asset` from now on (see [`Self::holders`]):
    /// found once from the balances, then kept as they move. A product
    /// asks for the assets it needs counted (a token), at creation and at
    /// every restore; asking again changes nothing.
    pub fn follow_holders(&mut self, asset: AssetId) {
        if self.holders.by_asset.contains_key(&asset) {
            return;
        }
        let mut holders: BTreeMap<UserId, u32> = BTreeMap::new();
        for (packed, balance) in &self.balances {
            let account = AccountId::from(*packed);
            if let (true, true, Some(user)) = (account.asset == asset, balance.amount != 0, account.user_id()) {
                *holders.entry(user).or_insert(0) += 1;
            }
        }
        self.holders.by_asset.insert(asset, holders);
    }

    /// The users with a balance of a followed asset in any of their
    /// accounts, in id order; None for an asset not followed.
    pub fn holders(&self, asset: AssetId) -> Option<impl ExactSizeIterator<Item = UserId> + '_> {
        self.holders.by_asset.get(&asset).map(|holders| holders.keys().copied())
    }

    pub fn is_holder(&self, asset: AssetId, user: UserId) -> bool {
        self.holders.by_asset.get(&asset).is_some_and(|holders| holders.contains_key(&user))
    }

    pub fn known_asset(&self, id: AssetId) -> Result<(), KernelError> {
        if self.assets.contains_key(&id) {
            Ok(())
        } else {
            Err(KernelError::UnknownAsset(id))
        }
    }

    // ---- balances and transfers ----

    #[inline]
    pub fn balance(&self, account: AccountId) -> Amount {
        self.balances.get(&account.into()).map_or(0, |balance| balance.amount)
    }

    /// Checks one leg on its own: a positive amount, one known asset,
    /// declared purposes. Holds-only accounts move through holds alone.
    #[inline]
    fn check_leg(&self, leg: &Leg) -> Result<(), KernelError> {
        check_amount(leg.amount)?;
        if leg.debit.asset != leg.credit.asset {
            return Err(KernelError::BadInput("a transfer moves one asset"));
        }
        if leg.debit == leg.credit {
            return Err(KernelError::BadInput("a transfer needs two different accounts"));
        }
        self.known_asset(leg.debit.asset)?;
        for account in [leg.debit, leg.credit] {
            if !self.purposes.is_declared(account.purpose) {
                return Err(KernelError::BadInput("an account's purpose is not declared"));
            }
        }
        Ok(())
    }

    /// Whether `account` may hold `balance`.
    #[inline]
    fn allowed(&self, account: AccountId, balance: Amount) -> bool {
        balance >= 0 || self.purposes.may_go_negative(account.purpose)
    }

    /// Takes `amount` out of `account` if its purpose allows the balance
    /// that leaves: one lookup for the check and the move, which is a
    /// transfer's hottest step. Nothing changed when it refuses.
    #[inline]
    fn debit(&mut self, account: AccountId, amount: Amount) -> Result<(), KernelError> {
        let may_go_negative = self.purposes.may_go_negative(account.purpose);
        match self.balances.get_mut(&account.into()) {
            Some(balance) if balance.amount >= amount || may_go_negative => balance.change(account, -amount, self.batch, &mut self.changes, &mut self.holders),
            Some(balance) => return Err(KernelError::InsufficientFunds { needed: amount, available: balance.amount }),
            // An account never seen is not added by a refusal: no memory for failed attempts.
            None if may_go_negative => {
                self.balances.entry(account.into()).or_default().change(account, -amount, self.batch, &mut self.changes, &mut self.holders)
            }
            None => return Err(KernelError::InsufficientFunds { needed: amount, available: 0 }),
        }
        Ok(())
    }

    /// Moves `amount` into `credit`, `debit` having been debited (and listed
    /// among the changes) by [`Self::debit`], and records the transfer.
    #[inline]
    fn post_debited(
        &mut self,
        debit: AccountId,
        credit: AccountId,
        amount: Amount,
        code: TransferCode,
        reference: CompactString,
        at_ms: TimestampMs,
    ) -> TransferId {
        self.balances.entry(credit.into()).or_default().change(credit, amount, self.batch, &mut self.changes, &mut self.holders);
        let id = self.next_transfer;
        self.next_transfer += 1;
        self.changes.transfers.push(Transfer { id, debit, credit, amount, code, reference, at_ms });
        id
    }

    /// Moves `amount`; every check was made.
    #[inline]
    fn post(&mut self, debit: AccountId, credit: AccountId, amount: Amount, code: TransferCode, reference: CompactString, at_ms: TimestampMs) -> TransferId {
        self.balances.entry(debit.into()).or_default().change(debit, -amount, self.batch, &mut self.changes, &mut self.holders);
        self.post_debited(debit, credit, amount, code, reference, at_ms)
    }

    /// One transfer between two accounts that are not holds-only.
    pub fn transfer(&mut self, leg: Leg, reference: impl Into<CompactString>, at_ms: TimestampMs) -> Result<TransferId, KernelError> {
        self.check_leg(&leg)?;
        if self.purposes.holds_only(leg.debit.purpose) || self.purposes.holds_only(leg.credit.purpose) {
            return Err(KernelError::BadInput("money enters and leaves a holds-only account through holds"));
        }
        self.debit(leg.debit, leg.amount)?;
        Ok(self.post_debited(leg.debit, leg.credit, leg.amount, leg.code, reference.into(), at_ms))
    }

    /// Applies `legs` in order, all or none: each is checked against the
    /// balances the ones before it leave. Returns the first transfer's id;
    /// the others follow it.
    pub fn transfer_all(&mut self, legs: &[Leg], reference: &str, at_ms: TimestampMs) -> Result<TransferId, KernelError> {
        let mut after: Vec<(AccountId, Amount)> = Vec::with_capacity(legs.len() * 2);
        for leg in legs {
            self.check_leg(leg)?;
            if self.purposes.holds_only(leg.debit.purpose) || self.purposes.holds_only(leg.credit.purpose) {
                return Err(KernelError::BadInput("money enters and leaves a holds-only account through holds"));
            }
            let debit = self.simulate(&mut after, leg.debit, -leg.amount);
            if !self.allowed(leg.debit, debit) {
                return Err(KernelError::InsufficientFunds { needed: leg.amount, available: debit + leg.amount });
            }
            self.simulate(&mut after, leg.credit, leg.amount);
        }
        let first = self.next_transfer;
        let reference = CompactString::from(reference);
        for leg in legs {
            self.post(leg.debit, leg.credit, leg.amount, leg.code, reference.clone(), at_ms);
        }
        Ok(first)
    }

    /// `account`'s balance after `delta` and the deltas in `after` before it.
    fn simulate(&self, after: &mut Vec<(AccountId, Amount)>, account: AccountId, delta: Amount) -> Amount {
        match after.iter_mut().find(|(a, _)| *a == account) {
            Some((_, balance)) => {
                *balance += delta;
                *balance
            }
            None => {
                let balance = self.balance(account) + delta;
                after.push((account, balance));
                balance
            }
        }
    }

    // ---- holds ----

    pub fn hold_of(&self, id: HoldId) -> Option<&Hold> {
        self.holds.get(&id)
    }

    pub fn holds(&self) -> impl Iterator<Item = (&HoldId, &Hold)> {
        self.holds.iter()
    }

    /// Sets `amount` aside: from `origin` into `held`, an account of a
    /// holds-only purpose, under `id`.
    #[allow(clippy::too_many_arguments)]
    pub fn hold(
        &mut self,
        id: HoldId,
        origin: AccountId,
        held: AccountId,
        amount: Amount,
        code: TransferCode,
        reference: impl Into<CompactString>,
        at_ms: TimestampMs,
    ) -> Result<(), KernelError> {
        self.check_leg(&Leg { debit: origin, credit: held, amount, code })?;
        if !self.purposes.holds_only(held.purpose) || self.purposes.holds_only(origin.purpose) {
            return Err(KernelError::BadInput("a hold moves money into a holds-only account from another"));
        }
        if self.holds.contains_key(&id) {
            return Err(KernelError::HoldExists(id));
        }
        self.debit(origin, amount)?;
        self.post_debited(origin, held, amount, code, reference.into(), at_ms);
        self.holds.insert(id, Hold { origin, held, remaining: amount });
        self.changes.holds.insert(id);
        Ok(())
    }

    /// Pays parts of a hold out, one receiver per payout, all or none. The
    /// rest stays held. Payouts of zero are skipped.
    pub fn capture(&mut self, id: HoldId, payouts: &[Payout], reference: &str, at_ms: TimestampMs) -> Result<(), KernelError> {
        let hold = *self.holds.get(&id).ok_or(KernelError::UnknownHold(id))?;
        let mut wanted: Amount = 0;
        for payout in payouts.iter().filter(|payout| payout.amount != 0) {
            self.check_leg(&Leg { debit: hold.held, credit: payout.credit, amount: payout.amount, code: payout.code })?;
            if self.purposes.holds_only(payout.credit.purpose) {
                return Err(KernelError::BadInput("a capture pays out of the holds-only accounts"));
            }
            wanted = wanted.checked_add(payout.amount).ok_or(KernelError::BadInput("the capture's payouts overflow"))?;
        }
        if wanted > hold.remaining {
            return Err(KernelError::HoldExceeded { remaining: hold.remaining, wanted });
        }
        let reference = CompactString::from(reference);
        for payout in payouts.iter().filter(|payout| payout.amount != 0) {
            self.post(hold.held, payout.credit, payout.amount, payout.code, reference.clone(), at_ms);
        }
        self.holds.get_mut(&id).expect("looked up above").remaining -= wanted;
        self.changes.holds.insert(id);
        Ok(())
    }

    /// Sets what a hold still sets aside to `amount`: the difference comes
    /// from its origin (refused, changing nothing, when the origin lacks
    /// it) or goes back to it. An order whose terms change keeps one hold.
    pub fn resize_hold(
        &mut self,
        id: HoldId,
        amount: Amount,
        code: TransferCode,
        reference: impl Into<CompactString>,
        at_ms: TimestampMs,
    ) -> Result<(), KernelError> {
        let hold = *self.holds.get(&id).ok_or(KernelError::UnknownHold(id))?;
        if amount < 0 {
            return Err(KernelError::BadInput("a hold cannot set aside less than nothing"));
        }
        match amount.cmp(&hold.remaining) {
            std::cmp::Ordering::Equal => return Ok(()),
            std::cmp::Ordering::Greater => {
                let more = amount - hold.remaining;
                self.check_leg(&Leg { debit: hold.origin, credit: hold.held, amount: more, code })?;
                self.debit(hold.origin, more)?;
                self.post_debited(hold.origin, hold.held, more, code, reference.into(), at_ms);
            }
            std::cmp::Ordering::Less => {
                let less = hold.remaining - amount;
                self.check_leg(&Leg { debit: hold.held, credit: hold.origin, amount: less, code })?;
                self.post(hold.held, hold.origin, less, code, reference.into(), at_ms);
            }
        }
        self.holds.get_mut(&id).expect("looked up above").remaining = amount;
        self.changes.holds.insert(id);
        Ok(())
    }

    /// Closes a hold: what it still holds goes back to its origin. Returns
    /// that amount.
    pub fn release(&mut self, id: HoldId, code: TransferCode, reference: impl Into<CompactString>, at_ms: TimestampMs) -> Result<Amount, KernelError> {
        let hold = self.holds.remove(&id).ok_or(KernelError::UnknownHold(id))?;
        if hold.remaining > 0 {
            self.post(hold.held, hold.origin, hold.remaining, code, reference.into(), at_ms);
        }
        self.changes.holds.insert(id);
        Ok(hold.remaining)
    }

    // ---- idempotency ----

    /// Asks the CPU for `key`'s slot ahead of its lookup (see `Ledger::apply_all`).
    pub fn prefetch_key(&self, key: &Digest) {
        self.idempotency.prefetch(key);
    }

    /// Looks up an idempotency key with the request's fields: a replay (what
    /// the first request made), a new key (with the fingerprint to
    /// remember), or `Err(Duplicate)`, the key reused with other fields.
    /// Always inlined, for the fields' sizes: see `idempotency::framed`.
    #[inline(always)]
    pub fn idempotent(&self, key: &Digest, fields: &[&[u8]]) -> Result<Idempotent, KernelError> {
        let fingerprint = fingerprint(fields);
        match self.idempotency.get(key) {
            None => Ok(Idempotent::New(fingerprint)),
            Some(entry) if entry.fingerprint == fingerprint => Ok(Idempotent::Replay(entry.recorded)),
            Some(_) => Err(KernelError::Duplicate),
        }
    }

    /// Records what a new key's request made. A kind of zero is refused: it
    /// is how the table marks a free slot.
    pub fn remember(&mut self, key: Digest, fingerprint: Digest, recorded: Recorded) -> Result<(), KernelError> {
        if recorded.kind == 0 {
            return Err(KernelError::BadInput("an idempotency record's kind is never zero"));
        }
        let entry = IdempotencyEntry { fingerprint, recorded };
        self.idempotency.insert(key, entry);
        self.changes.idempotency.push((key, entry));
        Ok(())
    }

    // ---- invariants ----

    /// The kernel's invariants over the whole state: each asset's accounts
    /// sum to zero; no account is below zero unless its purpose allows it;
    /// every holds-only account holds exactly its open holds, and every hold
    /// is into one. Tests run it after every command; the daemon at start
    /// and after every batch.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut sums: BTreeMap<AssetId, Amount> = BTreeMap::new();
        for (&packed, &Balance { amount: balance, .. }) in &self.balances {
            let account = AccountId::from(packed);
            if !self.purposes.is_declared(account.purpose) {
                return Err(format!("{account:?} has an undeclared purpose"));
            }
            if !self.allowed(account, balance) {
                return Err(format!("{account:?} ({}) is negative: {balance}", self.purposes.name(account.purpose)));
            }
            *sums.entry(account.asset).or_default() += balance;
        }
        if let Some((asset, sum)) = sums.iter().find(|(_, sum)| **sum != 0) {
            return Err(format!("asset {asset}: accounts sum to {sum}, not zero"));
        }
        let mut held: FxHashMap<AccountId, Amount> = FxHashMap::default();
        for (id, hold) in &self.holds {
            if !self.purposes.holds_only(hold.held.purpose) || hold.remaining < 0 || hold.origin.asset != hold.held.asset {
                return Err(format!("hold {id:?} is malformed: {hold:?}"));
            }
            *held.entry(hold.held).or_default() += hold.remaining;
        }
        for (account, &Balance { amount: balance, .. }) in self.balances.iter().map(|(&packed, balance)| (AccountId::from(packed), balance)) {
            if !self.purposes.holds_only(account.purpose) {
                continue;
            }
            let holds = held.get(&account).copied().unwrap_or(0);
            if balance != holds {
                return Err(format!("{account:?} ({}) holds {balance} but its open holds sum to {holds}", self.purposes.name(account.purpose)));
            }
        }
        if let Some((account, amount)) = held.iter().find(|(account, amount)| **amount != 0 && !self.balances.contains_key(&(**account).into())) {
            return Err(format!("holds of {amount} into {account:?}, which has no balance"));
        }
        // One pass over the balances for every followed asset.
        let mut found: FxHashMap<AssetId, BTreeMap<UserId, u32>> = self.holders.by_asset.keys().map(|asset| (*asset, BTreeMap::new())).collect();
        if !found.is_empty() {
            for (account, balance) in self.balances.iter().map(|(&packed, balance)| (AccountId::from(packed), balance.amount)) {
                if let (Some(holders), true, Some(user)) = (found.get_mut(&account.asset), balance != 0, account.user_id()) {
                    *holders.entry(user).or_insert(0) += 1;
                }
            }
        }
        for (asset, holders) in &self.holders.by_asset {
            let found = &found[asset];
            if found != holders {
                return Err(format!("asset {asset}'s holders as followed ({} users) are not those the balances show ({} users)", holders.len(), found.len()));
            }
        }
        Ok(())
    }
}
