//! Property tests of the frame codec: round trips, partial reads, damage.

use ledger_api::{wallet, LedgerStatus};
use matching_api::*;
use proptest::prelude::*;
use wire::*;

fn command() -> impl Strategy<Value = Command> {
    (any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(market, id, user, price, quantity, buy)| {
        if buy {
            Command::Place(NewOrder {
                market,
                order_id: id,
                user,
                side: Side::Buy,
                kind: OrderKind::Limit,
                time_in_force: TimeInForce::Gtc,
                post_only: false,
                price: Some(price),
                quantity,
                self_trade: SelfTradePrevention::CancelMaker,
            })
        } else {
            Command::Amend { market, order_id: id, user, price, quantity }
        }
    })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u32>(), any::<u64>(), any::<bool>()).prop_map(|(peer, outputs_applied, subscribe)| Message::Hello {
            peer,
            role: Role::Ledger,
            outputs_applied,
            subscribe
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(commands_applied, outputs_last)| Message::Welcome { commands_applied, outputs_last }),
        command().prop_map(Message::Command),
        (any::<u32>(), any::<u64>(), proptest::collection::vec((any::<u64>(), any::<u64>()), 0..20)).prop_map(|(peer, peer_sequence, ids)| Message::Events {
            peer,
            peer_sequence,
            events: ids.into_iter().map(|(order_id, user)| Event::Done { market: 1, order_id, user }).collect(),
        }),
        Just(Message::Heartbeat),
        ".{0,40}".prop_map(|detail| Message::Error { code: ProtocolErrorCode::SequenceGap, detail }),
        ledger_command().prop_map(Message::LedgerCommand),
        (any::<u64>(), any::<u64>(), ".{0,20}", 0u8..3).prop_map(|(peer_sequence, id, text, kind)| Message::LedgerOutcome {
            peer_sequence,
            outcome: match kind {
                0 => None,
                1 => Some(Ok(ledger_api::Outcome::Wallet(wallet::Outcome::Deposited(id)))),
                _ => Some(Err(ledger_api::LedgerError::BadInput(text))),
            },
        }),
        (any::<u64>(), proptest::option::of(any::<u32>()), 1u32..1_000).prop_map(|(user, market, limit)| Message::LedgerQuery(ledger_api::Query::Spot(
            ledger_api::spot::Query::Orders { user, market, status: None, limit }
        ))),
        (any::<u64>(), any::<u64>()).prop_map(|(journal_applied, matching_applied)| Message::LedgerAnswer(Ok(ledger_api::Answer::Status(LedgerStatus {
            journal_applied,
            matching_applied,
            matching_connected: true,
            outbox_pending: 0,
            matching_alarm: None,
        })))),
    ]
}

fn ledger_command() -> impl Strategy<Value = ledger_api::Command> {
    (any::<u64>(), any::<u32>(), any::<i128>(), ".{0,40}", any::<bool>()).prop_map(|(user, asset, amount, reference, deposit)| {
        ledger_api::Command::Wallet(if deposit {
            wallet::Command::Deposit { user, asset, amount, reference }
        } else {
            wallet::Command::RequestWithdrawal { user, asset, amount, destination: reference.clone(), key: reference }
        })
    })
}

proptest! {
    #[test]
    fn frames_round_trip_one_after_another(messages in proptest::collection::vec((any::<u64>(), message()), 1..10)) {
        let mut stream = Vec::new();
        for (sequence, message) in &messages {
            encode_frame(*sequence, message, &mut stream);
        }
        let mut at = 0;
        for (sequence, message) in &messages {
            let (frame, used) = decode_frame(&stream[at..], PAYLOAD_BYTES_MAX_DEFAULT).unwrap().unwrap();
            prop_assert_eq!(frame.sequence, *sequence);
            prop_assert_eq!(&frame.message, message);
            at += used;
        }
        prop_assert_eq!(at, stream.len());
    }

    #[test]
    fn every_prefix_of_a_frame_asks_for_more(message in message(), sequence in any::<u64>()) {
        let mut bytes = Vec::new();
        encode_frame(sequence, &message, &mut bytes);
        for end in 0..bytes.len() {
            prop_assert_eq!(decode_frame(&bytes[..end], PAYLOAD_BYTES_MAX_DEFAULT), Ok(None));
        }
    }

    #[test]
    fn any_bit_flip_is_refused(message in message(), sequence in any::<u64>(), bit in any::<prop::sample::Index>()) {
        let mut bytes = Vec::new();
        encode_frame(sequence, &message, &mut bytes);
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        // A flip in the length field may make the frame look incomplete; it must never decode.
        if let Ok(Some((frame, _))) = decode_frame(&bytes, PAYLOAD_BYTES_MAX_DEFAULT) { prop_assert!(false, "damaged frame decoded as {:?}", frame) }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), valid_header in any::<bool>()) {
        let mut bytes = bytes;
        if valid_header && bytes.len() >= 8 {
            bytes[..4].copy_from_slice(&MAGIC);
            bytes[4..8].copy_from_slice(&[PROTOCOL_VERSION, 0, 0, 0]);
        }
        let _ = decode_frame(&bytes, 128);
    }
}

#[test]
fn oversized_frames_are_refused_before_reading_them() {
    let mut bytes = Vec::new();
    encode_frame(1, &Message::Error { code: ProtocolErrorCode::MalformedFrame, detail: "x".repeat(300) }, &mut bytes);
    assert!(matches!(decode_frame(&bytes[..HEADER_BYTES], 100), Err(WireError::TooLarge { limit: 100, .. })));
}

