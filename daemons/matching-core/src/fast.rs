//! The fast book.
//!
//! - Orders live in a slab (`nodes`) and are chained into one FIFO list per
//!   price level by slab index; freed slots are reused, so steady-state
//!   operation allocates nothing.
//! - Each side's levels are a vector sorted so that the best price is the
//!   *last* element. Almost all activity is near the top of the book, so
//!   taking the best level is `pop()`, and inserting or removing a level near
//!   the top moves only the few levels above it.
//! - An order id index (`FxHashMap`) finds an order's slot for cancel and amend.
//!
//! It must emit exactly the events the reference book emits, in the same order.

use rustc_hash::FxHashMap;

use crate::book::OrderBook;
use crate::rules;
use crate::types::{
    fee_increment, BookLimits, CancelReason, Event, Fill, MarketSpec, NewOrder, OrderId, PriceLevel, PriceTicks, QuantityLots, RejectCode, RestingOrder,
    SelfTradePrevention, Side, UserId,
};

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Node {
    order: RestingOrder,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy, Debug)]
struct Level {
    price: PriceTicks,
    head: u32,
    tail: u32,
    quantity: QuantityLots,
    orders: u32,
}

pub struct FastBook {
    spec: MarketSpec,
    limits: BookLimits,
    nodes: Vec<Node>,
    free: Vec<u32>,
    index: FxHashMap<OrderId, u32>,
    open_orders_by_user: FxHashMap<UserId, u32>,
    /// Ascending by price: best bid last.
    bids: Vec<Level>,
    /// Descending by price: best ask last.
    asks: Vec<Level>,
}

/// Where a price's level is, or would be inserted, in a side's vector.
#[inline]
fn level_position(levels: &[Level], side: Side, price: PriceTicks) -> Result<usize, usize> {
    // Most lookups are for prices near the top, i.e. near the end: probe a few
    // levels from the end before the binary search.
    let len = levels.len();
    let is_worse = |level_price: PriceTicks| match side {
        Side::Buy => level_price < price,
        Side::Sell => level_price > price,
    };
    for i in (len.saturating_sub(4)..len).rev() {
        let level_price = levels[i].price;
        if level_price == price {
            return Ok(i);
        }
        if is_worse(level_price) {
            return Err(i + 1);
        }
    }
    let head = &levels[..len.saturating_sub(4)];
    match side {
        Side::Buy => head.binary_search_by(|l| l.price.cmp(&price)),
        Side::Sell => head.binary_search_by(|l| price.cmp(&l.price)),
    }
}

impl FastBook {
    #[inline]
    fn levels_mut(&mut self, side: Side) -> &mut Vec<Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    #[inline]
    fn levels(&self, side: Side) -> &Vec<Level> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn user_open_orders(&self, user: UserId) -> u32 {
        self.open_orders_by_user.get(&user).copied().unwrap_or(0)
    }

    fn would_cross(&self, side: Side, limit: PriceTicks) -> bool {
        self.levels(side.opposite()).last().is_some_and(|best| side.crosses(limit, best.price))
    }

