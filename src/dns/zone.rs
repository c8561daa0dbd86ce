//! The authoritative data: `<domain>` and the LAN reverse zone, built from the network plan
//! and the named DHCP leases. Pure: `Zone::build` and `Zone::lookup` do no I/O.
//!
//! Answer rule for app names served by the reverse proxy (`proxied`): the appliance's own
//! address as seen from the client (LAN client → LAN address, loopback client →
//! 127.0.0.1, anyone else → the WAN address), because browsers must reach the proxy.
//! Other app names and DHCP client names answer their container/lease address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::rr::rdata::{A, NS, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::Ipv4Net;

use crate::dhcp::Lease;
use crate::plan::NetworkPlan;

/// Settings that shape answers.
#[derive(Debug, Clone)]
pub struct ZoneSettings {
    /// TTL of local answers.
    pub ttl: u32,
    /// The appliance's WAN address (answer for proxied names to WAN clients).
    pub wan_address: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The appliance address facing the client.
    Appliance,
    /// A fixed address.
    Fixed(Ipv4Addr),
}

/// Result of a local lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Records for the name and type.
    Records(Vec<Record>),
    /// The name exists but has no records of this type (NOERROR, SOA in authority).
    NoData(Record),
    /// The name does not exist in our zone (NXDOMAIN, SOA in authority).
    NxDomain(Record),
    /// Not ours: forward or refuse.
    NotLocal,
}

/// One zone snapshot (cheap to read from many tasks through an `ArcSwap`).
#[derive(Debug, Clone)]
pub struct Zone {
    domain: String,
    domain_name: Name,
    reverse: String,
    reverse_name: Name,
    lan: Ipv4Net,
    names: HashMap<String, Target>,
    ptrs: HashMap<Ipv4Addr, Name>,
    serial: u32,
    settings: ZoneSettings,
}

/// Lower-case text of a name without the trailing dot.
pub fn key_of(name: &Name) -> String {
    let mut s = name.to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s.make_ascii_lowercase();
    s
}

fn fqdn(s: &str) -> Name {
    let mut n = Name::from_ascii(s).unwrap_or_else(|_| Name::root());
    n.set_fqdn(true);
    n
}

/// The reverse zone of a LAN (whole octets, e.g. `0.20.10.in-addr.arpa` for a /24).
pub fn reverse_zone(lan: Ipv4Net) -> String {
    let octets = (lan.prefix_len() / 8).max(1) as usize;
    let o = lan.network().octets();
    let mut parts: Vec<String> = o[..octets].iter().rev().map(|b| b.to_string()).collect();
    parts.push("in-addr".into());
    parts.push("arpa".into());
    parts.join(".")
}

fn ptr_key(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

fn parse_ptr(key: &str) -> Option<Ipv4Addr> {
    let rest = key.strip_suffix(".in-addr.arpa")?;
    let parts: Vec<&str> = rest.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut o = [0u8; 4];
    for (i, p) in parts.iter().rev().enumerate() {
        if p.is_empty() || p.len() > 3 || (p.len() > 1 && p.starts_with('0')) {
            return None;
        }
        o[i] = p.parse().ok()?;
    }
    Some(Ipv4Addr::from(o))
}

/// True when `client` may use forwarding (LAN subnet or loopback); WAN clients get only the
/// local zone.
pub fn may_forward(client: IpAddr, lan: Ipv4Net) -> bool {
    match client {
        IpAddr::V4(v4) => v4.is_loopback() || lan.trunc().contains(&v4),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback() || lan.trunc().contains(&v4)),
    }
}

