//! The preflight check: is this host fit to run the appliance? Pure: the
//! shell gathers [`Facts`] under a root, and each verdict says what was
//! seen and, when it is not a pass, what to do.

use std::fmt;

use crate::cpuset::CpuSet;
use crate::profile::Profile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub level: Level,
    pub what: &'static str,
    pub detail: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        write!(f, "{level}  {}: {}", self.what, self.detail)
    }
}

/// A data directory as the shell found it.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub path: String,
    pub exists: bool,
    /// Err: why a file there cannot be opened with O_DIRECT.
    pub direct_io: Result<(), String>,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub pid: u32,
    /// The process's command (`marionette-matc`: the kernel keeps 15 bytes).
    pub process: String,
    /// The thread's own name (`engine`, `ksoftirqd/3`).
    pub thread: String,
    /// The CPU it last ran on.
    pub cpu: u32,
}

/// What the shell read; None where the host has no such file.
#[derive(Debug, Default)]
pub struct Facts {
    pub smt_active: Option<String>,
    /// (cpu, governor) for every CPU with cpufreq.
    pub governors: Vec<(u32, String)>,
    pub transparent_hugepage: Option<String>,
    pub swaps: Option<String>,
    pub clocksource: Option<String>,
    pub kernel_isolated: Option<String>,
    pub kernel_nohz_full: Option<String>,
    /// (irq, the CPUs it may run on).
    pub irq_affinities: Vec<(u32, String)>,
    /// Interrupts whose affinity the kernel manages and refuses to change
    /// (blk-mq and NIC queues bound to one CPU): raised only by the I/O that
    /// CPU itself issues, so one on an isolated CPU serves the daemon there.
    pub managed_irqs: Vec<u32>,
    /// Every thread on the host.
    pub tasks: Vec<Task>,
    pub osrelease: Option<String>,
    pub io_uring_disabled: Option<String>,
    pub data_dirs: Vec<DataDir>,
}

const GIB: u64 = 1 << 30;

/// The processor a task last ran on, from its `/proc/<pid>/task/<tid>/stat`
/// line (field 39; the command in parentheses may hold spaces and parentheses).
pub fn stat_processor(stat: &str) -> Option<(String, u32)> {
    let (head, tail) = stat.rsplit_once(')')?;
    let command = head.split_once('(')?.1.to_string();
    // Fields after the command start at field 3 (state).
    let processor = tail.split_whitespace().nth(39 - 3)?.parse().ok()?;
    Some((command, processor))
}

/// The first `most` items, for a line that stays readable on a big host.
fn first(items: &[String], most: usize) -> String {
    items[..items.len().min(most)].join(", ")
}

fn verdict(level: Level, what: &'static str, detail: impl Into<String>) -> Verdict {
    Verdict { level, what, detail: detail.into() }
}

