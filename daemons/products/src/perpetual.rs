//! Perpetual futures over the kernel: positions, margin accounts, the
//! mark-to-market, funding, liquidation and auto-deleveraging of the
//! exchange's perpetual markets. The arithmetic is `risk-core`'s; this
//! module keeps the state and moves the money, through the kernel only.
//!
//! **Accounts** (Vega's model, no kernel change): a user's general account
//! is the wallet's AVAILABLE in the collateral asset; their margin account
//! in a market is `Owner::Entity(n)` with the MARGIN purpose, `n` the
//! position's entity in this module's numbering; each market has an
//! INSURANCE fund, a SETTLEMENT account and a FUNDING_CLEARING account
//! under `Owner::Entity(market id)`; fees go to the house's revenue. The
//! kernel's conservation covers them all; [`Perpetuals::check_invariants`]
//! adds that settlement and clearing are zero between commands and that a
//! market's positions net to zero.
//!
//! **Positions are always at the mark.** A trade moves, between its two
//! sides, what its price differs from the mark (so both hold their new
//! lots at the mark); each new mark moves every position's profit or loss
//! through the settlement account ([`risk_core::settlement::settle`]:
//! margin, then general in cross margin, then the insurance fund, then the
//! winners pro rata). The entry price is kept for display and for ranking
//! auto-deleveraging, never to move money.
//!
//! **Liquidation** follows each mark-to-market and each funding: a position
//! whose equity (its margin account, plus the general account in cross
//! margin) is below its maintenance margin pays the penalty, as far as its
//! equity goes, into the insurance fund, and is taken over at the mark by
//! the market's liquidation book (the *network*, whose equity is the
//! insurance fund). The exchange then offers the network's lots to the
//! order book, no worse than each liquidated position's bankruptcy price;
//! whatever the network still holds when the fund is empty (the book could
//! not absorb it and the fund cannot cover it) is auto-deleveraged against
//! the opposing positions, ranked by profit and leverage, at the network's
//! bankruptcy price, which with an empty fund is the mark: no money moves.
//!
//! Pure: no clock (the ledger's stamped time comes in), no floats.

use std::collections::{BTreeMap, BTreeSet};

use compact_str::{format_compact, CompactString};
use ids::{Amount, AssetId, MarketId, TimestampMs, UserId};
use ledger_api::perpetual::{
    self as api, FundingRecord, Holding, LiquidationKind, LiquidationRecord, MarginMode, OracleFeed, PerpetualRecord, PerpetualSpec, Position, PositionView,
};
use ledger_api::LedgerError;
use ledger_core::{AccountId, Kernel, Leg, Owner, Purpose, PurposeSpec, TransferCode};
use risk_core::funding::{premium_ppb, FundingRule, PremiumSamples};
use risk_core::liquidation::{adl_order, adl_score, deleverage, penalty, Candidate, Exposure};
use risk_core::margin::{initial_requirement, OpenOrder};
use risk_core::prices::{index_price, mark_price, Feed, IndexError, MarkInputs, MovingAverage};
use risk_core::settlement::{settle, Obligation, PartyMoves, Settlement};
use risk_core::{Contract, Lots, Ticks, Tier, Tiers, PPM};
use serde::{Deserialize, Serialize};

use crate::wallet::available;
use crate::{house, refusal};

pub const MARGIN: Purpose = Purpose(api::MARGIN);
pub const INSURANCE: Purpose = Purpose(api::INSURANCE);
pub const SETTLEMENT: Purpose = Purpose(api::SETTLEMENT);
pub const FUNDING_CLEARING: Purpose = Purpose(api::FUNDING_CLEARING);

pub const PURPOSES: &[PurposeSpec] = &[
    PurposeSpec { purpose: MARGIN, name: "margin", may_go_negative: false, holds_only: false },
    PurposeSpec { purpose: INSURANCE, name: "insurance", may_go_negative: false, holds_only: false },
    PurposeSpec { purpose: SETTLEMENT, name: "settlement", may_go_negative: false, holds_only: false },
    PurposeSpec { purpose: FUNDING_CLEARING, name: "funding clearing", may_go_negative: false, holds_only: false },
];

/// Who the market's liquidation book trades as in matching: no user's id.
pub const NETWORK_USER: UserId = UserId::MAX;

/// Price sources an oracle may submit for one market.
pub const ORACLE_SOURCES_MAX: usize = 32;

/// Where balances are read: the kernel, or the store behind a read.
pub trait Balances {
    fn balance(&self, account: AccountId) -> Amount;
}

impl Balances for Kernel {
    fn balance(&self, account: AccountId) -> Amount {
        Kernel::balance(self, account)
    }
}

/// A user's margin account in a market, by the position's entity.
pub fn margin_account(entity: u64, collateral: AssetId) -> AccountId {
    AccountId { owner: Owner::Entity(entity), asset: collateral, purpose: MARGIN }
}

pub fn insurance(market: MarketId, collateral: AssetId) -> AccountId {
    AccountId { owner: Owner::Entity(u64::from(market)), asset: collateral, purpose: INSURANCE }
}

pub fn settlement(market: MarketId, collateral: AssetId) -> AccountId {
    AccountId { owner: Owner::Entity(u64::from(market)), asset: collateral, purpose: SETTLEMENT }
}

pub fn funding_clearing(market: MarketId, collateral: AssetId) -> AccountId {
    AccountId { owner: Owner::Entity(u64::from(market)), asset: collateral, purpose: FUNDING_CLEARING }
}

/// A holding after `lots` (signed: bought above zero) at `price`: what
/// grows it adds at the price, what reduces it keeps the average, what
/// flips it starts over at the price.
fn traded(holding: Holding, contract: &Contract, lots: Lots, price: Ticks) -> Holding {
    let size = holding.size + lots;
    let entry_value_exact = if holding.size == 0 || holding.size.signum() == lots.signum() {
        holding.entry_value_exact + contract.value_exact(lots, price)
    } else if size == 0 {
        0
    } else if size.signum() == holding.size.signum() {
        // The average entry stays (display only: rounding toward zero is
        // harmless), split so that no product outgrows 128 bits.
        let (entry, before, after) = (holding.entry_value_exact, i128::from(holding.size), i128::from(size));
        entry / before * after + entry % before * after / before
    } else {
        contract.value_exact(size, price)
    };
    Holding { size, entry_value_exact }
}

/// A perpetual market in memory: its record's parts, with the contract,
/// tiers and funding rule its spec makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerpetualMarket {
    pub spec: PerpetualSpec,
    pub contract: Contract,
    pub tiers: Tiers,
    pub funding: FundingRule,
    pub mark: Option<Ticks>,
    pub mark_ms: TimestampMs,
    pub ticked_ms: TimestampMs,
    /// The users who may submit prices, and their source numbers.
    pub oracles: BTreeMap<UserId, u32>,
    /// Each oracle source's latest price.
    pub feeds: BTreeMap<u32, Feed>,
    pub last_trade: Option<Ticks>,
    /// The book's mid less the index, sampled.
    pub basis: MovingAverage,
    /// The premiums sampled since the last funding.
    pub premiums: PremiumSamples,
    pub next_funding_ms: TimestampMs,
    /// The rate of the last funding paid, in billionths.
    pub funding_rate_ppb: i64,
    /// The liquidation book's position, backed by the insurance fund.
    pub network: Holding,
    /// Lots long in all, the network's included.
    pub open_interest: u64,
}

/// The contract, tiers and funding rule a spec makes, or why it makes none.
fn terms(spec: &PerpetualSpec) -> Result<(Contract, Tiers, FundingRule), String> {
    let contract = Contract::new(spec.units_per_tick_lot, spec.tick_lot_scale, spec.price_ticks_max, spec.position_lots_max)
        .map_err(|error| format!("the contract's size: {error}"))?;
    let tiers = Tiers::new(
        spec.tiers.iter().map(|tier| Tier { notional_max: tier.notional_max, initial_ppm: tier.initial_ppm, maintenance_ppm: tier.maintenance_ppm }).collect(),
    )
    .map_err(|error| format!("the margin tiers: {error}"))?;
    let funding = FundingRule {
        interval_ms: spec.funding_interval_ms,
        interest_ppb: spec.funding_interest_ppb,
        clamp_ppb: spec.funding_clamp_ppb,
        cap_ppb: spec.funding_cap_ppb,
    };
    funding.check()?;
    if spec.leverage_default == 0 || spec.leverage_default > tiers.leverage_max(0) {
        return Err(format!("the default leverage is 1 to {} (the first tier's initial fraction allows no more)", tiers.leverage_max(0)));
    }
    if i128::from(spec.liquidation_penalty_ppm) > PPM {
        return Err("the liquidation penalty is at most 1,000,000 ppm (the whole notional)".into());
    }
    if spec.oracle_staleness_ms == 0 || spec.oracle_sources_min == 0 || usize::from(spec.oracle_sources_min) > ORACLE_SOURCES_MAX {
        return Err(format!("an index needs a staleness limit above zero and 1 to {ORACLE_SOURCES_MAX} sources"));
    }
    if spec.position_lots_max > Lots::MAX as u64 {
        return Err(format!("the largest position is at most {} lots", Lots::MAX));
    }
    if spec.mark_interval_ms < 100 {
        return Err("the mark interval is at least 100 ms (each is a journaled tick)".into());
    }
    Ok((contract, tiers, funding))
}

impl PerpetualMarket {
    /// A market from its stored record; refused when the record's terms are not a valid market's.
    pub fn from_record(record: PerpetualRecord) -> Result<PerpetualMarket, String> {
        let (contract, tiers, funding) = terms(&record.spec)?;
        Ok(PerpetualMarket {
            spec: record.spec,
            contract,
            tiers,
            funding,
            mark: record.mark,
            mark_ms: record.mark_ms,
            ticked_ms: record.ticked_ms,
            oracles: record.oracles.into_iter().collect(),
            feeds: record.feeds.into_iter().map(|feed| (feed.source, Feed { source: feed.source, price: feed.price, at_ms: feed.at_ms })).collect(),
            last_trade: record.last_trade,
            basis: MovingAverage::from_samples(record.basis_samples),
            premiums: PremiumSamples { sum_ppb: record.premium_sum_ppb, count: record.premium_count },
            next_funding_ms: record.next_funding_ms,
            funding_rate_ppb: record.funding_rate_ppb,
            network: record.network,
            open_interest: record.open_interest,
        })
    }

