//! Funding: what ties a perpetual's price to its index.
//!
//! - **Impact prices**: the average price of filling the market's impact
//!   notional against each side of the book (an impact bid sells into the
//!   bids, rounded down; an impact ask buys the asks, rounded up). The
//!   impact notional is dYdX's: what 500 of the collateral margins at the
//!   market's largest leverage, `500 / initial margin fraction` (10,000
//!   USD at 5%); the book is sampled at every mark interval.
//! - **Premium** (Binance's premium index), in billionths:
//!   `(max(0, impact bid - index) - max(0, index - impact ask)) / index`;
//!   a side without enough depth counts as the index.
//! - **Rate** from the mean of the premiums sampled since the last
//!   funding: `premium + clamp(interest - premium, -clamp, +clamp)`, then
//!   within `±cap`.
//! - **Payment** at each funding time by every position open then: `size x
//!   mark x rate`, longs paying shorts when the rate is positive, shorts
//!   paying longs when it is negative, through the market's funding
//!   clearing account, which nets to zero (payers rounded up, receivers
//!   down, the leftover to the insurance fund as in every settlement).
//! - **Times**: at the multiples of the interval since the epoch (00:00,
//!   08:00 and 16:00 UTC for eight hours).

use serde::{Deserialize, Serialize};

use crate::{ceil_div, floor_div, Contract, Lots, Ticks, PPB};

/// The average price of filling `impact_value_exact` (in the contract's
/// exact units) against `levels` (best first: price, lots), or `None` when
/// the levels hold less. `round_up` for the asks.
pub fn impact_price(contract: &Contract, levels: &[(Ticks, u64)], impact_value_exact: i128, round_up: bool) -> Option<Ticks> {
    if impact_value_exact <= 0 {
        return None;
    }
    let per_tick_lot = i128::from(contract.units_per_tick_lot());
    let (mut value, mut lots) = (0i128, 0i128);
    for &(price, available) in levels {
        let price_value = i128::from(price) * per_tick_lot;
        if price_value == 0 {
            continue;
        }
        let needed = ceil_div(impact_value_exact - value, price_value);
        let taken = needed.min(i128::from(available));
        value += taken * price_value;
        lots += taken;
        if value >= impact_value_exact {
            let average = if round_up { ceil_div(value, lots * per_tick_lot) } else { floor_div(value, lots * per_tick_lot) };
            return Some(average as Ticks);
        }
    }
    None
}

/// The margin, in whole units of the collateral, whose notional at the
/// largest leverage the impact prices fill (dYdX's rule).
pub const IMPACT_MARGIN: i128 = 500;

/// The impact notional in the contract's exact units: `IMPACT_MARGIN`
/// collateral (of `collateral_scale` decimals) over the first bracket's
/// initial fraction. `None` when it would not fit.
pub fn impact_value_exact(contract: &Contract, collateral_scale: u8, initial_ppm: u32) -> Option<i128> {
    let margin_minor = IMPACT_MARGIN.checked_mul(10i128.checked_pow(u32::from(collateral_scale))?)?;
    let notional_minor = margin_minor.checked_mul(1_000_000)? / i128::from(initial_ppm.max(1));
    notional_minor.checked_mul(contract.divisor())
}

/// The premium of the book over the index, in billionths.
pub fn premium_ppb(impact_bid: Option<Ticks>, impact_ask: Option<Ticks>, index: Ticks) -> i64 {
    if index == 0 {
        return 0;
    }
    let index_value = i128::from(index);
    let over = impact_bid.map_or(0, |bid| (i128::from(bid) - index_value).max(0));
    let under = impact_ask.map_or(0, |ask| (index_value - i128::from(ask)).max(0));
    // Within ±100%, far beyond any cap a market has, so it fits an i64.
    floor_div((over - under) * PPB, index_value).clamp(-PPB, PPB) as i64
}

/// A market's funding rule, in billionths per interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundingRule {
    pub interval_ms: u64,
    /// The interest rate difference of the two assets per interval
    /// (0.01% = 100,000).
    pub interest_ppb: i64,
    /// How far the interest may move the rate from the premium (0.05% =
    /// 500,000).
    pub clamp_ppb: i64,
    /// The largest rate either way, from the market's tiers (Binance's is
    /// three quarters of the first bracket's maintenance fraction).
    pub cap_ppb: i64,
}

impl FundingRule {
    /// Refuses a rule whose rates are beyond ±100% or whose interval is zero.
    pub fn check(&self) -> Result<(), &'static str> {
        let within = |rate: i64| i128::from(rate).abs() <= PPB;
        if self.interval_ms == 0 {
            return Err("a funding interval must be above zero");
        }
        if !within(self.interest_ppb) || !within(self.clamp_ppb) || !within(self.cap_ppb) || self.clamp_ppb < 0 || self.cap_ppb < 0 {
            return Err("funding's interest, clamp and cap are within ±100% (1,000,000,000 ppb), the clamp and the cap not below zero");
        }
        Ok(())
    }

    /// The rate for a mean premium.
    pub fn rate_ppb(&self, premium_ppb: i64) -> i64 {
        let premium = i128::from(premium_ppb);
        // Never beyond ±100%, whatever the rule says (see `check`).
        let clamp = i128::from(self.clamp_ppb.unsigned_abs()).min(PPB);
        let cap = i128::from(self.cap_ppb.unsigned_abs()).min(PPB);
        let rate = premium + (i128::from(self.interest_ppb) - premium).clamp(-clamp, clamp);
        rate.clamp(-cap, cap) as i64
    }

    /// The first funding time after `now_ms`.
    pub fn next_after(&self, now_ms: u64) -> u64 {
        let interval = self.interval_ms.max(1);
        (now_ms / interval).saturating_add(1).saturating_mul(interval)
    }
}

