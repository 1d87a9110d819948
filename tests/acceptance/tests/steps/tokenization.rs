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
#[then(regex = r"^the cap table of (\w+)( at the record)? is (.+?)(?: with ([\d.]+) locked)?$")]
fn cap_table(world: &mut Marionette, symbol: String, at_record: String, entries: String, locked: String) {
    // At the record: as the ledger stood when the last distribution's record was taken.
    let at = (!at_record.is_empty()).then(|| distribution(world)["recordedAt"].as_str().expect("the distribution was recorded").to_string());
    let answer =
        world.ask("ivy", "query($t: String!, $at: DateTime) { capTable(token: $t, at: $at) { email balance locked share } }", json!({ "t": symbol, "at": at }));
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

#[given(regex = r"^the operators set (\w+)'s withholding rate to ([\d.]+)%$")]
#[when(regex = r"^the operators set (\w+)'s withholding rate to ([\d.]+)%$")]
fn set_withholding_rate(world: &mut Marionette, name: String, percent: String) {
    let rate = (decimal(&percent) / Decimal::ONE_HUNDRED).normalize().to_string();
    let claims = world.ask(&name, "{ myInvestorClaims { country category } }", json!({}));
    let country = data(&claims, "myInvestorClaims")["country"].clone();
    let answer = world.ask(
        "operator",
        "mutation($e: String!, $c: Int!, $x: DateTime!, $w: Decimal!) {
            setInvestorClaims(email: $e, country: $c, category: RETAIL, expiresAt: $x, withholdingRate: $w) { withholdingRate }
        }",
        json!({ "e": email(&name), "c": country, "x": in_seconds(365 * 86_400), "w": rate }),
    );
    assert_eq!(field_decimal(&data(&answer, "setInvestorClaims")["withholdingRate"]), decimal(&rate), "{answer}");
    let mine = world.ask(&name, "{ myInvestorClaims { withholdingRate } }", json!({}));
    assert_eq!(field_decimal(&data(&mine, "myInvestorClaims")["withholdingRate"]), decimal(&rate), "{mine}");
}

#[given(regex = r"^the operators remove (\w+)'s investor claims$")]
#[when(regex = r"^the operators remove (\w+)'s investor claims$")]
fn remove_claims(world: &mut Marionette, name: String) {
    let answer = world.ask("operator", "mutation($e: String!) { removeInvestorClaims(email: $e) }", json!({ "e": email(&name) }));
    assert_eq!(data(&answer, "removeInvestorClaims"), true, "{answer}");
    assert!(data(&world.ask(&name, "{ myInvestorClaims { country } }", json!({})), "myInvestorClaims").is_null());
}

const DISTRIBUTION_FIELDS: &str = "id status token kind paymentAsset pool recordAt claimUntil defaultWithholdingRate recordedAt holders units entitled remainder claimed withheld reclaimed closedAt";

#[when(
    regex = r"^(\w+) distributes a (\w+) of ([\d.]+) (\w+) to the holders of (\w+), recorded in (\d+) seconds and claimable for (\d+) seconds after, withholding ([\d.]+)% from holders without claims$"
)]
#[allow(clippy::too_many_arguments)]
fn distributes(world: &mut Marionette, name: String, kind: String, pool: String, payment: String, token: String, record_s: u64, claim_s: u64, percent: String) {
    let rate = (decimal(&percent) / Decimal::ONE_HUNDRED).normalize().to_string();
    let variables = json!({ "t": token, "k": kind, "p": payment, "a": pool, "r": in_seconds(record_s), "c": in_seconds(record_s + claim_s), "w": rate,
                            "key": format!("{name}-{kind}-{token}-{pool}") });
    let mutation = format!(
        "mutation($t: String!, $k: DistributionKind!, $p: String!, $a: Decimal!, $r: DateTime!, $c: DateTime!, $w: Decimal!, $key: String!) {{
            distribute(token: $t, kind: $k, paymentAsset: $p, pool: $a, recordAt: $r, claimUntil: $c, defaultWithholdingRate: $w, idempotencyKey: $key) {{ {DISTRIBUTION_FIELDS} }}
        }}"
    );
    let answer = world.ask(&name, &mutation, variables.clone());
    let distribution = data(&answer, "distribute").clone();
    assert_eq!((distribution["status"].as_str(), distribution["kind"].as_str()), (Some("DECLARED"), Some(kind.as_str())), "{answer}");
    assert_eq!(field_decimal(&distribution["pool"]), decimal(&pool), "{answer}");
    // The same request again is the same distribution, paid in once.
    let again = world.ask(&name, &mutation, variables);
    assert_eq!(data(&again, "distribute")["id"], distribution["id"], "{again}");
    world.distribution = Some(distribution["id"].as_str().unwrap().to_string());
}