    /// Adds a new resting order: a slot, the indexes, and the back of its level.
    fn insert(&mut self, order: RestingOrder) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize].order = order;
                slot
            }
            None => {
                self.nodes.push(Node { order, prev: NIL, next: NIL });
                (self.nodes.len() - 1) as u32
            }
        };
        self.index.insert(order.order_id, slot);
        *self.open_orders_by_user.entry(order.user).or_insert(0) += 1;
        self.link(slot);
    }

    /// Appends the order in `slot` to the back of its price level, creating the level if needed.
    #[inline]
    fn link(&mut self, slot: u32) {
        let order = self.nodes[slot as usize].order;
        let levels = match order.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        match level_position(levels, order.side, order.price) {
            Ok(i) => {
                let level = &mut levels[i];
                let tail = level.tail;
                self.nodes[tail as usize].next = slot;
                self.nodes[slot as usize].prev = tail;
                self.nodes[slot as usize].next = NIL;
                level.tail = slot;
                level.quantity += order.remaining;
                level.orders += 1;
            }
            Err(i) => {
                self.nodes[slot as usize].prev = NIL;
                self.nodes[slot as usize].next = NIL;
                levels.insert(i, Level { price: order.price, head: slot, tail: slot, quantity: order.remaining, orders: 1 });
            }
        }
    }

    /// Takes a resting order out of its level and frees its slot.
    fn remove(&mut self, slot: u32) -> RestingOrder {
        let order = self.unlink(slot);
        self.forget(slot, &order);
        order
    }

    /// Takes the order in `slot` out of its price level (dropping the level if
    /// it empties) but keeps its slot and indexes: a move re-links it.
    #[inline]
    fn unlink(&mut self, slot: u32) -> RestingOrder {
        let Node { order, prev, next } = self.nodes[slot as usize];
        let levels = match order.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let i = level_position(levels, order.side, order.price).expect("a resting order's level exists");
        let level = &mut levels[i];
        if prev == NIL {
            level.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            level.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        level.quantity -= order.remaining;
        level.orders -= 1;
        if level.orders == 0 {
            levels.remove(i);
        }
        order
    }

    fn forget(&mut self, slot: u32, order: &RestingOrder) {
        self.index.remove(&order.order_id);
        self.free.push(slot);
        let count = self.open_orders_by_user.get_mut(&order.user).expect("an open order's user is counted");
        *count -= 1;
        if *count == 0 {
            self.open_orders_by_user.remove(&order.user);
        }
    }

    fn can_fill_completely(&self, user: UserId, side: Side, limit: PriceTicks, quantity: QuantityLots, self_trade: SelfTradePrevention) -> bool {
        let mut available: QuantityLots = 0;
        for level in self.levels(side.opposite()).iter().rev() {
            if !side.crosses(limit, level.price) {
                return false;
            }
            let mut slot = level.head;
            while slot != NIL {
                let maker = &self.nodes[slot as usize];
                slot = maker.next;
                if maker.order.user == user {
                    match self_trade {
                        SelfTradePrevention::CancelMaker => continue,
                        SelfTradePrevention::CancelTaker | SelfTradePrevention::CancelBoth => return false,
                    }
                }
                available += maker.order.remaining;
                if available >= quantity {
                    return true;
                }
            }
        }
        false
    }

    /// Matches an incoming order. Returns the unfilled quantity, or `None` when
    /// self-trade prevention cancelled the incoming order.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn take(
        &mut self,
        order_id: OrderId,
        user: UserId,
        side: Side,
        limit: PriceTicks,
        quantity: QuantityLots,
        self_trade: SelfTradePrevention,
        out: &mut Vec<Event>,
    ) -> Option<QuantityLots> {
        let spec = self.spec;
        let market = spec.id;
        let mut remaining = quantity;
        let mut taker_notional = 0;
        while remaining > 0 {
            let makers = match side {
                Side::Buy => &mut self.asks,
                Side::Sell => &mut self.bids,
            };
            let Some(level) = makers.last_mut() else { break };
            if !side.crosses(limit, level.price) {
                break;
            }
            let slot = level.head;
            let maker = self.nodes[slot as usize].order;
            if maker.user == user {
                let cancel_maker = self_trade != SelfTradePrevention::CancelTaker;
                let cancel_taker = self_trade != SelfTradePrevention::CancelMaker;
                if cancel_maker {
                    let maker = self.remove(slot);
                    out.push(Event::Cancelled {
                        market,
                        order_id: maker.order_id,
                        user: maker.user,
                        side: maker.side,
                        remaining: maker.remaining,
                        reason: CancelReason::SelfTrade,
                    });
                }
                if cancel_taker {
                    out.push(Event::Cancelled { market, order_id, user, side, remaining, reason: CancelReason::SelfTrade });
                    return None;
                }
                continue;
            }
            let traded = remaining.min(maker.remaining);
            let notional = spec.notional(maker.price, traded);
            let maker_fee = fee_increment(spec.maker_fee_ppm, spec.notional(maker.price, maker.maker_filled), notional);
            let taker_fee = fee_increment(spec.taker_fee_ppm, taker_notional, notional);
            taker_notional += notional;
            out.push(Event::Fill(Fill {
                market,
                maker_order: maker.order_id,
                maker_user: maker.user,
                taker_order: order_id,
                taker_user: user,
                taker_side: side,
                price: maker.price,
                quantity: traded,
                notional,
                maker_fee,
                taker_fee,
            }));
            remaining -= traded;
            level.quantity -= traded;
            if traded == maker.remaining {
                // The maker is done: unlink the head without a level search.
                let next = self.nodes[slot as usize].next;
                level.orders -= 1;
                if next == NIL {
                    makers.pop();
                } else {
                    level.head = next;
                    self.nodes[next as usize].prev = NIL;
                }
                self.forget(slot, &maker);
                out.push(Event::Done { market, order_id: maker.order_id, user: maker.user });
            } else {
                let node = &mut self.nodes[slot as usize].order;
                node.remaining -= traded;
                node.maker_filled += traded;
            }
        }
        Some(remaining)
    }
}

