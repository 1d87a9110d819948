//! The spot exchange: markets, orders, and the settlement of matching's fills.
//!
//! Placing an order holds its worst case in the user's LOCKED account (a
//! kernel hold: the quote for a buy, the base for a sell) and yields the
//! command for matching. Each fill captures from both holds: the buyer's
//! quote to the seller and the buyer's fee to the house's revenue, the
//! seller's base to the buyer; the seller's fee comes out of what the
//! seller received. Where a notional falls between minor units the buyer
//! pays it rounded up, the seller receives it rounded down and the
//! difference goes to revenue too. An order that ends releases what its
//! hold has left.

use std::collections::{BTreeMap, BTreeSet};

use compact_str::format_compact;
use ids::{Amount, AssetId, MarketId, OrderId, TimestampMs, TradeId, UserId};
use ledger_api::candles::{Candle, CandleInterval};
use ledger_api::perpetual::{self as perpetual_api, FundingRecord, LiquidationKind, LiquidationRecord, PerpetualSpec};
use ledger_api::spot::{self as api, AmendTerms, Command, Market, OcoRequest, OrderRecord, OrderRequest, OrderStatus, Outcome, TradeRecord};
use ledger_api::LedgerError;
use ledger_core::{Digest, HoldId, Idempotent, Kernel, Leg, Payout, PurposeSpec, Recorded, TransferCode};
use matching_api::{ArmedStop, Event, Fill, NewOrder, OcoList, OrderKind, RejectCode, Side, TimeInForce, Trigger, TriggerSource};
use risk_core::margin::OpenOrder;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::perpetual::{OpenOrders, Party, Perpetuals, PerpetualsState, RiskOutcome, NETWORK_USER};
use crate::tokenization::{Incoming, Movement, Unfit};
use crate::wallet::{available, locked};
use crate::{house, key_digest, refusal, ChangeSet, Forward, LedgerLimits, Product};

const ORDER_RECORD: u8 = 4;

const ORDER_HOLD: u8 = 1;

fn order_hold(order_id: OrderId) -> HoldId {
    HoldId { kind: ORDER_HOLD, id: order_id }
}

/// The hold an order's money is in: its own, or for an order of an OCO
/// list the list's one hold, under the list's first id (its limit order's).
fn hold_of(record: &OrderRecord) -> HoldId {
    let id = record.order.order_id;
    order_hold(record.oco_with.map_or(id, |other| other.min(id)))
}

/// The worst-case quote a buy of `quantity` lots at `price` can cost: the
/// notional with each fill's rounded up (a fill is at least one lot, so at
/// most `quantity` of them each add less than one minor unit), plus fees at
/// the higher of the two rates rounded up, plus the one unit the per-role
/// cumulative rounding may add (see matching-core's `fee_increment`).
pub fn buy_hold(market: &Market, price: u64, quantity: u64) -> Amount {
    let spec = &market.spec;
    let (exact, divisor) = (spec.notional_exact(price, quantity), spec.notional_divisor());
    let notional = (exact + quantity as u128 * (divisor - 1)) / divisor;
    let rate = spec.maker_fee_ppm.max(spec.taker_fee_ppm);
    (notional + matching_core::fee_ceil(rate, divisor, exact) + 1) as Amount
}

pub fn base_amount(market: &Market, quantity: u64) -> Amount {
    quantity as Amount * market.base_units_per_lot as Amount
}

/// What an order's hold must have while its amend is on the way: fills at
/// the old terms may come before matching takes the amend, fills at the new
/// ones after it, `open` lots of the new total that the ledger knows unfilled
/// in all. A buy is held for all of it at the higher of the two prices: each
/// old-terms fill may round its notional and its fees (the order's taker
/// and maker fees round apart) up by a unit beyond what the new terms' own
/// hold counts, so three units more cover the two sets of terms in one
/// hold. An amend that keeps the order's place (the same price, no more lots
/// open) and one that will cancel it need nothing more.
fn amend_hold(market: &Market, record: &OrderRecord, terms: AmendTerms, hold_left: Amount) -> Amount {
    let open = terms.quantity.saturating_sub(record.filled);
    let price = record.order.price.unwrap_or(terms.price);
    let keeps_place = terms.price == price && open <= record.order.quantity - record.filled;
    if open == 0 || keeps_place {
        return hold_left;
    }
    let needed = match record.order.side {
        Side::Buy => buy_hold(market, price.max(terms.price), open) + 3,
        Side::Sell => base_amount(market, open),
    };
    needed.max(hold_left)
}

/// What an order's hold keeps once its amend took effect with `remaining`
/// lots open at `price`: the worst case of those terms, as for a new order,
/// or, where the order kept its place (the same terms with fewer lots,
/// whose fee rounding carries on), no more than it had.
fn amended_hold(market: &Market, side: Side, price: u64, remaining: u64, hold_left: Amount, kept_place: bool) -> Amount {
    let fresh = match side {
        Side::Buy => buy_hold(market, price, remaining),
        Side::Sell => base_amount(market, remaining),
    };
    if kept_place {
        fresh.min(hold_left)
    } else {
        fresh
    }
}

/// An order as a batch of matching's events leaves it, for checking the
/// batch before any of it is applied.
#[derive(Clone, Copy)]
struct BatchOrder {
    filled: u64,
    price: Option<u64>,
    quantity: u64,
    hold_left: Amount,
    amended: bool,
    /// A stop armed in matching and not fired.
    armed: bool,
    /// Not a stop, or a stop that fired: it may trade.
    fired: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpotState {
    pub markets: BTreeMap<MarketId, Market>,
    pub open_orders: BTreeMap<OrderId, OrderRecord>,
    pub counters: SpotCounters,
    /// Each market's latest candle of each interval.
    pub candles: BTreeMap<(MarketId, CandleInterval), Candle>,
    /// The perpetual markets' own state (their matching side is in `markets`).
    pub perpetuals: PerpetualsState,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpotCounters {
    pub next_order: OrderId,
    pub next_trade: TradeId,
    /// The last matching output sequence applied.
    pub matching_applied: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpotChanges {
    pub markets: Vec<Market>,
    pub trades: Vec<TradeRecord>,
    /// Open orders whose record changed (current values are in the ledger).
    pub orders: FxHashSet<OrderId>,
    /// Orders that reached a final state: their last record; they left memory.
    pub closed_orders: Vec<OrderRecord>,
    /// Every candle a trade of the batch changed, by market, interval and
    /// start (one the batch closed included), at its value after the batch.
    pub candles: FxHashMap<(MarketId, CandleInterval, TimestampMs), Candle>,
    /// Perpetual markets and positions whose record changed (current values in the ledger).
    pub perpetual_markets: BTreeSet<MarketId>,
    pub positions: BTreeSet<(UserId, MarketId)>,
    pub fundings: Vec<FundingRecord>,
    pub liquidations: Vec<LiquidationRecord>,
}

impl ChangeSet for SpotChanges {
    fn clear(&mut self) {
        let SpotChanges { markets, trades, orders, closed_orders, candles, perpetual_markets, positions, fundings, liquidations } = self;
        markets.clear();
        trades.clear();
        orders.clear();
        closed_orders.clear();
        candles.clear();
        perpetual_markets.clear();
        positions.clear();
        fundings.clear();
        liquidations.clear();
    }
}

#[derive(Default)]
pub struct Spot {
    markets: FxHashMap<MarketId, Market>,
    orders: FxHashMap<OrderId, OrderRecord>,
    open_orders_by_user: FxHashMap<UserId, u32>,
    counters: SpotCounters,
    candles: FxHashMap<(MarketId, CandleInterval), Candle>,
    /// Open good-till orders not yet sent to be cancelled, by expiry.
    expiries: BTreeSet<(TimestampMs, OrderId)>,
    /// Cancels of expired orders for matching, taken with the command's outcome.
    forward_more: Vec<matching_api::Command>,
    changes: SpotChanges,
    /// Set when matching reported something the ledger cannot settle (a fill
    /// of an order it does not hold): an invariant breach, which stops the
    /// daemon before it acknowledges the batch.
    fault: Option<String>,
    /// Perpetual markets: positions, margin, marks, funding, liquidations.
    perpetuals: Perpetuals,
    /// The open orders of perpetual markets by user and market: the margin they need.
    perpetual_orders: BTreeMap<(UserId, MarketId), BTreeSet<OrderId>>,
    /// The markets whose base is a token, and their open orders by token
    /// and user: its rules count the buys on their way ([`Incoming`]) and
    /// decide, when they change, which orders may keep resting.
    token_markets: FxHashMap<MarketId, AssetId>,
    token_orders: BTreeMap<(AssetId, UserId), BTreeSet<OrderId>>,
}

/// The open orders of perpetual markets as their margin counts them.
struct PerpetualBook<'a> {
    orders: &'a FxHashMap<OrderId, OrderRecord>,
    index: &'a BTreeMap<(UserId, MarketId), BTreeSet<OrderId>>,
}

impl OpenOrders for PerpetualBook<'_> {
    fn open_orders(&self, user: UserId, market: MarketId) -> Vec<OpenOrder> {
        self.index.get(&(user, market)).into_iter().flatten().filter_map(|id| self.orders.get(id)).filter_map(margin_order).collect()
    }

    fn network_offered(&self, market: MarketId) -> u64 {
        self.open_orders(NETWORK_USER, market).iter().map(|order| order.lots).sum()
    }
}

/// What an open order counts for in margin: its open lots at its price
/// (a market order's protection price); while an amend is on its way,
/// fills may come at either terms, so the larger open quantity at the
/// worse price (a buy's higher, a sell's lower).
fn margin_order(record: &OrderRecord) -> Option<OpenOrder> {
    let buy = record.order.side == Side::Buy;
    let (mut lots, mut price) = (record.order.quantity.saturating_sub(record.filled), record.order.price.unwrap_or(0));
    if let Some(terms) = record.amending {
        lots = lots.max(terms.quantity.saturating_sub(record.filled));
        price = if buy { price.max(terms.price) } else { price.min(terms.price) };
    }
    (lots > 0).then_some(OpenOrder { buy, lots, price })
}

/// The user a user's command acts for.
fn acting_user(command: &Command) -> Option<UserId> {
    use perpetual_api::Command as P;
    match command {
        Command::PlaceOrder { user, .. }
        | Command::PlaceOco { user, .. }
        | Command::CancelOrder { user, .. }
        | Command::AmendOrder { user, .. }
        | Command::CancelAll { user, .. }
        | Command::Perpetual(
            P::SubmitPrice { user, .. }
            | P::SetLeverage { user, .. }
            | P::SetMarginMode { user, .. }
            | P::AddMargin { user, .. }
            | P::ReduceMargin { user, .. },
        ) => Some(*user),
        Command::Perpetual(P::SetOracle { user, .. }) => Some(*user),
        Command::CreateMarket(_)
        | Command::SetTrading { .. }
        | Command::ApplyMatching { .. }
        | Command::ExpireOrders
        | Command::Perpetual(P::CreateMarket { .. } | P::Tick) => None,
    }
}

fn order_key(user: UserId, client_order_id: &str) -> Option<Digest> {
    key_digest(b"order", &user.to_le_bytes(), client_order_id)
}

/// A placement under a client order id: the first order it placed (a
/// replay), or the key and fingerprint to remember once it is placed.
enum Placement {
    Replay(OrderId),
    New(Option<(Digest, Digest)>),
}

/// Checks a placement's client order id against what the user placed under
/// it before; `fields` are what a replay must repeat.
fn placement(kernel: &Kernel, user: UserId, client_order_id: Option<&str>, known_key: Option<Digest>, fields: &[&[u8]]) -> Result<Placement, LedgerError> {
    let Some(client_order_id) = client_order_id else { return Ok(Placement::New(None)) };
    ledger_core::check_key(client_order_id).map_err(refusal)?;
    let key = known_key.or_else(|| order_key(user, client_order_id)).expect("a checked key has a digest");
    match kernel.idempotent(&key, fields).map_err(refusal)? {
        Idempotent::Replay(recorded) if recorded.kind == ORDER_RECORD => Ok(Placement::Replay(recorded.id)),
        Idempotent::Replay(_) => Err(LedgerError::Duplicate),
        Idempotent::New(fingerprint) => Ok(Placement::New(Some((key, fingerprint)))),
    }
}

/// A new order's record, held and on its way to matching.
fn new_record(order: NewOrder, client_order_id: Option<&str>, at_ms: TimestampMs) -> OrderRecord {
    OrderRecord {
        order,
        client_order_id: client_order_id.map(str::to_string),
        status: OrderStatus::Pending,
        filled: 0,
        filled_notional: 0,
        filled_tick_lots: 0,
        fees_paid: 0,
        reject_reason: None,
        created_ms: at_ms,
        updated_ms: at_ms,
        expires_at_ms: None,
        expiring: false,
        amending: None,
        amend_refused: None,
        trigger: None,
        triggered_ms: None,
        oco_with: None,
        reduce_only: false,
    }
}

pub fn reject_text(code: RejectCode) -> &'static str {
    match code {
        RejectCode::InvalidPrice => "INVALID_PRICE",
        RejectCode::InvalidQuantity => "INVALID_QUANTITY",
        RejectCode::InvalidOrder => "INVALID_ORDER",
        RejectCode::PostOnlyWouldTake => "POST_ONLY_WOULD_TAKE",
        RejectCode::MarketClosed => "MARKET_CLOSED",
        RejectCode::UnknownMarket => "UNKNOWN_MARKET",
        RejectCode::DuplicateOrderId => "DUPLICATE_ORDER_ID",
        RejectCode::UnknownOrder => "UNKNOWN_ORDER",
        RejectCode::BookFull => "BOOK_FULL",
        RejectCode::UserOrderLimit => "USER_ORDER_LIMIT",
        RejectCode::PriceLevelLimit => "PRICE_LEVEL_LIMIT",
        RejectCode::PriceOutOfBand => "PRICE_OUT_OF_BAND",
        RejectCode::WouldTriggerNow => "WOULD_TRIGGER_NOW",
        RejectCode::MarketExists | RejectCode::MarketLimit | RejectCode::InvalidMarketSpec => "INVALID_MARKET",
    }
}

