//! The three real daemons under a crash loop (issue 5, test 2): client
//! drivers place and cancel orders on a spot market and a perpetual one,
//! request withdrawals, convert dollars to bitcoin at the house's quotes,
//! an oracle moves the perpetual's price (every move a mark-to-market,
//! funding every 5 s), and the operator deposits, each recording what was
//! acknowledged; a supervisor SIGKILLs a random daemon every 0.5 to 5 s and
//! starts it again. After each restart and at the end it checks that every
//! acknowledged effect is there exactly once, that the ledger's open orders
//! are matching's books, and that no money was created or destroyed over
//! every account (users' general and margin accounts, the perpetual's
//! insurance fund, settlement and funding clearing, the house's), with
//! settlement and clearing at zero.
//!
//! The short version runs in `cargo test` (20 s and at least six kills);
//! `MARIONETTE_CRASH_LOOP_SECONDS=1800 cargo test --workspace --test crash_loop`
//! runs the long one. `MARIONETTE_CRASH_LOOP_SEED` replays a run's choices of
//! daemon and timing (the daemons' own timing is not replayable).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use acceptance::{data, Client, Daemon, Options, System, NO_RATE_LIMITS, OPERATOR, OPERATOR_PASSWORD};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const USERS: usize = 4;
/// Kills in the shortest run.
const KILLS_MIN: u32 = 6;
const PLACE: &str = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { id clientOrderId status } }";
const MARKETS: [&str; 2] = ["BTC-USD", "BTC-USD-PERP"];
const ORACLE: &str = "oracle@domain.io";

/// What the drivers saw acknowledged.
#[derive(Default)]
struct Acknowledged {
    /// (user, clientOrderId, order id) for every order placeOrder answered, in order.
    orders: Vec<(usize, String, String)>,
    /// clientOrderId -> order id: a retry must answer the first order.
    order_ids: HashMap<String, String>,
    /// (user, order id) for every cancel answered CANCELLED.
    cancelled: Vec<(usize, String)>,
    /// Every deposit answered, by asset.
    deposited: HashMap<String, Decimal>,
    /// Every withdrawal request answered, by asset (none is approved or rejected here).
    withdrawn: HashMap<String, Decimal>,
    withdrawals: usize,
    /// (user, quote id) for every conversion acceptConvertQuote answered.
    conversions: Vec<(usize, String)>,
    /// Orders acknowledged on the perpetual market, and the oracle's prices.
    perpetual_orders: usize,
    prices: usize,
}

/// How far earlier audits got through the acknowledged orders and cancels.
#[derive(Clone, Copy, Default)]
struct Audited {
    orders: usize,
    cancelled: usize,
}

fn decimal(value: &Value) -> Decimal {
    Decimal::from_str(value.as_str().unwrap_or_else(|| panic!("not a Decimal: {value}"))).unwrap()
}

