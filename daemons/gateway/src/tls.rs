//! HTTPS: the gateway's certificate chain and private key, read from the
//! PEM files named in `listen.tls_certificate_file` and
//! `listen.tls_private_key_file`, and read again on SIGHUP (`systemctl
//! reload`) so that a renewed certificate is served without a restart. A
//! reload that fails keeps the certificate being served and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the certificate chain {path}: {reason} (a PEM file with the server's certificate first)")]
    Certificate { path: PathBuf, reason: String },
    #[error("reading the private key {path}: {reason} (a PEM file with one PKCS#8, PKCS#1 or SEC1 key)")]
    PrivateKey { path: PathBuf, reason: String },
    #[error("the private key {key} does not belong to the certificate {certificate}: {reason}")]
    Mismatch { certificate: PathBuf, key: PathBuf, reason: String },
    #[error("{existing} exists but {missing} does not: put the pair back, or remove {existing} to make a new pair")]
    HalfPair { existing: PathBuf, missing: PathBuf },
    #[error("there is no certificate at {path}: name this server's DNS names or addresses to make a self-signed one")]
    NoNames { path: PathBuf },
    #[error("making a self-signed certificate: {0}")]
    SelfSigned(#[from] link::pki::PkiError),
}

/// Whether [`init_self_signed`] made the certificate or found one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    Now,
    Before,
}

/// `marionette-gateway init-certificate`: if neither file exists, a
/// self-signed certificate for `hosts` (its directory made 0700 if
/// missing); a pair that is there already is kept, whoever made it. Either
/// way the fingerprint of what the gateway will serve, for the console.
pub fn init_self_signed(certificate_file: &Path, private_key_file: &Path, hosts: &[String]) -> Result<(String, Made), TlsError> {
    let made = match (certificate_file.exists(), private_key_file.exists()) {
        (true, true) => Made::Before,
        (true, false) => return Err(TlsError::HalfPair { existing: certificate_file.to_path_buf(), missing: private_key_file.to_path_buf() }),
        (false, true) => return Err(TlsError::HalfPair { existing: private_key_file.to_path_buf(), missing: certificate_file.to_path_buf() }),
        (false, false) if hosts.is_empty() => return Err(TlsError::NoNames { path: certificate_file.to_path_buf() }),
        (false, false) => {
            for file in [certificate_file, private_key_file] {
                if let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty() && !dir.exists()) {
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(|source| TlsError::SelfSigned(link::pki::PkiError::Io { path: dir.to_path_buf(), source }))?;
                }
            }
            link::pki::self_signed(hosts, certificate_file, private_key_file)?;
            Made::Now
        }
    };
    Ok((Certificate::load(certificate_file, private_key_file)?.fingerprint(), made))
}

/// The certificate being served, and the files it was read from.
#[derive(Debug)]
pub struct Certificate {
    certificate_file: PathBuf,
    private_key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificate {
    pub fn load(certificate_file: &Path, private_key_file: &Path) -> Result<Arc<Certificate>, TlsError> {
        let current = read(certificate_file, private_key_file)?;
        Ok(Arc::new(Certificate {
            certificate_file: certificate_file.to_path_buf(),
            private_key_file: private_key_file.to_path_buf(),
            current: RwLock::new(current),
        }))
    }

    /// Reads the files again; on success the new certificate serves every
    /// handshake from now on, on failure the old one stays.
    pub fn reload(&self) -> Result<String, TlsError> {
        let fresh = read(&self.certificate_file, &self.private_key_file)?;
        let fingerprint = fingerprint(&fresh);
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        Ok(fingerprint)
    }

    /// SHA-256 of the served certificate (the leaf), as `AB:CD:…`: what a
    /// browser shows, for a user to compare with what the operator published.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
    }
}

