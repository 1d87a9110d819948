//! The products over the money kernel, and the [`Ledger`] that holds them.
//!
//! Each product is one module that owns its commands' handling, its state
//! (withdrawals, orders, markets), its own invariants, the purposes of the
//! accounts it uses, its transfer codes and the kinds of its holds and
//! idempotency records. It moves money only through the kernel
//! (`ledger-core`); one product reaches another only through the kernel's
//! accounts, never through the other's state. Their messages and records
//! are `ledger-api`'s, one module each there too.
//!
//! This file is the registry: the dispatch of commands, the purposes, the
//! state and the changes of every product. Adding a product adds one line
//! to each (see ARCHITECTURE.md, "Adding a product").
//!
//! Pure: no I/O, no clock (the daemon stamps `at_ms`), no floats.

#![deny(clippy::float_arithmetic)]

pub mod house;
pub mod spot;
pub mod wallet;

use ledger_api::{AssetSpec, Command, LedgerError, Outcome};
use ledger_core::{Digest, Kernel, KernelChanges, KernelError, KernelLimits, KernelState, Purposes};
use serde::{Deserialize, Serialize};

pub use ledger_core;

/// Also the `[limits]` section of `ledger.toml`: every key optional, unknown keys refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerLimits {
    pub open_orders_per_user_max: u32,
    pub open_orders_max: u32,
    pub pending_withdrawals_max: u32,
    pub assets_max: u32,
    pub markets_max: u32,
    /// Not a limit: idempotency keys the ledger makes room for at start, so
    /// that it does not stop to grow its table (a pause of tens of
    /// milliseconds at a million keys) until it holds more than these.
    /// About 100 bytes each: two 48-byte slots and a list entry (the slots
    /// mapped in by [`Ledger::touch_reserved`]).
    pub idempotency_keys_reserved: u32,
}

impl Default for LedgerLimits {
    fn default() -> Self {
        LedgerLimits {
            open_orders_per_user_max: 1_000,
            open_orders_max: 10_000_000,
            pending_withdrawals_max: 1_000_000,
            assets_max: 1_024,
            markets_max: 1_024,
            idempotency_keys_reserved: 1 << 20,
        }
    }
}

/// Every account purpose the products declare, with its rules.
pub fn purposes() -> Purposes {
    let specs: Vec<_> = [wallet::PURPOSES, house::PURPOSES].concat();
    Purposes::new(&specs).expect("the products declare each purpose once (tested)")
}

/// The kinds of idempotency records and of holds the products declare:
/// each must be unique (a test checks).
pub fn record_kinds() -> Vec<u8> {
    [wallet::RECORD_KINDS, spot::RECORD_KINDS, house::RECORD_KINDS].concat()
}

pub fn hold_kinds() -> Vec<u8> {
    [wallet::HOLD_KINDS, spot::HOLD_KINDS].concat()
}

/// A command's result, and for commands matching must see (orders,
/// cancels, new markets) what to send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Result<Outcome, LedgerError>,
    pub forward: Option<matching_api::Command>,
}

impl Applied {
    fn local(outcome: Result<Outcome, LedgerError>) -> Applied {
        Applied { outcome, forward: None }
    }
}

/// Everything the ledger holds, in canonical order: storage writes it
/// piecewise and restores it whole; its hash is the state hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    pub kernel: KernelState,
    pub wallet: wallet::WalletState,
    pub spot: spot::SpotState,
}

/// What commands changed since the last [`Ledger::take_changes`], for storage to write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub kernel: KernelChanges,
    pub wallet: wallet::WalletChanges,
    pub spot: spot::SpotChanges,
}

impl Changes {
    fn clear(&mut self) {
        self.kernel.clear();
        self.wallet.clear();
        self.spot.clear();
    }
}

pub struct Ledger {
    limits: LedgerLimits,
    kernel: Kernel,
    wallet: wallet::Wallet,
    spot: spot::Spot,
    /// [`Ledger::apply_all`]'s idempotency digests, one per command, kept for the next batch.
    batch_keys: Vec<Option<Digest>>,
}

/// A kernel refusal in the API's words.
pub(crate) fn refusal(error: KernelError) -> LedgerError {
    match error {
        KernelError::UnknownAsset(asset) => LedgerError::UnknownAsset(asset),
        KernelError::AssetExists(asset) => LedgerError::AssetExists(asset),
        KernelError::BadInput(reason) => LedgerError::BadInput(reason.into()),
        KernelError::InsufficientFunds { needed, available } => LedgerError::InsufficientFunds { needed, available },
        KernelError::Duplicate => LedgerError::Duplicate,
        KernelError::LimitReached(limit) => LedgerError::LimitReached(limit.into()),
        // The products check what would make these first: one is a bug, refused rather than applied.
        error @ (KernelError::UnknownHold(_) | KernelError::HoldExists(_) | KernelError::HoldExceeded { .. }) => LedgerError::BadInput(error.to_string()),
    }
}

impl Ledger {
    pub fn new(limits: LedgerLimits) -> Ledger {
        Ledger::restore(limits, LedgerState { kernel: KernelState { next_transfer: 1, ..KernelState::default() }, ..LedgerState::default() })
    }

