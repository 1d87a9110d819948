//! The ledger's state and history written to real RocksDB files, reopened and
//! read back: what start-up loads must be exactly the state that was written.

use ::ledger::schema::{self, StoredBalance, StoredTransfer, TransferChains};
use ledger_core::*;
use matching_core::{Command, EngineLimits, FastEngine, MarketSpec, OrderKind, SelfTradePrevention, Side, TimeInForce};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use storage::{Batch, Durability, Store, Table};

const BTC: AssetId = 1;
const USD: AssetId = 2;
const MARKET: MarketId = 1;
const USERS: u64 = 12;
/// Given USD once and gives it all away: a balance back at zero, with history.
const EMPTIED: UserId = USERS + 1;

fn market() -> LedgerMarket {
    LedgerMarket {
        base: BTC,
        quote: USD,
        base_units_per_lot: 100_000,
        spec: MarketSpec {
            id: MARKET,
            quote_units_per_tick_lot: 10,
            maker_fee_ppm: 1_000,
            taker_fee_ppm: 2_000,
            price_ticks_max: 1_000_000,
            quantity_lots_max: 1_000,
        },
    }
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
        self.transfers.extend(changes.transfers.iter().cloned());
        let mut batch = Batch::default();
        schema::write_changes(&mut batch, ledger, &changes, &mut self.chains, position);
        store.write(&mut batch, Durability::Journaled).unwrap();
    }
}

/// Applies a seeded random stream of every kind of command, matching included,
/// writing each group of commands as one batch. Returns the ledger.
fn run(store: &Store, seed: u64, commands: usize, journal_start: u64) -> Ledger {
    run_with(store, &mut Writer::default(), seed, commands, journal_start)
}

fn run_with(store: &Store, writer: &mut Writer, seed: u64, commands: usize, journal_start: u64) -> Ledger {
    let mut ledger = Ledger::new(LedgerLimits::default());
    let mut matching = FastEngine::new(EngineLimits::default());
    let mut events = Vec::new();
    matching.execute(&Command::AddMarket(market().spec), &mut events);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut setup = vec![
        LedgerCommand::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }),
        LedgerCommand::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 6 }),
        LedgerCommand::CreateMarket(market()),
    ];
    for user in 1..=USERS {
        setup.push(LedgerCommand::Deposit { user, asset: USD, amount: 50_000_000, reference: format!("usd-{user}") });
        setup.push(LedgerCommand::Deposit { user, asset: BTC, amount: 5_000_000, reference: format!("btc-{user}") });
    }
    setup.push(LedgerCommand::Deposit { user: EMPTIED, asset: USD, amount: 1_000, reference: "usd-emptied".into() });
    setup.push(LedgerCommand::Transfer { from: EMPTIED, to: 1, asset: USD, amount: 1_000, key: "all of it".into() });
    let mut position = journal_start;
    let mut matching_sequence = 0;
    let mut step = |ledger: &mut Ledger, command: LedgerCommand, position: &mut u64| {
        *position += 1;
        let outcome = ledger.apply(&command, *position);
        let forward = match outcome {
            Ok(Outcome::OrderPlaced { forward, .. }) | Ok(Outcome::CancelRequested { forward }) => Some(forward),
            _ => None,
        };
        if let Some(forward) = forward {
            events.clear();
            matching.execute(&forward, &mut events);
            matching_sequence += 1;
            ledger.apply(&LedgerCommand::ApplyMatching { sequence: matching_sequence, events: events.clone() }, *position).unwrap();
        }
    };
    for command in setup {
        step(&mut ledger, command, &mut position);
    }
    writer.flush(store, &mut ledger, position);
    let mut open: Vec<(UserId, OrderId)> = Vec::new();
    for i in 0..commands {
        let user = rng.random_range(1..=USERS);
        let command = match rng.random_range(0..10) {
            0..=5 => {
                let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
                let price = rng.random_range(990..1_010);
                let request = OrderRequest {
                    market: MARKET,
                    side,
                    kind: OrderKind::Limit,
                    time_in_force: TimeInForce::Gtc,
                    post_only: false,
                    price: Some(price),
                    quantity: rng.random_range(1..20),
                    self_trade: SelfTradePrevention::CancelTaker,
                };
                open.push((user, ledger.counters().next_order));
                LedgerCommand::PlaceOrder { user, request, client_order_id: Some(format!("c-{i}")) }
            }
            6 if !open.is_empty() => {
                let (user, order_id) = open.swap_remove(rng.random_range(0..open.len()));
                LedgerCommand::CancelOrder { user, order_id }
            }
            7 => LedgerCommand::Transfer { from: user, to: rng.random_range(1..=USERS), asset: USD, amount: rng.random_range(1..1_000), key: format!("t-{i}") },
            8 => LedgerCommand::RequestWithdrawal { user, asset: BTC, amount: rng.random_range(1..10_000), destination: "bc1q".into(), key: format!("w-{i}") },
            _ => LedgerCommand::DecideWithdrawal { id: rng.random_range(1..=ledger.counters().next_withdrawal), approve: rng.random_bool(0.5) },
        };
        step(&mut ledger, command, &mut position);
        if rng.random_range(0..8) == 0 {
            writer.flush(store, &mut ledger, position);
        }
    }
    writer.flush(store, &mut ledger, position);
    ledger.check_invariants().unwrap();
    ledger
}

