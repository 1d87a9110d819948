//! Steps of `tokenization.feature`: issuers, investors' claims, tokens,
//! offerings, subscriptions, the close, vesting and the cap table, all
//! through the API as an issuer, an investor and the operators use it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use acceptance::data;
use cucumber::{given, then, when};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::{decimal, email, field_decimal, Marionette};

/// The blake3 digest of the (imaginary) offering document every token names.
const DOCUMENT_HASH: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
const SUBSCRIPTION_FIELDS: &str = "id status amount payment allocated paid refunded";

/// "alice", "alice and bob", "alice, bob and carol".
fn names(list: &str) -> Vec<String> {
    list.replace(" and ", ", ").split(", ").map(str::to_string).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn in_seconds(seconds: u64) -> String {
    chrono::DateTime::from_timestamp_millis(now_ms() + seconds as i64 * 1_000).unwrap().to_rfc3339()
}

/// Waits for `done` to hold of the answer to `query`, asked as `name`, for at most `wait`.
fn poll(world: &Marionette, name: &str, query: &str, variables: Value, wait: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let answer = world.ask(name, query, variables.clone());
        if done(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "still not done after {wait:?}: {answer}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn offering_id(world: &Marionette) -> String {
    world.offering.clone().expect("no offering was made in this scenario")
}

#[given(regex = r"^the operators make (\w+) an issuer$")]
fn make_issuer(world: &mut Marionette, name: String) {
    if !world.tokens.contains_key(&name) {
        world.create_account(&name);
    }
    let answer = world.ask("operator", "mutation($e: String!) { setIssuer(email: $e, issuer: true) }", json!({ "e": email(&name) }));
    assert_eq!(data(&answer, "setIssuer"), true, "{answer}");
    assert_eq!(data(&world.ask(&name, "{ amIssuer }", json!({})), "amIssuer"), true);
}

#[when(regex = r"^(\w+) makes (?:her|him)self an issuer$")]
fn makes_self_issuer(world: &mut Marionette, name: String) {
    world.answer = world.ask(&name, "mutation($e: String!) { setIssuer(email: $e, issuer: true) }", json!({ "e": email(&name) }));
}

#[given(regex = r"^the operators set the platform's fee on offerings to (\d+) bps$")]
fn set_offering_fee(world: &mut Marionette, bps: i64) {
    let answer = world.ask("operator", "mutation($b: Int!) { setOfferingFee(feeBps: $b) }", json!({ "b": bps }));
    assert_eq!(data(&answer, "setOfferingFee"), bps, "{answer}");
    assert_eq!(data(&world.ask("operator", "{ offeringFeeBps }", json!({})), "offeringFeeBps"), bps);
}

#[given(regex = r"^([\w, ]+?) (?:is a verified investor|are verified investors) from (\d+) with ([\d.]+) (\w+)(?: each)?$")]
fn verified_investors(world: &mut Marionette, list: String, country: i64, amount: String, asset: String) {
    for name in names(&list) {
        world.create_account(&name);
        world.deposit(&name, &amount, &asset, &format!("{name}-opening-{asset}"));
        let answer = world.ask(
            "operator",
            "mutation($e: String!, $c: Int!, $x: DateTime!) { setInvestorClaims(email: $e, country: $c, category: RETAIL, expiresAt: $x) { country category } }",
            json!({ "e": email(&name), "c": country, "x": in_seconds(365 * 86_400) }),
        );
        assert_eq!(data(&answer, "setInvestorClaims")["country"], country, "{answer}");
        let mine = world.ask(&name, "{ myInvestorClaims { country category expiresAt } }", json!({}));
        assert_eq!(data(&mine, "myInvestorClaims")["category"], "RETAIL", "{mine}");
    }
}

#[given(regex = r"^(\w+) creates the token (\w+) with (\d+) decimals, a lot of ([\d.]+) and a supply of at most ([\d.]+)(?:, not for investors from (\d+))?$")]
#[when(regex = r"^(\w+) creates the token (\w+) with (\d+) decimals, a lot of ([\d.]+) and a supply of at most ([\d.]+)(?:, not for investors from (\d+))?$")]
fn creates_token(world: &mut Marionette, name: String, symbol: String, decimals: i64, lot: String, supply: String, denied: String) {
    let rules = if denied.is_empty() { json!(null) } else { json!({ "deniedCountries": [denied.parse::<i64>().unwrap()] }) };
    world.answer = world.ask(
        &name,
        "mutation($s: String!, $d: Int!, $l: Decimal!, $m: Decimal!, $h: String!, $r: TokenRulesInput) {
            createToken(symbol: $s, decimals: $d, lotSize: $l, maxSupply: $m, documentHash: $h, documentUrl: \"https://issuer.example/acme.pdf\", rules: $r) {
                symbol decimals lotSize maxSupply supply documentHash rules { deniedCountries }
            }
        }",
        json!({ "s": symbol, "d": decimals, "l": lot, "m": supply, "h": DOCUMENT_HASH, "r": rules }),
    );
    if world.answer.get("errors").is_some() {
        return;
    }
    let token = data(&world.answer, "createToken");
    assert_eq!(
        (token["symbol"].as_str(), token["supply"].as_str(), token["documentHash"].as_str()),
        (Some(symbol.as_str()), Some("0"), Some(DOCUMENT_HASH)),
        "{token}"
    );
    assert_eq!(field_decimal(&token["maxSupply"]), decimal(&supply));
}

#[when(
    regex = r"^(\w+) offers ([\d.]+) (\w+) at ([\d.]+) (\w+) each, a target of ([\d.]+), ([\d.]+) to ([\d.]+) per investor, for (\d+) seconds(?:, cancellable until (\d+) seconds before the end)?(?:, vesting in (\d+) tranches every (\d+) seconds)?(?:, listing at a tick of ([\d.]+) \w+ and a lot of ([\d.]+) \w+)?$"
)]
#[allow(clippy::too_many_arguments)]
fn offers(
    world: &mut Marionette,
    name: String,
    hard_cap: String,
    token: String,
    price: String,
    payment: String,
    soft_cap: String,
    min: String,
    max: String,
    seconds: u64,
    cutoff: String,
    tranches: String,
    period: String,
    list_tick: String,
    list_lot: String,
) {
    // The shipped cut-off, 48 hours before the end, does not fit an
    // offering of seconds: one second unless the scenario names one.
    let cutoff: i64 = if cutoff.is_empty() { 1 } else { cutoff.parse().unwrap() };
    let (tranches, period): (Option<i64>, Option<i64>) = match tranches.is_empty() {
        true => (None, None),
        false => (Some(tranches.parse().unwrap()), Some(period.parse().unwrap())),
    };
    let answer = world.ask(
        &name,
        "mutation($t: String!, $p: String!, $price: Decimal!, $soft: Decimal!, $hard: Decimal!, $min: Decimal!, $max: Decimal!, $end: DateTime!, $cut: Int, $n: Int, $period: Int,
                  $tick: Decimal, $lot: Decimal) {
            createOffering(token: $t, paymentAsset: $p, price: $price, softCap: $soft, hardCap: $hard, minSubscription: $min, maxSubscription: $max,
                           endsAt: $end, cancelCutoffSeconds: $cut, vestingTranches: $n, vestingPeriodSeconds: $period, listTickSize: $tick, listLotSize: $lot) {
                id status token paymentAsset price softCap hardCap feeBps endsAt cancelUntil vesting { tranches periodSeconds } listing { tickSize lotSize }
            }
        }",
        json!({ "t": token, "p": payment, "price": price, "soft": soft_cap, "hard": hard_cap, "min": min, "max": max,
                "end": in_seconds(seconds), "cut": cutoff, "n": tranches, "period": period,
                "tick": (!list_tick.is_empty()).then_some(&list_tick), "lot": (!list_lot.is_empty()).then_some(&list_lot) }),
    );
    let offering = data(&answer, "createOffering");
    assert_eq!((offering["status"].as_str(), offering["token"].as_str()), (Some("OPEN"), Some(token.as_str())), "{offering}");
    assert_eq!(field_decimal(&offering["price"]), decimal(&price), "{offering}");
    // The operators' fee, fixed on the offering when it is made.
    let fee = world.ask("operator", "{ offeringFeeBps }", json!({}));
    assert_eq!(offering["feeBps"], data(&fee, "offeringFeeBps").clone(), "{offering}");
    if let Some(tranches) = tranches {
        assert_eq!(offering["vesting"]["tranches"], tranches, "{offering}");
    }
    if !list_tick.is_empty() {
        let listing = &offering["listing"];
        assert_eq!((field_decimal(&listing["tickSize"]), field_decimal(&listing["lotSize"])), (decimal(&list_tick), decimal(&list_lot)), "{offering}");
    }
    world.offering = Some(offering["id"].as_str().unwrap().to_string());
}

