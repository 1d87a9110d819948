//! The three real daemons on a temporary directory, driven through the
//! gateway's HTTP API the way a client would: the contract's operations,
//! authentication and authorization, and the GraphQL-over-HTTP rules.

use acceptance::{code, data, session_of, Daemon, Options, System, APPROVER, OPERATOR, OPERATOR_PASSWORD, PLACE};
use serde_json::{json, Value};

#[test]
fn a_trade_end_to_end_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(dir.path());
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    // Assets through marionettectl; a second run says they exist (exit 3), and so does a second operator setup (exit 0).
    assert_eq!(system.ctl(&["create-asset", "BTC", "8"], "").0, 0);
    let body =
        system.as_user(&operator, "mutation($s: String!, $n: Int!) { createAsset(symbol: $s, scale: $n) { symbol scale } }", json!({ "s": "USD", "n": 2 }));
    assert_eq!(data(&body, "createAsset")["symbol"], "USD");
    assert_eq!(system.ctl(&["create-asset", "BTC", "8"], "").0, 3);
    assert_eq!(system.ctl(&["create-operator", OPERATOR], OPERATOR_PASSWORD).0, 0);
    assert_eq!(system.ctl(&["create-operator", OPERATOR], "another password").0, 3);
    // Without a session (logged out, or expired): the first operator again is
    // a setup run again; anyone else needs an operator's proposal.
    assert_eq!(system.ctl(&["logout"], "").0, 0);
    assert_eq!(system.ctl(&["create-operator", OPERATOR], OPERATOR_PASSWORD).0, 0);
    let (exit, said) = system.ctl(&["create-operator", "intruder@bank.example"], OPERATOR_PASSWORD);
    assert_eq!(exit, 1, "{said}");
    assert!(said.contains("FORBIDDEN"), "{said}");
    let intruder = system
        .post(
            "mutation($password: String!) { login(email: \"intruder@bank.example\", password: $password) { token } }",
            json!({"password": OPERATOR_PASSWORD}),
            "",
        )
        .2;
    assert_eq!(code(&intruder), "UNAUTHENTICATED", "no account was made: {intruder}");
    let (exit, said) = system.ctl(&["create-asset", "ETH", "8"], "");
    assert!(exit == 1 && said.contains("UNAUTHENTICATED") && said.contains("marionettectl login"), "{said}");
    assert_eq!(system.ctl(&["login", OPERATOR], OPERATOR_PASSWORD).0, 0);
    let (exit, status) = system.ctl(&["status"], "");
    assert_eq!(exit, 0);
    assert!(status.contains("\"matching_connected\": true"), "{status}");
    assert!(status.contains("\"operator_exists\": true"), "{status}");
    // A lot finer than the base's minor unit (a satoshi) is refused, not rounded.
    let sub_satoshi = system.as_user(
        &operator,
        "mutation { createMarket(input: { base: \"BTC\", quote: \"USD\", tickSize: \"0.01\", lotSize: \"0.000000001\", makerFeeRate: \"0\", takerFeeRate: \"0\" }) { id } }",
        json!({}),
    );
    assert_eq!(code(&sub_satoshi), "BAD_USER_INPUT");
    let market = system.as_user(
        &operator,
        "mutation { createMarket(input: { base: \"BTC\", quote: \"USD\", tickSize: \"1\", lotSize: \"0.01\", makerFeeRate: \"0.001\", takerFeeRate: \"0.002\" }) { id tickSize lotSize } }",
        json!({}),
    );
    assert_eq!(data(&market, "createMarket"), &json!({ "id": "BTC-USD", "tickSize": "1", "lotSize": "0.01" }));
    let again = system.as_user(&operator, "mutation { createMarket(input: { base: \"BTC\", quote: \"USD\", tickSize: \"1\", lotSize: \"0.01\", makerFeeRate: \"0\", takerFeeRate: \"0\" }) { id } }", json!({}));
    assert_eq!(code(&again), "DUPLICATE");

    // The white paper's login as written, but its example password is too
    // easy to guess to be registered: the user picks a stronger one.
    let weak = system.post("mutation { register(email: \"user@domain.io\", password: \"mypasswd\") { id email role } }", json!({}), "").2;
    assert_eq!(code(&weak), "WEAK_PASSWORD");
    let registered = system.post("mutation { register(email: \"user@domain.io\", password: \"mypasswd, quarry lantern\") { id email role } }", json!({}), "").2;
    assert_eq!(data(&registered, "register")["role"], "USER");
    let (status, head, login) = system.post("mutation { login(email: \"user@domain.io\", password: \"mypasswd, quarry lantern\") { token } }", json!({}), "");
    assert_eq!(status, 200);
    assert!(head.contains("application/graphql-response+json"), "{head}");
    assert!(head.to_ascii_lowercase().contains("set-cookie: marionette_token="), "login sets the cookie: {head}");
    assert!(head.contains("HttpOnly") && head.contains("SameSite=Strict"), "{head}");
    let alice = data(&login, "login")["token"].as_str().unwrap().to_string();
    system.post("mutation { register(email: \"bob@domain.io\", password: \"bob: tulip quarry lantern\") { id } }", json!({}), "");
    let bob = system.login("bob@domain.io", "bob: tulip quarry lantern");

    for (email, asset, amount) in [("user@domain.io", "USD", "10000.00"), ("bob@domain.io", "BTC", "1")] {
        let body = system.as_user(
            &operator,
            "mutation($e: String!, $a: String!, $m: Decimal!) { deposit(email: $e, asset: $a, amount: $m, reference: $e) { amount kind } }",
            json!({ "e": email, "a": asset, "m": amount }),
        );
        assert_eq!(data(&body, "deposit")["kind"], "DEPOSIT");
    }
    // Depositing is for operators.
    let refused = system.as_user(&alice, "mutation { deposit(email: \"user@domain.io\", asset: \"USD\", amount: \"1\", reference: \"r\") { id } }", json!({}));
    assert_eq!(code(&refused), "FORBIDDEN");

    let sell = system.as_user(&bob, PLACE, json!({ "i": { "market": "BTC-USD", "side": "SELL", "type": "LIMIT", "price": "100", "quantity": "0.5" } }));
    assert_eq!(data(&sell, "placeOrder")["status"], "OPEN");
    let sell_id = data(&sell, "placeOrder")["id"].as_str().unwrap().to_string();
    let book = system.post("{ orderBook(market: \"BTC-USD\") { market bids { price quantity } asks { price quantity } } }", json!({}), "").2;
    assert_eq!(data(&book, "orderBook"), &json!({ "market": "BTC-USD", "bids": [], "asks": [{ "price": "100", "quantity": "0.5" }] }));
    let buy = system.as_user(&alice, PLACE, json!({ "i": { "market": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "101", "quantity": "0.3" } }));
    let buy = data(&buy, "placeOrder");
    assert_eq!(
        (buy["status"].as_str(), buy["filledQuantity"].as_str(), buy["averagePrice"].as_str()),
        (Some("FILLED"), Some("0.3"), Some("100")),
        "placeOrder answers after matching: {buy}"
    );
    // From the settlement the ledger sent, not from reading the order after the wait gave up.
    assert!(system.metrics(Daemon::Gateway).contains("marionette_gateway_order_settled_by_read_total 0\n"), "{}", system.metrics(Daemon::Gateway));

    // 0.3 BTC at 100 USD = 30.00 USD; the taker pays 0.2% (0.06), the maker 0.1% (0.03).
    let balances = system.as_user(&alice, "{ balances { asset available locked } }", json!({}));
    assert_eq!(
        data(&balances, "balances"),
        &json!([{ "asset": "BTC", "available": "0.30000000", "locked": "0.00000000" }, { "asset": "USD", "available": "9969.94", "locked": "0.00" }])
    );
    let bob_balances = system.as_user(&bob, "{ balances { asset available locked } }", json!({}));
    assert_eq!(data(&bob_balances, "balances")[1], json!({ "asset": "USD", "available": "29.97", "locked": "0.00" }));
    let trades = system.as_user(&alice, "{ userTrades { price quantity side fee feeAsset } }", json!({}));
    assert_eq!(data(&trades, "userTrades"), &json!([{ "price": "100", "quantity": "0.3", "side": "BUY", "fee": "0.06", "feeAsset": "USD" }]));

    // The operator's books: every cent deposited is with a user or collected as a fee.
    let reserves = system.as_user(&operator, "{ reserves { asset deposited users fees pendingWithdrawals balanced } }", json!({}));
    assert_eq!(
        data(&reserves, "reserves"),
        &json!([
            { "asset": "BTC", "deposited": "1.00000000", "users": "1.00000000", "fees": "0.00000000", "pendingWithdrawals": "0.00000000", "balanced": true },
            { "asset": "USD", "deposited": "10000.00", "users": "9999.91", "fees": "0.09", "pendingWithdrawals": "0.00", "balanced": true }
        ])
    );
    assert_eq!(code(&system.as_user(&alice, "{ reserves { asset } }", json!({}))), "FORBIDDEN");

    // Another user's order id answers null, not an error.
    let query = "query($id: ID!) { userOrder(id: $id) { id status } }";
    assert_eq!(data(&system.as_user(&alice, query, json!({ "id": sell_id })), "userOrder"), &Value::Null);
    assert_eq!(data(&system.as_user(&bob, query, json!({ "id": sell_id })), "userOrder")["status"], "PARTIALLY_FILLED");
    // Cancelling releases the rest of the hold.
    let cancelled = system.as_user(&bob, "mutation($id: ID!) { cancelOrder(id: $id) { status filledQuantity } }", json!({ "id": sell_id }));
    assert_eq!(data(&cancelled, "cancelOrder"), &json!({ "status": "CANCELLED", "filledQuantity": "0.3" }));
    let bob_balances = system.as_user(&bob, "{ balances { asset available locked } }", json!({}));
    assert_eq!(data(&bob_balances, "balances")[0], json!({ "asset": "BTC", "available": "0.70000000", "locked": "0.00000000" }));

    // Not enough money, and an off-tick price.
    let broke = system.as_user(&alice, PLACE, json!({ "i": { "market": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "100000", "quantity": "1" } }));
    assert_eq!(code(&broke), "INSUFFICIENT_FUNDS");
    let off_tick = system.as_user(&alice, PLACE, json!({ "i": { "market": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "100.5", "quantity": "0.1" } }));
    assert_eq!(code(&off_tick), "INVALID_TICK_SIZE");

    let markets = system.get("/markets");
    assert_eq!(markets.0, 200);
    assert!(markets.2.contains("\"BTC-USD\""), "{}", markets.2);

    // kill -9 of all three, then start again on the same data: everything is still there.
    let balances_before = data(&system.as_user(&alice, "{ balances { asset available locked } }", json!({})), "balances").clone();
    drop(system);
    let system = System::start(dir.path());
    let alice = system.login("user@domain.io", "mypasswd, quarry lantern");
    assert_eq!(data(&system.as_user(&alice, "{ balances { asset available locked } }", json!({})), "balances"), &balances_before);
    let orders = system.as_user(&alice, "{ userOrders { status filledQuantity } }", json!({}));
    assert_eq!(data(&orders, "userOrders"), &json!([{ "status": "FILLED", "filledQuantity": "0.3" }]));
    let book = system.post("{ orderBook(market: \"BTC-USD\") { bids { price } asks { price quantity } } }", json!({}), "").2;
    assert_eq!(data(&book, "orderBook"), &json!({ "bids": [], "asks": [] }), "bob's cancelled order stays cancelled");
}