impl Product for Spot {
    type Command = Command;
    type Outcome = Outcome;
    type State = SpotState;
    type Changes = SpotChanges;
    // Perpetual markets' accounts: margin, insurance, settlement, funding clearing.
    const PURPOSES: &'static [PurposeSpec] = crate::perpetual::PURPOSES;
    const RECORD_KINDS: &'static [u8] = &[ORDER_RECORD];
    const HOLD_KINDS: &'static [u8] = &[ORDER_HOLD];

    fn restore(state: SpotState) -> Spot {
        let mut open_orders_by_user: FxHashMap<UserId, u32> = FxHashMap::default();
        for order in state.open_orders.values() {
            *open_orders_by_user.entry(order.order.user).or_default() += 1;
        }
        let counters = SpotCounters { next_order: state.counters.next_order.max(1), next_trade: state.counters.next_trade.max(1), ..state.counters };
        let mut perpetual_orders: BTreeMap<(UserId, MarketId), BTreeSet<OrderId>> = BTreeMap::new();
        for (id, record) in &state.open_orders {
            if state.perpetuals.markets.contains_key(&record.order.market) {
                perpetual_orders.entry((record.order.user, record.order.market)).or_default().insert(*id);
            }
        }
        let expiries =
            state.open_orders.iter().filter(|(_, record)| !record.expiring).filter_map(|(id, record)| record.expires_at_ms.map(|at| (at, *id))).collect();
        Spot {
            expiries,
            forward_more: Vec::new(),
            markets: state.markets.into_iter().collect(),
            orders: state.open_orders.into_iter().collect(),
            open_orders_by_user,
            counters,
            candles: state.candles.into_iter().collect(),
            changes: SpotChanges::default(),
            fault: None,
            perpetuals: Perpetuals::restore(state.perpetuals),
            perpetual_orders,
            token_markets: FxHashMap::default(),
            token_orders: BTreeMap::new(),
        }
    }

    fn state(&self) -> SpotState {
        SpotState {
            markets: self.markets.iter().map(|(id, market)| (*id, *market)).collect(),
            open_orders: self.orders.iter().map(|(id, record)| (*id, record.clone())).collect(),
            counters: self.counters,
            candles: self.candles.iter().map(|(key, candle)| (*key, *candle)).collect(),
            perpetuals: self.perpetuals.state(),
        }
    }

    fn changes_mut(&mut self) -> &mut SpotChanges {
        &mut self.changes
    }

    fn take_changes(&mut self) -> SpotChanges {
        let (markets, positions) = self.perpetuals.take_touched();
        self.changes.perpetual_markets.extend(markets);
        self.changes.positions.extend(positions);
        std::mem::take(&mut self.changes)
    }

    fn idempotency_key(command: &Command) -> Option<Digest> {
        match command {
            Command::PlaceOrder { user, client_order_id: Some(id), .. } | Command::PlaceOco { user, client_order_id: Some(id), .. } => order_key(*user, id),
            _ => None,
        }
    }

    fn apply(
        &mut self,
        kernel: &mut Kernel,
        limits: &LedgerLimits,
        command: &Command,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> (Result<Outcome, LedgerError>, Forward) {
        if acting_user(command) == Some(NETWORK_USER) {
            return (Err(LedgerError::Forbidden("that user id is the liquidation book's".into())), None);
        }
        match command {
            Command::CreateMarket(market) => match self.create_market(kernel, limits, market) {
                Ok(outcome) => (Ok(outcome), Some(matching_api::Command::AddMarket(market.spec))),
                Err(error) => (Err(error), None),
            },
            Command::PlaceOrder { user, request, client_order_id } => {
                match self.place_order(kernel, limits, *user, request, client_order_id.as_deref(), at_ms, known_key) {
                    Ok((outcome, forward)) => (Ok(outcome), forward),
                    Err(error) => (Err(error), None),
                }
            }
            Command::SetTrading { market, trading } => match self.markets.get_mut(market) {
                Some(listed) => {
                    listed.trading = *trading;
                    self.changes.markets.push(*listed);
                    let outcome = Outcome::TradingSet { market: *market, trading: *trading };
                    (Ok(outcome), Some(matching_api::Command::SetTrading { market: *market, trading: *trading }))
                }
                None => (Err(LedgerError::UnknownMarket(*market)), None),
            },
            Command::CancelOrder { user, order_id } => match self.orders.get(order_id) {
                // Another user's order answers as if it did not exist.
                Some(record) if record.order.user == *user => {
                    let forward = matching_api::Command::Cancel { market: record.order.market, order_id: *order_id, user: *user };
                    (Ok(Outcome::CancelRequested(*order_id)), Some(forward))
                }
                _ => (Err(LedgerError::NotFound), None),
            },
            Command::PlaceOco { user, request, client_order_id } => {
                match self.place_oco(kernel, limits, *user, request, client_order_id.as_deref(), at_ms, known_key) {
                    Ok((outcome, forward)) => (Ok(outcome), forward),
                    Err(error) => (Err(error), None),
                }
            }
            &Command::AmendOrder { user, order_id, price, quantity } => match self.amend_order(kernel, user, order_id, AmendTerms { price, quantity }, at_ms) {
                Ok(forward) => (Ok(Outcome::AmendRequested(order_id)), Some(forward)),
                Err(error) => (Err(error), None),
            },
            Command::ApplyMatching { sequence, events } => (self.apply_matching(kernel, *sequence, events, at_ms), None),
            Command::Perpetual(command) => self.apply_perpetual(kernel, limits, command, at_ms),
            Command::ExpireOrders => (Ok(self.expire_orders(at_ms)), None),
            &Command::CancelAll { user, market } => {
                if !self.markets.contains_key(&market) {
                    return (Err(LedgerError::UnknownMarket(market)), None);
                }
                let open = self.open_orders_by_user.get(&user).copied().unwrap_or(0) as usize;
                let mut orders: Vec<OrderId> = if open == 0 {
                    Vec::new()
                } else {
                    self.orders.iter().filter(|(_, r)| r.order.user == user).take(open).filter(|(_, r)| r.order.market == market).map(|(id, _)| *id).collect()
                };
                orders.sort_unstable();
                // Nothing open: nothing for matching to do.
                let forward = (!orders.is_empty()).then_some(matching_api::Command::CancelAll { market, user });
                (Ok(Outcome::CancelAllRequested { market, orders }), forward)
            }
        }
    }

    fn frozen_subject(&self, command: &Command) -> Option<UserId> {
        match command {
            // Cancelling takes risk off: a frozen account may. An oracle's
            // role is granted by operators, not by the account.
            Command::CancelOrder { .. } | Command::CancelAll { .. } | Command::Perpetual(perpetual_api::Command::SetOracle { .. }) => None,
            // Orders, money between general and margin, an oracle's price.
            command => acting_user(command),
        }
    }

    fn take_forward_more(&mut self) -> Vec<matching_api::Command> {
        std::mem::take(&mut self.forward_more)
    }

    /// An order on a token's market: a buy receives what it asks (an
    /// amend, what it asks more), a sell sends; matching pairs them only
    /// after both passed, so that no trade breaks the token's rules.
    fn token_movement(&self, _: &Kernel, command: &Command) -> Option<(AssetId, Movement)> {
        if self.token_markets.is_empty() {
            return None;
        }
        let (user, market, side, lots) = match command {
            Command::PlaceOrder { user, request, .. } => (*user, request.market, request.side, request.quantity),
            Command::PlaceOco { user, request, .. } => (*user, request.market, request.side, request.quantity),
            Command::AmendOrder { user, order_id, quantity, .. } => {
                let record = self.orders.get(order_id).filter(|record| record.order.user == *user)?;
                (*user, record.order.market, record.order.side, quantity.saturating_sub(record.order.quantity))
            }
            _ => return None,
        };
        let token = *self.token_markets.get(&market)?;
        let market = self.markets.get(&market)?;
        // Before matching's checks bound the quantity: an absurd one asks for the most there is.
        let amount = Amount::from(lots).checked_mul(Amount::from(market.base_units_per_lot)).unwrap_or(Amount::MAX);
        Some((token, if side == Side::Buy { Movement::Receive { user, amount } } else { Movement::Send { user } }))
    }

    /// A new or amended order.
    fn order_subject(&self, command: &Command) -> Option<UserId> {
        match command {
            Command::PlaceOrder { user, .. } | Command::PlaceOco { user, .. } | Command::AmendOrder { user, .. } => Some(*user),
            _ => None,
        }
    }

    /// A cancel for each of `user`'s open orders, oldest first. Rare (an
    /// account frozen), so a scan of the open orders rather than an index.
    fn cancel_all(&self, user: UserId) -> Vec<matching_api::Command> {
        let open = self.open_orders_by_user.get(&user).copied().unwrap_or(0) as usize;
        let mut cancels: Vec<(OrderId, MarketId)> =
            self.orders.iter().filter(|(_, record)| record.order.user == user).map(|(id, record)| (*id, record.order.market)).take(open).collect();
        cancels.sort_unstable();
        cancels.into_iter().map(|(order_id, market)| matching_api::Command::Cancel { market, order_id, user }).collect()
    }

    /// Every open order is held and every order hold is an open order's;
    /// nothing matching reported went unsettled.
    fn check_invariants(&self, kernel: &Kernel) -> Result<(), String> {
        if let Some(fault) = &self.fault {
            return Err(fault.clone());
        }
        let mut perpetual_orders = 0;
        for (id, record) in &self.orders {
            if self.is_perpetual(record.order.market) {
                let key = (record.order.user, record.order.market);
                if !self.perpetual_orders.get(&key).is_some_and(|orders| orders.contains(id)) {
                    return Err(format!("open order {id} of a perpetual market is not counted in its user's margin"));
                }
                perpetual_orders += 1;
                continue;
            }
            let asset: AssetId = match (record.order.side, self.markets.get(&record.order.market)) {
                (Side::Buy, Some(market)) => market.quote,
                (Side::Sell, Some(market)) => market.base,
                (_, None) => return Err(format!("open order {id} is in a market the ledger does not have")),
            };
            match kernel.hold_of(hold_of(record)) {
                Some(hold) if hold.origin == available(record.order.user, asset) && hold.held == locked(record.order.user, asset) => {}
                other => return Err(format!("open order {id} is held as {other:?}")),
            }
            if let Some(other) = record.oco_with.and_then(|other| self.orders.get(&other)) {
                if other.oco_with != Some(*id) || other.order.user != record.order.user || other.order.side != record.order.side {
                    return Err(format!("open order {id} is listed with order {}, which is not listed with it", other.order.order_id));
                }
            }
        }
        let holders = |hold: &HoldId| {
            self.orders.get(&hold.id).is_some_and(|r| hold_of(r) == *hold) || self.orders.get(&(hold.id + 1)).is_some_and(|r| hold_of(r) == *hold)
        };
        if let Some((id, _)) = kernel.holds().find(|(id, _)| id.kind == ORDER_HOLD && !holders(id)) {
            return Err(format!("hold {id:?} has no open order"));
        }
        if self.perpetual_orders.values().map(BTreeSet::len).sum::<usize>() != perpetual_orders {
            return Err("an order counted in a perpetual market's margin is not open".into());
        }
        self.perpetuals.check_invariants(kernel)?;
        let mut token_orders: BTreeMap<(AssetId, UserId), BTreeSet<OrderId>> = BTreeMap::new();
        for (id, record) in &self.orders {
            if let Some(token) = self.token_markets.get(&record.order.market) {
                token_orders.entry((*token, record.order.user)).or_default().insert(*id);
            }
        }
        if token_orders != self.token_orders {
            return Err("the index of open orders on tokens' markets is not what the open orders say".into());
        }
        let counted: u32 = self.open_orders_by_user.values().sum();
        if counted as usize != self.orders.len() {
            return Err(format!("{counted} open orders counted per user, {} open", self.orders.len()));
        }
        Ok(())
    }
}

impl Spot {
    pub fn order(&self, id: OrderId) -> Option<&OrderRecord> {
        self.orders.get(&id)
    }

