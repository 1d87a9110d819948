//! Accounts: whose, in which asset, and what for.
//!
//! The kernel knows no product. A product declares the purposes of the
//! accounts it uses ([`PurposeSpec`]: a user's available money, money held
//! for an order, the custody of what came from outside, revenue, escrow,
//! margin, ...), each with the two rules the kernel enforces for it: whether
//! it may go below zero, and whether it holds only money under [`crate::Hold`]s.

use std::hash::{Hash, Hasher};

use ids::{AssetId, UserId};
use serde::{Deserialize, Serialize};

/// Who an account belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Owner {
    User(UserId),
    /// The operator of the platform: custody of what came from outside,
    /// revenue, inventory.
    House,
    /// Something a product keeps accounts for (a market's insurance fund, an
    /// offering's escrow, a campaign): its id in the product's numbering.
    /// Its accounts' purposes tell whose numbering that is.
    Entity(u64),
}

/// What an account is for: a code a product declares with a [`PurposeSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Purpose(pub u8);

/// The most purposes a ledger can declare: their codes are bits of a mask.
pub const PURPOSES_MAX: usize = 64;

/// A purpose and the rules the kernel enforces for its accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurposeSpec {
    pub purpose: Purpose,
    /// For messages and reports: `"available"`, `"custody"`.
    pub name: &'static str,
    /// Custody goes below zero by what came in from outside; a user's
    /// money never does.
    pub may_go_negative: bool,
    /// The account holds exactly the money of the open holds into it, and
    /// changes only through [`crate::Kernel::hold`], `capture` and `release`.
    pub holds_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountId {
    pub owner: Owner,
    pub asset: AssetId,
    pub purpose: Purpose,
}

/// An account id in two words: the owner's id, then the asset, the
/// purpose and the owner's kind. The kernel keys its balances by it: the
/// derived layout (the owner's tag and id, the asset, the purpose) made an
/// entry of the balances 64 bytes instead of 40, and ten thousand accounts'
/// table then outgrew a core's 1 MiB L2 in `scripts/bench ledger`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PackedAccount {
    id: u64,
    asset_purpose_owner: u64,
}

const OWNER_USER: u64 = 0;
const OWNER_HOUSE: u64 = 1;
const OWNER_ENTITY: u64 = 2;

impl From<AccountId> for PackedAccount {
    #[inline]
    fn from(account: AccountId) -> PackedAccount {
        let (owner, id) = match account.owner {
            Owner::User(user) => (OWNER_USER, user),
            Owner::House => (OWNER_HOUSE, 0),
            Owner::Entity(entity) => (OWNER_ENTITY, entity),
        };
        PackedAccount { id, asset_purpose_owner: (u64::from(account.asset) << 16) | (u64::from(account.purpose.0) << 8) | owner }
    }
}

impl From<PackedAccount> for AccountId {
    #[inline]
    fn from(packed: PackedAccount) -> AccountId {
        let owner = match packed.asset_purpose_owner & 0xff {
            OWNER_USER => Owner::User(packed.id),
            OWNER_HOUSE => Owner::House,
            // OWNER_ENTITY: a PackedAccount is only ever made from an AccountId.
            _ => Owner::Entity(packed.id),
        };
        AccountId { owner, asset: (packed.asset_purpose_owner >> 16) as AssetId, purpose: Purpose((packed.asset_purpose_owner >> 8) as u8) }
    }
}

/// As its packed form: two FxHash rounds instead of four.
impl Hash for AccountId {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        PackedAccount::from(*self).hash(state);
    }
}

impl AccountId {
    pub const fn user(user: UserId, asset: AssetId, purpose: Purpose) -> AccountId {
        AccountId { owner: Owner::User(user), asset, purpose }
    }

    pub const fn house(asset: AssetId, purpose: Purpose) -> AccountId {
        AccountId { owner: Owner::House, asset, purpose }
    }

