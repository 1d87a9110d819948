//! What the money kernel serves every product: assets, a user's ledger
//! entries (every transfer that moved their money, whatever product made
//! it), and the operators' reserves.

use async_graphql::{Context, Error, Object, SimpleObject, ID};
use ledger_api::{convert, house, transfer_kind, wallet, Answer, AssetSpec, Command, OwnerKind, Query};

use super::{ask, at, caller_id, coded, list_limit, operator, unexpected, Catalog, DateTime, Dec, LIST_LIMIT_DEFAULT};

#[derive(SimpleObject, Clone)]
pub struct Asset {
    pub id: ID,
    pub symbol: String,
    pub scale: i32,
}

impl From<&AssetSpec> for Asset {
    fn from(asset: &AssetSpec) -> Asset {
        Asset { id: ID(asset.id.to_string()), symbol: asset.symbol.clone(), scale: asset.scale as i32 }
    }
}

#[derive(SimpleObject)]
pub struct LedgerEntry {
    pub id: ID,
    pub asset: String,
    pub amount: Dec,
    pub kind: String,
    pub reference: Option<String>,
    pub created_at: DateTime,
}

/// One asset's books, for operators: what came in net of withdrawals paid
/// out, and where it is now.
#[derive(SimpleObject)]
pub struct Reserve {
    pub asset: String,
    /// Deposits and the house's funding, minus withdrawals paid out and defunding.
    pub deposited: Dec,
    /// Every user's money, summed over all their accounts.
    pub users: Dec,
    /// The house's revenue: fees collected, and what rounding trades' notionals to minor units left.
    pub fees: Dec,
    pub pending_withdrawals: Dec,
    /// The house's inventory, free to quote.
    pub inventory: Dec,
    /// The house's inventory set aside for convert quotes not yet accepted or expired.
    pub quoted: Dec,
    /// Every account summed, by whose it is and what for.
    pub accounts: Vec<ReserveLine>,
    /// Every account of the asset sums to zero: nothing created or lost.
    pub balanced: bool,
}

#[derive(SimpleObject)]
pub struct ReserveLine {
    /// USERS, HOUSE or ENTITIES.
    pub owner: String,
    /// available, locked, custody, revenue, ...
    pub purpose: String,
    pub amount: Dec,
}

#[derive(Default)]
pub struct KernelQuery;

#[Object]
impl KernelQuery {
    async fn assets(&self, ctx: &Context<'_>) -> Result<Vec<Asset>, Error> {
        let catalog = Catalog::load(ctx).await?;
        Ok(catalog.assets().iter().map(Asset::from).collect())
    }

    async fn ledger_entries(
        &self,
        ctx: &Context<'_>,
        asset: Option<String>,
        #[graphql(default_with = "Some(LIST_LIMIT_DEFAULT)")] limit: Option<i32>,
    ) -> Result<Vec<LedgerEntry>, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let asset = asset.map(|symbol| catalog.asset_by_symbol(&symbol).map(|a| a.id)).transpose()?;
        let Answer::Transfers(transfers) = ask(ctx, Query::Transfers { user, asset, limit: list_limit(limit) }).await? else {
            return Err(unexpected("transfers"));
        };
        Ok(transfers
            .iter()
            .filter_map(|t| {
                // The signed change of the caller's total: moves between two of their accounts are zero.
                let sign = i128::from(t.credit.user() == Some(user)) - i128::from(t.debit.user() == Some(user));
                (sign != 0).then(|| LedgerEntry {
                    id: ID(t.id.to_string()),
                    asset: catalog.symbol(t.asset()),
                    amount: catalog.amount(t.asset(), sign * t.amount),
                    kind: transfer_kind(t.code).into(),
                    reference: Some(t.reference.clone()),
                    created_at: at(t.at_ms),
                })
            })
            .collect())
    }

    /// Per asset, deposits net of paid-out withdrawals against where the money is (operators only).
    async fn reserves(&self, ctx: &Context<'_>) -> Result<Vec<Reserve>, Error> {
        operator(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let Answer::Reserves(reserves) = ask(ctx, Query::Reserves).await? else { return Err(unexpected("reserves")) };
        Ok(reserves
            .iter()
            .map(|r| {
                let amount = |units| catalog.amount(r.asset, units);
                Reserve {
                    asset: catalog.symbol(r.asset),
                    deposited: amount(-r.total(OwnerKind::House, wallet::CUSTODY)),
                    users: amount(r.users()),
                    fees: amount(r.total(OwnerKind::House, house::REVENUE)),
                    pending_withdrawals: amount(r.total(OwnerKind::House, wallet::PENDING_WITHDRAWALS)),
                    inventory: amount(r.total(OwnerKind::House, house::INVENTORY)),
                    quoted: amount(r.total(OwnerKind::House, convert::QUOTED)),
                    accounts: r
                        .totals
                        .iter()
                        .map(|&(owner, purpose, total)| ReserveLine {
                            owner: match owner {
                                OwnerKind::Users => "USERS",
                                OwnerKind::House => "HOUSE",
                                OwnerKind::Entities => "ENTITIES",
                            }
                            .into(),
                            purpose: ledger_api::purpose_name(purpose).into(),
                            amount: amount(total),
                        })
                        .collect(),
                    balanced: r.balanced(),
                }
            })
            .collect())
    }
}

#[derive(Default)]
pub struct KernelMutation;

#[Object]
impl KernelMutation {
    async fn create_asset(&self, ctx: &Context<'_>, symbol: String, scale: i32) -> Result<Asset, Error> {
        operator(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let scale = u8::try_from(scale).map_err(|_| coded("BAD_USER_INPUT", "scale is 0 to 18"))?;
        if catalog.asset_by_symbol(&symbol).is_ok() {
            return Err(coded("DUPLICATE", format!("the asset {symbol} exists")));
        }
        let id = catalog.assets().iter().map(|a| a.id).max().unwrap_or(0) + 1;
        let spec = AssetSpec { id, symbol, scale };
        super::operators::operate(ctx, Command::CreateAsset(spec.clone())).await?;
        Ok((&spec).into())
    }
}