fn distribution_id(world: &Marionette) -> String {
    world.distribution.clone().expect("no distribution was declared in this scenario")
}

fn distribution(world: &Marionette) -> Value {
    let answer = world.ask("alice", &format!("query($d: ID!) {{ distribution(id: $d) {{ {DISTRIBUTION_FIELDS} }} }}"), json!({ "d": distribution_id(world) }));
    data(&answer, "distribution").clone()
}

#[when("the distribution is recorded")]
fn distribution_recorded(world: &mut Marionette) {
    let query = "query($d: ID!) { distribution(id: $d) { status recordAt recordedAt } }";
    // The ledger's clock takes the record at its time; the wait allows a loaded machine.
    let answer = poll(world, "operator", query, json!({ "d": distribution_id(world) }), Duration::from_secs(60), |answer| {
        data(answer, "distribution")["status"] != "DECLARED"
    });
    let recorded = data(&answer, "distribution");
    let time = |field: &str| chrono::DateTime::parse_from_rfc3339(recorded[field].as_str().unwrap()).unwrap();
    assert!(time("recordedAt") >= time("recordAt"), "recorded before its time: {answer}");
}

#[then(regex = r"^the distribution is RECORDED: (\d+) holders of ([\d.]+) \w+ entitled to ([\d.]+) \w+, ([\d.]+) \w+ back to the issuer$")]
fn distribution_is_recorded(world: &mut Marionette, holders: i64, units: String, entitled: String, remainder: String) {
    let shown = distribution(world);
    assert_eq!((shown["status"].as_str(), shown["holders"].as_i64()), (Some("RECORDED"), Some(holders)), "{shown}");
    assert_eq!(
        [&shown["units"], &shown["entitled"], &shown["remainder"]].map(field_decimal),
        [decimal(&units), decimal(&entitled), decimal(&remainder)],
        "units, entitled, remainder of {shown}"
    );
    assert_eq!(field_decimal(&shown["entitled"]) + field_decimal(&shown["remainder"]), field_decimal(&shown["pool"]), "the pool to the unit: {shown}");
}

/// "alice 400: 444.44 less 12.8% (56.88) is 387.56; bob 300: ..."
#[then(regex = r"^the entitlements are (.+)$")]
fn entitlements_are(world: &mut Marionette, list: String) {
    let answer = world.ask(
        "ivy",
        "query($d: ID!) { distributionEntitlements(distributionId: $d) { email units gross withholdingRate withheld net claimedAt } }",
        json!({ "d": distribution_id(world) }),
    );
    let shown: Vec<(String, [Decimal; 5])> = data(&answer, "distributionEntitlements")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let rate = field_decimal(&e["withholdingRate"]) * Decimal::ONE_HUNDRED;
            (
                e["email"].as_str().unwrap().to_string(),
                [field_decimal(&e["units"]), field_decimal(&e["gross"]), rate.normalize(), field_decimal(&e["withheld"]), field_decimal(&e["net"])],
            )
        })
        .collect();
    let expected: Vec<(String, [Decimal; 5])> = list
        .split("; ")
        .map(|entry| {
            let words: Vec<&str> = entry.split(' ').collect();
            // name units: gross less rate% (withheld) is net
            let [name, units, gross, _, rate, withheld, _, net] = words[..] else {
                panic!("an entitlement is 'name units: gross less r% (w) is net': {entry}")
            };
            let number = |text: &str| decimal(text.trim_matches(|c| c == ':' || c == '(' || c == ')' || c == '%'));
            (email(name), [number(units), number(gross), number(rate).normalize(), number(withheld), number(net)])
        })
        .collect();
    assert_eq!(shown, expected, "holders by id with units, gross, rate, withheld and net: {answer}");
    // An investor does not read the others'.
    let refused = world.ask("alice", "query($d: ID!) { distributionEntitlements(distributionId: $d) { net } }", json!({ "d": distribution_id(world) }));
    assert_eq!(acceptance::code(&refused), "FORBIDDEN", "{refused}");
}

#[when(regex = r"^(\w+) claims (?:her|his) entitlement$")]
fn claims_entitlement(world: &mut Marionette, name: String) {
    world.answer = world.ask(
        &name,
        "mutation($d: ID!) { claimDistribution(distributionId: $d) { gross withheld net claimedAt } }",
        json!({ "d": distribution_id(world) }),
    );
    if world.answer.get("errors").is_some() {
        return;
    }
    let claimed = data(&world.answer, "claimDistribution");
    assert!(claimed["claimedAt"].is_string(), "{claimed}");
    assert_eq!(field_decimal(&claimed["net"]) + field_decimal(&claimed["withheld"]), field_decimal(&claimed["gross"]), "{claimed}");
    // The holder's own list says it too.
    let mine = world.ask(&name, "{ myEntitlements { distributionId claimedAt net } }", json!({}));
    let listed = data(&mine, "myEntitlements").as_array().unwrap().iter().find(|e| e["distributionId"] == distribution_id(world).as_str()).cloned();
    assert_eq!(listed.map(|e| e["claimedAt"].is_string()), Some(true), "{mine}");
}

