//! Perpetuals over random price paths: trades between users who reserved
//! their orders' margin, marks up and down by up to 8%, fundings at random
//! premiums, the book taking the network's liquidated lots, margin moved
//! in and out, leverage changed, and restarts from the saved state. After
//! every step: the kernel's and the module's invariants (settlement and
//! funding clearing zero, positions netting to zero), money conserved over
//! every general, margin, insurance and fee account, and a refusal moved
//! nothing; after every mark-to-market and funding, no position is left
//! below its maintenance margin.

use ids::{Amount, AssetId, MarketId, UserId};
use ledger_api::perpetual::{MarginMode, MarginTier, PerpetualSpec};
use ledger_core::{AssetSpec, Kernel, KernelLimits, Leg, TransferCode};
use products::house::revenue;
use products::perpetual::{insurance, margin_account, NoOrders, Party, Perpetuals};
use products::wallet::{available, custody};
use proptest::prelude::*;
use risk_core::liquidation::Exposure;
use risk_core::margin::OpenOrder;

const USD: AssetId = 1;
/// Two markets in the same collateral: a cross account backs positions in both.
const MARKETS: [MarketId; 2] = [3, 4];
const ORACLE: UserId = 99;
const USERS: [UserId; 4] = [1, 2, 3, 4];
const START: u64 = 600_000;

fn spec(market: MarketId) -> PerpetualSpec {
    PerpetualSpec {
        market,
        collateral: USD,
        units_per_tick_lot: 1,
        tick_lot_scale: 2,
        price_ticks_max: 10_000_000,
        position_lots_max: 100_000,
        tiers: vec![
            MarginTier { notional_max: 5_000_000, initial_ppm: 50_000, maintenance_ppm: 25_000 },
            MarginTier { notional_max: 50_000_000, initial_ppm: 100_000, maintenance_ppm: 50_000 },
        ],
        leverage_default: 20,
        liquidation_penalty_ppm: 10_000,
        funding_interval_ms: 1_000,
        funding_interest_ppb: 100_000,
        funding_clamp_ppb: 500_000,
        funding_cap_ppb: 3_750_000,
        oracle_staleness_ms: 10_000,
        oracle_sources_min: 1,
        basis_window_ms: 5_000,
        mark_interval_ms: 1_000,
    }
}

#[derive(Clone, Debug)]
enum Step {
    Trade { market: usize, buyer: usize, seller: usize, lots: u64, offset: i64, fee: Amount },
    Mark { market: usize, move_ppm: i64 },
    Fund { market: usize, bid_bps: i64, ask_bps: i64 },
    Unwind { market: usize, user: usize, lots: u64, offset: i64 },
    AddMargin { market: usize, user: usize, amount: Amount },
    ReduceMargin { market: usize, user: usize, amount: Amount },
    Leverage { market: usize, user: usize, leverage: u32 },
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    let (user, market) = (0..USERS.len(), 0..MARKETS.len());
    prop_oneof![
        4 => (market.clone(), user.clone(), user.clone(), 1..600u64, -3_000..3_000i64, 0..500i128)
            .prop_map(|(market, buyer, seller, lots, offset, fee)| Step::Trade { market, buyer, seller, lots, offset, fee }),
        4 => (market.clone(), -80_000..80_000i64).prop_map(|(market, move_ppm)| Step::Mark { market, move_ppm }),
        1 => (market.clone(), -100..100i64, -100..100i64).prop_map(|(market, bid_bps, ask_bps)| Step::Fund { market, bid_bps, ask_bps }),
        2 => (market.clone(), user.clone(), 1..600u64, -1_000..1_000i64).prop_map(|(market, user, lots, offset)| Step::Unwind { market, user, lots, offset }),
        1 => (market.clone(), user.clone(), 1..500_000i128).prop_map(|(market, user, amount)| Step::AddMargin { market, user, amount }),
        1 => (market.clone(), user.clone(), 1..500_000i128).prop_map(|(market, user, amount)| Step::ReduceMargin { market, user, amount }),
        1 => (market, user, 1..25u32).prop_map(|(market, user, leverage)| Step::Leverage { market, user, leverage }),
        1 => Just(Step::Restart),
    ]
}

struct World {
    kernel: Kernel,
    perpetuals: Perpetuals,
    deposited: Amount,
    at_ms: u64,
}

fn limits() -> KernelLimits {
    KernelLimits { assets_max: 8, idempotency_keys_reserved: 16 }
}

