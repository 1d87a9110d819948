//! Operators under the shipped approval thresholds (two operators for
//! money, assets, markets and new operators): what one operator tries
//! alone, what a beneficiary tries, and an audit log edited on disk.

use acceptance::{code, data, Daemon, Options, System, APPROVER, OPERATOR, OPERATOR_PASSWORD};
use security::{refused, tried};
use serde_json::{json, Value};

const DEPOSIT: &str =
    "mutation($e: String!, $a: String!, $m: Decimal!, $r: String!) { deposit(email: $e, asset: $a, amount: $m, reference: $r) { kind amount } }";
const BALANCES: &str = "{ balances { asset available } }";

fn shipped_thresholds(dir: &std::path::Path) -> System {
    System::start_with(dir, &Options { approvals: Some(String::new()), ..Options::default() })
}

fn usd(system: &System, token: &str) -> String {
    let body = system.as_user(token, BALANCES, json!({}));
    data(&body, "balances").as_array().unwrap().iter().find(|b| b["asset"] == "USD").map_or("0".into(), |b| b["available"].as_str().unwrap().into())
}

/// The answer's APPROVAL_PENDING proposal id.
fn pending(body: &Value) -> String {
    assert_eq!(code(body), "APPROVAL_PENDING", "{body}");
    body["errors"][0]["extensions"]["proposal"].as_str().unwrap().to_string()
}

/// USD created by the two operators (one proposes, the other approves by asking the same).
fn with_usd(system: &System, operator: &str, approver: &str) {
    let create = "mutation { createAsset(symbol: \"USD\", scale: 2) { symbol } }";
    pending(&system.as_user(operator, create, json!({})));
    data(&system.as_user(approver, create, json!({})), "createAsset");
}

#[test]
fn one_operator_cannot_deposit_to_themselves_or_anyone_alone() {
    let dir = tempfile::tempdir().unwrap();
    let system = shipped_thresholds(dir.path());
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    let approver = system.login(APPROVER, OPERATOR_PASSWORD);
    with_usd(&system, &operator, &approver);
    data(&system.register("trader@bank.example", "trader: tulip quarry lantern"), "register");
    let trader = system.login("trader@bank.example", "trader: tulip quarry lantern");

    tried("an operator deposits 1,000,000 USD to their own account");
    let own = system.as_user(&operator, DEPOSIT, json!({ "e": OPERATOR, "a": "USD", "m": "1000000", "r": "own-1" }));
    assert_eq!(refused(&own, "a deposit to oneself"), "FORBIDDEN", "{own}");
    assert_eq!(usd(&system, &operator), "0");

    tried("an operator deposits to a trader alone, then approves their own proposal");
    let body = system.as_user(&operator, DEPOSIT, json!({ "e": "trader@bank.example", "a": "USD", "m": "1000000", "r": "wire-1" }));
    let proposal = pending(&body);
    let approve = "mutation($id: ID!) { approveProposal(id: $id) { status approvals } }";
    let again = system.as_user(&operator, approve, json!({ "id": proposal }));
    assert_eq!(refused(&again, "approving one's own proposal"), "FORBIDDEN", "{again}");
    let repeat = system.as_user(&operator, DEPOSIT, json!({ "e": "trader@bank.example", "a": "USD", "m": "1000000", "r": "wire-1" }));
    assert_eq!(pending(&repeat), proposal, "the same deposit again is the same proposal, still waiting");
    assert_eq!(usd(&system, &trader), "0", "nothing moved on one operator's word");

    tried("marionettectl deposit by the same operator (a named session): it waits too (exit 4)");
    let (exit, said) = system.ctl(&["deposit", "trader@bank.example", "USD", "1000000", "wire-1"], "");
    assert_eq!(exit, 4, "{said}");
    assert!(said.contains("APPROVAL_PENDING"), "{said}");

    tried("a trader (no operator) approves it, and reads the proposals");
    assert_eq!(refused(&system.as_user(&trader, approve, json!({ "id": proposal })), "a user's approval"), "FORBIDDEN");
    assert_eq!(refused(&system.as_user(&trader, "{ proposals { id } }", json!({})), "a user's read"), "FORBIDDEN");

    // The second operator approves with marionettectl: now it happens, once.
    let (exit, said) = system.ctl_as(APPROVER, &["approve", &proposal], "");
    assert_eq!(exit, 0, "{said}");
    assert!(said.contains("EXECUTED"), "{said}");
    assert_eq!(usd(&system, &trader), "1000000.00");
    let listed = system.as_user(&approver, "{ proposals(status: EXECUTED) { id kind description approvals required } }", json!({}));
    let deposit = data(&listed, "proposals").as_array().unwrap().iter().find(|p| p["id"] == proposal.as_str()).cloned().unwrap();
    assert_eq!(deposit["kind"], "DEPOSIT");
    assert_eq!(deposit["required"], 2);
    assert_eq!(deposit["approvals"].as_array().unwrap().len(), 2);
    assert!(deposit["description"].as_str().unwrap().contains("1000000.00 USD"), "{deposit}");
}

