//! Distributions of a token's issuer to its holders (dividends, coupons):
//! declared with the pool paid in, recorded by the ledger's clock,
//! claimed by each holder less the tax withheld at their rate, what is
//! left reclaimed by the issuer after the claims end. The ledger decides
//! every rule; this file maps decimals, symbols and times, and says who
//! may read what: a distribution is public like an offering, its
//! entitlements its issuer's and the operators', a holder's their own.

use async_graphql::{Context, Enum, Error, Object, SimpleObject, ID};
use ledger_api::tokenization::{self as api, Command, DistributionSpec, WITHHOLDING_BPS_MAX};
use rust_decimal::Decimal;

use super::tokenization::{amount_units, ask_tokenization, issuer_or_operator, parse_id, run_tokenization, time};
use super::{at, caller, caller_id, coded, list_limit, services, unexpected, Catalog, DateTime, Dec};
use crate::units::to_units;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum DistributionKind {
    Dividend,
    Coupon,
    Other,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum DistributionStatus {
    /// The pool is paid in; the holders are recorded at `recordAt`.
    Declared,
    /// The holders at the record may claim until `claimUntil`.
    Recorded,
    /// Everything claimed, or the rest reclaimed by the issuer.
    Closed,
}

#[derive(SimpleObject)]
pub struct Distribution {
    pub id: ID,
    pub token: String,
    pub kind: DistributionKind,
    pub issuer: ID,
    pub payment_asset: String,
    /// What the issuer paid in, shared pro rata among the holders at the
    /// record (the issuer's own tokens not counted), each share rounded down.
    pub pool: Dec,
    pub record_at: DateTime,
    pub claim_until: DateTime,
    /// Withheld from holders without valid investor claims at the record, as a fraction.
    pub default_withholding_rate: Dec,
    pub status: DistributionStatus,
    /// At the record: when, the holders and the tokens they held, what
    /// they are entitled to before withholding, and the rounding's
    /// remainder given back to the issuer.
    pub recorded_at: Option<DateTime>,
    pub holders: i32,
    pub units: Dec,
    pub entitled: Dec,
    pub remainder: Dec,
    /// Since: claimed before withholding, the tax withheld from it, and
    /// what the issuer reclaimed after the claims ended.
    pub claimed: Dec,
    pub withheld: Dec,
    pub reclaimed: Dec,
    pub created_at: DateTime,
    pub closed_at: Option<DateTime>,
}

/// A holder's part of a distribution, as its record fixed it.
#[derive(SimpleObject)]
pub struct Entitlement {
    pub distribution_id: ID,
    pub token: String,
    pub payment_asset: String,
    pub holder: ID,
    /// The holder's email, for the issuer's and the operators' lists.
    pub email: Option<String>,
    /// Tokens held at the record.
    pub units: Dec,
    /// Their share before withholding, the rate withheld, the tax and
    /// what is paid them.
    pub gross: Dec,
    pub withholding_rate: Dec,
    pub withheld: Dec,
    pub net: Dec,
    pub claim_until: DateTime,
    pub claimed_at: Option<DateTime>,
    /// Not claimed in time: the issuer took it back.
    pub reclaimed: bool,
}

#[derive(Default)]
pub struct DistributionsQuery;

#[Object]
impl DistributionsQuery {
    /// Distributions, newest first; of one token when named.
    async fn distributions(&self, ctx: &Context<'_>, token: Option<String>, limit: Option<i32>) -> Result<Vec<Distribution>, Error> {
        caller(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let token = token.map(|symbol| catalog.asset_by_symbol(&symbol).map(|a| a.id)).transpose()?;
        match ask_tokenization(ctx, api::Query::Distributions { token, limit: list_limit(limit) }).await? {
            api::Answer::Distributions(list) => Ok(list.iter().map(|d| api_distribution(&catalog, d)).collect()),
            other => Err(unexpected(other)),
        }
    }

    async fn distribution(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Distribution>, Error> {
        caller(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        Ok(distribution(ctx, parse_id(&id, "distribution")?).await?.map(|d| api_distribution(&catalog, &d)))
    }

    /// A distribution's entitlements by holder id, after the holder
    /// `after` (its issuer and operators only).
    async fn distribution_entitlements(
        &self,
        ctx: &Context<'_>,
        distribution_id: ID,
        after: Option<ID>,
        limit: Option<i32>,
    ) -> Result<Vec<Entitlement>, Error> {
        let id = parse_id(&distribution_id, "distribution")?;
        let found = distribution(ctx, id).await?.ok_or_else(|| coded("NOT_FOUND", "no such distribution"))?;
        issuer_or_operator(ctx, found.issuer)?;
        let after = after.map(|id| parse_id(&id, "holder")).transpose()?.unwrap_or(0);
        let catalog = Catalog::load(ctx).await?;
        let list = match ask_tokenization(ctx, api::Query::Entitlements { distribution: id, after, limit: list_limit(limit) }).await? {
            api::Answer::Entitlements(list) => list,
            other => return Err(unexpected(other)),
        };
        let users = &services(ctx).users;
        let mut out = Vec::with_capacity(list.len());
        for entitlement in &list {
            let email = users.by_id(entitlement.holder).map_err(super::user_error)?.map(|u| u.email);
            out.push(api_entitlement(&catalog, &found, entitlement, email));
        }
        Ok(out)
    }

    /// The caller's entitlements, of the newest distributions first.
    async fn my_entitlements(&self, ctx: &Context<'_>, limit: Option<i32>) -> Result<Vec<Entitlement>, Error> {
        let holder = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let list = match ask_tokenization(ctx, api::Query::HolderEntitlements { holder, limit: list_limit(limit) }).await? {
            api::Answer::Entitlements(list) => list,
            other => return Err(unexpected(other)),
        };
        let mut out = Vec::with_capacity(list.len());
        for entitlement in &list {
            let of = distribution(ctx, entitlement.distribution).await?.ok_or_else(|| unexpected("an entitlement to no distribution"))?;
            out.push(api_entitlement(&catalog, &of, entitlement, None));
        }
        Ok(out)
    }
}

#[derive(Default)]
pub struct DistributionsMutation;

#[Object]
impl DistributionsMutation {
    /// A token's issuer declares a distribution of `pool` in
    /// `paymentAsset`, paid in from its available balance now: the holders
    /// at `recordAt` (now or later; the issuer's own tokens not counted)
    /// share it pro rata, each share rounded down, the remainder back to
    /// the issuer at the record; each may claim until `claimUntil`, less
    /// the tax at their rate (their investor claims', or
    /// `defaultWithholdingRate` when they have none valid at the record).
    /// The same `idempotencyKey` again answers the same distribution.
    #[allow(clippy::too_many_arguments)]
    async fn distribute(
        &self,
        ctx: &Context<'_>,
        token: String,
        kind: DistributionKind,
        payment_asset: String,
        pool: Dec,
        record_at: DateTime,
        claim_until: DateTime,
        default_withholding_rate: Dec,
        idempotency_key: String,
    ) -> Result<Distribution, Error> {
        let issuer = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let token = catalog.asset_by_symbol(&token)?.clone();
        let payment = catalog.asset_by_symbol(&payment_asset)?.clone();
        let spec = DistributionSpec {
            token: token.id,
            kind: match kind {
                DistributionKind::Dividend => api::DistributionKind::Dividend,
                DistributionKind::Coupon => api::DistributionKind::Coupon,
                DistributionKind::Other => api::DistributionKind::Other,
            },
            payment_asset: payment.id,
            pool: amount_units(pool, payment.scale, "pool")?,
            record_at_ms: time(&record_at, "recordAt")?,
            claim_until_ms: time(&claim_until, "claimUntil")?,
            default_withholding_bps: withholding_bps(default_withholding_rate, "defaultWithholdingRate")?,
        };
        let id = match run_tokenization(ctx, Command::Distribute { issuer, spec: Box::new(spec), key: idempotency_key }).await? {
            api::Outcome::Distributed(id) => id,
            other => return Err(unexpected(other)),
        };
        let found = distribution(ctx, id).await?.ok_or_else(|| unexpected("a distribution made and not found"))?;
        Ok(api_distribution(&catalog, &found))
    }

    /// Pays the caller their entitlement, less the tax withheld, between
    /// the record and the end of the claims (NOT_CLAIMABLE otherwise, or
    /// when claimed already).
    async fn claim_distribution(&self, ctx: &Context<'_>, distribution_id: ID) -> Result<Entitlement, Error> {
        let holder = caller_id(ctx)?;
        let id = parse_id(&distribution_id, "distribution")?;
        match run_tokenization(ctx, Command::ClaimDistribution { holder, distribution: id }).await? {
            api::Outcome::DistributionClaimed { .. } => {}
            other => return Err(unexpected(other)),
        }
        let catalog = Catalog::load(ctx).await?;
        let found = distribution(ctx, id).await?.ok_or_else(|| unexpected("a claimed distribution not found"))?;
        let mine = match ask_tokenization(ctx, api::Query::Entitlements { distribution: id, after: holder.saturating_sub(1), limit: 1 }).await? {
            api::Answer::Entitlements(list) => list.into_iter().find(|e| e.holder == holder),
            other => return Err(unexpected(other)),
        };
        let mine = mine.ok_or_else(|| unexpected("a claimed entitlement not found"))?;
        Ok(api_entitlement(&catalog, &found, &mine, None))
    }

    /// After the claims end, the issuer takes back what was not claimed
    /// (CLAIM_PERIOD_OPEN before).
    async fn reclaim_distribution(&self, ctx: &Context<'_>, distribution_id: ID) -> Result<Distribution, Error> {
        let issuer = caller_id(ctx)?;
        let id = parse_id(&distribution_id, "distribution")?;
        match run_tokenization(ctx, Command::ReclaimDistribution { issuer, distribution: id }).await? {
            api::Outcome::DistributionReclaimed { .. } => {}
            other => return Err(unexpected(other)),
        }
        let catalog = Catalog::load(ctx).await?;
        let found = distribution(ctx, id).await?.ok_or_else(|| unexpected("a reclaimed distribution not found"))?;
        Ok(api_distribution(&catalog, &found))
    }
}

/// A withholding rate as a fraction (0 to 1, at most 4 decimals) in basis points.
pub(super) fn withholding_bps(rate: Dec, field: &str) -> Result<u32, Error> {
    let bps = to_units(rate.0, 4, field).map_err(|(code, message)| coded(code, message))?;
    u32::try_from(bps)
        .ok()
        .filter(|bps| *bps <= WITHHOLDING_BPS_MAX)
        .ok_or_else(|| coded("BAD_USER_INPUT", format!("{field} is a fraction from 0 to 1, such as 0.15 for 15%")))
}

pub(super) fn withholding_rate(bps: u32) -> Dec {
    Dec(Decimal::new(bps.into(), 4).normalize())
}

async fn distribution(ctx: &Context<'_>, id: u64) -> Result<Option<api::Distribution>, Error> {
    match ask_tokenization(ctx, api::Query::Distribution(id)).await? {
        api::Answer::Distribution(found) => Ok(found.map(|d| *d)),
        other => Err(unexpected(other)),
    }
}

fn api_distribution(catalog: &Catalog, d: &api::Distribution) -> Distribution {
    let spec = &d.spec;
    let money = |units: i128| catalog.amount(spec.payment_asset, units);
    Distribution {
        id: ID(d.id.to_string()),
        token: catalog.symbol(spec.token),
        kind: match spec.kind {
            api::DistributionKind::Dividend => DistributionKind::Dividend,
            api::DistributionKind::Coupon => DistributionKind::Coupon,
            api::DistributionKind::Other => DistributionKind::Other,
        },
        issuer: ID(d.issuer.to_string()),
        payment_asset: catalog.symbol(spec.payment_asset),
        pool: money(spec.pool),
        record_at: at(spec.record_at_ms),
        claim_until: at(spec.claim_until_ms),
        default_withholding_rate: withholding_rate(spec.default_withholding_bps),
        status: match d.status {
            api::DistributionStatus::Declared => DistributionStatus::Declared,
            api::DistributionStatus::Recorded => DistributionStatus::Recorded,
            api::DistributionStatus::Closed => DistributionStatus::Closed,
        },
        recorded_at: d.recorded_ms.map(at),
        holders: d.holders.min(i32::MAX as u32) as i32,
        units: catalog.amount(spec.token, d.units),
        entitled: money(d.entitled),
        remainder: money(d.remainder),
        claimed: money(d.claimed),
        withheld: money(d.withheld),
        reclaimed: money(d.reclaimed),
        created_at: at(d.created_ms),
        closed_at: d.closed_ms.map(at),
    }
}

fn api_entitlement(catalog: &Catalog, d: &api::Distribution, e: &api::Entitlement, email: Option<String>) -> Entitlement {
    let money = |units: i128| catalog.amount(d.spec.payment_asset, units);
    Entitlement {
        distribution_id: ID(e.distribution.to_string()),
        token: catalog.symbol(d.spec.token),
        payment_asset: catalog.symbol(d.spec.payment_asset),
        holder: ID(e.holder.to_string()),
        email,
        units: catalog.amount(d.spec.token, e.units),
        gross: money(e.gross),
        withholding_rate: withholding_rate(e.withholding_bps),
        withheld: money(e.withheld),
        net: money(e.net),
        claim_until: at(d.spec.claim_until_ms),
        claimed_at: e.claimed_ms.map(at),
        reclaimed: e.reclaimed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_withholding_rate_is_a_fraction_to_four_places() {
        let bps = |text: &str| withholding_bps(Dec(text.parse().unwrap()), "rate").ok();
        assert_eq!((bps("0"), bps("0.15"), bps("0.128"), bps("1")), (Some(0), Some(1_500), Some(1_280), Some(10_000)));
        assert_eq!((bps("1.0001"), bps("-0.1"), bps("0.00001")), (None, None, None));
        assert_eq!(withholding_rate(1_280).0.to_string(), "0.128");
    }

    proptest! {
        #[test]
        fn a_rate_in_basis_points_reads_back(bps in 0u32..=10_000) {
            prop_assert_eq!(withholding_bps(withholding_rate(bps), "rate").ok(), Some(bps));
        }
    }
}
