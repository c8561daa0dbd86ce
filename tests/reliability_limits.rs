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
        ..Knobs::default()
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

/// Open a job event stream as `token`; `Ok(response)` (held open) when 200 and the first
/// event arrived, else `Err((status, body))`.
async fn open_stream(c: &reqwest::Client, base: &str, token: &str, job: &str) -> Result<reqwest::Response, (u16, Value)> {
    let r = c
        .get(format!("{base}/jobs/{job}/events"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| (0, Value::String(e.to_string())))?;
    let s = r.status().as_u16();
    if s != 200 {
        let text = r.text().await.unwrap_or_default();
        return Err((s, serde_json::from_str(&text).unwrap_or(Value::String(text))));
    }
    let mut r = r;
    match tokio::time::timeout(Duration::from_secs(10), r.chunk()).await {
        Ok(Ok(Some(b))) if String::from_utf8_lossy(&b).contains("snapshot") => Ok(r),
        other => Err((s, Value::String(format!("no snapshot event: {other:?}")))),
    }
}

/// Poll until `token` can open a stream again (slots come back when clients go away).
async fn reopens(c: &reqwest::Client, base: &str, token: &str, job: &str, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if open_stream(c, base, token, job).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_bounded_and_memory_holds_under_a_flood() {
    const PER_USER: usize = 4;
    const TOTAL: usize = 6;
    let knobs = Knobs {
        sse_max_per_user: PER_USER as u32,
        sse_max_total: TOTAL as u32,
        ..Knobs::default()
    };
    let env = Env::new(1, 20, &knobs).await;
    let daemon = env.start();
    let pid = pid(&daemon);
    let mut api = env.api();
    api.setup().await;
    let (s, v) = api
        .call(
            M::POST,
            "/users",
            Some(json!({"username": "second", "password": "second-password-1", "role": "admin"})),
        )
        .await;
    assert!(s == 200 || s == 201, "create user: {s} {v}");
    let mut second = env.api();
    let (s, v) = second
        .call(
            M::POST,
            "/auth/login",
            Some(json!({"username": "second", "password": "second-password-1"})),
        )
        .await;
    assert_eq!(s, 200, "login: {v}");
    second.token = v["access_token"].as_str().unwrap().to_string();
    // A job that stays running (slow simulator tasks), so its event streams stay open.
    env.sim.set_faults(Faults {
        slow_task_ms: Some(600_000),
        ..Default::default()
    });
    let (_, job) = api.deploy("whoami", "streamed").await;
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let base = api.base.clone();

    // Per user: PER_USER streams open, the next one is refused with 429 problem JSON.
    let mut mine = Vec::new();
    for i in 0..PER_USER {
        match open_stream(&c, &base, &api.token, &job).await {
            Ok(r) => mine.push(r),
            Err(e) => panic!("stream {i} of {PER_USER} refused: {e:?}"),
        }
    }
    let over = open_stream(&c, &base, &api.token, &job).await.err().unwrap_or((200, Value::Null));
    limit(
        "job event streams per user (api.sse_max_per_user)",
        over.0 == 429 && over.1["detail"].as_str().unwrap_or("").contains("sse_max_per_user"),
        format!("{PER_USER} streams open, one more → {} {}", over.0, over.1["detail"]),
    );
    // In total: another user fills the rest, then 503.
    let mut theirs = Vec::new();
    for _ in PER_USER..TOTAL {
        theirs.push(open_stream(&c, &base, &second.token, &job).await.expect("second user's stream"));
    }
    let full = open_stream(&c, &base, &second.token, &job)
        .await
        .err()
        .unwrap_or((200, Value::Null));
    limit(
        "job event streams in total (api.sse_max_total)",
        full.0 == 503 && full.1["detail"].as_str().unwrap_or("").contains("sse_max_total"),
        format!("{TOTAL} streams open (two users), one more → {} {}", full.0, full.1["detail"]),
    );
    drop(mine.pop());
    let back = reopens(&c, &base, &api.token, &job, 20).await;
    limit(
        "job event stream slots come back when clients go away",
        back,
        "a client closed its stream; the same user opened a new one within 20 s".into(),
    );
    drop(mine);
    drop(theirs);

    // Flood: concurrent API requests, event-stream attempts (most refused) and a DNS query
    // flood, each bounded in count and time; the daemon's RSS before and after.
    let settle = || tokio::time::sleep(Duration::from_secs(2));
    settle().await;
    let (rss_before, fds_before) = rss_fds(pid).unwrap();
    let t0 = Instant::now();
    let dns_port = env.ports.dns;
    let dns = std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let end = Instant::now() + Duration::from_secs(15);
        let mut sent = 0u32;
        let mut buf = [0u8; 1500];
        // Bursts of 200 queries, then read what came back (the socket buffer holds them).
        while sent < 20_000 && Instant::now() < end {
            for _ in 0..200 {
                let _ = sock.send_to(&dns_query(sent as u16, "flood.prox.local"), ("127.0.0.1", dns_port));
                sent += 1;
            }
            while sock.recv(&mut buf).is_ok() {}
        }
        sent
    });
    let api = std::sync::Arc::new(api);
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (api, c, base, job) = (api.clone(), c.clone(), base.clone(), job.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused, mut streams) = (0u32, 0u32, Vec::new());
            for i in 0..25 {
                if t0.elapsed() > Duration::from_secs(60) {
                    break;
                }
                let p = ["/apps", "/jobs?limit=50", "/catalog", "/network/records", "/system/health"][(w + i) % 5];
                if api.call(M::GET, p, None).await.0 == 200 {
                    ok += 1;
                }
                if i % 5 == 0 {
                    match open_stream(&c, &base, &api.token, &job).await {
                        Ok(r) => streams.push(r),
                        Err((429 | 503, _)) => refused += 1,
                        Err(e) => panic!("event stream under flood: {e:?}"),
                    }
                }
            }
            // Streams stay open until every task is done, so the count below is of
            // streams open at the same time.
            (ok, refused, streams)
        }));
    }
    let (mut api_ok, mut sse_refused, mut held_streams) = (0, 0, Vec::new());
    for t in tasks {
        let (o, r, s) = t.await.expect("flood task");
        api_ok += o;
        sse_refused += r;
        held_streams.extend(s);
    }
    let sse_open = held_streams.len();
    let dns_sent = tokio::task::spawn_blocking(move || dns.join().unwrap()).await.unwrap();
    let flood_secs = t0.elapsed().as_secs_f64();
    let (rss_peak, fds_peak) = rss_fds(pid).unwrap();
    drop(held_streams);
    settle().await;
    let (rss_after, fds_after) = rss_fds(pid).unwrap();
    let healthy = health(&api).await;
    let all_back = reopens(&c, &base, &api.token, &job, 20).await;
    env.sim.set_faults(Faults::default());
    // Sane bound: the flood holds at most TOTAL streams, 32 concurrent requests and a DNS
    // cache entry; 48 MiB over the idle daemon is far above what that needs (a leak of
    // one request body per request, or of the streams refused, would exceed it).
    const RSS_BOUND_KB: u64 = 48 * 1024;
    let grew = rss_peak.max(rss_after).saturating_sub(rss_before);
    record(
        FILE,
        json!({"kind": "flood", "name": "API + event streams + DNS flood", "api_requests": 32 * 25, "api_ok": api_ok,
               "sse_attempts": 32 * 5, "sse_open": sse_open, "sse_refused": sse_refused, "dns_sent": dns_sent,
               "secs": (flood_secs * 10.0).round() / 10.0, "rss_kb_before": rss_before, "rss_kb_peak": rss_peak,
               "rss_kb_after": rss_after, "rss_bound_kb": RSS_BOUND_KB, "fds_before": fds_before, "fds_peak": fds_peak,
               "fds_after": fds_after, "healthy": healthy, "slots_back": all_back}),
    );
    limit(
        "memory under a flood (API, event streams, DNS)",
        grew < RSS_BOUND_KB && healthy && sse_open <= TOTAL,
        format!(
            "{api_ok}/{} API requests ok, {sse_open} streams open / {sse_refused} refused, {dns_sent} DNS queries in {flood_secs:.1} s: RSS {rss_before} → peak {rss_peak} → {rss_after} KiB (bound +{RSS_BOUND_KB}), FDs {fds_before} → {fds_after}",
            32 * 25
        ),
    );
    limit(
        "event stream slots free after the flood",
        all_back,
        "after the flood clients closed, a new stream opened within 20 s".into(),
    );
}
