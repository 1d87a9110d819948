//! Disk faults under the real daemons (issue 5, test 3): a full disk and a
//! failing fdatasync (EIO, injected through the journal's test hook, since
//! io_uring's fsync cannot be intercepted from outside) under the ledger and
//! under matching. Each daemon must stop with the cause and what to do in
//! its log and a failure exit (so systemd restarts it and an operator sees
//! why), acknowledge nothing it did not persist, keep the others serving,
//! and once the disk is healthy again recover everything it acknowledged;
//! requests that were left unanswered, sent again, apply exactly once.

use std::collections::BTreeMap;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use acceptance::{data, Client, Daemon, Options, SmallDisk, System, NO_RATE_LIMITS, OPERATOR, OPERATOR_PASSWORD};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const DEPOSIT: &str = "mutation($r: String!) { deposit(email: \"saver@domain.io\", asset: \"USD\", amount: \"1.00\", reference: $r) { id } }";
const PLACE: &str = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { id status } }";
const SYNC_FAULT: &str = journal::SYNC_FAULT_ENV;

fn no_rate_limits() -> Options {
    Options { gateway_limits: NO_RATE_LIMITS.into(), ..Options::default() }
}

/// Sends until the answer is definite (data or a business error), as a client
/// retrying with its idempotency key does.
fn definitely(client: &Client, token: &str, query: &str, variables: Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(answer) = client.request(token, query, variables.clone()) {
            if answer["errors"][0]["extensions"]["code"] != "UNAVAILABLE" {
                return answer;
            }
        }
        assert!(Instant::now() < deadline, "no definite answer to {query} {variables}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_log_says(system: &System, daemon: Daemon, causes: &[&str]) {
    let log = std::fs::read_to_string(system.log_path(daemon)).unwrap();
    let tail = &log[log.len().saturating_sub(3000)..];
    for cause in causes.iter().chain(&["start it again"]) {
        assert!(log.contains(cause), "{daemon:?}'s log must say {cause:?}:\n{tail}");
    }
}

// ------------------------------------------------------------------ the ledger

/// Deposits until the ledger stops; then checks the stop, makes room with
/// `heal`, restarts it and checks that every deposit is there once.
fn deposits_survive_the_ledger_stopping(system: &mut System, causes: &[&str], heal: impl FnOnce(&mut System)) {
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    let client = system.client();
    let (mut acknowledged, mut unanswered) = (0u64, Vec::new());
    let padding = "p".repeat(100);
    let status = loop {
        assert!(acknowledged < 1_000_000, "the ledger never stopped");
        let reference = format!("deposit-{}-{padding}", acknowledged + unanswered.len() as u64);
        match client.request(&operator, DEPOSIT, json!({ "r": reference })) {
            Ok(answer) if answer.get("errors").is_none() => acknowledged += 1,
            Ok(answer) => {
                assert_eq!(answer["errors"][0]["extensions"]["code"], "UNAVAILABLE", "only 'maybe' is an acceptable failure: {answer}");
                unanswered.push(reference);
            }
            Err(error) => panic!("the gateway must stay up when the ledger stops: {error}"),
        }
        if let Some(status) = system.wait_exit(Daemon::Ledger, Duration::ZERO) {
            break status;
        }
    };
    eprintln!("the ledger stopped with {status} after {acknowledged} acknowledged deposits ({} unanswered)", unanswered.len());
    assert!(!status.success(), "a disk fault is a failure exit, so systemd restarts it and an operator looks");
    assert!(acknowledged > 100, "stopped too early to judge: {acknowledged}");
    assert_log_says(system, Daemon::Ledger, causes);
    // The gateway says so instead of hanging.
    let refused = client.request(&operator, DEPOSIT, json!({ "r": "while-down" })).unwrap();
    assert_eq!(refused["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{refused}");
    unanswered.push("while-down".into());

    heal(system);
    for reference in &unanswered {
        data(&definitely(&client, &operator, DEPOSIT, json!({ "r": reference })), "deposit");
    }
    let user = system.login("saver@domain.io", "a long one: tulip quarry lantern");
    let balances = system.as_user(&user, "{ balances { asset available locked } }", json!({}));
    let available: Decimal = data(&balances, "balances")[0]["available"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        available,
        Decimal::from(acknowledged + unanswered.len() as u64),
        "every deposit once: {acknowledged} acknowledged before the stop, {} after",
        unanswered.len()
    );
}

fn saver(system: &System) {
    assert_eq!(system.ctl(&["create-asset", "USD", "2"], "").0, 0);
    system.register("saver@domain.io", "a long one: tulip quarry lantern");
}

#[test]
fn a_full_disk_stops_the_ledger_with_a_clear_error_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Declared after the directory, so unmounted before it is removed.
    let disk = SmallDisk::mount(&dir.path().join("ledger"), 3 << 20);
    let mut system = System::start_with(dir.path(), &no_rate_limits());
    saver(&system);
    deposits_survive_the_ledger_stopping(&mut system, &["No space left on device"], |system| {
        disk.grow(64 << 20);
        system.start_again(Daemon::Ledger);
    });
}

#[test]
fn a_failing_fdatasync_stops_the_ledger_with_a_clear_error_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut system = System::start_with(dir.path(), &no_rate_limits());
    saver(&system);
    system.kill_9(Daemon::Ledger);
    system.start_again_with_env(Daemon::Ledger, &[(SYNC_FAULT, "300")]);
    deposits_survive_the_ledger_stopping(&mut system, &["fdatasync failed", "Input/output error"], |system| system.start_again(Daemon::Ledger));
}

