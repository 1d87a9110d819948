//! Tokenization and investment (the white paper's fourth use case), after
//! the concepts of ERC-3643 (T-REX): an issuer turns an asset into a token
//! (a kernel asset the ledger numbers), investors carry eligibility claims
//! the operators set, and the token's transfer rules decide every mint,
//! transfer, withdrawal and order of it (`canTransfer`). An offering sells
//! the token for a payment asset: a subscription is an escrow hold, the
//! close allocates pro rata (whole lots, largest remainder) or refunds
//! everything, in one command. Allocated tokens may vest in tranches.
//!
//! Amounts of the token are its minor units and always whole lots; a
//! price is payment minor units per whole token (10^scale minor units).

use serde::{Deserialize, Serialize};

use crate::operators::{ActionKind, Digest};
use crate::spot::Market;
use crate::{Amount, AssetId, MarketId, TimestampMs, UserId};

pub type OfferingId = u64;
pub type SubscriptionId = u64;
pub type DistributionId = u64;

/// The token's own: its supply, negative by every unit issued (the only
/// account besides custody that may go below zero). Owner: the token's
/// asset id as an entity.
pub const ISSUED: u8 = 12;
/// An offering's: the payment its open subscriptions hold (holds only).
pub const ESCROW: u8 = 13;
/// A user's: allocated tokens not yet vested (holds only).
pub const VESTING: u8 = 14;
/// A distribution's: its pool, from the declaration until every
/// entitlement is claimed or the issuer reclaims the rest. Owner: the
/// distribution's id as an entity.
pub const DISTRIBUTION: u8 = 15;
/// The house's: tax withheld from distributions, which the platform as
/// withholding agent owes the tax authorities.
pub const WITHHELD: u8 = 16;
/// A user's: tokens the token's agent froze (ERC-3643's partial freeze):
/// still theirs, counted in the cap table and in distributions, but
/// neither sent, sold nor withdrawn until unfrozen.
pub const FROZEN: u8 = 17;

pub(crate) fn purpose_name(purpose: u8) -> Option<&'static str> {
    Some(match purpose {
        ISSUED => "issued",
        ESCROW => "escrow",
        VESTING => "vesting",
        DISTRIBUTION => "distribution",
        WITHHELD => "withheld",
        FROZEN => "frozen",
        _ => return None,
    })
}

/// The payment of a subscription into its offering's escrow.
pub const SUBSCRIPTION: u16 = 601;
/// A subscription's payment back to the investor: cancelled, refunded, or
/// the part not allocated.
pub const SUBSCRIPTION_REFUND: u16 = 602;
/// The allocated part of a subscription's payment, to the issuer.
pub const OFFERING_PROCEEDS: u16 = 603;
/// The platform's fee on an offering's proceeds, from the issuer to the house.
pub const OFFERING_FEE: u16 = 604;
/// New tokens, from the token's supply to their holder.
pub const ISSUANCE: u16 = 605;
/// Allocated tokens set aside until their tranche vests.
pub const VESTING_LOCK: u16 = 606;
/// A tranche vested: back to the holder's available tokens.
pub const VESTING_RELEASE: u16 = 607;
/// A distribution's pool, from its issuer.
pub const DISTRIBUTION_FUNDING: u16 = 608;
/// What the pro rata leaves of a pool, back to the issuer at the record.
pub const DISTRIBUTION_REMAINDER: u16 = 609;
/// An entitlement less its withholding, to its holder.
pub const DISTRIBUTION_PAYMENT: u16 = 610;
/// The tax withheld from an entitlement, to the house's withheld account.
pub const DISTRIBUTION_WITHHOLDING: u16 = 611;
/// What was not claimed by the expiry, back to the issuer.
pub const DISTRIBUTION_RECLAIM: u16 = 612;
/// Tokens the agent froze, from the holder's available to their frozen account.
pub const TOKENS_FROZEN: u16 = 613;
/// Frozen tokens back to their holder's available.
pub const TOKENS_UNFROZEN: u16 = 614;
/// The agent's forced transfer, from one holder to another.
pub const FORCED_TRANSFER: u16 = 615;
/// A lost account's tokens to the holder's new account.
pub const RECOVERY: u16 = 616;

