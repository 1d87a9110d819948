//! The edge: inputs chosen to break the conversions between the API's
//! decimals and the ledger's integers. Each must come back as an error with a
//! code, and every daemon must still be serving afterwards.

use std::time::Duration;

use acceptance::{data, Daemon, Options, System, NO_RATE_LIMITS, PLACE};
use security::{refused, tried, with_a_market};
use serde_json::json;

/// The decimals an attacker tries first: the type's ends, its smallest step,
/// values one past what a u64 of ticks or lots holds, and text that is not a
/// decimal at all.
const WORST: &[&str] = &[
    "79228162514264337593543950335",
    "-79228162514264337593543950335",
    "7922816251426433759354395033.5",
    "0.0000000000000000000000000001",
    "-0.0000000000000000000000000001",
    "0",
    "-0",
    "-1",
    "0.001",
    "18446744073709551615",
    "18446744073709551616",
    "184467440737095516.15",
    "184467440737095516.16",
    "1000000001",
    "792281625142643375935439503350",
    "1e30",
    "NaN",
    "inf",
    "",
    "0x10",
    "1.2.3",
    "11111111111111111111111111111111111111111111111111111111111111111111111111111111",
];

#[test]
fn the_worst_decimals_are_refused_and_every_daemon_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut system = System::start_with(dir.path(), &Options { gateway_limits: NO_RATE_LIMITS.into(), ..Options::default() });
    let (operator, trader) = with_a_market(&system);

    for worst in WORST {
        for (what, input) in [
            ("a limit order of quantity {worst} at 100", json!({ "market": "BTC-USD", "side": "BUY", "type": "LIMIT", "quantity": worst, "price": "100" })),
            ("a limit sell of quantity {worst} at 100", json!({ "market": "BTC-USD", "side": "SELL", "type": "LIMIT", "quantity": worst, "price": "100" })),
            ("a limit buy of 0.01 at price {worst}", json!({ "market": "BTC-USD", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": worst })),
            ("a limit buy of {worst} at {worst}", json!({ "market": "BTC-USD", "side": "BUY", "type": "LIMIT", "quantity": worst, "price": worst })),
            ("a market buy of {worst}", json!({ "market": "BTC-USD", "side": "BUY", "type": "MARKET", "quantity": worst })),
            ("a market sell of {worst}", json!({ "market": "BTC-USD", "side": "SELL", "type": "MARKET", "quantity": worst })),
        ] {
            let what = what.replace("{worst}", &format!("{worst:?}"));
            tried(&format!("placeOrder: {what}"));
            let code = refused(&system.as_user(&trader, PLACE, json!({ "i": input })), &what);
            assert!(["BAD_USER_INPUT", "INVALID_LOT_SIZE", "INVALID_TICK_SIZE", "INSUFFICIENT_FUNDS"].contains(&code.as_str()), "{what}: {code}");
        }

        // Amounts a bank could really credit are left out: only the refusals count here.
        if !matches!(*worst, "18446744073709551615" | "18446744073709551616" | "184467440737095516.15" | "184467440737095516.16" | "1000000001") {
            tried(&format!("deposit of {worst:?} USD"));
            let deposit = system.as_user(
                &operator,
                "mutation($m: Decimal!) { deposit(email: \"trader@bank.example\", asset: \"USD\", amount: $m, reference: \"worst\") { amount } }",
                json!({ "m": worst }),
            );
            assert_eq!(refused(&deposit, &format!("a deposit of {worst:?}")), "BAD_USER_INPUT");
        }

        tried(&format!("requestWithdrawal of {worst:?} USD"));
        let withdrawal = system.as_user(
            &trader,
            "mutation($m: Decimal!, $k: String!) { requestWithdrawal(asset: \"USD\", amount: $m, destination: \"DE89370400440532013000\", idempotencyKey: $k) { id } }",
            json!({ "m": worst, "k": format!("worst {worst}") }),
        );
        let code = refused(&withdrawal, &format!("a withdrawal of {worst:?}"));
        assert!(["BAD_USER_INPUT", "INSUFFICIENT_FUNDS"].contains(&code.as_str()), "a withdrawal of {worst:?}: {code}");

        for field in ["tickSize", "lotSize", "makerFeeRate", "takerFeeRate"] {
            tried(&format!("createMarket with {field} {worst:?}"));
            let mut input = json!({ "base": "BTC", "quote": "USD", "tickSize": "1", "lotSize": "0.01", "makerFeeRate": "0", "takerFeeRate": "0" });
            input[field] = json!(worst);
            // Another asset pair each time would need assets; BTC-USD exists, so only refusals of the value itself count.
            let body = system.as_user(&operator, "mutation($i: CreateMarketInput!) { createMarket(input: $i) { id } }", json!({ "i": input }));
            let code = refused(&body, &format!("a market with {field} {worst:?}"));
            assert!(["BAD_USER_INPUT", "DUPLICATE"].contains(&code.as_str()), "{field} {worst:?}: {code}");
        }
    }

    // A market of tiny sizes on a fresh pair: the value must be refused, not the pair.
    let body = system.as_user(&operator, "mutation { createAsset(symbol: \"ETH\", scale: 18) { symbol } }", json!({}));
    data(&body, "createAsset");
    for (tick, lot) in [("0.0000000000000000000000000001", "0.01"), ("1", "0.0000000000000000000000000001"), ("79228162514264337593543950335", "0.01")] {
        tried(&format!("createMarket ETH-USD with tick {tick} and lot {lot}"));
        let input = json!({ "base": "ETH", "quote": "USD", "tickSize": tick, "lotSize": lot, "makerFeeRate": "0", "takerFeeRate": "0" });
        let body = system.as_user(&operator, "mutation($i: CreateMarketInput!) { createMarket(input: $i) { id } }", json!({ "i": input }));
        assert_eq!(refused(&body, &format!("a market with tick {tick} and lot {lot}")), "BAD_USER_INPUT");
    }

    tried("introspection: { __schema { types { name } } }");
    let body = system.as_user(&trader, "{ __schema { types { name } } }", json!({}));
    // async-graphql answers a disabled introspection with null, as if the field did not resolve.
    assert!(body["data"]["__schema"].is_null(), "the schema is not served (introspection is off by default): {body}");
    tried("a field with 50 directives");
    let directives = " @skip(if: false)".repeat(50);
    let body = system.as_user(&trader, &format!("{{ markets{directives} {{ id }} }}"), json!({}));
    assert_eq!(refused(&body, "50 directives on one field"), "BAD_USER_INPUT");

    // Still serving: every daemon is up, and an ordinary order goes through.
    for daemon in Daemon::ALL {
        assert!(system.wait_exit(daemon, Duration::from_millis(50)).is_none(), "{daemon:?} exited");
    }
    assert_eq!(system.get("/readyz").0, 200);
    let order = system.as_user(&trader, PLACE, json!({ "i": { "market": "BTC-USD", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "100" } }));
    assert_eq!(data(&order, "placeOrder")["status"], "OPEN");
    system.stop();
}
