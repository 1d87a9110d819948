//! `marionettectl`: sets up and inspects a Marionette appliance through the
//! gateway's admin socket (a Unix socket only root or the marionette user can
//! open). Even there it acts as a named operator: `login` keeps an
//! operator's session in a 0600 file, and every operator action is that
//! operator's proposal, applied once other operators approve it. Exit
//! status: 0 done, 1 failed, 3 already there (DUPLICATE), 4 waiting for
//! approvals (APPROVAL_PENDING), 5 the audit log does not verify.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use ledger_api::operators::{AuditHead, AuditRecord, ChainCheck};
use serde_json::{json, Value};

const USAGE: &str = "usage: marionettectl [--socket PATH] [--session FILE] COMMAND
  create-operator EMAIL                 the password is read from stdin (one line); the first
                                        operator of a fresh install needs no session, any other
                                        is proposed by the logged-in operator for others to approve
  login EMAIL                           an operator's session for the commands below (password on stdin,
                                        then the two-factor code on the next line when it is on)
  logout
  two-factor enrol                      start the logged-in operator's two-factor enrolment (password on
                                        stdin): prints the secret and its QR code for an authenticator app
  two-factor confirm CODE               finish it with the app's code; prints ten one-use recovery codes
  two-factor off CODE                   turn it off (an app or a recovery code); operators must have it,
                                        so their actions wait until they enrol again
  create-asset SYMBOL SCALE             e.g. create-asset BTC 8
  create-market BASE QUOTE TICK_SIZE LOT_SIZE MAKER_FEE_RATE TAKER_FEE_RATE [PRICE_BAND]
                                        e.g. create-market BTC USD 0.01 0.0001 0.001 0.002 0.1
                                        (limit prices within 10% of the last trade; no band if left out)
  halt-market MARKET                    no new orders on MARKET (e.g. BTC-USD); cancels still allowed
  resume-market MARKET                  let a halted market take orders again
  deposit EMAIL ASSET AMOUNT REFERENCE  credit a user (idempotent by REFERENCE)
  fund-house ASSET AMOUNT REFERENCE     custody to the house's inventory, for convert (idempotent by REFERENCE)
  defund-house ASSET AMOUNT REFERENCE   the house's inventory back to custody
  convert-pair BASE QUOTE PRICE|MARKET SPREAD_BPS FEE_BPS MIN MAX STEP EXPOSURE_BASE EXPOSURE_QUOTE
                                        let users convert BASE and QUOTE both ways, priced at PRICE
                                        (QUOTE per BASE) or from MARKET's book (e.g. BTC-USD); amounts in BASE
                                        e.g. convert-pair BTC USD 60000 50 10 0.0001 10 0.00000001 10 600000
  convert-pause BASE QUOTE on|off       stop or resume a pair's quotes and accepts
  convert-pairs                         the pairs and the house's position through each
  proposals [pending|executed|rejected] operators' proposals, newest first
  approve ID                            approve another operator's proposal
  reject ID REASON                      reject a pending proposal, saying why
  freeze EMAIL [--keep-orders]          propose to freeze an account (no login, orders or withdrawals;
                                        its open orders cancelled unless --keep-orders)
  unfreeze EMAIL                        propose to unfreeze it
  frozen                                the frozen accounts
  kill-switch EMAIL [on|off]            a user's kill switch; on/off proposes to engage the operators'
                                        (cancel their orders, refuse new ones) or lift it
  tier EMAIL N                          propose a user's verification tier (0 to 9: their withdrawal limits)
  audit verify [--file FILE]            check the audit log's hash chain (the ledger's, or an export)
  audit export [--from N] [FILE]        the audit log as JSON lines, to FILE or stdout
  status                                the gateway, the ledger and its link to matching
  graphql QUERY [VARIABLES_JSON]        any GraphQL operation, as the logged-in operator
  pki init DIR SITE                     make the site's link CA in DIR: ca.pem for every daemon,
                                        ca.key (0600) to keep off the daemons' hosts
  pki issue DIR ROLE HOST... [--out D]  a certificate for a daemon (ROLE: ledger, matching,
                                        gateway, test) reachable as HOST (names or addresses),
                                        signed by the CA in DIR, written to D (default DIR)
PATH defaults to /run/marionette/gateway-admin.sock; FILE to $MARIONETTECTL_SESSION,
else ~/.config/marionette/session. An operator action another operator must approve
exits 4 and says the proposal's id.";

