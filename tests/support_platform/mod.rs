//! Helpers for platform integration tests: an in-process simulator (loopback runtime,
//! ephemeral ports, temp dirs), a Platform wired to it through the real PVE client and
//! SSH, and a small test catalog.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proximity::config::Config;
use proximity::jobs::{Job, JobState, Jobs};
use proximity::platform::{AppCatalog, CatalogApp, Platform, RenderFailure, RenderedApp, User};
use proximity::pve::{Auth, HostSpec, Hosts};
use proximity::registry::{Proto, Resources};
use proximity::sim::{self, SimConfig, SimHandle};
use proximity::store::Store;
use proximity::supervisor::Context;
use tokio_util::sync::CancellationToken;

/// When set, the `web` app's health check points at a port nothing serves (to test the
/// update rollback).
pub static WEB_UNHEALTHY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A catalog of small test apps: `web` (one HTTP port), `duo` (web + extra port),
/// `sick` (health check on a port nothing serves).
pub struct TestCatalog;

impl AppCatalog for TestCatalog {
    fn app(&self, id: &str) -> Option<CatalogApp> {
        let base = CatalogApp {
            id: id.to_string(),
            version: "1.0".into(),
            web_port: Some(8080),
            ports: vec![],
            min: Resources {
                cores: 1,
                memory_mb: 256,
                disk_gb: 2,
            },
            health_port: None,
            health_path: "/healthz".into(),
            health_status: 200,
            health_timeout_secs: 5,
        };
        match id {
            "web" if WEB_UNHEALTHY.load(std::sync::atomic::Ordering::SeqCst) => Some(CatalogApp {
                health_port: Some(8999),
                ..base
            }),
            "web" => Some(base),
            "duo" => Some(CatalogApp {
                ports: vec![(9000, Proto::Tcp)],
                ..base
            }),
            "sick" => Some(CatalogApp {
                health_port: Some(8999),
                ..base
            }),
            "broken" => Some(base),
            "big" => Some(CatalogApp {
                min: Resources {
                    cores: 1,
                    memory_mb: 1024,
                    disk_gb: 2,
                },
                ..base
            }),
            _ => None,
        }
    }

    fn render(&self, id: &str, hostname: &str, domain: &str, values: &BTreeMap<String, String>) -> Result<RenderedApp, RenderFailure> {
        if let Some(k) = values.keys().find(|k| !matches!(k.as_str(), "TITLE" | "SECRET")) {
            return Err(RenderFailure {
                fields: BTreeMap::from([(format!("values.{k}"), "unknown variable".into())]),
                message: format!("unknown variable {k}"),
            });
        }
        let mut extra = String::new();
        if id == "duo" {
            extra.push_str("      - \"9000:9000\"\n");
        }
        let compose = format!(
            "services:\n  {id}:\n    image: nginx:1.27.3\n    restart: unless-stopped\n    env_file: .env\n    ports:\n      - \"8080:80\"\n{extra}"
        );
        let compose = if id == "broken" {
            "services:\n  broken:\n    restart: unless-stopped\n    ports:\n      - \"8080:80\"\n".to_string()
        } else {
            compose
        };
        let mut generated = BTreeMap::new();
        let secret = match values.get("SECRET") {
            Some(s) => s.clone(),
            None => {
                let s = hex_secret();
                generated.insert("SECRET".to_string(), s.clone());
                s
            }
        };
        Ok(RenderedApp {
            compose_yaml: compose,
            env_file: format!("HOST={hostname}.{domain}\nSECRET={secret}\n"),
            generated_secrets: generated,
        })
    }
}

fn hex_secret() -> String {
    let n: u128 = rand_u128();
    format!("{n:032x}")
}

fn rand_u128() -> u128 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    t ^ (std::process::id() as u128) << 64
}

/// Start a simulator in `dir` with `nodes` nodes and the loopback runtime.
pub async fn start_sim(dir: &Path, nodes: u32, task_delay_ms: u64) -> SimHandle {
    let mut cfg = SimConfig::new(dir.join("sim"));
    cfg.api_listen = "127.0.0.1:0".parse().unwrap();
    cfg.ssh_listen = "127.0.0.1:0".parse().unwrap();
    cfg.runtime = sim::Runtime::Loopback;
    cfg.nodes = nodes;
    cfg.task_delay_ms = task_delay_ms;
    sim::start(cfg).await.expect("simulator starts")
}

/// Connection facts of a simulator, passable to a child process.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SimInfo {
    pub url: String,
    pub ssh: SocketAddr,
    pub fingerprint: String,
    pub token_id: String,
    pub token_secret: String,
}

impl SimInfo {
    pub fn of(sim: &SimHandle) -> SimInfo {
        SimInfo {
            url: sim.base_url(),
            ssh: sim.ssh_addr,
            fingerprint: sim.fingerprint.clone(),
            token_id: sim.token_id.clone(),
            token_secret: sim.token_secret.clone(),
        }
    }
}

