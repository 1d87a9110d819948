//! marionette-tune against a fake sysfs/procfs tree: every file it writes,
//! idempotence, the dry run, the saved originals and the revert; the
//! profile checks; the CPU set parsers under random input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use tune::cpuset::CpuSet;
use tune::plan::{kernel_cmdline, plan, Layout};
use tune::profile::Profile;

fn repository() -> PathBuf {
    // Cargo's run-time value first: a binary reused from a clone at another path has the wrong compile-time one.
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())).join("../..")
}

fn tune(root: &Path, args: &[&str]) -> (i32, String, String) {
    let binary = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("marionette-tune");
    let output = Command::new(binary).arg("--root").arg(root).args(args).output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

const NIC: &str = "0000:3b:00.0";
const DISK: &str = "0000:5e:00.0";

const PROFILE: &str = r#"
model = "test server, 8 CPUs"
[cpus]
housekeeping = "0-1"
isolated = "2-7"
irq = "0-1"
[daemons.matching]
cpus = "2"
engine_cpu = 2
[daemons.ledger]
cpus = "3-4"
engine_cpu = 3
[daemons.gateway]
cpus = "1,5-7"
[[nics]]
pci = "0000:3b:00.0"
irq_cpus = "1"
[[nvme]]
pci = "0000:5e:00.0"
daemon = "ledger"
[host]
governor = "performance"
swappiness = 1
hugepages_2m = 512
transparent_hugepage = "never"
numa_balancing = false
timer_migration = false
vm_stat_interval_s = 10
max_cstate_latency_us = 10
"#;

/// An 8-CPU host as the kernel shows it, tuned for nothing.
fn fake_host() -> (tempfile::TempDir, BTreeMap<String, String>) {
    let root = tempfile::tempdir().unwrap();
    let mut files = BTreeMap::new();
    files.insert("sys/devices/system/cpu/online".to_string(), "0-7\n".to_string());
    for cpu in 0..8 {
        files.insert(format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"), "powersave\n".into());
        for (state, name, latency_us) in [(0, "POLL", 0), (1, "C1", 2), (2, "C1E", 10), (3, "C6", 133)] {
            let dir = format!("sys/devices/system/cpu/cpu{cpu}/cpuidle/state{state}");
            files.insert(format!("{dir}/name"), format!("{name}\n"));
            files.insert(format!("{dir}/latency"), format!("{latency_us}\n"));
            // An operator had turned C1E off on CPU 5: within the limit, so the profile turns it back on.
            files.insert(format!("{dir}/disable"), if cpu == 5 && state == 2 { "1\n" } else { "0\n" }.into());
        }
    }
    files.insert("proc/irq/default_smp_affinity".into(), "ff\n".into());
    for irq in [40, 41, 42, 50, 51] {
        files.insert(format!("proc/irq/{irq}/smp_affinity_list"), "0-7\n".into());
    }
    for irq in [40, 41, 42] {
        files.insert(format!("sys/bus/pci/devices/{NIC}/msi_irqs/{irq}"), "msix\n".into());
    }
    for irq in [50, 51] {
        files.insert(format!("sys/bus/pci/devices/{DISK}/msi_irqs/{irq}"), "msix\n".into());
    }
    for queue in ["rx-0", "rx-1"] {
        files.insert(format!("sys/bus/pci/devices/{NIC}/net/eth0/queues/{queue}/rps_cpus"), "00\n".into());
    }
    for queue in ["tx-0", "tx-1"] {
        files.insert(format!("sys/bus/pci/devices/{NIC}/net/eth0/queues/{queue}/xps_cpus"), "00\n".into());
    }
    files.insert("sys/devices/virtual/workqueue/cpumask".into(), "ff\n".into());
    files.insert("proc/sys/vm/swappiness".into(), "60\n".into());
    files.insert("proc/sys/kernel/numa_balancing".into(), "1\n".into());
    files.insert("proc/sys/kernel/timer_migration".into(), "1\n".into());
    files.insert("proc/sys/vm/stat_interval".into(), "1\n".into());
    files.insert("sys/kernel/mm/transparent_hugepage/enabled".into(), "always [madvise] never\n".into());
    files.insert("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages".into(), "0\n".into());
    // An operator's own drop-in next to where the tuner writes: never touched.
    files.insert("etc/systemd/system/marionette-ledger.service.d/10-local.conf".into(), "[Service]\nNice=-5\n".into());
    for (path, content) in &files {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    (root, files)
}

/// Every file under `root`, by relative path.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).unwrap().display().to_string(), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn write_profile(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("profile.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn apply_writes_every_setting_then_has_nothing_to_do_and_revert_restores_the_host() {
    let (root, original) = fake_host();
    let profile_dir = tempfile::tempdir().unwrap();
    let profile = write_profile(profile_dir.path(), PROFILE);
    let profile = profile.to_str().unwrap();

    // A dry run says what it would do and changes nothing.
    let (code, said, _) = tune(root.path(), &["apply", profile, "--dry-run"]);
    assert_eq!(code, 0);
    assert!(said.contains("would set /proc/irq/40/smp_affinity_list from \"0-7\" to \"1\""), "{said}");
    assert!(said.contains("dry run:"), "{said}");
    assert_eq!(tree(root.path()), original, "a dry run writes nothing");

    let (code, said, errors) = tune(root.path(), &["apply", profile]);
    assert_eq!(code, 0, "{said}{errors}");
    let tuned = tree(root.path());
    let expect = |path: &str, value: &str| assert_eq!(tuned.get(path).map(String::as_str), Some(value), "{path}");
    for irq in [40, 41, 42] {
        expect(&format!("proc/irq/{irq}/smp_affinity_list"), "1");
    }
    for irq in [50, 51] {
        expect(&format!("proc/irq/{irq}/smp_affinity_list"), "0-1");
    }
    expect("proc/irq/default_smp_affinity", "00000003");
    for queue in ["rx-0", "rx-1"] {
        expect(&format!("sys/bus/pci/devices/{NIC}/net/eth0/queues/{queue}/rps_cpus"), "00000002");
    }
    for queue in ["tx-0", "tx-1"] {
        expect(&format!("sys/bus/pci/devices/{NIC}/net/eth0/queues/{queue}/xps_cpus"), "00000002");
    }
    expect("sys/devices/virtual/workqueue/cpumask", "00000003");
    for cpu in 0..8 {
        expect(&format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"), "performance");
        // Only the state slower to wake than the profile's 10 µs is off.
        for (state, disabled) in [(0, "0"), (1, "0"), (2, "0"), (3, "1")] {
            let path = format!("sys/devices/system/cpu/cpu{cpu}/cpuidle/state{state}/disable");
            assert_eq!(tuned[&path].trim(), disabled, "{path}");
        }
    }
    expect("proc/sys/vm/swappiness", "1");
    expect("proc/sys/kernel/numa_balancing", "0");
    expect("proc/sys/kernel/timer_migration", "0");
    expect("proc/sys/vm/stat_interval", "10");
    expect("sys/kernel/mm/transparent_hugepage/enabled", "never");
    expect("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "512");
    let drop_in = |unit: &str| tuned.get(&format!("etc/systemd/system/{unit}.d/50-marionette-tune.conf")).cloned().unwrap_or_default();
    assert!(drop_in("marionette-matching.service").ends_with("[Service]\nCPUAffinity=2\n"), "{}", drop_in("marionette-matching.service"));
    assert!(drop_in("marionette-matching.slice").ends_with("[Slice]\nAllowedCPUs=2\n"));
    assert!(drop_in("marionette-ledger.service").ends_with("[Service]\nCPUAffinity=3-4\n"));
    assert!(drop_in("marionette-gateway.slice").ends_with("[Slice]\nAllowedCPUs=1,5-7\n"));
    assert!(drop_in("system.slice").ends_with("[Slice]\nAllowedCPUs=0-1\n"));
    assert!(drop_in("user.slice").ends_with("[Slice]\nAllowedCPUs=0-1\n"));
    assert!(drop_in("irqbalance.service").ends_with("[Service]\nEnvironment=IRQBALANCE_BANNED_CPULIST=2-7\n"));
    expect("etc/systemd/system/marionette-ledger.service.d/10-local.conf", "[Service]\nNice=-5\n");
    // Nothing else was written: the changed files plus the drop-ins and the saved originals.
    let new: Vec<&String> = tuned.keys().filter(|path| !original.contains_key(*path)).collect();
    assert_eq!(new.len(), 3 * 2 + 2 + 1 + 1, "six daemon drop-ins, two slices, irqbalance, saved.json: {new:?}");

    // Applying again finds nothing to do, and keeps the first originals.
    let (code, said, _) = tune(root.path(), &["apply", profile]);
    assert_eq!(code, 0);
    assert!(said.contains("nothing to change"), "{said}");
    assert_eq!(tree(root.path()), tuned, "a second apply writes nothing");
    let saved: BTreeMap<String, Option<String>> = serde_json::from_str(&tuned["var/lib/marionette-tune/saved.json"]).unwrap();
    assert_eq!(saved["proc/sys/vm/swappiness"].as_deref(), Some("60"));
    assert_eq!(saved["sys/kernel/mm/transparent_hugepage/enabled"].as_deref(), Some("madvise"), "the choice, writable back");
    assert_eq!(saved["etc/systemd/system/system.slice.d/50-marionette-tune.conf"], None, "created by the tuner");

    // A changed profile applied over a tuned host still saves the host's first values.
    let moved = PROFILE.replace("swappiness = 1", "swappiness = 5");
    let moved = write_profile(profile_dir.path(), &moved);
    assert_eq!(tune(root.path(), &["apply", moved.to_str().unwrap()]).0, 0);
    let saved: BTreeMap<String, Option<String>> =
        serde_json::from_str(&std::fs::read_to_string(root.path().join("var/lib/marionette-tune/saved.json")).unwrap()).unwrap();
    assert_eq!(saved["proc/sys/vm/swappiness"].as_deref(), Some("60"));

    // Revert: every value back (the kernel's form aside: sysfs rewrites what it is given), every tuner file gone.
    let (code, said, _) = tune(root.path(), &["revert", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(said.contains("would put back /proc/sys/vm/swappiness = \"60\""), "{said}");
    let (code, said, errors) = tune(root.path(), &["revert"]);
    assert_eq!(code, 0, "{said}{errors}");
    let reverted = tree(root.path());
    assert_eq!(reverted.keys().collect::<Vec<_>>(), original.keys().collect::<Vec<_>>(), "only the host's own files are left");
    for (path, value) in &original {
        let expected = if path.ends_with("transparent_hugepage/enabled") { "madvise".to_string() } else { value.trim().to_string() };
        assert_eq!(reverted[path].trim(), expected, "{path}");
    }
    assert!(!root.path().join("etc/systemd/system/system.slice.d").exists(), "an emptied drop-in directory goes too");
    assert!(root.path().join("etc/systemd/system/marionette-ledger.service.d/10-local.conf").exists());
    let (code, said, _) = tune(root.path(), &["revert"]);
    assert_eq!(code, 0);
    assert!(said.contains("nothing to revert"), "{said}");
}

#[test]
fn a_missing_device_or_knob_is_noted_and_a_damaged_saved_state_stops_everything() {
    let (root, original) = fake_host();
    std::fs::remove_dir_all(root.path().join(format!("sys/bus/pci/devices/{DISK}"))).unwrap();
    std::fs::remove_file(root.path().join("proc/sys/kernel/numa_balancing")).unwrap();
    let profile_dir = tempfile::tempdir().unwrap();
    let profile = write_profile(profile_dir.path(), PROFILE);
    let (code, said, _) = tune(root.path(), &["apply", profile.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(said.contains(&format!("note: NVMe {DISK}: no interrupts found")), "{said}");
    assert!(said.contains("note: /proc/sys/kernel/numa_balancing does not exist on this host"), "{said}");
    assert!(!root.path().join("proc/sys/kernel/numa_balancing").exists(), "a knob the kernel lacks is not created");
    assert_eq!(std::fs::read_to_string(root.path().join("proc/irq/50/smp_affinity_list")).unwrap(), original["proc/irq/50/smp_affinity_list"]);

    std::fs::write(root.path().join("var/lib/marionette-tune/saved.json"), "{ not json").unwrap();
    let before = tree(root.path());
    let (code, _, errors) = tune(root.path(), &["revert"]);
    assert_eq!(code, 1);
    assert!(errors.contains("saved.json") && errors.contains("nothing was changed"), "{errors}");
    let (code, _, errors) = tune(root.path(), &["apply", profile.to_str().unwrap()]);
    assert_eq!(code, 0, "nothing left to change, so the state is not needed: {errors}");
    assert_eq!(tree(root.path()), before);
}

#[test]
fn shipped_profiles_are_valid_and_bad_ones_are_refused_with_the_key() {
    for entry in std::fs::read_dir(repository().join("hardware/profiles")).unwrap() {
        let path = entry.unwrap().path();
        let profile = Profile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let cmdline = kernel_cmdline(&profile);
        assert!(cmdline.contains(&format!("isolcpus=managed_irq,domain,{}", profile.cpus.isolated)), "{cmdline}");
        assert!(cmdline.contains(&format!("irqaffinity={}", profile.cpus.irq)), "{cmdline}");
        // The command the host image's boot configuration is made with prints exactly that line.
        let (code, printed, errors) = tune(Path::new("/"), &["cmdline", path.to_str().unwrap()]);
        assert_eq!((code, printed.as_str()), (0, format!("{cmdline}\n").as_str()), "{errors}");
    }
    let refused = |from: &str, to: &str, says: &str| {
        let text = PROFILE.replacen(from, to, 1);
        assert_ne!(text, PROFILE, "{from}");
        let error = Profile::parse(&text).expect_err(to).to_string();
        assert!(error.contains(says), "{to}: {error}");
    };
    refused("isolated = \"2-7\"", "isolated = \"1-7\"", "CPUs 1 are both in cpus.housekeeping and cpus.isolated");
    refused("irq = \"0-1\"", "irq = \"0-2\"", "cpus.irq (0-2) must be a non-empty subset of cpus.housekeeping");
    refused("engine_cpu = 2", "engine_cpu = 5", "daemons.matching.engine_cpu (5)");
    refused("cpus = \"3-4\"", "cpus = \"2-4\"", "shares isolated CPUs 2");
    refused("cpus = \"3-4\"", "cpus = \"3-9\"", "daemons.ledger.cpus (3-9) must be non-empty and within");
    refused("pci = \"0000:3b:00.0\"", "pci = \"../../etc\"", "is not a PCI address");
    refused("irq_cpus = \"1\"", "irq_cpus = \"2\"", "packets must not interrupt isolated CPUs");
    refused("governor = \"performance\"", "governor = \"turbo\"", "host.governor \"turbo\"");
    refused("swappiness = 1", "swappiness = 1\nswapiness = 2", "unknown field `swapiness`");
    refused("[daemons.gateway]", "[daemons.gateways]", "daemons.gateways: unknown daemon");
    refused("housekeeping = \"0-1\"", "housekeeping = \"0-40000\"", "past the highest supported CPU");
    refused("model = \"test server, 8 CPUs\"", "model = \"x\\n[Service]\\nExecStart=/bin/sh\"", "model must be one line");
}

#[test]
fn the_plan_is_empty_for_a_host_already_at_the_profile() {
    let profile = Profile::parse(PROFILE).unwrap();
    let layout = Layout { cpus_online: CpuSet::parse_list("0-7").unwrap(), ..Layout::default() };
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let first = plan(&profile, &layout, |p| files.get(p).cloned());
    assert!(!first.changes.is_empty());
    for change in &first.changes {
        files.insert(change.path.clone(), change.after.clone());
    }
    // Knobs absent from this host were noted, not planned; drop-ins were planned as new files.
    let second = plan(&profile, &layout, |p| files.get(p).cloned());
    assert_eq!(second.changes, vec![]);
    assert!(first.changes.iter().all(|c| c.before.is_none()), "only drop-ins, on a host with no knobs");
}

proptest! {
    #[test]
    fn cpu_lists_and_masks_round_trip(cpus in proptest::collection::btree_set(0u32..300, 0..40), groups in 1usize..12) {
        let set: CpuSet = cpus.iter().copied().collect();
        prop_assert_eq!(CpuSet::parse_list(&set.to_list()).unwrap(), set.clone());
        let mask = set.to_mask(groups);
        prop_assert_eq!(CpuSet::parse_mask(&mask).unwrap(), set.clone());
        prop_assert!(mask.split(',').all(|group| group.len() == 8));
    }

    #[test]
    fn the_parsers_answer_any_text_without_panicking(text in ".{0,40}") {
        let _ = CpuSet::parse_list(&text);
        let _ = CpuSet::parse_mask(&text);
    }

    #[test]
    fn ethtool_output_parsing_answers_any_text(text in "(.{0,20}\n){0,8}", value in 0u32..100_000) {
        for (group, setting) in [("channels", "combined"), ("channels", "rx"), ("rings", "tx"), ("coalesce", "rx-usecs")] {
            let _ = tune::ethtool::current(group, setting, &text);
        }
        // A current section's value is found whatever came before it.
        let output = format!("{text}Current hardware settings:\nRX:\t{value}\n");
        prop_assert_eq!(tune::ethtool::current("rings", "rx", &output), Some(value));
    }

    #[test]
    fn list_parsing_refuses_what_is_not_a_list(text in "[0-9,\\- a-f]{0,12}") {
        if let Ok(set) = CpuSet::parse_list(&text) {
            // Whatever it accepted, it can say again in its own form and get the same set.
            prop_assert_eq!(CpuSet::parse_list(&set.to_list()).unwrap(), set);
        }
    }
}
