//! Password guessing: every attempt counts, per account and per address,
//! however it is sent (aliased fields in one request, many requests, a
//! WebSocket), and the argon2 work behind it is bounded.

use std::net::IpAddr;

use acceptance::{Options, System, NO_RATE_LIMITS};
use security::{post_from, tried};
use serde_json::{json, Value};

/// The production defaults of `[limits]` for logins and query sizes, with room for a large request body.
const LOGIN_LIMITS: &str =
    "login_ip_burst = 20\nlogin_ip_refill_seconds = 6\nlogin_account_burst = 5\nlogin_account_refill_seconds = 60\nbody_bytes_max = 1048576\nquery_complexity_max = 500";

fn codes(body: &Value) -> Vec<String> {
    body["errors"].as_array().map(|errors| errors.iter().map(|e| e["extensions"]["code"].as_str().unwrap_or("NONE").to_string()).collect()).unwrap_or_default()
}

fn count(codes: &[String], code: &str) -> usize {
    codes.iter().filter(|c| *c == code).count()
}

fn address(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

#[test]
fn password_guesses_are_counted_and_held_back_however_they_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start_with(dir.path(), &Options { gateway_limits: format!("{NO_RATE_LIMITS}\n{LOGIN_LIMITS}"), ..Options::default() });
    for victim in ["alice@bank.example", "bob@bank.example", "carol@bank.example"] {
        assert!(post_from(
            address(200),
            system.port,
            "",
            "mutation($e: String!) { register(email: $e, password: \"the real one: tulip quarry lantern\") { id } }",
            json!({ "e": victim })
        )["errors"]
            .is_null());
    }

    tried("500 aliased login fields for one account in one request, each with another password");
    let aliased = |n: usize, victim: &str| -> String {
        let fields: Vec<String> = (0..n).map(|i| format!("g{i}: login(email: \"{victim}\", password: \"guess number {i}\") {{ token }}")).collect();
        format!("mutation {{ {} }}", fields.join(" "))
    };
    let answer = post_from(address(2), system.port, "", &aliased(500, "alice@bank.example"), json!({}));
    assert!(answer["data"].is_null() && count(&codes(&answer), "UNAUTHENTICATED") == 0, "refused whole (over the complexity limit), nothing checked: {answer}");
    tried("240 aliased login fields (under the complexity limit) for one account in one request");
    let answer = post_from(address(2), system.port, "", &aliased(240, "alice@bank.example"), json!({}));
    let seen = codes(&answer);
    assert_eq!(seen.len(), 240, "every field answers: {answer}");
    assert_eq!(count(&seen, "UNAUTHENTICATED"), 1, "one password checked, not 240: {seen:?}");
    assert_eq!(count(&seen, "BAD_USER_INPUT") + count(&seen, "RATE_LIMITED"), 239, "{seen:?}");
    tried("the right password for that account right after, from another address");
    let right = post_from(
        address(3),
        system.port,
        "",
        "mutation { login(email: \"alice@bank.example\", password: \"the real one: tulip quarry lantern\") { token } }",
        json!({}),
    );
    assert_eq!(codes(&right), ["RATE_LIMITED"], "the account's attempts are spent for now: {right}");
    assert!(right["errors"][0]["extensions"]["retryAfterSeconds"].as_u64().unwrap() >= 1, "{right}");

    tried("30 guesses on one account, one request each, from 30 addresses");
    let mut checked = 0;
    for n in 0..30u8 {
        let answer = post_from(address(10 + n), system.port, "", "mutation { login(email: \"bob@bank.example\", password: \"a guess\") { token } }", json!({}));
        checked += count(&codes(&answer), "UNAUTHENTICATED");
    }
    assert_eq!(checked, 5, "the account's burst, no more");

    tried("one address trying 40 accounts (and a guess each)");
    let mut checked = 0;
    for n in 0..40 {
        let answer = post_from(
            address(50),
            system.port,
            "",
            &format!("mutation {{ login(email: \"user{n}@bank.example\", password: \"a guess\") {{ token }} }}"),
            json!({}),
        );
        checked += count(&codes(&answer), "UNAUTHENTICATED");
    }
    assert_eq!(checked, 20, "the address's burst, no more");
    let other = post_from(
        address(51),
        system.port,
        "",
        "mutation { login(email: \"carol@bank.example\", password: \"the real one: tulip quarry lantern\") { token } }",
        json!({}),
    );
    assert!(other["data"]["login"]["token"].is_string(), "another address and account are served: {other}");

    tried("aliased logins over a WebSocket");
    let mut socket = system.subscriptions("");
    socket.send(json!({ "id": "guesses", "type": "subscribe", "payload": { "query": "mutation { a: login(email: \"carol@bank.example\", password: \"x1\") { token } b: login(email: \"carol@bank.example\", password: \"x2\") { token } c: login(email: \"carol@bank.example\", password: \"x3\") { token } }" } }));
    let message = socket.next_for("guesses");
    let errors: Vec<String> = message["payload"]["errors"]
        .as_array()
        .or(message["payload"].as_array())
        .unwrap_or_else(|| panic!("{message}"))
        .iter()
        .map(|e| e["extensions"]["code"].as_str().unwrap_or("NONE").to_string())
        .collect();
    assert_eq!(count(&errors, "UNAUTHENTICATED"), 1, "one password checked over the socket too: {message}");
    assert_eq!(errors.len(), 3, "{message}");
    system.stop();
}

