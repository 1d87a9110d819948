//! Market data for the orderBook and trades subscriptions, read once per
//! change however many clients listen.
//!
//! A market's feed runs while anyone subscribes to it. The ledger's order
//! updates say when the market changed: the feed then reads the book from
//! matching (at the deepest depth; each subscriber cuts its own) and, when
//! something filled, the new trades from the ledger, and hands both on. It
//! also reads both every `RESYNC` in case updates were lost with a dropped
//! ledger link. A market's ticker feed, for the ticker subscriptions, reads
//! the rolling 24 hours once for all of them when the market trades or its
//! book changes (at most once per `TICKER_INTERVAL`), and every
//! `TICKER_RESEND` as the window slides, and, on a perpetual market, when
//! its mark or index moves.
//!
//! The perpetual feed reads every perpetual market's mark, index and
//! funding once per `PERPETUAL_INTERVAL` while anyone listens (the ticker,
//! markPrice and positions subscriptions), and hands on a reading when a
//! figure shown changed (not the ledger's bookkeeping of samples): the
//! ledger moves marks on its own clock (each mark interval, each funding
//! time) and says nothing when it does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ledger_api::candles::DayStats;
use ledger_api::perpetual::{self, MarketView};
use ledger_api::spot::{self, OrderRecord, TradeRecord};
use ledger_api::{Answer, MarketId, Query};
use tokio::sync::{broadcast, watch};
use wire::BookDepth;

use crate::ledger_client::{LedgerClient, LinkError};
use crate::matching_client::MatchingClient;

/// How often a running feed reads the book and the trades without being told to.
const RESYNC: Duration = Duration::from_secs(2);
/// Trades a slow subscriber may fall behind by before its subscription ends.
const TRADES_BUFFERED: usize = 4_096;
/// A ticker feed reads at most once per this, however often the market trades.
const TICKER_INTERVAL: Duration = Duration::from_secs(1);
/// ... and at least once per this, as the 24 hours slide.
const TICKER_RESEND: Duration = Duration::from_secs(60);
/// How often the perpetual feed reads the marks: a quarter of the
/// shortest mark interval a market may have is not worth the reads; half
/// a second is what a screen shows.
const PERPETUAL_INTERVAL: Duration = Duration::from_millis(500);

pub struct Feeds {
    ledger: LedgerClient,
    matching: MatchingClient,
    running: Mutex<HashMap<MarketId, Weak<MarketFeed>>>,
    tickers: Mutex<HashMap<MarketId, Weak<TickerFeed>>>,
    perpetuals: Mutex<Weak<PerpetualFeed>>,
}

/// Every perpetual market as the ledger last showed it; the feed stops
/// when the last subscriber lets go of it.
pub struct PerpetualFeed {
    /// None until the first read.
    pub views: watch::Receiver<Option<Arc<Vec<MarketView>>>>,
    task: tokio::task::AbortHandle,
}

impl Drop for PerpetualFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A market's rolling 24 hours and the top of its book, in matching's units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TickerReading {
    pub now_ms: u64,
    /// None before the market's first trade.
    pub stats: Option<DayStats>,
    pub best_bid: Option<u64>,
    pub best_ask: Option<u64>,
    /// A perpetual market's mark price, in ticks; None on a spot market
    /// and before the first oracle price.
    pub mark: Option<u64>,
    /// A perpetual market's index, in ticks; None on a spot market and when stale.
    pub index: Option<u64>,
}

/// One market's ticker feed; it stops when the last subscriber lets go of it.
pub struct TickerFeed {
    /// None until the first reading.
    pub reading: watch::Receiver<Option<Arc<TickerReading>>>,
    task: tokio::task::AbortHandle,
    /// The market's feed, which says when it traded or its book changed.
    _market: Arc<MarketFeed>,
    /// On a perpetual market, what says when its mark or index moved.
    _perpetuals: Option<Arc<PerpetualFeed>>,
}

impl Drop for TickerFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One market's feed; it stops when the last subscriber lets go of it.
pub struct MarketFeed {
    /// None until the first read of the book.
    pub book: watch::Receiver<Option<Arc<BookDepth>>>,
    /// Each new trade, oldest first.
    pub trades: broadcast::Sender<Arc<TradeRecord>>,
    task: tokio::task::AbortHandle,
}

impl Drop for MarketFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feeds {
    pub fn new(ledger: LedgerClient, matching: MatchingClient) -> Feeds {
        Feeds { ledger, matching, running: Mutex::default(), tickers: Mutex::default(), perpetuals: Mutex::default() }
    }

    /// The running perpetual feed, started if none is.
    pub fn perpetuals(&self) -> Arc<PerpetualFeed> {
        let mut running = self.perpetuals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(feed) = running.upgrade() {
            return feed;
        }
        let (sender, views) = watch::channel(None);
        let task = tokio::spawn(run_perpetuals(self.ledger.clone(), sender)).abort_handle();
        let feed = Arc::new(PerpetualFeed { views, task });
        *running = Arc::downgrade(&feed);
        feed
    }

