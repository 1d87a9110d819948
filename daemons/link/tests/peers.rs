//! Admission over real sockets: the site's CA and certificates made by
//! `link::pki`, a server on 127.0.0.1 and on a Unix socket, and clients with
//! the right certificate, none, another CA's, or the wrong server in mind.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use link::{pki, Address, Admission, CertifiedRole, Client, LinkConfig, LinkTls, Listener, Peer, UnixPeers};
use proptest::prelude::*;
use wire::{Message, Role};

fn config(ca_dir: &Path, issued: &pki::Issued) -> LinkConfig {
    LinkConfig {
        ca_file: ca_dir.join(pki::CA_CERTIFICATE),
        certificate_file: issued.certificate_file.clone(),
        private_key_file: issued.private_key_file.clone(),
        ..LinkConfig::default()
    }
}

fn tls(ca_dir: &Path, role: CertifiedRole, out: &Path) -> LinkTls {
    let issued = pki::issue(ca_dir, role, &["127.0.0.1".into(), "localhost".into()], out).unwrap();
    LinkTls::load(&config(ca_dir, &issued)).unwrap().unwrap()
}

/// A server that welcomes whoever proved who they are and reports them.
fn serve(address: &Address, tls: Option<LinkTls>) -> (Address, mpsc::Receiver<Peer>) {
    let listener = Listener::bind(address).unwrap();
    let address = match (&listener, address) {
        (Listener::Tcp(tcp), _) => Address::Tcp(tcp.local_addr().unwrap().to_string()),
        (_, address) => address.clone(),
    };
    let (seen, peers) = mpsc::channel();
    let admission = Admission { unix: UnixPeers::resolve(&LinkConfig::default()), tls };
    let limit = link::ConnectionLimit { connections_max: 8, on_change: Arc::new(|_| {}) };
    std::thread::spawn(move || {
        link::serve(listener, limit, admission, move |_, mut stream, peer| {
            let _ = seen.send(peer);
            let mut reply = Vec::new();
            wire::encode_frame(0, &Message::Welcome { commands_applied: 0, outputs_last: 0 }, &mut reply);
            let _ = std::io::Write::write_all(&mut stream, &reply);
            let mut rest = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
        })
    });
    (address, peers)
}

#[test]
fn a_tcp_peer_is_the_role_its_certificate_names_and_nothing_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    pki::init(&ca, "Test Bank").unwrap();
    let ledger = tls(&ca, CertifiedRole::Ledger, &dir.path().join("ledger"));
    let gateway = tls(&ca, CertifiedRole::Gateway, &dir.path().join("gateway"));
    let (address, peers) = serve(&Address::Tcp("127.0.0.1:0".into()), Some(ledger));

    let (_client, _) = Client::connect_tls(&address, Some(&gateway), CertifiedRole::Ledger, 1, Role::Gateway, 0, false).unwrap();
    match peers.recv_timeout(Duration::from_secs(10)).unwrap() {
        Peer::Certified { role: CertifiedRole::Gateway, subject } => assert!(subject.contains("gateway 127.0.0.1"), "{subject}"),
        other => panic!("expected the gateway's certificate, saw {other:?}"),
    }

    // Plain TCP, as in the days before certificates: no handshake, no Hello read.
    let refused = Client::connect(&address, 2, Role::Gateway, 0, false).err().expect("a peer without a certificate is refused");
    assert!(peers.recv_timeout(Duration::from_millis(500)).is_err(), "nothing was admitted: {refused}");

    // A certificate of another CA, whatever role it names.
    let other_ca = dir.path().join("other-ca");
    pki::init(&other_ca, "Elsewhere").unwrap();
    let impostor = tls(&other_ca, CertifiedRole::Ledger, &dir.path().join("impostor"));
    assert!(Client::connect_tls(&address, Some(&impostor), CertifiedRole::Ledger, 3, Role::Ledger, 0, false).is_err());
    assert!(peers.recv_timeout(Duration::from_millis(500)).is_err(), "another CA's certificate is not admitted");

    // The client checks the server too: this one is the ledger, not matching.
    let error = Client::connect_tls(&address, Some(&gateway), CertifiedRole::Matching, 4, Role::Gateway, 0, false).err().expect("wrong server");
    assert!(error.to_string().contains("expected a certificate for role matching"), "{error}");
}

#[test]
fn a_tcp_listener_without_certificates_admits_nobody() {
    let (address, peers) = serve(&Address::Tcp("127.0.0.1:0".into()), None);
    assert!(Client::connect(&address, 1, Role::Test, 0, false).is_err());
    assert!(peers.recv_timeout(Duration::from_millis(500)).is_err());
}