#[test]
fn tokens_and_http_rules_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(dir.path());
    let token = system.login(OPERATOR, OPERATOR_PASSWORD);
    let me = "{ me { email role } }";
    assert_eq!(data(&system.as_user(&token, me, json!({})), "me"), &json!({ "email": OPERATOR, "role": "OPERATOR" }));
    // The cookie authenticates too.
    assert_eq!(data(&system.post(me, json!({}), &format!("Cookie: theme=dark; marionette_token={token}\r\n")).2, "me")["role"], "OPERATOR");

    // Forged signature, alg none, garbage, wrong password: all UNAUTHENTICATED, none reveal why.
    // A changed first signature character changes its top six bits (the last one may only touch padding).
    let parts: Vec<&str> = token.split('.').collect();
    let flipped = if parts[2].starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{}.{}.{flipped}{}", parts[0], parts[1], &parts[2][1..]);
    let payload = parts[1];
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    // Signed with the gateway's own key, but expired; and an HMAC token claiming the same kid.
    let keys = dir.path().join("gateway/keys");
    // The signing key (`<kid>.ed25519`), not the key for secrets at rest beside it.
    let key_file = std::fs::read_dir(&keys).unwrap().map(|entry| entry.unwrap().path()).find(|path| path.extension().is_some_and(|e| e == "ed25519")).unwrap();
    let kid = key_file.file_stem().unwrap().to_string_lossy().into_owned();
    let seed: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&std::fs::read_to_string(&key_file).unwrap().trim()[2 * i..2 * i + 2], 16).unwrap()).collect();
    let mut pkcs8 = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    pkcs8.extend_from_slice(&seed);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    // The login's own session: only the expiry differs between the two.
    let sid = session_of(&token);
    let claims = json!({ "sub": "1", "role": "Operator", "sid": sid, "iat": 1_000_000_000, "exp": 1_000_000_600 });
    let expired = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_der(&pkcs8)).unwrap();
    let fresh_claims = json!({ "sub": "1", "role": "Operator", "sid": sid, "iat": 1_000_000_000, "exp": 4_000_000_000u64 });
    // Signed right, but naming no session the gateway made (a token from before sessions, or invented).
    let sessionless = jsonwebtoken::encode(
        &header,
        &json!({ "sub": "1", "role": "Operator", "iat": 1_000_000_000, "exp": 4_000_000_000u64 }),
        &jsonwebtoken::EncodingKey::from_ed_der(&pkcs8),
    )
    .unwrap();
    let invented = jsonwebtoken::encode(
        &header,
        &json!({ "sub": "1", "role": "Operator", "sid": "0".repeat(32), "iat": 1_000_000_000, "exp": 4_000_000_000u64 }),
        &jsonwebtoken::EncodingKey::from_ed_der(&pkcs8),
    )
    .unwrap();
    let still_valid = jsonwebtoken::encode(&header, &fresh_claims, &jsonwebtoken::EncodingKey::from_ed_der(&pkcs8)).unwrap();
    assert_eq!(data(&system.as_user(&still_valid, me, json!({})), "me")["role"], "OPERATOR", "the same key and claims, unexpired, are accepted");
    let mut hmac_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hmac_header.kid = Some(kid);
    let hmac = jsonwebtoken::encode(&hmac_header, &fresh_claims, &jsonwebtoken::EncodingKey::from_secret(b"guessable")).unwrap();
    for bad in [forged.as_str(), none.as_str(), "not-a-token", expired.as_str(), hmac.as_str(), sessionless.as_str(), invented.as_str()] {
        assert_eq!(code(&system.as_user(bad, me, json!({}))), "UNAUTHENTICATED", "{bad}");
    }
    let wrong = system.post("mutation { login(email: \"operator@bank.example\", password: \"wrong password\") { token } }", json!({}), "").2;
    assert_eq!(code(&wrong), "UNAUTHENTICATED");
    let unknown = system.post("mutation { login(email: \"nobody@bank.example\", password: \"wrong password\") { token } }", json!({}), "").2;
    assert_eq!(unknown["errors"][0]["message"], wrong["errors"][0]["message"], "an unknown email reads like a wrong password");

    // Mutations only over POST, only as JSON; a query may use GET.
    let (status, _, _) = system.get("/graphql?query=mutation%20%7B%20logout%20%7D");
    assert_eq!(status, 405);
    let (status, _, body) = system.get("/graphql?query=%7B%20assets%20%7B%20symbol%20%7D%20%7D");
    assert_eq!(status, 200, "{body}");
    let form = "query=mutation+%7B+logout+%7D";
    let (status, _, _) = system.raw(&format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    ));
    assert_eq!(status, 415);
    // Limits: body size, query depth; a broken document is a 400 for graphql-response+json clients.
    let (status, _, _) = system.post(&format!("{{ assets {{ symbol }} }} # {}", "x".repeat(5_000)), json!({}), "");
    assert_eq!(status, 413);
    let (status, _, body) =
        system.post("{ markets { base { id } quote { id } } me { email } assets { id } }", json!({}), &format!("Authorization: Bearer {token}\r\n"));
    assert_eq!(status, 200, "{body}");
    let deep = "{ markets { base { symbol } } __schema { types { fields { type { ofType { ofType { name } } } } } } }";
    let (status, _, body) = system.post(deep, json!({}), "");
    assert_eq!(status, 400, "over query_depth_max: {body}");
    let (status, _, _) = system.post("{ assets { ", json!({}), "");
    assert_eq!(status, 400);

    // A user is refused operator mutations.
    system.post("mutation { register(email: \"eve@domain.io\", password: \"eve: tulip quarry lantern\") { id } }", json!({}), "");
    let eve = system.login("eve@domain.io", "eve: tulip quarry lantern");
    assert_eq!(code(&system.as_user(&eve, "mutation { createAsset(symbol: \"EUR\", scale: 2) { id } }", json!({}))), "FORBIDDEN");
    let duplicate = system.post("mutation { register(email: \"EVE@domain.io\", password: \"another: kestrel 8 ledger\") { id } }", json!({}), "").2;
    assert_eq!(code(&duplicate), "DUPLICATE");
}

