//! Replicas over real TCP sockets: the framing on any bytes, a hello to the
//! wrong replica or cluster refused, and three replicas on loopback that
//! lose their leader (stopped, its socket closed), elect another, go on,
//! and take the old one back on its directory, where it catches up.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{shipped_raft_config, Config, Machine, PATIENCE_POLLS};
use consensus::network::{self, decode_frame, encode_frame, frame_length, FrameError, Hello, HelloAnswer, Network, FRAME_BYTES_MAX};
use consensus::LogStore;
use journal::Content;
use link::{CertifiedRole, LinkConfig, LinkTls};
use openraft::{BasicNode, Raft};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const CONTENT: Content = Content { kind: *b"TRFT", version: 1 };
const CLUSTER: &str = "test-cluster";

proptest! {
    /// Any bytes as a frame's body: decoded or refused, never a panic; a
    /// hello encoded comes back equal.
    #[test]
    fn frames_decode_or_refuse_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..64), from in any::<u64>(), to in any::<u64>(), cluster in ".{0,20}") {
        let _ = decode_frame::<Hello>(&body);
        let _ = decode_frame::<network::Request<Config>>(&body);
        let _ = decode_frame::<network::Answer>(&body);
        let hello = Hello { cluster, from, to };
        let mut bytes = Vec::new();
        encode_frame(&hello, &mut bytes).unwrap();
        let length = frame_length(bytes[..4].try_into().unwrap()).unwrap();
        prop_assert_eq!(length, bytes.len() - 4);
        prop_assert_eq!(decode_frame::<Hello>(&bytes[4..]).unwrap(), hello);
    }
}

#[test]
fn a_frame_over_the_limit_is_refused_by_its_header() {
    let header = ((FRAME_BYTES_MAX + 1) as u32).to_le_bytes();
    assert_eq!(frame_length(header), Err(FrameError::TooLarge { bytes: FRAME_BYTES_MAX + 1 }));
    assert!(matches!(decode_frame::<Hello>(&[]), Err(FrameError::Undecodable(_))));
}

struct Replica {
    raft: Raft<Config>,
    machine: Machine,
    server: JoinHandle<()>,
    elections: JoinHandle<()>,
}

async fn start(id: u64, dir: &std::path::Path, listener: TcpListener, tls: Option<LinkTls>) -> Replica {
    let (store, _) = LogStore::open(dir, CONTENT).unwrap();
    let machine = Machine::default();
    let network = Network { cluster: CLUSTER.into(), id, tls: tls.clone() };
    let config = shipped_raft_config(CLUSTER);
    let raft = Raft::new(id, config.clone(), network, store, machine.clone()).await.unwrap();
    let server = tokio::spawn(network::serve(listener, CLUSTER.into(), id, raft.clone(), tls));
    let watcher = raft.clone();
    let elections = tokio::spawn(async move { consensus::elections::break_split_votes(watcher, &config, id).await });
    Replica { raft, machine, server, elections }
}

async fn stop(replica: Replica) {
    replica.server.abort();
    replica.elections.abort();
    let _ = replica.server.await;
    replica.raft.shutdown().await.unwrap();
}

