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
//! This file is the registry: each product implements [`Product`], and one
//! line in [`registry!`]'s list makes it part of the dispatch, the state,
//! the changes, the purposes and kinds, and the invariants (see
//! ARCHITECTURE.md, "Adding a product").
//!
//! Pure: no I/O, no clock (the daemon stamps `at_ms`), no floats.

#![deny(clippy::float_arithmetic)]

pub mod convert;
pub mod donations;
pub mod house;
pub mod operators;
pub mod perpetual;
pub mod spot;
pub mod tokenization;
pub mod wallet;

use ids::UserId;
use ledger_api::operators::{self as ops, Action, Proposal, ProposalStatus};
use ledger_api::{ActionCommand, ActionOutcome, AssetSpec, Command, LedgerError, Outcome};
use ledger_core::{Digest, Kernel, KernelChanges, KernelError, KernelLimits, KernelState, PurposeSpec, Purposes};
use operators::{forbidden, Operators, OperatorsChanges, OperatorsState};
use serde::{Deserialize, Serialize};

pub use ledger_core;

/// The pending proposals a token's issuer may have made as its agent at
/// once (operators' own count only against `proposals_pending_max`).
pub const AGENT_PROPOSALS_PENDING_MAX: usize = 20;

/// Also the `[limits]` section of `ledger.toml`: every key optional, unknown keys refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerLimits {
    pub open_orders_per_user_max: u32,
    pub open_orders_max: u32,
    pub pending_withdrawals_max: u32,
    pub assets_max: u32,
    pub markets_max: u32,
    /// Operators' proposals waiting for approvals.
    pub proposals_pending_max: u32,
    /// Not a limit: idempotency keys the ledger makes room for at start, so
    /// that it does not stop to grow its table (a pause of tens of
    /// milliseconds at a million keys) until it holds more than these.
    /// About 100 bytes each: two 48-byte slots and a list entry (the slots
    /// mapped in by [`Ledger::touch_reserved`]).
    pub idempotency_keys_reserved: u32,
    /// Convert: pairs, and quotes open per user and in all (a quote sets
    /// inventory aside until it expires: the per-user bound keeps one user
    /// from setting aside the house's whole inventory).
    pub convert_pairs_max: u32,
    pub convert_quotes_open_per_user_max: u32,
    pub convert_quotes_open_max: u32,
}

impl Default for LedgerLimits {
    fn default() -> Self {
        LedgerLimits {
            open_orders_per_user_max: 1_000,
            open_orders_max: 10_000_000,
            pending_withdrawals_max: 1_000_000,
            assets_max: 1_024,
            markets_max: 1_024,
            proposals_pending_max: 10_000,
            idempotency_keys_reserved: 1 << 20,
            convert_pairs_max: 1_024,
            convert_quotes_open_per_user_max: 10,
            convert_quotes_open_max: 100_000,
        }
    }
}

/// What a product is to the ledger. Each product's module implements it
/// for its state; [`registry!`] below lists them, and from that list come
/// the ledger's fields, its state and changes, the dispatch of commands,
/// the purposes and kinds declared, and the invariants checked.
pub trait Product: Default {
    /// The product's commands and outcomes: its module of `ledger-api`.
    type Command;
    type Outcome;
    /// Everything the product keeps, in canonical order (part of the state hash).
    type State: Clone + std::fmt::Debug + Default + PartialEq + Eq + Serialize + serde::de::DeserializeOwned;
    /// What its commands changed since the last batch, for storage.
    type Changes: ChangeSet;
    /// The purposes of the accounts it declares, and the kinds of its
    /// idempotency records and holds (unique across products: a test checks).
    const PURPOSES: &'static [PurposeSpec] = &[];
    const RECORD_KINDS: &'static [u8] = &[];
    const HOLD_KINDS: &'static [u8] = &[];

