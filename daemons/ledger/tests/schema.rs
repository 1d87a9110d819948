//! The ledger's state and history written to real RocksDB files, reopened and
//! read back: what start-up loads must be exactly the state that was written.

use ::ledger::schema::{self, kernel, spot as spot_schema, wallet as wallet_schema, TransferChains};
use ledger_api::candles::{self, Candle, CandleInterval, MINUTE_MS};
use ledger_api::spot::{Market as LedgerMarket, OrderRecord, OrderRequest, OrderStatus};
use ledger_api::wallet::Balance;
use ledger_api::{convert, perpetual, spot, wallet, AssetId, AssetSpec, Command as LedgerCommand, MarketId, Outcome, Transfer, UserId};
use matching_core::{
    Command, EngineLimits, FastEngine, MarketSpec, OrderKind, SelfTradePrevention, Side, TimeInForce, Trigger, TriggerDirection, TriggerSource,
};
use products::{Ledger, LedgerLimits};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use storage::{Batch, Durability, Store};

const BTC: AssetId = 1;
const USD: AssetId = 2;
const MARKET: MarketId = 1;
const USERS: u64 = 12;
/// Given USD once and gives it all away: accounts back at zero, with history.
const EMPTIED: UserId = USERS + 1;

fn market() -> LedgerMarket {
    LedgerMarket {
        base: BTC,
        quote: USD,
        base_units_per_lot: 100_000,
        trading: true,
        spec: MarketSpec {
            id: MARKET,
            quote_units_per_tick_lot: 10,
            tick_lot_scale: 0,
            maker_fee_ppm: 1_000,
            taker_fee_ppm: 2_000,
            price_ticks_max: 1_000_000,
            quantity_lots_max: 1_000,
            price_band_ppm: 0,
        },
    }
}

/// A perpetual market on BTC in USD beside the spot one, priced by `ORACLE`.
const PERPETUAL: MarketId = 2;
const ORACLE: UserId = 99;

fn perpetual_listing() -> LedgerCommand {
    let listing = LedgerMarket { spec: MarketSpec { id: PERPETUAL, ..market().spec }, ..market() };
    let terms = perpetual::PerpetualSpec {
        market: PERPETUAL,
        collateral: USD,
        units_per_tick_lot: 10,
        tick_lot_scale: 0,
        price_ticks_max: 1_000_000,
        position_lots_max: 100_000,
        tiers: vec![perpetual::MarginTier { notional_max: 1_000_000_000_000, initial_ppm: 50_000, maintenance_ppm: 25_000 }],
        leverage_default: 20,
        liquidation_penalty_ppm: 10_000,
        funding_interval_ms: 500,
        funding_interest_ppb: 100_000,
        funding_clamp_ppb: 500_000,
        funding_cap_ppb: 3_750_000,
        oracle_staleness_ms: 1_000_000,
        oracle_sources_min: 1,
        basis_window_ms: 1_000,
        mark_interval_ms: 100,
    };
    LedgerCommand::Spot(spot::Command::Perpetual(perpetual::Command::CreateMarket { market: listing, perpetual: Box::new(terms) }))
}

fn open(path: &std::path::Path) -> Store {
    schema::open(path).unwrap()
}

/// Writes batches as the service does, and keeps every transfer written.
#[derive(Default)]
struct Writer {
    chains: TransferChains,
    transfers: Vec<Transfer>,
}

impl Writer {
    fn flush(&mut self, store: &Store, ledger: &mut Ledger, position: u64) {
        let changes = ledger.take_changes();
        self.transfers.extend(changes.kernel.transfers.iter().map(|t| {
            let encoded = postcard::to_stdvec(&kernel::TransferFields::of(t)).unwrap();
            postcard::from_bytes::<Transfer>(&encoded).unwrap()
        }));
        let mut batch = Batch::default();
        schema::write_changes(&mut batch, ledger, &changes, &mut self.chains, position);
        store.write(&mut batch, Durability::Journaled).unwrap();
    }
}

/// Applies a command, and what it sends matching through a real engine and back.
struct Exchange {
    ledger: Ledger,
    matching: FastEngine,
    matching_sequence: u64,
    position: u64,
}

impl Exchange {
    fn new(ledger: Ledger, position: u64) -> Exchange {
        let mut matching = FastEngine::new(EngineLimits::default());
        matching.execute(&Command::AddMarket(market().spec), &mut Vec::new());
        Exchange { ledger, matching, matching_sequence: 0, position }
    }

    fn step(&mut self, command: LedgerCommand) -> Result<Outcome, ledger_api::LedgerError> {
        self.position += 1;
        let applied = self.ledger.apply(&command, self.position);
        // What matching's outputs bring (a liquidation's orders) goes to matching too.
        let mut forwards: Vec<Command> = applied.forward.into_iter().chain(applied.forward_more).collect();
        while !forwards.is_empty() {
            let mut more = Vec::new();
            for forward in forwards {
                let mut events = Vec::new();
                self.matching.execute(&forward, &mut events);
                self.matching_sequence += 1;
                let applied = self.ledger.apply(&LedgerCommand::Spot(spot::Command::ApplyMatching { sequence: self.matching_sequence, events }), self.position);
                applied.outcome.unwrap();
                more.extend(applied.forward.into_iter().chain(applied.forward_more));
            }
            forwards = more;
        }
        applied.outcome
    }
}

fn limit(side: Side, price: u64, quantity: u64) -> OrderRequest {
    OrderRequest {
        market: MARKET,
        side,
        kind: OrderKind::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price: Some(price),
        quantity,
        self_trade: SelfTradePrevention::CancelTaker,
        expires_at_ms: None,
        trigger: None,
        reduce_only: false,
    }
}

/// The assets, the market, and every user funded with `usd` and `btc` units.
fn market_with_users(usd: i128, btc: i128) -> Vec<LedgerCommand> {
    let mut setup = vec![
        LedgerCommand::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }),
        LedgerCommand::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 6 }),
        LedgerCommand::Spot(spot::Command::CreateMarket(market())),
    ];
    for user in 1..=USERS {
        setup.push(LedgerCommand::Wallet(wallet::Command::Deposit { user, asset: USD, amount: usd, reference: format!("usd-{user}") }));
        setup.push(LedgerCommand::Wallet(wallet::Command::Deposit { user, asset: BTC, amount: btc, reference: format!("btc-{user}") }));
    }
    setup
}

/// Applies a seeded random stream of every kind of command, matching and the
/// house included, writing each group of commands as one batch. Returns the ledger.
fn run(store: &Store, seed: u64, commands: usize, journal_start: u64) -> Ledger {
    run_with(store, &mut Writer::default(), seed, commands, journal_start)
}

