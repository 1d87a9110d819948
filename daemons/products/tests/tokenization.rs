//! Tokenization through the ledger's dispatch: the worked examples of an
//! offering (oversubscribed and allocated pro rata, a missed target, the
//! cancel cut-off, a blocked country, vesting), then random offerings,
//! subscriptions, cancels, claims expiring and restarts, checked after
//! every step: every invariant, money and supply conserved over every
//! account (escrow, issued, vesting, the house's revenue included), and
//! every close within its caps and its subscriptions, allocated plus
//! refunded equal to what was held. Then a token's market through a real
//! matching engine: orders under the token's rules, open buys counted by
//! its limits, resting orders cancelled when rules or claims change.

use std::collections::BTreeMap;

use ledger_api::operators::{self as ops, Action, Thresholds};
use ledger_api::spot::{self, Market, OrderRequest, OrderStatus};
use ledger_api::tokenization::{
    self as api, Claims, ComplianceRefusal, Countries, InvestorCategory, OfferingSpec, OfferingStatus, SubscriptionStatus, TokenSpec, TransferRules,
    VestingSpec,
};
use ledger_api::{convert, house, wallet, AssetSpec, Command, LedgerError, Outcome};
use matching_core::{EngineLimits, Event, FastEngine, MarketSpec, OrderKind, SelfTradePrevention, Side, TimeInForce};
use products::house::revenue;
use products::tokenization::{escrow, issued, vesting};
use products::wallet::available;
use products::{Ledger, LedgerLimits};
use proptest::prelude::*;

type UserId = u64;
type Amount = i128;

const USD: u32 = 1;
const ACME: u32 = 2;
const ISSUER: UserId = 1;
const ALICE: UserId = 10;
const BOB: UserId = 11;
const CAROL: UserId = 12;
const DAVE: UserId = 13;
const ERIN: UserId = 14;
const OPERATOR: UserId = 100;
const FRANCE: u16 = 250;
const US: u16 = 840;
/// 2027-03-01T00:00:00Z, and a day.
const T0: u64 = 1_803_945_600_000;
const DAY: u64 = 86_400_000;
const DEPOSITED: Amount = 10_000_000; // 100,000.00 USD

fn ok(applied: products::Applied) -> Outcome {
    applied.outcome.unwrap_or_else(|error| panic!("refused: {error}"))
}

fn refused(applied: products::Applied) -> LedgerError {
    applied.outcome.expect_err("should be refused")
}

fn tok(command: api::Command) -> Command {
    Command::Tokenization(command)
}

fn claims(country: u16) -> Option<Claims> {
    Some(Claims { country, category: InvestorCategory::Retail, expires_at_ms: T0 + 365 * DAY, withholding_bps: 0 })
}

/// USD, an issuer, four investors with 100,000.00 USD each and claims (Dave in the US, the others in France).
fn ledger() -> Ledger {
    let mut ledger = Ledger::new(LedgerLimits::default());
    ok(ledger.apply(&Command::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }), T0));
    ok(ledger.apply(&tok(api::Command::SetIssuer { user: ISSUER, issuer: true }), T0));
    // The platform takes 2% of what offerings raise.
    ok(ledger.apply(&tok(api::Command::SetOfferingFee { fee_bps: 200 }), T0));
    for user in [ALICE, BOB, CAROL, DAVE] {
        ok(ledger.apply(&Command::Wallet(wallet::Command::Deposit { user, asset: USD, amount: DEPOSITED, reference: format!("d-{user}") }), T0));
        let country = if user == DAVE { US } else { FRANCE };
        ok(ledger.apply(&tok(api::Command::SetClaims { user, claims: claims(country) }), T0));
    }
    ledger
}

fn token_spec(rules: TransferRules) -> TokenSpec {
    TokenSpec {
        symbol: "ACME".into(),
        scale: 0,
        lot: 1,
        supply_max: 10_000,
        document_hash: ops::Digest([7; 32]),
        document_url: "https://acme.example/offering.pdf".into(),
        rules,
    }
}

/// 10.00 USD a token, target 500, hard cap 1,000, 1 to 1,000 each, 2% fee,
/// open from T0 for 30 days, cancels until 48 hours before the end.
fn offering_spec(vesting: Option<VestingSpec>) -> OfferingSpec {
    OfferingSpec {
        token: ACME,
        payment_asset: USD,
        price: 1_000,
        soft_cap: 500,
        hard_cap: 1_000,
        investor_min: 1,
        investor_max: 1_000,
        starts_at_ms: T0,
        ends_at_ms: T0 + 30 * DAY,
        cancel_cutoff_ms: api::CANCEL_CUTOFF_MS_DEFAULT,
        vesting,
        listing: None,
    }
}

fn with_offering(rules: TransferRules, vesting: Option<VestingSpec>) -> Ledger {
    let mut ledger = ledger();
    assert_eq!(
        ok(ledger.apply(&tok(api::Command::CreateToken { issuer: ISSUER, spec: Box::new(token_spec(rules)) }), T0)),
        Outcome::Tokenization(api::Outcome::TokenCreated(ACME))
    );
    assert_eq!(
        ok(ledger.apply(&tok(api::Command::CreateOffering { issuer: ISSUER, spec: Box::new(offering_spec(vesting)) }), T0)),
        Outcome::Tokenization(api::Outcome::OfferingCreated(1))
    );
    ledger
}

fn subscribe(ledger: &mut Ledger, investor: UserId, amount: Amount, at_ms: u64) -> products::Applied {
    ledger.apply(&tok(api::Command::Subscribe { investor, offering: 1, amount, key: format!("s-{investor}-{amount}") }), at_ms)
}

fn balance(ledger: &Ledger, user: UserId, asset: u32) -> Amount {
    ledger.kernel().balance(available(user, asset))
}

fn check(ledger: &Ledger) {
    assert_eq!(ledger.check_invariants(), Ok(()));
}

#[test]
fn an_oversubscribed_offering_is_allocated_pro_rata_with_its_remainders() {
    let mut ledger = with_offering(TransferRules::default(), None);
    for (investor, amount) in [(ALICE, 333), (BOB, 333), (CAROL, 500)] {
        ok(subscribe(&mut ledger, investor, amount, T0 + DAY));
    }
    // 11,660.00 USD in escrow, none of it the issuer's yet.
    assert_eq!(ledger.kernel().balance(escrow(1, USD)), 1_166_000);
    assert_eq!(balance(&ledger, ALICE, USD), DEPOSITED - 333_000);
    check(&ledger);
    // Before the end, a tick closes nothing.
    ok(ledger.apply(&tok(api::Command::Tick), T0 + 30 * DAY - 1));
    assert_eq!(ledger.tokenization().open_offerings().len(), 1);
    let closed = ok(ledger.apply(&tok(api::Command::Tick), T0 + 30 * DAY));
    assert_eq!(
        closed,
        Outcome::Tokenization(api::Outcome::Ticked { offerings_closed: vec![1], tranches_vested: 0, markets_listed: vec![], distributions_recorded: vec![] })
    );
    // 286, 285, 429 tokens; 2,860.00, 2,850.00, 4,290.00 paid; 470.00, 480.00, 710.00 back.
    for (investor, tokens, paid) in [(ALICE, 286, 286_000), (BOB, 285, 285_000), (CAROL, 429, 429_000)] {
        assert_eq!(balance(&ledger, investor, ACME), tokens, "user {investor}'s tokens");
        assert_eq!(balance(&ledger, investor, USD), DEPOSITED - paid, "user {investor}'s dollars");
    }
    // 10,000.00 raised: 9,800.00 to the issuer, the 2% fee (200.00) to the house.
    assert_eq!(balance(&ledger, ISSUER, USD), 980_000);
    assert_eq!(ledger.kernel().balance(revenue(USD)), 20_000);
    assert_eq!(ledger.kernel().balance(escrow(1, USD)), 0);
    assert_eq!(ledger.kernel().balance(issued(ACME)), -1_000);
    assert_eq!(ledger.tokenization().tokens()[&ACME].supply, 1_000);
    let holders: Vec<UserId> = ledger.kernel().holders(ACME).unwrap().collect();
    assert_eq!(holders, vec![ALICE, BOB, CAROL]);
    check(&ledger);
}

#[test]
fn a_missed_target_refunds_every_subscription_and_issues_nothing() {
    let mut ledger = with_offering(TransferRules::default(), None);
    ok(subscribe(&mut ledger, ALICE, 300, T0 + DAY));
    ok(subscribe(&mut ledger, BOB, 120, T0 + DAY));
    ok(ledger.apply(&tok(api::Command::Tick), T0 + 31 * DAY));
    for investor in [ALICE, BOB] {
        assert_eq!(balance(&ledger, investor, USD), DEPOSITED);
        assert_eq!(balance(&ledger, investor, ACME), 0);
    }
    assert_eq!(balance(&ledger, ISSUER, USD), 0);
    assert_eq!(ledger.kernel().balance(revenue(USD)), 0);
    assert_eq!(ledger.tokenization().tokens()[&ACME].supply, 0);
    assert!(ledger.tokenization().open_offerings().is_empty() && ledger.tokenization().open_subscriptions().is_empty());
    // A repeated request answers the subscription it made; a new one is told the offering closed; an offering never made is not found.
    assert_eq!(ok(subscribe(&mut ledger, ALICE, 300, T0 + 32 * DAY)), Outcome::Tokenization(api::Outcome::Subscribed(1)));
    assert_eq!(refused(subscribe(&mut ledger, ALICE, 400, T0 + 32 * DAY)), LedgerError::OfferingClosed(1));
    let never = tok(api::Command::Subscribe { investor: ALICE, offering: 2, amount: 100, key: "never".into() });
    assert_eq!(refused(ledger.apply(&never, T0 + 32 * DAY)), LedgerError::NotFound);
    check(&ledger);
}

#[test]
fn a_subscription_cancels_until_the_cut_off_and_not_from_it() {
    let mut ledger = with_offering(TransferRules::default(), None);
    let cutoff = T0 + 30 * DAY - api::CANCEL_CUTOFF_MS_DEFAULT;
    ok(subscribe(&mut ledger, ALICE, 100, T0 + DAY));
    ok(subscribe(&mut ledger, BOB, 100, T0 + DAY));
    ok(ledger.apply(&tok(api::Command::CancelSubscription { investor: ALICE, subscription: 1 }), cutoff - 1));
    assert_eq!(balance(&ledger, ALICE, USD), DEPOSITED);
    // Another's subscription is not theirs to cancel.
    assert_eq!(refused(ledger.apply(&tok(api::Command::CancelSubscription { investor: ALICE, subscription: 2 }), cutoff - 1)), LedgerError::NotFound);
    let error = refused(ledger.apply(&tok(api::Command::CancelSubscription { investor: BOB, subscription: 2 }), cutoff));
    assert_eq!(error, LedgerError::CancelCutoffPassed { subscription: 2, cutoff_ms: cutoff });
    assert_eq!(error.code(), "CANCEL_CUTOFF_PASSED");
    assert_eq!(balance(&ledger, BOB, USD), DEPOSITED - 100_000);
    assert_eq!(ledger.kernel().balance(escrow(1, USD)), 100_000);
    check(&ledger);
}