/// `pki issue DIR ROLE HOST... [--out D]`: prints the certificate's and the key's paths.
fn pki_issue(dir: &Path, role: &str, rest: &[&str]) -> anyhow::Result<i32> {
    let role = link::CertifiedRole::parse(role).with_context(|| format!("{role:?} is not a role: ledger, matching, gateway or test"))?;
    let (hosts, out) = match rest {
        [hosts @ .., "--out", out] => (hosts, Path::new(*out)),
        hosts => (hosts, dir),
    };
    if hosts.is_empty() {
        bail!("name at least one HOST the daemon is reached as (a DNS name or an IP address)");
    }
    let hosts: Vec<String> = hosts.iter().map(|host| host.to_string()).collect();
    let issued = link::pki::issue(dir, role, &hosts, out)?;
    println!("{}\n{}", issued.certificate_file.display(), issued.private_key_file.display());
    Ok(0)
}

const EXIT_DUPLICATE: i32 = 3;
const EXIT_APPROVAL_PENDING: i32 = 4;
const EXIT_AUDIT_BROKEN: i32 = 5;
/// Audit records asked for at once.
const AUDIT_PAGE: u64 = 1_000;

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("marionettectl: {error:#}");
            std::process::exit(1);
        }
    }
}

struct Admin {
    socket: PathBuf,
    session: PathBuf,
}

impl Admin {
    fn token(&self) -> Option<String> {
        std::fs::read_to_string(&self.session).ok().map(|token| token.trim().to_string()).filter(|token| !token.is_empty())
    }

    /// `request` with the session's token, if there is one and the request acts as an operator.
    fn ask(&self, mut request: Value) -> anyhow::Result<Value> {
        let as_operator = matches!(request["op"].as_str(), Some("graphql" | "create-operator" | "audit" | "audit-head"));
        if let Some(token) = self.token().filter(|_| as_operator) {
            request["token"] = Value::String(token);
        }
        ask(&self.socket, &request)
    }

    /// The answer's `ok`, or the error as a failure.
    fn ok(&self, request: Value) -> anyhow::Result<Value> {
        let answer = self.ask(request)?;
        match answer.get("ok") {
            Some(ok) => Ok(ok.clone()),
            None => bail!("{}: {}", answer["code"].as_str().unwrap_or("ERROR"), answer["error"].as_str().unwrap_or("the gateway gave no reason")),
        }
    }
}

fn default_session() -> PathBuf {
    if let Some(path) = std::env::var_os("MARIONETTECTL_SESSION") {
        return path.into();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".config/marionette/session")
}

fn read_password() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password).context("reading the password from stdin")?;
    Ok(password.trim_end_matches(['\r', '\n']).to_string())
}

