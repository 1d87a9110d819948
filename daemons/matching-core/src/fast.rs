//! The fast store.
//!
//! - Orders live in a slab (`nodes`) and are chained into one FIFO list per
//!   price level by slab index; freed slots are reused, so steady-state
//!   operation allocates nothing.
//! - Each side's levels are a [`Ladder`] (see `ladder.rs`): a direct-mapped
//!   window of price levels around the top of the book, so that finding,
//!   adding or emptying a level near the top is an index, not a search.
//! - An order id index (`FxHashMap`) finds an order's slot for cancel and amend.
//!
//! The rules are `lifecycle.rs`'s; the differential test holds this store
//! to the reference store's behaviour under them, with the default window
//! and with one of 8 ticks that moves all the time.

use rustc_hash::FxHashMap;

use crate::book::BookStore;
use crate::ladder::{Ladder, Level, NIL};
use crate::types::{OrderId, PriceLevel, PriceTicks, QuantityLots, RestingOrder, Side, UserId};

#[derive(Clone, Copy)]
struct Node {
    order: RestingOrder,
    prev: u32,
    next: u32,
}

/// A side's price as a ladder key: a higher key is a better price on both sides.
#[inline]
fn key(side: Side, price: PriceTicks) -> u64 {
    match side {
        Side::Buy => price,
        Side::Sell => !price,
    }
}

#[inline]
fn price(side: Side, key: u64) -> PriceTicks {
    match side {
        Side::Buy => key,
        Side::Sell => !key,
    }
}

/// The fast store; `WINDOW_MAX` is the most price ticks a side's direct-mapped window spans.
#[derive(Default)]
pub struct FastStore<const WINDOW_MAX: usize = 4096> {
    nodes: Vec<Node>,
    free: Vec<u32>,
    index: FxHashMap<OrderId, u32>,
    open_orders_by_user: FxHashMap<UserId, u32>,
    bids: Ladder<WINDOW_MAX>,
    asks: Ladder<WINDOW_MAX>,
}

impl<const WINDOW_MAX: usize> FastStore<WINDOW_MAX> {
    #[inline]
    fn ladder_mut(&mut self, side: Side) -> &mut Ladder<WINDOW_MAX> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    #[inline]
    fn ladder(&self, side: Side) -> &Ladder<WINDOW_MAX> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
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
        let ladder = match order.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = ladder.entry(key(order.side, order.price));
        self.nodes[slot as usize].next = NIL;
        if level.orders == 0 {
            self.nodes[slot as usize].prev = NIL;
            *level = Level { head: slot, tail: slot, quantity: order.remaining, orders: 1 };
        } else {
            let tail = level.tail;
            self.nodes[tail as usize].next = slot;
            self.nodes[slot as usize].prev = tail;
            level.tail = slot;
            level.quantity += order.remaining;
            level.orders += 1;
        }
    }

    /// Takes a resting order out of its level and frees its slot.
    fn remove(&mut self, slot: u32) -> RestingOrder {
        let order = self.unlink(slot);
        self.forget(slot, &order);
        order
    }

    /// Takes the order in `slot` out of its price level, dropping the level if
    /// it empties; its slot and indexes stay until `forget`.
    #[inline]
    fn unlink(&mut self, slot: u32) -> RestingOrder {
        let Node { order, prev, next } = self.nodes[slot as usize];
        let ladder = match order.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let key = key(order.side, order.price);
        let level = ladder.level_mut(key);
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
            ladder.release(key);
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
}

impl<const WINDOW_MAX: usize> BookStore for FastStore<WINDOW_MAX> {
    type Handle = u32;

    #[inline]
    fn find(&self, order_id: OrderId) -> Option<u32> {
        self.index.get(&order_id).copied()
    }

    #[inline]
    fn get(&self, slot: u32) -> &RestingOrder {
        &self.nodes[slot as usize].order
    }

    #[inline]
    fn best(&self, side: Side) -> Option<u32> {
        let ladder = self.ladder(side);
        ladder.best().map(|level| level.head)
    }

    fn visit(&self, side: Side, mut visit: impl FnMut(&RestingOrder) -> bool) {
        for (_, level) in self.ladder(side).iter() {
            let mut slot = level.head;
            while slot != NIL {
                let node = &self.nodes[slot as usize];
                if !visit(&node.order) {
                    return;
                }
                slot = node.next;
            }
        }
    }

    fn insert(&mut self, order: RestingOrder) {
        FastStore::insert(self, order)
    }

    fn remove(&mut self, slot: u32) -> RestingOrder {
        FastStore::remove(self, slot)
    }

    /// The slot, still indexed and counted for its user, out of its level.
    type Lifted = u32;

    #[inline]
    fn lift(&mut self, slot: u32) -> u32 {
        self.unlink(slot);
        slot
    }

    #[inline]
    fn relist(&mut self, slot: u32, order: RestingOrder) {
        self.nodes[slot as usize].order = order;
        self.link(slot);
    }

    fn discard(&mut self, slot: u32) {
        let order = self.nodes[slot as usize].order;
        self.forget(slot, &order);
    }

    #[inline]
    fn fill_best(&mut self, side: Side, traded: QuantityLots) -> bool {
        let ladder = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = ladder.best_mut().expect("a best order was found");
        let slot = level.head;
        level.quantity -= traded;
        let order = self.nodes[slot as usize].order;
        if traded < order.remaining {
            let node = &mut self.nodes[slot as usize].order;
            node.remaining -= traded;
            node.maker_filled += traded;
            node.filled += traded;
            return false;
        }
        // The maker is done: unlink the head without a level lookup.
        let next = self.nodes[slot as usize].next;
        level.orders -= 1;
        if next == NIL {
            level.head = NIL;
            level.tail = NIL;
            let best = ladder.best_key().expect("the best level is there");
            ladder.release(best);
        } else {
            level.head = next;
            self.nodes[next as usize].prev = NIL;
        }
        self.forget(slot, &order);
        true
    }

    fn set_remaining(&mut self, slot: u32, remaining: QuantityLots) {
        let order = self.nodes[slot as usize].order;
        let level = self.ladder_mut(order.side).level_mut(key(order.side, order.price));
        level.quantity = level.quantity - order.remaining + remaining;
        self.nodes[slot as usize].order.remaining = remaining;
    }

    fn level_count(&self, side: Side) -> usize {
        self.ladder(side).len()
    }

    fn orders_at(&self, side: Side, price: PriceTicks) -> u32 {
        self.ladder(side).get(key(side, price)).map_or(0, |level| level.orders)
    }

    fn user_orders(&self, user: UserId) -> u32 {
        self.open_orders_by_user.get(&user).copied().unwrap_or(0)
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn depth(&self, side: Side, levels_max: usize) -> Vec<PriceLevel> {
        self.ladder(side)
            .iter()
            .take(levels_max)
            .map(|(key, level)| PriceLevel { price: price(side, key), quantity: level.quantity, orders: level.orders })
            .collect()
    }
}
