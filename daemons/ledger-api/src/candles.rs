//! A spot market's candles (OHLCV) and its rolling 24 hours, in matching's
//! units: prices in ticks, quantities in lots, quote turnover in ticks x
//! lots (exact, where a trade's notional in minor units is rounded). The ledger keeps one candle per market, interval and start in
//! which something traded, built from its settled trades (so candles are
//! as durable as the trades and the same after any replay); intervals
//! without a trade are filled when read ([`fill_gaps`]).

use serde::{Deserialize, Serialize};

use crate::spot::TradeRecord;
use crate::{TimestampMs, TradeId};

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 60 * MINUTE_MS;
pub const DAY_MS: u64 = 24 * HOUR_MS;
const WEEK_MS: u64 = 7 * DAY_MS;
/// Weeks start on Monday 00:00 UTC, as exchanges chart them; the Unix
/// epoch was a Thursday, three days after a Monday.
const WEEK_SHIFT_MS: u64 = 3 * DAY_MS;
/// The one-minute candles the rolling 24 hours add up: the current minute
/// and the 1,439 before it.
pub const DAY_MINUTES: u64 = DAY_MS / MINUTE_MS;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CandleInterval {
    OneMinute,
    FiveMinutes,
    FifteenMinutes,
    OneHour,
    FourHours,
    OneDay,
    OneWeek,
}

impl CandleInterval {
    pub const ALL: [CandleInterval; 7] = [
        CandleInterval::OneMinute,
        CandleInterval::FiveMinutes,
        CandleInterval::FifteenMinutes,
        CandleInterval::OneHour,
        CandleInterval::FourHours,
        CandleInterval::OneDay,
        CandleInterval::OneWeek,
    ];

    pub fn millis(self) -> u64 {
        match self {
            CandleInterval::OneMinute => MINUTE_MS,
            CandleInterval::FiveMinutes => 5 * MINUTE_MS,
            CandleInterval::FifteenMinutes => 15 * MINUTE_MS,
            CandleInterval::OneHour => HOUR_MS,
            CandleInterval::FourHours => 4 * HOUR_MS,
            CandleInterval::OneDay => DAY_MS,
            CandleInterval::OneWeek => WEEK_MS,
        }
    }

    /// Its byte in storage keys; never reused for another interval.
    pub fn code(self) -> u8 {
        match self {
            CandleInterval::OneMinute => 1,
            CandleInterval::FiveMinutes => 2,
            CandleInterval::FifteenMinutes => 3,
            CandleInterval::OneHour => 4,
            CandleInterval::FourHours => 5,
            CandleInterval::OneDay => 6,
            CandleInterval::OneWeek => 7,
        }
    }

    pub fn from_code(code: u8) -> Option<CandleInterval> {
        CandleInterval::ALL.into_iter().find(|interval| interval.code() == code)
    }

