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

/// `amount` minor units of an asset with `scale` as a decimal (e.g. 150 at scale 2 is "1.50").
pub fn to_decimal(amount: i128, scale: u8) -> Decimal {
    Decimal::try_from_i128_with_scale(amount, scale as u32).unwrap_or(Decimal::MAX)
}

/// A decimal as an exact number of units of `10^-scale`.
pub fn to_units(value: Decimal, scale: u8, field: &str) -> Result<i128, Refusal> {
    let scaled = value.checked_mul(Decimal::from_i128_with_scale(10i128.pow(scale as u32), 0)).ok_or(("BAD_USER_INPUT", format!("{field} is too large")))?;
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
    // quote_units_per_tick_lot = tick_size x lot_size x 10^quote_scale.
    let per_lot = to_decimal(market.spec.quote_units_per_tick_lot as i128, quote.scale);
    let tick_size = (per_lot / lot_size).normalize();
    MarketTerms {
        name: format!("{}-{}", base.symbol, quote.symbol),
        lot_size: lot_size.normalize(),
        tick_size,
        maker_fee_rate: Decimal::new(market.spec.maker_fee_ppm as i64, 6).normalize(),
        taker_fee_rate: Decimal::new(market.spec.taker_fee_ppm as i64, 6).normalize(),
    }
}

/// A price as ticks of the market, exactly.
pub fn to_ticks(price: Decimal, terms: &MarketTerms) -> Result<u64, Refusal> {
    // Checked: a price near Decimal's maximum over a small tick overflows (and would panic).
    let ticks = price.checked_div(terms.tick_size).ok_or_else(|| ("BAD_USER_INPUT", format!("price {price} is too large")))?;
    if ticks.fract() != Decimal::ZERO || ticks <= Decimal::ZERO {
        return Err(("INVALID_TICK_SIZE", format!("price {price} is not a positive multiple of the tick size {}", terms.tick_size)));
    }
    u64::try_from(ticks.trunc()).map_err(|_| ("BAD_USER_INPUT", format!("price {price} is too large")))
}

/// A quantity as lots of the market, exactly.
pub fn to_lots(quantity: Decimal, terms: &MarketTerms) -> Result<u64, Refusal> {
    let lots = quantity.checked_div(terms.lot_size).ok_or_else(|| ("BAD_USER_INPUT", format!("quantity {quantity} is too large")))?;
    if lots.fract() != Decimal::ZERO || lots <= Decimal::ZERO {
        return Err(("INVALID_LOT_SIZE", format!("quantity {quantity} is not a positive multiple of the lot size {}", terms.lot_size)));
    }
    u64::try_from(lots.trunc()).map_err(|_| ("BAD_USER_INPUT", format!("quantity {quantity} is too large")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_round_trip_through_uuids_and_foreign_uuids_are_refused() {
        for id in [1, 42, u32::MAX as u64, (1 << 62) - 1] {
            assert_eq!(parse_order_uuid(&order_uuid(id)), Some(id));
        }
        assert_eq!(parse_order_uuid("6f1c2a4e-8b0d-4f6e-9a51-3c2b1d0e9f87"), None);
        assert_eq!(parse_order_uuid("not a uuid"), None);
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
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_861_600_123), "2026-11-28T10:26:40.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
