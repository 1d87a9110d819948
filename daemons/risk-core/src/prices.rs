//! The index and the mark.
//!
//! **Index:** the median of the prices the market's oracles submitted
//! within the staleness limit (an even count: the two middle prices'
//! mean, rounded down to a tick); fewer fresh sources than the market
//! requires and there is no index: the market then only takes orders
//! that reduce positions.
//!
//! **Mark:** the median of three prices (Binance's):
//! 1. the index plus the funding basis: `index x (1 + rate x time to the
//!    next funding / interval)`, the rate the one the premium so far
//!    points at;
//! 2. the index plus the moving average of the book's basis (the mid
//!    price less the index, sampled);
//! 3. the last trade.
//!
//! Without a trade yet, the mean of the first two. The mark, never the last
//! trade alone, drives profit and loss and liquidation, so one trade
//! printed far away moves nobody's margin.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{floor_div, Ticks, PPB};

/// An oracle's price: the source, the price in ticks, and when the ledger
/// stamped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feed {
    pub source: u32,
    pub price: Ticks,
    pub at_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("the index is stale: {fresh} oracle prices are newer than the staleness limit, {needed} are needed")]
    Stale { fresh: usize, needed: usize },
}

/// The median of the feeds stamped at most `staleness_ms` before `now_ms`,
/// when at least `sources_min` (at least one) are.
pub fn index_price(feeds: &[Feed], now_ms: u64, staleness_ms: u64, sources_min: usize) -> Result<Ticks, IndexError> {
    let mut fresh: Vec<Ticks> = feeds.iter().filter(|feed| now_ms.saturating_sub(feed.at_ms) <= staleness_ms).map(|feed| feed.price).collect();
    let needed = sources_min.max(1);
    if fresh.len() < needed {
        return Err(IndexError::Stale { fresh: fresh.len(), needed });
    }
    fresh.sort_unstable();
    Ok(median_sorted(&fresh))
}

/// The median of sorted, non-empty prices; of an even count, the mean of
/// the middle two rounded down.
fn median_sorted(prices: &[Ticks]) -> Ticks {
    let middle = prices.len() / 2;
    if prices.len() % 2 == 1 {
        prices[middle]
    } else {
        // Without overflow: a + (b - a) / 2 with a <= b.
        prices[middle - 1] + (prices[middle] - prices[middle - 1]) / 2
    }
}

/// What the mark is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkInputs {
    pub index: Ticks,
    /// The funding rate the premium so far points at, in billionths.
    pub funding_rate_ppb: i64,
    pub until_funding_ms: u64,
    pub funding_interval_ms: u64,
    /// The moving average of the mid price less the index, in ticks; `None`
    /// before the first sample.
    pub basis_average: Option<i64>,
    pub last_trade: Option<Ticks>,
    pub price_ticks_max: Ticks,
}

/// The three candidates of the mark, before the median: for display.
pub fn mark_candidates(inputs: &MarkInputs) -> [Option<Ticks>; 3] {
    let clamp = |price: i128| price.clamp(1, i128::from(inputs.price_ticks_max.max(1))) as Ticks;
    let index = i128::from(clamp(i128::from(inputs.index)));
    let interval = i128::from(inputs.funding_interval_ms.max(1));
    let until = i128::from(inputs.until_funding_ms).min(interval);
    // The part of the rate still to come, to a billionth (within the rate,
    // so the index times it fits), then of the index: under a tick lost.
    let rate = i128::from(inputs.funding_rate_ppb).clamp(-PPB, PPB);
    let funding_basis = floor_div(index * floor_div(rate * until, interval), PPB);
    [Some(clamp(index + funding_basis)), Some(clamp(index + i128::from(inputs.basis_average.unwrap_or(0)))), inputs.last_trade.map(i128::from).map(clamp)]
}

/// The mark price: the median of [`mark_candidates`].
pub fn mark_price(inputs: &MarkInputs) -> Ticks {
    let mut prices: Vec<Ticks> = mark_candidates(inputs).into_iter().flatten().collect();
    prices.sort_unstable();
    median_sorted(&prices)
}

/// A moving average of samples over a time window (the book's basis for
/// the mark), bounded in count: the oldest sample goes first when full.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovingAverage {
    samples: VecDeque<(u64, i64)>,
}