impl Zone {
    /// Build from the plan and the named leases. App names win over lease names; the name
    /// `ns.<domain>` answers the appliance unless an app took it.
    pub fn build(plan: &NetworkPlan, leases: &[Lease], settings: ZoneSettings, serial: u32) -> Zone {
        let domain = plan.domain.to_ascii_lowercase();
        let reverse = reverse_zone(plan.lan);
        let mut names = HashMap::new();
        let mut ptrs = HashMap::new();
        for r in &plan.records {
            let t = if r.proxied { Target::Appliance } else { Target::Fixed(r.ip) };
            names.insert(r.name.to_ascii_lowercase(), t);
        }
        for r in &plan.reservations {
            ptrs.insert(r.ip, fqdn(&format!("{}.{domain}", r.hostname)));
        }
        for l in leases {
            let Some(h) = &l.hostname else { continue };
            let name = format!("{h}.{domain}");
            if names.contains_key(&name) || plan.reservations.iter().any(|r| r.ip == l.ip) {
                continue;
            }
            names.insert(name.clone(), Target::Fixed(l.ip));
            ptrs.insert(l.ip, fqdn(&name));
        }
        names.entry(format!("ns.{domain}")).or_insert(Target::Appliance);
        let gw = plan.lan.addr();
        ptrs.entry(gw).or_insert_with(|| fqdn(&format!("ns.{domain}")));
        Zone {
            domain_name: fqdn(&domain),
            domain,
            reverse_name: fqdn(&reverse),
            reverse,
            lan: plan.lan,
            names,
            ptrs,
            serial,
            settings,
        }
    }