    pub fn market(&self, id: MarketId) -> Option<&Market> {
        self.markets.get(&id)
    }

    pub fn counters(&self) -> SpotCounters {
        self.counters
    }

    /// Lists a token's market at its offering's close under the next free
    /// id, unless the pair trades already or cannot be listed (the
    /// markets' limit): the market as listed.
    pub(crate) fn list_token(&mut self, kernel: &Kernel, limits: &LedgerLimits, mut market: Market) -> Option<Market> {
        if self.markets.values().any(|listed| listed.base == market.base && listed.quote == market.quote) {
            return None;
        }
        market.spec.id = self.markets.keys().max().map_or(Some(1), |id| id.checked_add(1))?;
        self.create_market(kernel, limits, &market).ok().map(|_| market)
    }

    /// Which markets trade a token, from the kernel's followed assets: at every start.
    pub(crate) fn attach(&mut self, kernel: &Kernel) {
        self.token_markets = self.markets.values().filter(|market| kernel.holders(market.base).is_some()).map(|market| (market.id(), market.base)).collect();
        let open: Vec<(MarketId, UserId, OrderId)> = self.orders.iter().map(|(id, record)| (record.order.market, record.order.user, *id)).collect();
        self.token_orders.clear();
        for (market, user, id) in open {
            self.index_token_order(market, user, id, true);
        }
    }

    fn index_token_order(&mut self, market: MarketId, user: UserId, order_id: OrderId, open: bool) {
        if self.token_markets.is_empty() {
            return;
        }
        let Some(token) = self.token_markets.get(&market).copied() else { return };
        if open {
            self.token_orders.entry((token, user)).or_default().insert(order_id);
        } else if let Some(orders) = self.token_orders.get_mut(&(token, user)) {
            orders.remove(&order_id);
            if orders.is_empty() {
                self.token_orders.remove(&(token, user));
            }
        }
    }

    /// The last trade price between `asset` and `reference` on the spot
    /// market that trades them (either way round; the lowest id when
    /// several do), from its latest candle's close.
    pub fn last_price(&self, asset: AssetId, reference: AssetId) -> Option<crate::donations::Price> {
        let market = self
            .markets
            .values()
            .filter(|m| (m.base, m.quote) == (asset, reference) || (m.base, m.quote) == (reference, asset))
            .filter(|m| !self.is_perpetual(m.id()))
            .min_by_key(|m| m.id())?;
        let close = self.candles.get(&(market.id(), CandleInterval::OneMinute)).map(|candle| candle.close).filter(|close| *close > 0)?;
        // A lot of base costs close x quote_units_per_tick_lot / 10^tick_lot_scale quote units.
        let quote = Amount::from(close).checked_mul(Amount::from(market.spec.quote_units_per_tick_lot))?;
        let base = Amount::from(market.base_units_per_lot).checked_mul(10_i128.checked_pow(u32::from(market.spec.tick_lot_scale))?)?;
        let (num, den) = if market.base == asset { (quote, base) } else { (base, quote) };
        (den > 0).then_some(crate::donations::Price { num, den })
    }

    /// The token `market` trades, if it trades one.
    pub fn token_of(&self, market: MarketId) -> Option<AssetId> {
        if self.token_markets.is_empty() {
            return None;
        }
        self.token_markets.get(&market).copied()
    }

    /// The users with orders open on `token`'s markets (or only `only`),
    /// ascending, and whether they have buys and sells among them.
    pub(crate) fn resting_on_token(&self, token: AssetId, only: Option<UserId>) -> Vec<(UserId, bool, bool)> {
        let (from, to) = only.map_or((0, UserId::MAX), |user| (user, user));
        self.token_orders
            .range((token, from)..=(token, to))
            .map(|((_, user), orders)| {
                let sides = || orders.iter().filter_map(|id| self.orders.get(id)).map(|record| record.order.side);
                (*user, sides().any(|side| side == Side::Buy), sides().any(|side| side == Side::Sell))
            })
            .collect()
    }

    /// The tokens on whose markets `user` has orders open.
    pub(crate) fn tokens_traded_by(&self, user: UserId) -> Vec<AssetId> {
        self.token_orders.keys().filter(|(_, owner)| *owner == user).map(|(token, _)| *token).collect()
    }

    /// The cancels of the sides of users' orders on `token`'s markets that
    /// may no longer rest, by user and order id.
    pub(crate) fn cancels_of(&self, token: AssetId, unfit: &[Unfit]) -> Vec<matching_api::Command> {
        let mut cancels = Vec::new();
        for unfit in unfit {
            for id in self.token_orders.get(&(token, unfit.user)).into_iter().flatten() {
                let Some(record) = self.orders.get(id) else { continue };
                let side = record.order.side;
                if (side == Side::Buy && unfit.buys) || (side == Side::Sell && unfit.sells) {
                    cancels.push(matching_api::Command::Cancel { market: record.order.market, order_id: *id, user: unfit.user });
                }
            }
        }
        cancels
    }

    /// Makes `user`'s resting buys of `token` expire by `at_ms` (their claims' new expiry).
    /// Renewed claims do not lengthen it: an order keeps the sooner of the two.
    pub(crate) fn expire_buys_by(&mut self, token: AssetId, user: UserId, at_ms: TimestampMs) {
        let buys: Vec<OrderId> = self
            .token_orders
            .get(&(token, user))
            .into_iter()
            .flatten()
            .filter(|id| self.orders.get(id).is_some_and(|record| record.order.side == Side::Buy))
            .copied()
            .collect();
        for id in buys {
            self.expire_by(id, at_ms);
        }
    }

    /// Makes a resting buy of a token expire by `at_ms` (when its owner's
    /// claims stop counting), unless it expires sooner. An order that does
    /// not rest (IOC, FOK, market) is done before then, unless it is a stop
    /// waiting to fire.
    pub(crate) fn expire_by(&mut self, order_id: OrderId, at_ms: TimestampMs) {
        let Some(record) = self.orders.get_mut(&order_id) else { return };
        if (!record.order.may_rest() && record.trigger.is_none()) || record.expiring || record.expires_at_ms.is_some_and(|expires| expires <= at_ms) {
            return;
        }
        if let Some(expires) = record.expires_at_ms {
            self.expiries.remove(&(expires, order_id));
        }
        record.expires_at_ms = Some(at_ms);
        self.expiries.insert((at_ms, order_id));
        self.changes.orders.insert(order_id);
    }

    fn create_market(&mut self, kernel: &Kernel, limits: &LedgerLimits, market: &Market) -> Result<Outcome, LedgerError> {
        self.check_new_market(kernel, limits, market)?;
        // A token's holders are followed: its rules decide who may trade it.
        if kernel.holders(market.base).is_some() {
            self.token_markets.insert(market.id(), market.base);
        }
        self.markets.insert(market.id(), *market);
        self.changes.markets.push(*market);
        Ok(Outcome::MarketCreated(market.id()))
    }

    /// Why `market` cannot be listed, if it cannot.
    fn check_new_market(&self, kernel: &Kernel, limits: &LedgerLimits, market: &Market) -> Result<(), LedgerError> {
        for asset in [market.base, market.quote] {
            kernel.known_asset(asset).map_err(refusal)?;
        }
        if market.base == market.quote {
            return Err(LedgerError::BadInput("a market's base and quote differ".into()));
        }
        // A token's holders are followed. It trades as a base, against
        // money: its rules check a buy as a receipt and a sell as a send.
        if kernel.holders(market.quote).is_some() {
            return Err(LedgerError::BadInput("a token is not a market's quote asset: list it as the base, priced in money".into()));
        }
        if market.base_units_per_lot == 0 || market.spec.validate().is_err() {
            return Err(LedgerError::BadInput("the market's tick, lot, fee rates or bounds are out of range".into()));
        }
        if !market.trading {
            // Matching adds every market trading: halt it once it is listed.
            return Err(LedgerError::BadInput("a market is listed trading; halt it once it is listed".into()));
        }
        if self.markets.contains_key(&market.id()) {
            return Err(LedgerError::MarketExists(market.id()));
        }
        if market.id() >= limits.markets_max {
            return Err(LedgerError::LimitReached("markets_max".into()));
        }
        Ok(())
    }

    fn is_perpetual(&self, market: MarketId) -> bool {
        self.perpetuals.market(market).is_some()
    }

    /// The perpetual markets and positions.
    pub fn perpetuals(&self) -> &Perpetuals {
        &self.perpetuals
    }

