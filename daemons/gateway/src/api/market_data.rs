//! Market data: candles and rolling 24-hour tickers. The ledger builds the
//! candles from its settled trades (`ledger_api::candles`), so they are as
//! durable as the trades; this file fills the intervals without trades and
//! turns matching's units into decimals. Best bid and ask come from
//! matching's book; a perpetual market's mark and index from the ledger.

use std::collections::VecDeque;
use std::time::Duration;

use async_graphql::{Context, Enum, Error, Object, SimpleObject, Subscription, ID};
use futures_util::stream::{self, Stream};
use ledger_api::candles::{self, Candle as LedgerCandle, CandleInterval as LedgerInterval};
use ledger_api::perpetual as perpetual_api;
use ledger_api::spot::{self as api, Market as LedgerMarket, TradeRecord};
use ledger_api::{Answer, MarketId, Query, QUERY_LIMIT_MAX};
use rust_decimal::{Decimal, RoundingStrategy};
use tokio::sync::broadcast::error::RecvError;

use super::{ask_ledger, at, coded, link_error, now_ms, services, take_slot, unexpected, Catalog, DateTime, Dec};
use crate::feed::{mark_and_index, TickerReading};
use crate::ledger_client::LedgerClient;
use crate::matching_client::MatchingClient;
use crate::units::{self, MarketTerms};

/// Candles a query returns when it names no limit.
pub const CANDLES_DEFAULT: i32 = 500;
/// Digits a VWAP carries beyond the market's tick.
const VWAP_EXTRA_DIGITS: u32 = 4;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CandleInterval {
    OneMinute,
    FiveMinutes,
    FifteenMinutes,
    OneHour,
    FourHours,
    /// From 00:00 UTC.
    OneDay,
    /// From Monday 00:00 UTC.
    OneWeek,
}

impl From<CandleInterval> for LedgerInterval {
    fn from(interval: CandleInterval) -> LedgerInterval {
        match interval {
            CandleInterval::OneMinute => LedgerInterval::OneMinute,
            CandleInterval::FiveMinutes => LedgerInterval::FiveMinutes,
            CandleInterval::FifteenMinutes => LedgerInterval::FifteenMinutes,
            CandleInterval::OneHour => LedgerInterval::OneHour,
            CandleInterval::FourHours => LedgerInterval::FourHours,
            CandleInterval::OneDay => LedgerInterval::OneDay,
            CandleInterval::OneWeek => LedgerInterval::OneWeek,
        }
    }
}

/// One interval of a market's trades (OHLCV). An interval without trades
/// is flat at the close before it, with zero volume.
#[derive(SimpleObject, Clone, Debug, PartialEq)]
pub struct Candle {
    /// The interval's start, UTC.
    pub time: DateTime,
    pub open: Dec,
    pub high: Dec,
    pub low: Dec,
    pub close: Dec,
    /// Base traded.
    pub volume: Dec,
    /// Quote traded (the sum of the trades' price times quantity).
    pub quote_volume: Dec,
    pub trades: u64,
}

/// A market's last 24 hours: the current minute and the 1,439 before it.
#[derive(SimpleObject, Clone, Debug, PartialEq)]
pub struct Ticker {
    pub market: ID,
    /// When these figures were read.
    pub at: DateTime,
    /// The start of the first minute they count.
    pub from: DateTime,
    /// The last trade's price; null before the market's first trade, as
    /// are open, high, low, change, changePercent and vwap.
    pub last_price: Option<Dec>,
    /// The book's best bid now; null when no one bids.
    pub best_bid: Option<Dec>,
    /// The book's best ask now; null when no one asks.
    pub best_ask: Option<Dec>,
    /// The first price of the window; the last price when nothing traded in it.
    pub open: Option<Dec>,
    pub high: Option<Dec>,
    pub low: Option<Dec>,
    /// Last price less open.
    pub change: Option<Dec>,
    /// The change as a percentage of open, to two decimals.
    pub change_percent: Option<Dec>,
    /// Base traded.
    pub volume: Dec,
    /// Quote traded.
    pub quote_volume: Dec,
    /// Quote volume over base volume, to four digits beyond the tick; null when nothing traded.
    pub vwap: Option<Dec>,
    pub trades: u64,
    /// A perpetual market's mark price, which drives its profit, loss and
    /// liquidations; null on a spot market and before the first oracle price.
    pub mark_price: Option<Dec>,
    /// A perpetual market's index (the oracles' median); null on a spot
    /// market and while the oracles' prices are stale.
    pub index_price: Option<Dec>,
}