fn run() -> anyhow::Result<i32> {
    let mut admin = Admin { socket: PathBuf::from("/run/marionette/gateway-admin.sock"), session: default_session() };
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    loop {
        match args.first().map(String::as_str) {
            Some("--socket") => admin.socket = args.get(1).context("--socket needs a path")?.into(),
            Some("--session") => admin.session = args.get(1).context("--session needs a file")?.into(),
            _ => break,
        }
        args.drain(..2);
    }
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let request = match words.as_slice() {
        ["create-operator", email] => json!({ "op": "create-operator", "email": email, "password": read_password()? }),
        ["login", email] => return login(&admin, email),
        ["logout"] => {
            match std::fs::remove_file(&admin.session) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error).context("removing the session file"),
                _ => {}
            }
            return Ok(0);
        }
        ["two-factor", "enrol"] => return two_factor_enrol(&admin),
        ["two-factor", "confirm", code] => return two_factor_confirm(&admin, code),
        ["two-factor", "off", code] => graphql("mutation($c: String!) { disableTwoFactor(code: $c) }", json!({ "c": code })),
        ["create-asset", symbol, scale] => graphql(
            "mutation($s: String!, $n: Int!) { createAsset(symbol: $s, scale: $n) { id symbol scale } }",
            json!({ "s": symbol, "n": scale.parse::<i32>().context("SCALE is a number of decimal places")? }),
        ),
        ["create-market", base, quote, tick, lot, maker, taker, band @ ..] if band.len() <= 1 => graphql(
            "mutation($i: CreateMarketInput!) { createMarket(input: $i) { id tickSize lotSize makerFeeRate takerFeeRate priceBand } }",
            json!({ "i": { "base": base, "quote": quote, "tickSize": tick, "lotSize": lot, "makerFeeRate": maker, "takerFeeRate": taker, "priceBand": band.first() } }),
        ),
        ["halt-market", market] => graphql("mutation($m: ID!) { haltMarket(market: $m) { id trading } }", json!({ "m": market })),
        ["resume-market", market] => graphql("mutation($m: ID!) { resumeMarket(market: $m) { id trading } }", json!({ "m": market })),
        ["deposit", email, asset, amount, reference] => graphql(
            "mutation($e: String!, $a: String!, $m: Decimal!, $r: String!) { deposit(email: $e, asset: $a, amount: $m, reference: $r) { id asset amount } }",
            json!({ "e": email, "a": asset, "m": amount, "r": reference }),
        ),
        [direction @ ("fund-house" | "defund-house"), asset, amount, reference] => graphql(
            &format!(
                "mutation($a: String!, $m: Decimal!, $r: String!) {{ {}(asset: $a, amount: $m, reference: $r) {{ asset inventory revenue }} }}",
                if *direction == "fund-house" { "fundHouse" } else { "defundHouse" }
            ),
            json!({ "a": asset, "m": amount, "r": reference }),
        ),
        ["convert-pair", base, quote, source, spread, fee, min, max, step, exposure_base, exposure_quote] => {
            // A market is named BASE-QUOTE; anything else is a price.
            let (market, price) = if source.contains('-') { (Some(*source), None) } else { (None, Some(*source)) };
            let bps = |text: &str, what: &str| text.parse::<i32>().with_context(|| format!("{what} is a whole number of basis points"));
            graphql(
                "mutation($b: String!, $q: String!, $k: ID, $p: Decimal, $s: Int, $f: Int, $lo: Decimal, $hi: Decimal, $st: Decimal, $eb: Decimal, $eq: Decimal) { \
                 setConvertPair(base: $b, quote: $q, market: $k, price: $p, spreadBps: $s, feeBps: $f, minAmount: $lo, maxAmount: $hi, stepSize: $st, \
                 exposureLimitBase: $eb, exposureLimitQuote: $eq) { base quote priceSource market price spreadBps feeBps minAmount maxAmount stepSize paused } }",
                json!({
                    "b": base, "q": quote, "k": market, "p": price, "s": bps(spread, "SPREAD_BPS")?, "f": bps(fee, "FEE_BPS")?,
                    "lo": min, "hi": max, "st": step, "eb": exposure_base, "eq": exposure_quote
                }),
            )
        }
        ["convert-pause", base, quote, on @ ("on" | "off")] => graphql(
            "mutation($b: String!, $q: String!, $p: Boolean!) { setConvertPair(base: $b, quote: $q, paused: $p) { base quote paused } }",
            json!({ "b": base, "q": quote, "p": *on == "on" }),
        ),
        ["convert-pairs"] => {
            graphql("{ convertPositions { pair { base quote priceSource market price spreadBps feeBps paused } netBase netQuote } }", json!({}))
        }
        ["proposals"] => graphql(PROPOSALS, json!({ "s": null })),
        ["proposals", status] => graphql(PROPOSALS, json!({ "s": status.to_uppercase() })),
        ["approve", id] => graphql("mutation($id: ID!) { approveProposal(id: $id) { id kind description status approvals required } }", json!({ "id": id })),
        ["freeze", email] | ["freeze", email, "--keep-orders"] => graphql(
            "mutation($e: String!, $c: Boolean!) { freezeAccount(email: $e, cancelOpenOrders: $c) { id kind description status approvals required } }",
            json!({ "e": email, "c": words.len() == 2 }),
        ),
        ["unfreeze", email] => {
            graphql("mutation($e: String!) { unfreezeAccount(email: $e) { id kind description status approvals required } }", json!({ "e": email }))
        }
        ["frozen"] => graphql("{ frozenAccounts { id email } }", json!({})),
        ["kill-switch", email, on @ ("on" | "off")] => graphql(
            &format!(
                "mutation($e: String!) {{ {}(email: $e) {{ id kind description status approvals required }} }}",
                if *on == "on" { "engageKillSwitchFor" } else { "liftKillSwitchFor" }
            ),
            json!({ "e": email }),
        ),
        ["kill-switch", email] => graphql("query($e: String!) { killSwitchOf(email: $e) { engaged engagedByUser engagedByOperators } }", json!({ "e": email })),
        ["tier", email, tier] => graphql(
            "mutation($e: String!, $t: Int!) { setUserTier(email: $e, tier: $t) { id kind description status approvals required } }",
            json!({ "e": email, "t": tier.parse::<i32>().context("N is a tier, 0 to 9")? }),
        ),
        ["reject", id, reason] => graphql(
            "mutation($id: ID!, $r: String!) { rejectProposal(id: $id, reason: $r) { id kind description status rejectedBy rejectionReason } }",
            json!({ "id": id, "r": reason }),
        ),
        ["pki", "init", dir, site] => {
            let ca = link::pki::init(Path::new(dir), site)?;
            println!("{}\n{}", ca.display(), Path::new(dir).join(link::pki::CA_PRIVATE_KEY).display());
            return Ok(0);
        }
        ["pki", "issue", dir, role, rest @ ..] => return pki_issue(Path::new(dir), role, rest),
        ["audit", "verify"] => return audit_verify(&admin),
        ["audit", "verify", "--file", file] => return audit_verify_file(Path::new(file)),
        ["audit", "export", rest @ ..] => return audit_export(&admin, rest),
        ["status"] => json!({ "op": "status" }),
        ["graphql", query] => graphql(query, json!({})),
        ["graphql", query, variables] => graphql(query, serde_json::from_str(variables).context("VARIABLES_JSON is not JSON")?),
        ["--help" | "-h" | "help"] => {
            println!("{USAGE}");
            return Ok(0);
        }
        _ => bail!("{USAGE}"),
    };
    let answer = admin.ask(request)?;
    if let Some(ok) = answer.get("ok") {
        println!("{}", serde_json::to_string_pretty(ok)?);
        return Ok(0);
    }
    let code = answer["code"].as_str().unwrap_or("ERROR");
    eprintln!("marionettectl: {code}: {}", answer["error"].as_str().unwrap_or("the gateway gave no reason"));
    Ok(match code {
        "DUPLICATE" => EXIT_DUPLICATE,
        "APPROVAL_PENDING" => EXIT_APPROVAL_PENDING,
        _ => 1,
    })
}