    /// The zone's domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Number of A names (including `ns`).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no names.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The appliance address facing `client`.
    pub fn facing(&self, client: IpAddr) -> Ipv4Addr {
        let v4 = match client {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) if a.is_loopback() => Some(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) => a.to_ipv4_mapped(),
        };
        match v4 {
            Some(a) if a.is_loopback() => Ipv4Addr::LOCALHOST,
            Some(a) if self.lan.trunc().contains(&a) => self.lan.addr(),
            _ => self.settings.wan_address.unwrap_or(self.lan.addr()),
        }
    }

    fn soa(&self, apex: &Name) -> Record {
        let rdata = SOA::new(
            fqdn(&format!("ns.{}", self.domain)),
            fqdn(&format!("hostmaster.{}", self.domain)),
            self.serial,
            3600,
            600,
            86400,
            self.settings.ttl,
        );
        Record::from_rdata(apex.clone(), self.settings.ttl, RData::SOA(rdata))
    }

    fn apex(&self, apex: &Name, qtype: RecordType) -> Answer {
        let ns = || Record::from_rdata(apex.clone(), self.settings.ttl, RData::NS(NS(fqdn(&format!("ns.{}", self.domain)))));
        match qtype {
            RecordType::SOA => Answer::Records(vec![self.soa(apex)]),
            RecordType::NS => Answer::Records(vec![ns()]),
            RecordType::ANY => Answer::Records(vec![self.soa(apex), ns()]),
            _ => Answer::NoData(self.soa(apex)),
        }
    }

    /// TTL of local answers.
    pub fn ttl(&self) -> u32 {
        self.settings.ttl
    }

    /// The `A` answer for `key` (lower-case, no trailing dot) when it is a name of this
    /// zone; the same address [`Zone::lookup`] gives (used by the wire fast path).
    pub fn local_a(&self, key: &str, client: IpAddr) -> Option<Ipv4Addr> {
        let under =
            key.len() > self.domain.len() && key.ends_with(&self.domain) && key.as_bytes()[key.len() - self.domain.len() - 1] == b'.';
        if !under {
            return None;
        }
        match self.names.get(key)? {
            Target::Appliance => Some(self.facing(client)),
            Target::Fixed(ip) => Some(*ip),
        }
    }

    /// Answer `qname`/`qtype` for `client` from local data.
    pub fn lookup(&self, qname: &Name, qtype: RecordType, client: IpAddr) -> Answer {
        let key = key_of(qname);
        let mut owner = qname.clone();
        owner.set_fqdn(true);
        if key == self.domain {
            return self.apex(&self.domain_name, qtype);
        }
        if key == self.reverse {
            return self.apex(&self.reverse_name, qtype);
        }
        if key.len() > self.domain.len() && key.ends_with(&self.domain) && key.as_bytes()[key.len() - self.domain.len() - 1] == b'.' {
            return match self.names.get(&key) {
                Some(t) => match qtype {
                    RecordType::A | RecordType::ANY => {
                        let ip = match t {
                            Target::Appliance => self.facing(client),
                            Target::Fixed(ip) => *ip,
                        };
                        Answer::Records(vec![Record::from_rdata(owner, self.settings.ttl, RData::A(A(ip)))])
                    }
                    _ => Answer::NoData(self.soa(&self.domain_name)),
                },
                None => Answer::NxDomain(self.soa(&self.domain_name)),
            };
        }
        if key.len() > self.reverse.len() && key.ends_with(&self.reverse) && key.as_bytes()[key.len() - self.reverse.len() - 1] == b'.' {
            let target = parse_ptr(&key).filter(|ip| ptr_key(*ip) == key).and_then(|ip| self.ptrs.get(&ip));
            return match target {
                Some(n) => match qtype {
                    RecordType::PTR | RecordType::ANY => {
                        Answer::Records(vec![Record::from_rdata(owner, self.settings.ttl, RData::PTR(PTR(n.clone())))])
                    }
                    _ => Answer::NoData(self.soa(&self.reverse_name)),
                },
                None => Answer::NxDomain(self.soa(&self.reverse_name)),
            };
        }
        Answer::NotLocal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::pool::LeaseState;
    use crate::plan::{DnsRecord, Reservation};

    fn plan() -> NetworkPlan {
        let mut p = NetworkPlan::empty(&crate::config::Config::default().network);
        p.records = vec![
            DnsRecord {
                name: "nginx-01.prox.local".into(),
                ip: Ipv4Addr::new(10, 20, 0, 101),
                proxied: true,
                app_id: "a".into(),
            },
            DnsRecord {
                name: "db.prox.local".into(),
                ip: Ipv4Addr::new(10, 20, 0, 102),
                proxied: false,
                app_id: "b".into(),
            },
        ];
        p.reservations = vec![
            Reservation {
                mac: "02:00:00:00:00:65".into(),
                ip: Ipv4Addr::new(10, 20, 0, 101),
                hostname: "nginx-01".into(),
            },
            Reservation {
                mac: "02:00:00:00:00:66".into(),
                ip: Ipv4Addr::new(10, 20, 0, 102),
                hostname: "db".into(),
            },
        ];
        p
    }
    fn leases() -> Vec<Lease> {
        let l = |h: &str, n: u8| Lease {
            mac: format!("02:11:00:00:00:{n:02x}"),
            ip: Ipv4Addr::new(10, 20, 0, n),
            hostname: Some(h.into()),
            expires: u64::MAX,
            state: LeaseState::Bound,
        };
        vec![l("laptop", 150), l("db", 151)]
    }
    fn zone() -> Zone {
        Zone::build(
            &plan(),
            &leases(),
            ZoneSettings {
                ttl: 60,
                wan_address: Some(Ipv4Addr::new(192, 168, 1, 50)),
            },
            7,
        )
    }
    fn a(ans: Answer) -> Ipv4Addr {
        match ans {
            Answer::Records(r) => match &r[0].data {
                RData::A(a) => a.0,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }
    const LAN: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 20, 0, 150));
    const WAN: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 9));
    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn proxied_names_answer_the_address_facing_the_client() {
        let z = zone();
        assert_eq!(
            a(z.lookup(&n("nginx-01.prox.local."), RecordType::A, LAN)),
            Ipv4Addr::new(10, 20, 0, 1)
        );
        assert_eq!(a(z.lookup(&n("nginx-01.prox.local."), RecordType::A, LO)), Ipv4Addr::LOCALHOST);
        assert_eq!(
            a(z.lookup(&n("nginx-01.prox.local."), RecordType::A, WAN)),
            Ipv4Addr::new(192, 168, 1, 50)
        );
        // Non-proxied apps answer the container address to everyone.
        assert_eq!(a(z.lookup(&n("db.prox.local."), RecordType::A, WAN)), Ipv4Addr::new(10, 20, 0, 102));
    }

    #[test]
    fn case_insensitive_nodata_and_nxdomain() {
        let z = zone();
        assert_eq!(a(z.lookup(&n("NGINX-01.Prox.Local"), RecordType::A, LO)), Ipv4Addr::LOCALHOST);
        assert!(matches!(
            z.lookup(&n("nginx-01.prox.local."), RecordType::AAAA, LO),
            Answer::NoData(_)
        ));
        assert!(matches!(z.lookup(&n("nope.prox.local."), RecordType::A, LO), Answer::NxDomain(_)));
        assert!(matches!(z.lookup(&n("example.test."), RecordType::A, LO), Answer::NotLocal));
        assert!(matches!(z.lookup(&n("xprox.local."), RecordType::A, LO), Answer::NotLocal));
        assert!(matches!(z.lookup(&n("prox.local."), RecordType::A, LO), Answer::NoData(_)));
        match z.lookup(&n("prox.local."), RecordType::SOA, LO) {
            Answer::Records(r) => assert!(matches!(&r[0].data, RData::SOA(s) if s.serial == 7)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(z.lookup(&n("prox.local."), RecordType::NS, LO), Answer::Records(_)));
        assert_eq!(a(z.lookup(&n("ns.prox.local."), RecordType::A, LAN)), Ipv4Addr::new(10, 20, 0, 1));
    }

    #[test]
    fn lease_names_never_shadow_apps() {
        let z = zone();
        assert_eq!(
            a(z.lookup(&n("laptop.prox.local."), RecordType::A, WAN)),
            Ipv4Addr::new(10, 20, 0, 150)
        );
        assert_eq!(a(z.lookup(&n("db.prox.local."), RecordType::A, LAN)), Ipv4Addr::new(10, 20, 0, 102));
    }

    #[test]
    fn reverse_zone_ptr() {
        let z = zone();
        let ptr = |s: &str| match z.lookup(&n(s), RecordType::PTR, LAN) {
            Answer::Records(r) => match &r[0].data {
                RData::PTR(p) => p.0.to_ascii(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(ptr("101.0.20.10.in-addr.arpa."), "nginx-01.prox.local.");
        assert_eq!(ptr("150.0.20.10.IN-ADDR.ARPA."), "laptop.prox.local.");
        assert_eq!(ptr("1.0.20.10.in-addr.arpa."), "ns.prox.local.");
        assert!(matches!(
            z.lookup(&n("151.0.20.10.in-addr.arpa."), RecordType::PTR, LAN),
            Answer::NxDomain(_)
        ));
        assert!(matches!(
            z.lookup(&n("9.0.20.10.in-addr.arpa."), RecordType::PTR, LAN),
            Answer::NxDomain(_)
        ));
        assert!(matches!(
            z.lookup(&n("101.0.20.10.in-addr.arpa."), RecordType::A, LAN),
            Answer::NoData(_)
        ));
        assert!(matches!(
            z.lookup(&n("1.1.168.192.in-addr.arpa."), RecordType::PTR, LAN),
            Answer::NotLocal
        ));
        assert_eq!(reverse_zone("10.20.0.1/16".parse().unwrap()), "20.10.in-addr.arpa");
    }

    #[test]
    fn forwarding_only_for_lan_and_loopback() {
        let lan: Ipv4Net = "10.20.0.1/24".parse().unwrap();
        assert!(may_forward(LAN, lan));
        assert!(may_forward(LO, lan));
        assert!(may_forward("::1".parse().unwrap(), lan));
        assert!(!may_forward(WAN, lan));
        assert!(!may_forward("2001:db8::1".parse().unwrap(), lan));
    }
}
