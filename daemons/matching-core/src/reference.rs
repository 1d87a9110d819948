//! The reference book: each side is one vector in priority order, every
//! operation a linear scan. Slow, and meant to be obviously correct; the fast
//! book is checked against it.

use crate::book::OrderBook;
use crate::rules;
use crate::types::{
    fee_increment, BookLimits, CancelReason, Event, Fill, MarketSpec, NewOrder, OrderId, PriceLevel, PriceTicks, QuantityLots, RejectCode, RestingOrder,
    SelfTradePrevention, Side, UserId,
};

pub struct ReferenceBook {
    spec: MarketSpec,
    limits: BookLimits,
    /// Index 0 trades first.
    bids: Vec<RestingOrder>,
    asks: Vec<RestingOrder>,
}

impl ReferenceBook {
    fn side(&self, side: Side) -> &Vec<RestingOrder> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut Vec<RestingOrder> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn find(&self, order_id: OrderId) -> Option<(Side, usize)> {
        for side in [Side::Buy, Side::Sell] {
            if let Some(i) = self.side(side).iter().position(|o| o.order_id == order_id) {
                return Some((side, i));
            }
        }
        None
    }

    fn level_count(&self, side: Side, excluding: Option<OrderId>) -> usize {
        let mut prices: Vec<PriceTicks> = self.side(side).iter().filter(|o| Some(o.order_id) != excluding).map(|o| o.price).collect();
        prices.dedup();
        prices.len()
    }

    fn level_exists(&self, side: Side, price: PriceTicks, excluding: Option<OrderId>) -> bool {
        self.side(side).iter().any(|o| o.price == price && Some(o.order_id) != excluding)
    }

    fn would_cross(&self, side: Side, limit: PriceTicks) -> bool {
        self.side(side.opposite()).first().is_some_and(|best| side.crosses(limit, best.price))
    }

    /// Inserts behind every order at the same or a better price.
    fn insert(&mut self, order: RestingOrder) {
        let better_or_equal = |o: &RestingOrder| match order.side {
            Side::Buy => o.price >= order.price,
            Side::Sell => o.price <= order.price,
        };
        let side = self.side_mut(order.side);
        let at = side.iter().take_while(|o| better_or_equal(o)).count();
        side.insert(at, order);
    }

    fn can_fill_completely(&self, user: UserId, side: Side, limit: PriceTicks, quantity: QuantityLots, self_trade: SelfTradePrevention) -> bool {
        let mut available: QuantityLots = 0;
        for maker in self.side(side.opposite()) {
            if !side.crosses(limit, maker.price) {
                break;
            }
            if maker.user == user {
                match self_trade {
                    SelfTradePrevention::CancelMaker => continue,
                    SelfTradePrevention::CancelTaker | SelfTradePrevention::CancelBoth => break,
                }
            }
            available += maker.remaining;
            if available >= quantity {
                return true;
            }
        }
        false
    }

    /// Matches an incoming order. Returns the unfilled quantity, or `None` when
    /// self-trade prevention cancelled the incoming order.
    #[allow(clippy::too_many_arguments)]
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
            let makers = self.side_mut(side.opposite());
            let Some(maker) = makers.first_mut() else { break };
            if !side.crosses(limit, maker.price) {
                break;
            }
            if maker.user == user {
                let cancel_maker = self_trade != SelfTradePrevention::CancelTaker;
                let cancel_taker = self_trade != SelfTradePrevention::CancelMaker;
                if cancel_maker {
                    let maker = makers.remove(0);
                    out.push(cancelled(market, &maker, CancelReason::SelfTrade));
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
            maker.remaining -= traded;
            maker.maker_filled += traded;
            remaining -= traded;
            if maker.remaining == 0 {
                let maker = makers.remove(0);
                out.push(Event::Done { market, order_id: maker.order_id, user: maker.user });
            }
        }
        Some(remaining)
    }
}

fn cancelled(market: u32, order: &RestingOrder, reason: CancelReason) -> Event {
    Event::Cancelled { market, order_id: order.order_id, user: order.user, side: order.side, remaining: order.remaining, reason }
}