#[test]
fn no_operator_approves_their_own_withdrawal() {
    let dir = tempfile::tempdir().unwrap();
    let system = shipped_thresholds(dir.path());
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    let approver = system.login(APPROVER, OPERATOR_PASSWORD);
    with_usd(&system, &operator, &approver);
    // The approver deposits to the operator, and the operator cannot approve it.
    let body = system.as_user(&approver, DEPOSIT, json!({ "e": OPERATOR, "a": "USD", "m": "500", "r": "salary" }));
    let proposal = pending(&body);
    tried("an operator approves a deposit to themselves proposed by another");
    let mine = system.as_user(&operator, "mutation($id: ID!) { approveProposal(id: $id) { status } }", json!({ "id": proposal }));
    assert_eq!(refused(&mine, "approving a deposit to oneself"), "FORBIDDEN", "{mine}");
    // A third operator, made by the two, approves it.
    let (exit, said) = system.ctl(&["create-operator", "third@bank.example"], OPERATOR_PASSWORD);
    assert_eq!(exit, 0, "{said}");
    assert!(said.contains("pending"), "a third operator needs a second approval: {said}");
    let third_proposal =
        serde_json::from_str::<Value>(&said).ok().and_then(|v| v["proposal"].as_str().map(String::from)).unwrap_or_else(|| panic!("no proposal id in {said}"));
    assert_eq!(system.ctl_as(APPROVER, &["approve", &third_proposal], "").0, 0);
    let third = system.login("third@bank.example", OPERATOR_PASSWORD);
    data(&system.as_user(&third, "mutation($id: ID!) { approveProposal(id: $id) { status } }", json!({ "id": proposal })), "approveProposal");
    assert_eq!(usd(&system, &operator), "500.00");

    let request = "mutation { requestWithdrawal(asset: \"USD\", amount: \"500\", destination: \"DE89 3704\", idempotencyKey: \"w1\") { id status } }";
    let withdrawal = data(&system.as_user(&operator, request, json!({})), "requestWithdrawal")["id"].as_str().unwrap().to_string();
    let approve_withdrawal = "mutation($id: ID!) { approveWithdrawal(id: $id) { id status } }";
    tried("an operator approves their own withdrawal");
    let own = system.as_user(&operator, approve_withdrawal, json!({ "id": withdrawal }));
    assert_eq!(refused(&own, "approving one's own withdrawal"), "FORBIDDEN", "{own}");
    tried("another operator proposes it, and the requester adds the second approval");
    let proposal = pending(&system.as_user(&approver, approve_withdrawal, json!({ "id": withdrawal })));
    let own = system.as_user(&operator, "mutation($id: ID!) { approveProposal(id: $id) { status } }", json!({ "id": proposal }));
    assert_eq!(refused(&own, "the requester's approval"), "FORBIDDEN", "{own}");
    let withdrawals = system.as_user(&operator, "{ withdrawals { id status } }", json!({}));
    assert_eq!(data(&withdrawals, "withdrawals")[0]["status"], "PENDING");
    // The third operator's approval is the second: approved.
    let done = system.as_user(&third, approve_withdrawal, json!({ "id": withdrawal }));
    assert_eq!(data(&done, "approveWithdrawal")["status"], "APPROVED");
}

fn audit_verify(system: &System) -> (i32, String) {
    system.ctl(&["audit", "verify"], "")
}

