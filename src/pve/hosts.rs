//! Registry of Proxmox hosts (table `pve_hosts`): URL, credentials (sealed with the
//! appliance SecretBox), TLS pin, SSH endpoint, and the nodes last seen with their online
//! state and memory. Placement picks the online node with the most free memory unless the
//! caller names one ([`choose_node`], pure).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{Auth, Client, ClientConfig, Tls};
use super::error::Error;
use super::ssh::{RedbHostKeys, SshExec, SshKey};
use super::types::NodeInfo;
use crate::config::PveHostConfig;
use crate::secrets::SecretBox;
use crate::store::{Store, Table};

/// The hosts table.
pub const HOSTS: Table<HostRecord> = Table::new("pve_hosts");

/// Stored credentials; secrets are sealed (`v1:...`), never plaintext.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredAuth {
    /// API token.
    Token {
        /// `user@realm!tokenid`.
        id: String,
        /// Sealed secret.
        sealed_secret: String,
    },
    /// Ticket login.
    Ticket {
        /// `user@realm`.
        user: String,
        /// Sealed password.
        sealed_password: String,
    },
}

impl std::fmt::Debug for StoredAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredAuth::Token { id, .. } => write!(f, "Token({id})"),
            StoredAuth::Ticket { user, .. } => write!(f, "Ticket({user})"),
        }
    }
}

/// A node of a host as last synced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    /// Node name.
    pub node: String,
    /// Online at last sync.
    pub online: bool,
    /// Used memory bytes.
    pub mem: u64,
    /// Total memory bytes.
    pub maxmem: u64,
    /// CPU count.
    pub maxcpu: u64,
    /// CPU usage 0..1.
    pub cpu: f64,
    /// Certificate fingerprint reported by the cluster.
    pub ssl_fingerprint: Option<String>,
}

impl NodeRecord {
    /// Free memory bytes.
    pub fn free_mem(&self) -> u64 {
        self.maxmem.saturating_sub(self.mem)
    }
}

impl From<&NodeInfo> for NodeRecord {
    fn from(n: &NodeInfo) -> Self {
        NodeRecord {
            node: n.node.clone(),
            online: n.is_online(),
            mem: n.mem.unwrap_or(0),
            maxmem: n.maxmem.unwrap_or(0),
            maxcpu: n.maxcpu.unwrap_or(0),
            cpu: n.cpu.unwrap_or(0.0),
            ssl_fingerprint: n.ssl_fingerprint.clone(),
        }
    }
}

/// One registered Proxmox host (a standalone node or a cluster entry point).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostRecord {
    /// Unique name.
    pub name: String,
    /// API base URL.
    pub url: String,
    /// Credentials (sealed).
    pub auth: StoredAuth,
    /// Pinned TLS fingerprint.
    pub fingerprint: Option<String>,
    /// PEM CA bundle instead of a pin.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// SSH endpoint `host:port` (default: URL host, port 22).
    pub ssh: Option<String>,
    /// SSH user.
    pub ssh_user: String,
    /// Bridge for app containers.
    pub bridge: String,
    /// Storage for container root disks.
    pub storage: String,
    /// Nodes at last sync.
    #[serde(default)]
    pub nodes: Vec<NodeRecord>,
    /// Reachable at last sync.
    #[serde(default)]
    pub online: bool,
    /// Unix time of the last successful sync.
    #[serde(default)]
    pub last_sync: Option<i64>,
    /// Error of the last failed sync.
    #[serde(default)]
    pub last_error: Option<String>,
    /// `config` (seeded from the config file) or `api`.
    #[serde(default)]
    pub source: String,
}

impl HostRecord {
    /// Identity used (`root@pam!proximity`, `root@pam`).
    pub fn identity(&self) -> &str {
        match &self.auth {
            StoredAuth::Token { id, .. } => id,
            StoredAuth::Ticket { user, .. } => user,
        }
    }

    /// SSH endpoint: the configured one or `<url host>:22`.
    pub fn ssh_endpoint(&self) -> Result<String, Error> {
        if let Some(s) = &self.ssh {
            return Ok(s.clone());
        }
        let url = reqwest::Url::parse(&self.url).map_err(|e| Error::Invalid(format!("host {}: bad URL: {e}", self.name)))?;
        let host = url
            .host_str()
            .ok_or_else(|| Error::Invalid(format!("host {}: URL has no host", self.name)))?;
        Ok(if host.contains(':') {
            format!("[{host}]:22")
        } else {
            format!("{host}:22")
        })
    }
}

