//! Reverse proxy end to end with the real binary: apps are seeded as registry records in the
//! redb file before start (the daemon holds the file locked while running), backends are
//! small HTTP servers on loopback, clients are curl and raw sockets.

mod common;
mod proxy_support;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Proc;
use proxy_support::*;

fn start_daemon(cfg: &std::path::Path) -> Proc {
    let mut cmd = Command::new(common::bin());
    cmd.arg("serve").arg("--config").arg(cfg);
    let mut p = Proc::spawn(cmd);
    p.wait_ready();
    p
}

#[test]
fn http_https_h2_websocket_health_and_smuggling() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut alpha = rt.block_on(Backend::start("alpha", "127.0.0.1:0".parse().unwrap()));
    let beta_be = rt.block_on(Backend::start("beta", "127.0.0.1:0".parse().unwrap()));
    let p = Ports::new();
    let cfg = write_config_and_seed(
        dir.path(),
        p,
        1,
        &[
            app("app-aaaaaaaaaaaa", "alpha", alpha.addr, &["www"], true),
            app("app-bbbbbbbbbbbb", "beta", beta_be.addr, &[], false),
        ],
    );
    let mut d = start_daemon(&cfg);
    let ca_path = dir.path().join("data").join("ca.pem");
    let ca_pem = std::fs::read_to_string(&ca_path).expect("daemon writes <data_dir>/ca.pem");
    let ca = ca_path.to_str().unwrap();
    let (h, s) = (p.http, p.https);

    // Plain HTTP: alpha redirects to HTTPS, beta (redirect off) is proxied.
    let r = curl(&format!("http://alpha.prox.local:{h}/x?y=1"), "alpha.prox.local", h, &[]);
    assert_eq!(r.code, 308, "{r:?}");
    assert_eq!(r.location, format!("https://alpha.prox.local:{s}/x?y=1"));
    let r = curl(&format!("http://beta.prox.local:{h}/"), "beta.prox.local", h, &[]);
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.body.starts_with("backend-beta "), "{r:?}");
    assert!(
        r.body.contains("xff=127.0.0.1") && r.body.contains("proto=http ") && r.body.contains("xhost=beta.prox.local"),
        "{r:?}"
    );

    // HTTPS with the appliance CA, both backends by name, alias too.
    for (host, want) in [
        ("alpha.prox.local", "backend-alpha"),
        ("www.prox.local", "backend-alpha"),
        ("beta.prox.local", "backend-beta"),
    ] {
        let r = curl(&format!("https://{host}:{s}/"), host, s, &["--cacert", ca, "--http1.1"]);
        assert_eq!(r.code, 200, "{host}: {r:?}");
        assert!(r.body.starts_with(want), "{host}: {r:?}");
        assert!(r.body.contains("proto=https"), "{r:?}");
        assert_eq!(r.version, "1.1");
    }
    // Without the CA the certificate is not trusted (proves it comes from our CA).
    let r = curl(&format!("https://alpha.prox.local:{s}/"), "alpha.prox.local", s, &[]);
    assert!(!r.ok && r.code == 0, "untrusted cert must fail: {r:?}");

    // HTTP/2 over TLS via ALPN.
    let r = curl(
        &format!("https://beta.prox.local:{s}/"),
        "beta.prox.local",
        s,
        &["--cacert", ca, "--http2"],
    );
    assert_eq!((r.code, r.version.as_str()), (200, "2"), "{r:?}");
    assert!(
        r.body.contains("host=beta.prox.local"),
        "upstream gets a Host header from :authority: {r:?}"
    );

    // Management name goes to the API.
    let r = curl(
        &format!("https://proximity.prox.local:{s}/api/v1/system/health"),
        "proximity.prox.local",
        s,
        &["--cacert", ca],
    );
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.body.contains("\"services\""), "{r:?}");

    // Unknown host: branded 404.
    let r = curl(&format!("https://nope.prox.local:{s}/"), "nope.prox.local", s, &["--cacert", ca]);
    assert_eq!(r.code, 404, "{r:?}");
    assert!(r.body.contains("PROXIMITY") && r.body.contains("nope.prox.local"), "{r:?}");

    // Websocket echo over TLS.
    let echoed = rt.block_on(wss_echo(s, "alpha.prox.local", &ca_pem, "hello-ws"));
    assert_eq!(echoed, "echo:hello-ws");

    // Smuggling shapes and oversized heads are refused with 400/431.
    let (c, t) = raw_status(
        h,
        b"POST / HTTP/1.1\r\nHost: beta.prox.local\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
    );
    assert_eq!(c, 400, "duplicate CL: {t}");
    let (c, t) = raw_status(
        h,
        b"POST / HTTP/1.1\r\nHost: beta.prox.local\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(c, 400, "CL+TE: {t}");
    let (c, t) = raw_status(
        h,
        b"POST / HTTP/1.1\r\nHost: beta.prox.local\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
    );
    assert_eq!(c, 400, "conflicting CL: {t}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: beta.prox.local\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let (c, t) = raw_status(h, big.as_bytes());
    assert_eq!(c, 431, "oversized head: {t}");
    // Body limit (max_body_bytes = 1024).
    let body = "x".repeat(2000);
    let r = curl(
        &format!("http://beta.prox.local:{h}/"),
        "beta.prox.local",
        h,
        &["--data-binary", &body],
    );
    assert_eq!(r.code, 413, "{r:?}");

    // Upstream killed → 502 naming the app within the health interval (1 s); back → 200.
    let alpha_addr = alpha.addr;
    rt.block_on(alpha.stop());
    let t0 = Instant::now();
    let r = curl(&format!("https://alpha.prox.local:{s}/"), "alpha.prox.local", s, &["--cacert", ca]);
    assert_eq!(r.code, 502, "{r:?}");
    assert!(r.body.contains("alpha"), "502 page names the app: {r:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "502 took {:?}", t0.elapsed());
    // The active check notices too (logged transition).
    d.wait_for(|l| l.contains("upstream down"), Duration::from_secs(5));
    let _alpha2 = rt.block_on(Backend::start("alpha", alpha_addr));
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = None;
    while Instant::now() < deadline {
        let r = curl(&format!("https://alpha.prox.local:{s}/"), "alpha.prox.local", s, &["--cacert", ca]);
        if r.code == 200 {
            last = None;
            break;
        }
        last = Some(r);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(last.is_none(), "upstream back must give 200 again: {last:?}");
    d.wait_for(|l| l.contains("upstream up"), Duration::from_secs(5));

    // Access log lines and metrics.
    // Strip ANSI colour codes so the checks see plain `key=value` pairs.
    let lines: Vec<String> = d
        .drain()
        .iter()
        .map(|l| {
            let mut out = String::new();
            let mut esc = false;
            for c in l.chars() {
                match (esc, c) {
                    (false, '\x1b') => esc = true,
                    (true, 'm') => esc = false,
                    (true, _) => {}
                    (false, c) => out.push(c),
                }
            }
            out
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("proximity::proxy::access") && l.contains("status=200") && l.contains("latency_ms")),
        "access log missing: {}",
        lines
            .iter()
            .filter(|l| l.contains("request"))
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (c, m) = http_get(p.api, "127.0.0.1", "/metrics").unwrap();
    assert_eq!(c, 200);
    assert!(m.contains("proximity_proxy_requests_total{app=\"beta\",code=\"200\"}"), "{m}");
    assert!(m.contains("proximity_proxy_request_duration_seconds"), "{m}");

    // Upstream slower than proxy.upstream_timeout_secs (5 s) → 504 page naming the app.
    let t0 = Instant::now();
    let r = curl(&format!("http://beta.prox.local:{h}/slow"), "beta.prox.local", h, &[]);
    assert_eq!(r.code, 504, "{r:?}");
    assert!(r.body.contains("beta"), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(9), "timeout took {:?}", t0.elapsed());

    // Clean stop.
    d.signal("TERM");
    let st = d.wait_exit(Duration::from_secs(15)).expect("daemon stops on SIGTERM");
    assert!(st.success(), "exit status {st}: {}", d.seen.join("\n"));
}

#[test]
fn port_in_use_names_the_proxy_and_port() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut p = Ports::new();
    p.https = held.local_addr().unwrap().port();
    let cfg = write_config_and_seed(dir.path(), p, 5, &[]);
    let out = Command::new(common::bin()).arg("serve").arg("--config").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("proxy:") && err.contains(&format!("port {}", p.https)) && err.contains("in use"),
        "{err}"
    );
}
