//! A whole Marionette on a temporary directory, for tests that drive it the
//! way its users do: the three real daemons started from their binaries,
//! `marionettectl` on the admin socket, GraphQL over HTTP on a real socket,
//! and graphql-transport-ws subscriptions over a real WebSocket.
//!
//! The gateway's API tests and the Gherkin acceptance suite
//! (`tests/acceptance.rs`, `features/`) both use it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The operator every [`System`] sets up on start, as an operator sets up a fresh install.
pub const OPERATOR: &str = "operator@bank.example";
pub const OPERATOR_PASSWORD: &str = "correct horse battery";
/// The second operator every [`System`] has, proposed by the first: the
/// four-eyes rule needs two (same password).
pub const APPROVER: &str = "approver@bank.example";

/// One approval for every kind of operator action: the suites that are not
/// about four-eyes run with it; [`Options::approvals`] sets others.
pub const APPROVALS_OF_ONE: &str =
    "deposit = 1\nwithdrawal_approval = 1\nhouse_inventory = 1\nasset = 1\nmarket = 1\noperator = 1\nconvert_pair = 1\nissuer = 1\ninvestor_claims = 1";

/// A sibling binary of the running test (`cargo test --workspace` builds them all).
pub fn binary(name: &str) -> PathBuf {
    let path = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join(name);
    assert!(path.exists(), "{} is missing: run the tests with cargo test --workspace (scripts/test), which builds every daemon", path.display());
    path
}

/// A port nothing listens on, never one handed out before in this process:
/// a port a stopped daemon let go of stays its own for its restart, and is
/// not given to a system another test is starting meanwhile.
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> = std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if GIVEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(port) {
            return port;
        }
    }
}

/// A daemon that is killed (SIGKILL) if the test lets go of it without [`System::stop`].
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `name`; its log goes to `log` (appended, so restarts add to it),
/// and with SHOW_DAEMON_LOG to the test's stderr as well.
fn spawn(name: &str, config: &Path, log: &Path, env: &[(&str, &str)]) -> Process {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut child =
        Command::new(binary(name)).arg("--config").arg(config).envs(env.iter().copied()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let show = std::env::var_os("SHOW_DAEMON_LOG").is_some();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = stderr.read(&mut chunk) {
            let _ = file.write_all(&chunk[..n]);
            if show {
                let _ = std::io::stderr().write_all(&chunk[..n]);
            }
        }
    });
    Process(child)
}

