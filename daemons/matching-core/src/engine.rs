//! Many markets, one book each, behind one `execute` entry point; plus
//! snapshots and the state hash. Generic over the book so that the reference
//! and the fast book run behind exactly the same dispatch and validation.

use serde::{Deserialize, Serialize};

use crate::book::OrderBook;
use crate::rules;
use crate::stops::StopBook;
use crate::types::{
    ArmedStop, CancelReason, Command, EngineLimits, EngineSnapshot, Event, MarketId, MarketSnapshot, MarketSpec, NewOrder, OrderKind, PriceTicks, RejectCode,
    Side,
};

struct Market<B> {
    book: B,
    trading: bool,
    /// The last trade's price, the centre of the price band and what stops watch.
    last_price: Option<PriceTicks>,
    stops: StopBook,
}

impl<B: OrderBook> Market<B> {
    /// Whether a limit price on `side` is within the market's price band:
    /// measured from the last trade, before any from the best opposite
    /// price; with neither, any price is.
    #[inline]
    fn within_band(&self, side: Side, price: PriceTicks) -> bool {
        let spec = self.book.spec();
        if spec.price_band_ppm == 0 {
            return true;
        }
        self.last_price.or_else(|| self.book.best_price(side.opposite())).is_none_or(|reference| spec.within_band(price, reference))
    }

    /// Places an order that passed the engine's checks or a fired stop's,
    /// then fires the stops its trades reach.
    #[inline]
    fn place(&mut self, order: &NewOrder, out: &mut Vec<Event>) {
        let checked = if self.trading { rules::check_new_order(self.book.spec(), order) } else { Err(RejectCode::MarketClosed) };
        let checked =
            checked.and_then(|()| if !self.stops.is_empty() && self.stops.contains(order.order_id) { Err(RejectCode::DuplicateOrderId) } else { Ok(()) });
        // Bands bound limit prices; a market order's protection price is a bound, not a price.
        let checked = checked.and_then(|()| match (order.kind, order.price) {
            (OrderKind::Limit, Some(price)) if !self.within_band(order.side, price) => Err(RejectCode::PriceOutOfBand),
            _ => Ok(()),
        });
        match checked {
            Ok(()) => {
                let from = out.len();
                self.book.place(order, out);
                self.note_trades(out, from);
            }
            Err(code) => out.push(Event::Rejected { market: order.market, order_id: order.order_id, user: order.user, code }),
        }
    }

    /// Places every stop the last trade price fires, one by one: each one's
    /// trades move the price that the next is measured by. Bounded by the
    /// armed stops, each of which fires once.
    #[inline]
    fn fire_stops(&mut self, out: &mut Vec<Event>) {
        while let Some(price) = self.last_price {
            let Some(stop) = self.stops.take_fired(price) else { break };
            let order = stop.order;
            out.push(Event::StopTriggered { market: order.market, order_id: order.order_id, user: order.user, price });
            self.place(&order, out);
        }
    }

    fn arm(&mut self, stop: &ArmedStop, limits: &crate::types::BookLimits) -> Result<(), RejectCode> {
        let (order, spec) = (&stop.order, self.book.spec());
        if !self.trading {
            return Err(RejectCode::MarketClosed);
        }
        rules::check_stop(spec, stop)?;
        if self.stops.contains(order.order_id) || self.book.contains(order.order_id) {
            return Err(RejectCode::DuplicateOrderId);
        }
        if self.stops.len() >= limits.resting_orders_max as usize {
            return Err(RejectCode::BookFull);
        }
        if self.stops.user_count(order.user) >= limits.orders_per_user_max {
            return Err(RejectCode::UserOrderLimit);
        }
        if self.last_price.is_some_and(|price| stop.trigger.fires_at(price)) {
            return Err(RejectCode::WouldTriggerNow);
        }
        self.stops.arm(*stop);
        Ok(())
    }

    /// Remembers the last price among the fills from `out[from..]`.
    #[inline]
    fn note_trades(&mut self, out: &[Event], from: usize) {
        if let Some(price) = out[from..].iter().rev().find_map(|event| if let Event::Fill(fill) = event { Some(fill.price) } else { None }) {
            self.last_price = Some(price);
        }
    }
}

pub struct Engine<B: OrderBook> {
    limits: EngineLimits,
    /// Indexed by market id; ids are below `limits.markets_max`.
    markets: Vec<Option<Market<B>>>,
}

