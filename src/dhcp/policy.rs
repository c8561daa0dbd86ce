//! The DHCPv4 decision (RFC 2131): one request message plus the lease pool, reservations and
//! the time in → one reply (or none) plus the lease change to persist. No I/O.
//!
//! Order of address choice: the MAC's reservation, then its existing lease, then the
//! requested address (option 50) when free, then the next free pool address. Relayed
//! requests (giaddr set, inside the LAN) are answered to the relay, per RFC 2131 §4.1.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder};
use ipnet::Ipv4Net;

use super::pool::{Lease, LeaseState, Pool};
use crate::plan::Reservation;

/// Settings the decision needs.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Server identifier (option 54), router and DNS server: the appliance's LAN address.
    pub server_id: Ipv4Addr,
    /// The LAN network.
    pub lan: Ipv4Net,
    /// Domain name (option 15).
    pub domain: String,
    /// Lease time, seconds.
    pub lease_secs: u32,
    /// How long an offer holds its address, seconds.
    pub offer_secs: u32,
    /// How long a declined address stays out of the pool, seconds.
    pub decline_hold_secs: u32,
}

/// App reservations by MAC and by address.
#[derive(Debug, Clone, Default)]
pub struct Reservations {
    by_mac: HashMap<String, (Ipv4Addr, String)>,
    by_ip: HashMap<Ipv4Addr, String>,
}

impl Reservations {
    /// From the plan's reservations.
    pub fn from_plan(list: &[Reservation]) -> Self {
        let mut r = Reservations::default();
        for x in list {
            let mac = x.mac.to_ascii_lowercase();
            r.by_mac.insert(mac.clone(), (x.ip, x.hostname.clone()));
            r.by_ip.insert(x.ip, mac);
        }
        r
    }

    /// The reservation of a MAC.
    pub fn for_mac(&self, mac: &str) -> Option<&(Ipv4Addr, String)> {
        self.by_mac.get(mac)
    }

    /// True when `ip` is reserved for a MAC other than `mac`.
    pub fn reserved_for_other(&self, ip: Ipv4Addr, mac: &str) -> bool {
        self.by_ip.get(&ip).is_some_and(|m| m != mac)
    }
}

/// Leases that end because the plan changed under them: the MAC had a reservation in `old`
/// and has none in `new` (the app was deleted), or it now reserves another address. An
/// app's address and name live and die with its registry record (DESIGN §2), so its lease
/// (and the DNS name the lease's host name would keep alive) goes with the reservation
/// instead of lingering until expiry. Removes them from `pool`; returns the changes to
/// persist. Leases of MACs that never had a reservation are untouched.
pub fn release_unreserved(old: &Reservations, new: &Reservations, pool: &mut Pool) -> Vec<Change> {
    let mut freed = Vec::new();
    for mac in old.by_mac.keys() {
        let Some(lease) = pool.by_mac(mac) else { continue };
        let still = new.for_mac(mac).is_some_and(|(ip, _)| *ip == lease.ip);
        if !still {
            let ip = lease.ip;
            pool.remove(ip);
            freed.push(Change::Free(ip));
        }
    }
    freed
}

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Unicast to the relay agent at `giaddr:67`.
    Relay(Ipv4Addr),
    /// Unicast to a configured client at `ciaddr:68`.
    Unicast(Ipv4Addr),
    /// Limited broadcast `255.255.255.255:68` on the LAN interface.
    Broadcast,
}

/// A lease change the caller must make durable (before sending an ACK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A lease was acknowledged.
    Bind(Lease),
    /// The lease on this address ended (RELEASE, DECLINE).
    Free(Ipv4Addr),
}

/// What happened, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// DHCPOFFER sent.
    Offer,
    /// DHCPACK for a lease.
    Ack,
    /// DHCPNAK.
    Nak,
    /// DHCPACK to an INFORM.
    InformAck,
    /// Lease released.
    Released,
    /// Address declined.
    Declined,
    /// New lease refused by the per-second limit.
    RateLimited,
    /// No reply, with the reason.
    Ignored(&'static str),
}

/// The decision.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Reply and destination, if any.
    pub reply: Option<(Message, Dest)>,
    /// Lease change to persist.
    pub change: Option<Change>,
    /// Classification.
    pub kind: Kind,
}

