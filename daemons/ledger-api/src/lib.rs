//! The ledger's vocabulary as it crosses a process or reaches a file.
//!
//! Clients send [`Command`]s and [`Query`]s and receive [`Outcome`]s and
//! [`Answer`]s; the ledger journals each command in a [`JournalEntry`] and
//! keeps the records its reads return (transfers, orders, trades,
//! withdrawals) in these shapes. Each product has its module here, beside
//! its pure logic in the `products` crate, and one line in the `products!`
//! list, which gives it its variant in each of the enums.
//!
//! These types are a format, versioned by [`FORMAT_VERSION`]: postcard
//! encodes them by declaration order, so any change to a type here is a
//! format change. Bump the version and update the golden bytes of this
//! crate's tests, which fail otherwise. The kernel's and the products'
//! internals change without touching a format.

use serde::{Deserialize, Serialize};

pub use ids::{Amount, AssetId, MarketId, OrderId, TimestampMs, TradeId, TransferId, UserId, WithdrawalId};

pub mod candles;
pub mod convert;
pub mod donations;
pub mod house;
pub mod operators;
pub mod perpetual;
pub mod spot;
pub mod tokenization;
pub mod wallet;

/// The version of every format in this crate. 1 was the unversioned
/// encoding of the ledger core's own types (release 0.1.0's first builds);
/// 3 added operators, proposals and the audit log; 4 frozen accounts; 5
/// users' verification tiers (and their threshold); 6 the audit record of
/// an operator's two-factor authentication turned on or off; 7 spot's
/// candles and rolling 24 hours (queries and answers); 8 each candle's last
/// trade; 9 markets whose tick on a lot is a fraction of a minor unit
/// (matching-api 3), an order's filled ticks x lots and candles' turnover
/// in ticks x lots; 10 halting and resuming a market, kill switches,
/// cancel-all, good-till-date orders; 11 amending orders (and matching-api
/// 5's Amended); 12 stop orders; 13 OCO lists; 14 convert (pairs, quotes,
/// conversions) and its refusals; 15 perpetual markets (spot's Perpetual
/// commands, outcomes, queries and answers; their records); 16
/// reduce-only orders (an order request's and an order record's flag); 17
/// tokenization (issuers, claims, tokens, offerings, subscriptions,
/// tranches), its refusals and its two operator action kinds; 18 the
/// platform's offering fee as the operators' setting; 19 one subscription
/// by id, offerings and tranches under a limit; 20 an offering's listing
/// at its close, the operators' listing fees, the markets a tick lists; 21
/// distributions and their entitlements, investors' withholding rates; 22
/// the token agent's actions (partial freezes, forced transfers,
/// recoveries) and their kind of operator action; 23 donations
/// (organisers, campaigns, gifts, matching pools, payouts, receipts), their
/// two kinds of operator action and the refusal of a gift without a price;
/// 24 gifts converted at receipt through convert (a command, and a
/// donation's record of what its gross became) and the queries of gifts
/// and payouts after an id (the organisers' webhooks follow them).
pub const FORMAT_VERSION: u16 = 24;

/// The most records one list query returns.
pub const QUERY_LIMIT_MAX: u32 = 1_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AssetSpec {
    pub id: AssetId,
    pub symbol: String,
    /// Minor units per whole unit are 10^scale.
    pub scale: u8,
}

/// Who an account belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Owner {
    User(UserId),
    /// The platform: custody, revenue, inventory.
    House,
    /// Something a product keeps accounts for; the purpose says which product.
    Entity(u64),
}

/// An account: whose, in which asset, and what for (a purpose code a
/// product's module here declares).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Account {
    pub owner: Owner,
    pub asset: AssetId,
    pub purpose: u8,
}

impl Account {
    pub fn user(&self) -> Option<UserId> {
        match self.owner {
            Owner::User(user) => Some(user),
            _ => None,
        }
    }
}

/// One movement of money, as stored and as a user's ledger entries list it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transfer {
    pub id: TransferId,
    pub debit: Account,
    pub credit: Account,
    pub amount: Amount,
    /// A transfer code of one of the products ([`transfer_kind`] names it).
    pub code: u16,
    /// What caused it: a deposit reference, an order, a trade, a withdrawal.
    pub reference: String,
    pub at_ms: TimestampMs,
}

impl Transfer {
    pub fn asset(&self) -> AssetId {
        self.debit.asset
    }
}