fn run_with(store: &Store, writer: &mut Writer, seed: u64, commands: usize, journal_start: u64) -> Ledger {
    let mut x = Exchange::new(Ledger::new(LedgerLimits::default()), journal_start);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut setup = market_with_users(50_000_000, 5_000_000);
    setup.push(LedgerCommand::Wallet(wallet::Command::Deposit { user: EMPTIED, asset: USD, amount: 1_000, reference: "usd-emptied".into() }));
    setup.push(LedgerCommand::Wallet(wallet::Command::Transfer { from: EMPTIED, to: 1, asset: USD, amount: 1_000, key: "all of it".into() }));
    setup.push(LedgerCommand::House(ledger_api::house::Command::Fund { asset: USD, amount: 77_000, reference: "treasury".into() }));
    setup.push(LedgerCommand::House(ledger_api::house::Command::Fund { asset: BTC, amount: 1_000_000_000, reference: "treasury-btc".into() }));
    setup.push(LedgerCommand::Convert(convert::Command::SetPair(convert::PairSpec {
        base: BTC,
        quote: USD,
        price: convert::PriceSource::Set { quote_units: 1, base_units: 1 },
        spread_bps: 10,
        fee_bps: 10,
        base_min: 1,
        base_max: 1_000_000,
        base_step: 1,
        quote_ttl_ms: 5_000,
        paused: false,
        exposure_max_base: 1_000_000_000,
        exposure_max_quote: 1_000_000_000,
    })));
    setup.push(perpetual_listing());
    setup.push(LedgerCommand::Spot(spot::Command::Perpetual(perpetual::Command::SetOracle { market: PERPETUAL, user: ORACLE, source: Some(1) })));
    setup.push(LedgerCommand::Spot(spot::Command::Perpetual(perpetual::Command::SubmitPrice { user: ORACLE, market: PERPETUAL, price: 1_000 })));
    for command in setup {
        x.step(command).unwrap();
    }
    writer.flush(store, &mut x.ledger, x.position);
    let mut open: Vec<(UserId, u64)> = Vec::new();
    for i in 0..commands {
        let user = rng.random_range(1..=USERS);
        let command = match rng.random_range(0..16) {
            12 | 13 => {
                let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
                open.push((user, x.ledger.spot().counters().next_order));
                let request = OrderRequest { market: PERPETUAL, ..limit(side, rng.random_range(980..1_020), rng.random_range(1..200)) };
                LedgerCommand::Spot(spot::Command::PlaceOrder { user, request, client_order_id: Some(format!("p-{i}")) })
            }
            14 => LedgerCommand::Spot(spot::Command::Perpetual(perpetual::Command::SubmitPrice {
                user: ORACLE,
                market: PERPETUAL,
                price: rng.random_range(900..1_100),
            })),
            15 if rng.random_bool(0.5) => LedgerCommand::Spot(spot::Command::Perpetual(perpetual::Command::Tick)),
            15 => LedgerCommand::Spot(spot::Command::Perpetual(perpetual::Command::SetMarginMode {
                user,
                market: PERPETUAL,
                mode: if rng.random_bool(0.5) { perpetual::MarginMode::Isolated } else { perpetual::MarginMode::Cross },
            })),
            10 => {
                let pay = rng.random_range(1..5_000);
                let leg = convert::QuoteLeg { base: BTC, quote: USD, sell_base: false, pay, receive: pay, spread: 1 };
                LedgerCommand::Convert(convert::Command::Quote(convert::QuoteRequest { user, legs: vec![leg], fee: 1 }))
            }
            11 => {
                LedgerCommand::Convert(convert::Command::Accept { user, quote: rng.random_range(1..=x.ledger.convert().next_quote()), key: format!("a-{i}") })
            }
            0..=5 => {
                let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
                open.push((user, x.ledger.spot().counters().next_order));
                let request = limit(side, rng.random_range(990..1_010), rng.random_range(1..20));
                LedgerCommand::Spot(spot::Command::PlaceOrder { user, request, client_order_id: Some(format!("c-{i}")) })
            }
            6 if !open.is_empty() => {
                let (user, order_id) = open.swap_remove(rng.random_range(0..open.len()));
                LedgerCommand::Spot(spot::Command::CancelOrder { user, order_id })
            }
            7 => LedgerCommand::Wallet(wallet::Command::Transfer {
                from: user,
                to: rng.random_range(1..=USERS),
                asset: USD,
                amount: rng.random_range(1..1_000),
                key: format!("t-{i}"),
            }),
            8 => LedgerCommand::Wallet(wallet::Command::RequestWithdrawal {
                user,
                asset: BTC,
                amount: rng.random_range(1..10_000),
                destination: "bc1q".into(),
                key: format!("w-{i}"),
            }),
            _ => LedgerCommand::Wallet(wallet::Command::DecideWithdrawal {
                id: rng.random_range(1..=x.ledger.wallet().next_withdrawal()),
                approve: rng.random_bool(0.5),
            }),
        };
        let _ = x.step(command);
        if rng.random_range(0..8) == 0 {
            writer.flush(store, &mut x.ledger, x.position);
        }
    }
    writer.flush(store, &mut x.ledger, x.position);
    x.ledger.check_invariants().unwrap();
    x.ledger
}

#[test]
fn a_new_database_loads_as_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(schema::load(&open(dir.path())).unwrap().is_none());
}

/// A store written by an earlier schema is refused at start, naming both
/// versions and what to do; it is not read, migrated or changed.
#[test]
fn a_database_of_another_schema_version_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    {
        // As release 0.1.0's first builds left one: their own tables and version 4.
        let store = Store::open(dir.path(), &[schema::META, storage::Table::new("balances"), storage::Table::new("transfers_by_user")]).unwrap();
        let mut batch = Batch::default();
        batch.put(schema::META, b"schema_version", &4u32.to_be_bytes());
        batch.put(storage::Table::new("balances"), b"k", b"v");
        store.write(&mut batch, Durability::Synced).unwrap();
    }
    let store = open(dir.path());
    let error = schema::load(&store).expect_err("an older schema must be refused").to_string();
    assert!(error.contains("schema version 4") && error.contains(&format!("version {}", schema::SCHEMA_VERSION)), "{error}");
    assert!(error.contains("move the data directory aside"), "says what to do: {error}");
    assert_eq!(store.get(schema::META, b"schema_version").unwrap(), Some(4u32.to_be_bytes().to_vec()), "left as it was");
}