impl Outcome {
    fn ignore(why: &'static str) -> Self {
        Outcome {
            reply: None,
            change: None,
            kind: Kind::Ignored(why),
        }
    }
}

/// Decode a datagram; `None` for anything that is not a well-formed DHCP message.
///
/// dhcproto 0.15 has `debug_assert!`s and an unchecked `len - 1` reachable from wire input
/// (found by the `dhcp_policy` fuzz target: bulk-leasequery options with a bad length).
/// A malformed packet must never take the server down, so a panic inside the decoder is
/// contained here and the packet counts as malformed.
pub fn decode(bytes: &[u8]) -> Option<Message> {
    std::panic::catch_unwind(|| Message::decode(&mut Decoder::new(bytes)).ok())
        .ok()
        .flatten()
}

/// Lower-case colon hex of an Ethernet chaddr.
pub fn mac_string(chaddr: &[u8]) -> String {
    chaddr.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// A client-supplied host name turned into a valid lower-case label, or `None`.
pub fn sanitize_hostname(raw: &str) -> Option<String> {
    let first = raw.trim().trim_end_matches('.').split('.').next()?.to_ascii_lowercase();
    crate::validate::hostname(&first).ok().map(|_| first)
}

fn requested_ip(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    }
}

fn server_id(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

fn client_hostname(m: &Message) -> Option<String> {
    match m.opts().get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => sanitize_hostname(h),
        _ => None,
    }
}

/// Decide the reply to one request. Mutates only the in-memory pool; the caller persists
/// `change` and sends `reply`.
pub fn decide(req: &Message, pool: &mut Pool, res: &Reservations, cfg: &PolicyConfig, now: u64) -> Outcome {
    if req.opcode() != Opcode::BootRequest {
        return Outcome::ignore("not a BOOTREQUEST");
    }
    if req.hlen() != 6 || req.chaddr().len() != 6 {
        return Outcome::ignore("not an Ethernet client");
    }
    let giaddr = req.giaddr();
    if !giaddr.is_unspecified() && !cfg.lan.contains(&giaddr) {
        return Outcome::ignore("relay outside the LAN");
    }
    let Some(mtype) = req.opts().msg_type() else {
        return Outcome::ignore("no message type");
    };
    let mac = mac_string(req.chaddr());
    match mtype {
        MessageType::Discover => discover(req, &mac, pool, res, cfg, now),
        MessageType::Request => request(req, &mac, pool, res, cfg, now),
        MessageType::Decline => {
            if server_id(req).is_some_and(|s| s != cfg.server_id) {
                return Outcome::ignore("decline for another server");
            }
            let Some(ip) = requested_ip(req) else {
                return Outcome::ignore("decline without address");
            };
            let ours = pool.by_ip(ip).is_some_and(|l| l.mac == mac) || res.for_mac(&mac).is_some_and(|r| r.0 == ip);
            if !ours {
                return Outcome::ignore("decline of an address the client does not hold");
            }
            pool.decline(ip, now + u64::from(cfg.decline_hold_secs));
            Outcome {
                reply: None,
                change: Some(Change::Free(ip)),
                kind: Kind::Declined,
            }
        }
        MessageType::Release => {
            if server_id(req).is_some_and(|s| s != cfg.server_id) {
                return Outcome::ignore("release for another server");
            }
            let ip = req.ciaddr();
            if pool.by_ip(ip).is_some_and(|l| l.mac == mac) {
                pool.remove(ip);
                Outcome {
                    reply: None,
                    change: Some(Change::Free(ip)),
                    kind: Kind::Released,
                }
            } else {
                Outcome::ignore("release of an address the client does not hold")
            }
        }
        MessageType::Inform => {
            let ci = req.ciaddr();
            if ci.is_unspecified() && giaddr.is_unspecified() {
                return Outcome::ignore("inform without ciaddr");
            }
            let mut m = reply(req, MessageType::Inform, Ipv4Addr::UNSPECIFIED, cfg);
            // An INFORM ACK carries configuration but no lease parameters (RFC 2131 §3.4).
            m.opts_mut().insert(DhcpOption::MessageType(MessageType::Ack));
            add_config(&mut m, cfg, None);
            let dest = if !giaddr.is_unspecified() {
                Dest::Relay(giaddr)
            } else {
                Dest::Unicast(ci)
            };
            Outcome {
                reply: Some((m, dest)),
                change: None,
                kind: Kind::InformAck,
            }
        }
        _ => Outcome::ignore("not a client message"),
    }
}

