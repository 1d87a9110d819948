//! The systemd units in `systemd/`: `systemd-analyze verify` accepts every
//! one with nothing to say, and `systemd-analyze security` scores every
//! service 2.0 or better (lower is safer), offline, against the units as
//! shipped and the daemon binaries this build made.

use std::path::PathBuf;
use std::process::Command;

use packaging::repository;

const SERVICES: [&str; 3] = ["marionette-matching.service", "marionette-ledger.service", "marionette-gateway.service"];
const EXPOSURE_MAX: f64 = 2.0;

fn units() -> Vec<PathBuf> {
    let mut units: Vec<PathBuf> = std::fs::read_dir(repository().join("systemd")).unwrap().map(|e| e.unwrap().path()).collect();
    units.sort();
    units
}

/// A root with the host's own systemd units (for sysinit.target and the
/// like), ours, and the daemon binaries where the units expect them.
fn root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let system = root.path().join("usr/lib/systemd/system");
    std::fs::create_dir_all(&system).unwrap();
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    for entry in std::fs::read_dir("/lib/systemd/system").expect("systemd is installed (scripts/test installs it)") {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), system.join(entry.file_name())).unwrap();
        }
    }
    for unit in units() {
        std::fs::copy(&unit, system.join(unit.file_name().unwrap())).unwrap();
    }
    // The gateway's ExecReload sends SIGHUP with procps' kill.
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.path().join("bin/kill")).expect("procps' kill (scripts/test installs procps)");
    let built = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    for service in SERVICES.iter().chain(&["marionette-tune.service"]) {
        let binary = service.trim_end_matches(".service");
        std::fs::copy(built.join(binary), root.path().join("usr/bin").join(binary))
            .unwrap_or_else(|e| panic!("{binary} not built ({e}): run the tests with cargo test --workspace"));
    }
    root
}

fn analyze(args: &[&str]) -> (bool, String) {
    let output = Command::new("systemd-analyze").args(args).output().expect("systemd-analyze (Debian's systemd package)");
    (output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

#[test]
fn every_unit_verifies_with_nothing_to_say() {
    let root = root();
    let names: Vec<String> = units().iter().map(|u| u.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert!(names.len() >= 8, "the services, the slices and the target: {names:?}");
    let mut args = vec!["verify".to_string(), format!("--root={}", root.path().display())];
    args.extend(names.iter().cloned());
    let (ok, said) = analyze(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok && said.trim().is_empty(), "systemd-analyze verify: {said}");

    // And it would notice: a unit with an unknown key or a missing binary fails.
    let system = root.path().join("usr/lib/systemd/system");
    let broken = std::fs::read_to_string(system.join("marionette-ledger.service")).unwrap().replace("[Service]", "[Service]\nWatchdogSecs=5");
    std::fs::write(system.join("marionette-ledger.service"), broken).unwrap();
    std::fs::remove_file(root.path().join("usr/bin/marionette-matching")).unwrap();
    let (_, said) = analyze(&["verify", &format!("--root={}", root.path().display()), "marionette-ledger.service", "marionette-matching.service"]);
    assert!(said.contains("WatchdogSecs") && said.contains("marionette-matching"), "{said}");
}

#[test]
fn every_service_scores_at_most_two_in_systemd_analyze_security() {
    for service in SERVICES {
        let path = repository().join("systemd").join(service);
        let (_, said) = analyze(&["security", "--offline=true", &path.display().to_string()]);
        let score: f64 = said
            .lines()
            .find_map(|line| line.strip_prefix(&format!("→ Overall exposure level for {service}: ")))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no score for {service}:\n{said}"));
        println!("{service}: exposure {score}");
        assert!(score <= EXPOSURE_MAX, "{service} scores {score}, over {EXPOSURE_MAX}:\n{said}");
    }
}

/// What the daemons' code relies on: systemd waits for READY and watches the
/// engine loop's heartbeats, restarts a failed daemon, and keeps the shared
/// socket directory when one of them stops.
#[test]
fn every_service_is_notify_watched_restarted_and_pinned_to_its_slice() {
    for service in SERVICES {
        let text = std::fs::read_to_string(repository().join("systemd").join(service)).unwrap();
        let daemon = service.trim_start_matches("marionette-").trim_end_matches(".service");
        for line in [
            "Type=notify".to_string(),
            "Restart=on-failure".to_string(),
            "RuntimeDirectoryPreserve=yes".to_string(),
            format!("Slice=marionette-{daemon}.slice"),
            format!("StateDirectory=marionette/{daemon}"),
            "StateDirectoryMode=0700".to_string(),
            "UMask=0077".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "{service} lacks {line}");
        }
        assert!(text.lines().any(|l| l.starts_with("WatchdogSec=")), "{service} has no watchdog");
        for bound in ["MemoryHigh=", "MemoryMax=", "TasksMax="] {
            assert!(text.lines().any(|l| l.starts_with(bound)), "{service} has no {bound}");
        }
        assert!(text.contains("io_uring_setup") && text.contains("sched_setaffinity"), "{service}: the syscall filter must keep io_uring and pinning");
    }
    let target = std::fs::read_to_string(repository().join("systemd/marionette.target")).unwrap();
    assert!(SERVICES.iter().all(|s| target.contains(s)), "the target pulls in all three: {target}");
    let gateway = std::fs::read_to_string(repository().join("systemd/marionette-gateway.service")).unwrap();
    assert!(gateway.contains("After=marionette-matching.service marionette-ledger.service"), "the gateway starts after the engines");
}
