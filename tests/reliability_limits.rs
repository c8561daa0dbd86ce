//! Abuse limits and injected faults against the real daemon (`proximity serve` wired to the
//! in-process simulator): login throttling (429), API body limit (413), proxy body limit
//! (413), DNS per-client rate limit (REFUSED beyond the budget), bounded job queue (503);
//! and simulator faults (5xx, 595 node offline, 596 timeout, a task failing mid-way, a node
//! going offline during a deploy and during a backup, SSH dropped during `pct exec`), each
//! ending in a clear app/job state while the daemon stays healthy. The in-process router
//! tests (api_router.rs) and the proxy test (proxy_e2e.rs) cover these limits in depth; this
//! file proves them on one real daemon and records outcomes to
//! `target/reliability/limits.jsonl`.

mod rel_support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use proximity::sim::{Faults, Http5xx, TaskFault};
use rel_support::*;
use reqwest::Method as M;
use serde_json::{Value, json};

const FILE: &str = "limits.jsonl";

fn limit(name: &str, held: bool, detail: String) {
    record(FILE, json!({"kind": "limit", "name": name, "held": held, "detail": detail}));
    assert!(held, "{name}: {detail}");
}

/// A DNS query for `name` type A with id `id`.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

async fn health(api: &Api) -> bool {
    api.call(M::GET, "/system/health", None).await.0 == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_on_the_real_daemon() {
    let knobs = Knobs {
        dns_rate: 20,
        api_max_body: 64 * 1024,
        proxy_max_body: 4096,
        max_queued: 2,
        workers: 1,
    };
    let env = Env::new(1, 20, &knobs).await;
    let _daemon = env.start();
    let mut api = env.api();
    api.setup().await;
    // Plain HTTP is proxied (no redirect to HTTPS) for the app used by the proxy limit.
    let mut doc = api.get("/settings/network").await;
    doc["settings"]["https_redirect"] = json!(false);
    let (s, v) = api.call(M::PUT, "/settings/network", Some(doc)).await;
    assert_eq!(s, 200, "{v}");
    let (_, job) = api.deploy("whoami", "who").await;
    assert_eq!(api.wait_job(&job, 40).await["state"], "succeeded");

    // Login throttling: repeated wrong passwords → 429 with Retry-After, even for the right one.
    let anon = env.api();
    let mut codes = Vec::new();
    for _ in 0..7 {
        let (s, _) = anon
            .call(
                M::POST,
                "/auth/login",
                Some(json!({"username": "admin", "password": "wrong-password"})),
            )
            .await;
        codes.push(s);
    }
    let (right, _) = anon
        .call(M::POST, "/auth/login", Some(json!({"username": "admin", "password": ADMIN.1})))
        .await;
    limit(
        "login throttling",
        codes.contains(&429) && right == 429,
        format!("7 wrong passwords answered {codes:?}; then the right one {right}"),
    );

    // API body limit.
    let big = "x".repeat(200 * 1024);
    let (s, _) = api
        .call(
            M::POST,
            "/apps",
            Some(json!({"catalog_id": "whoami", "hostname": "big", "values": {"X": big}})),
        )
        .await;
    limit(
        "API request size (api.max_body_bytes = 64 KiB)",
        s == 413,
        format!("200 KiB body → {s}"),
    );

    // Proxy body limit (declared length over proxy.max_body_bytes): raw TCP, because the
    // proxy answers 413 and closes before a client could send the body.
    let s = {
        use std::io::{Read as _, Write as _};
        let mut t = std::net::TcpStream::connect(("127.0.0.1", env.ports.http)).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        t.write_all(b"POST /upload HTTP/1.1\r\nHost: who.prox.local\r\nContent-Length: 65536\r\n\r\n")
            .unwrap();
        let _ = t.write_all(&[b'a'; 1024]);
        let mut buf = [0u8; 64];
        let n = t.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n])
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(0)
    };
    limit(
        "proxy request size (proxy.max_body_bytes = 4 KiB)",
        s == 413,
        format!("64 KiB body → {s}"),
    );

    // DNS per-client rate limit: 200 queries at once from one address, budget 20/s.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    for i in 0..200u16 {
        let _ = sock.send_to(&dns_query(i, "who.prox.local"), ("127.0.0.1", env.ports.dns));
    }
    let (mut ok, mut refused) = (0, 0);
    let mut buf = [0u8; 1500];
    while let Ok(n) = sock.recv(&mut buf) {
        if n >= 4 {
            match buf[3] & 0x0f {
                5 => refused += 1,
                _ => ok += 1,
            }
        }
    }
    limit(
        "DNS per-client rate limit (20/s)",
        ok <= 45 && refused >= 100,
        format!("200 queries: {ok} answered, {refused} refused"),
    );
    // Another client is not affected (::1 would need IPv6; a later second suffices).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _ = sock.send_to(&dns_query(999, "who.prox.local"), ("127.0.0.1", env.ports.dns));
    let n = sock.recv(&mut buf).unwrap_or(0);
    limit(
        "DNS rate limit recovers",
        n > 4 && buf[3] & 0x0f == 0,
        format!(
            "after 1 s the client is answered (rcode {})",
            if n > 4 { buf[3] & 0x0f } else { 255 }
        ),
    );

    // Bounded job queue: 1 worker, 2 waiting; slow tasks hold the worker.
    env.sim.set_faults(Faults {
        slow_task_ms: Some(3000),
        ..Default::default()
    });
    let mut statuses = Vec::new();
    for i in 0..6 {
        let (s, v) = api
            .call(M::POST, "/apps", Some(json!({"catalog_id": "whoami", "hostname": format!("q{i}")})))
            .await;
        statuses.push(s);
        if s == 503 {
            assert!(v["detail"].as_str().unwrap_or("").contains("queue"), "{v}");
        }
    }
    limit(
        "bounded job queue (1 worker, max_queued 2)",
        statuses.contains(&503) && statuses.iter().filter(|s| **s == 202).count() <= 3,
        format!("6 deploys at once → {statuses:?}"),
    );
    env.sim.set_faults(Faults::default());
    limit(
        "daemon healthy after the limits",
        health(&api).await,
        "GET /system/health → 200".into(),
    );
}