async fn leader_among(replicas: &BTreeMap<u64, Replica>, not: Option<u64>) -> u64 {
    for _ in 0..PATIENCE_POLLS {
        for replica in replicas.values() {
            if let Some(leader) = replica.raft.current_leader().await {
                if Some(leader) != not && replicas.contains_key(&leader) && replicas[&leader].raft.current_leader().await == Some(leader) {
                    return leader;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no leader elected");
}

async fn all_applied(replicas: &BTreeMap<u64, Replica>, expected: &[u64]) {
    for _ in 0..PATIENCE_POLLS {
        if replicas.values().all(|replica| replica.machine.applied() == expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for (id, replica) in replicas {
        assert_eq!(replica.machine.applied(), expected, "replica {id}");
    }
}

/// The site's link CA in `dir` and a certificate of `role` for 127.0.0.1 from it.
fn certificates(dir: &std::path::Path, role: CertifiedRole) -> LinkTls {
    let ca_dir = dir.join("ca");
    let ca_file = if ca_dir.exists() { ca_dir.join("ca.pem") } else { link::pki::init(&ca_dir, "test site").unwrap() };
    let issued = link::pki::issue(&ca_dir, role, &["127.0.0.1".to_string()], &dir.join(format!("issued-{role}"))).unwrap();
    let config = LinkConfig { ca_file, certificate_file: issued.certificate_file, private_key_file: issued.private_key_file, ..LinkConfig::default() };
    LinkTls::load(&config).unwrap().unwrap()
}

/// The clusters one at a time: their votes each sync a state file on both ends.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_over_tcp_survive_the_loss_of_their_leader_and_take_it_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    survive_the_loss_of_the_leader(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_over_mutual_tls_survive_the_loss_of_their_leader_and_take_it_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let pki = tempfile::tempdir().unwrap();
    survive_the_loss_of_the_leader(Some(certificates(pki.path(), CertifiedRole::Ledger))).await;
}

async fn survive_the_loss_of_the_leader(tls: Option<LinkTls>) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut listeners = Vec::new();
    let mut addresses: BTreeMap<u64, SocketAddr> = BTreeMap::new();
    for id in 1..=3u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addresses.insert(id, listener.local_addr().unwrap());
        listeners.push(listener);
    }
    let mut replicas = BTreeMap::new();
    for (id, listener) in (1..=3u64).zip(listeners) {
        replicas.insert(id, start(id, dirs[id as usize - 1].path(), listener, tls.clone()).await);
    }
    let members: BTreeMap<u64, BasicNode> = addresses.iter().map(|(id, address)| (*id, BasicNode::new(address.to_string()))).collect();
    replicas[&1].raft.initialize(members).await.unwrap();
    let leader = leader_among(&replicas, None).await;
    for number in 1..=10u64 {
        replicas[&leader].raft.client_write(number).await.unwrap();
    }
    all_applied(&replicas, &(1..=10).collect::<Vec<_>>()).await;

    // The leader goes: its socket closes with it.
    let old = replicas.remove(&leader).unwrap();
    stop(old).await;
    let stopped_at = std::time::Instant::now();
    let new_leader = leader_among(&replicas, Some(leader)).await;
    let mut first_ack = None;
    for number in 11..=15u64 {
        replicas[&new_leader].raft.client_write(number).await.unwrap();
        first_ack.get_or_insert(stopped_at.elapsed());
    }
    println!("from the leader's stop to the new leader's first acknowledgement: {:?}", first_ack.unwrap());
    all_applied(&replicas, &(1..=15).collect::<Vec<_>>()).await;

    // Back on its directory and address: it learns of the new term and catches up.
    let listener = TcpListener::bind(addresses[&leader]).await.unwrap();
    replicas.insert(leader, start(leader, dirs[leader as usize - 1].path(), listener, tls.clone()).await);
    replicas[&new_leader].raft.client_write(16).await.unwrap();
    all_applied(&replicas, &(1..=16).collect::<Vec<_>>()).await;
    for (_, replica) in replicas {
        stop(replica).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_to_another_replica_or_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let replica = start(7, dir.path(), listener, None).await;
    for (hello, refusal) in [
        (Hello { cluster: "another".into(), from: 1, to: 7 }, Some("not \"another\"")),
        (Hello { cluster: CLUSTER.into(), from: 1, to: 8 }, Some("this is replica 7, not 8")),
        (Hello { cluster: CLUSTER.into(), from: 1, to: 7 }, None),
    ] {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut bytes = Vec::new();
        encode_frame(&hello, &mut bytes).unwrap();
        stream.write_all(&bytes).await.unwrap();
        let mut header = [0; 4];
        stream.read_exact(&mut header).await.unwrap();
        let mut body = vec![0; frame_length(header).unwrap()];
        stream.read_exact(&mut body).await.unwrap();
        let answer: HelloAnswer = decode_frame(&body).unwrap();
        match (answer, refusal) {
            (None, None) => {}
            (Some(reason), Some(expected)) => assert!(reason.contains(expected), "{reason}"),
            (answer, expected) => panic!("{hello:?}: answered {answer:?}, expected {expected:?}"),
        }
    }
    // Garbage instead of a hello: the connection is dropped, the replica serves on.
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(&[0xff; 64]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await.expect("the connection is closed");
    assert!(rest.is_empty());
    assert!(TcpStream::connect(address).await.is_ok());
    stop(replica).await;
}

/// Under TLS only a ledger's certificate speaks Raft: a gateway's, signed
/// by the same CA, is dropped before its hello is read, and a client
/// without the site's certificates cannot complete the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_tls_only_a_ledgers_certificate_speaks_raft() {
    let pki = tempfile::tempdir().unwrap();
    let ledger = certificates(pki.path(), CertifiedRole::Ledger);
    let gateway = certificates(pki.path(), CertifiedRole::Gateway);
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let replica = start(7, dir.path(), listener, Some(ledger.clone())).await;
    let hello = Hello { cluster: CLUSTER.into(), from: 1, to: 7 };
    let mut bytes = Vec::new();
    encode_frame(&hello, &mut bytes).unwrap();
    for (who, tls, answered) in [("a ledger", &ledger, true), ("a gateway", &gateway, false)] {
        let tcp = TcpStream::connect(&address).await.unwrap();
        let mut stream = tls.connect_async(tcp, &address, CertifiedRole::Ledger).await.unwrap();
        // TLS 1.3: the server checks the client's certificate after the client's handshake ends, so a refusal shows on the first read.
        let _ = stream.write_all(&bytes).await;
        let mut header = [0; 4];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut header)).await.expect("answered or closed");
        assert_eq!(read.is_ok(), answered, "{who}");
    }
    // In clear, to a replica that speaks TLS: no hello is ever answered.
    let mut plain = TcpStream::connect(&address).await.unwrap();
    plain.write_all(&bytes).await.unwrap();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut received)).await.expect("closed");
    let mut welcome = Vec::new();
    encode_frame(&HelloAnswer::None, &mut welcome).unwrap();
    assert!(!received.starts_with(&welcome), "a hello in clear was answered: {received:?}");
    stop(replica).await;
}
