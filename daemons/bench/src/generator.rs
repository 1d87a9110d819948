//! A seeded command generator in the style of exchange-core's test generator:
//! a pre-filled book per market, then a mix of GTC, IOC, cancel and move
//! (price amend) commands, and optionally stop orders armed and cancelled.
//! It runs every command through the fast engine while generating, so that
//! cancels and moves name orders that are really live and moves carry their
//! true remaining quantity.

use matching_core::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rustc_hash::FxHashMap;

pub const MID_PRICE_TICKS: u64 = 100_000;

#[derive(Clone, Debug)]
pub struct GeneratorConfig {
    pub seed: u64,
    pub markets: u32,
    /// Resting orders the pre-fill aims for in each market.
    pub resting_per_market: usize,
    /// Price levels each side of the mid that passive orders spread over.
    pub levels_per_side: u64,
    pub users: u64,
    pub commands: usize,
    /// Market load follows a Pareto law with this shape (None: uniform).
    pub pareto_shape: Option<f64>,
    /// Percent of the commands that are stop orders: arming one (stop-market
    /// or stop-limit, its trigger up to 5% from the last trade) while the
    /// market's armed stops are fewer than its resting orders' target, else
    /// cancelling one, as traders trail their stops; 0 draws nothing for
    /// them.
    pub stop_percent: u32,
}

impl GeneratorConfig {
    /// exchange-core's single-symbol benchmark shape.
    pub fn single_market(commands: usize) -> Self {
        GeneratorConfig { seed: 1, markets: 1, resting_per_market: 1_000, levels_per_side: 950, users: 2_000, commands, pareto_shape: None, stop_percent: 0 }
    }

    pub fn hundred_markets(commands: usize) -> Self {
        GeneratorConfig {
            seed: 2,
            markets: 100,
            resting_per_market: 1_000,
            levels_per_side: 950,
            users: 2_000,
            commands,
            pareto_shape: Some(1.16),
            stop_percent: 0,
        }
    }

    /// The same workload with `percent` of its commands arming stops.
    pub fn with_stops(self, percent: u32) -> Self {
        GeneratorConfig { stop_percent: percent, ..self }
    }
}

/// What kind of command each generated one is, for the peers' adapters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gtc,
    Ioc,
    Cancel,
    Move,
    Stop,
    StopCancel,
}

pub struct Workload {
    pub config: GeneratorConfig,
    pub specs: Vec<MarketSpec>,
    /// Pre-fill commands (not measured).
    pub prefill: Vec<Command>,
    /// The measured stream.
    pub commands: Vec<Command>,
    pub kinds: Vec<Kind>,
    /// The side of each command's order, so that adapters of books that do not
    /// track it need no map of their own.
    pub sides: Vec<Side>,
    /// Resting orders and price levels (both sides) after the pre-fill and at the end, summed over markets.
    pub book_after_prefill: (usize, usize),
    pub book_at_end: (usize, usize),
    pub fills: u64,
    pub stops_fired: u64,
    /// Armed stops at the end, summed over markets.
    pub stops_at_end: usize,
}

pub fn spec(id: MarketId) -> MarketSpec {
    MarketSpec {
        id,
        quote_units_per_tick_lot: 1,
        tick_lot_scale: 0,
        maker_fee_ppm: 1_000,
        taker_fee_ppm: 2_000,
        price_ticks_max: 10_000_000,
        quantity_lots_max: 1_000_000,
        price_band_ppm: 0,
    }
}

struct Live {
    ids: Vec<OrderId>,
    position: FxHashMap<OrderId, usize>,
}

impl Live {
    fn insert(&mut self, id: OrderId) {
        self.position.insert(id, self.ids.len());
        self.ids.push(id);
    }
    fn remove(&mut self, id: OrderId) {
        if let Some(i) = self.position.remove(&id) {
            self.ids.swap_remove(i);
            if let Some(&moved) = self.ids.get(i) {
                self.position.insert(moved, i);
            }
        }
    }
}

/// A resting order the generator may cancel or move: market, owner, side,
/// price, open quantity, filled quantity (an amend names the total).
type LiveOrder = (MarketId, UserId, Side, PriceTicks, QuantityLots, QuantityLots);

