//! What the ledger answers: reads of balances, orders, trades, ledger
//! entries and withdrawals, as the gateway needs them for the API.

use ledger_core::{
    Amount, AssetId, AssetSpec, Balance, LedgerMarket, OrderRecord, OrderStatus, TradeRecord, Transfer, Withdrawal, WithdrawalId, WithdrawalStatus,
};
use matching_core::{MarketId, OrderId, UserId};
use serde::{Deserialize, Serialize};

/// The most records one list query returns.
pub const QUERY_LIMIT_MAX: u32 = 1_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerQuery {
    Assets,
    Markets,
    /// Every asset the user holds or has held, with AVAILABLE and LOCKED.
    Balances {
        user: UserId,
    },
    /// Any order by id; the caller decides who may see it.
    Order {
        order_id: OrderId,
    },
    /// A user's orders, newest first.
    Orders {
        user: UserId,
        market: Option<MarketId>,
        status: Option<OrderStatus>,
        limit: u32,
    },
    /// A user's trades, newest first.
    UserTrades {
        user: UserId,
        market: Option<MarketId>,
        limit: u32,
    },
    /// A market's trades, newest first.
    MarketTrades {
        market: MarketId,
        limit: u32,
    },
    /// The transfers that moved a user's money, newest first.
    Transfers {
        user: UserId,
        asset: Option<AssetId>,
        limit: u32,
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
    /// Where the ledger stands: for status displays and readiness checks.
    Status,
    /// Per asset, what came in and where it is now: for operators' audits.
    Reserves,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryAnswer {
    Assets(Vec<AssetSpec>),
    Markets(Vec<LedgerMarket>),
    Balances(Vec<(AssetId, Balance)>),
    Order(Option<OrderRecord>),
    Orders(Vec<OrderRecord>),
    Trades(Vec<TradeRecord>),
    Transfers(Vec<Transfer>),
    Withdrawal(Option<Withdrawal>),
    Withdrawals(Vec<Withdrawal>),
    Status(LedgerStatus),
    Reserves(Vec<AssetReserve>),
}

/// One asset's books, read from the store: what came in net, and where it
/// is. `users` is summed over every balance independently of the system
/// accounts, so `deposited == users + fees + pending_withdrawals` is a check,
/// not a tautology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetReserve {
    pub asset: AssetId,
    /// Deposits minus withdrawals paid out.
    pub deposited: Amount,
    /// Every user's AVAILABLE plus LOCKED.
    pub users: Amount,
    pub fees: Amount,
    pub pending_withdrawals: Amount,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerStatus {
    /// The last journal sequence that is durable and applied.
    pub journal_applied: u64,
    /// The last matching output applied.
    pub matching_applied: u64,
    /// Whether the link to matching is up.
    pub matching_connected: bool,
    /// Commands forwarded to matching that it has not yet confirmed.
    pub outbox_pending: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum QueryError {
    #[error("bad query: {0}")]
    BadRequest(String),
    /// The store could not be read; the ledger logged why.
    #[error("the ledger could not read its store; try again, and tell the operator if it persists")]
    Unavailable,
}