#[test]
fn a_new_database_loads_as_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(schema::load(&store).unwrap().is_none());
}

#[test]
fn reopened_state_equals_the_written_state_for_random_histories() {
    for seed in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let (expected_state, expected_hash) = {
            let store = Store::open(dir.path()).unwrap();
            let ledger = run(&store, seed, 3_000, 100);
            (ledger.state(), ledger.state_hash())
        };
        let store = Store::open(dir.path()).unwrap();
        let schema::Loaded { state, journal_applied, .. } = schema::load(&store).unwrap().expect("written before");
        assert_eq!(journal_applied, 100 + 3 + 2 * USERS + 2 + 3_000, "the position of the last batch");
        assert!(!state.open_orders.is_empty() && !state.pending_withdrawals.is_empty(), "seed {seed}: the scenario leaves open records to load");
        assert_eq!(state, expected_state, "seed {seed}");
        let restored = Ledger::restore(LedgerLimits::default(), state);
        assert_eq!(restored.state_hash(), expected_hash);
        restored.check_invariants().unwrap();
    }
}

#[test]
fn history_is_listed_per_user_newest_first_and_closed_orders_keep_their_final_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ledger = run(&store, 7, 2_000, 0);
    let user = 3;
    let orders = schema::orders_of_user(&store, user, usize::MAX).unwrap();
    assert!(orders.len() > 20);
    assert!(orders.iter().all(|o| o.order.user == user), "only the user's own orders");
    assert!(orders.windows(2).all(|w| w[0].order.order_id > w[1].order.order_id), "newest first");
    for record in &orders {
        match ledger.order(record.order.order_id) {
            Some(open) => assert_eq!(open, record, "an open order's stored record is its current one"),
            None => assert!(record.status.is_final(), "an order no longer in memory was stored final: {record:?}"),
        }
        assert_eq!(schema::order(&store, record.order.order_id).unwrap().as_ref(), Some(record));
    }
    assert_eq!(schema::orders_of_user(&store, user, 5).unwrap(), orders[..5], "the limit keeps the newest");

    let trades = schema::trades_of_user(&store, user, usize::MAX).unwrap();
    assert!(!trades.is_empty());
    assert!(trades.iter().all(|t| t.fill.maker_user == user || t.fill.taker_user == user));
    let market_trades = schema::trades_of_market(&store, MARKET, usize::MAX).unwrap();
    assert_eq!(market_trades.len() as u64, ledger.counters().next_trade - 1, "every trade is listed for its market");
    for trade in &trades {
        assert!(market_trades.contains(trade));
    }

    let transfers = schema::transfers_of_user(&store, user, None, usize::MAX).unwrap();
    assert!(transfers.iter().all(|t| t.debit.user() == Some(user) || t.credit.user() == Some(user)));
    // The stored legs rebuild the user's balances from zero.
    let mut rebuilt = std::collections::BTreeMap::<AssetId, Balance>::new();
    for t in &transfers {
        for (account, sign) in [(t.debit, -1), (t.credit, 1)] {
            let entry = rebuilt.entry(t.asset).or_default();
            match account {
                Account::Available(u, _) if u == user => entry.available += sign * t.amount,
                Account::Locked(u, _) if u == user => entry.locked += sign * t.amount,
                _ => {}
            }
        }
    }
    for asset in [BTC, USD] {
        assert_eq!(rebuilt[&asset], ledger.balance(user, asset), "asset {asset}: the history adds up to the balance");
    }
    let withdrawals = schema::withdrawals_of_user(&store, user, usize::MAX).unwrap();
    assert!(!withdrawals.is_empty() && withdrawals.iter().all(|w| w.user == user), "the user's own withdrawals, and some");
}

