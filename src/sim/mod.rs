//! Proxmox VE simulator (`proximity pve-sim`, and in-process for tests and the demo).
//!
//! An HTTPS server speaks the PVE 9 API subset of `data/schema-subset.json` (routing and
//! parameter verification come from that file), an SSH server runs `pct exec|push|set|status`,
//! and a container runtime gives each running CT an address with the HTTP servers its
//! `docker compose up -d` declares: `loopback` (no root, 127.x.y.z per CT) or `netns` (root:
//! a network namespace per CT on a Linux bridge, DHCP via busybox `udhcpc`).
//!
//! Module map: [`schema`] (routing + verification), [`api`] (HTTP, envelope, errors, auth
//! checks), [`auth`] (tickets, CSRF, tokens), [`tasks`] (UPIDs, workers), [`cluster`] (version,
//! nodes, resources, nextid), [`lxc`] (CT lifecycle/config), [`storage`] (storages, content,
//! vzdump/restore, aplinfo), [`network`] (stage/apply), [`ssh`] + [`shell`] + [`compose`] (the
//! `pct` commands and the CT mini-OS), [`runtime`], [`faults`], [`state`], [`tls`].

pub mod access;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod compose;
pub mod faults;
pub mod lxc;
pub mod network;
pub mod runtime;
pub mod schema;
pub mod shell;
pub mod ssh;
pub mod state;
pub mod storage;
pub mod tasks;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use faults::{Faults, Http5xx, TaskFault};

/// API token id of the simulator (`root@pam!proximity`).
pub const TOKEN_ID: &str = "root@pam!proximity";

/// Container runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    /// No root needed: each CT gets its own 127.x.y.z address.
    #[default]
    Loopback,
    /// Root: each CT is a network namespace on a Linux bridge.
    Netns,
}

/// Simulator settings.
#[derive(Clone)]
pub struct SimConfig {
    /// HTTPS API listen address (port 0 = ephemeral).
    pub api_listen: SocketAddr,
    /// SSH listen address.
    pub ssh_listen: SocketAddr,
    /// Container runtime.
    pub runtime: Runtime,
    /// Number of nodes (`pve1`..`pveN`).
    pub nodes: u32,
    /// Password of `root@pam`.
    pub root_password: String,
    /// Secret of the API token `root@pam!proximity`.
    pub token_secret: String,
    /// State directory (certificate, SSH host key, CT files, backups, state.json).
    pub state_dir: PathBuf,
    /// Duration of one simulated task step (tasks take a few steps).
    pub task_delay_ms: u64,
    /// Cluster name.
    pub cluster_name: String,
    /// Initial faults.
    pub faults: Faults,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("api_listen", &self.api_listen)
            .field("ssh_listen", &self.ssh_listen)
            .field("runtime", &self.runtime)
            .field("nodes", &self.nodes)
            .field("root_password", &"<hidden>")
            .field("token_secret", &"<hidden>")
            .field("state_dir", &self.state_dir)
            .field("task_delay_ms", &self.task_delay_ms)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_listen: "127.0.0.1:0".parse().expect("addr"),
            ssh_listen: "127.0.0.1:0".parse().expect("addr"),
            runtime: Runtime::Loopback,
            nodes: 1,
            root_password: random_secret(16),
            token_secret: uuid_like(),
            state_dir: std::env::temp_dir().join(format!("proximity-pve-sim-{}-{}", std::process::id(), random_secret(6))),
            task_delay_ms: 20,
            cluster_name: "proximity-sim".into(),
            faults: Faults::default(),
        }
    }
}

impl SimConfig {
    /// Defaults with ephemeral ports and the given state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> SimConfig {
        SimConfig {
            state_dir: state_dir.into(),
            ..Default::default()
        }
    }
}

/// A random alphanumeric secret.
pub fn random_secret(n: usize) -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut r = rand::rng();
    (0..n).map(|_| CHARS[r.random_range(0..CHARS.len())] as char).collect()
}

/// A random UUID-shaped token secret (PVE token secrets are UUIDs).
pub fn uuid_like() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Unix time now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Shared simulator core.
pub struct Sim {
    /// Settings.
    pub cfg: SimConfig,
    /// Cluster state.
    pub state: Mutex<state::State>,
    /// Tasks.
    pub tasks: tasks::TaskTable,
    /// Injected faults.
    pub faults: Mutex<Faults>,
    /// State directory layout.
    pub layout: state::Layout,
    /// Ticket signing secret.
    pub secret: [u8; 32],
    /// API certificate fingerprint.
    pub fingerprint: String,
    /// Extra SSH keys authorized through [`SimHandle::authorize_ssh_key`].
    pub ssh_keys: Mutex<Vec<russh::keys::PublicKey>>,
    /// Container runtime.
    pub runtime: Arc<dyn runtime::CtRuntime>,
    /// App HTTP servers started by `docker compose up`.
    pub apps: runtime::AppServers,
    /// `pct enter` shells.
    pub shells: runtime::pty::ShellRegistry,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// Background work (tasks, servers).
    pub tracker: TaskTracker,
}

impl Sim {
    /// Persist the state (errors are logged: the simulator keeps running in memory).
    pub fn save(&self) {
        let st = self.state.lock().expect("state");
        if let Err(e) = st.save(&self.layout.state_file()) {
            tracing::warn!(error = %e, "pve-sim: cannot save state");
        }
    }
}

