//! The kernel's operations and refusals, then random sequences of
//! transfers, batches, holds, captures to many receivers and releases,
//! checked after every step against a model of the balances and the holds
//! and against every invariant; a refused step must change nothing.

use std::collections::{BTreeMap, BTreeSet};

use ledger_core::*;
use proptest::prelude::*;

const USD: u32 = 1;
const BTC: u32 = 2;

const AVAILABLE: Purpose = Purpose(1);
const LOCKED: Purpose = Purpose(2);
const CUSTODY: Purpose = Purpose(3);
const REVENUE: Purpose = Purpose(4);
const ESCROW: Purpose = Purpose(5);

const CODE: TransferCode = TransferCode(7);

fn purposes() -> Purposes {
    Purposes::new(&[
        PurposeSpec { purpose: AVAILABLE, name: "available", may_go_negative: false, holds_only: false },
        PurposeSpec { purpose: LOCKED, name: "locked", may_go_negative: false, holds_only: true },
        PurposeSpec { purpose: CUSTODY, name: "custody", may_go_negative: true, holds_only: false },
        PurposeSpec { purpose: REVENUE, name: "revenue", may_go_negative: false, holds_only: false },
        PurposeSpec { purpose: ESCROW, name: "escrow", may_go_negative: false, holds_only: true },
    ])
    .unwrap()
}

fn kernel() -> Kernel {
    let mut kernel = Kernel::new(purposes(), KernelLimits { assets_max: 4, idempotency_keys_reserved: 16 });
    kernel.create_asset(&AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }).unwrap();
    kernel.create_asset(&AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }).unwrap();
    kernel
}

fn available(user: u64, asset: u32) -> AccountId {
    AccountId::user(user, asset, AVAILABLE)
}

fn custody(asset: u32) -> AccountId {
    AccountId::house(asset, CUSTODY)
}

fn leg(debit: AccountId, credit: AccountId, amount: i128) -> Leg {
    Leg { debit, credit, amount, code: CODE }
}

fn payout(credit: AccountId, amount: i128) -> Payout {
    Payout { credit, amount, code: CODE }
}

fn fund(kernel: &mut Kernel, user: u64, asset: u32, amount: i128) {
    kernel.transfer(leg(custody(asset), available(user, asset), amount), "fund", 0).unwrap();
}

#[test]
fn purposes_are_declared_once_with_consistent_rules() {
    let spec = |code, name, negative, holds| PurposeSpec { purpose: Purpose(code), name, may_go_negative: negative, holds_only: holds };
    assert_eq!(Purposes::new(&[spec(1, "a", false, false), spec(1, "b", false, false)]).unwrap_err(), PurposeError::Twice(1, "a", "b"));
    assert_eq!(Purposes::new(&[spec(64, "a", false, false)]).unwrap_err(), PurposeError::CodeTooLarge(64));
    assert_eq!(Purposes::new(&[spec(2, "a", true, true)]).unwrap_err(), PurposeError::Contradictory("a"));
    let purposes = purposes();
    assert!(purposes.may_go_negative(CUSTODY) && !purposes.may_go_negative(AVAILABLE) && !purposes.may_go_negative(Purpose(63)));
    assert!(purposes.holds_only(LOCKED) && !purposes.holds_only(AVAILABLE) && !purposes.is_declared(Purpose(200)));
}

#[test]
fn transfers_refuse_with_a_reason_and_change_nothing() {
    let mut kernel = kernel();
    fund(&mut kernel, 1, USD, 100);
    let before = kernel.state();
    let cases: Vec<(Leg, KernelError)> = vec![
        (leg(available(1, USD), available(2, USD), 101), KernelError::InsufficientFunds { needed: 101, available: 100 }),
        (leg(available(1, USD), available(2, USD), 0), KernelError::BadInput("amount must be positive")),
        (leg(available(1, USD), available(2, USD), -1), KernelError::BadInput("amount must be positive")),
        (leg(available(1, USD), available(2, BTC), 1), KernelError::BadInput("a transfer moves one asset")),
        (leg(available(1, 9), available(2, 9), 1), KernelError::UnknownAsset(9)),
        (leg(available(1, USD), available(1, USD), 1), KernelError::BadInput("a transfer needs two different accounts")),
        (leg(available(1, USD), AccountId::user(2, USD, Purpose(9)), 1), KernelError::BadInput("an account's purpose is not declared")),
        (leg(available(1, USD), AccountId::user(1, USD, LOCKED), 1), KernelError::BadInput("money enters and leaves a holds-only account through holds")),
        // An account that never held money.
        (leg(available(7, USD), available(2, USD), 1), KernelError::InsufficientFunds { needed: 1, available: 0 }),
    ];
    kernel.take_changes();
    for (leg, error) in cases {
        assert_eq!(kernel.transfer(leg, "x", 1), Err(error.clone()), "{leg:?}");
        assert_eq!(kernel.transfer_all(&[leg], "x", 1), Err(error), "{leg:?} in a batch");
    }
    assert_eq!(kernel.state(), before);
    assert_eq!(kernel.take_changes(), KernelChanges::default(), "a refusal recorded a change for storage");
    kernel.check_invariants().unwrap();
}