#[test]
fn a_blocked_country_is_refused_a_subscription_a_transfer_and_a_deposit() {
    let rules = TransferRules { countries: Countries::Deny(vec![US]), locked_until_ms: Some(T0 + 40 * DAY), ..TransferRules::default() };
    let mut ledger = with_offering(rules, None);
    let error = refused(subscribe(&mut ledger, DAVE, 10, T0 + DAY));
    assert_eq!(error, LedgerError::Compliance(ComplianceRefusal::CountryNotAllowed { user: DAVE, country: US }));
    assert_eq!(error.code(), "COMPLIANCE_REFUSED");
    assert_eq!(balance(&ledger, DAVE, USD), DEPOSITED, "nothing held");
    ok(subscribe(&mut ledger, ALICE, 600, T0 + DAY));
    ok(ledger.apply(&tok(api::Command::Tick), T0 + 30 * DAY));
    assert_eq!(balance(&ledger, ALICE, ACME), 600);
    let transfer = |to: UserId, amount: Amount, key: &str| Command::Wallet(wallet::Command::Transfer { from: ALICE, to, asset: ACME, amount, key: key.into() });
    // In the lock-up nobody sends; after it, not to the US.
    assert_eq!(
        refused(ledger.apply(&transfer(BOB, 10, "t1"), T0 + 31 * DAY)),
        LedgerError::Compliance(ComplianceRefusal::LockedUp { until_ms: T0 + 40 * DAY })
    );
    assert_eq!(
        refused(ledger.apply(&transfer(DAVE, 10, "t2"), T0 + 40 * DAY)),
        LedgerError::Compliance(ComplianceRefusal::CountryNotAllowed { user: DAVE, country: US })
    );
    ok(ledger.apply(&transfer(BOB, 10, "t3"), T0 + 40 * DAY));
    assert_eq!((balance(&ledger, ALICE, ACME), balance(&ledger, BOB, ACME), balance(&ledger, DAVE, ACME)), (590, 10, 0));
    // A withdrawal in the lock-up is refused; a token is never deposited.
    let withdrawal = Command::Wallet(wallet::Command::RequestWithdrawal { user: ALICE, asset: ACME, amount: 1, destination: "x".into(), key: "w".into() });
    assert!(matches!(refused(ledger.apply(&withdrawal, T0 + 31 * DAY)), LedgerError::Compliance(ComplianceRefusal::LockedUp { .. })));
    let deposit = Command::Wallet(wallet::Command::Deposit { user: ALICE, asset: ACME, amount: 1, reference: "d".into() });
    assert_eq!(refused(ledger.apply(&deposit, T0 + 41 * DAY)), LedgerError::Compliance(ComplianceRefusal::NotDepositable));
    check(&ledger);
}

#[test]
fn expired_claims_refuse_a_subscription_and_its_allocation_at_the_close() {
    let mut ledger = with_offering(TransferRules::default(), None);
    let short = Some(Claims { country: FRANCE, category: InvestorCategory::Retail, expires_at_ms: T0 + 10 * DAY, withholding_bps: 0 });
    ok(ledger.apply(&tok(api::Command::SetClaims { user: BOB, claims: short }), T0));
    ok(ledger.apply(&tok(api::Command::SetClaims { user: CAROL, claims: short }), T0));
    ok(subscribe(&mut ledger, ALICE, 600, T0 + DAY));
    ok(subscribe(&mut ledger, BOB, 600, T0 + DAY));
    assert_eq!(refused(subscribe(&mut ledger, CAROL, 5, T0 + 11 * DAY)), LedgerError::Compliance(ComplianceRefusal::NotVerified(CAROL)));
    // At the close Bob's claims have expired: refunded in full, Alice alone allocated (600 of 1,000).
    ok(ledger.apply(&tok(api::Command::Tick), T0 + 30 * DAY));
    assert_eq!((balance(&ledger, ALICE, ACME), balance(&ledger, BOB, ACME)), (600, 0));
    assert_eq!(balance(&ledger, BOB, USD), DEPOSITED);
    check(&ledger);
}

#[test]
fn max_balance_and_max_holders_count_open_subscriptions() {
    let rules = TransferRules { holders_max: Some(2), balance_max: Some(500), ..TransferRules::default() };
    let mut ledger = with_offering(rules, None);
    ok(subscribe(&mut ledger, ALICE, 500, T0 + DAY));
    assert_eq!(
        refused(subscribe(&mut ledger, BOB, 501, T0 + DAY)),
        LedgerError::Compliance(ComplianceRefusal::BalanceMax { user: BOB, balance_max: 500, would_hold: 501 })
    );
    ok(subscribe(&mut ledger, BOB, 100, T0 + DAY));
    assert_eq!(refused(subscribe(&mut ledger, CAROL, 1, T0 + DAY)), LedgerError::Compliance(ComplianceRefusal::HoldersMax { holders_max: 2 }));
    // Bob cancels: a place frees up for Carol.
    ok(ledger.apply(&tok(api::Command::CancelSubscription { investor: BOB, subscription: 2 }), T0 + 2 * DAY));
    ok(subscribe(&mut ledger, CAROL, 1, T0 + 2 * DAY));
    ok(ledger.apply(&tok(api::Command::Tick), T0 + 30 * DAY));
    // After the close, holders are counted from the balances: Alice and Carol.
    let to_bob = Command::Wallet(wallet::Command::Transfer { from: ALICE, to: BOB, asset: ACME, amount: 1, key: "t".into() });
    assert_eq!(refused(ledger.apply(&to_bob, T0 + 31 * DAY)), LedgerError::Compliance(ComplianceRefusal::HoldersMax { holders_max: 2 }));
    let to_carol = Command::Wallet(wallet::Command::Transfer { from: ALICE, to: CAROL, asset: ACME, amount: 1, key: "t".into() });
    let sent = ok(ledger.apply(&to_carol, T0 + 31 * DAY));
    // The rules change: a repeat of the same request answers what it did; a new one is refused.
    let only_alice = TransferRules { allowlist: Some(vec![ALICE]), ..TransferRules::default() };
    ok(ledger.apply(&tok(api::Command::SetRules { issuer: ISSUER, token: ACME, rules: only_alice }), T0 + 32 * DAY));
    assert_eq!(ok(ledger.apply(&to_carol, T0 + 32 * DAY)), sent);
    let again = Command::Wallet(wallet::Command::Transfer { from: ALICE, to: CAROL, asset: ACME, amount: 1, key: "t2".into() });
    assert_eq!(refused(ledger.apply(&again, T0 + 32 * DAY)), LedgerError::Compliance(ComplianceRefusal::NotAllowlisted(CAROL)));
    // A withdrawal's rejection gives the tokens back only if the rules let them back.
    let withdraw = |user: UserId, key: &str| {
        Command::Wallet(wallet::Command::RequestWithdrawal { user, asset: ACME, amount: 1, destination: "x".into(), key: key.into() })
    };
    ok(ledger.apply(&withdraw(ALICE, "w1"), T0 + 32 * DAY));
    ok(ledger.apply(
        &tok(api::Command::SetRules { issuer: ISSUER, token: ACME, rules: TransferRules { allowlist: Some(vec![CAROL]), ..TransferRules::default() } }),
        T0 + 32 * DAY,
    ));
    let reject = Command::Wallet(wallet::Command::DecideWithdrawal { id: 1, approve: false });
    assert_eq!(refused(ledger.apply(&reject, T0 + 33 * DAY)), LedgerError::Compliance(ComplianceRefusal::NotAllowlisted(ALICE)));
    ok(ledger.apply(&Command::Wallet(wallet::Command::DecideWithdrawal { id: 1, approve: true }), T0 + 33 * DAY));
    check(&ledger);
}

#[test]
fn vesting_tranches_are_locked_until_their_time() {
    let vesting_spec = VestingSpec { start_ms: T0 + 31 * DAY, period_ms: 30 * DAY, count: 3 };
    let mut ledger = with_offering(TransferRules::default(), Some(vesting_spec));
    for (investor, amount) in [(ALICE, 333), (BOB, 333), (CAROL, 500)] {
        ok(subscribe(&mut ledger, investor, amount, T0 + DAY));
    }
    ok(ledger.apply(&tok(api::Command::Tick), T0 + 30 * DAY));
    // Carol's 429 in three tranches of 143, none free.
    assert_eq!(balance(&ledger, CAROL, ACME), 0);
    assert_eq!(ledger.kernel().balance(vesting(CAROL, ACME)), 429);
    assert!(ledger.kernel().is_holder(ACME, CAROL), "vesting tokens are held");
    let send = |amount: Amount, key: &str| Command::Wallet(wallet::Command::Transfer { from: CAROL, to: ALICE, asset: ACME, amount, key: key.into() });
    assert!(matches!(refused(ledger.apply(&send(1, "a"), T0 + 31 * DAY)), LedgerError::InsufficientFunds { .. }));
    assert_eq!(ledger.tokenization().next_tick(), Some(T0 + 61 * DAY));
    let vested = ok(ledger.apply(&tok(api::Command::Tick), T0 + 61 * DAY));
    assert_eq!(
        vested,
        Outcome::Tokenization(api::Outcome::Ticked { offerings_closed: vec![], tranches_vested: 3, markets_listed: vec![], distributions_recorded: vec![] })
    );
    assert_eq!(balance(&ledger, CAROL, ACME), 143);
    assert_eq!(ledger.kernel().balance(vesting(CAROL, ACME)), 286);
    assert!(matches!(refused(ledger.apply(&send(144, "b"), T0 + 62 * DAY)), LedgerError::InsufficientFunds { .. }));
    ok(ledger.apply(&send(143, "c"), T0 + 62 * DAY));
    // Alice's 286: 95, 95, 96.
    ok(ledger.apply(&tok(api::Command::Tick), T0 + 121 * DAY));
    assert_eq!(ledger.kernel().balance(vesting(ALICE, ACME)), 0);
    assert_eq!(balance(&ledger, ALICE, ACME), 286 + 143);
    assert_eq!(ledger.tokenization().next_tick(), None);
    check(&ledger);
}

