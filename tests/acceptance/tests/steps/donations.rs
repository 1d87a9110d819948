//! Steps of `donations.feature`: organisers, campaigns, gifts and their
//! receipts, matching pools, the wall and payouts, all through the API as
//! an organiser, donors, a sponsor and the operators use it.

use std::time::{Duration, Instant};

use acceptance::{code, data, APPROVER, OPERATOR_PASSWORD};
use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::{decimal, email, field_decimal, Marionette};

const GIFT_FIELDS: &str = "id receiptNumber gross receivedAsset received conversionId fee net tip value matches { amount asset }";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn campaign_id(world: &Marionette) -> String {
    world.campaign.clone().expect("no campaign was opened in this scenario")
}

fn gift_id(world: &Marionette, name: &str) -> String {
    world.gifts.get(name).unwrap_or_else(|| panic!("{name} has given nothing")).get("id").and_then(Value::as_str).unwrap().to_string()
}

/// The second operator, who approves what the first proposes.
fn approver(world: &mut Marionette) {
    if !world.tokens.contains_key("approver") {
        let token = world.system().login(APPROVER, OPERATOR_PASSWORD);
        world.tokens.insert("approver".into(), token);
    }
}

/// An operators' mutation under four-eyes: the first operator proposes,
/// the second's same request executes it.
fn four_eyes(world: &mut Marionette, query: &str, variables: Value) -> Value {
    approver(world);
    let proposed = world.ask("operator", query, variables.clone());
    assert_eq!(code(&proposed), "APPROVAL_PENDING", "one operator is not enough: {proposed}");
    world.ask("approver", query, variables)
}

#[given(regex = r#"^the operators verify (\w+) as the organisation "([^"]+)", registration (\w+) in (\d+)$"#)]
fn verify_organiser(world: &mut Marionette, name: String, organisation: String, registration: String, country: i64) {
    if !world.tokens.contains_key(&name) {
        world.create_account(&name);
    }
    let query = "mutation($e: String!, $n: String!, $c: Int!, $r: String) { setOrganiser(email: $e, name: $n, kind: ORGANISATION, country: $c, registration: $r) { name } }";
    let answer = four_eyes(world, query, json!({ "e": email(&name), "n": organisation, "c": country, "r": registration }));
    assert_eq!(data(&answer, "setOrganiser")["name"], organisation.as_str(), "{answer}");
    let mine = world.ask(&name, "{ myOrganiser { name registration country } }", json!({}));
    assert_eq!(data(&mine, "myOrganiser"), &json!({ "name": organisation, "registration": registration, "country": country }));
}

#[given(regex = r"^the operators set the platform's fee on gifts to (\d+) bps$")]
fn set_donation_fee(world: &mut Marionette, bps: i64) {
    let answer = four_eyes(world, "mutation($b: Int!) { setDonationFee(feeBps: $b) }", json!({ "b": bps }));
    assert_eq!(data(&answer, "setDonationFee"), bps, "{answer}");
}

#[when(
    regex = r#"^(\w+) opens an? (keep-what-you-raise|all-or-nothing) campaign "([^"]+)" for ([\d.]+) (\w+)(?:, also accepting (\w+),)? ending in (\d+) seconds$"#
)]
#[allow(clippy::too_many_arguments)]
fn opens_campaign(world: &mut Marionette, name: String, model: String, title: String, goal: String, asset: String, also: String, seconds: i64) {
    let model = if model == "all-or-nothing" { "ALL_OR_NOTHING" } else { "KEEP_WHAT_YOU_RAISE" };
    let create = "mutation($t: String!, $a: String!, $g: Decimal!, $d: DateTime!, $m: FundingModel!, $accepted: [String!]!) { createCampaign(title: $t, story: \"\", referenceAsset: $a, goal: $g, deadline: $d, acceptedAssets: $accepted, model: $m) { id status } }";
    let accepted: Vec<&str> = [asset.as_str(), also.as_str()].into_iter().filter(|a| !a.is_empty()).collect();
    let variables = json!({ "t": title, "a": asset, "g": goal, "d": rfc3339(now_ms() + seconds * 1_000), "m": model, "accepted": accepted });
    let created = world.ask(&name, create, variables);
    assert_eq!(data(&created, "createCampaign")["status"], "DRAFT", "{created}");
    let id = data(&created, "createCampaign")["id"].as_str().unwrap().to_string();
    let published = world.ask(&name, "mutation($c: ID!) { publishCampaign(id: $c) { status } }", json!({ "c": id }));
    assert_eq!(data(&published, "publishCampaign")["status"], "ACTIVE", "{published}");
    world.campaign = Some(id);
}