#[test]
fn custody_goes_negative_by_what_came_in_and_every_asset_sums_to_zero() {
    let mut kernel = kernel();
    fund(&mut kernel, 1, USD, 500);
    fund(&mut kernel, 2, USD, 250);
    assert_eq!(kernel.balance(custody(USD)), -750);
    kernel.transfer(leg(available(1, USD), AccountId::house(USD, REVENUE), 5), "fee", 2).unwrap();
    assert_eq!(kernel.balance(available(1, USD)), 495);
    kernel.check_invariants().unwrap();
    let changes = kernel.take_changes();
    assert_eq!(changes.transfers.len(), 3);
    assert_eq!(changes.transfers.iter().map(|t| t.id).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(changes.accounts.contains(&AccountId::house(USD, REVENUE)) && changes.accounts.contains(&custody(USD)));
}

#[test]
fn a_batch_applies_all_its_legs_or_none() {
    let mut kernel = kernel();
    fund(&mut kernel, 1, USD, 100);
    let before = kernel.state();
    // The second leg spends what the first already took: all of it is refused.
    let legs = [leg(available(1, USD), available(2, USD), 60), leg(available(1, USD), available(3, USD), 50)];
    assert_eq!(kernel.transfer_all(&legs, "pair", 1), Err(KernelError::InsufficientFunds { needed: 50, available: 40 }));
    assert_eq!(kernel.state(), before, "the first leg did not stay");
    // Money received by an earlier leg may be spent by a later one.
    let chain = [leg(available(1, USD), available(2, USD), 100), leg(available(2, USD), available(3, USD), 100)];
    assert_eq!(kernel.transfer_all(&chain, "chain", 1), Ok(2));
    assert_eq!((kernel.balance(available(1, USD)), kernel.balance(available(2, USD)), kernel.balance(available(3, USD))), (0, 0, 100));
    kernel.check_invariants().unwrap();
}

#[test]
fn a_hold_is_captured_in_parts_for_many_receivers_and_released_for_the_rest() {
    let mut kernel = kernel();
    fund(&mut kernel, 1, USD, 1_000);
    let id = HoldId { kind: 1, id: 42 };
    let locked = AccountId::user(1, USD, LOCKED);
    kernel.hold(id, available(1, USD), locked, 700, CODE, "order:42", 1).unwrap();
    assert_eq!((kernel.balance(available(1, USD)), kernel.balance(locked)), (300, 700));
    kernel.check_invariants().unwrap();
    let revenue = AccountId::house(USD, REVENUE);
    kernel.capture(id, &[payout(available(2, USD), 400), payout(revenue, 4), payout(available(3, USD), 0)], "trade:1", 2).unwrap();
    assert_eq!(kernel.hold_of(id).unwrap().remaining, 296);
    // Over what remains: refused whole, the first leg included.
    let before = kernel.state();
    assert_eq!(
        kernel.capture(id, &[payout(available(2, USD), 200), payout(revenue, 97)], "trade:2", 3),
        Err(KernelError::HoldExceeded { remaining: 296, wanted: 297 })
    );
    assert_eq!(kernel.state(), before);
    assert_eq!(kernel.release(id, CODE, "order:42", 4), Ok(296));
    assert_eq!(kernel.hold_of(id), None);
    assert_eq!((kernel.balance(available(1, USD)), kernel.balance(locked), kernel.balance(available(2, USD)), kernel.balance(revenue)), (596, 0, 400, 4));
    assert_eq!(kernel.release(id, CODE, "again", 5), Err(KernelError::UnknownHold(id)));
    kernel.check_invariants().unwrap();
}

#[test]
fn holds_refuse_what_they_cannot_keep() {
    let mut kernel = kernel();
    fund(&mut kernel, 1, USD, 100);
    let locked = AccountId::user(1, USD, LOCKED);
    let id = HoldId { kind: 1, id: 1 };
    assert_eq!(kernel.hold(id, available(1, USD), locked, 101, CODE, "h", 1), Err(KernelError::InsufficientFunds { needed: 101, available: 100 }));
    assert_eq!(
        kernel.hold(id, available(1, USD), available(2, USD), 1, CODE, "h", 1),
        Err(KernelError::BadInput("a hold moves money into a holds-only account from another"))
    );
    kernel.hold(id, available(1, USD), locked, 10, CODE, "h", 1).unwrap();
    assert_eq!(kernel.hold(id, available(1, USD), locked, 10, CODE, "h", 1), Err(KernelError::HoldExists(id)));
    assert_eq!(kernel.capture(HoldId { kind: 1, id: 2 }, &[], "c", 1), Err(KernelError::UnknownHold(HoldId { kind: 1, id: 2 })));
    assert_eq!(
        kernel.capture(id, &[payout(AccountId::user(2, USD, ESCROW), 1)], "c", 1),
        Err(KernelError::BadInput("a capture pays out of the holds-only accounts"))
    );
    kernel.check_invariants().unwrap();
}

#[test]
fn idempotency_keys_tell_replays_from_reuses() {
    let mut kernel = kernel();
    let key = key_digest(&[b"deposit", b"ref-1"]);
    let Ok(Idempotent::New(fingerprint)) = kernel.idempotent(&key, &[b"100"]) else { panic!("a new key") };
    kernel.remember(key, fingerprint, Recorded { kind: 3, id: 9 }).unwrap();
    assert_eq!(kernel.idempotent(&key, &[b"100"]), Ok(Idempotent::Replay(Recorded { kind: 3, id: 9 })));
    assert_eq!(kernel.idempotent(&key, &[b"101"]), Err(KernelError::Duplicate));
    assert_eq!(kernel.remember(key, fingerprint, Recorded { kind: 0, id: 1 }), Err(KernelError::BadInput("an idempotency record's kind is never zero")));
    let restored = Kernel::restore(purposes(), KernelLimits { assets_max: 4, idempotency_keys_reserved: 0 }, kernel.state());
    assert_eq!(restored.idempotent(&key, &[b"100"]), Ok(Idempotent::Replay(Recorded { kind: 3, id: 9 })));
}

#[test]
fn the_invariants_catch_what_the_operations_never_do() {
    // A restored state can hold anything: the checks must see it.
    let mut state = kernel().state();
    state.balances.insert(available(1, USD), 5);
    let broken = Kernel::restore(purposes(), KernelLimits { assets_max: 4, idempotency_keys_reserved: 0 }, state.clone());
    assert!(broken.check_invariants().unwrap_err().contains("sum to 5"));
    state.balances.insert(custody(USD), -5);
    state.balances.insert(AccountId::user(1, USD, LOCKED), 3);
    state.balances.insert(available(1, USD), 2);
    let broken = Kernel::restore(purposes(), KernelLimits { assets_max: 4, idempotency_keys_reserved: 0 }, state.clone());
    assert!(broken.check_invariants().unwrap_err().contains("open holds sum to 0"));
    state.balances.insert(available(1, USD), -2);
    state.balances.insert(custody(USD), 2);
    state.balances.remove(&AccountId::user(1, USD, LOCKED));
    let broken = Kernel::restore(purposes(), KernelLimits { assets_max: 4, idempotency_keys_reserved: 0 }, state);
    assert!(broken.check_invariants().unwrap_err().contains("is negative"));
}

// ---- random sequences against a model ----

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: u64,
        to: u64,
        asset: u32,
        amount: i128,
    },
    Fund {
        user: u64,
        asset: u32,
        amount: i128,
    },
    Batch(Vec<(u64, u64, i128)>),
    Hold {
        hold: u64,
        user: u64,
        asset: u32,
        amount: i128,
        escrow: bool,
    },
    /// Parts for receivers: a user, or the house's revenue (user 0).
    Capture {
        hold: u64,
        parts: Vec<(u64, i128)>,
    },
    Release {
        hold: u64,
    },
    Resize {
        hold: u64,
        amount: i128,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let user = 1u64..5;
    let asset = prop_oneof![Just(USD), Just(BTC)];
    prop_oneof![
        (user.clone(), user.clone(), asset.clone(), -5i128..400).prop_map(|(from, to, asset, amount)| Op::Transfer { from, to, asset, amount }),
        (user.clone(), asset.clone(), 1i128..1_000).prop_map(|(user, asset, amount)| Op::Fund { user, asset, amount }),
        proptest::collection::vec((user.clone(), user.clone(), 0i128..300), 1..4).prop_map(Op::Batch),
        (0u64..6, user.clone(), asset, 0i128..500, any::<bool>()).prop_map(|(hold, user, asset, amount, escrow)| Op::Hold {
            hold,
            user,
            asset,
            amount,
            escrow
        }),
        (0u64..6, proptest::collection::vec((0u64..5, 0i128..200), 0..4)).prop_map(|(hold, parts)| Op::Capture { hold, parts }),
        (0u64..6).prop_map(|hold| Op::Release { hold }),
        (0u64..6, -5i128..600).prop_map(|(hold, amount)| Op::Resize { hold, amount }),
    ]
}

