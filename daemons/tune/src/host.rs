//! The I/O shell around the plan: reads the host's layout and files under a
//! root (`/` on a server, a fake tree in tests), applies changes after
//! saving what they replace, and reverts from what was saved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::check;
use crate::cpuset::CpuSet;
use crate::ethtool;
use crate::plan::{Change, Layout, NicQueues, SAVED_STATE};
use crate::profile::Profile;

/// What the kernel answers a write to a managed interrupt's affinity.
const EIO: i32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    State { path: String, message: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> HostError + '_ {
    move |source| HostError::Io { path: path.display().to_string(), source }
}

pub struct Host {
    root: PathBuf,
}

/// The originals of every path the tuner has changed, kept across applies:
/// the first apply's values, not a later apply's (which are the tuner's own).
pub type Saved = BTreeMap<String, Option<String>>;

impl Host {
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    pub fn read(&self, relative: &str) -> Option<String> {
        // ethtool speaks to the live devices of this network namespace,
        // whatever the root: the tests run it inside a namespace of their own.
        if let Some((interface, group, setting)) = ethtool::split(relative) {
            let output = std::process::Command::new("ethtool").arg(ethtool::options(group).0).arg(interface).output().ok()?;
            return ethtool::current(group, setting, &String::from_utf8_lossy(&output.stdout)).map(|value| value.to_string());
        }
        std::fs::read_to_string(self.path(relative)).ok()
    }

