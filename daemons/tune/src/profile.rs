//! A hardware profile: one TOML file per server model (`hardware/profiles/`)
//! naming which CPUs do what, where each daemon runs, the NICs and NVMe
//! devices and the host settings. Validated once, when loaded; every
//! refusal names the key and says what would be right.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::cpuset::CpuSet;

pub const DAEMONS: [&str; 3] = ["matching", "ledger", "gateway"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The server model this profile is for, for the report.
    pub model: String,
    pub cpus: CpuLayout,
    /// By daemon name (matching, ledger, gateway).
    pub daemons: BTreeMap<String, DaemonPlacement>,
    #[serde(default)]
    pub nics: Vec<Nic>,
    #[serde(default)]
    pub nvme: Vec<Nvme>,
    #[serde(default)]
    pub host: HostSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuLayout {
    /// The kernel, systemd, sshd, journald: everything that is not ours.
    pub housekeeping: CpuSet,
    /// Taken away from the scheduler and from IRQs (isolcpus, nohz_full); only pinned daemons run there.
    pub isolated: CpuSet,
    /// Where device interrupts go (a subset of housekeeping).
    pub irq: CpuSet,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonPlacement {
    /// The process's CPUs (its slice's AllowedCPUs and its CPUAffinity).
    pub cpus: CpuSet,
    /// The CPU for the engine thread (the daemon's `engine.cpu`), one of `cpus`.
    pub engine_cpu: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// PCI address, e.g. "0000:3b:00.0": stable across reboots, unlike names.
    pub pci: Option<String>,
    /// Or an interface name, for a NIC without one (a virtual function's
    /// netdev, a veth): its queues and ethtool settings, no interrupts.
    pub interface: Option<String>,
    /// Combined channels (queues) to configure with ethtool -L.
    pub queues: Option<u32>,
    pub rx_ring: Option<u32>,
    pub tx_ring: Option<u32>,
    /// Interrupt coalescing, microseconds (0: an interrupt per packet).
    pub rx_usecs: Option<u32>,
    /// Where this NIC's queue interrupts go; default cpus.irq.
    pub irq_cpus: Option<CpuSet>,
    /// Receive packet steering; default: the same CPUs as the interrupts.
    pub rps_cpus: Option<CpuSet>,
    /// Transmit packet steering; default: the same CPUs as the interrupts.
    pub xps_cpus: Option<CpuSet>,
}

impl Nic {
    /// How the profile names it: the PCI address, else the interface.
    pub fn name(&self) -> &str {
        self.pci.as_deref().or(self.interface.as_deref()).unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nvme {
    pub pci: String,
    /// The daemon whose data lives there, for the report.
    pub daemon: String,
    /// Where its completion interrupts go; default cpus.irq.
    pub irq_cpus: Option<CpuSet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    pub governor: String,
    pub swappiness: u32,
    /// 2 MiB hugepages to reserve (0 leaves the count alone).
    pub hugepages_2m: u32,
    pub transparent_hugepage: String,
    pub numa_balancing: bool,
    pub timer_migration: bool,
    /// Seconds between VM statistics updates (each one interrupts every CPU).
    pub vm_stat_interval_s: u32,
    /// Idle states (C-states) whose exit latency is above this are disabled
    /// on the isolated and IRQ CPUs, where a wake-up is on the critical path.
    /// None leaves them alone (a profile for a machine where power matters more).
    pub max_cstate_latency_us: Option<u32>,
}

impl Default for HostSettings {
    fn default() -> HostSettings {
        HostSettings {
            governor: "performance".into(),
            swappiness: 1,
            hugepages_2m: 0,
            transparent_hugepage: "madvise".into(),
            numa_balancing: false,
            timer_migration: false,
            vm_stat_interval_s: 10,
            max_cstate_latency_us: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read { path: display.clone(), source })?;
        Profile::parse(&text).map_err(|e| match e {
            ProfileError::Parse { message, .. } => ProfileError::Parse { path: display.clone(), message },
            ProfileError::Invalid { message, .. } => ProfileError::Invalid { path: display.clone(), message },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Profile, ProfileError> {
        let profile: Profile = toml::from_str(text).map_err(|e| ProfileError::Parse { path: String::new(), message: e.to_string() })?;
        profile.validate().map_err(|message| ProfileError::Invalid { path: String::new(), message })?;
        Ok(profile)
    }

    fn validate(&self) -> Result<(), String> {
        // It is written into the drop-ins' comment line: one line, nothing that could start another.
        if self.model.is_empty() || self.model.chars().any(char::is_control) {
            return Err("model must be one line of text naming the server model".into());
        }
        let cpus = &self.cpus;
        if cpus.housekeeping.is_empty() {
            return Err("cpus.housekeeping is empty: the kernel and systemd need at least one CPU".into());
        }
        let both = cpus.housekeeping.intersection(&cpus.isolated);
        if !both.is_empty() {
            return Err(format!("CPUs {both} are both in cpus.housekeeping and cpus.isolated; a CPU is one or the other"));
        }
        if cpus.irq.is_empty() || !cpus.irq.is_subset(&cpus.housekeeping) {
            return Err(format!("cpus.irq ({}) must be a non-empty subset of cpus.housekeeping ({})", cpus.irq, cpus.housekeeping));
        }
        let all = cpus.housekeeping.union(&cpus.isolated);
        for name in self.daemons.keys() {
            if !DAEMONS.contains(&name.as_str()) {
                return Err(format!("daemons.{name}: unknown daemon (expected one of {})", DAEMONS.join(", ")));
            }
        }
        let mut taken = CpuSet::default();
        for (name, placement) in &self.daemons {
            if placement.cpus.is_empty() || !placement.cpus.is_subset(&all) {
                return Err(format!("daemons.{name}.cpus ({}) must be non-empty and within housekeeping + isolated ({all})", placement.cpus));
            }
            if let Some(cpu) = placement.engine_cpu {
                if !placement.cpus.contains(cpu) || !cpus.isolated.contains(cpu) {
                    return Err(format!("daemons.{name}.engine_cpu ({cpu}) must be one of daemons.{name}.cpus and an isolated CPU"));
                }
            }
            // Two daemons sharing an isolated CPU would fight over it.
            let shared = placement.cpus.intersection(&cpus.isolated).intersection(&taken);
            if !shared.is_empty() {
                return Err(format!("daemons.{name}.cpus shares isolated CPUs {shared} with another daemon"));
            }
            taken = taken.union(&placement.cpus.intersection(&cpus.isolated));
        }
        for nic in &self.nics {
            match (&nic.pci, &nic.interface) {
                (Some(pci), None) => check_pci(pci, "nics")?,
                (None, Some(interface)) if crate::ethtool::valid_interface(interface) => {}
                (None, Some(interface)) => return Err(format!("nics: {interface:?} is not an interface name (1 to 15 characters, no '/' or ':')")),
                _ => return Err("nics: each NIC has either pci (preferred: stable across reboots) or interface, not both".into()),
            }
            for (key, set) in [("irq_cpus", &nic.irq_cpus), ("rps_cpus", &nic.rps_cpus), ("xps_cpus", &nic.xps_cpus)] {
                if let Some(set) = set {
                    if set.is_empty() || !set.is_subset(&cpus.housekeeping) {
                        return Err(format!(
                            "nics[{}].{key} ({set}) must be a non-empty subset of cpus.housekeeping: packets must not interrupt isolated CPUs",
                            nic.name()
                        ));
                    }
                }
            }
        }
        for nvme in &self.nvme {
            check_pci(&nvme.pci, "nvme")?;
            if !DAEMONS.contains(&nvme.daemon.as_str()) {
                return Err(format!("nvme[{}].daemon: unknown daemon {:?}", nvme.pci, nvme.daemon));
            }
            if let Some(set) = &nvme.irq_cpus {
                if set.is_empty() || !set.is_subset(&cpus.housekeeping) {
                    return Err(format!("nvme[{}].irq_cpus ({set}) must be a non-empty subset of cpus.housekeeping", nvme.pci));
                }
            }
        }
        if !["performance", "powersave", "schedutil", "ondemand"].contains(&self.host.governor.as_str()) {
            return Err(format!("host.governor {:?}: expected performance, powersave, schedutil or ondemand", self.host.governor));
        }
        if !["never", "madvise", "always"].contains(&self.host.transparent_hugepage.as_str()) {
            return Err(format!("host.transparent_hugepage {:?}: expected never, madvise or always", self.host.transparent_hugepage));
        }
        if self.host.swappiness > 200 {
            return Err(format!("host.swappiness {} is past the kernel's 200", self.host.swappiness));
        }
        Ok(())
    }
}

/// `dddd:bb:dd.f`, hex, as in /sys/bus/pci/devices; also keeps a path
/// component from walking out of that directory.
fn check_pci(pci: &str, list: &str) -> Result<(), String> {
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    let ok = match pci.split(':').collect::<Vec<_>>().as_slice() {
        [domain, bus, rest] => match rest.split_once('.') {
            Some((device, function)) => hex(domain, 4) && hex(bus, 2) && hex(device, 2) && hex(function, 1),
            None => false,
        },
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{list}: {pci:?} is not a PCI address (expected e.g. \"0000:3b:00.0\", see lspci -D)"))
    }
}
