//! The Gherkin acceptance suite (`features/`): each scenario starts the three
//! real daemons on its own temporary directory and drives them the way users
//! do, through GraphQL over HTTP, WebSocket subscriptions and marionettectl.
//!
//! Names in the features are users: `alice` is alice@domain.io. Amounts are
//! written and compared exactly as the API formats them.

use std::collections::HashMap;
use std::str::FromStr;

use acceptance::{code, data, Options, Subscriptions, System, APPROVER, OPERATOR, OPERATOR_PASSWORD, PLACE};
use cucumber::writer::Stats as _;
use cucumber::{given, then, when, World as _};
use rust_decimal::Decimal;
use serde_json::{json, Value};

#[derive(cucumber::World)]
#[world(init = Self::new)]
struct Marionette {
    dir: tempfile::TempDir,
    system: Option<System>,
    /// Each user's token, by name ("operator" included).
    tokens: HashMap<String, String>,
    /// The last answer a step looked at.
    answer: Value,
    /// Each user's last order id.
    orders: HashMap<String, String>,
    /// The last withdrawal requested.
    withdrawal: Option<String>,
    /// Every deposit, by asset symbol: what conservation is checked against.
    deposited: HashMap<String, Decimal>,
    /// The references of those deposits (a repeated one is the same deposit).
    deposit_references: std::collections::HashSet<String>,
    /// What operators put into the house's inventory (taken out: negative), by asset.
    house_funded: HashMap<String, Decimal>,
    house_references: std::collections::HashSet<String>,
    /// Each user's WebSocket, by name.
    sockets: HashMap<String, Subscriptions>,
    /// Each user's token on a second device, by name.
    other_devices: HashMap<String, String>,
    /// Each user's two-factor secret (base32) and the last time step whose code was used.
    authenticators: HashMap<String, (String, u64)>,
    /// The last operators' proposal a step made.
    proposal: Option<String>,
}

impl std::fmt::Debug for Marionette {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Marionette").field("dir", &self.dir.path()).field("users", &self.tokens.keys()).field("answer", &self.answer).finish_non_exhaustive()
    }
}

fn email(name: &str) -> String {
    format!("{name}@domain.io")
}

fn password(name: &str) -> String {
    format!("{name}: tulip quarry lantern")
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not a decimal: {e}"))
}

fn field_decimal(value: &Value) -> Decimal {
    decimal(value.as_str().unwrap_or_else(|| panic!("not a Decimal: {value}")))
}

impl Marionette {
    fn new() -> Marionette {
        Marionette {
            dir: tempfile::tempdir().unwrap(),
            system: None,
            tokens: HashMap::new(),
            answer: Value::Null,
            orders: HashMap::new(),
            withdrawal: None,
            deposited: HashMap::new(),
            deposit_references: Default::default(),
            house_funded: HashMap::new(),
            house_references: Default::default(),
            sockets: HashMap::new(),
            other_devices: HashMap::new(),
            authenticators: HashMap::new(),
            proposal: None,
        }
    }

    fn system(&self) -> &System {
        self.system.as_ref().expect("no Marionette is running: the scenario needs 'Given a running Marionette'")
    }

    fn token(&self, name: &str) -> &str {
        self.tokens.get(name).unwrap_or_else(|| panic!("{name} has no account in this scenario"))
    }

    /// A GraphQL request as `name`.
    fn ask(&self, name: &str, query: &str, variables: Value) -> Value {
        self.system().as_user(self.token(name), query, variables)
    }

    fn order_id(&self, name: &str) -> &str {
        self.orders.get(name).unwrap_or_else(|| panic!("{name} has placed no order"))
    }

    fn deposit(&mut self, name: &str, amount: &str, asset: &str, reference: &str) {
        let answer = self.ask(
            "operator",
            "mutation($e: String!, $a: String!, $m: Decimal!, $r: String!) { deposit(email: $e, asset: $a, amount: $m, reference: $r) { amount kind } }",
            json!({ "e": email(name), "a": asset, "m": amount, "r": reference }),
        );
        assert_eq!(data(&answer, "deposit")["kind"], "DEPOSIT", "{answer}");
        if self.deposit_references.insert(reference.to_string()) {
            *self.deposited.entry(asset.to_string()).or_default() += decimal(amount);
        }
    }

    fn create_account(&mut self, name: &str) {
        let registered = self.system().register(&email(name), &password(name));
        assert_eq!(data(&registered, "register")["role"], "USER");
        let token = self.system().login(&email(name), &password(name));
        self.tokens.insert(name.to_string(), token);
    }

    fn balance(&self, name: &str, asset: &str) -> Option<(Decimal, Decimal, String, String)> {
        let answer = self.ask(name, "{ balances { asset available locked } }", json!({}));
        data(&answer, "balances").as_array().unwrap().iter().find(|b| b["asset"] == asset).map(|b| {
            let text = |v: &Value| v.as_str().unwrap().to_string();
            (field_decimal(&b["available"]), field_decimal(&b["locked"]), text(&b["available"]), text(&b["locked"]))
        })
    }

    fn book(&self, market: &str) -> Value {
        let answer =
            self.system().post("query($m: ID!) { orderBook(market: $m) { bids { price quantity } asks { price quantity } } }", json!({ "m": market }), "").2;
        data(&answer, "orderBook").clone()
    }

