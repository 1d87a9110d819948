//! Convert: a firm quote from the house, accepted in time or not. This file
//! prices a quote (the market's book walked for the size, or the pair's set
//! price; `crate::pricing` does the numbers) and asks the ledger to hold it;
//! the ledger checks it against the pair, the user's money and the house's
//! inventory, and settles an accept once and only before the quote expires.

use std::time::Instant;

use async_graphql::{Context, Enum, Error, Object, SimpleObject, ID};
use ledger_api::convert::{self as api, Command, Conversion, Pair, PairSpec, PriceSource, Quote, QuoteLeg, QuoteRequest};
use ledger_api::{Answer, AssetSpec, Outcome, Query};
use rust_decimal::Decimal;

use super::{ask, at, caller_id, coded, list_limit, operator, run, services, unexpected, Catalog, DateTime, Dec};
use crate::pricing::{self, LegTerms, Level, PricingError, Route, Source, Wanted};
use crate::units::{to_decimal, to_units};

/// Book levels a quote walks at most: a size deeper than these is refused as too thin.
const BOOK_LEVELS_MAX: u32 = 1_000;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ConvertPriceSource {
    /// The market's order book, walked for the size.
    Book,
    /// A price the operators set.
    Set,
}

/// What users may convert, both ways.
#[derive(SimpleObject)]
pub struct ConvertPair {
    pub base: String,
    pub quote: String,
    pub price_source: ConvertPriceSource,
    /// The market whose book prices the pair (BOOK).
    pub market: Option<ID>,
    /// The operators' price, in quote per base (SET).
    pub price: Option<Dec>,
    /// The house's margin off the fair price, in basis points.
    pub spread_bps: i32,
    /// The fee, in basis points of what the user receives.
    pub fee_bps: i32,
    /// Bounds on the base amount a conversion on this pair trades.
    pub min_amount: Dec,
    pub max_amount: Dec,
    /// What the user gives or gets of the base asset is a multiple of this.
    pub step_size: Dec,
    /// How long a quote holds.
    pub quote_ttl_ms: i32,
    pub paused: bool,
}

/// A pair and the house's position through it (operators only).
#[derive(SimpleObject)]
pub struct ConvertPosition {
    pub pair: ConvertPair,
    /// The most the house may pay out, net, through this pair, of each asset.
    pub exposure_limit_base: Dec,
    pub exposure_limit_quote: Dec,
    /// Net into the house's inventory through this pair (negative: paid out).
    pub net_base: Dec,
    pub net_quote: Dec,
}

/// A firm quote: accept it with acceptConvertQuote before `expiresAt`.
#[derive(SimpleObject)]
pub struct ConvertQuote {
    pub id: ID,
    pub from: String,
    pub to: String,
    /// What the user gives.
    pub from_amount: Dec,
    /// What the user gets, the fee taken.
    pub to_amount: Dec,
    /// `to` per `from`: toAmount / fromAmount (12 decimals, rounded down).
    pub price: Dec,
    /// `from` per `to`: fromAmount / toAmount.
    pub inverse_price: Dec,
    /// The fee, in the `to` asset, already out of toAmount.
    pub fee: Dec,
    /// The asset a two-leg conversion goes through.
    pub via: Option<String>,
    pub created_at: DateTime,
    /// The ledger's time after which an accept answers QUOTE_EXPIRED.
    pub expires_at: DateTime,
}

/// An accepted quote.
#[derive(SimpleObject)]
pub struct ConvertTrade {
    /// The quote's id.
    pub id: ID,
    pub from: String,
    pub to: String,
    pub from_amount: Dec,
    pub to_amount: Dec,
    pub price: Dec,
    pub inverse_price: Dec,
    pub fee: Dec,
    pub via: Option<String>,
    pub at: DateTime,
}

#[derive(Default)]
pub struct ConvertQuery;

#[Object]
impl ConvertQuery {
    /// Every pair users may convert, both ways (paused ones too).
    async fn convert_pairs(&self, ctx: &Context<'_>) -> Result<Vec<ConvertPair>, Error> {
        let catalog = Catalog::load(ctx).await?;
        Ok(pairs(ctx).await?.iter().map(|pair| api_pair(&catalog, &pair.spec)).collect())
    }

