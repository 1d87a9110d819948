//! Starts the three real daemons with the built web console
//! (`daemons/console/dist`) as shipped in what matters here: operators must
//! use two-factor authentication and a withdrawal needs two of them. Lists a
//! market and funds the traders with marionettectl, registers an oracle, then runs the
//! Playwright suite in `e2e/` in Debian's chromium (headless) against it,
//! giving it the operators' two-factor secrets. Playwright's last line is
//! "N passed, N failed"; the exit status is its own.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use acceptance::{Options, System, APPROVER, NO_RATE_LIMITS, OPERATOR, OPERATOR_PASSWORD};

const TRADER_PASSWORD: &str = "a long browser passphrase";

fn chromium() -> Option<PathBuf> {
    let candidates = [std::env::var_os("CHROMIUM_PATH").map(PathBuf::from), Some("/usr/lib/chromium/chromium".into())];
    candidates.into_iter().flatten().find(|path| path.exists())
}

fn fail(message: &str) -> ExitCode {
    eprintln!("browser suite: {message}");
    println!("0 passed, 1 failed");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    // Cargo's run-time value first: a binary reused from a clone at another path has the wrong compile-time one.
    let suite = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()));
    let suite = Path::new(&suite);
    let console = suite.join("../../daemons/console/dist");
    if !console.join("index.html").exists() {
        return fail(&format!("no built console in {}: scripts/test builds it (npm ci && npm run build in daemons/console)", console.display()));
    }
    if !suite.join("node_modules/@playwright/test").exists() {
        return fail("Playwright is not installed: scripts/test installs it (npm ci in tests/browser)");
    }
    let Some(chromium) = chromium() else {
        return fail("no chromium: scripts/test installs Debian's (apt-get install chromium), or set CHROMIUM_PATH");
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = Options {
        gateway_console: format!("directory = \"{}\"", console.canonicalize().expect("the console directory").display()),
        gateway_limits: NO_RATE_LIMITS.into(),
        // Checked bitcoin addresses, a cooldown the test waits out, and limits to show.
        gateway_withdrawals: "address_cooldown_seconds = 2\nasset_networks = { BTC = [\"bitcoin\"] }\nreference_asset = \"BTC\"\ntiers = [{ name = \"unverified\", daily_limit = \"10\", monthly_limit = \"50\" }]".into(),
        approvals: Some("deposit = 1\nwithdrawal_approval = 2\nhouse_inventory = 1\nasset = 1\nmarket = 1\noperator = 1\nconvert_pair = 1\nissuer = 1\ninvestor_claims = 1\norganiser = 1\ndonation_payout = 2".into()),
        operators_two_factor: true,
        ..Options::default()
    };
    let system = System::start_with(dir.path(), &options);
    let operator_secret = system.operator_two_factor_secret.clone().expect("the operator enrolled");
    let (approver_secret, _, _) = system.enrol_two_factor(APPROVER);
    for (asset, scale) in [("BTC", "8"), ("USD", "2")] {
        let (exit, said) = system.ctl(&["create-asset", asset, scale], "");
        assert_eq!(exit, 0, "create-asset {asset}: {said}");
    }
    let (exit, said) = system.ctl(&["create-market", "BTC", "USD", "0.01", "0.0001", "0.001", "0.002"], "");
    assert_eq!(exit, 0, "create-market: {said}");
    // Alice sells bitcoin, Bob buys it with dollars, Dave withdraws bitcoin, Erin converts dollars;
    // Frank and Gina trade the perpetual the operators list from the console, which Oscar prices;
    // Ivy issues a token that Jan and Kim invest in; Vic gives to the campaign Una organises.
    for (name, asset, amount) in [
        ("alice", "BTC", "2"),
        ("bob", "USD", "100000"),
        ("dave", "BTC", "1"),
        ("erin", "USD", "1000"),
        ("frank", "USD", "300"),
        ("gina", "USD", "1000"),
        ("ivy", "USD", "10000"),
        ("jan", "USD", "10000"),
        ("kim", "USD", "10000"),
        ("vic", "USD", "1000"),
    ] {
        let email = format!("{name}@browser.example");
        system.register(&email, TRADER_PASSWORD);
        let (exit, said) = system.ctl(&["deposit", &email, asset, amount, &format!("browser-{name}")], "");
        assert_eq!(exit, 0, "deposit for {name}: {said}");
    }
    system.register("oscar@browser.example", TRADER_PASSWORD);
    system.register("una@browser.example", TRADER_PASSWORD);
    let screenshots = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| suite.join("../../target")).join("browser-screenshots");
    let status = Command::new("node")
        .arg(suite.join("node_modules/@playwright/test/cli.js"))
        .arg("test")
        .args(std::env::args().skip(1).filter(|a| !a.starts_with("--")))
        .current_dir(suite)
        .env("MARIONETTE_URL", format!("http://127.0.0.1:{}", system.port))
        .env("TRADER_PASSWORD", TRADER_PASSWORD)
        .env("OPERATOR_EMAIL", OPERATOR)
        .env("APPROVER_EMAIL", APPROVER)
        .env("OPERATOR_PASSWORD", OPERATOR_PASSWORD)
        .env("OPERATOR_TOTP_SECRET", operator_secret)
        .env("APPROVER_TOTP_SECRET", approver_secret)
        .env("CHROMIUM_PATH", &chromium)
        .env("SCREENSHOT_DIR", &screenshots)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .status();
    system.stop();
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => fail(&format!("running Playwright with node: {error}")),
    }
}
