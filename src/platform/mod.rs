//! The app platform: deploy and lifecycle of catalog apps as Docker-in-LXC containers,
//! backups, adoption, reconciliation and the scheduler — all long work as persistent jobs.
//!
//! ```text
//!  API ──► Platform (validate, allocate IP/MAC/ports in one redb transaction, submit job)
//!              │
//!              ▼
//!          jobs engine ──► steps.rs (one idempotent step at a time) ──► PveHost (API + pct over SSH)
//!              │                       │
//!              ▼                       └─► registry update ─► ctx.plan.refresh (DHCP/DNS/proxy/firewall)
//!          job.step / job.log / job.state events (SSE)
//! ```
//!
//! **Architecture invariant:** the registry (`apps`) is changed only in store transactions
//! followed by `ctx.plan.refresh`, so the network plane always follows. No step deletes user
//! data except `delete` / `delete_backup` / restore asked for explicitly.

pub mod alloc;
pub mod apps;
pub mod backend;
pub mod pvehost;
pub mod reconcile;
pub mod scheduler;
mod steps;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::jobs::{Job, JobError, JobKind, Jobs, StepSpec};
use crate::registry::{self, APPS, App, AppStatus, PortForward, Proto, Resources};
use crate::store::{StoreError, Table, WriteTx};
use crate::supervisor::Context;

pub use apps::{AppCatalog, CatalogApp, RenderFailure, RenderedApp};
pub use backend::{BackupMode, Compression, HostSettings, PveFailure, PveHost};

/// Sealed per-app secrets (user values + generated secrets), by app id.
pub const APP_SECRETS: Table<String> = Table::new("app_secrets");

/// Where compose projects live inside the CT.
pub fn project_dir(hostname: &str) -> String {
    format!("/opt/proximity/{hostname}")
}

/// Failures of platform operations, each mapping to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: name taken, app busy, wrong state.
    #[error("{0}")]
    Conflict(String),
    /// 422: invalid input, with field errors.
    #[error("{message}")]
    Invalid {
        /// Summary.
        message: String,
        /// Field → message.
        fields: BTreeMap<String, String>,
    },
    /// 502: Proxmox or the container failed.
    #[error("{0}")]
    Upstream(String),
    /// 503: queue full, no host, node offline.
    #[error("{0}")]
    Unavailable(String),
    /// 500.
    #[error("{0}")]
    Internal(String),
}

impl PlatformError {
    /// HTTP status for the API.
    pub fn status(&self) -> u16 {
        match self {
            PlatformError::NotFound(_) => 404,
            PlatformError::Conflict(_) => 409,
            PlatformError::Invalid { .. } => 422,
            PlatformError::Upstream(_) => 502,
            PlatformError::Unavailable(_) => 503,
            PlatformError::Internal(_) => 500,
        }
    }

    fn field(field: &str, message: impl Into<String>) -> PlatformError {
        let message = message.into();
        PlatformError::Invalid {
            fields: BTreeMap::from([(field.to_string(), message.clone())]),
            message: format!("{field}: {message}"),
        }
    }
}

impl From<StoreError> for PlatformError {
    fn from(e: StoreError) -> Self {
        PlatformError::Internal(e.to_string())
    }
}

impl From<JobError> for PlatformError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::QueueFull(_) => PlatformError::Unavailable(e.to_string()),
            JobError::NotFound(_) => PlatformError::NotFound(e.to_string()),
            JobError::Transition(_) => PlatformError::Conflict(e.to_string()),
            other => PlatformError::Internal(other.to_string()),
        }
    }
}

impl From<PveFailure> for PlatformError {
    fn from(e: PveFailure) -> Self {
        match e {
            PveFailure::Unavailable(m) => PlatformError::Unavailable(m),
            other => PlatformError::Upstream(other.to_string()),
        }
    }
}

/// Result of platform operations.
pub type Result<T> = std::result::Result<T, PlatformError>;

/// The user asking (owner of what they create).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub id: String,
    /// Login name.
    pub username: String,
}

impl User {
    /// The scheduler and other internal actors.
    pub fn system() -> User {
        User {
            id: "system".into(),
            username: "system".into(),
        }
    }
}

/// `POST /apps` input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeployRequest {
    /// Catalog entry.
    pub catalog_id: String,
    /// RFC 1123 label, unique.
    pub hostname: String,
    /// Node to use (else the one with most free memory).
    #[serde(default)]
    pub node: Option<String>,
    /// Resources (else the catalog minimum); each at least the catalog minimum.
    #[serde(default)]
    pub resources: Option<Resources>,
    /// Form fields / env values.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// Extra DNS names.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Power actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start.
    Start,
    /// Stop.
    Stop,
    /// Restart.
    Restart,
}

/// `POST /apps/{id}/backups` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BackupRequest {
    /// snapshot | suspend | stop.
    #[serde(default)]
    pub mode: BackupMode,
    /// zstd | gzip | lzo.
    #[serde(default)]
    pub compression: Compression,
}

/// A backup file of an app, found in the storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// Id: the file name (`vzdump-lxc-101-2026_11_22-02_00_00.tar.zst`).
    pub id: String,
    /// App.
    pub app_id: String,
    /// Full volume id.
    pub volid: String,
    /// Storage.
    pub storage: String,
    /// Node.
    pub node: String,
    /// Container.
    pub vmid: u32,
    /// Bytes.
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Format / compression.
    pub format: String,
    /// Notes.
    pub notes: Option<String>,
}

/// Backup statistics of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStats {
    /// Backups found.
    pub total_backups: usize,
    /// Sum of sizes, bytes.
    pub total_size: u64,
    /// Newest, unix seconds.
    pub newest: Option<i64>,
    /// Oldest, unix seconds.
    pub oldest: Option<i64>,
    /// Backup jobs running or queued.
    pub in_progress_backups: usize,
    /// Backup jobs failed.
    pub failed_backups: usize,
    /// Retention: backups kept per app.
    pub keep: u32,
}

/// A container on Proxmox that no app record manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmanaged {
    /// Host.
    pub host: String,
    /// Node.
    pub node: String,
    /// VMID.
    pub vmid: u32,
    /// CT host name.
    pub name: String,
    /// running / stopped.
    pub status: String,
    /// Tagged by Proximity (an orphan of ours rather than a foreign CT).
    pub ours: bool,
}

