//! What every daemon binary does the same way: `--config PATH`,
//! `--check-config` and `--help` on the command line; a TOML file whose
//! unknown keys are errors that name them; structured logs to stderr.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub mod service_manager;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    /// A value that parses but cannot work; `key` is its dotted TOML path.
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl ConfigError {
    pub fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { key, reason: reason.into() }
    }
}

/// A daemon's config: parsed from TOML, then checked as a whole.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Reads, parses and validates a config file.
pub fn load<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    let config: T = toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
    config.validate()?;
    Ok(config)
}

/// Every daemon's `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `json` (for journald and log shippers) or `text`.
    pub format: String,
    /// A tracing filter such as `info` or `ledger=debug`; RUST_LOG overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "json".into(), filter: "info".into() }
    }
}

impl Validate for LogConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.format.as_str(), "json" | "text") {
            return Err(ConfigError::invalid("log.format", "must be json or text"));
        }
        Ok(())
    }
}

/// The command line every daemon accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub config: PathBuf,
    /// Parse and validate the config, print `PATH: ok`, and exit.
    pub check_only: bool,
    /// What follows the options (a daemon's subcommand and its arguments).
    pub rest: Vec<String>,
}

/// Parses `args` (without the program name). `Ok(None)` means `--help` was asked for and printed.
pub fn parse_args(args: impl IntoIterator<Item = String>, default_config: &str, usage: &str) -> Result<Option<Args>, String> {
    let mut parsed = Args { config: default_config.into(), check_only: false, rest: Vec::new() };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => parsed.config = args.next().ok_or_else(|| format!("--config needs a path\n{usage}"))?.into(),
            "--check-config" => parsed.check_only = true,
            "--help" | "-h" => {
                println!("{usage}");
                return Ok(None);
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other:?}\n{usage}")),
            _ => {
                parsed.rest.push(arg);
                parsed.rest.extend(args.by_ref());
            }
        }
    }
    Ok(Some(parsed))
}

/// Structured logs on stderr as `[log]` says; RUST_LOG overrides its filter.
pub fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.filter));
    // A closed stderr (journald restarting, a pipe reader gone) must not take
    // the daemon down: tracing would report the failed write with eprintln!,
    // which panics on a closed stderr.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    if log.format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Runs a daemon's main function; an error is logged and printed (the
/// operator reads one or the other) and the process exits 1.
pub fn exit_on_error(program: &str, result: Result<(), impl std::fmt::Display>) {
    if let Err(error) = result {
        tracing::error!("{error:#}");
        eprintln!("{program}: {error:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|s| s.to_string()), "/etc/x.toml", "usage")
    }

    #[test]
    fn options_subcommands_and_mistakes() {
        assert_eq!(parse(&[]).unwrap().unwrap(), Args { config: "/etc/x.toml".into(), check_only: false, rest: vec![] });
        let args = parse(&["--config", "a.toml", "--check-config", "create-operator", "x@y.z"]).unwrap().unwrap();
        assert_eq!((args.config, args.check_only, args.rest), (PathBuf::from("a.toml"), true, vec!["create-operator".to_string(), "x@y.z".to_string()]));
        assert!(parse(&["--config"]).unwrap_err().contains("needs a path"));
        assert!(parse(&["--verbose"]).unwrap_err().contains("--verbose"));
    }
}
