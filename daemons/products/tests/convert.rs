//! Convert through the ledger's dispatch: random quotes, accepts (in time,
//! late, twice, another's), expiries, pauses, the house's defunding and
//! restarts, against a model of every account convert touches (users'
//! available money, the house's inventory, what quotes set aside, revenue).
//! After each step: every invariant, every balance equal to the model's,
//! money conserved per asset, no quote honoured twice or after its expiry,
//! and a refusal changed nothing.

use std::collections::{BTreeMap, BTreeSet};

use ledger_api::convert::{self as api, PairSpec, PriceSource, QuoteLeg, QuoteRequest};
use ledger_api::{house, wallet, AssetSpec, Command, LedgerError, Outcome};
use products::convert::quoted;
use products::house::{inventory, revenue};
use products::wallet::available;
use products::{Ledger, LedgerLimits};
use proptest::prelude::*;

type AssetId = u32;
type UserId = u64;
type Amount = i128;

const USD: AssetId = 1;
const BTC: AssetId = 2;
const EUR: AssetId = 3;
const ASSETS: [AssetId; 3] = [USD, BTC, EUR];
const USERS: [UserId; 3] = [1, 2, 3];
const FUNDED: Amount = 1_000_000;
const DEPOSITED: Amount = 100_000;

fn limits() -> LedgerLimits {
    LedgerLimits { convert_quotes_open_per_user_max: 4, ..LedgerLimits::default() }
}

fn pair(base: AssetId, quote: AssetId, paused: bool) -> PairSpec {
    PairSpec {
        base,
        quote,
        price: PriceSource::Set { quote_units: 1, base_units: 1 },
        spread_bps: 10,
        fee_bps: 10,
        base_min: 1,
        base_max: 1_000_000,
        base_step: 1,
        quote_ttl_ms: 5_000,
        paused,
        exposure_max_base: 10_000_000,
        exposure_max_quote: 10_000_000,
    }
}

fn ok(applied: products::Applied) -> Outcome {
    applied.outcome.unwrap_or_else(|error| panic!("refused: {error}"))
}

/// A ledger with the three assets, the pairs BTC/USD and EUR/USD, every
/// user's deposits and the house's inventory.
fn ledger() -> Ledger {
    let mut ledger = Ledger::new(limits());
    for (id, symbol) in [(USD, "USD"), (BTC, "BTC"), (EUR, "EUR")] {
        ok(ledger.apply(&Command::CreateAsset(AssetSpec { id, symbol: symbol.into(), scale: 2 }), 1));
        ok(ledger.apply(&Command::House(house::Command::Fund { asset: id, amount: FUNDED, reference: format!("fund-{id}") }), 1));
        for user in USERS {
            ok(ledger.apply(&Command::Wallet(wallet::Command::Deposit { user, asset: id, amount: DEPOSITED, reference: format!("d-{user}-{id}") }), 1));
        }
    }
    ok(ledger.apply(&Command::Convert(api::Command::SetPair(pair(BTC, USD, false))), 1));
    ok(ledger.apply(&Command::Convert(api::Command::SetPair(pair(EUR, USD, false))), 1));
    ledger
}

#[derive(Clone, Debug)]
enum Step {
    /// Route 0: USD to BTC; 1: BTC to USD; 2: EUR to BTC through USD.
    Quote {
        user: UserId,
        route: u8,
        pay: Amount,
        receive: Amount,
        spread: Amount,
        fee_per_mille: Amount,
    },
    Accept {
        user: UserId,
        pick: usize,
        key: u8,
    },
    Wait {
        ms: u64,
    },
    Expire,
    Pause {
        eur: bool,
        paused: bool,
    },
    Defund {
        asset: AssetId,
        amount: Amount,
    },
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (prop::sample::select(USERS.to_vec()), 0u8..3, 1i128..60_000, 1i128..60_000, 0i128..500, 0i128..30)
            .prop_map(|(user, route, pay, receive, spread, fee_per_mille)| Step::Quote { user, route, pay, receive, spread, fee_per_mille }),
        4 => (prop::sample::select(USERS.to_vec()), any::<usize>(), 0u8..3).prop_map(|(user, pick, key)| Step::Accept { user, pick, key }),
        2 => (0u64..4_000).prop_map(|ms| Step::Wait { ms }),
        1 => Just(Step::Expire),
        1 => (any::<bool>(), prop::bool::weighted(0.3)).prop_map(|(eur, paused)| Step::Pause { eur, paused }),
        1 => (prop::sample::select(ASSETS.to_vec()), 1i128..400_000).prop_map(|(asset, amount)| Step::Defund { asset, amount }),
        1 => Just(Step::Restart),
    ]
}