const PROPOSALS: &str =
    "query($s: ProposalStatus) { proposals(status: $s) { id kind description status approvals required createdAt rejectedBy rejectionReason } }";

fn graphql(query: &str, variables: Value) -> Value {
    json!({ "op": "graphql", "query": query, "variables": variables })
}

fn login(admin: &Admin, email: &str) -> anyhow::Result<i32> {
    let password = read_password()?;
    // With two-factor authentication on, the app's code comes on the next line.
    let code = read_password().ok().filter(|code| !code.trim().is_empty());
    let ok = admin.ok(json!({ "op": "login", "email": email, "password": password, "code": code }))?;
    let token = ok["token"].as_str().context("the gateway's login answer has no token")?;
    if let Some(dir) = admin.session.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Written whole with mode 0600: the token is the operator's to use.
    let temporary = admin.session.with_extension("new");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("writing the session {}", temporary.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &admin.session)?;
    println!("logged in as operator {} ({}); session in {}", ok["operator"].as_str().unwrap_or("?"), email, admin.session.display());
    Ok(0)
}

/// Prints the new secret as text, as a URI and as a QR code drawn in the
/// terminal, so that an operator on a console can scan it.
fn two_factor_enrol(admin: &Admin) -> anyhow::Result<i32> {
    let password = read_password()?;
    let ok = admin.ok(graphql("mutation($p: String!) { enrolTwoFactor(password: $p) { secret uri } }", json!({ "p": password })))?;
    let enrolment = &ok["enrolTwoFactor"];
    let (secret, uri) = (enrolment["secret"].as_str().unwrap_or_default(), enrolment["uri"].as_str().unwrap_or_default());
    let qr = qrcode::QrCode::new(uri.as_bytes()).context("the otpauth URI does not fit a QR code")?;
    let drawn = qr.render::<qrcode::render::unicode::Dense1x2>().quiet_zone(true).build();
    println!("secret {secret}\nuri    {uri}\n{drawn}\nScan it (or type the secret) into an authenticator app, then: marionettectl two-factor confirm CODE");
    Ok(0)
}

