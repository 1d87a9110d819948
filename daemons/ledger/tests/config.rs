//! The shipped config parses, its values are the defaults, and mistakes are named.

use std::path::Path;

use ledger::config::LedgerConfig;

// Cargo's run-time value first: a binary reused from a clone at another path has the wrong compile-time one.
fn shipped() -> std::path::PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())).join("../../config/ledger.toml")
}

#[test]
fn shipped_config_parses_and_matches_the_defaults() {
    let config = LedgerConfig::load(&shipped()).unwrap();
    let defaults = LedgerConfig::default();
    assert_eq!(format!("{config:?}"), format!("{defaults:?}"), "config/ledger.toml documents the defaults; keep them equal");
}

#[test]
fn unknown_keys_are_named() {
    for (text, key) in [
        ("[engine]\nbatch_size = 3\n", "batch_size"),
        ("[matching]\nhost = \"x\"\n", "host"),
        ("[ledger]\n", "ledger"),
        ("[approvals]\nwithdrawals = 2\n", "withdrawals"),
        ("[link]\nunix_peer = {}\n", "unix_peer"),
    ] {
        let error = toml::from_str::<LedgerConfig>(text).unwrap_err().to_string();
        assert!(error.contains(key), "{text}: {error}");
    }
}

#[test]
fn invalid_values_are_named() {
    for (text, key) in [
        ("[listen]\naddress = \"http://x\"\n", "listen.address"),
        ("[matching]\naddress = \"/run/x.sock\"\n", "matching.address"),
        ("[matching]\npeer_id = 0\n", "matching.peer_id"),
        ("[listen]\nconnections_max = 0\n", "listen.connections_max"),
        ("[engine]\noutcomes_retained_per_peer = 0\n", "engine"),
        ("[storage]\nsegment_records_max = 10\n", "storage.segment_records_max"),
        ("[limits]\nassets_max = 0\n", "limits"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[approvals]\ndeposit = 0\n", "approvals"),
        ("[approvals]\nmarket = 10\n", "approvals"),
        // Plain TCP would let anyone on the network claim any role.
        ("[listen]\naddress = \"tcp:0.0.0.0:7101\"\n", "listen.address"),
        ("[matching]\naddress = \"tcp:10.0.0.2:7102\"\n", "matching.address"),
        ("[link]\nca_file = \"/etc/marionette/pki/ca.pem\"\n[listen]\naddress = \"tcp:0.0.0.0:7101\"\n", "listen.address"),
    ] {
        let config: LedgerConfig = toml::from_str(text).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.starts_with(key), "{text}: {error}");
    }
    assert!(toml::from_str::<LedgerConfig>("[engine]\ncpu = \"two\"\n").is_err());
}
