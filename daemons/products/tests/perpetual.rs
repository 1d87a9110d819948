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
const MARKET: MarketId = 3;
const USERS: [UserId; 4] = [1, 2, 3, 4];
const START: u64 = 600_000;

fn spec() -> PerpetualSpec {
    PerpetualSpec {
        market: MARKET,
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
    }
}

#[derive(Clone, Debug)]
enum Step {
    Trade { buyer: usize, seller: usize, lots: u64, offset: i64, fee: Amount },
    Mark { move_ppm: i64 },
    Fund { bid_bps: i64, ask_bps: i64 },
    Unwind { user: usize, lots: u64, offset: i64 },
    AddMargin { user: usize, amount: Amount },
    ReduceMargin { user: usize, amount: Amount },
    Leverage { user: usize, leverage: u32 },
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    let user = 0..USERS.len();
    prop_oneof![
        4 => (user.clone(), user.clone(), 1..600u64, -3_000..3_000i64, 0..500i128)
            .prop_map(|(buyer, seller, lots, offset, fee)| Step::Trade { buyer, seller, lots, offset, fee }),
        4 => (-80_000..80_000i64).prop_map(|move_ppm| Step::Mark { move_ppm }),
        1 => (-100..100i64, -100..100i64).prop_map(|(bid_bps, ask_bps)| Step::Fund { bid_bps, ask_bps }),
        2 => (user.clone(), 1..600u64, -1_000..1_000i64).prop_map(|(user, lots, offset)| Step::Unwind { user, lots, offset }),
        1 => (user.clone(), 1..500_000i128).prop_map(|(user, amount)| Step::AddMargin { user, amount }),
        1 => (user.clone(), 1..500_000i128).prop_map(|(user, amount)| Step::ReduceMargin { user, amount }),
        1 => (user, 1..25u32).prop_map(|(user, leverage)| Step::Leverage { user, leverage }),
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
    fn new(deposits: &[Amount], isolated: &[bool]) -> World {
        let mut kernel = Kernel::new(products::purposes(), limits());
        kernel.create_asset(&AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }).unwrap();
        for (user, amount) in USERS.iter().zip(deposits) {
            kernel.transfer(Leg { debit: custody(USD), credit: available(*user, USD), amount: *amount, code: TransferCode(101) }, "deposit", 0).unwrap();
        }
        let mut perpetuals = Perpetuals::default();
        perpetuals.create_market(&kernel, &spec(), 0).unwrap();
        for (user, isolated) in USERS.iter().zip(isolated) {
            let mode = if *isolated { MarginMode::Isolated } else { MarginMode::Cross };
            perpetuals.set_margin_mode(*user, MARKET, mode, &[]).unwrap();
        }
        perpetuals.submit_price(MARKET, 1, START, 0).unwrap();
        perpetuals.set_mark(&mut kernel, MARKET, START, &NoOrders, 0).unwrap();
        World { kernel, perpetuals, deposited: deposits.iter().sum(), at_ms: 0 }
    }

    fn mark(&self) -> u64 {
        self.perpetuals.market(MARKET).unwrap().mark.unwrap()
    }

    fn margin(&self, user: UserId) -> Amount {
        self.perpetuals.position(user, MARKET).map_or(0, |position| self.kernel.balance(margin_account(position.entity, USD)))
    }

    /// Every account a user, the market or the house holds this money in.
    fn money(&self) -> Amount {
        let users: Amount = USERS.iter().map(|user| self.kernel.balance(available(*user, USD)) + self.margin(*user)).sum();
        users + self.kernel.balance(insurance(MARKET, USD)) + self.kernel.balance(revenue(USD))
    }

    fn check(&self) {
        self.kernel.check_invariants().unwrap();
        self.perpetuals.check_invariants(&self.kernel).unwrap();
        assert_eq!(self.money(), self.deposited, "money is conserved over every account");
        assert_eq!(self.kernel.balance(custody(USD)), -self.deposited);
    }

    /// No position is left below maintenance at the mark.
    fn none_below_maintenance(&self) {
        let market = self.perpetuals.market(MARKET).unwrap();
        for user in self.perpetuals.holders(MARKET) {
            let position = self.perpetuals.position(user, MARKET).unwrap();
            let equity = self.perpetuals.equity(&self.kernel, market, user, position);
            let exposure = Exposure { size: position.holding.size, mark: self.mark(), equity };
            assert!(!exposure.below_maintenance(&market.contract, &market.tiers, self.mark()), "user {user} left below maintenance: {exposure:?}");
        }
    }

