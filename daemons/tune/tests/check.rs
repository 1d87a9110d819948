//! The preflight check on fake hosts: a fit one (exit 0) and an unfit one
//! (exit 3) with a verdict per line saying what to do; the stat parser
//! under random input.

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use tune::check::{stat_processor, DataDir, Facts, Level};

fn write(root: &Path, path: &str, content: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// A `/proc/<pid>/task/<tid>/stat` line with `cpu` in field 39.
fn stat(pid: u32, thread: &str, cpu: u32) -> String {
    let fields: Vec<String> = (4..=52).map(|field| if field == 39 { cpu.to_string() } else { "0".into() }).collect();
    format!("{pid} ({thread}) S {}\n", fields.join(" "))
}

fn task(root: &Path, pid: u32, process: &str, thread: &str, cpu: u32) {
    write(root, &format!("proc/{pid}/comm"), &format!("{process}\n"));
    write(root, &format!("proc/{pid}/task/{pid}/stat"), &stat(pid, thread, cpu));
}

fn check(root: &Path, profile: &str) -> (i32, String) {
    let binary = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("marionette-tune");
    let profile_path = root.join("profile.toml");
    std::fs::write(&profile_path, profile).unwrap();
    let output = Command::new(binary).arg("--root").arg(root).arg("check").arg(&profile_path).output().unwrap();
    (output.status.code().unwrap(), String::from_utf8_lossy(&output.stdout).into_owned())
}

const PROFILE: &str = "model = \"t\"\n[cpus]\nhousekeeping = \"0-1\"\nisolated = \"2-7\"\nirq = \"0-1\"\n[daemons.matching]\ncpus = \"2\"\n";

#[test]
fn a_tuned_host_is_fit() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(r, "sys/devices/system/cpu/online", "0-7\n");
    write(r, "sys/devices/system/cpu/smt/active", "0\n");
    write(r, "sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n");
    write(r, "proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n");
    write(r, "sys/devices/system/clocksource/clocksource0/current_clocksource", "tsc\n");
    write(r, "sys/devices/system/cpu/isolated", "2-7\n");
    write(r, "sys/devices/system/cpu/nohz_full", "2-7\n");
    write(r, "proc/irq/40/effective_affinity_list", "1\n");
    write(r, "proc/irq/41/smp_affinity_list", "0-1\n");
    write(r, "proc/sys/kernel/osrelease", "6.1.0-13-amd64\n");
    write(r, "proc/sys/kernel/io_uring_disabled", "0\n");
    task(r, 100, "marionette-matc", "engine", 2);
    task(r, 7, "ksoftirqd/3", "ksoftirqd/3", 3);
    task(r, 1, "systemd", "systemd", 0);
    std::fs::create_dir_all(r.join("var/lib/marionette/matching")).unwrap();
    std::fs::create_dir_all(r.join("var/lib/marionette/ledger")).unwrap();

    let (code, said) = check(r, PROFILE);
    // Free space is the real disk's under the temporary root, which this
    // test does not control (a shared machine may be nearly full: the suite
    // failed here once with 10 GiB free of 251): every other check must
    // pass, and the verdict follows the free-space lines alone. The rule
    // itself is tested on given figures below.
    let failing: Vec<&str> = said.lines().filter(|line| line.starts_with("FAIL")).collect();
    assert!(failing.iter().all(|line| line.starts_with("FAIL  free space: ")), "{said}");
    assert_eq!(code, if failing.is_empty() { 0 } else { 3 }, "{said}");
    for line in [
        "PASS  SMT: off",
        "PASS  transparent hugepages: madvise",
        "PASS  swap: none",
        "PASS  clock source: tsc",
        "PASS  isolated CPUs: 2-7, as the profile wants",
        "PASS  nohz_full: on 2-7",
        "PASS  interrupts: none may run on the isolated CPUs 2-7",
        "PASS  tasks: only Marionette and per-CPU kernel threads",
        "PASS  kernel: 6.1",
        "PASS  io_uring: enabled",
        "PASS  direct I/O: /var/lib/marionette/ledger: supported",
    ] {
        assert!(said.contains(line), "{line}:\n{said}");
    }
    assert!(said.contains("free space: /var/lib/marionette/matching:") && said.contains("GiB free of"), "{said}");
    let last = said.lines().last().unwrap();
    assert!(if failing.is_empty() { last.starts_with("fit: ") } else { last.starts_with("NOT fit: ") }, "{said}");
}

