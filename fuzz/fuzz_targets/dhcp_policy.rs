//! DHCP: bytes → decode → policy decision (twice, so the second decision sees the state the
//! first left behind) → the reply re-encodes and decodes. Must never panic.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use proximity::dhcp::policy::{self, PolicyConfig, Reservations};
use proximity::dhcp::pool::Pool;
use proximity::plan::Reservation;

/// libfuzzer-sys aborts on every panic, before `catch_unwind` can act. `policy::decode`
/// deliberately contains panics raised inside dhcproto (known debug assertions reachable
/// from wire input), so let those unwind to it; any other panic still aborts (= a finding).
fn tolerate_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.location().is_some_and(|l| l.file().contains("dhcproto")) {
                return;
            }
            fuzzer_hook(info);
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    tolerate_decoder_panics();
    let Some(msg) = policy::decode(data) else { return };
    let cfg = PolicyConfig {
        server_id: Ipv4Addr::new(10, 20, 0, 1),
        lan: "10.20.0.1/24".parse().unwrap(),
        domain: "prox.local".into(),
        lease_secs: 3600,
        offer_secs: 60,
        decline_hold_secs: 600,
    };
    let res = Reservations::from_plan(&[Reservation {
        mac: "02:50:58:00:00:65".into(),
        ip: Ipv4Addr::new(10, 20, 0, 101),
        hostname: "nginx-01".into(),
    }]);
    let mut pool = Pool::new(Ipv4Addr::new(10, 20, 0, 100), Ipv4Addr::new(10, 20, 0, 110), 3);
    for now in [1_000u64, 1_001] {
        let out = policy::decide(&msg, &mut pool, &res, &cfg, now);
        if let Some((reply, _)) = out.reply {
            use dhcproto::Encodable;
            let bytes = reply.to_vec().expect("our replies encode");
            assert!(policy::decode(&bytes).is_some(), "our reply does not decode");
        }
    }
});
