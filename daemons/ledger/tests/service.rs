//! The durable ledger on real files: the journal, then RocksDB, and start-up
//! replaying exactly what RocksDB lost.

mod common;

use std::path::Path;

use common::{random_command, setup, BTC, USD, USERS};

use ::ledger::service::{JournalEntry, LedgerService, ServiceError};
use ledger_api::spot::OrderRequest;
use ledger_api::{spot, wallet, AssetId, Command as LedgerCommand, Outcome};
use matching_core::{OrderKind, SelfTradePrevention, Side, TimeInForce};
use products::LedgerLimits;
use rand::{rngs::SmallRng, Rng, SeedableRng};

fn random_batch(service: &LedgerService, rng: &mut SmallRng, peer: u32) -> Vec<JournalEntry> {
    let size = rng.random_range(1..64);
    (0..size)
        .map(|k| {
            let peer_sequence = service.peer_applied(peer) + 1 + k;
            JournalEntry { peer, peer_sequence, at_ms: 1_700_000_000_000 + peer_sequence, command: random_command(rng, peer_sequence) }
        })
        .collect()
}

/// Runs `batches` random batches from `peer`, continuing its sequence.
fn drive(service: &mut LedgerService, rng: &mut SmallRng, peer: u32, batches: usize) {
    for _ in 0..batches {
        let entries = random_batch(service, rng, peer);
        let outcomes = service.execute(&entries).unwrap();
        assert_eq!(outcomes.len(), entries.len());
    }
}

/// As the engine runs: each batch is submitted while the one before is
/// still being written; nothing waits for a write until the end.
/// Returns the journal position of the last batch.
fn drive_pipelined(service: &mut LedgerService, rng: &mut SmallRng, peer: u32, batches: usize) -> u64 {
    let mut through = 0;
    for _ in 0..batches {
        let entries = random_batch(service, rng, peer);
        let submitted = service.submit(&entries).unwrap();
        assert_eq!(submitted.outcomes.len(), entries.len());
        assert!(service.journal_applied() < submitted.through, "RocksDB lags the batch just submitted");
        through = submitted.through;
    }
    through
}

fn started(dir: &Path) -> LedgerService {
    let (mut service, report) = LedgerService::open(dir, LedgerLimits::default()).unwrap();
    assert!(report.created);
    let entries: Vec<_> =
        setup().into_iter().enumerate().map(|(i, command)| JournalEntry { peer: 9, peer_sequence: i as u64 + 1, at_ms: 1, command }).collect();
    assert!(service.execute(&entries).unwrap().iter().all(Result::is_ok));
    service
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_restart_loads_the_same_state_without_replaying() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SmallRng::seed_from_u64(1);
    let (hash, applied, peer_applied) = {
        let mut service = started(dir.path());
        drive(&mut service, &mut rng, 1, 200);
        (service.ledger().state_hash(), service.journal_applied(), service.peer_applied(1))
    };
    assert!(peer_applied > 1_000);
    let (service, report) = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap();
    assert!(!report.created);
    assert_eq!((report.store_applied, report.replayed), (applied, 0));
    assert_eq!(service.ledger().state_hash(), hash);
    assert_eq!(service.peer_applied(1), peer_applied, "peers resume after their last applied command");
    assert_eq!(service.peer_applied(2), 0);
}

#[test]
fn the_journal_replays_what_rocksdb_lost() {
    let dir = tempfile::tempdir().unwrap();
    let old_db = tempfile::tempdir().unwrap();
    let mut rng = SmallRng::seed_from_u64(2);
    let (hash, applied, old_applied) = {
        let mut service = started(dir.path());
        drive(&mut service, &mut rng, 1, 50);
        let old_applied = service.journal_applied();
        drop(service);
        // RocksDB as a crash could leave it: missing every write after this point.
        copy_dir(&dir.path().join("db"), old_db.path());
        let (mut service, _) = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap();
        drive(&mut service, &mut rng, 1, 50);
        (service.ledger().state_hash(), service.journal_applied(), old_applied)
    };
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    copy_dir(old_db.path(), &dir.path().join("db"));
    let (service, report) = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap();
    assert_eq!(report.store_applied, old_applied);
    assert_eq!(report.replayed as u64, applied - old_applied, "exactly the lost tail is replayed");
    assert_eq!(service.ledger().state_hash(), hash, "replay rebuilds the same balances, orders and keys");
    service.ledger().check_invariants().unwrap();
    drop(service);

    // And with no database at all, the whole journal rebuilds it.
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    let (service, report) = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap();
    assert_eq!(report.replayed as u64, applied);
    assert_eq!(service.ledger().state_hash(), hash);
}