#[then(regex = r"^giving ([\d.]+) (\w+) with a tip of ([\d.]+) costs (\w+) ([\d.]+) \w+: ([\d.]+) of fee and ([\d.]+) to the campaign$")]
// A step's captures are its arguments.
#[allow(clippy::too_many_arguments)]
fn terms(world: &mut Marionette, amount: String, asset: String, tip: String, name: String, total: String, fee: String, net: String) {
    let query =
        "query($c: ID!, $a: String!, $m: Decimal!, $t: Decimal) { donationTerms(campaignId: $c, asset: $a, amount: $m, tip: $t) { gross fee net tip total } }";
    let answer = world.ask(&name, query, json!({ "c": campaign_id(world), "a": asset, "m": amount, "t": tip }));
    assert_eq!(data(&answer, "donationTerms"), &json!({ "gross": amount, "fee": fee, "net": net, "tip": tip, "total": total }));
}

#[when(
    regex = r#"^(\w+) gives ([\d.]+) (\w+)(?: with a tip of ([\d.]+))?(?: as "([^"]+)")?(, known to the organiser)?( anonymously, the amount hidden)?(, converted at receipt with (?:her|his) quote)?$"#
)]
#[allow(clippy::too_many_arguments)]
fn gives(world: &mut Marionette, name: String, amount: String, asset: String, tip: String, shown_as: String, known: String, hidden: String, converted: String) {
    let query = format!(
        "mutation($c: ID!, $a: String!, $m: Decimal!, $t: Decimal, $n: String, $h: Boolean!, $k: Boolean!, $key: String!, $q: ID) {{ donate(campaignId: $c, asset: $a, amount: $m, tip: $t, message: \"Good luck\", displayName: $n, hideAmount: $h, knownToOrganiser: $k, idempotencyKey: $key, convertQuoteId: $q) {{ {GIFT_FIELDS} }} }}"
    );
    let quote = if converted.is_empty() { Value::Null } else { world.quotes.get(&name).unwrap_or_else(|| panic!("{name} asked for no quote"))["id"].clone() };
    let variables = json!({
        "c": campaign_id(world),
        "a": asset,
        "m": amount,
        "t": if tip.is_empty() { Value::Null } else { json!(tip) },
        "n": if shown_as.is_empty() { Value::Null } else { json!(shown_as) },
        "h": !hidden.is_empty(),
        "k": !known.is_empty(),
        "key": format!("{name}-gift-{}", world.gifts.len()),
        "q": quote,
    });
    let answer = world.ask(&name, &query, variables);
    world.gifts.insert(name, data(&answer, "donate").clone());
}

#[then(regex = r"^(\w+)'s gift was converted into ([\d.]+) (\w+): ([\d.]+) of fee and ([\d.]+) to the campaign$")]
fn gift_converted(world: &mut Marionette, name: String, received: String, asset: String, fee: String, net: String) {
    let gift = &world.gifts[&name];
    let quote = world.quotes[&name]["id"].clone();
    let shown = json!({ "received": gift["received"], "receivedAsset": gift["receivedAsset"], "fee": gift["fee"], "net": gift["net"], "value": gift["value"], "conversionId": gift["conversionId"] });
    assert_eq!(shown, json!({ "received": received, "receivedAsset": asset, "fee": fee, "net": net, "value": received, "conversionId": quote }));
}

#[then("the payout's lines are:")]
fn payout_lines(world: &mut Marionette, step: &Step) {
    let payout = data(&world.answer, "payOutCampaign");
    let rows = &step.table.as_ref().expect("the lines as a table").rows;
    let expected: Vec<Value> = rows[1..].iter().map(|row| json!({ "asset": row[0], "net": row[1], "fees": row[2], "tips": row[3] })).collect();
    assert_eq!(payout, &json!({ "last": true, "lines": expected }));
}

#[then(regex = r"^the campaign has raised ([\d.]+) (\w+) of its ([\d.]+) goal from (\d+) gifts?$")]
fn campaign_raised(world: &mut Marionette, raised: String, asset: String, goal: String, gifts: i64) {
    let answer = world.ask("operator", "query($c: ID!) { campaign(id: $c) { raised goal referenceAsset donations } }", json!({ "c": campaign_id(world) }));
    assert_eq!(data(&answer, "campaign"), &json!({ "raised": raised, "goal": goal, "referenceAsset": asset, "donations": gifts }));
}

