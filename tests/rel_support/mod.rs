//! Shared helpers of the reliability tests (crash safety, abuse limits, soak): the real
//! daemon (`proximity serve`) on loopback ephemeral ports wired to the built-in Proxmox
//! simulator running in the test process (so the test injects faults directly and a
//! SIGKILL of the daemon leaves the "cluster" alive), an API client, and the JSON-lines
//! outcome files under `target/reliability/`.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub mod dhcp;

#[path = "../common/mod.rs"]
pub mod common;
#[allow(unused_imports)]
pub use common::{Proc, bin, free_port, free_udp_tcp_port, is_root, skip};

/// Admin credentials the tests set up.
pub const ADMIN: (&str, &str) = ("admin", "admin-password-1");

/// Append one JSON object as a line to `target/reliability/<file>`, stamped with the time
/// and the id of this test process's run (the report shows the latest run of each scenario).
pub fn record(file: &str, v: Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/reliability");
    let _ = std::fs::create_dir_all(&dir);
    let mut v = v;
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| format!("{}-{}", proximity::sim::now(), std::process::id()));
    if let Value::Object(m) = &mut v {
        m.insert("ts".into(), json!(proximity::sim::now()));
        m.insert("run".into(), json!(run));
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(file)) {
        let _ = writeln!(f, "{v}");
    }
}

/// Ports of one daemon.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Management API (plain HTTP on loopback).
    pub api: u16,
    /// DNS (UDP+TCP).
    pub dns: u16,
    /// Proxy plain HTTP.
    pub http: u16,
    /// Proxy HTTPS.
    pub https: u16,
}

/// Extra `serve` configuration knobs the tests vary.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    /// `[dns] rate_limit_per_client`.
    pub dns_rate: u32,
    /// `[api] max_body_bytes` (0: default).
    pub api_max_body: u64,
    /// `[proxy] max_body_bytes` (0: default).
    pub proxy_max_body: u64,
    /// `[jobs] max_queued` (0: default).
    pub max_queued: u32,
    /// `[jobs] workers` (0: default).
    pub workers: u32,
    /// `[jobs] keep_finished` (0: default).
    pub keep_finished: u32,
    /// `[general] store_cache_mib` (0: default).
    pub store_cache_mib: u32,
    /// `[api] sse_max_per_user` (0: default).
    pub sse_max_per_user: u32,
    /// `[api] sse_max_total` (0: default).
    pub sse_max_total: u32,
}

/// A test environment: temp dir, simulator, the config file of the daemon.
pub struct Env {
    /// Temp directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The simulator (in this process).
    pub sim: proximity::sim::SimHandle,
    /// `serve` config path.
    pub cfg: PathBuf,
    /// Ports.
    pub ports: Ports,
}

impl Env {
    /// Start the simulator (`nodes` nodes, task delay `task_ms`), authorise the appliance's
    /// SSH key and write the daemon config (API, DNS and proxy on loopback).
    pub async fn new(nodes: u32, task_ms: u64, knobs: &Knobs) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let sim = proximity::sim::start(proximity::sim::SimConfig {
            nodes,
            task_delay_ms: task_ms,
            ..proximity::sim::SimConfig::new(dir.path().join("sim"))
        })
        .await
        .expect("simulator");
        let data = dir.path().join("data");
        common::authorize_appliance_key(&sim, &data);
        let ports = Ports {
            api: free_port(),
            dns: free_udp_tcp_port(),
            http: free_port(),
            https: free_port(),
        };
        let mut text = format!(
            r#"[general]
data_dir = "{data}"
{cache}
[network]
manage_links = false
firewall = false
upstream_dns = []
[dhcp]
enabled = false
[dns]
enabled = true
listen = ["127.0.0.1:{dns}"]
rate_limit_per_client = {rate}
[proxy]
enabled = true
http_listen = ["127.0.0.1:{http}"]
https_listen = ["127.0.0.1:{https}"]
health_check_secs = 1
threads = 1
"#,
            data = data.display(),
            dns = ports.dns,
            http = ports.http,
            https = ports.https,
            rate = knobs.dns_rate,
            cache = if knobs.store_cache_mib > 0 {
                format!("store_cache_mib = {}", knobs.store_cache_mib)
            } else {
                String::new()
            },
        );
        if knobs.proxy_max_body > 0 {
            text.push_str(&format!("max_body_bytes = {}\n", knobs.proxy_max_body));
        }
        text.push_str(&format!("[api]\ntls = false\nlisten = [\"127.0.0.1:{}\"]\n", ports.api));
        if knobs.api_max_body > 0 {
            text.push_str(&format!("max_body_bytes = {}\n", knobs.api_max_body));
        }
        if knobs.sse_max_per_user > 0 {
            text.push_str(&format!("sse_max_per_user = {}\n", knobs.sse_max_per_user));
        }
        if knobs.sse_max_total > 0 {
            text.push_str(&format!("sse_max_total = {}\n", knobs.sse_max_total));
        }
        text.push_str("[jobs]\n");
        if knobs.max_queued > 0 {
            text.push_str(&format!("max_queued = {}\n", knobs.max_queued));
        }
        if knobs.workers > 0 {
            text.push_str(&format!("workers = {}\n", knobs.workers));
        }
        if knobs.keep_finished > 0 {
            text.push_str(&format!("keep_finished = {}\n", knobs.keep_finished));
        }
        text.push_str(&common::sim_host_toml(&sim));
        let cfg = dir.path().join("proximity.toml");
        std::fs::write(&cfg, text).unwrap();
        Env { dir, sim, cfg, ports }
    }

    /// Start the daemon and wait for its `ready` line.
    pub fn start(&self) -> Proc {
        let mut c = Command::new(bin());
        c.args(["serve", "--config"]).arg(&self.cfg);
        let mut p = Proc::spawn(c);
        p.wait_ready();
        p
    }

    /// The daemon's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// An API client (not logged in yet).
    pub fn api(&self) -> Api {
        Api {
            c: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            base: format!("http://127.0.0.1:{}/api/v1", self.ports.api),
            token: String::new(),
        }
    }
}

