//! Organisers' webhooks against a local receiver over real TLS (a
//! certificate from a CA of the test's own, given to the gateway as its
//! `webhooks.roots_file`): every gift and payout arrives signed as Standard
//! Webhooks says (checked with that project's library), through receiver
//! outages and the gateway killed mid-way; an id always carries the same
//! body; redelivery repeats it as it was; a removed endpoint gets nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acceptance::{code, data, Daemon, Options, System, APPROVER, OPERATOR, OPERATOR_PASSWORD};
use serde_json::{json, Value};

/// How the receiver answers: 200, 500, or hanging up without an answer.
const ANSWER_OK: u8 = 0;
const ANSWER_500: u8 = 1;
const ANSWER_NOTHING: u8 = 2;

/// One request as received: its webhook-id, its body, whether the
/// signature verified, and what was answered.
#[derive(Clone, Debug)]
struct Received {
    id: String,
    body: String,
    verified: bool,
    answered: u8,
}

struct Receiver {
    port: u16,
    ca_file: std::path::PathBuf,
    answer: Arc<AtomicU8>,
    secret: Arc<Mutex<Option<String>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// An https receiver on 127.0.0.1 for `localhost`, with a certificate from a new CA in `dir`.
    fn start(dir: &std::path::Path) -> Receiver {
        let ca = dir.join("ca");
        link::pki::init(&ca, "webhook receivers").unwrap();
        let issued = link::pki::issue(&ca, link::CertifiedRole::Gateway, &["localhost".into()], &dir.join("receiver")).unwrap();
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(&issued.certificate_file).unwrap().map(Result::unwrap).collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&issued.private_key_file).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (answer, secret, received) = (Arc::new(AtomicU8::new(ANSWER_OK)), Arc::new(Mutex::new(None::<String>)), Arc::new(Mutex::new(Vec::new())));
        let (answering, secrets, log) = (answer.clone(), secret.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (config, answering, secrets, log) = (config.clone(), answering.clone(), secrets.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let Ok(connection) = rustls::ServerConnection::new(config) else { return };
                    let mut tls = rustls::StreamOwned::new(connection, stream);
                    let Some((headers, body)) = read_request(&mut tls) else { return };
                    let id = headers.get("webhook-id").cloned().unwrap_or_default();
                    let verified = secrets.lock().unwrap().as_deref().is_some_and(|secret| {
                        let mut map = hyper::HeaderMap::new();
                        for (name, value) in &headers {
                            map.insert(hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
                        }
                        standardwebhooks::Webhook::new(secret).unwrap().verify(&body, &map).is_ok()
                    });
                    let answered = answering.load(Ordering::SeqCst);
                    log.lock().unwrap().push(Received { id, body: String::from_utf8_lossy(&body).into_owned(), verified, answered });
                    let reply: &[u8] = match answered {
                        ANSWER_OK => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        ANSWER_500 => b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        _ => return,
                    };
                    let _ = tls.write_all(reply);
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        Receiver { port, ca_file: ca.join(link::pki::CA_CERTIFICATE), answer, secret, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The ids answered 200, until `done` holds of them or `timeout`.
    fn wait_for(&self, timeout: Duration, done: impl Fn(&BTreeSet<String>) -> bool) -> BTreeSet<String> {
        let start = Instant::now();
        loop {
            let ok: BTreeSet<String> = self.received().into_iter().filter(|r| r.answered == ANSWER_OK).map(|r| r.id).collect();
            if done(&ok) || start.elapsed() > timeout {
                return ok;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// An HTTP/1.1 request's headers (names in lower case) and its body.
fn read_request(stream: &mut impl Read) -> Option<(BTreeMap<String, String>, Vec<u8>)> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = bytes[end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&chunk[..n]);
    }
    Some((headers, body))
}

/// A small generator for the scenario's random choices, its seed printed to replay it.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn gifts_and_payouts_reach_the_organiser_signed_once_each_through_outages_and_restarts() {
    let seed = std::env::var("WEBHOOK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| now_ms() | 1);
    eprintln!("WEBHOOK_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&dir.path().join("receiver"));
    let options = Options {
        gateway_webhooks: format!(
            "roots_file = \"{}\"\nprivate_networks_allowed = true\npoll_ms = 100\nretry_base_ms = 200\ntimeout_ms = 1500\nattempts_max = 30",
            receiver.ca_file.display()
        ),
        ..Options::default()
    };
    std::fs::create_dir_all(dir.path().join("system")).unwrap();
    let mut system = System::start_with(&dir.path().join("system"), &options);
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    let approver = system.login(APPROVER, OPERATOR_PASSWORD);
    assert_eq!(system.ctl(&["create-asset", "USD", "2"], "").0, 0);
    let mut tokens = BTreeMap::new();
    for email in ["ann@water.example", "bob@domain.io", "cy@domain.io", "dee@domain.io"] {
        let password = format!("{email}: tulip quarry lantern");
        system.register(email, &password);
        let deposit = "mutation($e: String!) { deposit(email: $e, asset: \"USD\", amount: \"5000\", reference: $e) { id } }";
        assert!(system.as_user(&operator, deposit, json!({ "e": email })).get("errors").is_none());
        tokens.insert(email, system.login(email, &password));
    }
    let ann = tokens["ann@water.example"].clone();
    let set = "mutation($u: String!) { setDonationWebhook(url: $u) { url secret } }";
    let url = format!("https://localhost:{}/hooks/marionette", receiver.port);
    assert_eq!(code(&system.as_user(&ann, set, json!({ "u": url }))), "FORBIDDEN", "only verified organisers");
    let verify =
        "mutation { setOrganiser(email: \"ann@water.example\", name: \"Water Aid\", kind: ORGANISATION, country: 826, registration: \"288701\") { name } }";
    assert_eq!(code(&system.as_user(&operator, verify, json!({}))), "APPROVAL_PENDING");
    assert_eq!(data(&system.as_user(&approver, verify, json!({})), "setOrganiser")["name"], "Water Aid");
    for bad in ["http://localhost/hooks", "https://user:pw@localhost/", "not a url"] {
        assert_eq!(code(&system.as_user(&ann, set, json!({ "u": bad }))), "BAD_USER_INPUT", "{bad}");
    }
    let endpoint = system.as_user(&ann, set, json!({ "u": url }));
    let secret = data(&endpoint, "setDonationWebhook")["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    *receiver.secret.lock().unwrap() = Some(secret.clone());
    let shown = system.as_user(&ann, "{ donationWebhook { url } }", json!({}));
    assert_eq!(data(&shown, "donationWebhook"), &json!({ "url": url }), "the secret is shown once, never again");

    let deadline = rfc3339(now_ms() + 25_000);
    let create = "mutation($d: DateTime!) { createCampaign(title: \"Wells\", story: \"Clean water\", referenceAsset: \"USD\", goal: \"1000\", deadline: $d, acceptedAssets: [\"USD\"], model: KEEP_WHAT_YOU_RAISE) { id } }";
    let campaign = data(&system.as_user(&ann, create, json!({ "d": deadline })), "createCampaign")["id"].as_str().unwrap().to_string();
    system.as_user(&ann, "mutation($c: ID!) { publishCampaign(id: $c) { status } }", json!({ "c": campaign }));

    // Gifts at random from three donors, the receiver failing or hanging up
    // at random, the gateway killed twice along the way.
    let donate = "mutation($c: ID!, $m: Decimal!, $k: Boolean!, $key: String!) { donate(campaignId: $c, asset: \"USD\", amount: $m, knownToOrganiser: $k, idempotencyKey: $key) { id gross fee net receiptNumber } }";
    let donors = ["bob@domain.io", "cy@domain.io", "dee@domain.io"];
    let mut gifts: BTreeMap<String, (Value, &str, bool)> = BTreeMap::new();
    let gifts_made = 12;
    for n in 0..gifts_made {
        receiver.answer.store([ANSWER_OK, ANSWER_OK, ANSWER_500, ANSWER_NOTHING][rng.below(4) as usize], Ordering::SeqCst);
        let donor = donors[rng.below(3) as usize];
        let known = rng.below(2) == 0;
        let amount = format!("{}.{:02}", 1 + rng.below(200), rng.below(100));
        let given = system.as_user(&tokens[donor], donate, json!({ "c": campaign, "m": amount, "k": known, "key": format!("gift-{n}") }));
        let gift = data(&given, "donate").clone();
        gifts.insert(format!("gift_{}", gift["id"].as_str().unwrap()), (gift, donor, known));
        if n == 4 || n == 8 {
            // Killed while deliveries may be on the wire: what was answered and not yet written goes again, unchanged.
            system.kill_9(Daemon::Gateway);
            system.start_again(Daemon::Gateway);
        }
        std::thread::sleep(Duration::from_millis(rng.below(300)));
    }
    receiver.answer.store(ANSWER_OK, Ordering::SeqCst);
    let expected: BTreeSet<String> = gifts.keys().cloned().collect();
    let delivered = receiver.wait_for(Duration::from_secs(60), |ok| expected.is_subset(ok));
    assert!(expected.is_subset(&delivered), "missing: {:?}", expected.difference(&delivered).collect::<Vec<_>>());

    // The payout, after the deadline, under four-eyes.
    let ann = system.login("ann@water.example", "ann@water.example: tulip quarry lantern");
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    let approver = system.login(APPROVER, OPERATOR_PASSWORD);
    let ended = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        system.post("query($c: ID!) { campaign(id: $c) { status } }", json!({ "c": campaign }), "").2["data"]["campaign"]["status"] == "ENDED"
    });
    assert!(ended, "the ledger's clock ends the campaign");
    let pay = "mutation($c: ID!) { payOutCampaign(id: $c) { id last lines { asset net fees tips } } }";
    assert_eq!(code(&system.as_user(&operator, pay, json!({ "c": campaign }))), "APPROVAL_PENDING");
    let payout = data(&system.as_user(&approver, pay, json!({ "c": campaign })), "payOutCampaign").clone();
    let payout_id = format!("payout_{}", payout["id"].as_str().unwrap());
    let delivered = receiver.wait_for(Duration::from_secs(30), |ok| ok.contains(&payout_id));
    assert!(delivered.contains(&payout_id), "the payout's event arrived");

    // Every request was signed with the organiser's secret; an id never
    // carried two bodies; each body says what the gift or payout was.
    let received = receiver.received();
    assert!(received.iter().all(|r| r.verified), "unsigned or badly signed: {:?}", received.iter().filter(|r| !r.verified).map(|r| &r.id).collect::<Vec<_>>());
    let mut bodies: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in &received {
        bodies.entry(&r.id).or_default().insert(&r.body);
    }
    for (id, distinct) in &bodies {
        assert_eq!(distinct.len(), 1, "{id} was delivered as {} different events", distinct.len());
    }
    assert_eq!(bodies.keys().map(|id| id.to_string()).collect::<BTreeSet<_>>(), expected.iter().cloned().chain([payout_id.clone()]).collect());
    for (id, (gift, donor, known)) in &gifts {
        let body: Value = serde_json::from_str(bodies[id.as_str()].first().unwrap()).unwrap();
        assert_eq!(body["type"], "donation.received");
        assert_eq!(body["id"], id.as_str());
        let d = &body["data"];
        assert_eq!((&d["gross"], &d["fee"], &d["net"], &d["receipt_number"]), (&gift["gross"], &gift["fee"], &gift["net"], &gift["receiptNumber"]));
        assert_eq!((d["campaign_id"].as_str(), d["asset"].as_str(), d["campaign_title"].as_str()), (Some(campaign.as_str()), Some("USD"), Some("Wells")));
        let email = if *known { json!(donor) } else { Value::Null };
        assert_eq!(d["donor_email"], email, "the donor is named only when they agreed");
    }
    let body: Value = serde_json::from_str(bodies[payout_id.as_str()].first().unwrap()).unwrap();
    assert_eq!(body["type"], "payout.made");
    assert_eq!(body["data"]["lines"][0]["net"], payout["lines"][0]["net"]);
    assert_eq!(body["data"]["donations"], json!(gifts_made));
    let failed_first = received.iter().filter(|r| r.answered != ANSWER_OK).count();
    eprintln!("{} requests, {} answered 500 or not at all, {} events", received.len(), failed_first, bodies.len());

    // The organiser sees every delivery delivered; asking again sends the same bytes under the same id.
    let deliveries = system.as_user(&ann, "{ donationWebhookDeliveries(limit: 100) { eventId state attempts body } }", json!({}));
    let deliveries = data(&deliveries, "donationWebhookDeliveries").as_array().unwrap().clone();
    assert_eq!(deliveries.len(), gifts_made + 1, "one delivery per event, none enqueued twice across restarts");
    assert!(deliveries.iter().all(|d| d["state"] == "DELIVERED"), "{deliveries:?}");
    let first = gifts.keys().next().unwrap().clone();
    let redeliver = "mutation($e: String!) { redeliverDonationWebhook(eventId: $e) { state } }";
    assert_eq!(data(&system.as_user(&ann, redeliver, json!({ "e": first })), "redeliverDonationWebhook")["state"], "PENDING");
    assert_eq!(code(&system.as_user(&ann, redeliver, json!({ "e": "gift_999999" }))), "NOT_FOUND");
    let answered_before = received.iter().filter(|r| r.id == first && r.answered == ANSWER_OK).count();
    let again = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        receiver.received().iter().filter(|r| r.id == first && r.answered == ANSWER_OK).count() > answered_before
    });
    assert!(again, "the event was sent again");
    let repeats: BTreeSet<String> = receiver.received().into_iter().filter(|r| r.id == first).map(|r| r.body).collect();
    assert_eq!(repeats.len(), 1, "a redelivery is the same event");

    // Removed: a new campaign's gift reaches nobody.
    assert_eq!(data(&system.as_user(&ann, "mutation { removeDonationWebhook }", json!({})), "removeDonationWebhook"), true);
    let deadline = rfc3339(now_ms() + 600_000);
    let second = data(&system.as_user(&ann, create, json!({ "d": deadline })), "createCampaign")["id"].as_str().unwrap().to_string();
    system.as_user(&ann, "mutation($c: ID!) { publishCampaign(id: $c) { status } }", json!({ "c": second }));
    let bob = system.login("bob@domain.io", "bob@domain.io: tulip quarry lantern");
    let late = data(&system.as_user(&bob, donate, json!({ "c": second, "m": "5", "k": true, "key": "late" })), "donate")["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(!receiver.received().iter().any(|r| r.id == format!("gift_{late}")), "a removed endpoint gets nothing");
    system.stop();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