/// Generates, from the list of products (the variant, the module), each
/// product's variant in [`Command`], [`Outcome`], [`Query`] and [`Answer`]
/// after the kernel's own, and the names of their codes and purposes. The
/// list's order is the variants' order, so part of the format.
macro_rules! products {
    ($($variant:ident => $module:ident),* $(,)?) => {
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum Command {
            CreateAsset(AssetSpec),
            /// Operators, their proposals and approvals, the audit log.
            Operators(operators::Command),
            $($variant($module::Command),)*
        }

        impl Command {
            /// The kind of operator action this command is, or None for a
            /// command that is not an operator's: a peer may send an
            /// operator's command only inside a proposal.
            pub fn operator_action(&self) -> Option<operators::ActionKind> {
                match self {
                    Command::CreateAsset(_) => Some(operators::ActionKind::Asset),
                    Command::Operators(_) => None,
                    $(Command::$variant(command) => $module::operator_action(command),)*
                }
            }

            /// The command as a proposal's action, if it is an operator's.
            pub fn to_action(&self) -> Option<ActionCommand> {
                self.operator_action()?;
                match self {
                    Command::CreateAsset(spec) => Some(ActionCommand::CreateAsset(spec.clone())),
                    Command::Operators(_) => None,
                    $(Command::$variant(command) => Some(ActionCommand::$variant(command.clone())),)*
                }
            }
        }

        /// The command a proposal carries: the kernel's or a product's,
        /// never an operators' command, so that no frame can nest proposals
        /// (a decoder would recurse as deep as the frame is long).
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ActionCommand {
            CreateAsset(AssetSpec),
            $($variant($module::Command),)*
        }

        impl ActionCommand {
            pub fn kind(&self) -> Option<operators::ActionKind> {
                match self {
                    ActionCommand::CreateAsset(_) => Some(operators::ActionKind::Asset),
                    $(ActionCommand::$variant(command) => $module::operator_action(command),)*
                }
            }
        }

        impl From<ActionCommand> for Command {
            fn from(action: ActionCommand) -> Command {
                match action {
                    ActionCommand::CreateAsset(spec) => Command::CreateAsset(spec),
                    $(ActionCommand::$variant(command) => Command::$variant(command),)*
                }
            }
        }

        /// What an approved proposal's action did.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum ActionOutcome {
            AssetCreated(AssetId),
            OperatorAdded(UserId),
            /// The account is frozen; the cancels of its open orders went to matching.
            AccountFrozen { user: UserId, orders_cancelled: u32 },
            AccountUnfrozen(UserId),
            TierSet { user: UserId, tier: u8 },
            KillSwitchSet { user: UserId, state: operators::KillSwitch, orders_cancelled: u32 },
            $($variant($module::Outcome),)*
        }

        impl ActionOutcome {
            /// A command's outcome as an action's; None for an operators' outcome.
            pub fn of(outcome: Outcome) -> Option<ActionOutcome> {
                match outcome {
                    Outcome::AssetCreated(asset) => Some(ActionOutcome::AssetCreated(asset)),
                    Outcome::Operators(_) => None,
                    $(Outcome::$variant(outcome) => Some(ActionOutcome::$variant(outcome)),)*
                }
            }
        }

        impl From<ActionOutcome> for Outcome {
            fn from(outcome: ActionOutcome) -> Outcome {
                match outcome {
                    ActionOutcome::AssetCreated(asset) => Outcome::AssetCreated(asset),
                    ActionOutcome::OperatorAdded(user) => Outcome::Operators(operators::Outcome::OperatorAdded(user)),
                    ActionOutcome::AccountFrozen { user, orders_cancelled } => Outcome::Operators(operators::Outcome::AccountFrozen { user, orders_cancelled }),
                    ActionOutcome::AccountUnfrozen(user) => Outcome::Operators(operators::Outcome::AccountUnfrozen(user)),
                    ActionOutcome::TierSet { user, tier } => Outcome::Operators(operators::Outcome::TierSet { user, tier }),
                    ActionOutcome::KillSwitchSet { user, state, orders_cancelled } => {
                        Outcome::Operators(operators::Outcome::KillSwitchSet { user, state, orders_cancelled })
                    }
                    $(ActionOutcome::$variant(outcome) => Outcome::$variant(outcome),)*
                }
            }
        }

        /// What a command did. A command repeated under its idempotency key gets
        /// the first one's outcome again.
        // An operators' outcome carries its proposal (a whole command): one
        // outcome per command, made once and sent, so its size costs nothing
        // worth a box at every match.
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Outcome {
            AssetCreated(AssetId),
            Operators(operators::Outcome),
            $($variant($module::Outcome),)*
        }

        /// A read. Reads are not journaled and see every acknowledged command.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Query {
            Assets,
            /// The transfers that moved a user's money, newest first, in one asset or all.
            Transfers {
                user: UserId,
                asset: Option<AssetId>,
                limit: u32,
            },
            /// Where the ledger stands: for status displays and readiness checks.
            Status,
            /// Per asset, every account's money summed by owner and purpose: for operators' audits.
            Reserves,
            Operators(operators::Query),
            $($variant($module::Query),)*
        }

        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Answer {
            Assets(Vec<AssetSpec>),
            Transfers(Vec<Transfer>),
            Status(LedgerStatus),
            Reserves(Vec<AssetReserve>),
            Operators(operators::Answer),
            $($variant($module::Answer),)*
        }

        /// The name a ledger entry shows for a transfer code: DEPOSIT, TRADE, FEE, ...
        pub fn transfer_kind(code: u16) -> &'static str {
            None$(.or_else(|| $module::code_name(code)))*.unwrap_or("OTHER")
        }

        /// The name of an account purpose, for reports.
        pub fn purpose_name(purpose: u8) -> &'static str {
            None$(.or_else(|| $module::purpose_name(purpose)))*.unwrap_or("other")
        }
    };
}