    fn socket(&mut self, name: &str) -> &mut Subscriptions {
        self.sockets.get_mut(name).unwrap_or_else(|| panic!("{name} has not subscribed"))
    }
}

// ---- the system ----

#[given(expr = "a running Marionette with the market {word}")]
fn running(world: &mut Marionette, market: String) {
    let (base, quote) = market.split_once('-').expect("a market is BASE-QUOTE");
    let system = System::start_with(world.dir.path(), &Options::default());
    assert_eq!(system.ctl(&["create-asset", base, "8"], "").0, 0);
    assert_eq!(system.ctl(&["create-asset", quote, "2"], "").0, 0);
    // Tick 1 quote, lot 0.01 base, maker fee 0.1%, taker fee 0.2%.
    assert_eq!(system.ctl(&["create-market", base, quote, "1", "0.01", "0.001", "0.002"], "").0, 0);
    world.tokens.insert("operator".into(), system.login(OPERATOR, OPERATOR_PASSWORD));
    world.system = Some(system);
}

#[when(regex = r"^all three daemons (stop cleanly \(SIGTERM\)|are killed \(kill -9\)) and start again$")]
fn restart(world: &mut Marionette, how: String) {
    world.sockets.clear();
    let system = world.system.take().unwrap();
    if how.starts_with("stop cleanly") {
        system.stop();
    } else {
        drop(system);
    }
    world.system = Some(System::start_with(world.dir.path(), &Options::default()));
}

// ---- accounts ----

#[given(regex = r"^(\w+) has an account$")]
fn has_account(world: &mut Marionette, name: String) {
    world.create_account(&name);
}

#[given(regex = r"^(\w+) has an account with ([\d.]+) (\w+)$")]
fn has_account_with(world: &mut Marionette, name: String, amount: String, asset: String) {
    world.create_account(&name);
    world.deposit(&name, &amount, &asset, &format!("{name}-opening-{asset}"));
}

#[when(expr = "{string} registers with the password {string}")]
fn registers(world: &mut Marionette, email: String, password: String) {
    world.answer = world.system().register(&email, &password);
}

#[then(expr = "{string} has the role {word}")]
fn has_role(world: &mut Marionette, email: String, role: String) {
    let user = data(&world.answer, "register");
    assert_eq!((user["email"].as_str(), user["role"].as_str()), (Some(email.as_str()), Some(role.as_str())), "{user}");
}

#[then(expr = "logging in as {string} with the password {string} returns a token for {string}")]
fn login_returns_token(world: &mut Marionette, email: String, password: String, whose: String) {
    // The white paper's own login, as written.
    let query = format!("mutation {{ login(email: \"{email}\", password: \"{password}\") {{ token }} }}");
    let answer = world.system().post(&query, json!({}), "").2;
    let token = data(&answer, "login")["token"].as_str().unwrap().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT is three Base64-URL strings: {token}");
    let me = world.system().as_user(&token, "{ me { email } }", json!({}));
    assert_eq!(data(&me, "me")["email"], whose);
}

#[then(expr = "logging in as {string} with the password {string} is refused with {word}")]
fn login_refused(world: &mut Marionette, email: String, password: String, expected: String) {
    let answer =
        world.system().post("mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }", json!({ "e": email, "p": password }), "").2;
    assert_eq!(code(&answer), expected);
    assert!(answer["data"].is_null(), "no token: {answer}");
}

#[then(expr = "registering {string} again is refused with {word}")]
fn register_again(world: &mut Marionette, email: String, expected: String) {
    let answer = world.system().register(&email, "another strong one: kestrel 8 ledger");
    assert_eq!(code(&answer), expected);
}

#[then(expr = "the registration is refused with {word}")]
fn registration_refused(world: &mut Marionette, expected: String) {
    assert_eq!(code(&world.answer), expected, "{}", world.answer);
    assert!(world.answer["data"].is_null(), "no account: {}", world.answer);
}

#[when(
    regex = r#"^someone registers (\w+)'s email (in capitals|in full-width letters|spelt in Cyrillic letters that look Latin|with a Cyrillic "а" for the Latin "a"|with a zero-width space inside)$"#
)]
fn registers_disguised(world: &mut Marionette, name: String, how: String) {
    let address = email(&name);
    let (local, domain) = address.split_once('@').unwrap();
    let disguised = match how.as_str() {
        "in capitals" => address.to_uppercase(),
        // U+FF41 and on: what NFKC folds back to ASCII.
        "in full-width letters" => format!("{}@{domain}", local.chars().map(|c| char::from_u32(c as u32 - 'a' as u32 + 0xff41).unwrap()).collect::<String>()),
        "spelt in Cyrillic letters that look Latin" => {
            assert_eq!(local, "alice", "the Cyrillic spelling is alice's");
            format!("\u{430}\u{4cf}\u{456}\u{441}\u{435}@{domain}")
        }
        "with a zero-width space inside" => format!("{}\u{200b}{}@{domain}", &local[..1], &local[1..]),
        _ => address.replacen('a', "\u{430}", 1),
    };
    assert_ne!(disguised, address);
    world.answer = world.system().register(&disguised, "another strong one: kestrel 8 ledger");
}