    fn restore(state: Self::State) -> Self;
    fn state(&self) -> Self::State;
    /// Where its commands collect what they change.
    fn changes_mut(&mut self) -> &mut Self::Changes;
    fn take_changes(&mut self) -> Self::Changes {
        std::mem::take(self.changes_mut())
    }
    /// Takes back written changes to collect the next batch's: emptied,
    /// they keep their room (growing them from nothing was a tenth of the
    /// core's work per transfer in the benchmark).
    fn recycle(&mut self, mut changes: Self::Changes) {
        changes.clear();
        let collecting = self.changes_mut();
        if *collecting == Self::Changes::default() {
            *collecting = changes;
        }
    }
    /// The digest of a command's idempotency key, if it carries a valid one.
    fn idempotency_key(command: &Self::Command) -> Option<Digest>;
    /// Applies a command; an `Err` changed nothing. The second part is what
    /// to send matching, for products that trade on it.
    fn apply(
        &mut self,
        kernel: &mut Kernel,
        limits: &LedgerLimits,
        command: &Self::Command,
        at_ms: u64,
        known_key: Option<Digest>,
    ) -> (Result<Self::Outcome, LedgerError>, Forward);
    /// The user an operator's command benefits (a deposit's, a
    /// withdrawal's owner): they may neither propose nor approve it.
    fn beneficiary(&self, _command: &Self::Command) -> Result<Option<UserId>, LedgerError> {
        Ok(None)
    }
    /// The user a command acts for when it is one a frozen account may not
    /// give (an order, money out): refused while that account is frozen.
    fn frozen_subject(&self, _command: &Self::Command) -> Option<UserId> {
        None
    }
    /// The user a command places a new order for: refused while their kill
    /// switch is engaged.
    fn order_subject(&self, _command: &Self::Command) -> Option<UserId> {
        None
    }
    /// The movement of an asset the command asks for (an order's, a
    /// transfer's, a withdrawal's), which the asset's rules decide first
    /// when it is a token (`tokenization`'s `canTransfer`).
    fn token_movement(&self, _kernel: &Kernel, _command: &Self::Command) -> Option<(ids::AssetId, tokenization::Movement)> {
        None
    }
    /// More for matching from the command just applied, after its forward
    /// (the cancels of orders that expired).
    fn take_forward_more(&mut self) -> Vec<matching_api::Command> {
        Vec::new()
    }
    /// What to send matching to cancel everything `user` has open, their
    /// account being frozen; in a deterministic order (replicas and a
    /// replay send the same).
    fn cancel_all(&self, _user: UserId) -> Vec<matching_api::Command> {
        Vec::new()
    }
    /// The product's own invariants, over its state and the kernel's.
    fn check_invariants(&self, kernel: &Kernel) -> Result<(), String>;
}

/// A product's changes since the last batch.
pub trait ChangeSet: Clone + std::fmt::Debug + Default + PartialEq + Eq {
    /// Empties it, keeping its room.
    fn clear(&mut self);
}

impl ChangeSet for () {
    fn clear(&mut self) {}
}

/// What a command sends matching, if anything.
pub type Forward = Option<matching_api::Command>;

/// A command's result, and for commands matching must see (orders,
/// cancels, new markets) what to send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Result<Outcome, LedgerError>,
    pub forward: Forward,
    /// More for matching after `forward`: a frozen account's cancels.
    pub forward_more: Vec<matching_api::Command>,
}

impl Applied {
    fn new(outcome: Result<Outcome, LedgerError>, forward: Forward) -> Applied {
        Applied { outcome, forward, forward_more: Vec::new() }
    }

    fn refused(error: LedgerError) -> Applied {
        Applied::new(Err(error), None)
    }
}