// The products: one line each.
products! {
    Wallet => wallet,
    Spot => spot,
    House => house,
    Convert => convert,
    Tokenization => tokenization,
    Donations => donations,
}

/// A business refusal, with the contract's code. Nothing changed when one is returned.
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
    #[error("matching output {got} is not the next one ({expected})")]
    OutOfSequence { expected: u64, got: u64 },
    /// The caller may not do this: not an operator, the beneficiary of the
    /// action, or approving a second time.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Matching reported what the ledger cannot settle; the ledger stops its link to matching.
    #[error("refused: {0}")]
    MatchingOutputRefused(String),
    #[error("a configured limit was reached ({0}); close some (cancel orders, wait for withdrawals to be decided) before adding more")]
    LimitReached(String),
    #[error("account {0} is frozen by the operators: no new orders or withdrawals until they unfreeze it")]
    AccountFrozen(UserId),
    #[error("market {0} is halted by the operators: no new orders until they resume it; cancelling is allowed")]
    MarketHalted(MarketId),
    #[error("the kill switch of account {user} is engaged: no new orders until {} lift it", kill_switch_holder(.by_operators))]
    KillSwitchEngaged { user: UserId, by_operators: bool },
    #[error("quote {0} has expired (or was accepted before it did): ask for a new quote")]
    QuoteExpired(u64),
    #[error("quote {0} was accepted already; a quote is accepted at most once")]
    QuoteAccepted(u64),
    #[error("the conversion pair of assets {base} and {quote} is paused by the operators: no quotes or accepts until they resume it")]
    PairPaused { base: AssetId, quote: AssetId },
    /// The house cannot take the other side: its inventory, its exposure
    /// limit or the book's depth is short of the amount.
    #[error("the house cannot convert this much now: {0}; try a smaller amount or later")]
    InsufficientLiquidity(String),
    /// A token's transfer rules refuse it.
    #[error("the token's rules refuse this: {0}")]
    Compliance(tokenization::ComplianceRefusal),
    #[error("offering {0} is not taking subscriptions (not started, ended or closed)")]
    OfferingClosed(tokenization::OfferingId),
    #[error("subscription {subscription} can no longer be cancelled: its offering's cut-off was at {cutoff_ms} ms since the epoch")]
    CancelCutoffPassed { subscription: tokenization::SubscriptionId, cutoff_ms: TimestampMs },
    /// Not before the record, nor after the expiry, nor twice.
    #[error("distribution {distribution} has nothing for you to claim now: {why}")]
    NotClaimable { distribution: tokenization::DistributionId, why: String },
    #[error("distribution {distribution}'s holders may claim until {until_ms} ms since the epoch: reclaim what is left after that")]
    ClaimPeriodOpen { distribution: tokenization::DistributionId, until_ms: TimestampMs },
    /// A gift's value in its campaign's reference asset is fixed at the
    /// last trade price, and this asset has none against it.
    #[error(
        "asset {asset} has no last trade price against asset {reference}, the campaign's reference: give in the reference asset or one that trades against it"
    )]
    NoPrice { asset: AssetId, reference: AssetId },
    #[error("campaign {campaign} is not taking gifts ({why})")]
    CampaignClosed { campaign: donations::CampaignId, why: String },
}