impl MovingAverage {
    pub const SAMPLES_MAX: usize = 1_024;

    /// Adds a sample stamped `at_ms` and forgets those older than the window.
    pub fn push(&mut self, at_ms: u64, value: i64, window_ms: u64) {
        if self.samples.len() == Self::SAMPLES_MAX {
            self.samples.pop_front();
        }
        self.samples.push_back((at_ms, value));
        self.forget(at_ms, window_ms);
    }

    fn forget(&mut self, now_ms: u64, window_ms: u64) {
        while self.samples.front().is_some_and(|(at_ms, _)| now_ms.saturating_sub(*at_ms) > window_ms) {
            self.samples.pop_front();
        }
    }

    /// The mean of the samples within the window before `now_ms`, rounded
    /// down; `None` without one.
    pub fn average(&self, now_ms: u64, window_ms: u64) -> Option<i64> {
        let (sum, count) = self
            .samples
            .iter()
            .filter(|(at_ms, _)| now_ms.saturating_sub(*at_ms) <= window_ms)
            .fold((0i128, 0i128), |(sum, count), (_, value)| (sum + i128::from(*value), count + 1));
        (count > 0).then(|| floor_div(sum, count) as i64)
    }

    /// The samples kept, oldest first: (at, value).
    pub fn samples(&self) -> impl Iterator<Item = (u64, i64)> + '_ {
        self.samples.iter().copied()
    }

    /// An average with these samples (oldest first), the newest
    /// [`Self::SAMPLES_MAX`] of them: as [`Self::samples`] gave them.
    pub fn from_samples(samples: impl IntoIterator<Item = (u64, i64)>) -> MovingAverage {
        let mut samples: VecDeque<(u64, i64)> = samples.into_iter().collect();
        while samples.len() > Self::SAMPLES_MAX {
            samples.pop_front();
        }
        MovingAverage { samples }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(source: u32, price: Ticks, at_ms: u64) -> Feed {
        Feed { source, price, at_ms }
    }

    #[test]
    fn the_index_is_the_median_of_fresh_feeds() {
        let feeds = [feed(1, 600_000, 1_000), feed(2, 600_500, 9_000), feed(3, 601_000, 9_500), feed(4, 900_000, 0)];
        // At 10 s with a 10 s limit all four are fresh: the mean of the middle two.
        assert_eq!(index_price(&feeds, 10_000, 10_000, 1), Ok(600_750));
        // At 10.5 s the fourth (stamped at 0) is stale: the median of three.
        assert_eq!(index_price(&feeds, 10_500, 10_000, 1), Ok(600_500));
        // At 19.4 s only the third is left; two are required.
        assert_eq!(index_price(&feeds, 19_400, 10_000, 2), Err(IndexError::Stale { fresh: 1, needed: 2 }));
        assert_eq!(index_price(&[], 0, 10_000, 0), Err(IndexError::Stale { fresh: 0, needed: 1 }));
    }

    #[test]
    fn the_mark_is_the_median_of_three() {
        let inputs = MarkInputs {
            index: 600_000,
            // 0.01% with half the interval left: +0.005% = 30 ticks.
            funding_rate_ppb: 100_000,
            until_funding_ms: 4 * 3_600_000,
            funding_interval_ms: 8 * 3_600_000,
            basis_average: Some(-50),
            last_trade: Some(650_000),
            price_ticks_max: 10_000_000,
        };
        assert_eq!(mark_candidates(&inputs), [Some(600_030), Some(599_950), Some(650_000)]);
        // A trade far away does not move the mark past the other two.
        assert_eq!(mark_price(&inputs), 600_030);
        assert_eq!(mark_price(&MarkInputs { last_trade: Some(599_990), ..inputs }), 599_990);
        assert_eq!(mark_price(&MarkInputs { last_trade: None, ..inputs }), 599_990);
    }

    #[test]
    fn the_moving_average_keeps_its_window() {
        let mut average = MovingAverage::default();
        average.push(0, 10, 1_000);
        average.push(500, -3, 1_000);
        assert_eq!(average.average(500, 1_000), Some(3));
        average.push(1_200, 1, 1_000);
        assert_eq!(average.len(), 2, "the sample from 0 ms is out of the window");
        assert_eq!(average.average(1_200, 1_000), Some(-1));
        assert_eq!(average.average(5_000, 1_000), None);
    }
}