#[test]
fn rate_limits_answer_429_per_ip_and_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start_with(
        dir.path(),
        &Options { gateway_limits: "ip_requests_per_second = 1\nip_burst = 12\nuser_requests_per_second = 1\nuser_burst = 3".into(), ..Options::default() },
    );
    // The liveness probe spends none of the address's 12 tokens: the login below still passes.
    for _ in 0..20 {
        assert_eq!(system.get("/healthz").0, 200);
    }
    // Metrics are not served on the API's listener (this spends one of the address's 12).
    assert_eq!(system.get("/metrics").0, 404);
    let token = system.login(OPERATOR, OPERATOR_PASSWORD);
    let me = "{ me { email } }";
    // The user's burst of 3, then 429 with the code and Retry-After; the login used one IP token.
    for _ in 0..3 {
        assert_eq!(data(&system.as_user(&token, me, json!({})), "me")["email"], OPERATOR);
    }
    let (status, head, body) = system.post(me, json!({}), &format!("Authorization: Bearer {token}\r\n"));
    assert_eq!((status, code(&body)), (429, "RATE_LIMITED"), "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after: 1"), "{head}");
    // Anonymous requests from the same IP still pass until the IP's burst is spent.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(system.post("{ assets { symbol } }", json!({}), "").0);
    }
    assert!(statuses.contains(&200) && statuses.ends_with(&[429]), "{statuses:?}");
    // The REST reads that ask the ledger count too; the liveness probe does not.
    assert_eq!(system.get("/markets").0, 429);
    assert_eq!(system.get("/readyz").0, 429);
    assert_eq!(system.get("/healthz").0, 200);
    // Metrics and the probes are served apart, on the metrics listener, unlimited.
    assert_eq!(system.probe(Daemon::Gateway, "/readyz").0, 200);
    assert!(system.metrics(Daemon::Gateway).contains("marionette_gateway_rate_limited_total"));
}

#[test]
fn subscriptions_started_on_one_socket_count_against_the_callers_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start_with(dir.path(), &Options { gateway_limits: "user_requests_per_second = 1\nuser_burst = 3".into(), ..Options::default() });
    let token = system.login(OPERATOR, OPERATOR_PASSWORD);
    let mut ws = system.subscriptions(&token);
    let rate_limited = |message: &Value| message["type"] == "error" && message["payload"][0]["extensions"]["code"] == "RATE_LIMITED";
    // The user's burst of 3 (one a second after), on one socket as on HTTP.
    let answers: Vec<Value> = (0..6)
        .map(|i| {
            let id = format!("s{i}");
            ws.subscribe(&id, "subscription { trades(market: \"NO-SUCH\") { price } }");
            ws.next_for(&id)
        })
        .collect();
    assert!(answers[..3].iter().all(|answer| !rate_limited(answer)), "{answers:?}");
    assert!(answers[3..].iter().any(rate_limited), "{answers:?}");
    let refused = answers.iter().find(|answer| rate_limited(answer)).unwrap();
    assert!(refused["payload"][0]["extensions"]["retryAfterSeconds"].as_u64().is_some_and(|s| s >= 1), "{refused}");
    // The socket stays open, and takes what the limit lets through a second later.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    ws.subscribe("later", "subscription { trades(market: \"NO-SUCH\") { price } }");
    let later = ws.next_for("later");
    assert!(!rate_limited(&later), "{later}");
}

