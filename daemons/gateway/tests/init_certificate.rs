//! `marionette-gateway init-certificate`, as the host image's first boot and
//! console message run it: the binary, its config and the files it writes.

use std::path::Path;
use std::process::{Command, Output};

fn gateway(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_marionette-gateway")).arg("--config").arg(config).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn first_boot_makes_the_certificate_once_and_every_boot_reads_its_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\naddress = \"0.0.0.0:8443\"\ntls_certificate_file = \"{0}/certificate.pem\"\ntls_private_key_file = \"{0}/private-key.pem\"\n",
            tls.display()
        ),
    )
    .unwrap();

    // What the console message runs before there is a certificate: nothing made, and the reason.
    let read_only = gateway(&config, &["init-certificate"]);
    assert!(!read_only.status.success());
    assert!(text(&read_only.stderr).contains("no certificate at"), "{}", text(&read_only.stderr));
    assert!(!tls.exists(), "no names, nothing made");

    let first = gateway(&config, &["init-certificate", "server-1", "localhost", "127.0.0.1", "::1"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let fingerprint = text(&first.stdout).trim().to_string();
    assert_eq!(fingerprint.len(), 32 * 3 - 1, "{fingerprint}");
    assert!(fingerprint.split(':').all(|byte| byte.len() == 2 && byte.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())));
    assert!(text(&first.stderr).contains("made a self-signed certificate for server-1 localhost 127.0.0.1 ::1"), "{}", text(&first.stderr));
    let certificate = std::fs::read(tls.join("certificate.pem")).unwrap();

    // Every later boot: the same fingerprint, nothing rewritten, nothing said on stderr.
    let again = gateway(&config, &["init-certificate"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).trim(), fingerprint);
    assert_eq!(text(&again.stderr), "");
    assert_eq!(std::fs::read(tls.join("certificate.pem")).unwrap(), certificate);

    // A gateway that serves plain HTTP has nowhere to put one, and says what to set.
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, "[listen]\naddress = \"127.0.0.1:8080\"\n").unwrap();
    let refused = gateway(&plain, &["init-certificate", "localhost"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("set listen.tls_certificate_file and tls_private_key_file"), "{}", text(&refused.stderr));
}
