//! A book is one market's rules over a store of resting orders. The rules
//! (accept, fill-or-kill, take, rest or cancel, amend) are written once, in
//! `lifecycle.rs`, over the [`BookStore`] trait; the reference store and the
//! fast store implement it, so the differential test compares two data
//! structures, not two copies of the rules.

use crate::types::{BookLimits, Event, MarketSpec, NewOrder, OrderId, PriceLevel, PriceTicks, QuantityLots, RestingOrder, Side, UserId};

/// One market's book with its matching rules: what the engine drives.
///
/// The engine has already checked that the market exists and trades and that
/// the order passes [`crate::rules::check_new_order`]. A book then checks, in
/// this order: duplicate id, for an order that may rest the resting-order,
/// per-user and price-level limits, post-only, fill-or-kill; then matches.
pub trait OrderBook: Sized {
    fn new(spec: MarketSpec, limits: BookLimits) -> Self;

    fn spec(&self) -> &MarketSpec;

    fn place(&mut self, order: &NewOrder, out: &mut Vec<Event>);

    fn cancel(&mut self, order_id: OrderId, user: UserId, out: &mut Vec<Event>);

    /// Cancels the user's orders in priority order, bids before asks.
    fn cancel_all(&mut self, user: UserId, out: &mut Vec<Event>);

    fn amend(&mut self, order_id: OrderId, user: UserId, price: PriceTicks, quantity: QuantityLots, out: &mut Vec<Event>);

    /// Every resting order in canonical order: bids best first, then asks best
    /// first, each price level oldest first. Snapshots and the state hash use it.
    fn resting_orders(&self) -> Vec<RestingOrder>;

    /// Puts an order at the back of its price level without matching; used to
    /// restore a snapshot, whose orders come in canonical order.
    fn restore_resting(&mut self, order: &RestingOrder);

    /// Aggregated levels of one side, best first, at most `levels_max` of them.
    fn depth(&self, side: Side, levels_max: usize) -> Vec<PriceLevel>;

    fn resting_count(&self) -> usize;

    /// The best resting price on `side`.
    fn best_price(&self, side: Side) -> Option<PriceTicks>;

    /// The side of an open order of `user`'s.
    fn side_of(&self, order_id: OrderId, user: UserId) -> Option<Side>;

    /// Whether an order with this id rests on the book.
    fn contains(&self, order_id: OrderId) -> bool;
}

/// Where a book's resting orders are and in what priority: a data
/// structure, no rules. Priority is price first (the best price for the
/// side), then time at the price.
pub trait BookStore: Default {
    /// Where a resting order sits; valid until the store next changes.
    type Handle: Copy;

    fn find(&self, order_id: OrderId) -> Option<Self::Handle>;

    fn get(&self, handle: Self::Handle) -> &RestingOrder;

    /// The order on `side` that trades first.
    fn best(&self, side: Side) -> Option<Self::Handle>;

    /// `side`'s orders in priority order, for as long as `visit` says true.
    fn visit(&self, side: Side, visit: impl FnMut(&RestingOrder) -> bool);

    /// Adds an order at the back of its price level.
    fn insert(&mut self, order: RestingOrder);

    fn remove(&mut self, handle: Self::Handle) -> RestingOrder;

    /// What stands for an order lifted off the book (see [`Self::lift`]).
    type Lifted;

    /// Takes an order off the book while it re-enters as a taker (an
    /// amend): it no longer trades, and comes back by [`Self::relist`] or
    /// goes by [`Self::discard`]. The fast store keeps its slot and indexes
    /// meanwhile, so an amend costs no more than moving it.
    fn lift(&mut self, handle: Self::Handle) -> Self::Lifted;

    /// Puts a lifted order back, as `order`, at the back of its price level.
    fn relist(&mut self, lifted: Self::Lifted, order: RestingOrder);

    /// Forgets a lifted order: it filled, or self-trade prevention cancelled it.
    fn discard(&mut self, lifted: Self::Lifted);

    /// The best order on `side` traded `traded` lots as a maker: its rest
    /// shrinks and its maker basis grows; once nothing remains it leaves the
    /// book and this returns true.
    fn fill_best(&mut self, side: Side, traded: QuantityLots) -> bool;

    /// Sets a resting order's open quantity, keeping its place.
    fn set_remaining(&mut self, handle: Self::Handle, remaining: QuantityLots);

    /// Price levels on `side`.
    fn level_count(&self, side: Side) -> usize;

    /// Orders resting at `price` on `side`.
    fn orders_at(&self, side: Side, price: PriceTicks) -> u32;

    fn user_orders(&self, user: UserId) -> u32;

    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Aggregated levels of `side`, best first, at most `levels_max`.
    fn depth(&self, side: Side, levels_max: usize) -> Vec<PriceLevel>;
}
