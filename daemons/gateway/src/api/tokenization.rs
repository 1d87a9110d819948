//! Tokenization: issuers' tokens and offerings, investors' subscriptions,
//! vesting and the cap table. The ledger decides every rule (who may issue,
//! the transfer rules, the caps, the cut-off, the allocation at the close);
//! this file maps decimals, emails and times to the ledger's units and
//! back, and says who may read what: an offering's subscriptions and a
//! token's cap table are its issuer's and the operators', an investor's
//! subscriptions and claims their own and the operators'.

use async_graphql::{Context, Enum, Error, InputObject, Object, SimpleObject, ID};
use ledger_api::operators::Digest;
use ledger_api::tokenization::{self as api, Claims, Command, Countries, InvestorCategory as LedgerCategory, TransferRules};
use ledger_api::{Answer, AssetSpec, Outcome, Query};
use rust_decimal::Decimal;

use super::operators::{operate, user_by_email};
use super::{ask, at, caller, caller_id, coded, list_limit, operator, run, services, unexpected, Catalog, DateTime, Dec};
use crate::units::{parse_rfc3339, to_decimal, to_units};
use crate::users::Role;

/// Decimal places of a holder's share of the supply.
const SHARE_SCALE: u32 = 12;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum InvestorCategory {
    Retail,
    /// A US accredited investor.
    Accredited,
    /// An EU professional (or sophisticated) investor.
    Professional,
}

impl From<LedgerCategory> for InvestorCategory {
    fn from(category: LedgerCategory) -> InvestorCategory {
        match category {
            LedgerCategory::Retail => InvestorCategory::Retail,
            LedgerCategory::Accredited => InvestorCategory::Accredited,
            LedgerCategory::Professional => InvestorCategory::Professional,
        }
    }
}