    fn entries(&self, relative: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(relative))
            .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort_by_key(|name| (name.len(), name.clone()));
        names
    }

    pub fn layout(&self, profile: &Profile) -> Layout {
        let cpus_online = self.read("sys/devices/system/cpu/online").and_then(|s| CpuSet::parse_list(&s).ok()).unwrap_or_default();
        let mut layout = Layout { cpus_online, ..Layout::default() };
        for pci in profile.nics.iter().filter_map(|n| n.pci.as_ref()).chain(profile.nvme.iter().map(|n| &n.pci)) {
            let device = format!("sys/bus/pci/devices/{pci}");
            let mut irqs: Vec<u32> = self.entries(&format!("{device}/msi_irqs")).iter().filter_map(|n| n.parse().ok()).collect();
            if irqs.is_empty() {
                // No MSI: the one legacy interrupt line, 0 when there is none.
                irqs.extend(self.read(&format!("{device}/irq")).and_then(|s| s.trim().parse::<u32>().ok()).filter(|&irq| irq != 0));
            }
            layout.device_irqs.insert(pci.clone(), irqs);
        }
        for nic in &profile.nics {
            let (interface, base) = match (&nic.pci, &nic.interface) {
                (Some(pci), _) => {
                    let Some(interface) = self.entries(&format!("sys/bus/pci/devices/{pci}/net")).into_iter().next() else { continue };
                    let base = format!("sys/bus/pci/devices/{pci}/net/{interface}/queues");
                    (interface, base)
                }
                (None, Some(interface)) if self.path(&format!("sys/class/net/{interface}")).exists() => {
                    (interface.clone(), format!("sys/class/net/{interface}/queues"))
                }
                _ => continue,
            };
            let queues = self.entries(&base);
            let (rx, tx) = queues.into_iter().filter(|q| q.starts_with("rx-") || q.starts_with("tx-")).partition(|q| q.starts_with("rx-"));
            layout.nic_queues.insert(nic.name().to_string(), NicQueues { interface, base, rx, tx });
        }
        layout
    }

    /// What the preflight check looks at, read under the root.
    pub fn facts(&self, data_dirs: &[&str]) -> check::Facts {
        let mut facts = check::Facts {
            smt_active: self.read("sys/devices/system/cpu/smt/active"),
            transparent_hugepage: self.read("sys/kernel/mm/transparent_hugepage/enabled"),
            swaps: self.read("proc/swaps"),
            clocksource: self.read("sys/devices/system/clocksource/clocksource0/current_clocksource"),
            kernel_isolated: self.read("sys/devices/system/cpu/isolated"),
            kernel_nohz_full: self.read("sys/devices/system/cpu/nohz_full"),
            osrelease: self.read("proc/sys/kernel/osrelease"),
            io_uring_disabled: self.read("proc/sys/kernel/io_uring_disabled"),
            ..check::Facts::default()
        };
        let online = self.read("sys/devices/system/cpu/online").and_then(|s| CpuSet::parse_list(&s).ok()).unwrap_or_default();
        for cpu in online.iter() {
            if let Some(governor) = self.read(&format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor")) {
                facts.governors.push((cpu, governor));
            }
        }
        for irq in self.entries("proc/irq").iter().filter_map(|n| n.parse::<u32>().ok()) {
            // Where it may run now; older kernels only have the requested affinity.
            let cpus = self.read(&format!("proc/irq/{irq}/effective_affinity_list")).or_else(|| self.read(&format!("proc/irq/{irq}/smp_affinity_list")));
            facts.irq_affinities.extend(cpus.map(|cpus| (irq, cpus.trim().to_string())));
        }
        // Which of those on isolated CPUs the kernel manages: it refuses (EIO)
        // even its own current affinity written back, which changes nothing for any other IRQ.
        let isolated = facts.kernel_isolated.as_deref().and_then(|s| CpuSet::parse_list(s).ok()).unwrap_or_default();
        for (irq, cpus) in &facts.irq_affinities {
            if CpuSet::parse_list(cpus).is_ok_and(|set| !set.intersection(&isolated).is_empty()) {
                let path = self.root.join(format!("proc/irq/{irq}/smp_affinity_list"));
                let requested = self.read(&format!("proc/irq/{irq}/smp_affinity_list")).unwrap_or_default();
                if let Err(error) = std::fs::write(&path, requested.trim()) {
                    if error.raw_os_error() == Some(EIO) {
                        facts.managed_irqs.push(*irq);
                    }
                }
            }
        }
        for pid in self.entries("proc").iter().filter_map(|n| n.parse::<u32>().ok()) {
            let process = self.read(&format!("proc/{pid}/comm")).unwrap_or_default().trim().to_string();
            for tid in self.entries(&format!("proc/{pid}/task")) {
                if let Some((thread, cpu)) = self.read(&format!("proc/{pid}/task/{tid}/stat")).as_deref().and_then(check::stat_processor) {
                    facts.tasks.push(check::Task { pid, process: process.clone(), thread, cpu });
                }
            }
        }
        for dir in data_dirs {
            facts.data_dirs.push(self.data_dir(dir));
        }
        facts
    }

    fn data_dir(&self, relative: &str) -> check::DataDir {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(relative);
        let mut dir = check::DataDir { path: format!("/{relative}"), exists: path.is_dir(), direct_io: Ok(()), free_bytes: 0, total_bytes: 0 };
        if !dir.exists {
            return dir;
        }
        let probe = path.join(".marionette-tune-direct-io-probe");
        dir.direct_io = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)
            .map(|_| ())
            .map_err(|e| format!("cannot open a file with O_DIRECT ({e})"));
        let _ = std::fs::remove_file(&probe);
        let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return dir };
        // SAFETY: statvfs is plain data, for which all zeros is a valid value.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: c_path is a valid C string and stat a properly sized, writable statvfs.
        if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } == 0 {
            let fragment = stat.f_frsize as u64;
            dir.free_bytes = (stat.f_bavail as u64).saturating_mul(fragment);
            dir.total_bytes = (stat.f_blocks as u64).saturating_mul(fragment);
        }
        dir
    }

    pub fn saved(&self) -> Result<Saved, HostError> {
        let path = self.path(SAVED_STATE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| HostError::State {
                path: path.display().to_string(),
                message: format!("{e}; the originals cannot be read back, so nothing was changed (move the file aside to start over)"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::new()),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    fn store(&self, saved: &Saved) -> Result<(), HostError> {
        let path = self.path(SAVED_STATE);
        if saved.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(&path)(e)),
                _ => Ok(()),
            };
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        // Written whole, then renamed: a crash leaves the old originals or the new ones, never half.
        let partial = path.with_extension("json.partial");
        let text = serde_json::to_string_pretty(saved).map_err(|e| HostError::State { path: path.display().to_string(), message: e.to_string() })?;
        std::fs::write(&partial, text + "\n").map_err(io_error(&partial))?;
        std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(io_error(&partial))?;
        std::fs::rename(&partial, &path).map_err(io_error(&path))
    }

    fn write(&self, relative: &str, value: &str) -> Result<(), HostError> {
        if let Some((interface, group, setting)) = ethtool::split(relative) {
            let output = std::process::Command::new("ethtool")
                .args([ethtool::options(group).1, interface, setting, value])
                .output()
                .map_err(|source| HostError::Io { path: format!("ethtool (apt install ethtool) for {relative}"), source })?;
            if !output.status.success() {
                let said = String::from_utf8_lossy(&output.stderr);
                return Err(HostError::State { path: relative.to_string(), message: format!("ethtool said: {}", said.trim()) });
            }
            return Ok(());
        }
        let path = self.path(relative);
        if relative.starts_with("etc/") {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            }
        }
        // sysfs and procfs take one value per write, without a trailing newline.
        std::fs::write(&path, value).map_err(io_error(&path))
    }

    fn remove(&self, relative: &str) -> Result<(), HostError> {
        let path = self.path(relative);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(&path)(e)),
            _ => {}
        }
        // The drop-in directory goes too when the tuner's file was its last.
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }

    /// Applies `changes`, saving each original first. Returns the changes
    /// that failed (a kernel refusing a value, say) with why; the others stay applied.
    pub fn apply(&self, changes: &[Change]) -> Result<Vec<(Change, HostError)>, HostError> {
        let mut saved = self.saved()?;
        for change in changes {
            saved.entry(change.path.clone()).or_insert_with(|| change.before.clone());
        }
        self.store(&saved)?;
        let mut failed = Vec::new();
        for change in changes {
            if let Err(error) = self.write(&change.path, &change.after) {
                failed.push((change.clone(), error));
            }
        }
        Ok(failed)
    }

    /// The changes that put every saved original back (a drop-in the tuner
    /// created is removed: its "after" is None).
    pub fn revert_plan(&self) -> Result<Vec<(String, Option<String>)>, HostError> {
        let mut originals: Vec<(String, Option<String>)> = self.saved()?.into_iter().collect();
        // NIC settings last: putting the queue count back removes queue
        // directories whose steering masks must be restored first.
        originals.sort_by_key(|(path, _)| (ethtool::split(path).is_some(), path.clone()));
        Ok(originals)
    }

    /// Puts the originals back; what could not be restored stays saved, so a later revert retries it.
    pub fn revert(&self) -> Result<Vec<(String, HostError)>, HostError> {
        let mut kept = Saved::new();
        let mut failed = Vec::new();
        for (path, original) in self.revert_plan()? {
            let result = match &original {
                Some(value) => self.write(&path, value),
                None => self.remove(&path),
            };
            if let Err(error) = result {
                kept.insert(path.clone(), original);
                failed.push((path, error));
            }
        }
        self.store(&kept)?;
        Ok(failed)
    }
}
