//! One market's armed stop orders, indexed by trigger price: which fire
//! when the last trade moves, and in what order. A pure structure; the
//! engine decides when to look and places what fires.
//!
//! Laid out as the fast store lays out a book, so that arming, firing and
//! cancelling a stop cost what placing and cancelling an order do: stops
//! live in a slab and are chained into one FIFO list per trigger price by
//! slab index (freed slots are reused); each direction's trigger prices are
//! a [`Ladder`], the nearest trigger its best level; an order id index of
//! slab indices finds a stop to cancel.

use rustc_hash::FxHashMap;

use crate::ladder::{Ladder, Level, NIL};
use crate::types::{ArmedStop, OrderId, PriceTicks, TriggerDirection, UserId};

/// Ticks a direction's direct-mapped window spans at most: wider than a
/// book's, because traders set stops percents away from the price.
pub const STOP_WINDOW_MAX: usize = 16_384;

/// A trigger price as a ladder key: a higher key is reached first.
#[inline]
fn key(direction: TriggerDirection, price: PriceTicks) -> u64 {
    match direction {
        TriggerDirection::AtOrAbove => !price,
        TriggerDirection::AtOrBelow => price,
    }
}

#[inline]
fn trigger_price(direction: TriggerDirection, key: u64) -> PriceTicks {
    match direction {
        TriggerDirection::AtOrAbove => !key,
        TriggerDirection::AtOrBelow => key,
    }
}

#[derive(Clone, Copy)]
struct Node {
    stop: ArmedStop,
    /// When it was armed: of two stops a price fires, the older fires first.
    sequence: u64,
    prev: u32,
    next: u32,
}

/// `WINDOW_MAX` as the fast store's: tests shrink it to move the windows all the time.
#[derive(Default)]
pub struct StopBook<const WINDOW_MAX: usize = STOP_WINDOW_MAX> {
    /// Fire once the price is at or above: the lowest trigger is reached first.
    above: Ladder<WINDOW_MAX>,
    /// Fire once the price is at or below: the highest trigger is reached first.
    below: Ladder<WINDOW_MAX>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// Each armed stop's slot in `nodes`.
    slots: FxHashMap<OrderId, u32>,
    per_user: FxHashMap<UserId, u32>,
    next_sequence: u64,
}

impl<const WINDOW_MAX: usize> StopBook<WINDOW_MAX> {
    #[inline]
    fn ladder_mut(&mut self, direction: TriggerDirection) -> &mut Ladder<WINDOW_MAX> {
        match direction {
            TriggerDirection::AtOrAbove => &mut self.above,
            TriggerDirection::AtOrBelow => &mut self.below,
        }
    }

    /// The oldest stop at the nearest trigger of `direction`, if a last trade at `price` reaches it.
    #[inline]
    fn fired(&self, direction: TriggerDirection, price: PriceTicks) -> Option<(u64, u32)> {
        let ladder = match direction {
            TriggerDirection::AtOrAbove => &self.above,
            TriggerDirection::AtOrBelow => &self.below,
        };
        let trigger = trigger_price(direction, ladder.best_key()?);
        let reached = match direction {
            TriggerDirection::AtOrAbove => price >= trigger,
            TriggerDirection::AtOrBelow => price <= trigger,
        };
        if !reached {
            return None;
        }
        let head = ladder.best()?.head;
        Some((self.nodes[head as usize].sequence, head))
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn contains(&self, order_id: OrderId) -> bool {
        self.slots.contains_key(&order_id)
    }

    pub fn user_count(&self, user: UserId) -> u32 {
        self.per_user.get(&user).copied().unwrap_or(0)
    }

    /// Arms a stop behind every one armed before it.
    pub fn arm(&mut self, stop: ArmedStop) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let node = Node { stop, sequence, prev: NIL, next: NIL };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = node;
                slot
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let (direction, quantity) = (stop.trigger.direction, stop.order.quantity);
        let level = self.ladder_mut(direction).entry(key(direction, stop.trigger.price));
        if level.orders == 0 {
            *level = Level { head: slot, tail: slot, quantity, orders: 1 };
        } else {
            let tail = level.tail;
            level.tail = slot;
            level.quantity += quantity;
            level.orders += 1;
            self.nodes[tail as usize].next = slot;
            self.nodes[slot as usize].prev = tail;
        }
        self.slots.insert(stop.order.order_id, slot);
        *self.per_user.entry(stop.order.user).or_default() += 1;
    }

    /// Disarms `user`'s stop `order_id`, if there is one.
    pub fn cancel(&mut self, order_id: OrderId, user: UserId) -> Option<ArmedStop> {
        if self.slots.is_empty() {
            return None;
        }
        let slot = self.slots.remove(&order_id)?;
        if self.nodes[slot as usize].stop.order.user != user {
            self.slots.insert(order_id, slot);
            return None;
        }
        Some(self.unlink(slot))
    }

    fn remove(&mut self, slot: u32) -> ArmedStop {
        self.slots.remove(&self.nodes[slot as usize].stop.order.order_id);
        self.unlink(slot)
    }

    /// Takes the stop in `slot`, already out of `slots`, out of its queue.
    fn unlink(&mut self, slot: u32) -> ArmedStop {
        let Node { stop, prev, next, .. } = self.nodes[slot as usize];
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        let (direction, key) = (stop.trigger.direction, key(stop.trigger.direction, stop.trigger.price));
        let ladder = self.ladder_mut(direction);
        let level = ladder.level_mut(key);
        if prev == NIL {
            level.head = next;
        }
        if next == NIL {
            level.tail = prev;
        }
        level.quantity -= stop.order.quantity;
        level.orders -= 1;
        if level.orders == 0 {
            ladder.release(key);
        }
        self.free.push(slot);
        // A user's count stays at zero rather than leaving: traders re-arm
        // their stops, and one entry per user who ever armed one is small.
        if let Some(count) = self.per_user.get_mut(&stop.order.user) {
            *count -= 1;
        }
        stop
    }

    /// `user`'s stops, oldest first.
    pub fn of_user(&self, user: UserId) -> Vec<OrderId> {
        if self.user_count(user) == 0 {
            return Vec::new();
        }
        let mut mine: Vec<(u64, OrderId)> = self
            .slots
            .values()
            .map(|&slot| &self.nodes[slot as usize])
            .filter(|node| node.stop.order.user == user)
            .map(|node| (node.sequence, node.stop.order.order_id))
            .collect();
        mine.sort_unstable();
        mine.into_iter().map(|(_, id)| id).collect()
    }

    /// Takes the next stop that a last trade at `price` fires: of the two
    /// directions' nearest triggers reached, the one armed first.
    #[inline]
    pub fn take_fired(&mut self, price: PriceTicks) -> Option<ArmedStop> {
        let above = self.fired(TriggerDirection::AtOrAbove, price);
        let below = self.fired(TriggerDirection::AtOrBelow, price);
        let (_, slot) = match (above, below) {
            (Some(a), Some(b)) => a.min(b),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => return None,
        };
        Some(self.remove(slot))
    }

    /// Every armed stop, oldest first: what a snapshot holds.
    pub fn armed(&self) -> Vec<ArmedStop> {
        let mut all: Vec<&Node> = self.slots.values().map(|&slot| &self.nodes[slot as usize]).collect();
        all.sort_unstable_by_key(|node| node.sequence);
        all.into_iter().map(|node| node.stop).collect()
    }
}