#[test]
fn subscriptions_deliver_the_snapshot_then_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    // The ledger over TCP, as for a gateway on another host.
    let system = System::start_with(dir.path(), &Options { gateway_limits: "subscriptions_max = 3".into(), ledger_over_tcp: true, ..Options::default() });
    assert_eq!(system.ctl(&["create-asset", "BTC", "8"], "").0, 0);
    assert_eq!(system.ctl(&["create-asset", "USD", "2"], "").0, 0);
    assert_eq!(system.ctl(&["create-market", "BTC", "USD", "1", "0.01", "0.001", "0.002"], "").0, 0);
    system.register("carol@domain.io", "carol: tulip quarry lantern");
    system.register("dave@domain.io", "dave: tulip quarry lantern");
    assert_eq!(system.ctl(&["deposit", "carol@domain.io", "BTC", "2", "carol-btc"], "").0, 0);
    assert_eq!(system.ctl(&["deposit", "dave@domain.io", "USD", "1000", "dave-usd"], "").0, 0);
    let (carol, dave) = (system.login("carol@domain.io", "carol: tulip quarry lantern"), system.login("dave@domain.io", "dave: tulip quarry lantern"));
    // A trade before anyone subscribes: the trades subscription's snapshot.
    system.as_user(&carol, PLACE, json!({ "i": { "market": "BTC-USD", "side": "SELL", "type": "LIMIT", "price": "90", "quantity": "0.1" } }));
    let before = system.as_user(&dave, PLACE, json!({ "i": { "market": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "90", "quantity": "0.1" } }));
    assert_eq!(data(&before, "placeOrder")["status"], "FILLED");

    let mut ws = system.subscriptions(&carol);
    ws.subscribe("book", "subscription { orderBook(market: \"BTC-USD\", depth: 1) { market asks { price quantity } } }");
    assert_eq!(ws.next_for("book")["payload"]["data"]["orderBook"], json!({ "market": "BTC-USD", "asks": [] }), "the snapshot first");
    ws.subscribe("mine", "subscription { userOrders { side status quantity } }");
    ws.subscribe("trades", "subscription { trades(market: \"BTC-USD\") { price quantity takerSide } }");
    assert_eq!(ws.next_for("trades")["payload"]["data"]["trades"], json!({ "price": "90", "quantity": "0.1", "takerSide": "BUY" }), "the latest trades first");
    // One over subscriptions_max is refused with the contract's code, as the
    // protocol's `error` message (which ends the subscription: no `complete`).
    ws.subscribe("fourth", "subscription { orderBook(market: \"BTC-USD\") { market } }");
    let refused = ws.next_for("fourth");
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "RATE_LIMITED", "{refused}");

    let placed = system.as_user(&carol, PLACE, json!({ "i": { "market": "BTC-USD", "side": "SELL", "type": "LIMIT", "price": "100", "quantity": "0.5" } }));
    assert_eq!(data(&placed, "placeOrder")["status"], "OPEN");
    assert_eq!(ws.next_for("book")["payload"]["data"]["orderBook"]["asks"], json!([{ "price": "100", "quantity": "0.5" }]), "then each change");
    assert_eq!(ws.next_for("mine")["payload"]["data"]["userOrders"], json!({ "side": "SELL", "status": "OPEN", "quantity": "0.5" }));
    // A worse ask beyond depth 1 changes nothing this subscriber sees.
    system.as_user(&carol, PLACE, json!({ "i": { "market": "BTC-USD", "side": "SELL", "type": "LIMIT", "price": "120", "quantity": "0.1" } }));
    assert_eq!(ws.next_for("mine")["payload"]["data"]["userOrders"]["status"], "OPEN");
    // A buyer takes 0.2: the book, carol's order and the trade all follow.
    let bought = system.as_user(&dave, PLACE, json!({ "i": { "market": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "100", "quantity": "0.2" } }));
    assert_eq!(data(&bought, "placeOrder")["status"], "FILLED");
    assert_eq!(ws.next_for("trades")["payload"]["data"]["trades"], json!({ "price": "100", "quantity": "0.2", "takerSide": "BUY" }));
    assert_eq!(
        ws.next_for("book")["payload"]["data"]["orderBook"]["asks"],
        json!([{ "price": "100", "quantity": "0.3" }]),
        "the 120 ask never showed at depth 1"
    );
    assert_eq!(ws.next_for("mine")["payload"]["data"]["userOrders"], json!({ "side": "SELL", "status": "PARTIALLY_FILLED", "quantity": "0.5" }));

    // A market created after the subscription started is read in time to show its orders in its own units.
    assert_eq!(system.ctl(&["create-asset", "ETH", "8"], "").0, 0);
    assert_eq!(system.ctl(&["create-market", "ETH", "USD", "0.5", "0.1", "0", "0"], "").0, 0);
    assert_eq!(system.ctl(&["deposit", "carol@domain.io", "ETH", "1", "carol-eth"], "").0, 0);
    let eth = system.as_user(&carol, PLACE, json!({ "i": { "market": "ETH-USD", "side": "SELL", "type": "LIMIT", "price": "10.5", "quantity": "0.3" } }));
    assert_eq!(data(&eth, "placeOrder")["status"], "OPEN");
    assert_eq!(ws.next_for("mine")["payload"]["data"]["userOrders"], json!({ "side": "SELL", "status": "OPEN", "quantity": "0.3" }));

    // Completing one frees its slot for another.
    ws.send(json!({ "id": "book", "type": "complete" }));
    ws.subscribe("again", "subscription { orderBook(market: \"BTC-USD\") { asks { price quantity } } }");
    assert_eq!(
        ws.next_for("again")["payload"]["data"]["orderBook"]["asks"],
        json!([{ "price": "100", "quantity": "0.3" }, { "price": "120", "quantity": "0.1" }])
    );

    // An upgrade that does not speak graphql-transport-ws is refused; a message over body_bytes_max (4096 here) closes the socket.
    let (status, _, body) = system.raw("GET /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    assert_eq!(status, 400, "{body}");
    let mut oversized = system.subscriptions(&carol);
    oversized
        .send(json!({ "id": "big", "type": "subscribe", "payload": { "query": format!("subscription {{ userOrders {{ id }} }} # {}", "x".repeat(5_000)) } }));
    assert!(oversized.closed(), "a 5 kB message on a 4 kB limit closes the socket");

    // Closing the socket ends its subscriptions and frees their slots (the gateway sees the close a moment later).
    drop(ws);
    let mut anonymous = system.subscriptions("not-a-token");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !system.metrics(Daemon::Gateway).contains("marionette_gateway_websockets 1\n") {
        assert!(std::time::Instant::now() < deadline, "{}", system.metrics(Daemon::Gateway));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Without a valid token, userOrders is refused; the book is public.
    anonymous.subscribe("mine", "subscription { userOrders { status } }");
    let refused = anonymous.next_for("mine");
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "UNAUTHENTICATED", "{refused}");
    for id in ["one", "two", "three"] {
        anonymous.subscribe(id, "subscription { orderBook(market: \"BTC-USD\", depth: 1) { bids { price } } }");
        assert_eq!(anonymous.next_for(id)["payload"]["data"]["orderBook"], json!({ "bids": [] }), "{id}");
    }
}

#[test]
fn connection_and_query_complexity_caps() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let options = Options { gateway_listen: "connections_max = 2".into(), gateway_limits: "query_complexity_max = 8".into(), ..Options::default() };
    let system = System::start_with(dir.path(), &options);
    // Ten fields is over query_complexity_max; three is not.
    let (status, _, body) = system.post("{ assets { id symbol scale } markets { id tickSize lotSize makerFeeRate takerFeeRate } }", json!({}), "");
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("complex"), "{body}");
    assert_eq!(system.post("{ assets { id symbol } }", json!({}), "").0, 200);

    // An idle keep-alive connection and a WebSocket take both places; a third connection waits for one.
    let idle = std::net::TcpStream::connect(("127.0.0.1", system.port)).unwrap();
    let socket = system.subscriptions("no token");
    let mut third = std::net::TcpStream::connect(("127.0.0.1", system.port)).unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    third.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
    let mut response = Vec::new();
    let waited = third.read_to_end(&mut response);
    assert!(waited.is_err() && response.is_empty(), "the third connection was served while two were open: {:?}", String::from_utf8_lossy(&response));
    // The WebSocket closing frees its place (the idle connection keeps the other).
    drop(socket);
    third.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    third.read_to_end(&mut response).unwrap();
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&response));
    drop(idle);
}

/// The house's accounts: operators fund the inventory from custody (once
/// per reference), see it beside the fees, and cannot take out more than
/// it holds; users may do none of it.
#[test]
fn operators_fund_the_house_and_see_its_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(dir.path());
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    assert_eq!(system.ctl(&["create-asset", "USD", "2"], "").0, 0);
    let fund = "mutation($a: Decimal!, $r: String!) { fundHouse(asset: \"USD\", amount: $a, reference: $r) { asset inventory revenue } }";
    let funded = system.as_user(&operator, fund, json!({ "a": "2500.00", "r": "treasury-1" }));
    assert_eq!(data(&funded, "fundHouse"), &json!({ "asset": "USD", "inventory": "2500.00", "revenue": "0.00" }));
    let again = system.as_user(&operator, fund, json!({ "a": "2500.00", "r": "treasury-1" }));
    assert_eq!(data(&again, "fundHouse")["inventory"], "2500.00", "the same reference funds once");
    assert_eq!(code(&system.as_user(&operator, fund, json!({ "a": "1.00", "r": "treasury-1" }))), "DUPLICATE");
    let defund = "mutation($a: Decimal!, $r: String!) { defundHouse(asset: \"USD\", amount: $a, reference: $r) { inventory } }";
    assert_eq!(code(&system.as_user(&operator, defund, json!({ "a": "2500.01", "r": "back-1" }))), "INSUFFICIENT_FUNDS");
    assert_eq!(data(&system.as_user(&operator, defund, json!({ "a": "500.00", "r": "back-2" })), "defundHouse")["inventory"], "2000.00");
    let house = system.as_user(&operator, "{ houseBalances { asset inventory revenue } }", json!({}));
    assert_eq!(data(&house, "houseBalances"), &json!([{ "asset": "USD", "inventory": "2000.00", "revenue": "0.00" }]));
    let reserves = system.as_user(&operator, "{ reserves { asset deposited inventory users balanced accounts { owner purpose amount } } }", json!({}));
    assert_eq!(
        data(&reserves, "reserves"),
        &json!([{
            "asset": "USD",
            "deposited": "2000.00",
            "inventory": "2000.00",
            "users": "0.00",
            "balanced": true,
            "accounts": [{ "owner": "HOUSE", "purpose": "custody", "amount": "-2000.00" }, { "owner": "HOUSE", "purpose": "inventory", "amount": "2000.00" }]
        }])
    );
    system.post("mutation { register(email: \"carol@domain.io\", password: \"carol: tulip quarry lantern\") { id } }", json!({}), "");
    let carol = system.login("carol@domain.io", "carol: tulip quarry lantern");
    assert_eq!(code(&system.as_user(&carol, fund, json!({ "a": "1.00", "r": "mine" }))), "FORBIDDEN");
    assert_eq!(code(&system.as_user(&carol, "{ houseBalances { asset } }", json!({}))), "FORBIDDEN");
}

