//! The wallet: deposits from outside, transfers between users, and
//! withdrawals that wait for an operator's decision.
//!
//! A deposit moves money from the house's custody to the user's AVAILABLE;
//! a withdrawal request holds it in the house's pending-withdrawals account
//! (a kernel hold), which an approval captures into custody and a rejection
//! releases back to the user.

use std::collections::BTreeMap;

use compact_str::format_compact;
use ids::{Amount, AssetId, TimestampMs, UserId, WithdrawalId};
use ledger_api::wallet::{self as api, Command, Outcome, Withdrawal, WithdrawalStatus};
use ledger_api::LedgerError;
use ledger_core::{AccountId, Digest, HoldId, Idempotent, Kernel, Leg, Payout, Purpose, PurposeSpec, Recorded, TransferCode};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::tokenization::Movement;
use crate::{key_digest, refusal, ChangeSet, Forward, LedgerLimits, Product};

pub const AVAILABLE: Purpose = Purpose(api::AVAILABLE);
pub const LOCKED: Purpose = Purpose(api::LOCKED);
pub const CUSTODY: Purpose = Purpose(api::CUSTODY);
pub const PENDING_WITHDRAWALS: Purpose = Purpose(api::PENDING_WITHDRAWALS);

pub const PURPOSES: &[PurposeSpec] = &[
    PurposeSpec { purpose: AVAILABLE, name: "available", may_go_negative: false, holds_only: false },
    // Any product's holds on a user's money: an order's, a subscription's.
    PurposeSpec { purpose: LOCKED, name: "locked", may_go_negative: false, holds_only: true },
    PurposeSpec { purpose: CUSTODY, name: "custody", may_go_negative: true, holds_only: false },
    PurposeSpec { purpose: PENDING_WITHDRAWALS, name: "pending withdrawals", may_go_negative: false, holds_only: true },
];

const DEPOSIT_RECORD: u8 = 1;
const TRANSFER_RECORD: u8 = 2;
const WITHDRAWAL_RECORD: u8 = 3;

const WITHDRAWAL_HOLD: u8 = 2;

pub const DESTINATION_BYTES_MAX: usize = 256;

pub fn available(user: UserId, asset: AssetId) -> AccountId {
    AccountId::user(user, asset, AVAILABLE)
}

pub fn locked(user: UserId, asset: AssetId) -> AccountId {
    AccountId::user(user, asset, LOCKED)
}

pub fn custody(asset: AssetId) -> AccountId {
    AccountId::house(asset, CUSTODY)
}