#[when(regex = r"^(\w+) reclaims what was not claimed$")]
fn reclaims(world: &mut Marionette, name: String) {
    world.answer = world.ask(
        &name,
        &format!("mutation($d: ID!) {{ reclaimDistribution(distributionId: $d) {{ {DISTRIBUTION_FIELDS} }} }}"),
        json!({ "d": distribution_id(world) }),
    );
}

#[when("the claims end")]
fn claims_end(world: &mut Marionette) {
    let until = chrono::DateTime::parse_from_rfc3339(distribution(world)["claimUntil"].as_str().unwrap()).unwrap().timestamp_millis();
    let wait = until - now_ms();
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait as u64 + 100));
    }
}

#[then(regex = r"^the distribution is CLOSED: ([\d.]+) \w+ claimed, ([\d.]+) \w+ withheld and ([\d.]+) \w+ reclaimed$")]
fn distribution_is_closed(world: &mut Marionette, claimed: String, withheld: String, reclaimed: String) {
    let shown = distribution(world);
    assert_eq!(shown["status"], "CLOSED", "{shown}");
    assert!(shown["closedAt"].is_string(), "{shown}");
    assert_eq!(
        [&shown["claimed"], &shown["withheld"], &shown["reclaimed"]].map(field_decimal),
        [decimal(&claimed), decimal(&withheld), decimal(&reclaimed)],
        "claimed, withheld, reclaimed of {shown}"
    );
    // Claimed, reclaimed and the remainder make the pool, to the unit.
    assert_eq!(
        field_decimal(&shown["claimed"]) + field_decimal(&shown["reclaimed"]) + field_decimal(&shown["remainder"]),
        field_decimal(&shown["pool"]),
        "{shown}"
    );
}

#[then(regex = r"^the house holds ([\d.]+) (\w+) withheld for the tax authorities$")]
fn house_withheld(world: &mut Marionette, amount: String, asset: String) {
    let answer = world.ask("operator", "{ houseBalances { asset withheld } }", json!({}));
    let balance = data(&answer, "houseBalances").as_array().unwrap().iter().find(|b| b["asset"] == asset.as_str()).cloned();
    assert_eq!(balance.map(|b| field_decimal(&b["withheld"])), Some(decimal(&amount)), "{answer}");
}

// ---- the token's agent ----

const AGENT_FIELDS: &str = "token frozen moved fromFrozen tranches";

/// The issuer's request as its token's agent: it waits for an operator's approval.
fn agent_request(world: &mut Marionette, name: &str, mutation: &str, variables: Value) {
    let answer = world.ask(name, mutation, variables);
    assert_eq!(acceptance::code(&answer), "APPROVAL_PENDING", "an issuer's word alone is not enough: {answer}");
    world.proposal = answer["errors"][0]["extensions"]["proposal"].as_str().map(str::to_string);
    assert!(world.proposal.is_some(), "the refusal names the proposal: {answer}");
    world.answer = answer;
}

#[when(regex = r"^(\w+) freezes ([\d.]+) of (\w+)'s (\w+)$")]
fn freezes(world: &mut Marionette, name: String, amount: String, holder: String, token: String) {
    let mutation = format!("mutation($t: String!, $e: String!, $a: Decimal!) {{ freezeTokens(token: $t, email: $e, amount: $a) {{ {AGENT_FIELDS} }} }}");
    agent_request(world, &name, &mutation, json!({ "t": token, "e": email(&holder), "a": amount }));
}

#[when(regex = r"^(\w+) forces a transfer of ([\d.]+) (\w+) from (\w+) to (\w+)$")]
fn forces_transfer(world: &mut Marionette, name: String, amount: String, token: String, from: String, to: String) {
    let mutation = format!(
        "mutation($t: String!, $f: String!, $to: String!, $a: Decimal!) {{ forceTransfer(token: $t, fromEmail: $f, toEmail: $to, amount: $a) {{ {AGENT_FIELDS} }} }}"
    );
    agent_request(world, &name, &mutation, json!({ "t": token, "f": email(&from), "to": email(&to), "a": amount }));
}

#[when(regex = r"^(\w+) recovers (\w+)'s (\w+) to (\w+)$")]
fn recovers(world: &mut Marionette, name: String, lost: String, token: String, to: String) {
    let mutation = format!("mutation($t: String!, $l: String!, $to: String!) {{ recoverTokens(token: $t, lostEmail: $l, toEmail: $to) {{ {AGENT_FIELDS} }} }}");
    agent_request(world, &name, &mutation, json!({ "t": token, "l": email(&lost), "to": email(&to) }));
}