    /// The start of the interval holding `at_ms`, in UTC.
    pub fn start_of(self, at_ms: TimestampMs) -> TimestampMs {
        let shift = if self == CandleInterval::OneWeek { WEEK_SHIFT_MS } else { 0 };
        // The first days of 1970 belong to a week that began in 1969.
        at_ms.saturating_sub((at_ms + shift) % self.millis())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Candle {
    pub start_ms: TimestampMs,
    pub open: u64,
    pub high: u64,
    pub low: u64,
    pub close: u64,
    /// Base traded, in lots.
    pub volume_lots: u128,
    /// Quote traded, as the sum of price x quantity in ticks x lots: times
    /// one tick on one lot it is the quote volume, exactly.
    pub turnover_tick_lots: u128,
    pub trades: u64,
    /// The last trade folded in (in a flat candle, the one before it), so
    /// that a reader following the trades after reading a candle folds
    /// each one exactly once.
    pub last_trade: TradeId,
}

impl Candle {
    /// The latest candle of an interval once `trade` is folded into
    /// `latest` (the market's latest candle of that interval, if any): the
    /// trade's own interval opens a new candle; a trade stamped before the
    /// latest candle (the clock stepped back) joins it, so a stored interval
    /// is never reopened; and a flat candle takes the trade as its first.
    pub fn fold(latest: Option<Candle>, interval: CandleInterval, trade: &TradeRecord) -> Candle {
        let start_ms = interval.start_of(trade.at_ms);
        let (price, quantity) = (trade.fill.price, trade.fill.quantity as u128);
        let turnover = price as u128 * quantity;
        let opened = |start_ms| Candle {
            start_ms,
            open: price,
            high: price,
            low: price,
            close: price,
            volume_lots: quantity,
            turnover_tick_lots: turnover,
            trades: 1,
            last_trade: trade.id,
        };
        match latest {
            None => opened(start_ms),
            Some(latest) if start_ms > latest.start_ms => opened(start_ms),
            Some(latest) if latest.trades == 0 => opened(latest.start_ms),
            Some(latest) => Candle {
                high: latest.high.max(price),
                low: latest.low.min(price),
                close: price,
                volume_lots: latest.volume_lots.saturating_add(quantity),
                turnover_tick_lots: latest.turnover_tick_lots.saturating_add(turnover),
                trades: latest.trades.saturating_add(1),
                last_trade: trade.id,
                ..latest
            },
        }
    }

    /// An interval without trades after this candle: flat at its close.
    pub fn flat_after(&self, start_ms: TimestampMs) -> Candle {
        Candle { start_ms, open: self.close, high: self.close, low: self.close, close: self.close, volume_lots: 0, turnover_tick_lots: 0, trades: 0, ..*self }
    }
}

/// Every interval whose start is in `from_ms..=to_ms` (both aligned to
/// `interval`), oldest first: the stored candle where something traded,
/// else a flat one at the close before it. Intervals before the market's
/// first trade have no candle. `before` is the last stored candle before
/// `from_ms`; `stored` the stored ones in the range, oldest first.
pub fn fill_gaps(interval: CandleInterval, from_ms: TimestampMs, to_ms: TimestampMs, before: Option<&Candle>, stored: &[Candle]) -> Vec<Candle> {
    let step = interval.millis();
    let mut out = Vec::new();
    let mut last = before.copied();
    let mut stored = stored.iter().filter(|c| c.start_ms >= from_ms && c.start_ms <= to_ms).peekable();
    let mut start = from_ms;
    while start <= to_ms {
        let candle = match stored.peek() {
            Some(candle) if candle.start_ms == start => stored.next().copied(),
            _ => last.map(|last| last.flat_after(start)),
        };
        if let Some(candle) = candle {
            out.push(candle);
            last = Some(candle);
        }
        let Some(next) = start.checked_add(step) else { break };
        start = next;
    }
    out
}

/// A market's last 24 hours, from its one-minute candles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DayStats {
    /// The start of the first minute counted.
    pub from_ms: TimestampMs,
    /// The first price in the window, or the last before it when nothing traded since.
    pub open: u64,
    pub high: u64,
    pub low: u64,
    /// The last trade's price, in the window or before it.
    pub last: u64,
    pub volume_lots: u128,
    pub turnover_tick_lots: u128,
    pub trades: u64,
}

/// The first minute the rolling 24 hours at `now_ms` count.
pub fn day_from(now_ms: TimestampMs) -> TimestampMs {
    CandleInterval::OneMinute.start_of(now_ms).saturating_sub((DAY_MINUTES - 1) * MINUTE_MS)
}

/// The rolling 24 hours at `now_ms`: the one-minute candles from
/// [`day_from`] on (`minutes`, oldest first) and `before`, the last one
/// before them. None before the market's first trade.
pub fn day_stats(now_ms: TimestampMs, before: Option<&Candle>, minutes: &[Candle]) -> Option<DayStats> {
    let from_ms = day_from(now_ms);
    let in_window: Vec<&Candle> = minutes.iter().filter(|c| c.start_ms >= from_ms && c.start_ms <= now_ms).collect();
    let (Some(first), Some(last)) = (in_window.first(), in_window.last()) else {
        return before.map(|before| DayStats {
            from_ms,
            open: before.close,
            high: before.close,
            low: before.close,
            last: before.close,
            volume_lots: 0,
            turnover_tick_lots: 0,
            trades: 0,
        });
    };
    Some(DayStats {
        from_ms,
        open: first.open,
        high: in_window.iter().map(|c| c.high).max().unwrap_or(first.high),
        low: in_window.iter().map(|c| c.low).min().unwrap_or(first.low),
        last: last.close,
        volume_lots: in_window.iter().fold(0u128, |sum, c| sum.saturating_add(c.volume_lots)),
        turnover_tick_lots: in_window.iter().fold(0u128, |sum, c| sum.saturating_add(c.turnover_tick_lots)),
        trades: in_window.iter().fold(0u64, |sum, c| sum.saturating_add(c.trades)),
    })
}

#[cfg(test)]
mod tests {
    use matching_api::{Fill, Side};
    use proptest::prelude::*;