#[test]
fn a_database_without_its_journal_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SmallRng::seed_from_u64(3);
    {
        let mut service = started(dir.path());
        drive(&mut service, &mut rng, 1, 10);
    }
    std::fs::remove_dir_all(dir.path().join("journal")).unwrap();
    let error = LedgerService::open(dir.path(), LedgerLimits::default()).err().expect("must refuse");
    assert!(matches!(error, ServiceError::JournalMissing { .. }), "{error}");
    assert!(error.to_string().contains("Restore the journal directory"), "{error}");
    assert!(!dir.path().join("journal").exists(), "nothing was created in its place");
}

#[test]
fn damage_inside_acknowledged_journal_records_stops_start_up_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let old_db = tempfile::tempdir().unwrap();
    let mut rng = SmallRng::seed_from_u64(4);
    {
        let mut service = started(dir.path());
        drop(service);
        copy_dir(&dir.path().join("db"), old_db.path());
        service = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap().0;
        drive(&mut service, &mut rng, 1, 20);
    }
    // RocksDB lost its tail, so start-up needs the journal records past setup.
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    copy_dir(old_db.path(), &dir.path().join("db"));
    let segment = std::fs::read_dir(dir.path().join("journal")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = journal::segment_written_bytes(&segment).unwrap().len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    let error = LedgerService::open(dir.path(), LedgerLimits::default()).err().expect("damage must stop start-up").to_string();
    assert!(error.contains("corrupt") && error.contains("restore"), "{error}");
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "the damaged segment is left as it was for the operator");
}

#[test]
fn a_journal_older_than_the_database_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let old_journal = tempfile::tempdir().unwrap();
    let mut rng = SmallRng::seed_from_u64(5);
    let applied = {
        let mut service = started(dir.path());
        drop(service);
        copy_dir(&dir.path().join("journal"), old_journal.path());
        service = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap().0;
        drive(&mut service, &mut rng, 1, 10);
        service.journal_applied()
    };
    std::fs::remove_dir_all(dir.path().join("journal")).unwrap();
    copy_dir(old_journal.path(), &dir.path().join("journal"));
    let error = LedgerService::open(dir.path(), LedgerLimits::default()).err().expect("a journal from an older backup must not be appended to");
    match &error {
        ServiceError::StoreAheadOfJournal { store_applied, .. } => assert_eq!(*store_applied, applied),
        other => panic!("unexpected {other}"),
    }
    assert!(error.to_string().contains("same backup"), "{error}");
}

#[test]
fn journal_segments_are_removed_once_rocksdb_holds_them_and_restarts_still_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SmallRng::seed_from_u64(6);
    let (hash, applied) = {
        let mut service = started(dir.path());
        service.set_segment_records_max(500);
        drive(&mut service, &mut rng, 1, 100);
        assert!(service.journal_applied() > 2_000);
        assert!(service.journal_segments() <= 2, "old segments are removed, {} left", service.journal_segments());
        (service.ledger().state_hash(), service.journal_applied())
    };
    let segments = std::fs::read_dir(dir.path().join("journal")).unwrap().count();
    assert!((1..=2).contains(&segments), "{segments} segment files");
    reopens_and_needs_its_database(dir.path(), applied, hash);
}

/// A trimmed data directory reopens to `applied` and `hash`; without the
/// database, the trimmed journal cannot rebuild it, and start-up says so.
fn reopens_and_needs_its_database(dir: &Path, applied: u64, hash: [u8; 32]) {
    let (service, report) = LedgerService::open(dir, LedgerLimits::default()).unwrap();
    assert_eq!((report.store_applied, service.ledger().state_hash()), (applied, hash));
    drop(service);
    std::fs::remove_dir_all(dir.join("db")).unwrap();
    let error = LedgerService::open(dir, LedgerLimits::default()).err().expect("must refuse");
    assert!(matches!(error, ServiceError::DatabaseMissing { .. }), "{error}");
    assert!(error.to_string().contains("Restore the database directory"), "{error}");
}

