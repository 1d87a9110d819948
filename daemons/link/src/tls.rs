//! Mutual TLS for `tcp:` links. Both ends show a certificate signed by the
//! site's link CA; the server takes the client's role from its certificate,
//! and the client checks that the server's names the daemon it meant to
//! reach. TLS 1.3 only: both ends are ours.
//!
//! The daemons' connection code is blocking and shares one socket between a
//! reader and a writer thread, which a TLS session cannot be split into. So
//! a TLS link is carried by a small async task (tokio-rustls on one runtime
//! thread) that relays plaintext to a Unix socket pair, and the daemon gets
//! the pair's other end as an ordinary [`Stream`]. The gateway, async
//! already, uses [`LinkTls::connect_async`] directly.

use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::net::Stream;
use crate::peers::{CertifiedRole, LinkConfig, Peer, PeerError};

/// Where a certificate carries its role.
pub const ROLE_URI_PREFIX: &str = "urn:marionette:role:";

/// How long a peer has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{0}")]
    Config(String),
}

/// One daemon's TLS material for its links, both ways.
#[derive(Clone)]
pub struct LinkTls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkTls")
    }
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), reason: reason.to_string() }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain: Vec<_> = CertificateDer::pem_file_iter(path).map_err(|e| file_error(path, e))?.collect::<Result<_, _>>().map_err(|e| file_error(path, e))?;
    if chain.is_empty() {
        return Err(file_error(path, "no CERTIFICATE block in it"));
    }
    Ok(chain)
}

impl LinkTls {
    /// Reads the CA, the certificate and the key named in `[link]`; `None`
    /// when they are not configured (Unix sockets only).
    pub fn load(config: &LinkConfig) -> Result<Option<LinkTls>, TlsError> {
        if !config.has_tls() {
            return Ok(None);
        }
        let mut roots = RootCertStore::empty();
        for ca in certificates(&config.ca_file)? {
            roots.add(ca).map_err(|e| file_error(&config.ca_file, e))?;
        }
        let chain = certificates(&config.certificate_file)?;
        role_of(&chain[0]).map_err(|e| file_error(&config.certificate_file, e))?;
        let key = PrivateKeyDer::from_pem_file(&config.private_key_file).map_err(|e| file_error(&config.private_key_file, e))?;
        LinkTls::new(roots, chain, key).map(Some)
    }

    pub fn new(roots: RootCertStore, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<LinkTls, TlsError> {
        let crypto = Arc::new(provider::default_provider());
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), crypto.clone()).build().map_err(|e| TlsError::Config(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(crypto.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError::Config(format!("the certificate and its key: {e}")))?;
        let client = rustls::ClientConfig::builder_with_provider(crypto)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("the certificate and its key: {e}")))?;
        Ok(LinkTls { server: Arc::new(server), client: Arc::new(client) })
    }

    /// The server side: completes the handshake and says who the peer is.
    pub fn accept(&self, tcp: std::net::TcpStream) -> Result<(Stream, Peer), PeerError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server.clone());
        let runtime = runtime().map_err(PeerError::Handshake)?;
        runtime.block_on(async move {
            let tcp = async_tcp(tcp).map_err(PeerError::Handshake)?;
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
                .map_err(|_| PeerError::Handshake(io::Error::new(io::ErrorKind::TimedOut, "no handshake within 10 s")))?
                .map_err(PeerError::Handshake)?;
            let (role, subject) = peer_role(tls.get_ref().1.peer_certificates())?;
            let stream = relay(tls).map_err(PeerError::Handshake)?;
            Ok((stream, Peer::Certified { role, subject }))
        })
    }

    /// The server side for async callers: completes the handshake on an
    /// open TCP stream and says which role the peer's certificate gives it
    /// and its subject.
    pub async fn accept_async<S>(&self, tcp: S) -> Result<(tokio_rustls::server::TlsStream<S>, CertifiedRole, String), PeerError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server.clone());
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| PeerError::Handshake(io::Error::new(io::ErrorKind::TimedOut, "no handshake within 10 s")))?
            .map_err(PeerError::Handshake)?;
        let (role, subject) = peer_role(tls.get_ref().1.peer_certificates())?;
        Ok((tls, role, subject))
    }

    /// The client side, blocking: connects to `host_port` and checks that
    /// the server's certificate is for `expected`.
    pub fn connect(&self, host_port: &str, expected: CertifiedRole) -> io::Result<Stream> {
        let runtime = runtime()?;
        runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(host_port).await?;
            tcp.set_nodelay(true)?;
            relay(self.connect_async(tcp, host_port, expected).await?)
        })
    }

    /// The client side over an open TCP stream, for async callers.
    pub async fn connect_async<S>(&self, tcp: S, host_port: &str, expected: CertifiedRole) -> io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = server_name(host_port)?;
        let connector = tokio_rustls::TlsConnector::from(self.client.clone());
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no TLS handshake with {host_port} within 10 s")))??;
        let (found, _) = peer_role(tls.get_ref().1.peer_certificates()).map_err(io::Error::other)?;
        if found != expected {
            return Err(io::Error::other(PeerError::WrongRole { expected, found }));
        }
        Ok(tls)
    }
}