/// The contract makes these arguments nullable with a default: an explicit
/// null is the default, not an error.
#[test]
fn explicit_nulls_take_the_contracts_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(dir.path());
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    assert_eq!(system.ctl(&["create-asset", "BTC", "8"], "").0, 0);
    assert_eq!(system.ctl(&["create-asset", "USD", "2"], "").0, 0);
    assert_eq!(system.ctl(&["create-market", "BTC", "USD", "1", "0.01", "0", "0"], "").0, 0);
    let deposit = format!("mutation {{ deposit(email: \"{OPERATOR}\", asset: \"USD\", amount: \"100\", reference: \"r\") {{ id }} }}");
    // The second operator's: no operator deposits to themselves.
    let approver = system.login(APPROVER, OPERATOR_PASSWORD);
    assert_eq!(code(&system.as_user(&operator, &deposit, json!({}))), "FORBIDDEN");
    assert!(system.as_user(&approver, &deposit, json!({})).get("errors").is_none());
    let placed = system.as_user(
        &operator,
        "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { timeInForce postOnly status } }",
        json!({ "i": { "market": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "10", "quantity": "0.01", "timeInForce": null, "postOnly": null } }),
    );
    let order = data(&placed, "placeOrder");
    assert_eq!((order["timeInForce"].as_str(), order["postOnly"].as_bool(), order["status"].as_str()), (Some("GTC"), Some(false), Some("OPEN")), "{placed}");
    for query in [
        "{ userOrders(limit: null) { id } }",
        "{ userTrades(limit: null) { id } }",
        "{ ledgerEntries(limit: null) { id } }",
        "{ trades(market: \"BTC-USD\", limit: null) { id } }",
    ] {
        let answer = system.as_user(&operator, query, json!({}));
        assert!(answer.get("errors").is_none(), "{query}: {answer}");
    }
    let book = system.post("{ orderBook(market: \"BTC-USD\", depth: null) { bids { price } } }", json!({}), "").2;
    assert_eq!(data(&book, "orderBook")["bids"], json!([{ "price": "10" }]));
}

#[test]
fn sessions_end_at_logout_revocation_and_password_change_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut system = System::start(dir.path());
    let (email, password) = ("frank@bank.example", "tulip quarry lantern 42");
    data(&system.register(email, password), "register");
    let me = "{ me { email } }";
    let sessions = "{ sessions { id address userAgent current createdAt lastSeenAt } }";
    let (laptop, phone, tablet) = (system.login(email, password), system.login(email, password), system.login(email, password));
    let listed = system.as_user(&laptop, sessions, json!({}));
    let listed = data(&listed, "sessions").as_array().unwrap().clone();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed.iter().filter(|s| s["current"] == true).map(|s| s["id"].as_str().unwrap()).collect::<Vec<_>>(), vec![session_of(&laptop)]);
    assert!(listed.iter().all(|s| s["address"] == "127.0.0.1"), "{listed:?}");

    // An open subscription of the phone's session, closed by its revocation.
    let mut ws = system.subscriptions(&phone);
    ws.subscribe("mine", "subscription { userOrders { status } }");
    let revoke = "mutation($id: ID!) { revokeSession(id: $id) }";
    assert_eq!(data(&system.as_user(&laptop, revoke, json!({ "id": session_of(&phone) })), "revokeSession"), true);
    assert!(ws.closed(), "the revoked session's subscription is closed");
    assert_eq!(code(&system.as_user(&phone, me, json!({}))), "UNAUTHENTICATED", "the revoked session's token is refused");
    assert_eq!(code(&system.as_user(&laptop, revoke, json!({ "id": session_of(&phone) }))), "NOT_FOUND", "twice");
    assert_eq!(code(&system.as_user(&laptop, revoke, json!({ "id": "not a session" }))), "BAD_USER_INPUT");
    // Another user cannot end frank's sessions.
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    assert_eq!(code(&system.as_user(&operator, revoke, json!({ "id": session_of(&tablet) }))), "NOT_FOUND");
    assert_eq!(data(&system.as_user(&tablet, me, json!({})), "me")["email"], email);

    // Logout ends the session at once, and a restart does not bring it back.
    assert_eq!(data(&system.as_user(&tablet, "mutation { logout }", json!({})), "logout"), true);
    assert_eq!(code(&system.as_user(&tablet, me, json!({}))), "UNAUTHENTICATED");
    system.signal(Daemon::Gateway, "TERM");
    assert!(system.wait_exit(Daemon::Gateway, std::time::Duration::from_secs(20)).is_some_and(|s| s.success()));
    system.start_again(Daemon::Gateway);
    assert_eq!(code(&system.as_user(&tablet, me, json!({}))), "UNAUTHENTICATED", "logged out before the restart");
    assert_eq!(code(&system.as_user(&phone, me, json!({}))), "UNAUTHENTICATED", "revoked before the restart");
    assert_eq!(data(&system.as_user(&laptop, me, json!({})), "me")["email"], email, "a live session outlives the restart");

    // A password change: a weak new one is refused, the current one must be right,
    // and then every other session ends and the old password no longer logs in.
    let change = "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";
    let weak = system.as_user(&laptop, change, json!({ "c": password, "n": "password123" }));
    assert_eq!(code(&weak), "WEAK_PASSWORD", "{weak}");
    assert_eq!(code(&system.as_user(&laptop, change, json!({ "c": "not it at all", "n": "granite osprey 77 meadow" }))), "UNAUTHENTICATED");
    let desk = system.login(email, password);
    assert_eq!(data(&system.as_user(&laptop, change, json!({ "c": password, "n": "granite osprey 77 meadow" })), "changePassword"), true);
    assert_eq!(code(&system.as_user(&desk, me, json!({}))), "UNAUTHENTICATED", "the other sessions ended");
    assert_eq!(data(&system.as_user(&laptop, me, json!({})), "me")["email"], email, "the session that changed it goes on");
    let old = system.post("mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }", json!({ "e": email, "p": password }), "").2;
    assert_eq!(code(&old), "UNAUTHENTICATED");
    system.login(email, "granite osprey 77 meadow");
    let live = |system: &System| -> u64 {
        let metrics = system.metrics(Daemon::Gateway);
        metrics.lines().find_map(|l| l.strip_prefix("marionette_gateway_sessions ")?.parse().ok()).unwrap_or_else(|| panic!("{metrics}"))
    };
    let before = live(&system);
    assert_eq!(data(&system.as_user(&laptop, "mutation { revokeOtherSessions }", json!({})), "revokeOtherSessions"), 1);
    assert_eq!(live(&system), before - 1, "the gauge of live sessions follows");
    system.stop();
}

