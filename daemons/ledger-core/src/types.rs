//! The ledger's vocabulary. Amounts are `i128` minor units of their asset.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

pub use matching_core::{MarketId, OrderId, UserId};

pub type AssetId = u32;
pub type Amount = i128;
pub type TransferId = u64;
pub type WithdrawalId = u64;
pub type TradeId = u64;
/// Milliseconds since the Unix epoch, stamped by the daemon shell on each command.
pub type TimestampMs = u64;

pub const SYMBOL_BYTES_MAX: usize = 16;
pub const SCALE_MAX: u8 = 18;
pub const KEY_BYTES_MAX: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AssetSpec {
    pub id: AssetId,
    pub symbol: String,
    /// Minor units per whole unit are 10^scale.
    pub scale: u8,
}

/// A market as the ledger sees it: the matching spec plus what it needs to
/// turn lots into base minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LedgerMarket {
    pub base: AssetId,
    pub quote: AssetId,
    /// Base minor units in one lot (lot_size x 10^base_scale).
    pub base_units_per_lot: u64,
    pub spec: matching_core::MarketSpec,
}

impl LedgerMarket {
    pub fn id(&self) -> MarketId {
        self.spec.id
    }

    /// The worst-case quote a buy of `quantity` lots at `price` can cost:
    /// notional, plus fees at the higher of the two rates rounded up, plus the
    /// one unit the per-role cumulative rounding may add (see matching_core::fee_increment).
    pub fn buy_hold(&self, price: u64, quantity: u64) -> Amount {
        let notional = self.spec.notional(price, quantity);
        let rate = self.spec.maker_fee_ppm.max(self.spec.taker_fee_ppm);
        (notional + matching_core::fee_ceil(rate, notional) + 1) as Amount
    }

    pub fn base_amount(&self, quantity: u64) -> Amount {
        quantity as Amount * self.base_units_per_lot as Amount
    }
}

/// Where money sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Account {
    Available(UserId, AssetId),
    Locked(UserId, AssetId),
    /// Money outside the system (bank, blockchain): negative by what users hold.
    Custody(AssetId),
    Fees(AssetId),
    PendingWithdrawals(AssetId),
}

impl Account {
    pub fn asset(&self) -> AssetId {
        match *self {
            Account::Available(_, a) | Account::Locked(_, a) | Account::Custody(a) | Account::Fees(a) | Account::PendingWithdrawals(a) => a,
        }
    }

    pub fn user(&self) -> Option<UserId> {
        match *self {
            Account::Available(u, _) | Account::Locked(u, _) => Some(u),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransferKind {
    Deposit,
    Transfer,
    WithdrawalRequest,
    WithdrawalApproval,
    WithdrawalRejection,
    Hold,
    Release,
    Trade,
    Fee,
}

/// One leg: `amount` leaves `debit` and arrives in `credit`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transfer {
    pub id: TransferId,
    pub debit: Account,
    pub credit: Account,
    pub asset: AssetId,
    pub amount: Amount,
    pub kind: TransferKind,
    /// What caused it: a deposit reference, an order id, a trade id, a
    /// withdrawal id. Stored inline up to 24 bytes (the same encoding as a
    /// String): a settlement's four to six legs share one reference.
    pub reference: CompactString,
    pub at_ms: TimestampMs,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Balance {
    pub available: Amount,
    pub locked: Amount,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Held and sent to matching; not yet acknowledged by it.
    Pending,
    Open,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
}

impl OrderStatus {
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Filled | OrderStatus::Cancelled | OrderStatus::Rejected)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order: matching_core::NewOrder,
    pub client_order_id: Option<String>,
    pub status: OrderStatus,
    pub filled: u64,
    /// Sum of the quote notional of its fills, for the average price.
    pub filled_notional: u128,
    pub fees_paid: Amount,
    /// What is still held for it: quote for a buy, base for a sell.
    pub hold_remaining: Amount,
    pub hold_asset: AssetId,
    pub reject_reason: Option<String>,
    pub created_ms: TimestampMs,
    pub updated_ms: TimestampMs,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TradeRecord {
    pub id: TradeId,
    pub fill: matching_core::Fill,
    /// (buyer fee, seller fee) in the quote asset.
    pub buyer_fee: Amount,
    pub seller_fee: Amount,
    pub at_ms: TimestampMs,
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

/// A business refusal. Nothing changed when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum LedgerError {
    #[error("unknown asset {0}")]
    UnknownAsset(AssetId),
    #[error("unknown market {0}")]
    UnknownMarket(MarketId),
    #[error("asset {0} already exists")]
    AssetExists(AssetId),
    #[error("market {0} already exists")]
    MarketExists(MarketId),
    #[error("invalid input: {0}")]
    BadInput(String),
    #[error("insufficient funds: {needed} needed, {available} available")]
    InsufficientFunds { needed: Amount, available: Amount },
    #[error("not found")]
    NotFound,
    #[error("this idempotency key was used before with different fields")]
    Duplicate,
    #[error("the withdrawal was already {0:?}")]
    AlreadyDecided(WithdrawalStatus),
    #[error("the order is no longer open")]
    OrderNotOpen,
    #[error("matching output {got} is not the next one ({expected})")]
    OutOfSequence { expected: u64, got: u64 },
    #[error("a configured limit was reached ({0}); close some (cancel orders, wait for withdrawals to be decided) before adding more")]
    LimitReached(String),
}

impl LedgerError {
    /// The contract's `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::UnknownAsset(_) | LedgerError::UnknownMarket(_) | LedgerError::NotFound => "NOT_FOUND",
            LedgerError::AssetExists(_) | LedgerError::MarketExists(_) | LedgerError::Duplicate => "DUPLICATE",
            LedgerError::BadInput(_) | LedgerError::AlreadyDecided(_) | LedgerError::OrderNotOpen => "BAD_USER_INPUT",
            LedgerError::InsufficientFunds { .. } => "INSUFFICIENT_FUNDS",
            LedgerError::OutOfSequence { .. } => "UNAVAILABLE",
            // Not UNAVAILABLE: retrying does not help until something closes.
            LedgerError::LimitReached(_) => "LIMIT_REACHED",
        }
    }
}
