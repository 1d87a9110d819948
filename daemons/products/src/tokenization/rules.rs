//! `canTransfer`: whether a token's rules let a movement of it go ahead.
//! Pure: the investor's claims, tier and holdings and the token's holder
//! count come in as arguments, the ledger's stamped time too.
//!
//! As ERC-3643's modules: every rule must agree; the country, category,
//! tier, balance and holder rules look at the receiver (who must hold
//! valid claims), the lock-up at the sender, the allowlist at both. The
//! token's issuer (its treasury) is exempt: it issues the token and takes
//! it back, and is not one of its holders.

use ids::{Amount, TimestampMs, UserId};
use ledger_api::tokenization::{Claims, ComplianceRefusal, Countries, TransferRules};

/// Who would receive tokens, and what they hold or may soon hold.
#[derive(Clone, Copy, Debug)]
pub struct Receiver<'a> {
    pub user: UserId,
    pub claims: Option<&'a Claims>,
    pub tier: u8,
    /// What they hold now in every account, plus what their open buy
    /// orders and subscriptions may still bring them.
    pub holding: Amount,
    /// Whether they count among the holders already: they hold some, or an
    /// open order or subscription of theirs was let in as a new holder.
    pub counted: bool,
}

/// The receiver's side of the rules for `amount` more, with `holders`
/// counted now (holders and the prospective ones, the issuer not included).
pub fn check_receiver(
    rules: &TransferRules,
    issuer: UserId,
    receiver: &Receiver,
    amount: Amount,
    holders: u64,
    at_ms: TimestampMs,
) -> Result<(), ComplianceRefusal> {
    if receiver.user == issuer {
        return Ok(());
    }
    check_identity(rules, receiver.user, receiver.claims, receiver.tier, at_ms)?;
    if let Some(balance_max) = rules.balance_max {
        let would_hold = receiver.holding.saturating_add(amount);
        if would_hold > balance_max {
            return Err(ComplianceRefusal::BalanceMax { user: receiver.user, balance_max, would_hold });
        }
    }
    if let Some(holders_max) = rules.holders_max {
        if !receiver.counted && holders >= u64::from(holders_max) {
            return Err(ComplianceRefusal::HoldersMax { holders_max });
        }
    }
    Ok(())
}

/// Whether the investor may hold the token at all: valid claims, tier,
/// category, country, the allowlist. The close of an offering asks it
/// again of every subscriber (claims expire).
pub fn check_identity(rules: &TransferRules, user: UserId, claims: Option<&Claims>, tier: u8, at_ms: TimestampMs) -> Result<(), ComplianceRefusal> {
    let claims = claims.filter(|claims| at_ms < claims.expires_at_ms).ok_or(ComplianceRefusal::NotVerified(user))?;
    if tier < rules.tier_min {
        return Err(ComplianceRefusal::TierTooLow { user, tier, tier_min: rules.tier_min });
    }
    if rules.qualified_only && !claims.category.qualified() {
        return Err(ComplianceRefusal::NotQualified(user));
    }
    let country_allowed = match &rules.countries {
        Countries::Any => true,
        Countries::Allow(countries) => countries.binary_search(&claims.country).is_ok(),
        Countries::Deny(countries) => countries.binary_search(&claims.country).is_err(),
    };
    if !country_allowed {
        return Err(ComplianceRefusal::CountryNotAllowed { user, country: claims.country });
    }
    check_allowlist(rules, user)
}

/// The sender's side: the lock-up and the allowlist.
pub fn check_sender(rules: &TransferRules, issuer: UserId, sender: UserId, at_ms: TimestampMs) -> Result<(), ComplianceRefusal> {
    if sender == issuer {
        return Ok(());
    }
    if let Some(until_ms) = rules.locked_until_ms.filter(|until_ms| at_ms < *until_ms) {
        return Err(ComplianceRefusal::LockedUp { until_ms });
    }
    check_allowlist(rules, sender)
}

fn check_allowlist(rules: &TransferRules, user: UserId) -> Result<(), ComplianceRefusal> {
    match &rules.allowlist {
        Some(allowlist) if allowlist.binary_search(&user).is_err() => Err(ComplianceRefusal::NotAllowlisted(user)),
        _ => Ok(()),
    }
}

