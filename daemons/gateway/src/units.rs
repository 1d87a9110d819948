//! Between the API's units (decimal strings, UUIDs, RFC 3339 times, market
//! names) and the ledger's (minor units, ticks, lots, u64 ids, milliseconds).
//! Exact both ways: a value that does not convert exactly is refused, never
//! rounded.

use ledger_api::spot::Market as LedgerMarket;
use ledger_api::AssetSpec;
use rust_decimal::Decimal;

/// Why an input does not convert.
pub type Refusal = (&'static str, String);

/// Order ids travel as UUIDs: version 8 ("custom"), with the ledger's id in the low 64 bits.
const ORDER_UUID_HIGH: u64 = 0x4d52_4e54_0000_8000; // "MRNT", version 8

pub fn order_uuid(order_id: u64) -> String {
    // The variant bits (10xx) go in the top of the low half; ids stay below 2^62.
    uuid::Uuid::from_u64_pair(ORDER_UUID_HIGH, order_id | (1 << 63)).to_string()
}

pub fn parse_order_uuid(text: &str) -> Option<u64> {
    let (high, low) = uuid::Uuid::parse_str(text).ok()?.as_u64_pair();
    (high == ORDER_UUID_HIGH && low >> 62 == 0b10).then_some(low & !(1 << 63))
}

/// The text of a `Decimal` input: plain decimal notation, as the contract has it.
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    const SHOWN_BYTES_MAX: usize = 40;
    let shown = |text: &str| match text.char_indices().nth(SHOWN_BYTES_MAX) {
        Some((at, _)) => format!("{:?}...", &text[..at]),
        None => format!("{text:?}"),
    };
    text.trim().parse::<Decimal>().map_err(|_| format!("{} is not a decimal number such as \"0.001\" (at most 28 significant digits)", shown(text)))
}

/// `amount` minor units of an asset with `scale` as a decimal (e.g. 150 at scale 2 is "1.50").
pub fn to_decimal(amount: i128, scale: u8) -> Decimal {
    Decimal::try_from_i128_with_scale(amount, scale as u32).unwrap_or(Decimal::MAX)
}

/// A decimal as an exact number of units of `10^-scale`.
pub fn to_units(value: Decimal, scale: u8, field: &str) -> Result<i128, Refusal> {
    let too_large = || ("BAD_USER_INPUT", format!("{field} is too large"));
    // Checked throughout: assets have scales up to 18, but no scale may panic here.
    let factor = 10i128.checked_pow(scale.into()).and_then(|f| Decimal::try_from_i128_with_scale(f, 0).ok()).ok_or_else(too_large)?;
    let scaled = value.checked_mul(factor).ok_or_else(too_large)?;
    if scaled.fract() != Decimal::ZERO {
        return Err(("BAD_USER_INPUT", format!("{field} has more than {scale} decimal places")));
    }
    let whole = scaled.trunc();
    Ok(whole.mantissa() / 10i128.pow(whole.scale()))
}

/// The market's human parameters, derived from the ledger's units.
#[derive(Clone, Debug)]
pub struct MarketTerms {
    pub name: String,
    pub lot_size: Decimal,
    pub tick_size: Decimal,
    pub maker_fee_rate: Decimal,
    pub taker_fee_rate: Decimal,
}

pub fn market_terms(market: &LedgerMarket, base: &AssetSpec, quote: &AssetSpec) -> MarketTerms {
    let lot_size = to_decimal(market.base_units_per_lot as i128, base.scale);
    // quote_units_per_tick_lot / 10^tick_lot_scale = tick_size x lot_size x 10^quote_scale.
    let per_lot = to_decimal(market.spec.quote_units_per_tick_lot as i128, quote.scale.saturating_add(market.spec.tick_lot_scale));
    // Checked: the ledger refuses a lot of zero units, but the terms of any
    // market it returns must not be able to take the gateway down.
    let tick_size = per_lot.checked_div(lot_size).unwrap_or(Decimal::MAX).normalize();
    MarketTerms {
        name: format!("{}-{}", base.symbol, quote.symbol),
        lot_size: lot_size.normalize(),
        tick_size,
        maker_fee_rate: Decimal::new(market.spec.maker_fee_ppm as i64, 6).normalize(),
        taker_fee_rate: Decimal::new(market.spec.taker_fee_ppm as i64, 6).normalize(),
    }
}

