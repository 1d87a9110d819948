//! The Debian packages, installed into a booted Debian 12 with its own
//! systemd: the proof that an operator's `apt install` and `systemctl` work.
//!
//! It builds the `.deb` files (scripts/build-debs), boots a debootstrapped
//! bookworm (cached under ~/.cache/marionette/debootstrap) with
//! `systemd-nspawn --boot` on a private network, and inside it: installs
//! the packages with apt; checks READY, the state directories, the secrets
//! and the conffiles; sets up an operator, assets and a market with
//! marionettectl; trades through the gateway with curl; restarts, SIGKILLs
//! and SIGSTOPs (watchdog) the daemons and finds every balance and order
//! again; reinstalls as an upgrade (matching and the ledger keep running,
//! the gateway restarts, an edited conffile stays); pins matching with
//! marionette-tune and reverts it; removes and purges.
//! It prints each check as it passes (on stderr, past the test harness's
//! capture) and removes the machine afterwards.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use packaging::{build_debs, check_host, output_with_stdin, succeeded};

const PACKAGES: &str = "marionette marionette-common marionette-matching marionette-ledger marionette-gateway marionette-tools marionette-console";
const DAEMONS: [&str; 3] = ["matching", "ledger", "gateway"];
const OPERATOR: (&str, &str) = ("ops@bank.example", "operator one: tulip quarry lantern");
const APPROVER: (&str, &str) = ("approver@bank.example", "operator two: tulip quarry lantern");
const ALICE: (&str, &str) = ("alice@bank.example", "alice password 1");
const BOB: (&str, &str) = ("bob@bank.example", "bob password 1");
/// What debootstrap adds to minbase: an init, curl as the GraphQL client, and
/// procps (the gateway's dependency, for its ExecReload): the container has
/// no network to fetch it from when the packages are installed.
const DEBOOTSTRAP_INCLUDE: &str = "systemd,systemd-sysv,dbus,curl,ca-certificates,procps";

/// Writes past libtest's capture, so that a passing run shows what it checked.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "system test: {line}");
}

/// A bookworm tree with systemd, made once by debootstrap and copied for each run.
fn debian_tree(into: &Path) {
    let home = std::env::var("HOME").expect("HOME");
    let cache = PathBuf::from(home).join(".cache/marionette/debootstrap").join(format!("bookworm-{}", DEBOOTSTRAP_INCLUDE.replace(',', "-")));
    if !cache.exists() {
        let partial = cache.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        report(&format!("debootstrapping Debian 12 into {} (about a minute, once)", cache.display()));
        let include = format!("--include={DEBOOTSTRAP_INCLUDE}");
        check_host("debootstrap", &["--variant=minbase", &include, "bookworm", partial.to_str().unwrap(), "http://deb.debian.org/debian"]);
        std::fs::rename(&partial, &cache).unwrap();
    }
    check_host("cp", &["-a", &format!("{}/.", cache.display()), into.to_str().unwrap()]);
}

/// A booted container; powered off and removed on drop.
struct Machine {
    nspawn: Child,
    leader: u32,
    root: tempfile::TempDir,
}