/// Under a steady load the service never waits idle for a write: segments
/// are removed between two writes all the same.
#[test]
fn journal_segments_are_removed_while_batches_are_pipelined() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SmallRng::seed_from_u64(8);
    let (hash, applied) = {
        let mut service = started(dir.path());
        service.set_segment_records_max(500);
        let through = drive_pipelined(&mut service, &mut rng, 1, 100);
        assert!(through > 2_000);
        // Before any idle wait: the segment holding the batch in flight
        // stays until the next trim, the older ones are gone.
        let first_sequences: Vec<u64> = std::fs::read_dir(dir.path().join("journal"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().trim_start_matches("journal-").split('.').next().unwrap().parse().unwrap())
            .collect();
        assert!((2..=3).contains(&first_sequences.len()), "segments starting at {first_sequences:?}");
        assert!(*first_sequences.iter().min().unwrap() > 1_500, "segments starting at {first_sequences:?}");
        assert_eq!(service.wait_written().unwrap(), through);
        (service.ledger().state_hash(), through)
    };
    reopens_and_needs_its_database(dir.path(), applied, hash);
}

/// The child half of the kill -9 tests: run, report, wait to be killed.
/// Pipelined, it reports the last batch submitted, journaled but perhaps
/// not yet (or only partly) written to RocksDB when the kill comes.
fn child_process(dir: &Path, pipelined: bool) -> ! {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut service = started(dir);
    let through = if std::env::var_os(CHILD_CLOSE).is_some() {
        // An offering's close submitted and not yet written to RocksDB.
        let entries = offering_entries(&service);
        assert!(service.execute(&entries).unwrap().iter().all(Result::is_ok));
        let close = vec![close_entry(&service)];
        let submitted = service.submit(&close).unwrap();
        assert!(submitted.outcomes.iter().all(Result::is_ok));
        submitted.through
    } else if pipelined {
        drive_pipelined(&mut service, &mut rng, 1, 100)
    } else {
        drive(&mut service, &mut rng, 1, 100);
        service.journal_applied()
    };
    let hash: String = service.ledger().state_hash().iter().map(|b| format!("{b:02x}")).collect();
    println!("ACKED-THROUGH {through} {hash}");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::park();
    }
}

/// Runs this test binary's `test` in a child that drives a service in
/// `dir` and reports where it got; SIGKILLs it then (no destructor runs,
/// RocksDB never flushes) and returns the reported journal position and
/// state hash.
fn killed_child(test: &str, pipelined: bool, dir: &Path) -> (u64, String) {
    killed_child_in(test, pipelined, false, dir)
}

/// [`killed_child`], the child submitting an offering's close instead when `close`.
fn killed_child_in(test: &str, pipelined: bool, close: bool, dir: &Path) -> (u64, String) {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    if close {
        command.env(CHILD_CLOSE, "1");
    }
    let mut child = command
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_PIPELINED, if pipelined { "1" } else { "0" })
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    loop {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0, "the child exited before acknowledging");
        // libtest prints "test <name> ... " on the same line first.
        if let Some(at) = line.find("ACKED-THROUGH ") {
            line.drain(..at);
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut words = line.split_whitespace().skip(1);
    (words.next().unwrap().parse().unwrap(), words.next().unwrap().to_string())
}

const CHILD_DIR: &str = "MARIONETTE_LEDGER_CHILD_DIR";
const CHILD_CLOSE: &str = "MARIONETTE_LEDGER_CHILD_CLOSE";
const CHILD_PIPELINED: &str = "MARIONETTE_LEDGER_CHILD_PIPELINED";

fn run_as_child_if_asked() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child_process(Path::new(&dir), std::env::var_os(CHILD_PIPELINED).is_some_and(|v| v == "1"));
    }
}