    pub fn record(&self) -> PerpetualRecord {
        PerpetualRecord {
            spec: self.spec.clone(),
            mark: self.mark,
            mark_ms: self.mark_ms,
            ticked_ms: self.ticked_ms,
            oracles: self.oracles.iter().map(|(user, source)| (*user, *source)).collect(),
            feeds: self.feeds.values().map(|feed| OracleFeed { source: feed.source, price: feed.price, at_ms: feed.at_ms }).collect(),
            last_trade: self.last_trade,
            basis_samples: self.basis.samples().collect(),
            premium_sum_ppb: self.premiums.sum_ppb,
            premium_count: self.premiums.count,
            next_funding_ms: self.next_funding_ms,
            funding_rate_ppb: self.funding_rate_ppb,
            network: self.network,
            open_interest: self.open_interest,
        }
    }

    /// When the ledger next has something to do here: the mark's
    /// interval, or the funding time.
    pub fn next_tick(&self) -> TimestampMs {
        self.ticked_ms.saturating_add(self.spec.mark_interval_ms).min(self.next_funding_ms)
    }

    pub fn id(&self) -> MarketId {
        self.spec.market
    }

    pub fn collateral(&self) -> AssetId {
        self.spec.collateral
    }

    /// The index at `at_ms` from the oracles' fresh prices.
    pub fn index(&self, at_ms: TimestampMs) -> Result<Ticks, IndexError> {
        let feeds: Vec<Feed> = self.feeds.values().copied().collect();
        index_price(&feeds, at_ms, self.spec.oracle_staleness_ms, usize::from(self.spec.oracle_sources_min))
    }

    /// The funding rate the premiums so far point at.
    pub fn predicted_rate_ppb(&self) -> i64 {
        self.funding.rate_ppb(self.premiums.mean_ppb())
    }

    /// The mark at `at_ms` from its three candidates; `None` without an index.
    pub fn mark_at(&self, at_ms: TimestampMs) -> Option<Ticks> {
        let index = self.index(at_ms).ok()?;
        Some(mark_price(&MarkInputs {
            index,
            funding_rate_ppb: self.predicted_rate_ppb(),
            until_funding_ms: self.next_funding_ms.saturating_sub(at_ms),
            funding_interval_ms: self.funding.interval_ms,
            basis_average: self.basis.average(at_ms, self.spec.basis_window_ms),
            last_trade: self.last_trade,
            price_ticks_max: self.contract.price_ticks_max(),
        }))
    }
}

/// Who is on a side of a trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Party {
    User(UserId),
    /// The market's liquidation book.
    Network,
}

/// What the exchange tells this module about a user's open orders on a
/// market: their sides, open lots and limit prices (a market order's
/// protection price), for the margin they need.
pub trait OpenOrders {
    fn open_orders(&self, user: UserId, market: MarketId) -> Vec<OpenOrder>;
    /// The lots the network's orders on `market` still offer: not to be
    /// deleveraged while their result may still come.
    fn network_offered(&self, _market: MarketId) -> u64 {
        0
    }
}

/// No open orders anywhere.
pub struct NoOrders;

impl OpenOrders for NoOrders {
    fn open_orders(&self, _: UserId, _: MarketId) -> Vec<OpenOrder> {
        Vec::new()
    }
}

/// What a mark-to-market, a funding or a fill did beyond moving positions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskOutcome {
    /// What went through the settlement (or clearing) account.
    pub collected: Amount,
    /// What the insurance fund covered.
    pub from_insurance: Amount,
    /// What the winners owed did not get (shared pro rata): losses socialized.
    pub unpaid: Amount,
    /// Positions taken over, then lots deleveraged.
    pub liquidations: Vec<LiquidationRecord>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpetualsState {
    pub markets: BTreeMap<MarketId, PerpetualRecord>,
    pub positions: BTreeMap<(UserId, MarketId), Position>,
    pub next_entity: u64,
    pub next_liquidation: u64,
}

/// The perpetual markets and their positions.
#[derive(Clone, Debug, Default)]
pub struct Perpetuals {
    markets: BTreeMap<MarketId, PerpetualMarket>,
    positions: BTreeMap<(UserId, MarketId), Position>,
    /// Users with a position open, by market: who a mark-to-market visits,
    /// in user order (replicas and replays move money in the same order).
    holders: BTreeMap<MarketId, BTreeSet<UserId>>,
    next_entity: u64,
    next_liquidation: u64,
    /// What changed since [`Self::take_touched`], for storage.
    touched_markets: BTreeSet<MarketId>,
    touched_positions: BTreeSet<(UserId, MarketId)>,
}

/// A kernel transfer that the arithmetic says cannot fail, as a fault.
fn moved(result: Result<u64, ledger_core::KernelError>, what: &str) -> Result<(), String> {
    result.map(|_| ()).map_err(|error| format!("{what}: {error}"))
}

/// Moves `due` into `credit` from `sources` in turn, each as far as its
/// balance goes (a fee, a penalty: never refused). What was taken.
fn take_from(
    kernel: &mut Kernel,
    sources: &[AccountId],
    credit: AccountId,
    due: Amount,
    code: u16,
    reference: &CompactString,
    at_ms: TimestampMs,
) -> Result<Amount, String> {
    let mut taken = 0;
    for &source in sources {
        let amount = (due - taken).min(kernel.balance(source));
        if amount > 0 {
            moved(
                kernel.transfer(Leg { debit: source, credit, amount, code: TransferCode(code) }, reference.clone(), at_ms),
                "a charge taken as far as it goes",
            )?;
            taken += amount;
        }
    }
    Ok(taken)
}

impl Perpetuals {
    /// From a state whose market records were checked ([`check_record`]).
    pub fn restore(state: PerpetualsState) -> Perpetuals {
        let markets: BTreeMap<MarketId, PerpetualMarket> = state
            .markets
            .into_iter()
            .map(|(id, record)| (id, PerpetualMarket::from_record(record).expect("the store checked each market's terms as it loaded them")))
            .collect();
        let mut holders: BTreeMap<MarketId, BTreeSet<UserId>> = markets.keys().map(|id| (*id, BTreeSet::new())).collect();
        for ((user, market), position) in &state.positions {
            if position.holding.size != 0 {
                holders.entry(*market).or_default().insert(*user);
            }
        }
        Perpetuals {
            markets,
            positions: state.positions,
            holders,
            next_entity: state.next_entity.max(1),
            next_liquidation: state.next_liquidation.max(1),
            touched_markets: BTreeSet::new(),
            touched_positions: BTreeSet::new(),
        }
    }

    pub fn state(&self) -> PerpetualsState {
        PerpetualsState {
            markets: self.markets.iter().map(|(id, market)| (*id, market.record())).collect(),
            positions: self.positions.clone(),
            // Numbering starts at 1, as restore counts it.
            next_entity: self.next_entity.max(1),
            next_liquidation: self.next_liquidation.max(1),
        }
    }

    pub fn market(&self, id: MarketId) -> Option<&PerpetualMarket> {
        self.markets.get(&id)
    }

    pub fn markets(&self) -> impl Iterator<Item = &PerpetualMarket> {
        self.markets.values()
    }

    pub fn position(&self, user: UserId, market: MarketId) -> Option<&Position> {
        self.positions.get(&(user, market))
    }

