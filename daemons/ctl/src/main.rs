//! `marionettectl`: sets up and inspects a Marionette appliance through the
//! gateway's admin socket (a Unix socket only root or the marionette user can
//! open). Exit status: 0 done, 1 failed, 3 already there (DUPLICATE), so
//! scripts can run a setup twice.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

const USAGE: &str = "usage: marionettectl [--socket PATH] COMMAND
  create-operator EMAIL                 the password is read from stdin (one line)
  create-asset SYMBOL SCALE             e.g. create-asset BTC 8
  create-market BASE QUOTE TICK_SIZE LOT_SIZE MAKER_FEE_RATE TAKER_FEE_RATE
                                        e.g. create-market BTC USD 1 0.01 0.001 0.002
  deposit EMAIL ASSET AMOUNT REFERENCE  credit a user (idempotent by REFERENCE)
  status                                the gateway, the ledger and its link to matching
  graphql QUERY [VARIABLES_JSON]        any GraphQL operation, with operator rights
PATH defaults to /run/marionette/gateway-admin.sock.";

const EXIT_DUPLICATE: i32 = 3;

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("marionettectl: {error:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> anyhow::Result<i32> {
    let mut socket = PathBuf::from("/run/marionette/gateway-admin.sock");
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--socket") {
        socket = args.get(1).context("--socket needs a path")?.into();
        args.drain(..2);
    }
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let request = match words.as_slice() {
        ["create-operator", email] => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("reading the password from stdin")?;
            json!({ "op": "create-operator", "email": email, "password": password.trim_end_matches(['\r', '\n']) })
        }
        ["create-asset", symbol, scale] => graphql(
            "mutation($s: String!, $n: Int!) { createAsset(symbol: $s, scale: $n) { id symbol scale } }",
            json!({ "s": symbol, "n": scale.parse::<i32>().context("SCALE is a number of decimal places")? }),
        ),
        ["create-market", base, quote, tick, lot, maker, taker] => graphql(
            "mutation($i: CreateMarketInput!) { createMarket(input: $i) { id tickSize lotSize makerFeeRate takerFeeRate } }",
            json!({ "i": { "base": base, "quote": quote, "tickSize": tick, "lotSize": lot, "makerFeeRate": maker, "takerFeeRate": taker } }),
        ),
        ["deposit", email, asset, amount, reference] => graphql(
            "mutation($e: String!, $a: String!, $m: Decimal!, $r: String!) { deposit(email: $e, asset: $a, amount: $m, reference: $r) { id asset amount } }",
            json!({ "e": email, "a": asset, "m": amount, "r": reference }),
        ),
        ["status"] => json!({ "op": "status" }),
        ["graphql", query] => graphql(query, json!({})),
        ["graphql", query, variables] => graphql(query, serde_json::from_str(variables).context("VARIABLES_JSON is not JSON")?),
        ["--help" | "-h" | "help"] => {
            println!("{USAGE}");
            return Ok(0);
        }
        _ => bail!("{USAGE}"),
    };
    let answer = ask(&socket, &request)?;
    if let Some(ok) = answer.get("ok") {
        println!("{}", serde_json::to_string_pretty(ok)?);
        return Ok(0);
    }
    let code = answer["code"].as_str().unwrap_or("ERROR");
    eprintln!("marionettectl: {code}: {}", answer["error"].as_str().unwrap_or("the gateway gave no reason"));
    Ok(if code == "DUPLICATE" { EXIT_DUPLICATE } else { 1 })
}

fn graphql(query: &str, variables: Value) -> Value {
    json!({ "op": "graphql", "query": query, "variables": variables })
}

fn ask(socket: &PathBuf, request: &Value) -> anyhow::Result<Value> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot open the admin socket {} (is marionette-gateway running, and are you root or in its group?)", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).context("reading the gateway's answer")?;
    serde_json::from_str(&line).with_context(|| format!("the gateway's answer is not JSON: {line:?}"))
}
