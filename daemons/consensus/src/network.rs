//! Raft's messages between replicas, over TCP.
//!
//! A connection opens with a [`Hello`] naming the cluster, the sender and
//! the replica it meant to reach; the receiver answers whether it is that
//! replica of that cluster, so a replica moved to another address, or a
//! host of another cluster, is refused at once rather than answering votes.
//! Then each request is one frame and its answer one frame: a frame is a
//! little-endian u32 length and a postcard body, at most
//! [`FRAME_BYTES_MAX`]. A sender keeps one connection per peer and drops it
//! on any error or time-out (openraft retries); the receiver serves each
//! connection on its own task, at most [`CONNECTIONS_MAX`] at once.
//!
//! With the site's link certificates (`link::LinkTls`, `[link]` in
//! ledger.toml) every connection is mutual TLS 1.3 and both ends must show
//! a certificate for the ledger's role: a gateway's or a test's certificate
//! cannot speak Raft. Without them it runs in clear, which the daemon
//! allows on loopback only, as its other links.
//!
//! Pure framing is apart from the sockets ([`encode_frame`],
//! [`decode_frame`]) so that it is property-tested on any bytes.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use link::{CertifiedRole, LinkTls};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, Raft, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::NodeId;

/// The largest frame either side sends or takes: an append of entries or a
/// snapshot chunk (openraft's chunks are far smaller), with room.
pub const FRAME_BYTES_MAX: usize = 64 << 20;
/// Connections a replica serves at once (its peers, each reconnecting).
pub const CONNECTIONS_MAX: usize = 64;
/// How long a connection and its hello may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("a frame of {bytes} bytes is over the limit of {FRAME_BYTES_MAX}")]
    TooLarge { bytes: usize },
    #[error("a frame cannot be decoded: {0}")]
    Undecodable(String),
}

/// Appends `message` as one frame.
pub fn encode_frame(message: &impl Serialize, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let encoded = postcard::to_extend(message, std::mem::take(out)).map_err(|e| FrameError::Undecodable(e.to_string()))?;
    *out = encoded;
    let bytes = out.len() - start - 4;
    if bytes > FRAME_BYTES_MAX {
        out.truncate(start);
        return Err(FrameError::TooLarge { bytes });
    }
    out[start..start + 4].copy_from_slice(&(bytes as u32).to_le_bytes());
    Ok(())
}

/// The length a frame's four-byte header announces, if within the limit.
pub fn frame_length(header: [u8; 4]) -> Result<usize, FrameError> {
    let bytes = u32::from_le_bytes(header) as usize;
    if bytes > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge { bytes });
    }
    Ok(bytes)
}

/// A frame's body, decoded.
pub fn decode_frame<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    match postcard::take_from_bytes(body) {
        Ok((message, [])) => Ok(message),
        Ok((_, rest)) => Err(FrameError::Undecodable(format!("{} bytes after the message", rest.len()))),
        Err(error) => Err(FrameError::Undecodable(error.to_string())),
    }
}

/// What a connection opens with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub cluster: String,
    pub from: NodeId,
    pub to: NodeId,
}

/// The receiver's answer to a [`Hello`]: `None` when it is the replica
/// meant, or why not.
pub type HelloAnswer = Option<String>;

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Request<C: RaftTypeConfig> {
    AppendEntries(AppendEntriesRequest<C>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<C>),
}

#[derive(Serialize, Deserialize)]
pub enum Answer {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
}

/// A connection's bytes, in clear or through TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}
type Stream = Box<dyn Io>;

async fn read_frame<T: DeserializeOwned>(stream: &mut (impl AsyncRead + Unpin), buffer: &mut Vec<u8>) -> std::io::Result<T> {
    let mut header = [0; 4];
    stream.read_exact(&mut header).await?;
    let length = frame_length(header).map_err(std::io::Error::other)?;
    buffer.resize(length, 0);
    stream.read_exact(buffer).await?;
    decode_frame(buffer).map_err(std::io::Error::other)
}