pub(crate) fn code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        SUBSCRIPTION => "SUBSCRIPTION",
        SUBSCRIPTION_REFUND => "SUBSCRIPTION_REFUND",
        OFFERING_PROCEEDS => "OFFERING_PROCEEDS",
        OFFERING_FEE => "OFFERING_FEE",
        ISSUANCE => "ISSUANCE",
        VESTING_LOCK => "VESTING_LOCK",
        VESTING_RELEASE => "VESTING_RELEASE",
        DISTRIBUTION_FUNDING => "DISTRIBUTION_FUNDING",
        DISTRIBUTION_REMAINDER => "DISTRIBUTION_REMAINDER",
        DISTRIBUTION_PAYMENT => "DISTRIBUTION_PAYMENT",
        DISTRIBUTION_WITHHOLDING => "DISTRIBUTION_WITHHOLDING",
        DISTRIBUTION_RECLAIM => "DISTRIBUTION_RECLAIM",
        TOKENS_FROZEN => "TOKENS_FROZEN",
        TOKENS_UNFROZEN => "TOKENS_UNFROZEN",
        FORCED_TRANSFER => "FORCED_TRANSFER",
        RECOVERY => "RECOVERY",
        _ => return None,
    })
}

/// The cut-off before an offering's end after which a subscription can no
/// longer be cancelled, when the offering names none: 48 hours, as US
/// Regulation Crowdfunding's (17 CFR 227.304(a)).
pub const CANCEL_CUTOFF_MS_DEFAULT: u64 = 48 * 3_600_000;
/// The most countries a token's rule lists, users on its allowlist,
/// tranches of a vesting, bytes of a document link.
pub const COUNTRIES_MAX: usize = 300;
pub const ALLOWLIST_MAX: usize = 10_000;
pub const TRANCHES_MAX: u32 = 120;
pub const URL_BYTES_MAX: usize = 512;
/// The platform's fee on an offering is at most 20% of its proceeds.
pub const FEE_BPS_MAX: u32 = 2_000;
/// A withholding rate is at most the whole entitlement.
pub const WITHHOLDING_BPS_MAX: u32 = 10_000;
/// The largest supply, price or amount a token or offering may name
/// (10^30 minor units): products of two stay inside `Amount`.
pub const AMOUNT_BOUND: Amount = 1_000_000_000_000_000_000_000_000_000_000;

/// An investor's status for rules that admit only some investors: US
/// accredited investors and EU professional (or sophisticated) ones are
/// the qualified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum InvestorCategory {
    Retail,
    Accredited,
    Professional,
}

impl InvestorCategory {
    pub fn qualified(self) -> bool {
        !matches!(self, InvestorCategory::Retail)
    }
}

/// What the operators (later a KYC provider) attest about an investor. The
/// verification tier is the operators' own record of the user (their
/// `SetTier`), read beside these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Claims {
    /// ISO 3166-1 numeric (840 the United States, 276 Germany).
    pub country: u16,
    pub category: InvestorCategory,
    /// After this the claims no longer count: the investor is not verified.
    pub expires_at_ms: TimestampMs,
    /// The tax withheld from their distributions, in basis points: their
    /// country's rate for them as the operators established it (a treaty
    /// rate, or 0 where none is owed).
    pub withholding_bps: u32,
}

/// Which countries may receive a token (the receiver's claims' country).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Countries {
    #[default]
    Any,
    /// Only these (ascending, no repeats).
    Allow(Vec<u16>),
    /// Any but these (ascending, no repeats).
    Deny(Vec<u16>),
}