/// Generates, from the list of products (the variant of `ledger_api::Command`
/// and `Outcome`, the field, the type), the products' part of the ledger.
macro_rules! registry {
    ($($variant:ident => $field:ident: $product:ty),* $(,)?) => {
        /// Everything the ledger holds, in canonical order: storage writes it
        /// piecewise and restores it whole; its hash is the state hash.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct LedgerState {
            pub kernel: KernelState,
            pub operators: OperatorsState,
            $(pub $field: <$product as Product>::State,)*
        }

        /// What commands changed since the last [`Ledger::take_changes`], for storage to write.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct Changes {
            pub kernel: KernelChanges,
            pub operators: OperatorsChanges,
            $(pub $field: <$product as Product>::Changes,)*
        }

        #[derive(Default)]
        struct Products {
            operators: Operators,
            $($field: $product,)*
        }

        impl Products {
            fn restore(state: LedgerState) -> Products {
                Products { operators: Operators::restore(state.operators), $($field: <$product>::restore(state.$field),)* }
            }

            fn state(&self, kernel: KernelState) -> LedgerState {
                LedgerState { kernel, operators: self.operators.state().clone(), $($field: self.$field.state(),)* }
            }

            fn take_changes(&mut self, kernel: KernelChanges) -> Changes {
                Changes { kernel, operators: self.operators.take_changes(), $($field: self.$field.take_changes(),)* }
            }

            fn recycle(&mut self, changes: Changes) {
                self.operators.recycle(changes.operators);
                $(self.$field.recycle(changes.$field);)*
            }

            #[inline]
            fn apply(&mut self, kernel: &mut Kernel, limits: &LedgerLimits, command: &Command, at_ms: u64, known_key: Option<Digest>) -> Applied {
                // Checked here, so that an operator's approval of a frozen
                // account's withdrawal is refused like the account's own order.
                if self.operators.any_frozen() {
                    if let Some(user) = self.frozen_subject(command).filter(|user| self.operators.is_frozen(*user)) {
                        return Applied::refused(LedgerError::AccountFrozen(user));
                    }
                }
                if self.operators.any_kill_switch() {
                    if let Some(user) = self.order_subject(command) {
                        let state = self.operators.kill_switch(user);
                        if state.engaged() {
                            return Applied::refused(LedgerError::KillSwitchEngaged { user, by_operators: state.by_operators });
                        }
                    }
                }
                // A token's rules, before anything is held or moved; a request
                // repeated under its key is the product's to answer (the first
                // one's outcome, or DUPLICATE), whatever the rules say now.
                if self.tokenization.has_tokens() {
                    if let Some((asset, movement)) = self.token_movement(kernel, command) {
                        let repeated = known_key.or_else(|| idempotency_key(command)).is_some_and(|key| !matches!(kernel.idempotent(&key, &[]), Ok(ledger_core::Idempotent::New(_))));
                        if !repeated {
                            if let Err(error) = self.tokenization.check_movement(kernel, &self.spot, asset, movement, at_ms) {
                                return Applied::refused(error);
                            }
                        }
                    }
                }
                if let Command::Donations(command) = command {
                    if let Err(error) = self.prepare_donation(command) {
                        return Applied::refused(error);
                    }
                    if let ledger_api::donations::Command::DonateConverted { donor, gift, quote, key } = command {
                        let outcome = self.donate_converted(kernel, *donor, gift, *quote, key, at_ms, known_key);
                        return Applied::new(outcome.map(Outcome::Donations), None);
                    }
                }
                let mut applied = match command {
                    Command::CreateAsset(spec) => Applied::new(create_asset(kernel, spec), None),
                    // Ledger::apply_keyed takes these first: they apply other commands.
                    Command::Operators(_) => Applied::refused(LedgerError::BadInput("an operators' command cannot be an action".into())),
                    $(Command::$variant(command) => {
                        let (outcome, forward) = self.$field.apply(kernel, limits, command, at_ms, known_key);
                        let mut applied = Applied::new(outcome.map(Outcome::$variant), forward);
                        applied.forward_more = self.$field.take_forward_more();
                        applied
                    })*
                };
                if applied.outcome.is_ok() && self.tokenization.has_tokens() {
                    self.keep_token_orders_within_rules(kernel, limits, command, &mut applied, at_ms);
                }
                applied
            }

            fn frozen_subject(&self, command: &Command) -> Option<UserId> {
                match command {
                    Command::CreateAsset(_) | Command::Operators(_) => None,
                    $(Command::$variant(command) => self.$field.frozen_subject(command),)*
                }
            }

            fn token_movement(&self, kernel: &Kernel, command: &Command) -> Option<(ids::AssetId, tokenization::Movement)> {
                match command {
                    Command::CreateAsset(_) | Command::Operators(_) => None,
                    $(Command::$variant(command) => self.$field.token_movement(kernel, command),)*
                }
            }

            fn order_subject(&self, command: &Command) -> Option<UserId> {
                match command {
                    Command::CreateAsset(_) | Command::Operators(_) => None,
                    $(Command::$variant(command) => self.$field.order_subject(command),)*
                }
            }

            /// The cancels of everything `user` has open, product by product.
            fn cancel_all(&self, user: UserId) -> Vec<matching_api::Command> {
                let mut cancels = Vec::new();
                $(cancels.extend(self.$field.cancel_all(user));)*
                cancels
            }

            fn beneficiary(&self, command: &Command) -> Result<Option<UserId>, LedgerError> {
                match command {
                    Command::CreateAsset(_) | Command::Operators(_) => Ok(None),
                    $(Command::$variant(command) => self.$field.beneficiary(command),)*
                }
            }

            fn check_invariants(&self, kernel: &Kernel) -> Result<(), String> {
                self.operators.check_invariants()?;
                $(self.$field.check_invariants(kernel)?;)*
                Ok(())
            }
        }

        impl Ledger {
            $(pub fn $field(&self) -> &$product {
                &self.products.$field
            })*
        }

        /// The digest a command's own step computes for its idempotency key,
        /// for the commands that carry a valid one.
        fn idempotency_key(command: &Command) -> Option<Digest> {
            match command {
                Command::CreateAsset(_) | Command::Operators(_) => None,
                $(Command::$variant(command) => <$product>::idempotency_key(command),)*
            }
        }

        /// Every account purpose the products declare, with its rules.
        pub fn purposes() -> Purposes {
            let specs: Vec<PurposeSpec> = [$(<$product as Product>::PURPOSES),*].concat();
            Purposes::new(&specs).expect("the products declare each purpose once (tested)")
        }

        /// The kinds of idempotency records the products declare.
        pub fn record_kinds() -> Vec<u8> {
            [$(<$product as Product>::RECORD_KINDS),*].concat()
        }

        /// The kinds of holds the products declare.
        pub fn hold_kinds() -> Vec<u8> {
            [$(<$product as Product>::HOLD_KINDS),*].concat()
        }
    };
}