/// Input for adding/updating a host; secrets in plaintext here, sealed on save.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// Unique name.
    pub name: String,
    /// API base URL.
    pub url: String,
    /// Credentials.
    pub auth: Auth,
    /// TLS pin.
    pub fingerprint: Option<String>,
    /// CA bundle.
    pub ca_pem: Option<String>,
    /// SSH endpoint.
    pub ssh: Option<String>,
    /// SSH user.
    pub ssh_user: String,
    /// Bridge.
    pub bridge: String,
    /// Storage.
    pub storage: String,
}

impl HostSpec {
    /// From a `[[pve_hosts]]` config entry.
    pub fn from_config(h: &PveHostConfig) -> Result<HostSpec, Error> {
        let auth = match (&h.token_id, &h.token_secret, &h.user, &h.password) {
            (Some(id), Some(secret), _, _) => Auth::Token {
                id: id.clone(),
                secret: secret.clone(),
            },
            (_, _, Some(user), Some(password)) => Auth::Ticket {
                user: user.clone(),
                password: password.clone(),
            },
            _ => {
                return Err(Error::Invalid(format!(
                    "pve host {}: needs token_id+token_secret or user+password",
                    h.name
                )));
            }
        };
        Ok(HostSpec {
            name: h.name.clone(),
            url: h.url.clone(),
            auth,
            fingerprint: h.fingerprint.clone(),
            ca_pem: None,
            ssh: h.ssh.clone(),
            ssh_user: h.ssh_user.clone(),
            bridge: h.bridge.clone(),
            storage: h.storage.clone(),
        })
    }
}

/// Where a new container goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// Host name.
    pub host: String,
    /// Node name.
    pub node: String,
}

/// Pick a node: the requested one (must exist and be online) or the online node with the
/// most free memory that has at least `min_free_mem` bytes free. Ties go to the first
/// (host, node) in order.
pub fn choose_node(candidates: &[(String, NodeRecord)], requested: Option<&str>, min_free_mem: u64) -> Result<Placement, Error> {
    if let Some(want) = requested {
        let (host, n) = candidates.iter().find(|(_, n)| n.node == want).ok_or_else(|| Error::NotFound {
            message: format!("node `{want}` is not known; sync the Proxmox hosts or pick another node"),
        })?;
        if !n.online {
            return Err(Error::NodeOffline {
                status: 595,
                message: format!("node `{want}` is offline"),
            });
        }
        return Ok(Placement {
            host: host.clone(),
            node: n.node.clone(),
        });
    }
    let online: Vec<&(String, NodeRecord)> = candidates.iter().filter(|(_, n)| n.online).collect();
    if online.is_empty() {
        return Err(Error::NodeOffline {
            status: 595,
            message: "no online Proxmox node is available".into(),
        });
    }
    let mut best: Option<&(String, NodeRecord)> = None;
    for c in online {
        if c.1.free_mem() < min_free_mem {
            continue;
        }
        if best.is_none_or(|b| c.1.free_mem() > b.1.free_mem()) {
            best = Some(c);
        }
    }
    let (host, n) = best.ok_or_else(|| Error::Conflict {
        message: format!("no online node has {} MiB of free memory", min_free_mem / (1024 * 1024)),
    })?;
    Ok(Placement {
        host: host.clone(),
        node: n.node.clone(),
    })
}