    /// The market's running ticker feed, started if none is; `perpetual`
    /// says the market is one (its ticker then carries the mark and index).
    pub async fn ticker(&self, market: MarketId, perpetual: bool) -> Result<Arc<TickerFeed>, LinkError> {
        let running = self.tickers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&market).and_then(Weak::upgrade);
        if let Some(feed) = running {
            return Ok(feed);
        }
        let market_feed = self.market(market).await?;
        let mut tickers = self.tickers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another subscriber may have started it meanwhile.
        if let Some(feed) = tickers.get(&market).and_then(Weak::upgrade) {
            return Ok(feed);
        }
        tickers.retain(|_, feed| feed.strong_count() > 0);
        let (sender, reading) = watch::channel(None);
        let (trades, book) = (market_feed.trades.subscribe(), market_feed.book.clone());
        let perpetuals = perpetual.then(|| self.perpetuals());
        let marks = perpetuals.as_ref().map(|feed| feed.views.clone());
        let task = tokio::spawn(run_ticker(market, self.ledger.clone(), trades, book, marks, sender)).abort_handle();
        let feed = Arc::new(TickerFeed { reading, task, _market: market_feed, _perpetuals: perpetuals });
        tickers.insert(market, Arc::downgrade(&feed));
        Ok(feed)
    }

    /// The market's running feed, started if none is. Starting one reads
    /// the newest trade id first: trades after it are handed on, and a
    /// subscriber's own snapshot, read after this returns, covers the rest.
    pub async fn market(&self, market: MarketId) -> Result<Arc<MarketFeed>, LinkError> {
        if let Some(feed) = self.running(market) {
            return Ok(feed);
        }
        // Listening before the newest trade and the book are read, so no change falls between.
        let updates = self.ledger.order_updates();
        let newest = newest_trades(&self.ledger, market, 1).await.ok_or(LinkError::Unavailable)?;
        let trade_last = newest.first().map_or(0, |t| t.id);
        let mut running = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another subscriber may have started it meanwhile.
        if let Some(feed) = running.get(&market).and_then(Weak::upgrade) {
            return Ok(feed);
        }
        running.retain(|_, feed| feed.strong_count() > 0);
        let (book_sender, book) = watch::channel(None);
        let (trades, _) = broadcast::channel(TRADES_BUFFERED);
        let task = tokio::spawn(run(market, trade_last, self.ledger.clone(), self.matching.clone(), updates, book_sender, trades.clone())).abort_handle();
        let feed = Arc::new(MarketFeed { book, trades, task });
        running.insert(market, Arc::downgrade(&feed));
        Ok(feed)
    }

    fn running(&self, market: MarketId) -> Option<Arc<MarketFeed>> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&market).and_then(Weak::upgrade)
    }
}

/// What a batch of order updates means for one market.
struct Touched {
    book: bool,
    trades: bool,
}

fn touched(batch: &[OrderRecord], market: MarketId) -> Touched {
    let mine = || batch.iter().filter(|o| o.order.market == market);
    Touched { book: mine().next().is_some(), trades: mine().any(|o| o.filled > 0) }
}

async fn run(
    market: MarketId,
    mut trade_last: u64,
    ledger: LedgerClient,
    matching: MatchingClient,
    mut updates: broadcast::Receiver<Arc<Vec<OrderRecord>>>,
    book: watch::Sender<Option<Arc<BookDepth>>>,
    trades: broadcast::Sender<Arc<TradeRecord>>,
) {
    let mut change = Touched { book: true, trades: false };
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        if change.book {
            read_book(&matching, market, &book).await;
        }
        if change.trades {
            if let Some(mut newest) = newest_trades(&ledger, market, ledger_api::QUERY_LIMIT_MAX).await {
                newest.retain(|t| t.id > trade_last);
                newest.sort_by_key(|t| t.id);
                if newest.len() == ledger_api::QUERY_LIMIT_MAX as usize {
                    tracing::warn!(market, "more trades than one read returns since the last read; subscribers may miss some");
                }
                for trade in newest {
                    trade_last = trade.id;
                    // No subscriber right now is not an error.
                    let _ = trades.send(Arc::new(trade));
                }
            }
        }
        change = tokio::select! {
            update = updates.recv() => match update {
                Ok(batch) => touched(&batch, market),
                Err(broadcast::error::RecvError::Lagged(_)) => Touched { book: true, trades: true },
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = resync.tick() => Touched { book: true, trades: true },
        };
    }
}

/// The book now; an unreachable matching keeps the last one (the next change or resync reads again).
async fn read_book(matching: &MatchingClient, market: MarketId, book: &watch::Sender<Option<Arc<BookDepth>>>) {
    let depth = match matching.depth(market, wire::DEPTH_LEVELS_MAX).await {
        Ok(Some(depth)) => depth,
        // A market the ledger has but matching has not yet added is an empty book.
        Ok(None) => BookDepth { market, output_last: 0, bids: Vec::new(), asks: Vec::new() },
        Err(error) => {
            tracing::debug!(market, %error, "the book could not be read");
            return;
        }
    };
    book.send_if_modified(|current| {
        let changed = current.as_deref().is_none_or(|c| c.bids != depth.bids || c.asks != depth.asks);
        if changed {
            *current = Some(Arc::new(depth));
        }
        changed
    });
}