/// What a market's units turn into decimals with.
#[derive(Clone)]
pub(crate) struct Units {
    pub terms: MarketTerms,
}

impl Units {
    fn price(&self, ticks: u64) -> Decimal {
        units::times(ticks, self.terms.tick_size)
    }

    fn base(&self, lots: u128) -> Decimal {
        match u64::try_from(lots) {
            Ok(lots) => units::times(lots, self.terms.lot_size),
            Err(_) => Decimal::MAX,
        }
    }

    /// The quote amount of a turnover in ticks x lots: exact where a
    /// decimal holds it (a tick on a lot may be a fraction of a minor unit).
    fn quote_amount(&self, turnover_tick_lots: u128) -> Decimal {
        i128::try_from(turnover_tick_lots)
            .ok()
            .and_then(|t| Decimal::try_from_i128_with_scale(t, 0).ok())
            .and_then(|t| t.checked_mul(self.terms.tick_size)?.checked_mul(self.terms.lot_size))
            .unwrap_or(Decimal::MAX)
            .normalize()
    }

    pub(crate) fn candle(&self, candle: &LedgerCandle) -> Candle {
        Candle {
            time: at(candle.start_ms),
            open: Dec(self.price(candle.open)),
            high: Dec(self.price(candle.high)),
            low: Dec(self.price(candle.low)),
            close: Dec(self.price(candle.close)),
            volume: Dec(self.base(candle.volume_lots)),
            quote_volume: Dec(self.quote_amount(candle.turnover_tick_lots)),
            trades: candle.trades,
        }
    }

    pub(crate) fn ticker(&self, reading: &TickerReading) -> Ticker {
        let TickerReading { now_ms, ref stats, best_bid, best_ask, mark, index } = *reading;
        let stats = stats.as_ref();
        let price = |ticks: u64| Dec(self.price(ticks));
        let (open, last) = (stats.map(|s| self.price(s.open)), stats.map(|s| self.price(s.last)));
        let change = open.zip(last).and_then(|(open, last)| last.checked_sub(open));
        let change_percent = change
            .zip(open)
            .filter(|(_, open)| !open.is_zero())
            .and_then(|(change, open)| change.checked_mul(Decimal::ONE_HUNDRED)?.checked_div(open))
            .map(|percent| percent.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven).normalize());
        let (volume, quote_volume) = stats.map_or((Decimal::ZERO, Decimal::ZERO), |s| (self.base(s.volume_lots), self.quote_amount(s.turnover_tick_lots)));
        let vwap = (!volume.is_zero())
            .then(|| quote_volume.checked_div(volume))
            .flatten()
            .map(|vwap| vwap.round_dp_with_strategy(self.terms.tick_size.scale() + VWAP_EXTRA_DIGITS, RoundingStrategy::MidpointNearestEven).normalize());
        Ticker {
            market: ID(self.terms.name.clone()),
            at: at(now_ms),
            from: at(candles::day_from(now_ms)),
            last_price: last.map(Dec),
            best_bid: best_bid.map(price),
            best_ask: best_ask.map(price),
            open: open.map(Dec),
            high: stats.map(|s| price(s.high)),
            low: stats.map(|s| price(s.low)),
            change: change.map(|c| Dec(c.normalize())),
            change_percent: change_percent.map(Dec),
            volume: Dec(volume),
            quote_volume: Dec(quote_volume),
            vwap: vwap.map(Dec),
            trades: stats.map_or(0, |s| s.trades),
            mark_price: mark.map(price),
            index_price: index.map(price),
        }
    }
}