    fn book(&self) -> PerpetualBook<'_> {
        PerpetualBook { orders: &self.orders, index: &self.perpetual_orders }
    }

    /// Before a new or amended order on a perpetual market: a reduce-only
    /// one only if it reduces the position, with the user's other
    /// reduce-only orders on its side; with a stale index only an order
    /// that reduces the position; then the margin the user's open orders
    /// and `order` need, moved from general. `replacing`: the open order
    /// `order` stands for (an amend's).
    #[allow(clippy::too_many_arguments)] // the order, what it replaces and its flag are the check's own
    fn reserve_perpetual(
        &mut self,
        kernel: &mut Kernel,
        user: UserId,
        market: MarketId,
        order: OpenOrder,
        replacing: Option<OrderId>,
        reduce_only: bool,
        at_ms: TimestampMs,
    ) -> Result<(), LedgerError> {
        let listed = self.perpetuals.market(market).ok_or(LedgerError::UnknownMarket(market))?;
        if listed.mark.is_none() {
            return Err(LedgerError::BadInput(format!("perpetual market {market} has no mark price yet: orders wait for the oracles' first prices")));
        }
        let book = PerpetualBook { orders: &self.orders, index: &self.perpetual_orders };
        let others: Vec<OpenOrder> = self
            .perpetual_orders
            .get(&(user, market))
            .into_iter()
            .flatten()
            .filter(|id| Some(**id) != replacing)
            .filter_map(|id| book.orders.get(id))
            .filter_map(margin_order)
            .collect();
        let size = self.perpetuals.position(user, market).map_or(0, |position| position.holding.size);
        if reduce_only {
            // Waiting stops count as live orders do: OCO lists (a stop-loss
            // and a take-profit over one position) are spot's only, for now.
            let reducing: u64 =
                self.reduce_only_orders(user, market).filter(|&(id, buy, _)| Some(id) != replacing && buy == order.buy).map(|(_, _, lots)| lots).sum();
            let against = if order.buy { size < 0 } else { size > 0 };
            if !against || reducing.saturating_add(order.lots) > size.unsigned_abs() {
                return Err(LedgerError::BadInput(format!(
                    "a reduce-only order must shrink the position: it holds {size} lots (above zero long), and the other reduce-only orders on this side \
                     already close {reducing} of them; cancel those first"
                )));
            }
        }
        if listed.index(at_ms).is_err() {
            // With the user's other orders on the same side, still no more than the position.
            let same_side: u64 = others.iter().filter(|other| other.buy == order.buy).map(|other| other.lots).sum();
            let reduces = if order.buy { size < 0 } else { size > 0 } && same_side.saturating_add(order.lots) <= size.unsigned_abs();
            if !reduces {
                return Err(LedgerError::BadInput(format!(
                    "market {market}'s index is stale (no fresh oracle price): it takes only orders that reduce a position until the oracles report"
                )));
            }
        }
        let mut orders = others;
        orders.push(order);
        match reduce_only {
            true => self.perpetuals.reserve_reducing(kernel, user, market, &orders, at_ms),
            false => self.perpetuals.reserve(kernel, user, market, &orders, at_ms),
        }
    }