#[test]
fn reopened_state_equals_the_written_state_for_random_histories() {
    for seed in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let (expected_state, expected_hash) = {
            let ledger = run(&open(dir.path()), seed, 3_000, 100);
            (ledger.state(), ledger.state_hash())
        };
        let store = open(dir.path());
        let schema::Loaded { state, journal_applied, .. } = schema::load(&store).unwrap().expect("written before");
        assert!(journal_applied > 100 + 3_000, "the position of the last batch: {journal_applied}");
        assert!(!state.spot.open_orders.is_empty() && !state.wallet.pending_withdrawals.is_empty(), "seed {seed}: the scenario leaves open records to load");
        assert!(!state.kernel.holds.is_empty() && !state.kernel.idempotency.is_empty(), "seed {seed}: and holds and keys");
        assert_eq!(state.spot.candles.len(), 2 * CandleInterval::ALL.len(), "seed {seed}: and each market's latest candle of each interval");
        assert!(!state.convert.pairs.is_empty() && !state.convert.quotes.is_empty(), "seed {seed}: and convert's pair and quotes");
        let perpetuals = &state.spot.perpetuals;
        assert!(perpetuals.positions.values().any(|position| position.holding.size != 0), "seed {seed}: and open perpetual positions");
        assert!(perpetuals.markets[&PERPETUAL].mark.is_some_and(|mark| mark != 1_000), "seed {seed}: marked since the first price");
        let accepted = state.convert.quotes.values().filter(|quote| quote.status == convert::QuoteStatus::Accepted).count();
        assert!(accepted > 0 && accepted < state.convert.quotes.len(), "seed {seed}: quotes accepted and open: {accepted}");
        assert_eq!(state, expected_state, "seed {seed}");
        let restored = Ledger::restore(LedgerLimits::default(), state);
        assert_eq!(restored.state_hash(), expected_hash);
        restored.check_invariants().unwrap();
        // A user's positions read from the store are the ledger's own view.
        for user in 1..=USERS {
            let Ok(read) = schema::perpetual::answer(&store, &perpetual::Query::Positions { user }) else {
                panic!("the read of user {user}'s positions failed")
            };
            let view: Vec<perpetual::PositionView> = restored.spot().perpetuals().view(restored.kernel(), user, PERPETUAL).into_iter().collect();
            assert_eq!(read, perpetual::Answer::Positions(view), "seed {seed}, user {user}");
        }
    }
}

#[test]
fn history_is_listed_per_user_newest_first_and_closed_orders_keep_their_final_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ledger = run(&store, 7, 2_000, 0);
    let user = 3;
    let orders = spot_schema::orders_of_user(&store, user, usize::MAX).unwrap();
    assert!(orders.len() > 20);
    assert!(orders.iter().all(|o| o.order.user == user), "only the user's own orders");
    assert!(orders.windows(2).all(|w| w[0].order.order_id > w[1].order.order_id), "newest first");
    for record in &orders {
        match ledger.spot().order(record.order.order_id) {
            Some(open) => assert_eq!(open, record, "an open order's stored record is its current one"),
            None => assert!(record.status.is_final(), "an order no longer in memory was stored final: {record:?}"),
        }
        assert_eq!(spot_schema::order(&store, record.order.order_id).unwrap().as_ref(), Some(record));
    }
    assert_eq!(spot_schema::orders_of_user(&store, user, 5).unwrap(), orders[..5], "the limit keeps the newest");

    let trades = spot_schema::trades_of_user(&store, user, usize::MAX).unwrap();
    assert!(!trades.is_empty());
    assert!(trades.iter().all(|t| t.fill.maker_user == user || t.fill.taker_user == user));
    let mut market_trades = spot_schema::trades_of_market(&store, MARKET, usize::MAX).unwrap();
    market_trades.extend(spot_schema::trades_of_market(&store, PERPETUAL, usize::MAX).unwrap());
    assert_eq!(market_trades.len() as u64, ledger.spot().counters().next_trade - 1, "every trade is listed for its market");
    for trade in &trades {
        assert!(market_trades.contains(trade));
    }

    let transfers = kernel::transfers_of_user(&store, user, None, usize::MAX).unwrap();
    assert!(transfers.iter().all(|t| t.debit.user() == Some(user) || t.credit.user() == Some(user)));
    // The stored legs rebuild the user's balances from zero.
    let mut rebuilt = std::collections::BTreeMap::<AssetId, Balance>::new();
    for t in &transfers {
        for (account, sign) in [(t.debit, -1), (t.credit, 1)] {
            let entry = rebuilt.entry(t.asset()).or_default();
            match (account.user(), account.purpose) {
                (Some(u), wallet::AVAILABLE) if u == user => entry.available += sign * t.amount,
                (Some(u), wallet::LOCKED) if u == user => entry.locked += sign * t.amount,
                _ => {}
            }
        }
    }
    for asset in [BTC, USD] {
        assert_eq!(rebuilt[&asset], products::wallet::balance(ledger.kernel(), user, asset), "asset {asset}: the history adds up to the balance");
    }
    let balances = wallet_schema::balances_of_user(&store, user).unwrap();
    assert_eq!(balances, [BTC, USD].map(|asset| (asset, products::wallet::balance(ledger.kernel(), user, asset))), "the stored balances are the ledger's");
    let withdrawals = wallet_schema::withdrawals_of_user(&store, user, usize::MAX).unwrap();
    assert!(!withdrawals.is_empty() && withdrawals.iter().all(|w| w.user == user), "the user's own withdrawals, and some");
}

/// The operators' audit: every stored account summed by owner and purpose,
/// independently of memory, balances to zero and shows the house's
/// funding, custody and revenue.
#[test]
fn reserves_sum_every_stored_account_and_balance() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ledger = run(&store, 3, 1_500, 0);
    let reserves = kernel::reserves(&store).unwrap();
    assert_eq!(reserves.len(), 2);
    for reserve in &reserves {
        assert!(reserve.balanced(), "{reserve:?}");
        let custody = ledger.kernel().balance(products::wallet::custody(reserve.asset));
        assert_eq!(reserve.total(ledger_api::OwnerKind::House, wallet::CUSTODY), custody);
    }
    let usd = reserves.iter().find(|r| r.asset == USD).unwrap();
    // The funding, and what conversions paid into the USD inventory net.
    let Some(ledger_api::convert::Answer::Pairs(pairs)) = schema::convert::answer(&store, &ledger_api::convert::Query::Pairs).ok() else { panic!("the pairs") };
    let converted: i128 = pairs.iter().map(|pair| pair.net_quote).sum();
    assert!(converted > 0, "conversions paid USD in");
    assert_eq!(usd.total(ledger_api::OwnerKind::House, ledger_api::house::INVENTORY), 77_000 + converted, "the house's funding and conversions");
    assert!(usd.total(ledger_api::OwnerKind::House, ledger_api::house::REVENUE) > 0, "fees");
    let Some(ledger_api::house::Answer::Balances(house)) = schema::house::answer(&store, &ledger_api::house::Query::Balances).ok() else {
        panic!("the house's balances")
    };
    assert_eq!(house.iter().find(|b| b.asset == USD).map(|b| (b.inventory, b.revenue)), Some(products::house::balances(ledger.kernel(), USD)));
}

#[test]
fn a_damaged_record_stops_loading_with_its_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    run(&store, 1, 200, 0);
    let mut batch = Batch::default();
    let key = kernel::account_key(products::wallet::available(9, USD));
    batch.put(kernel::ACCOUNTS, &key, &[0xff; 3]);
    store.write(&mut batch, Durability::Journaled).unwrap();
    let error = schema::load(&store).expect_err("garbage must not load").to_string();
    assert!(error.contains("kernel.accounts") && error.contains("0000000000000000090000000201"), "{error}");
    assert!(error.contains("backup"), "says what to do: {error}");
}