fn legs(route: u8, pay: Amount, receive: Amount, spread: Amount) -> Vec<QuoteLeg> {
    let leg = |base, quote, sell_base, pay, receive| QuoteLeg { base, quote, sell_base, pay, receive, spread };
    match route {
        0 => vec![leg(BTC, USD, false, pay, receive)],
        1 => vec![leg(BTC, USD, true, pay, receive)],
        _ => vec![leg(EUR, USD, true, pay, receive), leg(BTC, USD, false, receive, receive / 2 + 1)],
    }
}

#[derive(Clone, Debug)]
struct ModelQuote {
    user: UserId,
    legs: Vec<QuoteLeg>,
    fee: Amount,
    expires_at_ms: u64,
    accepted: bool,
}

#[derive(Default)]
struct Model {
    balances: BTreeMap<(UserId, AssetId), Amount>,
    inventory: BTreeMap<AssetId, Amount>,
    quoted: BTreeMap<AssetId, Amount>,
    revenue: BTreeMap<AssetId, Amount>,
    /// What came in from outside, per asset: deposits and funding, less defunding.
    outside: BTreeMap<AssetId, Amount>,
    quotes: BTreeMap<u64, ModelQuote>,
    /// Each accept key (user, key) and the quote it accepted.
    keys: BTreeMap<(UserId, u8), u64>,
    paused: BTreeSet<AssetId>,
}

impl Model {
    fn new() -> Model {
        let mut model = Model::default();
        for asset in ASSETS {
            model.inventory.insert(asset, FUNDED);
            model.outside.insert(asset, FUNDED + DEPOSITED * USERS.len() as Amount);
            for user in USERS {
                model.balances.insert((user, asset), DEPOSITED);
            }
        }
        model
    }

    fn add(map: &mut BTreeMap<AssetId, Amount>, asset: AssetId, delta: Amount) {
        *map.entry(asset).or_default() += delta;
    }

    fn check(&self, ledger: &Ledger) {
        let kernel = ledger.kernel();
        for (&(user, asset), &amount) in &self.balances {
            assert_eq!(kernel.balance(available(user, asset)), amount, "user {user}'s asset {asset}");
        }
        for asset in ASSETS {
            let get = |map: &BTreeMap<AssetId, Amount>| map.get(&asset).copied().unwrap_or(0);
            assert_eq!(kernel.balance(inventory(asset)), get(&self.inventory), "inventory of {asset}");
            assert_eq!(kernel.balance(quoted(asset)), get(&self.quoted), "quoted of {asset}");
            assert_eq!(kernel.balance(revenue(asset)), get(&self.revenue), "revenue of {asset}");
            // Conservation: everything that came in is with users or the house.
            let users: Amount = USERS.iter().map(|user| kernel.balance(available(*user, asset))).sum();
            let house = kernel.balance(inventory(asset)) + kernel.balance(quoted(asset)) + kernel.balance(revenue(asset));
            assert_eq!(users + house, get(&self.outside), "asset {asset} is conserved");
        }
    }
}