fn withdrawal_hold(id: WithdrawalId) -> HoldId {
    HoldId { kind: WITHDRAWAL_HOLD, id }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletState {
    pub pending_withdrawals: BTreeMap<WithdrawalId, Withdrawal>,
    pub next_withdrawal: WithdrawalId,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalletChanges {
    /// Withdrawals requested or decided, in their state after it.
    pub withdrawals: Vec<Withdrawal>,
}

impl ChangeSet for WalletChanges {
    fn clear(&mut self) {
        self.withdrawals.clear();
    }
}

#[derive(Default)]
pub struct Wallet {
    pending: FxHashMap<WithdrawalId, Withdrawal>,
    next_withdrawal: WithdrawalId,
    changes: WalletChanges,
}

pub(crate) fn deposit_key(asset: AssetId, reference: &str) -> Option<Digest> {
    key_digest(b"deposit", &asset.to_le_bytes(), reference)
}

fn transfer_key(from: UserId, key: &str) -> Option<Digest> {
    key_digest(b"transfer", &from.to_le_bytes(), key)
}

fn withdrawal_key(user: UserId, key: &str) -> Option<Digest> {
    key_digest(b"withdrawal", &user.to_le_bytes(), key)
}

/// The key's digest, or why the key is refused.
fn checked_key(known: Option<Digest>, key: &str, digest: impl FnOnce() -> Option<Digest>) -> Result<Digest, LedgerError> {
    ledger_core::check_key(key).map_err(refusal)?;
    Ok(known.or_else(digest).expect("a checked key has a digest"))
}

fn replayed(recorded: Recorded) -> Result<Outcome, LedgerError> {
    match recorded.kind {
        DEPOSIT_RECORD => Ok(Outcome::Deposited(recorded.id)),
        TRANSFER_RECORD => Ok(Outcome::Transferred(recorded.id)),
        WITHDRAWAL_RECORD => Ok(Outcome::WithdrawalRequested(recorded.id)),
        // Another product's kind under a wallet key cannot be: its keys are digests of other texts.
        _ => Err(LedgerError::Duplicate),
    }
}

impl Product for Wallet {
    type Command = Command;
    type Outcome = Outcome;
    type State = WalletState;
    type Changes = WalletChanges;
    const PURPOSES: &'static [PurposeSpec] = PURPOSES;
    const RECORD_KINDS: &'static [u8] = &[DEPOSIT_RECORD, TRANSFER_RECORD, WITHDRAWAL_RECORD];
    const HOLD_KINDS: &'static [u8] = &[WITHDRAWAL_HOLD];

    fn restore(state: WalletState) -> Wallet {
        Wallet { pending: state.pending_withdrawals.into_iter().collect(), next_withdrawal: state.next_withdrawal.max(1), changes: WalletChanges::default() }
    }

    fn state(&self) -> WalletState {
        WalletState { pending_withdrawals: self.pending.iter().map(|(id, w)| (*id, w.clone())).collect(), next_withdrawal: self.next_withdrawal }
    }

    fn changes_mut(&mut self) -> &mut WalletChanges {
        &mut self.changes
    }

    fn idempotency_key(command: &Command) -> Option<Digest> {
        match command {
            Command::Deposit { asset, reference, .. } => deposit_key(*asset, reference),
            Command::Transfer { from, key, .. } => transfer_key(*from, key),
            Command::RequestWithdrawal { user, key, .. } => withdrawal_key(*user, key),
            Command::DecideWithdrawal { .. } => None,
        }
    }

    #[inline]
    fn apply(
        &mut self,
        kernel: &mut Kernel,
        limits: &LedgerLimits,
        command: &Command,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> (Result<Outcome, LedgerError>, Forward) {
        let outcome = match command {
            Command::Deposit { user, asset, amount, reference } => deposit(kernel, *user, *asset, *amount, reference, at_ms, known_key),
            Command::Transfer { from, to, asset, amount, key } => transfer(kernel, *from, *to, *asset, *amount, key, at_ms, known_key),
            Command::RequestWithdrawal { user, asset, amount, destination, key } => {
                let request = WithdrawalRequest { user: *user, asset: *asset, amount: *amount, destination, key };
                self.request_withdrawal(kernel, limits, request, at_ms, known_key)
            }
            Command::DecideWithdrawal { id, approve } => self.decide_withdrawal(kernel, *id, *approve, at_ms),
        };
        (outcome, None)
    }

    /// Every pending withdrawal is held in full, and every withdrawal hold is a pending withdrawal's.
    fn beneficiary(&self, command: &Command) -> Result<Option<UserId>, LedgerError> {
        match command {
            Command::Deposit { user, .. } => Ok(Some(*user)),
            Command::DecideWithdrawal { id, .. } => match self.pending.get(id) {
                Some(withdrawal) => Ok(Some(withdrawal.user)),
                None => Err(LedgerError::BadInput(format!("withdrawal {id} is not pending (unknown or decided)"))),
            },
            Command::Transfer { .. } | Command::RequestWithdrawal { .. } => Ok(None),
        }
    }

    /// Money out: sending it, asking for it, and an operator paying out a
    /// frozen account's withdrawal (rejecting it gives the money back and passes).
    fn frozen_subject(&self, command: &Command) -> Option<UserId> {
        match command {
            Command::Transfer { from, .. } => Some(*from),
            Command::RequestWithdrawal { user, .. } => Some(*user),
            Command::DecideWithdrawal { id, approve: true } => self.pending.get(id).map(|withdrawal| withdrawal.user),
            Command::Deposit { .. } | Command::DecideWithdrawal { approve: false, .. } => None,
        }
    }

    /// A token comes in only by issuance, and moves between users and out
    /// under its rules.
    fn token_movement(&self, _: &Kernel, command: &Command) -> Option<(AssetId, Movement)> {
        match command {
            Command::Deposit { asset, .. } => Some((*asset, Movement::Deposit)),
            Command::Transfer { from, to, asset, amount, .. } => Some((*asset, Movement::Transfer { from: *from, to: *to, amount: *amount })),
            Command::RequestWithdrawal { user, asset, .. } => Some((*asset, Movement::Send { user: *user })),
            // A rejection gives the tokens back: they must fit the rules
            // again (else the operators approve the withdrawal instead).
            Command::DecideWithdrawal { id, approve: false } => self.pending.get(id).map(|w| (w.asset, Movement::Receive { user: w.user, amount: w.amount })),
            Command::DecideWithdrawal { approve: true, .. } => None,
        }
    }

    fn check_invariants(&self, kernel: &Kernel) -> Result<(), String> {
        for (id, withdrawal) in &self.pending {
            match kernel.hold_of(withdrawal_hold(*id)) {
                Some(hold) if hold.remaining == withdrawal.amount && hold.origin == available(withdrawal.user, withdrawal.asset) => {}
                other => return Err(format!("pending withdrawal {id} of {} is held as {other:?}", withdrawal.amount)),
            }
        }
        if let Some((id, _)) = kernel.holds().find(|(id, _)| id.kind == WITHDRAWAL_HOLD && !self.pending.contains_key(&id.id)) {
            return Err(format!("hold {id:?} has no pending withdrawal"));
        }
        Ok(())
    }
}

impl Wallet {
    pub fn pending_withdrawal(&self, id: WithdrawalId) -> Option<&Withdrawal> {
        self.pending.get(&id)
    }

    pub fn next_withdrawal(&self) -> WithdrawalId {
        self.next_withdrawal
    }

    fn request_withdrawal(
        &mut self,
        kernel: &mut Kernel,
        limits: &LedgerLimits,
        request: WithdrawalRequest,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> Result<Outcome, LedgerError> {
        let WithdrawalRequest { user, asset, amount, destination, key } = request;
        let digest = checked_key(known_key, key, || withdrawal_key(user, key))?;
        let fingerprint = match kernel.idempotent(&digest, &[&asset.to_le_bytes(), &amount.to_le_bytes(), destination.as_bytes()]).map_err(refusal)? {
            Idempotent::Replay(recorded) => return replayed(recorded),
            Idempotent::New(fingerprint) => fingerprint,
        };
        kernel.known_asset(asset).map_err(refusal)?;
        if amount <= 0 {
            return Err(LedgerError::BadInput("amount must be positive".into()));
        }
        if destination.is_empty() || destination.len() > DESTINATION_BYTES_MAX {
            return Err(LedgerError::BadInput("a destination is 1 to 256 bytes".into()));
        }
        if self.pending.len() >= limits.pending_withdrawals_max as usize {
            return Err(LedgerError::LimitReached("pending_withdrawals_max".into()));
        }
        let id = self.next_withdrawal;
        let pending = AccountId::house(asset, PENDING_WITHDRAWALS);
        kernel
            .hold(
                withdrawal_hold(id),
                available(user, asset),
                pending,
                amount,
                TransferCode(api::WITHDRAWAL_REQUEST),
                format_compact!("withdrawal:{id}"),
                at_ms,
            )
            .map_err(refusal)?;
        self.next_withdrawal += 1;
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
        self.pending.insert(id, withdrawal);
        kernel.remember(digest, fingerprint, Recorded { kind: WITHDRAWAL_RECORD, id }).map_err(refusal)?;
        Ok(Outcome::WithdrawalRequested(id))
    }

    fn decide_withdrawal(&mut self, kernel: &mut Kernel, id: WithdrawalId, approve: bool, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let Some(withdrawal) = self.pending.get(&id) else {
            return Err(LedgerError::NotFound);
        };
        let reference = format_compact!("withdrawal:{id}");
        let status = if approve {
            let paid_out = Payout { credit: custody(withdrawal.asset), amount: withdrawal.amount, code: TransferCode(api::WITHDRAWAL_APPROVAL) };
            kernel.capture(withdrawal_hold(id), &[paid_out], &reference, at_ms).map_err(refusal)?;
            // Captured whole: closing it moves nothing more.
            kernel.release(withdrawal_hold(id), TransferCode(api::WITHDRAWAL_APPROVAL), reference, at_ms).map_err(refusal)?;
            WithdrawalStatus::Approved
        } else {
            kernel.release(withdrawal_hold(id), TransferCode(api::WITHDRAWAL_REJECTION), reference, at_ms).map_err(refusal)?;
            WithdrawalStatus::Rejected
        };
        let withdrawal = self.pending.remove(&id).expect("looked up above");
        self.changes.withdrawals.push(Withdrawal { status, updated_ms: at_ms, ..withdrawal });
        Ok(Outcome::WithdrawalDecided(id))
    }
}

struct WithdrawalRequest<'a> {
    user: UserId,
    asset: AssetId,
    amount: Amount,
    destination: &'a str,
    key: &'a str,
}

fn deposit(
    kernel: &mut Kernel,
    user: UserId,
    asset: AssetId,
    amount: Amount,
    reference: &str,
    at_ms: TimestampMs,
    known_key: Option<Digest>,
) -> Result<Outcome, LedgerError> {
    let digest = checked_key(known_key, reference, || deposit_key(asset, reference))?;
    let fingerprint = match kernel.idempotent(&digest, &[&user.to_le_bytes(), &amount.to_le_bytes()]).map_err(refusal)? {
        Idempotent::Replay(recorded) => return replayed(recorded),
        Idempotent::New(fingerprint) => fingerprint,
    };
    let id = kernel
        .transfer(Leg { debit: custody(asset), credit: available(user, asset), amount, code: TransferCode(api::DEPOSIT) }, reference, at_ms)
        .map_err(refusal)?;
    kernel.remember(digest, fingerprint, Recorded { kind: DEPOSIT_RECORD, id }).map_err(refusal)?;
    Ok(Outcome::Deposited(id))
}

#[allow(clippy::too_many_arguments)]
fn transfer(
    kernel: &mut Kernel,
    from: UserId,
    to: UserId,
    asset: AssetId,
    amount: Amount,
    key: &str,
    at_ms: TimestampMs,
    known_key: Option<Digest>,
) -> Result<Outcome, LedgerError> {
    let digest = checked_key(known_key, key, || transfer_key(from, key))?;
    let fingerprint = match kernel.idempotent(&digest, &[&to.to_le_bytes(), &asset.to_le_bytes(), &amount.to_le_bytes()]).map_err(refusal)? {
        Idempotent::Replay(recorded) => return replayed(recorded),
        Idempotent::New(fingerprint) => fingerprint,
    };
    if from == to {
        return Err(LedgerError::BadInput("a transfer needs two different users".into()));
    }
    let id = kernel
        .transfer(Leg { debit: available(from, asset), credit: available(to, asset), amount, code: TransferCode(api::TRANSFER) }, key, at_ms)
        .map_err(refusal)?;
    kernel.remember(digest, fingerprint, Recorded { kind: TRANSFER_RECORD, id }).map_err(refusal)?;
    Ok(Outcome::Transferred(id))
}

/// A user's available and locked money in `asset`.
pub fn balance(kernel: &Kernel, user: UserId, asset: AssetId) -> api::Balance {
    api::Balance { available: kernel.balance(available(user, asset)), locked: kernel.balance(locked(user, asset)) }
}

/// The names of the wallet's storage tables; the ledger daemon's
/// `schema/wallet.rs` says what they hold.
pub mod tables {
    pub const WITHDRAWALS: &str = "wallet.withdrawals";
    pub const PENDING_WITHDRAWALS: &str = "wallet.pending_withdrawals";
    pub const WITHDRAWALS_BY_USER: &str = "wallet.withdrawals_by_user";
}