impl Machine {
    fn boot(root: tempfile::TempDir) -> Machine {
        let name = format!("marionette-test-{}", std::process::id());
        let log = std::fs::File::create(root.path().with_extension("console.log")).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .args(["--boot", "--register=no", "--keep-unit", "--private-network", "--console=passive", "--quiet"])
            .arg(format!("--machine={name}"))
            .arg(format!("--directory={}", root.path().display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn (Debian's systemd-container)");
        let nspawn_pid = nspawn.id();
        let mut machine = Machine { nspawn, leader: 0, root };
        // The container's init is nspawn's child once it has set the namespaces up.
        let deadline = Instant::now() + Duration::from_secs(30);
        while machine.leader == 0 {
            assert!(Instant::now() < deadline, "no systemd in the container after 30 s");
            assert!(machine.nspawn.try_wait().unwrap().is_none(), "systemd-nspawn exited; see {}", machine.root.path().with_extension("console.log").display());
            let children = std::fs::read_to_string(format!("/proc/{nspawn_pid}/task/{nspawn_pid}/children")).unwrap_or_default();
            for pid in children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
                if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "systemd") {
                    machine.leader = pid;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // "degraded" is fine (a container lacks some hardware units); the
        // answer only says that start-up has finished.
        let state = machine.run("systemctl is-system-running --wait");
        report(&format!("booted Debian 12 in a container (init pid {}, system {})", machine.leader, String::from_utf8_lossy(&state.stdout).trim()));
        machine
    }

    /// Runs `script` with sh inside the container, as root, with a clean environment.
    fn run_with(&self, script: &str, stdin: &str) -> Output {
        let mut command = Command::new("nsenter");
        command.args(["-t", &self.leader.to_string(), "-a", "--", "/usr/bin/env", "-i"]).args([
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
            "DEBIAN_FRONTEND=noninteractive",
            "/bin/sh",
            "-c",
            script,
        ]);
        output_with_stdin(command, stdin)
    }

    fn run(&self, script: &str) -> Output {
        self.run_with(script, "")
    }

    /// Runs `script`, asserts that it succeeded, and returns its stdout.
    fn ok(&self, script: &str) -> String {
        self.ok_with(script, "")
    }

    fn ok_with(&self, script: &str, stdin: &str) -> String {
        succeeded(&format!("in the container, `{script}`"), self.run_with(script, stdin))
    }

    fn wait_until(&self, what: &str, seconds: u64, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while !self.run(script).status.success() {
            assert!(Instant::now() < deadline, "{what}: not within {seconds} s; journal:\n{}", self.ok("journalctl -n 60 --no-pager -u 'marionette*'"));
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn property(&self, unit: &str, name: &str) -> String {
        self.ok(&format!("systemctl show -p {name} --value {unit}")).trim().to_string()
    }

    /// A GraphQL request through the gateway with curl; returns `data`, failing on errors.
    fn graphql(&self, token: &str, query: &str, variables: serde_json::Value) -> serde_json::Value {
        let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
        let authorization = if token.is_empty() { String::new() } else { format!("-H 'authorization: Bearer {token}'") };
        let answer = self.ok_with(
            &format!("curl -sS --fail-with-body -H 'content-type: application/json' {authorization} --data-binary @- http://127.0.0.1:8080/graphql"),
            &body,
        );
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"));
        assert!(answer.get("errors").is_none(), "{query}: {answer}");
        answer["data"].clone()
    }

    fn ctl(&self, args: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&format!("marionettectl {args}"))).unwrap()
    }

    fn wait_serving(&self) {
        for daemon in DAEMONS {
            self.wait_until(&format!("marionette-{daemon} active"), 60, &format!("systemctl is-active --quiet marionette-{daemon}"));
        }
        self.wait_until("the gateway ready (/readyz)", 60, "curl -sf http://127.0.0.1:8080/readyz");
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // nspawn turns SIGTERM into a clean poweroff of the container.
        let _ = Command::new("kill").args(["-TERM", &self.nspawn.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.nspawn.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        let _ = std::fs::remove_file(self.root.path().with_extension("console.log"));
    }
}

/// Balances and orders of both traders, in a form that compares equal
/// exactly when nothing was lost or applied twice.
fn books(machine: &Machine, tokens: &[String]) -> serde_json::Value {
    let query = "{ balances { asset available locked } userOrders(limit: 100) { id status side price quantity filledQuantity } }";
    serde_json::Value::Array(tokens.iter().map(|token| machine.graphql(token, query, serde_json::json!({}))).collect())
}

fn decimal(value: &serde_json::Value) -> String {
    let text = value.as_str().unwrap();
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text.to_string()
    }
}

fn balance(books: &serde_json::Value, trader: usize, asset: &str) -> (String, String) {
    let balances = books[trader]["balances"].as_array().unwrap();
    let found = balances.iter().find(|b| b["asset"] == asset).unwrap_or_else(|| panic!("no {asset} balance in {balances:?}"));
    (decimal(&found["available"]), decimal(&found["locked"]))
}

#[test]
fn packages_install_serve_survive_restarts_upgrade_and_purge_in_a_booted_debian() {
    let started = Instant::now();
    let work = tempfile::Builder::new().prefix("marionette-system-").tempdir_in("/var/tmp").unwrap();
    let debs = work.path().join("debs");
    // The -dbgsym packages (symbols for the four binaries) are built too; an operator installs them only to debug.
    let built = build_debs(&debs);
    report(&format!("built and lintian-checked {} ({} s)", built.join(" "), started.elapsed().as_secs()));

    let root = tempfile::Builder::new().prefix("machine-").tempdir_in(work.path()).unwrap();
    debian_tree(root.path());
    std::fs::create_dir_all(root.path().join("srv/debs")).unwrap();
    for deb in &built {
        std::fs::copy(debs.join(deb), root.path().join("srv/debs").join(deb)).unwrap();
    }
    let machine = Machine::boot(root);

    // Install.
    machine.ok("apt-get install -y -q /srv/debs/*.deb");
    machine.wait_serving();
    for daemon in DAEMONS {
        let unit = format!("marionette-{daemon}.service");
        let status = machine.property(&unit, "StatusText");
        assert!(status.starts_with("serving"), "{unit} said READY with where it serves: {status:?}");
        assert_eq!(machine.property(&unit, "Slice"), format!("marionette-{daemon}.slice"));
        assert_eq!(machine.property(&unit, "UnitFileState"), "enabled");
        // The bounds are in force: systemd resolved the shares of the host's memory to bytes.
        for bound in ["MemoryMax", "TasksMax"] {
            let value = machine.property(&unit, bound);
            assert!(value.parse::<u64>().is_ok_and(|n| n > 0), "{unit} {bound}={value}: a bound, not infinity");
        }
        // A user of its own: its state directory is its alone, and it runs as it.
        let state = machine.ok(&format!("stat -c '%a %U' /var/lib/marionette/{daemon}"));
        assert_eq!(state.trim(), format!("700 marionette-{daemon}"), "{daemon}'s state directory");
        let pid = machine.property(&unit, "MainPID");
        assert_eq!(machine.ok(&format!("ps -o user:32= -p {pid}")).trim(), format!("marionette-{daemon}"), "{unit} runs as its own user");
        assert_eq!(machine.ok(&format!("getent passwd marionette-{daemon} | cut -d: -f7")).trim(), "/usr/sbin/nologin");
        let conffiles = machine.ok(&format!("dpkg-query -W -f='${{Conffiles}}' marionette-{daemon}"));
        assert!(conffiles.contains(&format!("/etc/marionette/{daemon}.toml")), "{daemon}'s config is a conffile: {conffiles}");
    }
    assert_eq!(machine.ok("systemctl is-enabled marionette.target").trim(), "enabled");
    assert_eq!(machine.ok("systemctl is-active marionette.target").trim(), "active");
    // The sockets are the shared group's; the ledger let the gateway's user in by SO_PEERCRED (serving above).
    assert_eq!(machine.ok("stat -c '%a %G' /run/marionette/ledger.sock").trim(), "660 marionette");
    let documentation = machine.property("marionette-ledger.service", "Documentation");
    let readme = documentation.strip_prefix("file:").unwrap_or_else(|| panic!("the units document themselves with a file: {documentation}"));
    machine.ok(&format!("test -f {readme}"));
    for page in ["marionette-matching", "marionette-ledger", "marionette-gateway", "marionettectl", "marionette-tune"] {
        machine.ok(&format!("test -f /usr/share/man/man8/{page}.8.gz"));
    }
    let keys = machine.ok("stat -c '%a %U %n' /var/lib/marionette/gateway/keys /var/lib/marionette/gateway/keys/*.ed25519");
    let key_lines: Vec<&str> = keys.lines().collect();
    assert_eq!(key_lines.len(), 2, "one key, made at install: {keys}");
    assert!(key_lines[0].starts_with("700 marionette") && key_lines[1].starts_with("600 marionette"), "{keys}");
    let shipped = machine.ok("dpkg -L marionette-gateway marionette-common");
    assert!(!shipped.contains("/var/lib/marionette"), "no state and no secret is shipped: {shipped}");
    report("apt install: the three units are enabled and active after READY (status says where each serves), each in its slice; the target is active; state directories are 0700 marionette; configs are conffiles; the JWT key was made at install (0600) and is not in any package; the README the units point to and the man pages are installed");

    // The console, from marionette-console's files, at / with its policy;
    // its hashed assets cached for good; a page of the app is its index.
    let head = machine.ok("curl -sS -D - -o /tmp/index.html http://127.0.0.1:8080/");
    let index = machine.ok("cat /tmp/index.html");
    assert!(index.contains("<div id=\"root\">"), "the console's page at /: {index}");
    assert!(head.to_lowercase().contains("content-security-policy: default-src 'none'"), "{head}");
    let asset = index.split('"').find(|part| part.starts_with("/assets/") && part.ends_with(".js")).unwrap_or_else(|| panic!("no script in {index}"));
    let installed = machine.ok(&format!("dpkg -S /usr/share/marionette/console{asset}"));
    assert!(installed.starts_with("marionette-console:"), "{installed}");
    let asset_head = machine.ok(&format!("curl -sS -D - -o /dev/null http://127.0.0.1:8080{asset}"));
    assert!(asset_head.starts_with("HTTP/1.1 200") && asset_head.to_lowercase().contains("immutable"), "{asset_head}");
    let page = machine.ok("curl -sS http://127.0.0.1:8080/operator/audit");
    assert_eq!(page, index, "a page of the app is the console's index");
    report(&format!("marionette-console: the gateway serves it at / with its Content-Security-Policy, {asset} (a file of the package) cached as immutable, /operator/audit as the app's page"));

    // Two operators set the exchange up (the first makes the second; each
    // action is one's proposal, exit 4, and the other's approval); two
    // traders trade through the gateway.
    machine.ok_with(&format!("marionettectl create-operator {}", OPERATOR.0), &format!("{}\n", OPERATOR.1));
    machine.ok_with(&format!("marionettectl login {}", OPERATOR.0), &format!("{}\n", OPERATOR.1));
    // As shipped, an operator acts only with two-factor authentication on.
    let refused = machine.run(&format!("echo x | marionettectl create-operator {}", APPROVER.0));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("TWO_FACTOR_ENROLMENT_REQUIRED"), "{refused:?}");
    packaging::enrol_operator(|script, stdin| machine.ok_with(script, stdin), "", OPERATOR.1);
    machine.ok_with(&format!("marionettectl create-operator {}", APPROVER.0), &format!("{}\n", APPROVER.1));
    machine.ok_with(&format!("marionettectl --session /root/approver.session login {}", APPROVER.0), &format!("{}\n", APPROVER.1));
    packaging::enrol_operator(|script, stdin| machine.ok_with(script, stdin), "--session /root/approver.session", APPROVER.1);
    let four_eyes = |action: &str| -> serde_json::Value {
        machine.ok(&format!("marionettectl {action} 2>/dev/null; test $? -eq 4"));
        machine.ctl(&format!("--session /root/approver.session {action}"))
    };
    four_eyes("create-asset BTC 8");
    four_eyes("create-asset USD 2");
    let market = four_eyes("create-market BTC USD 1 0.01 0.001 0.002")["createMarket"]["id"].as_str().unwrap().to_string();
    let mut tokens = Vec::new();
    for (email, password) in [ALICE, BOB] {
        let register = "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { id } }";
        machine.graphql("", register, serde_json::json!({ "e": email, "p": password }));
        let login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }";
        tokens.push(machine.graphql("", login, serde_json::json!({ "e": email, "p": password }))["login"]["token"].as_str().unwrap().to_string());
    }
    four_eyes(&format!("deposit {} USD 10000 wire-1", ALICE.0));
    four_eyes(&format!("deposit {} BTC 2 wire-2", BOB.0));
    let verified = machine.ok("marionettectl audit verify");
    assert!(verified.contains("the audit log verifies"), "{verified}");
    let place = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { id status filledQuantity } }";
    let order = |token: &str, side: &str, quantity: &str, price: &str| {
        let input = serde_json::json!({ "i": { "market": market, "side": side, "type": "LIMIT", "quantity": quantity, "price": price } });
        machine.graphql(token, place, input)["placeOrder"].clone()
    };
    assert_eq!(order(&tokens[1], "SELL", "1", "100")["status"], "OPEN");
    // The wait for the fill is the ledger's settlement: the buy comes back FILLED.
    let mut deadline = Instant::now() + Duration::from_secs(10);
    let buy = order(&tokens[0], "BUY", "1", "100");
    while machine.graphql(&tokens[0], "query($id: ID!) { userOrder(id: $id) { status } }", serde_json::json!({ "id": buy["id"] }))["userOrder"]["status"]
        != "FILLED"
    {
        assert!(Instant::now() < deadline, "the buy was not filled: {buy}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(order(&tokens[1], "SELL", "0.5", "120")["status"], "OPEN");
    deadline = Instant::now() + Duration::from_secs(10);
    let mut expected = books(&machine, &tokens);
    while balance(&expected, 1, "BTC") != ("0.5".into(), "0.5".into()) {
        assert!(Instant::now() < deadline, "bob's resting sell is held: {expected}");
        std::thread::sleep(Duration::from_millis(100));
        expected = books(&machine, &tokens);
    }
    // 1 BTC at 100 USD: alice pays the 0.2% taker fee, bob the 0.1% maker fee.
    assert_eq!(balance(&expected, 0, "BTC"), ("1".into(), "0".into()));
    assert_eq!(balance(&expected, 0, "USD"), ("9899.8".into(), "0".into()));
    assert_eq!(balance(&expected, 1, "USD"), ("99.9".into(), "0".into()));
    report(&format!("marionettectl made two operators, each enrolled in two-factor authentication (refused before), and by four-eyes BTC, USD, market {market} and the deposits (the audit log verifies); through GraphQL two traders registered, logged in and traded 1 BTC at 100 (fees 0.2 and 0.1 USD), one sell rests"));

    // systemctl restart, then kill -9 of each main PID: every balance and order is there after.
    for daemon in DAEMONS {
        let unit = format!("marionette-{daemon}.service");
        let before = machine.property(&unit, "MainPID");
        machine.ok(&format!("systemctl restart {unit}"));
        machine.wait_serving();
        assert_ne!(machine.property(&unit, "MainPID"), before);
        assert_eq!(books(&machine, &tokens), expected, "after systemctl restart {unit}");
    }
    report("systemctl restart of each daemon keeps every balance and order");
    // systemctl reload sends the gateway SIGHUP (its certificate read again): the same process serves on.
    let gateway_pid = machine.property("marionette-gateway.service", "MainPID");
    machine.ok("systemctl reload marionette-gateway.service");
    machine.wait_until("the gateway logging the reload", 30, "journalctl -u marionette-gateway --no-pager | grep -q SIGHUP");
    assert_eq!(machine.property("marionette-gateway.service", "MainPID"), gateway_pid, "the reload did not end the gateway");
    assert_eq!(books(&machine, &tokens), expected, "after systemctl reload");
    report("systemctl reload marionette-gateway: the same process serves on");
    for daemon in DAEMONS {
        let unit = format!("marionette-{daemon}.service");
        let (pid, restarts) = (machine.property(&unit, "MainPID"), machine.property(&unit, "NRestarts"));
        machine.ok(&format!("kill -9 {pid}"));
        machine.wait_until(&format!("{unit} restarted after kill -9"), 60, &format!("[ \"$(systemctl show -p NRestarts --value {unit})\" != {restarts} ]"));
        machine.wait_serving();
        assert_ne!(machine.property(&unit, "MainPID"), pid);
        assert_eq!(books(&machine, &tokens), expected, "after kill -9 of {unit}");
    }
    report("kill -9 of each main PID: systemd restarted it, and every balance and order is there");

    // A stopped engine stops its heartbeats: the watchdog kills and restarts the daemon.
    for daemon in ["matching", "ledger"] {
        let unit = format!("marionette-{daemon}.service");
        let (pid, restarts) = (machine.property(&unit, "MainPID"), machine.property(&unit, "NRestarts"));
        machine.ok(&format!("kill -STOP {pid}"));
        machine.wait_until(&format!("the watchdog restarting {unit}"), 60, &format!("[ \"$(systemctl show -p NRestarts --value {unit})\" != {restarts} ]"));
        machine.wait_serving();
        let journal = machine.ok(&format!("journalctl --no-pager -u {unit}"));
        assert!(journal.contains("Watchdog timeout"), "systemd says why it killed {unit}:\n{journal}");
        assert_eq!(books(&machine, &tokens), expected, "after the watchdog restarted {unit}");
    }
    report("SIGSTOP of matching and of the ledger: the watchdog killed and restarted each (\"Watchdog timeout\" in the journal); nothing was lost");

    // An upgrade (the same version reinstalled runs the same scripts) keeps
    // the operator's edit, restarts the gateway, and leaves the engines running.
    machine.ok("sed -i 's/^ip_burst = 400$/ip_burst = 401/' /etc/marionette/gateway.toml && grep -q '^ip_burst = 401$' /etc/marionette/gateway.toml");
    let key_before = machine.ok("cat /var/lib/marionette/gateway/keys/*.ed25519");
    let pids: Vec<String> = DAEMONS.iter().map(|d| machine.property(&format!("marionette-{d}.service"), "MainPID")).collect();
    let upgrade = machine.ok("apt-get install -y -q --reinstall /srv/debs/*.deb 2>&1");
    machine.wait_serving();
    assert_eq!(machine.property("marionette-matching.service", "MainPID"), pids[0], "an upgrade leaves matching running");
    assert_eq!(machine.property("marionette-ledger.service", "MainPID"), pids[1], "an upgrade leaves the ledger running");
    assert_ne!(machine.property("marionette-gateway.service", "MainPID"), pids[2], "an upgrade restarts the gateway");
    assert!(upgrade.contains("systemctl restart marionette-ledger"), "the upgrade says how to restart the engines:\n{upgrade}");
    machine.ok("grep -q '^ip_burst = 401$' /etc/marionette/gateway.toml && ! ls /etc/marionette/*.dpkg-*");
    assert_eq!(machine.ok("cat /var/lib/marionette/gateway/keys/*.ed25519"), key_before, "the signing key is never replaced");
    assert_eq!(books(&machine, &tokens), expected, "after the upgrade");
    report(
        "upgrade: matching and the ledger kept running (with a note on restarting them), the gateway restarted, the edited conffile and the signing key stayed",
    );

    // The tuner pins the daemons from a hardware profile: this machine's two CPUs, matching alone on CPU 1.
    assert_eq!(machine.ok("systemctl is-enabled marionette-tune.service").trim(), "enabled");
    let tuned = machine.run("marionette-tune apply /usr/share/marionette/hardware/kvm-2cpu.toml");
    let said = format!("{}{}", String::from_utf8_lossy(&tuned.stdout), String::from_utf8_lossy(&tuned.stderr));
    // A container's /proc/sys and /sys are read-only: those settings fail (exit 2, each listed); the drop-ins are written.
    assert!(matches!(tuned.status.code(), Some(0 | 2)), "{said}");
    assert!(said.contains("systemd reloaded"), "{said}");
    machine.ok("systemctl restart marionette-matching");
    machine.wait_serving();
    let pinned = |unit: &str| machine.ok(&format!("grep Cpus_allowed_list /proc/$(systemctl show -p MainPID --value {unit})/status")).trim().to_string();
    assert_eq!(pinned("marionette-matching"), "Cpus_allowed_list:\t1", "{said}");
    assert_eq!(machine.property("marionette-matching.service", "CPUAffinity"), "1");
    assert_eq!(books(&machine, &tokens), expected, "after pinning matching");
    let (code, reverted) =
        (machine.run("marionette-tune revert").status.code(), machine.run("ls /etc/systemd/system/marionette-matching.service.d 2>&1 || true"));
    assert!(matches!(code, Some(0 | 2)));
    assert!(!String::from_utf8_lossy(&reverted.stdout).contains("50-marionette-tune.conf"), "revert removes the drop-ins");
    machine.ok("systemctl restart marionette-matching");
    machine.wait_serving();
    assert_ne!(pinned("marionette-matching"), "Cpus_allowed_list:\t1", "unpinned after revert");
    let preflight = machine.run("marionette-tune check /usr/share/marionette/hardware/kvm-2cpu.toml");
    let said = String::from_utf8_lossy(&preflight.stdout).into_owned();
    for line in ["PASS  direct I/O: /var/lib/marionette/ledger: supported", "PASS  io_uring: enabled", "isolated CPUs: "] {
        assert!(said.contains(line), "{line}:\n{said}");
    }
    // Fit or not depends on this host's kernel command line; the exit status says the same as the last line.
    let verdict = said.lines().last().unwrap_or_default();
    assert!(matches!((preflight.status.code(), verdict.split(':').next()), (Some(0), Some("fit")) | (Some(3), Some("NOT fit"))), "{said}");
    report("marionette-tune pinned matching to CPU 1 from the kvm-2cpu profile (CPUAffinity, Cpus_allowed_list of the restarted daemon), nothing lost; revert removed the drop-ins and unpinned it; its preflight check ran on the installed data directories");

    // Remove keeps data and config; purge removes config, and data only when asked.
    machine.ok(&format!("apt-get remove -y -q {PACKAGES}"));
    assert!(!machine.run("systemctl is-active --quiet marionette-ledger").status.success());
    machine.ok("! test -e /usr/bin/marionette-ledger && ! test -e /lib/systemd/system/marionette-ledger.service");
    machine.ok("test -f /etc/marionette/ledger.toml && test -d /var/lib/marionette/ledger && test -d /var/lib/marionette/gateway/keys");
    report("apt remove: units stopped, binaries and units gone, config and data kept");
    let purge = machine.ok("apt-get purge -y -q marionette-ledger 2>&1");
    assert!(purge.contains("kept its data in /var/lib/marionette/ledger"), "{purge}");
    machine.ok("! test -e /etc/marionette/ledger.toml && test -d /var/lib/marionette/ledger");
    // What remove left configured ("rc"); packages without conffiles are gone already.
    let configured = machine.ok("dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' 'marionette*' | awk '$1 == \"rc\" { print $2 }'");
    let configured: Vec<&str> = configured.split_whitespace().collect();
    assert!(configured.contains(&"marionette-matching") && configured.contains(&"marionette-gateway"), "{configured:?}");
    machine.ok(&format!("MARIONETTE_PURGE_DATA=yes apt-get purge -y -q {}", configured.join(" ")));
    machine.ok(
        "! test -e /etc/marionette && ! test -e /var/lib/marionette/matching && ! test -e /var/lib/marionette/gateway && test -d /var/lib/marionette/ledger",
    );
    let left = machine.ok("dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' 'marionette*' 2>/dev/null || true");
    assert!(left.lines().all(|l| !l.starts_with("ii") && !l.starts_with("rc")), "nothing installed or half-removed: {left}");
    report("apt purge: config removed; the ledger's data kept unless MARIONETTE_PURGE_DATA=yes (then removed)");

    drop(machine);
    report(&format!("done in {} s; the machine is powered off and removed", started.elapsed().as_secs()));
}
