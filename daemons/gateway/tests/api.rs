//! The three real daemons on a temporary directory, driven through the
//! gateway's HTTP API the way a client would: the contract's operations,
//! authentication and authorization, and the GraphQL-over-HTTP rules.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A sibling binary of this test (cargo test --workspace builds them all).
fn binary(name: &str) -> PathBuf {
    let path = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join(name);
    assert!(path.exists(), "{} is missing: run the tests with cargo test --workspace (scripts/test), which builds every daemon", path.display());
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(name: &str, config: &Path) -> Process {
    let log = if std::env::var_os("SHOW_DAEMON_LOG").is_some() { Stdio::inherit() } else { Stdio::null() };
    Process(Command::new(binary(name)).arg("--config").arg(config).stdout(Stdio::null()).stderr(log).spawn().unwrap())
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} never became ready");
        std::thread::sleep(Duration::from_millis(25));
    }
}

struct System {
    _processes: Vec<Process>,
    port: u16,
    admin: PathBuf,
}

const OPERATOR: &str = "operator@bank.example";
const OPERATOR_PASSWORD: &str = "correct horse battery";

impl System {
    fn start(dir: &Path) -> System {
        System::start_with(dir, "")
    }

    /// `limits`: extra lines for the gateway's [limits].
    fn start_with(dir: &Path, limits: &str) -> System {
        let d = dir.display();
        let (matching_metrics, ledger_metrics, port) = (free_port(), free_port(), free_port());
        std::fs::write(dir.join("matching.toml"), format!("[listen]\naddress = \"unix:{d}/matching.sock\"\nmetrics_address = \"127.0.0.1:{matching_metrics}\"\n[storage]\ndata_dir = \"{d}/matching\"\n[log]\nformat = \"text\"\n")).unwrap();
        std::fs::write(
            dir.join("ledger.toml"),
            format!("[listen]\naddress = \"unix:{d}/ledger.sock\"\nmetrics_address = \"127.0.0.1:{ledger_metrics}\"\n[matching]\naddress = \"unix:{d}/matching.sock\"\nreconnect_ms = 50\n[storage]\ndata_dir = \"{d}/ledger\"\n[log]\nformat = \"text\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("gateway.toml"),
            format!(
                "[listen]\naddress = \"127.0.0.1:{port}\"\n[ledger]\naddress = \"unix:{d}/ledger.sock\"\nreconnect_ms = 50\n[matching]\naddress = \"unix:{d}/matching.sock\"\nreconnect_ms = 50\n[admin]\nsocket = \"{d}/gateway-admin.sock\"\n[auth]\nkeys_dir = \"{d}/gateway/keys\"\ncookie_secure = false\nargon2_memory_kib = 8192\nargon2_passes = 1\n[storage]\ndata_dir = \"{d}/gateway/db\"\n[limits]\nbody_bytes_max = 4096\nquery_depth_max = 6\n{limits}\n[log]\nformat = \"text\"\n"
            ),
        )
        .unwrap();
        let matching = spawn("marionette-matching", &dir.join("matching.toml"));
        wait_for("matching", || TcpStream::connect(("127.0.0.1", matching_metrics)).is_ok());
        let ledger = spawn("marionette-ledger", &dir.join("ledger.toml"));
        wait_for("ledger", || TcpStream::connect(("127.0.0.1", ledger_metrics)).is_ok());
        let gateway = spawn("marionette-gateway", &dir.join("gateway.toml"));
        let system = System { _processes: vec![matching, ledger, gateway], port, admin: dir.join("gateway-admin.sock") };
        wait_for("the gateway and its ledger link", || TcpStream::connect(("127.0.0.1", port)).is_ok() && system.get("/readyz").0 == 200);
        // The first operator, the way an operator sets up a fresh install.
        assert_eq!(system.ctl(&["create-operator", OPERATOR], OPERATOR_PASSWORD).0, 0);
        system
    }

    /// marionettectl on this system's admin socket: exit code and stdout.
    fn ctl(&self, args: &[&str], stdin: &str) -> (i32, String) {
        let mut child = Command::new(binary("marionettectl"))
            .arg("--socket")
            .arg(&self.admin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{stdin}\n").as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn raw(&self, request: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, head.to_string(), body.to_string())
    }

    fn get(&self, path: &str) -> (u16, String, String) {
        self.raw(&format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    }

    /// POST /graphql; returns the status, the head and the JSON body.
    fn post(&self, query: &str, variables: Value, headers: &str) -> (u16, String, Value) {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let (status, head, body) = self.raw(&format!(
            "POST /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nAccept: application/graphql-response+json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        (status, head, serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")))
    }

    fn as_user(&self, token: &str, query: &str, variables: Value) -> Value {
        self.post(query, variables, &format!("Authorization: Bearer {token}\r\n")).2
    }

    fn login(&self, email: &str, password: &str) -> String {
        let body = self.post("mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }", json!({ "e": email, "p": password }), "").2;
        body["data"]["login"]["token"].as_str().unwrap_or_else(|| panic!("login failed: {body}")).to_string()
    }
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("expected an error code: {body}"))
}

fn data<'a>(body: &'a Value, field: &str) -> &'a Value {
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    &body["data"][field]
}

