//! The same command stream fed to other open order books, each through the
//! cheapest faithful mapping of our commands onto its API.

use matching_core::{Command, NewOrder, Side, TimeInForce};

use crate::generator::Workload;

/// One order book under test: apply one command, count trades.
pub trait Peer {
    const NAME: &'static str;
    fn new(workload: &Workload) -> Self;
    /// `side` is the side of the command's order (the generator knows it).
    fn apply(&mut self, command: &Command, side: Side);
    fn trades(&self) -> u64;
}

/// lobster: one single-threaded book per market. It has no IOC and no amend:
/// IOC is a limit order cancelled if anything of it rests; a move is cancel
/// and re-add at the new price with the remaining quantity.
pub struct Lobster {
    books: Vec<lobster::OrderBook>,
    trades: u64,
}

impl Lobster {
    fn count(&mut self, event: &lobster::OrderEvent) -> bool {
        match event {
            lobster::OrderEvent::Filled { fills, .. } => {
                self.trades += fills.len() as u64;
                false
            }
            lobster::OrderEvent::PartiallyFilled { fills, .. } => {
                self.trades += fills.len() as u64;
                true
            }
            lobster::OrderEvent::Placed { .. } => true,
            _ => false,
        }
    }
}

fn lobster_side(side: Side) -> lobster::Side {
    match side {
        Side::Buy => lobster::Side::Bid,
        Side::Sell => lobster::Side::Ask,
    }
}

impl Peer for Lobster {
    const NAME: &'static str = "lobster 0.7.0";

    fn new(workload: &Workload) -> Self {
        // Arena sized for every order id the workload uses: lobster indexes it by id.
        let capacity = workload.prefill.len() + workload.commands.len();
        let books = workload.specs.iter().map(|_| lobster::OrderBook::new(capacity / workload.specs.len().max(1) + 1024, 64, false)).collect();
        Lobster { books, trades: 0 }
    }

    #[inline]
    fn apply(&mut self, command: &Command, order_side: Side) {
        match *command {
            Command::Place(NewOrder { market, order_id, side, price: Some(price), quantity, time_in_force, .. }) => {
                let book = market as usize;
                let event = self.books[book].execute(lobster::OrderType::Limit { id: order_id as u128, side: lobster_side(side), qty: quantity, price });
                let rests = self.count(&event);
                if rests && time_in_force != TimeInForce::Gtc {
                    self.books[book].execute(lobster::OrderType::Cancel { id: order_id as u128 });
                }
            }
            Command::Cancel { market, order_id, .. } => {
                self.books[market as usize].execute(lobster::OrderType::Cancel { id: order_id as u128 });
            }
            Command::Amend { market, order_id, price, quantity, .. } => {
                let book = market as usize;
                let side = lobster_side(order_side);
                // Re-entered with the amend's total: a moved order's earlier
                // fills rest again here, so this book runs a little deeper.
                self.books[book].execute(lobster::OrderType::Cancel { id: order_id as u128 });
                let event = self.books[book].execute(lobster::OrderType::Limit { id: order_id as u128, side, qty: quantity, price });
                self.count(&event);
            }
            _ => {}
        }
    }

    fn trades(&self) -> u64 {
        self.trades
    }
}

/// orderbook-rs: a concurrent book (lock-free skip lists), one per market,
/// with native IOC and price update.
pub struct OrderbookRs {
    books: Vec<orderbook_rs::OrderBook<()>>,
    trades: u64,
}

fn orderbook_rs_side(side: Side) -> pricelevel::Side {
    match side {
        Side::Buy => pricelevel::Side::Buy,
        Side::Sell => pricelevel::Side::Sell,
    }
}

impl Peer for OrderbookRs {
    const NAME: &'static str = "orderbook-rs 0.15.3";

    fn new(workload: &Workload) -> Self {
        let books = workload.specs.iter().map(|s| orderbook_rs::OrderBook::new(&format!("M{}", s.id))).collect();
        OrderbookRs { books, trades: 0 }
    }

    #[inline]
    fn apply(&mut self, command: &Command, _side: Side) {
        match *command {
            Command::Place(NewOrder { market, order_id, side, price: Some(price), quantity, time_in_force, .. }) => {
                let tif = if time_in_force == TimeInForce::Gtc { pricelevel::TimeInForce::Gtc } else { pricelevel::TimeInForce::Ioc };
                let id = pricelevel::Id::from_u64(order_id);
                // Matches, then rests a GTC remainder; an IOC remainder is dropped (as an error).
                if let Ok((_, Some(result))) =
                    self.books[market as usize].add_limit_order_with_result(id, price as u128, quantity, orderbook_rs_side(side), tif, None)
                {
                    self.trades += result.match_result.trades().len() as u64;
                }
            }
            Command::Cancel { market, order_id, .. } => {
                let _ = self.books[market as usize].cancel_order(pricelevel::Id::from_u64(order_id));
            }
            Command::Amend { market, order_id, price, .. } => {
                let update =
                    pricelevel::OrderUpdate::UpdatePrice { order_id: pricelevel::Id::from_u64(order_id), new_price: pricelevel::Price::new(price as u128) };
                let _ = self.books[market as usize].update_order(update);
            }
            _ => {}
        }
    }

    fn trades(&self) -> u64 {
        self.trades
    }
}