impl OrderBook for FastBook {
    fn new(spec: MarketSpec, limits: BookLimits) -> Self {
        FastBook {
            spec,
            limits,
            nodes: Vec::new(),
            free: Vec::new(),
            index: FxHashMap::default(),
            open_orders_by_user: FxHashMap::default(),
            bids: Vec::new(),
            asks: Vec::new(),
        }
    }

    fn spec(&self) -> &MarketSpec {
        &self.spec
    }

    #[inline]
    fn place(&mut self, order: &NewOrder, out: &mut Vec<Event>) {
        let market = self.spec.id;
        let reject = |code| Event::Rejected { market, order_id: order.order_id, user: order.user, code };
        if self.index.contains_key(&order.order_id) {
            return out.push(reject(RejectCode::DuplicateOrderId));
        }
        let limit = rules::effective_limit(order);
        if order.may_rest() {
            if self.index.len() >= self.limits.resting_orders_max as usize {
                return out.push(reject(RejectCode::BookFull));
            }
            if self.user_open_orders(order.user) >= self.limits.orders_per_user_max {
                return out.push(reject(RejectCode::UserOrderLimit));
            }
            let levels = self.levels(order.side);
            if level_position(levels, order.side, limit).is_err() && levels.len() >= self.limits.price_levels_per_side_max as usize {
                return out.push(reject(RejectCode::PriceLevelLimit));
            }
        }
        if order.post_only && self.would_cross(order.side, limit) {
            return out.push(reject(RejectCode::PostOnlyWouldTake));
        }
        out.push(Event::Accepted { market, order_id: order.order_id, user: order.user, side: order.side, price: order.price, quantity: order.quantity });
        let cancel = |remaining, reason| Event::Cancelled { market, order_id: order.order_id, user: order.user, side: order.side, remaining, reason };
        if rules::is_fill_or_kill(order) && !self.can_fill_completely(order.user, order.side, limit, order.quantity, order.self_trade) {
            return out.push(cancel(order.quantity, CancelReason::FillOrKill));
        }
        let Some(remaining) = self.take(order.order_id, order.user, order.side, limit, order.quantity, order.self_trade, out) else {
            return;
        };
        if remaining == 0 {
            out.push(Event::Done { market, order_id: order.order_id, user: order.user });
        } else if order.may_rest() {
            self.insert(RestingOrder {
                order_id: order.order_id,
                user: order.user,
                side: order.side,
                price: limit,
                remaining,
                maker_filled: 0,
                post_only: order.post_only,
                self_trade: order.self_trade,
            });
        } else {
            out.push(cancel(remaining, CancelReason::Unfilled));
        }
    }

    fn cancel(&mut self, order_id: OrderId, user: UserId, out: &mut Vec<Event>) {
        let market = self.spec.id;
        match self.index.get(&order_id).copied() {
            Some(slot) if self.nodes[slot as usize].order.user == user => {
                let order = self.remove(slot);
                out.push(Event::Cancelled { market, order_id, user, side: order.side, remaining: order.remaining, reason: CancelReason::User });
            }
            _ => out.push(Event::Rejected { market, order_id, user, code: RejectCode::UnknownOrder }),
        }
    }

