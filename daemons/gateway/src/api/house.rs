//! The house: the platform's own accounts per asset, for operators. Revenue
//! collects fees; inventory is what operators bring in for the house to
//! trade with.

use async_graphql::{Context, Error, Object, SimpleObject};
use ledger_api::house::{self as api, Command};
use ledger_api::{Answer, Outcome, Query};

use super::{ask, operator, unexpected, Catalog, Dec};

#[derive(SimpleObject)]
pub struct HouseBalance {
    pub asset: String,
    pub inventory: Dec,
    pub revenue: Dec,
    /// Tax withheld from distributions, owed to the tax authorities.
    pub withheld: Dec,
}

#[derive(Default)]
pub struct HouseQuery;

#[Object]
impl HouseQuery {
    /// Every asset's house accounts (operators only).
    async fn house_balances(&self, ctx: &Context<'_>) -> Result<Vec<HouseBalance>, Error> {
        operator(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let Answer::House(api::Answer::Balances(balances)) = ask(ctx, Query::House(api::Query::Balances)).await? else {
            return Err(unexpected("house balances"));
        };
        Ok(balances
            .iter()
            .map(|b| HouseBalance {
                asset: catalog.symbol(b.asset),
                inventory: catalog.amount(b.asset, b.inventory),
                revenue: catalog.amount(b.asset, b.revenue),
                withheld: catalog.amount(b.asset, b.withheld),
            })
            .collect())
    }
}

#[derive(Default)]
pub struct HouseMutation;

#[Object]
impl HouseMutation {
    /// Brings `amount` from custody into the house's inventory; idempotent by `reference` (operators only).
    async fn fund_house(&self, ctx: &Context<'_>, asset: String, amount: Dec, reference: String) -> Result<HouseBalance, Error> {
        move_inventory(ctx, asset, amount, reference, true).await
    }

    /// Takes `amount` of the house's inventory back out to custody; idempotent by `reference` (operators only).
    async fn defund_house(&self, ctx: &Context<'_>, asset: String, amount: Dec, reference: String) -> Result<HouseBalance, Error> {
        move_inventory(ctx, asset, amount, reference, false).await
    }
}

async fn move_inventory(ctx: &Context<'_>, asset: String, amount: Dec, reference: String, into: bool) -> Result<HouseBalance, Error> {
    operator(ctx)?;
    let catalog = Catalog::load(ctx).await?;
    let (spec, units) = catalog.units(&asset, amount)?;
    let (asset_id, symbol) = (spec.id, spec.symbol.clone());
    let command =
        if into { Command::Fund { asset: asset_id, amount: units, reference } } else { Command::Defund { asset: asset_id, amount: units, reference } };
    match super::operators::operate(ctx, ledger_api::Command::House(command)).await? {
        Outcome::House(_) => {}
        other => return Err(unexpected(other)),
    }
    let Answer::House(api::Answer::Balances(balances)) = ask(ctx, Query::House(api::Query::Balances)).await? else { return Err(unexpected("house balances")) };
    let balance = balances.iter().find(|b| b.asset == asset_id).copied().unwrap_or_default();
    Ok(HouseBalance {
        asset: symbol,
        inventory: catalog.amount(asset_id, balance.inventory),
        revenue: catalog.amount(asset_id, balance.revenue),
        withheld: catalog.amount(asset_id, balance.withheld),
    })
}