/// The interval starts a query covers, both included: `limit` intervals
/// from `from` (when given), else the `limit` up to `to` (or now); never
/// past the interval in progress.
pub fn candle_range(interval: LedgerInterval, from_ms: Option<u64>, to_ms: Option<u64>, limit: u32, now_ms: u64) -> Result<Option<(u64, u64)>, String> {
    if limit == 0 || limit > QUERY_LIMIT_MAX {
        return Err(format!("limit is 1 to {QUERY_LIMIT_MAX}"));
    }
    let step = interval.millis();
    let span = (limit as u64 - 1) * step;
    let last = interval.start_of(to_ms.unwrap_or(now_ms).min(now_ms));
    let (first, last) = match from_ms {
        Some(from_ms) => {
            // An interval that had begun at `from` is in the range.
            let first = interval.start_of(from_ms);
            (first, last.min(first.saturating_add(span)))
        }
        None => (last.saturating_sub(span), last),
    };
    Ok((first <= last).then_some((first, last)))
}

fn parse_time(text: Option<&DateTime>, field: &str) -> Result<Option<u64>, Error> {
    text.map(|t| units::parse_rfc3339(&t.0).ok_or_else(|| coded("BAD_USER_INPUT", format!("{field} is not an RFC 3339 time such as 2026-12-01T00:00:00Z"))))
        .transpose()
}

pub(crate) fn market_units(catalog: &Catalog, name: &str) -> Result<(LedgerMarket, Units), Error> {
    let (market, terms, ..) = catalog.market_by_name(name)?;
    Ok((*market, Units { terms }))
}

/// A market's filled candles over `range`, oldest first.
pub(crate) async fn read_candles(
    ledger: &LedgerClient,
    market: MarketId,
    interval: LedgerInterval,
    range: Option<(u64, u64)>,
) -> Result<Vec<LedgerCandle>, Error> {
    let Some((from_ms, to_ms)) = range else { return Ok(Vec::new()) };
    match ask_ledger(ledger, Query::Spot(api::Query::Candles { market, interval, from_ms, to_ms })).await? {
        Answer::Spot(api::Answer::Candles { before, candles: stored }) => Ok(candles::fill_gaps(interval, from_ms, to_ms, before.as_ref(), &stored)),
        other => Err(unexpected(other)),
    }
}

async fn read_ticker(ledger: &LedgerClient, matching: &MatchingClient, market: MarketId, perpetual: bool, units: &Units) -> Result<Ticker, Error> {
    let now_ms = now_ms();
    let Answer::Spot(api::Answer::DayStats(stats)) = ask_ledger(ledger, Query::Spot(api::Query::DayStats { market, now_ms })).await? else {
        return Err(unexpected("day stats"));
    };
    let book = matching.depth(market, 1).await.map_err(link_error)?;
    let best = |levels: Option<&Vec<matching_api::PriceLevel>>| levels.and_then(|l| l.first()).map(|l| l.price);
    let (best_bid, best_ask) = (best(book.as_ref().map(|b| &b.bids)), best(book.as_ref().map(|b| &b.asks)));
    let (mark, index) = if perpetual {
        match ask_ledger(ledger, Query::Spot(api::Query::Perpetual(perpetual_api::Query::Markets { now_ms }))).await? {
            Answer::Spot(api::Answer::Perpetual(perpetual_api::Answer::Markets(views))) => mark_and_index(&views, market),
            other => return Err(unexpected(other)),
        }
    } else {
        (None, None)
    };
    Ok(units.ticker(&TickerReading { now_ms, stats, best_bid, best_ask, mark, index }))
}

#[derive(Default)]
pub struct MarketDataQuery;

