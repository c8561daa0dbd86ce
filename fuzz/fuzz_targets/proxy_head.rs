//! Proxy: a raw HTTP/1 request head → the framing/size checks → host extraction exactly as
//! the proxy does it (URI authority, else `Host`) → normalisation → route lookup → the
//! redirect `Location` and the 404 page; and the fast path's HTTP/1.1 codec over the same
//! bytes (`proxy::h1`: request verdict and upstream head, the input read as an upstream
//! response, the chunk scanner in one piece and split). Must never panic; invariants are
//! asserted.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use proximity::plan::{NetworkPlan, ProxyRoute};
use proximity::proxy::h1;
use proximity::proxy::policy::{self, HeaderLimits};
use proximity::proxy::routes::{ManagementUpstream, RouteTable, normalize_host};

fn table() -> &'static RouteTable {
    static T: OnceLock<RouteTable> = OnceLock::new();
    T.get_or_init(|| {
        let mut plan = NetworkPlan::empty(&proximity::config::Config::default().network);
        plan.routes = vec![
            ProxyRoute {
                host: "nginx-01.prox.local".into(),
                upstream: "10.20.0.101:80".parse().unwrap(),
                app_id: "a".into(),
                app_name: "nginx-01".into(),
                https_redirect: true,
            },
            ProxyRoute {
                host: "wiki.prox.local".into(),
                upstream: "10.20.0.102:8080".parse().unwrap(),
                app_id: "b".into(),
                app_name: "wiki".into(),
                https_redirect: false,
            },
        ];
        let m = ManagementUpstream::from_api(&["127.0.0.1:8443".parse().unwrap()], true);
        RouteTable::from_plan(&plan, m.as_ref())
    })
}

/// The fast path's codec: whatever it forwards re-parses as the same request without
/// hop-by-hop headers; response heads it writes re-parse with the same status; the chunk
/// scanner's verdict does not depend on how the bytes are split.
fn fast_path(data: &[u8]) {
    let fwd = h1::Forwarding {
        client_ip: "10.20.0.9",
        proto: "https",
    };
    let mut out = Vec::new();
    if let h1::Parse::Request(info) = h1::read_request(data, &HeaderLimits::default(), fwd, &mut out) {
        assert!(info.head_len <= data.len());
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = req.parse(&out) else {
            panic!("upstream head does not parse: {:?}", String::from_utf8_lossy(&out));
        };
        assert_eq!(n, out.len());
        let (m, p) = info.method_and_path(&out);
        assert_eq!((req.method, req.path), (Some(m), Some(p)));
        for h in req.headers.iter() {
            for hop in ["connection", "keep-alive", "transfer-encoding", "upgrade", "te"] {
                assert!(!h.name.eq_ignore_ascii_case(hop), "{hop} forwarded");
            }
        }
        assert_eq!(normalize_host(&info.host).as_deref(), Some(info.host.as_str()));
    }
    for (head_method, keep_alive) in [(false, true), (true, false)] {
        if let h1::ResponseParse::Final(info) = h1::read_response(data, head_method, keep_alive, &mut out) {
            assert!(info.head_len <= data.len());
            let mut headers = [httparse::EMPTY_HEADER; 256];
            let mut resp = httparse::Response::new(&mut headers);
            let Ok(httparse::Status::Complete(_)) = resp.parse(&out) else {
                panic!("client head does not parse: {:?}", String::from_utf8_lossy(&out));
            };
            assert_eq!(resp.code, Some(info.status));
            assert!(!(info.framing == h1::Framing::UntilClose && info.keep_alive));
        }
    }
    let whole = h1::ChunkScanner::default().feed(data);
    let split = data.len() / 3;
    let mut s = h1::ChunkScanner::default();
    let pieces = s.feed(&data[..split]).and_then(|(a, done)| {
        if done { Ok((a, true)) } else { s.feed(&data[split..]).map(|(b, done)| (a + b, done)) }
    });
    match (whole, pieces) {
        (Ok(w), Ok(p)) => assert_eq!(w, p, "split changes the verdict"),
        (Err(_), Err(_)) => {}
        (w, p) => panic!("split changes the verdict: {w:?} vs {p:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    fast_path(data);
    let _ = policy::check_raw_head(data, &HeaderLimits::default());
    let small = HeaderLimits {
        max_header_bytes: 256,
        max_headers: 4,
    };
    if policy::check_raw_head(data, &small).is_ok() {
        assert!(data.len() <= 256);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(data) else {
        return;
    };
    let Some(target) = req.path else { return };
    let Ok(uri) = target.parse::<http::Uri>() else { return };
    let raw_host = match uri.authority() {
        Some(a) => a.as_str().to_string(),
        None => match req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("host")) {
            Some(h) => match std::str::from_utf8(h.value) {
                Ok(s) => s.to_string(),
                Err(_) => return,
            },
            None => return,
        },
    };
    let Some(host) = normalize_host(&raw_host) else { return };
    assert!(!host.is_empty());
    assert_eq!(host, host.to_ascii_lowercase());
    assert!(!host.bytes().any(|b| b.is_ascii_whitespace() || b == b'/' || b == b'@'));
    assert_eq!(normalize_host(&host).as_deref(), Some(host.as_str()), "normalisation is not stable");
    let page = policy::not_found_page(&host);
    // The host shows inside `<code>` escaped, never as markup.
    assert!(page.contains(&format!("<code>{}</code>", policy::html_escape(&host))));
    if host.contains(['<', '>', '&', '"']) {
        assert!(!page.contains(&format!("<code>{host}</code>")), "host reflected unescaped");
    }
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if let Some(route) = table().lookup(&host) {
        assert_eq!(route.host, host);
        for port in [443u16, 8443] {
            let loc = policy::https_location(&host, pq, port);
            assert!(loc.starts_with("https://"));
            assert!(http::HeaderValue::from_str(&loc).is_ok(), "Location is not a valid header: {loc:?}");
        }
    }
});