/// A market's sizes in the ledger's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketUnits {
    pub base_units_per_lot: u64,
    pub quote_units_per_tick_lot: u64,
    pub tick_lot_scale: u8,
}

/// The ledger's units of a market with `tick` and `lot`: the lot must be a
/// whole number of base minor units; a tick on a lot may be any decimal
/// fraction of a quote minor unit down to 10^-18 (BTC-USD with a 0.01 tick
/// and a 0.0001 lot is 1/10^4 of a cent), as long as the quote's scale plus
/// the fraction's fits a decimal's 28 digits.
pub fn market_units(tick: Decimal, lot: Decimal, base_scale: u8, quote_scale: u8) -> Result<MarketUnits, Refusal> {
    let bad = |message: String| ("BAD_USER_INPUT", message);
    if tick <= Decimal::ZERO || lot <= Decimal::ZERO {
        return Err(bad("tickSize and lotSize must be positive".into()));
    }
    let base_units_per_lot = u64::try_from(to_units(lot, base_scale, "lotSize")?).map_err(|_| bad("lotSize is too large".into()))?;
    let too_large = || bad("tickSize x lotSize is too large".into());
    let tick_lot = tick.checked_mul(lot).ok_or_else(too_large)?;
    // Exact: checked_mul does not round while the product has digits to spare,
    // and multiplying back tells the rounded ones apart.
    if tick_lot.checked_div(lot) != Some(tick) {
        return Err(bad("tickSize x lotSize has more than 28 significant digits".into()));
    }
    let factor = 10i128.checked_pow(quote_scale.into()).and_then(|f| Decimal::try_from_i128_with_scale(f, 0).ok()).ok_or_else(too_large)?;
    let in_units = tick_lot.checked_mul(factor).ok_or_else(too_large)?.normalize();
    let tick_lot_scale = u8::try_from(in_units.scale()).unwrap_or(u8::MAX);
    if tick_lot_scale > matching_api::TICK_LOT_SCALE_MAX || u32::from(quote_scale) + u32::from(tick_lot_scale) > 28 {
        return Err(bad(format!("a tick on a lot is {tick_lot}, finer than this market can count: make the tick or the lot larger")));
    }
    let quote_units_per_tick_lot = u64::try_from(in_units.mantissa()).map_err(|_| too_large())?;
    Ok(MarketUnits { base_units_per_lot, quote_units_per_tick_lot, tick_lot_scale })
}

/// A price as ticks of the market, exactly.
pub fn to_ticks(price: Decimal, terms: &MarketTerms) -> Result<u64, Refusal> {
    let too_large = || ("BAD_USER_INPUT", format!("price {price} is too large"));
    let off_tick = || ("INVALID_TICK_SIZE", format!("price {price} is not a positive multiple of the tick size {}", terms.tick_size));
    whole_multiple(price, terms.tick_size).map_err(|multiple| match multiple {
        Multiple::TooLarge => too_large(),
        Multiple::Not => off_tick(),
    })
}

/// A quantity as lots of the market, exactly.
pub fn to_lots(quantity: Decimal, terms: &MarketTerms) -> Result<u64, Refusal> {
    let too_large = || ("BAD_USER_INPUT", format!("quantity {quantity} is too large"));
    let off_lot = || ("INVALID_LOT_SIZE", format!("quantity {quantity} is not a positive multiple of the lot size {}", terms.lot_size));
    whole_multiple(quantity, terms.lot_size).map_err(|multiple| match multiple {
        Multiple::TooLarge => too_large(),
        Multiple::Not => off_lot(),
    })
}

enum Multiple {
    TooLarge,
    Not,
}