#[then(regex = r"^logging in as ([^ ]+) with (?:her|his) old password is refused with (\w+)$")]
fn login_old_password_refused(world: &mut Marionette, address: String, expected: String) {
    let name = address.trim_matches('"').split('@').next().unwrap().to_string();
    login_refused(world, address.trim_matches('"').to_string(), password(&name), expected);
}

// ---- sessions ----

#[when(regex = r"^(\w+) logs out$")]
fn logs_out(world: &mut Marionette, name: String) {
    assert_eq!(data(&world.ask(&name, "mutation { logout }", json!({})), "logout"), true);
}

#[then(regex = r"^(\w+)'s subscription is closed$")]
fn subscription_closed(world: &mut Marionette, name: String) {
    assert!(world.socket(&name).closed(), "the socket of an ended session stays open");
}

#[then(regex = r"^(\w+)'s token is refused with (\w+)$")]
fn token_refused(world: &mut Marionette, name: String, expected: String) {
    world.answer = world.ask(&name, "{ me { email } }", json!({}));
    refused(world, expected);
}

#[given(regex = r"^(\w+) logs in on another device$")]
fn logs_in_elsewhere(world: &mut Marionette, name: String) {
    let token = world.system().login(&email(&name), &password(&name));
    world.other_devices.insert(name, token);
}

#[then(regex = r"^(\w+) has (\d+) sessions, one of them the one (?:she|he) is using$")]
fn has_sessions(world: &mut Marionette, name: String, count: usize) {
    let answer = world.ask(&name, "{ sessions { id current } }", json!({}));
    let sessions = data(&answer, "sessions").as_array().unwrap();
    assert_eq!(sessions.len(), count, "{answer}");
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "{answer}");
    assert_eq!(current[0]["id"], acceptance::session_of(world.token(&name)));
}

#[when(regex = r"^(\w+) revokes (?:her|his) session on the other device$")]
fn revokes_other_device(world: &mut Marionette, name: String) {
    let other = acceptance::session_of(world.other_devices.get(&name).expect("logged in on another device"));
    let answer = world.ask(&name, "mutation($id: ID!) { revokeSession(id: $id) }", json!({ "id": other }));
    assert_eq!(data(&answer, "revokeSession"), true);
}

#[then(regex = r"^the token of (\w+)'s other device is refused with (\w+)$")]
fn other_device_refused(world: &mut Marionette, name: String, expected: String) {
    let token = world.other_devices.get(&name).expect("logged in on another device").clone();
    world.answer = world.system().as_user(&token, "{ me { email } }", json!({}));
    refused(world, expected);
}

// ---- two-factor authentication ----

#[given(regex = r"^(\w+) has an account with two-factor authentication$")]
fn has_account_with_two_factor(world: &mut Marionette, name: String) {
    world.create_account(&name);
    let enrolment = world.ask(&name, "mutation($p: String!) { enrolTwoFactor(password: $p) { secret } }", json!({ "p": password(&name) }));
    let secret = data(&enrolment, "enrolTwoFactor")["secret"].as_str().unwrap().to_string();
    let step = acceptance::totp_step_now();
    let confirmed = world.ask(&name, "mutation($c: String!) { confirmTwoFactor(code: $c) }", json!({ "c": acceptance::totp_code(&secret, step) }));
    assert_eq!(data(&confirmed, "confirmTwoFactor").as_array().map(Vec::len), Some(10), "ten recovery codes");
    world.authenticators.insert(name, (secret, step));
}

#[when(regex = r"^(\w+) logs in with (?:her|his) password (alone|and the code (?:her|his) app shows next|and the same code again)$")]
fn logs_in_with_code(world: &mut Marionette, name: String, how: String) {
    let (secret, last_step) = world.authenticators.get(&name).cloned().expect("two-factor is on");
    let code = match how.as_str() {
        "alone" => None,
        // One step past the last one used: what the app shows within the next 30 s.
        h if h.ends_with("shows next") => {
            let step = (last_step + 1).max(acceptance::totp_step_now());
            world.authenticators.insert(name.clone(), (secret.clone(), step));
            Some(acceptance::totp_code(&secret, step))
        }
        _ => Some(acceptance::totp_code(&secret, last_step)),
    };
    let query = "mutation($e: String!, $p: String!, $c: String) { login(email: $e, password: $p, twoFactorCode: $c) { token } }";
    world.answer = world.system().post(query, json!({ "e": email(&name), "p": password(&name), "c": code }), "").2;
}

#[then("the login succeeds")]
fn login_succeeds(world: &mut Marionette) {
    assert!(data(&world.answer, "login")["token"].is_string(), "{}", world.answer);
}

#[then(expr = "the login is refused with {word}")]
fn login_is_refused(world: &mut Marionette, expected: String) {
    refused(world, expected);
}

#[when(regex = r"^(\w+) requests a withdrawal of ([\d.]+) (\w+) without a code$")]
fn withdraws_without_code(world: &mut Marionette, name: String, amount: String, asset: String) {
    world.answer = world.ask(
        &name,
        "mutation($a: String!, $m: Decimal!) { requestWithdrawal(asset: $a, amount: $m, destination: \"bank account 1\", idempotencyKey: \"no-code\") { id } }",
        json!({ "a": asset, "m": amount }),
    );
}