#[test]
fn a_stored_idempotency_key_of_an_undeclared_kind_stops_loading() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    run(&store, 1, 200, 0);
    // One key as postcard writes it: count 1, key and fingerprint (16 bytes each), kind 0, id 5.
    let mut record = vec![1];
    record.extend([7; 16]);
    record.extend([8; 16]);
    record.extend([0, 5]);
    let mut batch = Batch::default();
    batch.put(kernel::IDEMPOTENCY, &u64::MAX.to_be_bytes(), &record);
    store.write(&mut batch, Durability::Journaled).unwrap();
    let error = schema::load(&store).expect_err("a kind-0 key would read as a free slot").to_string();
    assert!(error.contains("kernel.idempotency") && error.contains("kind 0"), "{error}");
}

/// A user's open orders are read from their own index: an order that has been
/// resting since before the newest 10,000 of the user's orders is still found
/// (the history index alone looks at the newest 10,000 only).
#[test]
fn a_users_open_orders_are_found_however_long_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut x = Exchange::new(Ledger::new(LedgerLimits::default()), 0);
    x.step(LedgerCommand::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 })).unwrap();
    x.step(LedgerCommand::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 6 })).unwrap();
    x.step(LedgerCommand::Spot(spot::Command::CreateMarket(market()))).unwrap();
    x.step(LedgerCommand::Wallet(wallet::Command::Deposit { user: 1, asset: USD, amount: 50_000_000, reference: "usd".into() })).unwrap();
    let resting = x.ledger.spot().counters().next_order;
    x.step(LedgerCommand::Spot(spot::Command::PlaceOrder { user: 1, request: limit(Side::Buy, 900, 1), client_order_id: None })).unwrap();
    let armed = x.ledger.spot().counters().next_order;
    let trigger = Trigger { source: TriggerSource::LastTrade, direction: TriggerDirection::AtOrAbove, price: 1_000 };
    let stop = OrderRequest { trigger: Some(trigger), ..limit(Side::Buy, 1_010, 1) };
    x.step(LedgerCommand::Spot(spot::Command::PlaceOrder { user: 1, request: stop, client_order_id: None })).unwrap();
    for _ in 0..schema::FILTER_SCAN_MAX + 1 {
        let order_id = x.ledger.spot().counters().next_order;
        x.step(LedgerCommand::Spot(spot::Command::PlaceOrder { user: 1, request: limit(Side::Buy, 901, 1), client_order_id: None })).unwrap();
        x.step(LedgerCommand::Spot(spot::Command::CancelOrder { user: 1, order_id })).unwrap();
    }
    let position = x.position;
    Writer::default().flush(&store, &mut x.ledger, position);
    let open = |o: &OrderRecord| o.status == OrderStatus::Open;
    let found: Vec<_> = spot_schema::open_orders_of_user_where(&store, 1, 100, open).unwrap().iter().map(|o| o.order.order_id).collect();
    assert_eq!(found, vec![resting], "the one open order, under 20,002 closed ones");
    let Some(spot::Answer::Orders(listed)) =
        spot_schema::answer(&store, &spot::Query::Orders { user: 1, market: None, status: Some(OrderStatus::Open), limit: 100 }).ok()
    else {
        panic!("the query answers")
    };
    assert_eq!(listed.len(), 1);
    let Some(spot::Answer::Orders(listed)) =
        spot_schema::answer(&store, &spot::Query::Orders { user: 1, market: None, status: Some(OrderStatus::Armed), limit: 100 }).ok()
    else {
        panic!("the query answers")
    };
    assert_eq!(listed.iter().map(|o| (o.order.order_id, o.trigger)).collect::<Vec<_>>(), vec![(armed, Some(trigger))], "the armed stop, found the same way");
    let history = spot_schema::orders_of_user(&store, 1, schema::FILTER_SCAN_MAX).unwrap();
    assert!(history.iter().all(|o| o.status != OrderStatus::Open), "the history index alone would not find it");
}

/// Every user's transfer history, as the stored chains give it, against every
/// transfer written: all of the user's, newest first, per asset or all, and
/// nobody else's; a hold (between two of the user's accounts) once.
fn assert_histories(store: &Store, written: &[Transfer]) {
    for user in 1..=EMPTIED + 1 {
        let expected: Vec<&Transfer> = written.iter().rev().filter(|t| t.debit.user() == Some(user) || t.credit.user() == Some(user)).collect();
        let listed = kernel::transfers_of_user(store, user, None, usize::MAX).unwrap();
        assert_eq!(listed.iter().collect::<Vec<_>>(), expected, "user {user}");
        assert_eq!(kernel::transfers_of_user(store, user, None, 7).unwrap(), listed[..listed.len().min(7)], "user {user}: the limit keeps the newest");
        for asset in [BTC, USD] {
            let in_asset: Vec<&Transfer> = expected.iter().copied().filter(|t| t.asset() == asset).collect();
            assert_eq!(
                kernel::transfers_of_user(store, user, Some(asset), usize::MAX).unwrap().iter().collect::<Vec<_>>(),
                in_asset,
                "user {user}, asset {asset}"
            );
        }
    }
}

#[test]
fn a_users_transfers_are_listed_from_their_chains_before_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::default();
    {
        let store = open(dir.path());
        run_with(&store, &mut writer, 5, 2_000, 0);
        assert_histories(&store, &writer.transfers);
        assert!(kernel::transfers_of_user(&store, EMPTIED + 1, None, 10).unwrap().is_empty(), "a user without history has none");
        let emptied = kernel::transfers_of_user(&store, EMPTIED, None, usize::MAX).unwrap();
        assert_eq!(
            emptied.iter().map(|t| ledger_api::transfer_kind(t.code)).collect::<Vec<_>>(),
            ["TRANSFER", "DEPOSIT"],
            "the history of a balance back at zero"
        );
        assert!(wallet_schema::balances_of_user(&store, EMPTIED).unwrap().is_empty(), "and no balance is listed for it");
    }
    // A restart: the heads come back with the state, and new transfers chain onto the old ones.
    let store = open(dir.path());
    let loaded = schema::load(&store).unwrap().expect("written before");
    let mut ledger = Ledger::restore(LedgerLimits::default(), loaded.state);
    let mut writer = Writer { chains: loaded.chains, transfers: writer.transfers };
    let mut position = loaded.journal_applied;
    for i in 0..50u64 {
        position += 1;
        let (from, to) = (1 + i % USERS, 1 + (i * 7 + 3) % USERS);
        let command =
            LedgerCommand::Wallet(wallet::Command::Transfer { from, to, asset: if i % 2 == 0 { USD } else { BTC }, amount: 1, key: format!("after-{i}") });
        let outcome = ledger.apply(&command, position).outcome;
        assert!(outcome.is_ok() || from == to, "{outcome:?}");
        if i % 10 == 9 {
            writer.flush(&store, &mut ledger, position);
        }
    }
    writer.flush(&store, &mut ledger, position);
    assert_eq!(writer.transfers.len() as u64, ledger.kernel().next_transfer() - 1, "every transfer went through the writer");
    assert_histories(&store, &writer.transfers);
}