/// Waits up to 30 s for `ready`; if it never comes, fails with the end of
/// the daemon's log (the test's directory goes with the failure).
fn wait_for(what: &str, log: &Path, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if Instant::now() >= deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
            panic!("{what} never became ready; the end of {}:\n{}", log.display(), tail.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// One HTTP/1.1 request on its own connection to 127.0.0.1:`port`: status, head and body.
fn raw_on(port: u16, request: &str) -> (u16, String, String) {
    try_raw_on(port, request).unwrap_or_else(|e| panic!("127.0.0.1:{port}: {e}"))
}

/// As [`raw_on`], for a listener that may not be open yet.
fn try_raw_on(port: u16, request: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

/// A small tmpfs mounted on a directory, to fill up on purpose; unmounted
/// when dropped. Mounting needs root, which CI has.
pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    pub fn mount(path: &Path, bytes: u64) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"]).arg(path).status().unwrap();
        assert!(status.success(), "mounting a {bytes}-byte tmpfs on {} failed: the full-disk tests need root", path.display());
        SmallDisk { path: path.to_path_buf() }
    }

    /// More room on the same files, as an operator freeing space would give.
    pub fn grow(&self, bytes: u64) {
        let status = Command::new("mount").args(["-o", &format!("remount,size={bytes}")]).arg(&self.path).status().unwrap();
        assert!(status.success(), "remounting {} failed", self.path.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a daemon killed a moment ago may still hold files open.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// `[limits]` lines that take the rate limits out of the way of load and audits.
pub const NO_RATE_LIMITS: &str = "ip_requests_per_second = 1000000\nip_burst = 1000000\nuser_requests_per_second = 1000000\nuser_burst = 1000000";

/// How a [`System`] differs from the defaults.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Extra lines for the gateway's `[listen]`.
    pub gateway_listen: String,
    /// Extra lines for the gateway's `[limits]`.
    pub gateway_limits: String,
    /// Extra lines for the gateway's `[auth]`.
    pub gateway_auth: String,
    /// Extra lines for the gateway's `[withdrawals]`.
    pub gateway_withdrawals: String,
    /// Lines for the gateway's `[console]` (the web console it serves).
    pub gateway_console: String,
    /// Lines for the gateway's `[webhooks]`.
    pub gateway_webhooks: String,
    /// The ledger listens on TCP (as for gateways on other hosts) instead of
    /// a Unix socket, with mutual TLS: a CA in `{dir}/pki` (see
    /// [`System::link_ca`]) and certificates for the ledger and the gateway.
    pub ledger_over_tcp: bool,
    /// The ledger's `[approvals]`: None is [`APPROVALS_OF_ONE`], Some("") the shipped defaults.
    pub approvals: Option<String>,
    /// Operators must use two-factor authentication, as shipped: [`OPERATOR`]
    /// enrols with marionettectl before making [`APPROVER`]; the approver is
    /// left to enrol.
    pub operators_two_factor: bool,
}

/// `key = value` lines: `extra`'s, then those of `defaults` whose key `extra` does not set.
fn with_defaults(defaults: &str, extra: &str) -> String {
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
    let set: Vec<String> = extra.lines().map(key).collect();
    let kept = defaults.lines().filter(|line| !set.contains(&key(line)));
    extra.lines().chain(kept).collect::<Vec<_>>().join("\n")
}

/// One of the three daemons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    Matching,
    Ledger,
    Gateway,
}

impl Daemon {
    pub const ALL: [Daemon; 3] = [Daemon::Matching, Daemon::Ledger, Daemon::Gateway];

    fn binary(self) -> &'static str {
        match self {
            Daemon::Matching => "marionette-matching",
            Daemon::Ledger => "marionette-ledger",
            Daemon::Gateway => "marionette-gateway",
        }
    }

    fn config(self) -> &'static str {
        match self {
            Daemon::Matching => "matching.toml",
            Daemon::Ledger => "ledger.toml",
            Daemon::Gateway => "gateway.toml",
        }
    }
}

/// The three daemons, started on `dir`; dropping it kills them (kill -9).
pub struct System {
    /// Matching, ledger, gateway; None while killed.
    processes: [Option<Process>; 3],
    pub port: u16,
    dir: PathBuf,
    admin: PathBuf,
    /// Each daemon's Prometheus listener (and the gateway's unlimited probes).
    metrics_ports: [u16; 3],
    ledger_over_tcp: bool,
    ledger_address: String,
    /// [`OPERATOR`]'s two-factor secret (base32), when
    /// [`Options::operators_two_factor`] had it enrol.
    pub operator_two_factor_secret: Option<String>,
}

/// The site's link CA in `{dir}/pki` and the `[link]` sections of the
/// ledger's and the gateway's config, each with its own certificate.
fn link_certificates(dir: &Path) -> (String, String) {
    let ca = dir.join("pki");
    if !ca.join(link::pki::CA_CERTIFICATE).exists() {
        link::pki::init(&ca, "Acceptance Bank").unwrap();
    }
    let section = |role: link::CertifiedRole| {
        let out = dir.join("pki").join(role.name());
        let issued =
            link::pki::Issued { certificate_file: out.join(format!("{role}-127.0.0.1.pem")), private_key_file: out.join(format!("{role}-127.0.0.1.key")) };
        let issued =
            if issued.certificate_file.exists() { issued } else { link::pki::issue(&ca, role, &["127.0.0.1".into(), "localhost".into()], &out).unwrap() };
        format!(
            "[link]\nca_file = \"{}\"\ncertificate_file = \"{}\"\nprivate_key_file = \"{}\"\n",
            ca.join(link::pki::CA_CERTIFICATE).display(),
            issued.certificate_file.display(),
            issued.private_key_file.display()
        )
    };
    (section(link::CertifiedRole::Ledger), section(link::CertifiedRole::Gateway))
}