#[when(regex = r"^(\w+) subscribes for ([\d.]+) (\w+)$")]
fn subscribes(world: &mut Marionette, name: String, amount: String, _token: String) {
    let offering = offering_id(world);
    world.answer = world.ask(
        &name,
        &format!("mutation($o: ID!, $a: Decimal!, $k: String!) {{ subscribe(offeringId: $o, amount: $a, idempotencyKey: $k) {{ {SUBSCRIPTION_FIELDS} }} }}"),
        json!({ "o": offering, "a": amount, "k": subscription_key(&name, &offering, &amount) }),
    );
    if world.answer.get("errors").is_some() {
        return;
    }
    let subscription = data(&world.answer, "subscribe");
    assert_eq!(subscription["status"], "OPEN", "{subscription}");
    assert_eq!(field_decimal(&subscription["amount"]), decimal(&amount), "{subscription}");
    world.subscriptions.insert(name, subscription["id"].as_str().unwrap().to_string());
}

/// One request's key: the same investor, offering and amount repeat it.
fn subscription_key(name: &str, offering: &str, amount: &str) -> String {
    format!("{name}-subscribes-{offering}-for-{amount}")
}

#[then(regex = r"^(\w+)'s request for ([\d.]+) \w+ again answers (?:her|his) (\w+) subscription$")]
fn repeated_subscription(world: &mut Marionette, name: String, amount: String, status: String) {
    let offering = offering_id(world);
    let answer = world.ask(
        &name,
        &format!("mutation($o: ID!, $a: Decimal!, $k: String!) {{ subscribe(offeringId: $o, amount: $a, idempotencyKey: $k) {{ {SUBSCRIPTION_FIELDS} }} }}"),
        json!({ "o": offering, "a": amount, "k": subscription_key(&name, &offering, &amount) }),
    );
    let subscription = data(&answer, "subscribe");
    assert_eq!(
        (subscription["id"].as_str(), subscription["status"].as_str()),
        (world.subscriptions.get(&name).map(String::as_str), Some(status.as_str())),
        "{answer}"
    );
}