#[test]
fn only_issuers_make_tokens_and_only_theirs_sell_them() {
    let mut ledger = ledger();
    let spec = token_spec(TransferRules::default());
    assert!(matches!(refused(ledger.apply(&tok(api::Command::CreateToken { issuer: ALICE, spec: Box::new(spec.clone()) }), T0)), LedgerError::Forbidden(_)));
    ok(ledger.apply(&tok(api::Command::CreateToken { issuer: ISSUER, spec: Box::new(spec) }), T0));
    assert!(matches!(
        refused(ledger.apply(&tok(api::Command::CreateOffering { issuer: ALICE, spec: Box::new(offering_spec(None)) }), T0)),
        LedgerError::Forbidden(_)
    ));
    // More than the maximum supply in open offerings, a price off the lot, a fee above the most.
    let too_big = OfferingSpec { hard_cap: 10_001, ..offering_spec(None) };
    assert!(matches!(refused(ledger.apply(&tok(api::Command::CreateOffering { issuer: ISSUER, spec: Box::new(too_big) }), T0)), LedgerError::BadInput(_)));
    assert!(matches!(refused(ledger.apply(&tok(api::Command::SetOfferingFee { fee_bps: 2_001 }), T0)), LedgerError::BadInput(_)));
    assert_eq!(Command::Tokenization(api::Command::SetOfferingFee { fee_bps: 100 }).operator_action(), Some(ledger_api::operators::ActionKind::Issuer));
    ok(ledger.apply(&tok(api::Command::CreateOffering { issuer: ISSUER, spec: Box::new(OfferingSpec { hard_cap: 9_000, ..offering_spec(None) }) }), T0));
    let second = OfferingSpec { hard_cap: 1_001, soft_cap: 1, ..offering_spec(None) };
    assert!(matches!(refused(ledger.apply(&tok(api::Command::CreateOffering { issuer: ISSUER, spec: Box::new(second) }), T0)), LedgerError::BadInput(_)));
    assert!(matches!(
        refused(ledger.apply(&tok(api::Command::Subscribe { investor: ISSUER, offering: 1, amount: 10, key: "own".into() }), T0 + DAY)),
        LedgerError::Forbidden(_)
    ));
    let investor_max = OfferingSpec { investor_max: 9_001, hard_cap: 9_000, ..offering_spec(None) };
    assert!(matches!(refused(ledger.apply(&tok(api::Command::CreateOffering { issuer: ISSUER, spec: Box::new(investor_max) }), T0)), LedgerError::BadInput(_)));
    // A token moves only under its rules: no house funding (supply from nowhere), no conversion pair, no order book yet.
    let fund = Command::House(house::Command::Fund { asset: ACME, amount: 10, reference: "f".into() });
    assert_eq!(refused(ledger.apply(&fund, T0)), LedgerError::Compliance(ComplianceRefusal::NotDepositable));
    let pair = convert::PairSpec {
        base: ACME,
        quote: USD,
        price: convert::PriceSource::Set { quote_units: 1, base_units: 1 },
        spread_bps: 0,
        fee_bps: 0,
        base_min: 1,
        base_max: 10,
        base_step: 1,
        quote_ttl_ms: 5_000,
        paused: false,
        exposure_max_base: 10,
        exposure_max_quote: 10,
    };
    assert!(matches!(refused(ledger.apply(&Command::Convert(convert::Command::SetPair(pair)), T0)), LedgerError::BadInput(_)));
    assert_eq!(ledger.kernel().balance(issued(ACME)), 0);
    check(&ledger);
}

#[test]
fn the_tier_of_the_operators_counts_and_follows_a_restart() {
    let rules = TransferRules { tier_min: 2, ..TransferRules::default() };
    let mut ledger = with_offering(rules, None);
    assert_eq!(
        refused(subscribe(&mut ledger, ALICE, 10, T0 + DAY)),
        LedgerError::Compliance(ComplianceRefusal::TierTooLow { user: ALICE, tier: 0, tier_min: 2 })
    );
    ok(ledger.apply(&Command::Operators(ops::Command::Bootstrap { operator: OPERATOR }), T0));
    ok(ledger.apply(&Command::Operators(ops::Command::Configure(Thresholds::all(1))), T0));
    ok(ledger.apply(&Command::Operators(ops::Command::Propose { operator: OPERATOR, action: Action::SetTier { user: ALICE, tier: 2 } }), T0));
    let mut ledger = Ledger::restore(LedgerLimits::default(), ledger.state());
    ok(subscribe(&mut ledger, ALICE, 10, T0 + DAY));
    check(&ledger);
}

// ---- random offerings ----

/// ACME against USD: a tick of 0.01 USD on a lot of one token, 0.1% fees.
const ACME_USD: u32 = 7;

/// ACME allocated in full (Alice 500, Bob 300, Carol 200), then Alice
/// sells 100 back to the issuer, whose treasury is not counted.
fn allocated_and_bought_back() -> Ledger {
    let mut ledger = with_offering(TransferRules::default(), None);
    for (investor, amount) in [(ALICE, 500), (BOB, 300), (CAROL, 200)] {
        ok(subscribe(&mut ledger, investor, amount, T0 + DAY));
    }
    ok(ledger.apply(&tok(api::Command::Tick), T0 + 30 * DAY));
    let buyback = Command::Wallet(wallet::Command::Transfer { from: ALICE, to: ISSUER, asset: ACME, amount: 100, key: "buyback".into() });
    ok(ledger.apply(&buyback, T0 + 30 * DAY));
    ledger
}

fn dividend(pool: Amount) -> api::DistributionSpec {
    api::DistributionSpec {
        token: ACME,
        kind: api::DistributionKind::Dividend,
        payment_asset: USD,
        pool,
        record_at_ms: T0 + 45 * DAY,
        claim_until_ms: T0 + 75 * DAY,
        default_withholding_bps: 3_000,
    }
}

#[test]
fn a_distribution_pays_the_holders_at_its_record_less_their_withholding() {
    let mut ledger = allocated_and_bought_back();
    // Alice's tax rate is 12.8%; Bob owes none; Carol's claims lapse before the record: 30%.
    let rated = |country, expires_at_ms, withholding_bps| Some(Claims { country, category: InvestorCategory::Retail, expires_at_ms, withholding_bps });
    ok(ledger.apply(&tok(api::Command::SetClaims { user: ALICE, claims: rated(FRANCE, T0 + 365 * DAY, 1_280) }), T0 + 31 * DAY));
    ok(ledger.apply(&tok(api::Command::SetClaims { user: CAROL, claims: rated(FRANCE, T0 + 40 * DAY, 0) }), T0 + 31 * DAY));
    let issuer_before = balance(&ledger, ISSUER, USD);
    let declare = |spec, key: &str| tok(api::Command::Distribute { issuer: ISSUER, spec: Box::new(spec), key: key.into() });

    // Only the token's issuer distributes, now or later, in money it has.
    assert!(matches!(
        refused(ledger.apply(&tok(api::Command::Distribute { issuer: ALICE, spec: Box::new(dividend(100_000)), key: "a".into() }), T0 + 31 * DAY)),
        LedgerError::Forbidden(_)
    ));
    let past = api::DistributionSpec { record_at_ms: T0 + 30 * DAY, ..dividend(100_000) };
    assert!(matches!(refused(ledger.apply(&declare(past, "past"), T0 + 31 * DAY)), LedgerError::BadInput(_)));
    assert!(matches!(refused(ledger.apply(&declare(dividend(issuer_before + 1), "much"), T0 + 31 * DAY)), LedgerError::InsufficientFunds { .. }));
    check(&ledger);

    // 1,000.00 USD, paid in with the declaration.
    assert_eq!(ok(ledger.apply(&declare(dividend(100_000), "q3"), T0 + 31 * DAY)), Outcome::Tokenization(api::Outcome::Distributed(1)));
    // A retried request pays nothing twice; its key with another pool is refused.
    assert_eq!(ok(ledger.apply(&declare(dividend(100_000), "q3"), T0 + 31 * DAY)), Outcome::Tokenization(api::Outcome::Distributed(1)));
    assert_eq!(refused(ledger.apply(&declare(dividend(90_000), "q3"), T0 + 31 * DAY)), LedgerError::Duplicate);
    assert_eq!(balance(&ledger, ISSUER, USD), issuer_before - 100_000);
    assert_eq!(ledger.kernel().balance(products::tokenization::pool(1, USD)), 100_000);
    assert_eq!(ledger.tokenization().next_tick(), Some(T0 + 45 * DAY));
    let claim = |holder| tok(api::Command::ClaimDistribution { holder, distribution: 1 });
    assert!(matches!(refused(ledger.apply(&claim(ALICE), T0 + 44 * DAY)), LedgerError::NotClaimable { .. }), "nothing before the record");
    // Bob sells 100 to Alice before the record: she holds 500 at it, he 200.
    ok(ledger.apply(&Command::Wallet(wallet::Command::Transfer { from: BOB, to: ALICE, asset: ACME, amount: 100, key: "b".into() }), T0 + 44 * DAY));
    ledger.take_changes();

    let ticked = ok(ledger.apply(&tok(api::Command::Tick), T0 + 45 * DAY));
    let Outcome::Tokenization(api::Outcome::Ticked { distributions_recorded, .. }) = ticked else { panic!("{ticked:?}") };
    assert_eq!(distributions_recorded, vec![1]);
    // 900 held outside the treasury: Alice 500/900 of 1,000.00 is 555.555… → 555.55, Bob 200/900
    // and Carol 200/900 222.22 each; 0.01 back to the issuer.
    let changes = ledger.take_changes().tokenization;
    let entitlements: BTreeMap<UserId, api::Entitlement> = changes.entitlements.iter().map(|e| (e.holder, *e)).collect();
    assert_eq!(entitlements.keys().copied().collect::<Vec<_>>(), vec![ALICE, BOB, CAROL], "the issuer's treasury is not entitled");
    let figures = |user: UserId| {
        (entitlements[&user].units, entitlements[&user].gross, entitlements[&user].withholding_bps, entitlements[&user].withheld, entitlements[&user].net)
    };
    assert_eq!(figures(ALICE), (500, 55_555, 1_280, 7_111, 48_444));
    assert_eq!(figures(BOB), (200, 22_222, 0, 0, 22_222));
    assert_eq!(figures(CAROL), (200, 22_222, 3_000, 6_666, 15_556));
    let recorded = changes.distributions.last().expect("recorded").clone();
    assert_eq!(
        (recorded.status, recorded.holders, recorded.units, recorded.entitled, recorded.remainder),
        (api::DistributionStatus::Recorded, 3, 900, 99_999, 1)
    );
    assert_eq!(balance(&ledger, ISSUER, USD), issuer_before - 100_000 + 1);
    check(&ledger);

    // Transfers after the record change nothing owed.
    ok(ledger.apply(&Command::Wallet(wallet::Command::Transfer { from: CAROL, to: BOB, asset: ACME, amount: 200, key: "c".into() }), T0 + 46 * DAY));
    let alice_before = balance(&ledger, ALICE, USD);
    assert_eq!(
        ok(ledger.apply(&claim(ALICE), T0 + 50 * DAY)),
        Outcome::Tokenization(api::Outcome::DistributionClaimed { distribution: 1, net: 48_444, withheld: 7_111 })
    );
    assert_eq!(balance(&ledger, ALICE, USD), alice_before + 48_444);
    assert_eq!(ledger.kernel().balance(products::tokenization::withheld(USD)), 7_111);
    assert!(matches!(refused(ledger.apply(&claim(ALICE), T0 + 51 * DAY)), LedgerError::NotClaimable { .. }), "claimed once");
    assert!(matches!(refused(ledger.apply(&claim(ISSUER), T0 + 51 * DAY)), LedgerError::NotClaimable { .. }), "the treasury has no part");
    let reclaim = tok(api::Command::ReclaimDistribution { issuer: ISSUER, distribution: 1 });
    assert_eq!(refused(ledger.apply(&reclaim, T0 + 74 * DAY)), LedgerError::ClaimPeriodOpen { distribution: 1, until_ms: T0 + 75 * DAY });
    // A restart keeps what is owed.
    ledger = Ledger::restore(LedgerLimits::default(), ledger.state());
    check(&ledger);
    ok(ledger.apply(&claim(CAROL), T0 + 60 * DAY));
    assert!(matches!(refused(ledger.apply(&claim(BOB), T0 + 75 * DAY)), LedgerError::NotClaimable { .. }), "the claims ended");
    let issuer_before_reclaim = balance(&ledger, ISSUER, USD);
    assert_eq!(ok(ledger.apply(&reclaim, T0 + 75 * DAY)), Outcome::Tokenization(api::Outcome::DistributionReclaimed { distribution: 1, amount: 22_222 }));
    assert_eq!(balance(&ledger, ISSUER, USD), issuer_before_reclaim + 22_222);
    assert_eq!(ledger.kernel().balance(products::tokenization::pool(1, USD)), 0);
    assert!(ledger.tokenization().open_distributions().is_empty());
    assert!(matches!(refused(ledger.apply(&reclaim, T0 + 76 * DAY)), LedgerError::NotClaimable { .. }), "reclaimed once");
    // The pool, to the unit: paid, withheld, reclaimed and the remainder.
    assert_eq!(48_444 + 15_556 + 7_111 + 6_666 + 22_222 + 1, 100_000);
    assert_eq!(ledger.kernel().balance(products::tokenization::withheld(USD)), 7_111 + 6_666);
    check(&ledger);
}