/// Reopens `dir` after a kill and checks it holds exactly the reported state.
fn recovered_equals(dir: &Path, applied: u64, hash: &str) {
    let (service, report) = LedgerService::open(dir, LedgerLimits::default()).unwrap();
    assert!(report.replayed > 0, "RocksDB writes without its own log, so the journal must replay the unflushed batches");
    assert_eq!(report.store_applied + report.replayed as u64, applied);
    let reopened: String = service.ledger().state_hash().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(reopened, hash, "the state after recovery is the acknowledged one");
    service.ledger().check_invariants().unwrap();
}

#[test]
fn a_killed_process_loses_nothing_it_acknowledged() {
    run_as_child_if_asked();
    let dir = tempfile::tempdir().unwrap();
    let (applied, hash) = killed_child("a_killed_process_loses_nothing_it_acknowledged", false, dir.path());
    recovered_equals(dir.path(), applied, &hash);
}

/// Killed while RocksDB lags the journal (the last batch submitted, its
/// write perhaps under way): start-up replays what RocksDB had not written
/// from the journal, and nothing of it is applied twice.
#[test]
fn a_process_killed_while_rocksdb_lags_the_journal_recovers_every_submitted_batch() {
    run_as_child_if_asked();
    let dir = tempfile::tempdir().unwrap();
    let (submitted, hash) = killed_child("a_process_killed_while_rocksdb_lags_the_journal_recovers_every_submitted_batch", true, dir.path());
    recovered_equals(dir.path(), submitted, &hash);
}

/// Outcomes may be acknowledged once the write is waited for: from then on
/// RocksDB's readers (the daemon's query threads) see the batch.
#[test]
fn a_batch_is_visible_to_readers_once_its_write_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = started(dir.path());
    let before = ::ledger::schema::wallet::balances_of_user(service.store(), 1).unwrap();
    let next = service.peer_applied(9) + 1;
    let transfer = LedgerCommand::Wallet(wallet::Command::Transfer { from: 1, to: 2, asset: USD, amount: 7, key: "visible".into() });
    let submitted = service.submit(&[JournalEntry { peer: 9, peer_sequence: next, at_ms: 3, command: transfer }]).unwrap();
    assert!(matches!(submitted.outcomes[..], [Ok(Outcome::Wallet(wallet::Outcome::Transferred(_)))]));
    assert_eq!(service.wait_written().unwrap(), submitted.through);
    let after = ::ledger::schema::wallet::balances_of_user(service.store(), 1).unwrap();
    let usd = |balances: &[(AssetId, ledger_api::wallet::Balance)]| balances.iter().find(|(asset, _)| *asset == USD).unwrap().1.available;
    assert_eq!(usd(&after), usd(&before) - 7, "the write is visible");
    assert_eq!(service.journal_applied(), submitted.through);
    // Nothing in flight: waiting again returns at once, with the same position.
    assert_eq!(service.wait_written().unwrap(), submitted.through);
}

fn order_entry(peer_sequence: u64) -> JournalEntry {
    let request = OrderRequest {
        market: 1,
        side: Side::Buy,
        kind: OrderKind::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price: Some(1_000),
        quantity: 1,
        self_trade: SelfTradePrevention::CancelTaker,
        expires_at_ms: None,
        trigger: None,
        reduce_only: false,
    };
    JournalEntry { peer: 9, peer_sequence, at_ms: 2, command: LedgerCommand::Spot(spot::Command::PlaceOrder { user: 1, request, client_order_id: None }) }
}

#[test]
fn commands_for_matching_wait_in_a_durable_outbox_until_matching_confirms_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = started(dir.path());
    // The market's creation is forward 1; two orders are 2 and 3.
    let next = service.peer_applied(9) + 1;
    service.execute(&[order_entry(next), order_entry(next + 1)]).unwrap();
    let sequences = |s: &LedgerService| s.outbox_after(0).map(|(sequence, _)| *sequence).collect::<Vec<_>>();
    assert_eq!(sequences(&service), vec![1, 2, 3]);
    assert!(matches!(service.outbox_after(1).next(), Some((2, matching_core::Command::Place(order))) if order.user == 1));
    drop(service);

    // A crash before matching confirmed anything: all three are still there, numbered the same.
    let (mut service, _) = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap();
    assert_eq!(sequences(&service), vec![1, 2, 3]);
    service.confirm_forwarded(2);
    assert_eq!(sequences(&service), vec![3]);
    // The removal reaches RocksDB with the next batch; a new forward continues the numbering.
    service.execute(&[order_entry(next + 2)]).unwrap();
    assert_eq!(sequences(&service), vec![3, 4]);
    drop(service);
    let (service, _) = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap();
    assert_eq!(sequences(&service), vec![3, 4], "confirmed forwards are gone, the rest kept");
    assert_eq!(service.forwarded_last(), 4);
}