// ---- frozen accounts ----

#[when(regex = r"^the operator proposes to (freeze|unfreeze) (\w+)'s account$")]
fn proposes_freeze(world: &mut Marionette, what: String, name: String) {
    let mutation = if what == "freeze" { "freezeAccount" } else { "unfreezeAccount" };
    let answer = world.ask("operator", &format!("mutation($e: String!) {{ {mutation}(email: $e) {{ id status kind }} }}"), json!({ "e": email(&name) }));
    let proposal = data(&answer, mutation);
    assert_eq!(
        (proposal["status"].as_str(), proposal["kind"].as_str()),
        (Some("PENDING"), Some("ACCOUNT_FREEZE")),
        "one operator's word is not enough: {answer}"
    );
    world.proposal = proposal["id"].as_str().map(str::to_string);
}

#[when("the approver approves the proposal")]
fn approver_approves(world: &mut Marionette) {
    let approver = world.system().login(APPROVER, OPERATOR_PASSWORD);
    let id = world.proposal.clone().expect("a proposal was made");
    let answer = world.system().as_user(&approver, "mutation($id: ID!) { approveProposal(id: $id) { status } }", json!({ "id": id }));
    assert_eq!(data(&answer, "approveProposal")["status"], "EXECUTED", "{answer}");
}

#[then(regex = r"^logging in as (\w+) is refused with (\w+)$")]
fn logging_in_refused(world: &mut Marionette, name: String, expected: String) {
    let query = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }";
    world.answer = world.system().post(query, json!({ "e": email(&name), "p": password(&name) }), "").2;
    refused(world, expected);
}

#[then(regex = r"^the operators see (\w+)'s account (frozen|not frozen)$")]
fn operators_see_frozen(world: &mut Marionette, name: String, state: String) {
    let answer = world.ask("operator", "{ frozenAccounts { email } }", json!({}));
    let listed = data(&answer, "frozenAccounts").as_array().unwrap().iter().any(|user| user["email"] == email(&name).as_str());
    assert_eq!(listed, state == "frozen", "{answer}");
}

#[then(regex = r"^(\w+) logs in again$")]
fn logs_in_again(world: &mut Marionette, name: String) {
    let token = world.system().login(&email(&name), &password(&name));
    world.tokens.insert(name, token);
}

#[when(regex = r#"^(\w+) changes (?:her|his) password to "([^"]+)"$"#)]
fn changes_password(world: &mut Marionette, name: String, new_password: String) {
    let answer = world.ask(
        &name,
        "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }",
        json!({ "c": password(&name), "n": new_password }),
    );
    assert_eq!(data(&answer, "changePassword"), true, "{answer}");
}

#[when(regex = r#"^(\w+) presents a token (with a forged signature|that has expired|that claims the alg "none")$"#)]
fn presents_token(world: &mut Marionette, name: String, how: String) {
    let token = world.token(&name).to_string();
    let parts: Vec<&str> = token.split('.').collect();
    let altered = match how.as_str() {
        // A changed first signature character changes its top six bits (the last one may only touch padding).
        "with a forged signature" => format!("{}.{}.{}{}", parts[0], parts[1], if parts[2].starts_with('A') { 'B' } else { 'A' }, &parts[2][1..]),
        "that claims the alg \"none\"" => format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]),
        _ => {
            // Signed with the gateway's own current key, with the same claims, but expired.
            let keys = world.dir.path().join("gateway/keys");
            // The signing key, not the key for secrets at rest beside it: with
            // any other key the token would be refused for the wrong reason.
            let key_file =
                std::fs::read_dir(&keys).unwrap().map(|entry| entry.unwrap().path()).find(|path| path.extension().is_some_and(|e| e == "ed25519")).unwrap();
            let hex = std::fs::read_to_string(&key_file).unwrap();
            let seed: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&hex.trim()[2 * i..2 * i + 2], 16).unwrap()).collect();
            let mut pkcs8 = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
            pkcs8.extend_from_slice(&seed);
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            header.kid = Some(key_file.file_stem().unwrap().to_string_lossy().into_owned());
            let mut claims: Value = jsonwebtoken::dangerous::insecure_decode(&token).unwrap().claims;
            claims["iat"] = json!(1_000_000_000);
            claims["exp"] = json!(1_000_000_600);
            jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_der(&pkcs8)).unwrap()
        }
    };
    assert_ne!(altered, token);
    world.answer = world.system().as_user(&altered, "{ me { email } }", json!({}));
}

#[then(expr = "the request is refused with {word}")]
fn refused(world: &mut Marionette, expected: String) {
    assert_eq!(code(&world.answer), expected, "{}", world.answer);
    let data = &world.answer["data"];
    assert!(data.is_null() || data.as_object().is_some_and(|d| d.values().all(Value::is_null)), "nothing comes with the refusal: {}", world.answer);
}

#[then(regex = r"^(\w+)'s token is still accepted$")]
fn token_still_accepted(world: &mut Marionette, name: String) {
    let me = world.ask(&name, "{ me { email } }", json!({}));
    assert_eq!(data(&me, "me")["email"], email(&name));
}

