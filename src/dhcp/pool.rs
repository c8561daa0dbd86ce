//! Lease state of the dynamic pool: offers, bound leases, declined addresses, expiry and the
//! new-lease rate limit. Pure data structure; time is passed in (unix seconds).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// State of one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Offered, not yet requested (kept in memory only).
    Offered,
    /// Acknowledged (persisted).
    Bound,
}

/// One address held by one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Client MAC, lower-case colon hex.
    pub mac: String,
    /// Leased address.
    pub ip: Ipv4Addr,
    /// Client host name (option 12), validated, lower case.
    pub hostname: Option<String>,
    /// Unix seconds when the lease ends.
    pub expires: u64,
    /// Offered or bound.
    pub state: LeaseState,
}

/// Addresses and leases of the dynamic pool.
#[derive(Debug, Clone)]
pub struct Pool {
    first: u32,
    last: u32,
    by_ip: BTreeMap<Ipv4Addr, Lease>,
    by_mac: HashMap<String, Ipv4Addr>,
    declined: HashMap<Ipv4Addr, u64>,
    cursor: u32,
    limit_per_sec: u32,
    window: u64,
    window_count: u32,
}

impl Pool {
    /// An empty pool over `first..=last` allowing `limit_per_sec` new leases per second
    /// (0 = unlimited).
    pub fn new(first: Ipv4Addr, last: Ipv4Addr, limit_per_sec: u32) -> Self {
        let (a, b) = (u32::from(first), u32::from(last));
        Pool {
            first: a.min(b),
            last: a.max(b),
            by_ip: BTreeMap::new(),
            by_mac: HashMap::new(),
            declined: HashMap::new(),
            cursor: a.min(b),
            limit_per_sec,
            window: 0,
            window_count: 0,
        }
    }

    /// True when `ip` lies in the dynamic range.
    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    /// Insert a lease (restoring from storage or binding); replaces older entries of the same
    /// MAC or address.
    pub fn insert(&mut self, lease: Lease) {
        if let Some(old_ip) = self.by_mac.get(&lease.mac).copied()
            && old_ip != lease.ip
        {
            self.by_ip.remove(&old_ip);
        }
        if let Some(old) = self.by_ip.get(&lease.ip)
            && old.mac != lease.mac
        {
            let m = old.mac.clone();
            self.by_mac.remove(&m);
        }
        self.by_mac.insert(lease.mac.clone(), lease.ip);
        self.by_ip.insert(lease.ip, lease);
    }

    /// The lease (offered or bound, maybe expired) of a MAC.
    pub fn by_mac(&self, mac: &str) -> Option<&Lease> {
        self.by_mac.get(mac).and_then(|ip| self.by_ip.get(ip))
    }

