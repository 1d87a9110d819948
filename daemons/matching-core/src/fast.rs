//! The fast store.
//!
//! - Orders live in a slab (`nodes`) and are chained into one FIFO list per
//!   price level by slab index; freed slots are reused, so steady-state
//!   operation allocates nothing.
//! - Each side's levels are a [`Ladder`]: a direct-mapped window of price
//!   levels, one slot per tick, around the top of the book, with a bitmap of
//!   the occupied ones; levels worse than the window wait in a vector sorted
//!   best-last. Finding, adding or emptying a level near the top is an index,
//!   not a search, and moves no other level; the next best after the top
//!   empties is a scan of the bitmap.
//! - An order id index (`FxHashMap`) finds an order's slot for cancel and amend.
//!
//! The rules are `lifecycle.rs`'s; the differential test holds this store
//! to the reference store's behaviour under them, with the default window
//! and with one of 8 ticks that moves all the time.

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
    head: u32,
    tail: u32,
    quantity: QuantityLots,
    /// 0 for a free slot of a ladder's window.
    orders: u32,
}

const EMPTY_LEVEL: Level = Level { head: NIL, tail: NIL, quantity: 0, orders: 0 };

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

/// The window's first length; it doubles as a book's span of prices grows.
const WINDOW_INITIAL: usize = 64;

/// One side's price levels by key (see [`key`]).
///
/// Keys `base..base + slots.len()` are direct-mapped into `slots`; levels
/// with a smaller key (worse prices) are in `below`, ascending. Invariants:
/// the best level is in the window whenever there is any level (`below` is
/// empty when the window is), `top` indexes it, and `occupied` has a bit set
/// exactly for the slots holding a level. The window grows, by powers of two,
/// up to `WINDOW_MAX` slots, and moves when a better price falls outside it
/// or when it empties while `below` still holds levels.
struct Ladder<const WINDOW_MAX: usize> {
    base: u64,
    slots: Vec<Level>,
    occupied: Vec<u64>,
    top: usize,
    in_window: usize,
    below: Vec<(u64, Level)>,
}

impl<const WINDOW_MAX: usize> Default for Ladder<WINDOW_MAX> {
    fn default() -> Self {
        Ladder { base: 0, slots: Vec::new(), occupied: Vec::new(), top: 0, in_window: 0, below: Vec::new() }
    }
}

enum Place {
    Window(usize),
    Below(Result<usize, usize>),
    Above,
}

impl<const WINDOW_MAX: usize> Ladder<WINDOW_MAX> {
    const WINDOW_MAX_IS_A_POWER_OF_TWO: () = assert!(WINDOW_MAX.is_power_of_two());

    #[inline]
    fn place(&self, key: u64) -> Place {
        if key < self.base {
            Place::Below(self.below.binary_search_by(|(k, _)| k.cmp(&key)))
        } else if key - self.base < self.slots.len() as u64 {
            Place::Window((key - self.base) as usize)
        } else {
            Place::Above
        }
    }

    fn len(&self) -> usize {
        self.in_window + self.below.len()
    }

    #[inline]
    fn get(&self, key: u64) -> Option<&Level> {
        match self.place(key) {
            Place::Window(i) => Some(&self.slots[i]).filter(|level| level.orders > 0),
            Place::Below(Ok(j)) => Some(&self.below[j].1),
            Place::Below(Err(_)) | Place::Above => None,
        }
    }

    /// The level at `key`, which holds an order.
    #[inline]
    fn level_mut(&mut self, key: u64) -> &mut Level {
        match self.place(key) {
            Place::Window(i) => &mut self.slots[i],
            Place::Below(Ok(j)) => &mut self.below[j].1,
            Place::Below(Err(_)) | Place::Above => unreachable!("a resting order's level exists"),
        }
    }

    #[inline]
    fn best_key(&self) -> Option<u64> {
        (self.in_window > 0).then(|| self.base + self.top as u64)
    }

    #[inline]
    fn best_mut(&mut self) -> Option<&mut Level> {
        (self.in_window > 0).then(|| &mut self.slots[self.top])
    }

    /// The level at `key`, made (with no orders) if there was none; the
    /// caller puts an order in it before the ladder is used again.
    #[inline]
    fn entry(&mut self, key: u64) -> &mut Level {
        loop {
            match self.place(key) {
                Place::Window(i) => {
                    if self.slots[i].orders == 0 {
                        self.occupied[i / 64] |= 1 << (i % 64);
                        self.in_window += 1;
                        if self.in_window == 1 || i > self.top {
                            self.top = i;
                        }
                    }
                    return &mut self.slots[i];
                }
                Place::Below(Ok(j)) => return &mut self.below[j].1,
                Place::Below(Err(j)) => {
                    let top = self.base + self.top as u64;
                    if self.in_window == 0 || top - key < WINDOW_MAX as u64 / 2 {
                        // Worse than the window but close enough to the top: widen it.
                        let low = if self.in_window == 0 { key } else { key.min(self.lowest_in_window()) };
                        let high = if self.in_window == 0 { key } else { top };
                        self.frame_around(low, high);
                    } else {
                        self.below.insert(j, (key, EMPTY_LEVEL));
                        return &mut self.below[j].1;
                    }
                }
                Place::Above => {
                    if self.in_window == 0 {
                        self.frame_around(key, key);
                    } else {
                        let lowest = self.lowest_in_window();
                        if key - lowest < WINDOW_MAX as u64 / 2 {
                            self.frame_around(lowest, key);
                        } else {
                            // A far better price: the window follows it, the levels it leaves go below.
                            let high = key.saturating_add(WINDOW_MAX as u64 / 4);
                            self.frame(high.saturating_sub(WINDOW_MAX as u64 - 1), WINDOW_MAX);
                        }
                    }
                }
            }
        }
    }