#[test]
fn argon2_work_beyond_its_bound_answers_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    // One hash at a time, of a memory cost that takes a while.
    let options =
        Options { gateway_limits: NO_RATE_LIMITS.into(), gateway_auth: "argon2_concurrent_max = 1\nargon2_memory_kib = 131072".into(), ..Options::default() };
    let system = System::start_with(dir.path(), &options);
    tried("16 registrations at once with one argon2 slot");
    let port = system.port;
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16u8)
            .map(|n| {
                scope.spawn(move || {
                    post_from(
                        address(100 + n),
                        port,
                        "",
                        &format!("mutation {{ register(email: \"new{n}@bank.example\", password: \"a long one: tulip quarry lantern\") {{ id }} }}"),
                        json!({}),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy = answers.iter().filter(|a| codes(a) == ["RATE_LIMITED"]).count();
    let served = answers.iter().filter(|a| a["data"]["register"]["id"].is_string()).count();
    assert_eq!(busy + served, 16, "{answers:?}");
    assert!(served >= 1 && busy >= 1, "some are served, those beyond the bound told to come back: {served} served, {busy} busy");
    system.stop();
}

#[test]
fn two_factor_code_guesses_are_held_back_per_account_whatever_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start_with(dir.path(), &Options { gateway_limits: format!("{NO_RATE_LIMITS}\n{LOGIN_LIMITS}"), ..Options::default() });
    let (email, password) = ("dave@bank.example", "the real one: tulip quarry lantern");
    let register = "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { id } }";
    assert!(post_from(address(200), system.port, "", register, json!({ "e": email, "p": password }))["errors"].is_null());
    let login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }";
    let token = post_from(address(200), system.port, "", login, json!({ "e": email, "p": password }))["data"]["login"]["token"].as_str().unwrap().to_string();
    let enrolment = post_from(address(200), system.port, &token, "mutation($p: String!) { enrolTwoFactor(password: $p) { secret } }", json!({ "p": password }));
    let secret = enrolment["data"]["enrolTwoFactor"]["secret"].as_str().unwrap_or_else(|| panic!("{enrolment}")).to_string();
    let confirm = "mutation($c: String!) { confirmTwoFactor(code: $c) }";
    let confirmed = post_from(address(200), system.port, &token, confirm, json!({ "c": acceptance::totp_code(&secret, acceptance::totp_step_now()) }));
    assert!(confirmed["errors"].is_null(), "{confirmed}");

    // A stolen session token is worth little if codes can be guessed: a
    // million codes, three of them good at any time.
    tried("30 guesses at the code to turn two-factor off, with a stolen token, from 30 addresses");
    let disable = "mutation($c: String!) { disableTwoFactor(code: $c) }";
    let mut checked = 0;
    for n in 0..30u8 {
        let guess = format!("{:06}", 100_000 + u32::from(n) * 7);
        let answer = post_from(address(10 + n), system.port, &token, disable, json!({ "c": guess }));
        assert!(answer["data"]["disableTwoFactor"].is_null(), "{answer}");
        checked += count(&codes(&answer), "UNAUTHENTICATED");
    }
    assert_eq!(checked, 4, "the account's burst of five, one spent confirming, no more");
    tried("60 aliased guesses in one request");
    let fields: Vec<String> = (0..60).map(|i| format!("g{i}: disableTwoFactor(code: \"{:06}\")", 200_000 + i)).collect();
    let answer = post_from(address(60), system.port, &token, &format!("mutation {{ {} }}", fields.join(" ")), json!({}));
    assert_eq!(count(&codes(&answer), "UNAUTHENTICATED"), 0, "none checked while the account is held back: {answer}");
    tried("the right code right after");
    let right = post_from(address(61), system.port, &token, disable, json!({ "c": acceptance::totp_code(&secret, acceptance::totp_step_now() + 1) }));
    assert_eq!(codes(&right), ["RATE_LIMITED"], "{right}");
    let me = post_from(address(61), system.port, &token, "{ me { twoFactorEnabled } }", json!({}));
    assert_eq!(me["data"]["me"]["twoFactorEnabled"], true, "still on: {me}");
    system.stop();
}
