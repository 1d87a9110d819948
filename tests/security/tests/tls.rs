//! The transport: HTTPS served by the gateway itself with a certificate it
//! reads again on SIGHUP, and X-Forwarded-For believed only from the
//! proxies an operator names.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use acceptance::{code, Daemon, Options, System};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use security::{post_with_headers, tried};
use serde_json::json;

/// A site CA, and a way to issue the gateway's certificates with it.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        Ca { der: certificate.der().clone(), issuer: Issuer::new(params, key) }
    }

    /// Writes a certificate for 127.0.0.1 and its key as PEM; the certificate's DER.
    fn issue(&self, certificate_file: &Path, key_file: &Path) -> Vec<u8> {
        let params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(certificate_file, certificate.pem()).unwrap();
        std::fs::write(key_file, key.serialize_pem()).unwrap();
        certificate.der().to_vec()
    }
}

/// POST /graphql over TLS, trusting only `ca`: the certificate the gateway
/// showed and the answer, or the handshake's error.
fn https_post(port: u16, ca: &Ca, query: &str) -> Result<(Vec<u8>, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connection = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    let body = json!({ "query": query }).to_string();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // The gateway closes without close_notify after Connection: close; what came before counts.
    if let Err(error) = tls.read_to_end(&mut response) {
        if response.is_empty() {
            return Err(error.to_string());
        }
    }
    let shown = tls.conn.peer_certificates().and_then(|chain| chain.first()).map(|c| c.to_vec()).unwrap_or_default();
    Ok((shown, String::from_utf8_lossy(&response).into_owned()))
}

#[test]
fn the_gateway_serves_https_and_a_renewed_certificate_after_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (certificate_file, key_file) = (dir.path().join("gateway.crt"), dir.path().join("gateway.key"));
    let ca = Ca::new("Marionette test site CA");
    let first = ca.issue(&certificate_file, &key_file);
    let options = Options {
        gateway_listen: format!("tls_certificate_file = \"{}\"\ntls_private_key_file = \"{}\"", certificate_file.display(), key_file.display()),
        ..Options::default()
    };
    let system = System::start_with(dir.path(), &options);

    let (shown, answer) = https_post(system.port, &ca, "{ markets { id } }").expect("an HTTPS request");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("{\"data\":{\"markets\":[]}}"), "{answer}");
    assert_eq!(shown, first, "the configured certificate is served");

    tried("plain HTTP to the HTTPS port");
    let (status, _, _) = system.get("/markets");
    assert_ne!(status, 200, "no HTTP answer without TLS");
    tried("an HTTPS client that trusts another CA (a man in the middle's view)");
    let stranger = Ca::new("Some other CA");
    let refused = https_post(system.port, &stranger, "{ markets { id } }");
    assert!(refused.as_ref().is_err_and(|e| e.contains("UnknownIssuer")), "{refused:?}");

    // Renewal: new files, SIGHUP; new connections get the new certificate.
    let renewed = ca.issue(&certificate_file, &key_file);
    system.signal(Daemon::Gateway, "HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while https_post(system.port, &ca, "{ markets { id } }").unwrap().0 != renewed {
        assert!(std::time::Instant::now() < deadline, "the renewed certificate was never served");
        std::thread::sleep(Duration::from_millis(50));
    }

    tried("a reload with a broken certificate file (SIGHUP after writing garbage over it)");
    std::fs::write(&certificate_file, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    system.signal(Daemon::Gateway, "HUP");
    let log = system.log_path(Daemon::Gateway);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap().contains("was not reloaded") {
        assert!(std::time::Instant::now() < deadline, "the failed reload was never logged");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (shown, answer) = https_post(system.port, &ca, "{ markets { id } }").expect("still serving HTTPS");
    assert_eq!(shown, renewed, "the certificate before the failed reload is still served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    system.stop();
}

#[test]
fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, stranger) = (IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3]));
    let options = Options {
        gateway_listen: "trusted_proxies = [\"127.0.0.2\"]".into(),
        gateway_limits: "login_ip_burst = 3\nlogin_ip_refill_seconds = 3600".into(),
        ..Options::default()
    };
    let system = System::start_with(dir.path(), &options);
    let login = "mutation { login(email: \"nobody@domain.io\", password: \"a guess\") { token } }";
    let attempt = |from: IpAddr, forwarded_for: &str| {
        let header = if forwarded_for.is_empty() { String::new() } else { format!("X-Forwarded-For: {forwarded_for}\r\n") };
        code(&post_with_headers(from, system.port, &header, login, json!({}))).to_string()
    };

    tried("4 login guesses from one address, each naming another client in X-Forwarded-For");
    let codes: Vec<String> = (1..=4).map(|i| attempt(stranger, &format!("198.51.100.{i}"))).collect();
    assert_eq!(codes, ["UNAUTHENTICATED", "UNAUTHENTICATED", "UNAUTHENTICATED", "RATE_LIMITED"], "counted under the sender's own address");

    // Through the trusted proxy each client has its own count: the proxy's many clients are not one.
    let codes: Vec<String> = (0..4).map(|_| attempt(proxy, "203.0.113.1")).collect();
    assert_eq!(codes, ["UNAUTHENTICATED", "UNAUTHENTICATED", "UNAUTHENTICATED", "RATE_LIMITED"]);
    assert_eq!(attempt(proxy, "203.0.113.2"), "UNAUTHENTICATED", "another client behind the proxy");
    tried("through the proxy, a client prepending addresses of its own to X-Forwarded-For");
    assert_eq!(attempt(proxy, "192.0.2.77, 203.0.113.1"), "RATE_LIMITED", "the proxy's entry, the rightmost, is the client");
    system.stop();
}