/// The premiums sampled since the last funding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PremiumSamples {
    pub sum_ppb: i128,
    pub count: u64,
}

impl PremiumSamples {
    pub fn push(&mut self, premium_ppb: i64) {
        self.sum_ppb += i128::from(premium_ppb);
        self.count += 1;
    }

    /// The mean, rounded toward minus infinity; zero without a sample.
    pub fn mean_ppb(&self) -> i64 {
        if self.count == 0 {
            0
        } else {
            floor_div(self.sum_ppb, i128::from(self.count)) as i64
        }
    }
}

/// What a position of `size` lots receives (above zero) or pays (below)
/// at a funding of `rate_ppb` at `mark`, exact, in `1 / (divisor x 10^9)`
/// of a minor unit.
/// (A rate beyond ±100% counts as ±100%: no rule allows one.)
pub fn funding_exact(contract: &Contract, size: Lots, mark: Ticks, rate_ppb: i64) -> i128 {
    -contract.value_exact(size, mark) * i128::from(rate_ppb).clamp(-PPB, PPB)
}

/// [`funding_exact`] as money for its holder: a receipt rounded down, a
/// payment rounded up.
pub fn funding_settled(contract: &Contract, size: Lots, mark: Ticks, rate_ppb: i64) -> ids::Amount {
    floor_div(funding_exact(contract, size, mark, rate_ppb), contract.divisor() * PPB)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btc() -> Contract {
        Contract::new(1, 2, 10_000_000, 1_000_000).unwrap()
    }

    #[test]
    fn the_impact_notional_is_500_of_margin_at_the_largest_leverage() {
        // 500 USD (cents: scale 2) at 5% initial is 10,000 USD: 10^6 cents, 10^8 exact.
        assert_eq!(impact_value_exact(&btc(), 2, 50_000), Some(100_000_000));
        // At 10% it is 5,000 USD.
        assert_eq!(impact_value_exact(&btc(), 2, 100_000), Some(50_000_000));
        assert_eq!(impact_value_exact(&btc(), 200, 100_000), None, "no scale of 10^200 fits");
    }

    #[test]
    fn impact_prices_walk_the_book() {
        let contract = btc();
        // 1,000 USD of impact (10^7 exact units) against asks of 0.01 BTC
        // at 60,000.0 and 1 BTC at 60,010.0: 10 lots at the first, 7 more.
        let asks = [(600_000, 10), (600_100, 1_000)];
        let value = 100_000 * contract.divisor();
        let ask = impact_price(&contract, &asks, value, true).unwrap();
        // 10 x 600,000 + 7 x 600,100 = 10,200,700 over 17 lots.
        assert_eq!(ask, 600_042);
        assert_eq!(impact_price(&contract, &asks[..1], value, true), None, "600 USD of depth is not 1,000");
        let bids = [(599_900, 1_000)];
        assert_eq!(impact_price(&contract, &bids, value, false), Some(599_900));
    }

    #[test]
    fn the_premium_and_the_rate() {
        // Impact bid 0.1% over an index of 60,000: premium 0.1%.
        assert_eq!(premium_ppb(Some(600_600), Some(600_700), 600_000), 1_000_000);
        // The book straddles the index: no premium.
        assert_eq!(premium_ppb(Some(599_900), Some(600_100), 600_000), 0);
        assert_eq!(premium_ppb(None, Some(599_400), 600_000), -1_000_000);
        let rule = FundingRule { interval_ms: 8 * 3_600_000, interest_ppb: 100_000, clamp_ppb: 500_000, cap_ppb: 7_500_000 };
        // Premium 0: the interest (within the clamp) is the rate.
        assert_eq!(rule.rate_ppb(0), 100_000);
        // Premium 0.1%: interest - premium = -0.09%, clamped to -0.05%: 0.05%.
        assert_eq!(rule.rate_ppb(1_000_000), 500_000);
        // Premium 0.03%: within the clamp, the rate is the interest, 0.01%.
        assert_eq!(rule.rate_ppb(300_000), 100_000);
        // Premium 2%: capped at 0.75%.
        assert_eq!(rule.rate_ppb(20_000_000), 7_500_000);
        assert_eq!(rule.rate_ppb(-20_000_000), -7_500_000);
        assert_eq!(rule.next_after(0), 8 * 3_600_000);
        assert_eq!(rule.next_after(8 * 3_600_000), 16 * 3_600_000);
    }

    #[test]
    fn longs_pay_shorts_when_the_rate_is_positive() {
        let contract = btc();
        // 1 BTC long at 60,000 and 0.01%: pays 6 USD; the short gets 6 USD.
        assert_eq!(funding_settled(&contract, 1_000, 600_000, 100_000), -600);
        assert_eq!(funding_settled(&contract, -1_000, 600_000, 100_000), 600);
        // 1 lot at 60,000.0 and 0.01%: 0.006 USD: the payer pays a cent, the receiver gets none.
        assert_eq!(funding_settled(&contract, 1, 600_000, 100_000), -1);
        assert_eq!(funding_settled(&contract, -1, 600_000, 100_000), 0);
    }
}