impl Products {
    /// Keeps the resting orders on tokens' markets within the tokens'
    /// rules, as they change: a token's new rules, a user's new claims
    /// send matching the cancels of what may no longer rest; a buy expires
    /// when its owner's claims do.
    /// And lists the markets of the offerings a tick closed.
    fn keep_token_orders_within_rules(&mut self, kernel: &Kernel, limits: &LedgerLimits, command: &Command, applied: &mut Applied, at_ms: u64) {
        use ledger_api::spot::Command as S;
        use ledger_api::tokenization::Command as T;
        match command {
            Command::Tokenization(T::Tick) => {
                let mut listed = Vec::new();
                for market in self.tokenization.take_listings() {
                    // A later offering of a listed token lists nothing; nor does a
                    // listing beyond the markets' limit (the operators list it then).
                    if let Some(market) = self.spot.list_token(kernel, limits, market) {
                        applied.forward_more.push(matching_api::Command::AddMarket(market.spec));
                        listed.push(market.id());
                    }
                }
                if let Ok(Outcome::Tokenization(ledger_api::tokenization::Outcome::Ticked { markets_listed, .. })) = &mut applied.outcome {
                    *markets_listed = listed;
                }
            }
            Command::Tokenization(T::SetRules { token, .. }) => {
                let cancels = self.unfit_orders(kernel, *token, None, at_ms);
                applied.forward_more.extend(cancels);
            }
            Command::Tokenization(T::SetClaims { user, claims }) => {
                let tokens = self.spot.tokens_traded_by(*user);
                for token in &tokens {
                    let cancels = self.unfit_orders(kernel, *token, Some(*user), at_ms);
                    applied.forward_more.extend(cancels);
                    if let (Some(_), Some(expiry)) = (claims, self.tokenization.claims_expiry(*user, *token)) {
                        self.spot.expire_buys_by(*token, *user, expiry);
                    }
                }
            }
            Command::Spot(S::PlaceOrder { user, request, .. }) if request.side == matching_api::Side::Buy => {
                if let (Some(token), Ok(Outcome::Spot(ledger_api::spot::Outcome::OrderPlaced(id)))) = (self.spot.token_of(request.market), &applied.outcome) {
                    if let Some(expiry) = self.tokenization.claims_expiry(*user, token) {
                        self.spot.expire_by(*id, expiry);
                    }
                }
            }
            Command::Spot(S::PlaceOco { user, request, .. }) if request.side == matching_api::Side::Buy => {
                if let (Some(token), Ok(Outcome::Spot(ledger_api::spot::Outcome::OcoPlaced { limit, stop }))) =
                    (self.spot.token_of(request.market), &applied.outcome)
                {
                    if let Some(expiry) = self.tokenization.claims_expiry(*user, token) {
                        self.spot.expire_by(*limit, expiry);
                        self.spot.expire_by(*stop, expiry);
                    }
                }
            }
            _ => {}
        }
    }