    use super::*;

    fn trade(id: TradeId, at_ms: TimestampMs, price: u64, quantity: u64) -> TradeRecord {
        let fill = Fill {
            market: 1,
            maker_order: 1,
            maker_user: 1,
            taker_order: 2,
            taker_user: 2,
            taker_side: Side::Buy,
            price,
            quantity,
            notional: price as u128 * quantity as u128 * 3,
            notional_rounding: 0,
            maker_fee: 0,
            taker_fee: 0,
        };
        TradeRecord { id, fill, buyer_fee: 0, seller_fee: 0, at_ms }
    }

    /// 2026-12-07 00:00 UTC, a Monday.
    const MONDAY_MS: u64 = 1_796_601_600_000;

    #[test]
    fn weeks_start_on_monday_and_days_at_midnight_utc() {
        let wednesday_noon = MONDAY_MS + 2 * DAY_MS + 12 * HOUR_MS;
        assert_eq!(CandleInterval::OneWeek.start_of(wednesday_noon), MONDAY_MS);
        assert_eq!(CandleInterval::OneWeek.start_of(MONDAY_MS), MONDAY_MS);
        assert_eq!(CandleInterval::OneWeek.start_of(MONDAY_MS - 1), MONDAY_MS - WEEK_MS);
        assert_eq!(CandleInterval::OneDay.start_of(wednesday_noon), MONDAY_MS + 2 * DAY_MS);
        assert_eq!(CandleInterval::FourHours.start_of(wednesday_noon + 3 * HOUR_MS), MONDAY_MS + 2 * DAY_MS + 12 * HOUR_MS);
        assert_eq!(CandleInterval::OneWeek.start_of(0), 0, "1970's first Thursday saturates");
    }

    #[test]
    fn codes_are_distinct_and_round_trip() {
        for interval in CandleInterval::ALL {
            assert_eq!(CandleInterval::from_code(interval.code()), Some(interval));
        }
        assert_eq!(CandleInterval::from_code(0), None);
        assert_eq!(CandleInterval::from_code(8), None);
    }

