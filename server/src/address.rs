//! Per-address limits: what counts as one address, and how many connections each has.
//!
//! An IPv4 address is one address. An IPv6 host is usually given a whole /64 (2^64 addresses
//! it can pick from at will), so IPv6 addresses are counted by their /64: per address, one host
//! would otherwise be as many hosts as it liked. An IPv4 address seen as an IPv4-mapped IPv6
//! address (`::ffff:a.b.c.d`, from a dual-stack listener) is the IPv4 address, not the mapped
//! range's /64, which would be every IPv4 client at once.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// What per-address limits count by: an IPv4 address, or an IPv6 /64 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// One IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
}

impl AddressKey {
    /// The key `ip` counts under.
    pub fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey::V4(v4.octets()),
                None => AddressKey::V6Prefix(prefix_64(&v6)),
            },
        }
    }
}

fn prefix_64(v6: &Ipv6Addr) -> [u8; 8] {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&v6.octets()[..8]);
    prefix
}

impl From<IpAddr> for AddressKey {
    fn from(ip: IpAddr) -> Self {
        AddressKey::of(ip)
    }
}

/// Counts connections per address (one instance per kind of connection counted).
#[derive(Clone, Debug, Default)]
pub struct PerAddress(Arc<Mutex<HashMap<AddressKey, usize>>>);

impl PerAddress {
    /// A place for one more connection from `ip`, if its address has fewer than `max`.
    pub fn take(&self, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let key = AddressKey::of(ip);
        let mut counts = self.0.lock().ok()?;
        let count = counts.entry(key).or_insert(0);
        if *count >= max {
            if *count == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            map: self.clone(),
            key,
        })
    }

    /// How many places `ip`'s address holds.
    pub fn count(&self, ip: IpAddr) -> usize {
        let key = AddressKey::of(ip);
        self.0
            .lock()
            .map(|counts| counts.get(&key).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// One connection's place in its address's count; given up when dropped.
#[derive(Debug)]
pub struct AddressSlot {
    map: PerAddress,
    key: AddressKey,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.map.0.lock()
            && let Some(count) = counts.get_mut(&self.key)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_ipv6_host_counts_once_for_its_whole_64_however_many_addresses_it_uses() {
        let per = PerAddress::default();
        let first = per.take(ip("2001:db8:1:2::1"), 2).unwrap();
        let second = per.take(ip("2001:db8:1:2:ffff:1234:5678:9abc"), 2).unwrap();
        assert!(
            per.take(ip("2001:db8:1:2::3"), 2).is_none(),
            "a third address of the same /64"
        );
        assert!(
            per.take(ip("2001:db8:1:3::1"), 2).is_some(),
            "the next /64 is someone else"
        );
        drop((first, second));
        assert_eq!(per.count(ip("2001:db8:1:2::9")), 0);
    }

    #[test]
    fn ipv4_addresses_count_alone_also_when_seen_as_mapped_ipv6() {
        let per = PerAddress::default();
        let _a = per.take(ip("192.0.2.1"), 1).unwrap();
        assert!(
            per.take(ip("::ffff:192.0.2.1"), 1).is_none(),
            "the same host"
        );
        assert!(
            per.take(ip("::ffff:192.0.2.2"), 1).is_some(),
            "another IPv4 host is not in the first one's count"
        );
        assert!(per.take(ip("192.0.2.3"), 1).is_some());
    }

    #[test]
    fn a_limit_of_zero_refuses_and_leaves_nothing_behind() {
        let per = PerAddress::default();
        assert!(per.take(ip("192.0.2.1"), 0).is_none());
        assert!(per.0.lock().unwrap().is_empty());
    }
}