// ---- wallet ----

#[when(regex = r#"^the operator deposits ([\d.]+) (\w+) into (\w+)'s wallet with the reference "([^"]+)"$"#)]
fn operator_deposits(world: &mut Marionette, amount: String, asset: String, name: String, reference: String) {
    world.deposit(&name, &amount, &asset, &reference);
}

#[when(regex = r"^(\w+) tries to deposit ([\d.]+) (\w+) into (?:her|his) own wallet$")]
fn user_deposits(world: &mut Marionette, name: String, amount: String, asset: String) {
    world.answer = world.ask(
        &name,
        "mutation($e: String!, $a: String!, $m: Decimal!) { deposit(email: $e, asset: $a, amount: $m, reference: \"self\") { id } }",
        json!({ "e": email(&name), "a": asset, "m": amount }),
    );
}

#[then(regex = r"^(\w+) has ([\d.]+) (\w+) available and ([\d.]+) (?:\w+) locked$")]
fn has_balance(world: &mut Marionette, name: String, available: String, asset: String, locked: String) {
    let (_, _, shown_available, shown_locked) = world.balance(&name, &asset).unwrap_or_else(|| panic!("{name} has no {asset}"));
    assert_eq!((shown_available.as_str(), shown_locked.as_str()), (available.as_str(), locked.as_str()), "{name}'s {asset}: available and locked");
}

#[then(regex = r"^(\w+) has no (\w+)$")]
fn has_none(world: &mut Marionette, name: String, asset: String) {
    if let Some((available, locked, ..)) = world.balance(&name, &asset) {
        assert_eq!((available, locked), (Decimal::ZERO, Decimal::ZERO), "{name}'s {asset}");
    }
}

#[when(regex = r#"^(\w+) requests a withdrawal of ([\d.]+) (\w+) to "([^"]+)"$"#)]
#[given(regex = r#"^(\w+) requests a withdrawal of ([\d.]+) (\w+) to "([^"]+)"$"#)]
fn requests_withdrawal(world: &mut Marionette, name: String, amount: String, asset: String, destination: String) {
    let key = format!("{name}-withdrawal-{}", world.withdrawal.is_some() as u8);
    world.answer = world.ask(
        &name,
        "mutation($a: String!, $m: Decimal!, $d: String!, $k: String!) { requestWithdrawal(asset: $a, amount: $m, destination: $d, idempotencyKey: $k) { id status amount destination } }",
        json!({ "a": asset, "m": amount, "d": destination, "k": key }),
    );
    if let Some(id) = world.answer["data"]["requestWithdrawal"]["id"].as_str() {
        world.withdrawal = Some(id.to_string());
    }
}

#[when(regex = r"^the operator (approves|rejects) the withdrawal$")]
fn decides_withdrawal(world: &mut Marionette, decision: String) {
    let mutation = if decision == "approves" { "approveWithdrawal" } else { "rejectWithdrawal" };
    let id = world.withdrawal.clone().expect("no withdrawal was requested");
    world.answer = world.ask("operator", &format!("mutation($id: ID!) {{ {mutation}(id: $id) {{ id status }} }}"), json!({ "id": id }));
    assert!(world.answer.get("errors").is_none(), "{}", world.answer);
}

#[then(regex = r"^the withdrawal is (PENDING|APPROVED|REJECTED)$")]
fn withdrawal_is(world: &mut Marionette, status: String) {
    let id = world.withdrawal.clone().expect("no withdrawal was requested");
    // The operator's list has every user's withdrawals.
    let answer = world.ask("operator", "{ withdrawals { id status } }", json!({}));
    let all = data(&answer, "withdrawals").as_array().unwrap();
    let found = all.iter().find(|w| w["id"] == id.as_str()).unwrap_or_else(|| panic!("withdrawal {id} is missing: {answer}"));
    assert_eq!(found["status"], status.as_str());
}

/// A user's ledger entries (`ledgerEntries`, all assets or one), each as its
/// kind and signed amount, e.g. "DEPOSIT 1000.00, WITHDRAWAL -400.00".
#[then(regex = r"^(\w+)'s (?:(\w+) )?ledger entries are, newest first: (.+)$")]
fn ledger_entries_are(world: &mut Marionette, name: String, asset: String, expected: String) {
    let asset = Some(asset).filter(|a| !a.is_empty());
    let answer = world.ask(&name, "query($a: String) { ledgerEntries(asset: $a) { kind amount asset } }", json!({ "a": asset }));
    let entries = data(&answer, "ledgerEntries").as_array().unwrap();
    assert!(entries.iter().all(|e| asset.as_ref().is_none_or(|a| e["asset"] == a.as_str())), "only the asset asked for: {answer}");
    let shown: Vec<String> = entries.iter().map(|e| format!("{} {}", e["kind"].as_str().unwrap(), e["amount"].as_str().unwrap())).collect();
    assert_eq!(shown.join(", "), expected, "{name}'s ledger entries: {answer}");
}

// ---- the house ----