    #[test]
    fn gaps_are_flat_at_the_previous_close_and_nothing_precedes_the_first_trade() {
        let step = MINUTE_MS;
        let first = Candle::fold(None, CandleInterval::OneMinute, &trade(1, MONDAY_MS + step, 100, 2));
        let first = Candle::fold(Some(first), CandleInterval::OneMinute, &trade(2, MONDAY_MS + step + 59_999, 104, 1));
        assert_eq!(
            (first.open, first.high, first.low, first.close, first.volume_lots, first.turnover_tick_lots, first.trades),
            (100, 104, 100, 104, 3, 304, 2)
        );
        let third = Candle::fold(Some(first), CandleInterval::OneMinute, &trade(3, MONDAY_MS + 3 * step, 99, 1));
        assert_eq!((third.start_ms, third.open, third.trades, third.last_trade), (MONDAY_MS + 3 * step, 99, 1, 3), "a later minute opens its own");
        let filled = fill_gaps(CandleInterval::OneMinute, MONDAY_MS, MONDAY_MS + 4 * step, None, &[first, third]);
        let starts: Vec<u64> = filled.iter().map(|c| (c.start_ms - MONDAY_MS) / step).collect();
        assert_eq!(starts, [1, 2, 3, 4], "no candle before the first trade");
        assert_eq!(
            filled[1],
            Candle {
                start_ms: MONDAY_MS + 2 * step,
                open: 104,
                high: 104,
                low: 104,
                close: 104,
                volume_lots: 0,
                turnover_tick_lots: 0,
                trades: 0,
                last_trade: 2
            }
        );
        assert_eq!(filled[3].close, 99);
        assert_eq!(filled[3].trades, 0);
        let from_before = fill_gaps(CandleInterval::OneMinute, MONDAY_MS + 2 * step, MONDAY_MS + 2 * step, Some(&first), &[]);
        assert_eq!(from_before, [first.flat_after(MONDAY_MS + 2 * step)]);
    }

    #[test]
    fn a_trade_stamped_early_joins_the_latest_candle_and_a_flat_one_takes_its_first() {
        let latest = Candle::fold(None, CandleInterval::OneHour, &trade(7, MONDAY_MS + 2 * HOUR_MS, 100, 1));
        let early = Candle::fold(Some(latest), CandleInterval::OneHour, &trade(8, MONDAY_MS + HOUR_MS, 90, 1));
        assert_eq!((early.start_ms, early.low, early.close, early.trades, early.last_trade), (MONDAY_MS + 2 * HOUR_MS, 90, 90, 2, 8));
        let flat = early.flat_after(MONDAY_MS + 3 * HOUR_MS);
        assert_eq!((flat.trades, flat.last_trade), (0, 8), "a flat candle reflects the trades up to the last one");
        let first = Candle::fold(Some(flat), CandleInterval::OneHour, &trade(9, MONDAY_MS + 3 * HOUR_MS + 5, 95, 2));
        assert_eq!(
            (first.start_ms, first.open, first.low, first.high, first.volume_lots, first.trades),
            (MONDAY_MS + 3 * HOUR_MS, 95, 95, 95, 2, 1),
            "not the flat close"
        );
    }

    #[test]
    fn a_day_without_trades_is_flat_at_the_last_price() {
        let old = Candle::fold(None, CandleInterval::OneMinute, &trade(1, MONDAY_MS, 500, 3));
        let now = MONDAY_MS + 3 * DAY_MS;
        let stats = day_stats(now, Some(&old), &[]).expect("traded once");
        assert_eq!((stats.open, stats.high, stats.low, stats.last, stats.trades, stats.volume_lots), (500, 500, 500, 500, 0, 0));
        assert_eq!(day_stats(now, None, &[]), None, "never traded");
    }

    fn trades() -> impl Strategy<Value = Vec<(u64, u64, u64)>> {
        // (milliseconds after MONDAY_MS, price, quantity), within three days.
        proptest::collection::vec((0..3 * DAY_MS, 1..1_000u64, 1..50u64), 0..200)
    }

    /// The candles the ledger would store: trades in time order folded per interval start.
    fn build(interval: CandleInterval, trades: &[(u64, u64, u64)]) -> Vec<Candle> {
        let mut sorted = trades.to_vec();
        sorted.sort_by_key(|t| t.0);
        let mut out: Vec<Candle> = Vec::new();
        for (id, (offset, price, quantity)) in sorted.into_iter().enumerate() {
            let candle = Candle::fold(out.last().copied(), interval, &trade(id as TradeId + 1, MONDAY_MS + offset, price, quantity));
            match out.last_mut() {
                Some(last) if last.start_ms == candle.start_ms => *last = candle,
                _ => out.push(candle),
            }
        }
        out
    }