impl World {
    /// `isolated`: per user and market.
    fn new(deposits: &[Amount], isolated: &[bool]) -> World {
        let mut kernel = Kernel::new(products::purposes(), limits());
        kernel.create_asset(&AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }).unwrap();
        for (user, amount) in USERS.iter().zip(deposits) {
            kernel.transfer(Leg { debit: custody(USD), credit: available(*user, USD), amount: *amount, code: TransferCode(101) }, "deposit", 0).unwrap();
        }
        let mut perpetuals = Perpetuals::default();
        for (index, market) in MARKETS.iter().enumerate() {
            perpetuals.create_market(&kernel, &spec(*market), 0).unwrap();
            for (user, isolated) in USERS.iter().zip(&isolated[index * USERS.len()..]) {
                let mode = if *isolated { MarginMode::Isolated } else { MarginMode::Cross };
                perpetuals.set_margin_mode(*user, *market, mode, &[]).unwrap();
            }
            perpetuals.set_oracle(*market, ORACLE, Some(1)).unwrap();
            perpetuals.submit_price(ORACLE, *market, START, 0).unwrap();
            perpetuals.set_mark(&mut kernel, *market, START, &NoOrders, 0).unwrap();
        }
        World { kernel, perpetuals, deposited: deposits.iter().sum(), at_ms: 0 }
    }

    fn mark(&self, market: MarketId) -> u64 {
        self.perpetuals.market(market).unwrap().mark.unwrap()
    }

    fn margin(&self, user: UserId, market: MarketId) -> Amount {
        self.perpetuals.position(user, market).map_or(0, |position| self.kernel.balance(margin_account(position.entity, USD)))
    }

    /// Every account a user, a market or the house holds this money in.
    fn money(&self) -> Amount {
        let users: Amount = USERS
            .iter()
            .map(|user| self.kernel.balance(available(*user, USD)) + MARKETS.iter().map(|market| self.margin(*user, *market)).sum::<Amount>())
            .sum();
        let funds: Amount = MARKETS.iter().map(|market| self.kernel.balance(insurance(*market, USD))).sum();
        users + funds + self.kernel.balance(revenue(USD))
    }

    fn check(&self) {
        self.kernel.check_invariants().unwrap();
        self.perpetuals.check_invariants(&self.kernel).unwrap();
        assert_eq!(self.money(), self.deposited, "money is conserved over every account");
        assert_eq!(self.kernel.balance(custody(USD)), -self.deposited);
    }

    /// No position in any market is left below maintenance at its mark,
    /// its equity counted as `equity` says (a cross account once).
    fn none_below_maintenance(&self) {
        for id in MARKETS {
            let market = self.perpetuals.market(id).unwrap();
            for user in self.perpetuals.holders(id) {
                let position = self.perpetuals.position(user, id).unwrap();
                let equity = self.perpetuals.equity(&self.kernel, market, user, position);
                let exposure = Exposure { size: position.holding.size, mark: self.mark(id), equity };
                assert!(
                    !exposure.below_maintenance(&market.contract, &market.tiers, self.mark(id)),
                    "user {user} left below maintenance on {id}: {exposure:?}"
                );
            }
        }
    }

    /// A trade as the exchange makes one: each side reserves its order's
    /// margin (refused: what was reserved goes back, nothing traded).
    /// Between two users who reserved at this mark, the loser of the price
    /// against the mark pays in full: nobody is paid pro rata.
    fn trade(&mut self, market: MarketId, (buyer, seller): (Party, Party), lots: u64, price: u64, fees: (Amount, Amount)) {
        for (party, buy) in [(buyer, true), (seller, false)] {
            let Party::User(user) = party else { continue };
            let before = self.kernel.state().balances;
            if self.perpetuals.reserve(&mut self.kernel, user, market, &[OpenOrder { buy, lots, price }], self.at_ms).is_err() {
                assert_eq!(self.kernel.state().balances, before, "a refused order moves nothing");
                // The other side's order is cancelled: its margin goes back.
                for party in [buyer, seller] {
                    if let Party::User(user) = party {
                        self.perpetuals.release_excess(&mut self.kernel, user, market, &[], self.at_ms).unwrap();
                    }
                }
                return;
            }
        }
        let outcome = self.perpetuals.fill(&mut self.kernel, market, (buyer, seller), lots, price, fees, &NoOrders, self.at_ms).unwrap();
        if buyer != Party::Network && seller != Party::Network {
            assert_eq!(outcome.unpaid, 0, "a trade between two reserved orders is paid in full");
        }
        self.none_below_maintenance();
    }

    fn apply(&mut self, step: &Step) {
        self.at_ms += 100;
        let market = |index: usize| MARKETS[index];
        match *step {
            Step::Trade { market: index, buyer, seller, lots, offset, fee } => {
                if buyer != seller {
                    let price = self.price(market(index), offset);
                    self.trade(market(index), (Party::User(USERS[buyer]), Party::User(USERS[seller])), lots, price, (fee, fee / 2));
                }
            }
            Step::Mark { market: index, move_ppm } => {
                let (market, mark) = (market(index), self.mark(market(index)) as i64);
                let mark = (mark + mark * move_ppm / 1_000_000).clamp(1, 10_000_000) as u64;
                self.perpetuals.submit_price(ORACLE, market, mark, self.at_ms).unwrap();
                self.perpetuals.set_mark(&mut self.kernel, market, mark, &NoOrders, self.at_ms).unwrap();
                self.none_below_maintenance();
            }
            Step::Fund { market: index, bid_bps, ask_bps } => {
                let (market, mark) = (market(index), self.mark(market(index)) as i64);
                let (bid, ask) = (self.price(market, mark * bid_bps / 10_000), self.price(market, mark * ask_bps / 10_000));
                self.perpetuals.submit_price(ORACLE, market, mark as u64, self.at_ms).unwrap();
                self.perpetuals.sample_book(market, Some(bid.min(ask)), Some(bid.max(ask)), self.at_ms).unwrap();
                self.at_ms = self.perpetuals.market(market).unwrap().next_funding_ms;
                self.perpetuals.fund(&mut self.kernel, market, &NoOrders, self.at_ms).unwrap().expect("its time has come");
                self.none_below_maintenance();
            }
            Step::Unwind { market: index, user, lots, offset } => {
                let market = market(index);
                let network = self.perpetuals.market(market).unwrap().network.size;
                let lots = lots.min(network.unsigned_abs());
                if lots > 0 {
                    let (user, price) = (Party::User(USERS[user]), self.price(market, offset));
                    let sides = if network > 0 { (user, Party::Network) } else { (Party::Network, user) };
                    self.trade(market, sides, lots, price, (0, 0));
                }
            }
            Step::AddMargin { market: index, user, amount } => {
                let before = self.kernel.state();
                match self.perpetuals.add_margin(&mut self.kernel, USERS[user], market(index), amount, self.at_ms) {
                    Err(_) => assert_eq!(self.kernel.state(), before),
                    Ok(()) => self.none_below_maintenance(),
                }
            }
            Step::ReduceMargin { market: index, user, amount } => {
                let before = self.kernel.state();
                match self.perpetuals.reduce_margin(&mut self.kernel, USERS[user], market(index), amount, &[], self.at_ms) {
                    Err(_) => assert_eq!(self.kernel.state(), before),
                    Ok(()) => self.none_below_maintenance(),
                }
            }
            Step::Leverage { market: index, user, leverage } => {
                let before = (self.kernel.state(), self.perpetuals.state());
                if self.perpetuals.set_leverage(&mut self.kernel, USERS[user], market(index), leverage, &[], self.at_ms).is_err() {
                    assert_eq!((self.kernel.state(), self.perpetuals.state()), before);
                }
            }
            Step::Restart => {
                let (kernel, perpetuals) = (self.kernel.state(), self.perpetuals.state());
                let bytes = postcard::to_stdvec(&perpetuals).unwrap();
                let restored = Perpetuals::restore(postcard::from_bytes(&bytes).unwrap());
                assert_eq!(restored.state(), perpetuals);
                self.perpetuals = restored;
                self.kernel = Kernel::restore(products::purposes(), limits(), kernel);
            }
        }
        self.check();
    }

    fn price(&self, market: MarketId, offset: i64) -> u64 {
        (self.mark(market) as i64 + offset).clamp(1, 10_000_000) as u64
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn money_is_conserved_and_no_position_is_left_below_maintenance(
        deposits in proptest::collection::vec(100_000..2_000_000i128, USERS.len()),
        isolated in proptest::collection::vec(any::<bool>(), USERS.len() * MARKETS.len()),
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let mut world = World::new(&deposits, &isolated);
        world.check();
        for step in &steps {
            world.apply(step);
        }
    }
}
