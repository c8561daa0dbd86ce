//! The app registry: the one source of truth for deployed apps.
//!
//! DHCP reservations, DNS records, proxy routes and firewall rules are all derived from
//! these records by [`crate::plan::compute`]; nothing else stores them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, Table};

/// Apps by id.
pub const APPS: Table<App> = Table::new("apps");

/// Life-cycle status of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AppStatus {
    /// Accepted, job queued.
    Pending,
    /// Deploy job running.
    Deploying,
    /// Container and app up.
    Running,
    /// Container stopped.
    Stopped,
    /// Start/stop/restart in progress.
    Changing,
    /// Update job running.
    Updating,
    /// Backup or restore running.
    BackingUp,
    /// Restore running.
    Restoring,
    /// Clone source busy.
    Cloning,
    /// Delete job running.
    Deleting,
    /// Last job failed; see `error`.
    Error,
    /// Container missing on Proxmox (found by the reconciler).
    Missing,
}

impl AppStatus {
    /// Name as shown in the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            AppStatus::Pending => "pending",
            AppStatus::Deploying => "deploying",
            AppStatus::Running => "running",
            AppStatus::Stopped => "stopped",
            AppStatus::Changing => "changing",
            AppStatus::Updating => "updating",
            AppStatus::BackingUp => "backing_up",
            AppStatus::Restoring => "restoring",
            AppStatus::Cloning => "cloning",
            AppStatus::Deleting => "deleting",
            AppStatus::Error => "error",
            AppStatus::Missing => "missing",
        }
    }
}

/// Resources of the app's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU cores.
    pub cores: u32,
    /// Memory, MiB.
    pub memory_mb: u32,
    /// Root disk, GiB.
    pub disk_gb: u32,
}

/// A published port: `public` on the appliance's WAN address forwards to `container` on
/// the app's LAN address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    /// Public port (30000–30999 by default).
    pub public: u16,
    /// Port inside the container.
    pub container: u16,
    /// `tcp` or `udp`.
    pub proto: Proto,
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// One deployed (or deploying) app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    /// Stable id (`app-` + 12 hex).
    pub id: String,
    /// RFC 1123 label; the app is reached at `https://<hostname>.<domain>`.
    pub hostname: String,
    /// Catalog entry it was deployed from.
    pub catalog_id: String,
    /// Catalog version deployed.
    pub catalog_version: String,
    /// Owning user id.
    pub owner: String,
    /// Status.
    pub status: AppStatus,
    /// Proxmox host name (registry of hosts).
    pub host: Option<String>,
    /// Proxmox node.
    pub node: Option<String>,
    /// Container id.
    pub vmid: Option<u32>,
    /// Locally administered MAC of `net0`, chosen before the container exists.
    pub mac: String,
    /// Reserved LAN address.
    pub ip: Ipv4Addr,
    /// Where the app actually answers when it differs from `ip` (simulator loopback
    /// runtime: a 127.x address). Proxy routes and port forwards use this when set.
    pub upstream_ip: Option<Ipv4Addr>,
    /// Port of the web UI inside the container (proxied), if any.
    pub web_port: Option<u16>,
    /// Published extra ports.
    pub forwards: Vec<PortForward>,
    /// Extra DNS names / proxy hosts (labels or FQDNs inside the domain).
    pub aliases: Vec<String>,
    /// Redirect plain HTTP to HTTPS.
    pub https_redirect: bool,
    /// Container resources.
    pub resources: Resources,
    /// Non-secret settings (form fields, env overrides).
    pub settings: BTreeMap<String, String>,
    /// Last error, with the step that failed.
    pub error: Option<String>,
    /// Job currently acting on the app.
    pub job_id: Option<String>,
    /// Adopted from an existing container rather than deployed.
    pub adopted: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl App {
    /// The address traffic for this app goes to.
    pub fn upstream(&self) -> Ipv4Addr {
        self.upstream_ip.unwrap_or(self.ip)
    }
}

/// Read all apps.
pub fn list(store: &Store) -> Result<Vec<App>, StoreError> {
    Ok(store.list(APPS)?.into_iter().map(|(_, a)| a).collect())
}

/// Read one app.
pub fn get(store: &Store, id: &str) -> Result<Option<App>, StoreError> {
    store.get(APPS, id)
}

/// A new random app id.
pub fn new_id() -> String {
    format!("app-{}", hex::encode(rand::random::<[u8; 6]>()))
}

/// A new locally administered, unicast MAC (`x2:..` first octet) in Proximity's prefix
/// `02:50:58` ("PX"), unique against `taken`.
pub fn new_mac(taken: &[String]) -> String {
    loop {
        let r: [u8; 3] = rand::random();
        let mac = format!("02:50:58:{:02x}:{:02x}:{:02x}", r[0], r[1], r[2]);
        if !taken.iter().any(|t| t.eq_ignore_ascii_case(&mac)) {
            return mac;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_local_unicast_and_unique() {
        let taken = vec![];
        let m = new_mac(&taken);
        let first = u8::from_str_radix(&m[0..2], 16).unwrap();
        assert_eq!(first & 0b11, 0b10, "locally administered, unicast");
        assert_eq!(m.len(), 17);
    }
}
