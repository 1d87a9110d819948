//! The shipped config parses, its values are the defaults, and mistakes are named.

use std::path::Path;

use matching::config::MatchingConfig;

// Cargo's run-time value first: a binary reused from a clone at another path has the wrong compile-time one.
fn shipped() -> std::path::PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())).join("../../config/matching.toml")
}

#[test]
fn shipped_config_parses_and_matches_the_defaults() {
    let config = MatchingConfig::load(&shipped()).unwrap();
    let defaults = MatchingConfig::default();
    assert_eq!(format!("{config:?}"), format!("{defaults:?}"), "config/matching.toml documents the defaults; keep them equal");
}

#[test]
fn unknown_keys_are_named() {
    let error = toml::from_str::<MatchingConfig>("[engine]\nbatch_size = 3\n").unwrap_err().to_string();
    assert!(error.contains("batch_size"), "{error}");
}

#[test]
fn invalid_values_are_named() {
    for (text, key) in [
        ("[listen]\naddress = \"http://x\"\n", "listen.address"),
        ("[listen]\nconnections_max = 0\n", "listen.connections_max"),
        ("[storage]\nsnapshot_every_commands = 0\n", "storage.snapshot_every_commands"),
        ("[limits]\nmarkets_max = 0\n", "limits"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        // Plain TCP would let anyone on the network claim the ledger's role.
        ("[listen]\naddress = \"tcp:0.0.0.0:7102\"\n", "listen.address"),
    ] {
        let config: MatchingConfig = toml::from_str(text).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.starts_with(key), "{text}: {error}");
    }
    assert!(toml::from_str::<MatchingConfig>("[engine]\nidle = \"nap\"\n").is_err());
}
