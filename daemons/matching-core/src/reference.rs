//! The reference store: each side is one vector in priority order, every
//! operation a linear scan. Slow, and meant to be obviously correct; the fast
//! store is checked against it under the same rules (`lifecycle.rs`).

use crate::book::BookStore;
use crate::types::{OrderId, PriceLevel, PriceTicks, QuantityLots, RestingOrder, Side, UserId};

#[derive(Default)]
pub struct ReferenceStore {
    /// Index 0 trades first.
    bids: Vec<RestingOrder>,
    asks: Vec<RestingOrder>,
}

impl ReferenceStore {
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
}

impl BookStore for ReferenceStore {
    type Handle = (Side, usize);

    fn find(&self, order_id: OrderId) -> Option<(Side, usize)> {
        [Side::Buy, Side::Sell].into_iter().find_map(|side| self.side(side).iter().position(|o| o.order_id == order_id).map(|i| (side, i)))
    }

    fn get(&self, (side, i): (Side, usize)) -> &RestingOrder {
        &self.side(side)[i]
    }

    fn best(&self, side: Side) -> Option<(Side, usize)> {
        (!self.side(side).is_empty()).then_some((side, 0))
    }

    fn visit(&self, side: Side, mut visit: impl FnMut(&RestingOrder) -> bool) {
        for order in self.side(side) {
            if !visit(order) {
                return;
            }
        }
    }

    /// Behind every order at the same or a better price.
    fn insert(&mut self, order: RestingOrder) {
        let better_or_equal = |o: &RestingOrder| match order.side {
            Side::Buy => o.price >= order.price,
            Side::Sell => o.price <= order.price,
        };
        let side = self.side_mut(order.side);
        let at = side.iter().take_while(|o| better_or_equal(o)).count();
        side.insert(at, order);
    }

    fn remove(&mut self, (side, i): (Side, usize)) -> RestingOrder {
        self.side_mut(side).remove(i)
    }

    /// The reference store has nothing cheaper than removing and inserting.
    type Lifted = ();

    fn lift(&mut self, handle: (Side, usize)) {
        self.remove(handle);
    }

    fn relist(&mut self, (): (), order: RestingOrder) {
        self.insert(order);
    }

    fn discard(&mut self, (): ()) {}

    fn fill_best(&mut self, side: Side, traded: QuantityLots) -> bool {
        let orders = self.side_mut(side);
        let best = &mut orders[0];
        best.remaining -= traded;
        best.maker_filled += traded;
        best.filled += traded;
        if best.remaining > 0 {
            return false;
        }
        orders.remove(0);
        true
    }

    fn set_remaining(&mut self, (side, i): (Side, usize), remaining: QuantityLots) {
        self.side_mut(side)[i].remaining = remaining;
    }

    fn level_count(&self, side: Side) -> usize {
        let mut prices: Vec<PriceTicks> = self.side(side).iter().map(|o| o.price).collect();
        prices.dedup();
        prices.len()
    }

    fn orders_at(&self, side: Side, price: PriceTicks) -> u32 {
        self.side(side).iter().filter(|o| o.price == price).count() as u32
    }

    fn user_orders(&self, user: UserId) -> u32 {
        self.bids.iter().chain(&self.asks).filter(|o| o.user == user).count() as u32
    }

    fn len(&self) -> usize {
        self.bids.len() + self.asks.len()
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
}