/// What the balances and holds must be, computed from the operations that
/// succeeded without the kernel's code.
#[derive(Default)]
struct Model {
    balances: BTreeMap<AccountId, i128>,
    /// hold -> (origin, held, remaining)
    holds: BTreeMap<u64, (AccountId, AccountId, i128)>,
    /// Accounts money moved in or out of since the kernel's changes were last taken.
    touched: BTreeSet<AccountId>,
}

impl Model {
    fn moved(&mut self, debit: AccountId, credit: AccountId, amount: i128) {
        if amount != 0 {
            self.touched.extend([debit, credit]);
        }
        *self.balances.entry(debit).or_default() -= amount;
        *self.balances.entry(credit).or_default() += amount;
    }
}

fn receiver(user: u64, asset: u32) -> AccountId {
    if user == 0 {
        AccountId::house(asset, REVENUE)
    } else {
        available(user, asset)
    }
}

fn hold_id(hold: u64) -> HoldId {
    HoldId { kind: 1, id: hold }
}

/// Applies `op` to the kernel; on success, to the model as well.
fn step(kernel: &mut Kernel, model: &mut Model, op: &Op) -> bool {
    match op.clone() {
        Op::Transfer { from, to, asset, amount } => {
            let ok = kernel.transfer(leg(available(from, asset), available(to, asset), amount), "t", 1).is_ok();
            if ok {
                model.moved(available(from, asset), available(to, asset), amount);
            }
            ok
        }
        Op::Fund { user, asset, amount } => {
            kernel.transfer(leg(custody(asset), available(user, asset), amount), "f", 1).unwrap();
            model.moved(custody(asset), available(user, asset), amount);
            true
        }
        Op::Batch(parts) => {
            let legs: Vec<Leg> = parts.iter().map(|&(from, to, amount)| leg(available(from, USD), available(to, USD), amount)).collect();
            let ok = kernel.transfer_all(&legs, "b", 1).is_ok();
            if ok {
                for leg in legs {
                    model.moved(leg.debit, leg.credit, leg.amount);
                }
            }
            ok
        }
        Op::Hold { hold, user, asset, amount, escrow } => {
            let held = if escrow { AccountId { owner: Owner::Entity(7), asset, purpose: ESCROW } } else { AccountId::user(user, asset, LOCKED) };
            let ok = kernel.hold(hold_id(hold), available(user, asset), held, amount, CODE, "h", 1).is_ok();
            if ok {
                model.moved(available(user, asset), held, amount);
                model.holds.insert(hold, (available(user, asset), held, amount));
            }
            ok
        }
        Op::Capture { hold, parts } => {
            let asset = model.holds.get(&hold).map_or(USD, |(origin, ..)| origin.asset);
            let payouts: Vec<Payout> = parts.iter().map(|&(user, amount)| payout(receiver(user, asset), amount)).collect();
            let ok = kernel.capture(hold_id(hold), &payouts, "c", 1).is_ok();
            if ok {
                let (_, held, remaining) = model.holds.get_mut(&hold).expect("a capture succeeded on an open hold");
                let held = *held;
                for payout in &payouts {
                    *remaining -= payout.amount;
                }
                for payout in payouts {
                    model.moved(held, payout.credit, payout.amount);
                }
            }
            ok
        }
        Op::Release { hold } => {
            let ok = kernel.release(hold_id(hold), CODE, "r", 1).is_ok();
            if ok {
                let (origin, held, remaining) = model.holds.remove(&hold).expect("a release succeeded on an open hold");
                model.moved(held, origin, remaining);
            }
            ok
        }
        Op::Resize { hold, amount } => {
            let ok = kernel.resize_hold(hold_id(hold), amount, CODE, "z", 1).is_ok();
            if ok {
                let (origin, held, remaining) = model.holds.get_mut(&hold).expect("a resize succeeded on an open hold");
                let (origin, held, more) = (*origin, *held, amount - *remaining);
                *remaining = amount;
                assert!(amount >= 0, "a hold resized below zero");
                model.moved(origin, held, more);
            }
            ok
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Every balance and hold as the model says, every invariant after every
    /// step, a refused step changes nothing, and each asset sums to zero
    /// over every account (custody, revenue and escrow included).
    #[test]
    fn random_operations_keep_every_invariant(ops in proptest::collection::vec(op(), 1..120), follow_usd_from in 0usize..120) {
        let mut kernel = kernel();
        // BTC's holders followed from the start, USD's from a step on (found from the balances then).
        kernel.follow_holders(BTC);
        let mut model = Model::default();
        let mut succeeded = 0;
        for (index, op) in ops.iter().enumerate() {
            if index == follow_usd_from {
                kernel.follow_holders(USD);
            }
            let before = kernel.state();
            kernel.take_changes();
            if step(&mut kernel, &mut model, op) {
                succeeded += 1;
            } else {
                prop_assert_eq!(&kernel.state(), &before, "a refused {:?} changed something", op);
                // Nor will storage see a change from it.
                prop_assert_eq!(kernel.take_changes(), KernelChanges::default(), "a refused {:?} recorded a change", op);
            }
            prop_assert_eq!(kernel.check_invariants(), Ok(()), "after {:?}", op);
            let state = kernel.state();
            let expected: BTreeMap<AccountId, i128> = model.balances.iter().filter(|(_, b)| **b != 0).map(|(a, b)| (*a, *b)).collect();
            prop_assert_eq!(&state.balances, &expected, "after {:?}", op);
            let holds: BTreeMap<u64, i128> = state.holds.iter().map(|(id, hold)| (id.id, hold.remaining)).collect();
            let expected: BTreeMap<u64, i128> = model.holds.iter().map(|(id, (.., remaining))| (*id, *remaining)).collect();
            prop_assert_eq!(holds, expected);
            for asset in [USD, BTC] {
                prop_assert_eq!(state.balances.iter().filter(|(a, _)| a.asset == asset).map(|(_, b)| *b).sum::<i128>(), 0);
                // Users with money of the asset in any account, each once; the house never.
                let holders: BTreeSet<u64> = state.balances.keys().filter(|a| a.asset == asset).filter_map(|a| a.user_id()).collect();
                if let Some(followed) = kernel.holders(asset) {
                    prop_assert_eq!(followed.collect::<BTreeSet<u64>>(), holders.clone(), "{}'s holders after {:?}", asset, op);
                    prop_assert!(holders.iter().all(|user| kernel.is_holder(asset, *user)));
                } else {
                    prop_assert!(asset == USD && index < follow_usd_from);
                }
            }
        }
        // Not vacuous: funding always succeeds, so a run that drew one moved money.
        if ops.iter().any(|op| matches!(op, Op::Fund { .. })) {
            prop_assert!(succeeded > 0);
        }
    }

    /// Storage writes the balances of the accounts the changes list: every
    /// account whose money moved since the last take, once, however many
    /// times it moved, and none other; the next batch starts from none.
    #[test]
    fn the_changes_list_each_moved_account_once(ops in proptest::collection::vec(op(), 1..120), batch_steps in 1usize..8) {
        let mut kernel = kernel();
        let mut model = Model::default();
        for (index, op) in ops.iter().enumerate() {
            step(&mut kernel, &mut model, op);
            if (index + 1) % batch_steps == 0 || index + 1 == ops.len() {
                let listed = kernel.take_changes().accounts;
                let unique: BTreeSet<AccountId> = listed.iter().copied().collect();
                prop_assert_eq!(unique.len(), listed.len(), "an account listed twice in one batch: {:?}", listed);
                prop_assert_eq!(&unique, &model.touched, "the listed accounts are not the ones moved");
                model.touched.clear();
            }
        }
    }
}