/// `host` of `host:port` (IPv6 in brackets) as the name the server's
/// certificate must carry.
fn server_name(host_port: &str) -> io::Result<ServerName<'static>> {
    let host = host_port.rsplit_once(':').map(|(host, _)| host).unwrap_or(host_port);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?} is not a host name or address: {e}")))
}

fn peer_role(certificates: Option<&[CertificateDer<'_>]>) -> Result<(CertifiedRole, String), PeerError> {
    let leaf = certificates.and_then(|chain| chain.first()).ok_or(PeerError::NoRole)?;
    let role = role_of(leaf).map_err(|_| PeerError::NoRole)?;
    Ok((role, subject_of(leaf)))
}

/// The one role a certificate names; an error says what is wrong with it.
/// A parser of bytes from the network: it never panics (see the fuzz test).
pub fn role_of(certificate: &[u8]) -> Result<CertifiedRole, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let names = parsed.subject_alternative_name().map_err(|e| format!("a malformed subjectAltName: {e}"))?;
    let mut roles = names.into_iter().flat_map(|names| names.value.general_names.iter()).filter_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix(ROLE_URI_PREFIX),
        _ => None,
    });
    match (roles.next(), roles.next()) {
        (Some(name), None) => CertifiedRole::parse(name).ok_or_else(|| format!("{ROLE_URI_PREFIX}{name} is not a role (ledger, matching, gateway, test)")),
        (None, _) => Err(format!("no {ROLE_URI_PREFIX}<role> URI in its subjectAltName")),
        (Some(_), Some(_)) => Err("more than one role URI: a certificate is for one role".into()),
    }
}

fn subject_of(certificate: &[u8]) -> String {
    x509_parser::parse_x509_certificate(certificate).map(|(_, parsed)| parsed.subject().to_string()).unwrap_or_default()
}

fn runtime() -> io::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("link-tls").enable_all().build().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| io::Error::other(format!("cannot start the TLS thread: {e}")))
}

fn async_tcp(tcp: std::net::TcpStream) -> io::Result<tokio::net::TcpStream> {
    tcp.set_nonblocking(true)?;
    tcp.set_nodelay(true)?;
    tokio::net::TcpStream::from_std(tcp)
}

/// Relays plaintext between `tls` and a Unix socket pair until either side
/// closes; returns the pair's blocking end. Called inside the runtime.
fn relay<T>(mut tls: T) -> io::Result<Stream>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (inner, outer) = std::os::unix::net::UnixStream::pair()?;
    inner.set_nonblocking(true)?;
    let mut inner = tokio::net::UnixStream::from_std(inner)?;
    tokio::spawn(async move {
        if let Err(error) = tokio::io::copy_bidirectional(&mut tls, &mut inner).await {
            tracing::debug!(%error, "TLS link closed");
        }
    });
    Ok(Stream::Unix(outer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_address() {
        assert_eq!(server_name("ledger1.bank.example:7101").unwrap(), ServerName::try_from("ledger1.bank.example").unwrap());
        assert_eq!(server_name("10.0.0.5:7101").unwrap(), ServerName::try_from("10.0.0.5").unwrap());
        assert_eq!(server_name("[::1]:7101").unwrap(), ServerName::try_from("::1").unwrap());
        assert!(server_name("bad host:1").is_err());
    }
}
