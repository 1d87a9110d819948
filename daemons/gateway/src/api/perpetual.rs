//! Perpetual futures: the markets, a user's positions and margin, funding
//! and liquidations, under the names CCXT users know (`fetchPositions`,
//! `setLeverage`, `setMarginMode`, `addMargin`, `reduceMargin`,
//! `fetchFundingRate`, `fetchFundingRateHistory`). Orders on a perpetual
//! market are placeOrder's (its market id ends in -PERP; its stops may
//! watch MARK_PRICE): this file adds only what is the perpetual's own. The
//! ledger computes every number; this file turns ticks, lots and minor
//! units into decimals.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, Enum, Error, InputObject, Object, SimpleObject, Subscription, ID};
use futures_util::stream::{self, Stream};
use ledger_api::perpetual::{self as api, FundingRecord, LiquidationRecord, MarginTier, MarketView, PerpetualSpec, PositionView};
use ledger_api::spot::{self as spot_api, Market as LedgerMarket};
use ledger_api::{Answer, AssetSpec, Command, Outcome, Query};
use matching_api::MarketSpec;
use rust_decimal::Decimal;

use super::spot::{Order, OrderType, PlaceOrderInput, Side, TimeInForce};
use super::{ask, ask_ledger, at, caller_id, coded, list_limit, now_ms, operator, run, services, take_slot, unexpected, Catalog, DateTime, Dec};
use crate::ledger_client::LedgerClient;
use crate::units::{self, MarketTerms};

/// A market close goes no further from the mark than a tenth of it.
const CLOSE_SLACK_MAX_DIVISOR: u64 = 10;

