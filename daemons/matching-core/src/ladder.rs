//! A direct-mapped ladder of price levels: the fast store keeps each
//! side of a book in one and the stop book each trigger direction.
//!
//! A window of levels, one slot per tick, around the best key, with a
//! bitmap of the occupied ones; levels worse than the window wait in a
//! vector sorted best-last. Finding, adding or emptying a level near the
//! best is an index, not a search, and moves no other level; the next best
//! after the best empties is a scan of the bitmap. Each level is the head
//! and tail of a FIFO list of slab indices that its owner keeps.

use crate::types::QuantityLots;

/// No slab index: the end of a level's list.
pub(crate) const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Level {
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) quantity: QuantityLots,
    /// 0 for a free slot of a ladder's window.
    pub(crate) orders: u32,
}

pub(crate) const EMPTY_LEVEL: Level = Level { head: NIL, tail: NIL, quantity: 0, orders: 0 };

/// The window's first length; it doubles as a book's span of prices grows.
const WINDOW_INITIAL: usize = 64;

/// Price levels by key: a higher key is a better level, the one reached first.
///
/// Keys `base..base + slots.len()` are direct-mapped into `slots`; levels
/// with a smaller key (worse prices) are in `below`, ascending. Invariants:
/// the best level is in the window whenever there is any level (`below` is
/// empty when the window is), `top` indexes it, and `occupied` has a bit set
/// exactly for the slots holding a level. The window grows, by powers of two,
/// up to `WINDOW_MAX` slots, and moves when a better price falls outside it
/// or when it empties while `below` still holds levels.
pub(crate) struct Ladder<const WINDOW_MAX: usize> {
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

    pub(crate) fn len(&self) -> usize {
        self.in_window + self.below.len()
    }

    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<&Level> {
        match self.place(key) {
            Place::Window(i) => Some(&self.slots[i]).filter(|level| level.orders > 0),
            Place::Below(Ok(j)) => Some(&self.below[j].1),
            Place::Below(Err(_)) | Place::Above => None,
        }
    }

    /// The level at `key`, which holds an order.
    #[inline]
    pub(crate) fn level_mut(&mut self, key: u64) -> &mut Level {
        match self.place(key) {
            Place::Window(i) => &mut self.slots[i],
            Place::Below(Ok(j)) => &mut self.below[j].1,
            Place::Below(Err(_)) | Place::Above => unreachable!("a resting order's level exists"),
        }
    }

    #[inline]
    pub(crate) fn best_key(&self) -> Option<u64> {
        (self.in_window > 0).then(|| self.base + self.top as u64)
    }

    #[inline]
    pub(crate) fn best(&self) -> Option<&Level> {
        (self.in_window > 0).then(|| &self.slots[self.top])
    }

    #[inline]
    pub(crate) fn best_mut(&mut self) -> Option<&mut Level> {
        (self.in_window > 0).then(|| &mut self.slots[self.top])
    }

    /// The level at `key`, made (with no orders) if there was none; the
    /// caller puts an order in it before the ladder is used again.
    #[inline]
    pub(crate) fn entry(&mut self, key: u64) -> &mut Level {
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
    pub(crate) fn release(&mut self, key: u64) {
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
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Level)> {
        let window = (self.in_window > 0)
            .then(|| std::iter::successors(Some(self.top), |&i| i.checked_sub(1).and_then(|i| self.occupied_at_or_below(i))))
            .into_iter()
            .flatten()
            .map(|i| (self.base + i as u64, &self.slots[i]));
        window.chain(self.below.iter().rev().map(|(key, level)| (*key, level)))
    }
}