/// `value` as a positive whole number of `size`, exactly.
fn whole_multiple(value: Decimal, size: Decimal) -> Result<u64, Multiple> {
    // Checked: a value near Decimal's maximum over a small size overflows (and would panic).
    let count = value.checked_div(size).ok_or(Multiple::TooLarge)?;
    if count.fract() != Decimal::ZERO || count <= Decimal::ZERO {
        return Err(Multiple::Not);
    }
    // A quotient of 28 significant digits can round to a whole number when
    // `value` is not one: multiplying back tells the exact ones apart.
    if count.checked_mul(size) != Some(value) {
        return Err(Multiple::Not);
    }
    u64::try_from(count.trunc()).map_err(|_| Multiple::TooLarge)
}

/// `count` ticks or lots of `size`, as a price or a quantity. Orders come
/// in as decimals, so within a market whose terms came through the API this
/// never saturates; the saturation is there so that no count the ledger
/// returns can panic the gateway while it answers.
pub fn times(count: u64, size: Decimal) -> Decimal {
    Decimal::from(count).checked_mul(size).unwrap_or(Decimal::MAX).normalize()
}

/// Milliseconds since the epoch as RFC 3339 UTC, e.g. 2026-11-28T10:26:40.123Z.
pub fn rfc3339(ms: u64) -> String {
    let seconds = ms / 1_000;
    let (days, rest) = ((seconds / 86_400) as i64, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rest / 3_600, rest % 3_600 / 60, rest % 60, ms % 1_000)
}

