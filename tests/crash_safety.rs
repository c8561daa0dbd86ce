//! Crash safety of the real daemon (`proximity serve`, simulator in this process, ephemeral
//! loopback ports): SIGKILL (a) mid-deploy while a chosen pipeline step runs (simulator
//! latency faults hold the step; the step is read from the job's progress), (b) during a
//! burst of DHCP leases (root: busybox udhcpc clients in namespaces the test creates),
//! (c) during settings updates. After each restart: the database opens, no job is stuck,
//! every app is running or in a clear `error` with a working retry path (delete +
//! redeploy), no container is duplicated, no lease lost or duplicated, and the plan's DNS
//! records, proxy routes and forwards are identical to before. Outcomes go to
//! `target/reliability/crash.jsonl`.

mod rel_support;

use std::time::{Duration, Instant};

use proximity::sim::Faults;
use rel_support::dhcp::{self, DhcpLab};
use rel_support::*;
use reqwest::Method as M;
use serde_json::{Value, json};

const FILE: &str = "crash.jsonl";

/// Containers per hostname in the simulator.
fn ct_count(sim: &proximity::sim::SimHandle, hostname: &str) -> usize {
    fn walk(v: &Value, host: &str, n: &mut usize) {
        match v {
            Value::Object(m) => {
                if m.get("vmid").is_some_and(Value::is_u64)
                    && m.get("config").and_then(|c| c.get("hostname")).and_then(Value::as_str) == Some(host)
                {
                    *n += 1;
                    return;
                }
                m.values().for_each(|x| walk(x, host, n));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, host, n)),
            _ => {}
        }
    }
    let mut n = 0;
    walk(&sim.state_snapshot(), hostname, &mut n);
    n
}