/// blake3 of the encoded snapshot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateHash(pub [u8; 32]);

impl std::fmt::Debug for StateHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Display for StateHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot bytes do not decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("snapshot market {market}: {reason}")]
    Invalid { market: MarketId, reason: &'static str },
}

/// The snapshot's bytes: what snapshot files hold and the state hash hashes.
pub fn encode_snapshot(snapshot: &EngineSnapshot) -> Vec<u8> {
    postcard::to_stdvec(snapshot).expect("encoding into a vector cannot fail")
}

pub fn decode_snapshot(bytes: &[u8]) -> Result<EngineSnapshot, SnapshotError> {
    Ok(postcard::from_bytes(bytes)?)
}

pub fn snapshot_hash(snapshot: &EngineSnapshot) -> StateHash {
    StateHash(*blake3::hash(&encode_snapshot(snapshot)).as_bytes())
}

impl<B: OrderBook> Engine<B> {
    pub fn new(limits: EngineLimits) -> Self {
        Engine { limits, markets: Vec::new() }
    }

    pub fn limits(&self) -> &EngineLimits {
        &self.limits
    }

    /// Applies one command and appends its events to `out`. Never panics on
    /// any command: every refusal is a `Rejected` or `MarketRejected` event.
    #[inline]
    pub fn execute(&mut self, command: &Command, out: &mut Vec<Event>) {
        let market_id = command.market();
        if let Command::AddMarket(spec) = command {
            return self.add_market(*spec, out);
        }
        let Some(market) = self.markets.get_mut(market_id as usize).and_then(Option::as_mut) else {
            return out.push(unknown_market(command));
        };
        match *command {
            Command::AddMarket(_) => unreachable!("handled above"),
            Command::SetTrading { trading, .. } => {
                market.trading = trading;
                out.push(Event::TradingSet { market: market_id, trading });
            }
            Command::Place(ref order) => {
                market.place(order, out);
                market.fire_stops(out);
            }
            Command::PlaceStop(ref stop) => {
                let order = &stop.order;
                match market.arm(stop, &self.limits.book) {
                    Ok(()) => out.push(Event::StopArmed { market: market_id, order_id: order.order_id, user: order.user }),
                    Err(code) => out.push(Event::Rejected { market: market_id, order_id: order.order_id, user: order.user, code }),
                }
            }
            Command::Cancel { order_id, user, .. } => match market.stops.cancel(order_id, user) {
                Some(stop) => out.push(disarmed(&stop)),
                None => market.book.cancel(order_id, user, out),
            },
            Command::CancelAll { user, .. } => {
                market.book.cancel_all(user, out);
                for order_id in market.stops.of_user(user) {
                    let stop = market.stops.cancel(order_id, user).expect("listed just now");
                    out.push(disarmed(&stop));
                }
            }
            Command::Amend { order_id, user, price, quantity, .. } => {
                let checked = if market.trading { rules::check_amend(market.book.spec(), price, quantity) } else { Err(RejectCode::MarketClosed) };
                let checked = checked.and_then(|()| match market.book.side_of(order_id, user) {
                    Some(side) if !market.within_band(side, price) => Err(RejectCode::PriceOutOfBand),
                    _ => Ok(()),
                });
                match checked {
                    Ok(()) => {
                        let from = out.len();
                        market.book.amend(order_id, user, price, quantity, out);
                        market.note_trades(out, from);
                        market.fire_stops(out);
                    }
                    Err(code) => out.push(Event::Rejected { market: market_id, order_id, user, code }),
                }
            }
        }
    }

    fn add_market(&mut self, spec: MarketSpec, out: &mut Vec<Event>) {
        let reject = |code| Event::MarketRejected { market: spec.id, code };
        if spec.id >= self.limits.markets_max {
            return out.push(reject(RejectCode::MarketLimit));
        }
        if self.market(spec.id).is_some() {
            return out.push(reject(RejectCode::MarketExists));
        }
        if let Err(code) = spec.validate() {
            return out.push(reject(code));
        }
        let index = spec.id as usize;
        if self.markets.len() <= index {
            self.markets.resize_with(index + 1, || None);
        }
        self.markets[index] = Some(Market { book: B::new(spec, self.limits.book), trading: true, last_price: None, stops: StopBook::default() });
        out.push(Event::MarketAdded { market: spec.id });
    }

    fn market(&self, id: MarketId) -> Option<&Market<B>> {
        self.markets.get(id as usize).and_then(Option::as_ref)
    }