impl System {
    /// Where the ledger listens: `unix:…` or `tcp:127.0.0.1:…`.
    pub fn ledger_address(&self) -> &str {
        &self.ledger_address
    }

    /// The directory of the site's link CA (with `ledger_over_tcp`).
    pub fn link_ca(&self) -> PathBuf {
        self.dir.join("pki")
    }

    pub fn start(dir: &Path) -> System {
        System::start_with(dir, &Options::default())
    }

    pub fn start_with(dir: &Path, options: &Options) -> System {
        let d = dir.display();
        let (matching_metrics, ledger_metrics, gateway_metrics, port) = (free_port(), free_port(), free_port(), free_port());
        let ledger_address = if options.ledger_over_tcp { format!("tcp:127.0.0.1:{}", free_port()) } else { format!("unix:{d}/ledger.sock") };
        let (ledger_link, gateway_link) = if options.ledger_over_tcp { link_certificates(dir) } else { Default::default() };
        // The load drivers and the crash loop connect from one address.
        let listen = with_defaults(&format!("connections_per_ip_max = 1000000\nmetrics_address = \"127.0.0.1:{gateway_metrics}\""), &options.gateway_listen);
        // The suites log their operators in again and again, faster than a
        // code's 30 s step allows: the operators feature turns it back on.
        let auth = with_defaults(
            &format!("cookie_secure = false\nargon2_memory_kib = 8192\nargon2_passes = 1\noperators_two_factor_required = {}", options.operators_two_factor),
            &options.gateway_auth,
        );
        // The suites log hundreds of users in from one address: login
        // throttling is out of their way unless a test sets it (the security suite does).
        let limits =
            with_defaults("body_bytes_max = 4096\nquery_depth_max = 6\nlogin_ip_burst = 1000000\nlogin_account_burst = 1000000", &options.gateway_limits);
        // A cooldown a scenario can wait out; BTC and ETH addresses checked
        // as on a real site; two tiers whose limits a scenario can reach.
        let withdrawals = with_defaults(
            concat!(
                "address_cooldown_seconds = 2\n",
                "asset_networks = { BTC = [\"bitcoin\"], ETH = [\"ethereum\"] }\n",
                "reference_asset = \"USD\"\n",
                "tiers = [{ name = \"unverified\", daily_limit = \"500\", monthly_limit = \"1000\" }, { name = \"verified\", daily_limit = \"5000\", monthly_limit = \"20000\" }]",
            ),
            &options.gateway_withdrawals,
        );
        let (console, webhooks) = (&options.gateway_console, &options.gateway_webhooks);
        std::fs::write(dir.join("matching.toml"), format!("[listen]\naddress = \"unix:{d}/matching.sock\"\nmetrics_address = \"127.0.0.1:{matching_metrics}\"\n[storage]\ndata_dir = \"{d}/matching\"\n[log]\nformat = \"text\"\n")).unwrap();
        let approvals = options.approvals.as_deref().unwrap_or(APPROVALS_OF_ONE);
        std::fs::write(
            dir.join("ledger.toml"),
            format!("[listen]\naddress = \"{ledger_address}\"\nmetrics_address = \"127.0.0.1:{ledger_metrics}\"\n[matching]\naddress = \"unix:{d}/matching.sock\"\nreconnect_ms = 50\n[storage]\ndata_dir = \"{d}/ledger\"\n[approvals]\n{approvals}\n{ledger_link}[log]\nformat = \"text\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("gateway.toml"),
            format!(
                "[listen]\naddress = \"127.0.0.1:{port}\"\n{listen}\n[ledger]\naddress = \"{ledger_address}\"\nreconnect_ms = 50\n[matching]\naddress = \"unix:{d}/matching.sock\"\nreconnect_ms = 50\n[admin]\nsocket = \"{d}/gateway-admin.sock\"\n[auth]\nkeys_dir = \"{d}/gateway/keys\"\n{auth}\n[storage]\ndata_dir = \"{d}/gateway/db\"\n[limits]\n{limits}\n[withdrawals]\n{withdrawals}\n[console]\n{console}\n[webhooks]\n{webhooks}\n[api_keys]\nreceive_window_ms = 1000\n{gateway_link}[log]\nformat = \"text\"\n"
            ),
        )
        .unwrap();
        let mut system = System {
            processes: [None, None, None],
            port,
            dir: dir.to_path_buf(),
            admin: dir.join("gateway-admin.sock"),
            metrics_ports: [matching_metrics, ledger_metrics, gateway_metrics],
            ledger_over_tcp: options.ledger_over_tcp,
            ledger_address: ledger_address.clone(),
            operator_two_factor_secret: None,
        };
        for daemon in Daemon::ALL {
            system.start_again(daemon);
        }
        let (exit, output) = system.ctl(&["create-operator", OPERATOR], OPERATOR_PASSWORD);
        // 0 also when a restart finds it there with the same password.
        assert_eq!(exit, 0, "create-operator: {output}");
        let (exit, output) = system.ctl(&["login", OPERATOR], OPERATOR_PASSWORD);
        assert_eq!(exit, 0, "login: {output}");
        if options.operators_two_factor {
            let (secret, _, recovery_codes) = system.enrol_two_factor(OPERATOR);
            assert_eq!(recovery_codes.len(), 10, "ten recovery codes");
            system.operator_two_factor_secret = Some(secret);
        }
        // With one operator, the first makes the second alone.
        let (exit, output) = system.ctl(&["create-operator", APPROVER], OPERATOR_PASSWORD);
        assert_eq!(exit, 0, "create-operator {APPROVER}: {output}");
        let (exit, output) = system.ctl_as(APPROVER, &["login", APPROVER], OPERATOR_PASSWORD);
        assert_eq!(exit, 0, "login {APPROVER}: {output}");
        system
    }

    /// Starts `daemon` with its config and waits until it serves.
    pub fn start_again(&mut self, daemon: Daemon) {
        self.start_again_with_env(daemon, &[]);
    }

    /// As [`System::start_again`], with these variables in the daemon's
    /// environment only (fault injection hooks).
    pub fn start_again_with_env(&mut self, daemon: Daemon, env: &[(&str, &str)]) {
        assert!(self.processes[daemon as usize].is_none(), "{daemon:?} is running");
        let socket = match daemon {
            Daemon::Matching => Some(self.dir.join("matching.sock")),
            Daemon::Ledger => (!self.ledger_over_tcp).then(|| self.dir.join("ledger.sock")),
            Daemon::Gateway => None,
        };
        // A socket file left by a killed run would pass for this one's below.
        if let Some(socket) = &socket {
            let _ = std::fs::remove_file(socket);
        }
        let log = self.log_path(daemon);
        self.processes[daemon as usize] = Some(spawn(daemon.binary(), &self.dir.join(daemon.config()), &log, env));
        match daemon {
            // The socket files too: another test's daemon may have taken a port this one was given.
            Daemon::Matching | Daemon::Ledger => {
                let metrics = self.metrics_ports[daemon as usize];
                wait_for(daemon.binary(), &log, || socket.as_ref().is_none_or(|s| s.exists()) && TcpStream::connect(("127.0.0.1", metrics)).is_ok())
            }
            // The public /readyz counts against the address's rate limit; this one does not.
            // The two listeners open one after the other, so either may refuse for a moment.
            Daemon::Gateway => wait_for("the gateway and its ledger link", &log, || {
                let readyz = "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                    && try_raw_on(self.metrics_ports[Daemon::Gateway as usize], readyz).is_ok_and(|(status, _, _)| status == 200)
            }),
        }
    }

    /// Where `daemon` logs (every run of it on this directory).
    pub fn log_path(&self, daemon: Daemon) -> PathBuf {
        self.dir.join(daemon.config().replace(".toml", ".log"))
    }

    /// Waits up to `timeout` for `daemon` to exit on its own; its exit status, if it did.
    pub fn wait_exit(&mut self, daemon: Daemon, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let process = self.processes[daemon as usize].as_mut().unwrap_or_else(|| panic!("{daemon:?} is not running"));
            if let Some(status) = process.0.try_wait().unwrap() {
                self.processes[daemon as usize] = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash or a power cut would stop it.
    pub fn kill_9(&mut self, daemon: Daemon) {
        drop(self.processes[daemon as usize].take().unwrap_or_else(|| panic!("{daemon:?} is not running")));
    }

    /// Sends `daemon` a signal by name (`HUP`, as `systemctl reload` does).
    pub fn signal(&self, daemon: Daemon, signal: &str) {
        let process = self.processes[daemon as usize].as_ref().unwrap_or_else(|| panic!("{daemon:?} is not running"));
        assert!(Command::new("kill").args([&format!("-{signal}"), &process.0.id().to_string()]).status().unwrap().success());
    }

    /// A client of this system's gateway that other threads can use.
    pub fn client(&self) -> Client {
        Client { port: self.port }
    }

    /// Stops the daemons the way systemd does (SIGTERM, gateway first) and
    /// asserts that each exits cleanly.
    pub fn stop(mut self) {
        for mut process in self.processes.iter_mut().rev().filter_map(Option::take) {
            let pid = process.0.id().to_string();
            assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
            let status = process.0.wait().unwrap();
            assert!(status.success(), "a daemon exited with {status} on SIGTERM");
        }
    }

    /// marionettectl on this system's admin socket as [`OPERATOR`], `stdin` on its input: exit code and stdout.
    pub fn ctl(&self, args: &[&str], stdin: &str) -> (i32, String) {
        self.ctl_as(OPERATOR, args, stdin)
    }

    /// marionettectl with `operator`'s session (made by `login`).
    pub fn ctl_as(&self, operator: &str, args: &[&str], stdin: &str) -> (i32, String) {
        let session = self.dir.join(format!("{operator}.session"));
        let mut child = Command::new(binary("marionettectl"))
            .arg("--socket")
            .arg(&self.admin)
            .arg("--session")
            .arg(session)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that reads no password may have exited already.
        let _ = child.stdin.take().unwrap().write_all(format!("{stdin}\n").as_bytes());
        let output = child.wait_with_output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.code().unwrap_or(-1), said)
    }

    /// Enrols `operator` (logged in with marionettectl) in two-factor
    /// authentication with marionettectl, confirming with this step's code:
    /// the secret, that step and the recovery codes.
    pub fn enrol_two_factor(&self, operator: &str) -> (String, u64, Vec<String>) {
        let (exit, output) = self.ctl_as(operator, &["two-factor", "enrol"], OPERATOR_PASSWORD);
        assert_eq!(exit, 0, "two-factor enrol: {output}");
        let secret = output.lines().find_map(|line| line.strip_prefix("secret ")).unwrap_or_else(|| panic!("no secret in: {output}")).trim().to_string();
        let step = totp_step_now();
        let (exit, output) = self.ctl_as(operator, &["two-factor", "confirm", &totp_code(&secret, step)], "");
        assert_eq!(exit, 0, "two-factor confirm: {output}");
        let recovery_codes = output.lines().filter(|line| line.len() == 19 && line.matches('-').count() == 3).map(str::to_string).collect();
        (secret, step, recovery_codes)
    }

    /// One HTTP/1.1 request on its own connection: status, head and body.
    pub fn raw(&self, request: &str) -> (u16, String, String) {
        raw_on(self.port, request)
    }

    /// GET `path` (/metrics, /healthz; /readyz on the gateway) from `daemon`'s metrics listener.
    pub fn probe(&self, daemon: Daemon, path: &str) -> (u16, String, String) {
        raw_on(self.metrics_ports[daemon as usize], &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    }

    /// `daemon`'s Prometheus metrics, as text.
    pub fn metrics(&self, daemon: Daemon) -> String {
        let (status, _, body) = self.probe(daemon, "/metrics");
        assert_eq!(status, 200, "{daemon:?} /metrics: {body}");
        body
    }

    pub fn get(&self, path: &str) -> (u16, String, String) {
        self.raw(&format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    }

    /// GET `path` from the gateway with extra header lines (each ending in
    /// \r\n): the status, the head and the body's bytes (a PDF's too).
    pub fn get_bytes(&self, path: &str, headers: &str) -> (u16, String, Vec<u8>) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n").as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |at| at + 4);
        let head = String::from_utf8_lossy(&response[..split]).to_string();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, head, response[split..].to_vec())
    }

    /// POST /graphql with extra header lines (each ending in \r\n); returns the status, the head and the JSON body.
    pub fn post(&self, query: &str, variables: Value, headers: &str) -> (u16, String, Value) {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let (status, head, body) = self.raw(&format!(
            "POST /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nAccept: application/graphql-response+json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        (status, head, serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")))
    }

    pub fn as_user(&self, token: &str, query: &str, variables: Value) -> Value {
        self.post(query, variables, &format!("Authorization: Bearer {token}\r\n")).2
    }

    pub fn register(&self, email: &str, password: &str) -> Value {
        self.post("mutation($e: String!, $p: String!) { register(email: $e, password: $p) { id email role } }", json!({ "e": email, "p": password }), "").2
    }

    pub fn login(&self, email: &str, password: &str) -> String {
        let body = self.post("mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }", json!({ "e": email, "p": password }), "").2;
        body["data"]["login"]["token"].as_str().unwrap_or_else(|| panic!("login failed: {body}")).to_string()
    }

    /// A token signed with the gateway's own newest key, with these claims
    /// (`sub`, `role` as "User" or "Operator", `sid` a live session's as
    /// [`session_of`] reads it, `iat`, `exp` in seconds): what the gateway
    /// itself would sign, at times a login cannot choose.
    pub fn signed_token(&self, claims: &Value) -> String {
        let keys = self.dir.join("gateway/keys");
        // The signing keys, not the key for secrets at rest beside them.
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&keys).unwrap().map(|entry| entry.unwrap().path()).filter(|path| path.extension().is_some_and(|e| e == "ed25519")).collect();
        files.sort();
        let key_file = files.last().unwrap_or_else(|| panic!("no signing key in {}", keys.display()));
        let hex = std::fs::read_to_string(key_file).unwrap();
        let seed: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&hex.trim()[2 * i..2 * i + 2], 16).unwrap()).collect();
        // The seed as PKCS#8 (RFC 8410): a fixed prefix, then the 32 bytes.
        let mut pkcs8 = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        pkcs8.extend_from_slice(&seed);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(key_file.file_stem().unwrap().to_string_lossy().into_owned());
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ed_der(&pkcs8)).unwrap()
    }

    /// A graphql-transport-ws connection, initialised with `token` (any text; it need not be valid).
    pub fn subscriptions(&self, token: &str) -> Subscriptions {
        Subscriptions::open(self.port, token)
    }
}