struct Generator {
    config: GeneratorConfig,
    rng: SmallRng,
    engine: FastEngine,
    live: Vec<Live>,
    /// Each market's armed stops, and their owners.
    armed: Vec<Live>,
    armed_owners: FxHashMap<OrderId, UserId>,
    /// order id -> (market, user, side, price, remaining, filled)
    orders: FxHashMap<OrderId, LiveOrder>,
    next_order_id: OrderId,
    fills: u64,
    stops_fired: u64,
    events: Vec<Event>,
    market_weights: Vec<f64>,
    last_price: Vec<Option<PriceTicks>>,
}

impl Generator {
    fn apply(&mut self, command: Command) -> Command {
        self.events.clear();
        self.engine.execute(&command, &mut self.events);
        for event in &self.events {
            match *event {
                Event::Accepted { market, order_id, user, side, price: Some(price), quantity } => {
                    self.orders.insert(order_id, (market, user, side, price, quantity, 0));
                    self.live[market as usize].insert(order_id);
                }
                Event::Amended { order_id, price, remaining, .. } => {
                    if let Some(order) = self.orders.get_mut(&order_id) {
                        order.3 = price;
                        order.4 = remaining;
                    }
                }
                Event::StopArmed { market, order_id, user } => {
                    self.armed[market as usize].insert(order_id);
                    self.armed_owners.insert(order_id, user);
                }
                Event::StopTriggered { market, order_id, .. } => {
                    self.stops_fired += 1;
                    self.armed[market as usize].remove(order_id);
                    self.armed_owners.remove(&order_id);
                }
                Event::Fill(f) => {
                    self.fills += 1;
                    self.last_price[f.market as usize] = Some(f.price);
                    for id in [f.maker_order, f.taker_order] {
                        if let Some(order) = self.orders.get_mut(&id) {
                            order.4 -= f.quantity;
                            order.5 += f.quantity;
                        }
                    }
                }
                Event::Cancelled { market, order_id, .. } | Event::Done { market, order_id, .. } => {
                    self.orders.remove(&order_id);
                    self.live[market as usize].remove(order_id);
                    if self.armed_owners.remove(&order_id).is_some() {
                        self.armed[market as usize].remove(order_id);
                    }
                }
                _ => {}
            }
        }
        command
    }

    fn pick_market(&mut self) -> MarketId {
        let x: f64 = self.rng.random::<f64>() * self.market_weights.last().copied().unwrap_or(1.0);
        self.market_weights.partition_point(|&w| w < x).min(self.config.markets as usize - 1) as MarketId
    }

    fn best(&self, market: MarketId, side: Side) -> Option<PriceTicks> {
        self.engine.book(market).and_then(|b| b.depth(side, 1).first().map(|l| l.price))
    }

    /// A passive price: skewed towards the top of the book, within `levels_per_side`.
    fn passive_price(&mut self, side: Side) -> PriceTicks {
        let u: f64 = self.rng.random();
        let offset = 1 + (u.powf(1.3) * self.config.levels_per_side as f64) as u64;
        match side {
            Side::Buy => MID_PRICE_TICKS - offset,
            Side::Sell => MID_PRICE_TICKS + offset,
        }
    }

    fn new_order(&mut self, market: MarketId, side: Side, price: PriceTicks, time_in_force: TimeInForce) -> Command {
        self.next_order_id += 1;
        Command::Place(NewOrder {
            market,
            order_id: self.next_order_id,
            user: 1 + self.rng.random_range(0..self.config.users),
            side,
            kind: OrderKind::Limit,
            time_in_force,
            post_only: false,
            price: Some(price),
            quantity: 1 + self.rng.random_range(0..50),
            self_trade: SelfTradePrevention::CancelTaker,
        })
    }

