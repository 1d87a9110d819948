//! Places per client address (connections, subscriptions), each address
//! under its own cap, so that one address cannot take every place under the
//! global one.

use std::collections::hash_map::{Entry, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct PlacesPerIp {
    max: usize,
    taken: Mutex<HashMap<IpAddr, usize>>,
}

/// One place held at an address, given back when it is dropped.
pub struct IpSlot {
    ip: IpAddr,
    of: Arc<PlacesPerIp>,
}

impl PlacesPerIp {
    pub fn new(max: usize) -> Arc<PlacesPerIp> {
        Arc::new(PlacesPerIp { max, taken: Mutex::default() })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for `ip`, or None when it holds `max` already.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut taken = self.taken.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = taken.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot { ip, of: self.clone() })
    }

    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.taken.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut taken = self.of.taken.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Entry::Occupied(mut entry) = taken.entry(self.ip) {
            *entry.get_mut() -= 1;
            // Forgotten at zero: the map holds only addresses that hold a place.
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_cap_and_dropped_slots_give_theirs_back() {
        let per_ip = PlacesPerIp::new(2);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = per_ip.take(a).unwrap();
        let _second = per_ip.take(a).unwrap();
        assert!(per_ip.take(a).is_none(), "a third from one address");
        assert!(per_ip.take(b).is_some(), "another address is not held back");
        drop(first);
        assert!(per_ip.take(a).is_some(), "a dropped slot frees its place");
        assert_eq!(per_ip.addresses(), 1, "addresses holding nothing are forgotten");
    }
}