#[test]
fn a_damaged_record_stops_loading_with_its_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    run(&store, 1, 200, 0);
    let mut batch = Batch::default();
    batch.put(Table::Balances, &[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 2], &[0xff; 3]);
    store.write(&mut batch, Durability::Journaled).unwrap();
    let error = schema::load(&store).expect_err("garbage must not load").to_string();
    assert!(error.contains("balances") && error.contains("000000000000000900000002"), "{error}");
    assert!(error.contains("backup"), "says what to do: {error}");
}

/// A user's open orders are read from their own index: an order that has been
/// resting since before the newest 10,000 of the user's orders is still found
/// (the history index alone looks at the newest 10,000 only).
#[test]
fn a_users_open_orders_are_found_however_long_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut ledger = Ledger::new(LedgerLimits::default());
    let mut matching = FastEngine::new(EngineLimits::default());
    let mut events = Vec::new();
    matching.execute(&Command::AddMarket(market().spec), &mut events);
    let (mut position, mut matching_sequence) = (0, 0);
    let mut step = |ledger: &mut Ledger, command: LedgerCommand| {
        position += 1;
        if let Ok(Outcome::OrderPlaced { forward, .. } | Outcome::CancelRequested { forward }) = ledger.apply(&command, position) {
            events.clear();
            matching.execute(&forward, &mut events);
            matching_sequence += 1;
            ledger.apply(&LedgerCommand::ApplyMatching { sequence: matching_sequence, events: events.clone() }, position).unwrap();
        }
    };
    step(&mut ledger, LedgerCommand::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }));
    step(&mut ledger, LedgerCommand::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 6 }));
    step(&mut ledger, LedgerCommand::CreateMarket(market()));
    step(&mut ledger, LedgerCommand::Deposit { user: 1, asset: USD, amount: 50_000_000, reference: "usd".into() });
    let bid = |price| OrderRequest {
        market: MARKET,
        side: Side::Buy,
        kind: OrderKind::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price: Some(price),
        quantity: 1,
        self_trade: SelfTradePrevention::CancelTaker,
    };
    let resting = ledger.counters().next_order;
    step(&mut ledger, LedgerCommand::PlaceOrder { user: 1, request: bid(900), client_order_id: None });
    for _ in 0..schema::FILTER_SCAN_MAX + 1 {
        let order_id = ledger.counters().next_order;
        step(&mut ledger, LedgerCommand::PlaceOrder { user: 1, request: bid(901), client_order_id: None });
        step(&mut ledger, LedgerCommand::CancelOrder { user: 1, order_id });
    }
    Writer::default().flush(&store, &mut ledger, position);
    let open = |o: &OrderRecord| o.status == OrderStatus::Open;
    let found: Vec<_> = schema::open_orders_of_user_where(&store, 1, 100, open).unwrap().iter().map(|o| o.order.order_id).collect();
    assert_eq!(found, vec![resting], "the one open order, under 20,002 closed ones");
    assert!(schema::orders_of_user_where(&store, 1, 100, open).unwrap().is_empty(), "the history index alone would not find it");
}

