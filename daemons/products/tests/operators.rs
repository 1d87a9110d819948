//! The four-eyes rule and the audit log through the ledger's dispatch: what
//! one operator cannot do alone, what a beneficiary can never do, what a
//! refused execution leaves, and the hash chain over every record; then
//! random operators' commands with every invariant and the chain checked
//! after each.

use ledger_api::operators::{
    Action, ActionKind, AuditEvent, ChainBreak, ChainCheck, Command as Op, Outcome as OpOutcome, ProposalStatus, SecurityEvent, Thresholds,
};
use ledger_api::wallet::{self, Balance};
use ledger_api::{house, ActionCommand, ActionOutcome, AssetSpec, Command, LedgerError, Outcome};
use products::ledger_core::{AccountId, Purpose};
use products::{Applied, Ledger, LedgerLimits};
use proptest::prelude::*;

const USD: u32 = 1;
const ALICE: u64 = 1;
const BOB: u64 = 2;
const CAROL: u64 = 3;
const TRADER: u64 = 10;

fn op(command: Op) -> Command {
    Command::Operators(command)
}

fn propose(operator: u64, command: Command) -> Command {
    op(Op::Propose { operator, action: Action::Ledger(command.to_action().expect("an operator's command")) })
}

fn approve(operator: u64, proposal: u64) -> Command {
    op(Op::Approve { operator, proposal })
}

fn deposit(user: u64, amount: i128, reference: &str) -> Command {
    Command::Wallet(wallet::Command::Deposit { user, asset: USD, amount, reference: reference.into() })
}

fn available(ledger: &Ledger, user: u64) -> i128 {
    ledger.kernel().balance(AccountId::user(user, USD, Purpose(wallet::AVAILABLE)))
}

fn pending(outcome: Result<Outcome, LedgerError>) -> u64 {
    match outcome {
        Ok(Outcome::Operators(OpOutcome::Proposal(p))) if p.status == ProposalStatus::Pending => p.id,
        other => panic!("expected a pending proposal, got {other:?}"),
    }
}

fn forbidden(applied: Applied) -> String {
    match applied.outcome {
        Err(LedgerError::Forbidden(reason)) => reason,
        other => panic!("expected FORBIDDEN, got {other:?}"),
    }
}

/// Alice and Bob operators, thresholds as given, USD created by both.
fn ledger(thresholds: Thresholds) -> Ledger {
    let mut ledger = Ledger::new(LedgerLimits::default());
    ledger.apply(&op(Op::Configure(thresholds)), 1).outcome.unwrap();
    ledger.apply(&op(Op::Bootstrap { operator: ALICE }), 1).outcome.unwrap();
    // With one operator, the first adds the second alone.
    let added = ledger.apply(&op(Op::Propose { operator: ALICE, action: Action::AddOperator { user: BOB } }), 2).outcome.unwrap();
    assert!(matches!(added, Outcome::Operators(OpOutcome::Executed { .. })), "{added:?}");
    let asset = propose(ALICE, Command::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }));
    let first = ledger.apply(&asset, 3).outcome;
    if thresholds.asset > 1 {
        let id = pending(first);
        ledger.apply(&approve(BOB, id), 3).outcome.unwrap();
    }
    ledger.check_invariants().unwrap();
    ledger
}

fn audit_of(ledger: &mut Ledger) -> Vec<ledger_api::operators::AuditRecord> {
    ledger.take_changes().operators.audit
}