#[when("the campaign's deadline passes")]
fn deadline_passes(world: &mut Marionette) {
    let query = "query($c: ID!) { campaign(id: $c) { status } }";
    let variables = json!({ "c": campaign_id(world) });
    let deadline = Instant::now() + Duration::from_secs(60);
    while world.ask("operator", query, variables.clone())["data"]["campaign"]["status"] == "ACTIVE" {
        assert!(Instant::now() < deadline, "the ledger's clock did not end the campaign");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[then(regex = r"^the campaign is (\w+)$")]
fn campaign_status(world: &mut Marionette, status: String) {
    let answer = world.ask("operator", "query($c: ID!) { campaign(id: $c) { status } }", json!({ "c": campaign_id(world) }));
    assert_eq!(data(&answer, "campaign")["status"], status.as_str(), "{answer}");
}

/// The first operator proposes the payout; the organiser tries to approve
/// it (kept for "could not approve it"); the second operator's same
/// request executes it. A refusal before any proposal is kept for "the
/// request is refused with".
#[when("the operators pay the campaign out")]
fn pay_out(world: &mut Marionette) {
    approver(world);
    let query = "mutation($c: ID!) { payOutCampaign(id: $c) { last lines { asset net fees tips } } }";
    let variables = json!({ "c": campaign_id(world) });
    let proposed = world.ask("operator", query, variables.clone());
    if code(&proposed) != "APPROVAL_PENDING" {
        world.answer = proposed;
        return;
    }
    let proposal = proposed["errors"][0]["extensions"]["proposal"].as_str().unwrap().to_string();
    let organiser = world.tokens.keys().find(|name| name.as_str() == "ann").cloned().expect("ann organises the campaigns here");
    world.own_approval = Some(world.ask(&organiser, "mutation($p: ID!) { approveProposal(id: $p) { id status } }", json!({ "p": proposal })));
    world.answer = world.ask("approver", query, variables);
}

#[then(regex = r"^(\w+) could not approve it (?:her|him)self$")]
fn could_not_approve(world: &mut Marionette, _name: String) {
    let answer = world.own_approval.as_ref().expect("the payout was proposed");
    assert_eq!(code(answer), "FORBIDDEN", "{answer}");
}

#[then(regex = r"^the payout paid ([\d.]+) (\w+) to (\w+), ([\d.]+) \w+ of fees and ([\d.]+) \w+ of tips$")]
fn payout_paid(world: &mut Marionette, net: String, asset: String, _organiser: String, fees: String, tips: String) {
    let payout = data(&world.answer, "payOutCampaign");
    assert_eq!(payout, &json!({ "last": true, "lines": [{ "asset": asset, "net": net, "fees": fees, "tips": tips }] }));
}

#[when(regex = r"^(\w+) funds a matching pool of ([\d.]+) (\w+), one for one, at most ([\d.]+) a gift and ([\d.]+) a donor$")]
fn funds_pool(world: &mut Marionette, name: String, total: String, asset: String, per_gift: String, per_donor: String) {
    let query = "mutation($c: ID!, $a: String!, $t: Decimal!, $g: Decimal!, $d: Decimal!, $e: DateTime!) { fundMatchingPool(campaignId: $c, asset: $a, ratio: \"1\", perGiftMax: $g, perDonorMax: $d, total: $t, endsAt: $e, idempotencyKey: \"pool\") { total left } }";
    let variables = json!({ "c": campaign_id(world), "a": asset, "t": total, "g": per_gift, "d": per_donor, "e": rfc3339(now_ms() + 120_000) });
    let answer = world.ask(&name, query, variables);
    assert_eq!(field_decimal(&data(&answer, "fundMatchingPool")["left"]), decimal(&total), "{answer}");
}

#[then(regex = r"^(\w+)'s gift is matched with (nothing|[\d.]+ \w+)$")]
fn gift_matched(world: &mut Marionette, name: String, matched: String) {
    let gift = world.gifts.get(&name).unwrap_or_else(|| panic!("{name} has given nothing"));
    let matches: Vec<String> =
        gift["matches"].as_array().unwrap().iter().map(|m| format!("{} {}", m["amount"].as_str().unwrap(), m["asset"].as_str().unwrap())).collect();
    let expected: Vec<String> = if matched == "nothing" { Vec::new() } else { vec![matched] };
    assert_eq!(matches, expected, "{gift}");
}

#[then(regex = r"^the pool has ([\d.]+) (\w+) left of ([\d.]+)$")]
fn pool_left(world: &mut Marionette, left: String, asset: String, total: String) {
    let answer = world.ask("operator", "query($c: ID!) { matchingPools(campaignId: $c) { asset left total } }", json!({ "c": campaign_id(world) }));
    assert_eq!(data(&answer, "matchingPools"), &json!([{ "asset": asset, "left": left, "total": total }]));
}

/// The public wall's entry of `name`'s gift.
fn wall_entry(world: &Marionette, name: &str) -> Value {
    let wall =
        world.system().post("query($c: ID!) { campaignWall(campaignId: $c) { id name amount asset message } }", json!({ "c": campaign_id(world) }), "").2;
    let id = gift_id(world, name);
    data(&wall, "campaignWall")
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["id"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{name}'s gift is not on the wall: {wall}"))
}

#[then(regex = r"^the campaign's wall shows (\w+)'s gift as Anonymous with no amount$")]
fn wall_anonymous(world: &mut Marionette, name: String) {
    let entry = wall_entry(world, &name);
    assert_eq!((&entry["name"], &entry["amount"], &entry["asset"]), (&Value::Null, &Value::Null, &Value::Null), "{entry}");
}

#[then(regex = r"^the campaign's wall shows (\w+)'s gift as (\w+) with ([\d.]+) (\w+)$")]
fn wall_named(world: &mut Marionette, name: String, shown: String, amount: String, asset: String) {
    let entry = wall_entry(world, &name);
    assert_eq!(
        (entry["name"].as_str(), entry["amount"].as_str(), entry["asset"].as_str()),
        (Some(shown.as_str()), Some(amount.as_str()), Some(asset.as_str())),
        "{entry}"
    );
}

/// Who `viewer` sees behind each gift of the campaign, by gift id.
fn donors_seen(world: &Marionette, viewer: &str) -> Vec<(String, Value)> {
    let answer = world.ask(viewer, "query($c: ID!) { campaignDonations(campaignId: $c) { id donorEmail } }", json!({ "c": campaign_id(world) }));
    data(&answer, "campaignDonations").as_array().unwrap().iter().map(|gift| (gift["id"].as_str().unwrap().to_string(), gift["donorEmail"].clone())).collect()
}

#[then(regex = r"^(\w+) sees (\w+) behind (\w+)'s gift and nobody behind (\w+)'s$")]
fn organiser_sees(world: &mut Marionette, viewer: String, donor: String, known: String, unknown: String) {
    let seen = donors_seen(world, &viewer);
    let of = |name: &str| seen.iter().find(|(id, _)| *id == gift_id(world, name)).map(|(_, email)| email.clone()).unwrap();
    assert_eq!(of(&known), json!(email(&donor)));
    assert_eq!(of(&unknown), Value::Null);
}

#[then(regex = r"^the operators see (\w+) behind (\w+)'s gift$")]
fn operators_see(world: &mut Marionette, donor: String, name: String) {
    let seen = donors_seen(world, "operator");
    let id = gift_id(world, &name);
    assert_eq!(seen.iter().find(|(gift, _)| *gift == id).map(|(_, email)| email.clone()), Some(json!(email(&donor))), "what compliance keeps");
}

/// `organiser`'s user id and this year, as a receipt number names them.
fn receipt_prefix(world: &Marionette, organiser: &str) -> String {
    let me = world.ask(organiser, "{ me { id } }", json!({}));
    format!("{}-{}", data(&me, "me")["id"].as_str().unwrap(), &rfc3339(now_ms())[..4])
}

#[then(regex = r"^(\w+)'s receipt is number (\d+) of (\w+)'s organisation this year$")]
fn receipt_number(world: &mut Marionette, name: String, number: u32, organiser: String) {
    let expected = format!("{}-{number:06}", receipt_prefix(world, &organiser));
    assert_eq!(world.gifts[&name]["receiptNumber"].as_str(), Some(expected.as_str()));
}

fn receipt_pdf(world: &Marionette, reader: &str, donor: &str) -> (u16, Vec<u8>) {
    let path = format!("/donations/{}/receipt.pdf", gift_id(world, donor));
    let (status, head, body) = world.system().get_bytes(&path, &format!("Authorization: Bearer {}\r\n", world.token(reader)));
    if status == 200 {
        assert!(head.to_ascii_lowercase().contains("content-type: application/pdf"), "{head}");
    }
    (status, body)
}

/// A PDF's text, one entry per non-empty line, every page.
fn pdf_lines(pdf: &[u8]) -> Vec<String> {
    let document = lopdf::Document::load_mem(pdf).expect("a PDF");
    let pages: Vec<u32> = document.get_pages().keys().copied().collect();
    document.extract_text(&pages).expect("its text").lines().map(|line| line.trim().to_string()).filter(|line| !line.is_empty()).collect()
}

#[then(regex = r"^(\w+)'s receipt as PDF reads:$")]
fn receipt_reads(world: &mut Marionette, step: &Step, name: String) {
    let (status, pdf) = receipt_pdf(world, &name, &name);
    assert_eq!(status, 200);
    let receipt = world.gifts[&name]["receiptNumber"].as_str().unwrap().to_string();
    let today = rfc3339(now_ms())[..10].to_string();
    let expected: Vec<String> = step
        .table
        .as_ref()
        .expect("the receipt's lines as a table")
        .rows
        .iter()
        .map(|row| {
            row[0]
                .replace("{receipt}", &receipt)
                .replace("{today}", &today)
                .replace("{conversion}", world.gifts[&name]["conversionId"].as_str().unwrap_or("none"))
        })
        .collect();
    assert_eq!(pdf_lines(&pdf), expected);
}

#[then(regex = r"^(\w+) cannot read (\w+)'s receipt$")]
fn cannot_read_receipt(world: &mut Marionette, reader: String, donor: String) {
    assert_eq!(receipt_pdf(world, &reader, &donor).0, 404, "another donor's receipt is not found");
}

#[then(regex = r"^(\w+)'s statement for this year lists (\d+) gifts?, ([\d.]+) (\w+) in all$")]
fn statement(world: &mut Marionette, name: String, gifts: usize, total: String, asset: String) {
    let year = &rfc3339(now_ms())[..4];
    let answer = world.ask(
        &name,
        "query($y: Int!) { myDonationStatement(year: $y) { donations { id } totals { asset given } } }",
        json!({ "y": year.parse::<i32>().unwrap() }),
    );
    let statement = data(&answer, "myDonationStatement");
    assert_eq!(statement["donations"].as_array().unwrap().len(), gifts, "{statement}");
    assert_eq!(statement["totals"], json!([{ "asset": asset, "given": total }]));
    let (status, head, pdf) =
        world.system().get_bytes(&format!("/donations/statements/{year}.pdf"), &format!("Authorization: Bearer {}\r\n", world.token(&name)));
    assert_eq!(status, 200, "{head}");
    let lines = pdf_lines(&pdf);
    assert!(lines.contains(&format!("Total given in {asset}, refunds excluded: {total}")), "{lines:?}");
    // Each gift's line says its value.
    assert_eq!(lines.iter().filter(|line| line.contains(" (value ")).count(), gifts, "{lines:?}");
}

/// What campaigns hold and matching pools have left, by asset: money
/// outside the users' balances for the conservation check.
pub(super) fn outside_balances(world: &Marionette) -> std::collections::HashMap<String, Decimal> {
    let mut held = std::collections::HashMap::new();
    for status in ["DRAFT", "ACTIVE", "ENDED", "PAID_OUT", "REFUNDED"] {
        let answer =
            world.ask("operator", "query($s: CampaignStatus) { campaigns(status: $s, limit: 1000) { id assets { asset held } } }", json!({ "s": status }));
        for campaign in data(&answer, "campaigns").as_array().unwrap() {
            for asset in campaign["assets"].as_array().unwrap() {
                *held.entry(asset["asset"].as_str().unwrap().to_string()).or_default() += field_decimal(&asset["held"]);
            }
            let pools = world.ask("operator", "query($c: ID!) { matchingPools(campaignId: $c) { asset left } }", json!({ "c": campaign["id"] }));
            for pool in data(&pools, "matchingPools").as_array().unwrap() {
                *held.entry(pool["asset"].as_str().unwrap().to_string()).or_default() += field_decimal(&pool["left"]);
            }
        }
    }
    held
}