    /// A user's open reduce-only orders on a market (waiting stops too),
    /// oldest first: id, whether a buy, and the lots they may still fill
    /// (an amend's larger).
    fn reduce_only_orders(&self, user: UserId, market: MarketId) -> impl Iterator<Item = (OrderId, bool, u64)> + '_ {
        let orders = self.perpetual_orders.get(&(user, market)).into_iter().flatten().filter_map(|id| self.orders.get(id));
        orders.filter(|record| record.reduce_only).filter_map(|record| margin_order(record).map(|order| (record.order.order_id, order.buy, order.lots)))
    }

    /// After a user's position changed: their reduce-only orders that no
    /// longer reduce it (it shrank, closed or turned) are cancelled, taken
    /// oldest first, each staying while what is left of the position
    /// covers it. A fill matching makes before the cancel reaches it
    /// stands, within the side's limit of the largest position; until
    /// matching confirms a cancel, a later fill may send it again (matching
    /// refuses the second, and the ledger ignores that).
    fn cancel_unreducing(&mut self, user: UserId, market: MarketId) {
        let size = self.perpetuals.position(user, market).map_or(0, |position| position.holding.size);
        let covers = |buy: bool| if buy == (size < 0) { size.unsigned_abs() } else { 0 };
        let (mut buys_room, mut sells_room) = (covers(true), covers(false));
        let mut cancels = Vec::new();
        for (order_id, buy, lots) in self.reduce_only_orders(user, market) {
            let room = if buy { &mut buys_room } else { &mut sells_room };
            match room.checked_sub(lots) {
                Some(left) => *room = left,
                None => cancels.push(matching_api::Command::Cancel { market, order_id, user }),
            }
        }
        self.forward_more.extend(cancels);
    }

    /// What a perpetual market's margin accounts hold beyond the user's need goes back (an order ended or changed).
    fn release_perpetual(&mut self, kernel: &mut Kernel, user: UserId, market: MarketId, at_ms: TimestampMs) {
        let orders = self.book().open_orders(user, market);
        if let Err(reason) = self.perpetuals.release_excess(kernel, user, market, &orders, at_ms) {
            self.fault(reason);
        }
    }

    fn create_perpetual(
        &mut self,
        kernel: &Kernel,
        limits: &LedgerLimits,
        market: &Market,
        spec: &PerpetualSpec,
        at_ms: TimestampMs,
    ) -> Result<(), LedgerError> {
        self.check_new_market(kernel, limits, market)?;
        // A perpetual moves no base: its margin would escape the token's rules on who may hold it.
        if kernel.holders(market.base).is_some() {
            return Err(LedgerError::BadInput("a token trades on spot markets only, under its transfer rules".into()));
        }
        if spec.market != market.id() || spec.collateral != market.quote {
            return Err(LedgerError::BadInput("a perpetual's market and collateral are its listing's id and quote asset".into()));
        }
        let matching = &market.spec;
        if spec.units_per_tick_lot != matching.quote_units_per_tick_lot
            || spec.tick_lot_scale != matching.tick_lot_scale
            || spec.price_ticks_max != matching.price_ticks_max
            || matching.quantity_lots_max > spec.position_lots_max
        {
            return Err(LedgerError::BadInput(
                "a perpetual's contract is its listing's: the same tick on a lot, scale and highest price, and no order larger than the largest position"
                    .into(),
            ));
        }
        self.perpetuals.create_market(kernel, spec, at_ms)?;
        self.markets.insert(market.id(), *market);
        self.changes.markets.push(*market);
        Ok(())
    }

    fn apply_perpetual(
        &mut self,
        kernel: &mut Kernel,
        limits: &LedgerLimits,
        command: &perpetual_api::Command,
        at_ms: TimestampMs,
    ) -> (Result<Outcome, LedgerError>, Forward) {
        use perpetual_api::{Command as P, Outcome as O};
        let outcome = match *command {
            P::CreateMarket { ref market, ref perpetual } => {
                return match self.create_perpetual(kernel, limits, market, perpetual, at_ms) {
                    Ok(()) => (Ok(Outcome::Perpetual(O::MarketCreated(market.id()))), Some(matching_api::Command::AddMarket(market.spec))),
                    Err(error) => (Err(error), None),
                };
            }
            P::SetOracle { market, user, source } => self.perpetuals.set_oracle(market, user, source).map(|()| O::OracleSet { market, user, source }),
            P::SubmitPrice { user, market, price } => self.perpetuals.submit_price(user, market, price, at_ms).map(|index| {
                let mark = self.remark(kernel, market, at_ms).map(|(mark, _)| mark);
                O::PriceSubmitted { market, index, mark }
            }),
            P::SetLeverage { user, market, leverage } => {
                let orders = self.book().open_orders(user, market);
                self.perpetuals.set_leverage(kernel, user, market, leverage, &orders, at_ms).map(|()| O::LeverageSet { market, leverage })
            }
            P::SetMarginMode { user, market, mode } => {
                let orders = self.book().open_orders(user, market);
                self.perpetuals.set_margin_mode(user, market, mode, &orders).map(|()| O::MarginModeSet { market, mode })
            }
            P::AddMargin { user, market, amount } => {
                self.perpetuals.add_margin(kernel, user, market, amount, at_ms).map(|()| O::MarginAdded { market, amount })
            }
            P::ReduceMargin { user, market, amount } => {
                let orders = self.book().open_orders(user, market);
                self.perpetuals.reduce_margin(kernel, user, market, amount, &orders, at_ms).map(|()| O::MarginReduced { market, amount })
            }
            P::Tick => Ok(self.tick(kernel, at_ms)),
        };
        (outcome.map(Outcome::Perpetual), None)
    }

    /// Recomputes `market`'s mark by the stamped time; when it moved: the
    /// mark-to-market, the liquidations, and the mark to matching (for the
    /// stops that watch it). The new mark, if it moved.
    fn remark(&mut self, kernel: &mut Kernel, market: MarketId, at_ms: TimestampMs) -> Option<(u64, Vec<LiquidationRecord>)> {
        let listed = self.perpetuals.market(market)?;
        let mark = listed.mark_at(at_ms).filter(|mark| Some(*mark) != listed.mark)?;
        let book = PerpetualBook { orders: &self.orders, index: &self.perpetual_orders };
        match self.perpetuals.set_mark(kernel, market, mark, &book, at_ms) {
            Ok(risk) => Some((mark, self.after_risk(market, risk, Some(mark), at_ms))),
            Err(reason) => {
                self.fault(reason);
                None
            }
        }
    }

    /// What follows a mark-to-market or a funding: the liquidated users'
    /// open orders on the market cancelled, the new mark (if any) to
    /// matching, and the network's lots offered to the book.
    fn after_risk(&mut self, market: MarketId, risk: RiskOutcome, mark: Option<u64>, at_ms: TimestampMs) -> Vec<LiquidationRecord> {
        let liquidated = || risk.liquidations.iter().filter(|record| record.kind == LiquidationKind::Liquidated);
        // The orders of every position liquidated or deleveraged, and the
        // network's offers of lots that deleveraging closed instead.
        let mut cancels: BTreeSet<(UserId, MarketId)> = risk.liquidations.iter().map(|record| (record.user, record.market)).collect();
        cancels.extend(risk.liquidations.iter().filter(|record| record.kind == LiquidationKind::Deleveraged).map(|record| (NETWORK_USER, record.market)));
        for (user, market) in cancels {
            for &order_id in self.perpetual_orders.get(&(user, market)).into_iter().flatten() {
                self.forward_more.push(matching_api::Command::Cancel { market, order_id, user });
            }
        }
        if let Some(price) = mark {
            self.forward_more.push(matching_api::Command::SetMark { market, price });
        }
        // A cross user's liquidation reaches all their markets.
        let markets: BTreeSet<MarketId> = liquidated().map(|record| record.market).collect();
        for market in markets {
            let network = self.perpetuals.market(market).map_or(0, |listed| listed.network.size);
            let offered = PerpetualBook { orders: &self.orders, index: &self.perpetual_orders }.network_offered(market);
            let mut left = network.unsigned_abs().saturating_sub(offered);
            for record in liquidated().filter(|record| record.market == market && record.size.signum() == network.signum()) {
                let lots = record.size.unsigned_abs().min(left);
                if lots == 0 {
                    break;
                }
                left -= lots;
                self.offer_network(market, network > 0, lots, record.offer_price.unwrap_or(record.price), at_ms);
            }
        }
        self.changes.liquidations.extend(risk.liquidations.iter().copied());
        risk.liquidations
    }

    /// An IOC of the market's liquidation book: `sell` (it holds a long)
    /// `lots` no worse than `price`.
    fn offer_network(&mut self, market: MarketId, sell: bool, lots: u64, price: u64, at_ms: TimestampMs) {
        let Some(listed) = self.markets.get(&market) else { return };
        let order_id = self.counters.next_order;
        let order = NewOrder {
            market,
            order_id,
            user: NETWORK_USER,
            side: if sell { Side::Sell } else { Side::Buy },
            kind: OrderKind::Limit,
            time_in_force: TimeInForce::Ioc,
            post_only: false,
            price: Some(price.clamp(1, listed.spec.price_ticks_max)),
            quantity: lots.min(listed.spec.quantity_lots_max),
            self_trade: Default::default(),
        };
        if matching_core::rules::check_new_order(&listed.spec, &order).is_err() {
            return;
        }
        self.counters.next_order += 1;
        self.orders.insert(order_id, new_record(order, None, at_ms));
        *self.open_orders_by_user.entry(NETWORK_USER).or_default() += 1;
        self.perpetual_orders.entry((NETWORK_USER, market)).or_default().insert(order_id);
        self.changes.orders.insert(order_id);
        self.forward_more.push(matching_api::Command::Place(order));
    }

    /// The ledger's tick: every perpetual market whose time came gets its
    /// mark recomputed, its funding paid when due, and the lots its
    /// network still holds offered again (when no offer is open).
    fn tick(&mut self, kernel: &mut Kernel, at_ms: TimestampMs) -> perpetual_api::Outcome {
        let due: Vec<MarketId> = self.perpetuals.markets().filter(|listed| listed.next_tick() <= at_ms).map(|listed| listed.id()).collect();
        let (mut marks, mut fundings, mut liquidations) = (Vec::new(), Vec::new(), Vec::new());
        let impacts = self.impact_prices(kernel, &due);
        for market in due {
            let (impact_bid, impact_ask) = impacts.get(&market).copied().unwrap_or((None, None));
            if let Err(reason) = self.perpetuals.sample_book(market, impact_bid, impact_ask, at_ms) {
                self.fault(reason.to_string());
            }
            if let Some((mark, liquidated)) = self.remark(kernel, market, at_ms) {
                marks.push((market, mark));
                liquidations.extend(liquidated);
            }
            let book = PerpetualBook { orders: &self.orders, index: &self.perpetual_orders };
            match self.perpetuals.fund(kernel, market, &book, at_ms) {
                Ok(Some((record, risk))) => {
                    fundings.push(record);
                    self.changes.fundings.push(record);
                    liquidations.extend(self.after_risk(market, risk, None, at_ms));
                }
                Ok(None) => {}
                Err(reason) => self.fault(reason),
            }
            self.offer_network_again(kernel, market, at_ms);
            self.perpetuals.ticked(market, at_ms);
        }
        perpetual_api::Outcome::Ticked { marks, fundings, liquidations }
    }

    /// The impact bid and ask of the `due` perpetual markets' books
    /// (risk-core's funding rules), read in one pass from the orders
    /// resting there: the ledger holds every order matching has, so the
    /// sample is the journal's and a replay samples the same. A side too
    /// thin for the impact notional has none.
    fn impact_prices(&self, kernel: &Kernel, due: &[MarketId]) -> FxHashMap<MarketId, (Option<u64>, Option<u64>)> {
        type Levels = (BTreeMap<u64, u64>, BTreeMap<u64, u64>);
        let mut books: FxHashMap<MarketId, Levels> = due.iter().map(|market| (*market, Levels::default())).collect();
        let resting = self
            .perpetual_orders
            .iter()
            .filter(|((_, market), _)| due.contains(market))
            .flat_map(|(_, ids)| ids.iter().filter_map(|id| self.orders.get(id)))
            .filter(|record| record.order.may_rest() && matches!(record.status, OrderStatus::Open | OrderStatus::PartiallyFilled));
        for record in resting {
            let (Some(price), Some((bids, asks))) = (record.order.price, books.get_mut(&record.order.market)) else { continue };
            let side = if record.order.side == Side::Buy { bids } else { asks };
            *side.entry(price).or_default() += record.order.quantity.saturating_sub(record.filled);
        }
        books
            .into_iter()
            .filter_map(|(market, (bids, asks))| {
                let listed = self.perpetuals.market(market)?;
                let scale = kernel.asset(listed.collateral()).map_or(0, |asset| asset.scale);
                let initial_ppm = listed.tiers.tiers().first().map_or(1_000_000, |tier| tier.initial_ppm);
                let impact_value = risk_core::funding::impact_value_exact(&listed.contract, scale, initial_ppm)?;
                let impact = |levels: &[(u64, u64)], round_up| risk_core::funding::impact_price(&listed.contract, levels, impact_value, round_up);
                let bids: Vec<(u64, u64)> = bids.into_iter().rev().collect();
                let asks: Vec<(u64, u64)> = asks.into_iter().collect();
                Some((market, (impact(&bids, false), impact(&asks, true))))
            })
            .collect()
    }

    /// Offers what the network holds, no worse than the price at which its
    /// fund would be spent, unless an offer of its is open already.
    fn offer_network_again(&mut self, kernel: &Kernel, market: MarketId, at_ms: TimestampMs) {
        let Some(listed) = self.perpetuals.market(market) else { return };
        let (Some(mark), size) = (listed.mark, listed.network.size) else { return };
        if size == 0 || self.perpetual_orders.get(&(NETWORK_USER, market)).is_some_and(|orders| !orders.is_empty()) {
            return;
        }
        let fund = kernel.balance(crate::perpetual::insurance(market, listed.collateral()));
        let worst = risk_core::liquidation::Exposure { size, mark, equity: fund }.bankruptcy_price(&listed.contract).unwrap_or(mark);
        self.offer_network(market, size > 0, size.unsigned_abs(), worst, at_ms);
    }

    /// When the ledger next has something to do on a perpetual market.
    pub fn next_perpetual_tick(&self) -> Option<TimestampMs> {
        self.perpetuals.markets().map(|listed| listed.next_tick()).min()
    }

    #[allow(clippy::too_many_arguments)]
    fn place_order(
        &mut self,
        kernel: &mut Kernel,
        limits: &LedgerLimits,
        user: UserId,
        request: &OrderRequest,
        client_order_id: Option<&str>,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> Result<(Outcome, Forward), LedgerError> {
        let fields = postcard::to_stdvec(request).expect("encoding into a vector cannot fail");
        let idempotency = match placement(kernel, user, client_order_id, known_key, &[&fields])? {
            Placement::Replay(order_id) => return Ok((Outcome::OrderPlaced(order_id), None)),
            Placement::New(idempotency) => idempotency,
        };
        let market = *self.markets.get(&request.market).ok_or(LedgerError::UnknownMarket(request.market))?;
        if !market.trading {
            return Err(LedgerError::MarketHalted(market.id()));
        }
        let perpetual = self.is_perpetual(market.id());
        if request.reduce_only && !perpetual {
            return Err(LedgerError::BadInput("reduce-only orders are for perpetual markets: a spot sell is already limited to what is held".into()));
        }
        if perpetual && request.price.is_none() {
            return Err(LedgerError::BadInput("an order on a perpetual market needs a price (a MARKET order's protection price) to size its margin".into()));
        }
        if request.kind == OrderKind::Market && request.side == Side::Buy && request.price.is_none() {
            return Err(LedgerError::BadInput("a MARKET buy needs a protection price to size its hold".into()));
        }
        if !perpetual && request.trigger.is_some_and(|trigger| trigger.source != TriggerSource::LastTrade) {
            return Err(LedgerError::BadInput("a spot market has no mark price: its stops watch the last price".into()));
        }
        if let Some(expires_at_ms) = request.expires_at_ms {
            if request.kind != OrderKind::Limit || request.time_in_force != TimeInForce::Gtc {
                return Err(LedgerError::BadInput("only a GTC limit order rests, so only one may have an expiry time".into()));
            }
            if expires_at_ms <= at_ms {
                return Err(LedgerError::BadInput("the expiry time has passed by the ledger's clock; choose a later one".into()));
            }
        }
        let order_id = self.counters.next_order;
        let order = NewOrder {
            market: request.market,
            order_id,
            user,
            side: request.side,
            kind: request.kind,
            time_in_force: request.time_in_force,
            post_only: request.post_only,
            price: request.price,
            quantity: request.quantity,
            self_trade: request.self_trade,
        };
        // The same checks matching applies, so that a hold is never taken for an order it would refuse outright.
        let forward = match request.trigger {
            Some(trigger) => {
                let stop = ArmedStop { order, trigger };
                matching_core::rules::check_stop(&market.spec, &stop).map(|()| matching_api::Command::PlaceStop(stop))
            }
            None => matching_core::rules::check_new_order(&market.spec, &order).map(|()| matching_api::Command::Place(order)),
        }
        .map_err(|code| LedgerError::BadInput(reject_text(code).into()))?;
        if self.open_orders_by_user.get(&user).copied().unwrap_or(0) >= limits.open_orders_per_user_max {
            return Err(LedgerError::LimitReached("open_orders_per_user_max".into()));
        }
        if self.orders.len() >= limits.open_orders_max as usize {
            return Err(LedgerError::LimitReached("open_orders_max".into()));
        }
        if perpetual {
            let order = OpenOrder { buy: request.side == Side::Buy, lots: request.quantity, price: request.price.expect("checked above") };
            self.reserve_perpetual(kernel, user, market.id(), order, None, request.reduce_only, at_ms)?;
            self.perpetual_orders.entry((user, market.id())).or_default().insert(order_id);
        } else {
            let (hold_asset, hold) = match request.side {
                Side::Buy => (market.quote, buy_hold(&market, request.price.expect("checked above"), request.quantity)),
                Side::Sell => (market.base, base_amount(&market, request.quantity)),
            };
            kernel
                .hold(
                    order_hold(order_id),
                    available(user, hold_asset),
                    locked(user, hold_asset),
                    hold,
                    TransferCode(api::HOLD),
                    format_compact!("order:{order_id}"),
                    at_ms,
                )
                .map_err(refusal)?;
        }
        self.counters.next_order += 1;
        let record = OrderRecord {
            expires_at_ms: request.expires_at_ms,
            trigger: request.trigger,
            reduce_only: request.reduce_only,
            ..new_record(order, client_order_id, at_ms)
        };
        if let Some(expires_at_ms) = request.expires_at_ms {
            self.expiries.insert((expires_at_ms, order_id));
        }
        self.orders.insert(order_id, record);
        self.index_token_order(market.id(), user, order_id, true);
        *self.open_orders_by_user.entry(user).or_default() += 1;
        self.changes.orders.insert(order_id);
        if let Some((key, fingerprint)) = idempotency {
            kernel.remember(key, fingerprint, Recorded { kind: ORDER_RECORD, id: order_id }).map_err(refusal)?;
        }
        Ok((Outcome::OrderPlaced(order_id), Some(forward)))
    }

    /// Checks an OCO list as matching will, holds its worst case once (a
    /// sell: its base; a buy: the dearer of its two orders) and yields it.
    #[allow(clippy::too_many_arguments)]
    fn place_oco(
        &mut self,
        kernel: &mut Kernel,
        limits: &LedgerLimits,
        user: UserId,
        request: &OcoRequest,
        client_order_id: Option<&str>,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> Result<(Outcome, Forward), LedgerError> {
        let fields = postcard::to_stdvec(request).expect("encoding into a vector cannot fail");
        let idempotency = match placement(kernel, user, client_order_id, known_key, &[b"oco".as_slice(), fields.as_slice()])? {
            Placement::Replay(limit) => return Ok((Outcome::OcoPlaced { limit, stop: limit + 1 }, None)),
            Placement::New(idempotency) => idempotency,
        };
        let market = *self.markets.get(&request.market).ok_or(LedgerError::UnknownMarket(request.market))?;
        if !market.trading {
            return Err(LedgerError::MarketHalted(market.id()));
        }
        if self.is_perpetual(market.id()) {
            return Err(LedgerError::BadInput("OCO lists are not offered on perpetual markets yet; place the limit order and the stop apart".into()));
        }
        let beyond_trigger = match request.side {
            Side::Sell => request.price > request.trigger_price,
            Side::Buy => request.price < request.trigger_price,
        };
        if !beyond_trigger {
            return Err(LedgerError::BadInput("an OCO sell's limit price is above its trigger price, a buy's below".into()));
        }
        let stop_price = match (request.stop_kind, request.side, request.stop_price) {
            (OrderKind::Market, Side::Buy, None) => return Err(LedgerError::BadInput("a stop-market buy needs a protection price to size its hold".into())),
            (OrderKind::Limit, _, None) => return Err(LedgerError::BadInput("a stop-limit order needs its limit price".into())),
            (_, _, price) => price,
        };
        let limit_id = self.counters.next_order;
        let limit = NewOrder {
            market: request.market,
            order_id: limit_id,
            user,
            side: request.side,
            kind: OrderKind::Limit,
            time_in_force: TimeInForce::Gtc,
            post_only: true,
            price: Some(request.price),
            quantity: request.quantity,
            self_trade: request.self_trade,
        };
        let trigger = Trigger { source: TriggerSource::LastTrade, direction: OcoRequest::trigger_direction(request.side), price: request.trigger_price };
        let list = OcoList { limit, stop_order_id: limit_id + 1, stop_kind: request.stop_kind, stop_price, trigger };
        let stop = list.stop();
        matching_core::rules::check_new_order(&market.spec, &limit)
            .and_then(|()| matching_core::rules::check_stop(&market.spec, &stop))
            .map_err(|code| LedgerError::BadInput(reject_text(code).into()))?;
        if self.open_orders_by_user.get(&user).copied().unwrap_or(0) + 2 > limits.open_orders_per_user_max {
            return Err(LedgerError::LimitReached("open_orders_per_user_max".into()));
        }
        if self.orders.len() + 2 > limits.open_orders_max as usize {
            return Err(LedgerError::LimitReached("open_orders_max".into()));
        }
        let (hold_asset, hold) = match request.side {
            Side::Buy => {
                (market.quote, buy_hold(&market, request.price, request.quantity).max(buy_hold(&market, stop_price.expect("checked above"), request.quantity)))
            }
            Side::Sell => (market.base, base_amount(&market, request.quantity)),
        };
        kernel
            .hold(
                order_hold(limit_id),
                available(user, hold_asset),
                locked(user, hold_asset),
                hold,
                TransferCode(api::HOLD),
                format_compact!("order:{limit_id}"),
                at_ms,
            )
            .map_err(refusal)?;
        self.counters.next_order += 2;
        for (order, trigger, other) in [(limit, None, stop.order.order_id), (stop.order, Some(trigger), limit_id)] {
            let record = OrderRecord { trigger, oco_with: Some(other), ..new_record(order, client_order_id, at_ms) };
            self.orders.insert(order.order_id, record);
            self.index_token_order(market.id(), user, order.order_id, true);
            self.changes.orders.insert(order.order_id);
        }
        *self.open_orders_by_user.entry(user).or_default() += 2;
        if let Some((key, fingerprint)) = idempotency {
            kernel.remember(key, fingerprint, Recorded { kind: ORDER_RECORD, id: limit_id }).map_err(refusal)?;
        }
        Ok((Outcome::OcoPlaced { limit: limit_id, stop: limit_id + 1 }, Some(matching_api::Command::PlaceOco(list))))
    }

    fn apply_matching(&mut self, kernel: &mut Kernel, sequence: u64, events: &[Event], at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let expected = self.counters.matching_applied + 1;
        if sequence < expected {
            return Ok(Outcome::MatchingApplied { orders: Vec::new() }); // applied before: exactly once
        }
        if sequence != expected {
            return Err(LedgerError::OutOfSequence { expected, got: sequence });
        }
        // Refused whole, before any of it is applied: nothing changes, and
        // the daemon stops its link to matching with the reason.
        self.check_output(kernel, events).map_err(|reason| LedgerError::MatchingOutputRefused(format!("matching output {sequence}: {reason}")))?;
        self.counters.matching_applied = sequence;
        let mut touched = Vec::new();
        for event in events {
            match *event {
                Event::Accepted { order_id, .. } => {
                    if let Some(record) = self.orders.get_mut(&order_id) {
                        if record.status == OrderStatus::Pending {
                            record.status = OrderStatus::Open;
                            record.updated_ms = at_ms;
                            // Storage and subscribers must see it open, not still pending.
                            self.changes.orders.insert(order_id);
                            touched.push(order_id);
                        }
                    }
                }
                Event::Fill(fill) => {
                    self.settle(kernel, &fill, at_ms);
                    touched.extend([fill.maker_order, fill.taker_order]);
                }
                Event::Cancelled { order_id, .. } => {
                    let expired = self.orders.get(&order_id).is_some_and(|record| record.expiring);
                    let status = if expired { OrderStatus::Expired } else { OrderStatus::Cancelled };
                    self.close_order(kernel, order_id, status, None, at_ms);
                    touched.push(order_id);
                }
                Event::Done { order_id, .. } => {
                    self.close_order(kernel, order_id, OrderStatus::Filled, None, at_ms);
                    touched.push(order_id);
                }
                Event::Rejected { order_id, code, .. } => {
                    // A refused order releases its hold; a refused amend
                    // gives back what was held for it; a refused cancel
                    // leaves the order as it is.
                    match self.orders.get(&order_id) {
                        Some(record) if record.status == OrderStatus::Pending => {
                            self.close_order(kernel, order_id, OrderStatus::Rejected, Some(reject_text(code).to_string()), at_ms);
                            touched.push(order_id);
                        }
                        Some(record) if record.amending.is_some() => {
                            self.amend_refused(kernel, order_id, code, at_ms);
                            touched.push(order_id);
                        }
                        _ => {}
                    }
                }
                Event::Amended { order_id, price, quantity, remaining, .. } => {
                    self.amended(kernel, order_id, price, quantity, remaining, at_ms);
                    touched.push(order_id);
                }
                Event::StopArmed { order_id, .. } => {
                    if let Some(record) = self.orders.get_mut(&order_id) {
                        record.status = OrderStatus::Armed;
                        record.updated_ms = at_ms;
                        self.changes.orders.insert(order_id);
                        touched.push(order_id);
                    }
                }
                // On its way into the book as a new order: Accepted, fills or a rejection follow in the batch.
                Event::StopTriggered { order_id, .. } => {
                    if let Some(record) = self.orders.get_mut(&order_id) {
                        record.status = OrderStatus::Pending;
                        record.triggered_ms = Some(at_ms);
                        record.updated_ms = at_ms;
                        self.changes.orders.insert(order_id);
                        touched.push(order_id);
                    }
                }
                Event::MarketAdded { .. } | Event::MarketRejected { .. } | Event::TradingSet { .. } | Event::MarkSet { .. } => {}
            }
        }
        touched.dedup();
        Ok(Outcome::MatchingApplied { orders: touched })
    }

    /// Whether the ledger can settle `events` as they are: every fill is
    /// between two orders it holds open, of their owners and market and
    /// sides, within each one's unfilled quantity and limit price (as an
    /// amend earlier in the batch left them), priced and charged as the
    /// market says, and covered by their holds; an amend is the one its
    /// owner asked for, leaves open its total less the fills, and fits in
    /// what the hold has left; a stop is armed once, while it waits to be,
    /// fires only when armed and at a price that reaches its trigger, and
    /// trades only once fired; an order closed is its owner's. Unknown
    /// orders in Accepted, Rejected, Cancelled and Done move no money and
    /// pass (a cancel can cross a fill).
    fn check_output(&self, kernel: &Kernel, events: &[Event]) -> Result<(), String> {
        let mut batch: FxHashMap<OrderId, BatchOrder> = FxHashMap::default();
        let mut closed: FxHashSet<OrderId> = FxHashSet::default();
        let mut lists: FxHashMap<OrderId, OrderId> = FxHashMap::default();
        for event in events {
            match *event {
                Event::Fill(fill) => self.check_fill(kernel, &fill, &mut batch, &closed, &mut lists)?,
                Event::Cancelled { order_id, user, .. } | Event::Done { order_id, user, .. } => {
                    if let Some(record) = self.orders.get(&order_id) {
                        if record.order.user != user {
                            return Err(format!("it closes order {order_id} of user {} as user {user}'s", record.order.user));
                        }
                        closed.insert(order_id);
                    }
                }
                Event::Amended { order_id, user, price, quantity, remaining, .. } => {
                    let record =
                        self.open_in_batch(order_id, &closed).ok_or_else(|| format!("an amend of order {order_id}, which the ledger does not hold open"))?;
                    let market = self.markets.get(&record.order.market).ok_or_else(|| format!("an amend in a market the ledger does not have: {event:?}"))?;
                    let order = self.batch_order(kernel, &mut batch, record);
                    if record.order.user != user || record.amending != Some(AmendTerms { price, quantity }) || order.amended {
                        return Err(format!("an amend of order {order_id} that its owner did not ask for: {event:?}"));
                    }
                    if remaining == 0 || order.filled + remaining != quantity {
                        return Err(format!("an amend of order {order_id} that leaves open other than its total less its {} filled: {event:?}", order.filled));
                    }
                    let kept_place = order.price == Some(price) && remaining <= order.quantity - order.filled;
                    let hold = if self.is_perpetual(market.id()) {
                        order.hold_left
                    } else {
                        amended_hold(market, record.order.side, price, remaining, order.hold_left, kept_place)
                    };
                    if hold > order.hold_left {
                        return Err(format!("an amend of order {order_id} that needs {hold} held where {} is left: {event:?}", order.hold_left));
                    }
                    *order = BatchOrder { price: Some(price), quantity, hold_left: hold, amended: true, ..*order };
                }
                Event::StopArmed { order_id, user, .. } => {
                    let record = self
                        .open_in_batch(order_id, &closed)
                        .ok_or_else(|| format!("a stop armed as order {order_id}, which the ledger does not hold open"))?;
                    let order = self.batch_order(kernel, &mut batch, record);
                    if record.order.user != user || record.status != OrderStatus::Pending || order.armed || order.fired {
                        return Err(format!("a stop armed as order {order_id}, which is not a stop of its owner's waiting to be armed: {event:?}"));
                    }
                    order.armed = true;
                }
                Event::StopTriggered { order_id, user, price, .. } => {
                    let record = self
                        .open_in_batch(order_id, &closed)
                        .ok_or_else(|| format!("a stop fired as order {order_id}, which the ledger does not hold open"))?;
                    let order = self.batch_order(kernel, &mut batch, record);
                    let reaches = record.trigger.is_some_and(|trigger| trigger.fires_at(price));
                    if record.order.user != user || !order.armed || !reaches {
                        return Err(format!("a stop fired as order {order_id}, which is not its owner's stop armed with a trigger {price} reaches: {event:?}"));
                    }
                    (order.armed, order.fired) = (false, true);
                    self.claim_list(record, &mut lists)?;
                }
                Event::MarkSet { market, .. } if !self.is_perpetual(market) => {
                    return Err(format!("matching set a mark price on market {market}, but the ledger sends marks to no spot market: {event:?}"));
                }
                Event::MarkSet { .. } => {}
                Event::Accepted { .. } | Event::Rejected { .. } | Event::MarketAdded { .. } | Event::MarketRejected { .. } | Event::TradingSet { .. } => {}
            }
        }
        Ok(())
    }

    fn open_in_batch(&self, id: OrderId, closed: &FxHashSet<OrderId>) -> Option<&OrderRecord> {
        self.orders.get(&id).filter(|_| !closed.contains(&id))
    }

    /// The order as the batch has left it so far, from its record and hold at first.
    /// A perpetual market's order has no hold: its margin is its position's.
    fn batch_order<'a>(&self, kernel: &Kernel, batch: &'a mut FxHashMap<OrderId, BatchOrder>, record: &OrderRecord) -> &'a mut BatchOrder {
        let id = record.order.order_id;
        let perpetual = self.is_perpetual(record.order.market);
        batch.entry(id).or_insert_with(|| BatchOrder {
            filled: record.filled,
            price: record.order.price,
            quantity: record.order.quantity,
            hold_left: if perpetual { Amount::MAX } else { kernel.hold_of(hold_of(record)).map_or(0, |hold| hold.remaining) },
            amended: false,
            armed: record.status == OrderStatus::Armed,
            fired: record.trigger.is_none() || record.triggered_ms.is_some(),
        })
    }

    /// Notes that an order of an OCO list trades or fires, refusing the
    /// other order of the list doing so too: the list's one hold covers
    /// one of them. `lists` has, by the list's hold, the order that did.
    fn claim_list(&self, record: &OrderRecord, lists: &mut FxHashMap<OrderId, OrderId>) -> Result<(), String> {
        let Some(other) = record.oco_with else { return Ok(()) };
        let id = record.order.order_id;
        let went_first = |r: &OrderRecord| r.filled > 0 || r.triggered_ms.is_some();
        let claimed = lists.get(&id.min(other)).copied().or_else(|| {
            if went_first(record) {
                Some(id)
            } else {
                self.orders.get(&other).filter(|r| went_first(r)).map(|_| other)
            }
        });
        if claimed.is_some_and(|by| by != id) {
            return Err(format!("both orders of an OCO list trade: order {id} after order {other}"));
        }
        lists.insert(id.min(other), id);
        Ok(())
    }

    fn check_fill(
        &self,
        kernel: &Kernel,
        fill: &Fill,
        batch: &mut FxHashMap<OrderId, BatchOrder>,
        closed: &FxHashSet<OrderId>,
        lists: &mut FxHashMap<OrderId, OrderId>,
    ) -> Result<(), String> {
        let open = |id: OrderId| self.open_in_batch(id, closed).ok_or_else(|| format!("a fill of order {id}, which the ledger does not hold open: {fill:?}"));
        let (maker, taker) = (open(fill.maker_order)?, open(fill.taker_order)?);
        let market = self.markets.get(&fill.market).ok_or_else(|| format!("a fill in market {}, which the ledger does not have", fill.market))?;
        if fill.maker_order == fill.taker_order || maker.order.market != fill.market || taker.order.market != fill.market {
            return Err(format!("a fill between orders of other markets, or an order with itself: {fill:?}"));
        }
        if maker.order.user != fill.maker_user || taker.order.user != fill.taker_user {
            return Err(format!("a fill that names other owners than the orders' ({} and {}): {fill:?}", maker.order.user, taker.order.user));
        }
        if taker.order.side != fill.taker_side || maker.order.side == fill.taker_side {
            return Err(format!("a fill whose sides are not the orders': {fill:?}"));
        }
        let spec = &market.spec;
        let proceeds = spec.notional_down(fill.price, fill.quantity);
        if fill.quantity == 0 || fill.notional != spec.notional(fill.price, fill.quantity) || fill.notional_rounding != fill.notional - proceeds {
            return Err(format!("a fill whose quantity is zero or whose notional is not price x quantity, rounded: {fill:?}"));
        }
        let fee_max = |rate: u32| matching_core::fee_ceil(rate, spec.notional_divisor(), spec.notional_exact(fill.price, fill.quantity)) + 1;
        if fill.maker_fee > fee_max(spec.maker_fee_ppm) || fill.taker_fee > fee_max(spec.taker_fee_ppm) {
            return Err(format!("a fill that charges more than the market's fee rates: {fill:?}"));
        }
        let seller_fee = if fill.taker_side == Side::Sell { fill.taker_fee } else { fill.maker_fee };
        if seller_fee > proceeds {
            return Err(format!("a fill whose seller's fee exceeds the proceeds: {fill:?}"));
        }
        for (record, fee) in [(maker, fill.maker_fee), (taker, fill.taker_fee)] {
            let id = record.order.order_id;
            self.claim_list(record, lists)?;
            let order = self.batch_order(kernel, batch, record);
            if !order.fired {
                return Err(format!("a fill of order {id}, a stop that has not fired: {fill:?}"));
            }
            let within_limit = match (record.order.side, order.price) {
                (Side::Buy, Some(limit)) => fill.price <= limit,
                (Side::Sell, Some(limit)) => fill.price >= limit,
                (_, None) => true,
            };
            if !within_limit {
                return Err(format!("a fill at {} beyond order {id}'s limit {:?}: {fill:?}", fill.price, order.price));
            }
            let from_hold = match record.order.side {
                Side::Buy => fill.notional as Amount + fee as Amount,
                Side::Sell => base_amount(market, fill.quantity),
            };
            order.filled += fill.quantity;
            if order.filled > order.quantity {
                return Err(format!("fills of order {id} to {} lots, above its {}: {fill:?}", order.filled, order.quantity));
            }
            if from_hold > order.hold_left {
                return Err(format!("a fill that takes {from_hold} from order {id}'s hold, which has {} left: {fill:?}", order.hold_left));
            }
            order.hold_left -= from_hold;
        }
        Ok(())
    }

    /// Matching reported something the ledger cannot settle: a bug in one
    /// of the two. What the batch applied before it stays in memory only:
    /// the invariant check stops the daemon, with this reason, before the
    /// batch's changes reach storage or anyone is answered, and a restart
    /// replays the journal into the same fault rather than settle past it.
    fn fault(&mut self, reason: String) {
        self.fault.get_or_insert(reason);
    }

    /// Five legs at most: the buyer's quote to the seller, the rounding
    /// and the buyer's fee to revenue (from the buyer's hold), the seller's
    /// base to the buyer (from the seller's hold), and the seller's fee out
    /// of the proceeds.
    fn settle(&mut self, kernel: &mut Kernel, fill: &Fill, at_ms: TimestampMs) {
        let (Some(maker), Some(taker)) = (self.orders.get(&fill.maker_order), self.orders.get(&fill.taker_order)) else {
            return self.fault(format!("matching filled an order the ledger does not hold: {fill:?}"));
        };
        let Some(market) = self.markets.get(&maker.order.market).copied() else {
            return self.fault(format!("matching filled an order of a market the ledger does not have: {fill:?}"));
        };
        let (maker_user, taker_user) = (maker.order.user, taker.order.user);
        let (buyer_order, seller_order, buyer, seller, buyer_fee, seller_fee) = match fill.taker_side {
            Side::Buy => (fill.taker_order, fill.maker_order, taker_user, maker_user, fill.taker_fee, fill.maker_fee),
            Side::Sell => (fill.maker_order, fill.taker_order, maker_user, taker_user, fill.maker_fee, fill.taker_fee),
        };
        let (notional, rounding, buyer_fee, seller_fee) =
            (fill.notional as Amount, fill.notional_rounding as Amount, buyer_fee as Amount, seller_fee as Amount);
        if self.is_perpetual(market.id()) {
            return self.settle_perpetual(fill, (buyer_order, seller_order), (buyer, seller), (buyer_fee, seller_fee), kernel, at_ms);
        }
        let base = base_amount(&market, fill.quantity);
        let trade_id = self.counters.next_trade;
        let reference = format_compact!("trade:{trade_id}");
        let (quote_asset, base_asset) = (market.quote, market.base);
        let revenue = house::revenue(quote_asset);
        let quote_paid = [
            Payout { credit: available(seller, quote_asset), amount: notional - rounding, code: TransferCode(api::TRADE) },
            Payout { credit: revenue, amount: rounding, code: TransferCode(api::ROUNDING) },
            Payout { credit: revenue, amount: buyer_fee, code: TransferCode(api::FEE) },
        ];
        let (buyer_hold, seller_hold) = match fill.taker_side {
            Side::Buy => (hold_of(taker), hold_of(maker)),
            Side::Sell => (hold_of(maker), hold_of(taker)),
        };
        if let Err(error) = kernel.capture(buyer_hold, &quote_paid, &reference, at_ms) {
            return self.fault(format!("the buyer's hold does not cover trade {trade_id} ({error}): {fill:?}"));
        }
        let base_paid = [Payout { credit: available(buyer, base_asset), amount: base, code: TransferCode(api::TRADE) }];
        if let Err(error) = kernel.capture(seller_hold, &base_paid, &reference, at_ms) {
            return self.fault(format!("the seller's hold does not cover trade {trade_id} ({error}): {fill:?}"));
        }
        if seller_fee > 0 {
            let fee = Leg { debit: available(seller, quote_asset), credit: revenue, amount: seller_fee, code: TransferCode(api::FEE) };
            if let Err(error) = kernel.transfer(fee, reference.clone(), at_ms) {
                return self.fault(format!("the seller cannot pay the fee of trade {trade_id} ({error}): {fill:?}"));
            }
        }
        self.record_fill(fill, (buyer_order, seller_order), (buyer_fee, seller_fee), at_ms);
    }

    /// The orders' fills and the trade's record.
    fn record_fill(&mut self, fill: &Fill, (buyer_order, seller_order): (OrderId, OrderId), (buyer_fee, seller_fee): (Amount, Amount), at_ms: TimestampMs) {
        let trade_id = self.counters.next_trade;
        self.counters.next_trade += 1;
        let turnover = fill.price as u128 * fill.quantity as u128;
        for (order_id, fee, quote) in [(buyer_order, buyer_fee, fill.notional), (seller_order, seller_fee, fill.notional - fill.notional_rounding)] {
            let record = self.orders.get_mut(&order_id).expect("looked up above");
            record.filled += fill.quantity;
            record.filled_notional += quote;
            record.filled_tick_lots += turnover;
            record.fees_paid += fee;
            record.status = OrderStatus::PartiallyFilled;
            record.updated_ms = at_ms;
            self.changes.orders.insert(order_id);
        }
        let trade = TradeRecord { id: trade_id, fill: *fill, buyer_fee, seller_fee, at_ms };
        self.record_candles(fill.market, &trade);
        self.changes.trades.push(trade);
    }

    /// A fill on a perpetual market: the orders' records first (the
    /// margin they still need counts what is left of them), then the
    /// positions, the price against the mark and the fees
    /// ([`Perpetuals::fill`]), then what that called for.
    fn settle_perpetual(
        &mut self,
        fill: &Fill,
        orders: (OrderId, OrderId),
        (buyer, seller): (UserId, UserId),
        fees: (Amount, Amount),
        kernel: &mut Kernel,
        at_ms: TimestampMs,
    ) {
        // The liquidation book pays no fee: the fund pays only for the price.
        let fees = (if buyer == NETWORK_USER { 0 } else { fees.0 }, if seller == NETWORK_USER { 0 } else { fees.1 });
        self.record_fill(fill, orders, fees, at_ms);
        let party = |user: UserId| if user == NETWORK_USER { Party::Network } else { Party::User(user) };
        let book = PerpetualBook { orders: &self.orders, index: &self.perpetual_orders };
        match self.perpetuals.fill(kernel, fill.market, (party(buyer), party(seller)), fill.quantity, fill.price, fees, &book, at_ms) {
            Ok(risk) => {
                self.after_risk(fill.market, risk, None, at_ms);
            }
            Err(reason) => self.fault(reason),
        }
        for user in [buyer, seller].into_iter().filter(|user| *user != NETWORK_USER) {
            self.cancel_unreducing(user, fill.market);
        }
    }

    /// Folds a trade into its market's candle of every interval.
    fn record_candles(&mut self, market: MarketId, trade: &TradeRecord) {
        for interval in CandleInterval::ALL {
            let candle = Candle::fold(self.candles.get(&(market, interval)).copied(), interval, trade);
            self.candles.insert((market, interval), candle);
            self.changes.candles.insert((market, interval, candle.start_ms), candle);
        }
    }

    /// A market's latest candle of an interval (the one in progress, or the
    /// last with a trade).
    pub fn candle(&self, market: MarketId, interval: CandleInterval) -> Option<&Candle> {
        self.candles.get(&(market, interval))
    }

    /// Releases what is left of the hold and moves the order out of memory.
    fn close_order(&mut self, kernel: &mut Kernel, order_id: OrderId, status: OrderStatus, reason: Option<String>, at_ms: TimestampMs) {
        let Some(mut record) = self.orders.remove(&order_id) else { return };
        if let Some(expires_at_ms) = record.expires_at_ms {
            self.expiries.remove(&(expires_at_ms, order_id));
        }
        let (user, market) = (record.order.user, record.order.market);
        self.index_token_order(market, user, order_id, false);
        let perpetual = self.is_perpetual(market);
        if perpetual {
            if let Some(orders) = self.perpetual_orders.get_mut(&(user, market)) {
                orders.remove(&order_id);
                if orders.is_empty() {
                    self.perpetual_orders.remove(&(user, market));
                }
            }
            self.release_perpetual(kernel, user, market, at_ms);
        }
        // An OCO list's hold stays while its other order is open.
        let list_open = record.oco_with.is_some_and(|other| self.orders.contains_key(&other));
        if !list_open && !perpetual {
            if let Err(error) = kernel.release(hold_of(&record), TransferCode(api::RELEASE), format_compact!("order:{order_id}"), at_ms) {
                return self.fault(format!("order {order_id} closed without its hold: {error}"));
            }
        }
        record.status = status;
        record.reject_reason = reason;
        record.updated_ms = at_ms;
        let user = record.order.user;
        if let Some(count) = self.open_orders_by_user.get_mut(&user) {
            *count -= 1;
            if *count == 0 {
                self.open_orders_by_user.remove(&user);
            }
        }
        self.changes.orders.remove(&order_id);
        self.changes.closed_orders.push(record);
    }
}

