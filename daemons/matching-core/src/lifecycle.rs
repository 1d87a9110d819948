//! An order's life, written once over any [`BookStore`]: the checks that
//! accept or refuse it, fill-or-kill, taking liquidity with self-trade
//! prevention and fees, resting or cancelling the rest, cancel and amend.

use crate::book::{BookStore, OrderBook};
use crate::rules;
use crate::types::{
    fee_increment, BookLimits, CancelReason, Event, Fill, MarketSpec, NewOrder, OrderId, PriceLevel, PriceTicks, QuantityLots, RejectCode, RestingOrder,
    SelfTradePrevention, Side, UserId,
};

/// One market's book: its spec, its limits, and the store of its orders.
pub struct Book<S> {
    spec: MarketSpec,
    limits: BookLimits,
    store: S,
}

fn cancelled(market: u32, order: &RestingOrder, reason: CancelReason) -> Event {
    Event::Cancelled { market, order_id: order.order_id, user: order.user, side: order.side, remaining: order.remaining, reason }
}

/// An order taking liquidity: the incoming one, or an amended one re-entering.
struct Taker {
    order_id: OrderId,
    user: UserId,
    side: Side,
    limit: PriceTicks,
    quantity: QuantityLots,
    self_trade: SelfTradePrevention,
}

impl<S: BookStore> Book<S> {
    pub fn store(&self) -> &S {
        &self.store
    }

    fn would_cross(&self, side: Side, limit: PriceTicks) -> bool {
        self.store.best(side.opposite()).is_some_and(|best| side.crosses(limit, self.store.get(best).price))
    }

    /// Whether a new level at `price` on `side` would pass the level limit,
    /// counting the levels as they would be with `leaving` off the book.
    fn level_allowed(&self, side: Side, price: PriceTicks, leaving: Option<&RestingOrder>) -> bool {
        // The count first: finding a level is a search, and almost every
        // order comes while the side is far below its limit.
        let levels = self.store.level_count(side);
        let levels_max = self.limits.price_levels_per_side_max as usize;
        if levels < levels_max || self.store.orders_at(side, price) > 0 {
            return true;
        }
        let freed = leaving.is_some_and(|order| order.side == side && self.store.orders_at(side, order.price) == 1);
        levels - usize::from(freed) < levels_max
    }

    fn can_fill_completely(&self, taker: &Taker) -> bool {
        let mut available: QuantityLots = 0;
        let mut filled = false;
        self.store.visit(taker.side.opposite(), |maker| {
            if !taker.side.crosses(taker.limit, maker.price) {
                return false;
            }
            if maker.user == taker.user {
                match taker.self_trade {
                    SelfTradePrevention::CancelMaker => return true,
                    SelfTradePrevention::CancelTaker | SelfTradePrevention::CancelBoth => return false,
                }
            }
            available += maker.remaining;
            filled = available >= taker.quantity;
            !filled
        });
        filled
    }