/// The host registry. Cheap to clone; clients are cached per host (sharing tickets and
/// connections) and dropped when the host changes.
#[derive(Clone)]
pub struct Hosts {
    store: Store,
    secrets: SecretBox,
    clients: Arc<Mutex<HashMap<String, Client>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosts").finish_non_exhaustive()
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Hosts {
    /// Registry over a store and secrets box.
    pub fn new(store: Store, secrets: SecretBox) -> Hosts {
        Hosts {
            store,
            secrets,
            clients: Arc::new(Mutex::new(HashMap::new())),
            timeout: Duration::from_secs(30),
        }
    }

    /// Registry of a daemon context.
    pub fn from_context(ctx: &crate::supervisor::Context) -> Hosts {
        Hosts::new(ctx.store.clone(), ctx.secrets.clone())
    }

    /// Insert or update the hosts of the config file (source `config`); keeps synced state.
    pub fn seed_from_config(&self, hosts: &[PveHostConfig]) -> Result<usize, Error> {
        for h in hosts {
            let spec = HostSpec::from_config(h)?;
            self.save(spec, "config", true)?;
        }
        Ok(hosts.len())
    }

    fn seal(&self, spec: &HostSpec) -> StoredAuth {
        match &spec.auth {
            Auth::Token { id, secret } => StoredAuth::Token {
                id: id.clone(),
                sealed_secret: self.secrets.seal_str(secret),
            },
            Auth::Ticket { user, password } => StoredAuth::Ticket {
                user: user.clone(),
                sealed_password: self.secrets.seal_str(password),
            },
        }
    }

    fn validate(spec: &HostSpec) -> Result<(), Error> {
        if spec.name.is_empty()
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(Error::Invalid(format!(
                "host name `{}` must be letters, digits, `-`, `_` or `.`",
                spec.name
            )));
        }
        if let Some(fp) = &spec.fingerprint {
            super::client::parse_fingerprint(fp)?;
        }
        // Building a client validates URL, credentials shape and CA bundle.
        Client::new(Self::client_config(
            &spec.url,
            spec.auth.clone(),
            spec.fingerprint.as_deref(),
            spec.ca_pem.as_deref(),
            Duration::from_secs(5),
        ))?;
        Ok(())
    }

    fn client_config(url: &str, auth: Auth, fingerprint: Option<&str>, ca_pem: Option<&str>, timeout: Duration) -> ClientConfig {
        let tls = match (fingerprint, ca_pem) {
            (Some(fp), _) => Tls::Fingerprint(fp.to_string()),
            (None, Some(pem)) => Tls::CaPem(pem.to_string()),
            (None, None) => Tls::System,
        };
        ClientConfig {
            base_url: url.to_string(),
            auth,
            tls,
            timeout,
        }
    }

