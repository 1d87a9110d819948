//! Reads, answered on the connection's own thread straight from RocksDB:
//! the engine thread writes each batch atomically before it acknowledges
//! it, so a reader sees every acknowledged command and never half a batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ledger_core::{OrderRecord, OrderStatus};
use storage::Store;
use wire::ledger::QUERY_LIMIT_MAX;
use wire::{LedgerQuery, LedgerStatus, QueryAnswer, QueryError};

use crate::schema::{self, SchemaError};

/// What the engine and the matching link publish for status queries.
#[derive(Debug, Default)]
pub struct Progress {
    pub journal_applied: AtomicU64,
    pub matching_applied: AtomicU64,
    pub matching_connected: AtomicBool,
    pub outbox_pending: AtomicU64,
}

impl Progress {
    pub fn status(&self) -> LedgerStatus {
        LedgerStatus {
            journal_applied: self.journal_applied.load(Ordering::Acquire),
            matching_applied: self.matching_applied.load(Ordering::Acquire),
            matching_connected: self.matching_connected.load(Ordering::Acquire),
            outbox_pending: self.outbox_pending.load(Ordering::Acquire),
        }
    }
}

pub fn answer(store: &Store, progress: &Progress, query: &LedgerQuery) -> Result<QueryAnswer, QueryError> {
    read(store, progress, query).map_err(|error| match error {
        Read::Bad(detail) => QueryError::BadRequest(detail),
        Read::Schema(error) => {
            tracing::error!(%error, ?query, "a query could not read the store");
            QueryError::Unavailable
        }
    })
}

enum Read {
    Bad(String),
    Schema(SchemaError),
}

impl From<SchemaError> for Read {
    fn from(error: SchemaError) -> Read {
        Read::Schema(error)
    }
}

fn limit(limit: u32) -> Result<usize, Read> {
    if limit == 0 || limit > QUERY_LIMIT_MAX {
        return Err(Read::Bad(format!("limit must be 1 to {QUERY_LIMIT_MAX}, got {limit}")));
    }
    Ok(limit as usize)
}

fn read(store: &Store, progress: &Progress, query: &LedgerQuery) -> Result<QueryAnswer, Read> {
    Ok(match *query {
        LedgerQuery::Assets => QueryAnswer::Assets(schema::assets(store)?),
        LedgerQuery::Markets => QueryAnswer::Markets(schema::markets(store)?),
        LedgerQuery::Balances { user } => QueryAnswer::Balances(schema::balances_of_user(store, user)?),
        LedgerQuery::Order { order_id } => QueryAnswer::Order(schema::order(store, order_id)?),
        LedgerQuery::Orders { user, market, status, limit: n } => {
            let keep = |o: &OrderRecord| market.is_none_or(|m| o.order.market == m) && status.is_none_or(|s| o.status == s);
            QueryAnswer::Orders(match status {
                // Open orders have their own index: all of them, not just those among the newest of the history.
                Some(OrderStatus::Pending | OrderStatus::Open | OrderStatus::PartiallyFilled) => {
                    schema::open_orders_of_user_where(store, user, limit(n)?, keep)?
                }
                _ => schema::orders_of_user_where(store, user, limit(n)?, keep)?,
            })
        }
        LedgerQuery::UserTrades { user, market, limit: n } => {
            QueryAnswer::Trades(schema::trades_of_user_where(store, user, limit(n)?, |t| market.is_none_or(|m| t.fill.market == m))?)
        }
        LedgerQuery::MarketTrades { market, limit: n } => QueryAnswer::Trades(schema::trades_of_market(store, market, limit(n)?)?),
        LedgerQuery::Transfers { user, asset, limit: n } => QueryAnswer::Transfers(schema::transfers_of_user(store, user, asset, limit(n)?)?),
        LedgerQuery::Withdrawal { id } => QueryAnswer::Withdrawal(schema::withdrawal(store, id)?),
        LedgerQuery::Withdrawals { user, status, limit: n } => {
            let keep = |w: &ledger_core::Withdrawal| status.is_none_or(|s| w.status == s);
            QueryAnswer::Withdrawals(match user {
                Some(user) => schema::withdrawals_of_user_where(store, user, limit(n)?, keep)?,
                None => schema::withdrawals_where(store, limit(n)?, keep)?,
            })
        }
        LedgerQuery::Status => QueryAnswer::Status(progress.status()),
        LedgerQuery::Reserves => QueryAnswer::Reserves(schema::reserves(store)?),
    })
}