/// Sends until the system gives a definite answer: an answer with data, or
/// a business error. A dropped connection or UNAVAILABLE means "maybe": the
/// request is sent again with the same idempotency key.
fn definitely(client: &Client, token: &str, query: &str, variables: &Value, stop_by: Instant) -> Option<Value> {
    while Instant::now() < stop_by {
        match client.request(token, query, variables.clone()) {
            Ok(answer) if answer["errors"][0]["extensions"]["code"] == "UNAVAILABLE" => {}
            Ok(answer) => return Some(answer),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `register` or `login` for `email`, sent until definitely answered.
fn account(client: &Client, mutation: &str, email: &str, password: &str) -> Value {
    let query =
        format!("mutation($e: String!, $p: String!) {{ {mutation}(email: $e, password: $p) {{ {} }} }}", if mutation == "login" { "token" } else { "id" });
    definitely(client, "", &query, &json!({ "e": email, "p": password }), Instant::now() + Duration::from_secs(60))
        .unwrap_or_else(|| panic!("{mutation}: no answer"))
}

fn login(client: &Client, email: &str, password: &str) -> String {
    let answer = account(client, "login", email, password);
    data(&answer, "login")["token"].as_str().unwrap().to_string()
}

fn register(client: &Client, email: &str, password: &str) {
    let answer = account(client, "register", email, password);
    assert!(answer.get("errors").is_none() || answer["errors"][0]["extensions"]["code"] == "DUPLICATE", "{answer}");
}

// The driver threads keep no struct of their own; these are its knobs.
#[allow(clippy::too_many_arguments)]
fn deposit(client: &Client, operator: &str, email: &str, asset: &str, amount: &str, reference: &str, acknowledged: &Mutex<Acknowledged>, stop_by: Instant) {
    let query = "mutation($e: String!, $a: String!, $m: Decimal!, $r: String!) { deposit(email: $e, asset: $a, amount: $m, reference: $r) { id } }";
    if let Some(answer) = definitely(client, operator, query, &json!({ "e": email, "a": asset, "m": amount, "r": reference }), stop_by) {
        assert!(answer.get("errors").is_none(), "a deposit was refused: {answer}");
        *acknowledged.lock().unwrap().deposited.entry(asset.into()).or_default() += Decimal::from_str(amount).unwrap();
    }
}

/// One user's driver: orders around 100 USD, cancels, small withdrawals.
fn drive(client: Client, user: usize, token: String, seed: u64, acknowledged: Arc<Mutex<Acknowledged>>, running: Arc<AtomicBool>, gate: Arc<RwLock<()>>) {
    let mut rng = SmallRng::seed_from_u64(seed ^ user as u64);
    let mut mine: Vec<String> = Vec::new();
    let mut sequence = 0;
    while running.load(Ordering::Acquire) {
        // The supervisor closes the gate to audit between operations.
        let _open = gate.read().unwrap();
        // Anything in flight when the run ends may finish within a minute.
        let stop_by = Instant::now() + Duration::from_secs(60);
        sequence += 1;
        // A trader with hundreds of orders out cancels before placing more: a
        // user at the ledger's 1,000 open orders could not be read in full by
        // the audit (two markets fill fewer of each one's orders than one did).
        let choice = if mine.len() >= 400 { 7 } else { rng.random_range(0..12) };
        match choice {
            10..=11 => {
                // A conversion: a quote for a few dollars' bitcoin, accepted at once.
                let query = "mutation { convertQuote(from: \"USD\", to: \"BTC\", fromAmount: \"5\") { id } }";
                let Some(answer) = definitely(&client, &token, query, &json!({}), stop_by) else { continue };
                let Some(quote) = answer["data"]["convertQuote"]["id"].as_str() else {
                    let code = answer["errors"][0]["extensions"]["code"].as_str();
                    // The gateway limits quotes per user: this driver asks faster than a person.
                    assert!(matches!(code, Some("INSUFFICIENT_FUNDS" | "INSUFFICIENT_LIQUIDITY" | "LIMIT_REACHED" | "RATE_LIMITED")), "{answer}");
                    continue;
                };
                let accept = "mutation($q: ID!, $k: String!) { acceptConvertQuote(quoteId: $q, idempotencyKey: $k) { id } }";
                let variables = json!({ "q": quote, "k": format!("u{user}-c{sequence}") });
                let Some(answer) = definitely(&client, &token, accept, &variables, stop_by) else { continue };
                if let Some(id) = answer["data"]["acceptConvertQuote"]["id"].as_str() {
                    assert_eq!(id, quote, "an accept answers its quote's conversion");
                    acknowledged.lock().unwrap().conversions.push((user, id.to_string()));
                } else {
                    // A crash longer than the quote's life expires it; the money moved for none of these.
                    let code = answer["errors"][0]["extensions"]["code"].as_str();
                    assert!(matches!(code, Some("QUOTE_EXPIRED" | "INSUFFICIENT_FUNDS")), "{answer}");
                }
            }
            0..=6 => {
                let client_order_id = format!("u{user}-{sequence}");
                let market = MARKETS[rng.random_range(0..MARKETS.len())];
                let side = if rng.random_bool(0.5) { "BUY" } else { "SELL" };
                let price = rng.random_range(95..=105).to_string();
                let quantity = format!("0.{:02}", rng.random_range(1..=20));
                let input = json!({ "market": market, "side": side, "type": "LIMIT", "price": price, "quantity": quantity, "clientOrderId": client_order_id });
                let Some(answer) = definitely(&client, &token, PLACE, &json!({ "i": input }), stop_by) else { continue };
                if let Some(id) = answer["data"]["placeOrder"]["id"].as_str() {
                    let mut acknowledged = acknowledged.lock().unwrap();
                    if let Some(first) = acknowledged.order_ids.insert(client_order_id.clone(), id.to_string()) {
                        assert_eq!(first, id, "clientOrderId {client_order_id} answered two different orders");
                    } else {
                        acknowledged.orders.push((user, client_order_id, id.to_string()));
                        acknowledged.perpetual_orders += usize::from(market == MARKETS[1]);
                    }
                    mine.push(id.to_string());
                } else {
                    let code = answer["errors"][0]["extensions"]["code"].as_str();
                    // A perpetual order waits for a fresh index: a crash longer than the
                    // oracle's staleness limit leaves it taking only reducing orders.
                    let stale = market == MARKETS[1] && answer["errors"][0]["message"].as_str().is_some_and(|m| m.contains("stale"));
                    assert!(matches!(code, Some("INSUFFICIENT_FUNDS" | "LIMIT_REACHED")) || stale, "{answer}");
                }
            }
            7..=8 if !mine.is_empty() => {
                let id = mine.swap_remove(rng.random_range(0..mine.len()));
                let query = "mutation($id: ID!) { cancelOrder(id: $id) { id status } }";
                let Some(answer) = definitely(&client, &token, query, &json!({ "id": id }), stop_by) else { continue };
                if answer["data"]["cancelOrder"]["status"] == "CANCELLED" {
                    acknowledged.lock().unwrap().cancelled.push((user, id));
                }
            }
            _ => {
                let query = "mutation($a: String!, $m: Decimal!, $k: String!) { requestWithdrawal(asset: $a, amount: $m, destination: \"DE89 3704 0044 0532 0130 00\", idempotencyKey: $k) { id } }";
                let amount = format!("{}.{:02}", rng.random_range(0..5), rng.random_range(1..100));
                let variables = json!({ "a": "USD", "m": amount, "k": format!("u{user}-w{sequence}") });
                let Some(answer) = definitely(&client, &token, query, &variables, stop_by) else { continue };
                if answer["data"]["requestWithdrawal"]["id"].is_string() {
                    let mut acknowledged = acknowledged.lock().unwrap();
                    *acknowledged.withdrawn.entry("USD".into()).or_default() += Decimal::from_str(&amount).unwrap();
                    acknowledged.withdrawals += 1;
                }
            }
        }
    }
}

/// Every acknowledged effect is there once; the ledger's open orders are
/// matching's book; the operator's reserves balance and equal what was
/// acknowledged. Orders and cancels acknowledged since `audited` are looked
/// up one by one. Retries for a while: after a restart the daemons may still
/// be catching up.
fn audit(system: &System, tokens: &[String], operator: &str, acknowledged: &Acknowledged, audited: &mut Audited) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match try_audit(system, tokens, operator, acknowledged, *audited) {
            Ok(()) => {
                *audited = Audited { orders: acknowledged.orders.len(), cancelled: acknowledged.cancelled.len() };
                return;
            }
            Err(why) if Instant::now() < deadline => {
                eprintln!("audit: not yet ({why})");
                std::thread::sleep(Duration::from_millis(500));
            }
            // What the ledger says of its link to matching helps tell a lost message from a slow one.
            Err(why) => panic!("audit failed: {why}\nledger status: {}", system.ctl(&["status"], "").1),
        }
    }
}

fn try_audit(system: &System, tokens: &[String], operator: &str, acknowledged: &Acknowledged, audited: Audited) -> Result<(), String> {
    let client = system.client();
    let ask = |token: &str, query: &str, variables: Value| -> Result<Value, String> {
        let answer = client.request(token, query, variables)?;
        if answer.get("errors").is_some() {
            return Err(format!("{query}: {answer}"));
        }
        Ok(answer["data"].clone())
    };
    // Money: the ledger's own books, summed over every balance, against what was acknowledged.
    let reserves = ask(operator, "{ reserves { asset deposited users fees pendingWithdrawals balanced accounts { owner purpose amount } } }", json!({}))?;
    for reserve in reserves["reserves"].as_array().unwrap() {
        let asset = reserve["asset"].as_str().unwrap();
        if reserve["balanced"] != true {
            return Err(format!("the books do not balance: {reserve}"));
        }
        // A mark-to-market and a funding each pass through these within one command.
        let passing = reserve["accounts"].as_array().unwrap().iter().filter(|line| line["purpose"] == "settlement" || line["purpose"] == "funding clearing");
        if let Some(line) = passing.clone().find(|line| !decimal(&line["amount"]).is_zero()) {
            return Err(format!("{asset}'s {} account holds {} between commands", line["purpose"], line["amount"]));
        }
        let deposited = acknowledged.deposited.get(asset).copied().unwrap_or_default();
        let withdrawn = acknowledged.withdrawn.get(asset).copied().unwrap_or_default();
        if decimal(&reserve["deposited"]) != deposited || decimal(&reserve["pendingWithdrawals"]) != withdrawn {
            return Err(format!("acknowledged deposits {deposited} and withdrawals {withdrawn} of {asset}, the ledger has {reserve}"));
        }
    }
    // Conversions: each acknowledged one is in its user's history, once.
    let mut histories: HashMap<usize, Vec<String>> = HashMap::new();
    for (user, id) in &acknowledged.conversions {
        if !histories.contains_key(user) {
            let trades = ask(&tokens[*user], "{ convertTrades(limit: 1000) { id } }", json!({}))?;
            histories.insert(*user, trades["convertTrades"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect());
        }
        let history = &histories[user];
        if history.iter().filter(|h| *h == id).count() != 1 {
            return Err(format!("acknowledged conversion {id} of trader {user} is not in their history once: {history:?}"));
        }
    }
    // Orders: the new acknowledgements one by one; resting orders against matching's book.
    let order = "query($id: ID!) { userOrder(id: $id) { id status } }";
    for (user, client_order_id, id) in &acknowledged.orders[audited.orders..] {
        let found = ask(&tokens[*user], order, json!({ "id": id }))?;
        if found["userOrder"]["id"] != id.as_str() {
            return Err(format!("acknowledged order {client_order_id} ({id}) is gone: {found}"));
        }
    }
    for (user, id) in &acknowledged.cancelled[audited.cancelled..] {
        let found = ask(&tokens[*user], order, json!({ "id": id }))?;
        if found["userOrder"]["status"] != "CANCELLED" {
            return Err(format!("order {id} was acknowledged cancelled but is {found}"));
        }
    }
    let mut resting: BTreeMap<(String, String, Decimal), Decimal> = BTreeMap::new();
    let mut recent: Vec<Value> = Vec::new();
    let lists = "{ balances { available locked } open: userOrders(status: OPEN, limit: 1000) { market side price quantity filledQuantity } \
                 partly: userOrders(status: PARTIALLY_FILLED, limit: 1000) { market side price quantity filledQuantity } \
                 recent: userOrders(limit: 1000) { id clientOrderId market side price quantity filledQuantity status } }";
    for token in tokens {
        let mine = ask(token, lists, json!({}))?;
        if let Some(negative) =
            mine["balances"].as_array().unwrap().iter().find(|b| decimal(&b["available"]) < Decimal::ZERO || decimal(&b["locked"]) < Decimal::ZERO)
        {
            return Err(format!("a negative balance: {negative}"));
        }
        // The newest thousand orders: no clientOrderId twice (a retry must not place a second order).
        recent.extend(mine["recent"].as_array().unwrap().iter().cloned());
        let mut client_order_ids = HashSet::new();
        if let Some(twice) = mine["recent"].as_array().unwrap().iter().find(|o| !client_order_ids.insert(o["clientOrderId"].to_string())) {
            return Err(format!("two orders for clientOrderId {}", twice["clientOrderId"]));
        }
        for list in ["open", "partly"] {
            let orders = mine[list].as_array().unwrap();
            assert!(orders.len() < 1000, "a user has 1,000 resting orders, more than one read shows: the book cannot be compared");
            for order in orders {
                let rest = decimal(&order["quantity"]) - decimal(&order["filledQuantity"]);
                *resting.entry((order["market"].as_str().unwrap().into(), order["side"].as_str().unwrap().into(), decimal(&order["price"]))).or_default() +=
                    rest;
            }
        }
    }
    let mut levels: BTreeMap<(String, String, Decimal), Decimal> = BTreeMap::new();
    for market in MARKETS {
        let book =
            ask("", "query($m: ID!) { orderBook(market: $m, depth: 1000) { bids { price quantity } asks { price quantity } } }", json!({ "m": market }))?;
        for (side, key) in [("BUY", "bids"), ("SELL", "asks")] {
            for level in book["orderBook"][key].as_array().unwrap() {
                levels.insert((market.into(), side.into(), decimal(&level["price"])), decimal(&level["quantity"]));
            }
        }
    }
    if levels != resting {
        // Candidates for what the two disagree on: the ledger's recent orders at a differing level whose
        // rest or size is the difference, whatever their status. What the next look starts from.
        let mut candidates = Vec::new();
        for key in levels.keys().chain(resting.keys()).collect::<HashSet<_>>() {
            let difference = (levels.get(key).copied().unwrap_or_default() - resting.get(key).copied().unwrap_or_default()).abs();
            if difference.is_zero() {
                continue;
            }
            let at_level = recent.iter().filter(|o| o["market"] == key.0.as_str() && o["side"] == key.1.as_str() && decimal(&o["price"]) == key.2);
            candidates.extend(
                at_level
                    .filter(|o| decimal(&o["quantity"]) - decimal(&o["filledQuantity"]) == difference || decimal(&o["quantity"]) == difference)
                    .take(10)
                    .cloned(),
            );
        }
        return Err(format!("matching's book {levels:?} is not the ledger's resting orders {resting:?}; candidates: {candidates:?}"));
    }
    Ok(())
}

#[test]
fn acknowledged_effects_survive_a_crash_loop_of_all_three_daemons() {
    let seconds: u64 = std::env::var("MARIONETTE_CRASH_LOOP_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("MARIONETTE_CRASH_LOOP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| std::process::id() as u64);
    eprintln!("crash loop: {seconds} s, seed {seed} (MARIONETTE_CRASH_LOOP_SEED={seed} replays the supervisor's choices)");
    let dir = tempfile::tempdir().unwrap();
    // Rate limits would only slow the drivers and the audits down.
    // Drivers log in once: tokens must outlive the long run (they expire after 15 minutes by default).
    let options = Options { gateway_limits: NO_RATE_LIMITS.into(), gateway_auth: "token_ttl_seconds = 86400".into(), ..Options::default() };
    let mut system = System::start_with(dir.path(), &options);
    assert_eq!(system.ctl(&["create-asset", "BTC", "8"], "").0, 0);
    assert_eq!(system.ctl(&["create-asset", "USD", "2"], "").0, 0);
    assert_eq!(system.ctl(&["create-market", "BTC", "USD", "1", "0.01", "0.001", "0.002"], "").0, 0);
    // Convert: the house funded from custody (which the reserves count as brought in), and a pair at 100.
    for (asset, amount) in [("BTC", "100"), ("USD", "100000")] {
        let (exit, said) = system.ctl(&["fund-house", asset, amount, &format!("crash-loop-{asset}")], "");
        assert_eq!(exit, 0, "{said}");
    }
    let (exit, said) = system.ctl(&["convert-pair", "BTC", "USD", "100", "10", "10", "0.0001", "1000", "0.00000001", "1000", "1000000"], "");
    assert_eq!(exit, 0, "{said}");
    let client = system.client();
    let operator = login(&client, OPERATOR, OPERATOR_PASSWORD);
    // The perpetual: 10x at most, funding every 5 s at the default 0.01%
    // interest (so every funding pays), priced by its oracle from the start.
    let perpetual = json!({
        "base": "BTC", "collateral": "USD", "tickSize": "0.01", "lotSize": "0.001", "makerFeeRate": "0.001", "takerFeeRate": "0.002",
        "marginBrackets": [{ "maxNotional": "10000000", "initialMarginRate": "0.1", "maintenanceMarginRate": "0.05" }],
        "fundingIntervalMs": 5_000,
    });
    let answer =
        client.request(&operator, "mutation($i: CreatePerpetualMarketInput!) { createPerpetualMarket(input: $i) { id } }", json!({ "i": perpetual })).unwrap();
    assert_eq!(answer["data"]["createPerpetualMarket"]["id"], MARKETS[1], "{answer}");
    register(&client, ORACLE, "a long one: tulip quarry lantern");
    let oracle = login(&client, ORACLE, "a long one: tulip quarry lantern");
    let answer = client
        .request(&operator, "mutation($m: ID!, $e: String!) { setOracle(market: $m, email: $e, source: 1) }", json!({ "m": MARKETS[1], "e": ORACLE }))
        .unwrap();
    assert_eq!(answer["data"]["setOracle"], true, "{answer}");
    const SUBMIT_PRICE: &str = "mutation($m: ID!, $p: Decimal!) { submitOraclePrice(market: $m, price: $p) { indexPrice } }";
    let answer = client.request(&oracle, SUBMIT_PRICE, json!({ "m": MARKETS[1], "p": "100" })).unwrap();
    assert_eq!(answer["data"]["submitOraclePrice"]["indexPrice"], "100", "{answer}");
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    {
        let mut acknowledged = acknowledged.lock().unwrap();
        acknowledged.deposited.insert("BTC".into(), Decimal::from(100));
        acknowledged.deposited.insert("USD".into(), Decimal::from(100_000));
    }
    let mut tokens = Vec::new();
    for user in 0..USERS {
        let email = format!("trader{user}@domain.io");
        register(&client, &email, "a long one: tulip quarry lantern");
        tokens.push(login(&client, &email, "a long one: tulip quarry lantern"));
        let far = Instant::now() + Duration::from_secs(60);
        deposit(&client, &operator, &email, "USD", "5000", &format!("open-usd-{user}"), &acknowledged, far);
        deposit(&client, &operator, &email, "BTC", "20", &format!("open-btc-{user}"), &acknowledged, far);
    }

    let running = Arc::new(AtomicBool::new(true));
    let gate = Arc::new(RwLock::new(()));
    let mut drivers: Vec<_> = (0..USERS)
        .map(|user| {
            let (token, acknowledged, running, gate) = (tokens[user].clone(), acknowledged.clone(), running.clone(), gate.clone());
            std::thread::spawn(move || drive(client, user, token, seed, acknowledged, running, gate))
        })
        .collect();
    // The oracle walks the price between 95 and 105: a mark-to-market at every move.
    drivers.push({
        let (acknowledged, running, gate) = (acknowledged.clone(), running.clone(), gate.clone());
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x0ac1e);
        std::thread::spawn(move || {
            let mut price: i32 = 100;
            while running.load(Ordering::Acquire) {
                let _open = gate.read().unwrap();
                price = (price + rng.random_range(-1..=1)).clamp(95, 105);
                let variables = json!({ "m": MARKETS[1], "p": price.to_string() });
                if let Some(answer) = definitely(&client, &oracle, SUBMIT_PRICE, &variables, Instant::now() + Duration::from_secs(60)) {
                    assert!(answer["data"]["submitOraclePrice"]["indexPrice"].is_string(), "a price was refused: {answer}");
                    acknowledged.lock().unwrap().prices += 1;
                }
                drop(_open);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    });
    // The operator keeps depositing while the daemons die.
    drivers.push({
        let (operator, acknowledged, running, gate) = (operator.clone(), acknowledged.clone(), running.clone(), gate.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while running.load(Ordering::Acquire) {
                let _open = gate.read().unwrap();
                n += 1;
                let email = format!("trader{}@domain.io", n % USERS);
                deposit(&client, &operator, &email, "USD", "10.25", &format!("topup-{n}"), &acknowledged, Instant::now() + Duration::from_secs(60));
                drop(_open);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });

    let mut rng = SmallRng::seed_from_u64(seed);
    let mut audited = Audited::default();
    // MARIONETTE_CRASH_LOOP_DAEMONS=matching,ledger narrows who is killed, to corner a failure.
    let victims: Vec<Daemon> = match std::env::var("MARIONETTE_CRASH_LOOP_DAEMONS") {
        Ok(names) => names
            .split(',')
            .map(|name| match name.trim() {
                "matching" => Daemon::Matching,
                "ledger" => Daemon::Ledger,
                "gateway" => Daemon::Gateway,
                other => panic!("MARIONETTE_CRASH_LOOP_DAEMONS: {other:?} is not matching, ledger or gateway"),
            })
            .collect(),
        Err(_) => Daemon::ALL.to_vec(),
    };
    let mut kills: BTreeMap<&str, u32> = BTreeMap::new();
    let ends = Instant::now() + Duration::from_secs(seconds);
    // At least KILLS_MIN kills however slow this machine is today, then for as long as asked.
    while Instant::now() < ends || kills.values().sum::<u32>() < KILLS_MIN {
        std::thread::sleep(Duration::from_millis(rng.random_range(500..=5_000)));
        let daemon = victims[rng.random_range(0..victims.len())];
        system.kill_9(daemon);
        *kills
            .entry(match daemon {
                Daemon::Matching => "matching",
                Daemon::Ledger => "ledger",
                Daemon::Gateway => "gateway",
            })
            .or_default() += 1;
        system.start_again(daemon);
        // With the drivers between operations, every acknowledgement so far must hold.
        let _closed = gate.write().unwrap();
        audit(&system, &tokens, &operator, &acknowledged.lock().unwrap(), &mut audited);
    }
    running.store(false, Ordering::Release);
    for driver in drivers {
        driver.join().expect("a driver failed");
    }
    let acknowledged = acknowledged.lock().unwrap();
    eprintln!(
        "kills {kills:?}; acknowledged: {} orders ({} on the perpetual), {} cancels, {} withdrawals, {} conversions, {} oracle prices, deposits and the house's funding {:?}",
        acknowledged.orders.len(),
        acknowledged.perpetual_orders,
        acknowledged.cancelled.len(),
        acknowledged.withdrawals,
        acknowledged.conversions.len(),
        acknowledged.prices,
        acknowledged.deposited
    );
    assert!(!acknowledged.conversions.is_empty(), "no conversion was acknowledged: convert went untested through the crashes");
    assert!(acknowledged.orders.len() >= 10, "the drivers got too little done to judge: {}", acknowledged.orders.len());
    assert!(acknowledged.perpetual_orders >= 5 && acknowledged.prices >= 10, "the perpetual went untested through the crashes");
    audit(&system, &tokens, &operator, &acknowledged, &mut audited);
    // Positions were open and funding was paid through the crashes.
    let client = system.client();
    let funded = client.request("", "query($m: ID!) { fetchFundingRateHistory(market: $m, limit: 1000) { amount } }", json!({ "m": MARKETS[1] })).unwrap();
    let payments = funded["data"]["fetchFundingRateHistory"].as_array().unwrap_or_else(|| panic!("{funded}"));
    assert!(payments.iter().any(|p| !decimal(&p["amount"]).is_zero()), "no funding was paid in the run: {funded}");
    let open: usize = tokens
        .iter()
        .map(|token| {
            let answer = client.request(token, "{ fetchPositions { contracts } }", json!({})).unwrap();
            answer["data"]["fetchPositions"].as_array().unwrap_or_else(|| panic!("{answer}")).len()
        })
        .sum();
    assert!(open > 0, "no position was open at the end of the run");

    // And once more from a cold start of all three, every acknowledgement of the run.
    drop(system);
    let system = System::start_with(dir.path(), &options);
    audit(&system, &tokens, &operator, &acknowledged, &mut Audited::default());
}
