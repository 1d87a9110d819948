//! The house: the platform's own accounts per asset. Revenue collects the
//! products' fees; inventory is what operators fund from outside for the
//! house to trade with (convert's quotes, later) and can take back out.

use serde::{Deserialize, Serialize};

use crate::operators::ActionKind;
use crate::{Amount, AssetId, TransferId};

/// The house's: fees collected.
pub const REVENUE: u8 = 5;
/// The house's: money operators put in for the house to trade with.
pub const INVENTORY: u8 = 6;

pub(crate) fn purpose_name(purpose: u8) -> Option<&'static str> {
    Some(match purpose {
        REVENUE => "revenue",
        INVENTORY => "inventory",
        _ => return None,
    })
}

/// Custody to inventory: money brought in for the house.
pub const FUNDING: u16 = 301;
/// Inventory back to custody.
pub const DEFUNDING: u16 = 302;

pub(crate) fn code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        FUNDING => "HOUSE_FUNDING",
        DEFUNDING => "HOUSE_DEFUNDING",
        _ => return None,
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// Custody to the house's inventory; idempotent by the asset's `reference`.
    Fund { asset: AssetId, amount: Amount, reference: String },
    /// The house's inventory back to custody; idempotent by the asset's `reference`.
    Defund { asset: AssetId, amount: Amount, reference: String },
}

/// Every house command is an operator's.
pub(crate) fn operator_action(_: &Command) -> Option<ActionKind> {
    Some(ActionKind::HouseInventory)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Funded(TransferId),
    Defunded(TransferId),
}

/// One asset's house accounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseBalance {
    pub asset: AssetId,
    pub inventory: Amount,
    pub revenue: Amount,
    /// Tax withheld from distributions, owed to the tax authorities.
    pub withheld: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// Every asset's house accounts.
    Balances,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Balances(Vec<HouseBalance>),
}
