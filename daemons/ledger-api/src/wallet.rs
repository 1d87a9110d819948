//! The wallet: deposits from outside, transfers between users, and
//! withdrawals an operator approves or rejects. Its accounts are every
//! user's available and locked money and the house's custody of what came
//! in from outside.

use serde::{Deserialize, Serialize};

use crate::operators::ActionKind;
use crate::{Amount, AssetId, TimestampMs, TransferId, UserId, WithdrawalId};

/// A user's money to spend.
pub const AVAILABLE: u8 = 1;
/// A user's money set aside by a hold of any product (an open order's).
pub const LOCKED: u8 = 2;
/// The house's: the world outside, negative by what users brought in net.
pub const CUSTODY: u8 = 3;
/// The house's: money of requested withdrawals until they are decided.
pub const PENDING_WITHDRAWALS: u8 = 4;

pub(crate) fn purpose_name(purpose: u8) -> Option<&'static str> {
    Some(match purpose {
        AVAILABLE => "available",
        LOCKED => "locked",
        CUSTODY => "custody",
        PENDING_WITHDRAWALS => "pending withdrawals",
        _ => return None,
    })
}

pub const DEPOSIT: u16 = 101;
pub const TRANSFER: u16 = 102;
pub const WITHDRAWAL_REQUEST: u16 = 103;
pub const WITHDRAWAL_APPROVAL: u16 = 104;
pub const WITHDRAWAL_REJECTION: u16 = 105;

pub(crate) fn code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        DEPOSIT => "DEPOSIT",
        TRANSFER => "TRANSFER",
        WITHDRAWAL_REQUEST | WITHDRAWAL_APPROVAL => "WITHDRAWAL",
        WITHDRAWAL_REJECTION => "WITHDRAWAL_REJECTED",
        _ => return None,
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// Custody to the user's AVAILABLE; idempotent by the asset's `reference`.
    Deposit { user: UserId, asset: AssetId, amount: Amount, reference: String },
    /// One user's AVAILABLE to another's; idempotent by the sender's `key`.
    Transfer { from: UserId, to: UserId, asset: AssetId, amount: Amount, key: String },
    /// AVAILABLE to pending withdrawals; idempotent by the user's `key`.
    RequestWithdrawal { user: UserId, asset: AssetId, amount: Amount, destination: String, key: String },
    /// Pending to custody (approve) or back to AVAILABLE (reject).
    DecideWithdrawal { id: WithdrawalId, approve: bool },
}

/// Deposits and withdrawals' decisions are operators' actions.
pub(crate) fn operator_action(command: &Command) -> Option<ActionKind> {
    match command {
        Command::Deposit { .. } => Some(ActionKind::Deposit),
        Command::DecideWithdrawal { approve: true, .. } => Some(ActionKind::WithdrawalApproval),
        Command::DecideWithdrawal { approve: false, .. } => Some(ActionKind::WithdrawalRejection),
        Command::Transfer { .. } | Command::RequestWithdrawal { .. } => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Deposited(TransferId),
    Transferred(TransferId),
    WithdrawalRequested(WithdrawalId),
    WithdrawalDecided(WithdrawalId),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Balance {
    pub available: Amount,
    pub locked: Amount,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WithdrawalStatus {
    Pending,
    Approved,
    Rejected,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Withdrawal {
    pub id: WithdrawalId,
    pub user: UserId,
    pub asset: AssetId,
    pub amount: Amount,
    pub destination: String,
    pub status: WithdrawalStatus,
    pub created_ms: TimestampMs,
    pub updated_ms: TimestampMs,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// Every asset the user holds, with AVAILABLE and LOCKED.
    Balances {
        user: UserId,
    },
    Withdrawal {
        id: WithdrawalId,
    },
    /// A user's withdrawals, or everyone's (`user: None`, for operators), newest first.
    Withdrawals {
        user: Option<UserId>,
        status: Option<WithdrawalStatus>,
        limit: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Balances(Vec<(AssetId, Balance)>),
    Withdrawal(Option<Withdrawal>),
    Withdrawals(Vec<Withdrawal>),
}