#[Object]
impl MarketDataQuery {
    /// A market's candles, oldest first: `limit` intervals from `from`, or
    /// the last `limit` up to `to` (default now), the one in progress
    /// included. Nothing before the market's first trade.
    async fn candles(
        &self,
        ctx: &Context<'_>,
        market: ID,
        interval: CandleInterval,
        from: Option<DateTime>,
        to: Option<DateTime>,
        #[graphql(default_with = "Some(CANDLES_DEFAULT)")] limit: Option<i32>,
    ) -> Result<Vec<Candle>, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (ledger_market, units) = market_units(&catalog, &market)?;
        let (from, to) = (parse_time(from.as_ref(), "from")?, parse_time(to.as_ref(), "to")?);
        let limit = u32::try_from(limit.unwrap_or(CANDLES_DEFAULT)).unwrap_or(0);
        let interval = LedgerInterval::from(interval);
        let range = candle_range(interval, from, to, limit, now_ms()).map_err(|reason| coded("BAD_USER_INPUT", reason))?;
        Ok(read_candles(&services(ctx).ledger, ledger_market.id(), interval, range).await?.iter().map(|c| units.candle(c)).collect())
    }

    /// A market's last 24 hours.
    async fn ticker(&self, ctx: &Context<'_>, market: ID) -> Result<Ticker, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (ledger_market, units) = market_units(&catalog, &market)?;
        let services = services(ctx);
        read_ticker(&services.ledger, &services.matching, ledger_market.id(), catalog.is_perpetual(ledger_market.id()), &units).await
    }

    /// Every market's last 24 hours.
    async fn tickers(&self, ctx: &Context<'_>) -> Result<Vec<Ticker>, Error> {
        let catalog = Catalog::load(ctx).await?;
        let mut tickers = Vec::new();
        let services = services(ctx);
        for market in &catalog.markets {
            let Some((terms, ..)) = catalog.terms(market) else { continue };
            tickers.push(read_ticker(&services.ledger, &services.matching, market.id(), catalog.is_perpetual(market.id()), &Units { terms }).await?);
        }
        Ok(tickers)
    }
}

/// The candles one subscriber was sent, moved on by ledger reads, by the
/// market feed's trades and by time: a candles subscription's pure part.
#[derive(Debug, Default)]
struct CandleFollower {
    interval: Option<LedgerInterval>,
    /// The last candle queued.
    last: Option<LedgerCandle>,
    /// Queued and not yet sent, oldest first.
    pending: VecDeque<LedgerCandle>,
}

impl CandleFollower {
    fn new(interval: LedgerInterval) -> CandleFollower {
        CandleFollower { interval: Some(interval), ..CandleFollower::default() }
    }

    fn interval(&self) -> LedgerInterval {
        self.interval.unwrap_or(LedgerInterval::OneMinute)
    }

    /// The range a read should cover at `now_ms`: from the last candle on.
    fn to_read(&self, now_ms: u64) -> (u64, u64) {
        let interval = self.interval();
        let now = interval.start_of(now_ms);
        let oldest = now.saturating_sub((QUERY_LIMIT_MAX as u64 - 1) * interval.millis());
        (self.last.map_or(now, |last| last.start_ms.clamp(oldest, now)), now)
    }

    /// Queues the candles a read returned that are news.
    fn read(&mut self, candles: &[LedgerCandle]) {
        for candle in candles {
            let is_news = self.last.is_none_or(|last| candle.start_ms > last.start_ms || (candle.start_ms == last.start_ms && *candle != last));
            if is_news {
                self.last = Some(*candle);
                self.pending.push_back(*candle);
            }
        }
    }

    /// Folds a trade the market's feed handed on, as the ledger does; one
    /// the last read already held is skipped. False when the candles must
    /// be read instead.
    fn fold(&mut self, trade: &TradeRecord) -> bool {
        if let Some(last) = self.last {
            if trade.id <= last.last_trade {
                return true;
            }
            // A flat candle this gateway began early, for an interval the ledger has not reached.
            if last.trades == 0 && self.interval().start_of(trade.at_ms) < last.start_ms {
                return false;
            }
        }
        let candle = LedgerCandle::fold(self.last, self.interval(), trade);
        self.last = Some(candle);
        self.pending.push_back(candle);
        true
    }

    /// An interval has begun by `now_ms` with no trade yet: its flat candle.
    fn roll(&mut self, now_ms: u64) {
        let now = self.interval().start_of(now_ms);
        if let Some(last) = self.last.filter(|last| last.start_ms < now) {
            let flat = last.flat_after(now);
            self.last = Some(flat);
            self.pending.push_back(flat);
        }
    }
}

/// What a candles subscription keeps between candles.
struct CandleFeed {
    ledger: LedgerClient,
    market: MarketId,
    units: Units,
    follower: CandleFollower,
}