/// Kill the daemon with SIGKILL (by its PID) and reap it.
pub fn sigkill(p: &mut Proc) {
    p.signal("KILL");
    assert!(p.wait_exit(Duration::from_secs(10)).is_some(), "daemon survived SIGKILL");
}

/// Process id of a child.
pub fn pid(p: &Proc) -> u32 {
    p.child.id()
}

/// Resident set size (KiB) and open file descriptors of a process (Linux /proc).
pub fn rss_fds(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

/// A small JSON API client.
pub struct Api {
    /// HTTP client.
    pub c: reqwest::Client,
    /// `http://127.0.0.1:<port>/api/v1`.
    pub base: String,
    /// Bearer token (empty: none).
    pub token: String,
}

impl Api {
    /// One call; `(status, body as JSON or as a string)`.
    pub async fn call(&self, m: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self.c.request(m, format!("{}{path}", self.base));
        if !self.token.is_empty() {
            rb = rb.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        match rb.send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                (s, serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    /// GET returning the body; panics unless 200.
    pub async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// First start: create the admin (setup), then sync the simulator host.
    pub async fn setup(&mut self) {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                "/auth/setup",
                Some(json!({"username": ADMIN.0, "password": ADMIN.1})),
            )
            .await;
        assert!(s == 200 || s == 201, "setup: {s} {v}");
        self.token = v["access_token"].as_str().unwrap().to_string();
        let (s, v) = self.call(reqwest::Method::POST, "/hosts/sim/sync", None).await;
        assert_eq!(s, 200, "sync: {v}");
    }

    /// Log in as the admin (after a restart).
    pub async fn login(&mut self) {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                "/auth/login",
                Some(json!({"username": ADMIN.0, "password": ADMIN.1})),
            )
            .await;
        assert_eq!(s, 200, "login: {v}");
        self.token = v["access_token"].as_str().unwrap().to_string();
    }

    /// Deploy `catalog_id` as `hostname`; `(app id, job id)`.
    pub async fn deploy(&self, catalog_id: &str, hostname: &str) -> (String, String) {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                "/apps",
                Some(json!({"catalog_id": catalog_id, "hostname": hostname})),
            )
            .await;
        assert_eq!(s, 202, "deploy {hostname}: {v}");
        let app = v["id"].as_str().unwrap().to_string();
        let (_, a) = self.call(reqwest::Method::GET, &format!("/apps/{app}"), None).await;
        let job = a["job_id"].as_str().map(str::to_string).unwrap_or_default();
        (app, job)
    }

    /// Wait until job `id` is terminal (or `secs` pass); returns the job.
    pub async fn wait_job(&self, id: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (s, j) = self.call(reqwest::Method::GET, &format!("/jobs/{id}"), None).await;
            if s == 200 && matches!(j["state"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
                return j;
            }
            if Instant::now() > deadline {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every app (admin sees all).
    pub async fn apps(&self) -> Vec<Value> {
        let v = self.get("/apps?per_page=100").await;
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Every job.
    pub async fn jobs(&self) -> Vec<Value> {
        let v = self.get("/jobs?limit=500").await;
        match v {
            Value::Array(a) => a,
            v => v["items"].as_array().cloned().unwrap_or_default(),
        }
    }

    /// The network view the plan produces: DNS records, proxy routes, forwards (sorted JSON).
    pub async fn network(&self) -> Value {
        json!({
            "records": self.get("/network/records").await,
            "routes": self.get("/network/routes").await,
            "forwards": self.get("/network/forwards").await,
        })
    }
}

/// The name of the running step of a job, if any.
pub fn running_step(job: &Value) -> Option<String> {
    job["steps"]
        .as_array()?
        .iter()
        .find(|s| s["state"] == "running")
        .and_then(|s| s["name"].as_str())
        .map(str::to_string)
}

/// The data directory's database file.
pub fn db_path(data: &Path) -> PathBuf {
    data.join("proximity.redb")
}