#[test]
fn weak_passwords_and_disguised_emails_are_refused_at_registration() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(dir.path());
    // The white paper's example password is a dictionary word with letters left out.
    let weak = system.register("user@domain.io", "mypasswd");
    assert_eq!(code(&weak), "WEAK_PASSWORD", "{weak}");
    assert!(weak["errors"][0]["message"].as_str().unwrap().contains("strength"), "{weak}");
    assert_eq!(code(&system.register("user@domain.io", "user@domain.io")), "WEAK_PASSWORD", "the email as its own password");
    data(&system.register("alice@bank.example", "violet harbor 19 engine"), "register");
    for (disguised, expected) in [
        ("\u{430}lice@bank.example", "BAD_USER_INPUT"),
        ("alice\u{200b}@bank.example", "BAD_USER_INPUT"),
        ("ＡＬＩＣＥ@bank.example", "DUPLICATE"),
        ("\u{430}\u{4cf}\u{456}\u{441}\u{435}@bank.example", "DUPLICATE"),
    ] {
        let answer = system.register(disguised, "violet harbor 19 engine");
        assert_eq!(code(&answer), expected, "{disguised:?}: {answer}");
    }
    system.stop();
}

#[test]
fn two_factor_codes_are_needed_once_on_each_is_used_once_and_no_secret_is_stored_in_clear() {
    use acceptance::{totp_code, totp_step_now};
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(dir.path());
    let (email, password) = ("grace@bank.example", "slate heron 31 cobalt");
    data(&system.register(email, password), "register");
    let token = system.login(email, password);
    let enrol = "mutation($p: String!) { enrolTwoFactor(password: $p) { secret uri qrCodeSvg } }";
    assert_eq!(code(&system.as_user(&token, enrol, json!({ "p": "not the password" }))), "UNAUTHENTICATED");
    let enrolment = system.as_user(&token, enrol, json!({ "p": password }));
    let enrolment = data(&enrolment, "enrolTwoFactor").clone();
    let secret = enrolment["secret"].as_str().unwrap().to_string();
    assert!(enrolment["uri"].as_str().unwrap().starts_with("otpauth://totp/Marionette:grace%40bank.example?secret="), "{enrolment}");
    assert!(enrolment["qrCodeSvg"].as_str().unwrap().contains("<svg"), "{enrolment}");
    let enabled = "{ me { twoFactorEnabled } }";
    assert_eq!(data(&system.as_user(&token, enabled, json!({})), "me")["twoFactorEnabled"], false, "not before a first code");
    let login = "mutation($e: String!, $p: String!, $c: String) { login(email: $e, password: $p, twoFactorCode: $c) { token user { twoFactorEnabled } } }";
    let logging_in = |code: Option<&str>| system.post(login, json!({ "e": email, "p": password, "c": code }), "").2;
    assert!(logging_in(None)["data"]["login"]["token"].is_string(), "no code needed before confirmation");

    let confirm = "mutation($c: String!) { confirmTwoFactor(code: $c) }";
    let step = totp_step_now();
    assert_eq!(code(&system.as_user(&token, confirm, json!({ "c": totp_code(&secret, step + 7) }))), "UNAUTHENTICATED", "a code from the future");
    let confirmed = system.as_user(&token, confirm, json!({ "c": totp_code(&secret, step) }));
    let recovery: Vec<String> = data(&confirmed, "confirmTwoFactor").as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert_eq!(recovery.len(), 10);
    assert_eq!(data(&system.as_user(&token, enabled, json!({})), "me")["twoFactorEnabled"], true);

    // On: a password alone opens no session, a code is good once, the next one works.
    let sessions_before = data(&system.as_user(&token, "{ sessions { id } }", json!({})), "sessions").as_array().unwrap().len();
    assert_eq!(code(&logging_in(None)), "TWO_FACTOR_REQUIRED");
    assert_eq!(data(&system.as_user(&token, "{ sessions { id } }", json!({})), "sessions").as_array().unwrap().len(), sessions_before, "no session opened");
    let replayed = logging_in(Some(&totp_code(&secret, step)));
    assert_eq!(code(&replayed), "UNAUTHENTICATED", "the confirmation's code again: {replayed}");
    assert!(replayed["errors"][0]["message"].as_str().unwrap().contains("used already"), "{replayed}");
    let next = totp_code(&secret, step + 1);
    assert_eq!(data(&logging_in(Some(&next)), "login")["user"]["twoFactorEnabled"], true);
    assert_eq!(code(&logging_in(Some(&next))), "UNAUTHENTICATED", "a code is good once");
    assert_eq!(code(&logging_in(Some("12345"))), "BAD_USER_INPUT");
    // A withdrawal needs a code too.
    let withdraw = "mutation { requestWithdrawal(asset: \"BTC\", amount: \"1\", destination: \"bc1q\", idempotencyKey: \"w1\") { id } }";
    assert_eq!(code(&system.as_user(&token, withdraw, json!({}))), "TWO_FACTOR_REQUIRED");
    // A recovery code stands in for a code, once.
    assert!(logging_in(Some(&recovery[0]))["data"]["login"]["token"].is_string());
    assert_eq!(code(&logging_in(Some(&recovery[0]))), "UNAUTHENTICATED");
    assert_eq!(code(&system.as_user(&token, enrol, json!({ "p": password }))), "DUPLICATE", "no second secret while it is on");

    // Nothing an attacker with the database files could log in with: the
    // secret is sealed under the key directory's key, recovery codes are digests.
    let mut needles: Vec<Vec<u8>> = vec![secret.as_bytes().to_vec(), totp_rs::Secret::Encoded(secret.clone()).to_bytes().unwrap()];
    needles.extend(recovery.iter().flat_map(|c| [c.as_bytes().to_vec(), c.replace('-', "").into_bytes()]));
    let mut files = 0;
    for entry in walk(&dir.path().join("gateway/db")) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        for needle in &needles {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_slice()), "{} holds a secret in clear", entry.display());
        }
    }
    assert!(files >= 3, "read the store's files ({files})");

    let disable = "mutation($c: String!) { disableTwoFactor(code: $c) }";
    assert_eq!(code(&system.as_user(&token, disable, json!({ "c": recovery[0] }))), "UNAUTHENTICATED", "a spent recovery code");
    assert_eq!(data(&system.as_user(&token, disable, json!({ "c": recovery[1] })), "disableTwoFactor"), true);
    assert!(logging_in(None)["data"]["login"]["token"].is_string(), "off again: the password alone");
    system.stop();
}

