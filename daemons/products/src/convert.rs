//! Convert: firm quotes with the house as the counterparty.
//!
//! A quote sets aside, in a kernel hold per leg, what the house's inventory
//! will give (the user's part and the spread), so that no later quote,
//! accept or defunding can spend it. Accepting captures the holds to the
//! user and to revenue and takes the user's side in the same command.
//! Expiry is measured against each command's stamped time: an accept
//! stamped after it is refused, and the ledger daemon journals
//! `ExpireQuotes` once its clock passes [`Convert::next_expiry`], which
//! releases the holds of quotes nobody accepted.

use std::collections::{BTreeMap, BTreeSet};

use compact_str::format_compact;
use ids::{Amount, AssetId, TimestampMs, UserId};
use ledger_api::convert::{self as api, Command, Conversion, Outcome, Pair, PairSpec, Quote, QuoteId, QuoteLeg, QuoteRequest, QuoteStatus};
use ledger_api::LedgerError;
use ledger_core::{AccountId, Digest, HoldId, Idempotent, Kernel, Leg, Payout, Purpose, PurposeSpec, Recorded, TransferCode};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::house::{inventory, revenue};
use crate::wallet::available;
use crate::{key_digest, refusal, ChangeSet, Forward, LedgerLimits, Product};

pub const QUOTED: Purpose = Purpose(api::QUOTED);

pub const PURPOSES: &[PurposeSpec] = &[PurposeSpec { purpose: QUOTED, name: "quoted", may_go_negative: false, holds_only: true }];

const ACCEPT_RECORD: u8 = 7;
const QUOTE_HOLD: u8 = 3;

/// Expired quotes one `ExpireQuotes` closes at most: a burst of expiries
/// is closed by the next ones, never in one long command.
pub const QUOTES_CLOSED_PER_COMMAND: usize = 1_024;

/// A pair's key: its assets, base first.
pub type PairKey = (AssetId, AssetId);

fn quote_hold(quote: QuoteId, leg: usize) -> HoldId {
    HoldId { kind: QUOTE_HOLD, id: quote << 1 | leg as u64 }
}

pub fn quoted(asset: AssetId) -> AccountId {
    AccountId::house(asset, QUOTED)
}

