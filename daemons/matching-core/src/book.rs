//! The one interface every order book implements. The reference book and the
//! fast book both implement it and both run the same test suite; a property
//! test feeds both the same random commands and compares every event.

use crate::types::{BookLimits, Event, MarketSpec, NewOrder, OrderId, PriceLevel, PriceTicks, QuantityLots, RestingOrder, Side, UserId};

/// One market's book with its matching rules.
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
}