#[when(regex = r"^(\w+) cancels (her|his|\w+'s) subscription$")]
fn cancels_subscription(world: &mut Marionette, name: String, whose: String) {
    let owner = whose.strip_suffix("'s").unwrap_or(&name).to_string();
    let id = world.subscriptions.get(&owner).unwrap_or_else(|| panic!("{owner} has not subscribed")).clone();
    world.answer = world.ask(&name, &format!("mutation($s: ID!) {{ cancelSubscription(subscriptionId: $s) {{ {SUBSCRIPTION_FIELDS} }} }}"), json!({ "s": id }));
}

#[when("the offering closes")]
fn offering_closes(world: &mut Marionette) {
    let id = offering_id(world);
    let query = "query($o: ID!) { offering(id: $o) { status endsAt } }";
    // The ledger's clock closes it at its end; the wait allows a loaded machine.
    poll(world, "operator", query, json!({ "o": id }), Duration::from_secs(60), |answer| data(answer, "offering")["status"] != "OPEN");
}

#[then(regex = r"^the offering has ([\d.]+) (\w+) subscribed in (\d+) open subscriptions$")]
fn offering_subscribed(world: &mut Marionette, amount: String, _token: String, open: i64) {
    let answer = world.ask("operator", "query($o: ID!) { offering(id: $o) { subscribed openSubscriptions } }", json!({ "o": offering_id(world) }));
    let offering = data(&answer, "offering");
    assert_eq!((field_decimal(&offering["subscribed"]), offering["openSubscriptions"].as_i64()), (decimal(&amount), Some(open)), "{offering}");
}

