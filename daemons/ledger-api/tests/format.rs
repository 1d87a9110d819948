//! The format's golden bytes: one encoded sample of every message and
//! record this crate defines, per product. A change to any type fails here;
//! bump `FORMAT_VERSION` with it and write the new bytes (the failure prints them).

use ledger_api::candles::{Candle, CandleInterval, DayStats};
use ledger_api::spot::{Market, OrderRecord, OrderRequest, OrderStatus, TradeRecord};
use ledger_api::wallet::{Balance, Withdrawal, WithdrawalStatus};
use ledger_api::*;
use matching_api::{Event, Fill, MarketSpec, NewOrder, OrderKind, SelfTradePrevention, Side, TimeInForce, Trigger, TriggerDirection, TriggerSource};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// postcard through a trait object, so that one list holds every type.
trait Encode {
    fn encode(&self) -> Vec<u8>;
}

impl<T: serde::Serialize> Encode for T {
    fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding into a vector cannot fail")
    }
}

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let claims =
        tokenization::Claims { country: 250, category: tokenization::InvestorCategory::Professional, expires_at_ms: 1_800_000_000_000, withholding_bps: 1_280 };
    let token_spec = tokenization::TokenSpec {
        symbol: "ACME".into(),
        scale: 0,
        lot: 1,
        supply_max: 10_000,
        document_hash: operators::Digest([7; 32]),
        document_url: "https://acme.example/offering.pdf".into(),
        rules: tokenization::TransferRules {
            countries: tokenization::Countries::Deny(vec![840]),
            holders_max: Some(2_000),
            balance_max: Some(500),
            allowlist: Some(vec![10, 11]),
            locked_until_ms: Some(1_800_000_000_000),
            tier_min: 1,
            qualified_only: true,
        },
    };
    let offering_spec = tokenization::OfferingSpec {
        token: 4,
        payment_asset: 1,
        price: 1_000,
        soft_cap: 500,
        hard_cap: 1_000,
        investor_min: 1,
        investor_max: 1_000,
        starts_at_ms: 1_700_000_000_000,
        ends_at_ms: 1_702_592_000_000,
        cancel_cutoff_ms: tokenization::CANCEL_CUTOFF_MS_DEFAULT,
        vesting: Some(tokenization::VestingSpec { start_ms: 1_702_592_000_000, period_ms: 2_592_000_000, count: 3 }),
        listing: Some(tokenization::Listing { quote_units_per_tick_lot: 1, tick_lot_scale: 0, base_units_per_lot: 1, price_band_ppm: 100_000 }),
    };
    let token = tokenization::Token { asset: 4, issuer: 1, spec: token_spec.clone(), supply: 1_000, created_ms: 1_700_000_000_000 };
    let offering = tokenization::Offering {
        id: 1,
        issuer: 1,
        spec: offering_spec.clone(),
        fee_bps: 200,
        status: tokenization::OfferingStatus::Allocated,
        subscribed: 0,
        subscriptions_open: 0,
        issued: 1_000,
        raised: 1_000_000,
        fee: 20_000,
        created_ms: 1_700_000_000_000,
        closed_ms: Some(1_702_592_000_000),
    };
    let subscription = tokenization::Subscription {
        id: 1,
        offering: 1,
        investor: 10,
        amount: 333,
        payment: 333_000,
        status: tokenization::SubscriptionStatus::Allocated,
        allocated: 286,
        paid: 286_000,
        refunded: 47_000,
        created_ms: 1_700_000_000_000,
        updated_ms: 1_702_592_000_000,
    };
    let distribution_spec = tokenization::DistributionSpec {
        token: 4,
        kind: tokenization::DistributionKind::Coupon,
        payment_asset: 1,
        pool: 100_000,
        record_at_ms: 1_702_592_000_000,
        claim_until_ms: 1_705_184_000_000,
        default_withholding_bps: 3_000,
    };
    let distribution = tokenization::Distribution {
        id: 1,
        issuer: 1,
        spec: distribution_spec.clone(),
        status: tokenization::DistributionStatus::Recorded,
        created_ms: 1_700_000_000_000,
        recorded_ms: Some(1_702_592_000_000),
        holders: 3,
        units: 900,
        entitled: 99_999,
        remainder: 1,
        claimed: 55_555,
        withheld: 7_111,
        reclaimed: 0,
        closed_ms: None,
    };
    let entitlement = tokenization::Entitlement {
        distribution: 1,
        holder: 10,
        units: 500,
        gross: 55_555,
        withholding_bps: 1_280,
        withheld: 7_111,
        net: 48_444,
        claimed_ms: Some(1_703_000_000_000),
        reclaimed: false,
    };
    let tranche = tokenization::Tranche { subscription: 1, index: 0, investor: 10, token: 4, amount: 95, vests_at_ms: 1_705_184_000_000, vested: false };
    let perpetual_spec = perpetual::PerpetualSpec {
        market: 3,
        collateral: 2,
        units_per_tick_lot: 1,
        tick_lot_scale: 2,
        price_ticks_max: 10_000_000,
        position_lots_max: 1_000_000,
        tiers: vec![perpetual::MarginTier { notional_max: 100_000_000, initial_ppm: 100_000, maintenance_ppm: 50_000 }],
        leverage_default: 10,
        liquidation_penalty_ppm: 10_000,
        funding_interval_ms: 28_800_000,
        funding_interest_ppb: 100_000,
        funding_clamp_ppb: 500_000,
        funding_cap_ppb: 3_750_000,
        oracle_staleness_ms: 60_000,
        oracle_sources_min: 1,
        basis_window_ms: 600_000,
        mark_interval_ms: 1_000,
    };
    let market_sample = spot::Market {
        base: 1,
        quote: 2,
        base_units_per_lot: 100_000,
        spec: MarketSpec {
            id: 3,
            quote_units_per_tick_lot: 1,
            tick_lot_scale: 2,
            maker_fee_ppm: 200,
            taker_fee_ppm: 500,
            price_ticks_max: 10_000_000,
            quantity_lots_max: 1_000_000,
            price_band_ppm: 0,
        },
        trading: true,
    };
    let holding = perpetual::Holding { size: -1_000, entry_value_exact: -600_000_000 };
    let perpetual_record = perpetual::PerpetualRecord {
        spec: perpetual_spec.clone(),
        mark: Some(600_000),
        mark_ms: 1_700_000_000_000,
        ticked_ms: 1_700_000_000_500,
        oracles: vec![(12, 1)],
        feeds: vec![perpetual::OracleFeed { source: 1, price: 600_000, at_ms: 1_700_000_000_000 }],
        last_trade: Some(600_100),
        basis_samples: vec![(1_700_000_000_000, -30)],
        premium_sum_ppb: -2_000,
        premium_count: 2,
        next_funding_ms: 1_700_006_400_000,
        funding_rate_ppb: 100_000,
        network: holding,
        open_interest: 1_000,
    };
    let position = perpetual::Position { holding, entity: 5, mode: perpetual::MarginMode::Cross, leverage: 10, funding: -225 };
    let funding = perpetual::FundingRecord { market: 3, at_ms: 1_700_006_400_000, rate_ppb: 3_750_000, mark: 600_000, collected: 22_500, unpaid: 0 };
    let liquidation = perpetual::LiquidationRecord {
        id: 1,
        market: 3,
        user: 12,
        at_ms: 1_700_000_000_000,
        kind: perpetual::LiquidationKind::Liquidated,
        size: 1_000,
        price: 568_000,
        bankruptcy_price: Some(540_000),
        offer_price: Some(562_320),
        penalty: 56_800,
    };
    let position_view = perpetual::PositionView {
        market: 3,
        size: 1_000,
        entry_price: Some(600_000),
        mark: Some(570_000),
        unrealized_pnl: -300_000,
        margin: 300_000,
        maintenance_margin: 285_000,
        mode: perpetual::MarginMode::Isolated,
        leverage: 10,
        liquidation_price: Some(568_421),
        funding: 0,
    };
    let pair_spec = convert::PairSpec {
        base: 2,
        quote: 3,
        price: convert::PriceSource::Set { quote_units: 10_850, base_units: 10_000 },
        spread_bps: 25,
        fee_bps: 10,
        base_min: 100,
        base_max: 1_000_000,
        base_step: 100,
        quote_ttl_ms: 10_000,
        paused: false,
        exposure_max_base: 5_000_000,
        exposure_max_quote: 6_000_000,
    };
    let leg = convert::QuoteLeg { base: 2, quote: 3, sell_base: true, pay: 1_000, receive: 1_082, spread: 3 };
    let quote_request = convert::QuoteRequest {
        user: 12,
        legs: vec![leg, convert::QuoteLeg { base: 4, quote: 3, sell_base: false, pay: 1_082, receive: 9, spread: 0 }],
        fee: 1,
    };
    let quote = convert::Quote {
        id: 7,
        user: 12,
        legs: vec![leg],
        fee: 1,
        created_ms: 1_700_000_000_000,
        expires_at_ms: 1_700_000_010_000,
        status: convert::QuoteStatus::Open,
    };
    let conversion = convert::Conversion {
        id: 7,
        quote: convert::Quote { status: convert::QuoteStatus::Accepted, ..quote.clone() },
        at_ms: 1_700_000_005_000,
        first_transfer: 99,
    };
    let candle = Candle { start_ms: 60_000, open: 100, high: 104, low: 98, close: 103, volume_lots: 4, turnover_tick_lots: 400, trades: 2, last_trade: 9 };
    let spec = MarketSpec {
        id: 3,
        quote_units_per_tick_lot: 10_001,
        tick_lot_scale: 2,
        maker_fee_ppm: 1_000,
        taker_fee_ppm: 2_000,
        price_ticks_max: 1 << 40,
        quantity_lots_max: 1 << 30,
        price_band_ppm: 0,
    };
    let market = Market { base: 1, quote: 2, base_units_per_lot: 100_000, spec, trading: true };
    let request = OrderRequest {
        market: 3,
        side: Side::Buy,
        kind: OrderKind::Market,
        time_in_force: TimeInForce::Ioc,
        post_only: false,
        price: Some(26_000),
        quantity: 2,
        self_trade: SelfTradePrevention::CancelTaker,
        expires_at_ms: None,
        trigger: Some(Trigger { source: TriggerSource::LastTrade, direction: TriggerDirection::AtOrAbove, price: 25_500 }),
        reduce_only: true,
    };
    let order = NewOrder {
        market: 3,
        order_id: 11,
        user: 12,
        side: Side::Buy,
        kind: OrderKind::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price: Some(25_000),
        quantity: 2,
        self_trade: SelfTradePrevention::CancelTaker,
    };
    let fill = Fill {
        market: 3,
        maker_order: 9,
        maker_user: 8,
        taker_order: 11,
        taker_user: 12,
        taker_side: Side::Buy,
        price: 25_000,
        quantity: 2,
        notional: 500_001,
        notional_rounding: 1,
        maker_fee: 500,
        taker_fee: 1_000,
    };
    let record = OrderRecord {
        order,
        client_order_id: Some("bot-7".into()),
        status: OrderStatus::PartiallyFilled,
        filled: 1,
        filled_notional: 250_000,
        filled_tick_lots: 50_000,
        fees_paid: 500,
        reject_reason: None,
        created_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_000_001,
        expires_at_ms: Some(1_700_000_060_000),
        expiring: true,
        amending: Some(spot::AmendTerms { price: 25_500, quantity: 3 }),
        amend_refused: Some("PRICE_OUT_OF_BAND".into()),
        trigger: Some(Trigger { source: TriggerSource::LastTrade, direction: TriggerDirection::AtOrBelow, price: 24_000 }),
        triggered_ms: Some(1_700_000_000_001),
        oco_with: Some(12),
        reduce_only: false,
    };
    let withdrawal = Withdrawal {
        id: 5,
        user: 12,
        asset: 2,
        amount: 1_234,
        destination: "DE89 3704".into(),
        status: WithdrawalStatus::Approved,
        created_ms: 1,
        updated_ms: 2,
    };
    let transfer = Transfer {
        id: 99,
        debit: Account { owner: Owner::User(12), asset: 2, purpose: wallet::LOCKED },
        credit: Account { owner: Owner::House, asset: 2, purpose: house::REVENUE },
        amount: 1_000,
        code: spot::FEE,
        reference: "trade:4".into(),
        at_ms: 1_700_000_000_000,
    };
    let proposal = operators::Proposal {
        id: 4,
        kind: operators::ActionKind::Deposit,
        action: operators::Action::Ledger(ActionCommand::Wallet(wallet::Command::Deposit { user: 12, asset: 2, amount: 10_000, reference: "bank-1".into() })),
        approvals: vec![1],
        required: 2,
        status: operators::ProposalStatus::Pending,
        created_ms: 1,
        updated_ms: 2,
        rejection: Some((2, "no".into())),
    };
    let login_failed = operators::SecurityEvent::LoginFailed { email: "a@b".into(), address: "192.0.2.1".into(), reason: "password".into() };
    let audit = operators::AuditRecord::new(1, 1_700_000_000_000, operators::AuditEvent::Security(login_failed.clone()), operators::Digest::default());
    vec![
        ("create asset", Command::CreateAsset(AssetSpec { id: 2, symbol: "USD".into(), scale: 2 }).encode()),
        ("deposit", Command::Wallet(wallet::Command::Deposit { user: 12, asset: 2, amount: 10_000, reference: "bank-1".into() }).encode()),
        ("transfer", Command::Wallet(wallet::Command::Transfer { from: 12, to: 13, asset: 2, amount: -1, key: "k".into() }).encode()),
        (
            "request withdrawal",
            Command::Wallet(wallet::Command::RequestWithdrawal { user: 12, asset: 2, amount: 1_234, destination: "DE89 3704".into(), key: "w".into() })
                .encode(),
        ),
        ("decide withdrawal", Command::Wallet(wallet::Command::DecideWithdrawal { id: 5, approve: true }).encode()),
        ("create market", Command::Spot(spot::Command::CreateMarket(market)).encode()),
        ("place order", Command::Spot(spot::Command::PlaceOrder { user: 12, request, client_order_id: Some("bot-7".into()) }).encode()),
        ("cancel order", Command::Spot(spot::Command::CancelOrder { user: 12, order_id: 11 }).encode()),
        ("halt market", Command::Spot(spot::Command::SetTrading { market: 3, trading: false }).encode()),
        ("cancel all", Command::Spot(spot::Command::CancelAll { user: 12, market: 3 }).encode()),
        ("expire orders", Command::Spot(spot::Command::ExpireOrders).encode()),
        ("amend order", Command::Spot(spot::Command::AmendOrder { user: 12, order_id: 11, price: 25_500, quantity: 3 }).encode()),
        ("amend requested", Outcome::Spot(spot::Outcome::AmendRequested(11)).encode()),
        (
            "place oco",
            Command::Spot(spot::Command::PlaceOco {
                user: 12,
                request: spot::OcoRequest {
                    market: 3,
                    side: Side::Sell,
                    quantity: 2,
                    price: 26_000,
                    stop_kind: OrderKind::Limit,
                    stop_price: Some(23_900),
                    trigger_price: 24_000,
                    self_trade: SelfTradePrevention::CancelTaker,
                },
                client_order_id: Some("bot-8".into()),
            })
            .encode(),
        ),
        ("oco placed", Outcome::Spot(spot::Outcome::OcoPlaced { limit: 11, stop: 12 }).encode()),
        ("expiry requested", Outcome::Spot(spot::Outcome::ExpiryRequested { orders: vec![11] }).encode()),
        ("all cancels requested", Outcome::Spot(spot::Outcome::CancelAllRequested { market: 3, orders: vec![11, 13] }).encode()),
        (
            "apply matching",
            Command::Spot(spot::Command::ApplyMatching {
                sequence: 4,
                events: vec![
                    Event::Amended { market: 3, order_id: 11, user: 12, price: 25_500, quantity: 3, remaining: 2 },
                    Event::StopArmed { market: 3, order_id: 13, user: 12 },
                    Event::StopTriggered { market: 3, order_id: 13, user: 12, price: 24_000 },
                    Event::Fill(fill),
                    Event::Done { market: 3, order_id: 11, user: 12 },
                ],
            })
            .encode(),
        ),
        ("fund house", Command::House(house::Command::Fund { asset: 2, amount: 5_000, reference: "treasury".into() }).encode()),
        ("defund house", Command::House(house::Command::Defund { asset: 2, amount: 5_000, reference: "back".into() }).encode()),
        (
            "outcomes",
            vec![
                Outcome::AssetCreated(2),
                Outcome::Wallet(wallet::Outcome::Deposited(1)),
                Outcome::Wallet(wallet::Outcome::Transferred(2)),
                Outcome::Wallet(wallet::Outcome::WithdrawalRequested(3)),
                Outcome::Wallet(wallet::Outcome::WithdrawalDecided(4)),
                Outcome::Spot(spot::Outcome::MarketCreated(3)),
                Outcome::Spot(spot::Outcome::OrderPlaced(11)),
                Outcome::Spot(spot::Outcome::CancelRequested(11)),
                Outcome::Spot(spot::Outcome::MatchingApplied { orders: vec![9, 11] }),
                Outcome::House(house::Outcome::Funded(5)),
                Outcome::House(house::Outcome::Defunded(6)),
            ]
            .encode(),
        ),
        (
            "errors",
            vec![
                LedgerError::UnknownAsset(9),
                LedgerError::UnknownMarket(9),
                LedgerError::AssetExists(2),
                LedgerError::MarketExists(3),
                LedgerError::BadInput("no".into()),
                LedgerError::InsufficientFunds { needed: 10, available: 9 },
                LedgerError::NotFound,
                LedgerError::Duplicate,
                LedgerError::OutOfSequence { expected: 2, got: 3 },
                LedgerError::Forbidden("no".into()),
                LedgerError::MatchingOutputRefused("a fill".into()),
                LedgerError::LimitReached("open_orders_max".into()),
                LedgerError::AccountFrozen(12),
            ]
            .encode(),
        ),
        (
            "queries",
            vec![
                Query::Assets,
                Query::Transfers { user: 12, asset: Some(2), limit: 100 },
                Query::Status,
                Query::Reserves,
                Query::Wallet(wallet::Query::Balances { user: 12 }),
                Query::Wallet(wallet::Query::Withdrawal { id: 5 }),
                Query::Wallet(wallet::Query::Withdrawals { user: None, status: Some(WithdrawalStatus::Pending), limit: 10 }),
                Query::Spot(spot::Query::Markets),
                Query::Spot(spot::Query::Order { order_id: 11 }),
                Query::Spot(spot::Query::Orders { user: 12, market: Some(3), status: Some(OrderStatus::Open), limit: 10 }),
                Query::Spot(spot::Query::Orders { user: 12, market: None, status: Some(OrderStatus::Armed), limit: 10 }),
                Query::Spot(spot::Query::UserTrades { user: 12, market: None, limit: 10 }),
                Query::Spot(spot::Query::MarketTrades { market: 3, limit: 10 }),
                Query::Spot(spot::Query::Candles { market: 3, interval: CandleInterval::FourHours, from_ms: 1_000, to_ms: 2_000 }),
                Query::Spot(spot::Query::DayStats { market: 3, now_ms: 3_000 }),
                Query::House(house::Query::Balances),
            ]
            .encode(),
        ),
        (
            "answers",
            vec![
                Answer::Assets(vec![AssetSpec { id: 2, symbol: "USD".into(), scale: 2 }]),
                Answer::Transfers(vec![transfer.clone()]),
                Answer::Status(LedgerStatus {
                    journal_applied: 7,
                    matching_applied: 3,
                    matching_connected: true,
                    outbox_pending: 1,
                    matching_alarm: Some("a fill".into()),
                }),
                Answer::Reserves(vec![AssetReserve {
                    asset: 2,
                    totals: vec![(OwnerKind::Users, wallet::AVAILABLE, 10), (OwnerKind::House, wallet::CUSTODY, -10)],
                }]),
                Answer::Wallet(wallet::Answer::Balances(vec![(2, Balance { available: 10, locked: 3 })])),
                Answer::Wallet(wallet::Answer::Withdrawal(Some(withdrawal.clone()))),
                Answer::Wallet(wallet::Answer::Withdrawals(vec![withdrawal.clone()])),
                Answer::Spot(spot::Answer::Markets(vec![market])),
                Answer::Spot(spot::Answer::Order(Some(record.clone()))),
                Answer::Spot(spot::Answer::Orders(vec![record.clone()])),
                Answer::Spot(spot::Answer::Trades(vec![TradeRecord { id: 4, fill, buyer_fee: 1_000, seller_fee: 500, at_ms: 9 }])),
                Answer::Spot(spot::Answer::Candles { before: Some(candle), candles: vec![candle] }),
                Answer::Spot(spot::Answer::DayStats(Some(DayStats {
                    from_ms: 60_000,
                    open: 100,
                    high: 104,
                    low: 98,
                    last: 103,
                    volume_lots: 4,
                    turnover_tick_lots: 400,
                    trades: 2,
                }))),
                Answer::House(house::Answer::Balances(vec![house::HouseBalance { asset: 2, inventory: 5_000, revenue: 1_500, withheld: 250 }])),
            ]
            .encode(),
        ),
        ("query errors", vec![QueryError::BadRequest("limit".into()), QueryError::Unavailable].encode()),
        (
            "journal entry",
            JournalEntry {
                peer: 7,
                peer_sequence: 1_000,
                at_ms: 1_700_000_000_000,
                command: Command::Wallet(wallet::Command::DecideWithdrawal { id: 5, approve: false }),
            }
            .encode(),
        ),
        (
            "operators' commands",
            vec![
                Command::Operators(operators::Command::Bootstrap { operator: 1 }),
                Command::Operators(operators::Command::Propose { operator: 1, action: proposal.action.clone() }),
                Command::Operators(operators::Command::Propose { operator: 1, action: operators::Action::AddOperator { user: 2 } }),
                Command::Operators(operators::Command::Propose { operator: 1, action: operators::Action::Freeze { user: 12, cancel_orders: true } }),
                Command::Operators(operators::Command::Propose { operator: 1, action: operators::Action::Unfreeze { user: 12 } }),
                Command::Operators(operators::Command::Propose { operator: 1, action: operators::Action::SetTier { user: 12, tier: 2 } }),
                Command::Operators(operators::Command::Approve { operator: 2, proposal: 4 }),
                Command::Operators(operators::Command::Reject { operator: 2, proposal: 4, reason: "no".into() }),
                Command::Operators(operators::Command::Record(login_failed.clone())),
                Command::Operators(operators::Command::Record(operators::SecurityEvent::TwoFactor { user: 12, enabled: true })),
                Command::Operators(operators::Command::Configure(operators::Thresholds::default())),
                Command::Operators(operators::Command::Propose { operator: 1, action: operators::Action::KillSwitch { user: 12, engaged: true } }),
                Command::Operators(operators::Command::KillSwitch { user: 12, engaged: false }),
            ]
            .encode(),
        ),
        (
            "operators' outcomes",
            vec![
                Outcome::Operators(operators::Outcome::Bootstrapped(1)),
                Outcome::Operators(operators::Outcome::Proposal(proposal.clone())),
                Outcome::Operators(operators::Outcome::Executed { proposal: proposal.clone(), outcome: ActionOutcome::AssetCreated(2) }),
                Outcome::Operators(operators::Outcome::OperatorAdded(2)),
                Outcome::Operators(operators::Outcome::Recorded { sequence: 9 }),
                Outcome::Operators(operators::Outcome::Configured),
                Outcome::Operators(operators::Outcome::AccountFrozen { user: 12, orders_cancelled: 3 }),
                Outcome::Operators(operators::Outcome::AccountUnfrozen(12)),
                Outcome::Operators(operators::Outcome::TierSet { user: 12, tier: 2 }),
                Outcome::Operators(operators::Outcome::KillSwitchSet {
                    user: 12,
                    state: operators::KillSwitch { by_user: false, by_operators: true },
                    orders_cancelled: 3,
                }),
            ]
            .encode(),
        ),
        ("forbidden", LedgerError::Forbidden("no".into()).encode()),
        ("kill switch engaged", LedgerError::KillSwitchEngaged { user: 12, by_operators: true }.encode()),
        (
            "operators' queries",
            vec![
                Query::Operators(operators::Query::Proposal { id: 4 }),
                Query::Operators(operators::Query::Proposals { status: Some(operators::ProposalStatus::Pending), limit: 10 }),
                Query::Operators(operators::Query::Operators),
                Query::Operators(operators::Query::Audit { from: 1, limit: 10 }),
                Query::Operators(operators::Query::AuditHead),
                Query::Operators(operators::Query::Tier { user: 12 }),
                Query::Operators(operators::Query::KillSwitch { user: 12 }),
            ]
            .encode(),
        ),
        (
            "operators' answers",
            vec![
                Answer::Operators(operators::Answer::Proposal(Some(proposal.clone()))),
                Answer::Operators(operators::Answer::Proposals(vec![proposal.clone()])),
                Answer::Operators(operators::Answer::Operators { operators: vec![1, 2], thresholds: operators::Thresholds::all(2), frozen: vec![12] }),
                Answer::Operators(operators::Answer::Audit(vec![audit.clone()])),
                Answer::Operators(operators::Answer::AuditHead(operators::AuditHead { last_sequence: 1, last_hash: audit.hash })),
                Answer::Operators(operators::Answer::Tier(2)),
                Answer::Operators(operators::Answer::KillSwitch(operators::KillSwitch { by_user: true, by_operators: false })),
            ]
            .encode(),
        ),
        ("audit record", audit.encode()),
        ("proposal record", proposal.encode()),
        ("transfer record", transfer.encode()),
        ("order record", record.encode()),
        ("withdrawal record", withdrawal.encode()),
        (
            "convert commands",
            vec![
                Command::Convert(convert::Command::SetPair(pair_spec)),
                Command::Convert(convert::Command::Quote(quote_request)),
                Command::Convert(convert::Command::Accept { user: 12, quote: 7, key: "k-1".into() }),
                Command::Convert(convert::Command::ExpireQuotes),
            ]
            .encode(),
        ),
        (
            "convert outcomes",
            vec![
                Outcome::Convert(convert::Outcome::PairSet { base: 2, quote: 3 }),
                Outcome::Convert(convert::Outcome::Quoted(quote.clone())),
                Outcome::Convert(convert::Outcome::Accepted(7)),
                Outcome::Convert(convert::Outcome::QuotesExpired { expired: 2, forgotten: 1 }),
            ]
            .encode(),
        ),
        (
            "convert errors",
            vec![
                LedgerError::QuoteExpired(7),
                LedgerError::QuoteAccepted(7),
                LedgerError::PairPaused { base: 2, quote: 3 },
                LedgerError::InsufficientLiquidity("short".into()),
            ]
            .encode(),
        ),
        (
            "convert queries",
            vec![
                Query::Convert(convert::Query::Pairs),
                Query::Convert(convert::Query::Conversion { id: 7 }),
                Query::Convert(convert::Query::Conversions { user: Some(12), limit: 10 }),
            ]
            .encode(),
        ),
        (
            "convert answers",
            vec![
                Answer::Convert(convert::Answer::Pairs(vec![convert::Pair { spec: pair_spec, net_base: -5, net_quote: 250 }])),
                Answer::Convert(convert::Answer::Conversion(Some(conversion.clone()))),
                Answer::Convert(convert::Answer::Conversions(vec![conversion.clone()])),
            ]
            .encode(),
        ),
        ("quote record", quote.encode()),
        ("conversion record", conversion.encode()),
        (
            "perpetual commands",
            vec![
                Command::Spot(spot::Command::Perpetual(perpetual::Command::CreateMarket {
                    market: market_sample,
                    perpetual: Box::new(perpetual_spec.clone()),
                })),
                Command::Spot(spot::Command::Perpetual(perpetual::Command::SetOracle { market: 3, user: 12, source: Some(1) })),
                Command::Spot(spot::Command::Perpetual(perpetual::Command::SubmitPrice { user: 12, market: 3, price: 600_000 })),
                Command::Spot(spot::Command::Perpetual(perpetual::Command::SetLeverage { user: 12, market: 3, leverage: 5 })),
                Command::Spot(spot::Command::Perpetual(perpetual::Command::SetMarginMode { user: 12, market: 3, mode: perpetual::MarginMode::Isolated })),
                Command::Spot(spot::Command::Perpetual(perpetual::Command::AddMargin { user: 12, market: 3, amount: 1_000 })),
                Command::Spot(spot::Command::Perpetual(perpetual::Command::ReduceMargin { user: 12, market: 3, amount: 500 })),
                Command::Spot(spot::Command::Perpetual(perpetual::Command::Tick)),
            ]
            .encode(),
        ),
        (
            "perpetual outcomes",
            vec![
                Outcome::Spot(spot::Outcome::Perpetual(perpetual::Outcome::MarketCreated(3))),
                Outcome::Spot(spot::Outcome::Perpetual(perpetual::Outcome::PriceSubmitted { market: 3, index: Some(600_000), mark: None })),
                Outcome::Spot(spot::Outcome::Perpetual(perpetual::Outcome::Ticked {
                    marks: vec![(3, 599_000)],
                    fundings: vec![funding],
                    liquidations: vec![liquidation],
                })),
            ]
            .encode(),
        ),
        (
            "perpetual queries",
            vec![
                Query::Spot(spot::Query::Perpetual(perpetual::Query::Markets { now_ms: 1_700_000_000_000 })),
                Query::Spot(spot::Query::Perpetual(perpetual::Query::Positions { user: 12 })),
                Query::Spot(spot::Query::Perpetual(perpetual::Query::Fundings { market: 3, limit: 10 })),
                Query::Spot(spot::Query::Perpetual(perpetual::Query::Liquidations { market: 3, user: Some(12), limit: 10 })),
            ]
            .encode(),
        ),
        (
            "perpetual answers",
            vec![
                Answer::Spot(spot::Answer::Perpetual(perpetual::Answer::Markets(vec![perpetual::MarketView {
                    record: perpetual_record.clone(),
                    index: Some(600_000),
                    predicted_rate_ppb: 100_000,
                    insurance: 5_000,
                }]))),
                Answer::Spot(spot::Answer::Perpetual(perpetual::Answer::Positions(vec![position_view]))),
            ]
            .encode(),
        ),
        ("perpetual market record", perpetual_record.encode()),
        ("position record", position.encode()),
        ("funding record", funding.encode()),
        ("liquidation record", liquidation.encode()),
        (
            "tokenization commands",
            vec![
                Command::Tokenization(tokenization::Command::SetIssuer { user: 1, issuer: true }),
                Command::Tokenization(tokenization::Command::SetClaims { user: 10, claims: Some(claims) }),
                Command::Tokenization(tokenization::Command::SetOfferingFee { fee_bps: 200 }),
                Command::Tokenization(tokenization::Command::SetListingFees { maker_fee_ppm: 1_000, taker_fee_ppm: 2_000 }),
                Command::Tokenization(tokenization::Command::CreateToken { issuer: 1, spec: Box::new(token_spec.clone()) }),
                Command::Tokenization(tokenization::Command::SetRules { issuer: 1, token: 4, rules: token_spec.rules.clone() }),
                Command::Tokenization(tokenization::Command::CreateOffering { issuer: 1, spec: Box::new(offering_spec.clone()) }),
                Command::Tokenization(tokenization::Command::Subscribe { investor: 10, offering: 1, amount: 333, key: "s-1".into() }),
                Command::Tokenization(tokenization::Command::CancelSubscription { investor: 10, subscription: 1 }),
                Command::Tokenization(tokenization::Command::Distribute { issuer: 1, spec: Box::new(distribution_spec), key: "d-1".into() }),
                Command::Tokenization(tokenization::Command::ClaimDistribution { holder: 10, distribution: 1 }),
                Command::Tokenization(tokenization::Command::ReclaimDistribution { issuer: 1, distribution: 1 }),
                Command::Tokenization(tokenization::Command::Tick),
                Command::Tokenization(tokenization::Command::FreezeTokens { token: 4, holder: 10, amount: 300 }),
                Command::Tokenization(tokenization::Command::UnfreezeTokens { token: 4, holder: 10, amount: 100 }),
                Command::Tokenization(tokenization::Command::ForceTransfer { token: 4, from: 10, to: 11, amount: 400 }),
                Command::Tokenization(tokenization::Command::RecoverTokens { token: 4, lost: 11, to: 12 }),
            ]
            .encode(),
        ),
        (
            "tokenization outcomes",
            vec![
                Outcome::Tokenization(tokenization::Outcome::IssuerSet { user: 1, issuer: true }),
                Outcome::Tokenization(tokenization::Outcome::ClaimsSet(10)),
                Outcome::Tokenization(tokenization::Outcome::OfferingFeeSet(200)),
                Outcome::Tokenization(tokenization::Outcome::ListingFeesSet { maker_fee_ppm: 1_000, taker_fee_ppm: 2_000 }),
                Outcome::Tokenization(tokenization::Outcome::TokenCreated(4)),
                Outcome::Tokenization(tokenization::Outcome::RulesSet(4)),
                Outcome::Tokenization(tokenization::Outcome::OfferingCreated(1)),
                Outcome::Tokenization(tokenization::Outcome::Subscribed(1)),
                Outcome::Tokenization(tokenization::Outcome::SubscriptionCancelled(1)),
                Outcome::Tokenization(tokenization::Outcome::Ticked {
                    offerings_closed: vec![1],
                    tranches_vested: 3,
                    markets_listed: vec![2],
                    distributions_recorded: vec![1],
                }),
                Outcome::Tokenization(tokenization::Outcome::Distributed(1)),
                Outcome::Tokenization(tokenization::Outcome::DistributionClaimed { distribution: 1, net: 48_444, withheld: 7_111 }),
                Outcome::Tokenization(tokenization::Outcome::DistributionReclaimed { distribution: 1, amount: 22_222 }),
                Outcome::Tokenization(tokenization::Outcome::TokensFrozen { token: 4, holder: 10, frozen: 200 }),
                Outcome::Tokenization(tokenization::Outcome::ForcedTransfer { token: 4, amount: 400, from_frozen: 200 }),
                Outcome::Tokenization(tokenization::Outcome::TokensRecovered { token: 4, amount: 500, tranches: 2 }),
            ]
            .encode(),
        ),
        (
            "tokenization errors",
            vec![
                LedgerError::Compliance(tokenization::ComplianceRefusal::CountryNotAllowed { user: 13, country: 840 }),
                LedgerError::Compliance(tokenization::ComplianceRefusal::BalanceMax { user: 11, balance_max: 500, would_hold: 501 }),
                LedgerError::OfferingClosed(1),
                LedgerError::CancelCutoffPassed { subscription: 1, cutoff_ms: 1_700_000_000_000 },
                LedgerError::NotClaimable { distribution: 1, why: "claimed".into() },
                LedgerError::ClaimPeriodOpen { distribution: 1, until_ms: 1_705_184_000_000 },
            ]
            .encode(),
        ),
        (
            "tokenization queries",
            vec![
                Query::Tokenization(tokenization::Query::Tokens),
                Query::Tokenization(tokenization::Query::Offerings { token: Some(4), limit: 20 }),
                Query::Tokenization(tokenization::Query::Subscriptions { offering: 1, after: 0, limit: 10 }),
                Query::Tokenization(tokenization::Query::InvestorSubscriptions { investor: 10, limit: 10 }),
                Query::Tokenization(tokenization::Query::Tranches { investor: 10, limit: 20 }),
                Query::Tokenization(tokenization::Query::Subscription(7)),
                Query::Tokenization(tokenization::Query::OfferingFee),
                Query::Tokenization(tokenization::Query::ListingFees),
                Query::Tokenization(tokenization::Query::CapTable(4)),
                Query::Tokenization(tokenization::Query::CapTableAt { token: 4, at_ms: 1_702_592_000_000 }),
                Query::Tokenization(tokenization::Query::Distributions { token: Some(4), limit: 20 }),
                Query::Tokenization(tokenization::Query::Distribution(1)),
                Query::Tokenization(tokenization::Query::Entitlements { distribution: 1, after: 0, limit: 100 }),
                Query::Tokenization(tokenization::Query::HolderEntitlements { holder: 10, limit: 20 }),
            ]
            .encode(),
        ),
        ("token record", token.encode()),
        ("offering record", offering.encode()),
        ("subscription record", subscription.encode()),
        ("tranche record", tranche.encode()),
        ("holding record", tokenization::Holding { user: 10, balance: 286, locked: 143, frozen: 0 }.encode()),
        ("distribution record", distribution.encode()),
        ("entitlement record", entitlement.encode()),
        ("donations commands", {
            let spec = donations::CampaignSpec {
                title: "Wells".into(),
                story: "Clean water".into(),
                reference_asset: 2,
                goal: 1_000_000,
                deadline_ms: 1_702_592_000_000,
                accepted: vec![1, 2],
                model: donations::FundingModel::AllOrNothing,
                payout_every_ms: None,
            };
            let gift = donations::Gift {
                campaign: 1,
                asset: 2,
                gross: 10_000,
                tip: 500,
                message: "Good luck".into(),
                display: donations::Display { name: Some("Ann".into()), amount_shown: false, known_to_organiser: true },
            };
            let organiser =
                donations::Organiser { name: "Water Aid".into(), kind: donations::OrganiserKind::Organisation, country: 826, registration: "288701".into() };
            let pool = donations::PoolSpec {
                campaign: 1,
                asset: 2,
                ratio_bps: 10_000,
                per_gift_max: 5_000,
                per_donor_max: 8_000,
                total: 100_000,
                starts_ms: 1_700_000_000_000,
                ends_ms: 1_702_592_000_000,
            };
            vec![
                Command::Donations(donations::Command::SetOrganiser { user: 5, organiser: Some(organiser) }),
                Command::Donations(donations::Command::SetDonationFee { fee_bps: 250 }),
                Command::Donations(donations::Command::CreateCampaign { organiser: 5, spec: Box::new(spec) }),
                Command::Donations(donations::Command::PublishCampaign { organiser: 5, campaign: 1 }),
                Command::Donations(donations::Command::CancelCampaign { organiser: 5, campaign: 1 }),
                Command::Donations(donations::Command::StopCampaign { campaign: 1 }),
                Command::Donations(donations::Command::Donate { donor: 10, gift: Box::new(gift.clone()), key: "g-1".into() }),
                Command::Donations(donations::Command::DepositDonation { donor: 10, gift: Box::new(gift.clone()), reference: "bank-9".into() }),
                Command::Donations(donations::Command::FundPool { sponsor: 11, spec: pool, key: "p-1".into() }),
                Command::Donations(donations::Command::PayOut { campaign: 1 }),
                Command::Donations(donations::Command::Tick),
                Command::Donations(donations::Command::DonateConverted { donor: 10, gift: Box::new(gift), quote: 9, key: "g-2".into() }),
            ]
            .encode()
        }),
        (
            "donations outcomes",
            vec![
                Outcome::Donations(donations::Outcome::OrganiserSet { user: 5, organiser: true }),
                Outcome::Donations(donations::Outcome::DonationFeeSet(250)),
                Outcome::Donations(donations::Outcome::CampaignCreated(1)),
                Outcome::Donations(donations::Outcome::CampaignPublished(1)),
                Outcome::Donations(donations::Outcome::CampaignCancelled { campaign: 1, refunded: 3 }),
                Outcome::Donations(donations::Outcome::Donated(7)),
                Outcome::Donations(donations::Outcome::PoolFunded(2)),
                Outcome::Donations(donations::Outcome::PaidOut(Box::new(donations::Payout {
                    id: 1,
                    campaign: 1,
                    organiser: 5,
                    donations: 2,
                    lines: vec![donations::PayoutLine { asset: 2, net: 19_500, fees: 500, tips: 500 }],
                    last: true,
                    at_ms: 1_702_592_000_000,
                }))),
                Outcome::Donations(donations::Outcome::Ticked { ended: vec![1], refunded: vec![2], pools_closed: vec![3] }),
            ]
            .encode(),
        ),
        ("donations errors", vec![LedgerError::NoPrice { asset: 1, reference: 2 }, LedgerError::CampaignClosed { campaign: 1, why: "ended".into() }].encode()),
        (
            "donations queries",
            vec![
                Query::Donations(donations::Query::Organiser(5)),
                Query::Donations(donations::Query::Organisers),
                Query::Donations(donations::Query::DonationFee),
                Query::Donations(donations::Query::Campaigns { organiser: Some(5), status: Some(donations::CampaignStatus::Active), limit: 20 }),
                Query::Donations(donations::Query::Campaign(1)),
                Query::Donations(donations::Query::CampaignDonations { campaign: 1, before: 0, limit: 50 }),
                Query::Donations(donations::Query::Donation(7)),
                Query::Donations(donations::Query::DonorDonations { donor: 10, before: 9, limit: 50 }),
                Query::Donations(donations::Query::Receipt(donations::ReceiptNumber { organiser: 5, year: 2026, number: 12 })),
                Query::Donations(donations::Query::Pools(1)),
                Query::Donations(donations::Query::Payouts { campaign: 1, limit: 10 }),
                Query::Donations(donations::Query::PayoutsDue { at_ms: 1_702_592_000_000 }),
            ]
            .encode(),
        ),
        (
            "campaign record",
            donations::Campaign {
                id: 1,
                organiser: 5,
                spec: donations::CampaignSpec {
                    title: "Wells".into(),
                    story: String::new(),
                    reference_asset: 2,
                    goal: 1_000_000,
                    deadline_ms: 1_702_592_000_000,
                    accepted: vec![2],
                    model: donations::FundingModel::KeepWhatYouRaise,
                    payout_every_ms: Some(604_800_000),
                },
                status: donations::CampaignStatus::Active,
                fee_bps: 250,
                raised: 20_000,
                donations: 2,
                totals: vec![donations::AssetTotals { asset: 2, given: 15_000, tips: 500, matched: 5_000, refunded: 0, released: 0, paid_out: 0, fees: 0 }],
                created_ms: 1_700_000_000_000,
                published_ms: Some(1_700_000_000_000),
                ended_ms: None,
                closed_ms: None,
                cancelled: false,
                last_payout_ms: None,
            }
            .encode(),
        ),
        (
            "donation record",
            donations::Donation {
                id: 7,
                donor: 10,
                gift: donations::Gift {
                    campaign: 1,
                    asset: 1,
                    gross: 100,
                    tip: 0,
                    message: String::new(),
                    display: donations::Display { name: None, amount_shown: true, known_to_organiser: false },
                },
                source: donations::Source::Deposit { reference: "tx-1".into() },
                fee: 2,
                net: 98,
                value: 4_200_000,
                matches: vec![donations::Match { pool: 2, asset: 2, amount: 5_000, value: 5_000 }],
                receipt: donations::ReceiptNumber { organiser: 5, year: 2026, number: 12 },
                status: donations::DonationStatus::Held,
                created_ms: 1_700_000_000_000,
                settled_ms: None,
                converted: Some(donations::Converted { quote: 9, asset: 2, amount: 4_150_000 }),
            }
            .encode(),
        ),
        (
            "pool record",
            donations::Pool {
                id: 2,
                sponsor: 11,
                spec: donations::PoolSpec {
                    campaign: 1,
                    asset: 2,
                    ratio_bps: 5_000,
                    per_gift_max: 5_000,
                    per_donor_max: 8_000,
                    total: 100_000,
                    starts_ms: 1_700_000_000_000,
                    ends_ms: 1_702_592_000_000,
                },
                reserved: 5_000,
                returned: 0,
                created_ms: 1_700_000_000_000,
                closed_ms: None,
            }
            .encode(),
        ),
    ]
}

