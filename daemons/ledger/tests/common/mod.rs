//! What the ledger's suites share: a market with funded users, and
//! random commands of every kind that move money.

#![allow(dead_code)]

use ledger_api::spot::{Market as LedgerMarket, OrderRequest};
use ledger_api::{spot, wallet, AssetId, AssetSpec, Command as LedgerCommand};
use matching_core::{MarketSpec, OrderKind, SelfTradePrevention, Side, TimeInForce};
use rand::{rngs::SmallRng, Rng};

pub const BTC: AssetId = 1;
pub const USD: AssetId = 2;
pub const USERS: u64 = 50;

/// BTC-USD, market 1: lots of 0.001 BTC, ticks of 10 minor units a lot.
pub fn market() -> LedgerMarket {
    LedgerMarket {
        base: BTC,
        quote: USD,
        base_units_per_lot: 100_000,
        trading: true,
        spec: MarketSpec {
            id: 1,
            quote_units_per_tick_lot: 10,
            tick_lot_scale: 0,
            maker_fee_ppm: 1_000,
            taker_fee_ppm: 2_000,
            price_ticks_max: 1_000_000,
            quantity_lots_max: 1_000,
            price_band_ppm: 0,
        },
    }
}

pub fn setup() -> Vec<LedgerCommand> {
    let mut commands = vec![
        LedgerCommand::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }),
        LedgerCommand::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 6 }),
        LedgerCommand::Spot(spot::Command::CreateMarket(market())),
    ];
    for user in 1..=USERS {
        commands.push(LedgerCommand::Wallet(wallet::Command::Deposit { user, asset: USD, amount: 10_000_000, reference: format!("usd-{user}") }));
        commands.push(LedgerCommand::Wallet(wallet::Command::Deposit { user, asset: BTC, amount: 1_000_000, reference: format!("btc-{user}") }));
    }
    commands
}

pub fn random_command(rng: &mut SmallRng, i: u64) -> LedgerCommand {
    let user = rng.random_range(1..=USERS);
    match rng.random_range(0..5) {
        0 => LedgerCommand::Wallet(wallet::Command::Transfer {
            from: user,
            to: rng.random_range(1..=USERS),
            asset: USD,
            amount: rng.random_range(1..5_000),
            key: format!("t-{i}"),
        }),
        1 => LedgerCommand::Wallet(wallet::Command::RequestWithdrawal {
            user,
            asset: BTC,
            amount: rng.random_range(1..1_000),
            destination: "bc1q".into(),
            key: format!("w-{i}"),
        }),
        2 => LedgerCommand::Wallet(wallet::Command::DecideWithdrawal { id: rng.random_range(1..i.max(2)), approve: rng.random_bool(0.5) }),
        3 => LedgerCommand::Spot(spot::Command::PlaceOrder {
            user,
            request: OrderRequest {
                market: 1,
                side: Side::Buy,
                kind: OrderKind::Limit,
                time_in_force: TimeInForce::Gtc,
                post_only: false,
                price: Some(rng.random_range(900..1_100)),
                quantity: rng.random_range(1..10),
                self_trade: SelfTradePrevention::CancelTaker,
                expires_at_ms: None,
                trigger: None,
                reduce_only: false,
            },
            client_order_id: None,
        }),
        _ => LedgerCommand::Wallet(wallet::Command::Deposit {
            user,
            asset: USD,
            amount: rng.random_range(1..1_000),
            reference: format!("d-{}", rng.random_range(0..i.max(1))),
        }),
    }
}
