//! Runtime settings: the admin-editable values of `/api/v1/settings/*`, stored in the redb
//! table `settings` (one JSON document per section) with the configuration file as the
//! default. The services read them here (the scheduler on each firing, the platform on each
//! deploy, the network plan on each refresh), so a change applies without a restart.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::{Config, NetworkConfig, ScheduleConfig};
use crate::store::{Store, StoreError, Table};

/// Settings sections by name (`resources`, `network`, `schedule`).
pub const SETTINGS: Table<serde_json::Value> = Table::new("settings");

/// Default resources of new app containers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceSettings {
    /// CPU cores (1–64).
    pub cores: u32,
    /// Memory in MiB (128–262144).
    pub memory_mb: u32,
    /// Root disk in GiB (1–4096).
    pub disk_gb: u32,
    /// Most apps one (non-admin) user may own (0 = unlimited).
    pub max_apps_per_user: u32,
}

/// Network settings: upstream resolvers and blocked networks apply at once (through the
/// network plan), `https_redirect` to apps deployed afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// Upstream DNS servers (`ip:port`).
    pub upstream_dns: Vec<String>,
    /// CIDRs app containers may not reach (on top of the configuration file's, which
    /// always stay blocked).
    pub management_networks: Vec<String>,
    /// New apps redirect plain HTTP to HTTPS.
    pub https_redirect: bool,
}

/// Schedules (5-field cron expressions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Nightly backups.
    pub backup: String,
    /// Update checks.
    pub update_check: String,
    /// Reconcile with Proxmox.
    pub reconcile: String,
    /// Stuck-job janitor.
    pub janitor: String,
    /// Backups kept per app (1–365).
    pub keep_backups: u32,
}

impl ResourceSettings {
    /// Defaults before an admin changes them.
    pub fn from_config(_: &Config) -> Self {
        ResourceSettings {
            cores: 1,
            memory_mb: 1024,
            disk_gb: 8,
            max_apps_per_user: 0,
        }
    }
}

impl NetworkSettings {
    /// Defaults: the configuration file's values.
    pub fn from_network(n: &NetworkConfig) -> Self {
        NetworkSettings {
            upstream_dns: n.upstream_dns.iter().map(|a| a.to_string()).collect(),
            management_networks: n.management_networks.iter().map(|n| n.to_string()).collect(),
            https_redirect: true,
        }
    }

    /// `n` with these upstream resolvers and management networks (entries that do not parse
    /// are skipped; the API validates them before they are stored).
    pub fn apply_to(&self, n: &NetworkConfig) -> NetworkConfig {
        let mut out = n.clone();
        out.upstream_dns = self.upstream_dns.iter().filter_map(|a| a.parse().ok()).collect();
        out.management_networks = self.management_networks.iter().filter_map(|a| a.parse().ok()).collect();
        out
    }
}

impl ScheduleSettings {
    /// Defaults: the configuration file's `[schedule]`.
    pub fn from_config(c: &ScheduleConfig) -> Self {
        ScheduleSettings {
            backup: c.backup.clone(),
            update_check: c.update_check.clone(),
            reconcile: c.reconcile.clone(),
            janitor: c.janitor.clone(),
            keep_backups: c.keep_backups,
        }
    }

    /// As a `[schedule]` section (for the cron parser).
    pub fn to_config(&self, base: &ScheduleConfig) -> ScheduleConfig {
        let mut c = base.clone();
        c.backup = self.backup.clone();
        c.update_check = self.update_check.clone();
        c.reconcile = self.reconcile.clone();
        c.janitor = self.janitor.clone();
        c.keep_backups = self.keep_backups;
        c
    }
}

fn stored<T: serde::de::DeserializeOwned>(store: &Store, name: &str) -> Result<Option<T>, StoreError> {
    Ok(store.get(SETTINGS, name)?.and_then(|v| serde_json::from_value(v).ok()))
}

/// Current resource defaults.
pub fn resources(store: &Store, c: &Config) -> Result<ResourceSettings, StoreError> {
    Ok(stored(store, "resources")?.unwrap_or_else(|| ResourceSettings::from_config(c)))
}

/// Current network settings.
pub fn network(store: &Store, c: &Config) -> Result<NetworkSettings, StoreError> {
    network_for(store, &c.network)
}

/// Current network settings over a `[network]` section.
pub fn network_for(store: &Store, n: &NetworkConfig) -> Result<NetworkSettings, StoreError> {
    Ok(stored(store, "network")?.unwrap_or_else(|| NetworkSettings::from_network(n)))
}

/// Current schedules.
pub fn schedule(store: &Store, c: &Config) -> Result<ScheduleSettings, StoreError> {
    Ok(stored(store, "schedule")?.unwrap_or_else(|| ScheduleSettings::from_config(&c.schedule)))
}