/// A version-2 database (open orders keyed by order id alone) is migrated on
/// load: the same state comes back, and it is the current version from then on.
#[test]
fn a_version_2_database_is_migrated_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let expected_state = {
        let store = Store::open(dir.path()).unwrap();
        let ledger = run(&store, 11, 2_000, 0);
        // Back to version 2: the open-order keys without their user, and the version that says so.
        let mut batch = Batch::default();
        for item in store.scan_all(Table::OpenOrders) {
            let (key, _) = item.unwrap();
            batch.delete(Table::OpenOrders, &key);
            batch.put(Table::OpenOrders, &key[8..], &[]);
        }
        batch.put(Table::Meta, b"schema_version", &2u32.to_be_bytes());
        store.write(&mut batch, Durability::Synced).unwrap();
        ledger.state()
    };
    let store = Store::open(dir.path()).unwrap();
    let state = schema::load(&store).unwrap().expect("written before").state;
    assert!(!state.open_orders.is_empty(), "the history leaves open orders to migrate");
    assert_eq!(state, expected_state);
    assert!(store.scan_all(Table::OpenOrders).all(|item| item.unwrap().0.len() == 16), "every key is (user, order id) now");
    assert_eq!(store.get(Table::Meta, b"schema_version").unwrap(), Some(schema::SCHEMA_VERSION.to_be_bytes().to_vec()), "and on to the current version");
}

