//! Market data over plain HTTP GET for tools that do not speak GraphQL:
//! `/markets/{market}/ticker`, `/book?depth=`, `/trades?limit=` and
//! `/candles?interval=&since=&to=&limit=`. Each is a GraphQL query run on
//! the same schema, so the answers and refusals are the API's own; candles
//! and book levels are reshaped into the arrays exchanges' REST APIs use
//! (Binance's klines, CCXT's OHLCV): `[time_ms, "open", "high", "low",
//! "close", "volume"]` and `["price", "quantity"]`, decimals as strings so
//! that nothing passes through floating point.

use serde_json::{json, Value};

/// One market data request, parsed from its path and query string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarketData {
    Ticker,
    Book { depth: Option<i64> },
    Trades { limit: Option<i64> },
    Candles { interval: &'static str, since_ms: Option<u64>, to_ms: Option<u64>, limit: Option<i64> },
}

/// Timeframes as exchanges name them, and the API's intervals.
const INTERVALS: [(&str, &str); 7] =
    [("1m", "ONE_MINUTE"), ("5m", "FIVE_MINUTES"), ("15m", "FIFTEEN_MINUTES"), ("1h", "ONE_HOUR"), ("4h", "FOUR_HOURS"), ("1d", "ONE_DAY"), ("1w", "ONE_WEEK")];

/// The market and the request a `/markets/...` path names; None for a path
/// that is not market data (the caller answers 404), Err for one that is
/// but whose parameters are wrong (400, with what to send instead).
pub fn parse(path: &str, query: Option<&str>) -> Option<Result<(String, MarketData), String>> {
    let rest = path.strip_prefix("/markets/")?;
    let (market, what) = rest.split_once('/')?;
    if market.is_empty() || what.contains('/') {
        return None;
    }
    let market = percent_decode(market)?;
    let parameters: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
    let known: &[&str] = match what {
        "ticker" => &[],
        "book" => &["depth"],
        "trades" => &["limit"],
        "candles" => &["interval", "since", "to", "limit"],
        _ => return None,
    };
    Some(parse_parameters(what, known, &parameters).map(|request| (market, request)))
}

fn parse_parameters(what: &str, known: &[&str], parameters: &[(String, String)]) -> Result<MarketData, String> {
    if let Some((name, _)) = parameters.iter().find(|(name, _)| !known.contains(&name.as_str())) {
        return Err(match known {
            [] => format!("{what} takes no parameters, got {name}"),
            _ => format!("{what} takes {}, got {name}", known.join(", ")),
        });
    }
    let get = |name: &str| parameters.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let integer = |name: &str| get(name).map(|v| v.parse::<i64>().map_err(|_| format!("{name} must be a whole number, got {v:?}"))).transpose();
    let millis = |name: &str| {
        get(name).map(|v| v.parse::<u64>().map_err(|_| format!("{name} must be a time in milliseconds since 1970-01-01 UTC, got {v:?}"))).transpose()
    };
    Ok(match what {
        "ticker" => MarketData::Ticker,
        "book" => MarketData::Book { depth: integer("depth")? },
        "trades" => MarketData::Trades { limit: integer("limit")? },
        _ => {
            let timeframes = || INTERVALS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ");
            let interval = match get("interval") {
                None => return Err(format!("candles needs interval, one of {}", timeframes())),
                Some(text) => INTERVALS
                    .iter()
                    .find(|(name, _)| *name == text)
                    .map(|(_, api)| *api)
                    .ok_or_else(|| format!("interval is one of {}, got {text:?}", timeframes()))?,
            };
            MarketData::Candles { interval, since_ms: millis("since")?, to_ms: millis("to")?, limit: integer("limit")? }
        }
    })
}

fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text).decode_utf8().ok().map(|text| text.into_owned())
}

/// The GraphQL document and variables that answer a request.
pub fn graphql(market: &str, request: &MarketData) -> (&'static str, Value) {
    let time = |ms: Option<u64>| ms.map(|ms| Value::String(crate::units::rfc3339(ms)));
    match request {
        MarketData::Ticker => (
            "query($market: ID!) { ticker(market: $market) { market at from lastPrice bestBid bestAsk open high low change changePercent volume quoteVolume vwap trades } }",
            json!({ "market": market }),
        ),
        MarketData::Book { depth } => (
            "query($market: ID!, $depth: Int) { orderBook(market: $market, depth: $depth) { market sequence bids { price quantity } asks { price quantity } } }",
            json!({ "market": market, "depth": depth }),
        ),
        MarketData::Trades { limit } => (
            "query($market: ID!, $limit: Int) { trades(market: $market, limit: $limit) { id price quantity takerSide createdAt } }",
            json!({ "market": market, "limit": limit }),
        ),
        MarketData::Candles { interval, since_ms, to_ms, limit } => (
            "query($market: ID!, $interval: CandleInterval!, $from: DateTime, $to: DateTime, $limit: Int) { \
             candles(market: $market, interval: $interval, from: $from, to: $to, limit: $limit) { time open high low close volume } }",
            json!({ "market": market, "interval": interval, "from": time(*since_ms), "to": time(*to_ms), "limit": limit }),
        ),
    }
}