    /// A trade as the exchange makes one: each side reserves its order's
    /// margin (refused: what was reserved goes back, nothing traded).
    fn trade(&mut self, (buyer, seller): (Party, Party), lots: u64, price: u64, fees: (Amount, Amount)) {
        for (party, buy) in [(buyer, true), (seller, false)] {
            let Party::User(user) = party else { continue };
            let before = self.kernel.state().balances;
            if self.perpetuals.reserve(&mut self.kernel, user, MARKET, &[OpenOrder { buy, lots, price }], self.at_ms).is_err() {
                assert_eq!(self.kernel.state().balances, before, "a refused order moves nothing");
                // The other side's order is cancelled: its margin goes back.
                for party in [buyer, seller] {
                    if let Party::User(user) = party {
                        self.perpetuals.release_excess(&mut self.kernel, user, MARKET, &[], self.at_ms).unwrap();
                    }
                }
                return;
            }
        }
        self.perpetuals.fill(&mut self.kernel, MARKET, (buyer, seller), lots, price, fees, &NoOrders, self.at_ms).unwrap();
    }

    fn apply(&mut self, step: &Step) {
        self.at_ms += 100;
        let mark = self.mark() as i64;
        let price = |offset: i64| (mark + offset).clamp(1, 10_000_000) as u64;
        match *step {
            Step::Trade { buyer, seller, lots, offset, fee } => {
                if buyer != seller {
                    self.trade((Party::User(USERS[buyer]), Party::User(USERS[seller])), lots, price(offset), (fee, fee / 2));
                }
            }
            Step::Mark { move_ppm } => {
                let mark = (mark + mark * move_ppm / 1_000_000).clamp(1, 10_000_000) as u64;
                self.perpetuals.submit_price(MARKET, 1, mark, self.at_ms).unwrap();
                self.perpetuals.set_mark(&mut self.kernel, MARKET, mark, &NoOrders, self.at_ms).unwrap();
                self.none_below_maintenance();
            }
            Step::Fund { bid_bps, ask_bps } => {
                let (bid, ask) = (price(mark * bid_bps / 10_000), price(mark * ask_bps / 10_000));
                self.perpetuals.submit_price(MARKET, 1, mark as u64, self.at_ms).unwrap();
                self.perpetuals.sample_book(MARKET, Some(bid.min(ask)), Some(bid.max(ask)), self.at_ms).unwrap();
                self.at_ms = self.perpetuals.market(MARKET).unwrap().next_funding_ms;
                self.perpetuals.fund(&mut self.kernel, MARKET, &NoOrders, self.at_ms).unwrap().expect("its time has come");
                self.none_below_maintenance();
            }
            Step::Unwind { user, lots, offset } => {
                let network = self.perpetuals.market(MARKET).unwrap().network.size;
                let lots = lots.min(network.unsigned_abs());
                if lots > 0 {
                    let (user, price) = (Party::User(USERS[user]), price(offset));
                    let sides = if network > 0 { (user, Party::Network) } else { (Party::Network, user) };
                    self.trade(sides, lots, price, (0, 0));
                }
            }
            Step::AddMargin { user, amount } => {
                let before = self.kernel.state();
                if self.perpetuals.add_margin(&mut self.kernel, USERS[user], MARKET, amount, self.at_ms).is_err() {
                    assert_eq!(self.kernel.state(), before);
                }
            }
            Step::ReduceMargin { user, amount } => {
                let before = self.kernel.state();
                match self.perpetuals.reduce_margin(&mut self.kernel, USERS[user], MARKET, amount, &[], self.at_ms) {
                    Err(_) => assert_eq!(self.kernel.state(), before),
                    Ok(()) => self.none_below_maintenance(),
                }
            }
            Step::Leverage { user, leverage } => {
                let before = (self.kernel.state(), self.perpetuals.state());
                if self.perpetuals.set_leverage(&mut self.kernel, USERS[user], MARKET, leverage, &[], self.at_ms).is_err() {
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
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn money_is_conserved_and_no_position_is_left_below_maintenance(
        deposits in proptest::collection::vec(100_000..2_000_000i128, USERS.len()),
        isolated in proptest::collection::vec(any::<bool>(), USERS.len()),
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let mut world = World::new(&deposits, &isolated);
        world.check();
        for step in &steps {
            world.apply(step);
        }
    }
}