async fn write_frame(stream: &mut (impl AsyncWrite + Unpin), message: &impl Serialize, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    buffer.clear();
    encode_frame(message, buffer).map_err(std::io::Error::other)?;
    stream.write_all(buffer).await
}

/// Serves the replica `raft` of `cluster` on `listener` until the task is
/// dropped; with `tls`, only to peers showing a ledger's certificate.
/// Dropping it closes every connection it accepted: a stopped replica must
/// not go on answering, or a peer keeps a connection to it that only ever
/// says Raft stopped (seen in a test that restarted a replica in process).
pub async fn serve<C>(listener: TcpListener, cluster: String, id: NodeId, raft: Raft<C>, tls: Option<LinkTls>)
where
    C: RaftTypeConfig<NodeId = NodeId>,
{
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    // Aborted, with their sockets closed, when this future is dropped.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a replica's connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = CONNECTIONS_MAX, "too many replica connections; refusing one");
            continue;
        };
        let (raft, cluster, tls) = (raft.clone(), cluster.clone(), tls.clone());
        connections.spawn(async move {
            let _ = stream.set_nodelay(true);
            let stream: Stream = match tls {
                None => Box::new(stream),
                Some(tls) => match tls.accept_async(stream).await {
                    Ok((stream, CertifiedRole::Ledger, _)) => Box::new(stream),
                    Ok((_, role, subject)) => {
                        tracing::warn!(%peer, %role, subject, "refused a Raft connection: only a ledger's certificate may speak Raft");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%peer, %error, "refused a Raft connection");
                        return;
                    }
                },
            };
            if let Err(error) = serve_connection(stream, &cluster, id, raft).await {
                if error.kind() != std::io::ErrorKind::UnexpectedEof {
                    tracing::debug!(%peer, %error, "replica connection closed");
                }
            }
            drop(permit);
        });
    }
}

async fn serve_connection<C>(mut stream: Stream, cluster: &str, id: NodeId, raft: Raft<C>) -> std::io::Result<()>
where
    C: RaftTypeConfig<NodeId = NodeId>,
{
    let mut buffer = Vec::new();
    let hello: Hello = tokio::time::timeout(CONNECT_TIMEOUT, read_frame(&mut stream, &mut buffer)).await.map_err(|_| std::io::ErrorKind::TimedOut)??;
    let refusal = if hello.cluster != cluster {
        Some(format!("this is a replica of cluster {cluster:?}, not {:?}", hello.cluster))
    } else if hello.to != id {
        Some(format!("this is replica {id}, not {}: check cluster.toml's addresses", hello.to))
    } else {
        None
    };
    write_frame(&mut stream, &refusal, &mut buffer).await?;
    if let Some(refusal) = refusal {
        tracing::warn!(from = hello.from, %refusal, "refused a replica's connection");
        return Ok(());
    }
    loop {
        let request: Request<C> = read_frame(&mut stream, &mut buffer).await?;
        let answer = match request {
            Request::AppendEntries(request) => Answer::AppendEntries(raft.append_entries(request).await),
            Request::Vote(request) => Answer::Vote(raft.vote(request).await),
            Request::InstallSnapshot(request) => Answer::InstallSnapshot(raft.install_snapshot(request).await),
        };
        write_frame(&mut stream, &answer, &mut buffer).await?;
    }
}

/// openraft's network: one [`Connection`] per peer, made when first needed.
#[derive(Clone)]
pub struct Network {
    pub cluster: String,
    pub id: NodeId,
    /// The site's link certificates: mutual TLS to every peer, which must show a ledger's.
    pub tls: Option<LinkTls>,
}

impl<C> RaftNetworkFactory<C> for Network
where
    C: RaftTypeConfig<NodeId = NodeId, Node = BasicNode>,
{
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            hello: Hello { cluster: self.cluster.clone(), from: self.id, to: target },
            address: node.addr.clone(),
            tls: self.tls.clone(),
            stream: None,
            buffer: Vec::new(),
        }
    }
}