impl Spot {
    /// Checks an amend, grows the order's hold to what the amend needs
    /// while it is on the way ([`amend_hold`]), and yields it for matching.
    fn amend_order(
        &mut self,
        kernel: &mut Kernel,
        user: UserId,
        order_id: OrderId,
        terms: AmendTerms,
        at_ms: TimestampMs,
    ) -> Result<matching_api::Command, LedgerError> {
        // Another user's order answers as if it did not exist.
        let record = self.orders.get(&order_id).filter(|record| record.order.user == user).ok_or(LedgerError::NotFound)?;
        if !record.order.may_rest() {
            return Err(LedgerError::BadInput("only a resting (GTC limit) order can be amended".into()));
        }
        if record.trigger.is_some() && record.triggered_ms.is_none() {
            return Err(LedgerError::BadInput("a stop that has not fired is not in the book to amend; cancel it and place another".into()));
        }
        // Its money is in the list's hold, under the limit order's id, even once the list has ended.
        if record.oco_with.is_some() {
            return Err(LedgerError::BadInput("an order of an OCO list cannot be amended; cancel it and place another".into()));
        }
        if record.amending.is_some() {
            return Err(LedgerError::BadInput("an amend of this order is on its way to matching; amend again once it has settled".into()));
        }
        let market = *self.markets.get(&record.order.market).ok_or(LedgerError::UnknownMarket(record.order.market))?;
        if !market.trading {
            return Err(LedgerError::MarketHalted(market.id()));
        }
        matching_core::rules::check_amend(&market.spec, terms.price, terms.quantity).map_err(|code| LedgerError::BadInput(reject_text(code).into()))?;
        if self.is_perpetual(market.id()) {
            // Counted once, at both terms, while the amend is on its way (margin_order).
            let amending = OrderRecord { amending: Some(terms), ..record.clone() };
            if let Some(order) = margin_order(&amending) {
                self.reserve_perpetual(kernel, user, market.id(), order, Some(order_id), amending.reduce_only, at_ms)?;
            }
        } else {
            let hold_left = hold_remaining(kernel, order_id).unwrap_or(0);
            let hold = amend_hold(&market, record, terms, hold_left);
            if hold > hold_left {
                kernel.resize_hold(order_hold(order_id), hold, TransferCode(api::HOLD), format_compact!("order:{order_id}"), at_ms).map_err(refusal)?;
            }
        }
        let record = self.orders.get_mut(&order_id).expect("looked up above");
        record.amending = Some(terms);
        record.amend_refused = None;
        record.updated_ms = at_ms;
        self.changes.orders.insert(order_id);
        Ok(matching_api::Command::Amend { market: market.id(), order_id, user, price: terms.price, quantity: terms.quantity })
    }

