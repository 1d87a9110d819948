//! marionette-tune against real network devices: a veth pair in a network
//! namespace of its own (the kernel's veth driver has channels, not rings
//! or coalescing). The rest of the root is a fake tree, so nothing of the
//! test machine's own settings is touched.

use std::path::Path;
use std::process::{Command, Output};

use tune::cpuset::CpuSet;

struct Namespace(String);

impl Namespace {
    fn new() -> Namespace {
        let name = format!("marionette-tune-{}", std::process::id());
        let namespace = Namespace(name);
        assert!(run(&["ip", "netns", "add", &namespace.0]).status.success(), "ip netns add needs root (CI runs as root)");
        let added = run(&["ip", "-n", &namespace.0, "link", "add", "t0", "type", "veth", "peer", "name", "t1"]);
        assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
        namespace
    }

    /// Runs `args` inside the namespace, with its own /sys.
    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "netns", "exec", &self.0];
        all.extend_from_slice(args);
        run(&all)
    }

    fn read(&self, path: &str) -> String {
        String::from_utf8_lossy(&self.exec(&["cat", path]).stdout).trim().to_string()
    }

    fn channels(&self) -> String {
        String::from_utf8_lossy(&self.exec(&["ethtool", "-l", "t0"]).stdout).split_once("Current hardware settings:").unwrap().1.to_string()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.0]);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{}: {e} (scripts/test installs iproute2 and ethtool)", args[0]))
}

#[test]
fn queues_and_steering_of_a_real_veth_are_set_and_reverted() {
    let namespace = Namespace::new();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("sys/devices/system/cpu")).unwrap();
    std::fs::create_dir_all(root.path().join("sys/class")).unwrap();
    std::fs::write(root.path().join("sys/devices/system/cpu/online"), "0-1\n").unwrap();
    // The namespace's own /sys/class/net (ip netns exec mounts it) behind the fake root.
    std::os::unix::fs::symlink("/sys/class/net", root.path().join("sys/class/net")).unwrap();
    let profile = root.path().join("profile.toml");
    std::fs::write(
        &profile,
        "model = \"veth\"\n[cpus]\nhousekeeping = \"0\"\nisolated = \"1\"\nirq = \"0\"\n[daemons.matching]\ncpus = \"1\"\n\
         [[nics]]\ninterface = \"t0\"\nqueues = 2\nrx_ring = 512\nrx_usecs = 0\n",
    )
    .unwrap();
    let binary = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("marionette-tune");
    let tune = |args: &[&str]| {
        let mut all = vec![binary.to_str().unwrap(), "--root", root.path().to_str().unwrap()];
        all.extend_from_slice(args);
        let output = namespace.exec(&all);
        (output.status.code(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
    };
    let mask = |path: &str| CpuSet::parse_mask(&namespace.read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(namespace.channels().contains("RX:\t\t1"), "a veth starts with one queue each way");
    assert!(mask("/sys/class/net/t0/queues/rx-0/rps_cpus").is_empty());

    let (code, said) = tune(&["apply", profile.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{said}");
    assert!(namespace.channels().contains("RX:\t\t2") && namespace.channels().contains("TX:\t\t2"), "{said}");
    // Both queues, the second one made by the queue change, steer to CPU 0.
    for queue in ["rx-0", "rx-1"] {
        assert_eq!(mask(&format!("/sys/class/net/t0/queues/{queue}/rps_cpus")).to_list(), "0", "{queue}: {said}");
    }
    for queue in ["tx-0", "tx-1"] {
        assert_eq!(mask(&format!("/sys/class/net/t0/queues/{queue}/xps_cpus")).to_list(), "0", "{queue}: {said}");
    }
    assert!(said.contains("t0: its driver does not report rings rx (ethtool); skipped"), "{said}");
    assert!(said.contains("t0: its driver does not report coalesce rx-usecs (ethtool); skipped"), "{said}");

    let (code, said) = tune(&["apply", profile.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert!(said.contains("nothing to change"), "{said}");

    let (code, said) = tune(&["revert"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(namespace.channels().contains("RX:\t\t1") && namespace.channels().contains("TX:\t\t1"), "{said}");
    assert!(mask("/sys/class/net/t0/queues/rx-0/rps_cpus").is_empty(), "{said}");
    assert!(!Path::new(&root.path().join("var/lib/marionette-tune/saved.json")).exists());
}
