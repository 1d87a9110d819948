//! The ledger's disk fills up under load (issue 5, test 3): the ledger must
//! stop with a clear message and a non-zero exit (so systemd restarts it and
//! an operator sees why), acknowledge nothing it did not persist, and once
//! there is room again recover everything it acknowledged; retried requests
//! then apply exactly once.

use std::time::Duration;

use acceptance::{data, Daemon, Options, SmallDisk, System, NO_RATE_LIMITS, OPERATOR, OPERATOR_PASSWORD};
use rust_decimal::Decimal;
use serde_json::json;

const DEPOSIT: &str = "mutation($r: String!) { deposit(email: \"saver@domain.io\", asset: \"USD\", amount: \"1.00\", reference: $r) { id } }";

#[test]
fn a_full_disk_stops_the_ledger_with_a_clear_error_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Declared after the directory, so unmounted before it is removed.
    let disk = SmallDisk::mount(&dir.path().join("ledger"), 3 << 20);
    // No rate limits in the way of filling it quickly.
    let mut system = System::start_with(dir.path(), &Options { gateway_limits: NO_RATE_LIMITS.into(), ..Options::default() });
    assert_eq!(system.ctl(&["create-asset", "USD", "2"], "").0, 0);
    system.register("saver@domain.io", "a long password");
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    let client = system.client();

    // Deposits, each with its own long reference, until the ledger stops.
    let (mut acknowledged, mut unanswered) = (0u64, Vec::new());
    let padding = "p".repeat(100);
    let status = loop {
        assert!(acknowledged < 1_000_000, "a 3 MiB disk never filled");
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
    assert!(!status.success(), "a full disk is a failure exit, so systemd restarts it and an operator looks");
    assert!(acknowledged > 100, "the disk filled too early to judge: {acknowledged}");
    let log = std::fs::read_to_string(system.log_path(Daemon::Ledger)).unwrap();
    assert!(log.contains("No space left on device") && log.contains("start it again"), "the log names the cause and what to do:\n{}", &log[log.len().saturating_sub(3000)..]);
    // The gateway says so instead of hanging.
    let refused = client.request(&operator, DEPOSIT, json!({ "r": "while-down" })).unwrap();
    assert_eq!(refused["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{refused}");
    unanswered.push("while-down".into());

    // Room again: the ledger recovers what it acknowledged, and the unanswered deposits, sent again, apply once.
    disk.grow(64 << 20);
    system.start_again(Daemon::Ledger);
    for reference in &unanswered {
        let answer = (0..200)
            .find_map(|_| {
                let answer = client.request(&operator, DEPOSIT, json!({ "r": reference })).ok()?;
                let retry = answer["errors"][0]["extensions"]["code"] == "UNAVAILABLE";
                if retry {
                    std::thread::sleep(Duration::from_millis(50));
                }
                (!retry).then_some(answer)
            })
            .expect("the ledger came back");
        data(&answer, "deposit");
    }
    let user = system.login("saver@domain.io", "a long password");
    let balances = system.as_user(&user, "{ balances { asset available locked } }", json!({}));
    let available: Decimal = data(&balances, "balances")[0]["available"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        available,
        Decimal::from(acknowledged + unanswered.len() as u64),
        "every deposit once: {acknowledged} acknowledged before the disk filled, {} after",
        unanswered.len()
    );
}
