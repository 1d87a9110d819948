//! CPU sets in the two forms the kernel speaks: lists (`0-3,8`, as in
//! `smp_affinity_list`, `isolcpus=` and systemd's `CPUAffinity=`) and hex
//! masks in comma-separated 32-bit groups (`ff,00000001`, as in
//! `smp_affinity`, `rps_cpus` and the workqueue cpumask).

use std::collections::BTreeSet;
use std::fmt;

/// CPUs past this are refused: no server has them, and a typo like
/// `0-40000` must not become a 5 KB mask.
pub const CPU_MAX: u32 = 4095;

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct CpuSet(BTreeSet<u32>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuSetError {
    #[error("{0:?} is not a CPU list (expected e.g. \"0-3,8\")")]
    List(String),
    #[error("{0:?} is not a CPU mask (expected hex groups, e.g. \"ff,00000001\")")]
    Mask(String),
    #[error("CPU {0} is past the highest supported CPU ({CPU_MAX})")]
    TooHigh(u32),
}

impl CpuSet {
    pub fn parse_list(text: &str) -> Result<CpuSet, CpuSetError> {
        let text = text.trim();
        let mut cpus = BTreeSet::new();
        if text.is_empty() {
            return Ok(CpuSet(cpus));
        }
        for part in text.split(',') {
            let error = || CpuSetError::List(text.to_string());
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a.trim().parse::<u32>().map_err(|_| error())?, b.trim().parse::<u32>().map_err(|_| error())?),
                None => {
                    let cpu = part.trim().parse::<u32>().map_err(|_| error())?;
                    (cpu, cpu)
                }
            };
            if first > last {
                return Err(error());
            }
            if last > CPU_MAX {
                return Err(CpuSetError::TooHigh(last));
            }
            cpus.extend(first..=last);
        }
        Ok(CpuSet(cpus))
    }

    pub fn parse_mask(text: &str) -> Result<CpuSet, CpuSetError> {
        let text = text.trim();
        let error = || CpuSetError::Mask(text.to_string());
        let mut cpus = BTreeSet::new();
        // The rightmost group holds CPUs 0-31.
        for (index, group) in text.split(',').rev().enumerate() {
            if group.is_empty() || group.len() > 8 {
                return Err(error());
            }
            let bits = u32::from_str_radix(group, 16).map_err(|_| error())?;
            for bit in 0..32 {
                if bits & (1 << bit) != 0 {
                    let cpu = u32::try_from(index).ok().and_then(|i| i.checked_mul(32)).and_then(|base| base.checked_add(bit)).ok_or_else(error)?;
                    if cpu > CPU_MAX {
                        return Err(CpuSetError::TooHigh(cpu));
                    }
                    cpus.insert(cpu);
                }
            }
        }
        Ok(CpuSet(cpus))
    }

    /// The kernel's list form, ranges collapsed: `0-3,8`.
    pub fn to_list(&self) -> String {
        let mut parts = Vec::new();
        let mut cpus = self.0.iter().copied().peekable();
        while let Some(first) = cpus.next() {
            let mut last = first;
            while cpus.peek() == Some(&(last + 1)) {
                last = cpus.next().unwrap_or(last);
            }
            parts.push(if first == last { first.to_string() } else { format!("{first}-{last}") });
        }
        parts.join(",")
    }

    /// The kernel's mask form, as wide as `groups` 32-bit groups (at least
    /// enough for the highest CPU): `00000000,0000000f`.
    pub fn to_mask(&self, groups: usize) -> String {
        let needed = self.0.last().map_or(1, |&cpu| cpu as usize / 32 + 1);
        let groups = groups.max(needed);
        let mut words = vec![0u32; groups];
        for &cpu in &self.0 {
            words[cpu as usize / 32] |= 1 << (cpu % 32);
        }
        words.iter().rev().map(|w| format!("{w:08x}")).collect::<Vec<_>>().join(",")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.intersection(&other.0).copied().collect())
    }

    pub fn union(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.union(&other.0).copied().collect())
    }

    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(cpus: I) -> CpuSet {
        CpuSet(cpus.into_iter().collect())
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_list())
    }
}

impl<'de> serde::Deserialize<'de> for CpuSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<CpuSet, D::Error> {
        let text = String::deserialize(deserializer)?;
        CpuSet::parse_list(&text).map_err(serde::de::Error::custom)
    }
}
