//! Receipts and statements read back with a PDF library, as a tax
//! office's tools would: every field on its own line, in order.

use proptest::prelude::*;
use receipts::{receipt_pdf, statement_pdf, ReceiptDocument, StatementDocument, StatementLine};

fn receipt() -> ReceiptDocument {
    ReceiptDocument {
        number: "7-2026-000012".into(),
        date: "2026-12-07".into(),
        organisation: "Ärzte ohne Grenzen e.V.".into(),
        organisation_detail: "VR 12345, country 276".into(),
        donor: "zoë.müller@domain.io".into(),
        campaign: "Wells for Kibera".into(),
        asset: "BTC".into(),
        amount: "0.25000000".into(),
        value: "12345.67".into(),
        reference_asset: "EUR".into(),
        tip: Some("0.00100000".into()),
        deposit_reference: None,
        converted: None,
        refunded: false,
        issuer: "Marionette".into(),
    }
}

fn document(pdf: &[u8]) -> lopdf::Document {
    lopdf::Document::load_mem(pdf).expect("a valid PDF")
}

/// Every page's text, one entry per non-empty line.
fn lines(pdf: &[u8]) -> Vec<String> {
    let document = document(pdf);
    let pages: Vec<u32> = document.get_pages().keys().copied().collect();
    let text = document.extract_text(&pages).expect("its text");
    text.lines().map(|line| line.trim().to_string()).filter(|line| !line.is_empty()).collect()
}

fn info(pdf: &[u8], key: &[u8]) -> String {
    let document = document(pdf);
    let info = document.trailer.get(b"Info").and_then(|object| object.as_reference()).expect("an Info dictionary");
    let value = document.get_dictionary(info).expect("Info").get(key).expect("the key");
    lopdf::decode_text_string(value).expect("a text string")
}

#[test]
fn a_receipt_says_who_gave_what_to_whom_when_and_its_value() {
    let pdf = receipt_pdf(&receipt());
    assert_eq!(document(&pdf).get_pages().len(), 1);
    assert_eq!(
        lines(&pdf),
        [
            "Donation receipt",
            "Receipt number: 7-2026-000012",
            "Date received: 2026-12-07",
            "Organisation: Ärzte ohne Grenzen e.V.",
            "Registration: VR 12345, country 276",
            "Campaign: Wells for Kibera",
            "Donor: zoë.müller@domain.io",
            "Given: 0.25000000 BTC",
            "Value when received: 12345.67 EUR",
            "A tip of 0.00100000 BTC to the platform is not part of this gift.",
            "No goods or services were provided in exchange for this gift.",
            "Issued by Marionette on behalf of Ärzte ohne Grenzen e.V.",
        ]
    );
    assert_eq!(info(&pdf, b"Title"), "Donation receipt 7-2026-000012");
}

#[test]
fn a_refunded_gifts_receipt_is_void_and_one_from_outside_names_its_deposit() {
    let pdf = receipt_pdf(&ReceiptDocument { refunded: true, tip: None, deposit_reference: Some("wire-77".into()), ..receipt() });
    let text = lines(&pdf);
    assert!(text.contains(&"REFUNDED: this gift went back to the donor. This receipt is void.".to_string()), "{text:?}");
    assert!(text.contains(&"Received from outside, deposit reference: wire-77".to_string()), "{text:?}");
    assert!(!text.iter().any(|line| line.contains("No goods or services") || line.contains("tip")), "{text:?}");
}

#[test]
fn a_gift_converted_at_receipt_says_what_it_became_after_its_value() {
    let converted = ReceiptDocument { converted: Some(("12310.00".into(), "42".into())), ..receipt() };
    let text = lines(&receipt_pdf(&converted));
    let at = text.iter().position(|line| line == "Value when received: 12345.67 EUR").expect("the value line");
    assert_eq!(text[at + 1], "Converted when received into 12310.00 EUR (conversion 42)", "{text:?}");
    assert!(!lines(&receipt_pdf(&receipt())).iter().any(|line| line.contains("Converted")), "a gift kept as given says nothing of a conversion");
}

#[test]
fn names_outside_winansi_print_as_question_marks_and_stay_exact_in_the_metadata() {
    // "e" and a combining diaeresis compose to one "ë" first.
    let pdf = receipt_pdf(&ReceiptDocument { donor: "李雷 and Zoe\u{308}".into(), organisation: "Água €".into(), ..receipt() });
    let text = lines(&pdf);
    assert!(text.contains(&"Donor: ?? and Zoë".to_string()), "{text:?}");
    assert!(text.contains(&"Organisation: Água €".to_string()), "{text:?}");
    assert_eq!(info(&pdf, b"Subject"), "李雷 and Zoe\u{308} to Água €: 0.25000000 BTC");
}

#[test]
fn a_statement_lists_every_gift_of_the_year_over_as_many_pages_as_it_needs() {
    let gift = |n: usize| StatementLine {
        date: format!("2026-{:02}-{:02}", 1 + n % 12, 1 + n % 28),
        number: format!("7-2026-{n:06}"),
        organisation: "Water Aid".into(),
        asset: "USD".into(),
        amount: format!("{n}.00"),
        value: format!("{n}.00"),
        reference_asset: "USD".into(),
        refunded: n == 3,
    };
    let statement = StatementDocument {
        donor: "bob@domain.io".into(),
        year: 2026,
        lines: (1..=100).map(gift).collect(),
        totals: vec![("USD".into(), "5047.00".into())],
        issuer: "Marionette".into(),
    };
    let pdf = statement_pdf(&statement);
    // 40 gifts a page after a 4-line header: 100 gifts, a blank and a total are three pages.
    assert_eq!(document(&pdf).get_pages().len(), 3);
    let text = lines(&pdf);
    for n in 1..=100 {
        let expected = format!(
            "{}  7-2026-{n:06}  Water Aid: {n}.00 USD (value {n}.00 USD){}",
            format_args!("2026-{:02}-{:02}", 1 + n % 12, 1 + n % 28),
            if n == 3 { "  REFUNDED" } else { "" }
        );
        assert_eq!(text.iter().filter(|line| **line == expected).count(), 1, "gift {n} once: {expected}");
    }
    assert_eq!(text.last().map(String::as_str), Some("Total given in USD, refunds excluded: 5047.00"));
    assert_eq!(text.iter().filter(|line| line.starts_with("Donations in 2026")).count(), 3, "each page has its header");
    let empty = lines(&statement_pdf(&StatementDocument { lines: Vec::new(), totals: Vec::new(), ..statement }));
    assert!(empty.contains(&"No gifts this year.".to_string()), "{empty:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Any text makes a PDF a reader loads; plain text comes back as written
    /// (cut at 110 characters a line).
    #[test]
    fn any_text_makes_a_readable_pdf(donor in "\\PC{0,300}", plain in "[A-Za-z0-9.,'()@-][A-Za-z0-9 .,'()@-]{0,59}", campaign in "\\PC{0,200}") {
        let pdf = receipt_pdf(&ReceiptDocument { donor: donor.clone(), campaign, ..receipt() });
        prop_assert_eq!(document(&pdf).get_pages().len(), 1);
        prop_assert_eq!(info(&pdf, b"Subject"), format!("{donor} to Ärzte ohne Grenzen e.V.: 0.25000000 BTC"));
        let pdf = receipt_pdf(&ReceiptDocument { donor: plain.clone(), ..receipt() });
        let expected = format!("Donor: {}", plain.trim_end());
        prop_assert!(lines(&pdf).contains(&expected), "{:?} not in {:?}", expected, lines(&pdf));
    }
}