    proptest! {
        /// Filled candles: one per interval from the first trade on, each
        /// opening at the close before it, and the volumes add up to the trades'.
        #[test]
        fn filled_candles_are_continuous_and_conserve_volume(trades in trades(), interval in proptest::sample::select(CandleInterval::ALL.to_vec())) {
            let stored = build(interval, &trades);
            let (from, to) = (interval.start_of(MONDAY_MS), interval.start_of(MONDAY_MS + 3 * DAY_MS));
            let filled = fill_gaps(interval, from, to, None, &stored);
            let volume: u128 = filled.iter().map(|c| c.volume_lots).sum();
            prop_assert_eq!(volume, trades.iter().map(|t| t.2 as u128).sum::<u128>());
            prop_assert_eq!(filled.iter().map(|c| c.trades).sum::<u64>(), trades.len() as u64);
            if let Some(first) = stored.first() {
                prop_assert_eq!(filled.len() as u64, (to - first.start_ms) / interval.millis() + 1);
            } else {
                prop_assert!(filled.is_empty());
            }
            for pair in filled.windows(2) {
                prop_assert_eq!(pair[1].start_ms - pair[0].start_ms, interval.millis());
                if pair[1].trades == 0 {
                    prop_assert_eq!(pair[1].open, pair[0].close);
                }
            }
            for candle in &filled {
                prop_assert!(candle.low <= candle.open.min(candle.close) && candle.high >= candle.open.max(candle.close));
            }
            // Any sub-range, given the stored candle before it, is the same slice.
            if filled.len() > 2 {
                let cut = filled[filled.len() / 2].start_ms;
                let before = stored.iter().rev().find(|c| c.start_ms < cut);
                let tail = fill_gaps(interval, cut, to, before, &stored);
                prop_assert_eq!(&tail[..], &filled[filled.len() / 2..]);
            }
        }

        /// The rolling day equals the trades of its window folded directly.
        #[test]
        fn the_day_is_its_window_of_trades(trades in trades(), now_offset in 0..3 * DAY_MS) {
            let now = MONDAY_MS + now_offset;
            let minutes = build(CandleInterval::OneMinute, &trades);
            let from = day_from(now);
            let before = minutes.iter().rev().find(|c| c.start_ms < from);
            let stats = day_stats(now, before, &minutes);
            let mut window: Vec<(u64, u64, u64)> = trades.iter().copied().filter(|t| MONDAY_MS + t.0 >= from && CandleInterval::OneMinute.start_of(MONDAY_MS + t.0) <= now).collect();
            window.sort_by_key(|t| t.0);
            match (stats, window.first(), window.last()) {
                (Some(stats), Some(first), Some(_)) => {
                    prop_assert_eq!(stats.trades, window.len() as u64);
                    prop_assert_eq!(stats.high, window.iter().map(|t| t.1).max().unwrap_or(0));
                    prop_assert_eq!(stats.low, window.iter().map(|t| t.1).min().unwrap_or(0));
                    prop_assert_eq!(stats.volume_lots, window.iter().map(|t| t.2 as u128).sum::<u128>());
                    // Trades of one millisecond keep their order in the sort, as in the ledger.
                    prop_assert_eq!(stats.open, minutes.iter().find(|c| c.start_ms >= from).map(|c| c.open).unwrap_or(first.1));
                }
                (Some(stats), None, None) => {
                    prop_assert_eq!(stats.trades, 0);
                    prop_assert_eq!(Some(stats.last), before.map(|c| c.close));
                }
                (None, None, None) => prop_assert!(before.is_none()),
                (stats, first, _) => prop_assert!(false, "stats {:?} with window starting {:?}", stats, first),
            }
        }
    }
}
