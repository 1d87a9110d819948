//! The pure core: from a profile, the host's layout (CPUs, device IRQs, NIC
//! queues) and the current value of each file, the list of changes that
//! makes the host match the profile. No I/O: the caller reads and writes.
//!
//! A file already at its wanted value yields no change, so applying twice
//! changes nothing the second time. Each change carries the value it
//! replaces, in a form that can be written back, for the revert.

use std::collections::BTreeMap;

use crate::cpuset::CpuSet;
use crate::profile::{Profile, DAEMONS};

/// Where the tuner keeps the values it replaced, relative to the root.
pub const SAVED_STATE: &str = "var/lib/marionette-tune/saved.json";
/// The name of every systemd drop-in the tuner writes.
pub const DROP_IN: &str = "50-marionette-tune.conf";

/// What the host has, as far as the profile is concerned.
#[derive(Debug, Default)]
pub struct Layout {
    pub cpus_online: CpuSet,
    /// By PCI address: the device's interrupt numbers (MSI-X vectors, or its one legacy IRQ).
    pub device_irqs: BTreeMap<String, Vec<u32>>,
    /// By PCI address: the NIC's interface and queue directories (`rx-0`, `tx-0`, ...).
    pub nic_queues: BTreeMap<String, NicQueues>,
}

#[derive(Debug, Default)]
pub struct NicQueues {
    pub interface: String,
    /// The interface's queues directory, relative to the root.
    pub base: String,
    pub rx: Vec<String>,
    pub tx: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Relative to the root (`proc/irq/40/smp_affinity_list`).
    pub path: String,
    /// The value it replaces, writable as is; None: the file does not exist (a drop-in).
    pub before: Option<String>,
    pub after: String,
    pub why: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// What could not be planned and why (a knob this kernel lacks, a device not found).
    pub notes: Vec<String>,
}

/// How a file's current value compares with the wanted one.
#[derive(Clone, Copy)]
enum Form {
    /// Trimmed text.
    Text,
    /// A CPU list (`0-3`), compared as a set.
    List,
    /// A CPU mask (`0000000f`), compared as a set.
    Mask,
    /// One choice of several, the current one in brackets (`always madvise [never]`).
    Choice,
}

fn current(form: Form, raw: &str) -> Option<String> {
    let raw = raw.trim();
    match form {
        Form::Choice => chosen(raw).map(str::to_string),
        _ => Some(raw.to_string()),
    }
}

/// The current one of a sysfs choice list: `madvise` in `always [madvise] never`.
pub fn chosen(raw: &str) -> Option<&str> {
    raw.split_whitespace().find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
}

fn same(form: Form, current: &str, wanted: &str) -> bool {
    match form {
        Form::Text | Form::Choice => current == wanted,
        Form::List => CpuSet::parse_list(current).ok() == CpuSet::parse_list(wanted).ok(),
        Form::Mask => CpuSet::parse_mask(current).ok() == CpuSet::parse_mask(wanted).ok(),
    }
}

struct Planner<'a, R: Fn(&str) -> Option<String>> {
    read: R,
    plan: Plan,
    model: &'a str,
}

impl<R: Fn(&str) -> Option<String>> Planner<'_, R> {
    /// A kernel knob: changed if present and different; noted if absent.
    fn knob(&mut self, path: String, form: Form, wanted: String, why: &str) {
        let Some(raw) = (self.read)(&path) else {
            let note = match crate::ethtool::split(&path) {
                Some((interface, group, setting)) => format!("{interface}: its driver does not report {group} {setting} (ethtool); skipped ({why})"),
                None => format!("/{path} does not exist on this host; skipped ({why})"),
            };
            self.plan.notes.push(note);
            return;
        };
        let Some(before) = current(form, &raw) else {
            self.plan.notes.push(format!("/{path} holds {raw:?}, which the tuner cannot read; skipped"));
            return;
        };
        if !same(form, &before, &wanted) {
            self.plan.changes.push(Change { path, before: Some(before), after: wanted, why: why.to_string() });
        }
    }

    /// Each idle state of the CPU deeper than the latency limit disabled, the
    /// others enabled: the kernel lists them as cpuidle/state0, state1, ...
    fn cstates(&mut self, cpu: u32, limit_us: u32) {
        let base = format!("sys/devices/system/cpu/cpu{cpu}/cpuidle");
        let mut state = 0;
        while let Some(latency) = (self.read)(&format!("{base}/state{state}/latency")) {
            let dir = format!("{base}/state{state}");
            match latency.trim().parse::<u64>() {
                Ok(latency_us) => {
                    let name = (self.read)(&format!("{dir}/name")).unwrap_or_default();
                    let (wanted, why) = if latency_us > u64::from(limit_us) {
                        ("1", format!("CPU {cpu} never enters idle state {} ({latency_us} µs to wake, above {limit_us})", name.trim()))
                    } else {
                        ("0", format!("CPU {cpu} may enter idle state {} ({latency_us} µs to wake)", name.trim()))
                    };
                    self.knob(format!("{dir}/disable"), Form::Text, wanted.to_string(), &why);
                }
                Err(_) => self.plan.notes.push(format!("/{dir}/latency holds {latency:?}, not microseconds; skipped")),
            }
            state += 1;
        }
        if state == 0 {
            self.plan.notes.push(format!("/{base} does not exist on this host (no cpuidle driver); C-states left to the firmware"));
        }
    }

    /// A systemd drop-in the tuner owns: created, or rewritten if it differs.
    fn drop_in(&mut self, unit: &str, section: &str, lines: &[String], why: &str) {
        let path = format!("etc/systemd/system/{unit}.d/{DROP_IN}");
        let mut body = format!("# Written by marionette-tune for {}; marionette-tune revert removes it.\n[{section}]\n", self.model);
        for line in lines {
            body.push_str(line);
            body.push('\n');
        }
        let before = (self.read)(&path);
        if before.as_deref() != Some(body.as_str()) {
            self.plan.changes.push(Change { path, before, after: body, why: why.to_string() });
        }
    }
}