#[test]
fn a_batch_s_forwards_are_handed_out_only_once_its_journal_sync_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = started(dir.path());
    let next = service.peer_applied(9) + 1;
    let sequences = |s: &LedgerService| s.outbox_after(0).map(|(sequence, _)| *sequence).collect::<Vec<_>>();
    // The market's creation is forward 1, synced at start.
    assert_eq!(sequences(&service), vec![1]);
    let staged = service.begin(&[order_entry(next)]).unwrap();
    // Applied, in the outbox, but its sync is under way: matching must not see it.
    assert_eq!(service.forwarded_last(), 2);
    assert_eq!(sequences(&service), vec![1], "a forward of a batch still syncing is not handed out");
    // Meanwhile the batch before is waited for and acknowledged, as the engine does.
    service.wait_written().unwrap();
    assert_eq!(sequences(&service), vec![1]);
    service.finish(staged).unwrap();
    assert_eq!(sequences(&service), vec![1, 2], "synced, it may go to matching before RocksDB holds it");
    service.wait_written().unwrap();
    assert_eq!(sequences(&service), vec![1, 2]);
}

// ---- an offering's close under crashes ----

const ISSUER: u64 = USERS + 1;
/// The token's asset: the one after BTC and USD.
const TOKEN: AssetId = 3;
const T0: u64 = 1_803_945_600_000;
const DAY: u64 = 86_400_000;

/// An issuer, a token, an offering of 1,000 at 10.00 USD a token (USD has
/// six decimals here), and forty funded investors' subscriptions asking
/// 2,400 in all.
fn offering_entries(service: &LedgerService) -> Vec<JournalEntry> {
    use ledger_api::tokenization::{self as api, Claims, InvestorCategory, OfferingSpec, TokenSpec, TransferRules, VestingSpec};
    let tok = LedgerCommand::Tokenization;
    let mut commands = vec![
        tok(api::Command::SetIssuer { user: ISSUER, issuer: true }),
        tok(api::Command::SetOfferingFee { fee_bps: 200 }),
        tok(api::Command::SetListingFees { maker_fee_ppm: 1_000, taker_fee_ppm: 2_000 }),
    ];
    for user in 1..=40 {
        commands.push(LedgerCommand::Wallet(wallet::Command::Deposit { user, asset: USD, amount: 1_000_000_000, reference: format!("offering-{user}") }));
        let claims = Claims { country: 250, category: InvestorCategory::Retail, expires_at_ms: T0 + 400 * DAY, withholding_bps: 0 };
        commands.push(tok(api::Command::SetClaims { user, claims: Some(claims) }));
    }
    let token = TokenSpec {
        symbol: "ACME".into(),
        scale: 0,
        lot: 1,
        supply_max: 10_000,
        document_hash: ledger_api::operators::Digest([3; 32]),
        document_url: "https://acme.example/doc.pdf".into(),
        rules: TransferRules::default(),
    };
    commands.push(tok(api::Command::CreateToken { issuer: ISSUER, spec: Box::new(token) }));
    let offering = OfferingSpec {
        token: TOKEN,
        payment_asset: USD,
        price: 10_000_000,
        soft_cap: 500,
        hard_cap: 1_000,
        investor_min: 1,
        investor_max: 1_000,
        starts_at_ms: T0,
        ends_at_ms: T0 + 30 * DAY,
        cancel_cutoff_ms: DAY,
        vesting: Some(VestingSpec { start_ms: T0, period_ms: 40 * DAY, count: 3 }),
        listing: Some(api::Listing { quote_units_per_tick_lot: 1, tick_lot_scale: 0, base_units_per_lot: 1, price_band_ppm: 0 }),
    };
    commands.push(tok(api::Command::CreateOffering { issuer: ISSUER, spec: Box::new(offering) }));
    for user in 1..=40 {
        commands.push(tok(api::Command::Subscribe { investor: user, offering: 1, amount: 20 + 2 * user as i128 - 1, key: format!("s{user}") }));
    }
    let first = service.peer_applied(2) + 1;
    commands.into_iter().enumerate().map(|(i, command)| JournalEntry { peer: 2, peer_sequence: first + i as u64, at_ms: T0 + 1, command }).collect()
}

