//! The format's golden bytes: one encoded sample of every message and
//! record this crate defines. A change to any type fails here; bump
//! `FORMAT_VERSION` with it and write the new bytes (the failure prints them).

use matching_api::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn order() -> NewOrder {
    NewOrder {
        market: 3,
        order_id: 1_000_001,
        user: 42,
        side: Side::Sell,
        kind: OrderKind::Limit,
        time_in_force: TimeInForce::Fok,
        post_only: true,
        price: Some(25_000),
        quantity: 7,
        self_trade: SelfTradePrevention::CancelBoth,
    }
}

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let spec = MarketSpec {
        id: 3,
        quote_units_per_tick_lot: 10_001,
        tick_lot_scale: 2,
        maker_fee_ppm: 1_000,
        taker_fee_ppm: 2_000,
        price_ticks_max: 1 << 40,
        quantity_lots_max: 1 << 30,
        price_band_ppm: 100_000,
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
    let resting = RestingOrder {
        order_id: 9,
        user: 8,
        side: Side::Sell,
        price: 25_000,
        remaining: 5,
        filled: 5,
        maker_filled: 2,
        post_only: false,
        self_trade: SelfTradePrevention::CancelMaker,
    };
    let armed = ArmedStop { order: order(), trigger: Trigger { source: TriggerSource::LastTrade, direction: TriggerDirection::AtOrBelow, price: 24_000 } };
    let encode = |value: &dyn erased::Encode| value.encode();
    vec![
        ("add market", encode(&Command::AddMarket(spec))),
        ("set trading", encode(&Command::SetTrading { market: 3, trading: false })),
        ("place", encode(&Command::Place(order()))),
        ("cancel", encode(&Command::Cancel { market: 3, order_id: 9, user: 8 })),
        ("cancel all", encode(&Command::CancelAll { market: 3, user: 8 })),
        ("amend", encode(&Command::Amend { market: 3, order_id: 9, user: 8, price: 24_999, quantity: 4 })),
        ("market added", encode(&Event::MarketAdded { market: 3 })),
        ("market rejected", encode(&Event::MarketRejected { market: 3, code: RejectCode::MarketLimit })),
        ("trading set", encode(&Event::TradingSet { market: 3, trading: true })),
        ("accepted", encode(&Event::Accepted { market: 3, order_id: 11, user: 12, side: Side::Buy, price: None, quantity: 2 })),
        ("rejected", encode(&Event::Rejected { market: 3, order_id: 11, user: 12, code: RejectCode::PostOnlyWouldTake })),
        ("fill", encode(&Event::Fill(fill))),
        ("amended", encode(&Event::Amended { market: 3, order_id: 9, user: 8, price: 24_999, quantity: 4, remaining: 3 })),
        ("cancelled", encode(&Event::Cancelled { market: 3, order_id: 9, user: 8, side: Side::Sell, remaining: 3, reason: CancelReason::SelfTrade })),
        ("done", encode(&Event::Done { market: 3, order_id: 11, user: 12 })),
        ("journal entry", encode(&JournalEntry { peer: 1, peer_sequence: 77, command: Command::Place(order()) })),
        (
            "snapshot",
            encode(&EngineSnapshot {
                markets: vec![MarketSnapshot {
                    spec,
                    trading: true,
                    last_price: Some(1_234),
                    mark_price: Some(1_240),
                    orders: vec![resting],
                    stops: vec![armed, ArmedStop { trigger: Trigger { source: TriggerSource::Mark, ..armed.trigger }, ..armed }],
                    lists: vec![OcoLink { limit: 9, stop: 1_000_001 }],
                }],
            }),
        ),
        ("place stop", encode(&Command::PlaceStop(armed))),
        ("stop armed", encode(&Event::StopArmed { market: 3, order_id: 11, user: 12 })),
        ("stop triggered", encode(&Event::StopTriggered { market: 3, order_id: 11, user: 12, price: 24_000 })),
        ("would trigger now", encode(&Event::Rejected { market: 3, order_id: 11, user: 12, code: RejectCode::WouldTriggerNow })),
        ("price level", encode(&PriceLevel { price: 25_000, quantity: 12, orders: 3 })),
        ("price out of band", encode(&Event::Rejected { market: 3, order_id: 11, user: 12, code: RejectCode::PriceOutOfBand })),
        (
            "place oco",
            encode(&Command::PlaceOco(OcoList {
                limit: NewOrder { time_in_force: TimeInForce::Gtc, price: Some(26_000), ..order() },
                stop_order_id: 1_000_002,
                stop_kind: OrderKind::Market,
                stop_price: None,
                trigger: Trigger { source: TriggerSource::LastTrade, direction: TriggerDirection::AtOrBelow, price: 24_000 },
            })),
        ),
        ("set mark", encode(&Command::SetMark { market: 3, price: 24_100 })),
        ("mark set", encode(&Event::MarkSet { market: 3, price: 24_100 })),
        (
            "cancelled with its list",
            encode(&Event::Cancelled { market: 3, order_id: 9, user: 8, side: Side::Sell, remaining: 3, reason: CancelReason::OcoOther }),
        ),
    ]
}