    /// The user who owns it, if a user does.
    pub fn user_id(&self) -> Option<UserId> {
        match self.owner {
            Owner::User(user) => Some(user),
            _ => None,
        }
    }
}

/// The purposes a ledger declared, as two bit masks: the checks on every
/// transfer are one shift and one AND each.
#[derive(Clone, Debug)]
pub struct Purposes {
    specs: Vec<PurposeSpec>,
    declared: u64,
    may_go_negative: u64,
    holds_only: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PurposeError {
    #[error("purpose code {0} is not below {PURPOSES_MAX}")]
    CodeTooLarge(u8),
    #[error("purpose code {0} is declared twice ({1} and {2})")]
    Twice(u8, &'static str, &'static str),
    #[error("purpose {0} may not both go negative and hold only holds")]
    Contradictory(&'static str),
}

impl Purposes {
    pub fn new(specs: &[PurposeSpec]) -> Result<Purposes, PurposeError> {
        let mut purposes = Purposes { specs: Vec::new(), declared: 0, may_go_negative: 0, holds_only: 0 };
        for spec in specs {
            let code = spec.purpose.0;
            if code as usize >= PURPOSES_MAX {
                return Err(PurposeError::CodeTooLarge(code));
            }
            if let Some(other) = purposes.spec(spec.purpose) {
                return Err(PurposeError::Twice(code, other.name, spec.name));
            }
            if spec.may_go_negative && spec.holds_only {
                return Err(PurposeError::Contradictory(spec.name));
            }
            let bit = 1u64 << code;
            purposes.declared |= bit;
            purposes.may_go_negative |= bit * spec.may_go_negative as u64;
            purposes.holds_only |= bit * spec.holds_only as u64;
            purposes.specs.push(*spec);
        }
        Ok(purposes)
    }

    pub fn spec(&self, purpose: Purpose) -> Option<&PurposeSpec> {
        self.specs.iter().find(|spec| spec.purpose == purpose)
    }

    pub fn all(&self) -> &[PurposeSpec] {
        &self.specs
    }

    #[inline]
    fn bit(purpose: Purpose) -> u64 {
        1u64.checked_shl(purpose.0 as u32).unwrap_or(0)
    }

    #[inline]
    pub fn is_declared(&self, purpose: Purpose) -> bool {
        self.declared & Self::bit(purpose) != 0
    }

    #[inline]
    pub fn may_go_negative(&self, purpose: Purpose) -> bool {
        self.may_go_negative & Self::bit(purpose) != 0
    }

    #[inline]
    pub fn holds_only(&self, purpose: Purpose) -> bool {
        self.holds_only & Self::bit(purpose) != 0
    }

    pub fn name(&self, purpose: Purpose) -> &'static str {
        self.spec(purpose).map_or("undeclared", |spec| spec.name)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn account() -> impl Strategy<Value = AccountId> {
        let owner = prop_oneof![any::<u64>().prop_map(Owner::User), Just(Owner::House), any::<u64>().prop_map(Owner::Entity)];
        (owner, any::<AssetId>(), any::<u8>()).prop_map(|(owner, asset, purpose)| AccountId { owner, asset, purpose: Purpose(purpose) })
    }

    proptest! {
        /// The balances are keyed by the packed form: two accounts may never
        /// share one, and every account comes back whole.
        #[test]
        fn packing_an_account_loses_nothing(a in account(), b in account()) {
            prop_assert_eq!(AccountId::from(PackedAccount::from(a)), a);
            prop_assert_eq!(PackedAccount::from(a) == PackedAccount::from(b), a == b);
        }
    }

    #[test]
    fn packing_tells_owners_apart_with_the_same_id() {
        let [user, entity] = [Owner::User(7), Owner::Entity(7)].map(|owner| PackedAccount::from(AccountId { owner, asset: 1, purpose: Purpose(1) }));
        assert_ne!(user, entity);
        let house = PackedAccount::from(AccountId::house(1, Purpose(1)));
        assert_ne!(house, PackedAccount::from(AccountId::user(0, 1, Purpose(1))));
    }
}