    /// Matches a taker. Returns the unfilled quantity, or `None` when
    /// self-trade prevention cancelled the taker.
    #[inline]
    fn take(&mut self, taker: &Taker, out: &mut Vec<Event>) -> Option<QuantityLots> {
        let spec = self.spec;
        let market = spec.id;
        let makers = taker.side.opposite();
        let mut remaining = taker.quantity;
        let mut taker_notional = 0;
        while remaining > 0 {
            let Some(best) = self.store.best(makers) else { break };
            let maker = *self.store.get(best);
            if !taker.side.crosses(taker.limit, maker.price) {
                break;
            }
            if maker.user == taker.user {
                if taker.self_trade != SelfTradePrevention::CancelTaker {
                    let maker = self.store.remove(best);
                    out.push(cancelled(market, &maker, CancelReason::SelfTrade));
                }
                if taker.self_trade != SelfTradePrevention::CancelMaker {
                    out.push(Event::Cancelled {
                        market,
                        order_id: taker.order_id,
                        user: taker.user,
                        side: taker.side,
                        remaining,
                        reason: CancelReason::SelfTrade,
                    });
                    return None;
                }
                continue;
            }
            let traded = remaining.min(maker.remaining);
            let exact = spec.notional_exact(maker.price, traded);
            let divisor = spec.notional_divisor();
            // Whole-unit markets (most) skip the u128 divisions.
            let (notional, proceeds) = if divisor == 1 { (exact, exact) } else { (exact.div_ceil(divisor), exact / divisor) };
            let mut maker_fee = fee_increment(spec.maker_fee_ppm, divisor, spec.notional_exact(maker.price, maker.maker_filled), exact);
            let mut taker_fee = fee_increment(spec.taker_fee_ppm, divisor, taker_notional, exact);
            taker_notional += exact;
            // The seller's fee comes out of its proceeds, which a fill of
            // less than a minor unit leaves at zero: it pays no more than it
            // receives (within whole-unit markets the cap never binds).
            match taker.side {
                Side::Buy => maker_fee = maker_fee.min(proceeds),
                Side::Sell => taker_fee = taker_fee.min(proceeds),
            }
            out.push(Event::Fill(Fill {
                market,
                maker_order: maker.order_id,
                maker_user: maker.user,
                taker_order: taker.order_id,
                taker_user: taker.user,
                taker_side: taker.side,
                price: maker.price,
                quantity: traded,
                notional,
                notional_rounding: notional - proceeds,
                maker_fee,
                taker_fee,
            }));
            remaining -= traded;
            if self.store.fill_best(makers, traded) {
                out.push(Event::Done { market, order_id: maker.order_id, user: maker.user });
            }
        }
        Some(remaining)
    }
}

impl<S: BookStore> OrderBook for Book<S> {
    fn new(spec: MarketSpec, limits: BookLimits) -> Self {
        Book { spec, limits, store: S::default() }
    }

    fn spec(&self) -> &MarketSpec {
        &self.spec
    }