#[when(regex = r#"^(the operator|\w+) (funds the house with|takes out of the house's inventory) ([\d.]+) (\w+) with the reference "([^"]+)"$"#)]
fn moves_house_inventory(world: &mut Marionette, name: String, direction: String, amount: String, asset: String, reference: String) {
    let name = name.trim_start_matches("the ");
    let (mutation, sign) = if direction.starts_with("funds") { ("fundHouse", Decimal::ONE) } else { ("defundHouse", Decimal::NEGATIVE_ONE) };
    world.answer = world.ask(
        name,
        &format!("mutation($a: String!, $m: Decimal!, $r: String!) {{ {mutation}(asset: $a, amount: $m, reference: $r) {{ inventory }} }}"),
        json!({ "a": asset, "m": amount, "r": reference }),
    );
    if world.answer.get("errors").is_none() && world.house_references.insert(reference) {
        *world.house_funded.entry(asset).or_default() += sign * decimal(&amount);
    }
}

#[then(regex = r"^the house has ([\d.]+) (\w+) of inventory and ([\d.]+) (?:\w+) of revenue$")]
fn house_has(world: &mut Marionette, inventory: String, asset: String, revenue: String) {
    let answer = world.ask("operator", "{ houseBalances { asset inventory revenue } }", json!({}));
    let house = data(&answer, "houseBalances")
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == asset.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no {asset}: {answer}"));
    assert_eq!((house["inventory"].as_str(), house["revenue"].as_str()), (Some(inventory.as_str()), Some(revenue.as_str())), "{answer}");
}

/// Conservation, two ways. Every deposit and the house's funding is still
/// somewhere: in a user's balance, paid as a fee, in a withdrawal (pending
/// or approved; a rejected one came back), or in the house's inventory. And
/// the operator's reserves, summed by the ledger over every stored account
/// (custody, pending withdrawals, revenue, inventory, every user's), balance.
#[then("no money was created or destroyed")]
fn conserved(world: &mut Marionette) {
    let reserves = world.ask("operator", "{ reserves { asset balanced inventory } }", json!({}));
    for reserve in data(&reserves, "reserves").as_array().unwrap() {
        assert_eq!(reserve["balanced"], true, "{reserves}");
        let funded = world.house_funded.get(reserve["asset"].as_str().unwrap()).copied().unwrap_or_default();
        assert_eq!(field_decimal(&reserve["inventory"]), funded, "the house's inventory is what was funded: {reserves}");
    }
    let users: Vec<String> = world.tokens.keys().filter(|k| k.as_str() != "operator").cloned().collect();
    let mut held: HashMap<String, Decimal> = HashMap::new();
    for name in &users {
        let answer = world.ask(name, "{ balances { asset available locked } userTrades(limit: 1000) { fee feeAsset } }", json!({}));
        for balance in data(&answer, "balances").as_array().unwrap() {
            *held.entry(balance["asset"].as_str().unwrap().into()).or_default() += field_decimal(&balance["available"]) + field_decimal(&balance["locked"]);
        }
        for trade in data(&answer, "userTrades").as_array().unwrap() {
            *held.entry(trade["feeAsset"].as_str().unwrap().into()).or_default() += field_decimal(&trade["fee"]);
        }
    }
    let answer = world.ask("operator", "{ withdrawals { asset amount status } }", json!({}));
    for withdrawal in data(&answer, "withdrawals").as_array().unwrap().iter().filter(|w| w["status"] != "REJECTED") {
        *held.entry(withdrawal["asset"].as_str().unwrap().into()).or_default() += field_decimal(&withdrawal["amount"]);
    }
    held.retain(|_, amount| !amount.is_zero());
    let mut deposited = world.deposited.clone();
    for (asset, funded) in &world.house_funded {
        *deposited.entry(asset.clone()).or_default() += funded;
        *held.entry(asset.clone()).or_default() += funded;
    }
    held.retain(|_, amount| !amount.is_zero());
    deposited.retain(|_, amount| !amount.is_zero());
    assert_eq!(held, deposited, "balances + fees + withdrawals + the house's inventory, against deposits and funding, by asset");
}

// ---- orders ----

#[given(regex = r"^(\w+) places an? (IOC |FOK |post-only )?(limit|market) (buy|sell) order for ([\d.]+) BTC (?:at|with a protection price of) ([\d.]+) USD$")]
#[when(regex = r"^(\w+) places an? (IOC |FOK |post-only )?(limit|market) (buy|sell) order for ([\d.]+) BTC (?:at|with a protection price of) ([\d.]+) USD$")]
fn places(world: &mut Marionette, name: String, flavour: String, kind: String, side: String, quantity: String, price: String) {
    let mut input = json!({ "market": "BTC-USD", "side": side.to_uppercase(), "type": kind.to_uppercase(), "quantity": quantity, "price": price });
    match flavour.trim() {
        "IOC" => input["timeInForce"] = json!("IOC"),
        "FOK" => input["timeInForce"] = json!("FOK"),
        "post-only" => input["postOnly"] = json!(true),
        _ => {}
    }
    world.answer = world.ask(&name, PLACE, json!({ "i": input }));
    if let Some(id) = world.answer["data"]["placeOrder"]["id"].as_str() {
        world.orders.insert(name, id.to_string());
    }
}

