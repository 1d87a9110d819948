//! The spot exchange's tables: markets, every order by id with the open
//! ones and each user's, every trade by id with each market's and each
//! user's. Holds and balances are the kernel's.

use ledger_api::candles::{self, Candle, CandleInterval};
use ledger_api::spot::{Answer, Market, OrderRecord, Query, TradeRecord};
use ledger_api::{MarketId, TimestampMs, QUERY_LIMIT_MAX};
use products::spot::{tables, Spot, SpotChanges, SpotCounters, SpotState};
use storage::{Batch, Store, Table};

use super::perpetual;
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

/// (market, interval code, start) -> the candle, for every interval in
/// which the market traded.
pub const CANDLES: Table = Table::new(tables::CANDLES);

pub const TABLES: &[Table] = &[
    MARKETS,
    ORDERS,
    OPEN_ORDERS,
    ORDERS_BY_USER,
    TRADES,
    TRADES_BY_MARKET,
    TRADES_BY_USER,
    CANDLES,
    perpetual::MARKETS,
    perpetual::POSITIONS,
    perpetual::FUNDINGS,
    perpetual::LIQUIDATIONS,
    perpetual::LIQUIDATIONS_BY_MARKET,
    perpetual::LIQUIDATIONS_BY_USER,
];

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
    for (&(market, interval, start_ms), candle) in &changes.candles {
        put_encoded(batch, CANDLES, &candle_key(market, interval, start_ms), candle);
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
    perpetual::write(batch, spot, changes);
}

pub fn load(store: &Store) -> Result<SpotState, SchemaError> {
    let mut state = SpotState {
        counters: meta(store, META_COUNTERS)?.unwrap_or(SpotCounters { next_order: 1, next_trade: 1, matching_applied: 0 }),
        ..SpotState::default()
    };
    for market in markets(store)? {
        state.markets.insert(market.id(), market);
    }
    for &market in state.markets.keys() {
        for interval in CandleInterval::ALL {
            if let Some(candle) = latest_candle(store, market, interval)? {
                state.candles.insert((market, interval), candle);
            }
        }
    }
    for item in store.scan_all(OPEN_ORDERS) {
        let (key, _) = item?;
        let order_id = open_order_id(&key)?;
        state.open_orders.insert(order_id, open_order(store, &key, order_id)?);
    }
    state.perpetuals = perpetual::load(store)?;
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

fn candle_key(market: MarketId, interval: CandleInterval, start_ms: TimestampMs) -> [u8; 13] {
    let mut key = [0; 13];
    key[..4].copy_from_slice(&market.to_be_bytes());
    key[4] = interval.code();
    key[5..].copy_from_slice(&start_ms.to_be_bytes());
    key
}

fn decode_candles(rows: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<Candle>, SchemaError> {
    rows.into_iter().map(|(key, value)| decode(CANDLES, &key, &value)).collect()
}

/// The candles of a market and interval with a start in `from_ms..end_ms`,
/// at most `limit`, oldest first (or newest first).
fn candles_between(
    store: &Store,
    market: MarketId,
    interval: CandleInterval,
    from_ms: TimestampMs,
    end_ms: TimestampMs,
    limit: usize,
    newest_first: bool,
) -> Result<Vec<Candle>, SchemaError> {
    let (start, end) = (candle_key(market, interval, from_ms), candle_key(market, interval, end_ms));
    decode_candles(store.scan_range(CANDLES, &start, &end, limit, newest_first)?)
}

fn latest_candle(store: &Store, market: MarketId, interval: CandleInterval) -> Result<Option<Candle>, SchemaError> {
    let mut prefix = [0; 5];
    prefix[..4].copy_from_slice(&market.to_be_bytes());
    prefix[4] = interval.code();
    Ok(decode_candles(store.scan_prefix(CANDLES, &prefix, 1, true)?)?.pop())
}

/// The last candle before `before_ms`, however long ago.
fn candle_before(store: &Store, market: MarketId, interval: CandleInterval, before_ms: TimestampMs) -> Result<Option<Candle>, SchemaError> {
    Ok(candles_between(store, market, interval, 0, before_ms, 1, true)?.pop())
}

pub fn candles_of(store: &Store, market: MarketId, interval: CandleInterval, from_ms: TimestampMs, to_ms: TimestampMs) -> Result<Answer, Read> {
    let intervals = to_ms.checked_sub(from_ms).map(|span| span / interval.millis() + 1);
    if intervals.is_none_or(|n| n > QUERY_LIMIT_MAX as u64) {
        return Err(Read::Bad(format!("a candle range is 1 to {QUERY_LIMIT_MAX} intervals from from_ms to to_ms, got {from_ms} to {to_ms}")));
    }
    let candles = candles_between(store, market, interval, from_ms, to_ms.saturating_add(1), QUERY_LIMIT_MAX as usize, false)?;
    Ok(Answer::Candles { before: candle_before(store, market, interval, from_ms)?, candles })
}

pub fn day_stats_of(store: &Store, market: MarketId, now_ms: TimestampMs) -> Result<Answer, Read> {
    let from_ms = candles::day_from(now_ms);
    let interval = CandleInterval::OneMinute;
    let minutes = candles_between(store, market, interval, from_ms, now_ms.saturating_add(1), candles::DAY_MINUTES as usize, false)?;
    let before = candle_before(store, market, interval, from_ms)?;
    Ok(Answer::DayStats(candles::day_stats(now_ms, before.as_ref(), &minutes)))
}

pub fn answer(store: &Store, query: &Query) -> Result<Answer, Read> {
    Ok(match *query {
        Query::Markets => Answer::Markets(markets(store)?),
        Query::Order { order_id } => Answer::Order(order(store, order_id)?),
        Query::Orders { user, market, status, limit: n } => {
            let keep = |o: &OrderRecord| market.is_none_or(|m| o.order.market == m) && status.is_none_or(|s| o.status == s);
            Answer::Orders(match status {
                // Open orders have their own index: all of them, not just those among the newest of the history.
                Some(status) if status.is_open() => open_orders_of_user_where(store, user, limit(n)?, keep)?,
                _ => newest_where(store, ORDERS_BY_USER, ORDERS, user, limit(n)?, keep)?,
            })
        }
        Query::UserTrades { user, market, limit: n } => {
            Answer::Trades(newest_where(store, TRADES_BY_USER, TRADES, user, limit(n)?, |t: &TradeRecord| market.is_none_or(|m| t.fill.market == m))?)
        }
        Query::MarketTrades { market, limit: n } => Answer::Trades(trades_of_market(store, market, limit(n)?)?),
        Query::Candles { market, interval, from_ms, to_ms } => candles_of(store, market, interval, from_ms, to_ms)?,
        Query::DayStats { market, now_ms } => day_stats_of(store, market, now_ms)?,
        Query::Perpetual(ref query) => Answer::Perpetual(perpetual::answer(store, query)?),
    })
}