/// `POST /apps/adopt` input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AdoptRequest {
    /// Container.
    pub vmid: u32,
    /// Node it is on (searched on every host when absent).
    #[serde(default)]
    pub node: Option<String>,
    /// Hostname for the app (default: the CT's host name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Catalog entry it corresponds to (default `custom`).
    #[serde(default)]
    pub catalog_id: Option<String>,
    /// Port of its web UI (proxied).
    #[serde(default)]
    pub web_port: Option<u16>,
    /// Extra container ports to publish (default: found with `docker ps`).
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// Fixed commands users may run in an app's container.
pub const SAFE_COMMANDS: &[(&str, &str)] = &[
    ("logs", "last 200 lines of the compose logs"),
    ("ps", "compose services and their state"),
    ("disk_usage", "file system usage (df -h)"),
    ("restart_compose", "restart the compose services"),
    ("images", "images of the compose project"),
    ("uptime", "container uptime"),
];

/// Output of a safe command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// Command name.
    pub command: String,
    /// Exit status.
    pub status: i32,
    /// Output.
    pub stdout: String,
    /// Errors.
    pub stderr: String,
}

/// Where the platform gets hosts from.
enum HostSource {
    /// The registry of Proxmox hosts (production).
    Registry(crate::pve::Hosts),
    /// Fixed backends (tests, embedding).
    Fixed(BTreeMap<String, (Arc<dyn PveHost>, HostSettings)>),
}

struct Inner {
    ctx: Context,
    catalog: Arc<dyn AppCatalog>,
    hosts: HostSource,
    backends: Mutex<HashMap<String, Arc<dyn PveHost>>>,
    jobs: Jobs,
    place_lock: tokio::sync::Mutex<()>,
    template_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    http: Option<reqwest::Client>,
}

/// The facade used by the API: cheap to clone.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

/// A job step list per kind (names shown in the UI).
pub fn steps_of(kind: JobKind) -> &'static [StepSpec] {
    use StepSpec as S;
    const DEPLOY: &[StepSpec] = &[
        S::idem("validate"),
        S::idem("allocate"),
        S::idem("place"),
        S::idem("vmid"),
        S::idem("template"),
        S::idem("create_ct"),
        S::idem("features"),
        S::idem("start"),
        S::idem("install_docker"),
        S::idem("push_files"),
        S::idem("compose_up"),
        S::idem("discover_ip"),
        S::idem("health"),
    ];
    const START: &[StepSpec] = &[S::idem("start"), S::idem("discover_ip"), S::idem("health")];
    const STOP: &[StepSpec] = &[S::idem("stop")];
    const RESTART: &[StepSpec] = &[S::idem("reboot"), S::idem("discover_ip"), S::idem("health")];
    const DELETE: &[StepSpec] = &[S::idem("stop"), S::idem("destroy"), S::idem("release")];
    const CLONE: &[StepSpec] = &[
        S::idem("place"),
        S::idem("vmid"),
        S::idem("clone_ct"),
        S::idem("network"),
        S::idem("features"),
        S::idem("start"),
        S::idem("push_files"),
        S::idem("compose_up"),
        S::idem("discover_ip"),
        S::idem("health"),
    ];
    const UPDATE: &[StepSpec] = &[
        S::once("backup"),
        S::idem("pull"),
        S::idem("compose_up"),
        S::idem("health_or_rollback"),
    ];
    const BACKUP: &[StepSpec] = &[S::once("vzdump"), S::idem("retention")];
    const RESTORE: &[StepSpec] = &[S::idem("stop"), S::once("restore"), S::idem("start"), S::idem("discover_ip")];
    const DELETE_BACKUP: &[StepSpec] = &[S::idem("delete_volume")];
    const ADOPT: &[StepSpec] = &[S::idem("inspect"), S::idem("ports"), S::idem("discover_ip")];
    const RECONCILE: &[StepSpec] = &[S::idem("reconcile")];
    const JANITOR: &[StepSpec] = &[S::idem("janitor")];
    const UPDATE_CHECK: &[StepSpec] = &[S::idem("check")];
    match kind {
        JobKind::Deploy => DEPLOY,
        JobKind::Start => START,
        JobKind::Stop => STOP,
        JobKind::Restart => RESTART,
        JobKind::Delete => DELETE,
        JobKind::Clone => CLONE,
        JobKind::Update => UPDATE,
        JobKind::Backup => BACKUP,
        JobKind::Restore => RESTORE,
        JobKind::DeleteBackup => DELETE_BACKUP,
        JobKind::Adopt => ADOPT,
        JobKind::Reconcile => RECONCILE,
        JobKind::Janitor => JANITOR,
        JobKind::UpdateCheck => UPDATE_CHECK,
    }
}

fn busy_status(kind: JobKind) -> Option<AppStatus> {
    Some(match kind {
        JobKind::Deploy | JobKind::Adopt => AppStatus::Pending,
        JobKind::Start | JobKind::Stop | JobKind::Restart => AppStatus::Changing,
        JobKind::Delete => AppStatus::Deleting,
        JobKind::Clone => AppStatus::Pending,
        JobKind::Update => AppStatus::Updating,
        JobKind::Backup | JobKind::DeleteBackup => AppStatus::BackingUp,
        JobKind::Restore => AppStatus::Restoring,
        _ => return None,
    })
}