/// After a restart: every job terminal within `secs`, none left queued or running.
async fn assert_no_stuck_jobs(api: &Api, secs: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let jobs = api.jobs().await;
        let open: Vec<_> = jobs
            .iter()
            .filter(|j| !matches!(j["state"].as_str(), Some("succeeded" | "failed" | "cancelled")))
            .collect();
        if open.is_empty() {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "jobs stuck after restart: {}",
            open.iter()
                .map(|j| format!("{} {}", j["id"], j["state"]))
                .collect::<Vec<_>>()
                .join(", ")
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_deploy_at_pipeline_steps_recovers() {
    let started = Instant::now();
    let env = Env::new(1, 20, &Knobs::default()).await;
    let mut daemon = env.start();
    let mut api = env.api();
    api.setup().await;
    // An app deployed before any crash must come through every crash untouched.
    let (base, job) = api.deploy("whoami", "base").await;
    let j = api.wait_job(&job, 40).await;
    assert_eq!(j["state"], "succeeded", "{j:#}");

    let holds = Faults {
        latency_ms: 120,
        slow_task_ms: Some(1500),
        exec_delay_ms: Some(700),
        // The app answers 503 for a while after `compose up`: the health step lasts long
        // enough to be hit.
        app_warmup_ms: Some(3000),
        ..Default::default()
    };
    let mut hit = Vec::new();
    for step in ["place", "template", "create_ct", "start", "install_docker", "compose_up", "health"] {
        let host = format!("c-{}", step.replace('_', "-"));
        env.sim.set_faults(holds.clone());
        let (app, job) = api.deploy("whoami", &host).await;
        // Watch the job's progress; SIGKILL as soon as the wanted step runs.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut at = None;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let (_, j) = api.call(M::GET, &format!("/jobs/{job}"), None).await;
            let cur = running_step(&j);
            last = j;
            if cur.as_deref() == Some(step) {
                at = cur;
                break;
            }
            if matches!(last["state"].as_str(), Some("succeeded" | "failed")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let killed_at = at
            .clone()
            .or_else(|| running_step(&last))
            .unwrap_or_else(|| format!("job {}", last["state"].as_str().unwrap_or("?")));
        sigkill(&mut daemon);
        // Recovery runs against a healthy cluster.
        env.sim.set_faults(Faults::default());
        let t0 = Instant::now();
        daemon = env.start();
        api.login().await;
        let jobs = assert_no_stuck_jobs(&api, 40).await;
        let recovered_ms = t0.elapsed().as_millis() as u64;
        let j = jobs.iter().find(|x| x["id"] == job.as_str()).cloned().unwrap_or_default();
        let a = api.get(&format!("/apps/{app}")).await;
        let status = a["status"].as_str().unwrap_or("").to_string();
        assert!(
            status == "running" || (status == "error" && a["error"].as_str().is_some_and(|e| !e.is_empty())),
            "{host} after the crash: {a:#}"
        );
        // Retry path: an app left in error is deleted and deployed again.
        let mut retried = false;
        if status == "error" {
            retried = true;
            let (s, _) = api.call(M::DELETE, &format!("/apps/{app}"), None).await;
            assert_eq!(s, 202);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(30) && api.apps().await.iter().any(|x| x["id"] == app.as_str()) {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            let (_, job2) = api.deploy("whoami", &host).await;
            let j2 = api.wait_job(&job2, 40).await;
            assert_eq!(j2["state"], "succeeded", "redeploy after crash: {j2:#}");
        }
        assert_eq!(ct_count(&env.sim, &host), 1, "{host}: one container");
        assert_eq!(ct_count(&env.sim, "base"), 1);
        let b = api.get(&format!("/apps/{base}")).await;
        assert_eq!(b["status"], "running", "the app deployed before the crash: {b:#}");
        if at.is_some() {
            hit.push(step);
        }
        record(
            FILE,
            json!({"scenario": "mid-deploy", "point": step, "killed_at": killed_at, "step_hit": at.is_some(),
                   "job_state": j["state"], "app_status": status, "retried": retried,
                   "recovered_ms": recovered_ms, "outcome": "ok"}),
        );
    }
    assert!(hit.len() >= 3, "the kill hit too few steps: {hit:?}");
    // The plan after one more clean restart is identical to the one before it.
    let before = api.network().await;
    sigkill(&mut daemon);
    daemon = env.start();
    api.login().await;
    assert_eq!(api.network().await, before, "records/routes/forwards changed across a restart");
    drop(daemon);
    eprintln!("mid-deploy crashes: hit {hit:?} in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_settings_updates_keeps_a_consistent_state() {
    let env = Env::new(1, 20, &Knobs::default()).await;
    let mut daemon = env.start();
    let mut api = env.api();
    api.setup().await;
    let (_, job) = api.deploy("whoami", "keep").await;
    assert_eq!(api.wait_job(&job, 40).await["state"], "succeeded");
    let net_before = api.network().await;
    let original = api.get("/settings/resources").await;

    for round in 0..3u64 {
        // Toggle the default cores between 1 and 2 as fast as the API answers; SIGKILL with
        // one update in flight.
        let mut doc = api.get("/settings/resources").await;
        let mut acked: Vec<Value> = vec![doc["settings"].clone()];
        let n = 5 + round * 4;
        for i in 0..n {
            let mut s = doc["settings"].clone();
            s["cores"] = json!(1 + (i % 2));
            let (st, v) = api
                .call(M::PUT, "/settings/resources", Some(json!({"digest": doc["digest"], "settings": s})))
                .await;
            assert_eq!(st, 200, "{v}");
            acked.push(v["settings"].clone());
            doc = v;
        }
        let mut inflight = doc["settings"].clone();
        inflight["cores"] = json!(3);
        let body = json!({"digest": doc["digest"], "settings": inflight});
        let req = api
            .c
            .put(format!("{}/settings/resources", api.base))
            .bearer_auth(&api.token)
            .json(&body)
            .send();
        let h = tokio::spawn(req);
        tokio::time::sleep(Duration::from_millis(round * 3)).await;
        sigkill(&mut daemon);
        let _ = h.await;
        daemon = env.start();
        api.login().await;
        assert_no_stuck_jobs(&api, 20).await;
        let now = api.get("/settings/resources").await;
        let last = acked.last().unwrap();
        let which = if &now["settings"] == last {
            "last acknowledged"
        } else if now["settings"] == inflight {
            "in-flight update"
        } else {
            panic!("settings after the crash are neither the last acknowledged nor the in-flight update: {now:#}");
        };
        // The stored digest matches the stored values: an update with it is accepted.
        let (st, v) = api
            .call(
                M::PUT,
                "/settings/resources",
                Some(json!({"digest": now["digest"], "settings": original["settings"]})),
            )
            .await;
        assert_eq!(st, 200, "update after the crash: {v}");
        assert_eq!(api.network().await, net_before, "plan changed across the crash");
        record(
            FILE,
            json!({"scenario": "settings-update", "point": format!("round {round}: after {n} updates, one in flight"),
                   "state_after": which, "outcome": "ok"}),
        );
    }
    drop(daemon);
}

#[test]
fn sigkill_during_a_dhcp_lease_burst_loses_and_duplicates_nothing() {
    if !is_root() {
        skip(
            "sigkill_during_a_dhcp_lease_burst_loses_and_duplicates_nothing",
            "needs root (network namespaces)",
        );
        return;
    }
    if !dhcp::have_udhcpc() {
        skip(
            "sigkill_during_a_dhcp_lease_burst_loses_and_duplicates_nothing",
            "udhcpc (busybox) not installed",
        );
        return;
    }
    const OLD: usize = 40;
    const NEW: usize = 6;
    let lab = DhcpLab::new(OLD + NEW);
    let cfg = lab.config("10.20.0.199", "");
    let mut daemon = lab.daemon(&cfg);
    let cns = lab.ns("c");
    // Burst: the "old" clients start 20 ms apart; SIGKILL once a quarter of them hold a lease.
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..OLD {
        let (tx, ns) = (tx.clone(), cns.clone());
        std::thread::spawn(move || {
            // Staggered starts keep DISCOVERs arriving while the kill lands.
            std::thread::sleep(Duration::from_millis(20 * i as u64));
            let _ = tx.send((i, DhcpLab::lease(&ns, i)));
        });
    }
    drop(tx);
    let mut before = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while before.len() < OLD / 4 && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((i, Some(ip))) => {
                before.insert(i, ip);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            _ => {}
        }
    }
    let acked_at_kill_count = before.len();
    sigkill(&mut daemon);
    // Clients still waiting get no answer now; collect what was acknowledged before the kill.
    for (i, ip) in rx.iter().filter_map(|(i, ip)| ip.map(|ip| (i, ip))) {
        before.insert(i, ip);
    }
    assert!(!before.is_empty(), "no lease before the kill");
    let acked = before.len();
    let acked_at_kill = acked_at_kill_count;
    let t0 = Instant::now();
    daemon = lab.daemon(&cfg);
    let restart_ms = t0.elapsed().as_millis() as u64;
    // New clients first: had acknowledged leases been lost, these would take their addresses.
    let mut after = std::collections::BTreeMap::new();
    for i in OLD..OLD + NEW {
        let ip = DhcpLab::lease(&cns, i).expect("lease for a new client after the restart");
        after.insert(i, ip);
    }
    for (i, ip) in &before {
        let again = DhcpLab::lease(&cns, *i).expect("lease again after the restart");
        assert_eq!(again, *ip, "client m{i} lost its lease {ip} across the crash");
        after.insert(*i, again);
    }
    let mut ips: Vec<_> = after.values().collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), after.len(), "an address was leased twice: {after:?}");
    drop(daemon);
    record(
        FILE,
        json!({"scenario": "dhcp-burst", "point": format!("{acked_at_kill} of {OLD} clients leased when killed; {acked} acknowledged in all"),
               "leases_kept": before.len(), "new_clients": NEW, "duplicates": 0, "restart_ms": restart_ms, "outcome": "ok"}),
    );
}