/// How often a positions subscription reads the positions with nothing
/// said to have changed them: margin added or funding paid through
/// another gateway.
const POSITIONS_RESYNC: Duration = Duration::from_secs(2);

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum MarginMode {
    /// The position draws on the general account, shared by every cross position in the collateral.
    Cross,
    /// The position has only its own margin.
    Isolated,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PositionSide {
    Long,
    Short,
    Flat,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum LiquidationKind {
    /// Below maintenance margin: taken over by the market's liquidation book.
    Liquidated,
    /// Closed against the liquidation book when its insurance fund was empty.
    AutoDeleveraged,
}

/// One bracket of a market's margin.
#[derive(SimpleObject)]
pub struct MarginBracket {
    /// Notionals up to this, in the collateral.
    pub max_notional: Dec,
    pub initial_margin_rate: Dec,
    pub maintenance_margin_rate: Dec,
    pub max_leverage: i32,
}

#[derive(SimpleObject)]
pub struct PerpetualMarket {
    /// The market's name, BASE-COLLATERAL-PERP: placeOrder's `market`.
    pub id: ID,
    pub base: String,
    /// What margin, profit, loss, funding and fees are paid in.
    pub collateral: String,
    pub tick_size: Dec,
    /// Contract size: one lot is this much of the base.
    pub lot_size: Dec,
    /// The price positions are marked at; none before the oracles' first price.
    pub mark_price: Option<Dec>,
    /// The median of the oracles' fresh prices; none when stale (then the
    /// market takes only orders that reduce a position).
    pub index_price: Option<Dec>,
    pub last_price: Option<Dec>,
    /// The rate the next funding will pay at, as the premiums so far point
    /// (positive: longs pay shorts), per interval.
    pub funding_rate: Dec,
    /// The rate of the last funding paid.
    pub last_funding_rate: Dec,
    pub next_funding_time: DateTime,
    pub funding_interval_ms: i32,
    /// The market's insurance fund, in the collateral.
    pub insurance_fund: Dec,
    /// Contracts long (as many are short), in the base.
    pub open_interest: Dec,
    pub max_leverage: i32,
    pub margin_brackets: Vec<MarginBracket>,
    /// Of a liquidated position's notional, to the insurance fund.
    pub liquidation_penalty_rate: Dec,
    pub trading: bool,
}

/// A position (CCXT's fields).
#[derive(SimpleObject, Clone, PartialEq)]
pub struct Position {
    pub market: ID,
    pub side: PositionSide,
    /// The position's size in the base, not signed (`side` says which way).
    pub contracts: Dec,
    pub entry_price: Option<Dec>,
    pub mark_price: Option<Dec>,
    /// Contracts times the mark, in the collateral.
    pub notional: Dec,
    /// The value at the mark less the entry value: already paid into the
    /// margin by each mark-to-market.
    pub unrealized_pnl: Dec,
    /// The margin account's balance (CCXT's collateral).
    pub margin: Dec,
    pub maintenance_margin: Dec,
    /// Where the position would be liquidated; none when no price can.
    pub liquidation_price: Option<Dec>,
    pub margin_mode: MarginMode,
    pub leverage: i32,
    /// Funding received (positive) or paid since the position began.
    pub funding: Dec,
}

#[derive(SimpleObject, Clone, PartialEq)]
pub struct FundingRate {
    pub market: ID,
    /// Predicted for the next funding, per interval (positive: longs pay shorts).
    pub funding_rate: Dec,
    pub next_funding_time: DateTime,
    pub mark_price: Option<Dec>,
    pub index_price: Option<Dec>,
    pub interval_ms: i32,
}

/// A funding paid.
#[derive(SimpleObject)]
pub struct FundingPayment {
    pub market: ID,
    pub funding_rate: Dec,
    pub mark_price: Dec,
    pub at: DateTime,
    /// What the payers paid, in the collateral.
    pub amount: Dec,
    /// What the receivers did not get (payers short of money).
    pub unpaid: Dec,
}

#[derive(SimpleObject)]
pub struct Liquidation {
    pub id: ID,
    pub market: ID,
    pub kind: LiquidationKind,
    /// The side of the position closed.
    pub side: PositionSide,
    pub contracts: Dec,
    /// The mark it was closed at.
    pub price: Dec,
    pub bankruptcy_price: Option<Dec>,
    /// The worst price its lots were offered to the book at.
    pub offer_price: Option<Dec>,
    pub penalty: Dec,
    pub at: DateTime,
}

/// An oracle's price as the ledger took it.
#[derive(SimpleObject)]
pub struct OraclePrice {
    pub market: ID,
    pub index_price: Option<Dec>,
    /// The mark, when this price moved it.
    pub mark_price: Option<Dec>,
}

#[derive(InputObject)]
pub struct MarginBracketInput {
    pub max_notional: Dec,
    pub initial_margin_rate: Dec,
    pub maintenance_margin_rate: Dec,
}

#[derive(InputObject)]
pub struct CreatePerpetualMarketInput {
    /// The underlying asset (BTC) and the collateral (USD).
    pub base: String,
    pub collateral: String,
    pub tick_size: Dec,
    pub lot_size: Dec,
    pub maker_fee_rate: Dec,
    pub taker_fee_rate: Dec,
    /// Brackets by notional, smallest first.
    pub margin_brackets: Vec<MarginBracketInput>,
    /// Null is the first bracket's largest.
    pub default_leverage: Option<i32>,
    /// Null is 0.01 (1%).
    pub liquidation_penalty_rate: Option<Dec>,
    /// Null is 8 hours.
    pub funding_interval_ms: Option<i32>,
    /// Per interval; null is 0.0001 (0.01%).
    pub interest_rate: Option<Dec>,
    /// Null is 0.0005 (0.05%).
    pub funding_clamp: Option<Dec>,
    /// Null is three quarters of the first bracket's maintenance rate.
    pub funding_cap: Option<Dec>,
    /// Null is 60,000 (a minute).
    pub oracle_staleness_ms: Option<i32>,
    /// Null is 1.
    pub oracle_sources_min: Option<i32>,
    /// The largest position either way, in the base; null is a million lots.
    pub max_position: Option<Dec>,
}

/// Funding every eight hours, as Binance and dYdX pay it.
const FUNDING_INTERVAL_MS_DEFAULT: u64 = 8 * 3_600_000;

impl Catalog {
    pub(crate) fn is_perpetual(&self, market: u32) -> bool {
        self.perpetuals.contains(&market)
    }

    /// A perpetual market by name, with its terms.
    fn perpetual_by_name(&self, name: &str) -> Result<(&LedgerMarket, MarketTerms, &AssetSpec), Error> {
        let (market, terms, _, collateral) = self.market_by_name(name)?;
        if !self.is_perpetual(market.id()) {
            return Err(coded("NOT_FOUND", format!("{name} is a spot market, not a perpetual one")));
        }
        Ok((market, terms, collateral))
    }
}

fn price(ticks: u64, terms: &MarketTerms) -> Dec {
    Dec(units::times(ticks, terms.tick_size))
}

fn size(lots: u64, terms: &MarketTerms) -> Dec {
    Dec(units::times(lots, terms.lot_size))
}

fn rate_ppb(ppb: i64) -> Dec {
    Dec(Decimal::new(ppb, 9).normalize())
}

fn rate_ppm(ppm: u32) -> Dec {
    Dec(Decimal::new(ppm.into(), 6).normalize())
}

fn side(size: i64) -> PositionSide {
    match size {
        0 => PositionSide::Flat,
        size if size > 0 => PositionSide::Long,
        _ => PositionSide::Short,
    }
}

fn millis(ms: u64) -> i32 {
    i32::try_from(ms).unwrap_or(i32::MAX)
}

async fn market_views(ctx: &Context<'_>) -> Result<Vec<MarketView>, Error> {
    match ask(ctx, Query::Spot(spot_api::Query::Perpetual(api::Query::Markets { now_ms: now_ms() }))).await? {
        Answer::Spot(spot_api::Answer::Perpetual(api::Answer::Markets(markets))) => Ok(markets),
        other => Err(unexpected(other)),
    }
}

async fn market_view(ctx: &Context<'_>, market: u32) -> Result<MarketView, Error> {
    market_views(ctx).await?.into_iter().find(|view| view.record.spec.market == market).ok_or_else(|| unexpected("the perpetual market"))
}

async fn positions(ctx: &Context<'_>, user: u64) -> Result<Vec<PositionView>, Error> {
    read_positions(&services(ctx).ledger, user).await
}

async fn read_positions(ledger: &LedgerClient, user: u64) -> Result<Vec<PositionView>, Error> {
    match ask_ledger(ledger, Query::Spot(spot_api::Query::Perpetual(api::Query::Positions { user }))).await? {
        Answer::Spot(spot_api::Answer::Perpetual(api::Answer::Positions(positions))) => Ok(positions),
        other => Err(unexpected(other)),
    }
}

impl Catalog {
    fn api_perpetual(&self, view: &MarketView) -> Option<PerpetualMarket> {
        let record = &view.record;
        let market = self.markets.iter().find(|market| market.id() == record.spec.market)?;
        let (terms, base, collateral) = self.terms(market)?;
        let spec = &record.spec;
        let brackets = spec
            .tiers
            .iter()
            .map(|tier| MarginBracket {
                max_notional: self.amount(spec.collateral, tier.notional_max),
                initial_margin_rate: rate_ppm(tier.initial_ppm),
                maintenance_margin_rate: rate_ppm(tier.maintenance_ppm),
                max_leverage: i32::try_from(1_000_000 / tier.initial_ppm.max(1)).unwrap_or(i32::MAX),
            })
            .collect::<Vec<_>>();
        Some(PerpetualMarket {
            id: ID(terms.name.clone()),
            base: base.symbol.clone(),
            collateral: collateral.symbol.clone(),
            tick_size: Dec(terms.tick_size),
            lot_size: Dec(terms.lot_size),
            mark_price: record.mark.map(|ticks| price(ticks, &terms)),
            index_price: view.index.map(|ticks| price(ticks, &terms)),
            last_price: record.last_trade.map(|ticks| price(ticks, &terms)),
            funding_rate: rate_ppb(view.predicted_rate_ppb),
            last_funding_rate: rate_ppb(record.funding_rate_ppb),
            next_funding_time: at(record.next_funding_ms),
            funding_interval_ms: millis(spec.funding_interval_ms),
            insurance_fund: self.amount(spec.collateral, view.insurance),
            open_interest: size(record.open_interest, &terms),
            max_leverage: brackets.first().map_or(1, |bracket| bracket.max_leverage),
            margin_brackets: brackets,
            liquidation_penalty_rate: rate_ppm(spec.liquidation_penalty_ppm),
            trading: market.trading,
        })
    }

    fn api_position(&self, view: &PositionView) -> Option<Position> {
        let market = self.markets.iter().find(|market| market.id() == view.market)?;
        let (terms, ..) = self.terms(market)?;
        let collateral = market.quote;
        let contracts = units::times(view.size.unsigned_abs(), terms.lot_size);
        let notional = view.mark.map_or(Decimal::ZERO, |mark| contracts.checked_mul(price(mark, &terms).0).unwrap_or(Decimal::MAX));
        Some(Position {
            market: ID(terms.name.clone()),
            side: side(view.size),
            contracts: size(view.size.unsigned_abs(), &terms),
            entry_price: view.entry_price.map(|ticks| price(ticks, &terms)),
            mark_price: view.mark.map(|ticks| price(ticks, &terms)),
            notional: Dec(notional.normalize()),
            unrealized_pnl: self.amount(collateral, view.unrealized_pnl),
            margin: self.amount(collateral, view.margin),
            maintenance_margin: self.amount(collateral, view.maintenance_margin),
            liquidation_price: view.liquidation_price.map(|ticks| price(ticks, &terms)),
            margin_mode: match view.mode {
                api::MarginMode::Cross => MarginMode::Cross,
                api::MarginMode::Isolated => MarginMode::Isolated,
            },
            leverage: i32::try_from(view.leverage).unwrap_or(i32::MAX),
            funding: self.amount(collateral, view.funding),
        })
    }

    fn api_funding_rate(&self, view: &MarketView) -> Option<FundingRate> {
        let market = self.markets.iter().find(|market| market.id() == view.record.spec.market)?;
        let (terms, ..) = self.terms(market)?;
        Some(FundingRate {
            market: ID(terms.name.clone()),
            funding_rate: rate_ppb(view.predicted_rate_ppb),
            next_funding_time: at(view.record.next_funding_ms),
            mark_price: view.record.mark.map(|ticks| price(ticks, &terms)),
            index_price: view.index.map(|ticks| price(ticks, &terms)),
            interval_ms: millis(view.record.spec.funding_interval_ms),
        })
    }

    /// The open positions among `views`, in the API's terms.
    fn api_positions(&self, views: &[PositionView]) -> Vec<Position> {
        views.iter().filter(|view| view.size != 0).filter_map(|view| self.api_position(view)).collect()
    }

    fn api_liquidation(&self, record: &LiquidationRecord) -> Option<Liquidation> {
        let market = self.markets.iter().find(|market| market.id() == record.market)?;
        let (terms, ..) = self.terms(market)?;
        Some(Liquidation {
            id: ID(record.id.to_string()),
            market: ID(terms.name.clone()),
            kind: match record.kind {
                api::LiquidationKind::Liquidated => LiquidationKind::Liquidated,
                api::LiquidationKind::Deleveraged => LiquidationKind::AutoDeleveraged,
            },
            side: side(record.size),
            contracts: size(record.size.unsigned_abs(), &terms),
            price: price(record.price, &terms),
            bankruptcy_price: record.bankruptcy_price.map(|ticks| price(ticks, &terms)),
            offer_price: record.offer_price.map(|ticks| price(ticks, &terms)),
            penalty: self.amount(market.quote, record.penalty),
            at: at(record.at_ms),
        })
    }

    fn api_funding(&self, record: &FundingRecord) -> Option<FundingPayment> {
        let market = self.markets.iter().find(|market| market.id() == record.market)?;
        let (terms, ..) = self.terms(market)?;
        Some(FundingPayment {
            market: ID(terms.name.clone()),
            funding_rate: rate_ppb(record.rate_ppb),
            mark_price: price(record.mark, &terms),
            at: at(record.at_ms),
            amount: self.amount(market.quote, record.collected),
            unpaid: self.amount(market.quote, record.unpaid),
        })
    }
}

#[derive(Default)]
pub struct PerpetualQuery;

#[Object]
impl PerpetualQuery {
    /// Every perpetual market with its mark, index, funding and insurance fund.
    async fn perpetual_markets(&self, ctx: &Context<'_>) -> Result<Vec<PerpetualMarket>, Error> {
        let views = market_views(ctx).await?;
        let catalog = Catalog::covering(ctx, |c| views.iter().all(|view| c.is_perpetual(view.record.spec.market))).await?;
        Ok(views.iter().filter_map(|view| catalog.api_perpetual(view)).collect())
    }

    /// The caller's positions (CCXT's fetchPositions): open ones, or with
    /// `includeFlat` also those with settings and no size.
    async fn fetch_positions(&self, ctx: &Context<'_>, #[graphql(default = false)] include_flat: bool) -> Result<Vec<Position>, Error> {
        let user = caller_id(ctx)?;
        let views = positions(ctx, user).await?;
        let catalog = Catalog::covering(ctx, |c| views.iter().all(|view| c.is_perpetual(view.market))).await?;
        if include_flat {
            return Ok(views.iter().filter_map(|view| catalog.api_position(view)).collect());
        }
        Ok(catalog.api_positions(&views))
    }

    /// The funding rate the next funding will pay at, and when.
    async fn fetch_funding_rate(&self, ctx: &Context<'_>, market: ID) -> Result<FundingRate, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (listed, ..) = catalog.perpetual_by_name(&market)?;
        let view = market_view(ctx, listed.id()).await?;
        catalog.api_funding_rate(&view).ok_or_else(|| unexpected("the perpetual market"))
    }

    /// The market's fundings paid, newest first.
    async fn fetch_funding_rate_history(&self, ctx: &Context<'_>, market: ID, limit: Option<i32>) -> Result<Vec<FundingPayment>, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (listed, ..) = catalog.perpetual_by_name(&market)?;
        match ask(ctx, Query::Spot(spot_api::Query::Perpetual(api::Query::Fundings { market: listed.id(), limit: list_limit(limit) }))).await? {
            Answer::Spot(spot_api::Answer::Perpetual(api::Answer::Fundings(fundings))) => Ok(fundings.iter().filter_map(|f| catalog.api_funding(f)).collect()),
            other => Err(unexpected(other)),
        }
    }

    /// The market's liquidations and auto-deleveragings, newest first
    /// (whose they were is not shown); `mine` for the caller's own only.
    async fn liquidations(&self, ctx: &Context<'_>, market: ID, #[graphql(default = false)] mine: bool, limit: Option<i32>) -> Result<Vec<Liquidation>, Error> {
        let user = if mine { Some(caller_id(ctx)?) } else { None };
        let catalog = Catalog::load(ctx).await?;
        let (listed, ..) = catalog.perpetual_by_name(&market)?;
        let query = api::Query::Liquidations { market: listed.id(), user, limit: list_limit(limit) };
        match ask(ctx, Query::Spot(spot_api::Query::Perpetual(query))).await? {
            Answer::Spot(spot_api::Answer::Perpetual(api::Answer::Liquidations(records))) => {
                Ok(records.iter().filter_map(|r| catalog.api_liquidation(r)).collect())
            }
            other => Err(unexpected(other)),
        }
    }
}

#[derive(Default)]
pub struct PerpetualSubscription;

/// A positions subscription between two reads.
struct PositionsFollower {
    ledger: LedgerClient,
    user: u64,
    catalog: Arc<Catalog>,
    /// Every perpetual market's mark and funding: a new mark moves margins.
    marks: tokio::sync::watch::Receiver<Option<Arc<Vec<MarketView>>>>,
    /// Every order's changes: a fill of the user's moves their position.
    updates: tokio::sync::broadcast::Receiver<Arc<Vec<spot_api::OrderRecord>>>,
    /// The positions sent last.
    last: Option<Vec<Position>>,
    _held: (Arc<crate::feed::PerpetualFeed>, super::SubscriptionSlot),
}

impl PositionsFollower {
    /// Waits for something that may have changed the user's positions;
    /// false when the ledger link is gone for good.
    async fn wait(&mut self) -> bool {
        use tokio::sync::broadcast::error::RecvError;
        // One deadline however many other users' updates go by meanwhile.
        let resync = tokio::time::sleep(POSITIONS_RESYNC);
        tokio::pin!(resync);
        loop {
            tokio::select! {
                changed = self.marks.changed() => return changed.is_ok(),
                update = self.updates.recv() => match update {
                    Ok(batch) if batch.iter().any(|record| record.order.user == self.user) => return true,
                    Ok(_) => {}
                    // A missed update may have been a fill: the read after this has it.
                    Err(RecvError::Lagged(_)) => return true,
                    Err(RecvError::Closed) => return false,
                },
                _ = &mut resync => return true,
            }
        }
    }

    /// The positions now, when they differ from the ones sent last.
    async fn read(&mut self) -> Result<Option<Vec<Position>>, Error> {
        let views = read_positions(&self.ledger, self.user).await?;
        // A market listed since the subscription started: read the catalog again.
        if views.iter().any(|view| !self.catalog.is_perpetual(view.market)) {
            self.catalog = Catalog::read(&self.ledger).await?;
        }
        let positions = self.catalog.api_positions(&views);
        if self.last.as_ref() == Some(&positions) {
            return Ok(None);
        }
        self.last = Some(positions.clone());
        Ok(Some(positions))
    }
}

#[Subscription]
impl PerpetualSubscription {
    /// A perpetual market's mark, index and predicted funding now, then
    /// each time one of them or the next funding time changes (the gateway
    /// reads every perpetual market twice a second for all subscribers).
    async fn mark_price(&self, ctx: &Context<'_>, market: ID) -> Result<impl Stream<Item = FundingRate>, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (listed, ..) = catalog.perpetual_by_name(&market)?;
        let id = listed.id();
        let slot = take_slot(ctx)?;
        let feed = services(ctx).feeds.perpetuals();
        let mut views = feed.views.clone();
        // The reading now first (once there is one), then each that changes a figure.
        views.mark_changed();
        Ok(stream::unfold((views, None::<FundingRate>, (feed, slot)), move |(mut views, mut last, held)| {
            let catalog = catalog.clone();
            async move {
                loop {
                    views.changed().await.ok()?;
                    let Some(read) = views.borrow_and_update().clone() else { continue };
                    let Some(rate) = read.iter().find(|view| view.record.spec.market == id).and_then(|view| catalog.api_funding_rate(view)) else {
                        continue;
                    };
                    if last.as_ref() != Some(&rate) {
                        last = Some(rate.clone());
                        return Some((rate, (views, last, held)));
                    }
                }
            }
        }))
    }

    /// The caller's open positions now, then each time they change: a
    /// fill, a new mark (each mark-to-market moves the margin), a funding,
    /// a liquidation, margin added or taken out.
    async fn positions(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = Result<Vec<Position>, Error>>, Error> {
        let user = caller_id(ctx)?;
        let slot = take_slot(ctx)?;
        let services = services(ctx);
        let feed = services.feeds.perpetuals();
        let follower = PositionsFollower {
            ledger: services.ledger.clone(),
            user,
            catalog: Catalog::load(ctx).await?,
            marks: feed.views.clone(),
            // Listening before the first read, so no fill falls between the two.
            updates: services.ledger.order_updates(),
            last: None,
            _held: (feed, slot),
        };
        Ok(stream::unfold(Some(follower), |follower| async move {
            let mut follower = follower?;
            loop {
                match follower.read().await {
                    Ok(Some(positions)) => return Some((Ok(positions), Some(follower))),
                    Ok(None) => {}
                    // Before the first answer the client has nothing: say why and end.
                    Err(error) if follower.last.is_none() => return Some((Err(error), None)),
                    // After it, the positions sent stand until a read succeeds.
                    Err(error) => tracing::debug!(user = follower.user, error = ?error.message, "the positions could not be read"),
                }
                if !follower.wait().await {
                    return None;
                }
            }
        }))
    }
}

#[derive(Default)]
pub struct PerpetualMutation;

#[Object]
impl PerpetualMutation {
    /// The caller's leverage on a market (CCXT's setLeverage): refused
    /// beyond the bracket of the position's notional, or when the margin
    /// the position and open orders then need is more than the general
    /// account can add.
    async fn set_leverage(&self, ctx: &Context<'_>, market: ID, leverage: i32) -> Result<Position, Error> {
        let leverage = u32::try_from(leverage).map_err(|_| coded("BAD_USER_INPUT", "leverage is 1 or more"))?;
        settle_position(ctx, &market, |user, market| api::Command::SetLeverage { user, market, leverage }).await
    }

    /// CROSS or ISOLATED (CCXT's setMarginMode): only with no position and
    /// no open orders on the market.
    async fn set_margin_mode(&self, ctx: &Context<'_>, market: ID, mode: MarginMode) -> Result<Position, Error> {
        let mode = match mode {
            MarginMode::Cross => api::MarginMode::Cross,
            MarginMode::Isolated => api::MarginMode::Isolated,
        };
        settle_position(ctx, &market, |user, market| api::Command::SetMarginMode { user, market, mode }).await
    }

    /// Moves `amount` of the collateral from the general account into an
    /// isolated position's margin (CCXT's addMargin).
    async fn add_margin(&self, ctx: &Context<'_>, market: ID, amount: Dec) -> Result<Position, Error> {
        let amount = collateral_units(ctx, &market, amount).await?;
        settle_position(ctx, &market, |user, market| api::Command::AddMargin { user, market, amount }).await
    }

    /// Moves `amount` back from an isolated position's margin, down to what
    /// the position and its orders need (CCXT's reduceMargin).
    async fn reduce_margin(&self, ctx: &Context<'_>, market: ID, amount: Dec) -> Result<Position, Error> {
        let amount = collateral_units(ctx, &market, amount).await?;
        settle_position(ctx, &market, |user, market| api::Command::ReduceMargin { user, market, amount }).await
    }

    /// Closes the caller's whole position in a perpetual market (CCXT's
    /// closePosition): a reduce-only order for all of it, the other way.
    /// At `price` a GTC limit order; without one an IOC market order no
    /// worse than the mark moved against it by the position's initial
    /// margin rate (1 / leverage), at most 10%: within the move its margin
    /// was sized for, so closing asks for no more margin.
    async fn close_position(&self, ctx: &Context<'_>, market: ID, price: Option<Dec>, client_order_id: Option<String>) -> Result<Order, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let (listed, terms, _) = catalog.perpetual_by_name(&market)?;
        let id = listed.id();
        let views = positions(ctx, user).await?;
        let Some(view) = views.iter().find(|view| view.market == id && view.size != 0) else {
            return Err(coded("NOT_FOUND", format!("no open position on {} to close", market.0)));
        };
        let long = view.size > 0;
        let (order_type, time_in_force, price) = match price {
            Some(price) => (OrderType::Limit, TimeInForce::Gtc, price),
            None => {
                let mark = view.mark.ok_or_else(|| coded("BAD_USER_INPUT", format!("{} has no mark price yet: give a limit price", market.0)))?;
                let slack = (mark / u64::from(view.leverage.max(1))).min(mark / CLOSE_SLACK_MAX_DIVISOR);
                let worst = if long { mark.saturating_sub(slack).max(1) } else { mark.saturating_add(slack).min(listed.spec.price_ticks_max) };
                (OrderType::Market, TimeInForce::Ioc, self::price(worst, &terms))
            }
        };
        let input = PlaceOrderInput {
            market,
            side: if long { Side::Sell } else { Side::Buy },
            order_type,
            quantity: size(view.size.unsigned_abs(), &terms),
            price: Some(price),
            time_in_force: Some(time_in_force),
            post_only: Some(false),
            client_order_id,
            self_trade_prevention: None,
            expires_at: None,
            trigger_price: None,
            trigger_source: None,
            reduce_only: Some(true),
        };
        super::spot::place(ctx, input).await
    }

    /// An oracle's price for the market (users the operators made its
    /// oracle only): the ledger stamps it, recomputes the index and the
    /// mark, and marks every position to the new mark.
    async fn submit_oracle_price(&self, ctx: &Context<'_>, market: ID, price: Dec) -> Result<OraclePrice, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let (listed, terms, _) = catalog.perpetual_by_name(&market)?;
        let ticks = units::to_ticks(price.0, &terms).map_err(|(code, message)| coded(code, message))?;
        match run(ctx, Command::Spot(spot_api::Command::Perpetual(api::Command::SubmitPrice { user, market: listed.id(), price: ticks }))).await? {
            Outcome::Spot(spot_api::Outcome::Perpetual(api::Outcome::PriceSubmitted { index, mark, .. })) => Ok(OraclePrice {
                market: ID(terms.name.clone()),
                index_price: index.map(|ticks| self::price(ticks, &terms)),
                mark_price: mark.map(|ticks| self::price(ticks, &terms)),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Grants a user the ORACLE role on a market under a source number (a
    /// number no other oracle of the market has), or takes it back (no
    /// source): operators only, under the four-eyes rules.
    async fn set_oracle(&self, ctx: &Context<'_>, market: ID, email: String, source: Option<i32>) -> Result<bool, Error> {
        operator(ctx)?;
        let user = super::operators::user_by_email(ctx, &email)?;
        let catalog = Catalog::load(ctx).await?;
        let (listed, ..) = catalog.perpetual_by_name(&market)?;
        let source = source.map(|source| u32::try_from(source).map_err(|_| coded("BAD_USER_INPUT", "a source number is 0 or more"))).transpose()?;
        super::operators::operate(ctx, Command::Spot(spot_api::Command::Perpetual(api::Command::SetOracle { market: listed.id(), user, source }))).await?;
        Ok(true)
    }

    /// Lists a perpetual market, BASE-COLLATERAL-PERP (operators only,
    /// under the four-eyes rules). Prices are in the collateral per unit
    /// of the base; a lot is the contract size.
    async fn create_perpetual_market(&self, ctx: &Context<'_>, input: CreatePerpetualMarketInput) -> Result<PerpetualMarket, Error> {
        operator(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let base = catalog.asset_by_symbol(&input.base)?.clone();
        let collateral = catalog.asset_by_symbol(&input.collateral)?.clone();
        let name = format!("{}-{}-PERP", base.symbol, collateral.symbol);
        if catalog.market_by_name(&name).is_ok() {
            return Err(coded("DUPLICATE", format!("the market {name} exists")));
        }
        let bad = |message: String| coded("BAD_USER_INPUT", message);
        let market_units =
            units::market_units(input.tick_size.0, input.lot_size.0, base.scale, collateral.scale).map_err(|(code, message)| coded(code, message))?;
        let fraction = |value: Decimal, scale: u32, field: &str| -> Result<i128, Error> { units::to_units(value, scale as u8, field).map_err(|(_, m)| bad(m)) };
        let ppm = |value: Decimal, field: &str| -> Result<u32, Error> {
            u32::try_from(fraction(value, 6, field)?).map_err(|_| bad(format!("{field} must be 0 to 1")))
        };
        let ppb = |value: Decimal, field: &str| -> Result<i64, Error> {
            i64::try_from(fraction(value, 9, field)?).map_err(|_| bad(format!("{field} must be within ±1")))
        };
        let mut tiers = Vec::with_capacity(input.margin_brackets.len());
        for bracket in &input.margin_brackets {
            tiers.push(MarginTier {
                notional_max: units::to_units(bracket.max_notional.0, collateral.scale, "maxNotional").map_err(|(code, message)| coded(code, message))?,
                initial_ppm: ppm(bracket.initial_margin_rate.0, "initialMarginRate")?,
                maintenance_ppm: ppm(bracket.maintenance_margin_rate.0, "maintenanceMarginRate")?,
            });
        }
        let first = tiers.first().copied().ok_or_else(|| bad("a perpetual market has at least one margin bracket".into()))?;
        let leverage_max = 1_000_000 / first.initial_ppm.max(1);
        let position_lots_max = match input.max_position {
            None => 1_000_000,
            Some(max) => {
                let terms = MarketTerms {
                    name: name.clone(),
                    lot_size: input.lot_size.0,
                    tick_size: input.tick_size.0,
                    maker_fee_rate: Decimal::ZERO,
                    taker_fee_rate: Decimal::ZERO,
                };
                units::to_lots(max.0, &terms).map_err(|(code, message)| coded(code, message))?
            }
        };
        let millis = |value: Option<i32>, default: u64, field: &str| -> Result<u64, Error> {
            value.map_or(Ok(default), |ms| u64::try_from(ms).ok().filter(|ms| *ms > 0).ok_or_else(|| bad(format!("{field} is above zero"))))
        };
        let spec = MarketSpec {
            id: catalog.markets.iter().map(|m| m.id()).max().unwrap_or(0) + 1,
            quote_units_per_tick_lot: market_units.quote_units_per_tick_lot,
            tick_lot_scale: market_units.tick_lot_scale,
            maker_fee_ppm: ppm(input.maker_fee_rate.0, "makerFeeRate")?,
            taker_fee_ppm: ppm(input.taker_fee_rate.0, "takerFeeRate")?,
            price_ticks_max: 1_000_000_000,
            quantity_lots_max: position_lots_max.min(1_000_000_000),
            price_band_ppm: 0,
        };
        let market = LedgerMarket { base: base.id, quote: collateral.id, base_units_per_lot: market_units.base_units_per_lot, spec, trading: true };
        let terms = PerpetualSpec {
            market: spec.id,
            collateral: collateral.id,
            units_per_tick_lot: spec.quote_units_per_tick_lot,
            tick_lot_scale: spec.tick_lot_scale,
            price_ticks_max: spec.price_ticks_max,
            position_lots_max,
            tiers,
            leverage_default: match input.default_leverage {
                None => leverage_max,
                Some(leverage) => u32::try_from(leverage).map_err(|_| bad("defaultLeverage is 1 or more".into()))?,
            },
            liquidation_penalty_ppm: input.liquidation_penalty_rate.map_or(Ok(10_000), |rate| ppm(rate.0, "liquidationPenaltyRate"))?,
            funding_interval_ms: millis(input.funding_interval_ms, FUNDING_INTERVAL_MS_DEFAULT, "fundingIntervalMs")?,
            funding_interest_ppb: input.interest_rate.map_or(Ok(100_000), |rate| ppb(rate.0, "interestRate"))?,
            funding_clamp_ppb: input.funding_clamp.map_or(Ok(500_000), |rate| ppb(rate.0, "fundingClamp"))?,
            funding_cap_ppb: input.funding_cap.map_or(Ok(i64::from(first.maintenance_ppm) * 750), |rate| ppb(rate.0, "fundingCap"))?,
            oracle_staleness_ms: millis(input.oracle_staleness_ms, 60_000, "oracleStalenessMs")?,
            oracle_sources_min: input.oracle_sources_min.map_or(Ok(1), |n| u8::try_from(n).map_err(|_| bad("oracleSourcesMin is 1 to 32".into())))?,
            basis_window_ms: 600_000,
            mark_interval_ms: 1_000,
        };
        super::operators::operate(ctx, Command::Spot(spot_api::Command::Perpetual(api::Command::CreateMarket { market, perpetual: Box::new(terms) }))).await?;
        let catalog = Catalog::load(ctx).await?;
        let view = market_view(ctx, spec.id).await?;
        catalog.api_perpetual(&view).ok_or_else(|| unexpected("the new market"))
    }
}

/// `amount` of the market's collateral in minor units.
async fn collateral_units(ctx: &Context<'_>, market: &ID, amount: Dec) -> Result<i128, Error> {
    let catalog = Catalog::load(ctx).await?;
    let (_, _, collateral) = catalog.perpetual_by_name(market)?;
    units::to_units(amount.0, collateral.scale, "amount").map_err(|(code, message)| coded(code, message))
}

/// Runs the caller's command on their position in `market`, and answers the position as it left it.
async fn settle_position(ctx: &Context<'_>, market: &ID, command: impl FnOnce(u64, u32) -> api::Command) -> Result<Position, Error> {
    let user = caller_id(ctx)?;
    let catalog = Catalog::load(ctx).await?;
    let (listed, ..) = catalog.perpetual_by_name(market)?;
    let id = listed.id();
    run(ctx, Command::Spot(spot_api::Command::Perpetual(command(user, id)))).await?;
    let views = positions(ctx, user).await?;
    let view = views.iter().find(|view| view.market == id).ok_or_else(|| unexpected("the position"))?;
    catalog.api_position(view).ok_or_else(|| unexpected("the position's market"))
}