/// A token's transfer rules: every one must agree for a mint, a transfer,
/// a withdrawal or an order of the token to go ahead. A receiver must
/// always hold valid claims (be verified); the rules add to that.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransferRules {
    pub countries: Countries,
    /// The most investors holding the token at once (the issuer not counted).
    pub holders_max: Option<u32>,
    /// The most any investor may hold, in the token's minor units.
    pub balance_max: Option<Amount>,
    /// When set, only these users may send or receive the token (ascending).
    pub allowlist: Option<Vec<UserId>>,
    /// Until then, no holder may send the token (transfer, sell, withdraw);
    /// issuance goes on.
    pub locked_until_ms: Option<TimestampMs>,
    /// The lowest verification tier a receiver needs.
    pub tier_min: u8,
    /// Only accredited or professional investors may receive it.
    pub qualified_only: bool,
}

/// A token as its issuer asks for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenSpec {
    /// The kernel asset's symbol: 1 to 16 of A-Z and 0-9.
    pub symbol: String,
    pub scale: u8,
    /// Every amount of the token is a whole number of lots (minor units).
    pub lot: Amount,
    /// The most that may ever be issued, in minor units.
    pub supply_max: Amount,
    /// The blake3 digest of the offering document, and where it is.
    pub document_hash: Digest,
    pub document_url: String,
    pub rules: TransferRules,
}

/// A token as the ledger keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Token {
    /// Its kernel asset.
    pub asset: AssetId,
    pub issuer: UserId,
    pub spec: TokenSpec,
    /// Issued so far (what its ISSUED account is below zero by).
    pub supply: Amount,
    pub created_ms: TimestampMs,
}

/// Allocated tokens vest in `count` equal tranches (the last takes what
/// division leaves), the first at `start_ms + period_ms`, one each period after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VestingSpec {
    pub start_ms: TimestampMs,
    pub period_ms: u64,
    pub count: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OfferingSpec {
    pub token: AssetId,
    pub payment_asset: AssetId,
    /// Payment minor units per whole token; a lot's price must come out whole.
    pub price: Amount,
    /// The target: below it at the end, nothing is issued and every
    /// subscription is refunded. In the token's minor units, like the rest.
    pub soft_cap: Amount,
    /// The most the offering issues; subscriptions beyond it are scaled down.
    pub hard_cap: Amount,
    /// What one investor's subscription may ask for.
    pub investor_min: Amount,
    pub investor_max: Amount,
    pub starts_at_ms: TimestampMs,
    pub ends_at_ms: TimestampMs,
    /// How long before the end subscriptions can no longer be cancelled.
    pub cancel_cutoff_ms: u64,
    pub vesting: Option<VestingSpec>,
    /// The spot market the token lists on when the offering closes allocated.
    pub listing: Option<Listing>,
}

/// The spot market a token lists on when its offering closes allocated:
/// the token its base, the offering's payment asset its quote; its fees
/// are the operators' for listings (`SetListingFees`) at the close. Its
/// units are [`MarketSpec`](matching_api::MarketSpec)'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Listing {
    pub quote_units_per_tick_lot: u64,
    pub tick_lot_scale: u8,
    /// Token minor units in one of the market's lots: whole lots of the token.
    pub base_units_per_lot: u64,
    /// 0 is no band.
    pub price_band_ppm: u32,
}

/// The largest price and quantity a listed market takes, as the operators'
/// own listings (the gateway's `createMarket`).
pub const LISTING_PRICE_TICKS_MAX: u64 = 1_000_000_000;
pub const LISTING_QUANTITY_LOTS_MAX: u64 = 1_000_000_000;