fn discover(req: &Message, mac: &str, pool: &mut Pool, res: &Reservations, cfg: &PolicyConfig, now: u64) -> Outcome {
    let reserved = |ip: Ipv4Addr| res.reserved_for_other(ip, mac);
    let mut hostname = client_hostname(req);
    let ip = if let Some((ip, h)) = res.for_mac(mac) {
        hostname = Some(h.clone());
        *ip
    } else if let Some(l) = pool.by_mac(mac).filter(|l| pool.available_for(l.ip, mac, now, reserved)) {
        l.ip
    } else if let Some(r) = requested_ip(req).filter(|&r| pool.available_for(r, mac, now, reserved)) {
        if !pool.take_new_lease_budget(now) {
            return rate_limited();
        }
        r
    } else {
        if !pool.take_new_lease_budget(now) {
            return rate_limited();
        }
        match pool.find_free(mac, now, reserved) {
            Some(ip) => ip,
            None => return Outcome::ignore("pool exhausted"),
        }
    };
    // Keep a bound lease bound (a client may re-discover); otherwise hold the address.
    let keep_bound = pool
        .by_ip(ip)
        .is_some_and(|l| l.mac == mac && l.state == LeaseState::Bound && l.expires > now);
    if !keep_bound {
        pool.insert(Lease {
            mac: mac.to_string(),
            ip,
            hostname: hostname.clone(),
            expires: now + u64::from(cfg.offer_secs),
            state: LeaseState::Offered,
        });
    }
    let mut m = reply(req, MessageType::Offer, ip, cfg);
    add_config(&mut m, cfg, hostname.as_deref());
    add_lease_times(&mut m, cfg);
    Outcome {
        reply: Some((m, dest_for(req, false))),
        change: None,
        kind: Kind::Offer,
    }
}

fn rate_limited() -> Outcome {
    Outcome {
        reply: None,
        change: None,
        kind: Kind::RateLimited,
    }
}

fn request(req: &Message, mac: &str, pool: &mut Pool, res: &Reservations, cfg: &PolicyConfig, now: u64) -> Outcome {
    let sid = server_id(req);
    let init_reboot = sid.is_none() && requested_ip(req).is_some();
    let ip = match (sid, requested_ip(req)) {
        // SELECTING: the client chose a server.
        (Some(s), r) => {
            if s != cfg.server_id {
                if pool.by_mac(mac).is_some_and(|l| l.state == LeaseState::Offered) {
                    let ip = pool.by_mac(mac).map(|l| l.ip);
                    if let Some(ip) = ip {
                        pool.remove(ip);
                    }
                }
                return Outcome::ignore("client selected another server");
            }
            match r.or(Some(req.ciaddr()).filter(|c| !c.is_unspecified())) {
                Some(ip) => ip,
                None => return Outcome::ignore("request without address"),
            }
        }
        // INIT-REBOOT: a remembered address, no server id.
        (None, Some(r)) => r,
        // RENEWING (unicast) or REBINDING (broadcast): ciaddr is the lease.
        (None, None) => {
            let c = req.ciaddr();
            if c.is_unspecified() {
                return Outcome::ignore("request without address");
            }
            c
        }
    };
    let reserved = |x: Ipv4Addr| res.reserved_for_other(x, mac);
    // RFC 2131 §4.3.2, INIT-REBOOT: wrong network → NAK; no record of the client → stay
    // silent (another server may own it), unless the address is known to belong to someone
    // else, where a NAK saves the client from using a conflicting address.
    if init_reboot && cfg.lan.contains(&ip) && res.for_mac(mac).is_none() && pool.by_mac(mac).is_none() {
        if reserved(ip) || pool.by_ip(ip).is_some_and(|l| l.mac != mac) {
            return nak(req, cfg);
        }
        return Outcome::ignore("INIT-REBOOT from a client without a lease here");
    }
    let mut hostname = client_hostname(req).or_else(|| pool.by_mac(mac).and_then(|l| l.hostname.clone()));
    let allowed = if let Some((rip, h)) = res.for_mac(mac) {
        hostname = Some(h.clone());
        *rip == ip
    } else {
        cfg.lan.contains(&ip) && pool.available_for(ip, mac, now, reserved)
    };
    if !allowed {
        return nak(req, cfg);
    }
    let known = pool.by_ip(ip).is_some_and(|l| l.mac == mac) || res.for_mac(mac).is_some();
    if !known && !pool.take_new_lease_budget(now) {
        return rate_limited();
    }
    let lease = Lease {
        mac: mac.to_string(),
        ip,
        hostname: hostname.clone(),
        expires: now + u64::from(cfg.lease_secs),
        state: LeaseState::Bound,
    };
    pool.insert(lease.clone());
    let mut m = reply(req, MessageType::Ack, ip, cfg);
    m.set_ciaddr(req.ciaddr());
    add_config(&mut m, cfg, hostname.as_deref());
    add_lease_times(&mut m, cfg);
    Outcome {
        reply: Some((m, dest_for(req, false))),
        change: Some(Change::Bind(lease)),
        kind: Kind::Ack,
    }
}