/// The token's issuer proposes an agent's action as the ledger's operators do; an operator approves it.
fn agent(ledger: &mut Ledger, proposer: UserId, command: api::Command, at_ms: u64) -> Result<api::Outcome, LedgerError> {
    let action = Action::Ledger(ledger_api::ActionCommand::Tokenization(command));
    match ledger.apply(&Command::Operators(ops::Command::Propose { operator: proposer, action }), at_ms).outcome? {
        Outcome::Operators(ops::Outcome::Proposal(proposal)) => {
            assert_eq!((proposal.approvals.clone(), proposal.required, proposal.kind), (vec![proposer], 2, ops::ActionKind::TokenAgent));
            match ledger.apply(&Command::Operators(ops::Command::Approve { operator: OPERATOR, proposal: proposal.id }), at_ms).outcome? {
                Outcome::Operators(ops::Outcome::Executed { proposal, outcome: ledger_api::ActionOutcome::Tokenization(outcome) }) => {
                    assert_eq!(proposal.approvals, vec![proposer, OPERATOR]);
                    Ok(outcome)
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_token_agent_freezes_forces_and_recovers_under_four_eyes() {
    let vesting_spec = VestingSpec { start_ms: T0 + 31 * DAY, period_ms: 30 * DAY, count: 3 };
    let mut ledger = with_offering(TransferRules::default(), Some(vesting_spec));
    ok(ledger.apply(&Command::Operators(ops::Command::Bootstrap { operator: OPERATOR }), T0));
    for (investor, amount) in [(ALICE, 333), (BOB, 333), (CAROL, 500)] {
        ok(subscribe(&mut ledger, investor, amount, T0 + DAY));
    }
    ok(ledger.apply(&tok(api::Command::Tick), T0 + 30 * DAY));
    ok(ledger.apply(&tok(api::Command::Tick), T0 + 61 * DAY));
    // The first tranches vested: Carol 143 of 429 free, Bob 95 of 285.
    assert_eq!((balance(&ledger, CAROL, ACME), balance(&ledger, BOB, ACME), ledger.kernel().balance(vesting(BOB, ACME))), (143, 95, 190));
    let at = T0 + 62 * DAY;
    let held_before = products::tokenization::held_by(ledger.kernel(), CAROL, ACME);

    // Neither a holder nor another token's issuer proposes an agent's action; nor anyone for themselves.
    let freeze = |amount| api::Command::FreezeTokens { token: ACME, holder: CAROL, amount };
    let propose =
        |operator, command| Command::Operators(ops::Command::Propose { operator, action: Action::Ledger(ledger_api::ActionCommand::Tokenization(command)) });
    assert!(matches!(refused(ledger.apply(&propose(ALICE, freeze(100)), at)), LedgerError::Forbidden(_)));
    let to_issuer = api::Command::ForceTransfer { token: ACME, from: CAROL, to: ISSUER, amount: 10 };
    assert!(matches!(refused(ledger.apply(&propose(ISSUER, to_issuer), at)), LedgerError::Forbidden(_)), "the issuer would benefit");

    // A partial freeze: 100 of Carol's 143, still hers, neither sent nor sold.
    assert_eq!(agent(&mut ledger, ISSUER, freeze(100), at), Ok(api::Outcome::TokensFrozen { token: ACME, holder: CAROL, frozen: 100 }));
    assert_eq!((balance(&ledger, CAROL, ACME), ledger.kernel().balance(products::tokenization::frozen(CAROL, ACME))), (43, 100));
    assert_eq!(products::tokenization::held_by(ledger.kernel(), CAROL, ACME), held_before, "frozen tokens are still held");
    let send = |amount, key: &str| Command::Wallet(wallet::Command::Transfer { from: CAROL, to: ALICE, asset: ACME, amount, key: key.into() });
    assert!(matches!(refused(ledger.apply(&send(44, "a"), at)), LedgerError::InsufficientFunds { needed: 44, available: 43 }));
    assert_eq!(agent(&mut ledger, ISSUER, freeze(44), at), Err(LedgerError::InsufficientFunds { needed: 44, available: 43 }), "only what is free freezes");
    check(&ledger);

    // A forced transfer takes what is free first, then what is frozen; to a verified investor only.
    let force = |to, amount| api::Command::ForceTransfer { token: ACME, from: CAROL, to, amount };
    assert_eq!(agent(&mut ledger, ISSUER, force(ERIN, 120), at), Err(LedgerError::Compliance(ComplianceRefusal::NotVerified(ERIN))));
    assert_eq!(agent(&mut ledger, ISSUER, force(ALICE, 144), at), Err(LedgerError::InsufficientFunds { needed: 144, available: 143 }));
    let alice_before = balance(&ledger, ALICE, ACME);
    assert_eq!(agent(&mut ledger, ISSUER, force(ALICE, 120), at), Ok(api::Outcome::ForcedTransfer { token: ACME, amount: 120, from_frozen: 77 }));
    assert_eq!((balance(&ledger, CAROL, ACME), ledger.kernel().balance(products::tokenization::frozen(CAROL, ACME))), (0, 23));
    assert_eq!(balance(&ledger, ALICE, ACME), alice_before + 120);
    // An operator unfreezes the rest.
    let unfreeze = api::Command::UnfreezeTokens { token: ACME, holder: CAROL, amount: 23 };
    assert_eq!(agent(&mut ledger, OPERATOR + 1, unfreeze.clone(), at).unwrap_err(), LedgerError::Forbidden("user 101 is not an operator".into()));
    assert_eq!(agent(&mut ledger, ISSUER, unfreeze, at), Ok(api::Outcome::TokensFrozen { token: ACME, holder: CAROL, frozen: 0 }));
    assert_eq!(balance(&ledger, CAROL, ACME), 23);
    check(&ledger);

    // Bob lost his account; Erin's is his new one, verified. 10 of his free tokens were frozen.
    ok(ledger.apply(&tok(api::Command::FreezeTokens { token: ACME, holder: BOB, amount: 10 }), at));
    let recover = api::Command::RecoverTokens { token: ACME, lost: BOB, to: ERIN };
    assert_eq!(agent(&mut ledger, ISSUER, recover.clone(), at), Err(LedgerError::Compliance(ComplianceRefusal::NotVerified(ERIN))));
    ok(ledger.apply(&tok(api::Command::SetClaims { user: ERIN, claims: claims(FRANCE) }), at));
    assert_eq!(agent(&mut ledger, ISSUER, recover.clone(), at), Ok(api::Outcome::TokensRecovered { token: ACME, amount: 285, tranches: 2 }));
    let accounts = |user| {
        let kernel = ledger.kernel();
        (kernel.balance(available(user, ACME)), kernel.balance(products::tokenization::frozen(user, ACME)), kernel.balance(vesting(user, ACME)))
    };
    assert_eq!(accounts(BOB), (0, 0, 0));
    assert_eq!(accounts(ERIN), (85, 10, 190), "frozen stays frozen, tranches keep vesting");
    assert!(!ledger.kernel().is_holder(ACME, BOB));
    assert!(!ledger.tokenization().unvested().any(|tranche| tranche.investor == BOB));
    let moved: Vec<_> = ledger.take_changes().tokenization.tranches_moved.iter().map(|tranche| (tranche.investor, tranche.index)).collect();
    assert_eq!(moved, vec![(BOB, 1), (BOB, 2)]);
    assert!(matches!(agent(&mut ledger, ISSUER, recover, at), Err(LedgerError::BadInput(_))), "nothing left to recover");
    check(&ledger);

    // After a restart the recovered tranches vest to the new account on their schedule.
    let mut ledger = Ledger::restore(LedgerLimits::default(), ledger.state());
    ok(ledger.apply(&tok(api::Command::Tick), T0 + 91 * DAY));
    assert_eq!(accounts_of(&ledger, ERIN), (85 + 95, 10, 95));
    check(&ledger);
}

#[test]
fn an_issuer_cannot_fill_the_operators_queue() {
    let mut ledger = allocated_and_bought_back();
    ok(ledger.apply(&Command::Operators(ops::Command::Bootstrap { operator: OPERATOR }), T0));
    let propose = |operator, amount| {
        let action = Action::Ledger(ledger_api::ActionCommand::Tokenization(api::Command::FreezeTokens { token: ACME, holder: BOB, amount }));
        Command::Operators(ops::Command::Propose { operator, action })
    };
    for amount in 1..=products::AGENT_PROPOSALS_PENDING_MAX as Amount {
        assert!(matches!(ok(ledger.apply(&propose(ISSUER, amount), T0 + 31 * DAY)), Outcome::Operators(ops::Outcome::Proposal(_))));
    }
    let refusal = refused(ledger.apply(&propose(ISSUER, 100), T0 + 31 * DAY));
    assert!(matches!(refusal, LedgerError::LimitReached(_)), "{refusal:?}");
    // The operators' own proposals still go in, and an approval frees the issuer's room.
    assert!(matches!(ok(ledger.apply(&propose(OPERATOR, 100), T0 + 31 * DAY)), Outcome::Operators(ops::Outcome::Proposal(_))));
    ok(ledger.apply(&Command::Operators(ops::Command::Approve { operator: OPERATOR, proposal: 1 }), T0 + 31 * DAY));
    assert!(matches!(ok(ledger.apply(&propose(ISSUER, 101), T0 + 31 * DAY)), Outcome::Operators(ops::Outcome::Proposal(_))));
    check(&ledger);
}

fn accounts_of(ledger: &Ledger, user: UserId) -> (Amount, Amount, Amount) {
    let kernel = ledger.kernel();
    (kernel.balance(available(user, ACME)), kernel.balance(products::tokenization::frozen(user, ACME)), kernel.balance(vesting(user, ACME)))
}

fn acme_usd() -> Market {
    Market {
        base: ACME,
        quote: USD,
        base_units_per_lot: 1,
        trading: true,
        spec: MarketSpec {
            id: ACME_USD,
            quote_units_per_tick_lot: 1,
            tick_lot_scale: 0,
            maker_fee_ppm: 1_000,
            taker_fee_ppm: 1_000,
            price_ticks_max: 100_000_000,
            quantity_lots_max: 1_000_000,
            price_band_ppm: 0,
        },
    }
}

fn limit(side: Side, price: u64, quantity: u64) -> OrderRequest {
    OrderRequest {
        market: ACME_USD,
        side,
        kind: OrderKind::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price: Some(price),
        quantity,
        self_trade: SelfTradePrevention::CancelTaker,
        expires_at_ms: None,
        trigger: None,
        reduce_only: false,
    }
}

/// The ledger and a matching engine wired as the daemons are, ACME listed
/// after an offering allocated Alice 400 and Bob 300 (Carol and Dave hold none).
struct Exchange {
    ledger: Ledger,
    matching: FastEngine,
    sequence: u64,
    now: u64,
}

impl Exchange {
    fn new(rules: TransferRules) -> Exchange {
        let mut ledger = with_offering(rules, None);
        ok(subscribe(&mut ledger, ALICE, 400, T0 + DAY));
        ok(subscribe(&mut ledger, BOB, 300, T0 + DAY));
        let now = T0 + 30 * DAY;
        ok(ledger.apply(&tok(api::Command::Tick), now));
        let mut exchange = Exchange { ledger, matching: FastEngine::new(EngineLimits::default()), sequence: 0, now };
        let applied = exchange.ledger.apply(&Command::Spot(spot::Command::CreateMarket(acme_usd())), now);
        ok(applied.clone());
        exchange.forward(applied.forward);
        exchange
    }

    /// Runs commands for matching through it and applies its events.
    fn forward(&mut self, commands: impl IntoIterator<Item = matching_core::Command>) -> Vec<Event> {
        let mut events = Vec::new();
        for command in commands {
            self.matching.execute(&command, &mut events);
        }
        if !events.is_empty() {
            self.sequence += 1;
            ok(self.ledger.apply(&Command::Spot(spot::Command::ApplyMatching { sequence: self.sequence, events: events.clone() }), self.now));
        }
        check(&self.ledger);
        conserved(&self.ledger).expect("money and supply conserved");
        events
    }

    fn apply(&mut self, command: Command) -> Result<Outcome, LedgerError> {
        let applied = self.ledger.apply(&command, self.now);
        let outcome = applied.outcome.clone();
        self.forward(applied.forward.into_iter().chain(applied.forward_more));
        outcome
    }

    fn place(&mut self, user: UserId, request: OrderRequest) -> Result<u64, LedgerError> {
        match self.apply(Command::Spot(spot::Command::PlaceOrder { user, request, client_order_id: None }))? {
            Outcome::Spot(spot::Outcome::OrderPlaced(id)) => Ok(id),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn status(&mut self, order: u64) -> OrderStatus {
        if let Some(record) = self.ledger.spot().order(order) {
            return record.status;
        }
        let closed = self.ledger.take_changes().spot.closed_orders;
        closed.iter().find(|record| record.order.order_id == order).map(|record| record.status).expect("closed in the last changes")
    }
}

#[test]
fn a_tokens_market_checks_every_order_against_its_rules() {
    let rules = TransferRules { countries: Countries::Deny(vec![US]), balance_max: Some(500), ..TransferRules::default() };
    let mut exchange = Exchange::new(rules.clone());
    // A token is a market's base, never its quote, nor a perpetual's.
    let inverse = Market { base: USD, quote: ACME, spec: MarketSpec { id: 8, ..acme_usd().spec }, ..acme_usd() };
    assert!(matches!(exchange.apply(Command::Spot(spot::Command::CreateMarket(inverse))), Err(LedgerError::BadInput(_))));
    // Dave is in the US: refused before anything is held.
    let error = exchange.place(DAVE, limit(Side::Buy, 1_000, 10)).unwrap_err();
    assert_eq!(error, LedgerError::Compliance(ComplianceRefusal::CountryNotAllowed { user: DAVE, country: US }));
    assert_eq!(balance(&exchange.ledger, DAVE, USD), DEPOSITED);
    // Carol may hold 500: a buy of 300 rests, then 201 more would pass it with the 300 on their way.
    let carol_buy = exchange.place(CAROL, limit(Side::Buy, 1_000, 300)).unwrap();
    assert_eq!(
        exchange.place(CAROL, limit(Side::Buy, 1_000, 201)).unwrap_err(),
        LedgerError::Compliance(ComplianceRefusal::BalanceMax { user: CAROL, balance_max: 500, would_hold: 501 })
    );
    // Nor can a transfer to her pass it, nor an amend of her buy.
    let transfer = Command::Wallet(wallet::Command::Transfer { from: ALICE, to: CAROL, asset: ACME, amount: 201, key: "t".into() });
    assert!(matches!(exchange.apply(transfer), Err(LedgerError::Compliance(ComplianceRefusal::BalanceMax { .. }))));
    let amend = Command::Spot(spot::Command::AmendOrder { user: CAROL, order_id: carol_buy, price: 1_000, quantity: 501 });
    assert!(matches!(exchange.apply(amend), Err(LedgerError::Compliance(ComplianceRefusal::BalanceMax { .. }))));
    // Alice sells 100 into it: 1,000.00 USD less the 0.1% fee each way.
    let alice_sell = exchange.place(ALICE, limit(Side::Sell, 1_000, 100)).unwrap();
    assert_eq!(exchange.status(alice_sell), OrderStatus::Filled);
    assert_eq!((balance(&exchange.ledger, ALICE, ACME), balance(&exchange.ledger, CAROL, ACME)), (300, 100));
    assert_eq!(balance(&exchange.ledger, ALICE, USD), DEPOSITED - 400_000 + 100_000 - 100);
    // Carol holds 100 with 200 on their way: 201 more is still refused, 200 is not.
    assert!(exchange.place(CAROL, limit(Side::Buy, 990, 201)).is_err());
    let carol_low = exchange.place(CAROL, limit(Side::Buy, 990, 200)).unwrap();
    assert_eq!(exchange.status(carol_low), OrderStatus::Open);
    // France closed too: Carol's resting buys are cancelled and their money freed; Alice's sell still rests.
    let bob_sell = exchange.place(BOB, limit(Side::Sell, 1_100, 50)).unwrap();
    let france_closed = TransferRules { countries: Countries::Deny(vec![FRANCE, US]), ..rules };
    let applied = exchange.ledger.apply(&tok(api::Command::SetRules { issuer: ISSUER, token: ACME, rules: france_closed }), exchange.now);
    ok(applied.clone());
    let cancelled: Vec<u64> = applied
        .forward_more
        .iter()
        .map(|command| match command {
            matching_core::Command::Cancel { order_id, user: CAROL, .. } => *order_id,
            other => panic!("only Carol's buys are cancelled: {other:?}"),
        })
        .collect();
    assert_eq!(cancelled, vec![carol_buy, carol_low]);
    exchange.forward(applied.forward_more);
    assert_eq!(exchange.status(carol_buy), OrderStatus::Cancelled);
    assert_eq!(exchange.status(bob_sell), OrderStatus::Open, "a sell's sender is not checked for a country");
    assert_eq!(exchange.ledger.kernel().balance(products::wallet::locked(CAROL, USD)), 0);
    assert_eq!(balance(&exchange.ledger, CAROL, USD), DEPOSITED - 100_000 - 100);
    // A lock-up stops sells from then on and cancels Bob's resting one.
    let locked = TransferRules { locked_until_ms: Some(exchange.now + DAY), ..TransferRules::default() };
    let applied = exchange.ledger.apply(&tok(api::Command::SetRules { issuer: ISSUER, token: ACME, rules: locked }), exchange.now);
    ok(applied.clone());
    assert_eq!(applied.forward_more, vec![matching_core::Command::Cancel { market: ACME_USD, order_id: bob_sell, user: BOB }]);
    exchange.forward(applied.forward_more);
    assert_eq!(exchange.status(bob_sell), OrderStatus::Cancelled);
    assert_eq!(balance(&exchange.ledger, BOB, ACME), 300, "his tokens are free again");
    let error = exchange.place(ALICE, limit(Side::Sell, 1_000, 1)).unwrap_err();
    assert_eq!(error, LedgerError::Compliance(ComplianceRefusal::LockedUp { until_ms: exchange.now + DAY }));
    // Buys still come in: Carol (France open again) may buy.
    exchange.place(CAROL, limit(Side::Buy, 1_000, 1)).unwrap();
    check(&exchange.ledger);
}

#[test]
fn open_buys_count_among_holders_and_end_with_their_claims() {
    // Alice and Bob hold; at most three holders, the issuer not counted.
    let mut exchange = Exchange::new(TransferRules { holders_max: Some(3), ..TransferRules::default() });
    // Carol's buy makes her the third; Dave, a fourth, is refused while it is open.
    let carol_buy = exchange.place(CAROL, limit(Side::Buy, 1_000, 10)).unwrap();
    assert_eq!(exchange.place(DAVE, limit(Side::Buy, 1_000, 10)).unwrap_err(), LedgerError::Compliance(ComplianceRefusal::HoldersMax { holders_max: 3 }));
    let transfer = Command::Wallet(wallet::Command::Transfer { from: ALICE, to: DAVE, asset: ACME, amount: 1, key: "t".into() });
    assert_eq!(exchange.apply(transfer.clone()).unwrap_err(), LedgerError::Compliance(ComplianceRefusal::HoldersMax { holders_max: 3 }));
    // Her buy expires when her claims do (a year after T0), and a restart keeps all of it.
    assert_eq!(exchange.ledger.spot().order(carol_buy).unwrap().expires_at_ms, Some(T0 + 365 * DAY));
    exchange.ledger = Ledger::restore(LedgerLimits::default(), exchange.ledger.state());
    check(&exchange.ledger);
    assert!(exchange.place(DAVE, limit(Side::Buy, 1_000, 10)).is_err(), "the open buy still counts after a restart");
    // Her claims removed, her buy is cancelled; then Dave may come in.
    let applied = exchange.ledger.apply(&tok(api::Command::SetClaims { user: CAROL, claims: None }), exchange.now);
    ok(applied.clone());
    assert_eq!(applied.forward_more, vec![matching_core::Command::Cancel { market: ACME_USD, order_id: carol_buy, user: CAROL }]);
    exchange.forward(applied.forward_more);
    assert_eq!(exchange.status(carol_buy), OrderStatus::Cancelled);
    exchange.apply(transfer).unwrap();
    // Claims back for Carol, expiring in an hour: her new buy expires with them, by the ledger's clock.
    let hour = 3_600_000;
    let claims = Some(Claims { country: FRANCE, category: InvestorCategory::Retail, expires_at_ms: exchange.now + hour, withholding_bps: 0 });
    ok(exchange.ledger.apply(&tok(api::Command::SetClaims { user: CAROL, claims }), exchange.now));
    let alice_buy = exchange.place(ALICE, limit(Side::Buy, 900, 5)).unwrap();
    assert_eq!(exchange.place(CAROL, limit(Side::Buy, 1_000, 5)).unwrap_err(), LedgerError::Compliance(ComplianceRefusal::HoldersMax { holders_max: 3 }));
    // Dave sells his one token to Alice's buy and leaves the holders: now Carol fits.
    exchange.place(DAVE, limit(Side::Sell, 900, 1)).unwrap();
    assert_eq!(balance(&exchange.ledger, DAVE, ACME), 0);
    let carol_buy = exchange.place(CAROL, limit(Side::Buy, 1_000, 5)).unwrap();
    assert_eq!(exchange.ledger.spot().order(carol_buy).unwrap().expires_at_ms, Some(exchange.now + hour));
    exchange.now += hour;
    let applied = exchange.ledger.apply(&Command::Spot(spot::Command::ExpireOrders), exchange.now);
    ok(applied.clone());
    exchange.forward(applied.forward_more);
    assert_eq!(exchange.status(carol_buy), OrderStatus::Expired);
    assert_eq!(exchange.status(alice_buy), OrderStatus::PartiallyFilled, "a holder's buy without an expiry rests on");
    // Fewer holders allowed than counted: the newcomers' buys go, the holders' stay.
    let claims = Some(Claims { country: FRANCE, category: InvestorCategory::Retail, expires_at_ms: exchange.now + DAY, withholding_bps: 0 });
    ok(exchange.ledger.apply(&tok(api::Command::SetClaims { user: CAROL, claims }), exchange.now));
    let carol_buy = exchange.place(CAROL, limit(Side::Buy, 1_000, 5)).unwrap();
    let applied = exchange.ledger.apply(
        &tok(api::Command::SetRules { issuer: ISSUER, token: ACME, rules: TransferRules { holders_max: Some(2), ..TransferRules::default() } }),
        exchange.now,
    );
    ok(applied.clone());
    assert_eq!(applied.forward_more, vec![matching_core::Command::Cancel { market: ACME_USD, order_id: carol_buy, user: CAROL }]);
    exchange.forward(applied.forward_more);
    assert_eq!(exchange.status(alice_buy), OrderStatus::PartiallyFilled);
    check(&exchange.ledger);
}

#[test]
fn an_allocated_offering_lists_its_token_at_the_close() {
    let mut ledger = ledger();
    ok(ledger.apply(&tok(api::Command::SetListingFees { maker_fee_ppm: 1_000, taker_fee_ppm: 2_000 }), T0));
    ok(ledger.apply(&tok(api::Command::CreateToken { issuer: ISSUER, spec: Box::new(token_spec(TransferRules::default())) }), T0));
    let listing = api::Listing { quote_units_per_tick_lot: 1, tick_lot_scale: 0, base_units_per_lot: 1, price_band_ppm: 100_000 };
    let offer = |ledger: &mut Ledger, starts_at_ms: u64, listing: Option<api::Listing>| {
        let spec = OfferingSpec { starts_at_ms, ends_at_ms: starts_at_ms + 30 * DAY, listing, ..offering_spec(None) };
        ledger.apply(&tok(api::Command::CreateOffering { issuer: ISSUER, spec: Box::new(spec) }), starts_at_ms)
    };
    // A lot of no tokens lists nothing: refused when the offering is made.
    assert!(matches!(refused(offer(&mut ledger, T0, Some(api::Listing { base_units_per_lot: 0, ..listing }))), LedgerError::BadInput(_)));
    // Below its target, an offering lists nothing.
    ok(offer(&mut ledger, T0, Some(listing)));
    ok(subscribe(&mut ledger, ALICE, 100, T0 + DAY));
    let applied = ledger.apply(&tok(api::Command::Tick), T0 + 30 * DAY);
    assert_eq!(
        ok(applied.clone()),
        Outcome::Tokenization(api::Outcome::Ticked { offerings_closed: vec![1], tranches_vested: 0, markets_listed: vec![], distributions_recorded: vec![] })
    );
    assert!(applied.forward_more.is_empty());
    // Allocated, it lists ACME against USD with the operators' fees, and matching is told.
    ok(offer(&mut ledger, T0 + 30 * DAY, Some(listing)));
    ok(ledger.apply(&tok(api::Command::Subscribe { investor: ALICE, offering: 2, amount: 600, key: "s2".into() }), T0 + 31 * DAY));
    let applied = ledger.apply(&tok(api::Command::Tick), T0 + 60 * DAY);
    assert_eq!(
        ok(applied.clone()),
        Outcome::Tokenization(api::Outcome::Ticked { offerings_closed: vec![2], tranches_vested: 0, markets_listed: vec![1], distributions_recorded: vec![] })
    );
    let market = *ledger.spot().market(1).expect("listed");
    assert_eq!((market.base, market.quote, market.base_units_per_lot, market.trading), (ACME, USD, 1, true));
    assert_eq!((market.spec.maker_fee_ppm, market.spec.taker_fee_ppm, market.spec.price_band_ppm), (1_000, 2_000, 100_000));
    assert_eq!(applied.forward_more, vec![matching_core::Command::AddMarket(market.spec)]);
    assert_eq!(ledger.take_changes().spot.markets, vec![market], "stored");
    check(&ledger);
    // A later offering of the token lists nothing more; after a restart, the market is still the token's.
    ok(offer(&mut ledger, T0 + 60 * DAY, Some(listing)));
    ok(ledger.apply(&tok(api::Command::Subscribe { investor: BOB, offering: 3, amount: 600, key: "s3".into() }), T0 + 61 * DAY));
    let applied = ledger.apply(&tok(api::Command::Tick), T0 + 90 * DAY);
    assert_eq!(
        ok(applied.clone()),
        Outcome::Tokenization(api::Outcome::Ticked { offerings_closed: vec![3], tranches_vested: 0, markets_listed: vec![], distributions_recorded: vec![] })
    );
    assert!(applied.forward_more.is_empty());
    let mut ledger = Ledger::restore(LedgerLimits::default(), ledger.state());
    let (stranger, request) = (200, OrderRequest { market: 1, ..limit(Side::Buy, 1_000, 1) });
    let error = refused(ledger.apply(&Command::Spot(spot::Command::PlaceOrder { user: stranger, request, client_order_id: None }), T0 + 90 * DAY));
    assert_eq!(error, LedgerError::Compliance(ComplianceRefusal::NotVerified(stranger)), "the listed market is under the token's rules");
    check(&ledger);
}

#[derive(Clone, Debug)]
enum Step {
    Subscribe {
        investor: usize,
        lots: Amount,
    },
    Cancel {
        pick: usize,
    },
    /// Claims that end at this day.
    Expire {
        investor: usize,
        day: u64,
    },
    Wait {
        days: u64,
    },
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0usize..4, 1i128..400).prop_map(|(investor, lots)| Step::Subscribe { investor, lots }),
        2 => (0usize..8).prop_map(|pick| Step::Cancel { pick }),
        1 => (0usize..4, 0u64..40).prop_map(|(investor, day)| Step::Expire { investor, day }),
        2 => (0u64..8).prop_map(|days| Step::Wait { days }),
        1 => Just(Step::Restart),
    ]
}

/// Every asset sums to zero over every account, and the token's supply is
/// what its holders hold.
fn conserved(ledger: &Ledger) -> Result<(), TestCaseError> {
    let state = ledger.state();
    for asset in [USD, ACME] {
        prop_assert_eq!(state.kernel.balances.iter().filter(|(a, _)| a.asset == asset).map(|(_, b)| *b).sum::<Amount>(), 0);
    }
    let held: Amount = state.kernel.balances.iter().filter(|(a, _)| a.asset == ACME && a.user_id().is_some()).map(|(_, b)| *b).sum();
    prop_assert_eq!(held, ledger.tokenization().tokens()[&ACME].supply);
    prop_assert_eq!(-ledger.kernel().balance(issued(ACME)), held);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random subscriptions, cancels and expiring claims until the close,
    /// restarts anywhere: after every step the invariants and conservation
    /// hold; at the close no allocation passes the hard cap or its
    /// subscription, each subscription's payment is paid plus refunded to
    /// the unit, what was paid is the lots times the price, and the issuer
    /// and the house share the proceeds.
    #[test]
    fn offerings_conserve_money_and_supply_and_stay_within_their_caps(
        steps in proptest::collection::vec(step(), 1..40),
        soft in 1i128..600, extra in 0i128..600, vests in any::<bool>(),
    ) {
        let investors = [ALICE, BOB, CAROL, DAVE];
        let mut ledger = ledger();
        ok(ledger.apply(&tok(api::Command::CreateToken { issuer: ISSUER, spec: Box::new(token_spec(TransferRules::default())) }), T0));
        let vesting_spec = vests.then_some(VestingSpec { start_ms: T0, period_ms: 20 * DAY, count: 3 });
        let spec = OfferingSpec { soft_cap: soft, hard_cap: soft + extra, investor_max: (soft + extra).min(400), ..offering_spec(vesting_spec) };
        ok(ledger.apply(&tok(api::Command::CreateOffering { issuer: ISSUER, spec: Box::new(spec.clone()) }), T0));
        let mut now = T0 + 1;
        let mut subscribed: BTreeMap<u64, Amount> = BTreeMap::new();
        // Each subscription's and the offering's latest record, from the changes storage would write.
        let mut records: BTreeMap<u64, api::Subscription> = BTreeMap::new();
        let mut offering = None;
        let mut collect = |ledger: &mut Ledger| {
            let changes = ledger.take_changes().tokenization;
            records.extend(changes.subscriptions.into_iter().map(|s| (s.id, s)));
            if let Some(last) = changes.offerings.into_iter().last() {
                offering = Some(last);
            }
        };
        for (index, step) in steps.iter().enumerate() {
            let before = ledger.state();
            let applied = match step {
                Step::Subscribe { investor, lots } => {
                    let investor = investors[*investor];
                    let applied = ledger.apply(&tok(api::Command::Subscribe { investor, offering: 1, amount: *lots, key: format!("k{index}") }), now);
                    if let Ok(Outcome::Tokenization(api::Outcome::Subscribed(id))) = &applied.outcome {
                        subscribed.insert(*id, lots * 1_000);
                    }
                    applied
                }
                Step::Cancel { pick } => {
                    let open: Vec<_> = ledger.tokenization().open_subscriptions().values().cloned().collect();
                    let Some(subscription) = open.get(pick % open.len().max(1)) else { continue };
                    ledger.apply(&tok(api::Command::CancelSubscription { investor: subscription.investor, subscription: subscription.id }), now)
                }
                Step::Expire { investor, day } => {
                    let claims = Some(Claims { country: FRANCE, category: InvestorCategory::Retail, expires_at_ms: T0 + day * DAY , withholding_bps: 0 });
                    ledger.apply(&tok(api::Command::SetClaims { user: investors[*investor], claims }), now)
                }
                Step::Wait { days } => {
                    now += days * DAY;
                    ledger.apply(&tok(api::Command::Tick), now)
                }
                Step::Restart => {
                    collect(&mut ledger);
                    ledger = Ledger::restore(LedgerLimits::default(), ledger.state());
                    continue;
                }
            };
            if applied.outcome.is_err() {
                prop_assert_eq!(&ledger.state(), &before, "a refused {:?} changed something", step);
            }
            prop_assert_eq!(ledger.check_invariants(), Ok(()), "after {:?}", step);
            conserved(&ledger)?;
            collect(&mut ledger);
        }
        // The close if it has not come, and every tranche.
        now = now.max(spec.ends_at_ms) + 100 * DAY;
        ok(ledger.apply(&tok(api::Command::Tick), now));
        collect(&mut ledger);
        prop_assert_eq!(ledger.check_invariants(), Ok(()));
        conserved(&ledger)?;
        let offering = offering.expect("the offering was created");
        prop_assert!(offering.status != OfferingStatus::Open);
        prop_assert_eq!(records.len(), subscribed.len());
        let closed: Vec<&api::Subscription> = records.values().filter(|s| s.status != SubscriptionStatus::Cancelled).collect();
        let allocated: Amount = closed.iter().map(|s| s.allocated).sum();
        prop_assert!(allocated <= spec.hard_cap);
        for subscription in records.values() {
            prop_assert!(subscription.status != SubscriptionStatus::Open);
            prop_assert!(subscription.allocated <= subscription.amount);
            prop_assert_eq!(subscription.paid + subscription.refunded, subscription.payment);
            prop_assert_eq!(subscription.paid, subscription.allocated * 1_000);
            prop_assert_eq!(subscribed[&subscription.id], subscription.payment);
        }
        let asked: Amount = closed.iter().map(|s| s.amount).sum();
        if offering.status == OfferingStatus::Refunded {
            prop_assert_eq!(allocated, 0);
        } else if closed.iter().all(|s| s.status == SubscriptionStatus::Allocated) {
            prop_assert_eq!(allocated, asked.min(spec.hard_cap));
        }
        prop_assert_eq!(offering.raised, allocated * 1_000);
        prop_assert_eq!(offering.issued, allocated);
        prop_assert_eq!(balance(&ledger, ISSUER, USD) + ledger.kernel().balance(revenue(USD)), offering.raised);
        prop_assert_eq!(ledger.kernel().balance(revenue(USD)), offering.raised * 200 / 10_000);
        prop_assert_eq!(ledger.tokenization().tokens()[&ACME].supply, allocated);
        // Every tranche vested a hundred days on: all of it free.
        prop_assert_eq!(ledger.tokenization().unvested().count(), 0);
        for investor in investors {
            prop_assert_eq!(ledger.kernel().balance(vesting(investor, ACME)), 0);
        }
    }
}

#[derive(Clone, Debug)]
enum TradeStep {
    Order { user: usize, buy: bool, price: u64, quantity: u64 },
    Oco { user: usize, buy: bool, quantity: u64 },
    Amend { pick: usize, price: u64, quantity: u64 },
    Cancel { pick: usize },
    Claims { user: usize, hours: u64 },
    Wait { hours: u64 },
    Restart,
}

fn trade_step() -> impl Strategy<Value = TradeStep> {
    prop_oneof![
        8 => (0usize..5, any::<bool>(), 95u64..105, 1u64..250).prop_map(|(user, buy, price, quantity)| TradeStep::Order { user, buy, price: price * 10, quantity }),
        2 => (0usize..5, any::<bool>(), 1u64..250).prop_map(|(user, buy, quantity)| TradeStep::Oco { user, buy, quantity }),
        2 => (0usize..16, 95u64..105, 1u64..300).prop_map(|(pick, price, quantity)| TradeStep::Amend { pick, price: price * 10, quantity }),
        2 => (0usize..16).prop_map(|pick| TradeStep::Cancel { pick }),
        1 => (0usize..5, 0u64..48).prop_map(|(user, hours)| TradeStep::Claims { user, hours }),
        2 => (1u64..24).prop_map(|hours| TradeStep::Wait { hours }),
        1 => Just(TradeStep::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random orders on a token's market through a real matching engine,
    /// claims expiring and renewed, the clock expiring orders, restarts:
    /// after every step the invariants hold, money and supply are
    /// conserved, and no trade broke the token's rules: Erin, in the US,
    /// never holds it, nobody holds more than 500, nor are there more than
    /// three holders (Alice and Bob, and one of Carol and Dave), nor does
    /// anyone without valid claims gain any. Limit orders, OCO lists (whose
    /// stop fires at the last price) and amends.
    #[test]
    fn trades_on_a_tokens_market_never_break_its_rules(steps in proptest::collection::vec(trade_step(), 1..60)) {
        let users = [ALICE, BOB, CAROL, DAVE, ERIN];
        let rules = TransferRules { countries: Countries::Deny(vec![US]), balance_max: Some(500), holders_max: Some(3), ..TransferRules::default() };
        let mut exchange = Exchange::new(rules);
        let year = Claims { country: FRANCE, category: InvestorCategory::Retail, expires_at_ms: T0 + 365 * DAY , withholding_bps: 0 };
        exchange.apply(tok(api::Command::SetClaims { user: DAVE, claims: Some(year) })).unwrap();
        exchange.apply(tok(api::Command::SetClaims { user: ERIN, claims: Some(Claims { country: US, ..year }) })).unwrap();
        exchange.apply(Command::Wallet(wallet::Command::Deposit { user: ERIN, asset: USD, amount: DEPOSITED, reference: "d-erin".into() })).unwrap();
        let held = |exchange: &Exchange, user: UserId| {
            balance(&exchange.ledger, user, ACME) + exchange.ledger.kernel().balance(products::wallet::locked(user, ACME))
        };
        for step in &steps {
            let before: Vec<Amount> = users.iter().map(|user| held(&exchange, *user)).collect();
            match *step {
                TradeStep::Order { user, buy, price, quantity } => {
                    let side = if buy { Side::Buy } else { Side::Sell };
                    let _ = exchange.place(users[user], limit(side, price, quantity));
                }
                TradeStep::Oco { user, buy, quantity } => {
                    // A buy's limit below the book and its stop above; a sell's the other way round.
                    let (side, price, trigger_price, stop_price) = if buy { (Side::Buy, 950, 1_030, 1_040) } else { (Side::Sell, 1_040, 960, 950) };
                    let request = spot::OcoRequest {
                        market: ACME_USD, side, quantity, price, stop_kind: OrderKind::Limit, stop_price: Some(stop_price), trigger_price,
                        self_trade: SelfTradePrevention::CancelTaker,
                    };
                    let _ = exchange.apply(Command::Spot(spot::Command::PlaceOco { user: users[user], request, client_order_id: None }));
                }
                TradeStep::Amend { pick, price, quantity } => {
                    let open: Vec<(u64, UserId)> = exchange.ledger.state().spot.open_orders.values().map(|r| (r.order.order_id, r.order.user)).collect();
                    let Some(&(order_id, user)) = open.get(pick % open.len().max(1)) else { continue };
                    let _ = exchange.apply(Command::Spot(spot::Command::AmendOrder { user, order_id, price, quantity }));
                }
                TradeStep::Cancel { pick } => {
                    let open: Vec<(u64, UserId)> = exchange.ledger.state().spot.open_orders.values().map(|r| (r.order.order_id, r.order.user)).collect();
                    let Some(&(order_id, user)) = open.get(pick % open.len().max(1)) else { continue };
                    let _ = exchange.apply(Command::Spot(spot::Command::CancelOrder { user, order_id }));
                }
                TradeStep::Claims { user, hours } => {
                    let country = if users[user] == ERIN { US } else { FRANCE };
                    let claims = Some(Claims { country, category: InvestorCategory::Retail, expires_at_ms: exchange.now + hours * 3_600_000 , withholding_bps: 0 });
                    let _ = exchange.apply(tok(api::Command::SetClaims { user: users[user], claims }));
                }
                TradeStep::Wait { hours } => {
                    exchange.now += hours * 3_600_000;
                    let _ = exchange.apply(Command::Spot(spot::Command::ExpireOrders));
                }
                TradeStep::Restart => {
                    exchange.ledger = Ledger::restore(LedgerLimits::default(), exchange.ledger.state());
                }
            }
            prop_assert_eq!(exchange.ledger.check_invariants(), Ok(()), "after {:?}", step);
            conserved(&exchange.ledger)?;
            let holders: Vec<UserId> = exchange.ledger.kernel().holders(ACME).unwrap().filter(|user| *user != ISSUER).collect();
            prop_assert!(holders.len() <= 3, "holders {:?} after {:?}", holders, step);
            for (index, user) in users.iter().enumerate() {
                let now_held = held(&exchange, *user);
                prop_assert!(now_held <= 500, "user {} holds {} after {:?}", user, now_held, step);
                let valid = exchange.ledger.tokenization().claims(*user).is_some_and(|claims| exchange.now < claims.expires_at_ms);
                if now_held > before[index] {
                    prop_assert!(*user != ERIN && valid, "user {} gained tokens without the right to after {:?}", user, step);
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
enum DistributionStep {
    Transfer {
        from: usize,
        to: usize,
        amount: Amount,
    },
    Rate {
        user: usize,
        bps: u32,
        days: u64,
    },
    Claim {
        user: usize,
    },
    Reclaim,
    Wait {
        days: u64,
    },
    Restart,
    /// The token's agent: a partial freeze, its end, a forced transfer, a recovery.
    Freeze {
        user: usize,
        amount: Amount,
    },
    Unfreeze {
        user: usize,
        amount: Amount,
    },
    Force {
        from: usize,
        to: usize,
        amount: Amount,
    },
    Recover {
        lost: usize,
        to: usize,
    },
}

fn distribution_step() -> impl Strategy<Value = DistributionStep> {
    prop_oneof![
        3 => (0usize..5, 0usize..5, 1i128..300).prop_map(|(from, to, amount)| DistributionStep::Transfer { from, to, amount }),
        1 => (0usize..4, 0u32..=10_000, 0u64..80).prop_map(|(user, bps, days)| DistributionStep::Rate { user, bps, days }),
        3 => (0usize..5).prop_map(|user| DistributionStep::Claim { user }),
        1 => Just(DistributionStep::Reclaim),
        2 => (0u64..20).prop_map(|days| DistributionStep::Wait { days }),
        1 => Just(DistributionStep::Restart),
        1 => (0usize..5, 1i128..300).prop_map(|(user, amount)| DistributionStep::Freeze { user, amount }),
        1 => (0usize..5, 1i128..300).prop_map(|(user, amount)| DistributionStep::Unfreeze { user, amount }),
        1 => (0usize..5, 0usize..5, 1i128..400).prop_map(|(from, to, amount)| DistributionStep::Force { from, to, amount }),
        1 => (0usize..5, 0usize..5).prop_map(|(lost, to)| DistributionStep::Recover { lost, to }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A distribution among holders trading before and after its record,
    /// their rates changing, the token's agent freezing, forcing and
    /// recovering tokens, claims, reclaims and restarts anywhere: after
    /// every step the invariants hold and money and supply are conserved;
    /// an agent's action moves exactly what it says (frozen tokens still
    /// count as held);
    /// the record gives each holder but the issuer their share of the pool
    /// rounded down, the rest (below one unit per holder) stated and given
    /// back; and at the end the pool is exactly what was paid, withheld,
    /// reclaimed and given back.
    #[test]
    fn a_distribution_pays_the_pool_less_a_stated_remainder(
        steps in proptest::collection::vec(distribution_step(), 1..50),
        pool in 1i128..=980_000, default_bps in 0u32..=10_000,
    ) {
        let users = [ALICE, BOB, CAROL, DAVE, ISSUER];
        let mut ledger = allocated_and_bought_back();
        let spec = api::DistributionSpec { default_withholding_bps: default_bps, ..dividend(pool) };
        ok(ledger.apply(&tok(api::Command::Distribute { issuer: ISSUER, spec: Box::new(spec.clone()), key: "d".into() }), T0 + 31 * DAY));
        let mut now = T0 + 31 * DAY;
        let mut distribution = None;
        let (mut paid, mut withheld) = (0, 0);
        // Each investor's rate and when their claims end, as the operators set them.
        let mut rates: BTreeMap<UserId, (u32, u64)> = users[..4].iter().map(|user| (*user, (0, T0 + 365 * DAY))).collect();
        for (index, step) in steps.iter().chain([DistributionStep::Wait { days: 60 }, DistributionStep::Reclaim].iter()).enumerate() {
            let before = ledger.state();
            // What each holder but the issuer holds, should this step take the record.
            let holdings: Vec<(UserId, Amount)> = users[..4].iter().map(|user| (*user, products::tokenization::held_by(ledger.kernel(), *user, ACME))).collect();
            let applied = match step {
                DistributionStep::Transfer { from, to, amount } => {
                    let command = wallet::Command::Transfer { from: users[*from], to: users[*to], asset: ACME, amount: *amount, key: format!("t{index}") };
                    ledger.apply(&Command::Wallet(command), now)
                }
                DistributionStep::Rate { user, bps, days } => {
                    let claims = Some(Claims { country: FRANCE, category: InvestorCategory::Retail, expires_at_ms: T0 + days * DAY, withholding_bps: *bps });
                    rates.insert(users[*user], (*bps, T0 + days * DAY));
                    ledger.apply(&tok(api::Command::SetClaims { user: users[*user], claims }), now)
                }
                DistributionStep::Claim { user } => ledger.apply(&tok(api::Command::ClaimDistribution { holder: users[*user], distribution: 1 }), now),
                DistributionStep::Reclaim => ledger.apply(&tok(api::Command::ReclaimDistribution { issuer: ISSUER, distribution: 1 }), now),
                DistributionStep::Wait { days } => {
                    now += days * DAY;
                    ledger.apply(&tok(api::Command::Tick), now)
                }
                DistributionStep::Restart => {
                    ledger = Ledger::restore(LedgerLimits::default(), ledger.state());
                    prop_assert_eq!(ledger.check_invariants(), Ok(()));
                    continue;
                }
                DistributionStep::Freeze { user, amount } => ledger.apply(&tok(api::Command::FreezeTokens { token: ACME, holder: users[*user], amount: *amount }), now),
                DistributionStep::Unfreeze { user, amount } => {
                    ledger.apply(&tok(api::Command::UnfreezeTokens { token: ACME, holder: users[*user], amount: *amount }), now)
                }
                DistributionStep::Force { from, to, amount } => {
                    ledger.apply(&tok(api::Command::ForceTransfer { token: ACME, from: users[*from], to: users[*to], amount: *amount }), now)
                }
                DistributionStep::Recover { lost, to } => ledger.apply(&tok(api::Command::RecoverTokens { token: ACME, lost: users[*lost], to: users[*to] }), now),
            };
            let frozen_of = |ledger: &Ledger, user: UserId| ledger.kernel().balance(products::tokenization::frozen(user, ACME));
            let free_of = |ledger: &Ledger, user: UserId| balance(ledger, user, ACME);
            let before_ledger = Ledger::restore(LedgerLimits::default(), before.clone());
            let held = |ledger: &Ledger, user: UserId| products::tokenization::held_by(ledger.kernel(), user, ACME);
            match (step, &applied.outcome) {
                (DistributionStep::Freeze { user, amount } | DistributionStep::Unfreeze { user, amount }, Ok(_)) => {
                    let user = users[*user];
                    let sign = if matches!(step, DistributionStep::Freeze { .. }) { 1 } else { -1 };
                    prop_assert_eq!(frozen_of(&ledger, user), frozen_of(&before_ledger, user) + sign * amount);
                    prop_assert_eq!(held(&ledger, user), held(&before_ledger, user), "frozen tokens are still held");
                }
                (DistributionStep::Force { from, to, amount }, Ok(Outcome::Tokenization(api::Outcome::ForcedTransfer { from_frozen, .. }))) => {
                    let (from, to) = (users[*from], users[*to]);
                    prop_assert_eq!(*from_frozen, (amount - free_of(&before_ledger, from)).max(0), "what is free goes first");
                    prop_assert_eq!(held(&ledger, from), held(&before_ledger, from) - amount);
                    prop_assert_eq!(free_of(&ledger, to), free_of(&before_ledger, to) + amount);
                }
                (DistributionStep::Recover { lost, to }, Ok(Outcome::Tokenization(api::Outcome::TokensRecovered { amount, .. }))) => {
                    let (lost, to) = (users[*lost], users[*to]);
                    prop_assert_eq!(free_of(&ledger, lost) + frozen_of(&ledger, lost), 0);
                    prop_assert_eq!(held(&ledger, to), held(&before_ledger, to) + amount);
                    prop_assert_eq!(frozen_of(&ledger, to), frozen_of(&before_ledger, to) + frozen_of(&before_ledger, lost), "frozen stays frozen");
                }
                _ => {}
            }
            match &applied.outcome {
                Err(_) => prop_assert_eq!(&ledger.state(), &before, "a refused {:?} changed something", step),
                Ok(Outcome::Tokenization(api::Outcome::Ticked { distributions_recorded, .. })) if !distributions_recorded.is_empty() => {
                    let held: Vec<(UserId, Amount)> = holdings.into_iter().filter(|(_, units)| *units > 0).collect();
                    let total: Amount = held.iter().map(|(_, units)| units).sum();
                    let changes = ledger.take_changes().tokenization;
                    let entitlements: BTreeMap<UserId, api::Entitlement> = changes.entitlements.iter().map(|e| (e.holder, *e)).collect();
                    prop_assert_eq!(entitlements.keys().copied().collect::<Vec<_>>(), held.iter().map(|(user, _)| *user).collect::<Vec<_>>());
                    for (user, units) in &held {
                        let entitlement = entitlements[user];
                        prop_assert_eq!(entitlement.units, *units);
                        let (bps, expires_at_ms) = rates[user];
                        prop_assert_eq!(entitlement.withholding_bps, if now < expires_at_ms { bps } else { default_bps });
                        prop_assert_eq!(entitlement.gross, pool * units / total);
                        prop_assert_eq!(entitlement.withheld, entitlement.gross * Amount::from(entitlement.withholding_bps) / 10_000);
                        prop_assert_eq!(entitlement.net + entitlement.withheld, entitlement.gross);
                    }
                    let recorded = changes.distributions.last().expect("recorded").clone();
                    prop_assert_eq!(recorded.entitled + recorded.remainder, pool);
                    prop_assert!(recorded.remainder < (held.len() as Amount).max(1) || total == 0);
                    distribution = Some(recorded);
                }
                Ok(Outcome::Tokenization(api::Outcome::DistributionClaimed { net, withheld: tax, .. })) => {
                    paid += net;
                    withheld += tax;
                }
                Ok(Outcome::Tokenization(api::Outcome::DistributionReclaimed { amount, .. })) => {
                    let recorded = distribution.clone().expect("reclaimed after the record");
                    let claimed: Amount = paid + withheld;
                    prop_assert_eq!(claimed + amount + recorded.remainder, pool, "paid, withheld, reclaimed and given back make the pool");
                }
                Ok(_) => {}
            }
            prop_assert_eq!(ledger.check_invariants(), Ok(()), "after {:?}", step);
            conserved(&ledger)?;
        }
        prop_assert!(ledger.tokenization().open_distributions().is_empty(), "closed by the end");
        prop_assert_eq!(ledger.kernel().balance(products::tokenization::pool(1, USD)), 0);
        prop_assert_eq!(ledger.kernel().balance(products::tokenization::withheld(USD)), withheld);
        let usd: Amount = ledger.state().kernel.balances.iter().filter(|(a, _)| a.asset == USD).map(|(_, b)| *b).sum();
        prop_assert_eq!(usd, 0);
    }
}
