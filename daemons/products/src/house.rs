//! The house: the platform's own accounts per asset. Revenue collects the
//! products' fees; inventory is what operators bring in from custody for
//! the house to trade with, and can take back out.

use ids::{Amount, AssetId, TimestampMs};
use ledger_api::house::{self as api, Command, Outcome};
use ledger_api::LedgerError;
use ledger_core::{AccountId, Digest, Idempotent, Kernel, Leg, Purpose, PurposeSpec, Recorded, TransferCode};

use crate::wallet::custody;
use crate::{key_digest, refusal, Forward, LedgerLimits, Product};

pub const REVENUE: Purpose = Purpose(api::REVENUE);
pub const INVENTORY: Purpose = Purpose(api::INVENTORY);

pub const PURPOSES: &[PurposeSpec] = &[
    PurposeSpec { purpose: REVENUE, name: "revenue", may_go_negative: false, holds_only: false },
    PurposeSpec { purpose: INVENTORY, name: "inventory", may_go_negative: false, holds_only: false },
];

const FUNDING_RECORD: u8 = 5;
const DEFUNDING_RECORD: u8 = 6;

/// The house keeps no state of its own: its accounts are the kernel's.
#[derive(Default)]
pub struct House {
    changes: (),
}

impl Product for House {
    type Command = Command;
    type Outcome = Outcome;
    type State = ();
    type Changes = ();
    const PURPOSES: &'static [PurposeSpec] = PURPOSES;
    const RECORD_KINDS: &'static [u8] = &[FUNDING_RECORD, DEFUNDING_RECORD];

    fn restore((): ()) -> House {
        House::default()
    }

    fn state(&self) {}

    fn changes_mut(&mut self) -> &mut () {
        &mut self.changes
    }

    fn idempotency_key(command: &Command) -> Option<Digest> {
        match command {
            Command::Fund { asset, reference, .. } => funding_key(b"house-funding", *asset, reference),
            Command::Defund { asset, reference, .. } => funding_key(b"house-defunding", *asset, reference),
        }
    }

    fn apply(
        &mut self,
        kernel: &mut Kernel,
        _: &LedgerLimits,
        command: &Command,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> (Result<Outcome, LedgerError>, Forward) {
        (apply(kernel, command, at_ms, known_key), None)
    }

    /// Funding brings money in from outside, which a token never is:
    /// its supply is only what its offerings issue.
    fn token_movement(&self, _: &Kernel, command: &Command) -> Option<(AssetId, crate::tokenization::Movement)> {
        match command {
            Command::Fund { asset, .. } => Some((*asset, crate::tokenization::Movement::Deposit)),
            Command::Defund { .. } => None,
        }
    }

    fn check_invariants(&self, _: &Kernel) -> Result<(), String> {
        Ok(())
    }
}

pub fn revenue(asset: AssetId) -> AccountId {
    AccountId::house(asset, REVENUE)
}

pub fn inventory(asset: AssetId) -> AccountId {
    AccountId::house(asset, INVENTORY)
}

fn funding_key(kind: &[u8], asset: AssetId, reference: &str) -> Option<Digest> {
    key_digest(kind, &asset.to_le_bytes(), reference)
}

fn apply(kernel: &mut Kernel, command: &Command, at_ms: TimestampMs, known_key: Option<Digest>) -> Result<Outcome, LedgerError> {
    let (asset, amount, reference, leg_code, record) = match command {
        Command::Fund { asset, amount, reference } => (*asset, *amount, reference, api::FUNDING, FUNDING_RECORD),
        Command::Defund { asset, amount, reference } => (*asset, *amount, reference, api::DEFUNDING, DEFUNDING_RECORD),
    };
    ledger_core::check_key(reference).map_err(refusal)?;
    let key = known_key.or_else(|| House::idempotency_key(command)).expect("a checked key has a digest");
    let fingerprint = match kernel.idempotent(&key, &[&amount.to_le_bytes()]).map_err(refusal)? {
        Idempotent::Replay(recorded) if recorded.kind == record => return Ok(outcome(record, recorded.id)),
        Idempotent::Replay(_) => return Err(LedgerError::Duplicate),
        Idempotent::New(fingerprint) => fingerprint,
    };
    let (debit, credit) = if record == FUNDING_RECORD { (custody(asset), inventory(asset)) } else { (inventory(asset), custody(asset)) };
    let id = kernel.transfer(Leg { debit, credit, amount, code: TransferCode(leg_code) }, reference.as_str(), at_ms).map_err(refusal)?;
    kernel.remember(key, fingerprint, Recorded { kind: record, id }).map_err(refusal)?;
    Ok(outcome(record, id))
}

fn outcome(record: u8, id: u64) -> Outcome {
    if record == FUNDING_RECORD {
        Outcome::Funded(id)
    } else {
        Outcome::Defunded(id)
    }
}

/// The house's balances of `asset`: (inventory, revenue).
pub fn balances(kernel: &Kernel, asset: AssetId) -> (Amount, Amount) {
    (kernel.balance(inventory(asset)), kernel.balance(revenue(asset)))
}
