//! Properties of the risk arithmetic over random markets, positions and
//! price paths. Each states what must hold and what must never happen.

use ids::Amount;
use proptest::prelude::*;
use risk_core::funding::{funding_settled, impact_price, FundingRule};
use risk_core::liquidation::{adl_order, deleverage, Exposure};
use risk_core::margin::{initial_requirement, OpenOrder};
use risk_core::prices::{index_price, mark_candidates, mark_price, Feed, MarkInputs};
use risk_core::settlement::{settle, Obligation};
use risk_core::{Contract, Tier, Tiers};

fn contract() -> impl Strategy<Value = Contract> {
    (1u64..=1_000, 0u8..=6, 1_000u64..=100_000_000, 1u64..=10_000_000)
        .prop_filter_map("within 120 bits", |(units, scale, price_max, lots_max)| Contract::new(units, scale, price_max, lots_max).ok())
}

/// 1 to 5 brackets with growing bounds and fractions.
fn tiers() -> impl Strategy<Value = Tiers> {
    prop::collection::vec((1i128..=1_000_000_000_000, 1u32..=50_000, 1u32..=50_000, 1u32..=200_000), 1..=5).prop_filter_map("valid", |steps| {
        let (mut bound, mut maintenance, mut initial) = (0i128, 0u32, 0u32);
        let mut tiers = Vec::new();
        for (bound_step, maintenance_step, gap, initial_step) in steps {
            bound += bound_step;
            maintenance += maintenance_step;
            initial = (initial + initial_step).max(maintenance + gap);
            tiers.push(Tier { notional_max: bound, initial_ppm: initial.min(1_000_000), maintenance_ppm: maintenance });
        }
        Tiers::new(tiers).ok()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// The maintenance margin never falls as the notional grows, is
    /// continuous across brackets (within the one unit rounding up adds),
    /// and is below the initial margin at any leverage the tiers allow.
    #[test]
    fn maintenance_is_continuous_monotone_and_below_initial(tiers in tiers(), notionals in prop::collection::vec(0i128..=3_000_000_000_000, 1..40), leverage in 1u32..=200) {
        let mut sorted = notionals.clone();
        sorted.sort_unstable();
        for pair in sorted.windows(2) {
            prop_assert!(tiers.maintenance_margin(pair[0]) <= tiers.maintenance_margin(pair[1]));
        }
        for tier in tiers.tiers() {
            let at = tiers.maintenance_margin(tier.notional_max);
            let above = tiers.maintenance_margin(tier.notional_max + 1);
            prop_assert!(above - at <= 1, "a jump at the bound {}: {} to {}", tier.notional_max, at, above);
        }
        for notional in notionals {
            let initial = tiers.initial_margin(notional, leverage);
            prop_assert!(tiers.maintenance_margin(notional) <= initial);
            // At least the notional over the leverage, rounded up.
            prop_assert!(initial * Amount::from(leverage) >= notional);
        }
    }

    /// Through the waterfall nothing is made or lost, nobody pays more
    /// than it owes or has, margin before general, the fund only when the
    /// losers fall short, and a short pot is shared within a unit of pro rata.
    #[test]
    fn the_waterfall_conserves_and_takes_in_order(
        parties in prop::collection::vec((-1_000_000i128..=1_000_000, 0i128..=1_000_000, 0i128..=1_000_000), 0..30),
        insurance in 0i128..=2_000_000,
    ) {
        let obligations: Vec<Obligation> = parties.iter().map(|&(amount, margin, general)| Obligation { amount, margin, general }).collect();
        let settlement = settle(&obligations, insurance).unwrap();
        prop_assert_eq!(settlement.collected(), settlement.paid_out(), "the settlement account is not zero after");
        prop_assert!(settlement.from_insurance <= insurance);
        prop_assert!(settlement.to_insurance == 0 || settlement.from_insurance == 0);
        let owed: Amount = obligations.iter().map(|obligation| obligation.amount.max(0)).sum();
        let paid: Amount = settlement.parties.iter().map(|party| party.paid).sum();
        prop_assert_eq!(paid + settlement.unpaid, owed);
        if settlement.unpaid > 0 {
            prop_assert_eq!(settlement.from_insurance, insurance, "winners short while the fund had money");
        }
        for (party, obligation) in settlement.parties.iter().zip(&obligations) {
            if obligation.amount < 0 {
                prop_assert_eq!(party.from_margin + party.from_general + party.shortfall, -obligation.amount);
                prop_assert!(party.from_margin <= obligation.margin && party.from_general <= obligation.general);
                prop_assert!(party.from_general == 0 || party.from_margin == obligation.margin, "general drawn before margin");
                prop_assert!(party.shortfall == 0 || (party.from_margin == obligation.margin && party.from_general == obligation.general));
                prop_assert_eq!(party.paid, 0);
            } else {
                prop_assert!(party.paid <= obligation.amount);
                prop_assert_eq!(party.from_margin + party.from_general, 0);
                if settlement.unpaid > 0 && owed > 0 {
                    let pot = owed - settlement.unpaid;
                    let exact = obligation.amount * pot;
                    prop_assert!((party.paid * owed - exact).abs() < owed, "{} is not within a unit of {}/{}", party.paid, exact, owed);
                }
            }
        }
    }

    /// A random price path over positions that net to zero: each
    /// mark-to-market settles through the waterfall with nothing made or
    /// lost (every margin account, the fund and the settlement account),
    /// and rounding only ever adds to the fund.
    #[test]
    fn marks_to_market_conserve_over_a_path(
        contract in contract(),
        sizes in prop::collection::vec(-10_000i64..=10_000, 1..20),
        margins in prop::collection::vec(0i128..=10_000_000, 20),
        path in prop::collection::vec(1u64..=1_000_000, 1..30),
    ) {
        let bound = (contract.position_lots_max() / 21) as i64;
        let mut sizes: Vec<i64> = sizes.into_iter().map(|size| size.clamp(-bound, bound)).collect();
        let net: i64 = sizes.iter().sum();
        sizes.push(-net);
        let mut margins: Vec<Amount> = margins.into_iter().cycle().take(sizes.len()).collect();
        let mut insurance: Amount = 0;
        let total_before: Amount = margins.iter().sum();
        let mut mark = path[0].min(contract.price_ticks_max());
        for &next in &path[1..] {
            let next = next.min(contract.price_ticks_max());
            let obligations: Vec<Obligation> = sizes.iter().zip(&margins).map(|(size, margin)| Obligation { amount: contract.settled(contract.pnl_exact(*size, mark, next)), margin: *margin, general: 0 }).collect();
            let fund_before = insurance;
            let settlement = settle(&obligations, insurance).unwrap();
            prop_assert_eq!(settlement.collected(), settlement.paid_out());
            for (margin, party) in margins.iter_mut().zip(&settlement.parties) {
                *margin += party.paid - party.from_margin;
                prop_assert!(*margin >= 0);
            }
            insurance += settlement.to_insurance - settlement.from_insurance;
            // Payers round up and receivers down: the fund only gains from
            // rounding unless someone fell short.
            if settlement.parties.iter().all(|party| party.shortfall == 0) {
                prop_assert!(insurance >= fund_before);
                prop_assert!(insurance - fund_before < sizes.len() as Amount);
            }
            prop_assert_eq!(margins.iter().sum::<Amount>() + insurance, total_before, "money made or lost");
            mark = next;
        }
    }

    /// The liquidation price is the boundary of "below maintenance"; the
    /// bankruptcy price that of solvency; a long is liquidated at or above
    /// the price it would be bankrupt at (a short at or below).
    #[test]
    fn liquidation_and_bankruptcy_prices_are_boundaries(
        contract in contract(),
        tiers in tiers(),
        size in -100_000i64..=100_000,
        mark in 1u64..=100_000_000,
        equity in -1_000_000_000i128..=100_000_000_000,
        probes in prop::collection::vec(1u64..=100_000_000, 8),
    ) {
        let mark = mark.min(contract.price_ticks_max());
        let size = size.clamp(-(contract.position_lots_max() as i64), contract.position_lots_max() as i64);
        let exposure = Exposure { size, mark, equity };
        let max = contract.price_ticks_max();
        let below = |price| exposure.below_maintenance(&contract, &tiers, price);
        let solvent = |price: u64| equity * contract.divisor() + contract.pnl_exact(size, mark, price) >= 0;
        match exposure.liquidation_price(&contract, &tiers) {
            None => for probe in &probes { prop_assert!(!below((*probe).min(max))); },
            Some(price) => {
                prop_assert!(below(price));
                // Its neighbour on the safe side is not below: the boundary itself.
                if size > 0 && price < max {
                    prop_assert!(!below(price + 1));
                }
                if size < 0 && price > 1 {
                    prop_assert!(!below(price - 1));
                }
                for probe in &probes {
                    let probe = (*probe).min(max);
                    // Beyond the boundary on the safe side: never below.
                    prop_assert_eq!(below(probe), if size > 0 { probe <= price } else { probe >= price }, "{} against {}", probe, price);
                }
            }
        }
        let liquidation = exposure.liquidation_price(&contract, &tiers);
        match exposure.bankruptcy_price(&contract) {
            None if size > 0 => prop_assert!(!solvent(max), "no bankruptcy price, yet solvent at the top"),
            None if size < 0 => prop_assert!(!solvent(1), "no bankruptcy price, yet solvent at the bottom"),
            None => {}
            Some(bankrupt) => {
            // Liquidated no later than bankrupt: a long at or above the tick
            // below its bankruptcy price, a short at or below the tick above.
            if let Some(liquidation) = liquidation {
                if size > 0 { prop_assert!(liquidation + 1 >= bankrupt); } else { prop_assert!(liquidation <= bankrupt + 1); }
            }
            prop_assert!(solvent(bankrupt));
            if size > 0 && bankrupt > 1 {
                prop_assert!(!solvent(bankrupt - 1));
                prop_assert!(below(bankrupt - 1), "bankrupt yet not below maintenance");
            }
            if size < 0 && bankrupt < max {
                prop_assert!(!solvent(bankrupt + 1));
                prop_assert!(below(bankrupt + 1));
            }
            }
        }
    }

    /// The index is a median: as many fresh prices at or above it as at or
    /// below; stale prices never count.
    #[test]
    fn the_index_is_a_median_of_fresh_feeds(feeds in prop::collection::vec((1u64..=1_000_000, 0u64..=20_000), 0..12), now in 0u64..=30_000, staleness in 0u64..=20_000, needed in 0usize..=4) {
        let feeds: Vec<Feed> = feeds.iter().enumerate().map(|(source, &(price, at_ms))| Feed { source: source as u32, price, at_ms }).collect();
        let fresh: Vec<u64> = feeds.iter().filter(|feed| now.saturating_sub(feed.at_ms) <= staleness).map(|feed| feed.price).collect();
        match index_price(&feeds, now, staleness, needed) {
            Ok(index) => {
                prop_assert!(fresh.len() >= needed.max(1));
                let at_or_above = fresh.iter().filter(|price| **price >= index).count();
                let at_or_below = fresh.iter().filter(|price| **price <= index).count();
                prop_assert!(2 * at_or_above >= fresh.len() && 2 * at_or_below >= fresh.len());
            }
            Err(_) => prop_assert!(fresh.len() < needed.max(1)),
        }
    }

    /// The mark is one of its candidates or between them: never beyond.
    #[test]
    fn the_mark_is_within_its_candidates(index in 1u64..=10_000_000, rate in -10_000_000i64..=10_000_000, until in 0u64..=30_000, basis in proptest::option::of(-100_000i64..=100_000), last in proptest::option::of(1u64..=10_000_000)) {
        let inputs = MarkInputs { index, funding_rate_ppb: rate, until_funding_ms: until, funding_interval_ms: 28_800_000, basis_average: basis, last_trade: last, price_ticks_max: 10_000_000 };
        let mut candidates: Vec<u64> = mark_candidates(&inputs).into_iter().flatten().collect();
        candidates.sort_unstable();
        let mark = mark_price(&inputs);
        // The middle of three; of two (no trade yet), their mean rounded down.
        let median = if candidates.len() == 3 { candidates[1] } else { (candidates[0] + candidates[1]) / 2 };
        prop_assert_eq!(mark, median);
        prop_assert_eq!(candidates.len(), 2 + usize::from(last.is_some()));
    }

    /// Funding between a long and a short of one size: the payer pays at
    /// least what the receiver gets, by at most a unit; the rate stays
    /// within the cap and, when the premium is within the clamp of the
    /// interest, is the interest.
    #[test]
    fn funding_is_within_its_bounds(contract in contract(), size in 1i64..=1_000_000, mark in 1u64..=100_000_000, premium in -5_000_000i64..=5_000_000, interest in -200_000i64..=200_000) {
        let size = size.min(contract.position_lots_max() as i64);
        let mark = mark.min(contract.price_ticks_max());
        let rule = FundingRule { interval_ms: 1_000, interest_ppb: interest, clamp_ppb: 500_000, cap_ppb: 3_000_000 };
        let rate = rule.rate_ppb(premium);
        prop_assert!(rate.abs() <= 3_000_000);
        // Within the clamp the interest decides; beyond it, the premium
        // moved toward the interest by the clamp; then the cap.
        let uncapped = if (interest - premium).abs() <= 500_000 { interest } else if interest > premium { premium + 500_000 } else { premium - 500_000 };
        prop_assert_eq!(rate, uncapped.clamp(-3_000_000, 3_000_000));
        let long = funding_settled(&contract, size, mark, rate);
        let short = funding_settled(&contract, -size, mark, rate);
        let (payer, receiver) = if long <= 0 { (-long, short) } else { (-short, long) };
        prop_assert!(payer >= receiver && payer - receiver <= 1, "pays {} receives {}", payer, receiver);
    }

    /// An impact price lies between the best and the worst level it used.
    #[test]
    fn impact_prices_lie_within_the_levels(contract in contract(), levels in prop::collection::vec((1u64..=1_000_000, 1u64..=1_000), 1..10), impact in 1i128..=10_000_000_000) {
        let units = i128::from(contract.units_per_tick_lot());
        let value = |levels: &[(u64, u64)]| -> i128 { levels.iter().map(|(price, lots)| i128::from(*price) * i128::from(*lots) * units).sum() };
        // Asks best (lowest) first and rounded up; bids best (highest) first and rounded down.
        let mut asks = levels.clone();
        asks.sort_unstable();
        let mut bids = levels;
        bids.sort_unstable_by(|a, b| b.cmp(a));
        for (levels, round_up) in [(asks, true), (bids, false)] {
            match impact_price(&contract, &levels, impact, round_up) {
                Some(price) => {
                    // Within the best level and the worst one the walk reached.
                    let used = (1..=levels.len()).find(|count| value(&levels[..*count]) >= impact).unwrap();
                    let (best, worst) = (levels[0].0, levels[used - 1].0);
                    prop_assert!(price >= best.min(worst) && price <= best.max(worst), "{} beyond {}..{}", price, best, worst);
                }
                None => prop_assert!(value(&levels) < impact),
            }
        }
    }

    /// Deleveraging takes no more than asked, none from beyond a size, and
    /// everything the candidates have when they have less.
    #[test]
    fn deleveraging_covers_what_it_can(lots in 0u64..=100_000, sizes in prop::collection::vec(-50_000i64..=50_000, 0..10), scores in prop::collection::vec(any::<i64>(), 10)) {
        let scores: Vec<i128> = scores.iter().take(sizes.len()).map(|score| i128::from(*score)).collect();
        let order = adl_order(&scores);
        let taken = deleverage(lots, &sizes, &order);
        let total: u64 = taken.iter().map(|(_, take)| take).sum();
        let available: u64 = sizes.iter().map(|size| size.unsigned_abs()).sum();
        prop_assert_eq!(total, lots.min(available));
        for (index, take) in &taken {
            prop_assert!(*take <= sizes[*index].unsigned_abs());
        }
        for pair in order.windows(2) {
            prop_assert!(scores[pair[0]] >= scores[pair[1]]);
        }
    }

    /// An order's requirement is never below the margin of the position
    /// alone, and an order that adds to the position's side never lowers it.
    #[test]
    fn orders_only_add_to_the_requirement(contract in contract(), tiers in tiers(), size in -1_000i64..=1_000, mark in 1u64..=1_000_000, orders in prop::collection::vec((any::<bool>(), 1u64..=100, 1u64..=1_000_000), 0..8), leverage in 1u32..=100) {
        let mark = mark.min(contract.price_ticks_max());
        let size = size.clamp(-(contract.position_lots_max() as i64), contract.position_lots_max() as i64);
        let alone = tiers.initial_margin(contract.notional(size, mark), leverage);
        let (mut mixed, mut adding) = (Vec::new(), Vec::new());
        let mut before = initial_requirement(&contract, &tiers, leverage, size, mark, &adding);
        for (buy, lots, price) in orders {
            let price = price.min(contract.price_ticks_max());
            mixed.push(OpenOrder { buy, lots, price });
            if let Some(requirement) = initial_requirement(&contract, &tiers, leverage, size, mark, &mixed) {
                prop_assert!(requirement >= alone);
            }
            adding.push(OpenOrder { buy: size >= 0, lots, price });
            let after = initial_requirement(&contract, &tiers, leverage, size, mark, &adding);
            if let (Some(before), Some(after)) = (before, after) {
                prop_assert!(after >= before, "{} then {}", before, after);
            }
            before = after;
        }
    }
}