    /// Matching took the amend: the order has its new terms, and its hold
    /// what they need ([`amended_hold`]; check_output made sure it has it).
    fn amended(&mut self, kernel: &mut Kernel, order_id: OrderId, price: u64, quantity: u64, remaining: u64, at_ms: TimestampMs) {
        let (Some(record), hold_left) = (self.orders.get_mut(&order_id), hold_remaining(kernel, order_id).unwrap_or(0)) else {
            return self.fault(format!("matching amended order {order_id}, which the ledger does not hold"));
        };
        let Some(market) = self.markets.get(&record.order.market) else {
            return self.fault(format!("matching amended order {order_id} of a market the ledger does not have"));
        };
        let kept_place = record.order.price == Some(price) && remaining <= record.order.quantity - record.filled;
        let hold = amended_hold(market, record.order.side, price, remaining, hold_left, kept_place);
        record.order.price = Some(price);
        record.order.quantity = quantity;
        record.amending = None;
        record.updated_ms = at_ms;
        self.changes.orders.insert(order_id);
        let (user, market) = (record.order.user, record.order.market);
        if self.is_perpetual(market) {
            return self.release_perpetual(kernel, user, market, at_ms);
        }
        if let Err(error) = kernel.resize_hold(order_hold(order_id), hold, TransferCode(api::RELEASE), format_compact!("order:{order_id}"), at_ms) {
            self.fault(format!("order {order_id}'s hold cannot take its amended terms: {error}"));
        }
    }