#[test]
fn an_api_keys_hmac_secret_is_shown_once_and_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(dir.path());
    let (email, password) = ("heidi@bank.example", "slate heron 31 cobalt");
    data(&system.register(email, password), "register");
    let token = system.login(email, password);
    let create = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { key { id kind scopes ipAllowlist expiresAt } secret } }";
    let input = json!({ "name": "maker", "scopes": ["READ", "TRADE"], "ipAllowlist": ["10.1.2.3", "10.9.0.0/16"], "expiresAt": "2099-01-01T00:00:00+01:00" });
    let created = system.as_user(&token, create, json!({ "i": input }));
    let created = data(&created, "createApiKey").clone();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64, "256 bits in hex: {created}");
    assert_eq!(created["key"]["ipAllowlist"], json!(["10.1.2.3", "10.9.0.0/16"]));
    assert_eq!(created["key"]["expiresAt"], "2098-12-31T23:00:00.000Z", "the offset is taken into account");
    let listed = system.as_user(&token, "{ apiKeys { id name kind scopes } }", json!({}));
    assert_eq!(data(&listed, "apiKeys"), &json!([{ "id": created["key"]["id"], "name": "maker", "kind": "HMAC", "scopes": ["READ", "TRADE"] }]));
    assert!(!listed.to_string().contains(&secret), "a listing never shows the secret");
    for (input, expected) in [
        (json!({ "name": "x", "scopes": ["READ"], "expiresAt": "yesterday" }), "BAD_USER_INPUT"),
        (json!({ "name": "x", "scopes": ["READ"], "expiresAt": "2001-01-01T00:00:00Z" }), "BAD_USER_INPUT"),
        (json!({ "name": "x", "scopes": ["READ"], "publicKey": "AAAA" }), "BAD_USER_INPUT"),
        (json!({ "name": "x", "scopes": [] }), "BAD_USER_INPUT"),
    ] {
        assert_eq!(code(&system.as_user(&token, create, json!({ "i": input }))), expected, "{input}");
    }
    // The store's files hold the secret only sealed.
    let mut files = 0;
    for entry in walk(&dir.path().join("gateway/db")) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{} holds an HMAC secret in clear", entry.display());
    }
    assert!(files >= 3, "read the store's files ({files})");
    // Revoked: gone from the list; a second revocation finds nothing.
    let revoke = "mutation($id: ID!) { revokeApiKey(id: $id) }";
    assert_eq!(data(&system.as_user(&token, revoke, json!({ "id": created["key"]["id"] })), "revokeApiKey"), true);
    assert_eq!(code(&system.as_user(&token, revoke, json!({ "id": created["key"]["id"] }))), "NOT_FOUND");
    assert_eq!(data(&system.as_user(&token, "{ apiKeys { id } }", json!({})), "apiKeys"), &json!([]));
    // Operators act through their login, never a key.
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    assert_eq!(code(&system.as_user(&operator, create, json!({ "i": { "name": "x", "scopes": ["READ"] } }))), "FORBIDDEN");
    system.stop();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A campaign through the API: the operators verify its organiser and set