/// An RFC 3339 time a client sent (any offset), in milliseconds since the
/// epoch; None for anything else or a time before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let at = chrono::DateTime::parse_from_rfc3339(text.trim()).ok()?;
    u64::try_from(at.timestamp_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use matching_api::MarketSpec;
    use proptest::prelude::*;

    #[test]
    fn order_ids_round_trip_through_uuids_and_foreign_uuids_are_refused() {
        for id in [1, 42, u32::MAX as u64, (1 << 62) - 1] {
            assert_eq!(parse_order_uuid(&order_uuid(id)), Some(id));
        }
        assert_eq!(parse_order_uuid("6f1c2a4e-8b0d-4f6e-9a51-3c2b1d0e9f87"), None);
        assert_eq!(parse_order_uuid("not a uuid"), None);
    }

    #[test]
    fn rfc3339_times_parse_with_any_offset_and_round_trip() {
        assert_eq!(parse_rfc3339("2026-11-28T10:26:40.123Z"), Some(1_795_861_600_123));
        assert_eq!(parse_rfc3339("2026-11-28T11:26:40.123+01:00"), Some(1_795_861_600_123));
        assert_eq!(parse_rfc3339(&rfc3339(1_795_861_600_123)), Some(1_795_861_600_123));
        for bad in ["", "tomorrow", "2026-11-28", "1969-12-31T23:59:59Z", "2026-13-01T00:00:00Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn decimals_convert_exactly_or_are_refused() {
        assert_eq!(to_units("1.50".parse().unwrap(), 2, "amount"), Ok(150));
        assert_eq!(to_units("0.00000001".parse().unwrap(), 8, "amount"), Ok(1));
        assert_eq!(to_units("1.505".parse().unwrap(), 2, "amount").unwrap_err().0, "BAD_USER_INPUT");
        assert_eq!(to_decimal(150, 2).to_string(), "1.50");
    }

    #[test]
    fn prices_and_quantities_too_large_for_the_market_are_refused_not_a_panic() {
        let terms = MarketTerms {
            name: "BTC-USD".into(),
            lot_size: Decimal::new(1, 3),
            tick_size: Decimal::new(1, 2),
            maker_fee_rate: Decimal::ZERO,
            taker_fee_rate: Decimal::ZERO,
        };
        assert_eq!(to_ticks(Decimal::new(12345, 2), &terms), Ok(12345));
        assert_eq!(to_lots(Decimal::new(5, 3), &terms), Ok(5));
        assert_eq!(to_ticks(Decimal::MAX, &terms).map_err(|(code, _)| code), Err("BAD_USER_INPUT"));
        assert_eq!(to_lots(Decimal::MAX, &terms).map_err(|(code, _)| code), Err("BAD_USER_INPUT"));
        assert_eq!(to_ticks(Decimal::new(1, 3), &terms).map_err(|(code, _)| code), Err("INVALID_TICK_SIZE"));
    }

    #[test]
    fn a_quotient_rounded_to_a_whole_number_is_not_taken_for_one() {
        // 3e18 + 1e-10 over 0.3 is 1e19 + 3.3e-10, which a decimal's 96 bits round to exactly 1e19.
        let terms = MarketTerms {
            name: "X-Y".into(),
            lot_size: Decimal::new(3, 1),
            tick_size: Decimal::new(3, 1),
            maker_fee_rate: Decimal::ZERO,
            taker_fee_rate: Decimal::ZERO,
        };
        let value: Decimal = "3000000000000000000.0000000001".parse().unwrap();
        assert_eq!(to_lots(value, &terms).map_err(|(code, _)| code), Err("INVALID_LOT_SIZE"));
        assert_eq!(to_ticks(value, &terms).map_err(|(code, _)| code), Err("INVALID_TICK_SIZE"));
        assert_eq!(to_lots("3000000000000000000".parse().unwrap(), &terms), Ok(10_000_000_000_000_000_000));
    }

    /// Any decimal there is: every mantissa of 96 bits, either sign, scales 0 to 28.
    fn any_decimal() -> impl Strategy<Value = Decimal> {
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>(), 0u32..=28)
            .prop_map(|(lo, mid, hi, negative, scale)| Decimal::from_parts(lo, mid, hi, negative, scale))
    }

    /// Decimals as users type them: small mantissas, so that whole multiples and exact amounts come up often.
    fn typed_decimal() -> impl Strategy<Value = Decimal> {
        (any::<i64>(), 0u32..=20).prop_map(|(mantissa, scale)| Decimal::new(mantissa, scale))
    }

    fn some_decimal() -> impl Strategy<Value = Decimal> {
        prop_oneof![any_decimal(), typed_decimal(), Just(Decimal::MAX), Just(Decimal::MIN), Just(Decimal::ZERO), Just(Decimal::new(1, 28))]
    }

    /// A market's terms as the ledger can hold them: any units per lot and per tick, any scales.
    fn any_terms() -> impl Strategy<Value = MarketTerms> {
        (any::<u64>(), any::<u64>(), any::<u8>(), 0u8..=18, 0u8..=18).prop_map(|(per_lot, per_tick_lot, tick_lot_scale, base_scale, quote_scale)| {
            let spec = MarketSpec {
                id: 1,
                quote_units_per_tick_lot: per_tick_lot,
                tick_lot_scale,
                maker_fee_ppm: 0,
                taker_fee_ppm: 0,
                price_ticks_max: 1,
                quantity_lots_max: 1,
                price_band_ppm: 0,
            };
            let market = LedgerMarket { base: 1, quote: 2, base_units_per_lot: per_lot, spec, trading: true };
            let asset = |id, scale| AssetSpec { id, symbol: "X".into(), scale };
            market_terms(&market, &asset(1, base_scale), &asset(2, quote_scale))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Prices and quantities over the whole decimal range: an error with
        /// a code, or a count that gives the input back exactly.
        #[test]
        fn prices_and_quantities_convert_exactly_or_are_refused(value in some_decimal(), terms in any_terms()) {
            for (converted, size, off_size) in [(to_ticks(value, &terms), terms.tick_size, "INVALID_TICK_SIZE"), (to_lots(value, &terms), terms.lot_size, "INVALID_LOT_SIZE")] {
                match converted {
                    Ok(count) => {
                        prop_assert!(count > 0);
                        prop_assert_eq!(times(count, size), value, "{} of {} is not the input", count, size);
                    }
                    Err((code, _)) => prop_assert!(code == "BAD_USER_INPUT" || code == off_size, "{}", code),
                }
            }
        }

        /// Any text at all, and text that looks like a number.
        #[test]
        fn decimal_text_parses_or_is_refused(text in prop_oneof![any::<String>(), "[-+]?[0-9]{0,40}(\\.[0-9]{0,40})?([eE][-+]?[0-9]{1,3})?"]) {
            match parse_decimal(&text) {
                Ok(value) => prop_assert_eq!(parse_decimal(&value.to_string()), Ok(value), "{} does not read back", value),
                Err(message) => prop_assert!(message.len() < 200, "{}", message),
            }
        }

        #[test]
        fn amounts_convert_exactly_or_are_refused(value in some_decimal(), scale in any::<u8>()) {
            match to_units(value, scale, "amount") {
                Ok(units) => prop_assert_eq!(Decimal::try_from_i128_with_scale(units, scale.into()).ok(), Some(value)),
                Err((code, _)) => prop_assert_eq!(code, "BAD_USER_INPUT"),
            }
        }

        /// A market created from any tick and lot either is refused with a
        /// code or shows the same tick and lot again.
        #[test]
        fn markets_show_the_sizes_they_were_created_with(tick in some_decimal(), lot in some_decimal(), base_scale in 0u8..=18, quote_scale in 0u8..=18) {
            match market_units(tick, lot, base_scale, quote_scale) {
                Ok(units) => {
                    let spec = MarketSpec {
                        id: 1,
                        quote_units_per_tick_lot: units.quote_units_per_tick_lot,
                        tick_lot_scale: units.tick_lot_scale,
                        maker_fee_ppm: 0,
                        taker_fee_ppm: 0,
                        price_ticks_max: 1,
                        quantity_lots_max: 1,
                        price_band_ppm: 0,
                    };
                    let market = LedgerMarket { base: 1, quote: 2, base_units_per_lot: units.base_units_per_lot, spec, trading: true };
                    let asset = |id, scale| AssetSpec { id, symbol: "X".into(), scale };
                    let terms = market_terms(&market, &asset(1, base_scale), &asset(2, quote_scale));
                    prop_assert_eq!((terms.tick_size, terms.lot_size), (tick.normalize(), lot.normalize()));
                }
                Err((code, _)) => prop_assert_eq!(code, "BAD_USER_INPUT"),
            }
        }

        /// Counts the ledger returns, shown in any market's sizes, never panic.
        #[test]
        fn counts_show_in_any_market(count in any::<u64>(), terms in any_terms()) {
            let (price, quantity) = (times(count, terms.tick_size), times(count, terms.lot_size));
            prop_assert!(price >= Decimal::ZERO && quantity >= Decimal::ZERO);
        }
    }

    #[test]
    fn markets_list_as_exchanges_list_them() {
        // BTC-USD at a cent's tick and a ten-thousandth of a bitcoin: a tick on a lot is 1/10^4 of a cent.
        let units = market_units(Decimal::new(1, 2), Decimal::new(1, 4), 8, 2).unwrap();
        assert_eq!(units, MarketUnits { base_units_per_lot: 10_000, quote_units_per_tick_lot: 1, tick_lot_scale: 4 });
        // Whole cents per tick and lot stay whole: scale 0, as before.
        let units = market_units(Decimal::ONE, Decimal::new(1, 2), 8, 2).unwrap();
        assert_eq!(units, MarketUnits { base_units_per_lot: 1_000_000, quote_units_per_tick_lot: 1, tick_lot_scale: 0 });
        let refused = |tick, lot| market_units(tick, lot, 8, 2).unwrap_err().1;
        assert!(refused(Decimal::new(1, 2), Decimal::new(1, 9)).contains("more than 8 decimal places"), "a lot finer than a satoshi");
        assert!(refused(Decimal::new(1, 20), Decimal::new(1, 8)).contains("finer than this market can count"), "10^-28 of a dollar");
        assert!(refused(Decimal::ZERO, Decimal::ONE).contains("must be positive"));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_861_600_123), "2026-11-28T10:26:40.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