    fn cancel_all(&mut self, user: UserId, out: &mut Vec<Event>) {
        if self.user_open_orders(user) == 0 {
            return;
        }
        // Bounded by resting_orders_max; walking the levels gives priority order.
        let mut mine = Vec::new();
        for side in [Side::Buy, Side::Sell] {
            for level in self.levels(side).iter().rev() {
                let mut slot = level.head;
                while slot != NIL {
                    let node = &self.nodes[slot as usize];
                    if node.order.user == user {
                        mine.push(slot);
                    }
                    slot = node.next;
                }
            }
        }
        let market = self.spec.id;
        for slot in mine {
            let order = self.remove(slot);
            out.push(Event::Cancelled { market, order_id: order.order_id, user, side: order.side, remaining: order.remaining, reason: CancelReason::User });
        }
    }

    #[inline]
    fn amend(&mut self, order_id: OrderId, user: UserId, price: PriceTicks, quantity: QuantityLots, out: &mut Vec<Event>) {
        let market = self.spec.id;
        let reject = |code| Event::Rejected { market, order_id, user, code };
        let slot = match self.index.get(&order_id).copied() {
            Some(slot) if self.nodes[slot as usize].order.user == user => slot,
            _ => return out.push(reject(RejectCode::UnknownOrder)),
        };
        let order = self.nodes[slot as usize].order;
        let side = order.side;
        if price == order.price && quantity <= order.remaining {
            let levels = self.levels_mut(side);
            let i = level_position(levels, side, price).expect("a resting order's level exists");
            levels[i].quantity -= order.remaining - quantity;
            self.nodes[slot as usize].order.remaining = quantity;
            return out.push(Event::Amended { market, order_id, user, price, quantity });
        }
        if order.post_only && self.would_cross(side, price) {
            return out.push(reject(RejectCode::PostOnlyWouldTake));
        }
        let levels = self.levels(side);
        // Only a move that needs a new level can hit the level limit; the old
        // level is freed first if the order was alone on it.
        if levels.len() >= self.limits.price_levels_per_side_max as usize && level_position(levels, side, price).is_err() {
            let alone_at_old_price = levels[level_position(levels, side, order.price).expect("level exists")].orders == 1;
            if levels.len() - alone_at_old_price as usize >= self.limits.price_levels_per_side_max as usize {
                return out.push(reject(RejectCode::PriceLevelLimit));
            }
        }
        // The order keeps its slot and indexes while it is off the book.
        self.unlink(slot);
        out.push(Event::Amended { market, order_id, user, price, quantity });
        match self.take(order_id, user, side, price, quantity, order.self_trade, out) {
            Some(0) => {
                self.forget(slot, &order);
                out.push(Event::Done { market, order_id, user });
            }
            Some(remaining) => {
                self.nodes[slot as usize].order = RestingOrder { price, remaining, maker_filled: 0, ..order };
                self.link(slot);
            }
            None => self.forget(slot, &order),
        }
    }

    fn resting_orders(&self) -> Vec<RestingOrder> {
        let mut orders = Vec::with_capacity(self.index.len());
        for side in [Side::Buy, Side::Sell] {
            for level in self.levels(side).iter().rev() {
                let mut slot = level.head;
                while slot != NIL {
                    let node = &self.nodes[slot as usize];
                    orders.push(node.order);
                    slot = node.next;
                }
            }
        }
        orders
    }

    fn restore_resting(&mut self, order: &RestingOrder) {
        self.insert(*order);
    }

    fn depth(&self, side: Side, levels_max: usize) -> Vec<PriceLevel> {
        self.levels(side).iter().rev().take(levels_max).map(|l| PriceLevel { price: l.price, quantity: l.quantity, orders: l.orders }).collect()
    }

    fn resting_count(&self) -> usize {
        self.index.len()
    }
}
