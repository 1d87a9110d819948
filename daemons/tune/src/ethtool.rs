//! NIC settings through ethtool, as files of a pseudo tree so that they are
//! planned, saved and reverted like any other setting:
//! `ethtool/<interface>/channels/{combined,rx,tx}` (`ethtool -l`/`-L`),
//! `ethtool/<interface>/rings/{rx,tx}` (`-g`/`-G`) and
//! `ethtool/<interface>/coalesce/rx-usecs` (`-c`/`-C`). The parsers are
//! pure; the shell runs ethtool.

/// A pseudo path's parts: interface, group, setting.
pub fn split(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix("ethtool/")?;
    let mut parts = rest.splitn(3, '/');
    let (interface, group, setting) = (parts.next()?, parts.next()?, parts.next()?);
    let known = matches!((group, setting), ("channels", "combined" | "rx" | "tx") | ("rings", "rx" | "tx") | ("coalesce", "rx-usecs"));
    (known && valid_interface(interface)).then_some((interface, group, setting))
}

/// A Linux interface name: 1 to 15 bytes, no '/', no whitespace, not "." or "..".
pub fn valid_interface(name: &str) -> bool {
    (1..=15).contains(&name.len()) && !name.contains(['/', ':']) && !name.chars().any(char::is_whitespace) && name != "." && name != ".."
}

/// The option that shows a group, and the one that sets it.
pub fn options(group: &str) -> (&'static str, &'static str) {
    match group {
        "channels" => ("-l", "-L"),
        "rings" => ("-g", "-G"),
        _ => ("-c", "-C"),
    }
}

/// A setting's current value from `ethtool -l`, `-g` or `-c` output; None
/// when the driver does not report it (`n/a`, or no such line).
pub fn current(group: &str, setting: &str, output: &str) -> Option<u32> {
    let label = match (group, setting) {
        ("channels", "combined") => "Combined:",
        ("channels" | "rings", "rx") => "RX:",
        ("channels" | "rings", "tx") => "TX:",
        ("coalesce", "rx-usecs") => "rx-usecs:",
        _ => return None,
    };
    // -l and -g print the maximums first, then the current values.
    let section = if group == "coalesce" { output } else { output.split_once("Current hardware settings:")?.1 };
    section.lines().find_map(|line| line.trim().strip_prefix(label)).and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VETH_L: &str = "Channel parameters for v0:\nPre-set maximums:\nRX:\t\t2\nTX:\t\t2\nOther:\t\tn/a\nCombined:\tn/a\nCurrent hardware settings:\nRX:\t\t1\nTX:\t\t1\nOther:\t\tn/a\nCombined:\tn/a\n";

    #[test]
    fn current_values_come_from_the_current_section() {
        assert_eq!(current("channels", "rx", VETH_L), Some(1));
        assert_eq!(current("channels", "combined", VETH_L), None);
        let g = "Ring parameters for eth0:\nPre-set maximums:\nRX:\t\t4096\nTX:\t\t4096\nCurrent hardware settings:\nRX:\t\t512\nTX:\t\t1024\n";
        assert_eq!((current("rings", "rx", g), current("rings", "tx", g)), (Some(512), Some(1024)));
        assert_eq!(current("coalesce", "rx-usecs", "Adaptive RX: off  TX: off\nrx-usecs: 50\nrx-frames: 0\n"), Some(50));
        assert_eq!(current("rings", "rx", "netlink error: Operation not supported"), None);
    }

    #[test]
    fn pseudo_paths_name_only_known_settings_of_plain_interfaces() {
        assert_eq!(split("ethtool/eth0/rings/rx"), Some(("eth0", "rings", "rx")));
        assert_eq!(split("ethtool/../rings/rx"), None);
        assert_eq!(split("ethtool/eth0/rings/rx-mini"), None);
        assert_eq!(split("proc/sys/vm/swappiness"), None);
        assert!(!valid_interface("a-name-longer-than-15"));
    }
}