/// The row written from the kernel's transfer without a copy decodes as the
/// API's record: the two types describe one format.
#[test]
fn a_transfer_row_is_the_api_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut writer = Writer::default();
    run_with(&store, &mut writer, 9, 300, 0);
    let stored: Vec<Transfer> = writer.transfers.iter().map(|t| kernel::transfer(&store, t.id).unwrap().unwrap().transfer).collect();
    assert_eq!(stored, writer.transfers);
    assert!(stored.iter().any(|t| t.reference.starts_with("trade:")) && stored.iter().any(|t| t.code == ledger_api::house::FUNDING));
}

/// The store's candles of every interval are the market's stored trades
/// folded by their time, whatever batches the trades came in; reads return
/// them with the one before the range, start-up loads the latest of each,
/// and the rolling day is its minutes'.
#[test]
fn candles_are_the_stored_trades_folded_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut writer = Writer::default();
    // Positions are the commands' times here: they advance by up to 45 s a command.
    let mut x = Exchange::new(Ledger::new(LedgerLimits::default()), 1_796_601_600_000);
    for command in market_with_users(500_000_000, 50_000_000) {
        x.step(command).unwrap();
    }
    let mut rng = SmallRng::seed_from_u64(11);
    for i in 0..600 {
        x.position += rng.random_range(0..45_000);
        let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let request = limit(side, rng.random_range(995..1_005), rng.random_range(1..20));
        let _ = x.step(LedgerCommand::Spot(spot::Command::PlaceOrder { user: rng.random_range(1..=USERS), request, client_order_id: Some(format!("c-{i}")) }));
        if rng.random_range(0..5) == 0 {
            writer.flush(&store, &mut x.ledger, x.position);
        }
    }
    writer.flush(&store, &mut x.ledger, x.position);
    let mut trades = spot_schema::trades_of_market(&store, MARKET, usize::MAX).unwrap();
    trades.sort_by_key(|t| t.id);
    assert!(trades.len() > 100, "{} trades", trades.len());
    let (first_ms, last_ms) = (trades[0].at_ms, trades[trades.len() - 1].at_ms);
    assert!(last_ms - first_ms > 2 * 60 * MINUTE_MS, "the trades span hours");
    let loaded = schema::load(&store).unwrap().expect("written").state.spot.candles;
    for interval in CandleInterval::ALL {
        let mut folded: Vec<Candle> = Vec::new();
        for trade in &trades {
            let candle = Candle::fold(folded.last().copied(), interval, trade);
            match folded.last_mut() {
                Some(last) if last.start_ms == candle.start_ms => *last = candle,
                _ => folded.push(candle),
            }
        }
        // A range that starts after the first candle: the one before it comes along.
        let (from, to) = (folded[folded.len() / 2].start_ms, interval.start_of(last_ms));
        let Some(spot::Answer::Candles { before, candles: stored }) = spot_schema::candles_of(&store, MARKET, interval, from, to).ok() else {
            panic!("{interval:?}: candles are read");
        };
        let split = folded.len() / 2;
        assert_eq!(stored, folded[split..], "{interval:?}");
        assert_eq!(before, split.checked_sub(1).map(|i| folded[i]), "{interval:?}");
        assert_eq!(loaded.get(&(MARKET, interval)), folded.last(), "{interval:?}: start-up loads the latest");
    }
    let Some(spot::Answer::DayStats(day)) = spot_schema::day_stats_of(&store, MARKET, last_ms).ok() else { panic!("the day is read") };
    let minutes: Vec<Candle> = {
        // The last 1,000 minutes hold every trade here.
        let to = CandleInterval::OneMinute.start_of(last_ms);
        let Some(spot::Answer::Candles { candles: minutes, .. }) =
            spot_schema::candles_of(&store, MARKET, CandleInterval::OneMinute, to - 999 * MINUTE_MS, to).ok()
        else {
            panic!("minutes are read")
        };
        minutes
    };
    let before = trades.iter().rfind(|t| t.at_ms < candles::day_from(last_ms)).map(|t| Candle::fold(None, CandleInterval::OneMinute, t));
    let expected = candles::day_stats(last_ms, before.as_ref(), &minutes);
    assert_eq!(day, expected);
    assert_eq!(day.map(|d| d.trades), Some(trades.iter().filter(|t| t.at_ms >= candles::day_from(last_ms)).count() as u64), "the window's trades");
    assert!(spot_schema::candles_of(&store, MARKET, CandleInterval::OneMinute, 0, 1_000 * MINUTE_MS).is_err(), "over 1,000 intervals is refused");
    assert!(spot_schema::candles_of(&store, MARKET, CandleInterval::OneMinute, MINUTE_MS, 0).is_err(), "an empty range is refused");
}

