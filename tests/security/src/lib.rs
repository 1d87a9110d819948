//! The attacks of the security suite (`tests/`), each against a whole
//! Marionette started from its binaries (the `acceptance` crate's
//! [`System`](acceptance::System)), each expected to be refused.
//!
//! Every attack says what it tried, on the test's output, so that a reviewer
//! reading a CI log sees what was attempted and what came back.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

use acceptance::{data, System, OPERATOR, OPERATOR_PASSWORD};
use serde_json::{json, Value};

/// Says what an attack tries, before it tries it.
pub fn tried(what: &str) {
    eprintln!("tried: {what}");
}

/// A system with BTC (scale 8), USD (scale 2), the BTC-USD market (tick 1,
/// lot 0.01) and a funded user: the operator's and the user's tokens.
pub fn with_a_market(system: &System) -> (String, String) {
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    for (symbol, scale) in [("BTC", 8), ("USD", 2)] {
        let body =
            system.as_user(&operator, "mutation($s: String!, $n: Int!) { createAsset(symbol: $s, scale: $n) { symbol } }", json!({ "s": symbol, "n": scale }));
        data(&body, "createAsset");
    }
    let market = system.as_user(
        &operator,
        "mutation { createMarket(input: { base: \"BTC\", quote: \"USD\", tickSize: \"1\", lotSize: \"0.01\", makerFeeRate: \"0\", takerFeeRate: \"0\" }) { id } }",
        json!({}),
    );
    data(&market, "createMarket");
    data(&system.register("trader@bank.example", "trader: tulip quarry lantern"), "register");
    let trader = system.login("trader@bank.example", "trader: tulip quarry lantern");
    for (asset, amount) in [("USD", "100000.00"), ("BTC", "10")] {
        let body = system.as_user(
            &operator,
            "mutation($a: String!, $m: Decimal!) { deposit(email: \"trader@bank.example\", asset: $a, amount: $m, reference: \"funding\") { kind } }",
            json!({ "a": asset, "m": amount }),
        );
        data(&body, "deposit");
    }
    (operator, trader)
}

/// The error code of an answer that must be an error, or a panic saying what came back instead.
pub fn refused(body: &Value, what: &str) -> String {
    match body["errors"][0]["extensions"]["code"].as_str() {
        Some(code) => code.to_string(),
        None => panic!("{what} was not refused with a code: {body}"),
    }
}

/// A connection to the gateway from `source`, another loopback address
/// (127.0.0.0/8 is all the host's): how a test plays a second client machine.
pub fn connect_from(source: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = runtime.block_on(socket.connect(SocketAddr::from(([127, 0, 0, 1], port))))?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// POST /graphql from `source`: the JSON answer.
pub fn post_from(source: IpAddr, port: u16, token: &str, query: &str, variables: Value) -> Value {
    let auth = if token.is_empty() { String::new() } else { format!("Authorization: Bearer {token}\r\n") };
    post_with_headers(source, port, &auth, query, variables)
}

/// POST /graphql from `source` with extra header lines (each ending in \r\n): the JSON answer.
pub fn post_with_headers(source: IpAddr, port: u16, headers: &str, query: &str, variables: Value) -> Value {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let mut stream = connect_from(source, port).unwrap();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {response:?}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}