/// Statuses in which a job is working on the app.
pub fn is_busy(s: AppStatus) -> bool {
    matches!(
        s,
        AppStatus::Pending
            | AppStatus::Deploying
            | AppStatus::Changing
            | AppStatus::Updating
            | AppStatus::BackingUp
            | AppStatus::Restoring
            | AppStatus::Cloning
            | AppStatus::Deleting
    )
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// DHCP leases table of the network plane (read here to avoid handing out an address a
/// dynamic client holds). Values are read loosely: `{ip, mac, expires, ...}`.
const DHCP_LEASES: Table<serde_json::Value> = Table::new("dhcp_leases");

impl Platform {
    /// A platform over the registry of Proxmox hosts.
    pub fn new(ctx: Context, catalog: Arc<dyn AppCatalog>, hosts: crate::pve::Hosts, jobs: Jobs) -> Platform {
        Self::build(ctx, catalog, HostSource::Registry(hosts), jobs)
    }

    /// A platform over fixed backends (name → backend, settings).
    pub fn with_backends(
        ctx: Context,
        catalog: Arc<dyn AppCatalog>,
        backends: BTreeMap<String, (Arc<dyn PveHost>, HostSettings)>,
        jobs: Jobs,
    ) -> Platform {
        Self::build(ctx, catalog, HostSource::Fixed(backends), jobs)
    }

    fn build(ctx: Context, catalog: Arc<dyn AppCatalog>, hosts: HostSource, jobs: Jobs) -> Platform {
        jobs.set_metrics(ctx.metrics.clone());
        // reqwest is built without a default TLS provider; the process-wide one is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Without a system CA store (bare Alpine) the builder fails; `unwrap_or_default` then
        // called `Client::default()`, which panics. Fall back to an empty root store instead
        // (the health checks below speak plain HTTP to app containers anyway).
        let http = crate::pve::client::client_with_system_roots_or_empty(|| {
            reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(5))
        })
        .map_err(|e| tracing::error!(error = %e, "cannot build the HTTP client for app health checks"))
        .ok();
        Platform {
            inner: Arc::new(Inner {
                ctx,
                catalog,
                hosts,
                backends: Mutex::new(HashMap::new()),
                jobs,
                place_lock: tokio::sync::Mutex::new(()),
                template_locks: Mutex::new(HashMap::new()),
                http,
            }),
        }
    }

    /// The jobs engine.
    pub fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    /// The context.
    pub fn context(&self) -> &Context {
        &self.inner.ctx
    }

    /// The step runner to pass to [`Jobs::run`].
    pub fn handler(&self) -> Arc<dyn crate::jobs::Handler> {
        Arc::new(steps::Runner(self.clone()))
    }

    /// Record on their apps the jobs that start-up recovery failed (they never reach a
    /// worker, so the usual outcome handling does not run for them).
    pub fn recovered(&self, failed: &[Job]) {
        for j in failed {
            let Some(id) = &j.target else { continue };
            let err = j.error.clone();
            let r = self.update_app(id, |a| {
                if is_busy(a.status) {
                    a.status = AppStatus::Error;
                    a.error = err.clone();
                }
            });
            if let Err(e) = r {
                tracing::warn!(app = %id, error = %e, "cannot mark app of failed job");
            }
        }
    }

    // ----- hosts -----

    /// Names of the known hosts.
    pub fn host_names(&self) -> Result<Vec<String>> {
        match &self.inner.hosts {
            HostSource::Registry(h) => Ok(h
                .list()
                .map_err(|e| PlatformError::Internal(e.to_string()))?
                .into_iter()
                .map(|r| r.name)
                .collect()),
            HostSource::Fixed(m) => Ok(m.keys().cloned().collect()),
        }
    }

    /// Backend of a host.
    pub fn backend(&self, host: &str) -> Result<Arc<dyn PveHost>> {
        match &self.inner.hosts {
            HostSource::Fixed(m) => m
                .get(host)
                .map(|(b, _)| b.clone())
                .ok_or_else(|| PlatformError::NotFound(format!("Proxmox host `{host}` is not configured"))),
            HostSource::Registry(h) => {
                if let Some(b) = self.inner.backends.lock().unwrap_or_else(|e| e.into_inner()).get(host) {
                    return Ok(b.clone());
                }
                let b: Arc<dyn PveHost> = Arc::new(pvehost::PveBackend::new(h, host).map_err(|e| match e {
                    crate::pve::Error::NotFound { message } => PlatformError::NotFound(message),
                    other => PlatformError::Unavailable(other.to_string()),
                })?);
                self.inner
                    .backends
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(host.to_string(), b.clone());
                Ok(b)
            }
        }
    }

    /// Settings (bridge, storages) of a host.
    pub fn host_settings(&self, host: &str) -> Result<HostSettings> {
        match &self.inner.hosts {
            HostSource::Fixed(m) => m
                .get(host)
                .map(|(_, s)| s.clone())
                .ok_or_else(|| PlatformError::NotFound(format!("Proxmox host `{host}` is not configured"))),
            HostSource::Registry(h) => {
                let r = h
                    .get(host)
                    .map_err(|e| PlatformError::Internal(e.to_string()))?
                    .ok_or_else(|| PlatformError::NotFound(format!("Proxmox host `{host}` is not configured")))?;
                Ok(HostSettings {
                    bridge: r.bridge,
                    storage: r.storage,
                    ..HostSettings::default()
                })
            }
        }
    }

    // ----- reads -----

    /// One app.
    pub fn app(&self, id: &str) -> Result<App> {
        registry::get(&self.inner.ctx.store, id)?.ok_or_else(|| PlatformError::NotFound(format!("app {id} not found")))
    }

    /// All apps.
    pub fn apps(&self) -> Result<Vec<App>> {
        Ok(registry::list(&self.inner.ctx.store)?)
    }

    /// A job.
    pub fn job(&self, id: &str) -> Result<Job> {
        Ok(self.inner.jobs.get(id)?)
    }

    fn refresh_plan(&self) {
        if let Err(e) = self.inner.ctx.plan.refresh(&self.inner.ctx.store) {
            tracing::warn!(error = %e, "cannot refresh the network plan");
        }
    }

    /// Change an app record in one transaction, then refresh the plan.
    pub(crate) fn update_app(&self, id: &str, f: impl FnOnce(&mut App)) -> Result<App> {
        let app = self.inner.ctx.store.write(|tx| {
            let mut app = tx
                .get(APPS, id)?
                .ok_or_else(|| PlatformError::NotFound(format!("app {id} not found")))?;
            f(&mut app);
            app.updated_at = now_s();
            tx.put(APPS, id, &app)?;
            Ok::<App, PlatformError>(app)
        })?;
        self.refresh_plan();
        self.inner
            .ctx
            .events
            .publish("app.status", id, serde_json::json!({"status": app.status, "error": app.error}));
        Ok(app)
    }

    fn secrets_of(&self, id: &str) -> Result<BTreeMap<String, String>> {
        match self.inner.ctx.store.get(APP_SECRETS, id)? {
            None => Ok(BTreeMap::new()),
            Some(sealed) => {
                let plain = self
                    .inner
                    .ctx
                    .secrets
                    .open_str(&sealed)
                    .map_err(|e| PlatformError::Internal(format!("cannot open the secrets of app {id}: {e}")))?;
                serde_json::from_str(&plain).map_err(|e| PlatformError::Internal(format!("secrets of app {id} are corrupt: {e}")))
            }
        }
    }

    fn seal_values(&self, values: &BTreeMap<String, String>) -> String {
        self.inner.ctx.secrets.seal_str(&serde_json::to_string(values).unwrap_or_default())
    }

    // ----- allocation inside a transaction -----

    fn allocate(&self, tx: &mut WriteTx, mac: Option<String>, ports: usize) -> Result<(String, Ipv4Addr, Vec<u16>)> {
        let net = &self.inner.ctx.config.network;
        let apps: Vec<App> = tx.list(APPS)?.into_iter().map(|(_, a)| a).collect();
        let now = now_s();
        let mut taken_ip: HashSet<Ipv4Addr> = apps.iter().map(|a| a.ip).collect();
        let mut macs: Vec<String> = apps.iter().map(|a| a.mac.to_ascii_lowercase()).collect();
        for (key, lease) in tx.list(DHCP_LEASES)? {
            let expires = lease.get("expires").and_then(|v| v.as_i64()).unwrap_or(i64::MAX);
            if expires > now
                && let Ok(ip) = key.parse::<Ipv4Addr>()
            {
                taken_ip.insert(ip);
                if let Some(m) = lease.get("mac").and_then(|v| v.as_str()) {
                    macs.push(m.to_ascii_lowercase());
                }
            }
        }
        let ip = alloc::pick_ip(net.dhcp_range, net.gateway(), &taken_ip).ok_or_else(|| {
            PlatformError::Unavailable(format!(
                "no free address left in {}-{}; delete apps or widen network.dhcp_range",
                net.dhcp_range.0, net.dhcp_range.1
            ))
        })?;
        let mac = match mac {
            Some(m) => {
                if apps.iter().any(|a| a.mac.eq_ignore_ascii_case(&m)) {
                    return Err(PlatformError::Conflict(format!("MAC {m} already belongs to an app")));
                }
                m.to_ascii_lowercase()
            }
            None => registry::new_mac(&macs),
        };
        let taken_ports: HashSet<u16> = apps.iter().flat_map(|a| a.forwards.iter().map(|f| f.public)).collect();
        let ports = alloc::pick_ports(net.port_forward_range, &taken_ports, ports).ok_or_else(|| {
            PlatformError::Unavailable(format!(
                "no free public ports left in {}-{}",
                net.port_forward_range.0, net.port_forward_range.1
            ))
        })?;
        Ok((mac, ip, ports))
    }

    fn check_hostname(&self, tx: &mut WriteTx, hostname: &str, aliases: &[String]) -> Result<()> {
        let apps: Vec<App> = tx.list(APPS)?.into_iter().map(|(_, a)| a).collect();
        let mut names: HashSet<String> = HashSet::new();
        for a in &apps {
            names.insert(a.hostname.to_ascii_lowercase());
            names.extend(a.aliases.iter().map(|s| s.to_ascii_lowercase()));
        }
        if names.contains(&hostname.to_ascii_lowercase()) {
            return Err(PlatformError::Conflict(format!(
                "hostname `{hostname}` is already used by another app"
            )));
        }
        for a in aliases {
            if names.contains(&a.to_ascii_lowercase()) || a.eq_ignore_ascii_case(hostname) {
                return Err(PlatformError::Conflict(format!("alias `{a}` is already used")));
            }
        }
        Ok(())
    }

    fn validate_names(hostname: &str, aliases: &[String]) -> Result<()> {
        crate::validate::hostname(hostname).map_err(|m| PlatformError::field("hostname", m))?;
        for (i, a) in aliases.iter().enumerate() {
            crate::validate::dns_name(a).map_err(|m| PlatformError::field(&format!("aliases[{i}]"), m))?;
        }
        Ok(())
    }

    fn submit_for_app(&self, kind: JobKind, app: &App, owner: &str, params: serde_json::Value, extra_locks: &[String]) -> Result<Job> {
        let mut params = params;
        if let serde_json::Value::Object(m) = &mut params {
            m.insert("prev_status".into(), serde_json::to_value(app.status).unwrap_or_default());
        }
        let job = Jobs::build(kind, Some(app.id.clone()), extra_locks, owner, steps_of(kind), params);
        let jid = job.id.clone();
        let app_id = app.id.clone();
        let (job, _) = self.inner.jobs.submit_with(job, |tx| {
            let mut app = tx
                .get(APPS, &app_id)?
                .ok_or_else(|| PlatformError::NotFound(format!("app {app_id} not found")))?;
            if let Some(jid) = &app.job_id
                && is_busy(app.status)
                && let Some(j) = tx.get(crate::jobs::JOBS, jid)?
                && !j.state.is_terminal()
            {
                return Err(PlatformError::Conflict(format!(
                    "app {} is busy ({}, job {jid}); wait for it to finish",
                    app.hostname,
                    app.status.as_str()
                )));
            }
            if let Some(s) = busy_status(kind) {
                app.status = s;
            }
            app.job_id = Some(jid);
            app.error = None;
            app.updated_at = now_s();
            tx.put(APPS, &app_id, &app)?;
            Ok::<(), PlatformError>(())
        })?;
        self.refresh_plan();
        if let Some(s) = busy_status(kind) {
            // Watchers (e.g. open web consoles, which end when a delete starts) learn of the
            // busy status now, not when the first step changes it.
            self.inner
                .ctx
                .events
                .publish("app.status", &app.id, serde_json::json!({"status": s, "error": null}));
        }
        Ok(job)
    }

    // ----- deploy -----

    /// Validate, reserve address/MAC/ports and the hostname, and queue the deploy job.
    pub async fn deploy(&self, owner: &User, req: DeployRequest) -> Result<(App, Job)> {
        self.deploy_with_secrets(owner, req).await.map(|(app, job, _)| (app, job))
    }

    /// [`Self::deploy`], also returning the secrets the catalog entry generated for this app
    /// (field → value). They are stored sealed; this is the one moment they exist in clear,
    /// so the caller shows them to the user once and never logs them.
    pub async fn deploy_with_secrets(&self, owner: &User, req: DeployRequest) -> Result<(App, Job, BTreeMap<String, String>)> {
        Self::validate_names(&req.hostname, &req.aliases)?;
        let entry = self
            .inner
            .catalog
            .app(&req.catalog_id)
            .ok_or_else(|| PlatformError::field("catalog_id", format!("`{}` is not in the catalog", req.catalog_id)))?;
        // Without explicit resources: the admin's defaults (settings), raised to what the
        // catalog entry needs.
        let resources = match req.resources {
            Some(r) => r,
            None => {
                let d = crate::settings::resources(&self.inner.ctx.store, &self.inner.ctx.config)?;
                registry::Resources {
                    cores: d.cores.max(entry.min.cores),
                    memory_mb: d.memory_mb.max(entry.min.memory_mb),
                    disk_gb: d.disk_gb.max(entry.min.disk_gb),
                }
            }
        };
        let https_redirect = crate::settings::network(&self.inner.ctx.store, &self.inner.ctx.config)?.https_redirect;
        let mut fields = BTreeMap::new();
        if resources.cores < entry.min.cores {
            fields.insert("resources.cores".to_string(), format!("at least {} required", entry.min.cores));
        }
        if resources.memory_mb < entry.min.memory_mb {
            fields.insert(
                "resources.memory_mb".to_string(),
                format!("at least {} MiB required", entry.min.memory_mb),
            );
        }
        if resources.disk_gb < entry.min.disk_gb {
            fields.insert(
                "resources.disk_gb".to_string(),
                format!("at least {} GiB required", entry.min.disk_gb),
            );
        }
        if !fields.is_empty() {
            return Err(PlatformError::Invalid {
                message: "resources are below the catalog minimum".into(),
                fields,
            });
        }
        if let Some(node) = &req.node
            && node.is_empty()
        {
            return Err(PlatformError::field("node", "must not be empty"));
        }
        if self.host_names()?.is_empty() {
            return Err(PlatformError::Unavailable("no Proxmox host is configured; add one first".into()));
        }
        // Trial render: bad values are a 422 now, not a failed job later. Secrets generated
        // here are kept so every later render of this app reuses them.
        let domain = self.inner.ctx.config.network.domain.clone();
        let rendered = self
            .inner
            .catalog
            .render(&entry.id, &req.hostname, &domain, &req.values)
            .map_err(|f| PlatformError::Invalid {
                message: f.message,
                fields: f.fields,
            })?;
        let mut values = req.values.clone();
        values.extend(rendered.generated_secrets.clone());
        let sealed = self.seal_values(&values);

        let id = registry::new_id();
        let params = serde_json::json!({"node": req.node});
        let job = Jobs::build(JobKind::Deploy, Some(id.clone()), &[], &owner.id, steps_of(JobKind::Deploy), params);
        let job_id = job.id.clone();
        let (job, app) = self.inner.jobs.submit_with(job, |tx| {
            self.check_hostname(tx, &req.hostname, &req.aliases)?;
            let (mac, ip, ports) = self.allocate(tx, None, entry.ports.len())?;
            let now = now_s();
            let app = App {
                id: id.clone(),
                hostname: req.hostname.clone(),
                catalog_id: entry.id.clone(),
                catalog_version: entry.version.clone(),
                owner: owner.id.clone(),
                status: AppStatus::Pending,
                host: None,
                node: None,
                vmid: None,
                mac,
                ip,
                upstream_ip: None,
                web_port: entry.web_port,
                forwards: entry
                    .ports
                    .iter()
                    .zip(ports)
                    .map(|((container, proto), public)| PortForward {
                        public,
                        container: *container,
                        proto: *proto,
                    })
                    .collect(),
                aliases: req.aliases.iter().map(|a| a.to_ascii_lowercase()).collect(),
                https_redirect,
                resources,
                settings: BTreeMap::new(),
                error: None,
                job_id: Some(job_id.clone()),
                adopted: false,
                created_at: now,
                updated_at: now,
            };
            tx.put(APPS, &id, &app)?;
            tx.put(APP_SECRETS, &id, &sealed)?;
            Ok::<App, PlatformError>(app)
        })?;
        self.refresh_plan();
        Ok((app, job, rendered.generated_secrets))
    }

    /// Re-run an app's failed job from its failed step.
    pub async fn retry(&self, app_id: &str) -> Result<Job> {
        let app = self.app(app_id)?;
        let jid = app
            .job_id
            .clone()
            .ok_or_else(|| PlatformError::Conflict(format!("app {} has no job to retry", app.hostname)))?;
        let job = self.inner.jobs.get(&jid)?;
        if !matches!(job.state, crate::jobs::JobState::Failed | crate::jobs::JobState::Cancelled) {
            return Err(PlatformError::Conflict(format!(
                "job {jid} is {}; only failed jobs can be retried",
                job.state.as_str()
            )));
        }
        self.update_app(app_id, |a| {
            a.status = busy_status(job.kind).unwrap_or(a.status);
            a.error = None;
        })?;
        Ok(self.inner.jobs.retry(&jid)?)
    }

    // ----- lifecycle -----

    fn app_with_ct(&self, id: &str) -> Result<App> {
        let app = self.app(id)?;
        if app.vmid.is_none() || app.node.is_none() || app.host.is_none() {
            return Err(PlatformError::Conflict(format!(
                "app {} has no container yet (status {}); retry or delete it",
                app.hostname,
                app.status.as_str()
            )));
        }
        Ok(app)
    }

    /// Start, stop or restart.
    pub async fn action(&self, owner: &User, app_id: &str, action: Action) -> Result<Job> {
        let app = self.app_with_ct(app_id)?;
        let kind = match action {
            Action::Start => JobKind::Start,
            Action::Stop => JobKind::Stop,
            Action::Restart => JobKind::Restart,
        };
        self.submit_for_app(kind, &app, &owner.id, serde_json::json!({}), &[])
    }

    /// Destroy the container (purge) and release address, names, routes and ports.
    /// Backups stay unless `purge_backups`.
    pub async fn delete(&self, owner: &User, app_id: &str, purge_backups: bool) -> Result<Job> {
        let app = self.app(app_id)?;
        self.submit_for_app(
            JobKind::Delete,
            &app,
            &owner.id,
            serde_json::json!({"purge_backups": purge_backups}),
            &[],
        )
    }

    /// Clone an app to a new hostname (new MAC, address and ports).
    pub async fn clone_app(&self, owner: &User, app_id: &str, new_hostname: &str) -> Result<(App, Job)> {
        Self::validate_names(new_hostname, &[])?;
        let src = self.app_with_ct(app_id)?;
        if is_busy(src.status) {
            return Err(PlatformError::Conflict(format!(
                "app {} is busy ({})",
                src.hostname,
                src.status.as_str()
            )));
        }
        let secrets = self.secrets_of(&src.id)?;
        let sealed = self.seal_values(&secrets);
        let id = registry::new_id();
        let job = Jobs::build(
            JobKind::Clone,
            Some(id.clone()),
            std::slice::from_ref(&src.id),
            &owner.id,
            steps_of(JobKind::Clone),
            serde_json::json!({"source": src.id, "node": src.node}),
        );
        let job_id = job.id.clone();
        let (job, app) = self.inner.jobs.submit_with(job, |tx| {
            self.check_hostname(tx, new_hostname, &[])?;
            let (mac, ip, ports) = self.allocate(tx, None, src.forwards.len())?;
            let now = now_s();
            let app = App {
                id: id.clone(),
                hostname: new_hostname.to_string(),
                owner: owner.id.clone(),
                status: AppStatus::Pending,
                host: None,
                node: None,
                vmid: None,
                mac,
                ip,
                upstream_ip: None,
                forwards: src
                    .forwards
                    .iter()
                    .zip(ports)
                    .map(|(f, public)| PortForward { public, ..*f })
                    .collect(),
                aliases: vec![],
                error: None,
                job_id: Some(job_id.clone()),
                adopted: false,
                created_at: now,
                updated_at: now,
                ..src.clone()
            };
            tx.put(APPS, &id, &app)?;
            tx.put(APP_SECRETS, &id, &sealed)?;
            Ok::<App, PlatformError>(app)
        })?;
        self.refresh_plan();
        Ok((app, job))
    }

    /// Update: backup, `docker compose pull` + `up -d`, health, roll back when unhealthy.
    pub async fn update(&self, owner: &User, app_id: &str) -> Result<Job> {
        let app = self.app_with_ct(app_id)?;
        if app.status != AppStatus::Running {
            return Err(PlatformError::Conflict(format!(
                "app {} must be running to update (it is {})",
                app.hostname,
                app.status.as_str()
            )));
        }
        self.submit_for_app(JobKind::Update, &app, &owner.id, serde_json::json!({}), &[])
    }

    // ----- backups -----

    /// Queue a backup.
    pub async fn create_backup(&self, owner: &User, app_id: &str, req: BackupRequest) -> Result<Job> {
        let app = self.app_with_ct(app_id)?;
        self.submit_for_app(
            JobKind::Backup,
            &app,
            &owner.id,
            serde_json::json!({"mode": req.mode, "compression": req.compression}),
            &[],
        )
    }

    /// Backups of an app found in the backup storage of its node, newest first.
    pub async fn list_backups(&self, app_id: &str) -> Result<Vec<Backup>> {
        let app = self.app_with_ct(app_id)?;
        let (host, node, vmid) = (
            app.host.clone().unwrap_or_default(),
            app.node.clone().unwrap_or_default(),
            app.vmid.unwrap_or(0),
        );
        let settings = self.host_settings(&host)?;
        let vols = self
            .backend(&host)?
            .storage_content(&node, &settings.backup_storage, "backup")
            .await?;
        let mut v: Vec<Backup> = vols
            .into_iter()
            .filter(|v| v.vmid == Some(vmid) || (v.vmid.is_none() && v.volid.contains(&format!("vzdump-lxc-{vmid}-"))))
            .map(|v| Backup {
                id: v.volid.rsplit('/').next().unwrap_or(&v.volid).to_string(),
                app_id: app.id.clone(),
                storage: v.volid.split(':').next().unwrap_or(&settings.backup_storage).to_string(),
                volid: v.volid,
                node: node.clone(),
                vmid,
                size: v.size,
                created_at: v.ctime,
                format: v.format,
                notes: v.notes,
            })
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(v)
    }

    /// One backup.
    pub async fn get_backup(&self, app_id: &str, backup_id: &str) -> Result<Backup> {
        self.list_backups(app_id)
            .await?
            .into_iter()
            .find(|b| b.id == backup_id || b.volid == backup_id)
            .ok_or_else(|| PlatformError::NotFound(format!("backup {backup_id} of app {app_id} not found")))
    }

    /// Restore a backup over the app's container (stops it first; destructive).
    pub async fn restore_backup(&self, owner: &User, app_id: &str, backup_id: &str) -> Result<Job> {
        let b = self.get_backup(app_id, backup_id).await?;
        let app = self.app(app_id)?;
        self.submit_for_app(JobKind::Restore, &app, &owner.id, serde_json::json!({"volid": b.volid}), &[])
    }

    /// Delete a backup file.
    pub async fn delete_backup(&self, owner: &User, app_id: &str, backup_id: &str) -> Result<Job> {
        let b = self.get_backup(app_id, backup_id).await?;
        let app = self.app(app_id)?;
        self.submit_for_app(
            JobKind::DeleteBackup,
            &app,
            &owner.id,
            serde_json::json!({"volid": b.volid, "storage": b.storage}),
            &[],
        )
    }

    /// Backup statistics.
    pub async fn backup_stats(&self, app_id: &str) -> Result<BackupStats> {
        let list = self.list_backups(app_id).await?;
        let jobs = self.inner.jobs.list(Some(app_id))?;
        let backup_jobs = jobs.iter().filter(|j| j.kind == JobKind::Backup);
        let (mut running, mut failed) = (0, 0);
        for j in backup_jobs {
            match j.state {
                crate::jobs::JobState::Queued | crate::jobs::JobState::Running => running += 1,
                crate::jobs::JobState::Failed => failed += 1,
                _ => {}
            }
        }
        Ok(BackupStats {
            total_backups: list.len(),
            total_size: list.iter().map(|b| b.size).sum(),
            newest: list.iter().map(|b| b.created_at).max(),
            oldest: list.iter().map(|b| b.created_at).min(),
            in_progress_backups: running,
            failed_backups: failed,
            keep: self.keep_backups(),
        })
    }

    /// Backups kept per app: the runtime setting (default: `schedule.keep_backups`).
    pub fn keep_backups(&self) -> u32 {
        let ctx = &self.inner.ctx;
        crate::settings::schedule(&ctx.store, &ctx.config).map_or(ctx.config.schedule.keep_backups, |s| s.keep_backups)
    }

    // ----- inspection -----

    async fn exec_in(&self, app: &App, argv: &[&str]) -> Result<backend::ExecOut> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        Ok(self
            .backend(app.host.as_deref().unwrap_or_default())?
            .pct_exec(app.vmid.unwrap_or(0), &argv)
            .await?)
    }

    /// Last `tail` lines of the compose logs.
    pub async fn logs(&self, app_id: &str, tail: u32) -> Result<String> {
        let app = self.app_with_ct(app_id)?;
        let dir = project_dir(&app.hostname);
        let tail = tail.clamp(1, 10_000).to_string();
        let out = self
            .exec_in(
                &app,
                &[
                    "docker",
                    "compose",
                    "--project-directory",
                    &dir,
                    "logs",
                    "--tail",
                    &tail,
                    "--no-color",
                ],
            )
            .await?;
        if out.status != 0 {
            return Err(PlatformError::Upstream(format!(
                "docker compose logs failed: {}",
                crate::jobs::tail(&out.combined(), 600)
            )));
        }
        Ok(out.stdout)
    }

    /// RRD metrics of the container (`hour|day|week|month|year`).
    pub async fn metrics(&self, app_id: &str, timeframe: &str) -> Result<serde_json::Value> {
        if !matches!(timeframe, "hour" | "day" | "week" | "month" | "year") {
            return Err(PlatformError::field("timeframe", "must be hour, day, week, month or year"));
        }
        let app = self.app_with_ct(app_id)?;
        Ok(self
            .backend(app.host.as_deref().unwrap_or_default())?
            .rrddata(app.node.as_deref().unwrap_or_default(), app.vmid.unwrap_or(0), timeframe)
            .await?)
    }

    /// Run one of [`SAFE_COMMANDS`] (never arbitrary input).
    pub async fn exec_safe(&self, app_id: &str, command: &str) -> Result<CommandOutput> {
        let app = self.app_with_ct(app_id)?;
        let dir = project_dir(&app.hostname);
        let argv: Vec<&str> = match command {
            "logs" => vec![
                "docker",
                "compose",
                "--project-directory",
                &dir,
                "logs",
                "--tail",
                "200",
                "--no-color",
            ],
            "ps" => vec!["docker", "compose", "--project-directory", &dir, "ps"],
            "disk_usage" => vec!["df", "-h"],
            "restart_compose" => vec!["docker", "compose", "--project-directory", &dir, "restart"],
            "images" => vec!["docker", "compose", "--project-directory", &dir, "images"],
            "uptime" => vec!["uptime"],
            other => {
                return Err(PlatformError::field(
                    "command",
                    format!(
                        "`{other}` is not allowed; choose one of {}",
                        SAFE_COMMANDS.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        };
        let out = self.exec_in(&app, &argv).await?;
        Ok(CommandOutput {
            command: command.to_string(),
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// Run `docker compose <sub>` in an app's project; true on exit status 0.
    pub(crate) async fn exec_safe_argv(&self, app: &App, sub: &str) -> Result<bool> {
        let dir = project_dir(&app.hostname);
        let out = self.exec_in(app, &["docker", "compose", "--project-directory", &dir, sub]).await?;
        Ok(out.status == 0)
    }

    // ----- adoption -----

    /// Containers on every online node of every host that no app manages.
    pub async fn discover(&self) -> Result<Vec<Unmanaged>> {
        let apps = self.apps()?;
        let managed: HashSet<(String, u32)> = apps.iter().filter_map(|a| Some((a.node.clone()?, a.vmid?))).collect();
        let mut out = Vec::new();
        for host in self.host_names()? {
            let b = self.backend(&host)?;
            let nodes = match b.nodes().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(host = %host, error = %e, "cannot list nodes for discovery");
                    continue;
                }
            };
            for n in nodes.into_iter().filter(|n| n.online) {
                let cts = match b.list_cts(&n.name).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(node = %n.name, error = %e, "cannot list containers");
                        continue;
                    }
                };
                for c in cts {
                    if managed.contains(&(n.name.clone(), c.vmid)) {
                        continue;
                    }
                    let ours = match b.ct_config(&n.name, c.vmid).await {
                        Ok(cfg) => cfg.get("description").is_some_and(|d| d.contains("proximity app")),
                        Err(_) => false,
                    };
                    out.push(Unmanaged {
                        host: host.clone(),
                        node: n.name.clone(),
                        vmid: c.vmid,
                        name: c.name.clone(),
                        status: c.status.clone(),
                        ours,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.node, a.vmid).cmp(&(&b.node, b.vmid)));
        Ok(out)
    }

    /// Import an unmanaged container as an app (keeps its MAC, reserves an address,
    /// publishes its ports).
    pub async fn adopt(&self, owner: &User, req: AdoptRequest) -> Result<(App, Job)> {
        let found = self
            .discover()
            .await?
            .into_iter()
            .find(|u| u.vmid == req.vmid && req.node.as_ref().is_none_or(|n| *n == u.node))
            .ok_or_else(|| PlatformError::NotFound(format!("no unmanaged container {} found", req.vmid)))?;
        let hostname = req.hostname.clone().unwrap_or_else(|| found.name.to_ascii_lowercase());
        Self::validate_names(&hostname, &[])?;
        let b = self.backend(&found.host)?;
        let cfg = b.ct_config(&found.node, found.vmid).await?;
        let mac = cfg
            .get("net0")
            .and_then(|n| net0_field(n, "hwaddr"))
            .map(|m| m.to_ascii_lowercase());
        let resources = Resources {
            cores: cfg.get("cores").and_then(|v| v.parse().ok()).unwrap_or(1),
            memory_mb: cfg.get("memory").and_then(|v| v.parse().ok()).unwrap_or(512),
            disk_gb: cfg
                .get("rootfs")
                .and_then(|r| net0_field(r, "size"))
                .and_then(|s| s.trim_end_matches('G').parse().ok())
                .unwrap_or(0),
        };
        let id = registry::new_id();
        let job = Jobs::build(
            JobKind::Adopt,
            Some(id.clone()),
            &[],
            &owner.id,
            steps_of(JobKind::Adopt),
            serde_json::json!({"ports": req.ports}),
        );
        let job_id = job.id.clone();
        let (job, app) = self.inner.jobs.submit_with(job, |tx| {
            self.check_hostname(tx, &hostname, &[])?;
            let (mac, ip, _) = self.allocate(tx, mac, 0)?;
            let now = now_s();
            let app = App {
                id: id.clone(),
                hostname: hostname.clone(),
                catalog_id: req.catalog_id.clone().unwrap_or_else(|| "custom".into()),
                catalog_version: String::new(),
                owner: owner.id.clone(),
                status: AppStatus::Pending,
                host: Some(found.host.clone()),
                node: Some(found.node.clone()),
                vmid: Some(found.vmid),
                mac,
                ip,
                upstream_ip: None,
                web_port: req.web_port,
                forwards: vec![],
                aliases: vec![],
                https_redirect: true,
                resources,
                settings: BTreeMap::new(),
                error: None,
                job_id: Some(job_id.clone()),
                adopted: true,
                created_at: now,
                updated_at: now,
            };
            tx.put(APPS, &id, &app)?;
            Ok::<App, PlatformError>(app)
        })?;
        self.refresh_plan();
        Ok((app, job))
    }

    /// Remove an app record that never got a container (failed deploy) — or whose container
    /// is gone — releasing its reservation. Use `delete` for apps with a container.
    pub async fn cleanup(&self, app_id: &str) -> Result<()> {
        let app = self.app(app_id)?;
        if let Some(jid) = &app.job_id
            && let Ok(j) = self.inner.jobs.get(jid)
            && !j.state.is_terminal()
        {
            return Err(PlatformError::Conflict(format!("job {jid} is still {}", j.state.as_str())));
        }
        if app.vmid.is_some() && app.status != AppStatus::Missing {
            // Make sure no container of ours is left behind.
            let host = app.host.clone().unwrap_or_default();
            let node = app.node.clone().unwrap_or_default();
            if let (Ok(b), Some(vmid)) = (self.backend(&host), app.vmid)
                && let Ok(cfg) = b.ct_config(&node, vmid).await
                && cfg.get("description").is_some_and(|d| d.contains(&app.id))
            {
                let _ = b.stop_ct(&node, vmid).await;
                b.delete_ct(&node, vmid).await?;
            }
        }
        self.inner.ctx.store.write(|tx| {
            tx.delete(APPS, app_id)?;
            tx.delete(APP_SECRETS, app_id)?;
            Ok::<(), StoreError>(())
        })?;
        self.refresh_plan();
        Ok(())
    }

    /// Promised memory on each node (apps placed there whose CT is not up yet), bytes.
    fn pending_memory(&self) -> Result<BTreeMap<String, u64>> {
        let mut m = BTreeMap::new();
        for a in self.apps()? {
            if let Some(node) = &a.node
                && matches!(a.status, AppStatus::Pending | AppStatus::Deploying)
                && !a.settings.contains_key("_started")
            {
                *m.entry(node.clone()).or_insert(0) += (a.resources.memory_mb as u64) << 20;
            }
        }
        Ok(m)
    }

    fn promised_vmids(&self, host: &str) -> Result<BTreeSet<u32>> {
        Ok(self
            .apps()?
            .iter()
            .filter(|a| a.host.as_deref() == Some(host))
            .filter_map(|a| a.vmid)
            .collect())
    }

    fn template_lock(&self, node: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .template_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(node.to_string())
            .or_default()
            .clone()
    }
}

/// A `key=value` field of a PVE property string (`name=eth0,hwaddr=...,ip=dhcp`).
pub fn net0_field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    s.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then_some(v.trim())
    })
}

/// Build `net0` for our containers.
pub fn net0(bridge: &str, mac: &str) -> String {
    format!("name=eth0,bridge={bridge},hwaddr={},ip=dhcp,type=veth", mac.to_ascii_uppercase())
}

/// Parse `docker ps` output for published ports (`0.0.0.0:8080->80/tcp`), returning the
/// host-side ports.
pub fn published_ports(docker_ps: &str) -> Vec<(u16, Proto)> {
    let mut out = Vec::new();
    for word in docker_ps.split(|c: char| c.is_whitespace() || c == ',') {
        let Some((left, right)) = word.split_once("->") else { continue };
        let Some(port) = left.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        let proto = if right.ends_with("/udp") { Proto::Udp } else { Proto::Tcp };
        if !out.contains(&(port, proto)) {
            out.push((port, proto));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_strings() {
        let n = net0("proximity-lan", "02:50:58:aa:bb:cc");
        assert_eq!(n, "name=eth0,bridge=proximity-lan,hwaddr=02:50:58:AA:BB:CC,ip=dhcp,type=veth");
        assert_eq!(net0_field(&n, "hwaddr"), Some("02:50:58:AA:BB:CC"));
        assert_eq!(net0_field("local-lvm:vm-100-disk-0,size=8G", "size"), Some("8G"));
        assert_eq!(net0_field(&n, "gw"), None);
    }

    #[test]
    fn docker_ps_ports() {
        let out = "CONTAINER ID IMAGE PORTS NAMES\nabc nginx 0.0.0.0:8080->80/tcp, :::8080->80/tcp web\ndef x 127.0.0.1:9000->9000/udp y\n";
        assert_eq!(published_ports(out), vec![(8080, Proto::Tcp), (9000, Proto::Udp)]);
    }

    struct NoCatalog;
    impl AppCatalog for NoCatalog {
        fn app(&self, _: &str) -> Option<CatalogApp> {
            None
        }
        fn render(&self, _: &str, _: &str, _: &str, _: &BTreeMap<String, String>) -> std::result::Result<RenderedApp, RenderFailure> {
            Err(RenderFailure {
                fields: BTreeMap::new(),
                message: "none".into(),
            })
        }
    }

    #[test]
    fn allocation_avoids_apps_and_active_dhcp_leases() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let store = crate::store::Store::open(&config.db_path()).unwrap();
        let ctx = Context::new(config, store).unwrap();
        let jobs = Jobs::new(ctx.store.clone(), ctx.events.clone(), &ctx.config.jobs);
        let p = Platform::with_backends(ctx.clone(), Arc::new(NoCatalog), BTreeMap::new(), jobs);
        let far = now_s() + 3600;
        ctx.store
            .put(
                DHCP_LEASES,
                "10.20.0.250",
                &serde_json::json!({"ip": "10.20.0.250", "mac": "aa:bb:cc:00:00:01", "expires": far}),
            )
            .unwrap();
        ctx.store
            .put(
                DHCP_LEASES,
                "10.20.0.249",
                &serde_json::json!({"ip": "10.20.0.249", "mac": "aa:bb:cc:00:00:02", "expires": 5}),
            )
            .unwrap();
        let (mac, ip, ports) = ctx.store.write(|tx| p.allocate(tx, None, 2)).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 20, 0, 249), "active lease skipped, expired one reused");
        assert!(mac.starts_with("02:50:58:"));
        assert_eq!(ports, vec![30000, 30001]);
        let e = ctx.store.write(|tx| p.allocate(tx, Some("AA:BB:CC:00:00:09".into()), 0)).unwrap();
        assert_eq!(e.0, "aa:bb:cc:00:00:09");
    }

    #[test]
    fn errors_map_to_http() {
        assert_eq!(PlatformError::from(JobError::QueueFull(3)).status(), 503);
        assert_eq!(PlatformError::field("hostname", "bad").status(), 422);
        assert_eq!(PlatformError::from(PveFailure::Unavailable("x".into())).status(), 503);
        assert_eq!(PlatformError::from(PveFailure::Other("x".into())).status(), 502);
    }
}