    /// Users with a position open in `market`, in user order.
    pub fn holders(&self, market: MarketId) -> impl Iterator<Item = UserId> + '_ {
        self.holders.get(&market).into_iter().flatten().copied()
    }

    fn known(&self, market: MarketId) -> Result<&PerpetualMarket, LedgerError> {
        self.markets.get(&market).ok_or(LedgerError::UnknownMarket(market))
    }

    /// Lists a market after checking its terms; its funding starts at the
    /// first interval boundary after `at_ms`.
    pub fn create_market(&mut self, kernel: &Kernel, spec: &PerpetualSpec, at_ms: TimestampMs) -> Result<(), LedgerError> {
        kernel.known_asset(spec.collateral).map_err(refusal)?;
        if self.markets.contains_key(&spec.market) {
            return Err(LedgerError::MarketExists(spec.market));
        }
        let (contract, tiers, funding) = terms(spec).map_err(LedgerError::BadInput)?;
        let market = PerpetualMarket {
            spec: spec.clone(),
            contract,
            tiers,
            funding,
            mark: None,
            mark_ms: 0,
            ticked_ms: at_ms,
            oracles: BTreeMap::new(),
            feeds: BTreeMap::new(),
            last_trade: None,
            basis: MovingAverage::default(),
            premiums: PremiumSamples::default(),
            next_funding_ms: funding.next_after(at_ms),
            funding_rate_ppb: 0,
            network: Holding::default(),
            open_interest: 0,
        };
        self.markets.insert(spec.market, market);
        self.holders.insert(spec.market, BTreeSet::new());
        self.touched_markets.insert(spec.market);
        Ok(())
    }

    /// Grants `user` the ORACLE role on `market` under `source` (a source
    /// number no other oracle of the market has), or takes it back, with
    /// the source's price.
    pub fn set_oracle(&mut self, market: MarketId, user: UserId, source: Option<u32>) -> Result<(), LedgerError> {
        self.touched_markets.insert(market);
        let listed = self.markets.get_mut(&market).ok_or(LedgerError::UnknownMarket(market))?;
        match source {
            None => {
                let source = listed.oracles.remove(&user).ok_or_else(|| LedgerError::BadInput(format!("user {user} is not an oracle of market {market}")))?;
                listed.feeds.remove(&source);
            }
            Some(source) => {
                if listed.oracles.iter().any(|(other, taken)| *taken == source && *other != user) {
                    return Err(LedgerError::BadInput(format!("source {source} of market {market} is another oracle's; choose another number")));
                }
                if !listed.oracles.contains_key(&user) && listed.oracles.len() >= ORACLE_SOURCES_MAX {
                    return Err(LedgerError::LimitReached(format!("a market takes prices from {ORACLE_SOURCES_MAX} oracles at most")));
                }
                if let Some(previous) = listed.oracles.insert(user, source).filter(|previous| *previous != source) {
                    listed.feeds.remove(&previous);
                }
            }
        }
        Ok(())
    }

    /// An oracle's price for `market`, stamped `at_ms`. Returns the index
    /// it leaves, if there is one.
    pub fn submit_price(&mut self, user: UserId, market: MarketId, price: Ticks, at_ms: TimestampMs) -> Result<Option<Ticks>, LedgerError> {
        self.touched_markets.insert(market);
        let listed = self.markets.get_mut(&market).ok_or(LedgerError::UnknownMarket(market))?;
        let source = *listed
            .oracles
            .get(&user)
            .ok_or_else(|| LedgerError::Forbidden(format!("user {user} is not an oracle of market {market}; operators grant the role")))?;
        if price == 0 || price > listed.contract.price_ticks_max() {
            return Err(LedgerError::BadInput(format!("a price is 1 to {} ticks", listed.contract.price_ticks_max())));
        }
        listed.feeds.insert(source, Feed { source, price, at_ms });
        Ok(listed.index(at_ms).ok())
    }

    /// Samples the book: the premium of its impact prices over the index
    /// (for funding) and its mid less the index (for the mark). Nothing
    /// without an index.
    pub fn sample_book(&mut self, market: MarketId, impact_bid: Option<Ticks>, impact_ask: Option<Ticks>, at_ms: TimestampMs) -> Result<(), LedgerError> {
        self.touched_markets.insert(market);
        let listed = self.markets.get_mut(&market).ok_or(LedgerError::UnknownMarket(market))?;
        let Ok(index) = listed.index(at_ms) else { return Ok(()) };
        listed.premiums.push(premium_ppb(impact_bid, impact_ask, index));
        if let (Some(bid), Some(ask)) = (impact_bid, impact_ask) {
            let mid = (i128::from(bid) + i128::from(ask)) / 2;
            let basis = (mid - i128::from(index)).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
            listed.basis.push(at_ms, basis, listed.spec.basis_window_ms);
        }
        Ok(())
    }

    /// A user's position in `market`, or the flat one they would open
    /// with the market's defaults (the next entity's margin account),
    /// without opening it: refusals change nothing.
    fn position_or_new(&self, user: UserId, market: MarketId) -> Result<Position, LedgerError> {
        let leverage = self.known(market)?.spec.leverage_default;
        Ok(self.positions.get(&(user, market)).copied().unwrap_or(Position {
            holding: Holding::default(),
            entity: self.next_entity.max(1),
            mode: MarginMode::Cross,
            leverage,
            funding: 0,
        }))
    }

    /// Puts `position` as the user's, opening it (and taking its entity's
    /// number) the first time; noted for storage.
    fn put_position(&mut self, user: UserId, market: MarketId, position: Position) {
        if !self.positions.contains_key(&(user, market)) {
            self.next_entity = position.entity + 1;
        }
        self.positions.insert((user, market), position);
        self.touched_positions.insert((user, market));
    }

    /// The user's position, opened with the market's defaults if it was not.
    fn position_mut(&mut self, user: UserId, market: MarketId) -> Result<&mut Position, LedgerError> {
        let position = self.position_or_new(user, market)?;
        self.put_position(user, market, position);
        Ok(self.positions.get_mut(&(user, market)).expect("put above"))
    }

    /// What storage must write since the last call: the markets and the
    /// positions that changed.
    pub fn next_entity(&self) -> u64 {
        self.next_entity
    }

    pub fn next_liquidation_id(&self) -> u64 {
        self.next_liquidation
    }

    pub fn take_touched(&mut self) -> (BTreeSet<MarketId>, BTreeSet<(UserId, MarketId)>) {
        (std::mem::take(&mut self.touched_markets), std::mem::take(&mut self.touched_positions))
    }

    /// The initial margin a position and its open orders need at the mark;
    /// `None` when they are beyond the market's last tier or its largest
    /// position. Flat and without orders, nothing, even before a mark.
    pub fn requirement(&self, market: &PerpetualMarket, position: &Position, orders: &[OpenOrder]) -> Option<Amount> {
        if position.holding.size == 0 && orders.is_empty() {
            return Some(0);
        }
        let mark = market.mark?;
        initial_requirement(&market.contract, &market.tiers, position.leverage, position.holding.size, mark, orders)
    }

    /// The money behind a position: isolated, its margin account; cross,
    /// the user's cross account in the collateral (general and every cross
    /// margin account) less the maintenance of their other cross positions,
    /// so that one account is not counted twice (Binance's cross
    /// liquidation price is computed the same way).
    pub fn equity(&self, kernel: &impl Balances, market: &PerpetualMarket, user: UserId, position: &Position) -> Amount {
        match position.mode {
            MarginMode::Isolated => kernel.balance(margin_account(position.entity, market.collateral())),
            MarginMode::Cross => {
                let (equity, maintenance) = self.cross_standing(kernel, user, market.collateral());
                let own = match (market.mark, position.holding.size) {
                    (Some(mark), size) if size != 0 => market.tiers.maintenance_margin(market.contract.notional(size, mark)),
                    _ => 0,
                };
                equity - (maintenance - own)
            }
        }
    }

    /// Before an order: moves from the general account into the margin
    /// account what the position and the user's open orders with the new
    /// one (`orders`) need beyond what it has. Refused, nothing moved, when
    /// the general account cannot, or the orders would take the position
    /// beyond the market's bounds.
    pub fn reserve(&mut self, kernel: &mut Kernel, user: UserId, market: MarketId, orders: &[OpenOrder], at_ms: TimestampMs) -> Result<(), LedgerError> {
        self.reserve_needing(kernel, user, market, orders, false, at_ms)
    }

    /// As [`Perpetuals::reserve`], the last of `orders` a reduce-only
    /// order: it asks only for what that order adds to the need of the
    /// position and the other orders, so a position whose losses have
    /// drawn its margin below the initial can still be closed.
    pub fn reserve_reducing(
        &mut self,
        kernel: &mut Kernel,
        user: UserId,
        market: MarketId,
        orders: &[OpenOrder],
        at_ms: TimestampMs,
    ) -> Result<(), LedgerError> {
        self.reserve_needing(kernel, user, market, orders, true, at_ms)
    }

    fn reserve_needing(
        &mut self,
        kernel: &mut Kernel,
        user: UserId,
        market: MarketId,
        orders: &[OpenOrder],
        last_reduces: bool,
        at_ms: TimestampMs,
    ) -> Result<(), LedgerError> {
        let position = self.position_or_new(user, market)?;
        let listed = self.known(market)?;
        let within = |order: &OpenOrder| (1..=listed.contract.price_ticks_max()).contains(&order.price) && order.lots <= listed.contract.position_lots_max();
        if !orders.iter().all(within) {
            return Err(LedgerError::BadInput(format!("an order's price or size is beyond market {market}'s contract")));
        }
        // Each side's orders within the largest position on their own: a
        // liquidation or deleveraging takes the position to zero without
        // waiting for the orders, and whatever fills then stays within it.
        let side = |buy: bool| orders.iter().filter(|order| order.buy == buy).map(|order| u128::from(order.lots)).sum::<u128>();
        if side(true).max(side(false)) > u128::from(listed.contract.position_lots_max()) {
            return Err(LedgerError::LimitReached(format!(
                "your open orders on one side of market {market} would be more than its largest position ({} lots)",
                listed.contract.position_lots_max()
            )));
        }
        if listed.mark.is_none() {
            return Err(LedgerError::BadInput(format!("perpetual market {market} has no mark price yet: orders wait for the oracles' first prices")));
        }
        let required = self
            .requirement(listed, &position, orders)
            .ok_or_else(|| LedgerError::LimitReached(format!("the position these orders would leave is beyond market {market}'s largest tier or position")))?;
        let account = margin_account(position.entity, listed.collateral());
        let balance = kernel.balance(account);
        let required = match last_reduces {
            true => {
                let others = &orders[..orders.len().saturating_sub(1)];
                let without = self.requirement(listed, &position, others).unwrap_or(required);
                required.min(balance + (required - without).max(0))
            }
            false => required,
        };
        let short = required - balance;
        if short > 0 && position.mode == MarginMode::Isolated {
            self.check_cross_free(kernel, user, listed.collateral(), short)?;
        }
        if short > 0 {
            let leg = Leg { debit: available(user, listed.collateral()), credit: account, amount: short, code: TransferCode(api::MARGIN_IN) };
            kernel.transfer(leg, format_compact!("margin:{market}"), at_ms).map_err(refusal)?;
        }
        self.put_position(user, market, position);
        Ok(())
    }

    /// Gives back to the general account what the margin account holds
    /// beyond the position's and its orders' need: in cross margin always,
    /// in isolated margin once the position is flat (until then what the
    /// user put in stays with it).
    pub fn release_excess(&mut self, kernel: &mut Kernel, user: UserId, market: MarketId, orders: &[OpenOrder], at_ms: TimestampMs) -> Result<(), String> {
        let (Some(listed), Some(position)) = (self.markets.get(&market), self.positions.get(&(user, market))) else { return Ok(()) };
        if position.mode == MarginMode::Isolated && position.holding.size != 0 {
            return Ok(());
        }
        let Some(required) = self.requirement(listed, position, orders) else { return Ok(()) };
        let account = margin_account(position.entity, listed.collateral());
        let excess = kernel.balance(account) - required;
        if excess > 0 {
            let leg = Leg { debit: account, credit: available(user, listed.collateral()), amount: excess, code: TransferCode(api::MARGIN_OUT) };
            moved(kernel.transfer(leg, format_compact!("margin:{market}"), at_ms), "margin beyond the need back to general")?;
        }
        Ok(())
    }

    /// `setLeverage`: refused beyond the tier of the position's notional,
    /// or when the margin the position and its orders then need is more
    /// than the general account can add.
    pub fn set_leverage(
        &mut self,
        kernel: &mut Kernel,
        user: UserId,
        market: MarketId,
        leverage: u32,
        orders: &[OpenOrder],
        at_ms: TimestampMs,
    ) -> Result<(), LedgerError> {
        let position = self.position_or_new(user, market)?;
        let listed = self.known(market)?;
        let notional = listed.mark.map_or(0, |mark| listed.contract.notional(position.holding.size, mark));
        let most = listed.tiers.leverage_max(notional);
        if leverage == 0 || leverage > most {
            return Err(LedgerError::BadInput(format!("leverage on market {market} is 1 to {most} at this position's size")));
        }
        let previous = self.positions.get(&(user, market)).copied();
        self.put_position(user, market, Position { leverage, ..position });
        let result = if leverage > position.leverage {
            self.release_excess(kernel, user, market, orders, at_ms).map_err(LedgerError::BadInput)
        } else {
            self.reserve_existing(kernel, user, market, orders, at_ms)
        };
        if result.is_err() {
            // Refused: as it was, not even opened.
            match previous {
                Some(previous) => {
                    self.positions.insert((user, market), previous);
                }
                None => {
                    self.positions.remove(&(user, market));
                    self.next_entity = position.entity;
                }
            }
        }
        result
    }

    /// [`Self::reserve`] for what the position has already (no mark needed when flat without orders).
    fn reserve_existing(&mut self, kernel: &mut Kernel, user: UserId, market: MarketId, orders: &[OpenOrder], at_ms: TimestampMs) -> Result<(), LedgerError> {
        let position = self.positions[&(user, market)];
        if position.holding.size == 0 && orders.is_empty() {
            return Ok(());
        }
        self.reserve(kernel, user, market, orders, at_ms)
    }

    /// `setMarginMode`: only while flat without open orders, as exchanges do.
    pub fn set_margin_mode(&mut self, user: UserId, market: MarketId, mode: MarginMode, orders: &[OpenOrder]) -> Result<(), LedgerError> {
        let position = self.position_or_new(user, market)?;
        if position.holding.size != 0 || !orders.is_empty() {
            return Err(LedgerError::BadInput("the margin mode changes only with no position and no open orders in the market; close them first".into()));
        }
        self.put_position(user, market, Position { mode, ..position });
        Ok(())
    }

    /// Refuses to take `amount` out of the user's cross account (into an
    /// isolated position) when that would leave their cross positions
    /// below maintenance.
    fn check_cross_free(&self, kernel: &Kernel, user: UserId, collateral: AssetId, amount: Amount) -> Result<(), LedgerError> {
        let (equity, maintenance) = self.cross_standing(kernel, user, collateral);
        let free = (equity - maintenance).min(kernel.balance(available(user, collateral)));
        if amount > free {
            return Err(LedgerError::InsufficientFunds { needed: amount, available: free.max(0) });
        }
        Ok(())
    }

    /// `addMargin`: general to an isolated position's margin account.
    pub fn add_margin(&mut self, kernel: &mut Kernel, user: UserId, market: MarketId, amount: Amount, at_ms: TimestampMs) -> Result<(), LedgerError> {
        let (entity, collateral) = self.isolated(user, market)?;
        self.check_cross_free(kernel, user, collateral, amount)?;
        let leg = Leg { debit: available(user, collateral), credit: margin_account(entity, collateral), amount, code: TransferCode(api::MARGIN_IN) };
        kernel.transfer(leg, format_compact!("margin:{market}"), at_ms).map_err(refusal)?;
        Ok(())
    }

    /// `reduceMargin`: an isolated position's margin back to general, down
    /// to what the position and its orders need at the mark.
    pub fn reduce_margin(
        &mut self,
        kernel: &mut Kernel,
        user: UserId,
        market: MarketId,
        amount: Amount,
        orders: &[OpenOrder],
        at_ms: TimestampMs,
    ) -> Result<(), LedgerError> {
        let (entity, collateral) = self.isolated(user, market)?;
        let (listed, position) = (self.known(market)?, self.position_or_new(user, market)?);
        let required = self.requirement(listed, &position, orders).unwrap_or(Amount::MAX);
        let free = kernel.balance(margin_account(entity, collateral)) - required;
        if amount > free {
            return Err(LedgerError::InsufficientFunds { needed: amount, available: free.max(0) });
        }
        let leg = Leg { debit: margin_account(entity, collateral), credit: available(user, collateral), amount, code: TransferCode(api::MARGIN_OUT) };
        kernel.transfer(leg, format_compact!("margin:{market}"), at_ms).map_err(refusal)?;
        Ok(())
    }

    fn isolated(&self, user: UserId, market: MarketId) -> Result<(u64, AssetId), LedgerError> {
        let position = self.position_or_new(user, market)?;
        if position.mode != MarginMode::Isolated {
            return Err(LedgerError::BadInput("margin is added to or taken from an isolated position; a cross position draws on the general account".into()));
        }
        Ok((position.entity, self.markets[&market].collateral()))
    }

    /// A trade of `lots` at `price` between `buyer` and `seller` (the
    /// exchange checked the orders' margin before it placed them): each
    /// side's holding moves at the price, what the price differs from the
    /// mark moves between them through the settlement account, and each
    /// pays its fee to the house (from general, then margin, as far as
    /// they go). Then what the margin accounts hold beyond the need goes back.
    #[allow(clippy::too_many_arguments)]
    pub fn fill(
        &mut self,
        kernel: &mut Kernel,
        market: MarketId,
        (buyer, seller): (Party, Party),
        lots: u64,
        price: Ticks,
        (buyer_fee, seller_fee): (Amount, Amount),
        orders: &dyn OpenOrders,
        at_ms: TimestampMs,
    ) -> Result<RiskOutcome, String> {
        let listed = self.markets.get(&market).ok_or_else(|| format!("a fill in perpetual market {market}, which the ledger does not have"))?;
        let contract = listed.contract;
        if lots == 0 || price == 0 || price > contract.price_ticks_max() || !contract.size_allowed(i128::from(lots)) || buyer == seller {
            return Err(format!("a fill of {lots} lots at {price} between {buyer:?} and {seller:?} on market {market} is beyond its contract"));
        }
        // Orders wait for a mark (`reserve`): a fill before one is a bug.
        let mark = listed.mark.ok_or_else(|| format!("a fill on perpetual market {market} before its first mark"))?;
        let signed = lots as Lots;
        let (mut parties, mut obligations) = (Vec::new(), Vec::new());
        for (party, size) in [(buyer, signed), (seller, -signed)] {
            if let Party::User(user) = party {
                self.position_mut(user, market).map_err(|error| error.to_string())?;
            }
            let amount = contract.settled(contract.pnl_exact(size, price, mark));
            obligations.push(self.obligation(kernel, market, party, amount));
            parties.push(party);
        }
        let reference = format_compact!("fill:{market}:{price}");
        let (settled, _) = self.settle_through(
            kernel,
            market,
            settlement(market, self.markets[&market].collateral()),
            &parties,
            &obligations,
            TransferCode(api::TRADE_AT_PRICE),
            &reference,
            at_ms,
        )?;
        for (party, size, fee) in [(buyer, signed, buyer_fee), (seller, -signed, seller_fee)] {
            self.pay_fee(kernel, market, party, fee, &reference, at_ms)?;
            self.trade(market, party, size, price)?;
        }
        self.markets.get_mut(&market).expect("looked up above").last_trade = Some(price);
        self.touched_markets.insert(market);
        let mut below = Vec::new();
        for party in [buyer, seller] {
            if let Party::User(user) = party {
                self.release_excess(kernel, user, market, &orders.open_orders(user, market), at_ms)?;
                if self.is_below(kernel, user, market) {
                    below.push(user);
                }
            }
        }
        // An order's margin was counted against the mark when it was
        // placed; the mark may have moved before it filled.
        let mut settled = settled;
        self.liquidate_users(kernel, market, &below, orders, at_ms, &mut settled)?;
        Ok(settled)
    }

    fn pay_fee(
        &mut self,
        kernel: &mut Kernel,
        market: MarketId,
        party: Party,
        fee: Amount,
        reference: &CompactString,
        at_ms: TimestampMs,
    ) -> Result<(), String> {
        if fee <= 0 {
            return Ok(());
        }
        let collateral = self.markets[&market].collateral();
        let revenue = house::revenue(collateral);
        // An isolated position pays from its own margin: its owner's cross account is another's backing.
        let sources = match party {
            Party::User(user) => {
                let position = &self.positions[&(user, market)];
                let margin = margin_account(position.entity, collateral);
                match position.mode {
                    MarginMode::Cross => vec![available(user, collateral), margin],
                    MarginMode::Isolated => vec![margin],
                }
            }
            Party::Network => vec![insurance(market, collateral)],
        };
        take_from(kernel, &sources, revenue, fee, api::FEE, reference, at_ms).map(|_| ())
    }

    /// Moves a party's holding by `size` lots at `price`.
    fn trade(&mut self, market: MarketId, party: Party, size: Lots, price: Ticks) -> Result<(), String> {
        self.touched_markets.insert(market);
        if let Party::User(user) = party {
            self.touched_positions.insert((user, market));
        }
        let listed = self.markets.get_mut(&market).expect("checked by the caller");
        let contract = listed.contract;
        let holding = match party {
            Party::Network => &mut listed.network,
            Party::User(user) => &mut self.positions.get_mut(&(user, market)).expect("opened by the caller").holding,
        };
        let after = holding.size.checked_add(size).filter(|size| party == Party::Network || contract.size_allowed(i128::from(*size)));
        if after.is_none() {
            return Err(format!("a trade of {size} lots takes {party:?}'s position on market {market} beyond the contract's largest"));
        }
        let long_before = holding.size.max(0).unsigned_abs();
        *holding = traded(*holding, &contract, size, price);
        let (long_after, flat) = (holding.size.max(0).unsigned_abs(), holding.size == 0);
        listed.open_interest = listed.open_interest + long_after - long_before;
        if let Party::User(user) = party {
            let holders = self.holders.entry(market).or_default();
            if flat {
                holders.remove(&user);
            } else {
                holders.insert(user);
            }
        }
        Ok(())
    }

    /// A party's obligation of `amount` and what it can pay with.
    fn obligation(&self, kernel: &Kernel, market: MarketId, party: Party, amount: Amount) -> Obligation {
        match party {
            // The network's loss is a shortfall the insurance fund covers; its gain goes to the fund.
            Party::Network => Obligation { amount, margin: 0, general: 0 },
            Party::User(user) => {
                let (listed, position) = (&self.markets[&market], &self.positions[&(user, market)]);
                let margin = kernel.balance(margin_account(position.entity, listed.collateral()));
                let general = match position.mode {
                    MarginMode::Cross => kernel.balance(available(user, listed.collateral())),
                    MarginMode::Isolated => 0,
                };
                Obligation { amount, margin, general }
            }
        }
    }

    /// Runs the waterfall over `obligations` and moves its money through
    /// `through` (the settlement or the clearing account): collect, then
    /// the fund's cover, then pay; zero after.
    #[allow(clippy::too_many_arguments)]
    fn settle_through(
        &self,
        kernel: &mut Kernel,
        market: MarketId,
        through: AccountId,
        parties: &[Party],
        obligations: &[Obligation],
        code: TransferCode,
        reference: &CompactString,
        at_ms: TimestampMs,
    ) -> Result<(RiskOutcome, Vec<PartyMoves>), String> {
        let collateral = self.markets[&market].collateral();
        let fund = insurance(market, collateral);
        let settlement: Settlement = settle(obligations, kernel.balance(fund)).map_err(|error| format!("the settlement of market {market}: {error:?}"))?;
        let accounts = |party: &Party| match *party {
            Party::User(user) => (margin_account(self.positions[&(user, market)].entity, collateral), Some(available(user, collateral))),
            Party::Network => (fund, None),
        };
        let mut transfer = |debit: AccountId, credit: AccountId, amount: Amount, code: TransferCode| -> Result<(), String> {
            if amount == 0 {
                return Ok(());
            }
            moved(kernel.transfer(Leg { debit, credit, amount, code }, reference.clone(), at_ms), "a settlement's move")
        };
        for (party, moves) in parties.iter().zip(&settlement.parties) {
            let (margin, general) = accounts(party);
            transfer(margin, through, moves.from_margin, code)?;
            if let Some(general) = general {
                transfer(general, through, moves.from_general, code)?;
            }
        }
        transfer(fund, through, settlement.from_insurance, TransferCode(api::INSURANCE_FUND))?;
        for (party, moves) in parties.iter().zip(&settlement.parties) {
            transfer(through, accounts(party).0, moves.paid, code)?;
        }
        transfer(through, fund, settlement.to_insurance, TransferCode(api::INSURANCE_FUND))?;
        let outcome =
            RiskOutcome { collected: settlement.collected(), from_insurance: settlement.from_insurance, unpaid: settlement.unpaid, ..RiskOutcome::default() };
        Ok((outcome, settlement.parties))
    }

    /// Every position of `market` with the network's, for a waterfall:
    /// `amount_of(size)` each.
    fn market_obligations(&self, kernel: &Kernel, market: MarketId, amount_of: impl Fn(Lots) -> Amount) -> (Vec<Party>, Vec<Obligation>) {
        let mut parties: Vec<Party> = self.holders(market).map(Party::User).collect();
        let network = self.markets[&market].network.size;
        if network != 0 {
            parties.push(Party::Network);
        }
        let obligations = parties
            .iter()
            .map(|party| {
                let size = match *party {
                    Party::User(user) => self.positions[&(user, market)].holding.size,
                    Party::Network => network,
                };
                self.obligation(kernel, market, *party, amount_of(size))
            })
            .collect();
        (parties, obligations)
    }

    /// A new mark: every position's profit or loss since the last one
    /// through the settlement account, then the liquidations it calls for.
    pub fn set_mark(&mut self, kernel: &mut Kernel, market: MarketId, mark: Ticks, orders: &dyn OpenOrders, at_ms: TimestampMs) -> Result<RiskOutcome, String> {
        let listed = self.markets.get(&market).ok_or_else(|| format!("a mark for perpetual market {market}, which the ledger does not have"))?;
        let contract = listed.contract;
        if mark == 0 || mark > contract.price_ticks_max() {
            return Err(format!("a mark of {mark} ticks on market {market}, beyond its contract"));
        }
        let mut outcome = RiskOutcome::default();
        if let Some(previous) = listed.mark.filter(|previous| *previous != mark) {
            let (parties, obligations) = self.market_obligations(kernel, market, |size| contract.settled(contract.pnl_exact(size, previous, mark)));
            let through = settlement(market, listed.collateral());
            outcome = self
                .settle_through(
                    kernel,
                    market,
                    through,
                    &parties,
                    &obligations,
                    TransferCode(api::MARK_TO_MARKET),
                    &format_compact!("mark:{market}:{mark}"),
                    at_ms,
                )?
                .0;
        }
        self.touched_markets.insert(market);
        let listed = self.markets.get_mut(&market).expect("looked up above");
        listed.mark = Some(mark);
        listed.mark_ms = at_ms;
        self.liquidate(kernel, market, orders, at_ms, &mut outcome)?;
        Ok(outcome)
    }

    /// Pays the funding due at `at_ms`, if its time has come: the rate from
    /// the premiums sampled since the last one, `size x mark x rate` by
    /// each position through the clearing account; then the liquidations it
    /// calls for. Without a mark there is nothing to pay: the time moves on.
    pub fn fund(
        &mut self,
        kernel: &mut Kernel,
        market: MarketId,
        orders: &dyn OpenOrders,
        at_ms: TimestampMs,
    ) -> Result<Option<(FundingRecord, RiskOutcome)>, String> {
        let listed = self.markets.get(&market).ok_or_else(|| format!("a funding of perpetual market {market}, which the ledger does not have"))?;
        if at_ms < listed.next_funding_ms {
            return Ok(None);
        }
        let (contract, rate_ppb, next) = (listed.contract, listed.predicted_rate_ppb(), listed.funding.next_after(at_ms));
        let Some(mark) = listed.mark else {
            self.touched_markets.insert(market);
            self.touched_markets.insert(market);
            let listed = self.markets.get_mut(&market).expect("looked up above");
            listed.next_funding_ms = next;
            listed.premiums = PremiumSamples::default();
            return Ok(None);
        };
        let (parties, obligations) = self.market_obligations(kernel, market, |size| risk_core::funding::funding_settled(&contract, size, mark, rate_ppb));
        let through = funding_clearing(market, listed.collateral());
        let (mut risk, moves) = self.settle_through(
            kernel,
            market,
            through,
            &parties,
            &obligations,
            TransferCode(api::FUNDING),
            &format_compact!("funding:{market}:{at_ms}"),
            at_ms,
        )?;
        // What moved: a payer short of money paid what it had.
        for (party, moves) in parties.iter().zip(&moves) {
            if let Party::User(user) = party {
                self.positions.get_mut(&(*user, market)).expect("a holder").funding += moves.paid - moves.from_margin - moves.from_general;
                self.touched_positions.insert((*user, market));
            }
        }
        self.touched_markets.insert(market);
        let listed = self.markets.get_mut(&market).expect("looked up above");
        listed.next_funding_ms = next;
        listed.premiums = PremiumSamples::default();
        listed.funding_rate_ppb = rate_ppb;
        self.liquidate(kernel, market, orders, at_ms, &mut risk)?;
        let record = FundingRecord { market, at_ms, rate_ppb, mark, collected: risk.collected, unpaid: risk.unpaid };
        Ok(Some((record, risk)))
    }

    /// Takes over every position below maintenance at the mark, then
    /// deleverages what the network cannot hold.
    fn liquidate(
        &mut self,
        kernel: &mut Kernel,
        market: MarketId,
        orders: &dyn OpenOrders,
        at_ms: TimestampMs,
        outcome: &mut RiskOutcome,
    ) -> Result<(), String> {
        let below: Vec<UserId> = self.holders(market).filter(|user| self.is_below(kernel, *user, market)).collect();
        self.liquidate_users(kernel, market, &below, orders, at_ms, outcome)
    }

    /// Liquidates `users` as [`Self::is_below`] found them on `market`:
    /// an isolated position alone, a cross one with all the user's cross
    /// positions in the collateral (their equity is one). Then what each
    /// market's network cannot hold is deleveraged.
    fn liquidate_users(
        &mut self,
        kernel: &mut Kernel,
        market: MarketId,
        users: &[UserId],
        orders: &dyn OpenOrders,
        at_ms: TimestampMs,
        outcome: &mut RiskOutcome,
    ) -> Result<(), String> {
        let mut touched = BTreeSet::from([market]);
        let collateral = self.markets[&market].collateral();
        for &user in users {
            let Some(position) = self.positions.get(&(user, market)).copied().filter(|position| position.holding.size != 0) else { continue };
            let markets: Vec<MarketId> = match position.mode {
                MarginMode::Isolated => vec![market],
                MarginMode::Cross => self
                    .positions_of(user)
                    .filter(|(other, position)| {
                        position.mode == MarginMode::Cross && position.holding.size != 0 && self.markets[other].collateral() == collateral
                    })
                    .map(|(other, _)| other)
                    .collect(),
            };
            for other in markets {
                self.liquidate_position(kernel, user, other, orders, at_ms, outcome)?;
                touched.insert(other);
            }
        }
        for market in touched {
            self.deleverage_network(kernel, market, orders, at_ms, outcome)?;
        }
        Ok(())
    }

    /// A user's positions, by market.
    fn positions_of(&self, user: UserId) -> impl Iterator<Item = (MarketId, &Position)> + '_ {
        self.positions.range((user, MarketId::MIN)..=(user, MarketId::MAX)).map(|((_, market), position)| (*market, position))
    }

    /// A user's cross account in `collateral`: its general account and the
    /// margin accounts of their cross positions in it, and those positions'
    /// maintenance margins at their marks (each rounded up).
    fn cross_standing(&self, kernel: &impl Balances, user: UserId, collateral: AssetId) -> (Amount, Amount) {
        let (mut equity, mut maintenance) = (kernel.balance(available(user, collateral)), 0);
        for (market, position) in self.positions_of(user) {
            let listed = &self.markets[&market];
            if position.mode != MarginMode::Cross || listed.collateral() != collateral {
                continue;
            }
            equity += kernel.balance(margin_account(position.entity, collateral));
            if let (Some(mark), true) = (listed.mark, position.holding.size != 0) {
                maintenance += listed.tiers.maintenance_margin(listed.contract.notional(position.holding.size, mark));
            }
        }
        (equity, maintenance)
    }

    /// Whether the user's position on `market` is below maintenance at its
    /// mark: its own equity ([`Self::equity`]) against its maintenance,
    /// compared exactly.
    pub fn is_below(&self, kernel: &impl Balances, user: UserId, market: MarketId) -> bool {
        let (Some(listed), Some(position)) = (self.markets.get(&market), self.positions.get(&(user, market))) else { return false };
        let Some(mark) = listed.mark else { return false };
        let equity = self.equity(kernel, listed, user, position);
        Exposure { size: position.holding.size, mark, equity }.below_maintenance(&listed.contract, &listed.tiers, mark)
    }

    /// Takes the user's position on `market` over into its network at the
    /// mark, after the penalty (from its margin, then in cross the general
    /// account, as far as its equity goes) into the insurance fund. The
    /// network's offer to the book is limited to where that penalty is
    /// spent, so the fund never pays more for the lots than it took for
    /// them; that is between the mark and the position's bankruptcy price.
    fn liquidate_position(
        &mut self,
        kernel: &mut Kernel,
        user: UserId,
        market: MarketId,
        orders: &dyn OpenOrders,
        at_ms: TimestampMs,
        outcome: &mut RiskOutcome,
    ) -> Result<(), String> {
        let listed = &self.markets[&market];
        let Some(mark) = listed.mark else { return Ok(()) };
        let (contract, collateral, penalty_ppm) = (listed.contract, listed.collateral(), listed.spec.liquidation_penalty_ppm);
        let position = self.positions[&(user, market)];
        let size = position.holding.size;
        let equity = self.equity(kernel, listed, user, &position);
        let bankruptcy_price = Exposure { size, mark, equity }.bankruptcy_price(&contract);
        let fund = insurance(market, collateral);
        let reference = format_compact!("liquidation:{market}:{mark}");
        let due = penalty(&contract, size, mark, penalty_ppm).min(equity.max(0));
        let mut sources = vec![margin_account(position.entity, collateral)];
        if position.mode == MarginMode::Cross {
            sources.push(available(user, collateral));
        }
        let paid = take_from(kernel, &sources, fund, due, api::LIQUIDATION_PENALTY, &reference, at_ms)?;
        let offer_price = Exposure { size, mark, equity: paid }.bankruptcy_price(&contract).unwrap_or(mark);
        self.hand_over(kernel, user, market, size, mark, orders, at_ms)?;
        outcome.liquidations.push(LiquidationRecord {
            market,
            user,
            at_ms,
            id: self.next_liquidation(),
            kind: LiquidationKind::Liquidated,
            size,
            price: mark,
            bankruptcy_price,
            offer_price: Some(offer_price),
            penalty: paid,
        });
        Ok(())
    }

    /// Moves `size` lots (signed as the user's position) from the user's
    /// position to the network's at the mark (positions stand at the mark:
    /// no money moves), and gives back the margin no longer needed.
    #[allow(clippy::too_many_arguments)]
    fn hand_over(
        &mut self,
        kernel: &mut Kernel,
        user: UserId,
        market: MarketId,
        size: Lots,
        mark: Ticks,
        orders: &dyn OpenOrders,
        at_ms: TimestampMs,
    ) -> Result<(), String> {
        self.trade(market, Party::User(user), -size, mark)?;
        self.trade(market, Party::Network, size, mark)?;
        self.release_excess(kernel, user, market, &orders.open_orders(user, market), at_ms)
    }

    /// Deleverages the network's lots beyond the contract's largest
    /// position, or all of them once the fund is empty.
    fn deleverage_network(
        &mut self,
        kernel: &mut Kernel,
        market: MarketId,
        orders: &dyn OpenOrders,
        at_ms: TimestampMs,
        outcome: &mut RiskOutcome,
    ) -> Result<(), String> {
        let listed = &self.markets[&market];
        let network = listed.network.size;
        let beyond = network.unsigned_abs().saturating_sub(listed.contract.position_lots_max());
        let held = network.unsigned_abs().saturating_sub(orders.network_offered(market));
        let lots = if kernel.balance(insurance(market, listed.collateral())) == 0 { held } else { beyond.min(held) };
        if lots > 0 {
            self.deleverage(kernel, market, lots, orders, at_ms, outcome)?;
        }
        Ok(())
    }

    /// Closes `lots` of the network's position against the opposing
    /// positions, highest ADL score first, at the mark.
    fn deleverage(
        &mut self,
        kernel: &mut Kernel,
        market: MarketId,
        lots: u64,
        orders: &dyn OpenOrders,
        at_ms: TimestampMs,
        outcome: &mut RiskOutcome,
    ) -> Result<(), String> {
        let listed = &self.markets[&market];
        let (contract, mark, network) = (listed.contract, listed.mark.expect("marked by the caller"), listed.network.size);
        let candidates: Vec<(UserId, Lots, i128)> = self
            .holders(market)
            .map(|user| (user, &self.positions[&(user, market)]))
            .filter(|(_, position)| position.holding.size.signum() == -network.signum())
            .map(|(user, position)| {
                let candidate = Candidate {
                    size: position.holding.size,
                    entry_value_exact: position.holding.entry_value_exact,
                    equity: self.equity(kernel, listed, user, position),
                };
                (user, position.holding.size, adl_score(&contract, &candidate, mark))
            })
            .collect();
        let scores: Vec<i128> = candidates.iter().map(|candidate| candidate.2).collect();
        let sizes: Vec<Lots> = candidates.iter().map(|candidate| candidate.1).collect();
        for (index, taken) in deleverage(lots, &sizes, &adl_order(&scores)) {
            let user = candidates[index].0;
            let size = taken as Lots * sizes[index].signum();
            self.hand_over(kernel, user, market, size, mark, orders, at_ms)?;
            outcome.liquidations.push(LiquidationRecord {
                market,
                user,
                at_ms,
                id: self.next_liquidation(),
                kind: LiquidationKind::Deleveraged,
                size,
                price: mark,
                bankruptcy_price: None,
                offer_price: None,
                penalty: 0,
            });
        }
        Ok(())
    }

    fn next_liquidation(&mut self) -> u64 {
        self.next_liquidation = self.next_liquidation.max(1);
        let id = self.next_liquidation;
        self.next_liquidation += 1;
        id
    }

    /// The ledger's tick reached `market` at `at_ms`.
    pub fn ticked(&mut self, market: MarketId, at_ms: TimestampMs) {
        if let Some(listed) = self.markets.get_mut(&market) {
            listed.ticked_ms = at_ms;
            self.touched_markets.insert(market);
        }
    }

    /// A user's position as they see it.
    pub fn view(&self, kernel: &impl Balances, user: UserId, market: MarketId) -> Option<PositionView> {
        let (listed, position) = (self.markets.get(&market)?, self.positions.get(&(user, market))?);
        let (contract, holding) = (listed.contract, position.holding);
        let equity = self.equity(kernel, listed, user, position);
        let at_mark = listed.mark.map(|mark| (mark, contract.value_exact(holding.size, mark)));
        let per_lot = i128::from(holding.size) * i128::from(contract.units_per_tick_lot());
        Some(PositionView {
            market,
            size: holding.size,
            entry_price: (holding.size != 0).then(|| (holding.entry_value_exact / per_lot) as Ticks),
            mark: listed.mark,
            unrealized_pnl: at_mark.map_or(0, |(_, value)| contract.settled(value - holding.entry_value_exact)),
            margin: kernel.balance(margin_account(position.entity, listed.collateral())),
            mode: position.mode,
            leverage: position.leverage,
            liquidation_price: at_mark.and_then(|(mark, _)| Exposure { size: holding.size, mark, equity }.liquidation_price(&contract, &listed.tiers)),
            maintenance_margin: at_mark.map_or(0, |(_, value)| listed.tiers.maintenance_margin(risk_core::ceil_div(value.abs(), contract.divisor()))),
            funding: position.funding,
        })
    }

    /// Settlement and clearing accounts are zero; each market's positions
    /// (the network's included) net to zero; users' positions are within
    /// the contract; the holders are the positions open.
    pub fn check_invariants(&self, kernel: &Kernel) -> Result<(), String> {
        // Each market's net and long lots, users' and the network's, in one pass over the positions.
        let mut sums: BTreeMap<MarketId, (i128, u64)> =
            self.markets.iter().map(|(id, listed)| (*id, (i128::from(listed.network.size), listed.network.size.max(0).unsigned_abs()))).collect();
        for ((_, market), position) in &self.positions {
            if let Some((net, long)) = sums.get_mut(market) {
                *net += i128::from(position.holding.size);
                *long += position.holding.size.max(0).unsigned_abs();
            }
        }
        for (id, listed) in &self.markets {
            for account in [settlement(*id, listed.collateral()), funding_clearing(*id, listed.collateral())] {
                let balance = kernel.balance(account);
                if balance != 0 {
                    return Err(format!("perpetual market {id}'s {account:?} holds {balance} between commands"));
                }
            }
            let (net, long) = sums[id];
            if net != 0 {
                return Err(format!("perpetual market {id}'s positions net to {net} lots, the network's {} included", listed.network.size));
            }
            if long != listed.open_interest {
                return Err(format!("perpetual market {id}'s open interest is {} lots, its long positions {long}", listed.open_interest));
            }
        }
        for ((user, market), position) in &self.positions {
            let listed = self.markets.get(market).ok_or_else(|| format!("user {user} has a position in market {market}, which is not a perpetual market"))?;
            if !listed.contract.size_allowed(i128::from(position.holding.size)) {
                return Err(format!("user {user}'s position in market {market} is beyond its contract: {position:?}"));
            }
            let held = self.holders.get(market).is_some_and(|holders| holders.contains(user));
            if held != (position.holding.size != 0) {
                return Err(format!(
                    "user {user}'s position in market {market} is {} but listed as {}",
                    position.holding.size,
                    if held { "open" } else { "flat" }
                ));
            }
        }
        let listed: usize = self.holders.values().map(BTreeSet::len).sum();
        if listed != self.positions.values().filter(|position| position.holding.size != 0).count() {
            return Err("a user is listed as holding a position they do not have".into());
        }
        Ok(())
    }
}

