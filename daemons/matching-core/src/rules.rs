//! Checks that depend only on the market's spec, shared by every book so that
//! the reference and the fast book cannot disagree on them.

use crate::types::{ArmedStop, MarketSpec, NewOrder, OrderKind, PriceTicks, QuantityLots, RejectCode, Side, TimeInForce};

/// The checks an order passes before any book sees it, in this order.
pub fn check_new_order(spec: &MarketSpec, order: &NewOrder) -> Result<(), RejectCode> {
    check_quantity(spec, order.quantity)?;
    match (order.kind, order.price) {
        (OrderKind::Limit, None) => return Err(RejectCode::InvalidPrice),
        (_, Some(price)) => check_price(spec, price)?,
        (OrderKind::Market, None) => {}
    }
    // Post-only only makes sense for an order that may rest.
    if order.post_only && !order.may_rest() {
        return Err(RejectCode::InvalidOrder);
    }
    Ok(())
}

/// The checks a stop passes before it is armed: its order's, and a trigger
/// price the market could trade at.
pub fn check_stop(spec: &MarketSpec, stop: &ArmedStop) -> Result<(), RejectCode> {
    check_new_order(spec, &stop.order)?;
    check_price(spec, stop.trigger.price)
}

pub fn check_amend(spec: &MarketSpec, price: PriceTicks, quantity: QuantityLots) -> Result<(), RejectCode> {
    check_quantity(spec, quantity)?;
    check_price(spec, price)
}

fn check_quantity(spec: &MarketSpec, quantity: QuantityLots) -> Result<(), RejectCode> {
    if quantity == 0 || quantity > spec.quantity_lots_max {
        return Err(RejectCode::InvalidQuantity);
    }
    Ok(())
}

fn check_price(spec: &MarketSpec, price: PriceTicks) -> Result<(), RejectCode> {
    if price == 0 || price > spec.price_ticks_max {
        return Err(RejectCode::InvalidPrice);
    }
    Ok(())
}

/// The worst price an order may trade at: its limit, or for a market order
/// without protection, anything.
pub fn effective_limit(order: &NewOrder) -> PriceTicks {
    match (order.price, order.side) {
        (Some(price), _) => price,
        (None, Side::Buy) => PriceTicks::MAX,
        (None, Side::Sell) => 0,
    }
}

/// A market order never rests, whatever time in force it was sent with; FOK keeps
/// its all-or-nothing meaning.
pub fn is_fill_or_kill(order: &NewOrder) -> bool {
    order.time_in_force == TimeInForce::Fok
}
