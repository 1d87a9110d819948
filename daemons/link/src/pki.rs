//! The site's link CA and the daemons' certificates (`marionettectl pki`).
//! The CA's key signs certificates and nothing else: keep it off the
//! daemons' hosts once they have theirs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

use crate::peers::CertifiedRole;
use crate::tls::ROLE_URI_PREFIX;

/// The CA's certificate and key in `dir`.
pub const CA_CERTIFICATE: &str = "ca.pem";
pub const CA_PRIVATE_KEY: &str = "ca.key";

/// How long certificates are valid, in days.
pub const CA_VALID_DAYS: i64 = 10 * 365;
pub const LEAF_VALID_DAYS: i64 = 2 * 365;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path} exists already: a CA is made once (remove the directory's ca.* to start over, and reissue every certificate)")]
    Exists { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{0:?} is neither a DNS name nor an IP address")]
    Host(String),
}

/// Files written by [`issue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub certificate_file: PathBuf,
    pub private_key_file: PathBuf,
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io { path: path.to_path_buf(), source };
    // create_new: never overwrite a key; mode at creation, so that a key is never readable by others even briefly.
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// A name the client can check: an IP address, or what rustls accepts as a server name.
fn subject_alt_name(host: &str) -> Result<SanType, PkiError> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) if rustls::pki_types::DnsName::try_from(host).is_ok() => Ok(SanType::DnsName(host.to_string().try_into()?)),
        Err(_) => Err(PkiError::Host(host.to_string())),
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = std::time::SystemTime::now();
    // An hour back, for hosts whose clocks lag the CA's.
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(days as u64 * 86_400)).into();
}

/// Makes the CA in `dir` (created 0700 if missing): `ca.pem` (give it to every
/// daemon) and `ca.key` (0600; keep it apart).
pub fn init(dir: &Path, site: &str) -> Result<PathBuf, PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.to_path_buf(), source })?;
    for name in [CA_CERTIFICATE, CA_PRIVATE_KEY] {
        if dir.join(name).exists() {
            return Err(PkiError::Exists { path: dir.join(name) });
        }
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, site);
    name.push(DnType::CommonName, format!("{site} Marionette link CA"));
    params.distinguished_name = name;
    // Signs the daemons' certificates directly, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, CA_VALID_DAYS);
    let certificate = params.self_signed(&key)?;
    write(&dir.join(CA_PRIVATE_KEY), &key.serialize_pem(), 0o600)?;
    write(&dir.join(CA_CERTIFICATE), &certificate.pem(), 0o644)?;
    Ok(dir.join(CA_CERTIFICATE))
}

/// Issues a certificate for a daemon of `role` reachable as `hosts` (DNS
/// names or IP addresses), signed by the CA in `ca_dir`, into
/// `out_dir/<role>-<first host>.pem` and `.key` (0600).
pub fn issue(ca_dir: &Path, role: CertifiedRole, hosts: &[String], out_dir: &Path) -> Result<Issued, PkiError> {
    let read = |name: &str| std::fs::read_to_string(ca_dir.join(name)).map_err(|source| PkiError::Io { path: ca_dir.join(name), source });
    let ca_key = KeyPair::from_pem(&read(CA_PRIVATE_KEY)?)?;
    let issuer = Issuer::from_ca_cert_pem(&read(CA_CERTIFICATE)?, ca_key)?;
    let first = hosts.first().ok_or_else(|| PkiError::Host(String::new()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, format!("{role} {first}"));
    for host in hosts {
        params.subject_alt_names.push(subject_alt_name(host)?);
    }
    params.subject_alt_names.push(SanType::URI(format!("{ROLE_URI_PREFIX}{role}").try_into()?));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Every daemon both serves its links and connects to others'.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, LEAF_VALID_DAYS);
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(out_dir).map_err(|source| PkiError::Io { path: out_dir.to_path_buf(), source })?;
    let stem = format!("{role}-{}", first.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-', "_"));
    let issued = Issued { certificate_file: out_dir.join(format!("{stem}.pem")), private_key_file: out_dir.join(format!("{stem}.key")) };
    write(&issued.private_key_file, &key.serialize_pem(), 0o600)?;
    write(&issued.certificate_file, &certificate.pem(), 0o644)?;
    Ok(issued)
}

/// A server certificate that is its own issuer, for `hosts` (DNS names or IP
/// addresses), into `certificate_file` and `private_key_file` (0600), never
/// over an existing file. The host image's HTTPS until the operator installs
/// one from the site's CA: clients check it by its fingerprint.
pub fn self_signed(hosts: &[String], certificate_file: &Path, private_key_file: &Path) -> Result<(), PkiError> {
    let first = hosts.first().ok_or_else(|| PkiError::Host(String::new()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::OrganizationName, "Marionette (self-signed)");
    params.distinguished_name.push(DnType::CommonName, first.as_str());
    for host in hosts {
        params.subject_alt_names.push(subject_alt_name(host)?);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, LEAF_VALID_DAYS);
    let key = KeyPair::generate()?;
    let certificate = params.self_signed(&key)?;
    write(private_key_file, &key.serialize_pem(), 0o600)?;
    write(certificate_file, &certificate.pem(), 0o644)
}