fn accept_key(user: UserId, key: &str) -> Option<Digest> {
    key_digest(b"convert-accept", &user.to_le_bytes(), key)
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvertState {
    pub pairs: BTreeMap<PairKey, Pair>,
    /// Quotes open, or accepted and not yet past their expiry.
    pub quotes: BTreeMap<QuoteId, Quote>,
    pub next_quote: QuoteId,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvertChanges {
    /// Pairs set or traded through (their current values are in the state).
    pub pairs: Vec<PairKey>,
    /// Quotes made, accepted or closed (a closed one is gone from the state).
    pub quotes: Vec<QuoteId>,
    pub conversions: Vec<Conversion>,
}

impl ChangeSet for ConvertChanges {
    fn clear(&mut self) {
        self.pairs.clear();
        self.quotes.clear();
        self.conversions.clear();
    }
}

#[derive(Default)]
pub struct Convert {
    pairs: BTreeMap<PairKey, Pair>,
    quotes: FxHashMap<QuoteId, Quote>,
    next_quote: QuoteId,
    /// (expiry, id) of every quote held in `quotes`: which to close first.
    expiries: BTreeSet<(TimestampMs, QuoteId)>,
    /// Open quotes per user.
    open_by_user: FxHashMap<UserId, u32>,
    open: u32,
    /// What open quotes will take out of inventory through each pair, per asset.
    promised: BTreeMap<(PairKey, AssetId), Amount>,
    changes: ConvertChanges,
}

impl Product for Convert {
    type Command = Command;
    type Outcome = Outcome;
    type State = ConvertState;
    type Changes = ConvertChanges;
    const PURPOSES: &'static [PurposeSpec] = PURPOSES;
    const RECORD_KINDS: &'static [u8] = &[ACCEPT_RECORD];
    const HOLD_KINDS: &'static [u8] = &[QUOTE_HOLD];

    fn restore(state: ConvertState) -> Convert {
        let mut convert = Convert { pairs: state.pairs, next_quote: state.next_quote.max(1), ..Convert::default() };
        for (_, quote) in state.quotes {
            convert.track(quote);
        }
        convert
    }

    fn state(&self) -> ConvertState {
        ConvertState { pairs: self.pairs.clone(), quotes: self.quotes.iter().map(|(id, quote)| (*id, quote.clone())).collect(), next_quote: self.next_quote }
    }

    fn changes_mut(&mut self) -> &mut ConvertChanges {
        &mut self.changes
    }

    fn idempotency_key(command: &Command) -> Option<Digest> {
        match command {
            Command::Accept { user, key, .. } => accept_key(*user, key),
            Command::SetPair(_) | Command::Quote(_) | Command::ExpireQuotes => None,
        }
    }

    fn apply(
        &mut self,
        kernel: &mut Kernel,
        limits: &LedgerLimits,
        command: &Command,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> (Result<Outcome, LedgerError>, Forward) {
        let outcome = match command {
            Command::SetPair(spec) => self.set_pair(kernel, limits, spec),
            Command::Quote(request) => self.quote(kernel, limits, request, at_ms),
            Command::Accept { user, quote, key } => self.accept(kernel, *user, *quote, key, at_ms, known_key),
            Command::ExpireQuotes => Ok(self.expire_quotes(kernel, at_ms)),
        };
        (outcome, None)
    }

    fn frozen_subject(&self, command: &Command) -> Option<UserId> {
        match command {
            Command::Quote(request) => Some(request.user),
            Command::Accept { user, .. } => Some(*user),
            Command::SetPair(_) | Command::ExpireQuotes => None,
        }
    }

    /// A conversion is a trade: a user's kill switch stops new ones.
    fn order_subject(&self, command: &Command) -> Option<UserId> {
        self.frozen_subject(command)
    }

    /// Every open quote's legs are held in full from inventory, every quote
    /// hold is an open quote's, and the counts and promises follow the quotes.
    fn check_invariants(&self, kernel: &Kernel) -> Result<(), String> {
        let mut promised: BTreeMap<(PairKey, AssetId), Amount> = BTreeMap::new();
        let mut open_by_user: FxHashMap<UserId, u32> = FxHashMap::default();
        for (id, quote) in &self.quotes {
            if *id >= self.next_quote {
                return Err(format!("quote {id} is at or past the next id {}", self.next_quote));
            }
            if !self.expiries.contains(&(quote.expires_at_ms, *id)) {
                return Err(format!("quote {id} is not in the expiry index"));
            }
            if quote.status != QuoteStatus::Open {
                continue;
            }
            *open_by_user.entry(quote.user).or_default() += 1;
            for (n, leg) in quote.legs.iter().enumerate() {
                match kernel.hold_of(quote_hold(*id, n)) {
                    Some(hold) if hold.remaining == leg.inventory_out() && hold.origin == inventory(leg.to()) => {}
                    other => return Err(format!("quote {id}'s leg {n} giving {} is held as {other:?}", leg.inventory_out())),
                }
                *promised.entry(((leg.base, leg.quote), leg.to())).or_default() += leg.inventory_out();
            }
        }
        if self.expiries.len() != self.quotes.len() {
            return Err(format!("{} expiries indexed for {} quotes", self.expiries.len(), self.quotes.len()));
        }
        for (id, _) in kernel.holds().filter(|(id, _)| id.kind == QUOTE_HOLD) {
            let open = self.quotes.get(&(id.id >> 1)).is_some_and(|quote| quote.status == QuoteStatus::Open && ((id.id & 1) as usize) < quote.legs.len());
            if !open {
                return Err(format!("hold {id:?} has no open quote"));
            }
        }
        let counted: FxHashMap<UserId, u32> = self.open_by_user.iter().filter(|(_, n)| **n > 0).map(|(user, n)| (*user, *n)).collect();
        if counted != open_by_user || self.open as usize != open_by_user.values().map(|n| *n as usize).sum::<usize>() {
            return Err("the open quotes' counts do not follow the quotes".into());
        }
        let tracked: BTreeMap<_, _> = self.promised.iter().filter(|(_, amount)| **amount != 0).map(|(key, amount)| (*key, *amount)).collect();
        if tracked != promised {
            return Err(format!("promised {tracked:?}, open quotes hold {promised:?}"));
        }
        Ok(())
    }
}

impl Convert {
    pub fn pairs(&self) -> &BTreeMap<PairKey, Pair> {
        &self.pairs
    }

    pub fn pair(&self, key: PairKey) -> Option<&Pair> {
        self.pairs.get(&key)
    }

    pub fn quote_of(&self, id: QuoteId) -> Option<&Quote> {
        self.quotes.get(&id)
    }

    pub fn next_quote(&self) -> QuoteId {
        self.next_quote
    }

    /// Adds a quote to the indexes (restore, and a new one).
    fn track(&mut self, quote: Quote) {
        self.expiries.insert((quote.expires_at_ms, quote.id));
        if quote.status == QuoteStatus::Open {
            self.count_open(&quote, 1);
        }
        self.quotes.insert(quote.id, quote);
    }

    /// Counts an open quote in (`sign` 1) or out (-1).
    fn count_open(&mut self, quote: &Quote, sign: i8) {
        let by_user = self.open_by_user.entry(quote.user).or_default();
        if sign > 0 {
            *by_user += 1;
            self.open += 1;
        } else {
            *by_user -= 1;
            self.open -= 1;
            if *by_user == 0 {
                self.open_by_user.remove(&quote.user);
            }
        }
        for leg in &quote.legs {
            let key = ((leg.base, leg.quote), leg.to());
            let promised = self.promised.entry(key).or_default();
            *promised += Amount::from(sign) * leg.inventory_out();
            if *promised == 0 {
                self.promised.remove(&key);
            }
        }
    }

    fn set_pair(&mut self, kernel: &Kernel, limits: &LedgerLimits, spec: &PairSpec) -> Result<Outcome, LedgerError> {
        spec.check().map_err(LedgerError::BadInput)?;
        kernel.known_asset(spec.base).map_err(refusal)?;
        kernel.known_asset(spec.quote).map_err(refusal)?;
        // A token's holders are followed: its rules decide who may hold it,
        // and a conversion from the house's inventory would pass them by.
        if [spec.base, spec.quote].into_iter().any(|asset| kernel.holders(asset).is_some()) {
            return Err(LedgerError::BadInput("a token is not converted: it moves only under its transfer rules".into()));
        }
        let key = (spec.base, spec.quote);
        if self.pairs.contains_key(&(spec.quote, spec.base)) {
            return Err(LedgerError::BadInput(format!("the pair exists the other way round, with asset {} as its base", spec.quote)));
        }
        let pair = match self.pairs.get(&key) {
            Some(pair) => Pair { spec: *spec, ..*pair },
            None if self.pairs.len() >= limits.convert_pairs_max as usize => return Err(LedgerError::LimitReached("limits.convert_pairs_max".into())),
            None => Pair { spec: *spec, net_base: 0, net_quote: 0 },
        };
        self.pairs.insert(key, pair);
        self.changes.pairs.push(key);
        Ok(Outcome::PairSet { base: spec.base, quote: spec.quote })
    }

    fn quote(&mut self, kernel: &mut Kernel, limits: &LedgerLimits, request: &QuoteRequest, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let QuoteRequest { user, legs, fee } = request;
        let (user, fee) = (*user, *fee);
        let ttl_ms = self.check_route(legs, fee)?;
        let (from, from_amount) = (legs[0].from(), legs[0].pay);
        let has = kernel.balance(available(user, from));
        if has < from_amount {
            return Err(LedgerError::InsufficientFunds { needed: from_amount, available: has });
        }
        if self.open_by_user.get(&user).copied().unwrap_or(0) >= limits.convert_quotes_open_per_user_max {
            return Err(LedgerError::LimitReached("limits.convert_quotes_open_per_user_max: accept a quote or let some expire first".into()));
        }
        if self.open >= limits.convert_quotes_open_max {
            return Err(LedgerError::LimitReached("limits.convert_quotes_open_max".into()));
        }
        // Inventory and exposure, each leg counted after the ones before it.
        let mut taking: BTreeMap<AssetId, Amount> = BTreeMap::new();
        for leg in legs {
            let to = leg.to();
            let out = leg.inventory_out();
            let taken = taking.entry(to).or_default();
            *taken += out;
            let free = kernel.balance(inventory(to));
            if free < *taken {
                return Err(LedgerError::InsufficientLiquidity(format!("the house's inventory of asset {to} has {free} minor units free, {taken} needed")));
            }
            let pair = &self.pairs[&(leg.base, leg.quote)];
            let (net, limit) = if leg.sell_base { (pair.net_quote, pair.spec.exposure_max_quote) } else { (pair.net_base, pair.spec.exposure_max_base) };
            let promised = self.promised.get(&((leg.base, leg.quote), to)).copied().unwrap_or(0);
            let exposure = promised + out - net;
            if exposure > limit {
                return Err(LedgerError::InsufficientLiquidity(format!(
                    "the house's exposure to asset {to} through this pair would be {exposure} minor units, over its limit of {limit}"
                )));
            }
        }
        let id = self.next_quote;
        for (n, leg) in legs.iter().enumerate() {
            let to = leg.to();
            kernel
                .hold(
                    quote_hold(id, n),
                    inventory(to),
                    quoted(to),
                    leg.inventory_out(),
                    TransferCode(api::QUOTE_HOLD),
                    format_compact!("convert-quote:{id}"),
                    at_ms,
                )
                .map_err(refusal)?;
        }
        self.next_quote += 1;
        let quote =
            Quote { id, user, legs: legs.clone(), fee, created_ms: at_ms, expires_at_ms: at_ms.saturating_add(u64::from(ttl_ms)), status: QuoteStatus::Open };
        self.track(quote.clone());
        self.changes.quotes.push(id);
        Ok(Outcome::Quoted(quote))
    }

    /// Why the legs are not a quote the pairs allow; else the shortest of their quotes' lives.
    fn check_route(&self, legs: &[QuoteLeg], fee: Amount) -> Result<u32, LedgerError> {
        let bad = |reason: &str| Err(LedgerError::BadInput(reason.into()));
        if legs.is_empty() || legs.len() > api::LEGS_MAX {
            return bad("a quote has one leg, or two through an intermediate asset");
        }
        let bounded = |amount: Amount, least: Amount| (least..=api::AMOUNT_BOUND).contains(&amount);
        if legs.iter().any(|leg| !bounded(leg.pay, 1) || !bounded(leg.receive, 1) || !bounded(leg.spread, 0)) {
            return bad("a leg pays and receives positive amounts, with a spread of zero or more");
        }
        if legs.windows(2).any(|pair| pair[0].to() != pair[1].from() || pair[0].receive != pair[1].pay) {
            return bad("each leg gives the next what it receives");
        }
        let (from, to) = (legs[0].from(), legs[legs.len() - 1].to());
        if from == to {
            return bad("a conversion is between two different assets");
        }
        if !(0..legs[legs.len() - 1].receive).contains(&fee) {
            return bad("the fee is zero or more and less than what the user receives");
        }
        let mut ttl_ms = u32::MAX;
        let last = legs.len() - 1;
        for (n, leg) in legs.iter().enumerate() {
            let Some(pair) = self.pairs.get(&(leg.base, leg.quote)) else {
                return Err(LedgerError::NotFound);
            };
            let spec = &pair.spec;
            if spec.paused {
                return Err(LedgerError::PairPaused { base: spec.base, quote: spec.quote });
            }
            let base = leg.base_amount();
            if base < spec.base_min || base > spec.base_max {
                return Err(LedgerError::BadInput(format!("the base amount {base} is outside the pair's {} to {} minor units", spec.base_min, spec.base_max)));
            }
            // The step binds what the user gives (the first leg's pay) or
            // gets (the last leg's receive, the fee taken) of the base
            // asset, never an intermediate asset.
            let stepped = match (n, leg.sell_base) {
                (0, true) => Some(leg.pay),
                (n, false) if n == last => Some(leg.receive - fee),
                _ => None,
            };
            if let Some(amount) = stepped.filter(|amount| amount % spec.base_step != 0) {
                return Err(LedgerError::BadInput(format!("the amount {amount} is not a multiple of the pair's step of {} minor units", spec.base_step)));
            }
            ttl_ms = ttl_ms.min(spec.quote_ttl_ms);
        }
        Ok(ttl_ms)
    }

    fn accept(
        &mut self,
        kernel: &mut Kernel,
        user: UserId,
        id: QuoteId,
        key: &str,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> Result<Outcome, LedgerError> {
        ledger_core::check_key(key).map_err(refusal)?;
        let digest = known_key.or_else(|| accept_key(user, key)).expect("a checked key has a digest");
        let fingerprint = match kernel.idempotent(&digest, &[&id.to_le_bytes()]).map_err(refusal)? {
            Idempotent::Replay(recorded) if recorded.kind == ACCEPT_RECORD => return Ok(Outcome::Accepted(recorded.id)),
            Idempotent::Replay(_) => return Err(LedgerError::Duplicate),
            Idempotent::New(fingerprint) => fingerprint,
        };
        self.check_accept(kernel, user, id, at_ms)?;
        self.settle(kernel, id, at_ms)?;
        kernel.remember(digest, fingerprint, Recorded { kind: ACCEPT_RECORD, id }).map_err(refusal)?;
        Ok(Outcome::Accepted(id))
    }

    /// Why `user` may not accept quote `id` at `at_ms`, if they may not;
    /// else the quote. After it, [`Self::settle`] cannot fail.
    pub fn check_accept(&self, kernel: &Kernel, user: UserId, id: QuoteId, at_ms: TimestampMs) -> Result<&Quote, LedgerError> {
        let quote = match self.quotes.get(&id) {
            Some(quote) if quote.user == user => quote,
            // Another's quote is not this user's to know of.
            Some(_) => return Err(LedgerError::NotFound),
            None if id < self.next_quote => return Err(LedgerError::QuoteExpired(id)),
            None => return Err(LedgerError::NotFound),
        };
        if quote.status == QuoteStatus::Accepted {
            return Err(LedgerError::QuoteAccepted(id));
        }
        if at_ms > quote.expires_at_ms {
            return Err(LedgerError::QuoteExpired(id));
        }
        for leg in &quote.legs {
            let pair = &self.pairs[&(leg.base, leg.quote)].spec;
            if pair.paused {
                return Err(LedgerError::PairPaused { base: pair.base, quote: pair.quote });
            }
        }
        // The user's side is the only one that can be short: the house's is held.
        let (from, from_amount) = (quote.from(), quote.from_amount());
        let has = kernel.balance(available(user, from));
        if has < from_amount {
            return Err(LedgerError::InsufficientFunds { needed: from_amount, available: has });
        }
        Ok(quote)
    }

    /// Settles quote `id`, checked by [`Self::check_accept`]: the user's
    /// conversion, without the key an accept remembers (a gift converted
    /// at receipt is idempotent by its own).
    pub fn settle(&mut self, kernel: &mut Kernel, id: QuoteId, at_ms: TimestampMs) -> Result<(), LedgerError> {
        let quote = self.quotes.get(&id).ok_or(LedgerError::NotFound)?.clone();
        let user = quote.user;
        let reference = format_compact!("convert:{id}");
        let code = TransferCode(api::CONVERSION);
        let first_transfer = kernel.next_transfer();
        // In order, each step funded by the one before: the user pays a
        // leg's `from`, the hold pays the user and revenue, and the next
        // leg spends what the last one gave.
        for (n, leg) in quote.legs.iter().enumerate() {
            let (from, to) = (leg.from(), leg.to());
            kernel
                .transfer(Leg { debit: available(user, from), credit: inventory(from), amount: leg.pay, code }, reference.as_str(), at_ms)
                .map_err(refusal)?;
            let payouts = [
                Payout { credit: available(user, to), amount: leg.receive, code },
                Payout { credit: revenue(to), amount: leg.spread, code: TransferCode(api::SPREAD) },
            ];
            kernel.capture(quote_hold(id, n), &payouts, &reference, at_ms).map_err(refusal)?;
            kernel.release(quote_hold(id, n), TransferCode(api::QUOTE_HOLD), reference.as_str(), at_ms).map_err(refusal)?;
            let pair = self.pairs.get_mut(&(leg.base, leg.quote)).expect("checked at the quote; pairs are never removed");
            let (net_from, net_to) = if leg.sell_base { (&mut pair.net_base, &mut pair.net_quote) } else { (&mut pair.net_quote, &mut pair.net_base) };
            *net_from += leg.pay;
            *net_to -= leg.inventory_out();
            self.changes.pairs.push((leg.base, leg.quote));
        }
        if quote.fee > 0 {
            let to = quote.to();
            kernel
                .transfer(Leg { debit: available(user, to), credit: revenue(to), amount: quote.fee, code: TransferCode(api::FEE) }, reference.as_str(), at_ms)
                .map_err(refusal)?;
        }
        self.count_open(&quote, -1);
        let accepted = Quote { status: QuoteStatus::Accepted, ..quote };
        self.quotes.insert(id, accepted.clone());
        self.changes.quotes.push(id);
        self.changes.conversions.push(Conversion { id, quote: accepted, at_ms, first_transfer });
        Ok(())
    }

    /// When the next quote can be closed: the first millisecond after its expiry.
    pub fn next_expiry(&self) -> Option<TimestampMs> {
        self.expiries.first().map(|(at, _)| at.saturating_add(1))
    }

    /// Closes quotes whose expiry is before `at_ms`: an open one's holds go
    /// back to inventory; an accepted one is forgotten (its conversion stays).
    fn expire_quotes(&mut self, kernel: &mut Kernel, at_ms: TimestampMs) -> Outcome {
        let (mut expired, mut forgotten) = (0, 0);
        for _ in 0..QUOTES_CLOSED_PER_COMMAND {
            let Some(&(expires_at_ms, id)) = self.expiries.first() else { break };
            if expires_at_ms >= at_ms {
                break;
            }
            self.expiries.pop_first();
            let quote = self.quotes.remove(&id).expect("every indexed expiry is a quote's (an invariant)");
            if quote.status == QuoteStatus::Open {
                for n in 0..quote.legs.len() {
                    // A quote's holds are there while it is open (an invariant).
                    let _ = kernel.release(quote_hold(id, n), TransferCode(api::QUOTE_EXPIRY), format_compact!("convert-quote:{id}"), at_ms);
                }
                self.count_open(&quote, -1);
                expired += 1;
            } else {
                forgotten += 1;
            }
            self.changes.quotes.push(id);
        }
        Outcome::QuotesExpired { expired, forgotten }
    }
}

/// The names of convert's storage tables; the ledger daemon's
/// `schema/convert.rs` says what they hold.
pub mod tables {
    pub const PAIRS: &str = "convert.pairs";
    pub const QUOTES: &str = "convert.quotes";
    pub const CONVERSIONS: &str = "convert.conversions";
    pub const CONVERSIONS_BY_USER: &str = "convert.conversions_by_user";
}