#[test]
fn foreign_protocols_are_named() {
    assert_eq!(decode_frame(b"GET / HTTP/1.1\r\n", 100), Err(WireError::BadMagic(*b"GET ")));
    assert_eq!(decode_frame(b"MRX", 100), Err(WireError::BadMagic(*b"MRX\0")));
    let mut bytes = Vec::new();
    encode_frame(1, &Message::Heartbeat, &mut bytes);
    // A release ahead of this one.
    bytes[4] = PROTOCOL_VERSION + 1;
    assert_eq!(decode_frame(&bytes, 100), Err(WireError::UnsupportedVersion(PROTOCOL_VERSION + 1)));
}

/// The frames' golden bytes: the header and a sample of the messages. A
/// change to `Message` or to a type it carries fails here; bump
/// PROTOCOL_VERSION with it and write the new bytes (the failure prints them).
#[test]
fn the_protocol_is_version_9_and_its_frames_encode_to_their_golden_bytes() {
    assert_eq!(PROTOCOL_VERSION, 9, "the golden bytes below are version 9's");
    let order = NewOrder {
        market: 3,
        order_id: 11,
        user: 12,
        side: Side::Sell,
        kind: OrderKind::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price: Some(24_000),
        quantity: 2,
        self_trade: SelfTradePrevention::CancelTaker,
    };
    let trigger = Trigger { source: TriggerSource::LastTrade, direction: TriggerDirection::AtOrBelow, price: 24_100 };
    let request = ledger_api::spot::OrderRequest {
        market: 3,
        side: Side::Sell,
        kind: OrderKind::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price: Some(24_000),
        quantity: 2,
        self_trade: SelfTradePrevention::CancelTaker,
        expires_at_ms: None,
        trigger: Some(trigger),
        reduce_only: false,
    };
    let messages = [
        Message::Hello { peer: 7, role: Role::Gateway, outputs_applied: 3, subscribe: true },
        Message::Welcome { commands_applied: 9, outputs_last: 11 },
        Message::LedgerCommand(ledger_api::Command::Wallet(wallet::Command::Deposit { user: 12, asset: 2, amount: 10_000, reference: "bank-1".into() })),
        Message::LedgerOutcome { peer_sequence: 4, outcome: Some(Err(ledger_api::LedgerError::NotFound)) },
        Message::DepthQuery { market: 3, levels: 10 },
        Message::Error { code: ProtocolErrorCode::SequenceGap, detail: "gap".into() },
        Message::LedgerCommand(ledger_api::Command::Spot(ledger_api::spot::Command::PlaceOrder { user: 12, request, client_order_id: None })),
        Message::Command(Command::PlaceStop(ArmedStop { order, trigger })),
        Message::Events {
            peer: 1,
            peer_sequence: 5,
            events: vec![
                Event::StopTriggered { market: 3, order_id: 11, user: 12, price: 24_100 },
                Event::Amended { market: 3, order_id: 11, user: 12, price: 24_050, quantity: 2, remaining: 2 },
                Event::Cancelled { market: 3, order_id: 10, user: 12, side: Side::Sell, remaining: 2, reason: CancelReason::OcoOther },
            ],
        },
        Message::Command(Command::PlaceOco(OcoList {
            limit: NewOrder { order_id: 10, post_only: true, price: Some(25_000), ..order },
            stop_order_id: 11,
            stop_kind: OrderKind::Limit,
            stop_price: Some(24_000),
            trigger,
        })),
        Message::Error { code: ProtocolErrorCode::NotLeader, detail: "tcp:10.0.0.2:9101".into() },
    ];
    let got: Vec<String> = messages
        .iter()
        .enumerate()
        .map(|(sequence, message)| {
            let mut bytes = Vec::new();
            encode_frame(sequence as u64, message, &mut bytes);
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        })
        .collect();
    let listing: String = got.iter().map(|hex| format!("        \"{hex}\",\n")).collect();
    assert_eq!(got, GOLDEN_FRAMES, "a protocol change: bump PROTOCOL_VERSION; today's frames:\n{listing}");
}

const GOLDEN_FRAMES: &[&str] = &[
    "4d524e5409000000050000000000000000000000c6c7f1ea0007010301",
    "4d524e5409000000030000000100000000000000555beed101090b",
    "4d524e54090000000f0000000200000000000000465373640602000c02a09c010662616e6b2d31",
    "4d524e5409000000050000000300000000000000115c5c820704010106",
    "4d524e5409000000030000000400000000000000ef82842f0b030a",
    "4d524e5409000000060000000500000000000000b3a3c89c050103676170",
    "4d524e540900000018000000060000000000000026e2672e0603010c030100000001c0bb01020000010001a4bc010000",
    "4d524e5409000000140000000700000000000000ffd00f9a0206030b0c0100000001c0bb0102000001a4bc01",
    "4d524e54090000001b0000000800000000000000fb835c5e030105030a030b0ca4bc0106030b0cf2bb01020207030a0c010204",
    "4d524e54090000001a000000090000000000000026262d480207030a0c0100000101a8c30102000b0001c0bb010001a4bc01",
    "4d524e5409000000140000000a00000000000000d535e17a0507117463703a31302e302e302e323a39313031",
];