#[test]
fn free_space_fails_under_1_gib_or_5_percent_and_warns_under_10_gib_or_20_percent() {
    const GIB: u64 = 1 << 30;
    let level = |free_gib: u64, total_gib: u64| {
        let dir =
            DataDir { path: "/var/lib/marionette/ledger".into(), exists: true, direct_io: Ok(()), free_bytes: free_gib * GIB, total_bytes: total_gib * GIB };
        let facts = Facts { data_dirs: vec![dir], ..Facts::default() };
        tune::check::check(None, &facts).into_iter().find(|verdict| verdict.what == "free space").map(|verdict| verdict.level)
    };
    assert_eq!(level(100, 200), Some(Level::Pass));
    assert_eq!(level(10, 251), Some(Level::Fail), "under 5% of the disk");
    assert_eq!(level(0, 8), Some(Level::Fail), "under 1 GiB");
    assert_eq!(level(9, 20), Some(Level::Warn), "under 10 GiB");
    assert_eq!(level(30, 200), Some(Level::Warn), "under 20% of the disk");
}

#[test]
fn an_untuned_host_is_unfit_and_every_line_says_what_to_do() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(r, "sys/devices/system/cpu/online", "0-7\n");
    write(r, "sys/devices/system/cpu/smt/active", "1\n");
    write(r, "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor", "powersave\n");
    write(r, "sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never\n");
    write(r, "proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/dev/vda2 partition 1048572 0 -2\n");
    write(r, "sys/devices/system/clocksource/clocksource0/current_clocksource", "hpet\n");
    write(r, "sys/devices/system/cpu/isolated", "\n");
    write(r, "proc/irq/41/smp_affinity_list", "0-7\n");
    write(r, "proc/sys/kernel/osrelease", "4.19.0-26-amd64\n");
    write(r, "proc/sys/kernel/io_uring_disabled", "2\n");
    task(r, 900, "sshd", "sshd", 3);
    task(r, 901, "sshd", "sshd", 4);

    let (code, said) = check(r, PROFILE);
    assert_eq!(code, 3, "{said}");
    for line in [
        "WARN  SMT: on: an isolated CPU shares its core with a sibling; turn SMT off",
        "WARN  CPU governor: not performance on 3:powersave; marionette-tune apply sets it",
        "FAIL  transparent hugepages: always: khugepaged stalls the engines; boot with transparent_hugepage=madvise",
        "WARN  swap: on (/dev/vda2)",
        "FAIL  clock source: hpet",
        "FAIL  isolated CPUs: the kernel isolates {}, the profile wants {2-7}",
        "WARN  nohz_full: covers {}, not all of {2-7}",
        "FAIL  interrupts: 1 may run on isolated CPUs (IRQ 41); marionette-tune apply moves them",
        "WARN  tasks: 2 other processes ran on isolated CPUs: sshd[900] on 3, sshd[901] on 4",
        "FAIL  kernel: 4.19: too old",
        "FAIL  io_uring: kernel.io_uring_disabled = 2",
        "WARN  data directory: /var/lib/marionette/matching does not exist yet",
    ] {
        assert!(said.contains(line), "{line}:\n{said}");
    }
    assert!(said.lines().last().unwrap().starts_with("NOT fit: 0 pass, 7 warn, 6 fail"), "{said}");
}

#[test]
fn an_interrupt_the_kernel_manages_on_an_isolated_cpu_is_not_a_failure() {
    // As in a 2-CPU VM with isolcpus=1: virtio-blk's queue for CPU 1 is bound there by the kernel.
    let profile =
        tune::profile::Profile::parse("model = \"t\"\n[cpus]\nhousekeeping = \"0\"\nisolated = \"1\"\nirq = \"0\"\n[daemons.matching]\ncpus = \"1\"\n")
            .unwrap();
    let mut facts = tune::check::Facts {
        kernel_isolated: Some("1".into()),
        irq_affinities: vec![(25, "0".into()), (26, "1".into())],
        managed_irqs: vec![26],
        ..Default::default()
    };
    let interrupts = |facts: &tune::check::Facts| {
        let verdicts = tune::check::check(Some(&profile), facts);
        let line = verdicts.into_iter().find(|v| v.what == "interrupts").unwrap();
        (line.level, line.detail)
    };
    let (level, detail) = interrupts(&facts);
    assert_eq!(level, tune::check::Level::Pass, "{detail}");
    assert!(detail.contains("IRQ 26: per-CPU queues the kernel manages"), "{detail}");
    // The same interrupt, movable: a failure, as before.
    facts.managed_irqs.clear();
    let (level, detail) = interrupts(&facts);
    assert_eq!(level, tune::check::Level::Fail, "{detail}");
    assert!(detail.contains("1 may run on isolated CPUs (IRQ 26)"), "{detail}");
}

proptest! {
    #[test]
    fn the_stat_parser_answers_any_text(text in ".{0,200}") {
        let _ = stat_processor(&text);
    }

    #[test]
    fn the_processor_is_found_whatever_the_command_holds(command in "[ -~]{0,15}", cpu in 0u32..4096, pid in 1u32..4_000_000) {
        prop_assert_eq!(stat_processor(&stat(pid, &command, cpu)), Some((command, cpu)));
    }
}
