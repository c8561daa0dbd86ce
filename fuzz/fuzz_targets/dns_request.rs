//! DNS: request bytes → decision → response bytes, for a LAN, a loopback and a WAN client;
//! every response we produce must parse again. Must never panic.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
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
        if let Some(resp) = proximity::dns::handle_bytes(zone(), lan, data, client) {
            assert!(hickory_proto::op::Message::from_vec(&resp).is_ok(), "our response does not parse");
        }
    }
});