/// The console's check: `verifyAuditLog` a few records at a time, each
/// step going on from the last; how far it got and where it broke.
fn verify_over_graphql(system: &System, token: &str, step: i32) -> (u64, Option<String>) {
    let query = "query($after: String!, $hash: String, $limit: Int!) { verifyAuditLog(after: $after, afterHash: $hash, limit: $limit) { checkedThrough lastHash headSequence complete broken } }";
    let (mut after, mut hash) = ("0".to_string(), Value::Null);
    for _ in 0..1_000 {
        let answer = system.as_user(token, query, json!({ "after": after, "hash": hash, "limit": step }));
        let check = data(&answer, "verifyAuditLog").clone();
        let checked = check["checkedThrough"].as_str().unwrap().parse::<u64>().unwrap();
        assert!(checked <= after.parse::<u64>().unwrap() + step as u64, "one step checks at most its limit: {check}");
        if check["complete"] == true {
            return (checked, check["broken"].as_str().map(String::from));
        }
        (after, hash) = (check["checkedThrough"].as_str().unwrap().to_string(), check["lastHash"].clone());
    }
    panic!("verifyAuditLog never completed");
}

#[test]
fn an_edited_removed_or_reordered_audit_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut system = shipped_thresholds(dir.path());
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    let approver = system.login(APPROVER, OPERATOR_PASSWORD);
    with_usd(&system, &operator, &approver);
    // A failed login is a security event in the log too.
    let wrong = system.post("mutation { login(email: \"operator@bank.example\", password: \"guess\") { token } }", json!({}), "").2;
    assert_eq!(code(&wrong), "UNAUTHENTICATED");
    let export = dir.path().join("audit.jsonl");
    // The gateway hands the event to the ledger without making the login wait.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let lines: Vec<String> = loop {
        assert_eq!(system.ctl(&["audit", "export", export.to_str().unwrap()], "").0, 0);
        let lines: Vec<String> = std::fs::read_to_string(&export).unwrap().lines().map(String::from).collect();
        if lines.iter().any(|l| l.contains("LoginFailed")) || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let (exit, said) = audit_verify(&system);
    assert_eq!(exit, 0, "{said}");
    let (checked, broken) = verify_over_graphql(&system, &operator, 3);
    assert_eq!((checked >= lines.len() as u64, broken), (true, None), "the console's check of an intact log");
    tried("the console's check told a wrong hash to go on from");
    let wrong = system.as_user(
        &operator,
        "{ verifyAuditLog(after: \"3\", afterHash: \"00000000000000000000000000000000000000000000000000000000000000ff\") { complete broken } }",
        json!({}),
    );
    assert!(data(&wrong, "verifyAuditLog")["broken"].as_str().is_some_and(|b| b.contains("record 4")), "{wrong}");
    let beyond = system.as_user(
        &operator,
        "{ verifyAuditLog(after: \"1000000\", afterHash: \"0000000000000000000000000000000000000000000000000000000000000000\") { complete } }",
        json!({}),
    );
    assert_eq!(code(&beyond), "BAD_USER_INPUT", "{beyond}");
    system.register("curious@bank.example", OPERATOR_PASSWORD);
    let user = system.login("curious@bank.example", OPERATOR_PASSWORD);
    let refused_check = system.as_user(&user, "{ verifyAuditLog { complete } auditLog { headSequence } }", json!({}));
    assert_eq!(code(&refused_check), "FORBIDDEN", "a user reads the audit log: {refused_check}");
    assert!(lines.iter().any(|l| l.contains("LoginFailed") && l.contains("operator@bank.example")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("Proposed")) && lines.iter().any(|l| l.contains("Executed")), "{lines:?}");
    assert_eq!(system.ctl(&["audit", "verify", "--file", export.to_str().unwrap()], "").0, 0);

    tried("an export with one record's text changed, one removed, two swapped");
    let edited = dir.path().join("edited.jsonl");
    let changed: Vec<String> = lines.iter().map(|l| l.replace("operator@bank.example", "nobody@bank.example")).collect();
    let mut removed = lines.clone();
    removed.remove(1);
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    for (what, version) in [("changed", changed), ("removed", removed), ("reordered", swapped)] {
        std::fs::write(&edited, version.join("\n") + "\n").unwrap();
        let (exit, said) = system.ctl(&["audit", "verify", "--file", edited.to_str().unwrap()], "");
        assert_eq!(exit, 5, "a {what} record passed: {said}");
    }

    tried("the ledger's own audit record edited in its RocksDB while it was stopped");
    system.signal(Daemon::Ledger, "TERM");
    assert!(system.wait_exit(Daemon::Ledger, std::time::Duration::from_secs(30)).is_some_and(|status| status.success()));
    {
        let store = ledger::schema::open(&dir.path().join("ledger/db")).unwrap();
        let table = ledger::schema::operators::AUDIT;
        let key = 2u64.to_be_bytes();
        let mut record: ledger_api::operators::AuditRecord = postcard::from_bytes(&store.get(table, &key).unwrap().unwrap()).unwrap();
        record.at_ms += 1;
        let mut batch = storage::Batch::default();
        batch.put(table, &key, &postcard::to_stdvec(&record).unwrap());
        store.write(&mut batch, storage::Durability::Synced).unwrap();
    }
    system.start_again(Daemon::Ledger);
    let (exit, said) = audit_verify(&system);
    assert_eq!(exit, 5, "{said}");
    assert!(said.contains("record 2") && said.contains("changed"), "{said}");
    eprintln!("refused: {said}");
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    let (checked, broken) = verify_over_graphql(&system, &operator, 3);
    assert_eq!(checked, 1, "the console's check stops before the changed record");
    assert!(broken.as_deref().is_some_and(|b| b.contains("record 2") && b.contains("changed")), "{broken:?}");
}