    /// Donations take no token (its transfer rules bind every movement of
    /// it, and a campaign is no verified investor), and value each gift at
    /// the spot exchange's last trade price, handed in here.
    fn prepare_donation(&mut self, command: &ledger_api::donations::Command) -> Result<(), LedgerError> {
        use ledger_api::donations::Command as D;
        let assets: &[ids::AssetId] = match command {
            D::CreateCampaign { spec, .. } => &spec.accepted,
            D::FundPool { spec, .. } => std::slice::from_ref(&spec.asset),
            D::Donate { gift, .. } | D::DepositDonation { gift, .. } => std::slice::from_ref(&gift.asset),
            _ => &[],
        };
        if let Some(token) = assets.iter().find(|asset| self.tokenization.is_token(**asset)) {
            return Err(LedgerError::BadInput(format!("asset {token} is a token: donations are given in money")));
        }
        if let Some((reference, assets)) = self.donations.to_value(command) {
            let prices = assets.into_iter().map(|asset| (asset, self.spot.last_price(asset, reference))).collect();
            self.donations.set_prices(prices);
        }
        Ok(())
    }

    /// A gift converted at receipt: the donor's quote accepted and the
    /// gift of its proceeds, in one command (each product checks all it
    /// can refuse first; convert settles only once donations checked).
    #[allow(clippy::too_many_arguments)]
    fn donate_converted(
        &mut self,
        kernel: &mut Kernel,
        donor: UserId,
        gift: &ledger_api::donations::Gift,
        quote: ledger_api::convert::QuoteId,
        key: &str,
        at_ms: u64,
        known_key: Option<Digest>,
    ) -> Result<ledger_api::donations::Outcome, LedgerError> {
        ledger_core::check_key(key).map_err(refusal)?;
        // A repeat answers as the first did, its quote accepted since.
        if let Some(replayed) = self.donations.replayed(kernel, donor, gift, quote, key, known_key) {
            return replayed;
        }
        let quote = self.convert.check_accept(kernel, donor, quote, at_ms)?.clone();
        let convert = &mut self.convert;
        self.donations.donate_converted(kernel, donor, gift, key, known_key, &quote, at_ms, |kernel| convert.settle(kernel, quote.id, at_ms))
    }

    /// The cancels of the orders on `token`'s markets (of `only`, or
    /// everyone's) that its rules no longer let rest.
    fn unfit_orders(&self, kernel: &Kernel, token: ids::AssetId, only: Option<UserId>, at_ms: u64) -> Vec<matching_api::Command> {
        let resting = self.spot.resting_on_token(token, only);
        if resting.is_empty() {
            return Vec::new();
        }
        let unfit = self.tokenization.unfit_orders(kernel, &self.spot, token, &resting, at_ms);
        self.spot.cancels_of(token, &unfit)
    }

    /// The same for every token `user` has orders on (their claims or tier changed).
    fn unfit_orders_of(&self, kernel: &Kernel, user: UserId, at_ms: u64) -> Vec<matching_api::Command> {
        self.spot.tokens_traded_by(user).into_iter().flat_map(|token| self.unfit_orders(kernel, token, Some(user), at_ms)).collect()
    }
}

// The products: one line each.
registry! {
    Wallet => wallet: wallet::Wallet,
    Spot => spot: spot::Spot,
    House => house: house::House,
    Convert => convert: convert::Convert,
    Tokenization => tokenization: tokenization::Tokenization,
    Donations => donations: donations::Donations,
}

pub struct Ledger {
    limits: LedgerLimits,
    kernel: Kernel,
    products: Products,
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

    pub fn restore(limits: LedgerLimits, mut state: LedgerState) -> Ledger {
        let kernel_limits = KernelLimits { assets_max: limits.assets_max, idempotency_keys_reserved: limits.idempotency_keys_reserved };
        let mut kernel = Kernel::restore(purposes(), kernel_limits, std::mem::take(&mut state.kernel));
        let mut products = Products::restore(state);
        products.tokenization.mirror_tiers(&products.operators.state().tiers);
        products.tokenization.attach(&mut kernel);
        products.spot.attach(&kernel);
        Ledger { limits, kernel, products, batch_keys: Vec::new() }
    }

    pub fn state(&self) -> LedgerState {
        self.products.state(self.kernel.state())
    }