#[then(regex = r"^the offering is (\w+) with ([\d.]+) (\w+) issued, ([\d.]+) (\w+) raised and a fee of ([\d.]+) \w+$")]
fn offering_closed(world: &mut Marionette, status: String, issued: String, _token: String, raised: String, _payment: String, fee: String) {
    let answer = world.ask("ivy", "query($o: ID!) { offering(id: $o) { status issued raised fee closedAt } }", json!({ "o": offering_id(world) }));
    let offering = data(&answer, "offering");
    assert_eq!(offering["status"], status.as_str(), "{offering}");
    assert!(offering["closedAt"].is_string(), "a closed offering says when: {offering}");
    let shown = [&offering["issued"], &offering["raised"], &offering["fee"]].map(|v| v.as_str().unwrap().to_string());
    assert_eq!(shown, [issued, raised, fee], "issued, raised and fee of {offering}");
}

#[then(regex = r"^(\w+)'s subscription is (\w+): ([\d.]+) \w+ allocated, ([\d.]+) \w+ paid and ([\d.]+) \w+ refunded$")]
fn subscription_is(world: &mut Marionette, name: String, status: String, allocated: String, paid: String, refunded: String) {
    let id = world.subscriptions.get(&name).unwrap_or_else(|| panic!("{name} has not subscribed")).clone();
    let answer = world.ask(&name, &format!("{{ mySubscriptions {{ {SUBSCRIPTION_FIELDS} }} }}"), json!({}));
    let mine = data(&answer, "mySubscriptions").as_array().unwrap();
    let subscription = mine.iter().find(|s| s["id"] == id.as_str()).unwrap_or_else(|| panic!("{name}'s subscription {id} is not among hers: {answer}"));
    let shown =
        [&subscription["status"], &subscription["allocated"], &subscription["paid"], &subscription["refunded"]].map(|v| v.as_str().unwrap().to_string());
    assert_eq!(shown, [status, allocated, paid, refunded], "status, allocated, paid, refunded of {subscription}");
    // What was held is what was paid and what was given back, to the unit.
    if subscription["status"] != "OPEN" {
        assert_eq!(field_decimal(&subscription["paid"]) + field_decimal(&subscription["refunded"]), field_decimal(&subscription["payment"]), "{subscription}");
    }
    // The issuer sees the same subscription among the offering's.
    let issuers = world.ask(
        "ivy",
        &format!("query($o: ID!) {{ offeringSubscriptions(offeringId: $o) {{ {SUBSCRIPTION_FIELDS} }} }}"),
        json!({ "o": offering_id(world) }),
    );
    assert!(data(&issuers, "offeringSubscriptions").as_array().unwrap().contains(subscription), "{issuers}");
    // An investor does not read the others'.
    let refused = world.ask(&name, "query($o: ID!) { offeringSubscriptions(offeringId: $o) { id } }", json!({ "o": offering_id(world) }));
    assert_eq!(acceptance::code(&refused), "FORBIDDEN", "{refused}");
}

#[then(regex = r"^the token (\w+) has a supply of ([\d.]+)$")]
fn token_supply(world: &mut Marionette, symbol: String, supply: String) {
    let answer = world.ask("alice", "{ tokens { symbol supply } }", json!({}));
    let token = data(&answer, "tokens")
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["symbol"] == symbol.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no token {symbol}: {answer}"));
    assert_eq!(field_decimal(&token["supply"]), decimal(&supply), "{token}");
}