/// The console's dashboard and users page read these: operators only, and
/// what they say follows what the operators did.
#[test]
fn the_oversight_reads_are_for_operators_and_say_what_is() {
    let dir = tempfile::tempdir().unwrap();
    let system = shipped_thresholds(dir.path());
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    let approver = system.login(APPROVER, OPERATOR_PASSWORD);
    data(&system.register("trader@bank.example", "trader: tulip quarry lantern"), "register");
    let trader = system.login("trader@bank.example", "trader: tulip quarry lantern");
    let status =
        "{ systemStatus { gateway { version } ledger { reachable journalApplied matchingAlarm } matching { connectedToLedger reachableFromGateway } } }";
    let standing = "query($e: String!) { userStanding(email: $e) { user { email } tier frozen killSwitch { engaged } } }";

    tried("a trader reads the daemons' state, another user's standing and the audit log");
    for (query, variables) in [(status, json!({})), (standing, json!({ "e": OPERATOR })), ("{ auditLog { headSequence } }", json!({}))] {
        let body = system.as_user(&trader, query, variables);
        assert_eq!(refused(&body, "an operators' read by a trader"), "FORBIDDEN", "{body}");
    }

    let body = system.as_user(&operator, status, json!({}));
    let answer = data(&body, "systemStatus");
    assert_eq!(answer["ledger"]["reachable"], true, "{body}");
    assert_eq!(answer["ledger"]["matchingAlarm"], Value::Null, "{body}");
    assert_eq!((answer["matching"]["connectedToLedger"].clone(), answer["matching"]["reachableFromGateway"].clone()), (json!(true), json!(true)), "{body}");
    assert_eq!(answer["gateway"]["version"], env!("CARGO_PKG_VERSION"));

    let read = |token: &str| data(&system.as_user(token, standing, json!({ "e": "trader@bank.example" })), "userStanding").clone();
    assert_eq!(read(&operator), json!({ "user": { "email": "trader@bank.example" }, "tier": 0, "frozen": false, "killSwitch": { "engaged": false } }));
    let unknown = system.as_user(&operator, standing, json!({ "e": "nobody@bank.example" }));
    assert_eq!(data(&unknown, "userStanding"), &Value::Null);
    // Tier 2 and a freeze, each proposed by one operator and approved by the other.
    let mut before = read(&operator);
    for mutation in
        ["mutation { setUserTier(email: \"trader@bank.example\", tier: 2) { id } }", "mutation { freezeAccount(email: \"trader@bank.example\") { id } }"]
    {
        let proposed = system.as_user(&operator, mutation, json!({}));
        let id =
            proposed["data"].as_object().and_then(|d| d.values().next()).and_then(|p| p["id"].as_str()).unwrap_or_else(|| panic!("{proposed}")).to_string();
        assert_eq!(read(&operator), before, "nothing changes on one operator's word: {proposed}");
        data(&system.as_user(&approver, "mutation($id: ID!) { approveProposal(id: $id) { status } }", json!({ "id": id })), "approveProposal");
        assert_ne!(read(&operator), before, "approved: {mutation}");
        before = read(&operator);
    }
    assert_eq!(read(&approver), json!({ "user": { "email": "trader@bank.example" }, "tier": 2, "frozen": true, "killSwitch": { "engaged": false } }));
}
