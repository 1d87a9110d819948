//! The command line of marionette-tune.

use std::path::PathBuf;

use anyhow::{bail, Context};
use tune::check::Level;
use tune::host::Host;
use tune::plan::{kernel_cmdline, plan};
use tune::profile::Profile;

const USAGE: &str = "usage: marionette-tune [--root DIR] COMMAND
  apply PROFILE [--dry-run]   make this host match the hardware profile; --dry-run prints every change and makes none
  revert [--dry-run]          put back every value the tuner changed, remove its systemd drop-ins
  show PROFILE                check the profile and print its layout and kernel command line
  cmdline PROFILE             print only the profile's kernel command line (for a boot loader's config)
  check [PROFILE]             preflight: is this host fit (SMT, governor, THP, swap, clock source, isolation,
                              interrupts and tasks on isolated CPUs, kernel, io_uring, direct I/O, free space)
Profiles: /usr/share/marionette/hardware/*.toml. The values replaced are kept in
/var/lib/marionette-tune/saved.json (the first apply's, across applies) for revert.
--root (default /) runs against another tree, e.g. a chroot or a test fixture.
Exit status: 0 done (or nothing to do, or fit), 1 an error, 2 some changes failed (listed),
3 check found the host unfit (a FAIL line).";

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("marionette-tune: {error:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> anyhow::Result<i32> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut root = PathBuf::from("/");
    if args.first().map(String::as_str) == Some("--root") {
        root = args.get(1).context("--root needs a directory")?.into();
        args.drain(..2);
    }
    let dry_run = args.iter().any(|a| a == "--dry-run");
    args.retain(|a| a != "--dry-run");
    let host = Host::new(&root);
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["apply", profile] => apply(&host, &root, &Profile::load(profile.as_ref())?, dry_run),
        ["revert"] => revert(&host, &root, dry_run),
        ["check"] => preflight(&host, None),
        ["check", profile] => preflight(&host, Some(&Profile::load(profile.as_ref())?)),
        ["show", profile] => {
            let profile = Profile::load(profile.as_ref())?;
            println!("model: {}", profile.model);
            println!("housekeeping CPUs: {}; isolated: {}; interrupts: {}", profile.cpus.housekeeping, profile.cpus.isolated, profile.cpus.irq);
            for (name, placement) in &profile.daemons {
                let engine =
                    placement.engine_cpu.map(|cpu| format!(", engine thread on {cpu} (engine.cpu in /etc/marionette/{name}.toml)")).unwrap_or_default();
                println!("marionette-{name}: CPUs {}{engine}", placement.cpus);
            }
            println!("kernel command line: {}", kernel_cmdline(&profile));
            Ok(0)
        }
        ["cmdline", profile] => {
            println!("{}", kernel_cmdline(&Profile::load(profile.as_ref())?));
            Ok(0)
        }
        ["--help" | "-h" | "help"] => {
            println!("{USAGE}");
            Ok(0)
        }
        _ => bail!("{USAGE}"),
    }
}

fn apply(host: &Host, root: &std::path::Path, profile: &Profile, dry_run: bool) -> anyhow::Result<i32> {
    let planned = plan(profile, &host.layout(profile), |path| host.read(path));
    for note in &planned.notes {
        println!("note: {note}");
    }
    if planned.changes.is_empty() {
        println!("nothing to change: this host matches {}", profile.model);
        return Ok(0);
    }
    for change in &planned.changes {
        let before = change.before.as_deref().map_or("(new file)".to_string(), |b| format!("{:?}", b.trim()));
        let verb = if dry_run { "would set" } else { "setting" };
        println!("{verb} /{} from {before} to {:?}: {}", change.path, change.after.trim(), change.why);
    }
    if dry_run {
        println!("dry run: {} changes, none made", planned.changes.len());
        return Ok(0);
    }
    let mut failed = host.apply(&planned.changes)?;
    let mut made = planned.changes.len() - failed.len();
    // A new queue count gives the NIC new queue directories: steer those too.
    if planned.changes.iter().any(|c| c.path.contains("/channels/")) {
        let again = plan(profile, &host.layout(profile), |path| host.read(path));
        let pending: Vec<_> = again.changes.into_iter().filter(|c| !failed.iter().any(|(f, _)| f.path == c.path)).collect();
        for change in &pending {
            println!(
                "setting /{} from {:?} to {:?}: {} (after the queue change)",
                change.path,
                change.before.as_deref().unwrap_or(""),
                change.after.trim(),
                change.why
            );
        }
        let failed_again = host.apply(&pending)?;
        made += pending.len() - failed_again.len();
        failed.extend(failed_again);
    }
    for (change, error) in &failed {
        eprintln!("failed: /{}: {error}", change.path);
    }
    println!("{made} changes made, {} failed; `marionette-tune revert` undoes them", failed.len());
    if planned.changes.iter().any(|c| c.path.starts_with("etc/systemd/")) {
        reload_systemd(root);
    }
    Ok(if failed.is_empty() { 0 } else { 2 })
}

fn preflight(host: &Host, profile: Option<&Profile>) -> anyhow::Result<i32> {
    let verdicts = tune::check::check(profile, &host.facts(&["var/lib/marionette/matching", "var/lib/marionette/ledger"]));
    for verdict in &verdicts {
        println!("{verdict}");
    }
    let count = |level| verdicts.iter().filter(|v| v.level == level).count();
    let fails = count(Level::Fail);
    let verdict = if fails == 0 { "fit" } else { "NOT fit" };
    println!("{verdict}: {} pass, {} warn, {fails} fail", count(Level::Pass), count(Level::Warn));
    Ok(if fails == 0 { 0 } else { 3 })
}

fn revert(host: &Host, root: &std::path::Path, dry_run: bool) -> anyhow::Result<i32> {
    let originals = host.revert_plan()?;
    if originals.is_empty() {
        println!("nothing to revert: the tuner has changed nothing here");
        return Ok(0);
    }
    for (path, original) in &originals {
        let verb = if dry_run { "would" } else { "will" };
        match original {
            Some(value) => println!("{verb} put back /{path} = {:?}", value.trim()),
            None => println!("{verb} remove /{path}"),
        }
    }
    if dry_run {
        return Ok(0);
    }
    let failed = host.revert()?;
    for (path, error) in &failed {
        eprintln!("failed: /{path}: {error} (kept for the next revert)");
    }
    if originals.iter().any(|(path, _)| path.starts_with("etc/systemd/")) {
        reload_systemd(root);
    }
    Ok(if failed.is_empty() { 0 } else { 2 })
}

/// The drop-ins take effect at daemon-reload (slices) and at each
/// service's next start (CPUAffinity); only on the live system.
fn reload_systemd(root: &std::path::Path) {
    if root != std::path::Path::new("/") || !std::path::Path::new("/run/systemd/system").exists() {
        println!("systemd drop-ins written under {}; they take effect when that system's systemd starts", root.display());
        return;
    }
    match std::process::Command::new("systemctl").arg("daemon-reload").status() {
        Ok(status) if status.success() => {
            println!("systemd reloaded; the daemons move to their CPUs when they next start (systemctl restart marionette.target at a quiet time)")
        }
        _ => eprintln!("systemctl daemon-reload failed: run it yourself for the drop-ins to take effect"),
    }
}