#[when("an operator approves it")]
fn operator_approves(world: &mut Marionette) {
    let id = world.proposal.clone().expect("no proposal is waiting");
    world.answer = world.ask("operator", "mutation($p: ID!) { approveProposal(id: $p) { id status kind description approvals } }", json!({ "p": id }));
}

fn user_id(world: &Marionette, name: &str) -> String {
    let me = world.ask(name, "{ me { id } }", json!({}));
    data(&me, "me")["id"].as_str().unwrap().to_string()
}

/// `{alice}` in a description is alice's user id.
#[then(regex = r#"^the proposal is EXECUTED: "([^"]+)"$"#)]
fn proposal_executed(world: &mut Marionette, description: String) {
    let proposal = data(&world.answer, "approveProposal");
    assert_eq!((proposal["status"].as_str(), proposal["kind"].as_str()), (Some("EXECUTED"), Some("TOKEN_AGENT")), "{}", world.answer);
    // The issuer's approval first, then the operator's: four eyes.
    assert_eq!(proposal["approvals"].as_array().map(Vec::len), Some(2), "{}", world.answer);
    let mut expected = description;
    for name in world.tokens.keys() {
        expected = expected.replace(&format!("{{{name}}}"), &user_id(world, name));
    }
    assert_eq!(proposal["description"].as_str(), Some(expected.as_str()), "{}", world.answer);
}

#[then(regex = r"^the audit log shows (\w+) proposing (\d+) agent actions, (\d+) of them executed on an operator's approval$")]
fn audit_shows_agent_actions(world: &mut Marionette, name: String, proposed: usize, executed: usize) {
    let id = user_id(world, &name);
    let log = world.ask("operator", "{ auditLog(limit: 200) { records { kind actor proposal description } } }", json!({}));
    let records = data(&log, "auditLog")["records"].as_array().unwrap().clone();
    let proposals: Vec<&Value> = records.iter().filter(|r| r["kind"] == "PROPOSED" && r["actor"] == id.as_str()).collect();
    assert_eq!(proposals.len(), proposed, "{log}");
    let mut done = 0;
    for record in proposals {
        assert!(record["description"].as_str().unwrap().starts_with(&format!("user {id} proposed to ")), "{record}");
        if records.iter().any(|r| r["kind"] == "EXECUTED" && r["proposal"] == record["proposal"]) {
            let approved = records.iter().any(|r| r["kind"] == "APPROVED" && r["proposal"] == record["proposal"] && r["actor"] != id.as_str());
            assert!(approved, "proposal {} was executed without an operator's approval: {log}", record["proposal"]);
            done += 1;
        }
    }
    assert_eq!(done, executed, "{log}");
}

/// What tokenization keeps outside users' balances, and what it created:
/// escrowed payments, unvested and frozen tokens are held, each token's
/// supply was issued. For the conservation check.
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
    // Frozen tokens are still their holders', outside their balances.
    for token in data(&answer, "tokens").as_array().unwrap() {
        let table = world.ask("operator", "query($t: String!) { capTable(token: $t) { frozen } }", json!({ "t": token["symbol"] }));
        let frozen: Decimal = data(&table, "capTable").as_array().unwrap().iter().map(|entry| field_decimal(&entry["frozen"])).sum();
        *held.entry(token["symbol"].as_str().unwrap().to_string()).or_default() += frozen;
    }
    for name in world.tokens.keys().filter(|k| k.as_str() != "operator") {
        let vesting = world.ask(name, "{ myVesting { token amount vested } }", json!({}));
        for tranche in data(&vesting, "myVesting").as_array().unwrap().iter().filter(|t| t["vested"] == false) {
            *held.entry(tranche["token"].as_str().unwrap().to_string()).or_default() += field_decimal(&tranche["amount"]);
        }
    }
    // Distributions hold their pools until claimed or reclaimed; the house holds the tax withheld.
    let answer =
        world.ask("operator", "{ distributions(limit: 1000) { status paymentAsset pool entitled claimed } houseBalances { asset withheld } }", json!({}));
    for distribution in data(&answer, "distributions").as_array().unwrap() {
        let pooled = match distribution["status"].as_str() {
            Some("DECLARED") => field_decimal(&distribution["pool"]),
            Some("RECORDED") => field_decimal(&distribution["entitled"]) - field_decimal(&distribution["claimed"]),
            _ => Decimal::ZERO,
        };
        *held.entry(distribution["paymentAsset"].as_str().unwrap().to_string()).or_default() += pooled;
    }
    for balance in data(&answer, "houseBalances").as_array().unwrap() {
        *held.entry(balance["asset"].as_str().unwrap().to_string()).or_default() += field_decimal(&balance["withheld"]);
    }
    (held, issued)
}