/// The worked examples of the issue, each number checkable by hand. The
/// market: BTC-USD-PERP, a tick 0.1 USD, a lot 0.001 BTC, so a tick on a
/// lot is 0.0001 USD (USD has two decimals: `units_per_tick_lot` 1 at
/// scale 2); one tier, 10% initial (10x) and 5% maintenance; a 1% penalty.
#[cfg(test)]
mod tests {
    use ledger_api::perpetual::MarginTier;
    use ledger_core::{AssetSpec, KernelLimits};

    use super::*;
    use crate::wallet::custody;

    const USD: AssetId = 1;
    const BTC_PERP: MarketId = 7;
    const ALICE: UserId = 1;
    const BOB: UserId = 2;
    const CAROL: UserId = 3;
    const DAVE: UserId = 4;
    const ORACLE: UserId = 9;
    /// USD in cents.
    const fn usd(whole: i128) -> Amount {
        whole * 100
    }
    /// A price in ticks of 0.1 USD.
    const fn price(whole: u64) -> Ticks {
        whole * 10
    }
    const BTC: u64 = 1_000;

    fn spec() -> PerpetualSpec {
        PerpetualSpec {
            market: BTC_PERP,
            collateral: USD,
            units_per_tick_lot: 1,
            tick_lot_scale: 2,
            price_ticks_max: 10_000_000,
            position_lots_max: 1_000_000,
            tiers: vec![MarginTier { notional_max: usd(100_000_000), initial_ppm: 100_000, maintenance_ppm: 50_000 }],
            leverage_default: 10,
            liquidation_penalty_ppm: 10_000,
            funding_interval_ms: 28_800_000,
            funding_interest_ppb: 100_000,
            funding_clamp_ppb: 500_000,
            funding_cap_ppb: 3_750_000,
            oracle_staleness_ms: 60_000,
            oracle_sources_min: 1,
            basis_window_ms: 600_000,
            mark_interval_ms: 1_000,
        }
    }