/// Why a token's rules cannot be, if they cannot: lists ascending without
/// repeats and within their bounds, countries ISO 3166-1 numeric codes.
pub fn validate(rules: &TransferRules) -> Result<(), String> {
    use ledger_api::tokenization::{ALLOWLIST_MAX, COUNTRIES_MAX};
    let strictly_ascending = |list: &[u64]| list.windows(2).all(|pair| pair[0] < pair[1]);
    if let Countries::Allow(countries) | Countries::Deny(countries) = &rules.countries {
        let codes: Vec<u64> = countries.iter().map(|c| u64::from(*c)).collect();
        if countries.len() > COUNTRIES_MAX || !strictly_ascending(&codes) || countries.iter().any(|c| !(1..=999).contains(c)) {
            return Err(format!("a token's countries are at most {COUNTRIES_MAX} ISO 3166-1 numeric codes (1 to 999), ascending, each once"));
        }
    }
    if let Some(allowlist) = &rules.allowlist {
        if allowlist.len() > ALLOWLIST_MAX || !strictly_ascending(allowlist) {
            return Err(format!("a token's allowlist is at most {ALLOWLIST_MAX} users, ascending, each once"));
        }
    }
    if rules.balance_max.is_some_and(|max| max <= 0) || rules.holders_max == Some(0) {
        return Err("a token's largest balance and most holders are positive".into());
    }
    if rules.tier_min > ledger_api::operators::TIER_MAX {
        return Err(format!("a tier is 0 to {}", ledger_api::operators::TIER_MAX));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ledger_api::tokenization::InvestorCategory;

    use super::*;

    const ISSUER: UserId = 1;
    const ALICE: UserId = 10;
    const DAVE: UserId = 13;
    const NOW: TimestampMs = 1_800_000_000_000;

    fn claims(country: u16, category: InvestorCategory) -> Claims {
        Claims { country, category, expires_at_ms: NOW + 1, withholding_bps: 0 }
    }

    fn receiver(user: UserId, claims: Option<&Claims>, holding: Amount, counted: bool) -> Receiver<'_> {
        Receiver { user, claims, tier: 1, holding, counted }
    }

    #[test]
    fn every_rule_refuses_on_its_own_with_its_reason() {
        let us = claims(840, InvestorCategory::Retail);
        let fr = claims(250, InvestorCategory::Professional);
        let open = TransferRules::default();
        assert_eq!(check_receiver(&open, ISSUER, &receiver(DAVE, Some(&us), 0, false), 10, 0, NOW), Ok(()));
        // Claims missing or expired (at the instant of expiry they no longer count).
        assert_eq!(check_receiver(&open, ISSUER, &receiver(DAVE, None, 0, false), 10, 0, NOW), Err(ComplianceRefusal::NotVerified(DAVE)));
        assert_eq!(check_receiver(&open, ISSUER, &receiver(DAVE, Some(&us), 0, false), 10, 0, NOW + 1), Err(ComplianceRefusal::NotVerified(DAVE)));
        let deny_us = TransferRules { countries: Countries::Deny(vec![840]), ..TransferRules::default() };
        assert_eq!(
            check_receiver(&deny_us, ISSUER, &receiver(DAVE, Some(&us), 0, false), 10, 0, NOW),
            Err(ComplianceRefusal::CountryNotAllowed { user: DAVE, country: 840 })
        );
        assert_eq!(check_receiver(&deny_us, ISSUER, &receiver(ALICE, Some(&fr), 0, false), 10, 0, NOW), Ok(()));
        let allow_eu = TransferRules { countries: Countries::Allow(vec![250, 276]), ..TransferRules::default() };
        assert!(check_receiver(&allow_eu, ISSUER, &receiver(DAVE, Some(&us), 0, false), 10, 0, NOW).is_err());
        assert_eq!(check_receiver(&allow_eu, ISSUER, &receiver(ALICE, Some(&fr), 0, false), 10, 0, NOW), Ok(()));
        let qualified = TransferRules { qualified_only: true, tier_min: 2, ..TransferRules::default() };
        assert_eq!(
            check_receiver(&qualified, ISSUER, &receiver(ALICE, Some(&fr), 0, false), 10, 0, NOW),
            Err(ComplianceRefusal::TierTooLow { user: ALICE, tier: 1, tier_min: 2 })
        );
        let tier_two = Receiver { tier: 2, ..receiver(ALICE, Some(&fr), 0, false) };
        assert_eq!(check_receiver(&qualified, ISSUER, &tier_two, 10, 0, NOW), Ok(()));
        let retail = Receiver { tier: 2, ..receiver(DAVE, Some(&us), 0, false) };
        assert_eq!(check_receiver(&qualified, ISSUER, &retail, 10, 0, NOW), Err(ComplianceRefusal::NotQualified(DAVE)));
        // Max balance 500: holding 285 may take 215 more, not 216.
        let max_balance = TransferRules { balance_max: Some(500), ..TransferRules::default() };
        assert_eq!(check_receiver(&max_balance, ISSUER, &receiver(ALICE, Some(&fr), 285, true), 215, 0, NOW), Ok(()));
        assert_eq!(
            check_receiver(&max_balance, ISSUER, &receiver(ALICE, Some(&fr), 285, true), 216, 0, NOW),
            Err(ComplianceRefusal::BalanceMax { user: ALICE, balance_max: 500, would_hold: 501 })
        );
        // Max holders 3 with 3 counted: a new one is refused, one already counted is not.
        let max_holders = TransferRules { holders_max: Some(3), ..TransferRules::default() };
        assert_eq!(
            check_receiver(&max_holders, ISSUER, &receiver(DAVE, Some(&us), 0, false), 1, 3, NOW),
            Err(ComplianceRefusal::HoldersMax { holders_max: 3 })
        );
        assert_eq!(check_receiver(&max_holders, ISSUER, &receiver(ALICE, Some(&fr), 5, true), 1, 3, NOW), Ok(()));
        assert_eq!(check_receiver(&max_holders, ISSUER, &receiver(DAVE, Some(&us), 0, false), 1, 2, NOW), Ok(()));
        let allowlist = TransferRules { allowlist: Some(vec![ALICE]), ..TransferRules::default() };
        assert_eq!(check_receiver(&allowlist, ISSUER, &receiver(DAVE, Some(&us), 0, false), 1, 0, NOW), Err(ComplianceRefusal::NotAllowlisted(DAVE)));
        assert_eq!(check_sender(&allowlist, ISSUER, DAVE, NOW), Err(ComplianceRefusal::NotAllowlisted(DAVE)));
        assert_eq!(check_sender(&allowlist, ISSUER, ALICE, NOW), Ok(()));
        let locked = TransferRules { locked_until_ms: Some(NOW + 1), ..TransferRules::default() };
        assert_eq!(check_sender(&locked, ISSUER, ALICE, NOW), Err(ComplianceRefusal::LockedUp { until_ms: NOW + 1 }));
        assert_eq!(check_sender(&locked, ISSUER, ALICE, NOW + 1), Ok(()));
        // The issuer is exempt on both sides.
        let everything = TransferRules { allowlist: Some(vec![]), locked_until_ms: Some(NOW + 1), holders_max: Some(1), ..TransferRules::default() };
        assert_eq!(check_sender(&everything, ISSUER, ISSUER, NOW), Ok(()));
        assert_eq!(check_receiver(&everything, ISSUER, &receiver(ISSUER, None, 0, false), 1, 9, NOW), Ok(()));
    }

    #[test]
    fn rules_are_validated() {
        assert!(validate(&TransferRules::default()).is_ok());
        assert!(validate(&TransferRules { countries: Countries::Allow(vec![276, 250]), ..TransferRules::default() }).is_err());
        assert!(validate(&TransferRules { countries: Countries::Deny(vec![250, 250]), ..TransferRules::default() }).is_err());
        assert!(validate(&TransferRules { countries: Countries::Deny(vec![0]), ..TransferRules::default() }).is_err());
        assert!(validate(&TransferRules { allowlist: Some(vec![3, 2]), ..TransferRules::default() }).is_err());
        assert!(validate(&TransferRules { balance_max: Some(0), ..TransferRules::default() }).is_err());
        assert!(validate(&TransferRules { holders_max: Some(0), ..TransferRules::default() }).is_err());
        assert!(validate(&TransferRules { tier_min: 10, ..TransferRules::default() }).is_err());
    }
}