    fn save(&self, spec: HostSpec, source: &str, upsert: bool) -> Result<HostRecord, Error> {
        Self::validate(&spec)?;
        let existing = self.store.get(HOSTS, &spec.name)?;
        if existing.is_some() && !upsert {
            return Err(Error::Conflict {
                message: format!("a Proxmox host named `{}` already exists", spec.name),
            });
        }
        let auth = self.seal(&spec);
        let rec = HostRecord {
            name: spec.name.clone(),
            url: spec.url.trim_end_matches('/').to_string(),
            auth,
            fingerprint: spec.fingerprint,
            ca_pem: spec.ca_pem,
            ssh: spec.ssh,
            ssh_user: if spec.ssh_user.is_empty() { "root".into() } else { spec.ssh_user },
            bridge: spec.bridge,
            storage: spec.storage,
            nodes: existing.as_ref().map(|e| e.nodes.clone()).unwrap_or_default(),
            online: existing.as_ref().is_some_and(|e| e.online),
            last_sync: existing.as_ref().and_then(|e| e.last_sync),
            last_error: existing.as_ref().and_then(|e| e.last_error.clone()),
            source: source.to_string(),
        };
        self.store.put(HOSTS, &rec.name, &rec)?;
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).remove(&rec.name);
        Ok(rec)
    }

    /// Add a new host (Conflict if the name is taken).
    pub fn add(&self, spec: HostSpec) -> Result<HostRecord, Error> {
        self.save(spec, "api", false)
    }

    /// Add or replace a host.
    pub fn upsert(&self, spec: HostSpec) -> Result<HostRecord, Error> {
        self.save(spec, "api", true)
    }

    /// Remove a host. Returns true when it existed.
    pub fn remove(&self, name: &str) -> Result<bool, Error> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        Ok(self.store.delete(HOSTS, name)?)
    }

    /// One host.
    pub fn get(&self, name: &str) -> Result<Option<HostRecord>, Error> {
        Ok(self.store.get(HOSTS, name)?)
    }

    /// All hosts, by name.
    pub fn list(&self) -> Result<Vec<HostRecord>, Error> {
        Ok(self.store.list(HOSTS)?.into_iter().map(|(_, v)| v).collect())
    }

    fn require(&self, name: &str) -> Result<HostRecord, Error> {
        self.get(name)?.ok_or_else(|| Error::NotFound {
            message: format!("no Proxmox host named `{name}`"),
        })
    }

    /// Plaintext credentials of a host (for building clients; never log them).
    fn open_auth(&self, rec: &HostRecord) -> Result<Auth, Error> {
        Ok(match &rec.auth {
            StoredAuth::Token { id, sealed_secret } => Auth::Token {
                id: id.clone(),
                secret: self.secrets.open_str(sealed_secret)?,
            },
            StoredAuth::Ticket { user, sealed_password } => Auth::Ticket {
                user: user.clone(),
                password: self.secrets.open_str(sealed_password)?,
            },
        })
    }

    /// The API client of a host (cached).
    pub fn client(&self, name: &str) -> Result<Client, Error> {
        if let Some(c) = self.clients.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(c.clone());
        }
        let rec = self.require(name)?;
        let auth = self.open_auth(&rec)?;
        let client = Client::new(Self::client_config(
            &rec.url,
            auth,
            rec.fingerprint.as_deref(),
            rec.ca_pem.as_deref(),
            self.timeout,
        ))?;
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), client.clone());
        Ok(client)
    }

    /// Refresh a host's node list (online state, memory). A failure marks the host offline
    /// and is returned.
    pub async fn sync(&self, name: &str) -> Result<HostRecord, Error> {
        let client = self.client(name)?;
        let result = client.nodes().await;
        let mut rec = self.require(name)?;
        match result {
            Ok(nodes) => {
                let mut nodes: Vec<NodeRecord> = nodes.iter().map(NodeRecord::from).collect();
                nodes.sort_by(|a, b| a.node.cmp(&b.node));
                rec.nodes = nodes;
                rec.online = true;
                rec.last_sync = Some(now());
                rec.last_error = None;
                self.store.put(HOSTS, name, &rec)?;
                tracing::debug!(host = name, nodes = rec.nodes.len(), "PVE host synced");
                Ok(rec)
            }
            Err(e) => {
                rec.online = false;
                rec.last_error = Some(e.to_string());
                for n in &mut rec.nodes {
                    n.online = false;
                }
                self.store.put(HOSTS, name, &rec)?;
                tracing::warn!(host = name, error = %e, "PVE host sync failed");
                Err(e)
            }
        }
    }

    /// Sync every host; returns each host's outcome.
    pub async fn sync_all(&self) -> Vec<(String, Result<HostRecord, Error>)> {
        let mut out = Vec::new();
        for rec in self.list().unwrap_or_default() {
            let r = self.sync(&rec.name).await;
            out.push((rec.name, r));
        }
        out
    }

    /// Every known node with its host, as last synced.
    pub fn nodes(&self) -> Result<Vec<(String, NodeRecord)>, Error> {
        Ok(self
            .list()?
            .into_iter()
            .flat_map(|h| {
                let name = h.name.clone();
                h.nodes.into_iter().map(move |n| (name.clone(), n))
            })
            .collect())
    }

    /// The host that holds `node`.
    pub fn host_of_node(&self, node: &str) -> Result<HostRecord, Error> {
        self.list()?
            .into_iter()
            .find(|h| h.nodes.iter().any(|n| n.node == node))
            .ok_or_else(|| Error::NotFound {
                message: format!("node `{node}` is not known; sync the Proxmox hosts"),
            })
    }

    /// The host holding `node` and its API client.
    pub fn client_for_node(&self, node: &str) -> Result<(HostRecord, Client), Error> {
        let rec = self.host_of_node(node)?;
        let client = self.client(&rec.name)?;
        Ok((rec, client))
    }

    /// Choose where to place a container (see [`choose_node`]).
    pub fn place(&self, requested: Option<&str>, min_free_mem: u64) -> Result<Placement, Error> {
        choose_node(&self.nodes()?, requested, min_free_mem)
    }

    /// The appliance SSH key (generated and stored on first use).
    pub fn ssh_key(&self) -> Result<SshKey, Error> {
        SshKey::load_or_create(&self.store, &self.secrets)
    }

    /// An SSH session for `pct` commands on `node`: the SSH endpoint of the host holding it
    /// (the simulator serves a whole cluster on one endpoint; a real multi-node cluster
    /// needs one registered host per node that runs apps).
    pub async fn ssh_for_node(&self, node: &str) -> Result<(HostRecord, SshExec), Error> {
        let rec = self.host_of_node(node)?;
        let ssh = self.ssh(&rec.name).await?;
        Ok((rec, ssh))
    }

    /// An SSH session to a host (host key pinned in redb on first use).
    pub async fn ssh(&self, name: &str) -> Result<SshExec, Error> {
        let rec = self.require(name)?;
        let key = self.ssh_key()?;
        let endpoint = rec.ssh_endpoint()?;
        SshExec::connect(&endpoint, &rec.ssh_user, &key, Arc::new(RedbHostKeys::new(self.store.clone()))).await
    }
}