fn run(steps: Vec<Step>) {
    let mut ledger = ledger();
    let mut model = Model::new();
    let mut now: u64 = 1_000;
    let mut honoured: BTreeSet<u64> = BTreeSet::new();
    ledger.take_changes();
    for (i, step) in steps.iter().enumerate() {
        let before = ledger.state_hash();
        match *step {
            Step::Quote { user, route, pay, receive, spread, fee_per_mille } => {
                let legs = legs(route, pay, receive, spread);
                let fee = legs.last().unwrap().receive * fee_per_mille / 1_000;
                let applied = ledger.apply(&Command::Convert(api::Command::Quote(QuoteRequest { user, legs: legs.clone(), fee })), now);
                match applied.outcome {
                    Ok(Outcome::Convert(api::Outcome::Quoted(quote))) => {
                        assert_eq!((quote.user, &quote.legs, quote.fee, quote.expires_at_ms), (user, &legs, fee, now + 5_000));
                        for leg in &legs {
                            Model::add(&mut model.inventory, leg.to(), -leg.inventory_out());
                            Model::add(&mut model.quoted, leg.to(), leg.inventory_out());
                        }
                        let previous = model.quotes.insert(quote.id, ModelQuote { user, legs, fee, expires_at_ms: quote.expires_at_ms, accepted: false });
                        assert!(previous.is_none(), "quote id {} given twice", quote.id);
                    }
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(error) => {
                        assert_eq!(ledger.state_hash(), before, "step {i}: a refused quote ({error}) changed something");
                        let from = legs[0].from();
                        let paused = legs.iter().any(|leg| model.paused.contains(&leg.base));
                        let short = model.balances[&(user, from)] < pay;
                        let inventory_short = legs.iter().any(|leg| model.inventory[&leg.to()] < leg.inventory_out());
                        let open = model.quotes.values().filter(|q| q.user == user && !q.accepted).count();
                        let explained = match &error {
                            LedgerError::PairPaused { .. } => paused,
                            LedgerError::InsufficientFunds { .. } => short,
                            LedgerError::InsufficientLiquidity(_) => inventory_short,
                            LedgerError::LimitReached(_) => open >= 4,
                            LedgerError::BadInput(_) => fee >= legs.last().unwrap().receive,
                            _ => false,
                        };
                        assert!(explained, "step {i}: quote refused with {error:?} for no reason the model sees");
                    }
                }
            }
            Step::Accept { user, pick, key } => {
                let ids: Vec<u64> = model.quotes.keys().copied().collect();
                let id = if ids.is_empty() { pick as u64 % 5 } else { ids[pick % ids.len()] };
                let text = format!("key-{key}");
                let applied = ledger.apply(&Command::Convert(api::Command::Accept { user, quote: id, key: text }), now);
                let replay = model.keys.get(&(user, key)).copied();
                match applied.outcome {
                    Ok(Outcome::Convert(api::Outcome::Accepted(accepted))) if replay.is_some() => {
                        assert_eq!(Some(accepted), replay, "a key answers the quote it accepted");
                        assert_eq!(ledger.state_hash(), before, "a replayed accept changes nothing");
                    }
                    Ok(Outcome::Convert(api::Outcome::Accepted(accepted))) => {
                        assert_eq!(accepted, id);
                        let quote = model.quotes.get_mut(&id).unwrap_or_else(|| panic!("step {i}: accepted quote {id}, which the model does not hold"));
                        assert_eq!(quote.user, user, "accepted another's quote");
                        assert!(!quote.accepted, "step {i}: quote {id} honoured twice");
                        assert!(now <= quote.expires_at_ms, "step {i}: quote {id} honoured at {now}, after its expiry {}", quote.expires_at_ms);
                        assert!(honoured.insert(id), "quote {id} honoured twice");
                        quote.accepted = true;
                        for leg in &quote.legs.clone() {
                            *model.balances.get_mut(&(user, leg.from())).unwrap() -= leg.pay;
                            Model::add(&mut model.inventory, leg.from(), leg.pay);
                            Model::add(&mut model.quoted, leg.to(), -leg.inventory_out());
                            *model.balances.get_mut(&(user, leg.to())).unwrap() += leg.receive;
                            Model::add(&mut model.revenue, leg.to(), leg.spread);
                        }
                        let (to, fee) = (quote.legs.last().unwrap().to(), quote.fee);
                        *model.balances.get_mut(&(user, to)).unwrap() -= fee;
                        Model::add(&mut model.revenue, to, fee);
                        model.keys.insert((user, key), id);
                    }
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(error) => {
                        assert_eq!(ledger.state_hash(), before, "step {i}: a refused accept ({error}) changed something");
                        let quote = model.quotes.get(&id);
                        let late = quote.is_some_and(|q| now > q.expires_at_ms);
                        if quote.is_some_and(|q| q.user == user && !q.accepted && now <= q.expires_at_ms) && replay.is_none() {
                            let q = quote.unwrap();
                            let short = model.balances[&(user, q.legs[0].from())] < q.legs[0].pay;
                            let paused = q.legs.iter().any(|leg| model.paused.contains(&leg.base));
                            assert!(short || paused, "step {i}: an open quote in time refused with {error:?}");
                        }
                        if late && quote.is_some_and(|q| q.user == user && !q.accepted) && replay.is_none() {
                            assert_eq!(error, LedgerError::QuoteExpired(id), "step {i}");
                        }
                    }
                }
            }
            Step::Wait { ms } => now += ms,
            Step::Expire => {
                ok(ledger.apply(&Command::Convert(api::Command::ExpireQuotes), now));
                let closed: Vec<u64> = model.quotes.iter().filter(|(_, q)| q.expires_at_ms < now).map(|(id, _)| *id).collect();
                for id in closed {
                    let quote = model.quotes.remove(&id).unwrap();
                    if !quote.accepted {
                        for leg in &quote.legs {
                            Model::add(&mut model.inventory, leg.to(), leg.inventory_out());
                            Model::add(&mut model.quoted, leg.to(), -leg.inventory_out());
                        }
                    }
                }
                assert!(ledger.convert().next_expiry().is_none_or(|at| at > now), "nothing left to expire");
            }
            Step::Pause { eur, paused } => {
                let base = if eur { EUR } else { BTC };
                ok(ledger.apply(&Command::Convert(api::Command::SetPair(pair(base, USD, paused))), now));
                if paused {
                    model.paused.insert(base);
                } else {
                    model.paused.remove(&base);
                }
            }
            Step::Defund { asset, amount } => {
                let reference = format!("defund-{i}");
                let applied = ledger.apply(&Command::House(house::Command::Defund { asset, amount, reference }), now);
                // Inventory a quote set aside cannot be taken out.
                assert_eq!(applied.outcome.is_ok(), model.inventory[&asset] >= amount, "step {i}: defunding {amount} of {asset}");
                if applied.outcome.is_ok() {
                    Model::add(&mut model.inventory, asset, -amount);
                    Model::add(&mut model.outside, asset, -amount);
                }
            }
            Step::Restart => {
                let bytes = postcard::to_stdvec(&ledger.state()).unwrap();
                let restored = Ledger::restore(limits(), postcard::from_bytes(&bytes).unwrap());
                assert_eq!(restored.state_hash(), ledger.state_hash(), "a restart changes nothing");
                ledger = restored;
            }
        }
        if let Err(broken) = ledger.check_invariants() {
            panic!("after step {i} {step:?}: {broken}");
        }
        model.check(&ledger);
        ledger.take_changes();
        now += 1;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn quotes_accepts_expiries_and_restarts_conserve_money(steps in prop::collection::vec(step(), 1..120)) {
        run(steps);
    }
}

/// The scenarios a random run may miss, spelled out.
#[test]
fn a_quote_is_honoured_once_and_only_in_time() {
    let mut ledger = ledger();
    let quote = |ledger: &mut Ledger, at: u64| match ok(
        ledger.apply(&Command::Convert(api::Command::Quote(QuoteRequest { user: 1, legs: legs(0, 1_000, 20, 1), fee: 1 })), at)
    ) {
        Outcome::Convert(api::Outcome::Quoted(quote)) => quote,
        other => panic!("{other:?}"),
    };
    let accept =
        |ledger: &mut Ledger, id, key: &str, at| ledger.apply(&Command::Convert(api::Command::Accept { user: 1, quote: id, key: key.into() }), at).outcome;
    let first = quote(&mut ledger, 10);
    assert_eq!(first.expires_at_ms, 5_010);
    // Late by a millisecond, then in time at the last one.
    assert_eq!(accept(&mut ledger, first.id, "a", 5_011), Err(LedgerError::QuoteExpired(first.id)));
    assert_eq!(accept(&mut ledger, first.id, "a", 5_010), Ok(Outcome::Convert(api::Outcome::Accepted(first.id))));
    assert_eq!(accept(&mut ledger, first.id, "a", 5_010), Ok(Outcome::Convert(api::Outcome::Accepted(first.id))), "the same key again");
    assert_eq!(accept(&mut ledger, first.id, "b", 5_010), Err(LedgerError::QuoteAccepted(first.id)), "another key");
    // Another user's quote is not found; one never made is not found.
    assert_eq!(ledger.apply(&Command::Convert(api::Command::Accept { user: 2, quote: first.id, key: "c".into() }), 5_010).outcome, Err(LedgerError::NotFound));
    assert_eq!(accept(&mut ledger, 99, "d", 5_010), Err(LedgerError::NotFound));
    // Closed by the ledger's clock: an unaccepted quote's inventory comes back.
    let second = quote(&mut ledger, 6_000);
    assert_eq!(ledger.kernel().balance(quoted(BTC)), 21);
    assert_eq!(ledger.convert().next_expiry(), Some(first.expires_at_ms + 1));
    ok(ledger.apply(&Command::Convert(api::Command::ExpireQuotes), 11_001));
    assert_eq!(ledger.kernel().balance(quoted(BTC)), 0);
    assert_eq!(accept(&mut ledger, second.id, "e", 11_001), Err(LedgerError::QuoteExpired(second.id)));
    ledger.check_invariants().unwrap();
}

/// The step binds what the user gives of the base asset, and what they get
/// of it once the fee is taken: a quote a gateway rounded that way passes,
/// one whose gross amount is on the step but whose net is not is refused.
#[test]
fn the_step_binds_what_the_user_gives_and_gets_after_the_fee() {
    let mut ledger = ledger();
    ok(ledger.apply(&Command::Convert(api::Command::SetPair(PairSpec { base_step: 100, base_min: 100, ..pair(BTC, USD, false) })), 1));
    let mut quote = |sell_base: bool, pay: Amount, receive: Amount, fee: Amount| {
        let leg = QuoteLeg { base: BTC, quote: USD, sell_base, pay, receive, spread: 0 };
        ledger.apply(&Command::Convert(api::Command::Quote(QuoteRequest { user: 1, legs: vec![leg], fee })), 2).outcome
    };
    assert!(quote(false, 5_000, 1_010, 10).is_ok(), "1,000 net of the fee is on the step");
    assert!(matches!(quote(false, 5_000, 1_000, 10), Err(LedgerError::BadInput(_))), "990 net is not");
    assert!(quote(true, 1_000, 5_000, 10).is_ok(), "selling 1,000 of the base is on the step");
    assert!(matches!(quote(true, 1_050, 5_000, 10), Err(LedgerError::BadInput(_))), "1,050 is not");
}