/// "alice 400 (0.4), bob 333 (0.333)", optionally " with 51 locked" after the last.
#[then(regex = r"^the cap table of (\w+) is (.+?)(?: with ([\d.]+) locked)?$")]
fn cap_table(world: &mut Marionette, symbol: String, entries: String, locked: String) {
    let answer = world.ask("ivy", "query($t: String!) { capTable(token: $t) { email balance locked share } }", json!({ "t": symbol }));
    let table = data(&answer, "capTable").as_array().unwrap();
    let expected: Vec<(String, Decimal, Decimal)> = entries
        .split(", ")
        .map(|entry| {
            let (name, rest) = entry.split_once(' ').unwrap();
            let (balance, share) = rest.trim_end_matches(')').split_once(" (").unwrap();
            (email(name), decimal(balance), decimal(share))
        })
        .collect();
    let shown: Vec<(String, Decimal, Decimal)> =
        table.iter().map(|e| (e["email"].as_str().unwrap_or("?").to_string(), field_decimal(&e["balance"]), field_decimal(&e["share"]))).collect();
    assert_eq!(shown, expected, "holders, largest first, with their balances and shares: {answer}");
    let total_locked: Decimal = table.iter().map(|e| field_decimal(&e["locked"])).sum();
    assert_eq!(total_locked, if locked.is_empty() { Decimal::ZERO } else { decimal(&locked) }, "{answer}");
    // Only the issuer and the operators read it.
    let investor = world.tokens.keys().find(|k| !["ivy", "operator"].contains(&k.as_str())).cloned().unwrap();
    let refused = world.ask(&investor, "query($t: String!) { capTable(token: $t) { balance } }", json!({ "t": symbol }));
    assert_eq!(acceptance::code(&refused), "FORBIDDEN", "{refused}");
}

#[when(regex = r"^(\w+) transfers ([\d.]+) (\w+) to (\w+)$")]
fn transfers(world: &mut Marionette, from: String, amount: String, asset: String, to: String) {
    world.answer = world.ask(
        &from,
        "mutation($a: String!, $t: String!, $m: Decimal!, $k: String!) { transfer(asset: $a, toEmail: $t, amount: $m, idempotencyKey: $k) { amount kind } }",
        json!({ "a": asset, "t": email(&to), "m": amount, "k": format!("{from}-to-{to}-{amount}-{asset}") }),
    );
    if world.answer.get("errors").is_none() {
        assert_eq!(field_decimal(&data(&world.answer, "transfer")["amount"]), -decimal(&amount), "{}", world.answer);
    }
}

#[given(regex = r"^the operators set the fees of the markets tokens list on to ([\d.]+)%$")]
fn set_listing_fees(world: &mut Marionette, fee_percent: String) {
    let rate = (decimal(&fee_percent) / Decimal::ONE_HUNDRED).to_string();
    let answer = world.ask(
        "operator",
        "mutation($m: Decimal!, $t: Decimal!) { setListingFees(makerFeeRate: $m, takerFeeRate: $t) { makerFeeRate takerFeeRate } }",
        json!({ "m": rate, "t": rate }),
    );
    assert_eq!(field_decimal(&data(&answer, "setListingFees")["takerFeeRate"]), decimal(&rate), "{answer}");
    let fees = world.ask("ivy", "{ listingFees { makerFeeRate } }", json!({}));
    assert_eq!(field_decimal(&data(&fees, "listingFees")["makerFeeRate"]), decimal(&rate), "{fees}");
}