    /// The lease on an address.
    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(&ip)
    }

    /// Remove the lease on `ip`; returns it.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        let l = self.by_ip.remove(&ip)?;
        if self.by_mac.get(&l.mac) == Some(&ip) {
            self.by_mac.remove(&l.mac);
        }
        Some(l)
    }

    /// Mark `ip` unusable until `until` (after a DECLINE); drops any lease on it.
    pub fn decline(&mut self, ip: Ipv4Addr, until: u64) {
        self.remove(ip);
        self.declined.insert(ip, until);
    }

    /// True when `ip` is held back after a DECLINE at `now`.
    pub fn is_declined(&self, ip: Ipv4Addr, now: u64) -> bool {
        self.declined.get(&ip).is_some_and(|&t| t > now)
    }

    /// True when `mac` may take `ip` at `now`: in range, not declined, and free or already
    /// its own (an expired lease of another client counts as free). `reserved` says whether
    /// an address is reserved for someone else.
    pub fn available_for(&self, ip: Ipv4Addr, mac: &str, now: u64, reserved: impl Fn(Ipv4Addr) -> bool) -> bool {
        if !self.in_range(ip) || self.is_declined(ip, now) || reserved(ip) {
            return false;
        }
        match self.by_ip.get(&ip) {
            None => true,
            Some(l) => l.mac == mac || l.expires <= now,
        }
    }

    /// Find a free address (round robin from the last one handed out), skipping reserved,
    /// declined and live leases.
    pub fn find_free(&mut self, mac: &str, now: u64, reserved: impl Fn(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
        let size = u64::from(self.last - self.first) + 1;
        let mut cur = self.cursor.clamp(self.first, self.last);
        for _ in 0..size {
            let ip = Ipv4Addr::from(cur);
            cur = if cur >= self.last { self.first } else { cur + 1 };
            if self.available_for(ip, mac, now, &reserved) {
                self.cursor = cur;
                return Some(ip);
            }
        }
        None
    }

    /// Take one unit of the new-lease budget for the second `now`; false when exhausted.
    pub fn take_new_lease_budget(&mut self, now: u64) -> bool {
        if self.limit_per_sec == 0 {
            return true;
        }
        if self.window != now {
            self.window = now;
            self.window_count = 0;
        }
        if self.window_count >= self.limit_per_sec {
            return false;
        }
        self.window_count += 1;
        true
    }

    /// Drop expired leases and elapsed decline holds; returns the bound leases that expired.
    pub fn expire(&mut self, now: u64) -> Vec<Lease> {
        let gone: Vec<Ipv4Addr> = self.by_ip.values().filter(|l| l.expires <= now).map(|l| l.ip).collect();
        let mut out = Vec::new();
        for ip in gone {
            if let Some(l) = self.remove(ip)
                && l.state == LeaseState::Bound
            {
                out.push(l);
            }
        }
        self.declined.retain(|_, &mut t| t > now);
        out
    }

    /// Live bound leases, sorted by address.
    pub fn bound(&self, now: u64) -> Vec<Lease> {
        self.by_ip
            .values()
            .filter(|l| l.state == LeaseState::Bound && l.expires > now)
            .cloned()
            .collect()
    }

    /// Number of entries (offers and leases).
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// True when nothing is leased or offered.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 20, 0, n)
    }
    fn lease(mac: &str, n: u8, exp: u64) -> Lease {
        Lease {
            mac: mac.into(),
            ip: ip(n),
            hostname: None,
            expires: exp,
            state: LeaseState::Bound,
        }
    }

    #[test]
    fn find_free_skips_taken_reserved_and_declined() {
        let mut p = Pool::new(ip(100), ip(103), 0);
        p.insert(lease("a", 100, 1000));
        p.decline(ip(101), 500);
        let got = p.find_free("b", 10, |x| x == ip(102));
        assert_eq!(got, Some(ip(103)));
        // After the hold elapses and with no reservation, 101 becomes usable again.
        p.insert(lease("b", 103, 1000));
        assert_eq!(p.find_free("c", 600, |_| false), Some(ip(101)));
    }

    #[test]
    fn exhausted_pool_gives_none_and_expiry_frees() {
        let mut p = Pool::new(ip(100), ip(101), 0);
        p.insert(lease("a", 100, 50));
        p.insert(lease("b", 101, 50));
        assert_eq!(p.find_free("c", 10, |_| false), None);
        // Expired leases of others count as free even before the sweep.
        assert!(p.available_for(ip(100), "c", 60, |_| false));
        let gone = p.expire(60);
        assert_eq!(gone.len(), 2);
        assert!(p.is_empty());
    }

    #[test]
    fn reinsert_moves_mac_to_new_address() {
        let mut p = Pool::new(ip(100), ip(110), 0);
        p.insert(lease("a", 100, 50));
        p.insert(lease("a", 105, 50));
        assert!(p.by_ip(ip(100)).is_none());
        assert_eq!(p.by_mac("a").unwrap().ip, ip(105));
        p.insert(lease("b", 105, 50));
        assert!(p.by_mac("a").is_none());
    }

    #[test]
    fn rate_limit_per_second() {
        let mut p = Pool::new(ip(100), ip(110), 2);
        assert!(p.take_new_lease_budget(5));
        assert!(p.take_new_lease_budget(5));
        assert!(!p.take_new_lease_budget(5));
        assert!(p.take_new_lease_budget(6));
    }
}