#[test]
fn one_operator_cannot_deposit_alone_and_a_second_one_makes_it_happen() {
    let mut ledger = ledger(Thresholds::default());
    let id = pending(ledger.apply(&propose(ALICE, deposit(TRADER, 100_000_000, "wire-1")), 10).outcome);
    assert_eq!(available(&ledger, TRADER), 0, "a proposal moves no money");
    // Alice again, by approving or by proposing the same deposit: still pending.
    let reason = forbidden(ledger.apply(&approve(ALICE, id), 11));
    assert!(reason.contains("approved proposal") && reason.contains("different operator"), "{reason}");
    assert_eq!(pending(ledger.apply(&propose(ALICE, deposit(TRADER, 100_000_000, "wire-1")), 11).outcome), id);
    assert_eq!(available(&ledger, TRADER), 0);
    // Bob proposing the very same deposit approves it.
    match ledger.apply(&propose(BOB, deposit(TRADER, 100_000_000, "wire-1")), 12).outcome.unwrap() {
        Outcome::Operators(OpOutcome::Executed { proposal, outcome }) => {
            assert_eq!((proposal.id, proposal.approvals.clone(), proposal.status), (id, vec![ALICE, BOB], ProposalStatus::Executed));
            assert!(matches!(outcome, ActionOutcome::Wallet(wallet::Outcome::Deposited(_))), "{outcome:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(available(&ledger, TRADER), 100_000_000);
    // Executed: approving again finds nothing pending.
    assert!(matches!(ledger.apply(&approve(CAROL, id), 13).outcome, Err(LedgerError::BadInput(_))));
    ledger.check_invariants().unwrap();
}

#[test]
fn no_operator_proposes_or_approves_what_benefits_them() {
    let mut ledger = ledger(Thresholds::default());
    // A deposit to herself: not even a proposal.
    let reason = forbidden(ledger.apply(&propose(ALICE, deposit(ALICE, 100_000_000, "self")), 10));
    assert!(reason.contains("would benefit"), "{reason}");
    // Bob proposes one to Alice; Alice cannot approve it.
    let id = pending(ledger.apply(&propose(BOB, deposit(ALICE, 50_000, "to-alice")), 11).outcome);
    forbidden(ledger.apply(&approve(ALICE, id), 12));
    assert_eq!(available(&ledger, ALICE), 0);
    // Bob's deposit to Alice approved by Carol once she is an operator (two approvals now).
    let add = pending(ledger.apply(&op(Op::Propose { operator: ALICE, action: Action::AddOperator { user: CAROL } }), 13).outcome);
    forbidden(ledger.apply(&approve(CAROL, add), 13));
    ledger.apply(&approve(BOB, add), 14).outcome.unwrap();
    ledger.apply(&approve(CAROL, id), 15).outcome.unwrap();
    assert_eq!(available(&ledger, ALICE), 50_000);
    // Alice's own withdrawal: she cannot propose or approve its approval.
    let withdrawal = match ledger
        .apply(
            &Command::Wallet(wallet::Command::RequestWithdrawal { user: ALICE, asset: USD, amount: 50_000, destination: "iban".into(), key: "w".into() }),
            16,
        )
        .outcome
        .unwrap()
    {
        Outcome::Wallet(wallet::Outcome::WithdrawalRequested(id)) => id,
        other => panic!("{other:?}"),
    };
    let decide = Command::Wallet(wallet::Command::DecideWithdrawal { id: withdrawal, approve: true });
    forbidden(ledger.apply(&propose(ALICE, decide.clone()), 17));
    let id = pending(ledger.apply(&propose(BOB, decide.clone()), 17).outcome);
    let reason = forbidden(ledger.apply(&approve(ALICE, id), 18));
    assert!(reason.contains("operator 1 would benefit"), "{reason}");
    assert!(ledger.wallet().pending_withdrawal(withdrawal).is_some(), "still pending");
    ledger.apply(&approve(CAROL, id), 19).outcome.unwrap();
    assert!(ledger.wallet().pending_withdrawal(withdrawal).is_none(), "approved by Bob and Carol");
    ledger.check_invariants().unwrap();
}

#[test]
fn users_who_are_not_operators_and_peers_own_commands_are_refused() {
    let mut ledger = ledger(Thresholds::default());
    forbidden(ledger.apply(&propose(TRADER, deposit(CAROL, 1, "x")), 10));
    let id = pending(ledger.apply(&propose(ALICE, deposit(CAROL, 1, "x")), 10).outcome);
    forbidden(ledger.apply(&approve(TRADER, id), 11));
    forbidden(ledger.apply(&op(Op::Reject { operator: TRADER, proposal: id, reason: "no".into() }), 11));
    forbidden(ledger.apply(&op(Op::Bootstrap { operator: TRADER }), 11));
    // A user's own command is no operator action: a proposal cannot even carry it.
    let transfer = Command::Wallet(wallet::Command::Transfer { from: CAROL, to: ALICE, asset: USD, amount: 1, key: "k".into() });
    assert_eq!(transfer.to_action(), None);
    assert_eq!(Command::CreateAsset(AssetSpec { id: 9, symbol: "X".into(), scale: 0 }).operator_action(), Some(ActionKind::Asset));
    assert_eq!(deposit(1, 1, "r").operator_action(), Some(ActionKind::Deposit));
    assert_eq!(Command::House(house::Command::Fund { asset: USD, amount: 1, reference: "r".into() }).operator_action(), Some(ActionKind::HouseInventory));
}

#[test]
fn a_refused_execution_changes_nothing_and_a_rejection_closes_the_proposal() {
    let mut ledger = ledger(Thresholds::default());
    // Defunding inventory the house does not have: approved, then refused.
    let defund = Command::House(house::Command::Defund { asset: USD, amount: 100, reference: "d".into() });
    let id = pending(ledger.apply(&propose(ALICE, defund), 10).outcome);
    let before = ledger.state_hash();
    assert!(matches!(ledger.apply(&approve(BOB, id), 11).outcome, Err(LedgerError::InsufficientFunds { .. })));
    assert_eq!(ledger.state_hash(), before, "a refused approval changes nothing");
    assert_eq!(ledger.operators().pending(id).unwrap().approvals, vec![ALICE]);
    assert!(matches!(ledger.apply(&op(Op::Reject { operator: BOB, proposal: id, reason: " ".into() }), 12).outcome, Err(LedgerError::BadInput(_))));
    match ledger.apply(&op(Op::Reject { operator: BOB, proposal: id, reason: "no inventory".into() }), 12).outcome.unwrap() {
        Outcome::Operators(OpOutcome::Proposal(p)) => {
            assert_eq!((p.status, p.rejection), (ProposalStatus::Rejected, Some((BOB, "no inventory".to_string()))));
        }
        other => panic!("{other:?}"),
    }
    assert!(ledger.operators().pending(id).is_none());
    ledger.check_invariants().unwrap();
}

#[test]
fn thresholds_of_one_execute_at_once_and_changes_are_audited() {
    let mut ledger = ledger(Thresholds::all(1));
    match ledger.apply(&propose(ALICE, deposit(TRADER, 5, "r")), 10).outcome.unwrap() {
        Outcome::Operators(OpOutcome::Executed { proposal, .. }) => assert_eq!(proposal.approvals, vec![ALICE]),
        other => panic!("{other:?}"),
    }
    assert_eq!(available(&ledger, TRADER), 5);
    let records = audit_of(&mut ledger);
    assert!(records.iter().any(|r| matches!(r.event, AuditEvent::ThresholdsChanged { to, .. } if to == Thresholds::all(1))));
    // Thresholds apply to proposals made after them; a config of 0 is refused.
    assert!(matches!(ledger.apply(&op(Op::Configure(Thresholds::all(0))), 11).outcome, Err(LedgerError::BadInput(_))));
}

#[test]
fn the_audit_chain_finds_changed_removed_and_reordered_records() {
    let mut ledger = ledger(Thresholds::default());
    let id = pending(ledger.apply(&propose(ALICE, deposit(TRADER, 7, "r")), 10).outcome);
    ledger.apply(&approve(BOB, id), 11).outcome.unwrap();
    let event = SecurityEvent::LoginFailed { email: "alice@bank.example".into(), address: "192.0.2.1".into(), reason: "wrong password".into() };
    ledger.apply(&op(Op::Record(event)), 12).outcome.unwrap();
    let long = SecurityEvent::Login { user: 1, address: "x".repeat(300) };
    assert!(matches!(ledger.apply(&op(Op::Record(long)), 12).outcome, Err(LedgerError::BadInput(_))));
    let records = audit_of(&mut ledger);
    assert!(records.len() >= 8, "{records:?}");
    let head = ledger.operators().state().head;
    let check = |records: &[ledger_api::operators::AuditRecord]| -> Result<(), ChainBreak> {
        let mut chain = ChainCheck::default();
        for record in records {
            chain.next(record)?;
        }
        chain.finish(&head)
    };
    check(&records).unwrap();

    let mut changed = records.clone();
    changed[3].at_ms += 1;
    assert_eq!(check(&changed), Err(ChainBreak::Changed { sequence: 4 }));
    let mut removed = records.clone();
    removed.remove(2);
    assert_eq!(check(&removed), Err(ChainBreak::OutOfOrder { sequence: 4, after: 2 }));
    let mut reordered = records.clone();
    reordered.swap(1, 2);
    assert_eq!(check(&reordered), Err(ChainBreak::OutOfOrder { sequence: 3, after: 1 }));
    // Renumbered and rehashed after a removal: the links break.
    let mut rewritten = records.clone();
    rewritten.remove(2);
    for (i, record) in rewritten.iter_mut().enumerate().skip(2) {
        *record = ledger_api::operators::AuditRecord::new(i as u64 + 1, record.at_ms, record.event.clone(), record.previous);
    }
    assert_eq!(check(&rewritten), Err(ChainBreak::Unlinked { sequence: 3 }));
    let cut = &records[..records.len() - 1];
    assert!(matches!(check(cut), Err(ChainBreak::Truncated { .. })));
}

fn withdraw(user: u64, amount: i128, key: &str) -> Command {
    Command::Wallet(wallet::Command::RequestWithdrawal { user, asset: USD, amount, destination: "iban".into(), key: key.into() })
}

fn frozen(applied: Applied) {
    assert!(matches!(applied.outcome, Err(LedgerError::AccountFrozen(_))), "expected ACCOUNT_FROZEN, got {:?}", applied.outcome);
}

#[test]
fn a_frozen_account_sends_no_money_out_until_two_operators_unfreeze_it() {
    let mut ledger = ledger(Thresholds::default());
    let id = pending(ledger.apply(&propose(ALICE, deposit(TRADER, 10_000, "in")), 10).outcome);
    ledger.apply(&approve(BOB, id), 10).outcome.unwrap();
    let waiting = match ledger.apply(&withdraw(TRADER, 1_000, "w1"), 11).outcome.unwrap() {
        Outcome::Wallet(wallet::Outcome::WithdrawalRequested(id)) => id,
        other => panic!("{other:?}"),
    };

    // One operator's word does not freeze an account.
    let freeze = op(Op::Propose { operator: ALICE, action: Action::Freeze { user: TRADER, cancel_orders: true } });
    let id = pending(ledger.apply(&freeze, 12).outcome);
    assert!(!ledger.operators().is_frozen(TRADER));
    ledger.apply(&withdraw(TRADER, 1, "w2"), 12).outcome.unwrap();
    match ledger.apply(&approve(BOB, id), 13).outcome.unwrap() {
        Outcome::Operators(OpOutcome::Executed { proposal, outcome: ActionOutcome::AccountFrozen { user: TRADER, orders_cancelled: 0 } }) => {
            assert_eq!((proposal.kind, proposal.approvals), (ActionKind::AccountFreeze, vec![ALICE, BOB]));
        }
        other => panic!("{other:?}"),
    }
    assert!(ledger.operators().is_frozen(TRADER));
    ledger.check_invariants().unwrap();

    // Frozen: no withdrawal, no transfer out, and operators cannot pay out the pending one.
    // The money: the kernel's accounts and holds, the wallet's withdrawals (not the proposals and audit records).
    let money = |ledger: &Ledger| {
        let state = ledger.state();
        (state.kernel, state.wallet)
    };
    let before = money(&ledger);
    frozen(ledger.apply(&withdraw(TRADER, 1, "w3"), 14));
    frozen(ledger.apply(&Command::Wallet(wallet::Command::Transfer { from: TRADER, to: CAROL, asset: USD, amount: 1, key: "t".into() }), 14));
    let payout = Command::Wallet(wallet::Command::DecideWithdrawal { id: waiting, approve: true });
    let id = pending(ledger.apply(&propose(ALICE, payout), 14).outcome);
    frozen(ledger.apply(&approve(BOB, id), 14));
    assert_eq!(ledger.operators().pending(id).map(|p| p.approvals.clone()), Some(vec![ALICE]), "the refused approval left the proposal as it was");
    ledger.apply(&op(Op::Reject { operator: BOB, proposal: id, reason: "frozen".into() }), 14).outcome.unwrap();
    assert!(money(&ledger) == before, "nothing moved");
    // Money still comes in, and a rejected withdrawal gives it back.
    let id = pending(ledger.apply(&propose(ALICE, deposit(TRADER, 500, "in-2")), 15).outcome);
    ledger.apply(&approve(BOB, id), 15).outcome.unwrap();
    let reject = Command::Wallet(wallet::Command::DecideWithdrawal { id: waiting, approve: false });
    ledger.apply(&propose(ALICE, reject), 15).outcome.unwrap();
    assert_eq!(available(&ledger, TRADER), 10_000 - 1 + 500);

    // Freezing twice is refused; a restore keeps the freeze.
    let again = op(Op::Propose { operator: BOB, action: Action::Freeze { user: TRADER, cancel_orders: false } });
    assert!(matches!(ledger.apply(&again, 16).outcome, Err(LedgerError::BadInput(_))));
    let mut ledger = Ledger::restore(LedgerLimits::default(), ledger.state());
    assert!(ledger.operators().is_frozen(TRADER));
    frozen(ledger.apply(&withdraw(TRADER, 1, "w4"), 17));

    // Unfreezing takes two operators too, never the account's own.
    let unfreeze = op(Op::Propose { operator: BOB, action: Action::Unfreeze { user: TRADER } });
    let id = pending(ledger.apply(&unfreeze, 18).outcome);
    forbidden(ledger.apply(&approve(TRADER, id), 18));
    match ledger.apply(&approve(ALICE, id), 19).outcome.unwrap() {
        Outcome::Operators(OpOutcome::Executed { outcome: ActionOutcome::AccountUnfrozen(TRADER), .. }) => {}
        other => panic!("{other:?}"),
    }
    ledger.apply(&withdraw(TRADER, 1, "w5"), 20).outcome.unwrap();
    ledger.check_invariants().unwrap();
}

#[test]
fn an_operator_decides_neither_on_freezing_their_own_account_nor_on_unfreezing_it() {
    let mut ledger = ledger(Thresholds::default());
    let reason = forbidden(ledger.apply(&op(Op::Propose { operator: ALICE, action: Action::Unfreeze { user: ALICE } }), 10));
    assert!(reason.contains("would benefit"), "{reason}");
    let id = pending(ledger.apply(&op(Op::Propose { operator: BOB, action: Action::Freeze { user: ALICE, cancel_orders: false } }), 11).outcome);
    forbidden(ledger.apply(&approve(ALICE, id), 11));
    assert!(!ledger.operators().is_frozen(ALICE));
}

#[test]
fn a_users_tier_takes_two_operators_and_none_sets_their_own() {
    let mut ledger = ledger(Thresholds::default());
    assert_eq!(ledger.operators().tier(TRADER), 0, "a new user is at tier 0");
    let id = pending(ledger.apply(&op(Op::Propose { operator: ALICE, action: Action::SetTier { user: TRADER, tier: 2 } }), 10).outcome);
    assert_eq!(ledger.operators().tier(TRADER), 0, "one operator's word does not change it");
    match ledger.apply(&approve(BOB, id), 11).outcome.unwrap() {
        Outcome::Operators(OpOutcome::Executed { proposal, outcome: ActionOutcome::TierSet { user: TRADER, tier: 2 } }) => {
            assert_eq!((proposal.kind, proposal.approvals), (ActionKind::Tier, vec![ALICE, BOB]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ledger.operators().tier(TRADER), 2);
    // The same tier again, a tier past the highest, and an operator's own tier are refused.
    assert!(ledger.apply(&op(Op::Propose { operator: ALICE, action: Action::SetTier { user: TRADER, tier: 2 } }), 12).outcome.is_err());
    assert!(ledger.apply(&op(Op::Propose { operator: ALICE, action: Action::SetTier { user: TRADER, tier: 10 } }), 12).outcome.is_err());
    let reason = forbidden(ledger.apply(&op(Op::Propose { operator: ALICE, action: Action::SetTier { user: ALICE, tier: 9 } }), 12));
    assert!(reason.contains("would benefit"), "{reason}");
    // Back to 0.
    let id = pending(ledger.apply(&op(Op::Propose { operator: BOB, action: Action::SetTier { user: TRADER, tier: 0 } }), 13).outcome);
    ledger.apply(&approve(ALICE, id), 13).outcome.unwrap();
    assert_eq!(ledger.operators().tier(TRADER), 0);
    ledger.check_invariants().unwrap();
}

#[derive(Clone, Debug)]
enum Step {
    Propose { operator: u64, user: u64, amount: i128, reference: u8 },
    Approve { operator: u64, proposal: u64 },
    Reject { operator: u64, proposal: u64 },
    AddOperator { operator: u64, user: u64 },
    Freeze { operator: u64, user: u64, frozen: bool },
    Withdraw { user: u64, amount: i128 },
}

fn step() -> impl Strategy<Value = Step> {
    let user = 1u64..6;
    prop_oneof![
        (user.clone(), user.clone(), 1i128..1_000, 0u8..6).prop_map(|(operator, user, amount, reference)| Step::Propose { operator, user, amount, reference }),
        (user.clone(), 1u64..12).prop_map(|(operator, proposal)| Step::Approve { operator, proposal }),
        (user.clone(), 1u64..12).prop_map(|(operator, proposal)| Step::Reject { operator, proposal }),
        (user.clone(), user.clone()).prop_map(|(operator, user)| Step::AddOperator { operator, user }),
        (user.clone(), user.clone(), any::<bool>()).prop_map(|(operator, user, frozen)| Step::Freeze { operator, user, frozen }),
        (user, 1i128..500).prop_map(|(user, amount)| Step::Withdraw { user, amount }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever operators and others try: a deposit happens only with two
    /// different operators' approvals, neither of them its beneficiary;
    /// every invariant holds; the audit chain verifies to the head.
    #[test]
    fn random_operators_never_break_four_eyes(steps in prop::collection::vec(step(), 1..60)) {
        let mut ledger = ledger(Thresholds::default());
        let mut chain = ChainCheck::default();
        for record in audit_of(&mut ledger) {
            chain.next(&record).unwrap();
        }
        for (at, step) in steps.into_iter().enumerate() {
            let at = 100 + at as u64;
            let command = match step {
                Step::Propose { operator, user, amount, reference } => propose(operator, deposit(user, amount, &format!("ref-{reference}"))),
                Step::Approve { operator, proposal } => approve(operator, proposal),
                Step::Reject { operator, proposal } => op(Op::Reject { operator, proposal, reason: "no".into() }),
                Step::AddOperator { operator, user } => op(Op::Propose { operator, action: Action::AddOperator { user } }),
                Step::Freeze { operator, user, frozen: true } => op(Op::Propose { operator, action: Action::Freeze { user, cancel_orders: true } }),
                Step::Freeze { operator, user, frozen: false } => op(Op::Propose { operator, action: Action::Unfreeze { user } }),
                Step::Withdraw { user, amount } => withdraw(user, amount, &format!("w-{at}")),
            };
            let was_frozen: Vec<bool> = (1..6).map(|u| ledger.operators().is_frozen(u)).collect();
            let before: Vec<Balance> = (1..6).map(|u| Balance { available: available(&ledger, u), locked: 0 }).collect();
            let applied = ledger.apply(&command, at);
            ledger.check_invariants().map_err(TestCaseError::fail)?;
            if let Ok(Outcome::Wallet(wallet::Outcome::WithdrawalRequested(_))) = &applied.outcome {
                let Command::Wallet(wallet::Command::RequestWithdrawal { user, .. }) = command else { unreachable!() };
                prop_assert!(!was_frozen[user as usize - 1], "a frozen account withdrew");
                continue;
            }
            if let Ok(Outcome::Operators(OpOutcome::Executed { proposal, outcome })) = &applied.outcome {
                if let ActionOutcome::AccountFrozen { user, .. } | ActionOutcome::AccountUnfrozen(user) = outcome {
                    prop_assert!(proposal.approvals.len() >= 2 && !proposal.approvals.contains(user), "{proposal:?}");
                    prop_assert_eq!(ledger.operators().is_frozen(*user), matches!(outcome, ActionOutcome::AccountFrozen { .. }));
                }
                if let ActionOutcome::Wallet(wallet::Outcome::Deposited(_)) = outcome {
                    let Action::Ledger(ActionCommand::Wallet(wallet::Command::Deposit { user, .. })) = proposal.action else { unreachable!() };
                    prop_assert!(proposal.approvals.len() >= 2 && proposal.approvals[0] != proposal.approvals[1]);
                    prop_assert!(!proposal.approvals.contains(&user), "a beneficiary approved: {proposal:?}");
                    prop_assert!(proposal.approvals.iter().all(|a| ledger.operators().is_operator(*a)));
                }
            } else {
                let after: Vec<Balance> = (1..6).map(|u| Balance { available: available(&ledger, u), locked: 0 }).collect();
                prop_assert_eq!(before, after, "money moved without an executed proposal: {:?}", applied.outcome);
            }
            for record in audit_of(&mut ledger) {
                chain.next(&record).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            chain.finish(&ledger.operators().state().head).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }
}