/// A GraphQL client that reports a dropped or refused connection instead of
/// panicking, for drivers that keep going while daemons are killed.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    port: u16,
}

impl Client {
    /// The answer, or why there is none (the gateway was down or went down mid-request).
    pub fn request(&self, token: &str, query: &str, variables: Value) -> Result<Value, String> {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let request = format!(
            "POST /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nAccept: application/graphql-response+json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(|e| format!("read: {e}"))?;
        let (_, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP answer: {response:?}"))?;
        serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {body}"))
    }
}

/// The session a token is bound to (its `sid` claim, read without checking the signature).
pub fn session_of(token: &str) -> String {
    let claims: Value = jsonwebtoken::dangerous::insecure_decode(token).unwrap_or_else(|e| panic!("not a JWT ({e}): {token}")).claims;
    claims["sid"].as_str().unwrap_or_else(|| panic!("no sid in {claims}")).to_string()
}

/// What an authenticator app shows for the base32 `secret` at TOTP time
/// step `step` (30-second steps since the epoch).
pub fn totp_code(secret: &str, step: u64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_string()).to_bytes().unwrap_or_else(|e| panic!("not base32 ({e:?}): {secret}"));
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 0, 30, bytes, None, String::new()).generate(step * 30)
}

/// The TOTP time step now.
pub fn totp_step_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 30
}