fn nak(req: &Message, cfg: &PolicyConfig) -> Outcome {
    let mut m = reply(req, MessageType::Nak, Ipv4Addr::UNSPECIFIED, cfg);
    if !req.giaddr().is_unspecified() {
        m.set_flags(Flags::default().set_broadcast());
    }
    Outcome {
        reply: Some((m, dest_for(req, true))),
        change: None,
        kind: Kind::Nak,
    }
}

/// RFC 2131 §4.1 destination rules.
fn dest_for(req: &Message, is_nak: bool) -> Dest {
    let gi = req.giaddr();
    if !gi.is_unspecified() {
        Dest::Relay(gi)
    } else if is_nak || req.ciaddr().is_unspecified() {
        // Unicast to an unconfigured client would need an ARP entry we cannot add from a
        // UDP socket; broadcast is the permitted fallback.
        Dest::Broadcast
    } else {
        Dest::Unicast(req.ciaddr())
    }
}

fn reply(req: &Message, mtype: MessageType, yiaddr: Ipv4Addr, cfg: &PolicyConfig) -> Message {
    let mut m = Message::new_with_id(
        req.xid(),
        Ipv4Addr::UNSPECIFIED,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        req.giaddr(),
        req.chaddr(),
    );
    m.set_opcode(Opcode::BootReply);
    m.set_htype(req.htype());
    m.set_flags(req.flags());
    m.opts_mut().insert(DhcpOption::MessageType(mtype));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(cfg.server_id));
    m
}

fn add_config(m: &mut Message, cfg: &PolicyConfig, hostname: Option<&str>) {
    let o = m.opts_mut();
    o.insert(DhcpOption::SubnetMask(cfg.lan.netmask()));
    o.insert(DhcpOption::Router(vec![cfg.server_id]));
    o.insert(DhcpOption::DomainNameServer(vec![cfg.server_id]));
    o.insert(DhcpOption::DomainName(cfg.domain.clone()));
    if let Some(h) = hostname {
        o.insert(DhcpOption::Hostname(h.to_string()));
    }
}