    /// Matching refused the amend: the order keeps its terms, and its hold
    /// gives back what was added for the amend beyond what they need.
    fn amend_refused(&mut self, kernel: &mut Kernel, order_id: OrderId, code: RejectCode, at_ms: TimestampMs) {
        let hold_left = hold_remaining(kernel, order_id).unwrap_or(0);
        let Some(record) = self.orders.get_mut(&order_id) else { return };
        let Some(market) = self.markets.get(&record.order.market) else { return };
        let (price, open) = (record.order.price.unwrap_or(0), record.order.quantity - record.filled);
        let hold = amended_hold(market, record.order.side, price, open, hold_left, true);
        record.amending = None;
        record.amend_refused = Some(reject_text(code).to_string());
        record.updated_ms = at_ms;
        self.changes.orders.insert(order_id);
        let (user, market) = (record.order.user, record.order.market);
        if self.is_perpetual(market) {
            return self.release_perpetual(kernel, user, market, at_ms);
        }
        if let Err(error) = kernel.resize_hold(order_hold(order_id), hold, TransferCode(api::RELEASE), format_compact!("order:{order_id}"), at_ms) {
            self.fault(format!("order {order_id}'s hold cannot give back its refused amend's: {error}"));
        }
    }

    /// When the next open good-till order expires: the ledger daemon
    /// journals [`Command::ExpireOrders`] once its clock reaches it.
    pub fn next_expiry(&self) -> Option<TimestampMs> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Sends matching the cancel of every open order expiring at or before
    /// `at_ms`, oldest expiry first; their Cancelled ends them EXPIRED.
    fn expire_orders(&mut self, at_ms: TimestampMs) -> Outcome {
        let mut orders = Vec::new();
        while let Some(&(expires_at_ms, order_id)) = self.expiries.first() {
            if expires_at_ms > at_ms {
                break;
            }
            self.expiries.pop_first();
            let Some(record) = self.orders.get_mut(&order_id) else { continue };
            record.expiring = true;
            self.changes.orders.insert(order_id);
            let order = record.order;
            self.forward_more.push(matching_api::Command::Cancel { market: order.market, order_id, user: order.user });
            orders.push(order_id);
        }
        Outcome::ExpiryRequested { orders }
    }
}

/// The open buys on tokens' markets: what each may still bring its owner
/// (the larger quantity while an amend is on its way; an OCO list's two
/// orders once, as only one of them can fill).
impl Incoming for Spot {
    fn incoming(&self, token: AssetId, user: UserId) -> Amount {
        let Some(orders) = self.token_orders.get(&(token, user)) else { return 0 };
        orders
            .iter()
            .filter_map(|id| self.orders.get(id))
            .filter(|record| record.order.side == Side::Buy)
            .filter(|record| !record.oco_with.is_some_and(|other| other < record.order.order_id && self.orders.contains_key(&other)))
            .filter_map(|record| {
                let market = self.markets.get(&record.order.market)?;
                let mut lots = record.order.quantity.saturating_sub(record.filled);
                if let Some(terms) = record.amending {
                    lots = lots.max(terms.quantity.saturating_sub(record.filled));
                }
                Some(base_amount(market, lots))
            })
            .sum()
    }

    fn receivers(&self, token: AssetId) -> Vec<UserId> {
        self.token_orders
            .range((token, 0)..=(token, UserId::MAX))
            .filter(|(_, orders)| orders.iter().filter_map(|id| self.orders.get(id)).any(|record| record.order.side == Side::Buy))
            .map(|((_, user), _)| *user)
            .collect()
    }
}

/// What an open order's hold has left, for tests and reports.
pub fn hold_remaining(kernel: &Kernel, order_id: OrderId) -> Option<Amount> {
    kernel.hold_of(order_hold(order_id)).map(|hold| hold.remaining)
}

/// The names of the spot exchange's storage tables; the ledger daemon's
/// `schema/spot.rs` says what they hold.
pub mod tables {
    pub const MARKETS: &str = "spot.markets";
    pub const ORDERS: &str = "spot.orders";
    pub const OPEN_ORDERS: &str = "spot.open_orders";
    pub const ORDERS_BY_USER: &str = "spot.orders_by_user";
    pub const TRADES: &str = "spot.trades";
    pub const TRADES_BY_MARKET: &str = "spot.trades_by_market";
    pub const TRADES_BY_USER: &str = "spot.trades_by_user";
    pub const CANDLES: &str = "spot.candles";
}