fn assert_order(order: &Value, status: &str, filled: Option<&str>, average: Option<&str>) {
    assert_eq!(order["status"], status, "{order}");
    if let Some(filled) = filled {
        assert_eq!(field_decimal(&order["filledQuantity"]), decimal(filled), "filled: {order}");
    }
    if let Some(average) = average {
        assert_eq!(field_decimal(&order["averagePrice"]), decimal(average), "average price: {order}");
    }
}

#[then(regex = r"^the order is (OPEN|PARTIALLY_FILLED|FILLED|CANCELLED|REJECTED)(?: with ([\d.]+) BTC filled)?(?: at an average price of ([\d.]+) USD)?$")]
fn order_is(world: &mut Marionette, status: String, filled: String, average: String) {
    assert!(world.answer.get("errors").is_none(), "{}", world.answer);
    let answered = &world.answer["data"];
    let order = if answered["placeOrder"].is_object() { &answered["placeOrder"] } else { &answered["cancelOrder"] };
    assert_order(order, &status, Some(filled.as_str()).filter(|f| !f.is_empty()), Some(average.as_str()).filter(|a| !a.is_empty()));
}

#[then(regex = r"^(\w+)'s order is (OPEN|PARTIALLY_FILLED|FILLED|CANCELLED|REJECTED) with ([\d.]+) BTC filled$")]
fn users_order_is(world: &mut Marionette, name: String, status: String, filled: String) {
    // Matching's verdict on a cancel the ledger sent it on its own (an
    // account frozen) comes a moment later: wait for it, a while at most.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let answer =
            world.ask(&name, "query($id: ID!) { userOrder(id: $id) { id status filledQuantity averagePrice } }", json!({ "id": world.order_id(&name) }));
        let order = data(&answer, "userOrder");
        if order["status"] == status.as_str() || std::time::Instant::now() > deadline {
            assert_order(order, &status, Some(&filled), None);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[when(regex = r"^(\w+) cancels (?:her|his) order$")]
#[given(regex = r"^(\w+) cancels (?:her|his) order$")]
fn cancels(world: &mut Marionette, name: String) {
    world.answer =
        world.ask(&name, "mutation($id: ID!) { cancelOrder(id: $id) { id status filledQuantity averagePrice } }", json!({ "id": world.order_id(&name) }));
    assert!(world.answer.get("errors").is_none(), "{}", world.answer);
}

#[then(regex = r"^(\w+) can see (?:her|his) order$")]
fn can_see(world: &mut Marionette, name: String) {
    let id = world.order_id(&name).to_string();
    // The white paper's query, as written.
    let answer = world.ask(&name, &format!("query {{ userOrder(id: \"{id}\") {{ id status type }} }}"), json!({}));
    assert_eq!(data(&answer, "userOrder")["id"], id.as_str());
}

#[then(regex = r"^(\w+) cannot see (\w+)'s order$")]
fn cannot_see(world: &mut Marionette, name: String, owner: String) {
    let answer = world.ask(&name, "query($id: ID!) { userOrder(id: $id) { id status } }", json!({ "id": world.order_id(&owner) }));
    // Null, not an error: the answer does not reveal that the order exists.
    assert_eq!(data(&answer, "userOrder"), &Value::Null);
}

#[then(regex = r"^(\w+) cannot cancel (\w+)'s order$")]
fn cannot_cancel(world: &mut Marionette, name: String, owner: String) {
    let answer = world.ask(&name, "mutation($id: ID!) { cancelOrder(id: $id) { id status } }", json!({ "id": world.order_id(&owner) }));
    assert_eq!(code(&answer), "NOT_FOUND", "the same answer as for an order that does not exist");
}

#[then(regex = r"^(\w+) paid a fee of ([\d.]+) (\w+)$")]
fn paid_fee(world: &mut Marionette, name: String, fee: String, asset: String) {
    let answer = world.ask(&name, "{ userTrades { fee feeAsset } }", json!({}));
    let trades = data(&answer, "userTrades").as_array().unwrap();
    let paid: Decimal = trades.iter().filter(|t| t["feeAsset"] == asset.as_str()).map(|t| field_decimal(&t["fee"])).sum();
    assert_eq!(paid, decimal(&fee), "{answer}");
}

#[then(regex = r"^the latest trade of ([\w-]+) is ([\d.]+) BTC at ([\d.]+) USD, taken by a (buyer|seller)$")]
fn latest_trade(world: &mut Marionette, market: String, quantity: String, price: String, taker: String) {
    let answer = world.system().post("query($m: ID!) { trades(market: $m, limit: 1) { price quantity takerSide } }", json!({ "m": market }), "").2;
    let trade = &data(&answer, "trades")[0];
    assert_eq!((field_decimal(&trade["quantity"]), field_decimal(&trade["price"])), (decimal(&quantity), decimal(&price)), "{answer}");
    assert_eq!(trade["takerSide"], if taker == "buyer" { "BUY" } else { "SELL" });
}

fn levels(text: &str) -> Value {
    // "0.2 BTC at 100 USD"
    let words: Vec<&str> = text.split(' ').collect();
    json!([{ "price": words[3], "quantity": words[0] }])
}

#[then(regex = r"^the order book of ([\w-]+) has (bids|asks) of ([\d.]+ BTC at [\d.]+ USD)$")]
fn book_has(world: &mut Marionette, market: String, side: String, level: String) {
    assert_eq!(world.book(&market)[side.as_str()], levels(&level));
}

#[then(regex = r"^the order book of ([\w-]+) has no (bids|asks)$")]
fn book_has_none(world: &mut Marionette, market: String, side: String) {
    assert_eq!(world.book(&market)[side.as_str()], json!([]));
}

// ---- subscriptions ----

#[given(regex = r"^(\w+) subscribes to the (order book|trades) of ([\w-]+)$")]
#[when(regex = r"^(\w+) subscribes to the (order book|trades) of ([\w-]+)$")]
fn subscribes_market(world: &mut Marionette, name: String, what: String, market: String) {
    let mut socket = world.system().subscriptions(world.token(&name));
    let query = match what.as_str() {
        "order book" => format!("subscription {{ orderBook(market: \"{market}\") {{ bids {{ price quantity }} asks {{ price quantity }} }} }}"),
        _ => format!("subscription {{ trades(market: \"{market}\") {{ price quantity takerSide }} }}"),
    };
    socket.subscribe(&what, &query);
    world.sockets.insert(name, socket);
}

#[given(regex = r"^(\w+) subscribes to (?:her|his) orders$")]
#[when(regex = r"^(\w+) subscribes to (?:her|his) orders$")]
fn subscribes_orders(world: &mut Marionette, name: String) {
    let mut socket = world.system().subscriptions(world.token(&name));
    socket.subscribe("orders", "subscription { userOrders { id status filledQuantity } }");
    world.sockets.insert(name, socket);
}

fn next_payload(world: &mut Marionette, name: &str, id: &str, field: &str) -> Value {
    let message = world.socket(name).next_for(id);
    assert_eq!(message["type"], "next", "{message}");
    assert!(message["payload"].get("errors").is_none(), "{message}");
    message["payload"]["data"][field].clone()
}

#[then(regex = r"^(\w+) receives an order book with no bids and no asks$")]
fn receives_empty_book(world: &mut Marionette, name: String) {
    assert_eq!(next_payload(world, &name, "order book", "orderBook"), json!({ "bids": [], "asks": [] }));
}

#[then(regex = r"^(\w+) receives an order book with asks of ([\d.]+ BTC at [\d.]+ USD)$")]
fn receives_book(world: &mut Marionette, name: String, level: String) {
    assert_eq!(next_payload(world, &name, "order book", "orderBook"), json!({ "bids": [], "asks": levels(&level) }));
}

#[then(regex = r"^(\w+) receives a trade of ([\d.]+) BTC at ([\d.]+) USD, taken by a (buyer|seller)$")]
fn receives_trade(world: &mut Marionette, name: String, quantity: String, price: String, taker: String) {
    let trade = next_payload(world, &name, "trades", "trades");
    assert_eq!((field_decimal(&trade["quantity"]), field_decimal(&trade["price"])), (decimal(&quantity), decimal(&price)), "{trade}");
    assert_eq!(trade["takerSide"], if taker == "buyer" { "BUY" } else { "SELL" });
}

#[then(regex = r"^(\w+) receives (?:her|his) order (OPEN|PARTIALLY_FILLED|FILLED|CANCELLED) with ([\d.]+) BTC filled$")]
fn receives_order(world: &mut Marionette, name: String, status: String, filled: String) {
    let order = next_payload(world, &name, "orders", "userOrders");
    // The first update after subscribing is this user's latest order: nobody else's came first.
    assert_eq!(order["id"], world.order_id(&name), "{order}");
    assert_order(&order, &status, Some(&filled), None);
}

#[when("a client without a valid token subscribes to its orders")]
fn anonymous_subscribes(world: &mut Marionette) {
    let mut socket = world.system().subscriptions("not-a-token");
    socket.subscribe("orders", "subscription { userOrders { id } }");
    world.sockets.insert("anonymous".into(), socket);
}

#[then(regex = r"^the subscription is refused with (\w+)$")]
fn subscription_refused(world: &mut Marionette, expected: String) {
    let socket = world.socket("anonymous");
    // graphql-transport-ws' `error` message: the GraphQL errors, and the subscription is over.
    let message = socket.next_for("orders");
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["payload"][0]["extensions"]["code"], expected.as_str(), "{message}");
}

fn main() {
    // Cargo's run-time value first: a binary reused from a clone at another path has the wrong compile-time one.
    let features = format!("{}/../features", std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()));
    // `cargo test -- <filter>` passes libtest's arguments: the first word that
    // is not a flag picks the scenarios whose name or feature contains it.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    let runner = Marionette::cucumber()
        .with_default_cli()
        // One scenario at a time: each runs three daemons, and the steps block on their sockets.
        .max_concurrent_scenarios(1)
        .fail_on_skipped();
    let summary =
        futures_executor::block_on(runner.filter_run(features, move |feature, _, scenario| feature.name.contains(&filter) || scenario.name.contains(&filter)));
    let scenarios = summary.scenarios_stats();
    let failed = scenarios.failed + summary.parsing_errors() + summary.hook_errors();
    println!("{} passed, {} failed", scenarios.passed, failed);
    if failed > 0 || summary.execution_has_failed() {
        std::process::exit(1);
    }
}
