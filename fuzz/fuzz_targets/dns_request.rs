//! DNS: request bytes → decision → response bytes, for a LAN, a loopback and a WAN client;
//! every response we produce must parse again, and whatever the wire fast path answers the
//! full path must answer with the same records. Must never panic.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use proximity::dns::wire;
use proximity::dns::zone::{Zone, ZoneSettings};
use proximity::plan::{DnsRecord, NetworkPlan, Reservation};

fn zone() -> &'static Zone {
    static Z: OnceLock<Zone> = OnceLock::new();
    Z.get_or_init(|| {
        let mut plan = NetworkPlan::empty(&proximity::config::Config::default().network);
        plan.records = vec![DnsRecord {
            name: "nginx-01.prox.local".into(),
            ip: Ipv4Addr::new(10, 20, 0, 101),
            proxied: true,
            app_id: "a".into(),
        }];
        plan.reservations = vec![Reservation {
            mac: "02:50:58:00:00:65".into(),
            ip: Ipv4Addr::new(10, 20, 0, 101),
            hostname: "nginx-01".into(),
        }];
        Zone::build(
            &plan,
            &[],
            ZoneSettings {
                ttl: 60,
                wan_address: Some(Ipv4Addr::new(192, 168, 1, 5)),
            },
            1,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let lan = "10.20.0.1/24".parse().unwrap();
    for client in [
        IpAddr::V4(Ipv4Addr::new(10, 20, 0, 150)),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::new(192, 168, 1, 9)),
    ] {
        let full = proximity::dns::handle_bytes(zone(), lan, data, client);
        if let Some(resp) = &full {
            assert!(Message::from_vec(resp).is_ok(), "our response does not parse");
        }
        let mut out = [0u8; wire::MAX_FAST_RESPONSE];
        if let Some(n) = wire::answer_local_a(zone(), data, client, true, &mut out) {
            let fast = Message::from_vec(&out[..n]).expect("the fast-path response does not parse");
            // The full path may refuse what hickory cannot decode (e.g. odd EDNS option
            // contents); when it answers, the records must be the same.
            if let Some(full) = full.as_deref().and_then(|f| Message::from_vec(f).ok()) {
                assert_eq!(fast.answers, full.answers, "fast and full path disagree");
            }
        }
        if let Some(e) = wire::error_response(data, wire::RCODE_REFUSED, false) {
            assert!(Message::from_vec(&e).is_ok(), "the error response does not parse");
        }
    }
});
