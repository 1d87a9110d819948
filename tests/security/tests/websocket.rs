//! graphql-transport-ws as its protocol is written, tried with the clients
//! people use: the `graphql-ws` library's client and the `ws` library's raw
//! socket, which (like browsers) takes a close frame over 125 bytes for a
//! broken connection. Node runs them (`ws-client/`, installed by
//! scripts/test with `npm ci`).

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use acceptance::{Options, Subscriptions, System, NO_RATE_LIMITS};
use security::{connect_from, tried, with_a_market};
use serde_json::{json, Value};

/// One scenario of `ws-client/attacks.mjs`: how the socket ended and what it saw.
fn node(system: &System, scenario: &str, token: &str) -> Value {
    // Cargo's run-time value first: a binary reused from a clone at another path has the wrong compile-time one.
    let client = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())).join("ws-client");
    assert!(client.join("node_modules/graphql-ws").exists(), "run `npm ci` in {} (scripts/test does) before this test", client.display());
    let output = Command::new("node")
        .arg("attacks.mjs")
        .args([&system.port.to_string(), scenario, token])
        .current_dir(&client)
        .output()
        .unwrap_or_else(|e| panic!("node did not run ({e}): scripts/test installs it"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "attacks.mjs {scenario} failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("attacks.mjs {scenario} printed no JSON ({e}): {stdout}"))
}

/// The close a scenario ended with: its code, having checked that the frame was valid.
fn closed_with(result: &Value) -> u64 {
    assert!(result.get("error").is_none(), "the socket failed instead of closing cleanly: {result}");
    assert!(result["reasonBytes"].as_u64().unwrap() <= 123, "a close reason over 123 bytes: {result}");
    result["code"].as_u64().unwrap_or_else(|| panic!("no close code: {result}"))
}

#[test]
fn the_protocol_s_mistakes_close_with_the_protocol_s_codes() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { gateway_limits: format!("{NO_RATE_LIMITS}\nwebsocket_ping_seconds = 1\nwebsocket_idle_seconds = 3"), ..Options::default() };
    let system = System::start_with(dir.path(), &options);
    let (_, trader) = with_a_market(&system);

    for (scenario, what, code) in [
        ("not-json", "a message that is not JSON", 4400),
        ("unknown-type", "a message of an unknown 200-character type (its error once made a 126-byte close reason)", 4400),
        ("subscribe-before-init", "a subscribe before connection_init", 4401),
        ("duplicate-id", "a second subscribe under a running subscription's id", 4409),
        ("long-id", "a duplicate id of 400 two-byte characters, which the close reason quotes", 4409),
        ("second-init", "a second connection_init", 4429),
    ] {
        tried(&format!("WebSocket: {what}"));
        let result = node(&system, scenario, &trader);
        assert_eq!(closed_with(&result), code, "{what}: {result}");
    }

    tried("WebSocket: the graphql-ws client subscribing to the order book, then disposing");
    let result = node(&system, "client", &trader);
    assert!(result["next"]["data"]["orderBook"]["sequence"].is_string(), "{result}");
    tried("WebSocket: the graphql-ws client subscribing with a query that does not validate, then a good one");
    let result = node(&system, "client-bad-query", &trader);
    assert!(result["errors"][0]["message"].is_string(), "the client's error callback gets the GraphQL errors: {result}");
    assert!(result["thenNext"]["data"]["orderBook"].is_object(), "the socket stays usable: {result}");

    tried("WebSocket: acknowledged, then silent with nothing subscribed (idle limit 3 s)");
    let result = node(&system, "idle", &trader);
    assert_eq!(closed_with(&result), 1000, "{result}");
    assert!(result["pings"].as_u64().unwrap() >= 2, "pings every second: {result}");

    tried("WebSocket: subscribed, never answering a ping (ping every 1 s)");
    let result = node(&system, "deaf", &trader);
    assert_eq!(closed_with(&result), 1001, "{result}");

    tried("WebSocket: subscribed with a token that expires 5 s later");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let user_id = system.as_user(&trader, "{ me { id } }", json!({}))["data"]["me"]["id"].as_str().unwrap().to_string();
    let short = system.signed_token(&json!({ "sub": user_id, "role": "User", "sid": acceptance::session_of(&trader), "iat": now, "exp": now + 5 }));
    let result = node(&system, "expiring", &short);
    assert_eq!(closed_with(&result), 4403, "{result}");
    assert!(result["received"].as_array().unwrap().iter().any(|m| m["type"] == "next"), "it was served until it expired: {result}");
    system.stop();
}

/// The status line of a WebSocket upgrade to /graphql sent with these extra headers.
fn upgrade(system: &System, headers: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", system.port)).unwrap();
    let request = format!(
        "GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n{headers}\r\n",
        system.port
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn only_the_gateway_s_own_pages_and_configured_origins_open_websockets() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { gateway_listen: "websocket_origins = [\"https://console.bank.example\"]".into(), ..Options::default() };
    let system = System::start_with(dir.path(), &options);

    tried("a WebSocket opened by a page of another site (Origin: https://evil.example), which would carry the user's cookie");
    assert_eq!(upgrade(&system, "Origin: https://evil.example\r\n"), "HTTP/1.1 403");
    tried("the same from an opaque origin (a sandboxed frame, a file)");
    assert_eq!(upgrade(&system, "Origin: null\r\n"), "HTTP/1.1 403");
    tried("the same from the gateway's host on another port");
    assert_eq!(upgrade(&system, "Origin: http://127.0.0.1:1\r\n"), "HTTP/1.1 403");
    // Served: the configured console, the gateway's own origin, and clients that are not browsers.
    assert_eq!(upgrade(&system, "Origin: https://console.bank.example\r\n"), "HTTP/1.1 101");
    assert_eq!(upgrade(&system, &format!("Origin: http://127.0.0.1:{}\r\n", system.port)), "HTTP/1.1 101");
    assert_eq!(upgrade(&system, ""), "HTTP/1.1 101");
    system.stop();
}

#[test]
fn one_address_cannot_take_every_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { gateway_limits: format!("{NO_RATE_LIMITS}\nsubscriptions_per_ip_max = 3"), ..Options::default() };
    let system = System::start_with(dir.path(), &options);
    let (_, trader) = with_a_market(&system);
    let (flooder, other) = (IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3]));
    let book = "subscription { orderBook(market: \"BTC-USD\", depth: 1) { market } }";

    tried("four subscriptions from one address, over two sockets");
    let mut first = Subscriptions::over(connect_from(flooder, system.port).unwrap(), system.port, &trader);
    let mut second = Subscriptions::over(connect_from(flooder, system.port).unwrap(), system.port, &trader);
    for (socket, id) in [(0, "a"), (0, "b"), (1, "c")] {
        let socket = if socket == 0 { &mut first } else { &mut second };
        socket.subscribe(id, book);
        assert_eq!(socket.next_for(id)["type"], "next", "subscription {id} is served");
    }
    second.subscribe("d", book);
    let refused = second.next_for("d");
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "RATE_LIMITED", "{refused}");

    tried("a subscription from another address meanwhile");
    let mut elsewhere = Subscriptions::over(connect_from(other, system.port).unwrap(), system.port, &trader);
    elsewhere.subscribe("e", book);
    assert_eq!(elsewhere.next_for("e")["type"], "next");

    // A completed subscription gives its place back to its address.
    first.send(json!({ "id": "a", "type": "complete" }));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        second.subscribe("f", book);
        let answer = second.next_for("f");
        if answer["type"] == "next" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the completed subscription's place never came back: {answer}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    system.stop();
}