    #[inline]
    fn place(&mut self, order: &NewOrder, out: &mut Vec<Event>) {
        let market = self.spec.id;
        let reject = |code| Event::Rejected { market, order_id: order.order_id, user: order.user, code };
        if self.store.find(order.order_id).is_some() {
            return out.push(reject(RejectCode::DuplicateOrderId));
        }
        let limit = rules::effective_limit(order);
        if order.may_rest() {
            if self.store.len() >= self.limits.resting_orders_max as usize {
                return out.push(reject(RejectCode::BookFull));
            }
            if self.store.user_orders(order.user) >= self.limits.orders_per_user_max {
                return out.push(reject(RejectCode::UserOrderLimit));
            }
            if !self.level_allowed(order.side, limit, None) {
                return out.push(reject(RejectCode::PriceLevelLimit));
            }
        }
        if order.post_only && self.would_cross(order.side, limit) {
            return out.push(reject(RejectCode::PostOnlyWouldTake));
        }
        out.push(Event::Accepted { market, order_id: order.order_id, user: order.user, side: order.side, price: order.price, quantity: order.quantity });
        let cancel = |remaining, reason| Event::Cancelled { market, order_id: order.order_id, user: order.user, side: order.side, remaining, reason };
        let taker = Taker { order_id: order.order_id, user: order.user, side: order.side, limit, quantity: order.quantity, self_trade: order.self_trade };
        if rules::is_fill_or_kill(order) && !self.can_fill_completely(&taker) {
            return out.push(cancel(order.quantity, CancelReason::FillOrKill));
        }
        let Some(remaining) = self.take(&taker, out) else { return };
        if remaining == 0 {
            out.push(Event::Done { market, order_id: order.order_id, user: order.user });
        } else if order.may_rest() {
            self.store.insert(RestingOrder {
                order_id: order.order_id,
                user: order.user,
                side: order.side,
                price: limit,
                remaining,
                filled: order.quantity - remaining,
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
        match self.store.find(order_id) {
            Some(handle) if self.store.get(handle).user == user => {
                let order = self.store.remove(handle);
                out.push(cancelled(market, &order, CancelReason::User));
            }
            _ => out.push(Event::Rejected { market, order_id, user, code: RejectCode::UnknownOrder }),
        }
    }

    fn cancel_all(&mut self, user: UserId, out: &mut Vec<Event>) {
        if self.store.user_orders(user) == 0 {
            return;
        }
        // Bounded by resting_orders_max; visiting gives priority order.
        let mut mine = Vec::new();
        for side in [Side::Buy, Side::Sell] {
            self.store.visit(side, |order| {
                if order.user == user {
                    mine.push(order.order_id);
                }
                true
            });
        }
        let market = self.spec.id;
        for order_id in mine {
            let handle = self.store.find(order_id).expect("visited just now");
            let order = self.store.remove(handle);
            out.push(cancelled(market, &order, CancelReason::User));
        }
    }

    #[inline]
    fn amend(&mut self, order_id: OrderId, user: UserId, price: PriceTicks, quantity: QuantityLots, out: &mut Vec<Event>) {
        let market = self.spec.id;
        let reject = |code| Event::Rejected { market, order_id, user, code };
        let handle = match self.store.find(order_id) {
            Some(handle) if self.store.get(handle).user == user => handle,
            _ => return out.push(reject(RejectCode::UnknownOrder)),
        };
        let order = *self.store.get(handle);
        // What the user has is the total; fills matching made since the
        // user last saw the order count against it.
        let Some(remaining) = quantity.checked_sub(order.filled).filter(|&open| open > 0) else {
            let order = self.store.remove(handle);
            return out.push(cancelled(market, &order, CancelReason::User));
        };
        let amended = Event::Amended { market, order_id, user, price, quantity, remaining };
        if price == order.price && remaining <= order.remaining {
            self.store.set_remaining(handle, remaining);
            return out.push(amended);
        }
        if order.post_only && self.would_cross(order.side, price) {
            return out.push(reject(RejectCode::PostOnlyWouldTake));
        }
        if !self.level_allowed(order.side, price, Some(&order)) {
            return out.push(reject(RejectCode::PriceLevelLimit));
        }
        // Off the book while it takes: it must not meet itself.
        let lifted = self.store.lift(handle);
        out.push(amended);
        let taker = Taker { order_id, user, side: order.side, limit: price, quantity: remaining, self_trade: order.self_trade };
        match self.take(&taker, out) {
            Some(0) => {
                self.store.discard(lifted);
                out.push(Event::Done { market, order_id, user });
            }
            Some(left) => {
                self.store.relist(lifted, RestingOrder { price, remaining: left, filled: quantity - left, maker_filled: 0, ..order });
            }
            None => self.store.discard(lifted),
        }
    }

    fn resting_orders(&self) -> Vec<RestingOrder> {
        let mut orders = Vec::with_capacity(self.store.len());
        for side in [Side::Buy, Side::Sell] {
            self.store.visit(side, |order| {
                orders.push(*order);
                true
            });
        }
        orders
    }

    fn restore_resting(&mut self, order: &RestingOrder) {
        self.store.insert(*order);
    }

    fn depth(&self, side: Side, levels_max: usize) -> Vec<PriceLevel> {
        self.store.depth(side, levels_max)
    }

    fn resting_count(&self) -> usize {
        self.store.len()
    }

    fn best_price(&self, side: Side) -> Option<PriceTicks> {
        self.store.best(side).map(|handle| self.store.get(handle).price)
    }

    fn contains(&self, order_id: OrderId) -> bool {
        self.store.find(order_id).is_some()
    }

    fn side_of(&self, order_id: OrderId, user: UserId) -> Option<Side> {
        self.store.find(order_id).map(|handle| self.store.get(handle)).filter(|order| order.user == user).map(|order| order.side)
    }
}