/// the fee (four-eyes), the organiser publishes it, donors see the fee
/// before giving, the wall shows each donor as they chose (a name, or
/// anonymous with the amount hidden), the organiser sees only who agreed
/// to be known, the donor their receipt (and as PDF), a gift from outside
/// is credited once by its payment reference, and after the deadline the
/// operators (not the organiser) pay it out: 97.50 of 100.00 with a 2.5%
/// fee, the fee and the tip to the house.
#[test]
fn a_campaign_is_given_to_shown_as_donors_chose_and_paid_out_under_four_eyes() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(dir.path());
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    let approver = system.login(APPROVER, OPERATOR_PASSWORD);
    assert_eq!(system.ctl(&["create-asset", "USD", "2"], "").0, 0);
    let users = ["ann@water.example", "bob@domain.io", "cy@domain.io"];
    let mut tokens = Vec::new();
    for email in users {
        let password = format!("{email}: tulip quarry lantern");
        system.register(email, &password);
        tokens.push(system.login(email, &password));
        let deposit = "mutation($e: String!) { deposit(email: $e, asset: \"USD\", amount: \"500\", reference: $e) { id } }";
        assert!(system.as_user(&operator, deposit, json!({ "e": email })).get("errors").is_none());
    }
    let (ann, bob, cy) = (tokens[0].as_str(), tokens[1].as_str(), tokens[2].as_str());
    // Four-eyes: the first operator's proposal waits, the second's same request executes it.
    let verify =
        "mutation { setOrganiser(email: \"ann@water.example\", name: \"Water Aid\", kind: ORGANISATION, country: 826, registration: \"288701\") { name } }";
    assert_eq!(code(&system.as_user(&operator, verify, json!({}))), "APPROVAL_PENDING");
    assert_eq!(data(&system.as_user(&approver, verify, json!({})), "setOrganiser")["name"], "Water Aid");
    assert_eq!(code(&system.as_user(ann, verify, json!({}))), "FORBIDDEN");
    let fee = "mutation { setDonationFee(feeBps: 250) }";
    assert_eq!(code(&system.as_user(&operator, fee, json!({}))), "APPROVAL_PENDING");
    assert_eq!(data(&system.as_user(&approver, fee, json!({})), "setDonationFee"), 250);
    // Due in a few seconds: the ledger's clock ends it.
    let deadline = rfc3339(now_ms() + 10_000);
    let create = "mutation($d: DateTime!) { createCampaign(title: \"Wells\", story: \"Clean water\", referenceAsset: \"USD\", goal: \"1000\", deadline: $d, acceptedAssets: [\"USD\"], model: KEEP_WHAT_YOU_RAISE) { id status feeBps organiser { name } } }";
    assert_eq!(code(&system.as_user(bob, create, json!({ "d": deadline }))), "FORBIDDEN", "bob is no organiser");
    let created = system.as_user(ann, create, json!({ "d": deadline }));
    let campaign = data(&created, "createCampaign");
    assert_eq!(
        (campaign["status"].as_str(), campaign["feeBps"].as_i64(), campaign["organiser"]["name"].as_str()),
        (Some("DRAFT"), Some(250), Some("Water Aid"))
    );
    let id = campaign["id"].as_str().unwrap().to_string();
    let ann_id = system.as_user(ann, "{ me { id } }", json!({}))["data"]["me"]["id"].as_str().unwrap().to_string();
    let drafts = "query($o: ID) { campaigns(status: DRAFT, organiserId: $o) { id } }";
    assert_eq!(data(&system.as_user(ann, drafts, json!({ "o": ann_id })), "campaigns"), &json!([{ "id": id }]), "the organiser lists their drafts");
    assert_eq!(code(&system.as_user(bob, drafts, json!({ "o": ann_id }))), "FORBIDDEN", "nobody else does");
    assert_eq!(code(&system.post(drafts, json!({ "o": null }), "").2), "FORBIDDEN");
    let donate = "mutation($c: ID!, $m: Decimal!, $t: Decimal, $n: String, $h: Boolean!, $k: Boolean!, $key: String!) { donate(campaignId: $c, asset: \"USD\", amount: $m, tip: $t, message: \"Good luck\", displayName: $n, hideAmount: $h, knownToOrganiser: $k, idempotencyKey: $key) { id receiptNumber gross fee net tip value status } }";
    let gift = |token: &str, amount: &str, tip: Option<&str>, name: Option<&str>, hide: bool, known: bool, key: &str| {
        system.as_user(token, donate, json!({ "c": id, "m": amount, "t": tip, "n": name, "h": hide, "k": known, "key": key }))
    };
    assert_eq!(code(&gift(bob, "100", None, Some("Bob"), false, true, "g1")), "CAMPAIGN_CLOSED", "a draft takes no gifts");
    let published = system.as_user(ann, "mutation($c: ID!) { publishCampaign(id: $c) { status } }", json!({ "c": id }));
    assert_eq!(data(&published, "publishCampaign")["status"], "ACTIVE");
    let terms = system.as_user(
        bob,
        "query($c: ID!) { donationTerms(campaignId: $c, asset: \"USD\", amount: \"100\", tip: \"5\") { gross fee net tip total } }",
        json!({ "c": id }),
    );
    assert_eq!(data(&terms, "donationTerms"), &json!({ "gross": "100.00", "fee": "2.50", "net": "97.50", "tip": "5.00", "total": "105.00" }));
    let given = gift(bob, "100", Some("5"), Some("Bob"), false, true, "g1");
    let receipt = data(&given, "donate");
    let year = rfc3339(now_ms())[..4].to_string();
    assert_eq!(receipt["receiptNumber"].as_str().unwrap(), format!("{ann_id}-{year}-000001"));
    assert_eq!((receipt["fee"].as_str(), receipt["net"].as_str(), receipt["value"].as_str()), (Some("2.50"), Some("97.50"), Some("100.00")));
    assert_eq!(data(&gift(bob, "100", Some("5"), Some("Bob"), false, true, "g1"), "donate")["id"], receipt["id"], "the same key gives once");
    assert_eq!(code(&gift(ann, "1", None, None, false, false, "own")), "FORBIDDEN", "an organiser does not give to their own campaign");
    assert!(gift(cy, "40", None, None, true, false, "g2").get("errors").is_none());
    // The wall: Bob by name with the amount; cy anonymous, the amount hidden.
    let wall = system.post("query($c: ID!) { campaignWall(campaignId: $c) { name amount message } }", json!({ "c": id }), "").2;
    assert_eq!(
        data(&wall, "campaignWall"),
        &json!([{ "name": null, "amount": null, "message": "Good luck" }, { "name": "Bob", "amount": "100.00", "message": "Good luck" }])
    );
    // The organiser sees who agreed to be known; a donor sees nobody else's gifts.
    let seen = system.as_user(ann, "query($c: ID!) { campaignDonations(campaignId: $c) { donorEmail gross } }", json!({ "c": id }));
    assert_eq!(data(&seen, "campaignDonations"), &json!([{ "donorEmail": null, "gross": "40.00" }, { "donorEmail": "bob@domain.io", "gross": "100.00" }]));
    assert_eq!(code(&system.as_user(cy, "query($c: ID!) { campaignDonations(campaignId: $c) { gross } }", json!({ "c": id }))), "FORBIDDEN");
    let mine = system.as_user(cy, "{ myDonations { receiptNumber gross publicName amountShown } }", json!({}));
    assert_eq!(
        data(&mine, "myDonations"),
        &json!([{ "receiptNumber": format!("{ann_id}-{year}-000002"), "gross": "40.00", "publicName": null, "amountShown": false }])
    );
    let statement =
        system.as_user(bob, "query($y: Int!) { myDonationStatement(year: $y) { totals { asset given } } }", json!({ "y": year.parse::<i32>().unwrap() }));
    assert_eq!(data(&statement, "myDonationStatement")["totals"], json!([{ "asset": "USD", "given": "100.00" }]));
    // A gift from outside: cy writes her payment reference on a transfer, the operators credit it once.
    let reference = system.as_user(cy, "query($c: ID!) { myDonationDepositReference(campaignId: $c) }", json!({ "c": id }));
    let reference = data(&reference, "myDonationDepositReference").as_str().unwrap().to_string();
    let credit = "mutation($p: String!, $r: String!) { creditDonationDeposit(paymentReference: $p, asset: \"USD\", amount: \"20\", reference: $r) { id donorEmail gross depositReference } }";
    let credited = system.as_user(operator.as_str(), credit, json!({ "p": reference, "r": "wire-1" }));
    let gift = data(&credited, "creditDonationDeposit").clone();
    assert_eq!((gift["donorEmail"].as_str(), gift["gross"].as_str(), gift["depositReference"].as_str()), (Some("cy@domain.io"), Some("20.00"), Some("wire-1")));
    let again = system.as_user(operator.as_str(), credit, json!({ "p": reference, "r": "wire-1" }));
    assert_eq!(data(&again, "creditDonationDeposit")["id"], gift["id"], "a deposit is credited once");
    let mistyped = format!("{}{}", &reference[..reference.len() - 1], (reference.as_bytes()[reference.len() - 1] - b'0' + 1) % 10);
    assert_eq!(code(&system.as_user(operator.as_str(), credit, json!({ "p": mistyped, "r": "wire-2" }))), "BAD_USER_INPUT");
    // Before the deadline there is nothing to pay out; after it the ledger's clock ends the campaign.
    let pay = "mutation($c: ID!) { payOutCampaign(id: $c) { last lines { asset net fees tips } } }";
    assert_eq!(code(&system.as_user(&operator, pay, json!({ "c": id }))), "BAD_USER_INPUT");
    let ended = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let campaign = system.post("query($c: ID!) { campaign(id: $c) { status } }", json!({ "c": id }), "").2;
        campaign["data"]["campaign"]["status"] == "ENDED"
    });
    assert!(ended, "the clock ends the campaign at its deadline");
    let due = system.as_user(&operator, "{ payoutsDue { id } }", json!({}));
    assert_eq!(data(&due, "payoutsDue"), &json!([{ "id": id }]));
    assert_eq!(code(&system.as_user(&operator, pay, json!({ "c": id }))), "APPROVAL_PENDING");
    let paid = system.as_user(&approver, pay, json!({ "c": id }));
    assert_eq!(data(&paid, "payOutCampaign"), &json!({ "last": true, "lines": [{ "asset": "USD", "net": "156.00", "fees": "4.00", "tips": "5.00" }] }));
    let balances = system.as_user(ann, "{ balances { asset available } }", json!({}));
    assert_eq!(data(&balances, "balances"), &json!([{ "asset": "USD", "available": "656.00" }]));
    let house = system.as_user(&operator, "{ houseBalances { asset revenue } }", json!({}));
    assert_eq!(data(&house, "houseBalances"), &json!([{ "asset": "USD", "revenue": "9.00" }]));
    let closed = system.post("query($c: ID!) { campaign(id: $c) { status raised progress } }", json!({ "c": id }), "").2;
    assert_eq!(data(&closed, "campaign"), &json!({ "status": "PAID_OUT", "raised": "160.00", "progress": "0.1600" }));
    // The receipt as PDF, its text read back: the donor's and the operators' only.
    let path = format!("/donations/{}/receipt.pdf", receipt["id"].as_str().unwrap());
    let (status, head, pdf) = system.get_bytes(&path, &format!("Authorization: Bearer {bob}\r\n"));
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/pdf"), "{head}");
    let text = pdf_lines(&pdf);
    let today = rfc3339(now_ms())[..10].to_string();
    for line in [
        format!("Receipt number: {ann_id}-{year}-000001"),
        format!("Date received: {today}"),
        "Organisation: Water Aid".to_string(),
        "Registration: 288701, country 826".to_string(),
        "Campaign: Wells".to_string(),
        "Donor: bob@domain.io".to_string(),
        "Given: 100.00 USD".to_string(),
        "Value when received: 100.00 USD".to_string(),
        "A tip of 5.00 USD to the platform is not part of this gift.".to_string(),
    ] {
        assert!(text.contains(&line), "{line:?} not in {text:?}");
    }
    assert_eq!(system.get_bytes(&path, &format!("Authorization: Bearer {cy}\r\n")).0, 404, "another donor's receipt is not found");
    assert_eq!(system.get_bytes(&path, &format!("Authorization: Bearer {operator}\r\n")).0, 200, "the operators keep every receipt");
    assert_eq!(system.get_bytes(&path, "").0, 401, "no session, no receipt");
    let (status, head, statement) = system.get_bytes(&format!("/donations/statements/{year}.pdf"), &format!("Authorization: Bearer {bob}\r\n"));
    assert_eq!(status, 200, "{head}");
    let text = pdf_lines(&statement);
    assert!(text.contains(&format!("Donations in {year}")) && text.contains(&"Donor: bob@domain.io".to_string()), "{text:?}");
    assert!(text.contains(&"Total given in USD, refunds excluded: 100.00".to_string()), "{text:?}");
}

/// A PDF's text, one entry per non-empty line.
fn pdf_lines(pdf: &[u8]) -> Vec<String> {
    let document = lopdf::Document::load_mem(pdf).expect("a PDF");
    let pages: Vec<u32> = document.get_pages().keys().copied().collect();
    document.extract_text(&pages).expect("its text").lines().map(|line| line.trim().to_string()).filter(|line| !line.is_empty()).collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