/// The ledger's own Tick at the offering's end.
fn close_entry(service: &LedgerService) -> JournalEntry {
    let command = LedgerCommand::Tokenization(ledger_api::tokenization::Command::Tick);
    JournalEntry { peer: 3, peer_sequence: service.peer_applied(3) + 1, at_ms: T0 + 30 * DAY, command }
}

/// After a close: nothing open, 1,000 issued pro rata, the escrow empty,
/// every asset summing to zero over every account, the issuer and the
/// house holding the 10,000.00 USD raised.
fn closed_as_expected(service: &LedgerService) {
    let ledger = service.ledger();
    ledger.check_invariants().unwrap();
    let tokenization = ledger.tokenization();
    assert!(tokenization.open_offerings().is_empty() && tokenization.open_subscriptions().is_empty());
    assert_eq!(tokenization.tokens()[&TOKEN].supply, 1_000);
    assert_eq!(ledger.kernel().balance(products::tokenization::issued(TOKEN)), -1_000);
    assert_eq!(ledger.kernel().balance(products::tokenization::escrow(1, USD)), 0);
    let raised = ledger.kernel().balance(products::wallet::available(ISSUER, USD)) + ledger.kernel().balance(products::house::revenue(USD));
    assert_eq!(raised, 1_000 * 10_000_000);
    let state = ledger.state();
    // The close lists the token, once, with the operators' listing fees.
    let listed: Vec<_> = state.spot.markets.values().filter(|market| market.base == TOKEN && market.quote == USD).collect();
    assert_eq!(listed.len(), 1, "{:?}", state.spot.markets);
    assert_eq!((listed[0].spec.maker_fee_ppm, listed[0].spec.taker_fee_ppm), (1_000, 2_000));
    for asset in [BTC, USD, TOKEN] {
        assert_eq!(state.kernel.balances.iter().filter(|(a, _)| a.asset == asset).map(|(_, b)| *b).sum::<i128>(), 0, "asset {asset}");
    }
}

/// RocksDB loses the close's write: the journal replays it, to the same state.
#[test]
fn an_offerings_close_lost_by_rocksdb_is_replayed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let before_close = tempfile::tempdir().unwrap();
    let hash = {
        let mut service = started(dir.path());
        let entries = offering_entries(&service);
        assert!(service.execute(&entries).unwrap().iter().all(Result::is_ok));
        drop(service);
        copy_dir(&dir.path().join("db"), before_close.path());
        let (mut service, _) = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap();
        let close = vec![close_entry(&service)];
        let outcomes = service.execute(&close).unwrap();
        assert!(
            matches!(&outcomes[0], Ok(Outcome::Tokenization(ledger_api::tokenization::Outcome::Ticked { offerings_closed, .. })) if offerings_closed == &vec![1])
        );
        closed_as_expected(&service);
        service.ledger().state_hash()
    };
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    copy_dir(before_close.path(), &dir.path().join("db"));
    let (service, report) = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap();
    assert_eq!(report.replayed, 1, "the close alone is replayed");
    assert_eq!(service.ledger().state_hash(), hash);
    closed_as_expected(&service);
}

/// Killed with the close journaled and RocksDB's write perhaps under way:
/// recovery holds the whole close, never part of it.
#[test]
fn a_process_killed_in_an_offerings_close_recovers_it_whole() {
    run_as_child_if_asked();
    let dir = tempfile::tempdir().unwrap();
    let (submitted, hash) = killed_child_in("a_process_killed_in_an_offerings_close_recovers_it_whole", true, true, dir.path());
    recovered_equals(dir.path(), submitted, &hash);
    let (service, _) = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap();
    closed_as_expected(&service);
}