impl OrderBook for ReferenceBook {
    fn new(spec: MarketSpec, limits: BookLimits) -> Self {
        ReferenceBook { spec, limits, bids: Vec::new(), asks: Vec::new() }
    }

    fn spec(&self) -> &MarketSpec {
        &self.spec
    }

    fn place(&mut self, order: &NewOrder, out: &mut Vec<Event>) {
        let market = self.spec.id;
        let reject = |code| Event::Rejected { market, order_id: order.order_id, user: order.user, code };
        if self.find(order.order_id).is_some() {
            return out.push(reject(RejectCode::DuplicateOrderId));
        }
        let limit = rules::effective_limit(order);
        if order.may_rest() {
            if self.resting_count() >= self.limits.resting_orders_max as usize {
                return out.push(reject(RejectCode::BookFull));
            }
            let user_orders = self.bids.iter().chain(&self.asks).filter(|o| o.user == order.user).count();
            if user_orders >= self.limits.orders_per_user_max as usize {
                return out.push(reject(RejectCode::UserOrderLimit));
            }
            if !self.level_exists(order.side, limit, None) && self.level_count(order.side, None) >= self.limits.price_levels_per_side_max as usize {
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
        match self.find(order_id) {
            Some((side, i)) if self.side(side)[i].user == user => {
                let order = self.side_mut(side).remove(i);
                out.push(cancelled(market, &order, CancelReason::User));
            }
            _ => out.push(Event::Rejected { market, order_id, user, code: RejectCode::UnknownOrder }),
        }
    }

    fn cancel_all(&mut self, user: UserId, out: &mut Vec<Event>) {
        let market = self.spec.id;
        for side in [Side::Buy, Side::Sell] {
            let orders = std::mem::take(self.side_mut(side));
            let (mine, others): (Vec<_>, Vec<_>) = orders.into_iter().partition(|o| o.user == user);
            *self.side_mut(side) = others;
            out.extend(mine.iter().map(|o| cancelled(market, o, CancelReason::User)));
        }
    }

    fn amend(&mut self, order_id: OrderId, user: UserId, price: PriceTicks, quantity: QuantityLots, out: &mut Vec<Event>) {
        let market = self.spec.id;
        let reject = |code| Event::Rejected { market, order_id, user, code };
        let (side, i) = match self.find(order_id) {
            Some((side, i)) if self.side(side)[i].user == user => (side, i),
            _ => return out.push(reject(RejectCode::UnknownOrder)),
        };
        let order = self.side(side)[i];
        if price == order.price && quantity <= order.remaining {
            self.side_mut(side)[i].remaining = quantity;
            return out.push(Event::Amended { market, order_id, user, price, quantity });
        }
        if order.post_only && self.would_cross(side, price) {
            return out.push(reject(RejectCode::PostOnlyWouldTake));
        }
        if !self.level_exists(side, price, Some(order_id)) && self.level_count(side, Some(order_id)) >= self.limits.price_levels_per_side_max as usize {
            return out.push(reject(RejectCode::PriceLevelLimit));
        }
        self.side_mut(side).remove(i);
        out.push(Event::Amended { market, order_id, user, price, quantity });
        let Some(remaining) = self.take(order_id, user, side, price, quantity, order.self_trade, out) else {
            return;
        };
        if remaining == 0 {
            out.push(Event::Done { market, order_id, user });
        } else {
            self.insert(RestingOrder { price, remaining, maker_filled: 0, ..order });
        }
    }

    fn resting_orders(&self) -> Vec<RestingOrder> {
        self.bids.iter().chain(&self.asks).copied().collect()
    }

    fn restore_resting(&mut self, order: &RestingOrder) {
        self.insert(*order);
    }

    fn depth(&self, side: Side, levels_max: usize) -> Vec<PriceLevel> {
        let mut levels: Vec<PriceLevel> = Vec::new();
        for order in self.side(side) {
            match levels.last_mut() {
                Some(level) if level.price == order.price => {
                    level.quantity += order.remaining;
                    level.orders += 1;
                }
                _ => levels.push(PriceLevel { price: order.price, quantity: order.remaining, orders: 1 }),
            }
        }
        levels.truncate(levels_max);
        levels
    }

    fn resting_count(&self) -> usize {
        self.bids.len() + self.asks.len()
    }
}