// ------------------------------------------------------------------ matching

/// Users with money and a market whose buy orders rest without crossing.
fn traders(system: &System) -> Vec<String> {
    assert_eq!(system.ctl(&["create-asset", "BTC", "8"], "").0, 0);
    assert_eq!(system.ctl(&["create-asset", "USD", "2"], "").0, 0);
    assert_eq!(system.ctl(&["create-market", "BTC", "USD", "1", "0.01", "0.001", "0.002"], "").0, 0);
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    let deposit = "mutation($e: String!, $r: String!) { deposit(email: $e, asset: \"USD\", amount: \"1000000\", reference: $r) { id } }";
    (0..4)
        .map(|user| {
            let email = format!("trader{user}@domain.io");
            system.register(&email, "a long one: tulip quarry lantern");
            data(&system.as_user(&operator, deposit, json!({ "e": email, "r": format!("funding-{user}") })), "deposit");
            system.login(&email, "a long one: tulip quarry lantern")
        })
        .collect()
}

fn buy(n: usize) -> Value {
    json!({ "market": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": (1 + n % 50).to_string(), "quantity": "0.01", "clientOrderId": format!("o{n}") })
}

/// Places resting buy orders until matching stops, and a few more while it
/// is down (the ledger holds them and keeps them for matching); then checks
/// the stop, runs `heal`, and checks that matching's book holds every
/// acknowledged order exactly once.
fn orders_survive_matching_stopping(system: &mut System, causes: &[&str], heal: impl FnOnce(&mut System)) {
    let tokens = traders(system);
    let client = system.client();
    let mut acknowledged: BTreeMap<usize, String> = BTreeMap::new();
    let mut unanswered = Vec::new();
    let mut stopped: Option<ExitStatus> = None;
    let mut after_stop = 0;
    for n in 0.. {
        assert!(n < 3_900, "matching never stopped (the users' open-order limits come next)");
        let token = &tokens[n % tokens.len()];
        match client.request(token, PLACE, json!({ "i": buy(n) })) {
            Ok(answer) if answer.get("errors").is_none() => {
                acknowledged.insert(n, data(&answer, "placeOrder")["id"].as_str().unwrap().to_string());
            }
            Ok(answer) => {
                assert_eq!(answer["errors"][0]["extensions"]["code"], "UNAVAILABLE", "only 'maybe' is an acceptable failure: {answer}");
                unanswered.push(n);
            }
            Err(error) => panic!("the gateway must stay up when matching stops: {error}"),
        }
        if stopped.is_none() {
            stopped = system.wait_exit(Daemon::Matching, Duration::ZERO);
        } else {
            after_stop += 1;
            if after_stop == 5 {
                break;
            }
        }
    }
    let status = stopped.expect("the loop ends after matching stopped");
    eprintln!("matching stopped with {status}; {} orders acknowledged, {} unanswered", acknowledged.len(), unanswered.len());
    assert!(!status.success(), "a disk fault is a failure exit, so systemd restarts it and an operator looks");
    assert!(acknowledged.len() > 100, "stopped too early to judge: {}", acknowledged.len());
    assert_log_says(system, Daemon::Matching, causes);

    heal(system);
    for n in unanswered {
        let answer = definitely(&client, &tokens[n % tokens.len()], PLACE, json!({ "i": buy(n) }));
        acknowledged.insert(n, data(&answer, "placeOrder")["id"].as_str().unwrap().to_string());
    }
    // Every acknowledged order rests on matching's book once: 0.01 BTC per order at its price.
    let mut expected: BTreeMap<String, Decimal> = BTreeMap::new();
    for n in acknowledged.keys() {
        *expected.entry((1 + n % 50).to_string()).or_default() += Decimal::new(1, 2);
    }
    let book = "{ orderBook(market: \"BTC-USD\", depth: 100) { bids { price quantity } } }";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = system.as_user(&tokens[0], book, json!({}));
        let bids: BTreeMap<String, Decimal> = data(&answer, "orderBook")["bids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|level| {
                let price: Decimal = level["price"].as_str().unwrap().parse().unwrap();
                (price.normalize().to_string(), level["quantity"].as_str().unwrap().parse().unwrap())
            })
            .collect();
        if bids == expected {
            break;
        }
        assert!(Instant::now() < deadline, "matching's book is not the acknowledged orders:\nbook     {bids:?}\nexpected {expected:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_full_disk_stops_matching_with_a_clear_error_and_every_acknowledged_order_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("matching"), 64 << 10);
    let mut system = System::start_with(dir.path(), &no_rate_limits());
    orders_survive_matching_stopping(&mut system, &["No space left on device"], |system| {
        disk.grow(64 << 20);
        system.start_again(Daemon::Matching);
    });
}

#[test]
fn a_failing_fdatasync_stops_matching_with_a_clear_error_and_every_acknowledged_order_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut system = System::start_with(dir.path(), &no_rate_limits());
    system.kill_9(Daemon::Matching);
    system.start_again_with_env(Daemon::Matching, &[(SYNC_FAULT, "300")]);
    orders_survive_matching_stopping(&mut system, &["fdatasync failed", "Input/output error"], |system| system.start_again(Daemon::Matching));
}