/// Every user's transfer history, as the stored chains give it, against every
/// transfer written: all of the user's, newest first, per asset or all, and
/// nobody else's.
fn assert_histories(store: &Store, written: &[Transfer]) {
    for user in 1..=EMPTIED + 1 {
        let expected: Vec<&Transfer> = written.iter().rev().filter(|t| t.debit.user() == Some(user) || t.credit.user() == Some(user)).collect();
        let listed = schema::transfers_of_user(store, user, None, usize::MAX).unwrap();
        assert_eq!(listed.iter().collect::<Vec<_>>(), expected, "user {user}");
        assert_eq!(schema::transfers_of_user(store, user, None, 7).unwrap(), listed[..listed.len().min(7)], "user {user}: the limit keeps the newest");
        for asset in [BTC, USD] {
            let in_asset: Vec<&Transfer> = expected.iter().copied().filter(|t| t.asset == asset).collect();
            assert_eq!(
                schema::transfers_of_user(store, user, Some(asset), usize::MAX).unwrap().iter().collect::<Vec<_>>(),
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
        let store = Store::open(dir.path()).unwrap();
        run_with(&store, &mut writer, 5, 2_000, 0);
        assert_histories(&store, &writer.transfers);
        assert!(schema::transfers_of_user(&store, EMPTIED + 1, None, 10).unwrap().is_empty(), "a user without history has none");
        let emptied = schema::transfers_of_user(&store, EMPTIED, None, usize::MAX).unwrap();
        assert_eq!(
            emptied.iter().map(|t| t.kind).collect::<Vec<_>>(),
            [TransferKind::Transfer, TransferKind::Deposit],
            "the history of a balance back at zero"
        );
        assert!(schema::balances_of_user(&store, EMPTIED).unwrap().is_empty(), "and no balance is listed for it");
    }
    // A restart: the heads come back with the state, and new transfers chain onto the old ones.
    let store = Store::open(dir.path()).unwrap();
    let loaded = schema::load(&store).unwrap().expect("written before");
    let mut ledger = Ledger::restore(LedgerLimits::default(), loaded.state);
    let mut writer = Writer { chains: loaded.chains, transfers: writer.transfers };
    let mut position = loaded.journal_applied;
    for i in 0..50u64 {
        position += 1;
        let (from, to) = (1 + i % USERS, 1 + (i * 7 + 3) % USERS);
        ledger.apply(&LedgerCommand::Transfer { from, to, asset: if i % 2 == 0 { USD } else { BTC }, amount: 1, key: format!("after-{i}") }, position).unwrap();
        if i % 10 == 9 {
            writer.flush(&store, &mut ledger, position);
        }
    }
    writer.flush(&store, &mut ledger, position);
    assert_eq!(writer.transfers.len() as u64, ledger.counters().next_transfer - 1, "every transfer went through the writer");
    assert_histories(&store, &writer.transfers);
}

/// A version-3 database (transfers listed in a per-user index, no chains, an
/// idempotency record per command) is migrated on load, including one whose
/// migration stopped part-way (half the transfers and a third of the batches'
/// idempotency records already rewritten): the same state and histories come
/// back, the index is emptied, and it is version 4 from then on.
#[test]
fn a_version_3_database_is_migrated_to_4_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::default();
    let (expected_state, expected_hash) = {
        let store = Store::open(dir.path()).unwrap();
        let ledger = run_with(&store, &mut writer, 13, 2_000, 0);
        // Back to version 3: odd transfers as version 3 wrote them, with their index entries.
        let mut batch = Batch::default();
        for item in store.scan_all(Table::Transfers) {
            let (key, value) = item.unwrap();
            let stored: StoredTransfer = postcard::from_bytes(&value).unwrap();
            let transfer = stored.transfer;
            for user in [transfer.debit.user(), transfer.credit.user()].into_iter().flatten() {
                let mut index_key = user.to_be_bytes().to_vec();
                index_key.extend(transfer.id.to_be_bytes());
                batch.put(Table::TransfersByUser, &index_key, &[]);
            }
            if transfer.id % 2 == 1 {
                batch.put(Table::Transfers, &key, &postcard::to_allocvec(&transfer).unwrap());
            }
        }
        let mut emptied = 0;
        for item in store.scan_all(Table::Balances) {
            let (key, value) = item.unwrap();
            let stored: StoredBalance = postcard::from_bytes(&value).unwrap();
            if stored.balance == Balance::default() {
                batch.delete(Table::Balances, &key);
                emptied += 1;
            } else {
                batch.put(Table::Balances, &key, &postcard::to_allocvec(&stored.balance).unwrap());
            }
        }
        assert!(emptied >= 1, "version 3 kept no record for a balance back at zero");
        // Idempotency records one per command, keyed (position, index), but every third batch's left grouped.
        let mut grouped = 0;
        for (n, item) in store.scan_all(Table::Idempotency).enumerate() {
            let (key, value) = item.unwrap();
            if n % 3 == 0 {
                grouped += 1;
                continue;
            }
            let records: Vec<(Digest, IdempotencyEntry)> = postcard::from_bytes(&value).unwrap();
            batch.delete(Table::Idempotency, &key);
            for (index, record) in records.iter().enumerate() {
                let mut v3_key = key.to_vec();
                v3_key.extend((index as u32).to_be_bytes());
                batch.put(Table::Idempotency, &v3_key, &postcard::to_allocvec(record).unwrap());
            }
        }
        assert!(grouped >= 2, "some batches were migrated before the stop");
        batch.put(Table::Meta, b"schema_version", &3u32.to_be_bytes());
        store.write(&mut batch, Durability::Synced).unwrap();
        (ledger.state(), ledger.state_hash())
    };
    let store = Store::open(dir.path()).unwrap();
    let loaded = schema::load(&store).unwrap().expect("written before");
    assert_eq!(loaded.state, expected_state);
    assert_eq!(Ledger::restore(LedgerLimits::default(), loaded.state).state_hash(), expected_hash);
    for user in 1..=EMPTIED {
        for asset in [BTC, USD] {
            assert_eq!(loaded.chains.newest(user, asset), writer.chains.newest(user, asset), "user {user}, asset {asset}: the chain's head");
        }
    }
    assert_histories(&store, &writer.transfers);
    assert!(store.scan_all(Table::TransfersByUser).next().is_none(), "the per-user index is emptied");
    assert!(store.scan_all(Table::Idempotency).all(|item| item.unwrap().0.len() == 8), "one idempotency record per batch");
    assert_eq!(store.get(Table::Meta, b"schema_version").unwrap(), Some(4u32.to_be_bytes().to_vec()));
}
