//! The fast store.
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
//! The rules are `lifecycle.rs`'s; the differential test holds this store
//! to the reference store's behaviour under them.

use rustc_hash::FxHashMap;

use crate::book::BookStore;
use crate::types::{OrderId, PriceLevel, PriceTicks, QuantityLots, RestingOrder, Side, UserId};

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

#[derive(Default)]
pub struct FastStore {
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

impl FastStore {
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

    /// Takes the order in `slot` out of its price level, dropping the level if
    /// it empties; its slot and indexes stay until `forget`.
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
}

impl BookStore for FastStore {
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
        self.levels(side).last().map(|level| level.head)
    }

    fn visit(&self, side: Side, mut visit: impl FnMut(&RestingOrder) -> bool) {
        for level in self.levels(side).iter().rev() {
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
        let levels = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = levels.last_mut().expect("a best order was found");
        let slot = level.head;
        level.quantity -= traded;
        let order = self.nodes[slot as usize].order;
        if traded < order.remaining {
            let node = &mut self.nodes[slot as usize].order;
            node.remaining -= traded;
            node.maker_filled += traded;
            return false;
        }
        // The maker is done: unlink the head without a level search.
        let next = self.nodes[slot as usize].next;
        level.orders -= 1;
        if next == NIL {
            levels.pop();
        } else {
            level.head = next;
            self.nodes[next as usize].prev = NIL;
        }
        self.forget(slot, &order);
        true
    }

    fn set_remaining(&mut self, slot: u32, remaining: QuantityLots) {
        let order = self.nodes[slot as usize].order;
        let levels = self.levels_mut(order.side);
        let i = level_position(levels, order.side, order.price).expect("a resting order's level exists");
        levels[i].quantity = levels[i].quantity - order.remaining + remaining;
        self.nodes[slot as usize].order.remaining = remaining;
    }

    fn level_count(&self, side: Side) -> usize {
        self.levels(side).len()
    }

    fn orders_at(&self, side: Side, price: PriceTicks) -> u32 {
        let levels = self.levels(side);
        level_position(levels, side, price).map_or(0, |i| levels[i].orders)
    }

    fn user_orders(&self, user: UserId) -> u32 {
        self.open_orders_by_user.get(&user).copied().unwrap_or(0)
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn depth(&self, side: Side, levels_max: usize) -> Vec<PriceLevel> {
        self.levels(side).iter().rev().take(levels_max).map(|l| PriceLevel { price: l.price, quantity: l.quantity, orders: l.orders }).collect()
    }
}