#[test]
fn tokenization_reopens_as_written_and_reads_its_history() {
    use ledger_api::tokenization::{
        self as api, Claims, Holding, InvestorCategory, OfferingSpec, OfferingStatus, SubscriptionStatus, TokenSpec, TransferRules, VestingSpec,
    };
    const ISSUER: UserId = 1;
    const DAY: u64 = 86_400_000;
    const T0: u64 = 1_803_945_600_000;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut writer = Writer::default();
    let mut ledger = Ledger::new(LedgerLimits::default());
    let token = BTC.max(USD) + 1;
    let tok = LedgerCommand::Tokenization;
    let offering = |hard_cap: i128, vesting: Option<VestingSpec>, ends_at_ms: u64| OfferingSpec {
        token,
        payment_asset: USD,
        price: 1_000,
        soft_cap: 10,
        hard_cap,
        investor_min: 1,
        investor_max: hard_cap,
        starts_at_ms: T0,
        ends_at_ms,
        cancel_cutoff_ms: DAY,
        vesting,
        listing: None,
    };
    let mut commands = vec![
        LedgerCommand::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }),
        LedgerCommand::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }),
        tok(api::Command::SetIssuer { user: ISSUER, issuer: true }),
        tok(api::Command::SetOfferingFee { fee_bps: 200 }),
        tok(api::Command::SetListingFees { maker_fee_ppm: 1_000, taker_fee_ppm: 2_000 }),
    ];
    for user in 10..14 {
        commands.push(LedgerCommand::Wallet(wallet::Command::Deposit { user, asset: USD, amount: 10_000_000, reference: format!("d{user}") }));
        let claims = Claims { country: 250, category: InvestorCategory::Retail, expires_at_ms: T0 + 400 * DAY, withholding_bps: 0 };
        commands.push(tok(api::Command::SetClaims { user, claims: Some(claims) }));
    }
    let spec = TokenSpec {
        symbol: "ACME".into(),
        scale: 0,
        lot: 1,
        supply_max: 10_000,
        document_hash: ledger_api::operators::Digest([1; 32]),
        document_url: "https://acme.example/doc.pdf".into(),
        rules: TransferRules::default(),
    };
    commands.push(tok(api::Command::CreateToken { issuer: ISSUER, spec: Box::new(spec) }));
    commands.push(tok(api::Command::CreateOffering {
        issuer: ISSUER,
        spec: Box::new(OfferingSpec {
            // Listed at the close, under the token's rules: the spot market and the tokens' index are restored.
            listing: Some(api::Listing { quote_units_per_tick_lot: 1, tick_lot_scale: 0, base_units_per_lot: 1, price_band_ppm: 0 }),
            ..offering(1_000, Some(VestingSpec { start_ms: T0, period_ms: 40 * DAY, count: 2 }), T0 + 30 * DAY)
        }),
    }));
    commands.push(tok(api::Command::CreateOffering { issuer: ISSUER, spec: Box::new(offering(500, None, T0 + 60 * DAY)) }));
    for (user, amount) in [(10, 333), (11, 333), (12, 500)] {
        commands.push(tok(api::Command::Subscribe { investor: user, offering: 1, amount, key: format!("a{user}") }));
    }
    commands.push(tok(api::Command::Subscribe { investor: 13, offering: 2, amount: 20, key: "b".into() }));
    commands.push(tok(api::Command::Subscribe { investor: 10, offering: 2, amount: 30, key: "c".into() }));
    commands.push(tok(api::Command::CancelSubscription { investor: 10, subscription: 5 }));
    for (index, command) in commands.iter().enumerate() {
        let outcome = ledger.apply(command, T0 + 1).outcome;
        assert!(outcome.is_ok(), "{command:?}: {outcome:?}");
        writer.flush(&store, &mut ledger, index as u64 + 1);
    }
    // The first offering closes at its end; its first tranche vests at 40 days.
    ledger.apply(&tok(api::Command::Tick), T0 + 30 * DAY).outcome.unwrap();
    writer.flush(&store, &mut ledger, 100);
    // The cap table as it stands at the close, to be read back at that time later.
    let Ok(api::Answer::CapTable(at_close)) = schema::tokenization::answer(&store, &api::Query::CapTable(token)) else { panic!("the cap table") };
    assert_eq!(at_close.iter().map(|h| h.locked).sum::<i128>(), 1_000, "everything vesting at the close");
    ledger.apply(&tok(api::Command::Tick), T0 + 40 * DAY).outcome.unwrap();
    writer.flush(&store, &mut ledger, 101);
    // A distribution of 1,000.01 USD recorded at 41 days: user 10 claims, 11 and 12 are still owed at the restart.
    let dividend = api::DistributionSpec {
        token,
        kind: api::DistributionKind::Dividend,
        payment_asset: USD,
        pool: 100_001,
        record_at_ms: T0 + 41 * DAY,
        claim_until_ms: T0 + 90 * DAY,
        default_withholding_bps: 3_000,
    };
    ledger.apply(&tok(api::Command::Distribute { issuer: ISSUER, spec: Box::new(dividend), key: "q".into() }), T0 + 40 * DAY).outcome.unwrap();
    writer.flush(&store, &mut ledger, 102);
    ledger.apply(&tok(api::Command::Tick), T0 + 41 * DAY).outcome.unwrap();
    writer.flush(&store, &mut ledger, 103);
    ledger.apply(&tok(api::Command::ClaimDistribution { holder: 10, distribution: 1 }), T0 + 42 * DAY).outcome.unwrap();
    writer.flush(&store, &mut ledger, 104);
    ledger.check_invariants().unwrap();
    drop(store);

    let store = open(dir.path());
    let loaded = schema::load(&store).unwrap().expect("written");
    assert_eq!(loaded.state, ledger.state());
    assert!(loaded.state.spot.markets.values().any(|market| market.base == token), "the close listed the token");
    let state = &loaded.state.tokenization;
    assert_eq!(
        (state.open_offerings.len(), state.open_subscriptions.len(), state.tranches.len()),
        (1, 1, 3),
        "one offering open with one subscription; three tranches to vest"
    );
    assert_eq!((state.open_distributions.len(), state.entitlements.len()), (1, 2), "one distribution owing two holders");
    let restored = Ledger::restore(LedgerLimits::default(), loaded.state);
    restored.check_invariants().unwrap();
    assert_eq!(restored.kernel().holders(token).map(|holders| holders.count()), Some(3), "the kernel follows the token's holders again");
    let read = |query| schema::tokenization::answer(&store, &query).unwrap_or_else(|_| panic!("{query:?} could not be read"));
    let api::Answer::Offering(Some(closed)) = read(api::Query::Offering(1)) else { panic!("offering 1") };
    assert_eq!((closed.status, closed.issued, closed.raised, closed.fee), (OfferingStatus::Allocated, 1_000, 1_000_000, 20_000));
    let api::Answer::Subscriptions(subscriptions) = read(api::Query::Subscriptions { offering: 1, after: 0, limit: 10 }) else { panic!() };
    let allocated: Vec<(i128, i128)> = subscriptions.iter().map(|s| (s.allocated, s.refunded)).collect();
    assert_eq!(allocated, vec![(286, 47_000), (285, 48_000), (429, 71_000)]);
    // Pages seek from `after`, end at the offering's last, and never reach into the next offering's.
    let page = |offering, after, limit| match read(api::Query::Subscriptions { offering, after, limit }) {
        api::Answer::Subscriptions(list) => list.iter().map(|s| s.id).collect::<Vec<u64>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!((page(1, 0, 2), page(1, 2, 2), page(1, 3, 2)), (vec![1, 2], vec![3], vec![]));
    assert_eq!((page(2, 0, 10), page(2, 4, 10), page(2, u64::MAX, 10), page(3, 0, 10)), (vec![4, 5], vec![5], vec![], vec![]));
    let api::Answer::Subscriptions(mine) = read(api::Query::InvestorSubscriptions { investor: 10, limit: 10 }) else { panic!() };
    let statuses: Vec<(u64, SubscriptionStatus)> = mine.iter().map(|s| (s.id, s.status)).collect();
    assert_eq!(statuses, vec![(5, SubscriptionStatus::Cancelled), (1, SubscriptionStatus::Allocated)], "newest first");
    let api::Answer::Subscription(Some(one)) = read(api::Query::Subscription(5)) else { panic!("subscription 5") };
    assert_eq!((one.id, one.investor, one.status), (5, 10, SubscriptionStatus::Cancelled));
    assert_eq!(read(api::Query::Subscription(99)), api::Answer::Subscription(None));
    let api::Answer::Tranches(tranches) = read(api::Query::Tranches { investor: 12, limit: 10 }) else { panic!() };
    let amounts: Vec<(i128, bool)> = tranches.iter().map(|t| (t.amount, t.vested)).collect();
    assert_eq!(amounts, vec![(215, false), (214, true)], "the newest subscription's first, its last tranche first");
    let api::Answer::Tranches(newest) = read(api::Query::Tranches { investor: 12, limit: 1 }) else { panic!() };
    assert_eq!(newest.iter().map(|t| t.index).collect::<Vec<_>>(), vec![1]);
    let ids = |query| match read(query) {
        api::Answer::Offerings(list) => list.iter().map(|o| o.id).collect::<Vec<u64>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(ids(api::Query::Offerings { token: None, limit: 10 }), vec![2, 1], "newest first");
    assert_eq!(ids(api::Query::Offerings { token: Some(token), limit: 1 }), vec![2]);
    assert_eq!(ids(api::Query::Offerings { token: Some(USD), limit: 10 }), Vec::<u64>::new());
    let api::Answer::CapTable(table) = read(api::Query::CapTable(token)) else { panic!() };
    assert_eq!(
        table,
        vec![
            Holding { user: 10, balance: 286, locked: 143, frozen: 0 },
            Holding { user: 11, balance: 285, locked: 143, frozen: 0 },
            Holding { user: 12, balance: 429, locked: 215, frozen: 0 }
        ]
    );
    assert_eq!(read(api::Query::Issuers), api::Answer::Issuers(vec![ISSUER]));
    let api::Answer::Distribution(Some(distribution)) = read(api::Query::Distribution(1)) else { panic!("distribution 1") };
    assert_eq!(
        (distribution.status, distribution.holders, distribution.units, distribution.entitled, distribution.remainder, distribution.claimed),
        (api::DistributionStatus::Recorded, 3, 1_000, 100_000, 1, 28_600)
    );
    assert_eq!(read(api::Query::Distribution(2)), api::Answer::Distribution(None));
    let holders = |query| match read(query) {
        api::Answer::Entitlements(list) => list.iter().map(|e| (e.distribution, e.holder, e.gross, e.claimed_ms.is_some())).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        holders(api::Query::Entitlements { distribution: 1, after: 0, limit: 10 }),
        vec![(1, 10, 28_600, true), (1, 11, 28_500, false), (1, 12, 42_900, false)]
    );
    assert_eq!(holders(api::Query::Entitlements { distribution: 1, after: 10, limit: 1 }), vec![(1, 11, 28_500, false)]);
    assert_eq!(holders(api::Query::Entitlements { distribution: 2, after: 0, limit: 10 }), vec![]);
    assert_eq!(holders(api::Query::HolderEntitlements { holder: 10, limit: 10 }), vec![(1, 10, 28_600, true)]);
    // The cap table at a past time: nothing before the close; the close's at it and until the first tranche vests.
    let at = |at_ms| match read(api::Query::CapTableAt { token, at_ms }) {
        api::Answer::CapTableAt { supply, holdings } => (supply, holdings),
        other => panic!("{other:?}"),
    };
    assert_eq!(at(T0 + 30 * DAY - 1), (0, vec![]));
    assert_eq!(at(T0 + 30 * DAY), (1_000, at_close.clone()));
    assert_eq!(at(T0 + 40 * DAY - 1), (1_000, at_close));
    assert_eq!(at(T0 + 40 * DAY), (1_000, table), "after the first tranche, as today");
    let api::Answer::Distributions(list) = read(api::Query::Distributions { token: Some(token), limit: 10 }) else { panic!() };
    assert_eq!(list.iter().map(|d| d.id).collect::<Vec<_>>(), vec![1]);

    // The token's agent freezes 50 of user 11's and recovers user 12's to user 13: its unvested tranche moves rows.
    let mut ledger = restored;
    ledger.apply(&tok(api::Command::FreezeTokens { token, holder: 11, amount: 50 }), T0 + 43 * DAY).outcome.unwrap();
    writer.flush(&store, &mut ledger, 105);
    ledger.apply(&tok(api::Command::RecoverTokens { token, lost: 12, to: 13 }), T0 + 43 * DAY).outcome.unwrap();
    writer.flush(&store, &mut ledger, 106);
    drop(store);
    let store = open(dir.path());
    let loaded = schema::load(&store).unwrap().expect("written");
    assert_eq!(loaded.state, ledger.state());
    Ledger::restore(LedgerLimits::default(), loaded.state).check_invariants().unwrap();
    let read = |query| schema::tokenization::answer(&store, &query).unwrap_or_else(|_| panic!("{query:?} could not be read"));
    let tranches = |investor| match read(api::Query::Tranches { investor, limit: 10 }) {
        api::Answer::Tranches(list) => list.iter().map(|t| (t.investor, t.amount, t.vested)).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(tranches(12), vec![(12, 214, true)], "the vested tranche stays in the lost account's history");
    assert_eq!(tranches(13), vec![(13, 215, false)]);
    let api::Answer::CapTable(table) = read(api::Query::CapTable(token)) else { panic!() };
    assert_eq!(
        table,
        vec![
            Holding { user: 10, balance: 286, locked: 143, frozen: 0 },
            Holding { user: 11, balance: 285, locked: 193, frozen: 50 },
            Holding { user: 13, balance: 429, locked: 215, frozen: 0 }
        ]
    );
}

#[test]
fn donations_reopen_as_written_and_read_their_history() {
    use ledger_api::donations::{
        self as api, CampaignSpec, CampaignStatus, Display, DonationStatus, FundingModel, Gift, Organiser, OrganiserKind, PoolSpec, ReceiptNumber,
    };
    const ORGANISER: UserId = 1;
    const SPONSOR: UserId = 2;
    const DAY: u64 = 86_400_000;
    // 2027-03-01T00:00:00Z: receipts of year 2027.
    const T0: u64 = 1_803_945_600_000;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut writer = Writer::default();
    let mut ledger = Ledger::new(LedgerLimits::default());
    let don = LedgerCommand::Donations;
    let campaign = |model, deadline_ms| CampaignSpec {
        title: "Wells".into(),
        story: "Clean water\nfor a village".into(),
        reference_asset: USD,
        goal: 1_000_000,
        deadline_ms,
        accepted: vec![USD],
        model,
        payout_every_ms: None,
    };
    let gift = |campaign, gross, tip| Gift {
        campaign,
        asset: USD,
        gross,
        tip,
        message: String::new(),
        display: Display { name: None, amount_shown: true, known_to_organiser: false },
    };
    let mut commands = vec![
        LedgerCommand::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }),
        don(api::Command::SetOrganiser {
            user: ORGANISER,
            organiser: Some(Organiser { name: "Water Aid".into(), kind: OrganiserKind::Organisation, country: 826, registration: "288701".into() }),
        }),
        don(api::Command::SetDonationFee { fee_bps: 250 }),
        // 1: keeps what it raises, ends at 10 days; 2: all or nothing, ends at 30 days.
        don(api::Command::CreateCampaign { organiser: ORGANISER, spec: Box::new(campaign(FundingModel::KeepWhatYouRaise, T0 + 10 * DAY)) }),
        don(api::Command::CreateCampaign { organiser: ORGANISER, spec: Box::new(campaign(FundingModel::AllOrNothing, T0 + 30 * DAY)) }),
        don(api::Command::PublishCampaign { organiser: ORGANISER, campaign: 1 }),
        don(api::Command::PublishCampaign { organiser: ORGANISER, campaign: 2 }),
    ];
    for user in [SPONSOR, 10, 11] {
        commands.push(LedgerCommand::Wallet(wallet::Command::Deposit { user, asset: USD, amount: 10_000_000, reference: format!("d{user}") }));
    }
    let pool = PoolSpec {
        campaign: 2,
        asset: USD,
        ratio_bps: 10_000,
        per_gift_max: 50_000,
        per_donor_max: 60_000,
        total: 100_000,
        starts_ms: T0,
        ends_ms: T0 + 30 * DAY,
    };
    commands.push(don(api::Command::FundPool { sponsor: SPONSOR, spec: pool, key: "p".into() }));
    // Gifts 1-2 to campaign 1; 3-5 to campaign 2 (matched 50,000, 10,000 and nothing: user 10's cap).
    commands.push(don(api::Command::Donate { donor: 10, gift: Box::new(gift(1, 20_000, 0)), key: "a".into() }));
    commands.push(don(api::Command::Donate { donor: 11, gift: Box::new(gift(1, 30_000, 1_000)), key: "a".into() }));
    commands.push(don(api::Command::Donate { donor: 10, gift: Box::new(gift(2, 80_000, 0)), key: "b".into() }));
    commands.push(don(api::Command::Donate { donor: 10, gift: Box::new(gift(2, 10_000, 0)), key: "c".into() }));
    commands.push(don(api::Command::Donate { donor: 10, gift: Box::new(gift(2, 5_000, 0)), key: "d".into() }));
    for (index, command) in commands.iter().enumerate() {
        let outcome = ledger.apply(command, T0 + 1).outcome;
        assert!(outcome.is_ok(), "{command:?}: {outcome:?}");
        writer.flush(&store, &mut ledger, index as u64 + 1);
    }
    // Campaign 1 ends and is paid out; campaign 2 goes on.
    ledger.apply(&don(api::Command::Tick), T0 + 10 * DAY).outcome.unwrap();
    writer.flush(&store, &mut ledger, 100);
    ledger.apply(&don(api::Command::PayOut { campaign: 1 }), T0 + 11 * DAY).outcome.unwrap();
    writer.flush(&store, &mut ledger, 101);
    ledger.check_invariants().unwrap();
    drop(store);

    let store = open(dir.path());
    let loaded = schema::load(&store).unwrap().expect("written");
    assert_eq!(loaded.state, ledger.state(), "what each donor reserved of each pool is summed back from the gifts");
    let state = &loaded.state.donations;
    assert_eq!((state.campaigns.len(), state.held.len(), state.pools.len()), (1, 3, 1), "campaign 2 with its three gifts and its pool");
    assert_eq!(state.matched.get(&(1, 10)), Some(&60_000));
    assert_eq!(state.receipts.get(&(ORGANISER, 2027)), Some(&5));
    let mut restored = Ledger::restore(LedgerLimits::default(), loaded.state);
    restored.check_invariants().unwrap();
    let read = |query| schema::donations::answer(&store, &query).unwrap_or_else(|_| panic!("{query:?} could not be read"));
    let api::Answer::Campaign(Some(paid)) = read(api::Query::Campaign(1)) else { panic!("campaign 1") };
    assert_eq!((paid.status, paid.closed_ms, paid.totals[0].paid_out, paid.totals[0].fees), (CampaignStatus::PaidOut, Some(T0 + 11 * DAY), 48_750, 2_250));
    let ids = |query| match read(query) {
        api::Answer::Donations(list) => list.iter().map(|d| d.id).collect::<Vec<u64>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(ids(api::Query::CampaignDonations { campaign: 2, before: 0, limit: 10 }), vec![5, 4, 3], "newest first");
    assert_eq!(ids(api::Query::CampaignDonations { campaign: 2, before: 5, limit: 1 }), vec![4], "a page before a gift");
    assert_eq!(ids(api::Query::CampaignDonations { campaign: 1, before: 0, limit: 10 }), vec![2, 1]);
    assert_eq!(ids(api::Query::DonorDonations { donor: 10, before: 0, limit: 10 }), vec![5, 4, 3, 1]);
    assert_eq!(ids(api::Query::DonorDonations { donor: 10, before: 4, limit: 10 }), vec![3, 1]);
    // What the gateway's webhook outbox follows: every campaign's gifts and payouts after a cursor, oldest first.
    assert_eq!(ids(api::Query::DonationsAfter { after: 0, limit: 10 }), vec![1, 2, 3, 4, 5]);
    assert_eq!(ids(api::Query::DonationsAfter { after: 2, limit: 2 }), vec![3, 4], "a page after a cursor");
    assert_eq!(ids(api::Query::DonationsAfter { after: 5, limit: 10 }), Vec::<u64>::new());
    assert_eq!(ids(api::Query::DonationsAfter { after: u64::MAX, limit: 10 }), Vec::<u64>::new());
    let api::Answer::Payouts(after) = read(api::Query::PayoutsAfter { after: 0, limit: 10 }) else { panic!() };
    assert_eq!(after.iter().map(|p| (p.id, p.campaign)).collect::<Vec<_>>(), vec![(1, 1)]);
    assert_eq!(read(api::Query::PayoutsAfter { after: 1, limit: 10 }), api::Answer::Payouts(vec![]));
    let api::Answer::Donation(Some(first)) = read(api::Query::Receipt(ReceiptNumber { organiser: ORGANISER, year: 2027, number: 1 })) else {
        panic!("receipt 1")
    };
    assert_eq!((first.id, first.status, first.fee, first.net), (1, DonationStatus::PaidOut, 500, 19_500));
    assert_eq!(read(api::Query::Receipt(ReceiptNumber { organiser: ORGANISER, year: 2027, number: 6 })), api::Answer::Donation(None));
    let api::Answer::Payouts(payouts) = read(api::Query::Payouts { campaign: 1, limit: 10 }) else { panic!() };
    assert_eq!(payouts.len(), 1);
    assert_eq!((payouts[0].lines[0].net, payouts[0].lines[0].fees, payouts[0].lines[0].tips, payouts[0].last), (48_750, 1_250, 1_000, true));
    assert_eq!(read(api::Query::PayoutsDue { at_ms: T0 + 20 * DAY }), api::Answer::Campaigns(vec![]), "campaign 2 is not due before its deadline");
    // After the restart the clock misses nothing: campaign 2 ends below its goal and every gift goes back.
    let ticked = restored.apply(&don(api::Command::Tick), T0 + 30 * DAY).outcome.unwrap();
    assert_eq!(ticked, ledger_api::Outcome::Donations(api::Outcome::Ticked { ended: vec![], refunded: vec![2], pools_closed: vec![1] }));
    restored.check_invariants().unwrap();
    assert_eq!(restored.kernel().balance(products::wallet::available(10, USD)), 10_000_000 - 20_000);
    assert_eq!(restored.kernel().balance(products::wallet::available(SPONSOR, USD)), 10_000_000);
}