    fn setup(deposits: &[(UserId, Amount)]) -> (Kernel, Perpetuals) {
        let mut kernel = Kernel::new(crate::purposes(), KernelLimits { assets_max: 8, idempotency_keys_reserved: 16 });
        kernel.create_asset(&AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }).unwrap();
        for &(user, amount) in deposits {
            kernel.transfer(Leg { debit: custody(USD), credit: available(user, USD), amount, code: TransferCode(101) }, "deposit", 0).unwrap();
        }
        let mut perpetuals = Perpetuals::default();
        perpetuals.create_market(&kernel, &spec(), 0).unwrap();
        perpetuals.set_oracle(BTC_PERP, ORACLE, Some(1)).unwrap();
        (kernel, perpetuals)
    }

    fn margin(kernel: &Kernel, perpetuals: &Perpetuals, user: UserId) -> Amount {
        kernel.balance(margin_account(perpetuals.position(user, BTC_PERP).unwrap().entity, USD))
    }

    fn checked(kernel: &Kernel, perpetuals: &Perpetuals) {
        kernel.check_invariants().unwrap();
        perpetuals.check_invariants(kernel).unwrap();
    }

    /// `buyer` buys `lots` from `seller` at `at`, each having reserved the margin of its order first.
    fn trade(kernel: &mut Kernel, perpetuals: &mut Perpetuals, buyer: UserId, seller: UserId, lots: u64, at: Ticks) {
        for (user, buy) in [(buyer, true), (seller, false)] {
            perpetuals.reserve(kernel, user, BTC_PERP, &[OpenOrder { buy, lots, price: at }], 0).unwrap();
        }
        perpetuals.fill(kernel, BTC_PERP, (Party::User(buyer), Party::User(seller)), lots, at, (0, 0), &NoOrders, 0).unwrap();
        checked(kernel, perpetuals);
    }

    #[test]
    fn a_long_loses_as_the_price_falls_and_is_liquidated_below_maintenance() {
        let (mut kernel, mut perpetuals) = setup(&[(ALICE, usd(10_000)), (BOB, usd(10_000))]);
        perpetuals.set_margin_mode(ALICE, BTC_PERP, MarginMode::Isolated, &[]).unwrap();
        perpetuals.set_mark(&mut kernel, BTC_PERP, price(60_000), &NoOrders, 0).unwrap();
        // Alice buys 1 BTC at 60,000 from Bob, at 10x: 6,000 USD of margin each.
        trade(&mut kernel, &mut perpetuals, ALICE, BOB, BTC, price(60_000));
        assert_eq!(margin(&kernel, &perpetuals, ALICE), usd(6_000));
        assert_eq!(kernel.balance(available(ALICE, USD)), usd(4_000));
        // Isolated: 6,000 + (p - 60,000) < 5% x p below 56,842.105...: the
        // liquidation price is 56,842.1; bankrupt at 54,000.
        let view = perpetuals.view(&kernel, ALICE, BTC_PERP).unwrap();
        assert_eq!((view.size, view.entry_price, view.liquidation_price), (1_000, Some(price(60_000)), Some(568_421)));
        // The mark falls to 57,000: 3,000 USD from Alice's margin to Bob's.
        // Her 3,000 left is above the 2,850 maintenance: nothing more.
        let outcome = perpetuals.set_mark(&mut kernel, BTC_PERP, price(57_000), &NoOrders, 1).unwrap();
        assert_eq!((outcome.collected, outcome.liquidations.len()), (usd(3_000), 0));
        assert_eq!(margin(&kernel, &perpetuals, ALICE), usd(3_000));
        assert_eq!(margin(&kernel, &perpetuals, BOB), usd(9_000));
        assert_eq!(perpetuals.view(&kernel, ALICE, BTC_PERP).unwrap().unrealized_pnl, usd(-3_000));
        checked(&kernel, &perpetuals);
        // To 56,800: her margin 2,800 is below 5% of 56,800 = 2,840. The
        // network takes the position at the mark; the penalty, 1% of
        // 56,800 = 568 USD, goes to the insurance fund; what is left of
        // her margin, 2,232 USD, goes back to her general account.
        let outcome = perpetuals.set_mark(&mut kernel, BTC_PERP, price(56_800), &NoOrders, 2).unwrap();
        // The network offers her lot to the book no lower than where the
        // penalty is spent: 56,800 - 568 = 56,232.
        assert_eq!(
            outcome.liquidations,
            vec![LiquidationRecord {
                id: 1,
                market: BTC_PERP,
                user: ALICE,
                at_ms: 2,
                kind: LiquidationKind::Liquidated,
                size: 1_000,
                price: price(56_800),
                bankruptcy_price: Some(price(54_000)),
                offer_price: Some(price(56_232)),
                penalty: usd(568),
            }]
        );
        assert_eq!(kernel.balance(insurance(BTC_PERP, USD)), usd(568));
        assert_eq!(margin(&kernel, &perpetuals, ALICE), 0);
        assert_eq!(kernel.balance(available(ALICE, USD)), usd(4_000 + 2_232));
        assert_eq!(perpetuals.market(BTC_PERP).unwrap().network, Holding { size: 1_000, entry_value_exact: 568_000_000 });
        assert_eq!(perpetuals.holders(BTC_PERP).collect::<Vec<_>>(), vec![BOB]);
        // Bob's short: 6,000 of margin and 3,200 of profit.
        assert_eq!(margin(&kernel, &perpetuals, BOB), usd(9_200));
        checked(&kernel, &perpetuals);
        // The exchange offers the network's lots no worse than 54,000; Bob
        // buys them back at 56,500. The network sold 300 USD below the
        // mark: the fund pays it (568 - 300 = 268 left) and Bob, flat now,
        // has everything back in his general account: 10,000 + 3,200 +
        // 300. Alice has 10,000 - 3,200 - 568. The three sum to 20,000.
        let fill = perpetuals.fill(&mut kernel, BTC_PERP, (Party::User(BOB), Party::Network), BTC, price(56_500), (0, 0), &NoOrders, 3).unwrap();
        assert_eq!(fill.collected, usd(300));
        assert_eq!(kernel.balance(insurance(BTC_PERP, USD)), usd(268));
        assert_eq!(perpetuals.market(BTC_PERP).unwrap().network.size, 0);
        assert_eq!((margin(&kernel, &perpetuals, BOB), kernel.balance(available(BOB, USD))), (0, usd(13_500)));
        assert_eq!(kernel.balance(available(ALICE, USD)), usd(6_232));
        checked(&kernel, &perpetuals);
    }

    #[test]
    fn each_sides_orders_stay_within_the_largest_position_whatever_the_position() {
        // Short the largest position, a buy of twice it would leave a long
        // of that size; but a liquidation or deleveraging takes the short to
        // zero without waiting for the buy, which would then fill beyond it.
        let (mut kernel, mut perpetuals) = setup(&[(ALICE, usd(1_000_000_000)), (BOB, usd(1_000_000_000))]);
        perpetuals.set_mark(&mut kernel, BTC_PERP, price(10), &NoOrders, 0).unwrap();
        let most = spec().position_lots_max;
        trade(&mut kernel, &mut perpetuals, BOB, ALICE, most, price(10));
        let before = kernel.state();
        let refused = perpetuals.reserve(&mut kernel, ALICE, BTC_PERP, &[OpenOrder { buy: true, lots: 2 * most, price: price(10) }], 1);
        assert!(matches!(refused, Err(LedgerError::BadInput(_))), "{refused:?}");
        let refused = perpetuals.reserve(
            &mut kernel,
            ALICE,
            BTC_PERP,
            &[OpenOrder { buy: true, lots: most, price: price(10) }, OpenOrder { buy: true, lots: 1, price: price(10) }],
            1,
        );
        assert!(matches!(refused, Err(LedgerError::LimitReached(_))), "{refused:?}");
        assert_eq!(kernel.state(), before, "a refusal moves nothing");
        perpetuals.reserve(&mut kernel, ALICE, BTC_PERP, &[OpenOrder { buy: true, lots: most, price: price(10) }], 1).unwrap();
    }

    #[test]
    fn funding_is_paid_long_to_short_at_the_capped_rate() {
        let (mut kernel, mut perpetuals) = setup(&[(ALICE, usd(10_000)), (BOB, usd(10_000))]);
        perpetuals.submit_price(ORACLE, BTC_PERP, price(60_000), 0).unwrap();
        perpetuals.set_mark(&mut kernel, BTC_PERP, price(60_000), &NoOrders, 0).unwrap();
        trade(&mut kernel, &mut perpetuals, ALICE, BOB, BTC, price(60_000));
        // The book's impact bid 60,300 is 0.5% above the 60,000 index:
        // premium 5,000,000 ppb; rate = premium + clamp(interest 100,000 -
        // premium, ±500,000) = 4,500,000, capped at 3,750,000 (0.375%).
        perpetuals.sample_book(BTC_PERP, Some(price(60_300)), Some(price(60_400)), 1_000).unwrap();
        assert_eq!(perpetuals.market(BTC_PERP).unwrap().predicted_rate_ppb(), 3_750_000);
        assert_eq!(perpetuals.fund(&mut kernel, BTC_PERP, &NoOrders, 28_799_999).unwrap(), None, "not yet its time");
        let (funding, _) = perpetuals.fund(&mut kernel, BTC_PERP, &NoOrders, 28_800_000).unwrap().unwrap();
        // 1 BTC x 60,000 x 0.375% = 225 USD, long to short.
        assert_eq!((funding.rate_ppb, funding.collected), (3_750_000, usd(225)));
        assert_eq!(margin(&kernel, &perpetuals, ALICE), usd(6_000 - 225));
        assert_eq!(margin(&kernel, &perpetuals, BOB), usd(6_000 + 225));
        assert_eq!(perpetuals.position(ALICE, BTC_PERP).unwrap().funding, usd(-225));
        assert_eq!(perpetuals.position(BOB, BTC_PERP).unwrap().funding, usd(225));
        assert_eq!(perpetuals.market(BTC_PERP).unwrap().next_funding_ms, 57_600_000);
        checked(&kernel, &perpetuals);
    }

    #[test]
    fn a_bankrupt_long_with_an_empty_fund_deleverages_the_most_leveraged_profit_first() {
        // Alice has exactly her margin: 6,000 USD for 1 BTC at 60,000. Bob
        // and Carol are short 0.6 each; Dave long 0.2 (from Carol).
        let deposits = [(ALICE, usd(6_000)), (BOB, usd(20_000)), (CAROL, usd(8_000)), (DAVE, usd(10_000))];
        let (mut kernel, mut perpetuals) = setup(&deposits);
        perpetuals.set_mark(&mut kernel, BTC_PERP, price(60_000), &NoOrders, 0).unwrap();
        trade(&mut kernel, &mut perpetuals, ALICE, BOB, 600, price(60_000));
        trade(&mut kernel, &mut perpetuals, ALICE, CAROL, 400, price(60_000));
        trade(&mut kernel, &mut perpetuals, DAVE, CAROL, 200, price(60_000));
        assert_eq!(kernel.balance(available(ALICE, USD)), 0);
        // At 54,000 she has lost all 6,000: bankrupt at the mark, no
        // penalty left to take, the fund empty: the network's 1 BTC long is
        // deleveraged against the shorts at 54,000. Both made 10% on 0.6
        // BTC (3,600 USD); Carol's cross account (8,000 + 3,600) is smaller
        // than Bob's (20,000 + 3,600), so her leverage and her score are
        // higher: all her 0.6 goes first, then 0.4 of Bob's.
        let outcome = perpetuals.set_mark(&mut kernel, BTC_PERP, price(54_000), &NoOrders, 1).unwrap();
        let kinds: Vec<(UserId, LiquidationKind, i64)> = outcome.liquidations.iter().map(|record| (record.user, record.kind, record.size)).collect();
        assert_eq!(
            kinds,
            vec![(ALICE, LiquidationKind::Liquidated, 1_000), (CAROL, LiquidationKind::Deleveraged, -600), (BOB, LiquidationKind::Deleveraged, -400)]
        );
        assert_eq!((outcome.liquidations[0].penalty, outcome.liquidations[0].bankruptcy_price), (0, Some(price(54_000))));
        assert_eq!(perpetuals.market(BTC_PERP).unwrap().network.size, 0);
        assert_eq!(perpetuals.position(BOB, BTC_PERP).unwrap().holding.size, -200);
        assert_eq!(perpetuals.holders(BTC_PERP).collect::<Vec<_>>(), vec![BOB, DAVE]);
        // Carol, flat, has her 8,000 and her 3,600 profit back in general.
        assert_eq!(kernel.balance(available(CAROL, USD)), usd(8_000 + 3_600));
        assert_eq!(kernel.balance(available(ALICE, USD)) + margin(&kernel, &perpetuals, ALICE), 0);
        checked(&kernel, &perpetuals);
    }

    #[test]
    fn a_cross_account_backs_all_its_positions_once() {
        // Alice is cross long 1 BTC in two markets at 60,000 with 12,600
        // USD: 6,000 of margin each, 600 in general.
        let second = PerpetualSpec { market: BTC_PERP + 1, ..spec() };
        let (mut kernel, mut perpetuals) = setup(&[(ALICE, usd(12_600)), (BOB, usd(20_000))]);
        perpetuals.create_market(&kernel, &second, 0).unwrap();
        for market in [BTC_PERP, second.market] {
            perpetuals.set_mark(&mut kernel, market, price(60_000), &NoOrders, 0).unwrap();
            for (user, buy) in [(ALICE, true), (BOB, false)] {
                perpetuals.reserve(&mut kernel, user, market, &[OpenOrder { buy, lots: BTC, price: price(60_000) }], 0).unwrap();
            }
            perpetuals.fill(&mut kernel, market, (Party::User(ALICE), Party::User(BOB)), BTC, price(60_000), (0, 0), &NoOrders, 0).unwrap();
        }
        // Both marks fall to 57,000: 3,000 lost on each, 6,600 left for two
        // maintenance margins of 2,850 (5,700): still above.
        for market in [BTC_PERP, second.market] {
            let outcome = perpetuals.set_mark(&mut kernel, market, price(57_000), &NoOrders, 1).unwrap();
            assert!(outcome.liquidations.is_empty());
        }
        // The second falls to 56,500: 500 more lost, 6,100 left for 2,850 +
        // 2,825 = 5,675: above. Each market alone would count all 6,100.
        perpetuals.set_mark(&mut kernel, second.market, price(56_500), &NoOrders, 2).unwrap();
        // The first to 56,400: 600 more, 5,500 for 2,820 + 2,825 = 5,645:
        // below, although 5,500 is well above either market's 2,8xx alone.
        // Both of her cross positions are taken over.
        let outcome = perpetuals.set_mark(&mut kernel, BTC_PERP, price(56_400), &NoOrders, 3).unwrap();
        let liquidated: Vec<(MarketId, UserId)> = outcome.liquidations.iter().map(|record| (record.market, record.user)).collect();
        assert_eq!(liquidated, vec![(BTC_PERP, ALICE), (second.market, ALICE)]);
        assert_eq!(perpetuals.holders(BTC_PERP).collect::<Vec<_>>(), vec![BOB]);
        assert_eq!(perpetuals.holders(second.market).collect::<Vec<_>>(), vec![BOB]);
        checked(&kernel, &perpetuals);
    }
}

/// The names of the perpetual markets' storage tables; the ledger daemon's
/// `schema/perpetual.rs` says what they hold.
pub mod tables {
    pub const MARKETS: &str = "perpetual.markets";
    pub const POSITIONS: &str = "perpetual.positions";
    pub const FUNDINGS: &str = "perpetual.fundings";
    pub const LIQUIDATIONS: &str = "perpetual.liquidations";
    pub const LIQUIDATIONS_BY_MARKET: &str = "perpetual.liquidations_by_market";
    pub const LIQUIDATIONS_BY_USER: &str = "perpetual.liquidations_by_user";
}
