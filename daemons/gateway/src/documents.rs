//! Donors' documents as PDF over plain HTTP GET, for a browser's download
//! link: `/donations/{id}/receipt.pdf` (a gift's receipt) and
//! `/donations/statements/{year}.pdf` (a year's gifts). Each is a GraphQL
//! query run on the same schema with the caller's session (the bearer
//! token or the login cookie), so who may read what is the API's own; the
//! answer is set as a PDF by the `receipts` crate.

use serde_json::{json, Value};

/// Who issues the documents on the organisations' behalf.
const ISSUER: &str = "Marionette";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    Receipt(u64),
    Statement(i32),
}

/// The document a `/donations/...` path names; None for any other path.
pub fn parse(path: &str) -> Option<Document> {
    let rest = path.strip_prefix("/donations/")?;
    if let Some(year) = rest.strip_prefix("statements/").and_then(|file| file.strip_suffix(".pdf")) {
        return year.parse().ok().filter(|year| (1970..=9999).contains(year)).map(Document::Statement);
    }
    let id = rest.strip_suffix("/receipt.pdf")?;
    id.parse().ok().map(Document::Receipt)
}

const RECEIPT: &str = "query($id: ID!) { donationReceipt(donationId: $id) { number date organisation organisationDetail donor campaign asset amount value referenceAsset tip depositReference convertedAmount conversionId refunded } }";
const STATEMENT: &str = "query($year: Int!) { myDonationStatement(year: $year) { donor year donations { at receiptNumber organisation asset gross value referenceAsset status } totals { asset given } } }";

/// The query that reads a document, and its variables.
pub fn graphql(document: Document) -> (&'static str, Value) {
    match document {
        Document::Receipt(id) => (RECEIPT, json!({ "id": id.to_string() })),
        Document::Statement(year) => (STATEMENT, json!({ "year": year })),
    }
}

/// The HTTP status of an API refusal.
pub fn status_of(code: Option<&str>) -> u16 {
    match code {
        Some("UNAUTHENTICATED") => 401,
        Some("FORBIDDEN") => 403,
        Some("NOT_FOUND") => 404,
        Some("BAD_USER_INPUT") => 400,
        Some("RATE_LIMITED") => 429,
        _ => 503,
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// The PDF and its file name from the query's data; None when the data is
/// not the query's shape (the caller answers 503).
pub fn render(document: Document, data: &Value) -> Option<(Vec<u8>, String)> {
    match document {
        Document::Receipt(_) => {
            let r = data.get("donationReceipt")?;
            let receipt = receipts::ReceiptDocument {
                number: text(r.get("number")?),
                date: text(r.get("date")?),
                organisation: text(r.get("organisation")?),
                organisation_detail: text(r.get("organisationDetail")?),
                donor: text(r.get("donor")?),
                campaign: text(r.get("campaign")?),
                asset: text(r.get("asset")?),
                amount: text(r.get("amount")?),
                value: text(r.get("value")?),
                reference_asset: text(r.get("referenceAsset")?),
                tip: r.get("tip")?.as_str().map(str::to_string),
                deposit_reference: r.get("depositReference")?.as_str().map(str::to_string),
                converted: r.get("convertedAmount")?.as_str().zip(r.get("conversionId")?.as_str()).map(|(amount, id)| (amount.to_string(), id.to_string())),
                refunded: r.get("refunded")?.as_bool()?,
                issuer: ISSUER.into(),
            };
            let name = format!("receipt-{}.pdf", receipt.number);
            Some((receipts::receipt_pdf(&receipt), name))
        }
        Document::Statement(year) => {
            let s = data.get("myDonationStatement")?;
            let lines = s
                .get("donations")?
                .as_array()?
                .iter()
                .map(|gift| receipts::StatementLine {
                    date: text(&gift["at"]).chars().take(10).collect(),
                    number: text(&gift["receiptNumber"]),
                    organisation: text(&gift["organisation"]),
                    asset: text(&gift["asset"]),
                    amount: text(&gift["gross"]),
                    value: text(&gift["value"]),
                    reference_asset: text(&gift["referenceAsset"]),
                    refunded: gift["status"] == "REFUNDED",
                })
                .collect();
            let totals = s.get("totals")?.as_array()?.iter().map(|total| (text(&total["asset"]), text(&total["given"]))).collect();
            let statement = receipts::StatementDocument { donor: text(s.get("donor")?), year, lines, totals, issuer: ISSUER.into() };
            Some((receipts::statement_pdf(&statement), format!("donations-{year}.pdf")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_receipt_or_a_years_statement_and_nothing_else() {
        assert_eq!(parse("/donations/12/receipt.pdf"), Some(Document::Receipt(12)));
        assert_eq!(parse("/donations/statements/2026.pdf"), Some(Document::Statement(2026)));
        for path in [
            "/donations/",
            "/donations/x/receipt.pdf",
            "/donations/12/receipt",
            "/donations/statements/26.pdf",
            "/donations/statements/2026",
            "/donations/-1/receipt.pdf",
            "/markets/12/receipt.pdf",
        ] {
            assert_eq!(parse(path), None, "{path}");
        }
    }

    #[test]
    fn a_receipts_data_renders_its_pdf_and_other_shapes_do_not() {
        let data = json!({ "donationReceipt": {
            "number": "7-2026-000001", "date": "2026-12-07", "organisation": "Water Aid", "organisationDetail": "288701, country 826",
            "donor": "bob@domain.io", "campaign": "Wells", "asset": "USD", "amount": "100.00", "value": "100.00", "referenceAsset": "USD",
            "tip": null, "depositReference": null, "convertedAmount": null, "conversionId": null, "refunded": false
        } });
        let (pdf, name) = render(Document::Receipt(1), &data).expect("a receipt");
        assert!(pdf.starts_with(b"%PDF-"));
        assert_eq!(name, "receipt-7-2026-000001.pdf");
        assert_eq!(render(Document::Receipt(1), &json!({ "donationReceipt": null })), None);
        assert_eq!(render(Document::Statement(2026), &data), None);
    }
}
