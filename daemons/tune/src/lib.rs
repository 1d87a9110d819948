//! `marionette-tune`: makes a host fit to run Marionette's daemons pinned and
//! isolated, from a hardware profile (`hardware/profiles/*.toml`), and undoes
//! it. The plan is pure ([`plan::plan`]: profile + what the host has →
//! changes); [`host::Host`] reads and writes under a root, so tests run it
//! against a fake sysfs/procfs tree.

pub mod check;
pub mod cpuset;
pub mod ethtool;
pub mod host;
pub mod plan;
pub mod profile;
