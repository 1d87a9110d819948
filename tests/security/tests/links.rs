//! The links between the daemons: a ledger listening on TCP (as for gateways
//! on other hosts) with mutual TLS, attacked by a peer without a
//! certificate, with another CA's, and with a real certificate claiming a
//! role it does not have.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use acceptance::{data, Options, System, OPERATOR, OPERATOR_PASSWORD};
use ledger_api::operators;
use link::{pki, Address, CertifiedRole, Client, LinkConfig, LinkTls};
use security::tried;
use serde_json::json;
use wire::{Message, Role};

fn ledger_over_tcp(dir: &std::path::Path) -> System {
    System::start_with(dir, &Options { ledger_over_tcp: true, ..Options::default() })
}

fn host_port(system: &System) -> String {
    system.ledger_address().strip_prefix("tcp:").expect("the ledger listens on TCP").to_string()
}

/// A deposit as an attacker would send it: the operator's proposal, with
/// the operator's id guessed.
fn deposit_frames() -> Vec<u8> {
    let mut bytes = Vec::new();
    wire::encode_frame(0, &Message::Hello { peer: 4242, role: Role::Gateway, outputs_applied: 0, subscribe: false }, &mut bytes);
    let bootstrap = ledger_api::Command::Operators(operators::Command::Bootstrap { operator: 1 });
    wire::encode_frame(1, &Message::LedgerCommand(bootstrap), &mut bytes);
    bytes
}

/// A certificate for `role` signed by the CA in `ca`, in a directory of its own.
fn tls_as(ca: &std::path::Path, role: CertifiedRole) -> LinkTls {
    let issued = pki::issue(ca, role, &["127.0.0.1".into()], &ca.join(format!("attacker-{role}"))).unwrap();
    let config = LinkConfig {
        ca_file: ca.join(pki::CA_CERTIFICATE),
        certificate_file: issued.certificate_file,
        private_key_file: issued.private_key_file,
        ..LinkConfig::default()
    };
    LinkTls::load(&config).unwrap().unwrap()
}

/// The ledger still serves its gateway: an operator's read through the API.
fn still_serves(system: &System) {
    let operator = system.login(OPERATOR, OPERATOR_PASSWORD);
    data(&system.as_user(&operator, "{ assets { symbol } }", json!({})), "assets");
}

/// The ledger's count of applied peer commands, once the gateway's own
/// (the audit records of the setup's logins) have arrived.
fn settled_commands(system: &System) -> u64 {
    let read = || {
        let metrics = system.metrics(acceptance::Daemon::Ledger);
        let line = metrics.lines().find(|l| l.starts_with("marionette_ledger_commands_total ")).expect("the commands counter").to_string();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
}

#[test]
fn a_deposit_sent_over_tcp_without_a_certificate_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let system = ledger_over_tcp(dir.path());
    let before = settled_commands(&system);

    tried("a Hello and a command in plain TCP to the ledger's tcp: address, as before certificates");
    let mut attacker = TcpStream::connect(host_port(&system)).unwrap();
    attacker.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    attacker.write_all(&deposit_frames()).unwrap();
    let mut answer = Vec::new();
    let _ = attacker.read_to_end(&mut answer);
    assert!(wire::decode_frame(&answer, 1 << 20).ok().flatten().is_none(), "the ledger answered a peer without a certificate with a frame: {answer:?}");
    eprintln!("refused: the connection closed after {} bytes of TLS alert, no frame", answer.len());

    tried("the same through link::Client, as a gateway would without [link] certificates");
    let refused = Client::connect(&Address::Tcp(host_port(&system)), 4243, Role::Gateway, 0, false).err().expect("refused");
    eprintln!("refused: {refused}");

    assert_eq!(settled_commands(&system), before, "no command was applied");
    still_serves(&system);
}

#[test]
fn another_ca_s_certificate_and_a_forged_role_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let system = ledger_over_tcp(dir.path());
    let address = Address::Tcp(host_port(&system));

    tried("a certificate naming the gateway role, signed by a CA of the attacker's making");
    let own_ca = dir.path().join("attacker-ca");
    pki::init(&own_ca, "Attacker").unwrap();
    let forged = tls_as(&own_ca, CertifiedRole::Gateway);
    let refused = Client::connect_tls(&address, Some(&forged), CertifiedRole::Ledger, 4244, Role::Gateway, 0, false).err().expect("refused");
    eprintln!("refused: {refused}");

    tried("a real gateway certificate of the site's CA, claiming the Test role in Hello (a trusted harness's)");
    let gateway = tls_as(&system.link_ca(), CertifiedRole::Gateway);
    let refused = Client::connect_tls(&address, Some(&gateway), CertifiedRole::Ledger, 4245, Role::Test, 0, false).err().expect("refused");
    assert!(refused.to_string().contains("may not claim the role Test"), "{refused}");
    eprintln!("refused: {refused}");

    tried("a real matching certificate claiming the gateway role");
    let matching = tls_as(&system.link_ca(), CertifiedRole::Matching);
    let refused = Client::connect_tls(&address, Some(&matching), CertifiedRole::Ledger, 4246, Role::Gateway, 0, false).err().expect("refused");
    assert!(refused.to_string().contains("may not claim the role Gateway"), "{refused}");
    eprintln!("refused: {refused}");

    // The same gateway certificate in its own role is welcome: the refusals were the role, not the certificate.
    let (_client, _) = Client::connect_tls(&address, Some(&gateway), CertifiedRole::Ledger, 4247, Role::Gateway, 0, false).unwrap();
    still_serves(&system);
}