#[test]
fn a_unix_peer_is_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let (address, peers) = serve(&Address::Unix(dir.path().join("peer.sock")), None);
    let (_client, _) = Client::connect(&address, 1, Role::Test, 0, false).unwrap();
    let own = own_uid();
    assert_eq!(peers.recv_timeout(Duration::from_secs(10)).unwrap(), Peer::Trusted { uid: own });
}

/// Run by [`another_local_user_is_what_unix_peers_says`] as another uid:
/// connects to `$LINK_TEST_SOCKET` and prints what the server said.
#[test]
#[ignore = "a helper the test below runs as another user"]
fn helper_connect_as_this_user() {
    let Some(socket) = std::env::var_os("LINK_TEST_SOCKET") else { return };
    match Client::connect(&Address::Unix(socket.into()), 7, Role::Gateway, 0, false) {
        Ok(_) => println!("ANSWER welcome"),
        Err(error) => println!("ANSWER refused: {error}"),
    }
}

#[test]
fn another_local_user_is_what_unix_peers_says() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if own_uid() != 0 {
        eprintln!("skipped: acting as other users needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The test binary where the other users can run it (the target directory may be under /root).
    let helper = dir.path().join("helper");
    std::fs::copy(std::env::current_exe().unwrap(), &helper).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("peer.sock");
    let listener = Listener::bind(&Address::Unix(socket.clone())).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let nobody = 65534;
    let config = LinkConfig { unix_peers: [("nobody".to_string(), vec![Role::Gateway])].into(), ..LinkConfig::default() };
    let (seen, peers) = mpsc::channel();
    let admission = Admission { unix: UnixPeers::resolve(&config), tls: None };
    let limit = link::ConnectionLimit { connections_max: 8, on_change: Arc::new(|_| {}) };
    std::thread::spawn(move || {
        link::serve(listener, limit, admission, move |_, mut stream, peer| {
            let _ = seen.send(peer);
            let mut reply = Vec::new();
            wire::encode_frame(0, &Message::Welcome { commands_applied: 0, outputs_last: 0 }, &mut reply);
            let _ = std::io::Write::write_all(&mut stream, &reply);
            // Hold the connection until the helper hangs up: closing first races its Hello (EPIPE).
            let _ = std::io::Read::read_to_end(&mut stream, &mut Vec::new());
        })
    });
    let connect_as = |uid: u32| {
        let output = std::process::Command::new(&helper)
            .args(["--ignored", "--exact", "helper_connect_as_this_user", "--nocapture"])
            .env("LINK_TEST_SOCKET", &socket)
            .uid(uid)
            .gid(uid)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout).to_string();
        said.lines().find_map(|line| line.strip_prefix("ANSWER ")).unwrap_or_else(|| panic!("the helper said: {said}")).to_string()
    };
    assert_eq!(connect_as(nobody), "welcome");
    let peer = peers.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(peer, Peer::LocalUser { uid: nobody, user: "nobody".into(), roles: vec![Role::Gateway] });
    assert!(peer.may_claim(Role::Gateway) && !peer.may_claim(Role::Ledger) && !peer.may_claim(Role::Test));
    // A user the config does not name is told why and never admitted.
    let refused = connect_as(nobody - 1);
    assert!(refused.contains("local uid 65533 may not connect"), "{refused}");
    assert!(peers.recv_timeout(Duration::from_millis(500)).is_err());
}

fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap()
}

#[test]
fn the_ca_is_made_once_and_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    pki::init(dir.path(), "Test Bank").unwrap();
    assert!(matches!(pki::init(dir.path(), "Test Bank"), Err(pki::PkiError::Exists { .. })));
    let issued = pki::issue(dir.path(), CertifiedRole::Matching, &["matching1.bank.example".into()], dir.path()).unwrap();
    for key in [dir.path().join(pki::CA_PRIVATE_KEY), issued.private_key_file.clone()] {
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "{}", key.display());
    }
    let pem = std::fs::read(&issued.certificate_file).unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    assert_eq!(link::tls::role_of(&der), Ok(CertifiedRole::Matching));
    assert!(pki::issue(dir.path(), CertifiedRole::Matching, &["bad host name".into()], dir.path()).is_err());
}

use rustls::pki_types::pem::PemObject;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// The role parser reads bytes from the network: any bytes, and any
    /// corruption of a real certificate, give a role or an error, never a panic.
    #[test]
    fn the_role_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8)) {
        let _ = link::tls::role_of(&bytes);
        let mut certificate = certificate_der().to_vec();
        for (at, value) in flips {
            let at = at % certificate.len();
            certificate[at] = value;
        }
        let _ = link::tls::role_of(&certificate);
    }
}

fn certificate_der() -> &'static [u8] {
    static DER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        pki::init(dir.path(), "Fuzz").unwrap();
        let issued = pki::issue(dir.path(), CertifiedRole::Gateway, &["gw".into()], dir.path()).unwrap();
        let pem = std::fs::read(issued.certificate_file).unwrap();
        rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap().to_vec()
    })
}