/// After the offering's close, the issuer's dividend of 1,000.000001 USD
/// declared at 31 days, recorded at 32.
fn distribution_entries(service: &LedgerService) -> Vec<JournalEntry> {
    use ledger_api::tokenization::{self as api, DistributionKind, DistributionSpec};
    let spec = DistributionSpec {
        token: TOKEN,
        kind: DistributionKind::Dividend,
        payment_asset: USD,
        pool: 1_000_000_001,
        record_at_ms: T0 + 32 * DAY,
        claim_until_ms: T0 + 60 * DAY,
        default_withholding_bps: 3_000,
    };
    let declare = LedgerCommand::Tokenization(api::Command::Distribute { issuer: ISSUER, spec: Box::new(spec), key: "q1".into() });
    vec![JournalEntry { peer: 2, peer_sequence: service.peer_applied(2) + 1, at_ms: T0 + 31 * DAY, command: declare }]
}

fn record_entry(service: &LedgerService) -> JournalEntry {
    let command = LedgerCommand::Tokenization(ledger_api::tokenization::Command::Tick);
    JournalEntry { peer: 3, peer_sequence: service.peer_applied(3) + 1, at_ms: T0 + 32 * DAY, command }
}

/// After the record: the forty holders entitled to the pool pro rata by
/// what they hold (vesting included), the rounding's remainder back to the
/// issuer, the pool holding exactly what is owed, every asset summing to zero.
fn recorded_as_expected(service: &LedgerService) {
    let ledger = service.ledger();
    ledger.check_invariants().unwrap();
    let tokenization = ledger.tokenization();
    let distribution = &tokenization.open_distributions()[&1];
    assert_eq!(distribution.status, ledger_api::tokenization::DistributionStatus::Recorded);
    assert_eq!((distribution.holders, distribution.units), (40, 1_000));
    assert_eq!(distribution.entitled + distribution.remainder, 1_000_000_001);
    assert!(distribution.remainder < 40, "below one unit a holder: {distribution:?}");
    let owed: i128 = tokenization.unclaimed().map(|entitlement| entitlement.gross).sum();
    assert_eq!(owed, distribution.entitled);
    assert_eq!(ledger.kernel().balance(products::tokenization::pool(1, USD)), owed);
    for entitlement in tokenization.unclaimed() {
        assert_eq!(entitlement.gross, 1_000_000_001 * entitlement.units / 1_000, "{entitlement:?}");
    }
    let state = ledger.state();
    for asset in [BTC, USD, TOKEN] {
        assert_eq!(state.kernel.balances.iter().filter(|(a, _)| a.asset == asset).map(|(_, b)| *b).sum::<i128>(), 0, "asset {asset}");
    }
}

/// RocksDB loses a distribution's record: the journal replays it, to the same state.
#[test]
fn a_distributions_record_lost_by_rocksdb_is_replayed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let before_record = tempfile::tempdir().unwrap();
    let hash = {
        let mut service = started(dir.path());
        let entries = offering_entries(&service);
        assert!(service.execute(&entries).unwrap().iter().all(Result::is_ok));
        let close = vec![close_entry(&service)];
        assert!(service.execute(&close).unwrap().iter().all(Result::is_ok));
        let declare = distribution_entries(&service);
        assert!(service.execute(&declare).unwrap().iter().all(Result::is_ok));
        drop(service);
        copy_dir(&dir.path().join("db"), before_record.path());
        let (mut service, _) = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap();
        let record = vec![record_entry(&service)];
        let outcomes = service.execute(&record).unwrap();
        assert!(
            matches!(&outcomes[0], Ok(Outcome::Tokenization(ledger_api::tokenization::Outcome::Ticked { distributions_recorded, .. })) if distributions_recorded == &vec![1]),
            "{outcomes:?}"
        );
        recorded_as_expected(&service);
        service.ledger().state_hash()
    };
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    copy_dir(before_record.path(), &dir.path().join("db"));
    let (service, report) = LedgerService::open(dir.path(), LedgerLimits::default()).unwrap();
    assert_eq!(report.replayed, 1, "the record alone is replayed");
    assert_eq!(service.ledger().state_hash(), hash);
    recorded_as_expected(&service);
}