/// Prints the recovery codes one to a line, for the operator to keep apart from the phone.
fn two_factor_confirm(admin: &Admin, code: &str) -> anyhow::Result<i32> {
    let ok = admin.ok(graphql("mutation($c: String!) { confirmTwoFactor(code: $c) }", json!({ "c": code })))?;
    let codes: Vec<&str> = ok["confirmTwoFactor"].as_array().map(|codes| codes.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    eprintln!("two-factor authentication is on; login needs the app's code from now on. Recovery codes, each usable once (shown only now):");
    for code in codes {
        println!("{code}");
    }
    Ok(0)
}

/// The ledger's audit log from its first record to the head read first;
/// records appended meanwhile are left for the next run.
fn audit_verify(admin: &Admin) -> anyhow::Result<i32> {
    let head: AuditHead = serde_json::from_value(admin.ok(json!({ "op": "audit-head" }))?).context("the audit head is not one")?;
    let mut chain = ChainCheck::default();
    while chain.last_sequence < head.last_sequence {
        let limit = AUDIT_PAGE.min(head.last_sequence - chain.last_sequence);
        let page: Vec<AuditRecord> = serde_json::from_value(admin.ok(json!({ "op": "audit", "from": chain.last_sequence + 1, "limit": limit }))?)
            .context("the audit records are not records")?;
        if page.is_empty() {
            break;
        }
        for record in &page {
            if let Err(broken) = chain.next(record) {
                eprintln!("marionettectl: the audit log does not verify: {broken}");
                return Ok(EXIT_AUDIT_BROKEN);
            }
        }
        eprint!("\rverified {} of {} records", chain.last_sequence, head.last_sequence);
    }
    if let Err(broken) = chain.finish(&head) {
        eprintln!("\nmarionettectl: the audit log does not verify: {broken}");
        return Ok(EXIT_AUDIT_BROKEN);
    }
    eprintln!();
    println!("the audit log verifies: records 1 to {}, each linked to the one before; head {}", head.last_sequence, head.last_hash.hex());
    Ok(0)
}

/// An export's lines, each a record, linked from the first one's `previous`.
fn audit_verify_file(path: &Path) -> anyhow::Result<i32> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut chain: Option<ChainCheck> = None;
    let mut first = 0;
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let record: AuditRecord = match serde_json::from_str(&line) {
            Ok(record) => record,
            Err(error) => {
                eprintln!("marionettectl: line {} of {} is not an audit record: {error}", number + 1, path.display());
                return Ok(EXIT_AUDIT_BROKEN);
            }
        };
        let chain = chain.get_or_insert_with(|| {
            first = record.sequence;
            ChainCheck { last_sequence: record.sequence.saturating_sub(1), last_hash: record.previous }
        });
        if let Err(broken) = chain.next(&record) {
            eprintln!("marionettectl: {} does not verify: {broken}", path.display());
            return Ok(EXIT_AUDIT_BROKEN);
        }
    }
    let Some(chain) = chain else { bail!("{} holds no audit record", path.display()) };
    println!(
        "{} verifies: records {first} to {}, each linked to the one before; the last hash is {} (compare it with the ledger's: marionettectl audit verify)",
        path.display(),
        chain.last_sequence,
        chain.last_hash.hex()
    );
    Ok(0)
}

fn audit_export(admin: &Admin, rest: &[&str]) -> anyhow::Result<i32> {
    let (from, file) = match rest {
        [] => (1, None),
        [file] => (1, Some(*file)),
        ["--from", n] => (n.parse().context("--from takes a record number")?, None),
        ["--from", n, file] => (n.parse().context("--from takes a record number")?, Some(*file)),
        _ => bail!("{USAGE}"),
    };
    let head: AuditHead = serde_json::from_value(admin.ok(json!({ "op": "audit-head" }))?).context("the audit head is not one")?;
    let mut out: Box<dyn Write> = match file {
        Some(file) => Box::new(std::io::BufWriter::new(std::fs::File::create(file).with_context(|| format!("creating {file}"))?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut next: u64 = from.max(1);
    while next <= head.last_sequence {
        let limit = AUDIT_PAGE.min(head.last_sequence + 1 - next);
        let page: Vec<AuditRecord> =
            serde_json::from_value(admin.ok(json!({ "op": "audit", "from": next, "limit": limit }))?).context("the audit records are not records")?;
        let Some(last) = page.last() else { break };
        next = last.sequence + 1;
        for record in &page {
            serde_json::to_writer(&mut out, record)?;
            out.write_all(b"\n")?;
        }
        if file.is_some() {
            eprint!("\rexported {} of {} records", next - 1, head.last_sequence);
        }
    }
    out.flush()?;
    if file.is_some() {
        eprintln!();
    }
    Ok(0)
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