    pub fn restore(limits: LedgerLimits, state: LedgerState) -> Ledger {
        let kernel_limits = KernelLimits { assets_max: limits.assets_max, idempotency_keys_reserved: limits.idempotency_keys_reserved };
        Ledger {
            limits,
            kernel: Kernel::restore(purposes(), kernel_limits, state.kernel),
            wallet: wallet::Wallet::restore(state.wallet),
            spot: spot::Spot::restore(state.spot),
            batch_keys: Vec::new(),
        }
    }

    pub fn state(&self) -> LedgerState {
        LedgerState { kernel: self.kernel.state(), wallet: self.wallet.state(), spot: self.spot.state() }
    }

    /// blake3 of the canonical state.
    pub fn state_hash(&self) -> [u8; 32] {
        *blake3::hash(&postcard::to_stdvec(&self.state()).expect("encoding into a vector cannot fail")).as_bytes()
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    pub fn wallet(&self) -> &wallet::Wallet {
        &self.wallet
    }

    pub fn spot(&self) -> &spot::Spot {
        &self.spot
    }

    /// See [`Kernel::touch_reserved`]: the daemon maps in the reserved room for keys at start.
    pub fn touch_reserved(&mut self) -> usize {
        self.kernel.touch_reserved()
    }

    pub fn take_changes(&mut self) -> Changes {
        Changes { kernel: self.kernel.take_changes(), wallet: self.wallet.take_changes(), spot: self.spot.take_changes() }
    }

    /// Hands back taken changes once written: emptied, they collect the
    /// next batch's (a tenth of the core's work per transfer, in the
    /// benchmark, was growing them from nothing).
    pub fn recycle(&mut self, mut changes: Changes) {
        changes.clear();
        self.kernel.recycle(changes.kernel);
        self.wallet.recycle(changes.wallet);
        self.spot.recycle(changes.spot);
    }

    /// Applies one command at `at_ms`. An `Err` outcome changed nothing.
    pub fn apply(&mut self, command: &Command, at_ms: u64) -> Applied {
        self.apply_keyed(command, at_ms, None)
    }

    /// Applies `commands` in order, exactly as [`Self::apply`] one by one
    /// would, and hands `each` every result with the ledger as that command
    /// left it. First it computes the commands' idempotency digests and asks
    /// the CPU for their slots in the key table: a new key's slot is a cache
    /// miss in a table of a million keys, and these overlap with the hashing
    /// instead of stalling each command in turn.
    pub fn apply_all<'c, I>(&mut self, commands: I, mut each: impl FnMut(&Ledger, Applied))
    where
        I: IntoIterator<Item = (&'c Command, u64)>,
        I::IntoIter: Clone,
    {
        let commands = commands.into_iter();
        let mut keys = std::mem::take(&mut self.batch_keys);
        keys.clear();
        keys.extend(commands.clone().map(|(command, _)| {
            let key = idempotency_key(command);
            if let Some(key) = &key {
                self.kernel.prefetch_key(key);
            }
            key
        }));
        for ((command, at_ms), key) in commands.zip(&keys) {
            let applied = self.apply_keyed(command, at_ms, *key);
            each(self, applied);
        }
        self.batch_keys = keys;
    }

    /// The dispatch: one line per product. `known_key` is the command's
    /// idempotency digest if computed already.
    fn apply_keyed(&mut self, command: &Command, at_ms: u64, known_key: Option<Digest>) -> Applied {
        let Ledger { limits, kernel, wallet, spot, .. } = self;
        match command {
            Command::CreateAsset(spec) => Applied::local(create_asset(kernel, spec)),
            Command::Wallet(command) => Applied::local(wallet.apply(kernel, limits, command, at_ms, known_key).map(Outcome::Wallet)),
            Command::Spot(command) => {
                let (outcome, forward) = spot.apply(kernel, limits, command, at_ms, known_key);
                Applied { outcome: outcome.map(Outcome::Spot), forward }
            }
            Command::House(command) => Applied::local(house::apply(kernel, command, at_ms, known_key).map(Outcome::House)),
        }
    }

    /// Every invariant, the kernel's and each product's, over the whole
    /// state. Tests run it after every command; the daemon at start-up and
    /// after every batch.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.kernel.check_invariants()?;
        self.wallet.check_invariants(&self.kernel)?;
        self.spot.check_invariants(&self.kernel)?;
        Ok(())
    }
}

/// The digest a command's own step computes for its idempotency key, for
/// the commands that carry a valid one.
fn idempotency_key(command: &Command) -> Option<Digest> {
    match command {
        Command::CreateAsset(_) => None,
        Command::Wallet(command) => wallet::idempotency_key(command),
        Command::Spot(command) => spot::idempotency_key(command),
        Command::House(command) => house::idempotency_key(command),
    }
}

fn create_asset(kernel: &mut Kernel, spec: &AssetSpec) -> Result<Outcome, LedgerError> {
    let spec = ledger_core::AssetSpec { id: spec.id, symbol: spec.symbol.clone(), scale: spec.scale };
    kernel.create_asset(&spec).map_err(refusal)?;
    Ok(Outcome::AssetCreated(spec.id))
}

/// A valid key's digest: its product's kind of request, the key's owner, its text.
pub(crate) fn key_digest(kind: &[u8], owner: &[u8], key: &str) -> Option<Digest> {
    ledger_core::check_key(key).ok().map(|()| ledger_core::key_digest(&[kind, owner, key.as_bytes()]))
}
