//! Donation receipts and donors' annual statements as PDF.
//!
//! A document in, the PDF's bytes out: pure, no I/O, no clock (the caller
//! writes the dates), no font files. The text is set in the standard
//! Helvetica with WinAnsiEncoding, which every PDF reader has, so nothing
//! is embedded and a receipt is about two kilobytes. WinAnsi covers the
//! Latin-1 letters, the euro sign and typographic quotes; text is
//! normalised to its composed form (NFC) first, and a character outside
//! WinAnsi (a name in another script) prints as `?` on the page while the
//! document's metadata (its title and subject, UTF-16) keep the exact
//! names. Lines move with `T*` so that text extraction sees one line per
//! line, as a tax office's tools do.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use unicode_normalization::UnicodeNormalization;

/// What one receipt says. Amounts come formatted (the gateway's decimals).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiptDocument {
    /// Organiser, year, sequence: `42-2026-000007`.
    pub number: String,
    /// The day the gift was received, `2026-12-07` (UTC).
    pub date: String,
    pub organisation: String,
    /// Its registration number and country, as the operators verified them.
    pub organisation_detail: String,
    /// Who gave: the donor's account as the platform knows it.
    pub donor: String,
    pub campaign: String,
    /// The asset and units given (the gift, not the tip).
    pub asset: String,
    pub amount: String,
    /// The gift's value in the campaign's reference asset when it came.
    pub value: String,
    pub reference_asset: String,
    /// A tip to the platform, said apart: it is not part of the gift.
    pub tip: Option<String>,
    /// Given from outside: the deposit's reference.
    pub deposit_reference: Option<String>,
    /// Converted at receipt: what the gift became, in the reference asset,
    /// and the conversion's id.
    pub converted: Option<(String, String)>,
    /// The gift went back to the donor: the receipt is void.
    pub refunded: bool,
    /// Who issues it (the platform, on the organisation's behalf).
    pub issuer: String,
}

/// One gift on a donor's annual statement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatementLine {
    pub date: String,
    pub number: String,
    pub organisation: String,
    pub asset: String,
    pub amount: String,
    pub value: String,
    pub reference_asset: String,
    pub refunded: bool,
}

/// A donor's gifts of one year.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatementDocument {
    pub donor: String,
    pub year: i32,
    pub lines: Vec<StatementLine>,
    /// Per asset, the gifts not refunded: (asset, amount).
    pub totals: Vec<(String, String)>,
    pub issuer: String,
}

/// A4 in points, the left margin, the first baseline and the line pitch.
const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN_LEFT: f32 = 56.0;
const TOP_BASELINE: f32 = 780.0;
const LEADING: f32 = 16.0;
const TITLE_SIZE: f32 = 18.0;
const BODY_SIZE: f32 = 10.5;
/// Lines of a statement on one page, the header's included.
const LINES_PER_PAGE: usize = 44;
/// The longest line set, in characters: longer text is cut with "...".
const LINE_CHARS_MAX: usize = 110;

/// One line of a page: its size and text.
struct Line {
    size: f32,
    text: String,
}

fn title(text: impl Into<String>) -> Line {
    Line { size: TITLE_SIZE, text: text.into() }
}

fn body(text: impl Into<String>) -> Line {
    Line { size: BODY_SIZE, text: text.into() }
}

fn blank() -> Line {
    body("")
}

pub fn receipt_pdf(receipt: &ReceiptDocument) -> Vec<u8> {
    let mut lines = vec![
        title("Donation receipt"),
        blank(),
        body(format!("Receipt number: {}", receipt.number)),
        body(format!("Date received: {}", receipt.date)),
        blank(),
        body(format!("Organisation: {}", receipt.organisation)),
        body(format!("Registration: {}", receipt.organisation_detail)),
        body(format!("Campaign: {}", receipt.campaign)),
        blank(),
        body(format!("Donor: {}", receipt.donor)),
        body(format!("Given: {} {}", receipt.amount, receipt.asset)),
        body(format!("Value when received: {} {}", receipt.value, receipt.reference_asset)),
    ];
    if let Some(reference) = &receipt.deposit_reference {
        lines.push(body(format!("Received from outside, deposit reference: {reference}")));
    }
    if let Some((amount, conversion)) = &receipt.converted {
        lines.push(body(format!("Converted when received into {amount} {} (conversion {conversion})", receipt.reference_asset)));
    }
    if let Some(tip) = &receipt.tip {
        lines.push(body(format!("A tip of {tip} {} to the platform is not part of this gift.", receipt.asset)));
    }
    lines.push(blank());
    if receipt.refunded {
        lines.push(body("REFUNDED: this gift went back to the donor. This receipt is void."));
    } else {
        lines.push(body("No goods or services were provided in exchange for this gift."));
    }
    lines.push(blank());
    lines.push(body(format!("Issued by {} on behalf of {}", receipt.issuer, receipt.organisation)));
    let metadata_title = format!("Donation receipt {}", receipt.number);
    let subject = format!("{} to {}: {} {}", receipt.donor, receipt.organisation, receipt.amount, receipt.asset);
    render(&[lines], &metadata_title, &subject)
}

