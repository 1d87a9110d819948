//! One market's armed stop orders, indexed by trigger price: which fire
//! when the last trade moves, and in what order. A pure structure; the
//! engine decides when to look and places what fires.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::types::{ArmedStop, OrderId, PriceTicks, TriggerDirection, UserId};

pub struct StopBook {
    /// Fire once the price is at or above: the lowest trigger is reached first.
    above: BTreeMap<(PriceTicks, u64), OrderId>,
    /// Fire once the price is at or below: the highest trigger is reached first.
    below: BTreeMap<(Reverse<PriceTicks>, u64), OrderId>,
    /// Each stop and its arming sequence.
    stops: FxHashMap<OrderId, (ArmedStop, u64)>,
    per_user: FxHashMap<UserId, u32>,
    next_sequence: u64,
    /// The nearest triggers each way (MAX and 0 when none): every trade
    /// asks whether a stop fires, and two comparisons answer it.
    lowest_above: PriceTicks,
    highest_below: PriceTicks,
}

impl Default for StopBook {
    fn default() -> Self {
        StopBook {
            above: BTreeMap::new(),
            below: BTreeMap::new(),
            stops: FxHashMap::default(),
            per_user: FxHashMap::default(),
            next_sequence: 0,
            lowest_above: PriceTicks::MAX,
            highest_below: 0,
        }
    }
}

impl StopBook {
    /// Whether a last trade at `price` fires any stop.
    #[inline]
    fn any_fired(&self, price: PriceTicks) -> bool {
        price >= self.lowest_above || price <= self.highest_below
    }

    fn update_nearest(&mut self) {
        self.lowest_above = self.above.first_key_value().map_or(PriceTicks::MAX, |((price, _), _)| *price);
        self.highest_below = self.below.first_key_value().map_or(0, |((Reverse(price), _), _)| *price);
    }

    pub fn len(&self) -> usize {
        self.stops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    pub fn contains(&self, order_id: OrderId) -> bool {
        self.stops.contains_key(&order_id)
    }

    pub fn user_count(&self, user: UserId) -> u32 {
        self.per_user.get(&user).copied().unwrap_or(0)
    }

    /// Arms a stop behind every one armed before it.
    pub fn arm(&mut self, stop: ArmedStop) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let (id, price) = (stop.order.order_id, stop.trigger.price);
        match stop.trigger.direction {
            TriggerDirection::AtOrAbove => self.above.insert((price, sequence), id),
            TriggerDirection::AtOrBelow => self.below.insert((Reverse(price), sequence), id),
        };
        self.stops.insert(id, (stop, sequence));
        *self.per_user.entry(stop.order.user).or_default() += 1;
        match stop.trigger.direction {
            TriggerDirection::AtOrAbove => self.lowest_above = self.lowest_above.min(price),
            TriggerDirection::AtOrBelow => self.highest_below = self.highest_below.max(price),
        }
    }

    /// Disarms `user`'s stop `order_id`, if there is one.
    pub fn cancel(&mut self, order_id: OrderId, user: UserId) -> Option<ArmedStop> {
        match self.stops.get(&order_id) {
            Some((stop, _)) if stop.order.user == user => self.remove(order_id),
            _ => None,
        }
    }

    fn remove(&mut self, order_id: OrderId) -> Option<ArmedStop> {
        let (stop, sequence) = self.stops.remove(&order_id)?;
        match stop.trigger.direction {
            TriggerDirection::AtOrAbove => self.above.remove(&(stop.trigger.price, sequence)),
            TriggerDirection::AtOrBelow => self.below.remove(&(Reverse(stop.trigger.price), sequence)),
        };
        let user = stop.order.user;
        if let Some(count) = self.per_user.get_mut(&user) {
            *count -= 1;
            if *count == 0 {
                self.per_user.remove(&user);
            }
        }
        self.update_nearest();
        Some(stop)
    }

    /// `user`'s stops, oldest first.
    pub fn of_user(&self, user: UserId) -> Vec<OrderId> {
        if self.user_count(user) == 0 {
            return Vec::new();
        }
        let mut mine: Vec<(u64, OrderId)> = self.stops.iter().filter(|(_, (stop, _))| stop.order.user == user).map(|(id, (_, seq))| (*seq, *id)).collect();
        mine.sort_unstable();
        mine.into_iter().map(|(_, id)| id).collect()
    }

    /// Takes the next stop that a last trade at `price` fires: of the two
    /// directions' nearest triggers reached, the one armed first.
    #[inline]
    pub fn take_fired(&mut self, price: PriceTicks) -> Option<ArmedStop> {
        if !self.any_fired(price) {
            return None;
        }
        let above = self.above.first_key_value().filter(|((trigger, _), _)| price >= *trigger).map(|((_, seq), id)| (*seq, *id));
        let below = self.below.first_key_value().filter(|((Reverse(trigger), _), _)| price <= *trigger).map(|((_, seq), id)| (*seq, *id));
        let (_, id) = match (above, below) {
            (Some(a), Some(b)) => a.min(b),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => return None,
        };
        self.remove(id)
    }

    /// Every armed stop, oldest first: what a snapshot holds.
    pub fn armed(&self) -> Vec<ArmedStop> {
        let mut all: Vec<&(ArmedStop, u64)> = self.stops.values().collect();
        all.sort_unstable_by_key(|(_, seq)| *seq);
        all.into_iter().map(|(stop, _)| *stop).collect()
    }
}