/// A running simulator.
pub struct SimHandle {
    /// Bound HTTPS API address.
    pub api_addr: SocketAddr,
    /// Bound SSH address.
    pub ssh_addr: SocketAddr,
    /// Certificate fingerprint (uppercase colon SHA-256 of the DER certificate).
    pub fingerprint: String,
    /// Password of `root@pam`.
    pub root_password: String,
    /// API token id (`root@pam!proximity`).
    pub token_id: String,
    /// API token secret.
    pub token_secret: String,
    /// SSH host key (OpenSSH public key line).
    pub ssh_host_key: String,
    sim: Arc<Sim>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("api_addr", &self.api_addr)
            .field("ssh_addr", &self.ssh_addr)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl SimHandle {
    /// `https://<api_addr>/api2/json`.
    pub fn base_url(&self) -> String {
        format!("https://{}/api2/json", self.api_addr)
    }
    /// Authorize an SSH public key (OpenSSH line `ssh-ed25519 AAAA... comment`).
    pub fn authorize_ssh_key(&self, openssh_pubkey_line: &str) -> anyhow::Result<()> {
        let key = russh::keys::PublicKey::from_openssh(openssh_pubkey_line.trim()).context("parsing the SSH public key")?;
        self.sim.ssh_keys.lock().expect("keys").push(key);
        Ok(())
    }
    /// Replace the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        *self.sim.faults.lock().expect("faults") = faults;
    }
    /// The current faults.
    pub fn faults(&self) -> Faults {
        self.sim.faults.lock().expect("faults").clone()
    }
    /// The cluster state as JSON (for before/after comparisons in tests).
    pub fn state_snapshot(&self) -> Value {
        let st = self.sim.state.lock().expect("state");
        serde_json::to_value(&*st).unwrap_or(Value::Null)
    }
    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.sim.cfg.state_dir.clone()
    }
    /// Stop everything: servers, tasks, CT processes, namespaces and bridges we created.
    pub async fn shutdown(self) {
        shutdown_sim(&self.sim).await;
    }
}

async fn shutdown_sim(sim: &Arc<Sim>) {
    sim.shutdown.cancel();
    sim.tasks.cancel_all();
    sim.apps.stop_all();
    sim.shells.kill_all();
    let errors = sim.runtime.shutdown().await;
    for e in errors {
        tracing::warn!(error = %e, "pve-sim: cleanup problem");
    }
    sim.tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), sim.tracker.wait()).await;
    {
        let mut st = sim.state.lock().expect("state");
        for ct in st.cts.values_mut() {
            ct.running = false;
            ct.ip = None;
            ct.os.running_services.clear();
        }
    }
    sim.save();
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        // Best effort when `shutdown` was not awaited: stop servers and remove namespaces.
        if !self.sim.shutdown.is_cancelled() {
            self.sim.shutdown.cancel();
            self.sim.tasks.cancel_all();
            self.sim.apps.stop_all();
            self.sim.shells.kill_all();
            self.sim.runtime.shutdown_blocking();
        }
    }
}

/// Start the simulator: bind the API and SSH listeners, return once both accept connections.
pub async fn start(cfg: SimConfig) -> anyhow::Result<SimHandle> {
    std::fs::create_dir_all(&cfg.state_dir).with_context(|| format!("creating state directory {}", cfg.state_dir.display()))?;
    let layout = state::Layout {
        root: cfg.state_dir.clone(),
    };
    let (cert, key) = tls::load_or_create(&cfg.state_dir)?;
    let fingerprint = tls::fingerprint(cert.as_ref());
    let tls_cfg = tls::server_config(cert, key)?;
    let host_key = ssh::load_or_create_host_key(&cfg.state_dir)?;
    let ssh_host_key = host_key.public_key().to_openssh().unwrap_or_default();
    let st = state::State::load_or_new(&layout.state_file(), &cfg.cluster_name, cfg.nodes)?;
    let runtime: Arc<dyn runtime::CtRuntime> = match cfg.runtime {
        Runtime::Loopback => Arc::new(runtime::loopback::Loopback),
        Runtime::Netns => Arc::new(runtime::netns::Netns::new(&cfg.state_dir)?),
    };
    let api_listener = tokio::net::TcpListener::bind(cfg.api_listen)
        .await
        .with_context(|| format!("pve-sim API: cannot listen on {}", cfg.api_listen))?;
    let ssh_listener = tokio::net::TcpListener::bind(cfg.ssh_listen)
        .await
        .with_context(|| format!("pve-sim SSH: cannot listen on {}", cfg.ssh_listen))?;
    let api_addr = api_listener.local_addr()?;
    let ssh_addr = ssh_listener.local_addr()?;
    let sim = Arc::new(Sim {
        faults: Mutex::new(cfg.faults.clone()),
        state: Mutex::new(st),
        tasks: tasks::TaskTable::default(),
        layout,
        secret: rand::random(),
        fingerprint: fingerprint.clone(),
        ssh_keys: Mutex::new(Vec::new()),
        runtime,
        apps: runtime::AppServers::default(),
        shells: runtime::pty::ShellRegistry::default(),
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        cfg: cfg.clone(),
    });
    sim.save();
    sim.tracker.spawn(api::serve(sim.clone(), api_listener, tls_cfg));
    sim.tracker.spawn(ssh::serve(sim.clone(), ssh_listener, host_key));
    Ok(SimHandle {
        api_addr,
        ssh_addr,
        fingerprint,
        root_password: cfg.root_password.clone(),
        token_id: TOKEN_ID.to_string(),
        token_secret: cfg.token_secret.clone(),
        ssh_host_key,
        sim,
    })
}