impl From<InvestorCategory> for LedgerCategory {
    fn from(category: InvestorCategory) -> LedgerCategory {
        match category {
            InvestorCategory::Retail => LedgerCategory::Retail,
            InvestorCategory::Accredited => LedgerCategory::Accredited,
            InvestorCategory::Professional => LedgerCategory::Professional,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum OfferingStatus {
    /// Before its end: taking subscriptions from its start.
    Open,
    /// Closed with its target met: tokens issued, proceeds paid.
    Allocated,
    /// Closed below its target: every subscription refunded.
    Refunded,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SubscriptionStatus {
    /// The payment is held in escrow.
    Open,
    /// Cancelled before the cut-off: refunded.
    Cancelled,
    /// The offering closed: `allocated` issued, the rest refunded.
    Allocated,
    /// The offering missed its target, or the investor was no longer
    /// eligible at the close: refunded in full.
    Refunded,
}

/// A token's transfer rules. A receiver always needs valid investor claims.
#[derive(SimpleObject)]
pub struct TokenRules {
    /// Only receivers from these countries (ISO 3166-1 numeric), when set.
    pub allowed_countries: Option<Vec<i32>>,
    /// No receivers from these countries.
    pub denied_countries: Option<Vec<i32>>,
    /// The most investors holding it at once (the issuer not counted).
    pub max_holders: Option<i32>,
    /// The most one investor may hold.
    pub max_balance: Option<Dec>,
    /// When set, only these users may send or receive it.
    pub allowlist: Option<Vec<ID>>,
    /// No holder may send it before then; issuance goes on.
    pub locked_until: Option<DateTime>,
    /// The lowest verification tier a receiver needs.
    pub min_tier: i32,
    /// Only accredited or professional investors may receive it.
    pub qualified_only: bool,
}

/// Transfer rules as an issuer sets them: name allowed or denied countries, not both.
#[derive(InputObject)]
pub struct TokenRulesInput {
    pub allowed_countries: Option<Vec<i32>>,
    pub denied_countries: Option<Vec<i32>>,
    pub max_holders: Option<i32>,
    pub max_balance: Option<Dec>,
    /// User ids.
    pub allowlist: Option<Vec<ID>>,
    pub locked_until: Option<DateTime>,
    #[graphql(default)]
    pub min_tier: i32,
    #[graphql(default)]
    pub qualified_only: bool,
}

#[derive(SimpleObject)]
pub struct Token {
    pub symbol: String,
    pub decimals: i32,
    /// Every amount of the token is a multiple of this.
    pub lot_size: Dec,
    pub max_supply: Dec,
    /// Issued so far.
    pub supply: Dec,
    pub issuer: ID,
    /// The blake3 digest of the offering document, in hex.
    pub document_hash: String,
    pub document_url: String,
    pub rules: TokenRules,
    pub created_at: DateTime,
}

#[derive(SimpleObject)]
pub struct Vesting {
    /// The first tranche vests one period after this.
    pub start: DateTime,
    pub period_seconds: i64,
    pub tranches: i32,
}

/// The spot market a token lists on when its offering closes allocated,
/// priced in the offering's payment asset; its fees are the operators'
/// (`listingFees`) at the close.
#[derive(SimpleObject)]
pub struct OfferingListing {
    pub tick_size: Dec,
    pub lot_size: Dec,
    /// How far a limit price may be from the last trade (0.1 is 10%); none for no band.
    pub price_band: Option<Dec>,
}

/// The fees of the markets tokens list on at their offerings' close, as
/// fractions of a trade's value (0.001 is 0.1%).
#[derive(SimpleObject)]
pub struct ListingFees {
    pub maker_fee_rate: Dec,
    pub taker_fee_rate: Dec,
}

#[derive(SimpleObject)]
pub struct Offering {
    pub id: ID,
    pub token: String,
    pub payment_asset: String,
    pub issuer: ID,
    /// Payment per whole token.
    pub price: Dec,
    /// The target, in tokens: below it at the end, everyone is refunded.
    pub soft_cap: Dec,
    /// The most it issues; subscriptions beyond it are scaled down.
    pub hard_cap: Dec,
    pub min_subscription: Dec,
    pub max_subscription: Dec,
    pub starts_at: DateTime,
    pub ends_at: DateTime,
    /// Subscriptions can be cancelled until then.
    pub cancel_until: DateTime,
    /// The platform's fee on the proceeds, in basis points.
    pub fee_bps: i32,
    pub vesting: Option<Vesting>,
    /// Where the token trades once the offering closes allocated.
    pub listing: Option<OfferingListing>,
    pub status: OfferingStatus,
    /// Tokens the open subscriptions ask for, and how many are open.
    pub subscribed: Dec,
    pub open_subscriptions: i32,
    /// At the close: tokens issued, payment raised, the platform's fee.
    pub issued: Dec,
    pub raised: Dec,
    pub fee: Dec,
    pub created_at: DateTime,
    pub closed_at: Option<DateTime>,
}

#[derive(SimpleObject)]
pub struct OfferingSubscription {
    pub id: ID,
    pub offering_id: ID,
    pub token: String,
    pub investor: ID,
    /// Tokens asked for, and the payment held for them.
    pub amount: Dec,
    pub payment: Dec,
    pub payment_asset: String,
    pub status: SubscriptionStatus,
    /// At the close: tokens issued, payment taken, payment given back.
    pub allocated: Dec,
    pub paid: Dec,
    pub refunded: Dec,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

/// A part of an allocation set aside until it vests.
#[derive(SimpleObject)]
pub struct VestingTranche {
    pub subscription_id: ID,
    pub token: String,
    pub amount: Dec,
    pub vests_at: DateTime,
    pub vested: bool,
}

#[derive(SimpleObject)]
pub struct CapTableEntry {
    pub user: ID,
    pub email: Option<String>,
    /// Everything held: available, in open orders, vesting and frozen.
    pub balance: Dec,
    /// Of which not free to send: in open sell orders, vesting or frozen.
    pub locked: Dec,
    /// Of that, what the token's agent froze.
    pub frozen: Dec,
    /// Of the supply, as a fraction (12 decimals, rounded down).
    pub share: Dec,
}

#[derive(SimpleObject)]
pub struct InvestorClaims {
    pub user: ID,
    /// ISO 3166-1 numeric (840 the United States, 276 Germany).
    pub country: i32,
    pub category: InvestorCategory,
    /// After this the claims no longer count: the investor is not verified.
    pub expires_at: DateTime,
    /// The tax withheld from their distributions, as a fraction.
    pub withholding_rate: Dec,
}

#[derive(Default)]
pub struct TokenizationQuery;

#[Object]
impl TokenizationQuery {
    /// Every token, oldest first.
    async fn tokens(&self, ctx: &Context<'_>) -> Result<Vec<Token>, Error> {
        caller(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        Ok(tokens(ctx).await?.iter().map(|t| api_token(&catalog, t)).collect())
    }

    /// Offerings, newest first; of one token when named.
    async fn offerings(&self, ctx: &Context<'_>, token: Option<String>, limit: Option<i32>) -> Result<Vec<Offering>, Error> {
        caller(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let token = token.map(|symbol| catalog.asset_by_symbol(&symbol).map(|a| a.id)).transpose()?;
        match ask_tokenization(ctx, api::Query::Offerings { token, limit: list_limit(limit) }).await? {
            api::Answer::Offerings(list) => Ok(list.iter().map(|o| api_offering(&catalog, o)).collect()),
            other => Err(unexpected(other)),
        }
    }

    async fn offering(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Offering>, Error> {
        caller(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        Ok(offering(ctx, parse_id(&id, "offering")?).await?.map(|o| api_offering(&catalog, &o)))
    }

    /// An offering's subscriptions, oldest first, after the id `after`
    /// (its issuer and operators only).
    async fn offering_subscriptions(
        &self,
        ctx: &Context<'_>,
        offering_id: ID,
        after: Option<ID>,
        limit: Option<i32>,
    ) -> Result<Vec<OfferingSubscription>, Error> {
        let id = parse_id(&offering_id, "offering")?;
        let found = offering(ctx, id).await?.ok_or_else(|| coded("NOT_FOUND", "no such offering"))?;
        issuer_or_operator(ctx, found.issuer)?;
        let after = after.map(|id| parse_id(&id, "subscription")).transpose()?.unwrap_or(0);
        let catalog = Catalog::load(ctx).await?;
        match ask_tokenization(ctx, api::Query::Subscriptions { offering: id, after, limit: list_limit(limit) }).await? {
            api::Answer::Subscriptions(list) => Ok(list.iter().map(|s| api_subscription(&catalog, &found, s)).collect()),
            other => Err(unexpected(other)),
        }
    }

    /// The caller's subscriptions, newest first.
    async fn my_subscriptions(&self, ctx: &Context<'_>, limit: Option<i32>) -> Result<Vec<OfferingSubscription>, Error> {
        let investor = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let list = match ask_tokenization(ctx, api::Query::InvestorSubscriptions { investor, limit: list_limit(limit) }).await? {
            api::Answer::Subscriptions(list) => list,
            other => return Err(unexpected(other)),
        };
        let mut out = Vec::with_capacity(list.len());
        let mut offerings: Vec<api::Offering> = Vec::new();
        for subscription in &list {
            if !offerings.iter().any(|o| o.id == subscription.offering) {
                offerings.push(offering(ctx, subscription.offering).await?.ok_or_else(|| unexpected("a subscription to no offering"))?);
            }
            let of = offerings.iter().find(|o| o.id == subscription.offering).expect("pushed above");
            out.push(api_subscription(&catalog, of, subscription));
        }
        Ok(out)
    }

    /// The caller's vesting tranches, vested or not, soonest first: those
    /// of the newest subscriptions, at most `limit`.
    async fn my_vesting(&self, ctx: &Context<'_>, limit: Option<i32>) -> Result<Vec<VestingTranche>, Error> {
        let investor = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        match ask_tokenization(ctx, api::Query::Tranches { investor, limit: list_limit(limit) }).await? {
            api::Answer::Tranches(mut list) => {
                list.sort_by_key(|t| (t.vests_at_ms, t.subscription, t.index));
                Ok(list
                    .iter()
                    .map(|t| VestingTranche {
                        subscription_id: ID(t.subscription.to_string()),
                        token: catalog.symbol(t.token),
                        amount: catalog.amount(t.token, t.amount),
                        vests_at: at(t.vests_at_ms),
                        vested: t.vested,
                    })
                    .collect())
            }
            other => Err(unexpected(other)),
        }
    }

    /// The caller's investor claims, if the operators set any.
    async fn my_investor_claims(&self, ctx: &Context<'_>) -> Result<Option<InvestorClaims>, Error> {
        let user = caller_id(ctx)?;
        claims_of(ctx, user).await
    }

    /// A user's investor claims (operators only).
    async fn investor_claims(&self, ctx: &Context<'_>, email: String) -> Result<Option<InvestorClaims>, Error> {
        operator(ctx)?;
        let user = user_by_email(ctx, &email)?;
        claims_of(ctx, user).await
    }

    /// Whether the caller may create tokens and offerings.
    async fn am_issuer(&self, ctx: &Context<'_>) -> Result<bool, Error> {
        let user = caller_id(ctx)?;
        Ok(issuers(ctx).await?.contains(&user))
    }

    /// The users who may issue tokens (operators only).
    async fn issuers(&self, ctx: &Context<'_>) -> Result<Vec<super::accounts::User>, Error> {
        operator(ctx)?;
        let users = &services(ctx).users;
        let mut out = Vec::new();
        for id in issuers(ctx).await? {
            if let Some(user) = users.by_id(id).map_err(super::user_error)? {
                out.push((&user).into());
            }
        }
        Ok(out)
    }

    /// The platform's fee on the proceeds of new offerings, in basis points.
    async fn offering_fee_bps(&self, ctx: &Context<'_>) -> Result<i32, Error> {
        caller(ctx)?;
        match ask_tokenization(ctx, api::Query::OfferingFee).await? {
            api::Answer::OfferingFee(bps) => Ok(bps as i32),
            other => Err(unexpected(other)),
        }
    }

    /// The fees of the markets tokens list on at their offerings' close.
    async fn listing_fees(&self, ctx: &Context<'_>) -> Result<ListingFees, Error> {
        caller(ctx)?;
        match ask_tokenization(ctx, api::Query::ListingFees).await? {
            api::Answer::ListingFees { maker_fee_ppm, taker_fee_ppm } => Ok(listing_fees(maker_fee_ppm, taker_fee_ppm)),
            other => Err(unexpected(other)),
        }
    }

    /// Every holder of a token, the issuer included, largest first: now,
    /// or as the ledger stood at `at` (every transfer stamped then or
    /// before; a read as long as the history since), its share of the
    /// supply then (its issuer and operators only).
    async fn cap_table(&self, ctx: &Context<'_>, token: String, at: Option<DateTime>) -> Result<Vec<CapTableEntry>, Error> {
        let catalog = Catalog::load(ctx).await?;
        let asset = catalog.asset_by_symbol(&token)?.clone();
        let found = tokens(ctx).await?.into_iter().find(|t| t.asset == asset.id).ok_or_else(|| coded("NOT_FOUND", format!("{token} is not a token")))?;
        issuer_or_operator(ctx, found.issuer)?;
        let at_ms = at.map(|text| time(&text, "at")).transpose()?;
        let (supply, mut holdings) = match at_ms {
            None => match ask_tokenization(ctx, api::Query::CapTable(asset.id)).await? {
                api::Answer::CapTable(list) => (found.supply, list),
                other => return Err(unexpected(other)),
            },
            Some(at_ms) => match ask_tokenization(ctx, api::Query::CapTableAt { token: asset.id, at_ms }).await? {
                api::Answer::CapTableAt { supply, holdings } => (supply, holdings),
                other => return Err(unexpected(other)),
            },
        };
        holdings.sort_by(|a, b| b.balance.cmp(&a.balance).then(a.user.cmp(&b.user)));
        let users = &services(ctx).users;
        let mut out = Vec::with_capacity(holdings.len());
        for holding in holdings {
            out.push(CapTableEntry {
                user: ID(holding.user.to_string()),
                email: users.by_id(holding.user).map_err(super::user_error)?.map(|u| u.email),
                balance: Dec(to_decimal(holding.balance, asset.scale)),
                locked: Dec(to_decimal(holding.locked, asset.scale)),
                frozen: Dec(to_decimal(holding.frozen, asset.scale)),
                share: Dec(share(holding.balance, supply)),
            });
        }
        Ok(out)
    }
}

#[derive(Default)]
pub struct TokenizationMutation;

#[Object]
impl TokenizationMutation {
    /// An issuer's new token: its symbol becomes an asset. Every amount of
    /// it is a multiple of `lotSize`; at most `maxSupply` is ever issued.
    /// `documentHash` is the blake3 digest (hex) of the offering document
    /// at `documentUrl`, so that investors can check what they read.
    #[allow(clippy::too_many_arguments)]
    async fn create_token(
        &self,
        ctx: &Context<'_>,
        symbol: String,
        decimals: i32,
        lot_size: Dec,
        max_supply: Dec,
        document_hash: String,
        document_url: String,
        rules: Option<TokenRulesInput>,
    ) -> Result<Token, Error> {
        let issuer = caller_id(ctx)?;
        let scale = u8::try_from(decimals).ok().filter(|s| *s <= 18).ok_or_else(|| coded("BAD_USER_INPUT", "decimals is 0 to 18"))?;
        let spec = api::TokenSpec {
            symbol,
            scale,
            lot: amount_units(lot_size, scale, "lotSize")?,
            supply_max: amount_units(max_supply, scale, "maxSupply")?,
            document_hash: digest(&document_hash)?,
            document_url,
            rules: rules.map(|r| rules_of(r, scale)).transpose()?.unwrap_or_default(),
        };
        let asset = match run_tokenization(ctx, Command::CreateToken { issuer, spec: Box::new(spec) }).await? {
            api::Outcome::TokenCreated(asset) => asset,
            other => return Err(unexpected(other)),
        };
        token_by_asset(ctx, asset).await
    }

    /// Replaces a token's transfer rules (its issuer only); they apply from
    /// the next request on.
    async fn set_token_rules(&self, ctx: &Context<'_>, token: String, rules: TokenRulesInput) -> Result<Token, Error> {
        let issuer = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let asset = catalog.asset_by_symbol(&token)?.clone();
        let rules = rules_of(rules, asset.scale)?;
        match run_tokenization(ctx, Command::SetRules { issuer, token: asset.id, rules }).await? {
            api::Outcome::RulesSet(_) => token_by_asset(ctx, asset.id).await,
            other => Err(unexpected(other)),
        }
    }

    /// An issuer's offering of its token for `paymentAsset` at `price` a
    /// whole token. Below `softCap` tokens subscribed at `endsAt`, everyone
    /// is refunded; beyond `hardCap`, subscriptions are scaled down pro
    /// rata in whole lots. Subscriptions can be cancelled until
    /// `cancelCutoffSeconds` before the end (48 hours when not named). With
    /// `vestingTranches`, allocations vest in that many equal parts, one
    /// each `vestingPeriodSeconds` after `vestingStart` (the
    /// end when not named). The platform's fee
    /// is the operators' (offeringFeeBps), fixed when the offering is made.
    #[allow(clippy::too_many_arguments)]
    async fn create_offering(
        &self,
        ctx: &Context<'_>,
        token: String,
        payment_asset: String,
        price: Dec,
        soft_cap: Dec,
        hard_cap: Dec,
        min_subscription: Dec,
        max_subscription: Dec,
        starts_at: Option<DateTime>,
        ends_at: DateTime,
        cancel_cutoff_seconds: Option<i64>,
        vesting_start: Option<DateTime>,
        vesting_period_seconds: Option<i64>,
        vesting_tranches: Option<i32>,
        #[graphql(desc = "The tick of the spot market the token lists on at the close, in the payment asset (with listLotSize; none: no listing).")]
        list_tick_size: Option<Dec>,
        #[graphql(desc = "The lot of that market, in tokens: whole lots of the token.")] list_lot_size: Option<Dec>,
        #[graphql(desc = "How far a limit price may be from the last trade on that market (0.1 is 10%); none for no band.")] list_price_band: Option<Dec>,
    ) -> Result<Offering, Error> {
        let issuer = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let token_spec = catalog.asset_by_symbol(&token)?.clone();
        let payment = catalog.asset_by_symbol(&payment_asset)?.clone();
        let cancel_cutoff_ms = match cancel_cutoff_seconds {
            None => api::CANCEL_CUTOFF_MS_DEFAULT,
            Some(seconds) => seconds_ms(seconds, "cancelCutoffSeconds")?,
        };
        let starts_at_ms = starts_at.map(|t| time(&t, "startsAt")).transpose()?.unwrap_or_else(super::now_ms);
        let ends_at_ms = time(&ends_at, "endsAt")?;
        if cancel_cutoff_seconds.is_none() && ends_at_ms.saturating_sub(starts_at_ms) <= cancel_cutoff_ms {
            return Err(coded("BAD_USER_INPUT", "the default cancel cut-off, 48 hours before the end, is not after the start: name cancelCutoffSeconds"));
        }
        let vesting = match (vesting_start, vesting_period_seconds, vesting_tranches) {
            (None, None, None) => None,
            (start, Some(period), Some(count)) => Some(api::VestingSpec {
                start_ms: start.map(|t| time(&t, "vestingStart")).transpose()?.unwrap_or(ends_at_ms),
                period_ms: seconds_ms(period, "vestingPeriodSeconds")?,
                count: u32::try_from(count).map_err(|_| coded("BAD_USER_INPUT", "vestingTranches is positive"))?,
            }),
            _ => return Err(coded("BAD_USER_INPUT", "vesting needs vestingPeriodSeconds and vestingTranches (vestingStart: the end when not named)")),
        };
        let listing = match (list_tick_size, list_lot_size) {
            (None, None) if list_price_band.is_none() => None,
            (Some(tick), Some(lot)) => {
                let units = crate::units::market_units(tick.0, lot.0, token_spec.scale, payment.scale).map_err(|(code, message)| coded(code, message))?;
                let price_band_ppm = match list_price_band {
                    None => 0,
                    Some(band) => u32::try_from(to_units(band.0, 6, "listPriceBand").map_err(|(code, message)| coded(code, message))?)
                        .ok()
                        .filter(|ppm| (1..=matching_api::PRICE_BAND_PPM_MAX).contains(ppm))
                        .ok_or_else(|| coded("BAD_USER_INPUT", "listPriceBand is above 0 and at most 1 (leave it out for no band)"))?,
                };
                Some(api::Listing {
                    quote_units_per_tick_lot: units.quote_units_per_tick_lot,
                    tick_lot_scale: units.tick_lot_scale,
                    base_units_per_lot: units.base_units_per_lot,
                    price_band_ppm,
                })
            }
            _ => return Err(coded("BAD_USER_INPUT", "a listing needs listTickSize and listLotSize (listPriceBand optional)")),
        };
        let spec = api::OfferingSpec {
            token: token_spec.id,
            payment_asset: payment.id,
            price: amount_units(price, payment.scale, "price")?,
            soft_cap: amount_units(soft_cap, token_spec.scale, "softCap")?,
            hard_cap: amount_units(hard_cap, token_spec.scale, "hardCap")?,
            investor_min: amount_units(min_subscription, token_spec.scale, "minSubscription")?,
            investor_max: amount_units(max_subscription, token_spec.scale, "maxSubscription")?,
            starts_at_ms,
            ends_at_ms,
            cancel_cutoff_ms,
            vesting,
            listing,
        };
        let id = match run_tokenization(ctx, Command::CreateOffering { issuer, spec: Box::new(spec) }).await? {
            api::Outcome::OfferingCreated(id) => id,
            other => return Err(unexpected(other)),
        };
        let created = offering(ctx, id).await?.ok_or_else(|| unexpected("an offering made and not found"))?;
        Ok(api_offering(&catalog, &created))
    }

    /// Subscribes for `amount` tokens: their price is held from the
    /// caller's available balance in escrow until the close or a cancel.
    /// One open subscription per investor and offering; the same
    /// `idempotencyKey` again answers the same subscription. Refused with
    /// COMPLIANCE_REFUSED when the token's rules would not let the caller
    /// hold it, OFFERING_CLOSED outside the offering's window.
    async fn subscribe(&self, ctx: &Context<'_>, offering_id: ID, amount: Dec, idempotency_key: String) -> Result<OfferingSubscription, Error> {
        let investor = caller_id(ctx)?;
        let id = parse_id(&offering_id, "offering")?;
        // The ledger answers OFFERING_CLOSED for a closed one, after a repeated request's subscription.
        let found = offering(ctx, id).await?.ok_or_else(|| coded("NOT_FOUND", "no such offering"))?;
        let catalog = Catalog::load(ctx).await?;
        let scale = catalog.asset(found.spec.token).map_or(0, |a| a.scale);
        let amount = amount_units(amount, scale, "amount")?;
        let subscription = match run_tokenization(ctx, Command::Subscribe { investor, offering: id, amount, key: idempotency_key }).await? {
            api::Outcome::Subscribed(subscription) => subscription,
            other => return Err(unexpected(other)),
        };
        subscription_of(ctx, &catalog, investor, subscription).await
    }

    /// Cancels one of the caller's open subscriptions and releases its
    /// hold, until the offering's cut-off (then CANCEL_CUTOFF_PASSED); a
    /// cancelled one again answers as it stands.
    async fn cancel_subscription(&self, ctx: &Context<'_>, subscription_id: ID) -> Result<OfferingSubscription, Error> {
        let investor = caller_id(ctx)?;
        let subscription = parse_id(&subscription_id, "subscription")?;
        let catalog = Catalog::load(ctx).await?;
        // The ledger keeps only open subscriptions in memory: a closed one's answer is said here.
        let current = subscription_of(ctx, &catalog, investor, subscription).await?;
        match current.status {
            SubscriptionStatus::Open => {}
            SubscriptionStatus::Cancelled => return Ok(current),
            SubscriptionStatus::Allocated | SubscriptionStatus::Refunded => {
                return Err(coded("CANCEL_CUTOFF_PASSED", format!("subscription {subscription}'s offering has closed: it can no longer be cancelled")));
            }
        }
        match run_tokenization(ctx, Command::CancelSubscription { investor, subscription }).await? {
            api::Outcome::SubscriptionCancelled(_) => {}
            other => return Err(unexpected(other)),
        }
        subscription_of(ctx, &catalog, investor, subscription).await
    }

    /// Proposes to make a user an issuer of tokens, or no longer one
    /// (operators; `approvals.issuer` of them). The tokens they made stay theirs.
    async fn set_issuer(&self, ctx: &Context<'_>, email: String, issuer: bool) -> Result<bool, Error> {
        // Operators only, before the email is looked up: no one else learns which accounts exist.
        operator(ctx)?;
        let user = user_by_email(ctx, &email)?;
        match operate(ctx, ledger_api::Command::Tokenization(Command::SetIssuer { user, issuer })).await? {
            Outcome::Tokenization(api::Outcome::IssuerSet { issuer, .. }) => Ok(issuer),
            other => Err(unexpected(other)),
        }
    }

    /// Proposes a user's investor claims (operators; `approvals.investor_claims`
    /// of them): their country (ISO 3166-1 numeric), category, until when
    /// they count, and the tax withheld from their distributions as a
    /// fraction (0 unless named). A KYC provider's verdict will come this way too.
    async fn set_investor_claims(
        &self,
        ctx: &Context<'_>,
        email: String,
        country: i32,
        category: InvestorCategory,
        expires_at: DateTime,
        withholding_rate: Option<Dec>,
    ) -> Result<InvestorClaims, Error> {
        // Operators only, before the email is looked up: no one else learns which accounts exist.
        operator(ctx)?;
        let user = user_by_email(ctx, &email)?;
        let claims = Claims {
            country: u16::try_from(country)
                .ok()
                .filter(|c| (1..=999).contains(c))
                .ok_or_else(|| coded("BAD_USER_INPUT", "a country is an ISO 3166-1 numeric code, 1 to 999"))?,
            category: category.into(),
            expires_at_ms: time(&expires_at, "expiresAt")?,
            withholding_bps: withholding_rate.map(|rate| super::distributions::withholding_bps(rate, "withholdingRate")).transpose()?.unwrap_or(0),
        };
        match operate(ctx, ledger_api::Command::Tokenization(Command::SetClaims { user, claims: Some(claims) })).await? {
            Outcome::Tokenization(api::Outcome::ClaimsSet(_)) => Ok(api_claims(user, &claims)),
            other => Err(unexpected(other)),
        }
    }

    /// Proposes to remove a user's investor claims: they can no longer receive tokens.
    async fn remove_investor_claims(&self, ctx: &Context<'_>, email: String) -> Result<bool, Error> {
        // Operators only, before the email is looked up: no one else learns which accounts exist.
        operator(ctx)?;
        let user = user_by_email(ctx, &email)?;
        match operate(ctx, ledger_api::Command::Tokenization(Command::SetClaims { user, claims: None })).await? {
            Outcome::Tokenization(api::Outcome::ClaimsSet(_)) => Ok(true),
            other => Err(unexpected(other)),
        }
    }

    /// Proposes the platform's fee on the proceeds of offerings made from
    /// now on, in basis points (0 to 2000; operators, `approvals.issuer` of them).
    async fn set_offering_fee(&self, ctx: &Context<'_>, fee_bps: i32) -> Result<i32, Error> {
        let fee_bps = u32::try_from(fee_bps).map_err(|_| coded("BAD_USER_INPUT", "feeBps is 0 to 2000"))?;
        match operate(ctx, ledger_api::Command::Tokenization(Command::SetOfferingFee { fee_bps })).await? {
            Outcome::Tokenization(api::Outcome::OfferingFeeSet(bps)) => Ok(bps as i32),
            other => Err(unexpected(other)),
        }
    }

    /// Proposes the fees of the markets tokens list on at their offerings'
    /// close from now on, as fractions of a trade's value (0 to 1; operators,
    /// `approvals.issuer` of them).
    async fn set_listing_fees(&self, ctx: &Context<'_>, maker_fee_rate: Dec, taker_fee_rate: Dec) -> Result<ListingFees, Error> {
        let ppm = |rate: Dec, field: &str| -> Result<u32, Error> {
            let ppm = to_units(rate.0, 6, field).map_err(|(code, message)| coded(code, message))?;
            u32::try_from(ppm).ok().filter(|ppm| *ppm <= matching_api::FEE_RATE_PPM_MAX).ok_or_else(|| coded("BAD_USER_INPUT", format!("{field} is 0 to 1")))
        };
        let command = Command::SetListingFees { maker_fee_ppm: ppm(maker_fee_rate, "makerFeeRate")?, taker_fee_ppm: ppm(taker_fee_rate, "takerFeeRate")? };
        match operate(ctx, ledger_api::Command::Tokenization(command)).await? {
            Outcome::Tokenization(api::Outcome::ListingFeesSet { maker_fee_ppm, taker_fee_ppm }) => Ok(listing_fees(maker_fee_ppm, taker_fee_ppm)),
            other => Err(unexpected(other)),
        }
    }
}

fn listing_fees(maker_fee_ppm: u32, taker_fee_ppm: u32) -> ListingFees {
    let rate = |ppm: u32| Dec(Decimal::new(ppm.into(), 6).normalize());
    ListingFees { maker_fee_rate: rate(maker_fee_ppm), taker_fee_rate: rate(taker_fee_ppm) }
}

pub(super) async fn run_tokenization(ctx: &Context<'_>, command: Command) -> Result<api::Outcome, Error> {
    match run(ctx, ledger_api::Command::Tokenization(command)).await? {
        Outcome::Tokenization(outcome) => Ok(outcome),
        other => Err(unexpected(other)),
    }
}

pub(super) async fn ask_tokenization(ctx: &Context<'_>, query: api::Query) -> Result<api::Answer, Error> {
    match ask(ctx, Query::Tokenization(query)).await? {
        Answer::Tokenization(answer) => Ok(answer),
        other => Err(unexpected(other)),
    }
}

pub(super) async fn tokens(ctx: &Context<'_>) -> Result<Vec<api::Token>, Error> {
    match ask_tokenization(ctx, api::Query::Tokens).await? {
        api::Answer::Tokens(list) => Ok(list),
        other => Err(unexpected(other)),
    }
}

/// Whether the asset is a token.
pub(crate) async fn is_token(ctx: &Context<'_>, asset: u32) -> Result<bool, Error> {
    Ok(tokens(ctx).await?.iter().any(|t| t.asset == asset))
}

async fn token_by_asset(ctx: &Context<'_>, asset: u32) -> Result<Token, Error> {
    let found = tokens(ctx).await?.into_iter().find(|t| t.asset == asset).ok_or_else(|| unexpected("a token made and not found"))?;
    // A new token is a new asset: the kept catalog learns it.
    let catalog = Catalog::load(ctx).await?;
    Ok(api_token(&catalog, &found))
}

async fn offering(ctx: &Context<'_>, id: u64) -> Result<Option<api::Offering>, Error> {
    match ask_tokenization(ctx, api::Query::Offering(id)).await? {
        api::Answer::Offering(found) => Ok(found.map(|o| *o)),
        other => Err(unexpected(other)),
    }
}

async fn issuers(ctx: &Context<'_>) -> Result<Vec<u64>, Error> {
    match ask_tokenization(ctx, api::Query::Issuers).await? {
        api::Answer::Issuers(list) => Ok(list),
        other => Err(unexpected(other)),
    }
}

async fn claims_of(ctx: &Context<'_>, user: u64) -> Result<Option<InvestorClaims>, Error> {
    match ask_tokenization(ctx, api::Query::Claims(user)).await? {
        api::Answer::Claims(found) => Ok(found.map(|c| api_claims(user, &c))),
        other => Err(unexpected(other)),
    }
}

/// One of the investor's subscriptions (NOT_FOUND for anyone else's).
async fn subscription_of(ctx: &Context<'_>, catalog: &Catalog, investor: u64, id: u64) -> Result<OfferingSubscription, Error> {
    let found = subscription(ctx, id).await?.filter(|s| s.investor == investor).ok_or_else(|| coded("NOT_FOUND", "you have no subscription with this id"))?;
    let of = offering(ctx, found.offering).await?.ok_or_else(|| unexpected("a subscription to no offering"))?;
    Ok(api_subscription(catalog, &of, &found))
}

async fn subscription(ctx: &Context<'_>, id: u64) -> Result<Option<api::Subscription>, Error> {
    match ask_tokenization(ctx, api::Query::Subscription(id)).await? {
        api::Answer::Subscription(found) => Ok(found.map(|s| *s)),
        other => Err(unexpected(other)),
    }
}

/// The caller, when the issuer of what is asked about or an operator.
pub(super) fn issuer_or_operator(ctx: &Context<'_>, issuer: u64) -> Result<(), Error> {
    let claims = caller(ctx)?;
    if claims.role == Role::Operator {
        operator(ctx)?;
        return Ok(());
    }
    if claims.user() == Some(issuer) {
        return Ok(());
    }
    Err(coded("FORBIDDEN", "only the token's issuer and operators see this"))
}

pub(super) fn parse_id(id: &ID, what: &str) -> Result<u64, Error> {
    id.parse().map_err(|_| coded("NOT_FOUND", format!("no such {what}")))
}

pub(super) fn amount_units(amount: Dec, scale: u8, field: &str) -> Result<i128, Error> {
    let units = to_units(amount.0, scale, field).map_err(|(code, message)| coded(code, message))?;
    if units < 0 {
        return Err(coded("BAD_USER_INPUT", format!("{field} is not negative")));
    }
    Ok(units)
}

pub(super) fn time(text: &DateTime, field: &str) -> Result<u64, Error> {
    parse_rfc3339(&text.0).ok_or_else(|| coded("BAD_USER_INPUT", format!("{field} is an RFC 3339 time such as 2027-06-30T00:00:00Z")))
}

fn seconds_ms(seconds: i64, field: &str) -> Result<u64, Error> {
    u64::try_from(seconds).ok().and_then(|s| s.checked_mul(1_000)).ok_or_else(|| coded("BAD_USER_INPUT", format!("{field} is a number of seconds, 0 or more")))
}

fn digest(hex: &str) -> Result<Digest, Error> {
    let refused = || coded("BAD_USER_INPUT", "documentHash is the document's blake3 digest: 64 hexadecimal digits (b3sum prints it)");
    let hex = hex.trim();
    // from_str_radix takes a sign: only digits pass.
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused());
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| refused())?;
    }
    Ok(Digest(bytes))
}

/// `part` of `whole` as a fraction, rounded down; zero of nothing.
fn share(part: i128, whole: i128) -> Decimal {
    if whole <= 0 || part <= 0 {
        return Decimal::ZERO;
    }
    // Long division, a digit at a time: part x 10^12 may not fit an i128,
    // but the remainder (below the whole, itself far below 10^37) times ten does.
    let mut units = part / whole;
    let mut remainder = part % whole;
    for _ in 0..SHARE_SCALE {
        remainder = remainder.saturating_mul(10);
        units = units.saturating_mul(10).saturating_add(remainder / whole);
        remainder %= whole;
    }
    to_decimal(units, SHARE_SCALE as u8)
}

pub(crate) fn rules_of(input: TokenRulesInput, token_scale: u8) -> Result<TransferRules, Error> {
    let codes = |list: Vec<i32>| -> Result<Vec<u16>, Error> {
        let mut codes: Vec<u16> = list
            .into_iter()
            .map(|c| {
                u16::try_from(c)
                    .ok()
                    .filter(|c| (1..=999).contains(c))
                    .ok_or_else(|| coded("BAD_USER_INPUT", "a country is an ISO 3166-1 numeric code, 1 to 999"))
            })
            .collect::<Result<_, _>>()?;
        codes.sort_unstable();
        codes.dedup();
        Ok(codes)
    };
    let countries = match (input.allowed_countries, input.denied_countries) {
        (Some(_), Some(_)) => return Err(coded("BAD_USER_INPUT", "name allowed or denied countries, not both")),
        (Some(list), None) => Countries::Allow(codes(list)?),
        (None, Some(list)) => Countries::Deny(codes(list)?),
        (None, None) => Countries::Any,
    };
    let allowlist = input
        .allowlist
        .map(|ids| {
            let mut users: Vec<u64> =
                ids.iter().map(|id| id.parse::<u64>().map_err(|_| coded("BAD_USER_INPUT", "an allowlist names user ids"))).collect::<Result<_, _>>()?;
            users.sort_unstable();
            users.dedup();
            Ok::<_, Error>(users)
        })
        .transpose()?;
    Ok(TransferRules {
        countries,
        holders_max: input.max_holders.map(|n| u32::try_from(n).map_err(|_| coded("BAD_USER_INPUT", "maxHolders is 0 or more"))).transpose()?,
        balance_max: input.max_balance.map(|amount| amount_units(amount, token_scale, "maxBalance")).transpose()?,
        allowlist,
        locked_until_ms: input.locked_until.map(|text| time(&text, "lockedUntil")).transpose()?,
        tier_min: u8::try_from(input.min_tier)
            .ok()
            .filter(|t| *t <= ledger_api::operators::TIER_MAX)
            .ok_or_else(|| coded("BAD_USER_INPUT", "minTier is 0 to 9"))?,
        qualified_only: input.qualified_only,
    })
}

fn api_rules(scale: u8, rules: &TransferRules) -> TokenRules {
    let codes = |list: &[u16]| list.iter().map(|c| i32::from(*c)).collect();
    TokenRules {
        allowed_countries: match &rules.countries {
            Countries::Allow(list) => Some(codes(list)),
            _ => None,
        },
        denied_countries: match &rules.countries {
            Countries::Deny(list) => Some(codes(list)),
            _ => None,
        },
        max_holders: rules.holders_max.map(|n| n.min(i32::MAX as u32) as i32),
        max_balance: rules.balance_max.map(|units| Dec(to_decimal(units, scale))),
        allowlist: rules.allowlist.as_ref().map(|users| users.iter().map(|u| ID(u.to_string())).collect()),
        locked_until: rules.locked_until_ms.map(at),
        min_tier: i32::from(rules.tier_min),
        qualified_only: rules.qualified_only,
    }
}

fn api_token(catalog: &Catalog, token: &api::Token) -> Token {
    let scale = token.spec.scale;
    Token {
        symbol: catalog.asset(token.asset).map_or_else(|| token.spec.symbol.clone(), |a: &AssetSpec| a.symbol.clone()),
        decimals: i32::from(scale),
        lot_size: Dec(to_decimal(token.spec.lot, scale)),
        max_supply: Dec(to_decimal(token.spec.supply_max, scale)),
        supply: Dec(to_decimal(token.supply, scale)),
        issuer: ID(token.issuer.to_string()),
        document_hash: token.spec.document_hash.hex(),
        document_url: token.spec.document_url.clone(),
        rules: api_rules(scale, &token.spec.rules),
        created_at: at(token.created_ms),
    }
}

fn api_offering(catalog: &Catalog, offering: &api::Offering) -> Offering {
    let spec = &offering.spec;
    let tokens = |units: i128| catalog.amount(spec.token, units);
    let money = |units: i128| catalog.amount(spec.payment_asset, units);
    Offering {
        id: ID(offering.id.to_string()),
        token: catalog.symbol(spec.token),
        payment_asset: catalog.symbol(spec.payment_asset),
        issuer: ID(offering.issuer.to_string()),
        price: money(spec.price),
        soft_cap: tokens(spec.soft_cap),
        hard_cap: tokens(spec.hard_cap),
        min_subscription: tokens(spec.investor_min),
        max_subscription: tokens(spec.investor_max),
        starts_at: at(spec.starts_at_ms),
        ends_at: at(spec.ends_at_ms),
        cancel_until: at(spec.ends_at_ms.saturating_sub(spec.cancel_cutoff_ms)),
        fee_bps: offering.fee_bps.min(i32::MAX as u32) as i32,
        vesting: spec.vesting.map(|v| Vesting {
            start: at(v.start_ms),
            period_seconds: (v.period_ms / 1_000).min(i64::MAX as u64) as i64,
            tranches: v.count.min(i32::MAX as u32) as i32,
        }),
        listing: spec.listing.and_then(|listing| {
            let (token, payment) = (catalog.asset(spec.token)?, catalog.asset(spec.payment_asset)?);
            let terms = crate::units::market_terms(&listing.market(spec.token, spec.payment_asset, 0, 0, 0), token, payment);
            Some(OfferingListing {
                tick_size: Dec(terms.tick_size),
                lot_size: Dec(terms.lot_size),
                price_band: (listing.price_band_ppm > 0).then(|| Dec(Decimal::new(listing.price_band_ppm.into(), 6).normalize())),
            })
        }),
        status: match offering.status {
            api::OfferingStatus::Open => OfferingStatus::Open,
            api::OfferingStatus::Allocated => OfferingStatus::Allocated,
            api::OfferingStatus::Refunded => OfferingStatus::Refunded,
        },
        subscribed: tokens(offering.subscribed),
        open_subscriptions: offering.subscriptions_open.min(i32::MAX as u32) as i32,
        issued: tokens(offering.issued),
        raised: money(offering.raised),
        fee: money(offering.fee),
        created_at: at(offering.created_ms),
        closed_at: offering.closed_ms.map(at),
    }
}

fn api_subscription(catalog: &Catalog, offering: &api::Offering, s: &api::Subscription) -> OfferingSubscription {
    let (token, payment) = (offering.spec.token, offering.spec.payment_asset);
    OfferingSubscription {
        id: ID(s.id.to_string()),
        offering_id: ID(s.offering.to_string()),
        token: catalog.symbol(token),
        investor: ID(s.investor.to_string()),
        amount: catalog.amount(token, s.amount),
        payment: catalog.amount(payment, s.payment),
        payment_asset: catalog.symbol(payment),
        status: match s.status {
            api::SubscriptionStatus::Open => SubscriptionStatus::Open,
            api::SubscriptionStatus::Cancelled => SubscriptionStatus::Cancelled,
            api::SubscriptionStatus::Allocated => SubscriptionStatus::Allocated,
            api::SubscriptionStatus::Refunded => SubscriptionStatus::Refunded,
        },
        allocated: catalog.amount(token, s.allocated),
        paid: catalog.amount(payment, s.paid),
        refunded: catalog.amount(payment, s.refunded),
        created_at: at(s.created_ms),
        updated_at: at(s.updated_ms),
    }
}

fn api_claims(user: u64, claims: &Claims) -> InvestorClaims {
    InvestorClaims {
        user: ID(user.to_string()),
        country: i32::from(claims.country),
        category: claims.category.into(),
        expires_at: at(claims.expires_at_ms),
        withholding_rate: super::distributions::withholding_rate(claims.withholding_bps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_document_hash_is_64_hex_digits() {
        let hex = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        assert_eq!(digest(hex).map(|d| d.hex()).ok(), Some(hex.to_string()));
        for bad in ["", "af13", &hex[..63], &format!("{hex}00"), &hex.replace('a', "g"), "é".repeat(32).as_str(), &format!("+a{}", &hex[2..])] {
            assert!(digest(bad).is_err(), "{bad:?} was taken for a digest");
        }
    }

    #[test]
    fn shares_round_down_and_nothing_has_no_share() {
        assert_eq!(share(1, 3).to_string(), "0.333333333333");
        assert_eq!(share(2, 3).to_string(), "0.666666666666");
        assert_eq!(share(5, 5).to_string(), "1.000000000000");
        assert_eq!(share(5, 0), Decimal::ZERO);
    }

    proptest! {
        #[test]
        fn any_hash_text_is_a_digest_or_refused(text in "\\PC{0,70}") {
            let _ = digest(&text);
        }

        #[test]
        fn a_share_is_the_fraction_rounded_down(part in 0i128..=api::AMOUNT_BOUND, whole in 1i128..=api::AMOUNT_BOUND) {
            prop_assume!(part <= whole);
            let s = share(part, whole);
            prop_assert!(s >= Decimal::ZERO && s <= Decimal::ONE);
            // Within one unit of the last place below the exact fraction.
            let exact = rust_decimal::prelude::FromPrimitive::from_f64(part as f64 / whole as f64).unwrap_or(Decimal::ZERO);
            prop_assert!((exact - s).abs() < Decimal::new(1, 9), "{part}/{whole} came out {s}");
        }
    }
}