impl CandleFeed {
    /// Reads the candles since the last one queued: at the start, and when
    /// the trades handed on cannot be folded (lost, or the gateway's clock
    /// ahead of the ledger's).
    async fn read(&mut self) -> Result<(), Error> {
        let range = self.follower.to_read(now_ms());
        let candles = read_candles(&self.ledger, self.market, self.follower.interval(), Some(range)).await?;
        self.follower.read(&candles);
        Ok(())
    }
}

#[derive(Default)]
pub struct MarketDataSubscription;

#[Subscription]
impl MarketDataSubscription {
    /// The market's candle in progress now (none before its first trade),
    /// then again whenever a trade changes it, and each new interval's as
    /// it begins (flat at the last close until something trades in it).
    async fn candles(&self, ctx: &Context<'_>, market: ID, interval: CandleInterval) -> Result<impl Stream<Item = Result<Candle, Error>>, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (ledger_market, units) = market_units(&catalog, &market)?;
        let slot = take_slot(ctx)?;
        let feed = services(ctx).feeds.market(ledger_market.id()).await.map_err(link_error)?;
        // Listening before the first read, so no trade falls between the two.
        let trades = feed.trades.subscribe();
        let mut candles =
            CandleFeed { ledger: services(ctx).ledger.clone(), market: ledger_market.id(), units, follower: CandleFollower::new(interval.into()) };
        candles.read().await?;
        Ok(stream::unfold(Some((candles, trades, (feed, slot))), |state| async move {
            let (mut candles, mut trades, held) = state?;
            loop {
                if let Some(candle) = candles.follower.pending.pop_front() {
                    let answer = candles.units.candle(&candle);
                    return Some((Ok(answer), Some((candles, trades, held))));
                }
                let interval = candles.follower.interval();
                let next_start = interval.start_of(now_ms()).saturating_add(interval.millis());
                let until_next = Duration::from_millis(next_start.saturating_sub(now_ms()));
                let read = tokio::select! {
                    trade = trades.recv() => match trade {
                        // Each trade once, folded here: no read of the ledger per trade and subscriber.
                        Ok(trade) => !candles.follower.fold(&trade),
                        // A candle is state, not an event: after a lag, a read has it all.
                        Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => return None,
                    },
                    _ = tokio::time::sleep(until_next) => {
                        candles.follower.roll(now_ms());
                        false
                    }
                };
                if read {
                    if let Err(error) = candles.read().await {
                        return Some((Err(error), None));
                    }
                }
            }
        }))
    }