/// The first error's `extensions.code`.
pub fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("expected an error code: {body}"))
}

/// `data.<field>` of an answer that must have no errors.
pub fn data<'a>(body: &'a Value, field: &str) -> &'a Value {
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    &body["data"][field]
}

pub const PLACE: &str = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { id status filledQuantity averagePrice price quantity } }";

/// A graphql-transport-ws client over a real WebSocket. Every read gives up
/// after 20 s, so a missing message fails the test instead of hanging it.
pub struct Subscriptions {
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    /// Read while waiting for another subscription's message.
    waiting: std::collections::VecDeque<Value>,
}

impl Subscriptions {
    fn open(port: u16, token: &str) -> Subscriptions {
        Subscriptions::over(TcpStream::connect(("127.0.0.1", port)).unwrap(), port, token)
    }

    /// A client on a connection the caller opened (from another source address, say) to the gateway on `port`.
    pub fn over(stream: TcpStream, port: u16, token: &str) -> Subscriptions {
        Subscriptions::with_headers(stream, port, &[], json!({ "Authorization": format!("Bearer {token}") })).expect("the gateway upgrades the connection")
    }

    /// A client whose upgrade request carries `headers` (an API key's
    /// signature of `GET /graphql`), with no token in `connection_init`;
    /// None when the gateway refuses the upgrade.
    pub fn signed(port: u16, headers: &[(&str, String)]) -> Option<Subscriptions> {
        Subscriptions::signed_with(port, headers, json!({}))
    }

