//! Many markets, one book each, behind one `execute` entry point; plus
//! snapshots and the state hash. Generic over the book so that the reference
//! and the fast book run behind exactly the same dispatch and validation.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::book::OrderBook;
use crate::rules;
use crate::stops::StopBook;
use crate::types::{
    ArmedStop, BookLimits, CancelReason, Command, EngineLimits, EngineSnapshot, Event, MarketId, MarketSnapshot, MarketSpec, NewOrder, OcoLink, OcoList,
    OrderId, OrderKind, PriceTicks, RejectCode, Side, TimeInForce, TriggerSource, UserId,
};

struct Market<B> {
    book: B,
    trading: bool,
    /// The last trade's price, the centre of the price band and what most stops watch.
    last_price: Option<PriceTicks>,
    /// The mark price the ledger last set (perpetual markets), which
    /// `mark_stops` watch; trades never move it.
    mark_price: Option<PriceTicks>,
    stops: StopBook,
    mark_stops: StopBook,
    /// OCO lists with both orders open, under each order's id.
    lists: FxHashMap<OrderId, OcoLink>,
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
        match self.check_place(order) {
            Ok(()) => {
                let from = out.len();
                self.book.place(order, out);
                self.note_trades(out, from);
            }
            Err(code) => out.push(Event::Rejected { market: order.market, order_id: order.order_id, user: order.user, code }),
        }
    }

    /// The checks a new order passes before the book sees it: trading, the
    /// spec's rules, an id not armed as a stop, a limit price within the band.
    #[inline]
    fn check_place(&self, order: &NewOrder) -> Result<(), RejectCode> {
        let checked = if self.trading { rules::check_new_order(self.book.spec(), order) } else { Err(RejectCode::MarketClosed) };
        let checked = checked.and_then(|()| if self.stop_armed(order.order_id) { Err(RejectCode::DuplicateOrderId) } else { Ok(()) });
        // Bands bound limit prices; a market order's protection price is a bound, not a price.
        checked.and_then(|()| match (order.kind, order.price) {
            (OrderKind::Limit, Some(price)) if !self.within_band(order.side, price) => Err(RejectCode::PriceOutOfBand),
            _ => Ok(()),
        })
    }

    /// Whether a stop of either source is armed under `order_id`.
    #[inline]
    fn stop_armed(&self, order_id: OrderId) -> bool {
        (!self.stops.is_empty() && self.stops.contains(order_id)) || (!self.mark_stops.is_empty() && self.mark_stops.contains(order_id))
    }

    /// Disarms `user`'s stop `order_id`, whichever price it watches.
    fn disarm(&mut self, order_id: OrderId, user: UserId) -> Option<ArmedStop> {
        self.stops.cancel(order_id, user).or_else(|| if self.mark_stops.is_empty() { None } else { self.mark_stops.cancel(order_id, user) })
    }

    /// Rests an OCO list's limit order and arms its stop, or refuses both
    /// with the first refusal's code. The limit order is post-only: it cannot
    /// trade as it arrives, so neither leg has traded when both are open.
    fn place_oco(&mut self, list: &OcoList, limits: &BookLimits, out: &mut Vec<Event>) {
        let (limit, stop) = (&list.limit, list.stop());
        let reject = |code, out: &mut Vec<Event>| {
            for order in [limit, &stop.order] {
                out.push(Event::Rejected { market: order.market, order_id: order.order_id, user: order.user, code });
            }
        };
        let shape = limit.kind == OrderKind::Limit && limit.time_in_force == TimeInForce::Gtc && limit.post_only;
        let checked = if !shape {
            Err(RejectCode::InvalidOrder)
        } else if list.stop_order_id == limit.order_id || self.book.contains(limit.order_id) {
            Err(RejectCode::DuplicateOrderId)
        } else {
            self.check_arm(&stop, limits).and_then(|()| self.check_place(limit))
        };
        if let Err(code) = checked {
            return reject(code, out);
        }
        let from = out.len();
        self.book.place(limit, out);
        let refused = out[from..].iter().find_map(|event| match *event {
            Event::Rejected { code, .. } => Some(code),
            _ => None,
        });
        if let Some(code) = refused {
            // The book refused the limit order (it would take, or a limit): the stop goes with it.
            return out.push(Event::Rejected { market: stop.order.market, order_id: stop.order.order_id, user: stop.order.user, code });
        }
        self.stops_of(stop.trigger.source).arm(stop);
        out.push(Event::StopArmed { market: stop.order.market, order_id: stop.order.order_id, user: stop.order.user });
        let link = OcoLink { limit: limit.order_id, stop: stop.order.order_id };
        self.lists.insert(link.limit, link);
        self.lists.insert(link.stop, link);
    }

    /// Ends the other order of every OCO list one of whose orders traded
    /// or ended in `out[from..]`: a fill or a cancel of the limit order
    /// disarms the stop, a cancel of the stop takes the limit order off
    /// the book. Each list is unlinked as it ends, so what this adds
    /// triggers nothing more.
    #[inline]
    fn end_lists(&mut self, out: &mut Vec<Event>, from: usize) {
        if self.lists.is_empty() {
            return;
        }
        let mut index = from;
        while index < out.len() {
            let touched = match out[index] {
                Event::Fill(fill) => [Some((fill.maker_order, fill.maker_user)), Some((fill.taker_order, fill.taker_user))],
                Event::Cancelled { order_id, user, .. } | Event::Done { order_id, user, .. } => [Some((order_id, user)), None],
                _ => [None, None],
            };
            for (order_id, user) in touched.into_iter().flatten() {
                if let Some(link) = self.lists.get(&order_id).copied() {
                    self.unlink(link);
                    self.end_other(if order_id == link.limit { link.stop } else { link.limit }, user, out);
                }
            }
            index += 1;
        }
    }

    fn unlink(&mut self, link: OcoLink) {
        self.lists.remove(&link.limit);
        self.lists.remove(&link.stop);
    }

    /// Takes the other order of an ended list (the same user's) off the
    /// stop book or the book.
    fn end_other(&mut self, order_id: OrderId, user: UserId, out: &mut Vec<Event>) {
        if let Some(stop) = self.disarm(order_id, user) {
            return out.push(disarmed(&stop, CancelReason::OcoOther));
        }
        if self.book.contains(order_id) {
            let from = out.len();
            self.book.cancel(order_id, user, out);
            // The book cancels it as its owner would; say why.
            if let Some(Event::Cancelled { reason, .. }) = out[from..].first_mut() {
                *reason = CancelReason::OcoOther;
            }
        }
    }

    /// Places every stop the last trade price or the mark fires, one by
    /// one: each one's trades move the last price that the next is measured
    /// by, so those watching the last trade go first; the mark does not
    /// move here. Bounded by the armed stops, each of which fires once.
    #[inline]
    fn fire_stops(&mut self, out: &mut Vec<Event>) {
        // A halted market keeps its stops (a fired one could not be
        // placed): a mark set meanwhile fires them when trading resumes.
        if !self.trading {
            return;
        }
        loop {
            let fired = self.last_price.and_then(|price| Some((self.stops.take_fired(price)?, price)));
            let fired = fired.or_else(|| {
                let price = self.mark_price.filter(|_| !self.mark_stops.is_empty())?;
                Some((self.mark_stops.take_fired(price)?, price))
            });
            let Some((stop, price)) = fired else { break };
            let order = stop.order;
            out.push(Event::StopTriggered { market: order.market, order_id: order.order_id, user: order.user, price });
            if let Some(link) = (!self.lists.is_empty()).then(|| self.lists.get(&order.order_id).copied()).flatten() {
                // Its list's limit order leaves before the stop's order can trade.
                self.unlink(link);
                self.end_other(link.limit, order.user, out);
            }
            self.place(&order, out);
        }
    }

    fn arm(&mut self, stop: &ArmedStop, limits: &BookLimits) -> Result<(), RejectCode> {
        self.check_arm(stop, limits)?;
        self.stops_of(stop.trigger.source).arm(*stop);
        Ok(())
    }

    /// The price a stop of `source` watches.
    fn watched(&self, source: TriggerSource) -> Option<PriceTicks> {
        match source {
            TriggerSource::LastTrade => self.last_price,
            TriggerSource::Mark => self.mark_price,
        }
    }

    /// Every armed stop: those on the last trade, then those on the mark,
    /// each oldest first.
    fn armed(&self) -> Vec<ArmedStop> {
        let mut stops = self.stops.armed();
        stops.extend(self.mark_stops.armed());
        stops
    }

    fn stops_of(&mut self, source: TriggerSource) -> &mut StopBook {
        match source {
            TriggerSource::LastTrade => &mut self.stops,
            TriggerSource::Mark => &mut self.mark_stops,
        }
    }

    fn check_arm(&self, stop: &ArmedStop, limits: &BookLimits) -> Result<(), RejectCode> {
        let (order, spec) = (&stop.order, self.book.spec());
        if !self.trading {
            return Err(RejectCode::MarketClosed);
        }
        rules::check_stop(spec, stop)?;
        if self.stop_armed(order.order_id) || self.book.contains(order.order_id) {
            return Err(RejectCode::DuplicateOrderId);
        }
        if self.stops.len() + self.mark_stops.len() >= limits.resting_orders_max as usize {
            return Err(RejectCode::BookFull);
        }
        if self.stops.user_count(order.user) + self.mark_stops.user_count(order.user) >= limits.orders_per_user_max {
            return Err(RejectCode::UserOrderLimit);
        }
        if self.watched(stop.trigger.source).is_some_and(|price| stop.trigger.fires_at(price)) {
            return Err(RejectCode::WouldTriggerNow);
        }
        Ok(())
    }

    /// Remembers the last price among the fills from `out[from..]`, and
    /// ends the OCO lists they touched.
    #[inline]
    fn note_trades(&mut self, out: &mut Vec<Event>, from: usize) {
        if let Some(price) = out[from..].iter().rev().find_map(|event| if let Event::Fill(fill) = event { Some(fill.price) } else { None }) {
            self.last_price = Some(price);
        }
        self.end_lists(out, from);
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
            return unknown_market(command, out);
        };
        match *command {
            Command::AddMarket(_) => unreachable!("handled above"),
            Command::SetTrading { trading, .. } => {
                market.trading = trading;
                out.push(Event::TradingSet { market: market_id, trading });
                // Marks set while halted fired nothing: what they reach fires now.
                market.fire_stops(out);
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
            Command::PlaceOco(ref list) => market.place_oco(list, &self.limits.book, out),
            Command::SetMark { price, .. } => {
                if price == 0 || price > market.book.spec().price_ticks_max {
                    return out.push(Event::MarketRejected { market: market_id, code: RejectCode::InvalidPrice });
                }
                market.mark_price = Some(price);
                market.fire_stops(out);
                out.push(Event::MarkSet { market: market_id, price });
            }
            Command::Cancel { order_id, user, .. } => {
                let from = out.len();
                match market.disarm(order_id, user) {
                    Some(stop) => out.push(disarmed(&stop, CancelReason::User)),
                    None => market.book.cancel(order_id, user, out),
                }
                market.end_lists(out, from);
            }
            Command::CancelAll { user, .. } => {
                let from = out.len();
                market.book.cancel_all(user, out);
                for order_id in market.stops.of_user(user).into_iter().chain(market.mark_stops.of_user(user)) {
                    let stop = market.disarm(order_id, user).expect("listed just now");
                    out.push(disarmed(&stop, CancelReason::User));
                }
                market.end_lists(out, from);
            }
            Command::Amend { order_id, user, price, quantity, .. } => {
                let checked = if market.trading { rules::check_amend(market.book.spec(), price, quantity) } else { Err(RejectCode::MarketClosed) };
                let checked = checked.and_then(|()| match market.book.side_of(order_id, user) {
                    Some(side) if !market.within_band(side, price) => Err(RejectCode::PriceOutOfBand),
                    _ => Ok(()),
                });
                // A list's two orders stay the same quantity: its limit order is not amended.
                let checked =
                    checked
                        .and_then(|()| if !market.lists.is_empty() && market.lists.contains_key(&order_id) { Err(RejectCode::InvalidOrder) } else { Ok(()) });
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
        self.markets[index] = Some(Market {
            book: B::new(spec, self.limits.book),
            trading: true,
            last_price: None,
            mark_price: None,
            stops: StopBook::default(),
            mark_stops: StopBook::default(),
            lists: FxHashMap::default(),
        });
        out.push(Event::MarketAdded { market: spec.id });
    }

    fn market(&self, id: MarketId) -> Option<&Market<B>> {
        self.markets.get(id as usize).and_then(Option::as_ref)
    }

    pub fn book(&self, id: MarketId) -> Option<&B> {
        self.market(id).map(|m| &m.book)
    }

    /// A market's armed stops, oldest first: those watching the last
    /// trade, then those watching the mark.
    pub fn armed_stops(&self, id: MarketId) -> Vec<ArmedStop> {
        self.market(id).map(Market::armed).unwrap_or_default()
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
                    mark_price: m.mark_price,
                    orders: m.book.resting_orders(),
                    stops: m.armed(),
                    lists: {
                        let mut lists: Vec<OcoLink> = m.lists.iter().filter(|(id, link)| **id == link.limit).map(|(_, link)| *link).collect();
                        lists.sort_unstable_by_key(|link| link.limit);
                        lists
                    },
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
            if market.mark_price.is_some_and(|price| price == 0 || price > slot.book.spec().price_ticks_max) {
                return Err(invalid("the mark price is out of range"));
            }
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
            (slot.trading, slot.last_price, slot.mark_price) = (true, None, None);
            for stop in &market.stops {
                if stop.order.market != market.spec.id || slot.arm(stop, &limits.book).is_err() {
                    return Err(invalid("a stop is out of range, a duplicate, or over the limits"));
                }
            }
            (slot.trading, slot.last_price, slot.mark_price) = (trading, last_price, market.mark_price);
            // Those on the last trade first, as a snapshot lists them; on a
            // trading market none that its price fires (a halted one may
            // keep a stop the mark reached while it was halted).
            if market.stops.windows(2).any(|pair| pair[0].trigger.source == TriggerSource::Mark && pair[1].trigger.source == TriggerSource::LastTrade) {
                return Err(invalid("stops on the mark are listed before stops on the last trade"));
            }
            if trading && market.stops.iter().any(|stop| slot.watched(stop.trigger.source).is_some_and(|price| stop.trigger.fires_at(price))) {
                return Err(invalid("a stop its watched price already fires is armed on a trading market"));
            }
            let (resting, armed): (FxHashMap<OrderId, _>, FxHashMap<OrderId, _>) = if market.lists.is_empty() {
                Default::default()
            } else {
                (market.orders.iter().map(|o| (o.order_id, o)).collect(), market.stops.iter().map(|s| (s.order.order_id, &s.order)).collect())
            };
            for (index, link) in market.lists.iter().enumerate() {
                // A list's limit order has not traded: its first fill ends the list.
                let paired = matches!((resting.get(&link.limit), armed.get(&link.stop)),
                    (Some(limit), Some(stop)) if stop.user == limit.user && stop.side == limit.side && limit.filled == 0
                        && limit.remaining == stop.quantity && limit.post_only);
                let canonical = index == 0 || market.lists[index - 1].limit < link.limit;
                if !paired || !canonical || slot.lists.contains_key(&link.limit) || slot.lists.contains_key(&link.stop) {
                    return Err(invalid("an OCO list is not a resting order and an armed stop of one user and side, or not in canonical order"));
                }
                slot.lists.insert(link.limit, *link);
                slot.lists.insert(link.stop, *link);
            }
        }
        Ok(engine)
    }
}

/// A stop cancelled before it fired: nothing of it traded.
fn disarmed(stop: &ArmedStop, reason: CancelReason) -> Event {
    let order = &stop.order;
    Event::Cancelled { market: order.market, order_id: order.order_id, user: order.user, side: order.side, remaining: order.quantity, reason }
}

fn unknown_market(command: &Command, out: &mut Vec<Event>) {
    let market = command.market();
    let rejected = |order_id, user| Event::Rejected { market, order_id, user, code: RejectCode::UnknownMarket };
    let event = match *command {
        Command::Place(ref o) | Command::PlaceStop(ArmedStop { order: ref o, .. }) => rejected(o.order_id, o.user),
        Command::PlaceOco(ref list) => {
            out.push(rejected(list.limit.order_id, list.limit.user));
            rejected(list.stop_order_id, list.limit.user)
        }
        Command::Cancel { order_id, user, .. } | Command::Amend { order_id, user, .. } => rejected(order_id, user),
        Command::CancelAll { user, .. } => rejected(0, user),
        Command::AddMarket(_) | Command::SetTrading { .. } | Command::SetMark { .. } => Event::MarketRejected { market, code: RejectCode::UnknownMarket },
    };
    out.push(event);
}