    /// Drops the level at `key`, which has just lost its last order.
    #[inline]
    fn release(&mut self, key: u64) {
        match self.place(key) {
            Place::Window(i) => {
                self.occupied[i / 64] &= !(1 << (i % 64));
                self.in_window -= 1;
                if self.in_window == 0 {
                    if let Some(&(best_below, _)) = self.below.last() {
                        let reach = (self.slots.len() as u64 / 2).max(1);
                        let low = self.below[0].0.max(best_below.saturating_sub(reach - 1));
                        self.frame_around(low, best_below);
                    }
                } else if i == self.top {
                    self.top = self.occupied_at_or_below(i).expect("the window still holds a level");
                }
            }
            Place::Below(Ok(j)) => {
                self.below.remove(j);
            }
            Place::Below(Err(_)) | Place::Above => unreachable!("a resting order's level exists"),
        }
    }

    /// The highest occupied slot index at or below `i`.
    #[inline]
    fn occupied_at_or_below(&self, i: usize) -> Option<usize> {
        let mut word = i / 64;
        let mut bits = self.occupied[word] & (u64::MAX >> (63 - i % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + 63 - bits.leading_zeros() as usize);
            }
            if word == 0 {
                return None;
            }
            word -= 1;
            bits = self.occupied[word];
        }
    }

    fn lowest_in_window(&self) -> u64 {
        let (word, bits) = self.occupied.iter().enumerate().find(|(_, bits)| **bits != 0).expect("the window holds a level");
        self.base + (word * 64 + bits.trailing_zeros() as usize) as u64
    }

    /// A window covering keys `low..=high` (at most half of `WINDOW_MAX`
    /// of them, and every level of the window at most `high`), with as much
    /// room again around them, never smaller than the one it replaces. The
    /// callers keep spans to half a window so that the room is never small:
    /// a window moved to within a tick of a span would move again at the
    /// next tick.
    fn frame_around(&mut self, low: u64, high: u64) {
        let span = high - low + 1;
        let wanted = (span.min(WINDOW_MAX as u64) * 2).next_power_of_two().max(WINDOW_INITIAL as u64);
        let length = (wanted.min(WINDOW_MAX as u64) as usize).max(self.slots.len());
        let slack = length as u64 - span;
        let top = high.saturating_add(slack / 2);
        self.frame(top.saturating_sub(length as u64 - 1), length);
    }

    /// Moves the window to `base..base + length` (whose end must be at or
    /// above every level in the old window): levels of the old window below
    /// `base` go below, levels below that are now in the window come up.
    fn frame(&mut self, base: u64, length: usize) {
        let () = Self::WINDOW_MAX_IS_A_POWER_OF_TWO;
        let base = base.min(u64::MAX - (length as u64 - 1));
        let old_base = self.base;
        let old_slots = std::mem::replace(&mut self.slots, vec![EMPTY_LEVEL; length]);
        let old_occupied = std::mem::replace(&mut self.occupied, vec![0; length.div_ceil(64)]);
        self.base = base;
        self.in_window = 0;
        let put = |ladder: &mut Self, key: u64, level: Level| {
            if key < base {
                ladder.below.push((key, level));
            } else {
                let i = (key - base) as usize;
                debug_assert!(i < length, "a level above the new window");
                ladder.slots[i] = level;
                ladder.occupied[i / 64] |= 1 << (i % 64);
                ladder.in_window += 1;
            }
        };
        // Ascending keys: what goes below lands above everything already there.
        for (word, &bits) in old_occupied.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let i = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                put(self, old_base + i as u64, old_slots[i]);
            }
        }
        let first_up = self.below.partition_point(|(key, _)| *key < base);
        for (key, level) in self.below.split_off(first_up) {
            put(self, key, level);
        }
        if self.in_window > 0 {
            self.top = self.occupied_at_or_below(length - 1).expect("the window holds a level");
        }
    }

    /// Levels best first, with their keys.
    fn iter(&self) -> impl Iterator<Item = (u64, &Level)> {
        let window = (self.in_window > 0)
            .then(|| std::iter::successors(Some(self.top), |&i| i.checked_sub(1).and_then(|i| self.occupied_at_or_below(i))))
            .into_iter()
            .flatten()
            .map(|i| (self.base + i as u64, &self.slots[i]));
        window.chain(self.below.iter().rev().map(|(key, level)| (*key, level)))
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
        ladder.best_key().map(|_| ladder.slots[ladder.top].head)
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