/// A fault case: inject, deploy (or back up), check the job and app end clearly.
struct Case {
    name: &'static str,
    faults: Faults,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_end_in_clear_states_and_the_daemon_stays_healthy() {
    let env = Env::new(2, 20, &Knobs::default()).await;
    let _daemon = env.start();
    let mut api = env.api();
    api.setup().await;
    let t = |kind: &str, msg: &str, after: Option<u64>| Faults {
        fail_tasks: vec![TaskFault {
            kind: kind.into(),
            message: msg.into(),
            after_ms: after,
            times: Some(1),
            ..Default::default()
        }],
        ..Default::default()
    };
    let cases = [
        Case {
            name: "PVE 500 on every node call",
            faults: Faults {
                http_5xx: Some(Http5xx {
                    path_prefix: "/api2/json/nodes".into(),
                    status: 500,
                    count: 10_000,
                }),
                ..Default::default()
            },
        },
        Case {
            name: "595 every node offline",
            faults: Faults {
                offline_nodes: vec!["pve1".into(), "pve2".into()],
                ..Default::default()
            },
        },
        Case {
            name: "596 every node times out",
            faults: Faults {
                timeout_nodes: vec!["pve1".into(), "pve2".into()],
                ..Default::default()
            },
        },
        Case {
            name: "task fails mid-way (vzstart after 300 ms)",
            faults: t("vzstart", "startup for container failed", Some(300)),
        },
        Case {
            name: "SSH dropped during pct exec",
            faults: Faults {
                ssh_drop_after_ms: Some(50),
                ..Default::default()
            },
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        env.sim.set_faults(c.faults.clone());
        let host = format!("f{i}");
        let (s, v) = api
            .call(M::POST, "/apps", Some(json!({"catalog_id": "whoami", "hostname": host})))
            .await;
        let (job_state, app_status, error) = if s == 202 {
            let app = v["id"].as_str().unwrap().to_string();
            let a = api.get(&format!("/apps/{app}")).await;
            let j = api.wait_job(a["job_id"].as_str().unwrap(), 60).await;
            let a = api.get(&format!("/apps/{app}")).await;
            (
                j["state"].as_str().unwrap_or("").to_string(),
                a["status"].as_str().unwrap_or("").to_string(),
                a["error"].as_str().or(j["error"].as_str()).unwrap_or("").to_string(),
            )
        } else {
            (
                "refused".to_string(),
                format!("http {s}"),
                v["detail"].as_str().unwrap_or("").to_string(),
            )
        };
        env.sim.set_faults(Faults::default());
        let healthy = health(&api).await;
        let clear = match job_state.as_str() {
            "failed" => app_status == "error" && !error.is_empty(),
            "succeeded" => app_status == "running",
            "refused" => s >= 400 && !error.is_empty(),
            _ => false,
        };
        record(
            FILE,
            json!({"kind": "fault", "name": c.name, "job": job_state, "app": app_status,
                   "error": error.chars().take(160).collect::<String>(), "healthy": healthy, "clear": clear}),
        );
        assert!(clear, "{}: job {job_state}, app {app_status}, error {error:?}", c.name);
        assert!(healthy, "{}: daemon unhealthy", c.name);
    }

    // Node offline during a deploy: the node drops while the deploy runs (slow tasks hold it).
    env.sim.set_faults(Faults {
        slow_task_ms: Some(1500),
        ..Default::default()
    });
    let (app, job) = api.deploy("whoami", "mid-off").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut node = None;
    while Instant::now() < deadline && node.is_none() {
        let a = api.get(&format!("/apps/{app}")).await;
        node = a["node"].as_str().map(str::to_string);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let node = node.expect("deploy placed the app");
    env.sim.set_faults(Faults {
        offline_nodes: vec![node.clone()],
        ..Default::default()
    });
    let j = api.wait_job(&job, 60).await;
    let a = api.get(&format!("/apps/{app}")).await;
    env.sim.set_faults(Faults::default());
    let clear = (j["state"] == "failed" && a["status"] == "error" && a["error"].is_string())
        || (j["state"] == "succeeded" && a["status"] == "running");
    record(
        FILE,
        json!({"kind": "fault", "name": "node offline during deploy", "job": j["state"], "app": a["status"],
               "error": a["error"], "healthy": health(&api).await, "clear": clear}),
    );
    assert!(clear, "node offline during deploy: {j:#} {a:#}");
    // Retry path after the node is back: delete and deploy again.
    if a["status"] == "error" {
        let (s, _) = api.call(M::DELETE, &format!("/apps/{app}"), None).await;
        assert_eq!(s, 202);
    }

    // Node offline during a backup.
    let (app, job) = api.deploy("whoami", "bk").await;
    assert_eq!(api.wait_job(&job, 40).await["state"], "succeeded");
    let node = api.get(&format!("/apps/{app}")).await["node"].as_str().unwrap().to_string();
    env.sim.set_faults(Faults {
        slow_task_ms: Some(800),
        ..Default::default()
    });
    let (s, v) = api.call(M::POST, &format!("/apps/{app}/backups"), None).await;
    assert_eq!(s, 202, "{v}");
    let bjob = v["job_id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v["location"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("").to_string());
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.sim.set_faults(Faults {
        offline_nodes: vec![node],
        ..Default::default()
    });
    let j = api.wait_job(&bjob, 60).await;
    env.sim.set_faults(Faults::default());
    let a = api.get(&format!("/apps/{app}")).await;
    let clear = matches!(j["state"].as_str(), Some("failed" | "succeeded"))
        && (j["state"] != "failed" || j["error"].as_str().is_some_and(|e| !e.is_empty()))
        && a["status"] == "running";
    record(
        FILE,
        json!({"kind": "fault", "name": "node offline during backup", "job": j["state"], "app": a["status"],
               "error": j["error"], "healthy": health(&api).await, "clear": clear}),
    );
    assert!(clear, "node offline during backup: {j:#} {a:#}");
    // The retry path of a failed backup: back up again once the node is back.
    let (s, v) = api.call(M::POST, &format!("/apps/{app}/backups"), None).await;
    assert_eq!(s, 202, "{v}");
    let bjob = v["job_id"].as_str().unwrap_or("").to_string();
    assert_eq!(api.wait_job(&bjob, 60).await["state"], "succeeded", "backup retry");
    assert!(health(&api).await);
    let _: Value = api.get("/system/health").await;
}

/// Seed the app record that owns the reservation `mac` → `ip` (the daemon holds the redb
/// file while it runs, so this happens before it starts).
fn seed_reservation(data: &std::path::Path, mac: &str, ip: std::net::Ipv4Addr) {
    use proximity::registry::{APPS, App, AppStatus, Resources};
    std::fs::create_dir_all(data).unwrap();
    let store = proximity::store::Store::open(&data.join("proximity.redb")).unwrap();
    let app = App {
        id: "app-res".into(),
        hostname: "reserved".into(),
        catalog_id: "whoami".into(),
        catalog_version: "1".into(),
        owner: "u1".into(),
        status: AppStatus::Running,
        host: None,
        node: None,
        vmid: None,
        mac: mac.into(),
        ip,
        upstream_ip: None,
        web_port: Some(80),
        forwards: vec![],
        aliases: vec![],
        https_redirect: false,
        resources: Resources {
            cores: 1,
            memory_mb: 256,
            disk_gb: 1,
        },
        settings: Default::default(),
        error: None,
        job_id: None,
        adopted: false,
        created_at: 0,
        updated_at: 0,
    };
    store.put(APPS, &app.id, &app).unwrap();
}

#[test]
fn dhcp_starvation_is_rate_limited_and_reservations_hold() {
    use rel_support::dhcp::{self, DhcpLab};
    if !is_root() || !dhcp::have_udhcpc() {
        skip(
            "dhcp_starvation_is_rate_limited_and_reservations_hold",
            "needs root (network namespaces) and busybox udhcpc",
        );
        return;
    }
    const ATTACKERS: usize = 30;
    const RATE: u64 = 5;
    let reserved_ip = std::net::Ipv4Addr::new(10, 20, 0, 105);
    let lab = DhcpLab::new(ATTACKERS + 1);
    // m<ATTACKERS> is the app with the reservation (MAC 02:77:00:00:00:<ATTACKERS>).
    seed_reservation(&lab.data(), &format!("02:77:00:00:00:{ATTACKERS:02x}"), reserved_ip);
    let cfg = lab.config("10.20.0.139", &format!("max_new_leases_per_sec = {RATE}"));
    let _daemon = lab.daemon(&cfg);
    let cns = lab.ns("c");
    let t0 = Instant::now();
    let handles: Vec<_> = (0..ATTACKERS)
        .map(|i| {
            let ns = cns.clone();
            std::thread::spawn(move || DhcpLab::lease(&ns, i).map(|ip| (ip, t0.elapsed())))
        })
        .collect();
    let got: Vec<(std::net::Ipv4Addr, Duration)> = handles.into_iter().filter_map(|h| h.join().ok().flatten()).collect();
    let elapsed = t0.elapsed().as_secs_f64();
    // Most new leases in any one-second window.
    let mut times: Vec<f64> = got.iter().map(|(_, d)| d.as_secs_f64()).collect();
    times.sort_by(f64::total_cmp);
    let burst = times
        .iter()
        .map(|t| times.iter().filter(|u| **u >= *t && **u < t + 1.0).count())
        .max()
        .unwrap_or(0);
    let bound = (RATE as f64 * (elapsed + 1.0)).ceil() as usize;
    limit(
        "DHCP starvation: new leases per second",
        got.len() <= bound && burst as u64 <= 2 * RATE,
        format!(
            "{ATTACKERS} MACs at once for {elapsed:.1} s got {} leases (bound {bound}), at most {burst} in one second (limit {RATE}/s)",
            got.len()
        ),
    );
    limit(
        "DHCP starvation: reserved address never handed out",
        got.iter().all(|(ip, _)| *ip != reserved_ip),
        format!("{} attacker leases, none {reserved_ip}", got.len()),
    );
    std::thread::sleep(Duration::from_millis(1100));
    let mine = DhcpLab::lease(&cns, ATTACKERS);
    limit(
        "DHCP starvation: the reserved app still gets its address",
        mine == Some(reserved_ip),
        format!("after the flood the reserved MAC got {mine:?}"),
    );
}