    /// The market's last 24 hours now, then again when it trades or its
    /// book's top changes (at most once a second), and at least once a
    /// minute as the window slides.
    async fn ticker(&self, ctx: &Context<'_>, market: ID) -> Result<impl Stream<Item = Ticker>, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (ledger_market, units) = market_units(&catalog, &market)?;
        let slot = take_slot(ctx)?;
        let feed = services(ctx).feeds.ticker(ledger_market.id(), catalog.is_perpetual(ledger_market.id())).await.map_err(link_error)?;
        let mut readings = feed.reading.clone();
        // The reading now first (once there is one), then each that changes a figure.
        readings.mark_changed();
        Ok(stream::unfold((readings, None::<Ticker>, (feed, slot)), move |(mut readings, mut last, held)| {
            let units = units.clone();
            async move {
                loop {
                    readings.changed().await.ok()?;
                    let Some(reading) = readings.borrow_and_update().clone() else { continue };
                    let ticker = units.ticker(&reading);
                    // The time read is always new; a ticker is news when a figure changed.
                    let same = last.as_ref().is_some_and(|last| Ticker { at: last.at.clone(), from: last.from.clone(), ..ticker.clone() } == *last);
                    if !same {
                        last = Some(ticker.clone());
                        return Some((ticker, (readings, last, held)));
                    }
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use ledger_api::candles::{CandleInterval as I, DayStats, MINUTE_MS};
    use ledger_api::AssetSpec;

    use super::*;

    const NOW: u64 = 1_796_601_600_000 + 90 * MINUTE_MS + 30_000;

    #[test]
    fn a_range_is_limit_intervals_up_to_now_or_from_a_start() {
        let minute = I::OneMinute.start_of(NOW);
        assert_eq!(candle_range(I::OneMinute, None, None, 3, NOW), Ok(Some((minute - 2 * MINUTE_MS, minute))));
        assert_eq!(candle_range(I::OneMinute, Some(minute - 10 * MINUTE_MS + 5), None, 3, NOW), Ok(Some((minute - 10 * MINUTE_MS, minute - 8 * MINUTE_MS))));
        assert_eq!(candle_range(I::OneMinute, Some(minute - MINUTE_MS), None, 500, NOW), Ok(Some((minute - MINUTE_MS, minute))), "never past now");
        assert_eq!(candle_range(I::OneMinute, None, Some(NOW + 3_600_000), 1, NOW), Ok(Some((minute, minute))), "a future `to` is now");
        assert_eq!(candle_range(I::OneMinute, Some(NOW + MINUTE_MS), None, 5, NOW), Ok(None), "from the future: nothing");
        assert!(candle_range(I::OneMinute, None, None, 0, NOW).is_err());
        assert!(candle_range(I::OneMinute, None, None, QUERY_LIMIT_MAX + 1, NOW).is_err());
        assert_eq!(candle_range(I::OneWeek, None, None, QUERY_LIMIT_MAX, 1_000), Ok(Some((0, 0))), "saturates at the epoch");
    }

    fn trade(id: u64, at_ms: u64, price: u64) -> TradeRecord {
        let fill = matching_api::Fill {
            market: 1,
            maker_order: 1,
            maker_user: 1,
            taker_order: 2,
            taker_user: 2,
            taker_side: matching_api::Side::Sell,
            price,
            quantity: 1,
            notional: price as u128,
            notional_rounding: 0,
            maker_fee: 0,
            taker_fee: 0,
        };
        TradeRecord { id, fill, buyer_fee: 0, seller_fee: 0, at_ms }
    }

    proptest::proptest! {
        /// A subscriber that read the candles after any prefix of the
        /// trades, then folds the rest as the feed hands them on (some twice,
        /// as a feed started before the read does) and rolls into new
        /// intervals on its timer, ends at the ledger's own candle.
        #[test]
        fn following_the_trades_ends_at_the_ledgers_candle(
            steps in proptest::collection::vec((0u64..200_000, 1u64..100), 1..60),
            read_after in 0usize..60,
            repeats in 0usize..5,
            interval in proptest::sample::select(I::ALL.to_vec()),
        ) {
            let mut at = NOW;
            let trades: Vec<TradeRecord> = steps.iter().enumerate().map(|(i, (gap, price))| { at += gap; trade(i as u64 + 1, at, *price) }).collect();
            let ledger = |upto: usize| trades[..upto].iter().fold(None, |latest, t| Some(LedgerCandle::fold(latest, interval, t)));
            let read_after = read_after.min(trades.len());
            let mut follower = CandleFollower::new(interval);
            // The read: the ledger's latest candle so far.
            follower.read(&ledger(read_after).into_iter().collect::<Vec<_>>());
            // The feed hands on a few trades the read already held, then the rest, rolling between them.
            for trade in &trades[read_after.saturating_sub(repeats)..] {
                follower.roll(trade.at_ms - 1);
                proptest::prop_assert!(follower.fold(trade), "a trade on the ledger's clock never needs a read");
            }
            proptest::prop_assert_eq!(follower.last, ledger(trades.len()));
            let sent: Vec<LedgerCandle> = follower.pending.iter().copied().collect();
            proptest::prop_assert!(sent.windows(2).all(|w| w[0].start_ms <= w[1].start_ms), "candles go forward: {:?}", sent);
        }
    }

    #[test]
    fn a_flat_candle_begun_early_asks_for_a_read() {
        let mut follower = CandleFollower::new(I::OneMinute);
        assert!(follower.fold(&trade(1, NOW, 100)));
        follower.roll(NOW + MINUTE_MS);
        assert_eq!(follower.last.map(|c| (c.trades, c.close)), Some((0, 100)), "the next minute, flat");
        assert!(!follower.fold(&trade(2, NOW + 1, 90)), "a trade the ledger stamped in the minute before");
        assert!(follower.fold(&trade(1, NOW, 100)), "one already folded is skipped");
        assert_eq!(follower.pending.len(), 2);
    }

    #[test]
    fn a_ticker_is_exact_decimals() {
        let spec = matching_api::MarketSpec {
            id: 1,
            quote_units_per_tick_lot: 1,
            tick_lot_scale: 0,
            maker_fee_ppm: 0,
            taker_fee_ppm: 0,
            price_ticks_max: 1 << 40,
            quantity_lots_max: 1 << 30,
            price_band_ppm: 0,
        };
        let market = LedgerMarket { base: 1, quote: 2, base_units_per_lot: 1_000_000, spec, trading: true };
        let (base, quote) = (AssetSpec { id: 1, symbol: "BTC".into(), scale: 8 }, AssetSpec { id: 2, symbol: "USD".into(), scale: 2 });
        let units = Units { terms: units::market_terms(&market, &base, &quote) };
        // Tick 1 USD, lot 0.01 BTC. Opened at 100, last 103; 3 lots for 306 ticks x lots (cents).
        let stats = DayStats { from_ms: 0, open: 100, high: 104, low: 99, last: 103, volume_lots: 3, turnover_tick_lots: 306, trades: 3 };
        let reading = |stats: Option<DayStats>, best_bid: Option<u64>| TickerReading { now_ms: NOW, stats, best_bid, best_ask: None, mark: None, index: None };
        let ticker = units.ticker(&reading(Some(stats), Some(102)));
        assert_eq!(ticker.market.0, "BTC-USD");
        assert_eq!(ticker.last_price, Some(Dec(Decimal::new(103, 0))));
        assert_eq!(ticker.change, Some(Dec(Decimal::new(3, 0))));
        assert_eq!(ticker.change_percent, Some(Dec(Decimal::new(3, 0))));
        assert_eq!(ticker.volume, Dec(Decimal::new(3, 2)));
        assert_eq!(ticker.quote_volume, Dec(Decimal::new(306, 2)));
        assert_eq!(ticker.vwap, Some(Dec(Decimal::new(102, 0))), "3.06 USD for 0.03 BTC");
        assert_eq!(ticker.best_bid, Some(Dec(Decimal::new(102, 0))));
        assert_eq!(ticker.best_ask, None);
        let stats = DayStats { volume_lots: 3, turnover_tick_lots: 307, ..stats };
        let rounded = units.ticker(&reading(Some(stats), None));
        assert_eq!(rounded.vwap, Some(Dec(Decimal::new(1_023_333, 4))), "3.07 / 0.03 to four digits past the tick");
        let never = units.ticker(&reading(None, None));
        assert_eq!((never.last_price, never.vwap, never.trades, never.volume), (None, None, 0, Dec(Decimal::ZERO)));
        assert_eq!((never.mark_price, never.index_price), (None, None), "a spot market has no mark");
        let marked = units.ticker(&TickerReading { mark: Some(101), index: Some(100), ..reading(None, None) });
        assert_eq!((marked.mark_price, marked.index_price), (Some(Dec(Decimal::new(101, 0))), Some(Dec(Decimal::new(100, 0)))));
        // Tick 0.01 USD, lot 0.0001 BTC: a tick on a lot is a ten-thousandth of a cent, and
        // 0.0003 BTC at 50,000.01 and 0.0001 at 50,000.00 is 20.000003 USD, not rounded.
        let spec = matching_api::MarketSpec { quote_units_per_tick_lot: 1, tick_lot_scale: 4, ..spec };
        let market = LedgerMarket { base_units_per_lot: 10_000, spec, ..market };
        let units = Units { terms: units::market_terms(&market, &base, &quote) };
        let turnover = 3 * 5_000_001 + 5_000_000;
        let stats = DayStats { open: 5_000_001, high: 5_000_001, low: 5_000_000, last: 5_000_000, volume_lots: 4, turnover_tick_lots: turnover, ..stats };
        let fine = units.ticker(&reading(Some(stats), None));
        assert_eq!((fine.volume, fine.quote_volume), (Dec(Decimal::new(4, 4)), Dec(Decimal::new(20_000_003, 6))));
        assert_eq!(fine.vwap, Some(Dec(Decimal::new(5_000_000_750, 5))), "20.000003 / 0.0004 = 50,000.0075");
    }
}
