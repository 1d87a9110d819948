//! Who is on the other end of a link, and which roles it may claim in its
//! Hello. A Unix socket's peer is the local user the kernel reports
//! (SO_PEERCRED); a TCP peer is the role its certificate names, signed by the
//! site's CA (see [`crate::tls`]). A role said in Hello is only a claim: the
//! servers accept it when [`Peer::may_claim`] does.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use wire::Role;

/// `[link]` in each daemon's config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// Local users, besides root and the daemon's own user, that may connect
    /// to its Unix socket, and the roles each may claim in Hello.
    pub unix_peers: BTreeMap<String, Vec<Role>>,
    /// The site's link CA (PEM): every `tcp:` peer's certificate must be
    /// signed by it. Made by `marionettectl pki init`.
    pub ca_file: PathBuf,
    /// This daemon's certificate (PEM, its role in it) and private key, shown
    /// on every `tcp:` link, listening and connecting. Made by
    /// `marionettectl pki issue`.
    pub certificate_file: PathBuf,
    pub private_key_file: PathBuf,
}

impl LinkConfig {
    /// Whether the three files for `tcp:` links are named.
    pub fn has_tls(&self) -> bool {
        !self.ca_file.as_os_str().is_empty() && !self.certificate_file.as_os_str().is_empty() && !self.private_key_file.as_os_str().is_empty()
    }

    /// Refuses a `tcp:` address when the TLS files are not named: links
    /// never run in clear over a network. Gives the config key at fault and
    /// what to do, for the daemon's own config error.
    pub fn check_tcp_addresses<'k>(&self, addresses: &[(&'k str, &str)]) -> Result<(), (&'k str, String)> {
        match addresses.iter().find(|(_, address)| address.starts_with("tcp:")) {
            Some((key, _)) if !self.has_tls() => Err((
                key,
                "a tcp: link needs mutual TLS: set link.ca_file, link.certificate_file and link.private_key_file \
                 (marionettectl pki init and issue make them)"
                    .into(),
            )),
            _ => Ok(()),
        }
    }
}

/// The role a certificate of the site's CA gives a daemon. The name is in
/// the certificate as the URI `urn:marionette:role:<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertifiedRole {
    Ledger,
    Matching,
    Gateway,
    /// Benchmarks and test harnesses that connect over TCP.
    Test,
}

impl CertifiedRole {
    pub const ALL: [CertifiedRole; 4] = [CertifiedRole::Ledger, CertifiedRole::Matching, CertifiedRole::Gateway, CertifiedRole::Test];

    pub fn name(self) -> &'static str {
        match self {
            CertifiedRole::Ledger => "ledger",
            CertifiedRole::Matching => "matching",
            CertifiedRole::Gateway => "gateway",
            CertifiedRole::Test => "test",
        }
    }

    pub fn parse(name: &str) -> Option<CertifiedRole> {
        CertifiedRole::ALL.into_iter().find(|role| role.name() == name)
    }

    /// The roles a peer with this certificate may say in Hello. Matching
    /// only serves: nothing connects as matching.
    pub fn claims(self) -> &'static [Role] {
        match self {
            CertifiedRole::Ledger => &[Role::Ledger],
            CertifiedRole::Matching => &[],
            CertifiedRole::Gateway => &[Role::Gateway],
            CertifiedRole::Test => &[Role::Test],
        }
    }
}

impl std::fmt::Display for CertifiedRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Who a connection proved to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Root, or the user this daemon runs as: either can read the daemon's
    /// keys and data already, so it may claim any role.
    Trusted { uid: u32 },
    /// Another local user, with the roles `link.unix_peers` gives it.
    LocalUser { uid: u32, user: String, roles: Vec<Role> },
    /// A `tcp:` peer whose certificate the site's CA signed.
    Certified { role: CertifiedRole, subject: String },
}

impl Peer {
    pub fn may_claim(&self, role: Role) -> bool {
        match self {
            Peer::Trusted { .. } => true,
            Peer::LocalUser { roles, .. } => roles.contains(&role),
            Peer::Certified { role: certified, .. } => certified.claims().contains(&role),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Trusted { uid } => write!(f, "local uid {uid} (root or this daemon's user)"),
            Peer::LocalUser { uid, user, roles } => write!(f, "local user {user} (uid {uid}, may claim {roles:?})"),
            Peer::Certified { role, subject } => write!(f, "certificate {subject:?} for role {role}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("local uid {uid} may not connect: only root, this daemon's user and the users in link.unix_peers may")]
    UnlistedUser { uid: u32 },
    #[error("cannot read the peer's credentials (SO_PEERCRED): {0}")]
    Credentials(std::io::Error),
    #[error("a tcp: link needs mutual TLS: set link.ca_file, link.certificate_file and link.private_key_file (marionettectl pki makes them)")]
    TlsNotConfigured,
    #[error("the TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error(
        "the peer's certificate names no role: it needs exactly one URI urn:marionette:role:<ledger|matching|gateway|test> (marionettectl pki issue writes it)"
    )]
    NoRole,
    #[error("expected a certificate for role {expected}, the peer showed one for {found}")]
    WrongRole { expected: CertifiedRole, found: CertifiedRole },
}

/// The local users a daemon accepts on its Unix socket, by uid.
#[derive(Clone, Debug, Default)]
pub struct UnixPeers {
    own_uid: u32,
    listed: BTreeMap<u32, (String, Vec<Role>)>,
}

impl UnixPeers {
    /// Resolves the configured user names now. A name with no user on this
    /// host (the packages' users on a developer's machine, where the daemons
    /// all run as one user) is left out and logged: nobody can connect as it.
    pub fn resolve(config: &LinkConfig) -> UnixPeers {
        let mut listed = BTreeMap::new();
        for (user, roles) in &config.unix_peers {
            match uid_of(user) {
                Some(uid) => {
                    listed.insert(uid, (user.clone(), roles.clone()));
                }
                None => tracing::warn!(user, "link.unix_peers names a user that does not exist on this host; it is left out"),
            }
        }
        UnixPeers { own_uid: rustix::process::geteuid().as_raw(), listed }
    }