    /// [`Subscriptions::signed`] with `init` as `connection_init`'s payload.
    pub fn signed_with(port: u16, headers: &[(&str, String)], init: Value) -> Option<Subscriptions> {
        Subscriptions::with_headers(TcpStream::connect(("127.0.0.1", port)).unwrap(), port, headers, init)
    }

    fn with_headers(stream: TcpStream, port: u16, headers: &[(&str, String)], init: Value) -> Option<Subscriptions> {
        use tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://127.0.0.1:{port}/graphql").into_client_request().unwrap();
        request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
        for (name, value) in headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (socket, response) = tungstenite::client(request, tungstenite::stream::MaybeTlsStream::Plain(stream)).ok()?;
        assert_eq!(response.headers()["sec-websocket-protocol"], "graphql-transport-ws");
        let mut client = Subscriptions { socket, waiting: Default::default() };
        client.send(json!({ "type": "connection_init", "payload": init }));
        assert_eq!(client.receive()["type"], "connection_ack");
        Some(client)
    }

    pub fn send(&mut self, message: Value) {
        self.socket.send(tungstenite::Message::Text(message.to_string().into())).unwrap();
    }

    pub fn receive(&mut self) -> Value {
        loop {
            match self.socket.read().unwrap_or_else(|e| panic!("no message within 20 s: {e}")) {
                tungstenite::Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Whether the server closes the socket (a close frame or the connection ending) before sending anything else.
    pub fn closed(&mut self) -> bool {
        loop {
            match self.socket.read() {
                Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
                Ok(tungstenite::Message::Close(_))
                | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed | tungstenite::Error::Io(_) | tungstenite::Error::Protocol(_)) => {
                    return true
                }
                Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => continue,
                _ => return false,
            }
        }
    }

    pub fn subscribe(&mut self, id: &str, query: &str) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query } }));
    }

    /// The next message for subscription `id`; the others' wait their turn.
    pub fn next_for(&mut self, id: &str) -> Value {
        if let Some(at) = self.waiting.iter().position(|m| m["id"] == id) {
            return self.waiting.remove(at).unwrap();
        }
        loop {
            let message = self.receive();
            if message["id"] == id {
                return message;
            }
            self.waiting.push_back(message);
        }
    }
}