    /// The caller's conversions, newest first.
    async fn convert_trades(&self, ctx: &Context<'_>, limit: Option<i32>) -> Result<Vec<ConvertTrade>, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        match ask(ctx, Query::Convert(api::Query::Conversions { user: Some(user), limit: list_limit(limit) })).await? {
            Answer::Convert(api::Answer::Conversions(conversions)) => Ok(conversions.iter().map(|c| api_trade(&catalog, c)).collect()),
            other => Err(unexpected(other)),
        }
    }

    /// The house's position through each pair (operators only); its
    /// inventory and revenue per asset are houseBalances.
    async fn convert_positions(&self, ctx: &Context<'_>) -> Result<Vec<ConvertPosition>, Error> {
        operator(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        Ok(pairs(ctx).await?.iter().map(|pair| api_position(&catalog, pair)).collect())
    }
}

#[derive(Default)]
pub struct ConvertMutation;

#[Object]
impl ConvertMutation {
    /// A firm quote to convert `from` into `to`: name exactly one of
    /// `fromAmount` (what you give) and `toAmount` (what you get, the fee
    /// taken). Refused when your available balance does not cover it, the
    /// pair is paused (MARKET_CLOSED), or the house cannot take the other
    /// side now (INSUFFICIENT_LIQUIDITY). Quotes per user are rate-limited.
    async fn convert_quote(
        &self,
        ctx: &Context<'_>,
        from: String,
        to: String,
        from_amount: Option<Dec>,
        to_amount: Option<Dec>,
    ) -> Result<ConvertQuote, Error> {
        let user = caller_id(ctx)?;
        if let Err(wait) = services(ctx).convert_quotes.check(&user, Instant::now()) {
            return Err(coded("RATE_LIMITED", format!("too many quotes; ask again in {} ms", wait.as_millis().max(1))));
        }
        // The kept catalog when it knows both assets: a quote is on a hot path.
        let catalog = Catalog::covering(ctx, |c| c.asset_by_symbol(&from).is_ok() && c.asset_by_symbol(&to).is_ok()).await?;
        let (from_spec, to_spec) = (catalog.asset_by_symbol(&from)?.clone(), catalog.asset_by_symbol(&to)?.clone());
        let wanted = match (from_amount, to_amount) {
            (Some(amount), None) => Wanted::From(units(amount, &from_spec, "fromAmount")?),
            (None, Some(amount)) => Wanted::To(units(amount, &to_spec, "toAmount")?),
            _ => return Err(coded("BAD_USER_INPUT", "name exactly one of fromAmount and toAmount")),
        };
        let pairs = pairs(ctx).await?;
        let route = route(&pairs, from_spec.id, to_spec.id)
            .ok_or_else(|| coded("NOT_FOUND", format!("no conversion between {from} and {to}: no pair, directly or through one other asset")))?;
        // A pair priced from a market this gateway has not seen yet (another created it).
        let books = |c: &Catalog| route.iter().all(|(pair, _)| matches!(pair.spec.price, PriceSource::Set { .. }) || c.has_market_of(&pair.spec));
        let catalog = if books(&catalog) { catalog } else { Catalog::load(ctx).await? };
        let mut legs = Vec::with_capacity(route.len());
        for (pair, sell_base) in &route {
            legs.push(LegTerms { sell_base: *sell_base, source: source(ctx, &catalog, &pair.spec, *sell_base).await?, spread_bps: pair.spec.spread_bps });
        }
        let (first, last) = (route[0], route[route.len() - 1]);
        let terms = Route {
            legs,
            fee_bps: last.0.spec.fee_bps,
            from_step: first.1.then_some(first.0.spec.base_step),
            to_step: (!last.1).then_some(last.0.spec.base_step),
        };
        let priced = pricing::price(&terms, wanted).map_err(|error| pricing_error(&catalog, error, &route, &from_spec, &to_spec))?;
        let legs = route
            .iter()
            .zip(&priced.legs)
            .map(|((pair, sell_base), leg)| QuoteLeg {
                base: pair.spec.base,
                quote: pair.spec.quote,
                sell_base: *sell_base,
                pay: leg.pay,
                receive: leg.receive,
                spread: leg.spread,
            })
            .collect();
        match run(ctx, ledger_api::Command::Convert(Command::Quote(QuoteRequest { user, legs, fee: priced.fee }))).await? {
            Outcome::Convert(api::Outcome::Quoted(quote)) => Ok(api_quote(&catalog, &quote)),
            other => Err(unexpected(other)),
        }
    }

