//! The spot exchange's tables: markets, every order by id with the open
//! ones and each user's, every trade by id with each market's and each
//! user's. Holds and balances are the kernel's.

use ledger_api::spot::{Answer, Market, OrderRecord, OrderStatus, Query, TradeRecord};
use products::spot::{tables, Spot, SpotChanges, SpotCounters, SpotState};
use storage::{Batch, Store, Table};

use super::{by_id, corrupt, decode, exact, key2, meta, newest_of, newest_where, put_encoded, SchemaError, META};
use crate::query::{limit, Read};

pub const MARKETS: Table = Table::new(tables::MARKETS);
/// Every order ever placed, by id.
pub const ORDERS: Table = Table::new(tables::ORDERS);
/// The orders still open, (user, order id) -> (): start-up loads these, not
/// all history, and a user's open orders are found without walking it.
pub const OPEN_ORDERS: Table = Table::new(tables::OPEN_ORDERS);
/// (user, order id) -> ().
pub const ORDERS_BY_USER: Table = Table::scattered(tables::ORDERS_BY_USER);
pub const TRADES: Table = Table::new(tables::TRADES);
/// (market, trade id) -> ().
pub const TRADES_BY_MARKET: Table = Table::new(tables::TRADES_BY_MARKET);
/// (user, trade id) -> ().
pub const TRADES_BY_USER: Table = Table::scattered(tables::TRADES_BY_USER);

pub const TABLES: &[Table] = &[MARKETS, ORDERS, OPEN_ORDERS, ORDERS_BY_USER, TRADES, TRADES_BY_MARKET, TRADES_BY_USER];

const META_COUNTERS: &[u8] = b"spot.counters";

fn write_order(batch: &mut Batch, record: &OrderRecord) {
    put_encoded(batch, ORDERS, &record.order.order_id.to_be_bytes(), record);
    batch.put(ORDERS_BY_USER, &key2(record.order.user, record.order.order_id), &[]);
}

pub fn write(batch: &mut Batch, spot: &Spot, changes: &SpotChanges) {
    for market in &changes.markets {
        put_encoded(batch, MARKETS, &market.id().to_be_bytes(), market);
    }
    for trade in &changes.trades {
        put_encoded(batch, TRADES, &trade.id.to_be_bytes(), trade);
        batch.put(TRADES_BY_MARKET, &key2(trade.fill.market as u64, trade.id), &[]);
        batch.put(TRADES_BY_USER, &key2(trade.fill.maker_user, trade.id), &[]);
        batch.put(TRADES_BY_USER, &key2(trade.fill.taker_user, trade.id), &[]);
    }
    for &order_id in &changes.orders {
        // An order that opened and closed in the same batch is only in closed_orders.
        if let Some(record) = spot.order(order_id) {
            write_order(batch, record);
            batch.put(OPEN_ORDERS, &key2(record.order.user, order_id), &[]);
        }
    }
    for record in &changes.closed_orders {
        write_order(batch, record);
        batch.delete(OPEN_ORDERS, &key2(record.order.user, record.order.order_id));
    }
    // Every batch: matching's outputs move the counters with no order changed.
    put_encoded(batch, META, META_COUNTERS, &spot.counters());
}

pub fn load(store: &Store) -> Result<SpotState, SchemaError> {
    let mut state = SpotState {
        counters: meta(store, META_COUNTERS)?.unwrap_or(SpotCounters { next_order: 1, next_trade: 1, matching_applied: 0 }),
        ..SpotState::default()
    };
    for market in markets(store)? {
        state.markets.insert(market.id(), market);
    }
    for item in store.scan_all(OPEN_ORDERS) {
        let (key, _) = item?;
        let order_id = open_order_id(&key)?;
        state.open_orders.insert(order_id, open_order(store, &key, order_id)?);
    }
    Ok(state)
}

pub fn markets(store: &Store) -> Result<Vec<Market>, SchemaError> {
    store.scan_all(MARKETS).map(|item| item.map_err(SchemaError::from).and_then(|(key, value)| decode(MARKETS, &key, &value))).collect()
}

pub fn order(store: &Store, order_id: u64) -> Result<Option<OrderRecord>, SchemaError> {
    by_id(store, ORDERS, order_id)
}

/// The record an `open_orders` key names; a key without one is corruption.
fn open_order(store: &Store, key: &[u8], order_id: u64) -> Result<OrderRecord, SchemaError> {
    order(store, order_id)?.ok_or_else(|| corrupt(OPEN_ORDERS, key, "an open order has no record"))
}

/// The order id in an `open_orders` key, (user, order id).
fn open_order_id(key: &[u8]) -> Result<u64, SchemaError> {
    Ok(u64::from_be_bytes(exact::<16>(OPEN_ORDERS, key)?[8..].try_into().expect("8 bytes")))
}

/// A user's open orders (pending, open or partly filled) that pass `keep`,
/// newest first: all of them, however long the user's history.
pub fn open_orders_of_user_where(store: &Store, user: u64, limit: usize, keep: impl Fn(&OrderRecord) -> bool) -> Result<Vec<OrderRecord>, SchemaError> {
    let mut out = Vec::new();
    for (key, _) in store.scan_prefix(OPEN_ORDERS, &user.to_be_bytes(), usize::MAX, true)? {
        let record = open_order(store, &key, open_order_id(&key)?)?;
        if keep(&record) {
            out.push(record);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

pub fn orders_of_user(store: &Store, user: u64, limit: usize) -> Result<Vec<OrderRecord>, SchemaError> {
    newest_of(store, ORDERS_BY_USER, ORDERS, user, limit)
}

pub fn trades_of_user(store: &Store, user: u64, limit: usize) -> Result<Vec<TradeRecord>, SchemaError> {
    newest_of(store, TRADES_BY_USER, TRADES, user, limit)
}

pub fn trades_of_market(store: &Store, market: u32, limit: usize) -> Result<Vec<TradeRecord>, SchemaError> {
    newest_of(store, TRADES_BY_MARKET, TRADES, market as u64, limit)
}

pub fn answer(store: &Store, query: &Query) -> Result<Answer, Read> {
    Ok(match *query {
        Query::Markets => Answer::Markets(markets(store)?),
        Query::Order { order_id } => Answer::Order(order(store, order_id)?),
        Query::Orders { user, market, status, limit: n } => {
            let keep = |o: &OrderRecord| market.is_none_or(|m| o.order.market == m) && status.is_none_or(|s| o.status == s);
            Answer::Orders(match status {
                // Open orders have their own index: all of them, not just those among the newest of the history.
                Some(OrderStatus::Pending | OrderStatus::Open | OrderStatus::PartiallyFilled) => open_orders_of_user_where(store, user, limit(n)?, keep)?,
                _ => newest_where(store, ORDERS_BY_USER, ORDERS, user, limit(n)?, keep)?,
            })
        }
        Query::UserTrades { user, market, limit: n } => {
            Answer::Trades(newest_where(store, TRADES_BY_USER, TRADES, user, limit(n)?, |t: &TradeRecord| market.is_none_or(|m| t.fill.market == m))?)
        }
        Query::MarketTrades { market, limit: n } => Answer::Trades(trades_of_market(store, market, limit(n)?)?),
    })
}