    /// Who the user `uid` is to this daemon.
    pub fn identify(&self, uid: u32) -> Result<Peer, PeerError> {
        if uid == 0 || uid == self.own_uid {
            return Ok(Peer::Trusted { uid });
        }
        match self.listed.get(&uid) {
            Some((user, roles)) => Ok(Peer::LocalUser { uid, user: user.clone(), roles: roles.clone() }),
            None => Err(PeerError::UnlistedUser { uid }),
        }
    }

    /// The peer on the other end of a connected Unix socket.
    pub fn identify_socket(&self, socket: &std::os::unix::net::UnixStream) -> Result<Peer, PeerError> {
        let credentials = rustix::net::sockopt::socket_peercred(socket).map_err(|e| PeerError::Credentials(e.into()))?;
        self.identify(credentials.uid.as_raw())
    }
}

/// The uid of the local user `name`, through NSS (so LDAP users work too).
fn uid_of(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: `passwd` and `result` are written by getpwnam_r, which keeps
    // every string it points to inside `buffer`; neither outlives this call.
    unsafe {
        let mut passwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let status = libc::getpwnam_r(name.as_ptr(), &mut passwd, buffer.as_mut_ptr(), buffer.len(), &mut result);
        (status == 0 && !result.is_null()).then_some(passwd.pw_uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_addresses_need_all_three_tls_files() {
        let files = |ca: &str, certificate: &str, key: &str| LinkConfig {
            ca_file: ca.into(),
            certificate_file: certificate.into(),
            private_key_file: key.into(),
            ..LinkConfig::default()
        };
        let addresses = [("listen.address", "unix:/run/l.sock"), ("matching.address", "tcp:10.0.0.2:7102")];
        let (key, reason) = files("", "", "").check_tcp_addresses(&addresses).unwrap_err();
        assert_eq!(key, "matching.address");
        assert!(reason.contains("link.ca_file") && reason.contains("marionettectl pki"), "{reason}");
        assert!(files("ca.pem", "c.pem", "").check_tcp_addresses(&addresses).is_err());
        assert!(files("ca.pem", "c.pem", "k.pem").check_tcp_addresses(&addresses).is_ok());
        assert!(files("", "", "").check_tcp_addresses(&[("listen.address", "unix:/run/l.sock")]).is_ok());
    }

    #[test]
    fn root_and_the_own_user_are_trusted_listed_users_get_their_roles_others_nothing() {
        let config = LinkConfig { unix_peers: [("nobody".to_string(), vec![Role::Gateway])].into(), ..LinkConfig::default() };
        let peers = UnixPeers::resolve(&config);
        let nobody = uid_of("nobody").unwrap();
        assert!(peers.identify(0).unwrap().may_claim(Role::Ledger));
        let listed = peers.identify(nobody).unwrap();
        assert!(listed.may_claim(Role::Gateway));
        assert!(!listed.may_claim(Role::Ledger) && !listed.may_claim(Role::Test) && !listed.may_claim(Role::Operator));
        assert!(matches!(peers.identify(nobody + 1), Err(PeerError::UnlistedUser { .. })));
    }

    #[test]
    fn a_user_that_does_not_exist_is_left_out() {
        let config = LinkConfig { unix_peers: [("no-such-user-here".to_string(), vec![Role::Gateway])].into(), ..LinkConfig::default() };
        assert!(UnixPeers::resolve(&config).listed.is_empty());
    }

    #[test]
    fn a_certificate_claims_only_its_own_role() {
        for role in CertifiedRole::ALL {
            assert_eq!(CertifiedRole::parse(role.name()), Some(role));
        }
        let gateway = Peer::Certified { role: CertifiedRole::Gateway, subject: "gw".into() };
        assert!(gateway.may_claim(Role::Gateway) && !gateway.may_claim(Role::Ledger) && !gateway.may_claim(Role::Test));
        let matching = Peer::Certified { role: CertifiedRole::Matching, subject: "m".into() };
        assert!([Role::Ledger, Role::Gateway, Role::Operator, Role::Test].iter().all(|role| !matching.may_claim(*role)));
    }
}