const PLACE: &str = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { id status filledQuantity averagePrice price quantity } }";

#[test]
fn a_trade_end_to_end_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(dir.path());
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    // Assets through marionettectl; a second run says they exist (exit 3), and so does a second operator setup (exit 0).
    assert_eq!(system.ctl(&["create-asset", "BTC", "8"], "").0, 0);
    let body = system.as_user(&operator, "mutation($s: String!, $n: Int!) { createAsset(symbol: $s, scale: $n) { symbol scale } }", json!({ "s": "USD", "n": 2 }));
    assert_eq!(data(&body, "createAsset")["symbol"], "USD");
    assert_eq!(system.ctl(&["create-asset", "BTC", "8"], "").0, 3);
    assert_eq!(system.ctl(&["create-operator", OPERATOR], OPERATOR_PASSWORD).0, 0);
    assert_eq!(system.ctl(&["create-operator", OPERATOR], "another password").0, 3);
    let (exit, status) = system.ctl(&["status"], "");
    assert_eq!(exit, 0);
    assert!(status.contains("\"matching_connected\": true"), "{status}");
    // A market whose tick on one lot is not a whole number of cents is refused, not rounded.
    let sub_cent = system.as_user(
        &operator,
        "mutation { createMarket(input: { base: \"BTC\", quote: \"USD\", tickSize: \"0.01\", lotSize: \"0.001\", makerFeeRate: \"0\", takerFeeRate: \"0\" }) { id } }",
        json!({}),
    );
    assert_eq!(code(&sub_cent), "BAD_USER_INPUT");
    let market = system.as_user(
        &operator,
        "mutation { createMarket(input: { base: \"BTC\", quote: \"USD\", tickSize: \"1\", lotSize: \"0.01\", makerFeeRate: \"0.001\", takerFeeRate: \"0.002\" }) { id tickSize lotSize } }",
        json!({}),
    );
    assert_eq!(data(&market, "createMarket"), &json!({ "id": "BTC-USD", "tickSize": "1", "lotSize": "0.01" }));
    let again = system.as_user(&operator, "mutation { createMarket(input: { base: \"BTC\", quote: \"USD\", tickSize: \"1\", lotSize: \"0.01\", makerFeeRate: \"0\", takerFeeRate: \"0\" }) { id } }", json!({}));
    assert_eq!(code(&again), "DUPLICATE");

    // The white paper's login, exactly as written, after registering that user.
    let registered = system.post("mutation { register(email: \"user@domain.io\", password: \"mypasswd\") { id email role } }", json!({}), "").2;
    assert_eq!(data(&registered, "register")["role"], "USER");
    let (status, head, login) = system.post("mutation { login(email: \"user@domain.io\", password: \"mypasswd\") { token } }", json!({}), "");
    assert_eq!(status, 200);
    assert!(head.contains("application/graphql-response+json"), "{head}");
    assert!(head.to_ascii_lowercase().contains("set-cookie: marionette_token="), "login sets the cookie: {head}");
    assert!(head.contains("HttpOnly") && head.contains("SameSite=Strict"), "{head}");
    let alice = data(&login, "login")["token"].as_str().unwrap().to_string();
    system.post("mutation { register(email: \"bob@domain.io\", password: \"bobs password\") { id } }", json!({}), "");
    let bob = system.login("bob@domain.io", "bobs password");

    for (email, asset, amount) in [("user@domain.io", "USD", "10000.00"), ("bob@domain.io", "BTC", "1")] {
        let body = system.as_user(&operator, "mutation($e: String!, $a: String!, $m: Decimal!) { deposit(email: $e, asset: $a, amount: $m, reference: $e) { amount kind } }", json!({ "e": email, "a": asset, "m": amount }));
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
    assert_eq!((buy["status"].as_str(), buy["filledQuantity"].as_str(), buy["averagePrice"].as_str()), (Some("FILLED"), Some("0.3"), Some("100")), "placeOrder answers after matching: {buy}");

    // 0.3 BTC at 100 USD = 30.00 USD; the taker pays 0.2% (0.06), the maker 0.1% (0.03).
    let balances = system.as_user(&alice, "{ balances { asset available locked } }", json!({}));
    assert_eq!(data(&balances, "balances"), &json!([{ "asset": "BTC", "available": "0.30000000", "locked": "0.00000000" }, { "asset": "USD", "available": "9969.94", "locked": "0.00" }]));
    let bob_balances = system.as_user(&bob, "{ balances { asset available locked } }", json!({}));
    assert_eq!(data(&bob_balances, "balances")[1], json!({ "asset": "USD", "available": "29.97", "locked": "0.00" }));
    let trades = system.as_user(&alice, "{ userTrades { price quantity side fee feeAsset } }", json!({}));
    assert_eq!(data(&trades, "userTrades"), &json!([{ "price": "100", "quantity": "0.3", "side": "BUY", "fee": "0.06", "feeAsset": "USD" }]));

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
    let alice = system.login("user@domain.io", "mypasswd");
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
    let key_file = std::fs::read_dir(&keys).unwrap().next().unwrap().unwrap().path();
    let kid = key_file.file_stem().unwrap().to_string_lossy().into_owned();
    let seed: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&std::fs::read_to_string(&key_file).unwrap().trim()[2 * i..2 * i + 2], 16).unwrap()).collect();
    let mut pkcs8 = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    pkcs8.extend_from_slice(&seed);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    let claims = json!({ "sub": "1", "role": "Operator", "iat": 1_000_000_000, "exp": 1_000_000_600 });
    let expired = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_der(&pkcs8)).unwrap();
    let fresh_claims = json!({ "sub": "1", "role": "Operator", "iat": 1_000_000_000, "exp": 4_000_000_000u64 });
    let still_valid = jsonwebtoken::encode(&header, &fresh_claims, &jsonwebtoken::EncodingKey::from_ed_der(&pkcs8)).unwrap();
    assert_eq!(data(&system.as_user(&still_valid, me, json!({})), "me")["role"], "OPERATOR", "the same key and claims, unexpired, are accepted");
    let mut hmac_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hmac_header.kid = Some(kid);
    let hmac = jsonwebtoken::encode(&hmac_header, &fresh_claims, &jsonwebtoken::EncodingKey::from_secret(b"guessable")).unwrap();
    for bad in [forged.as_str(), none.as_str(), "not-a-token", expired.as_str(), hmac.as_str()] {
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
    let (status, _, _) = system.raw(&format!("POST /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}", form.len()));
    assert_eq!(status, 415);
    // Limits: body size, query depth; a broken document is a 400 for graphql-response+json clients.
    let (status, _, _) = system.post(&format!("{{ assets {{ symbol }} }} # {}", "x".repeat(5_000)), json!({}), "");
    assert_eq!(status, 413);
    let (status, _, body) = system.post("{ markets { base { id } quote { id } } me { email } assets { id } }", json!({}), &format!("Authorization: Bearer {token}\r\n"));
    assert_eq!(status, 200, "{body}");
    let deep = "{ markets { base { symbol } } __schema { types { fields { type { ofType { ofType { name } } } } } } }";
    let (status, _, body) = system.post(deep, json!({}), "");
    assert_eq!(status, 400, "over query_depth_max: {body}");
    let (status, _, _) = system.post("{ assets { ", json!({}), "");
    assert_eq!(status, 400);

    // A user is refused operator mutations.
    system.post("mutation { register(email: \"eve@domain.io\", password: \"eves password\") { id } }", json!({}), "");
    let eve = system.login("eve@domain.io", "eves password");
    assert_eq!(code(&system.as_user(&eve, "mutation { createAsset(symbol: \"EUR\", scale: 2) { id } }", json!({}))), "FORBIDDEN");
    let duplicate = system.post("mutation { register(email: \"EVE@domain.io\", password: \"another one\") { id } }", json!({}), "").2;
    assert_eq!(code(&duplicate), "DUPLICATE");
}

#[test]
fn rate_limits_answer_429_per_ip_and_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start_with(dir.path(), "ip_requests_per_second = 1\nip_burst = 12\nuser_requests_per_second = 1\nuser_burst = 3");
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
    // Health and metrics are not rate limited.
    assert_eq!(system.get("/healthz").0, 200);
    assert!(system.get("/metrics").2.contains("marionette_gateway_rate_limited_total"));
}