impl Listing {
    /// The market it lists as, under `id`, with the operators' fees.
    pub fn market(&self, token: AssetId, payment_asset: AssetId, id: MarketId, maker_fee_ppm: u32, taker_fee_ppm: u32) -> Market {
        Market {
            base: token,
            quote: payment_asset,
            base_units_per_lot: self.base_units_per_lot,
            trading: true,
            spec: matching_api::MarketSpec {
                id,
                quote_units_per_tick_lot: self.quote_units_per_tick_lot,
                tick_lot_scale: self.tick_lot_scale,
                maker_fee_ppm,
                taker_fee_ppm,
                price_ticks_max: LISTING_PRICE_TICKS_MAX,
                quantity_lots_max: LISTING_QUANTITY_LOTS_MAX,
                price_band_ppm: self.price_band_ppm,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OfferingStatus {
    /// Taking subscriptions between its start and end (the time decides
    /// which; no state changes at the start).
    Open,
    /// Closed with the target met: tokens issued, proceeds paid.
    Allocated,
    /// Closed with the target missed: every subscription refunded.
    Refunded,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Offering {
    pub id: OfferingId,
    pub issuer: UserId,
    pub spec: OfferingSpec,
    /// The platform's fee in basis points of the proceeds (rounded down):
    /// the operators' setting when the offering was made.
    pub fee_bps: u32,
    pub status: OfferingStatus,
    /// What the open subscriptions ask for, in the token's minor units.
    pub subscribed: Amount,
    pub subscriptions_open: u32,
    /// At the close: tokens issued, payment raised, the platform's fee.
    pub issued: Amount,
    pub raised: Amount,
    pub fee: Amount,
    pub created_ms: TimestampMs,
    pub closed_ms: Option<TimestampMs>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SubscriptionStatus {
    /// Held in escrow.
    Open,
    /// Cancelled by the investor before the cut-off: refunded.
    Cancelled,
    /// The offering closed: `allocated` issued, the rest refunded.
    Allocated,
    /// The offering missed its target, or the investor was no longer
    /// eligible at the close: refunded in full.
    Refunded,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub offering: OfferingId,
    pub investor: UserId,
    /// Tokens asked for (minor units, whole lots) and the payment held for them.
    pub amount: Amount,
    pub payment: Amount,
    pub status: SubscriptionStatus,
    /// At the close: tokens issued, payment taken, payment given back.
    pub allocated: Amount,
    pub paid: Amount,
    pub refunded: Amount,
    pub created_ms: TimestampMs,
    pub updated_ms: TimestampMs,
}

/// One tranche of an investor's allocation, set aside until `vests_at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tranche {
    pub subscription: SubscriptionId,
    pub index: u32,
    pub investor: UserId,
    pub token: AssetId,
    pub amount: Amount,
    pub vests_at_ms: TimestampMs,
    pub vested: bool,
}

/// What a distribution is of: the holders' share of the issuer's income.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DistributionKind {
    Dividend,
    Coupon,
    Other,
}

/// A distribution as its issuer declares it: `pool` of the payment asset,
/// paid in with the declaration, shared pro rata among the token's holders
/// at the record time (the issuer, whose tokens are its treasury, not
/// counted), each entitlement rounded down; what rounding leaves goes back
/// to the issuer at the record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DistributionSpec {
    pub token: AssetId,
    pub kind: DistributionKind,
    pub payment_asset: AssetId,
    pub pool: Amount,
    /// Who holds the token then is entitled: the first tick of the ledger's
    /// clock at or after it takes the record.
    pub record_at_ms: TimestampMs,
    /// Entitlements can be claimed until then; what is left the issuer may reclaim.
    pub claim_until_ms: TimestampMs,
    /// The rate withheld from a holder without valid claims at the record
    /// (who has given no tax status), in basis points.
    pub default_withholding_bps: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DistributionStatus {
    /// Funded, waiting for its record time.
    Declared,
    /// The holders at the record are entitled; claims are open.
    Recorded,
    /// Every entitlement claimed, or the rest reclaimed by the issuer.
    Closed,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Distribution {
    pub id: DistributionId,
    pub issuer: UserId,
    pub spec: DistributionSpec,
    pub status: DistributionStatus,
    pub created_ms: TimestampMs,
    /// At the record: when it was taken, the holders entitled and the
    /// token units they held, what they are entitled to in all (before
    /// withholding) and what the rounding gave back to the issuer.
    pub recorded_ms: Option<TimestampMs>,
    pub holders: u32,
    pub units: Amount,
    pub entitled: Amount,
    pub remainder: Amount,
    /// Since: the entitlements claimed (before withholding), the tax
    /// withheld from them, and what the issuer reclaimed after the expiry.
    pub claimed: Amount,
    pub withheld: Amount,
    pub reclaimed: Amount,
    pub closed_ms: Option<TimestampMs>,
}

/// A holder's part of a distribution, as the record fixed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entitlement {
    pub distribution: DistributionId,
    pub holder: UserId,
    /// The token units they held at the record (every account of theirs).
    pub units: Amount,
    /// Their pro rata share, rounded down; the rate withheld from it, the
    /// tax (rounded down) and what is paid them.
    pub gross: Amount,
    pub withholding_bps: u32,
    pub withheld: Amount,
    pub net: Amount,
    pub claimed_ms: Option<TimestampMs>,
    /// The claim period ended unclaimed and the issuer took it back.
    pub reclaimed: bool,
}

/// Why a token's rules refuse a movement of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ComplianceRefusal {
    /// The receiver has no claims, or they expired.
    NotVerified(UserId),
    TierTooLow {
        user: UserId,
        tier: u8,
        tier_min: u8,
    },
    /// The token admits only accredited or professional investors.
    NotQualified(UserId),
    CountryNotAllowed {
        user: UserId,
        country: u16,
    },
    /// A new holder would make more than the most the token allows.
    HoldersMax {
        holders_max: u32,
    },
    /// The receiver would hold more than the most the token allows, their
    /// open buy orders and subscriptions counted.
    BalanceMax {
        user: UserId,
        balance_max: Amount,
        would_hold: Amount,
    },
    NotAllowlisted(UserId),
    LockedUp {
        until_ms: TimestampMs,
    },
    /// Tokens come into the ledger only by issuance.
    NotDepositable,
}

impl std::fmt::Display for ComplianceRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComplianceRefusal::NotVerified(user) => write!(f, "user {user} holds no valid investor claims (missing or expired): the operators set them"),
            ComplianceRefusal::TierTooLow { user, tier, tier_min } => {
                write!(f, "user {user} is at verification tier {tier}; the token needs tier {tier_min}")
            }
            ComplianceRefusal::NotQualified(user) => write!(f, "user {user} is not an accredited or professional investor, as the token requires"),
            ComplianceRefusal::CountryNotAllowed { user, country } => write!(f, "the token may not go to user {user}'s country ({country})"),
            ComplianceRefusal::HoldersMax { holders_max } => write!(f, "the token has its most holders ({holders_max}); no new holder until one sells out"),
            ComplianceRefusal::BalanceMax { user, balance_max, would_hold } => {
                write!(f, "user {user} would hold {would_hold} minor units of the token (open orders and subscriptions counted); the most is {balance_max}")
            }
            ComplianceRefusal::NotAllowlisted(user) => write!(f, "user {user} is not on the token's allowlist"),
            ComplianceRefusal::LockedUp { until_ms } => write!(f, "the token is locked up until {until_ms} ms since the epoch: no transfers before then"),
            ComplianceRefusal::NotDepositable => write!(f, "a token is issued on the ledger, never deposited"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// Makes a user an issuer, or no longer one (tokens they made stay theirs).
    SetIssuer { user: UserId, issuer: bool },
    /// Sets (or with None, removes) a user's investor claims.
    SetClaims { user: UserId, claims: Option<Claims> },
    /// The platform's fee on the proceeds of offerings made from now on,
    /// in basis points: the operators', never the issuer's to choose.
    SetOfferingFee { fee_bps: u32 },
    /// The fees of the markets tokens list on at their offerings' close
    /// from now on, in millionths: the operators', as on every market.
    SetListingFees { maker_fee_ppm: u32, taker_fee_ppm: u32 },
    /// An issuer's new token; the ledger numbers its asset.
    CreateToken { issuer: UserId, spec: Box<TokenSpec> },
    /// The token's issuer changes its rules; they apply from the next command.
    SetRules { issuer: UserId, token: AssetId, rules: TransferRules },
    /// An issuer's new offering of its token.
    CreateOffering { issuer: UserId, spec: Box<OfferingSpec> },
    /// Holds the payment for `amount` tokens in escrow; idempotent by the
    /// investor's `key`. One open subscription per investor and offering.
    Subscribe { investor: UserId, offering: OfferingId, amount: Amount, key: String },
    /// Releases the subscription's hold, until the cut-off.
    CancelSubscription { investor: UserId, subscription: SubscriptionId },
    /// A token's issuer declares a distribution and pays its pool in;
    /// idempotent by the issuer's `key`.
    Distribute { issuer: UserId, spec: Box<DistributionSpec>, key: String },
    /// A holder takes their entitlement, less the tax withheld, until the expiry.
    ClaimDistribution { holder: UserId, distribution: DistributionId },
    /// After the expiry, the issuer takes back what was not claimed.
    ReclaimDistribution { issuer: UserId, distribution: DistributionId },
    /// The ledger's own clock: closes the offerings whose end has passed,
    /// vests the tranches whose time has come and takes the records of
    /// distributions.
    Tick,
    // The agent's actions come after the clock's tick: older commands keep their encoding.
    /// The token's agent (ERC-3643's `freezePartialTokens`): `amount` of
    /// the holder's available tokens to their frozen account.
    FreezeTokens { token: AssetId, holder: UserId, amount: Amount },
    /// Frozen tokens back to the holder's available (`unfreezePartialTokens`).
    UnfreezeTokens { token: AssetId, holder: UserId, amount: Amount },
    /// The agent moves `amount` from one holder to another (a court order,
    /// an estate): from what `from` has available, then from what is
    /// frozen. The receiver must be verified (valid claims) or the issuer;
    /// the token's other rules do not apply, as in ERC-3643's `forcedTransfer`.
    ForceTransfer { token: AssetId, from: UserId, to: UserId, amount: Amount },
    /// A holder lost their account: everything `lost` holds of the token
    /// (available, frozen, unvested tranches, which keep their schedule)
    /// goes to `to`, their new, verified account (`recoveryAddress`).
    /// Refused while `lost` has the token in open orders: freeze the
    /// account with its orders cancelled first.
    RecoverTokens { token: AssetId, lost: UserId, to: UserId },
}

/// Issuers and claims are the operators' to set; a token's agent actions
/// are proposed by its issuer or an operator and approved by operators.
pub(crate) fn operator_action(command: &Command) -> Option<ActionKind> {
    match command {
        // Who may issue, and the platform's terms for what they sell.
        Command::SetIssuer { .. } | Command::SetOfferingFee { .. } | Command::SetListingFees { .. } => Some(ActionKind::Issuer),
        Command::SetClaims { .. } => Some(ActionKind::InvestorClaims),
        Command::FreezeTokens { .. } | Command::UnfreezeTokens { .. } | Command::ForceTransfer { .. } | Command::RecoverTokens { .. } => {
            Some(ActionKind::TokenAgent)
        }
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    IssuerSet {
        user: UserId,
        issuer: bool,
    },
    ClaimsSet(UserId),
    OfferingFeeSet(u32),
    ListingFeesSet {
        maker_fee_ppm: u32,
        taker_fee_ppm: u32,
    },
    TokenCreated(AssetId),
    RulesSet(AssetId),
    OfferingCreated(OfferingId),
    Subscribed(SubscriptionId),
    SubscriptionCancelled(SubscriptionId),
    Distributed(DistributionId),
    /// What the holder was paid, and the tax withheld.
    DistributionClaimed {
        distribution: DistributionId,
        net: Amount,
        withheld: Amount,
    },
    DistributionReclaimed {
        distribution: DistributionId,
        amount: Amount,
    },
    /// The offerings closed, the tranches vested, the markets tokens
    /// listed on at their close and the distributions recorded.
    Ticked {
        offerings_closed: Vec<OfferingId>,
        tranches_vested: u32,
        markets_listed: Vec<MarketId>,
        distributions_recorded: Vec<DistributionId>,
    },
    /// The holder's frozen tokens after a freeze or an unfreeze.
    TokensFrozen {
        token: AssetId,
        holder: UserId,
        frozen: Amount,
    },
    /// A forced transfer done: how much of it came out of frozen tokens.
    ForcedTransfer {
        token: AssetId,
        amount: Amount,
        from_frozen: Amount,
    },
    /// What moved to the new account: available and frozen tokens, and
    /// unvested tranches.
    TokensRecovered {
        token: AssetId,
        amount: Amount,
        tranches: u32,
    },
}

/// A holder at a record time, for the cap table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub user: UserId,
    /// Everything the user holds of the token: available, locked in
    /// orders, vesting, frozen.
    pub balance: Amount,
    /// Of which not free to send (orders' holds, unvested tranches and
    /// frozen tokens).
    pub locked: Amount,
    /// Of that, what the token's agent froze.
    pub frozen: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    Tokens,
    /// Offerings, of one token or all, newest first.
    Offerings {
        token: Option<AssetId>,
        limit: u32,
    },
    Offering(OfferingId),
    /// An offering's subscriptions, oldest first, from id `after`.
    Subscriptions {
        offering: OfferingId,
        after: SubscriptionId,
        limit: u32,
    },
    /// One subscription, whatever its status.
    Subscription(SubscriptionId),
    /// An investor's subscriptions, newest first.
    InvestorSubscriptions {
        investor: UserId,
        limit: u32,
    },
    /// An investor's tranches, vested or not, of their newest subscriptions
    /// first, each subscription's last tranche first: a limit may cut a
    /// subscription's earliest tranches off.
    Tranches {
        investor: UserId,
        limit: u32,
    },
    Claims(UserId),
    Issuers,
    /// The platform's fee on new offerings, in basis points.
    OfferingFee,
    /// The fees of the markets tokens list on, in millionths.
    ListingFees,
    /// Every holder of the token now, the issuer included.
    CapTable(AssetId),
    /// Every holder of the token as the ledger stood at `at_ms` (after
    /// every transfer stamped then or before), and its supply then.
    CapTableAt {
        token: AssetId,
        at_ms: TimestampMs,
    },
    /// Distributions, of one token or all, newest first.
    Distributions {
        token: Option<AssetId>,
        limit: u32,
    },
    Distribution(DistributionId),
    /// A distribution's entitlements, by holder, from holder `after`.
    Entitlements {
        distribution: DistributionId,
        after: UserId,
        limit: u32,
    },
    /// A holder's entitlements, of the newest distributions first.
    HolderEntitlements {
        holder: UserId,
        limit: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Tokens(Vec<Token>),
    Offerings(Vec<Offering>),
    Offering(Option<Box<Offering>>),
    Subscriptions(Vec<Subscription>),
    Subscription(Option<Box<Subscription>>),
    Tranches(Vec<Tranche>),
    Claims(Option<Claims>),
    Issuers(Vec<UserId>),
    OfferingFee(u32),
    ListingFees { maker_fee_ppm: u32, taker_fee_ppm: u32 },
    CapTable(Vec<Holding>),
    CapTableAt { supply: Amount, holdings: Vec<Holding> },
    Distributions(Vec<Distribution>),
    Distribution(Option<Box<Distribution>>),
    Entitlements(Vec<Entitlement>),
}
