//! Convert's prices: what a user gets for what they give, or gives for what
//! they get, through one pair or two, from a book's levels or a set price,
//! less the pairs' spreads and the fee. Pure, over exact decimals in minor
//! units; every amount it returns is a whole number of minor units, rounded
//! in the house's favour (what the user gets down, what they give up), and
//! the difference from the fair value is each leg's spread, which goes to
//! the house's revenue. The ledger checks the result against its pairs and
//! balances; this file only decides the numbers.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

/// One price level, in minor units: quote minor units per base minor unit,
/// and base minor units there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub price: Decimal,
    pub quantity: Decimal,
}

/// Where a leg's fair value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The book's side the house would trade against, best first: bids
    /// when the user sells base, asks when they buy it.
    Levels(Vec<Level>),
    /// `quote_units` quote minor units for `base_units` base minor units.
    Ratio { quote_units: i128, base_units: i128 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegTerms {
    /// The user gives base and gets quote.
    pub sell_base: bool,
    pub source: Source,
    pub spread_bps: u32,
}

/// A route: one leg or two, the last pair's fee, and the steps that bind
/// what the user gives (the first leg sells base) or gets (the last buys it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub legs: Vec<LegTerms>,
    pub fee_bps: u32,
    pub from_step: Option<i128>,
    pub to_step: Option<i128>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// The user gives exactly this much.
    From(i128),
    /// The user gets exactly this much, the fee taken.
    To(i128),
}

/// A priced leg, in minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PricedLeg {
    pub pay: i128,
    pub receive: i128,
    pub spread: i128,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Priced {
    pub legs: Vec<PricedLeg>,
    /// Out of the last leg's `receive`.
    pub fee: i128,
}

impl Priced {
    pub fn from_amount(&self) -> i128 {
        self.legs.first().map_or(0, |leg| leg.pay)
    }

    pub fn to_amount(&self) -> i128 {
        self.legs.last().map_or(0, |leg| leg.receive) - self.fee
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("the order book is too thin for this amount")]
    Thin,
    #[error("the amount is too small to convert")]
    TooSmall,
    /// The amount the user gives (`to` false) or gets is off its step.
    #[error("the amount is not a multiple of the pair's step of {step} minor units")]
    OffStep { step: i128, to: bool },
    #[error("the amount is too large to price")]
    Overflow,
}

const BPS: i128 = 10_000;

fn dec(value: i128) -> Result<Decimal, PricingError> {
    Decimal::try_from_i128_with_scale(value, 0).map_err(|_| PricingError::Overflow)
}

fn floor(value: Decimal) -> Result<i128, PricingError> {
    value.floor().to_i128().ok_or(PricingError::Overflow)
}

fn ceil(value: Decimal) -> Result<i128, PricingError> {
    value.ceil().to_i128().ok_or(PricingError::Overflow)
}

fn mul(a: Decimal, b: Decimal) -> Result<Decimal, PricingError> {
    a.checked_mul(b).ok_or(PricingError::Overflow)
}

fn div(a: Decimal, b: Decimal) -> Result<Decimal, PricingError> {
    a.checked_div(b).ok_or(PricingError::Overflow)
}

fn add(a: Decimal, b: Decimal) -> Result<Decimal, PricingError> {
    a.checked_add(b).ok_or(PricingError::Overflow)
}

/// What `pay` of the leg's `from` is worth in its `to` at the source's prices.
pub fn fair_value(leg: &LegTerms, pay: i128) -> Result<Decimal, PricingError> {
    let pay = dec(pay)?;
    match &leg.source {
        Source::Ratio { quote_units, base_units } => {
            let (q, b) = (dec(*quote_units)?, dec(*base_units)?);
            if leg.sell_base {
                div(mul(pay, q)?, b)
            } else {
                div(mul(pay, b)?, q)
            }
        }
        Source::Levels(levels) => {
            let (mut left, mut value) = (pay, Decimal::ZERO);
            for level in levels {
                if left.is_zero() {
                    break;
                }
                if leg.sell_base {
                    // Selling base into the bids: each level takes its quantity.
                    let take = left.min(level.quantity);
                    value = add(value, mul(take, level.price)?)?;
                    left -= take;
                } else {
                    // Buying base from the asks with quote.
                    let cost = mul(level.quantity, level.price)?;
                    if cost <= left {
                        value = add(value, level.quantity)?;
                        left -= cost;
                    } else {
                        value = add(value, div(left, level.price)?)?;
                        left = Decimal::ZERO;
                    }
                }
            }
            if !left.is_zero() {
                return Err(PricingError::Thin);
            }
            Ok(value)
        }
    }
}