const GOLDEN: &[(&str, &str)] = &[
    ("create asset", "00020355534402"),
    ("deposit", "02000c02a09c010662616e6b2d31"),
    ("transfer", "02010c0d0201016b"),
    ("request withdrawal", "02020c02a413094445383920333730340177"),
    ("decide withdrawal", "02030501"),
    ("create market", "03000102a08d0603914e02e807d00f80808080802080808080040001"),
    ("place order", "03010c03000101000190cb010200000100009cc701010105626f742d37"),
    ("cancel order", "03020c0b"),
    ("halt market", "03030300"),
    ("cancel all", "03050c03"),
    ("expire orders", "0306"),
    ("amend order", "03070c0b9cc70103"),
    ("amend requested", "03070b"),
    ("place oco", "03080c03010290cb010001dcba01c0bb01000105626f742d38"),
    ("oco placed", "03080b0c"),
    ("expiry requested", "0306010b"),
    ("all cancels requested", "030503020b0d"),
    ("apply matching", "0304040506030b0c9cc701030209030d0c0a030d0cc0bb01050309080b0c00a8c30102a1c21e01f403e80708030b0c"),
    ("fund house", "040002904e087472656173757279"),
    ("defund house", "040102904e046261636b"),
    ("outcomes", "0b000202000102010202020302030403000303010b03020b030402090b040005040106"),
    ("errors", "0d000901090202030304026e6f051412060708020309026e6f0a06612066696c6c0b0f6f70656e5f6f72646572735f6d61780c0c"),
    ("queries", "1000010c010264020305000c05010505020001000a060006010b06020c010301010a06020c0001070a06030c000a0604030a06050304e807d00f060603b8170700"),
    ("answers", "0e0001020355534402010163000c0202010205d00fcc010774726164653a3480d095ffbc3102070301010106612066696c6c03010202000114010313050001021406050101050c02a41309444538392033373034010102050201050c02a413094445383920333730340101020600010102a08d0603914e02e807d00f80808080802080808080040001060101030b0c0000000001a8c30102000105626f742d37020190a10fd08603e8070080d095ffbc3181d095ffbc3101e0a499ffbc3101019cc70103011150524943455f4f55545f4f465f42414e44010001c0bb010181d095ffbc31010c00060201030b0c0000000001a8c30102000105626f742d37020190a10fd08603e8070080d095ffbc3181d095ffbc3101e0a499ffbc3101019cc70103011150524943455f4f55545f4f465f42414e44010001c0bb010181d095ffbc31010c00060301040309080b0c00a8c30102a1c21e01f403e807d00fe80709060401e0d40364686267049003020901e0d403646862670490030209060501e0d403646862670490030207000102904eb817f403"),
    ("query errors", "0200056c696d697401"),
    ("journal entry", "07e80780d095ffbc3102030500"),
    ("operators' commands", "0d0100010101010001000c02a09c010662616e6b2d310101010102010101020c01010101030c010101040c020102020401030204026e6f01040103614062093139322e302e322e310870617373776f72640104030c010105020201020202020202020202020202010101050c0101060c00"),
    ("operators' outcomes", "0a010001010104000001000c02a09c010662616e6b2d310101020001020102026e6f010204000001000c02a09c010662616e6b2d310101020001020102026e6f0002010302010409010501060c0301070c01080c0201090c000103"),
    ("forbidden", "09026e6f"),
    ("kill switch engaged", "0e0c01"),
    ("operators' queries", "07040004040101000a04020403010a040404050c04060c"),
    ("operators' answers", "0704000104000001000c02a09c010662616e6b2d310101020001020102026e6f04010104000001000c02a09c010662616e6b2d310101020001020102026e6f0402020102020202020202020202020202020202010c0403010180d095ffbc31070103614062093139322e302e322e310870617373776f72640000000000000000000000000000000000000000000000000000000000000000d9c2a0c39f744bb123ee3f9d80ce64cd894ecd9b5474408bd9b14b2eafaa4043040401d9c2a0c39f744bb123ee3f9d80ce64cd894ecd9b5474408bd9b14b2eafaa404304050204060100"),
    ("audit record", "0180d095ffbc31070103614062093139322e302e322e310870617373776f72640000000000000000000000000000000000000000000000000000000000000000d9c2a0c39f744bb123ee3f9d80ce64cd894ecd9b5474408bd9b14b2eafaa4043"),
    ("proposal record", "04000001000c02a09c010662616e6b2d310101020001020102026e6f"),
    ("transfer record", "63000c0202010205d00fcc010774726164653a3480d095ffbc31"),
    ("order record", "030b0c0000000001a8c30102000105626f742d37020190a10fd08603e8070080d095ffbc3181d095ffbc3101e0a499ffbc3101019cc70103011150524943455f4f55545f4f465f42414e44010001c0bb010181d095ffbc31010c00"),
    ("withdrawal record", "050c02a41309444538392033373034010102"),
    ("convert commands", "040500020301c4a901a09c01190ac80180897ac801904e0080ade20480b6dc0505010c02020301d00ff41006040300f41012000205020c07036b2d310503"),
    ("convert outcomes", "04050002030501070c01020301d00ff410060280d095ffbc31909e96ffbc310005020705030201"),
    ("convert errors", "040f071007110203120573686f7274"),
    ("convert queries", "0308000801070802010c0a"),
    ("convert answers", "03080001020301c4a901a09c01190ac80180897ac801904e0080ade20480b6dc0509f40308010107070c01020301d00ff410060280d095ffbc31909e96ffbc310188f795ffbc316308020107070c01020301d00ff410060280d095ffbc31909e96ffbc310188f795ffbc3163"),
    ("quote record", "070c01020301d00ff410060280d095ffbc31909e96ffbc3100"),
    ("conversion record", "07070c01020301d00ff410060280d095ffbc31909e96ffbc310188f795ffbc3163"),
    ("perpetual commands", "080309000102a08d06030102c801f40380ade204c0843d00010302010280ade204c0843d018084af5fa08d06d086030a904e80e8dd0dc09a0cc0843de0e1c903e0d40301c0cf24e807030901030c01010309020c03c0cf240309030c03050309040c03010309050c03d00f0309060c03e807030907"),
    ("perpetual outcomes", "03030900030309020301c0cf24000309070103d8c724010380a09c82bd31e0e1c903c0cf24c8df02000101030c80d095ffbc3100d00fc0d52201e0fa200190a922c0f706"),
    ("perpetual queries", "0406070080d095ffbc310607010c060702030a06070303010c0a"),
    ("perpetual answers", "02060600010302010280ade204c0843d018084af5fa08d06d086030a904e80e8dd0dc09a0cc0843de0e1c903e0d40301c0cf24e80701c0cf2480d095ffbc31f4d395ffbc31010c010101c0cf2480d095ffbc3101a4d0240180d095ffbc313b9f1f0280a09c82bd31c09a0ccf0fff979abc04e80701c0cf24c09a0c904e0606010103d00f01c0cf240190e522bfcf24c0cf2490e522010a01e5d82200"),
    ("perpetual market record", "0302010280ade204c0843d018084af5fa08d06d086030a904e80e8dd0dc09a0cc0843de0e1c903e0d40301c0cf24e80701c0cf2480d095ffbc31f4d395ffbc31010c010101c0cf2480d095ffbc3101a4d0240180d095ffbc313b9f1f0280a09c82bd31c09a0ccf0fff979abc04e807"),
    ("position record", "cf0fff979abc0405000ac103"),
    ("funding record", "0380a09c82bd31e0e1c903c0cf24c8df0200"),
    ("liquidation record", "01030c80d095ffbc3100d00fc0d52201e0fa200190a922c0f706"),
    ("tokenization commands", "110600010106010a01fa010280a0f1c2b134800a0602c8010603e807d00f0604010441434d450002a09c0107070707070707070707070707070707070707070707070707070707070707072168747470733a2f2f61636d652e6578616d706c652f6f66666572696e672e7064660201c80601d00f01e80701020a0b0180a0f1c2b1340101060501040201c80601d00f01e80701020a0b0180a0f1c2b13401010606010401d00fe807d00f02d00f80d095ffbc3180e090d3c63180f0b2520180e090d3c6318090fbd3090301010001a08d0606070a019a0503732d3106080a01060901040101c09a0c80e090d3c63180f08ba7d031b81703642d31060a0a01060b0101060c060d040ad804060e040ac801060f040a0ba0060610040b0c"),
    ("tokenization outcomes", "100600010106010a0602c8010603e807d00f060404060504060601060701060801060c01010301020101060901060a01f8f4058e6f060b019cdb02060d040a9003060e04a0069003060f04e80702"),
    ("tokenization errors", "0613030dc80613050be807ea071401150180d095ffbc31160107636c61696d6564170180f08ba7d031"),
    ("tokenization queries", "0e09000901010414090301000a09050a0a09060a140904070909090a090b04090c0480e090d3c631090d010414090e01090f01006409100a14"),
    ("token record", "04010441434d450002a09c0107070707070707070707070707070707070707070707070707070707070707072168747470733a2f2f61636d652e6578616d706c652f6f66666572696e672e7064660201c80601d00f01e80701020a0b0180a0f1c2b1340101d00f80d095ffbc31"),
    ("offering record", "01010401d00fe807d00f02d00f80d095ffbc3180e090d3c63180f0b2520180e090d3c6318090fbd3090301010001a08d06c801010000d00f80897ac0b80280d095ffbc310180e090d3c631"),
    ("subscription record", "01010a9a0590d32802bc04e0f422b0de0580d095ffbc3180e090d3c631"),
    ("tranche record", "01000a04be0180f08ba7d03100"),
    ("holding record", "0abc049e0200"),
    ("distribution record", "0101040101c09a0c80e090d3c63180f08ba7d031b8170180d095ffbc310180e090d3c63103880ebe9a0c0286e4068e6f0000"),
    ("entitlement record", "010ae80786e406800a8e6ff8f40501808cd795c83100"),
    ("donations commands", "0c070005010957617465722041696400ba06063238383730310701fa010702050557656c6c730b436c65616e2077617465720280897a80e090d3c6310201020100070305010704050107050107060a0102a09c01e80709476f6f64206c75636b0103416e6e000103672d3107070a0102a09c01e80709476f6f64206c75636b0103416e6e00010662616e6b2d3907080b0102904e904e807dc09a0c80d095ffbc3180e090d3c63103702d31070901070a070b0a0102a09c01e80709476f6f64206c75636b0103416e6e00010903672d32"),
    ("donations outcomes", "09070005010701fa01070201070301070401030705070706020707010105020102d8b002e807e8070180e090d3c6310708010101020103"),
    ("donations errors", "02180102190105656e646564"),
    ("donations queries", "0c0a00050a010a020a0301050101140a04010a050100320a06070a070a09320a0805ea0f0c0a09010a0a010a0a0b80e090d3c631"),
    ("campaign record", "01050557656c6c73000280897a80e090d3c631010200018088b2a00201fa01c0b802020102b0ea01e807904e0000000080d095ffbc310180d095ffbc3100000000"),
    ("donation record", "070a0101c8010000000100010474782d3104c40180d98004010202904e904e05ea0f0c0080d095ffbc3100010902e0cbfa03"),
    ("pool record", "020b01028827904e807dc09a0c80d095ffbc3180e090d3c631904e0080d095ffbc3100"),
];