fn kill_switch_holder(by_operators: &bool) -> &'static str {
    if *by_operators {
        "the operators"
    } else {
        "you (liftKillSwitch)"
    }
}

impl LedgerError {
    /// The contract's `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::UnknownAsset(_) | LedgerError::UnknownMarket(_) | LedgerError::NotFound => "NOT_FOUND",
            LedgerError::AssetExists(_) | LedgerError::MarketExists(_) | LedgerError::Duplicate => "DUPLICATE",
            LedgerError::BadInput(_) => "BAD_USER_INPUT",
            LedgerError::Forbidden(_) => "FORBIDDEN",
            LedgerError::InsufficientFunds { .. } => "INSUFFICIENT_FUNDS",
            LedgerError::OutOfSequence { .. } | LedgerError::MatchingOutputRefused(_) => "UNAVAILABLE",
            // Not UNAVAILABLE: retrying does not help until something closes.
            LedgerError::LimitReached(_) => "LIMIT_REACHED",
            LedgerError::AccountFrozen(_) => "ACCOUNT_FROZEN",
            LedgerError::MarketHalted(_) => "MARKET_CLOSED",
            LedgerError::KillSwitchEngaged { .. } => "KILL_SWITCH_ENGAGED",
            LedgerError::QuoteExpired(_) => "QUOTE_EXPIRED",
            LedgerError::QuoteAccepted(_) => "DUPLICATE",
            LedgerError::PairPaused { .. } => "MARKET_CLOSED",
            LedgerError::InsufficientLiquidity(_) => "INSUFFICIENT_LIQUIDITY",
            LedgerError::Compliance(_) => "COMPLIANCE_REFUSED",
            LedgerError::OfferingClosed(_) => "OFFERING_CLOSED",
            LedgerError::CancelCutoffPassed { .. } => "CANCEL_CUTOFF_PASSED",
            LedgerError::NotClaimable { .. } => "NOT_CLAIMABLE",
            LedgerError::ClaimPeriodOpen { .. } => "CLAIM_PERIOD_OPEN",
            LedgerError::NoPrice { .. } => "NO_PRICE",
            LedgerError::CampaignClosed { .. } => "CAMPAIGN_CLOSED",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum QueryError {
    #[error("bad query: {0}")]
    BadRequest(String),
    /// The store could not be read; the ledger logged why.
    #[error("the ledger could not read its store; try again, and tell the operator if it persists")]
    Unavailable,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerStatus {
    /// The last journal sequence that is durable and applied.
    pub journal_applied: u64,
    /// The last matching output applied.
    pub matching_applied: u64,
    /// Whether the link to matching is up.
    pub matching_connected: bool,
    /// Commands forwarded to matching that it has not yet confirmed.
    pub outbox_pending: u64,
    /// Why the ledger stopped its link to matching: an output it could not settle.
    pub matching_alarm: Option<String>,
}

/// Whose accounts a reserve line sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OwnerKind {
    Users,
    House,
    Entities,
}

/// One asset's books, summed from every stored account independently of
/// the ledger's memory: what each kind of owner holds for each purpose. The
/// lines sum to zero when nothing was created or lost ([`Self::balanced`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetReserve {
    pub asset: AssetId,
    /// (whose, purpose, total), ordered, zero totals left out.
    pub totals: Vec<(OwnerKind, u8, Amount)>,
}

impl AssetReserve {
    pub fn total(&self, owner: OwnerKind, purpose: u8) -> Amount {
        self.totals.iter().filter(|(o, p, _)| *o == owner && *p == purpose).map(|(.., total)| total).sum()
    }

    /// Everything users hold, whatever for.
    pub fn users(&self) -> Amount {
        self.totals.iter().filter(|(o, ..)| *o == OwnerKind::Users).map(|(.., total)| total).sum()
    }

    pub fn balanced(&self) -> bool {
        self.totals.iter().map(|(.., total)| total).sum::<Amount>() == 0
    }
}

/// One record of the ledger's journal: a command as it was received,
/// stamped with the time the ledger applied it (replay uses the stamp,
/// never the clock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub peer: u32,
    pub peer_sequence: u64,
    pub at_ms: TimestampMs,
    pub command: Command,
}