/// How much of the leg's `from` is worth `value` of its `to`: the inverse of [`fair_value`].
pub fn cost_of(leg: &LegTerms, value: Decimal) -> Result<Decimal, PricingError> {
    match &leg.source {
        Source::Ratio { quote_units, base_units } => {
            let (q, b) = (dec(*quote_units)?, dec(*base_units)?);
            if leg.sell_base {
                div(mul(value, b)?, q)
            } else {
                div(mul(value, q)?, b)
            }
        }
        Source::Levels(levels) => {
            let (mut left, mut cost) = (value, Decimal::ZERO);
            for level in levels {
                if left.is_zero() {
                    break;
                }
                if leg.sell_base {
                    // Quote wanted from the bids: each level gives quantity x price.
                    let worth = mul(level.quantity, level.price)?;
                    if worth <= left {
                        cost = add(cost, level.quantity)?;
                        left -= worth;
                    } else {
                        cost = add(cost, div(left, level.price)?)?;
                        left = Decimal::ZERO;
                    }
                } else {
                    let take = left.min(level.quantity);
                    cost = add(cost, mul(take, level.price)?)?;
                    left -= take;
                }
            }
            if !left.is_zero() {
                return Err(PricingError::Thin);
            }
            Ok(cost)
        }
    }
}

/// `fair` less the spread, down to a minor unit.
fn after_spread(fair: Decimal, spread_bps: u32) -> Result<i128, PricingError> {
    floor(div(mul(fair, dec(BPS - i128::from(spread_bps))?)?, dec(BPS)?)?)
}

/// The fee on `receive`, up to a minor unit.
fn fee_on(receive: i128, fee_bps: u32) -> Result<i128, PricingError> {
    let product = receive.checked_mul(i128::from(fee_bps)).ok_or(PricingError::Overflow)?;
    Ok((product + BPS - 1).div_euclid(BPS))
}

fn round_down(amount: i128, step: Option<i128>) -> i128 {
    step.filter(|step| *step > 0).map_or(amount, |step| amount - amount.rem_euclid(step))
}

fn round_up(amount: i128, step: Option<i128>) -> i128 {
    match step.filter(|step| *step > 0) {
        Some(step) if amount.rem_euclid(step) != 0 => amount - amount.rem_euclid(step) + step,
        _ => amount,
    }
}

/// Prices `route` for what the user wants.
pub fn price(route: &Route, wanted: Wanted) -> Result<Priced, PricingError> {
    if route.legs.is_empty() {
        return Err(PricingError::TooSmall);
    }
    let priced = match wanted {
        Wanted::From(amount) => {
            if amount <= 0 {
                return Err(PricingError::TooSmall);
            }
            if let Some(step) = route.from_step.filter(|step| amount % step != 0) {
                return Err(PricingError::OffStep { step, to: false });
            }
            forward(route, amount)?
        }
        Wanted::To(amount) => {
            if amount <= 0 {
                return Err(PricingError::TooSmall);
            }
            if let Some(step) = route.to_step.filter(|step| amount % step != 0) {
                return Err(PricingError::OffStep { step, to: true });
            }
            backward(route, amount)?
        }
    };
    let last = priced.legs.last().expect("a route has a leg");
    if priced.legs.iter().any(|leg| leg.pay <= 0 || leg.receive <= 0) || priced.fee >= last.receive {
        return Err(PricingError::TooSmall);
    }
    Ok(priced)
}

/// The user gives `from_amount`: each leg's value less its spread, rounded
/// down, is the next leg's pay; the fee comes off the last, and what is
/// left is rounded down to the `to` step.
fn forward(route: &Route, from_amount: i128) -> Result<Priced, PricingError> {
    let mut legs = Vec::with_capacity(route.legs.len());
    let mut pay = from_amount;
    let last = route.legs.len() - 1;
    let mut fee = 0;
    for (n, terms) in route.legs.iter().enumerate() {
        let fair = fair_value(terms, pay)?;
        let mut receive = after_spread(fair, terms.spread_bps)?;
        if n == last {
            fee = fee_on(receive, route.fee_bps)?;
            let to_amount = round_down(receive - fee, route.to_step);
            receive = to_amount + fee;
        }
        legs.push(PricedLeg { pay, receive, spread: floor(fair)? - receive });
        pay = receive;
    }
    Ok(Priced { legs, fee })
}