    /// blake3 of the canonical state.
    pub fn state_hash(&self) -> [u8; 32] {
        *blake3::hash(&postcard::to_stdvec(&self.state()).expect("encoding into a vector cannot fail")).as_bytes()
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// See [`Kernel::touch_reserved`]: the daemon maps in the reserved room for keys at start.
    pub fn touch_reserved(&mut self) -> usize {
        self.kernel.touch_reserved()
    }

    pub fn take_changes(&mut self) -> Changes {
        self.products.take_changes(self.kernel.take_changes())
    }

    /// Hands back taken changes once written: emptied, they collect the
    /// next batch's (see [`Product::recycle`]).
    pub fn recycle(&mut self, mut changes: Changes) {
        self.kernel.recycle(std::mem::take(&mut changes.kernel));
        self.products.recycle(changes);
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

    /// `known_key` is the command's idempotency digest if computed already.
    #[inline]
    fn apply_keyed(&mut self, command: &Command, at_ms: u64, known_key: Option<Digest>) -> Applied {
        if let Command::Operators(command) = command {
            return self.apply_operators(command, at_ms);
        }
        self.products.apply(&mut self.kernel, &self.limits, command, at_ms, known_key)
    }

    pub fn operators(&self) -> &Operators {
        &self.products.operators
    }

    fn apply_operators(&mut self, command: &ops::Command, at_ms: u64) -> Applied {
        let operators = &mut self.products.operators;
        let outcome = match command {
            ops::Command::Bootstrap { operator } => operators.bootstrap(*operator, at_ms),
            ops::Command::Propose { operator, action } => return self.propose(*operator, action, at_ms),
            ops::Command::Approve { operator, proposal } => return self.approve(*operator, *proposal, at_ms),
            ops::Command::Reject { operator, proposal, reason } => operators.reject(*operator, *proposal, reason, at_ms),
            ops::Command::Record(event) => operators.record(event, at_ms),
            ops::Command::Configure(thresholds) => operators.configure(*thresholds, at_ms),
            &ops::Command::KillSwitch { user, engaged } => {
                let state = ops::KillSwitch { by_user: engaged, ..operators.kill_switch(user) };
                return self.set_kill_switch(user, state).0;
            }
        };
        Applied::new(outcome.map(Outcome::Operators), None)
    }

    /// Puts `user`'s kill switch in `state`; newly engaged, their open
    /// orders' cancels go to matching. Also the outcome an operators' action has.
    fn set_kill_switch(&mut self, user: UserId, state: ops::KillSwitch) -> (Applied, ActionOutcome) {
        let was = self.products.operators.kill_switch(user);
        let cancels = if state.engaged() && !was.engaged() { self.products.cancel_all(user) } else { Vec::new() };
        let orders_cancelled = u32::try_from(cancels.len()).unwrap_or(u32::MAX);
        self.products.operators.set_kill_switch(user, state);
        let outcome = ActionOutcome::KillSwitchSet { user, state, orders_cancelled };
        let mut applied = Applied::new(Ok(Outcome::from(outcome.clone())), None);
        applied.forward_more = cancels;
        (applied, outcome)
    }

    /// Who `action` benefits; an error when what it names is gone (a
    /// withdrawal no longer pending).
    fn beneficiary(&self, action: &Action) -> Result<Option<UserId>, LedgerError> {
        match action {
            // An operator decides neither on their own account's freeze nor on its end.
            // Nor on their own tier (which sets their withdrawal limits).
            Action::AddOperator { user }
            | Action::Freeze { user, .. }
            | Action::Unfreeze { user }
            | Action::SetTier { user, .. }
            | Action::KillSwitch { user, .. } => Ok(Some(*user)),
            Action::Ledger(command) => self.products.beneficiary(&Command::from(command.clone())),
        }
    }

    /// Why `operator` may not approve `action`, if they may not.
    fn may_approve(&self, operator: UserId, action: &Action) -> Result<(), LedgerError> {
        self.products.operators.check_operator(operator)?;
        if self.beneficiary(action)? == Some(operator) {
            return Err(forbidden(format!("operator {operator} would benefit from this action; other operators must propose and approve it")));
        }
        Ok(())
    }

    /// Why `user` may not propose `action`, if they may not: an operator
    /// may, as one who may approve it; so may a token's issuer its agent's
    /// actions, which still need operators' approvals.
    fn may_propose(&self, user: UserId, action: &Action) -> Result<(), LedgerError> {
        let Action::Ledger(ActionCommand::Tokenization(command)) = action else { return self.may_approve(user, action) };
        if self.products.operators.is_operator(user) || self.products.tokenization.agent_of(command) != Some(user) {
            return self.may_approve(user, action);
        }
        if self.beneficiary(action)? == Some(user) {
            return Err(forbidden(format!("user {user} would benefit from this action; operators must propose and approve it")));
        }
        Ok(())
    }

    fn propose(&mut self, operator: UserId, action: &Action, at_ms: u64) -> Applied {
        let Some(kind) = action.kind() else { return Applied::refused(LedgerError::BadInput("that command is not an operator's action".into())) };
        if let Err(error) = self.may_propose(operator, action) {
            return Applied::refused(error);
        }
        let operators = &self.products.operators;
        if let Err(error) = self.can_execute(action) {
            return Applied::refused(error);
        }
        if let Some(id) = operators.pending_with(action) {
            let proposal = operators.pending(id).expect("pending_with found it");
            if proposal.approvals.contains(&operator) {
                // The same operator asking again: still waiting for others.
                return Applied::new(Ok(Outcome::Operators(ops::Outcome::Proposal(proposal.clone()))), None);
            }
            return self.approve(operator, id, at_ms);
        }
        let proposal = Proposal {
            id: operators.next_proposal(),
            kind,
            action: action.clone(),
            approvals: vec![operator],
            // An issuer's proposal waits for at least one operator, whatever the threshold.
            required: if operators.is_operator(operator) { operators.required(kind) } else { operators.required(kind).max(2) },
            status: ProposalStatus::Pending,
            created_ms: at_ms,
            updated_ms: at_ms,
            rejection: None,
        };
        if proposal.required <= 1 {
            return self.execute(proposal, at_ms);
        }
        if operators.pending_count() >= self.limits.proposals_pending_max as usize {
            return Applied::refused(LedgerError::LimitReached("limits.proposals_pending_max: approve or reject some proposals first".into()));
        }
        // An issuer must not fill the operators' queue with its agent's actions.
        if !operators.is_operator(operator) && operators.pending_by(operator) >= AGENT_PROPOSALS_PENDING_MAX {
            return Applied::refused(LedgerError::LimitReached(format!(
                "user {operator} has {AGENT_PROPOSALS_PENDING_MAX} proposals waiting: an operator approves or rejects some first"
            )));
        }
        let outcome = self.products.operators.open(proposal, at_ms);
        Applied::new(Ok(Outcome::Operators(outcome)), None)
    }

    fn approve(&mut self, operator: UserId, id: ops::ProposalId, at_ms: u64) -> Applied {
        let Some(proposal) = self.products.operators.pending(id) else {
            return Applied::refused(LedgerError::BadInput(format!("proposal {id} is not pending (unknown, executed or rejected)")));
        };
        if proposal.approvals.contains(&operator) {
            return Applied::refused(forbidden(format!("operator {operator} has approved proposal {id} already; a different operator must approve it")));
        }
        let mut proposal = proposal.clone();
        if let Err(error) = self.may_approve(operator, &proposal.action) {
            return Applied::refused(error);
        }
        if proposal.approvals.len() + 1 < usize::from(proposal.required) {
            let outcome = self.products.operators.approve(id, operator, at_ms);
            return Applied::new(Ok(Outcome::Operators(outcome)), None);
        }
        proposal.approvals.push(operator);
        self.execute(proposal, at_ms)
    }

    /// Applies an approved proposal's action; refused, nothing changes and
    /// the proposal stays as it was.
    fn execute(&mut self, proposal: Proposal, at_ms: u64) -> Applied {
        let executed = |proposal, outcome, forward| Applied::new(Ok(Outcome::Operators(ops::Outcome::Executed { proposal, outcome })), forward);
        match &proposal.action {
            Action::Ledger(command) => {
                let applied = self.products.apply(&mut self.kernel, &self.limits, &Command::from(command.clone()), at_ms, None);
                match applied.outcome.map(ActionOutcome::of) {
                    Err(error) => Applied::refused(error),
                    // Only an operators' command has no action outcome, and no action is one.
                    Ok(None) => Applied::refused(LedgerError::BadInput("an operators' command cannot be an action".into())),
                    Ok(Some(outcome)) => {
                        let mut executed = executed(self.products.operators.executed(proposal, at_ms), outcome, applied.forward);
                        executed.forward_more = applied.forward_more;
                        executed
                    }
                }
            }
            &Action::AddOperator { user } => {
                if let Err(error) = self.can_execute(&proposal.action) {
                    return Applied::refused(error);
                }
                let operators = &mut self.products.operators;
                let proposal = operators.executed(proposal, at_ms);
                operators.add_operator(user, proposal.id, at_ms);
                executed(proposal, ActionOutcome::OperatorAdded(user), None)
            }
            &Action::Freeze { user, cancel_orders } => {
                if let Err(error) = self.can_execute(&proposal.action) {
                    return Applied::refused(error);
                }
                let cancels = if cancel_orders { self.products.cancel_all(user) } else { Vec::new() };
                let orders_cancelled = u32::try_from(cancels.len()).unwrap_or(u32::MAX);
                let operators = &mut self.products.operators;
                let proposal = operators.executed(proposal, at_ms);
                operators.freeze(user, true);
                let mut applied = executed(proposal, ActionOutcome::AccountFrozen { user, orders_cancelled }, None);
                applied.forward_more = cancels;
                applied
            }
            &Action::Unfreeze { user } => {
                if let Err(error) = self.can_execute(&proposal.action) {
                    return Applied::refused(error);
                }
                let operators = &mut self.products.operators;
                let proposal = operators.executed(proposal, at_ms);
                operators.freeze(user, false);
                executed(proposal, ActionOutcome::AccountUnfrozen(user), None)
            }
            &Action::KillSwitch { user, engaged } => {
                if let Err(error) = self.can_execute(&proposal.action) {
                    return Applied::refused(error);
                }
                let state = ops::KillSwitch { by_operators: engaged, ..self.products.operators.kill_switch(user) };
                let (mut applied, outcome) = self.set_kill_switch(user, state);
                let proposal = self.products.operators.executed(proposal, at_ms);
                applied.outcome = Ok(Outcome::Operators(ops::Outcome::Executed { proposal, outcome }));
                applied
            }
            &Action::SetTier { user, tier } => {
                if let Err(error) = self.can_execute(&proposal.action) {
                    return Applied::refused(error);
                }
                let operators = &mut self.products.operators;
                let proposal = operators.executed(proposal, at_ms);
                operators.set_tier(user, tier);
                self.products.tokenization.note_tier(user, tier);
                let mut applied = executed(proposal, ActionOutcome::TierSet { user, tier }, None);
                applied.forward_more = self.products.unfit_orders_of(&self.kernel, user, at_ms);
                applied
            }
        }
    }

    /// Why an operators' own action cannot be done as things stand (at its
    /// proposal, and again at its last approval).
    fn can_execute(&self, action: &Action) -> Result<(), LedgerError> {
        let operators = &self.products.operators;
        match *action {
            Action::AddOperator { user } if operators.is_operator(user) => Err(LedgerError::BadInput(format!("user {user} is an operator already"))),
            Action::Freeze { user, .. } if operators.is_frozen(user) => Err(LedgerError::BadInput(format!("account {user} is frozen already"))),
            Action::Unfreeze { user } if !operators.is_frozen(user) => Err(LedgerError::BadInput(format!("account {user} is not frozen"))),
            Action::SetTier { user, tier } if operators.tier(user) == tier => Err(LedgerError::BadInput(format!("user {user} is at tier {tier} already"))),
            Action::KillSwitch { user, engaged } if operators.kill_switch(user).by_operators == engaged => Err(LedgerError::BadInput(format!(
                "the operators' kill switch on user {user}'s trading is {} already",
                if engaged { "engaged" } else { "lifted" }
            ))),
            Action::SetTier { tier, .. } if tier > ledger_api::operators::TIER_MAX => {
                Err(LedgerError::BadInput(format!("a tier is 0 to {}", ledger_api::operators::TIER_MAX)))
            }
            _ => Ok(()),
        }
    }

    /// Every invariant, the kernel's and each product's, over the whole
    /// state. Tests run it after every command; the daemon at start-up and
    /// after every batch.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.kernel.check_invariants()?;
        self.products.check_invariants(&self.kernel)
    }
}

fn create_asset(kernel: &mut Kernel, spec: &AssetSpec) -> Result<Outcome, LedgerError> {
    let spec = ledger_core::AssetSpec { id: spec.id, symbol: spec.symbol.clone(), scale: spec.scale };
    kernel.create_asset(&spec).map_err(refusal)?;
    Ok(Outcome::AssetCreated(spec.id))
}

/// A valid key's digest: its product's kind of request, the key's owner, its text.
#[inline]
pub(crate) fn key_digest(kind: &[u8], owner: &[u8], key: &str) -> Option<Digest> {
    ledger_core::check_key(key).ok().map(|()| ledger_core::key_digest(&[kind, owner, key.as_bytes()]))
}