pub fn check(profile: Option<&Profile>, facts: &Facts) -> Vec<Verdict> {
    let mut out = Vec::new();
    out.push(match facts.smt_active.as_deref().map(str::trim) {
        Some("0") => verdict(Level::Pass, "SMT", "off: each isolated CPU has its core to itself"),
        Some("1") => verdict(Level::Warn, "SMT", "on: an isolated CPU shares its core with a sibling; turn SMT off in the firmware or boot with nosmt"),
        _ => verdict(Level::Warn, "SMT", "cannot tell (no /sys/devices/system/cpu/smt/active)"),
    });

    let slow: Vec<String> = facts.governors.iter().filter(|(_, g)| g.trim() != "performance").map(|(cpu, g)| format!("{cpu}:{}", g.trim())).collect();
    out.push(if facts.governors.is_empty() {
        verdict(Level::Pass, "CPU governor", "no cpufreq: the frequency is fixed (or set by the hypervisor)")
    } else if slow.is_empty() {
        verdict(Level::Pass, "CPU governor", "performance on every CPU")
    } else {
        verdict(Level::Warn, "CPU governor", format!("not performance on {}; marionette-tune apply sets it", slow.join(" ")))
    });

    let thp = facts.transparent_hugepage.as_deref().and_then(crate::plan::chosen);
    out.push(match thp {
        // madvise: huge pages only for memory that asks (the ledger's
        // idempotency table, whose lookups miss a 4 KiB-page TLB), and no
        // khugepaged work on the rest.
        Some("madvise") => verdict(Level::Pass, "transparent hugepages", "madvise"),
        Some("never") => verdict(Level::Warn, "transparent hugepages", "never: the ledger's idempotency table gets 4 KiB pages, and most lookups miss the TLB; boot with transparent_hugepage=madvise (or marionette-tune apply)"),
        Some(other) => verdict(Level::Fail, "transparent hugepages", format!("{other}: khugepaged stalls the engines; boot with transparent_hugepage=madvise")),
        None => verdict(Level::Pass, "transparent hugepages", "not built into this kernel"),
    });

    let swaps: Vec<&str> = facts.swaps.as_deref().unwrap_or("").lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    out.push(if swaps.is_empty() {
        verdict(Level::Pass, "swap", "none")
    } else {
        verdict(
            Level::Warn,
            "swap",
            format!("on ({}): an engine page swapped out costs milliseconds; swapoff -a and remove it from /etc/fstab", swaps.join(", ")),
        )
    });

    out.push(match facts.clocksource.as_deref().map(str::trim) {
        Some("tsc") => verdict(Level::Pass, "clock source", "tsc"),
        Some(source @ ("kvm-clock" | "arch_sys_counter")) => verdict(Level::Pass, "clock source", format!("{source} (cheap to read)")),
        Some(source) => {
            verdict(Level::Fail, "clock source", format!("{source}: every timestamp costs microseconds; check why the TSC was refused (dmesg | grep -i tsc)"))
        }
        None => verdict(Level::Warn, "clock source", "cannot tell"),
    });

    // Isolation: what the kernel isolates against what the profile wants.
    let kernel_isolated = facts.kernel_isolated.as_deref().and_then(|s| CpuSet::parse_list(s).ok()).unwrap_or_default();
    let isolated = profile.map_or(kernel_isolated.clone(), |p| p.cpus.isolated.clone());
    match profile {
        Some(p) if kernel_isolated == p.cpus.isolated => out.push(verdict(Level::Pass, "isolated CPUs", format!("{kernel_isolated}, as the profile wants"))),
        Some(p) => out.push(verdict(
            Level::Fail,
            "isolated CPUs",
            format!("the kernel isolates {{{kernel_isolated}}}, the profile wants {{{}}}: boot with the line marionette-tune show prints", p.cpus.isolated),
        )),
        None if kernel_isolated.is_empty() => out.push(verdict(Level::Warn, "isolated CPUs", "none: the engines share their CPUs with everything else")),
        None => out.push(verdict(Level::Pass, "isolated CPUs", kernel_isolated.to_string())),
    }
    if !isolated.is_empty() {
        let nohz = facts.kernel_nohz_full.as_deref().and_then(|s| CpuSet::parse_list(s).ok()).unwrap_or_default();
        out.push(if isolated.is_subset(&nohz) {
            verdict(Level::Pass, "nohz_full", format!("on {nohz}"))
        } else {
            verdict(Level::Warn, "nohz_full", format!("covers {{{nohz}}}, not all of {{{isolated}}}: the tick still interrupts the engines"))
        });
        let (mut managed, mut intruding) = (Vec::new(), Vec::new());
        for (irq, cpus) in &facts.irq_affinities {
            if CpuSet::parse_list(cpus).is_ok_and(|set| !set.intersection(&isolated).is_empty()) {
                if facts.managed_irqs.contains(irq) { &mut managed } else { &mut intruding }.push(irq.to_string());
            }
        }
        out.push(if intruding.is_empty() && managed.is_empty() {
            verdict(Level::Pass, "interrupts", format!("none may run on the isolated CPUs {isolated}"))
        } else if intruding.is_empty() {
            let shown = first(&managed, 8);
            verdict(
                Level::Pass,
                "interrupts",
                format!(
                    "none can be steered onto the isolated CPUs {isolated}; IRQ {shown}: per-CPU queues the kernel manages, raised only by that CPU's own I/O"
                ),
            )
        } else {
            let shown = first(&intruding, 8);
            verdict(Level::Fail, "interrupts", format!("{} may run on isolated CPUs (IRQ {shown}); marionette-tune apply moves them", intruding.len()))
        });
        // Per-CPU kernel threads (ksoftirqd/3, kworker/3:1) belong there; ours do too.
        // One line a process, however many of its threads were there.
        let strangers: Vec<String> = facts
            .tasks
            .iter()
            .filter(|t| isolated.contains(t.cpu) && !t.thread.contains('/') && !t.process.starts_with("marionette"))
            .map(|t| format!("{}[{}] on {}", t.process, t.pid, t.cpu))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        out.push(if strangers.is_empty() {
            verdict(Level::Pass, "tasks", "only Marionette and per-CPU kernel threads on the isolated CPUs")
        } else {
            let shown = first(&strangers, 5);
            verdict(Level::Warn, "tasks", format!("{} other processes ran on isolated CPUs: {shown}", strangers.len()))
        });
    }

    let version: Option<(u32, u32)> = facts.osrelease.as_deref().and_then(|r| {
        let mut parts = r.trim().split(['.', '-']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    });
    out.push(match version {
        Some(v) if v >= (6, 1) => verdict(Level::Pass, "kernel", format!("{}.{} (Debian 12 ships 6.1)", v.0, v.1)),
        Some(v) if v >= (5, 10) => verdict(Level::Warn, "kernel", format!("{}.{}: io_uring works, but Marionette is tested on 6.1 and later", v.0, v.1)),
        Some(v) => verdict(Level::Fail, "kernel", format!("{}.{}: too old for the journals' io_uring (5.10 at least)", v.0, v.1)),
        None => verdict(Level::Warn, "kernel", "cannot read the kernel version"),
    });
    out.push(match facts.io_uring_disabled.as_deref().map(str::trim) {
        None | Some("0") => verdict(Level::Pass, "io_uring", "enabled"),
        Some(value) => {
            verdict(Level::Fail, "io_uring", format!("kernel.io_uring_disabled = {value}: the journals need it; sysctl -w kernel.io_uring_disabled=0"))
        }
    });

    for dir in &facts.data_dirs {
        if !dir.exists {
            out.push(verdict(Level::Warn, "data directory", format!("{} does not exist yet (the daemon makes it when it first starts)", dir.path)));
            continue;
        }
        out.push(match &dir.direct_io {
            Ok(()) => verdict(Level::Pass, "direct I/O", format!("{}: supported", dir.path)),
            Err(why) => verdict(Level::Fail, "direct I/O", format!("{}: {why} (a tmpfs or network file system? put it on local NVMe)", dir.path)),
        });
        let free_gib = dir.free_bytes / GIB;
        let level = if dir.free_bytes < GIB || dir.free_bytes.saturating_mul(100) < dir.total_bytes.saturating_mul(5) {
            Level::Fail
        } else if dir.free_bytes < 10 * GIB || dir.free_bytes.saturating_mul(100) < dir.total_bytes.saturating_mul(20) {
            Level::Warn
        } else {
            Level::Pass
        };
        out.push(verdict(level, "free space", format!("{}: {free_gib} GiB free of {} GiB", dir.path, dir.total_bytes / GIB)));
    }
    out
}