#[test]
fn the_format_is_version_24_and_every_sample_encodes_to_its_golden_bytes() {
    assert_eq!(FORMAT_VERSION, 24, "the golden bytes below are version 24's: a new version writes its own");
    let got = samples();
    let listing: String = got.iter().map(|(name, bytes)| format!("    (\"{name}\", \"{}\"),\n", hex(bytes))).collect();
    assert_eq!(got.len(), GOLDEN.len(), "every sample has golden bytes; these are today's:\n{listing}");
    for ((name, bytes), (golden_name, golden)) in got.iter().zip(GOLDEN) {
        assert_eq!((*name, hex(bytes).as_str()), (*golden_name, *golden), "a format change: bump FORMAT_VERSION; today's bytes:\n{listing}");
    }
}

/// Every transfer code and purpose has a name, and no two products share a code.
#[test]
fn every_code_and_purpose_is_named_once() {
    let codes = [
        wallet::DEPOSIT,
        wallet::TRANSFER,
        wallet::WITHDRAWAL_REQUEST,
        wallet::WITHDRAWAL_APPROVAL,
        wallet::WITHDRAWAL_REJECTION,
        spot::HOLD,
        spot::RELEASE,
        spot::TRADE,
        spot::FEE,
        spot::ROUNDING,
        house::FUNDING,
        house::DEFUNDING,
        convert::QUOTE_HOLD,
        convert::QUOTE_EXPIRY,
        convert::CONVERSION,
        convert::SPREAD,
        convert::FEE,
        tokenization::SUBSCRIPTION,
        tokenization::SUBSCRIPTION_REFUND,
        tokenization::OFFERING_PROCEEDS,
        tokenization::OFFERING_FEE,
        tokenization::ISSUANCE,
        tokenization::VESTING_LOCK,
        tokenization::VESTING_RELEASE,
        tokenization::DISTRIBUTION_FUNDING,
        tokenization::DISTRIBUTION_REMAINDER,
        tokenization::DISTRIBUTION_PAYMENT,
        tokenization::DISTRIBUTION_WITHHOLDING,
        tokenization::DISTRIBUTION_RECLAIM,
        tokenization::TOKENS_FROZEN,
        tokenization::TOKENS_UNFROZEN,
        tokenization::FORCED_TRANSFER,
        tokenization::RECOVERY,
        donations::DONATION,
        donations::PLATFORM_TIP,
        donations::MATCH,
        donations::DONATION_REFUND,
        donations::MATCH_RELEASE,
        donations::PAYOUT,
        donations::DONATION_FEE,
        donations::POOL_FUNDING,
        donations::POOL_RETURN,
    ];
    for code in codes {
        assert_ne!(transfer_kind(code), "OTHER", "code {code}");
    }
    let mut unique = codes.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), codes.len());
    assert_eq!(transfer_kind(999), "OTHER");
    for purpose in [
        wallet::AVAILABLE,
        wallet::LOCKED,
        wallet::CUSTODY,
        wallet::PENDING_WITHDRAWALS,
        house::REVENUE,
        house::INVENTORY,
        convert::QUOTED,
        tokenization::ISSUED,
        tokenization::ESCROW,
        tokenization::VESTING,
        tokenization::DISTRIBUTION,
        tokenization::WITHHELD,
        tokenization::FROZEN,
        donations::CAMPAIGN,
        donations::MATCH_POOL,
    ] {
        assert_ne!(purpose_name(purpose), "other", "purpose {purpose}");
    }
}
