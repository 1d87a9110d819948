//! The gateway's read-only connection to matching: order book depth on
//! request. Orders never go this way; they go through the ledger, which
//! holds the money first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use link::{CertifiedRole, LinkTls};
use matching_api::MarketId;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use wire::{BookDepth, Message};

use crate::config::MatchingLinkConfig;
use crate::ledger_client::{connect, greet, read_sequenced, Greeted, LinkError};

struct Request {
    market: MarketId,
    levels: u32,
    reply: oneshot::Sender<Option<BookDepth>>,
}

#[derive(Clone)]
pub struct MatchingClient {
    requests: mpsc::Sender<Request>,
    timeout: Duration,
}

impl MatchingClient {
    pub fn start(config: MatchingLinkConfig, tls: Option<LinkTls>) -> MatchingClient {
        let (requests, receiver) = mpsc::channel(1_024);
        let client = MatchingClient { requests, timeout: Duration::from_millis(config.request_timeout_ms) };
        tokio::spawn(run(config, tls, receiver));
        client
    }

    /// The book's aggregated levels; `None` for a market matching does not have.
    pub async fn depth(&self, market: MarketId, levels: u32) -> Result<Option<BookDepth>, LinkError> {
        let (reply, answer) = oneshot::channel();
        self.requests.try_send(Request { market, levels, reply }).map_err(|_| LinkError::Busy)?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(depth)) => Ok(depth),
            Ok(Err(_)) => Err(LinkError::Unavailable),
            Err(_) => Err(LinkError::Timeout),
        }
    }
}

async fn run(config: MatchingLinkConfig, tls: Option<LinkTls>, mut requests: mpsc::Receiver<Request>) {
    let mut warned = false;
    loop {
        match connect(&config.address, tls.as_ref(), CertifiedRole::Matching).await {
            Ok(stream) => {
                warned = false;
                let error = serve(&config, stream, &mut requests).await;
                tracing::warn!(%error, "matching connection lost; reconnecting");
            }
            Err(error) => {
                if !warned {
                    tracing::warn!(address = %config.address, %error, "cannot reach matching; orderBook answers UNAVAILABLE until it is back");
                    warned = true;
                }
                while requests.try_recv().is_ok() {}
            }
        }
        tokio::time::sleep(Duration::from_millis(config.reconnect_ms)).await;
    }
}

async fn serve(config: &MatchingLinkConfig, stream: Box<dyn crate::ledger_client::Duplex>, requests: &mut mpsc::Receiver<Request>) -> std::io::Error {
    let Greeted { mut reader, mut writer, mut buffer, .. } = match greet(stream, config.peer_id, false).await {
        Ok(greeted) => greeted,
        Err(error) => return error,
    };
    let mut frames = Vec::new();
    let waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Option<BookDepth>>>>> = Arc::default();
    let receiving = {
        let waiting = waiting.clone();
        async move {
            loop {
                match read_sequenced(&mut reader, &mut buffer).await {
                    Ok((request, Message::Depth(depth))) => {
                        if let Some(waiter) = waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&request) {
                            let _ = waiter.send(depth);
                        }
                    }
                    Ok((_, Message::Error { code, detail })) => return std::io::Error::other(format!("matching refused us: {code}: {detail}")),
                    Ok(_) => {}
                    Err(error) => return error,
                }
            }
        }
    };
    let sending = async {
        let mut next = 1u64;
        while let Some(request) = requests.recv().await {
            waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(next, request.reply);
            frames.clear();
            wire::encode_frame(next, &Message::DepthQuery { market: request.market, levels: request.levels }, &mut frames);
            next += 1;
            if let Err(error) = writer.write_all(&frames).await {
                return error;
            }
        }
        std::io::Error::other("the gateway is stopping")
    };
    tokio::select! {
        error = receiving => error,
        error = sending => error,
    }
}
