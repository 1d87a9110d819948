//! The ids and units every Marionette crate speaks, and nothing else: so
//! that the money kernel, the matching engine and the API crates agree on
//! them without depending on one another.

/// A person or a bot with an account (the gateway assigns them).
pub type UserId = u64;
pub type AssetId = u32;
/// Below the configured `markets_max`: matching keeps its books in a vector indexed by it.
pub type MarketId = u32;
pub type OrderId = u64;
pub type TradeId = u64;
pub type TransferId = u64;
pub type WithdrawalId = u64;
/// An amount of one asset in its minor units (10^-scale of a whole unit).
pub type Amount = i128;
/// Milliseconds since the Unix epoch, stamped by a daemon shell on each command
/// it journals; the cores never read a clock.
pub type TimestampMs = u64;