pub fn statement_pdf(statement: &StatementDocument) -> Vec<u8> {
    let header = |page: usize| {
        vec![
            title(format!("Donations in {}", statement.year)),
            body(format!("Donor: {}", statement.donor)),
            body(if page == 0 { format!("Issued by {}", statement.issuer) } else { format!("Page {}", page + 1) }),
            blank(),
        ]
    };
    let mut rows: Vec<Line> = statement
        .lines
        .iter()
        .map(|line| {
            body(format!(
                "{}  {}  {}: {} {} (value {} {}){}",
                line.date,
                line.number,
                line.organisation,
                line.amount,
                line.asset,
                line.value,
                line.reference_asset,
                if line.refunded { "  REFUNDED" } else { "" }
            ))
        })
        .collect();
    if rows.is_empty() {
        rows.push(body("No gifts this year."));
    }
    rows.push(blank());
    for (asset, amount) in &statement.totals {
        rows.push(body(format!("Total given in {asset}, refunds excluded: {amount}")));
    }
    let mut pages: Vec<Vec<Line>> = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut page = header(pages.len());
        let room = LINES_PER_PAGE - page.len();
        page.extend(rows.by_ref().take(room));
        pages.push(page);
    }
    let metadata_title = format!("Donations in {}", statement.year);
    render(&pages, &metadata_title, &statement.donor)
}

/// The pages' lines in Helvetica, one content stream per page.
fn render(pages: &[Vec<Line>], title: &str, subject: &str) -> Vec<u8> {
    let (catalog, tree, font, info) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4));
    let page_ref = |index: usize| Ref::new(5 + 2 * index as i32);
    let content_ref = |index: usize| Ref::new(6 + 2 * index as i32);
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids((0..pages.len()).map(page_ref)).count(pages.len() as i32);
    pdf.type1_font(font).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
    // UTF-16 text strings: the exact names, whatever the page could show.
    pdf.document_info(info).title(TextStr(title)).subject(TextStr(subject)).producer(TextStr("Marionette"));
    for (index, lines) in pages.iter().enumerate() {
        let mut page = pdf.page(page_ref(index));
        page.media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT)).parent(tree).contents(content_ref(index));
        page.resources().fonts().pair(Name(b"F1"), font);
        page.finish();
        let mut content = Content::new();
        content.begin_text();
        content.set_leading(LEADING);
        content.next_line(MARGIN_LEFT, TOP_BASELINE);
        for (at, line) in lines.iter().enumerate() {
            if at > 0 {
                content.next_line_using_leading();
            }
            content.set_font(Name(b"F1"), line.size);
            content.show(Str(&win_ansi(&cut(&line.text))));
        }
        content.end_text();
        pdf.stream(content_ref(index), &content.finish());
    }
    pdf.finish()
}

/// At most [`LINE_CHARS_MAX`] characters: a long name or title must not run off the page.
fn cut(text: &str) -> String {
    if text.chars().count() <= LINE_CHARS_MAX {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(LINE_CHARS_MAX - 3).collect();
    cut.push_str("...");
    cut
}

/// Text in WinAnsiEncoding (Windows-1252), composed first; a character it
/// lacks, or a control character, is `?`.
pub fn win_ansi(text: &str) -> Vec<u8> {
    // Windows-1252's 0x80-0x9F: the characters it puts where Latin-1 has controls.
    const HIGH: [(char, u8); 27] = [
        ('€', 0x80),
        ('‚', 0x82),
        ('ƒ', 0x83),
        ('„', 0x84),
        ('…', 0x85),
        ('†', 0x86),
        ('‡', 0x87),
        ('ˆ', 0x88),
        ('‰', 0x89),
        ('Š', 0x8A),
        ('‹', 0x8B),
        ('Œ', 0x8C),
        ('Ž', 0x8E),
        ('\u{2018}', 0x91),
        ('\u{2019}', 0x92),
        ('\u{201C}', 0x93),
        ('\u{201D}', 0x94),
        ('•', 0x95),
        ('–', 0x96),
        ('—', 0x97),
        ('˜', 0x98),
        ('™', 0x99),
        ('š', 0x9A),
        ('›', 0x9B),
        ('œ', 0x9C),
        ('ž', 0x9E),
        ('Ÿ', 0x9F),
    ];
    text.nfc()
        .map(|c| match u32::from(c) {
            0x20..=0x7E | 0xA0..=0xFF => u8::try_from(u32::from(c)).unwrap_or(b'?'),
            _ => HIGH.iter().find(|(high, _)| *high == c).map_or(b'?', |(_, byte)| *byte),
        })
        .collect()
}
