//! The shipped config parses, its values are the defaults, and mistakes are named.

use std::path::Path;

use gateway::config::GatewayConfig;

#[test]
fn shipped_config_parses_and_matches_the_defaults() {
    // Cargo's run-time value first: a binary reused from a clone at another path has the wrong compile-time one.
    let path = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())).join("../../config/gateway.toml");
    let config = GatewayConfig::load(&path).unwrap();
    assert_eq!(format!("{config:?}"), format!("{:?}", GatewayConfig::default()), "config/gateway.toml documents the defaults; keep them equal");
}

#[test]
fn unknown_keys_and_invalid_values_are_named() {
    let error = toml::from_str::<GatewayConfig>("[auth]\nttl = 3\n").unwrap_err().to_string();
    assert!(error.contains("ttl"), "{error}");
    for (text, key) in [
        ("[listen]\naddress = \"localhost\"\n", "listen.address"),
        ("[ledger]\naddress = \"/run/x.sock\"\n", "ledger.address"),
        ("[ledger]\npeer_id = 0\n", "ledger.peer_id"),
        ("[auth]\ntoken_ttl_seconds = 5\n", "auth.token_ttl_seconds"),
        ("[auth]\nargon2_memory_kib = 64\n", "auth"),
        ("[auth]\nsessions_per_user_max = 0\n", "auth.sessions_per_user_max"),
        ("[auth]\npassword_score_min = 5\n", "auth.password_score_min"),
        ("[limits]\nquery_depth_max = 0\n", "limits"),
        // Plain TCP would let anyone on the network claim the gateway's role.
        ("[ledger]\naddress = \"tcp:10.0.0.1:7101\"\n", "ledger.address"),
        ("[matching]\naddress = \"tcp:10.0.0.2:7102\"\n", "matching.address"),
    ] {
        let config: GatewayConfig = toml::from_str(text).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.starts_with(key), "{text}: {error}");
    }
}