    fn random_side(&mut self) -> Side {
        if self.rng.random::<bool>() {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    fn gtc(&mut self, market: MarketId) -> Command {
        let side = self.random_side();
        // One in ten GTC orders crosses a little and trades; the rest rest.
        let price = match (self.rng.random_range(0..10), self.best(market, side.opposite())) {
            (0, Some(best)) => match side {
                Side::Buy => best + self.rng.random_range(0..3),
                Side::Sell => best.saturating_sub(self.rng.random_range(0..3)).max(1),
            },
            _ => self.passive_price(side),
        };
        self.new_order(market, side, price, TimeInForce::Gtc)
    }

    fn ioc(&mut self, market: MarketId) -> Command {
        let side = self.random_side();
        let price = match self.best(market, side.opposite()) {
            Some(best) => match side {
                Side::Buy => best + self.rng.random_range(0..4),
                Side::Sell => best.saturating_sub(self.rng.random_range(0..4)).max(1),
            },
            None => MID_PRICE_TICKS,
        };
        self.new_order(market, side, price, TimeInForce::Ioc)
    }

    /// A stop-loss up to 5% (5,000 ticks) from the last trade, as traders
    /// set them (the book spans about 1% each way): a sell fires at or
    /// below, a buy at or above; half stop-market (IOC up to a protection
    /// price), half stop-limit (GTC, a couple of ticks through the trigger).
    fn stop(&mut self, market: MarketId) -> Command {
        let side = self.random_side();
        let reference = self.last_price[market as usize].unwrap_or(MID_PRICE_TICKS);
        let distance = self.rng.random_range(1..=5_000);
        // Past the trigger in the order's direction: down for a sell, up for a buy.
        let through = |price: u64, ticks: u64| match side {
            Side::Sell => price.saturating_sub(ticks).max(1),
            Side::Buy => price + ticks,
        };
        let direction = if side == Side::Sell { TriggerDirection::AtOrBelow } else { TriggerDirection::AtOrAbove };
        let trigger = through(reference, distance);
        let Command::Place(mut order) = self.new_order(market, side, through(trigger, 2), TimeInForce::Gtc) else { unreachable!("a place") };
        if self.rng.random::<bool>() {
            (order.kind, order.time_in_force, order.price) = (OrderKind::Market, TimeInForce::Ioc, Some(through(trigger, 10)));
        }
        Command::PlaceStop(ArmedStop { order, trigger: Trigger { source: TriggerSource::LastTrade, direction, price: trigger } })
    }

    fn random_live(&mut self, market: MarketId) -> Option<(OrderId, LiveOrder)> {
        let live = &self.live[market as usize];
        if live.ids.is_empty() {
            return None;
        }
        let id = live.ids[self.rng.random_range(0..live.ids.len())];
        self.orders.get(&id).map(|o| (id, *o))
    }

    fn generate(&mut self, kind: Kind, market: MarketId) -> Command {
        match kind {
            Kind::Gtc => self.gtc(market),
            Kind::Ioc => self.ioc(market),
            Kind::Stop => self.stop(market),
            Kind::StopCancel => {
                let armed = &self.armed[market as usize].ids;
                if armed.is_empty() {
                    return self.stop(market);
                }
                let order_id = armed[self.rng.random_range(0..armed.len())];
                Command::Cancel { market, order_id, user: self.armed_owners[&order_id] }
            }
            Kind::Cancel => match self.random_live(market) {
                Some((order_id, (_, user, ..))) => Command::Cancel { market, order_id, user },
                None => self.gtc(market),
            },
            Kind::Move => match self.random_live(market) {
                Some((order_id, (_, user, _, price, remaining, filled))) => {
                    // A step of up to 5 ticks either way, kept inside the spread band.
                    let step = self.rng.random_range(1..=5);
                    let up = self.rng.random::<bool>();
                    let moved = if up { price + step } else { price.saturating_sub(step).max(1) };
                    let band = self.config.levels_per_side;
                    let price = moved.clamp(MID_PRICE_TICKS - band - 5, MID_PRICE_TICKS + band + 5);
                    Command::Amend { market, order_id, user, price, quantity: remaining + filled }
                }
                None => self.gtc(market),
            },
        }
    }

    fn book_shape(&self) -> (usize, usize) {
        let mut orders = 0;
        let mut levels = 0;
        for market in self.engine.market_ids() {
            let book = self.engine.book(market).expect("listed");
            orders += book.resting_count();
            levels += book.depth(Side::Buy, usize::MAX).len() + book.depth(Side::Sell, usize::MAX).len();
        }
        (orders, levels)
    }
}

/// Deterministic for a given config.
pub fn generate(config: &GeneratorConfig) -> Workload {
    let limits = EngineLimits {
        markets_max: config.markets.max(1),
        book: BookLimits { resting_orders_max: 1 << 22, orders_per_user_max: 1 << 20, price_levels_per_side_max: 1 << 20 },
    };
    let market_weights = (0..config.markets)
        .scan(0.0, |total, i| {
            *total += match config.pareto_shape {
                Some(shape) => 1.0 / ((i + 1) as f64).powf(shape),
                None => 1.0,
            };
            Some(*total)
        })
        .collect();
    let mut generator = Generator {
        config: config.clone(),
        rng: SmallRng::seed_from_u64(config.seed),
        engine: FastEngine::new(limits),
        live: (0..config.markets).map(|_| Live { ids: Vec::new(), position: FxHashMap::default() }).collect(),
        armed: (0..config.markets).map(|_| Live { ids: Vec::new(), position: FxHashMap::default() }).collect(),
        armed_owners: FxHashMap::default(),
        orders: FxHashMap::default(),
        next_order_id: 0,
        fills: 0,
        stops_fired: 0,
        events: Vec::new(),
        market_weights,
        last_price: vec![None; config.markets as usize],
    };
    let specs: Vec<MarketSpec> = (0..config.markets).map(spec).collect();
    let mut prefill: Vec<Command> = specs.iter().map(|s| generator.apply(Command::AddMarket(*s))).collect();
    for market in 0..config.markets {
        while generator.live[market as usize].ids.len() < config.resting_per_market {
            let side = generator.random_side();
            let price = generator.passive_price(side);
            let command = generator.new_order(market, side, price, TimeInForce::Gtc);
            prefill.push(generator.apply(command));
        }
    }
    let book_after_prefill = generator.book_shape();
    let mut commands = Vec::with_capacity(config.commands);
    let mut kinds = Vec::with_capacity(config.commands);
    let mut sides = Vec::with_capacity(config.commands);
    for _ in 0..config.commands {
        let market = generator.pick_market();
        // Keep each book near its target size: below it, cancels become GTCs.
        let below_target = generator.live[market as usize].ids.len() < config.resting_per_market * 9 / 10;
        let stop = config.stop_percent > 0 && generator.rng.random_range(0..100) < config.stop_percent;
        // Stops leave as they come: above as many as the resting orders' target, a stop command cancels one.
        let stops_full = stop && generator.armed[market as usize].ids.len() >= config.resting_per_market;
        let kind = match generator.rng.random_range(0..100) {
            _ if stops_full => Kind::StopCancel,
            _ if stop => Kind::Stop,
            0..=8 => Kind::Gtc,
            9..=11 => Kind::Ioc,
            12..=17 if below_target => Kind::Gtc,
            12..=17 => Kind::Cancel,
            _ => Kind::Move,
        };
        let command = generator.generate(kind, market);
        let kind = match command {
            Command::Place(NewOrder { time_in_force: TimeInForce::Gtc, .. }) => Kind::Gtc,
            Command::Place(_) => Kind::Ioc,
            Command::Cancel { order_id, .. } if generator.armed_owners.contains_key(&order_id) => Kind::StopCancel,
            Command::Cancel { .. } => Kind::Cancel,
            Command::PlaceStop(_) => Kind::Stop,
            _ => Kind::Move,
        };
        let side = match command {
            Command::Place(order) | Command::PlaceStop(ArmedStop { order, .. }) => order.side,
            Command::Cancel { order_id, .. } | Command::Amend { order_id, .. } => generator.orders.get(&order_id).map_or(Side::Buy, |o| o.2),
            _ => Side::Buy,
        };
        commands.push(generator.apply(command));
        kinds.push(kind);
        sides.push(side);
    }
    let book_at_end = generator.book_shape();
    Workload {
        config: config.clone(),
        specs,
        prefill,
        commands,
        kinds,
        sides,
        book_after_prefill,
        book_at_end,
        fills: generator.fills,
        stops_fired: generator.stops_fired,
        stops_at_end: generator.armed.iter().map(|a| a.ids.len()).sum(),
    }
}