/// Background service: sync every host's nodes (online state, free memory) now and then
/// every `interval`, publishing `proximity_pve_host_online` and `proximity_pve_node_online`
/// gauges, until `ctx.shutdown` is cancelled. Sync failures are logged and retried.
pub async fn run_sync(ctx: crate::supervisor::Context, hosts: Hosts, interval: Duration) -> anyhow::Result<()> {
    loop {
        let results = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            r = hosts.sync_all() => r,
        };
        // Removed hosts stop being exported.
        let names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
        ctx.metrics.retain_label("proximity_pve_host_online", "host", &names);
        ctx.metrics.retain_label("proximity_pve_node_online", "host", &names);
        for (name, result) in results {
            let online = result.is_ok();
            ctx.metrics
                .gauge(
                    "proximity_pve_host_online",
                    "1 when the Proxmox host answered the last sync",
                    &[("host", &name)],
                )
                .set(online as i64);
            if let Ok(rec) = result {
                for n in &rec.nodes {
                    ctx.metrics
                        .gauge(
                            "proximity_pve_node_online",
                            "1 when the Proxmox node was online at the last sync",
                            &[("host", &name), ("node", &n.node)],
                        )
                        .set(n.online as i64);
                }
            }
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, online: bool, mem: u64, maxmem: u64) -> NodeRecord {
        NodeRecord {
            node: name.into(),
            online,
            mem,
            maxmem,
            maxcpu: 4,
            cpu: 0.0,
            ssl_fingerprint: None,
        }
    }

    #[test]
    fn placement() {
        const G: u64 = 1 << 30;
        let c = vec![
            ("a".to_string(), node("pve1", true, 6 * G, 8 * G)),
            ("a".to_string(), node("pve2", true, 2 * G, 8 * G)),
            ("b".to_string(), node("pve3", false, 0, 64 * G)),
        ];
        assert_eq!(
            choose_node(&c, None, 0).unwrap(),
            Placement {
                host: "a".into(),
                node: "pve2".into()
            }
        );
        assert_eq!(choose_node(&c, Some("pve1"), 0).unwrap().node, "pve1");
        assert!(matches!(choose_node(&c, Some("pve3"), 0), Err(Error::NodeOffline { .. })));
        assert!(matches!(choose_node(&c, Some("nope"), 0), Err(Error::NotFound { .. })));
        assert!(matches!(choose_node(&c, None, 7 * G), Err(Error::Conflict { .. })));
        assert!(matches!(choose_node(&c[2..], None, 0), Err(Error::NodeOffline { .. })));
        assert!(matches!(choose_node(&[], None, 0), Err(Error::NodeOffline { .. })));
    }

    #[test]
    fn registry_seals_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let hosts = Hosts::new(store.clone(), SecretBox::ephemeral());
        let spec = HostSpec {
            name: "lab".into(),
            url: "https://127.0.0.1:8006/".into(),
            auth: Auth::Token {
                id: "root@pam!proximity".into(),
                secret: "0d1e2f-top-secret".into(),
            },
            fingerprint: Some("AB".repeat(32)),
            ca_pem: None,
            ssh: None,
            ssh_user: String::new(),
            bridge: "proximity-lan".into(),
            storage: "local-lvm".into(),
        };
        let rec = hosts.add(spec.clone()).unwrap();
        assert_eq!(rec.url, "https://127.0.0.1:8006");
        assert_eq!(rec.ssh_user, "root");
        assert_eq!(rec.ssh_endpoint().unwrap(), "127.0.0.1:22");
        assert!(matches!(hosts.add(spec.clone()), Err(Error::Conflict { .. })));
        let json = serde_json::to_string(&store.get(HOSTS, "lab").unwrap().unwrap()).unwrap();
        assert!(!json.contains("top-secret"), "{json}");
        assert!(!format!("{rec:?}").contains("top-secret"));
        assert!(hosts.client("lab").is_ok());
        assert!(matches!(hosts.client("nope"), Err(Error::NotFound { .. })));
        let mut bad = spec;
        bad.name = "x y".into();
        assert!(hosts.add(bad).is_err());
        assert!(hosts.remove("lab").unwrap());
        assert!(hosts.list().unwrap().is_empty());
    }
}