pub fn plan(profile: &Profile, layout: &Layout, read: impl Fn(&str) -> Option<String>) -> Plan {
    let mut planner = Planner { read, plan: Plan::default(), model: &profile.model };
    let cpus = &profile.cpus;
    let known = cpus.housekeeping.union(&cpus.isolated);
    if !known.is_subset(&layout.cpus_online) {
        planner
            .plan
            .notes
            .push(format!("the profile names CPUs {known}, but CPUs {} are online: is this the right profile for this server?", layout.cpus_online));
    }
    // Masks as wide as the host's (the kernel accepts narrower, but prints its own width).
    let mask_groups = layout.cpus_online.iter().last().map_or(1, |cpu| cpu as usize / 32 + 1);

    // The systemd side: each daemon on its CPUs, everything else on housekeeping.
    for name in DAEMONS {
        let Some(placement) = profile.daemons.get(name) else { continue };
        let list = placement.cpus.to_list();
        let why = format!("marionette-{name} runs on CPUs {list}");
        planner.drop_in(&format!("marionette-{name}.slice"), "Slice", &[format!("AllowedCPUs={list}")], &why);
        planner.drop_in(&format!("marionette-{name}.service"), "Service", &[format!("CPUAffinity={list}")], &why);
    }
    let housekeeping = cpus.housekeeping.to_list();
    for slice in ["system.slice", "user.slice"] {
        planner.drop_in(slice, "Slice", &[format!("AllowedCPUs={housekeeping}")], "everything else stays on the housekeeping CPUs");
    }
    if !cpus.isolated.is_empty() {
        planner.drop_in(
            "irqbalance.service",
            "Service",
            &[format!("Environment=IRQBALANCE_BANNED_CPULIST={}", cpus.isolated.to_list())],
            "irqbalance never moves an interrupt onto an isolated CPU",
        );
    }

    // Interrupts: new ones default to the IRQ CPUs; each named device's go there or where its entry says.
    planner.knob("proc/irq/default_smp_affinity".into(), Form::Mask, cpus.irq.to_mask(mask_groups), "new interrupts go to the IRQ CPUs");
    let nics = profile.nics.iter().filter_map(|n| Some((n.pci.as_ref()?, n.irq_cpus.as_ref(), "NIC")));
    let devices = nics.chain(profile.nvme.iter().map(|n| (&n.pci, n.irq_cpus.as_ref(), "NVMe")));
    for (pci, irq_cpus, kind) in devices {
        let target = irq_cpus.unwrap_or(&cpus.irq).to_list();
        match layout.device_irqs.get(pci.as_str()) {
            Some(irqs) if !irqs.is_empty() => {
                for irq in irqs {
                    planner.knob(format!("proc/irq/{irq}/smp_affinity_list"), Form::List, target.clone(), &format!("{kind} {pci} interrupts on CPUs {target}"));
                }
            }
            _ => planner.plan.notes.push(format!("{kind} {pci}: no interrupts found (is the device present and its driver loaded?)")),
        }
    }
    for nic in &profile.nics {
        let Some(queues) = layout.nic_queues.get(nic.name()) else {
            planner.plan.notes.push(format!("NIC {}: no network interface found for it", nic.name()));
            continue;
        };
        let interface = &queues.interface;
        // Queues first: the kernel makes the queue directories anew when their count changes.
        if let Some(count) = nic.queues {
            let combined = format!("ethtool/{interface}/channels/combined");
            if (planner.read)(&combined).is_some() {
                planner.knob(combined, Form::Text, count.to_string(), &format!("{interface} combined queues"));
            } else {
                for side in ["rx", "tx"] {
                    planner.knob(format!("ethtool/{interface}/channels/{side}"), Form::Text, count.to_string(), &format!("{interface} {side} queues"));
                }
            }
        }
        for (side, size) in [("rx", nic.rx_ring), ("tx", nic.tx_ring)] {
            if let Some(size) = size {
                planner.knob(format!("ethtool/{interface}/rings/{side}"), Form::Text, size.to_string(), &format!("{interface} {side} ring entries"));
            }
        }
        if let Some(usecs) = nic.rx_usecs {
            planner.knob(format!("ethtool/{interface}/coalesce/rx-usecs"), Form::Text, usecs.to_string(), &format!("{interface} receive interrupt coalescing"));
        }
        let irq = nic.irq_cpus.as_ref().unwrap_or(&cpus.irq);
        let base = &queues.base;
        let rps = nic.rps_cpus.as_ref().unwrap_or(irq).to_mask(mask_groups);
        for rx in &queues.rx {
            planner.knob(format!("{base}/{rx}/rps_cpus"), Form::Mask, rps.clone(), &format!("{} receive processing on the IRQ CPUs", queues.interface));
        }
        let xps = nic.xps_cpus.as_ref().unwrap_or(irq).to_mask(mask_groups);
        for tx in &queues.tx {
            planner.knob(format!("{base}/{tx}/xps_cpus"), Form::Mask, xps.clone(), &format!("{} transmit queues chosen from the IRQ CPUs", queues.interface));
        }
    }

    // The kernel's own housekeeping off the isolated CPUs, and the low-latency settings.
    planner.knob("sys/devices/virtual/workqueue/cpumask".into(), Form::Mask, cpus.housekeeping.to_mask(mask_groups), "kernel workqueues on housekeeping CPUs");
    let host = &profile.host;
    for cpu in layout.cpus_online.iter() {
        planner.knob(format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"), Form::Text, host.governor.clone(), "CPU frequency governor");
    }
    if let Some(limit_us) = host.max_cstate_latency_us {
        for cpu in cpus.isolated.union(&cpus.irq).iter().filter(|cpu| layout.cpus_online.contains(*cpu)) {
            planner.cstates(cpu, limit_us);
        }
    }
    planner.knob("proc/sys/vm/swappiness".into(), Form::Text, host.swappiness.to_string(), "swap only under real memory pressure");
    planner.knob("proc/sys/kernel/numa_balancing".into(), Form::Text, u8::from(host.numa_balancing).to_string(), "no page migration under the engines");
    planner.knob("proc/sys/kernel/timer_migration".into(), Form::Text, u8::from(host.timer_migration).to_string(), "timers stay where they were armed");
    planner.knob("proc/sys/vm/stat_interval".into(), Form::Text, host.vm_stat_interval_s.to_string(), "fewer VM statistics interrupts");
    planner.knob(
        "sys/kernel/mm/transparent_hugepage/enabled".into(),
        Form::Choice,
        host.transparent_hugepage.clone(),
        "huge pages only where asked: no khugepaged stalls elsewhere",
    );
    if host.hugepages_2m > 0 {
        planner.knob("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages".into(), Form::Text, host.hugepages_2m.to_string(), "reserved 2 MiB pages");
    }
    planner.plan
}

/// The kernel command line for the profile: what cannot be changed on a
/// running kernel (the host image puts it in the boot loader's config).
pub fn kernel_cmdline(profile: &Profile) -> String {
    let cpus = &profile.cpus;
    let mut words = Vec::new();
    if !cpus.isolated.is_empty() {
        let isolated = cpus.isolated.to_list();
        words.push(format!("isolcpus=managed_irq,domain,{isolated}"));
        words.push(format!("nohz_full={isolated}"));
        words.push(format!("rcu_nocbs={isolated}"));
    }
    words.push(format!("irqaffinity={}", cpus.irq.to_list()));
    words.push(format!("transparent_hugepage={}", profile.host.transparent_hugepage));
    if profile.host.hugepages_2m > 0 {
        words.push(format!("hugepagesz=2M hugepages={}", profile.host.hugepages_2m));
    }
    words.push("nosoftlockup skew_tick=1 tsc=reliable".to_string());
    words.join(" ")
}