async fn newest_trades(ledger: &LedgerClient, market: MarketId, limit: u32) -> Option<Vec<TradeRecord>> {
    match ledger.query(Query::Spot(spot::Query::MarketTrades { market, limit })).await {
        Ok(Ok(Answer::Spot(spot::Answer::Trades(trades)))) => Some(trades),
        other => {
            tracing::debug!(market, answer = ?other.map(|a| a.map(|_| ())), "the trades could not be read");
            None
        }
    }
}

/// A perpetual market's mark and index in `views`, in ticks.
pub fn mark_and_index(views: &[MarketView], market: MarketId) -> (Option<u64>, Option<u64>) {
    views.iter().find(|view| view.record.spec.market == market).map_or((None, None), |view| (view.record.mark, view.index))
}

/// Reads the market's ticker now, then after each trade or change of the
/// book, or of the mark on a perpetual market (at most once per
/// `TICKER_INTERVAL`), and every `TICKER_RESEND`.
async fn run_ticker(
    market: MarketId,
    ledger: LedgerClient,
    mut trades: broadcast::Receiver<Arc<TradeRecord>>,
    mut book: watch::Receiver<Option<Arc<BookDepth>>>,
    mut marks: Option<watch::Receiver<Option<Arc<Vec<MarketView>>>>>,
    reading: watch::Sender<Option<Arc<TickerReading>>>,
) {
    loop {
        let now_ms = crate::api::now_ms();
        match ledger.query(Query::Spot(spot::Query::DayStats { market, now_ms })).await {
            Ok(Ok(Answer::Spot(spot::Answer::DayStats(stats)))) => {
                let top = book.borrow_and_update().clone();
                let best = |levels: Option<&Vec<matching_api::PriceLevel>>| levels.and_then(|l| l.first()).map(|l| l.price);
                let (best_bid, best_ask) = (best(top.as_ref().map(|b| &b.bids)), best(top.as_ref().map(|b| &b.asks)));
                let views = marks.as_mut().and_then(|marks| marks.borrow_and_update().clone());
                let (mark, index) = views.map_or((None, None), |views| mark_and_index(&views, market));
                // Sent every time: its time is new, and each subscriber sends only what changed.
                reading.send_replace(Some(Arc::new(TickerReading { now_ms, stats, best_bid, best_ask, mark, index })));
            }
            other => tracing::debug!(market, answer = ?other.map(|a| a.map(|_| ())), "the ticker could not be read"),
        }
        tokio::time::sleep(TICKER_INTERVAL).await;
        let marked = async {
            match marks.as_mut() {
                Some(marks) => marks.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            trade = trades.recv() => if let Err(broadcast::error::RecvError::Closed) = trade { return },
            changed = book.changed() => if changed.is_err() { return },
            changed = marked => if changed.is_err() { return },
            _ = tokio::time::sleep(TICKER_RESEND) => {}
        }
        // One reading covers every trade queued meanwhile.
        while !matches!(trades.try_recv(), Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)) {}
    }
}

/// Reads every perpetual market now and each `PERPETUAL_INTERVAL`, and
/// hands the reading on when it differs from the last; an unreachable
/// ledger keeps the last one.
async fn run_perpetuals(ledger: LedgerClient, views: watch::Sender<Option<Arc<Vec<MarketView>>>>) {
    let mut every = tokio::time::interval(PERPETUAL_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now_ms = crate::api::now_ms();
        match ledger.query(Query::Spot(spot::Query::Perpetual(perpetual::Query::Markets { now_ms }))).await {
            Ok(Ok(Answer::Spot(spot::Answer::Perpetual(perpetual::Answer::Markets(read))))) => {
                views.send_if_modified(|current| {
                    // The ledger's tick moves its bookkeeping (samples, the
                    // time of the tick) every second; subscribers hear of
                    // what they show.
                    let changed = current.as_deref().is_none_or(|current| figures(current) != figures(&read));
                    if changed {
                        *current = Some(Arc::new(read));
                    }
                    changed
                });
            }
            other => tracing::debug!(answer = ?other.map(|a| a.map(|_| ())), "the perpetual markets could not be read"),
        }
    }
}

/// What subscribers show of the perpetual markets: mark, index, funding,
/// fund, open interest and last trade.
type Figures = (MarketId, Option<u64>, Option<u64>, i64, i64, u64, i128, u64, Option<u64>);

fn figures(views: &[MarketView]) -> Vec<Figures> {
    views
        .iter()
        .map(|view| {
            let record = &view.record;
            (
                record.spec.market,
                record.mark,
                view.index,
                view.predicted_rate_ppb,
                record.funding_rate_ppb,
                record.next_funding_ms,
                view.insurance,
                record.open_interest,
                record.last_trade,
            )
        })
        .collect()
}