    pub fn book(&self, id: MarketId) -> Option<&B> {
        self.market(id).map(|m| &m.book)
    }

    /// A market's armed stops, oldest first.
    pub fn armed_stops(&self, id: MarketId) -> Vec<ArmedStop> {
        self.market(id).map(|m| m.stops.armed()).unwrap_or_default()
    }

    pub fn is_trading(&self, id: MarketId) -> Option<bool> {
        self.market(id).map(|m| m.trading)
    }

    pub fn market_ids(&self) -> impl Iterator<Item = MarketId> + '_ {
        self.markets.iter().flatten().map(|m| m.book.spec().id)
    }

    pub fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            markets: self
                .markets
                .iter()
                .flatten()
                .map(|m| MarketSnapshot {
                    spec: *m.book.spec(),
                    trading: m.trading,
                    last_price: m.last_price,
                    orders: m.book.resting_orders(),
                    stops: m.stops.armed(),
                })
                .collect(),
        }
    }

    pub fn state_hash(&self) -> StateHash {
        snapshot_hash(&self.snapshot())
    }

    /// Rebuilds an engine from a snapshot, refusing one that is not in
    /// canonical order or breaks the market's bounds (a damaged or foreign file).
    pub fn restore(limits: EngineLimits, snapshot: &EngineSnapshot) -> Result<Self, SnapshotError> {
        let mut engine = Engine::<B>::new(limits);
        let mut events = Vec::new();
        for market in &snapshot.markets {
            let invalid = |reason| SnapshotError::Invalid { market: market.spec.id, reason };
            engine.add_market(market.spec, &mut events);
            if !matches!(events.pop(), Some(Event::MarketAdded { .. })) {
                return Err(invalid("market spec refused (duplicate id, over markets_max or out of range)"));
            }
            let slot = engine.markets[market.spec.id as usize].as_mut().expect("just added");
            slot.trading = market.trading;
            if market.last_price.is_some_and(|price| price == 0 || price > slot.book.spec().price_ticks_max) {
                return Err(invalid("the last trade price is out of range"));
            }
            slot.last_price = market.last_price;
            let mut ids = rustc_hash::FxHashSet::default();
            for order in &market.orders {
                if !ids.insert(order.order_id) {
                    return Err(invalid("an order id appears twice"));
                }
                let spec = slot.book.spec();
                let total = order.remaining.checked_add(order.filled);
                if order.remaining == 0 || total.is_none_or(|total| total > spec.quantity_lots_max) || order.price == 0 || order.price > spec.price_ticks_max {
                    return Err(invalid("an order's price or quantity is out of range"));
                }
                slot.book.restore_resting(order);
            }
            if slot.book.resting_orders() != market.orders {
                return Err(invalid("orders are not in canonical order"));
            }
            // Armed as they were; the trading flag and the last price must
            // not refuse them here (a halted market keeps its stops).
            let (trading, last_price) = (slot.trading, slot.last_price);
            (slot.trading, slot.last_price) = (true, None);
            for stop in &market.stops {
                if stop.order.market != market.spec.id || slot.arm(stop, &limits.book).is_err() {
                    return Err(invalid("a stop is out of range, a duplicate, or over the limits"));
                }
            }
            (slot.trading, slot.last_price) = (trading, last_price);
        }
        Ok(engine)
    }
}

/// A stop cancelled before it fired: nothing of it traded.
fn disarmed(stop: &ArmedStop) -> Event {
    let order = &stop.order;
    Event::Cancelled {
        market: order.market,
        order_id: order.order_id,
        user: order.user,
        side: order.side,
        remaining: order.quantity,
        reason: CancelReason::User,
    }
}

fn unknown_market(command: &Command) -> Event {
    let market = command.market();
    match *command {
        Command::Place(ref o) | Command::PlaceStop(ArmedStop { order: ref o, .. }) => {
            Event::Rejected { market, order_id: o.order_id, user: o.user, code: RejectCode::UnknownMarket }
        }
        Command::Cancel { order_id, user, .. } | Command::Amend { order_id, user, .. } => {
            Event::Rejected { market, order_id, user, code: RejectCode::UnknownMarket }
        }
        Command::CancelAll { user, .. } => Event::Rejected { market, order_id: 0, user, code: RejectCode::UnknownMarket },
        Command::AddMarket(_) | Command::SetTrading { .. } => Event::MarketRejected { market, code: RejectCode::UnknownMarket },
    }
}