fn add_lease_times(m: &mut Message, cfg: &PolicyConfig) {
    let o = m.opts_mut();
    o.insert(DhcpOption::AddressLeaseTime(cfg.lease_secs));
    o.insert(DhcpOption::Renewal(cfg.lease_secs / 2));
    o.insert(DhcpOption::Rebinding(cfg.lease_secs / 8 * 7));
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::Encodable;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC2: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const RES_MAC: [u8; 6] = [2, 0x50, 0x58, 0, 0, 0x65];

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 20, 0, n)
    }
    fn cfg() -> PolicyConfig {
        PolicyConfig {
            server_id: ip(1),
            lan: "10.20.0.1/24".parse().unwrap(),
            domain: "prox.local".into(),
            lease_secs: 3600,
            offer_secs: 60,
            decline_hold_secs: 600,
        }
    }
    fn res() -> Reservations {
        Reservations::from_plan(&[Reservation {
            mac: "02:50:58:00:00:65".into(),
            ip: ip(101),
            hostname: "nginx-01".into(),
        }])
    }
    fn msg(mac: &[u8], t: MessageType, ciaddr: Ipv4Addr) -> Message {
        let mut m = Message::new_with_id(7, ciaddr, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, mac);
        m.opts_mut().insert(DhcpOption::MessageType(t));
        m
    }
    fn opt_u32(m: &Message, code: OptionCode) -> Option<u32> {
        match m.opts().get(code)? {
            DhcpOption::AddressLeaseTime(v) | DhcpOption::Renewal(v) | DhcpOption::Rebinding(v) => Some(*v),
            _ => None,
        }
    }
    fn dora(pool: &mut Pool, mac: &[u8], now: u64) -> Ipv4Addr {
        let o = decide(&msg(mac, MessageType::Discover, Ipv4Addr::UNSPECIFIED), pool, &res(), &cfg(), now);
        let (offer, _) = o.reply.expect("offer");
        let mut r = msg(mac, MessageType::Request, Ipv4Addr::UNSPECIFIED);
        r.opts_mut().insert(DhcpOption::ServerIdentifier(ip(1)));
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
        let o = decide(&r, pool, &res(), &cfg(), now);
        assert_eq!(o.kind, Kind::Ack);
        assert!(matches!(o.change, Some(Change::Bind(_))));
        o.reply.unwrap().0.yiaddr()
    }
    fn pool() -> Pool {
        Pool::new(ip(100), ip(250), 0)
    }

    #[test]
    fn deleting_a_reservation_releases_its_lease_only() {
        let mut p = pool();
        let reserved = dora(&mut p, &RES_MAC, 100);
        assert_eq!(reserved, ip(101));
        let other = dora(&mut p, &MAC, 100);
        let old = res();
        // Same plan: nothing changes.
        assert!(release_unreserved(&old, &res(), &mut p).is_empty());
        // The app is gone: its lease goes, the dynamic client keeps its lease.
        let changes = release_unreserved(&old, &Reservations::default(), &mut p);
        assert!(matches!(changes.as_slice(), [Change::Free(a)] if *a == ip(101)), "{changes:?}");
        assert!(p.by_ip(ip(101)).is_none() && p.by_mac("02:50:58:00:00:65").is_none());
        assert_eq!(p.by_mac("02:00:00:00:00:01").map(|l| l.ip), Some(other));
        // A reservation that moves to another address ends the old lease too.
        assert_eq!(dora(&mut p, &RES_MAC, 200), ip(101));
        let moved = Reservations::from_plan(&[Reservation {
            mac: "02:50:58:00:00:65".into(),
            ip: ip(102),
            hostname: "nginx-01".into(),
        }]);
        assert_eq!(release_unreserved(&old, &moved, &mut p).len(), 1);
        assert!(p.by_ip(ip(101)).is_none());
    }

    #[test]
    fn discover_offers_pool_address_with_all_options() {
        let mut p = pool();
        let mut d = msg(&MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED);
        d.opts_mut().insert(DhcpOption::Hostname("My-Laptop.home".into()));
        let o = decide(&d, &mut p, &res(), &cfg(), 100);
        assert_eq!(o.kind, Kind::Offer);
        let (m, dest) = o.reply.unwrap();
        assert_eq!(dest, Dest::Broadcast);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(m.yiaddr(), ip(100));
        assert_eq!(m.xid(), 7);
        for code in [
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::Hostname,
            OptionCode::DomainName,
            OptionCode::AddressLeaseTime,
            OptionCode::ServerIdentifier,
            OptionCode::Renewal,
            OptionCode::Rebinding,
        ] {
            assert!(m.opts().get(code).is_some(), "missing {code:?}");
        }
        assert_eq!(m.opts().get(OptionCode::Hostname), Some(&DhcpOption::Hostname("my-laptop".into())));
        assert_eq!(opt_u32(&m, OptionCode::Renewal), Some(1800));
        assert_eq!(opt_u32(&m, OptionCode::Rebinding), Some(3150));
        // The offer holds the address: another client gets the next one.
        let o2 = decide(
            &msg(&MAC2, MessageType::Discover, Ipv4Addr::UNSPECIFIED),
            &mut p,
            &res(),
            &cfg(),
            100,
        );
        assert_eq!(o2.reply.unwrap().0.yiaddr(), ip(102));
    }

    #[test]
    fn reservation_comes_first_and_is_never_given_to_others() {
        let mut p = pool();
        assert_eq!(dora(&mut p, &RES_MAC, 10), ip(101));
        // Pool clients skip .101 even when it is free.
        let mut p = pool();
        let a = dora(&mut p, &MAC, 10);
        let b = dora(&mut p, &MAC2, 10);
        assert_eq!((a, b), (ip(100), ip(102)));
        // Requesting the reserved address is refused.
        let mut r = msg(&MAC, MessageType::Request, Ipv4Addr::UNSPECIFIED);
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(101)));
        assert_eq!(decide(&r, &mut p, &res(), &cfg(), 10).kind, Kind::Nak);
    }

    #[test]
    fn renew_rebind_and_init_reboot_keep_the_address() {
        let mut p = pool();
        let a = dora(&mut p, &MAC, 10);
        // RENEWING: ciaddr set, unicast reply.
        let o = decide(&msg(&MAC, MessageType::Request, a), &mut p, &res(), &cfg(), 2000);
        assert_eq!(o.kind, Kind::Ack);
        let (m, dest) = o.reply.unwrap();
        assert_eq!((m.yiaddr(), dest), (a, Dest::Unicast(a)));
        assert_eq!(m.ciaddr(), a);
        match o.change {
            Some(Change::Bind(l)) => assert_eq!(l.expires, 2000 + 3600),
            other => panic!("{other:?}"),
        }
        // INIT-REBOOT with the right address: ACK; with a foreign one: NAK (broadcast).
        let mut r = msg(&MAC, MessageType::Request, Ipv4Addr::UNSPECIFIED);
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(a));
        assert_eq!(decide(&r, &mut p, &res(), &cfg(), 2001).kind, Kind::Ack);
        let mut r = msg(&MAC, MessageType::Request, Ipv4Addr::UNSPECIFIED);
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(192, 168, 1, 5)));
        let o = decide(&r, &mut p, &res(), &cfg(), 2001);
        assert_eq!(o.kind, Kind::Nak);
        assert_eq!(o.reply.unwrap().1, Dest::Broadcast);
        // INIT-REBOOT from a client we have no record of: silent for a free address, NAK for
        // one leased to somebody else.
        let stranger = [0x02, 0, 0, 0, 0x77, 0x77];
        let mut r = msg(&stranger, MessageType::Request, Ipv4Addr::UNSPECIFIED);
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(180)));
        let o = decide(&r, &mut p, &res(), &cfg(), 2001);
        assert!(
            matches!(o.kind, Kind::Ignored(_)) && o.reply.is_none() && o.change.is_none(),
            "{:?}",
            o.kind
        );
        let mut r = msg(&stranger, MessageType::Request, Ipv4Addr::UNSPECIFIED);
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(a));
        assert_eq!(decide(&r, &mut p, &res(), &cfg(), 2001).kind, Kind::Nak);
        // Another client's address: NAK.
        let b = dora(&mut p, &MAC2, 10);
        assert_eq!(
            decide(&msg(&MAC, MessageType::Request, b), &mut p, &res(), &cfg(), 2002).kind,
            Kind::Nak
        );
    }

    #[test]
    fn selecting_another_server_drops_our_offer() {
        let mut p = pool();
        decide(&msg(&MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED), &mut p, &res(), &cfg(), 1);
        assert_eq!(p.len(), 1);
        let mut r = msg(&MAC, MessageType::Request, Ipv4Addr::UNSPECIFIED);
        r.opts_mut().insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 20, 0, 9)));
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(100)));
        let o = decide(&r, &mut p, &res(), &cfg(), 1);
        assert!(o.reply.is_none());
        assert!(p.is_empty());
    }

    #[test]
    fn release_frees_and_decline_holds_back() {
        let mut p = pool();
        let a = dora(&mut p, &MAC, 10);
        // Release by another MAC is ignored.
        assert!(
            decide(&msg(&MAC2, MessageType::Release, a), &mut p, &res(), &cfg(), 11)
                .change
                .is_none()
        );
        let o = decide(&msg(&MAC, MessageType::Release, a), &mut p, &res(), &cfg(), 11);
        assert_eq!((o.kind, o.change), (Kind::Released, Some(Change::Free(a))));
        assert!(p.by_ip(a).is_none());
        // Decline: the address stays out of the pool for the hold time.
        let a = dora(&mut p, &MAC, 20);
        let mut d = msg(&MAC, MessageType::Decline, Ipv4Addr::UNSPECIFIED);
        d.opts_mut().insert(DhcpOption::RequestedIpAddress(a));
        d.opts_mut().insert(DhcpOption::ServerIdentifier(ip(1)));
        assert_eq!(decide(&d, &mut p, &res(), &cfg(), 21).kind, Kind::Declined);
        let b = dora(&mut p, &MAC, 22);
        assert_ne!(a, b);
        assert!(p.is_declined(a, 22) && !p.is_declined(a, 21 + 600));
    }

    #[test]
    fn relayed_requests_go_back_to_the_relay() {
        let mut p = pool();
        let mut d = msg(&MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED);
        d.set_giaddr(ip(2));
        let (m, dest) = decide(&d, &mut p, &res(), &cfg(), 1).reply.unwrap();
        assert_eq!(dest, Dest::Relay(ip(2)));
        assert_eq!(m.giaddr(), ip(2));
        // A relay from a foreign network is not served.
        d.set_giaddr(Ipv4Addr::new(192, 168, 9, 1));
        assert!(decide(&d, &mut p, &res(), &cfg(), 1).reply.is_none());
    }

    #[test]
    fn inform_gets_config_without_lease() {
        let mut p = pool();
        let o = decide(&msg(&MAC, MessageType::Inform, ip(77)), &mut p, &res(), &cfg(), 1);
        let (m, dest) = o.reply.unwrap();
        assert_eq!(dest, Dest::Unicast(ip(77)));
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
        assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
        assert!(m.opts().get(OptionCode::DomainNameServer).is_some());
        assert!(p.is_empty());
    }

    #[test]
    fn rate_limit_and_exhaustion_give_no_reply() {
        let mut p = Pool::new(ip(100), ip(101), 1);
        assert_eq!(
            decide(&msg(&MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED), &mut p, &res(), &cfg(), 5).kind,
            Kind::Offer
        );
        assert_eq!(
            decide(&msg(&MAC2, MessageType::Discover, Ipv4Addr::UNSPECIFIED), &mut p, &res(), &cfg(), 5).kind,
            Kind::RateLimited
        );
        // The known client is not limited.
        assert_eq!(
            decide(&msg(&MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED), &mut p, &res(), &cfg(), 5).kind,
            Kind::Offer
        );
        let mut p = Pool::new(ip(100), ip(100), 0);
        dora(&mut p, &MAC, 5);
        assert_eq!(
            decide(&msg(&MAC2, MessageType::Discover, Ipv4Addr::UNSPECIFIED), &mut p, &res(), &cfg(), 5).kind,
            Kind::Ignored("pool exhausted")
        );
    }

    #[test]
    fn decoder_panics_are_contained() {
        use base64::Engine;
        // Found by the dhcp_policy fuzz target: trips a debug assertion inside dhcproto.
        let crash = base64::engine::general_purpose::STANDARD
            .decode("AQEGAAAAEjQAAIAAAAAAAAAAAAAAAAAAgAAAO4AAAAAK//9+/yLe60wAAAAAFAAAANXV1dXV1dUAAAAAAAAAAAAAAC8AAAAAAAAA1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1QAAAAAA1dXV1dXV1dXV1dXV1dXV1dXV1dXV1QsLCwvV1dXV1QAAAAAAAAAAChQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACAAAAAAAAAAAAAJgIAAAhAAAuAAAA")
            .unwrap();
        let raw = std::panic::catch_unwind(|| Message::decode(&mut Decoder::new(&crash)).is_ok());
        if cfg!(debug_assertions) {
            assert!(raw.is_err(), "dhcproto no longer panics here; the guard may be dropped");
        }
        assert!(decode(&crash).is_none());
    }

    #[test]
    fn garbage_and_replies_are_ignored() {
        assert!(decode(&[1, 2, 3]).is_none());
        let mut m = msg(&MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED);
        m.set_opcode(Opcode::BootReply);
        let bytes = m.to_vec().unwrap();
        let back = decode(&bytes).unwrap();
        assert!(decide(&back, &mut pool(), &res(), &cfg(), 1).reply.is_none());
        let mut m = msg(&MAC, MessageType::Offer, Ipv4Addr::UNSPECIFIED);
        m.set_opcode(Opcode::BootRequest);
        assert!(decide(&m, &mut pool(), &res(), &cfg(), 1).reply.is_none());
    }
}