fn read(certificate_file: &Path, private_key_file: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let certificate_error = |reason: String| TlsError::Certificate { path: certificate_file.to_path_buf(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate_file)
        .map_err(|e| certificate_error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| certificate_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(certificate_error("no CERTIFICATE block in it".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(private_key_file).map_err(|e| TlsError::PrivateKey { path: private_key_file.to_path_buf(), reason: e.to_string() })?;
    let signing_key =
        provider::sign::any_supported_type(&key).map_err(|e| TlsError::PrivateKey { path: private_key_file.to_path_buf(), reason: e.to_string() })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        certificate: certificate_file.to_path_buf(),
        key: private_key_file.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(certified))
}

fn fingerprint(certified: &CertifiedKey) -> String {
    let digest = Sha256::digest(certified.end_entity_cert().map(|c| c.as_ref()).unwrap_or_default());
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The server side of TLS 1.2 and 1.3 with `certificate`, speaking HTTP/1.1.
pub fn acceptor(certificate: Arc<Certificate>) -> tokio_rustls::TlsAcceptor {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn a_reload_serves_the_new_certificate_and_a_broken_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "served");
        let certificate = Certificate::load(&cert, &key).unwrap();
        let first = certificate.fingerprint();
        assert_eq!(first.len(), 32 * 3 - 1, "{first}");

        let (renewed_cert, renewed_key) = write_pair(dir.path(), "renewed");
        std::fs::copy(&renewed_cert, &cert).unwrap();
        std::fs::copy(&renewed_key, &key).unwrap();
        let second = certificate.reload().unwrap();
        assert_ne!(second, first, "the renewed certificate is served");
        assert_eq!(certificate.fingerprint(), second);

        // A key that is not the certificate's, then a file that is not PEM: refused, the served one kept.
        let (_, other_key) = write_pair(dir.path(), "other");
        std::fs::copy(&other_key, &key).unwrap();
        assert!(matches!(certificate.reload(), Err(TlsError::Mismatch { .. })));
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(matches!(certificate.reload(), Err(TlsError::Certificate { .. })));
        assert_eq!(certificate.fingerprint(), second);
    }

    #[test]
    fn a_self_signed_certificate_is_made_once_and_verifies_for_its_names() {
        use rustls::client::danger::ServerCertVerifier;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls/certificate.pem"), dir.path().join("tls/private-key.pem"));
        let hosts = vec!["server-1".to_string(), "127.0.0.1".to_string()];
        assert!(matches!(init_self_signed(&cert, &key, &[]), Err(TlsError::NoNames { .. })), "no names, nothing made");
        assert!(!cert.exists() && !key.exists());

        let (fingerprint, made) = init_self_signed(&cert, &key, &hosts).unwrap();
        assert_eq!(made, Made::Now);
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&key), mode(&cert), mode(cert.parent().unwrap())), (0o600, 0o644, 0o700));
        let written = std::fs::read(&cert).unwrap();

        // Again, with other names: kept, the same fingerprint, nothing rewritten.
        let (again, made) = init_self_signed(&cert, &key, &["other".to_string()]).unwrap();
        assert_eq!((again.as_str(), made), (fingerprint.as_str(), Made::Before));
        assert_eq!(std::fs::read(&cert).unwrap(), written);

        // A client that trusts this one certificate accepts it for each of its names, and for no other.
        let der = CertificateDer::from_pem_file(&cert).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider::default_provider())).build().unwrap();
        let now = rustls::pki_types::UnixTime::now();
        for name in ["server-1", "127.0.0.1"] {
            let server_name = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier.verify_server_cert(&der, &[], &server_name, &[], now).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("server-2").unwrap();
        assert!(verifier.verify_server_cert(&der, &[], &other, &[], now).is_err());

        // Half a pair is never completed with a key that is not its own.
        std::fs::remove_file(&key).unwrap();
        assert!(matches!(init_self_signed(&cert, &key, &hosts), Err(TlsError::HalfPair { .. })));
        assert!(!key.exists());
        assert!(matches!(init_self_signed(&dir.path().join("c.pem"), &dir.path().join("k.pem"), &["not a name!".into()]), Err(TlsError::SelfSigned(_))));
    }
}