pub struct Connection {
    hello: Hello,
    address: String,
    tls: Option<LinkTls>,
    stream: Option<Stream>,
    buffer: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("replica {to} at {address} refused the connection: {reason}")]
struct Refused {
    to: NodeId,
    address: String,
    reason: String,
}

impl Connection {
    async fn connect(&mut self) -> Result<Stream, Unreachable> {
        let connecting = async {
            let tcp = TcpStream::connect(&self.address).await?;
            tcp.set_nodelay(true)?;
            let mut stream: Stream = match &self.tls {
                None => Box::new(tcp),
                Some(tls) => Box::new(tls.connect_async(tcp, &self.address, CertifiedRole::Ledger).await?),
            };
            write_frame(&mut stream, &self.hello, &mut self.buffer).await?;
            let answer: HelloAnswer = read_frame(&mut stream, &mut self.buffer).await?;
            Ok::<_, std::io::Error>((stream, answer))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => Err(Unreachable::new(&std::io::Error::from(std::io::ErrorKind::TimedOut))),
            Ok(Err(error)) => Err(Unreachable::new(&error)),
            Ok(Ok((_, Some(reason)))) => Err(Unreachable::new(&Refused { to: self.hello.to, address: self.address.clone(), reason })),
            Ok(Ok((stream, None))) => Ok(stream),
        }
    }

    /// Sends `request` and waits for its answer within `ttl`; any failure drops the connection.
    async fn call<C, E>(&mut self, request: Request<C>, ttl: Duration) -> Result<Answer, RPCError<NodeId, BasicNode, E>>
    where
        C: RaftTypeConfig<NodeId = NodeId>,
        E: std::error::Error,
    {
        let action = match &request {
            Request::AppendEntries(_) => RPCTypes::AppendEntries,
            Request::Vote(_) => RPCTypes::Vote,
            Request::InstallSnapshot(_) => RPCTypes::InstallSnapshot,
        };
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => self.connect().await?,
        };
        let exchange = async {
            write_frame(&mut stream, &request, &mut self.buffer).await?;
            read_frame::<Answer>(&mut stream, &mut self.buffer).await
        };
        match tokio::time::timeout(ttl, exchange).await {
            Err(_) => Err(RPCError::Timeout(Timeout { action, id: self.hello.from, target: self.hello.to, timeout: ttl })),
            Ok(Err(error)) => Err(RPCError::Network(NetworkError::new(&error))),
            Ok(Ok(answer)) => {
                self.stream = Some(stream);
                Ok(answer)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("replica {0} answered a request with another kind of answer")]
struct Mismatched(NodeId);

impl<C> RaftNetwork<C> for Connection
where
    C: RaftTypeConfig<NodeId = NodeId, Node = BasicNode>,
{
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(Request::AppendEntries(request), option.hard_ttl()).await? {
            Answer::AppendEntries(answer) => answer.map_err(|error| RPCError::RemoteError(RemoteError::new(self.hello.to, error))),
            _ => Err(RPCError::Network(NetworkError::new(&Mismatched(self.hello.to)))),
        }
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>> {
        match self.call(Request::InstallSnapshot(request), option.hard_ttl()).await? {
            Answer::InstallSnapshot(answer) => answer.map_err(|error| RPCError::RemoteError(RemoteError::new(self.hello.to, error))),
            _ => Err(RPCError::Network(NetworkError::new(&Mismatched(self.hello.to)))),
        }
    }

    async fn vote(&mut self, request: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(Request::<C>::Vote(request), option.hard_ttl()).await? {
            Answer::Vote(answer) => answer.map_err(|error| RPCError::RemoteError(RemoteError::new(self.hello.to, error))),
            _ => Err(RPCError::Network(NetworkError::new(&Mismatched(self.hello.to)))),
        }
    }
}

impl Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection to {} at {}", self.hello.to, self.address)
    }
}