/// The user gets `to_amount`: the last leg must give it and the fee; walk
/// back to what each leg must be paid, rounding what the user gives up,
/// then price forward from that and give exactly what was asked, the
/// rounding to the house as spread.
fn backward(route: &Route, to_amount: i128) -> Result<Priced, PricingError> {
    // The least gross receive whose fee leaves to_amount: fee = receive - to_amount.
    let fee_bps = i128::from(route.fee_bps);
    let mut gross = (to_amount.checked_mul(BPS).ok_or(PricingError::Overflow)? + (BPS - fee_bps) - 1).div_euclid(BPS - fee_bps);
    while gross - fee_on(gross, route.fee_bps)? < to_amount {
        gross += 1;
    }
    // What each leg must give, last first.
    let mut targets = vec![0; route.legs.len()];
    let mut wanted = gross;
    for (n, terms) in route.legs.iter().enumerate().rev() {
        targets[n] = wanted;
        let fair_needed = div(mul(dec(wanted)?, dec(BPS)?)?, dec(BPS - i128::from(terms.spread_bps))?)?;
        wanted = ceil(cost_of(terms, fair_needed)?)?;
    }
    let mut from_amount = round_up(wanted, route.from_step);
    // Decimal division rounds at its 28th digit: step up until the forward values cover the targets.
    for _ in 0..4 {
        if let Some(priced) = settle_on(route, from_amount, &targets, to_amount)? {
            return Ok(priced);
        }
        from_amount = round_up(from_amount + 1, route.from_step);
    }
    Err(PricingError::Thin)
}

/// Prices forward from `from_amount`, each leg giving exactly its target;
/// None when some leg's value falls short of it.
fn settle_on(route: &Route, from_amount: i128, targets: &[i128], to_amount: i128) -> Result<Option<Priced>, PricingError> {
    let mut legs = Vec::with_capacity(route.legs.len());
    let mut pay = from_amount;
    for (terms, &target) in route.legs.iter().zip(targets) {
        let fair = fair_value(terms, pay)?;
        if after_spread(fair, terms.spread_bps)? < target {
            return Ok(None);
        }
        legs.push(PricedLeg { pay, receive: target, spread: floor(fair)? - target });
        pay = target;
    }
    let fee = targets[targets.len() - 1] - to_amount;
    Ok(Some(Priced { legs, fee }))
}