    /// Accepts a quote: the conversion settles at once, or is refused with
    /// QUOTE_EXPIRED after the quote's expiry. A quote is accepted at most
    /// once: the same idempotencyKey again answers the same conversion, a
    /// new key DUPLICATE.
    async fn accept_convert_quote(&self, ctx: &Context<'_>, quote_id: ID, idempotency_key: String) -> Result<ConvertTrade, Error> {
        let user = caller_id(ctx)?;
        let id: u64 = quote_id.parse().map_err(|_| coded("NOT_FOUND", format!("no quote {}", quote_id.as_str())))?;
        let accepted = match run(ctx, ledger_api::Command::Convert(Command::Accept { user, quote: id, key: idempotency_key })).await? {
            Outcome::Convert(api::Outcome::Accepted(id)) => id,
            other => return Err(unexpected(other)),
        };
        match ask(ctx, Query::Convert(api::Query::Conversion { id: accepted })).await? {
            Answer::Convert(api::Answer::Conversion(Some(conversion))) if conversion.quote.user == user => {
                let quote = &conversion.quote;
                let catalog = Catalog::covering(ctx, |c| c.asset(quote.from()).is_some() && c.asset(quote.to()).is_some()).await?;
                Ok(api_trade(&catalog, &conversion))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Adds a conversion pair or changes one (operators only, under the
    /// four-eyes rules: the second operator sends the same request or
    /// approves the proposal). A new pair names `market` (priced from its
    /// book) or `price` (quote per base), and its amounts; a change names
    /// what changes, the rest stays.
    #[allow(clippy::too_many_arguments)]
    async fn set_convert_pair(
        &self,
        ctx: &Context<'_>,
        base: String,
        quote: String,
        market: Option<ID>,
        price: Option<Dec>,
        spread_bps: Option<i32>,
        fee_bps: Option<i32>,
        min_amount: Option<Dec>,
        max_amount: Option<Dec>,
        step_size: Option<Dec>,
        quote_ttl_ms: Option<i32>,
        paused: Option<bool>,
        exposure_limit_base: Option<Dec>,
        exposure_limit_quote: Option<Dec>,
    ) -> Result<ConvertPair, Error> {
        operator(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let (base_spec, quote_spec) = (catalog.asset_by_symbol(&base)?.clone(), catalog.asset_by_symbol(&quote)?.clone());
        let existing = pairs(ctx).await?.into_iter().find(|p| p.spec.base == base_spec.id && p.spec.quote == quote_spec.id).map(|p| p.spec);
        let source = match (market, price) {
            (Some(_), Some(_)) => return Err(coded("BAD_USER_INPUT", "name a market or a price, not both")),
            (Some(market), None) => {
                let (ledger_market, ..) = catalog.market_by_name(&market)?;
                if (ledger_market.base, ledger_market.quote) != (base_spec.id, quote_spec.id) {
                    return Err(coded("BAD_USER_INPUT", format!("market {} does not trade {base} against {quote}", market.as_str())));
                }
                PriceSource::Book(ledger_market.id())
            }
            (None, Some(price)) => set_price(price, &base_spec, &quote_spec)?,
            (None, None) => existing.map(|e| e.price).ok_or_else(|| coded("BAD_USER_INPUT", "a new pair names a market or a price"))?,
        };
        let base_amount = |value: Option<Dec>, field: &str, was: Option<i128>| -> Result<i128, Error> {
            match value {
                Some(value) => units(value, &base_spec, field),
                None => was.ok_or_else(|| coded("BAD_USER_INPUT", format!("a new pair names its {field}"))),
            }
        };
        let quote_amount = |value: Option<Dec>, field: &str, was: Option<i128>| -> Result<i128, Error> {
            match value {
                Some(value) => units(value, &quote_spec, field),
                None => was.ok_or_else(|| coded("BAD_USER_INPUT", format!("a new pair names its {field}"))),
            }
        };
        let bps = |value: Option<i32>, was: Option<u32>| -> Result<u32, Error> {
            match value {
                Some(value) => u32::try_from(value).map_err(|_| coded("BAD_USER_INPUT", "basis points are zero or more")),
                None => Ok(was.unwrap_or(0)),
            }
        };
        let spec = PairSpec {
            base: base_spec.id,
            quote: quote_spec.id,
            price: source,
            spread_bps: bps(spread_bps, existing.map(|e| e.spread_bps))?,
            fee_bps: bps(fee_bps, existing.map(|e| e.fee_bps))?,
            base_min: base_amount(min_amount, "minAmount", existing.map(|e| e.base_min))?,
            base_max: base_amount(max_amount, "maxAmount", existing.map(|e| e.base_max))?,
            base_step: base_amount(step_size, "stepSize", existing.map(|e| e.base_step))?,
            quote_ttl_ms: match quote_ttl_ms {
                Some(ms) => u32::try_from(ms).map_err(|_| coded("BAD_USER_INPUT", "quoteTtlMs is positive"))?,
                None => existing.map_or(api::QUOTE_TTL_MS_DEFAULT, |e| e.quote_ttl_ms),
            },
            paused: paused.or(existing.map(|e| e.paused)).unwrap_or(false),
            exposure_max_base: base_amount(exposure_limit_base, "exposureLimitBase", existing.map(|e| e.exposure_max_base))?,
            exposure_max_quote: quote_amount(exposure_limit_quote, "exposureLimitQuote", existing.map(|e| e.exposure_max_quote))?,
        };
        spec.check().map_err(|reason| coded("BAD_USER_INPUT", reason))?;
        match super::operators::operate(ctx, ledger_api::Command::Convert(Command::SetPair(spec))).await? {
            Outcome::Convert(api::Outcome::PairSet { .. }) => Ok(api_pair(&catalog, &spec)),
            other => Err(unexpected(other)),
        }
    }
}

async fn pairs(ctx: &Context<'_>) -> Result<Vec<Pair>, Error> {
    match ask(ctx, Query::Convert(api::Query::Pairs)).await? {
        Answer::Convert(api::Answer::Pairs(pairs)) => Ok(pairs),
        other => Err(unexpected(other)),
    }
}

impl Catalog {
    fn has_market_of(&self, spec: &PairSpec) -> bool {
        matches!(spec.price, PriceSource::Book(market) if self.markets.iter().any(|m| m.id() == market))
    }
}

fn units(amount: Dec, spec: &AssetSpec, field: &str) -> Result<i128, Error> {
    to_units(amount.0, spec.scale, field).map_err(|(code, message)| coded(code, message))
}

/// The pairs from `from` to `to`, each with whether it sells its base: a
/// direct pair, or else two through the intermediate asset with the lowest id.
fn route(pairs: &[Pair], from: u32, to: u32) -> Option<Vec<(&Pair, bool)>> {
    let leg = |a: u32, b: u32| {
        pairs.iter().find_map(|pair| match (pair.spec.base, pair.spec.quote) {
            (base, quote) if (base, quote) == (a, b) => Some((pair, true)),
            (base, quote) if (base, quote) == (b, a) => Some((pair, false)),
            _ => None,
        })
    };
    if from == to {
        return None;
    }
    if let Some(direct) = leg(from, to) {
        return Some(vec![direct]);
    }
    let mut via: Vec<u32> = pairs.iter().flat_map(|pair| [pair.spec.base, pair.spec.quote]).filter(|asset| *asset != from && *asset != to).collect();
    via.sort_unstable();
    via.dedup();
    via.into_iter().find_map(|middle| Some(vec![leg(from, middle)?, leg(middle, to)?]))
}

/// The leg's prices: the side of the book the house would meet, in minor
/// units, or the set ratio.
async fn source(ctx: &Context<'_>, catalog: &Catalog, spec: &PairSpec, sell_base: bool) -> Result<Source, Error> {
    match spec.price {
        PriceSource::Set { quote_units, base_units } => Ok(Source::Ratio { quote_units, base_units }),
        PriceSource::Book(market) => {
            let ledger_market =
                catalog.markets.iter().find(|m| m.id() == market).ok_or_else(|| coded("UNAVAILABLE", format!("the pair's market {market} is unknown")))?;
            let book = services(ctx).matching.depth(market, BOOK_LEVELS_MAX).await.map_err(super::link_error)?;
            let levels = book.map(|book| if sell_base { book.bids } else { book.asks }).unwrap_or_default();
            let per_lot = Decimal::from(ledger_market.base_units_per_lot);
            let per_tick_lot = to_decimal(ledger_market.spec.quote_units_per_tick_lot as i128, ledger_market.spec.tick_lot_scale);
            // Checked: a level beyond what a decimal holds ends the walk
            // there (a quote past it is too thin), never the gateway.
            let level = |level: &matching_api::PriceLevel| {
                let price = Decimal::from(level.price).checked_mul(per_tick_lot)?.checked_div(per_lot)?;
                Some(Level { price, quantity: Decimal::from(level.quantity).checked_mul(per_lot)? })
            };
            Ok(Source::Levels(levels.iter().map_while(level).collect()))
        }
    }
}

fn pricing_error(catalog: &Catalog, error: PricingError, route: &[(&Pair, bool)], from: &AssetSpec, to: &AssetSpec) -> Error {
    match error {
        PricingError::Thin => coded("INSUFFICIENT_LIQUIDITY", "the order book is too thin for this amount now; try a smaller amount or later"),
        PricingError::OffStep { step, to: gets } => {
            // The step is the base asset's: of the first pair for what the user gives, the last for what they get.
            let (pair, asset) = if gets { (route[route.len() - 1].0, to) } else { (route[0].0, from) };
            coded(
                "BAD_USER_INPUT",
                format!("the amount of {} is not a multiple of the pair's step of {}", asset.symbol, catalog.amount(pair.spec.base, step).0),
            )
        }
        PricingError::TooSmall => coded("BAD_USER_INPUT", "the amount is too small to convert; ask for more"),
        PricingError::Overflow => coded("BAD_USER_INPUT", "the amount is too large to convert"),
    }
}

/// A price in quote per base as the ratio of minor units the ledger keeps.
fn set_price(price: Dec, base: &AssetSpec, quote: &AssetSpec) -> Result<PriceSource, Error> {
    let price = price.0.normalize();
    if price <= Decimal::ZERO {
        return Err(coded("BAD_USER_INPUT", "a price is positive"));
    }
    // price = m / 10^k quote per base: m x 10^quote_scale quote units per 10^(k + base_scale) base units.
    let (m, k) = (price.mantissa(), price.scale());
    let pow = |n: u32| 10i128.checked_pow(n);
    let quote_units = pow(u32::from(quote.scale)).and_then(|p| m.checked_mul(p));
    let base_units = pow(k + u32::from(base.scale));
    let (Some(mut quote_units), Some(mut base_units)) = (quote_units, base_units) else {
        return Err(coded("BAD_USER_INPUT", "the price has too many digits"));
    };
    let divisor = gcd(quote_units, base_units);
    quote_units /= divisor;
    base_units /= divisor;
    Ok(PriceSource::Set { quote_units, base_units })
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs().max(1)
}

fn api_pair(catalog: &Catalog, spec: &PairSpec) -> ConvertPair {
    let (base_scale, quote_scale) = (catalog.asset(spec.base).map_or(0, |a| a.scale), catalog.asset(spec.quote).map_or(0, |a| a.scale));
    let (price_source, market, price) = match spec.price {
        PriceSource::Book(market) => {
            let name = catalog
                .markets
                .iter()
                .find(|m| m.id() == market)
                .map_or_else(|| market.to_string(), |m| format!("{}-{}", catalog.symbol(m.base), catalog.symbol(m.quote)));
            (ConvertPriceSource::Book, Some(ID(name)), None)
        }
        PriceSource::Set { quote_units, base_units } => {
            let price = pricing::ratio(to_decimal(quote_units, quote_scale), to_decimal(base_units, base_scale)).map(Dec);
            (ConvertPriceSource::Set, None, price)
        }
    };
    ConvertPair {
        base: catalog.symbol(spec.base),
        quote: catalog.symbol(spec.quote),
        price_source,
        market,
        price,
        spread_bps: spec.spread_bps as i32,
        fee_bps: spec.fee_bps as i32,
        min_amount: catalog.amount(spec.base, spec.base_min),
        max_amount: catalog.amount(spec.base, spec.base_max),
        step_size: catalog.amount(spec.base, spec.base_step),
        quote_ttl_ms: spec.quote_ttl_ms as i32,
        paused: spec.paused,
    }
}

fn api_position(catalog: &Catalog, pair: &Pair) -> ConvertPosition {
    let spec = &pair.spec;
    ConvertPosition {
        pair: api_pair(catalog, spec),
        exposure_limit_base: catalog.amount(spec.base, spec.exposure_max_base),
        exposure_limit_quote: catalog.amount(spec.quote, spec.exposure_max_quote),
        net_base: catalog.amount(spec.base, pair.net_base),
        net_quote: catalog.amount(spec.quote, pair.net_quote),
    }
}

/// Both prices of a quote, from its amounts.
fn prices(catalog: &Catalog, quote: &Quote) -> (Dec, Dec) {
    let (from, to) = (catalog.amount(quote.from(), quote.from_amount()).0, catalog.amount(quote.to(), quote.to_amount()).0);
    (Dec(pricing::ratio(to, from).unwrap_or_default()), Dec(pricing::ratio(from, to).unwrap_or_default()))
}

fn api_quote(catalog: &Catalog, quote: &Quote) -> ConvertQuote {
    let (price, inverse_price) = prices(catalog, quote);
    ConvertQuote {
        id: ID(quote.id.to_string()),
        from: catalog.symbol(quote.from()),
        to: catalog.symbol(quote.to()),
        from_amount: catalog.amount(quote.from(), quote.from_amount()),
        to_amount: catalog.amount(quote.to(), quote.to_amount()),
        price,
        inverse_price,
        fee: catalog.amount(quote.to(), quote.fee),
        via: quote.via().map(|asset| catalog.symbol(asset)),
        created_at: at(quote.created_ms),
        expires_at: at(quote.expires_at_ms),
    }
}

fn api_trade(catalog: &Catalog, conversion: &Conversion) -> ConvertTrade {
    let quote = &conversion.quote;
    let (price, inverse_price) = prices(catalog, quote);
    ConvertTrade {
        id: ID(conversion.id.to_string()),
        from: catalog.symbol(quote.from()),
        to: catalog.symbol(quote.to()),
        from_amount: catalog.amount(quote.from(), quote.from_amount()),
        to_amount: catalog.amount(quote.to(), quote.to_amount()),
        price,
        inverse_price,
        fee: catalog.amount(quote.to(), quote.fee),
        via: quote.via().map(|asset| catalog.symbol(asset)),
        at: at(conversion.at_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(id: u32, scale: u8) -> AssetSpec {
        AssetSpec { id, symbol: format!("A{id}"), scale }
    }

    #[test]
    fn a_set_price_is_an_exact_ratio_of_minor_units() {
        // 1.0850 USD per EUR, both scale 2: 10850 cents for 10000 euro cents = 217/200.
        assert_eq!(set_price(Dec("1.0850".parse().unwrap()), &asset(1, 2), &asset(2, 2)).unwrap(), PriceSource::Set { quote_units: 217, base_units: 200 });
        // 50000 USD per BTC: 5,000,000 cents per 10^8 satoshi.
        assert_eq!(set_price(Dec("50000".parse().unwrap()), &asset(1, 8), &asset(2, 2)).unwrap(), PriceSource::Set { quote_units: 1, base_units: 20 });
        assert!(set_price(Dec(Decimal::ZERO), &asset(1, 8), &asset(2, 2)).is_err());
    }
}