/// A context over `data_dir`.
pub fn context(data_dir: &Path, workers: usize) -> Context {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.jobs.workers = workers;
    config.schedule.keep_backups = 3;
    let store = Store::open(&config.db_path()).expect("store");
    Context::new(config, store).expect("context")
}

/// Register the simulator as host `sim` (idempotent) and return the hosts registry and the
/// public key to authorize.
pub async fn register(ctx: &Context, info: &SimInfo) -> (Hosts, String) {
    let hosts = Hosts::from_context(ctx);
    hosts
        .upsert(HostSpec {
            name: "sim".into(),
            url: info.url.clone(),
            auth: Auth::Token {
                id: info.token_id.clone(),
                secret: info.token_secret.clone(),
            },
            fingerprint: Some(info.fingerprint.clone()),
            ca_pem: None,
            ssh: Some(info.ssh.to_string()),
            ssh_user: "root".into(),
            bridge: "proximity-lan".into(),
            storage: "local-lvm".into(),
        })
        .expect("host added");
    hosts.sync("sim").await.expect("host sync");
    let key = hosts.ssh_key().expect("ssh key").public_openssh();
    (hosts, key)
}

/// Platform + running jobs engine.
pub struct Env {
    pub platform: Platform,
    pub ctx: Context,
    pub stop: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Build a platform on `data_dir` against the simulator and start its jobs engine
/// (after start-up recovery).
pub async fn platform(data_dir: &Path, info: &SimInfo, sim: Option<&SimHandle>, workers: usize) -> Env {
    let ctx = context(data_dir, workers);
    let (hosts, key) = register(&ctx, info).await;
    if let Some(sim) = sim {
        sim.authorize_ssh_key(&key).expect("authorize key");
    }
    let jobs = Jobs::new(ctx.store.clone(), ctx.events.clone(), &ctx.config.jobs);
    let platform = Platform::new(ctx.clone(), Arc::new(TestCatalog), hosts, jobs.clone());
    let (_, failed) = jobs.recover().expect("recover");
    platform.recovered(&failed);
    let stop = CancellationToken::new();
    tokio::spawn(jobs.clone().run(platform.handler(), stop.clone()));
    Env { platform, ctx, stop }
}

/// The test user.
pub fn user() -> User {
    User {
        id: "u-test".into(),
        username: "tester".into(),
    }
}

/// Wait for a job to end (bounded) and return it.
pub async fn wait(p: &Platform, job: &Job, secs: u64) -> Job {
    let j = p.jobs().wait(&job.id, Duration::from_secs(secs)).await.expect("job");
    assert!(j.state.is_terminal(), "job {} still {:?} after {secs} s: {j:?}", j.id, j.state);
    j
}

/// Wait and require success, printing the job log otherwise.
pub async fn wait_ok(p: &Platform, job: &Job, secs: u64) -> Job {
    let j = wait(p, job, secs).await;
    if j.state != JobState::Succeeded {
        let logs = p.jobs().logs(&j.id).unwrap_or_default();
        for l in logs {
            eprintln!("  [{:?}] {:?} {}", l.level, l.step, l.message);
        }
        panic!("job {} {:?}: {:?}", j.kind.as_str(), j.state, j.error);
    }
    j
}

/// Containers in the simulator snapshot: (node, vmid, status, hostname).
pub fn sim_cts(sim: &SimHandle) -> Vec<(String, u32, String, String)> {
    let snap = sim.state_snapshot();
    let mut out = Vec::new();
    collect_cts(&snap, &mut out);
    out.sort_by_key(|c| c.1);
    out
}

fn collect_cts(v: &serde_json::Value, out: &mut Vec<(String, u32, String, String)>) {
    // The snapshot holds containers as objects with vmid/node/status/hostname; walk it
    // without depending on its exact nesting.
    match v {
        serde_json::Value::Object(m) => {
            if let (Some(vmid), Some(node), Some(running)) = (
                m.get("vmid").and_then(|x| x.as_u64()),
                m.get("node").and_then(|x| x.as_str()),
                m.get("running").and_then(|x| x.as_bool()),
            ) {
                let status = if running { "running" } else { "stopped" }.to_string();
                let host = m
                    .get("config")
                    .and_then(|c| c.get("hostname"))
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
                    .to_string();
                out.push((node.to_string(), vmid as u32, status, host));
                return;
            }
            for x in m.values() {
                collect_cts(x, out);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                collect_cts(x, out);
            }
        }
        _ => {}
    }
}

/// A temp dir path helper.
pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Shorthand for data dir under a temp dir.
pub fn data(dir: &Path) -> PathBuf {
    dir.join("data")
}