/// `numerator / denominator` as a price shown to users, to 12 decimal places (down).
pub fn ratio(numerator: Decimal, denominator: Decimal) -> Option<Decimal> {
    numerator.checked_div(denominator).map(|value| value.round_dp_with_strategy(12, RoundingStrategy::ToZero).normalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ratio_leg(sell_base: bool, quote_units: i128, base_units: i128, spread_bps: u32) -> LegTerms {
        LegTerms { sell_base, source: Source::Ratio { quote_units, base_units }, spread_bps }
    }

    fn level(price: &str, quantity: i64) -> Level {
        Level { price: price.parse().unwrap(), quantity: Decimal::from(quantity) }
    }

    #[test]
    fn a_set_price_with_spread_and_fee() {
        // EUR -> USD at 1.0850, 25 bps spread, 10 bps fee: 100.00 EUR.
        let route = Route { legs: vec![ratio_leg(true, 10_850, 10_000, 25)], fee_bps: 10, from_step: None, to_step: None };
        let priced = price(&route, Wanted::From(10_000)).unwrap();
        // Fair 108.50 USD; less 0.25%: 108.22875 -> 108.22; fee 0.10823 -> 0.11.
        assert_eq!(priced.legs, vec![PricedLeg { pay: 10_000, receive: 10_822, spread: 28 }]);
        assert_eq!((priced.fee, priced.to_amount()), (11, 10_811));
    }

    #[test]
    fn walking_the_book_takes_worse_levels_for_more() {
        // Buy base with quote from two ask levels.
        let leg = LegTerms { sell_base: false, source: Source::Levels(vec![level("2", 10), level("3", 10)]), spread_bps: 0 };
        let route = Route { legs: vec![leg], fee_bps: 0, from_step: None, to_step: None };
        assert_eq!(price(&route, Wanted::From(20)).unwrap().to_amount(), 10);
        assert_eq!(price(&route, Wanted::From(50)).unwrap().to_amount(), 20);
        assert_eq!(price(&route, Wanted::From(51)), Err(PricingError::Thin));
        assert_eq!(price(&route, Wanted::To(15)).unwrap().from_amount(), 35);
    }

    #[test]
    fn steps_bind_what_the_user_gives_and_gets() {
        let route = Route { legs: vec![ratio_leg(false, 1, 1, 0)], fee_bps: 0, from_step: None, to_step: Some(100) };
        assert_eq!(price(&route, Wanted::From(250)).unwrap().to_amount(), 200);
        assert_eq!(price(&route, Wanted::To(250)), Err(PricingError::OffStep { step: 100, to: true }));
        assert_eq!(price(&route, Wanted::From(99)), Err(PricingError::TooSmall));
    }

    #[test]
    fn a_book_past_what_a_decimal_holds_is_refused_not_a_panic() {
        let huge: Decimal = "10000000000000000000000000000".parse().unwrap();
        let bids = vec![Level { price: huge, quantity: Decimal::from(5) }, Level { price: huge, quantity: Decimal::from(5) }];
        let leg = LegTerms { sell_base: true, source: Source::Levels(bids), spread_bps: 0 };
        let route = Route { legs: vec![leg], fee_bps: 0, from_step: None, to_step: None };
        assert_eq!(price(&route, Wanted::From(10)), Err(PricingError::Overflow));
        assert_eq!(price(&route, Wanted::To(10)), Err(PricingError::Overflow));
    }

    fn any_leg() -> impl Strategy<Value = LegTerms> {
        let ratio = (1i128..1_000_000, 1i128..1_000_000).prop_map(|(q, b)| Source::Ratio { quote_units: q, base_units: b });
        let levels = prop::collection::vec((1i64..100_000, 1i64..1_000_000), 1..6).prop_map(|levels| {
            let mut levels: Vec<Level> = levels.into_iter().map(|(p, q)| Level { price: Decimal::new(p, 3), quantity: Decimal::from(q) }).collect();
            levels.sort_by_key(|level| level.price);
            Source::Levels(levels)
        });
        (any::<bool>(), prop_oneof![ratio, levels], 0u32..500).prop_map(|(sell_base, source, spread_bps)| {
            // Bids are best first from the top, asks from the bottom.
            let source = match source {
                Source::Levels(mut levels) if sell_base => {
                    levels.reverse();
                    Source::Levels(levels)
                }
                other => other,
            };
            LegTerms { sell_base, source, spread_bps }
        })
    }

    proptest! {
        /// Whatever the route: amounts are whole and positive, each leg
        /// gives the next what it receives, the spread is what the fair
        /// value leaves, the user never gets more than the fair value less
        /// the spread, and asking for an amount gives exactly it.
        #[test]
        fn a_priced_route_is_consistent(legs in prop::collection::vec(any_leg(), 1..3), fee_bps in 0u32..500, amount in 1i128..10_000_000, to in any::<bool>()) {
            let route = Route { legs, fee_bps, from_step: None, to_step: None };
            let wanted = if to { Wanted::To(amount) } else { Wanted::From(amount) };
            let Ok(priced) = price(&route, wanted) else { return Ok(()) };
            match wanted {
                Wanted::From(amount) => prop_assert_eq!(priced.from_amount(), amount),
                Wanted::To(amount) => prop_assert_eq!(priced.to_amount(), amount),
            }
            for (n, (leg, terms)) in priced.legs.iter().zip(&route.legs).enumerate() {
                prop_assert!(leg.pay > 0 && leg.receive > 0 && leg.spread >= 0, "{:?}", leg);
                let fair = fair_value(terms, leg.pay).unwrap();
                prop_assert_eq!(leg.receive + leg.spread, floor(fair).unwrap());
                prop_assert!(leg.receive <= after_spread(fair, terms.spread_bps).unwrap());
                if n + 1 < priced.legs.len() {
                    prop_assert_eq!(leg.receive, priced.legs[n + 1].pay);
                }
            }
            prop_assert!(priced.fee >= 0 && priced.fee < priced.legs.last().unwrap().receive);
            // The fee is at least its rate on what the last leg gives.
            prop_assert!(priced.fee >= fee_on(priced.legs.last().unwrap().receive, fee_bps).unwrap());
        }
    }
}