#[then(regex = r"^the market (\w+)-(\w+) lists at a tick of ([\d.]+) and a lot of ([\d.]+), with fees of ([\d.]+)%$")]
fn listed_market(world: &mut Marionette, base: String, quote: String, tick: String, lot: String, fee_percent: String) {
    let answer = world.ask("alice", "{ markets { id trading tickSize lotSize makerFeeRate takerFeeRate } }", json!({}));
    let name = format!("{base}-{quote}");
    let market = data(&answer, "markets")
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == name.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not listed: {answer}"));
    let rate = decimal(&fee_percent) / Decimal::ONE_HUNDRED;
    assert_eq!(market["trading"], true, "{market}");
    assert_eq!((field_decimal(&market["tickSize"]), field_decimal(&market["lotSize"])), (decimal(&tick), decimal(&lot)), "{market}");
    assert_eq!((field_decimal(&market["makerFeeRate"]), field_decimal(&market["takerFeeRate"])), (rate, rate), "{market}");
}

#[then(regex = r"^(\w+) has (\d+) tranches of (\w+) vesting: (.+)$")]
fn tranches_vesting(world: &mut Marionette, name: String, count: usize, token: String, amounts: String) {
    let answer = world.ask(&name, "{ myVesting { token amount vestsAt vested } }", json!({}));
    let tranches = data(&answer, "myVesting").as_array().unwrap();
    assert_eq!(tranches.len(), count, "{answer}");
    let shown: Vec<Decimal> = tranches.iter().map(|t| field_decimal(&t["amount"])).collect();
    let expected: Vec<Decimal> = amounts.replace(" and ", ", ").split(", ").map(decimal).collect();
    assert_eq!(shown, expected, "{answer}");
    assert!(tranches.iter().all(|t| t["token"] == token.as_str() && t["vested"] == false), "{answer}");
}

#[when(regex = r"^(\w+)'s first tranche vests$")]
fn first_tranche_vests(world: &mut Marionette, name: String) {
    let answer = poll(world, &name, "{ myVesting { amount vestsAt vested } }", json!({}), Duration::from_secs(60), |answer| {
        data(answer, "myVesting")[0]["vested"] == true
    });
    let tranches = data(&answer, "myVesting").as_array().unwrap();
    assert!(tranches[1..].iter().all(|t| t["vested"] == false), "only the first has vested: {answer}");
    let vests_at = chrono::DateTime::parse_from_rfc3339(tranches[0]["vestsAt"].as_str().unwrap()).unwrap();
    assert!(now_ms() >= vests_at.timestamp_millis(), "a tranche vested before its time: {answer}");
}

/// What tokenization keeps outside users' balances, and what it created:
/// escrowed payments and unvested tokens are held, each token's supply
/// was issued. For the conservation check.
pub(super) fn outside_balances(world: &Marionette) -> (HashMap<String, Decimal>, HashMap<String, Decimal>) {
    let (mut held, mut issued) = (HashMap::new(), HashMap::new());
    let answer = world.ask("operator", "{ tokens { symbol supply } offerings { id status paymentAsset } }", json!({}));
    for token in data(&answer, "tokens").as_array().unwrap() {
        *issued.entry(token["symbol"].as_str().unwrap().to_string()).or_default() += field_decimal(&token["supply"]);
    }
    for offering in data(&answer, "offerings").as_array().unwrap().iter().filter(|o| o["status"] == "OPEN") {
        let subscriptions =
            world.ask("operator", "query($o: ID!) { offeringSubscriptions(offeringId: $o, limit: 1000) { status payment } }", json!({ "o": offering["id"] }));
        for subscription in data(&subscriptions, "offeringSubscriptions").as_array().unwrap().iter().filter(|s| s["status"] == "OPEN") {
            *held.entry(offering["paymentAsset"].as_str().unwrap().to_string()).or_default() += field_decimal(&subscription["payment"]);
        }
    }
    for name in world.tokens.keys().filter(|k| k.as_str() != "operator") {
        let vesting = world.ask(name, "{ myVesting { token amount vested } }", json!({}));
        for tranche in data(&vesting, "myVesting").as_array().unwrap().iter().filter(|t| t["vested"] == false) {
            *held.entry(tranche["token"].as_str().unwrap().to_string()).or_default() += field_decimal(&tranche["amount"]);
        }
    }
    (held, issued)
}