/// postcard through a trait object, so that one list holds every type.
mod erased {
    pub trait Encode {
        fn encode(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode(&self) -> Vec<u8> {
            postcard::to_stdvec(self).expect("encoding into a vector cannot fail")
        }
    }
}

const GOLDEN: &[(&str, &str)] = &[
    ("add market", "0003914e02e807d00f8080808080208080808004a08d06"),
    ("set trading", "010300"),
    ("place", "0203c1843d2a0100020101a8c3010702"),
    ("cancel", "03030908"),
    ("cancel all", "040308"),
    ("amend", "05030908a7c30104"),
    ("market added", "0003"),
    ("market rejected", "010302"),
    ("trading set", "020301"),
    ("accepted", "03030b0c000002"),
    ("rejected", "04030b0c0a"),
    ("fill", "050309080b0c00a8c30102a1c21e01f403e807"),
    ("amended", "06030908a7c3010403"),
    ("cancelled", "07030908010303"),
    ("done", "08030b0c"),
    ("journal entry", "014d0203c1843d2a0100020101a8c3010702"),
    ("snapshot", "0103914e02e807d00f8080808080208080808004a08d060101d20901d80901090801a8c30105050200010203c1843d2a0100020101a8c30107020001c0bb0103c1843d2a0100020101a8c30107020101c0bb010109c1843d"),
    ("place stop", "0603c1843d2a0100020101a8c30107020001c0bb01"),
    ("stop armed", "09030b0c"),
    ("stop triggered", "0a030b0cc0bb01"),
    ("would trigger now", "04030b0c0f"),
    ("price level", "a8c3010c03"),
    ("price out of band", "04030b0c0e"),
    ("place oco", "0703c1843d2a010000010190cb010702c2843d01000001c0bb01"),
    ("set mark", "0803a4bc01"),
    ("mark set", "0b03a4bc01"),
    ("cancelled with its list", "07030908010304"),
];

#[test]
fn the_format_is_version_7_and_every_sample_encodes_to_its_golden_bytes() {
    assert_eq!(FORMAT_VERSION, 7, "the golden bytes below are version 7's: a new version writes its own");
    let got = samples();
    let listing: String = got.iter().map(|(name, bytes)| format!("    (\"{name}\", \"{}\"),\n", hex(bytes))).collect();
    assert_eq!(got.len(), GOLDEN.len(), "every sample has golden bytes; these are today's:\n{listing}");
    for ((name, bytes), (golden_name, golden)) in got.iter().zip(GOLDEN) {
        assert_eq!((*name, hex(bytes).as_str()), (*golden_name, *golden), "a format change: bump FORMAT_VERSION; today's bytes:\n{listing}");
    }
}