/// The body a request's GraphQL data becomes.
pub fn reshape(request: &MarketData, data: Value) -> Value {
    let levels = |levels: &Value| Value::Array(levels.as_array().into_iter().flatten().map(|level| json!([level["price"], level["quantity"]])).collect());
    match request {
        MarketData::Ticker => data["ticker"].clone(),
        MarketData::Book { .. } => {
            let book = &data["orderBook"];
            json!({ "market": book["market"], "sequence": book["sequence"], "bids": levels(&book["bids"]), "asks": levels(&book["asks"]) })
        }
        MarketData::Trades { .. } => data["trades"].clone(),
        MarketData::Candles { .. } => Value::Array(
            data["candles"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let time = c["time"].as_str().and_then(crate::units::parse_rfc3339).map_or(Value::Null, Value::from);
                    json!([time, c["open"], c["high"], c["low"], c["close"], c["volume"]])
                })
                .collect(),
        ),
    }
}

/// The HTTP status for a GraphQL error's code.
pub fn status_of(code: Option<&str>) -> u16 {
    match code {
        Some("NOT_FOUND") => 404,
        Some("BAD_USER_INPUT") => 400,
        Some("RATE_LIMITED") => 429,
        _ => 503,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn paths_name_a_market_and_what_of_it() {
        assert_eq!(parse("/markets/BTC-USD/ticker", None), Some(Ok(("BTC-USD".into(), MarketData::Ticker))));
        assert_eq!(parse("/markets/BTC-USD/book", Some("depth=5")), Some(Ok(("BTC-USD".into(), MarketData::Book { depth: Some(5) }))));
        assert_eq!(
            parse("/markets/BTC%2DUSD/candles", Some("interval=1h&since=1000&limit=3")),
            Some(Ok(("BTC-USD".into(), MarketData::Candles { interval: "ONE_HOUR", since_ms: Some(1000), to_ms: None, limit: Some(3) })))
        );
        assert_eq!(parse("/markets", None), None);
        assert_eq!(parse("/markets/BTC-USD", None), None);
        assert_eq!(parse("/markets//ticker", None), None);
        assert_eq!(parse("/markets/BTC-USD/ticker/x", None), None);
        assert_eq!(parse("/markets/BTC-USD/volume", None), None);
    }

    #[test]
    fn wrong_parameters_say_what_is_expected() {
        let refused = |path: &str, query: &str| parse(path, Some(query)).expect("market data").expect_err("refused");
        assert!(refused("/markets/BTC-USD/candles", "").contains("needs interval, one of 1m, 5m, 15m, 1h, 4h, 1d, 1w"));
        assert!(refused("/markets/BTC-USD/candles", "interval=2m").contains("interval is one of"));
        assert!(refused("/markets/BTC-USD/candles", "interval=1m&since=yesterday").contains("milliseconds since 1970"));
        assert!(refused("/markets/BTC-USD/book", "depth=many").contains("whole number"));
        assert!(refused("/markets/BTC-USD/book", "levels=5").contains("book takes depth, got levels"));
        assert!(refused("/markets/BTC-USD/ticker", "x=1").contains("ticker takes no parameters"));
    }

    #[test]
    fn candles_become_arrays_of_time_and_decimal_strings() {
        let request = MarketData::Candles { interval: "ONE_MINUTE", since_ms: None, to_ms: None, limit: None };
        let data =
            json!({ "candles": [{ "time": "2026-12-07T00:01:00.000Z", "open": "100", "high": "104.5", "low": "99", "close": "103", "volume": "0.03" }] });
        assert_eq!(reshape(&request, data), json!([[1_796_601_660_000u64, "100", "104.5", "99", "103", "0.03"]]));
        let book = json!({ "orderBook": { "market": "BTC-USD", "sequence": "7", "bids": [{ "price": "99", "quantity": "1" }], "asks": [] } });
        assert_eq!(reshape(&MarketData::Book { depth: None }, book), json!({ "market": "BTC-USD", "sequence": "7", "bids": [["99", "1"]], "asks": [] }));
    }

    proptest! {
        /// Any path and query string parses or is refused, never panics, and
        /// what parses names a known request.
        #[test]
        fn any_path_parses_or_is_refused(path in "/markets/[A-Za-z0-9%/._-]{0,20}", query in proptest::option::of("[a-z0-9=&%.:-]{0,40}")) {
            if let Some(Ok((market, request))) = parse(&path, query.as_deref()) {
                prop_assert!(!market.is_empty());
                let (document, variables) = graphql(&market, &request);
                prop_assert!(document.starts_with("query"));
                prop_assert_eq!(&variables["market"], &json!(market));
            }
        }
    }
}
