//! What the platform needs from a Proxmox host: the API calls and `pct` over SSH, as one
//! object-safe trait. The production implementation wraps `pve::Client` + `pve::ssh::SshExec`
//! ([`super::pvehost`]); keeping the pipeline on this trait keeps it readable and lets unit
//! tests drive it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// A failure talking to Proxmox, classified for the API (502/503) and for retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PveFailure {
    /// The object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Already exists / locked / busy.
    #[error("{0}")]
    Conflict(String),
    /// Node or host unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// A task ended with an error; `log` is the tail of its log.
    #[error("{message}")]
    TaskFailed {
        /// Exit status line.
        message: String,
        /// Last lines of the task log.
        log: String,
    },
    /// Anything else (bad request, auth, protocol).
    #[error("{0}")]
    Other(String),
}

impl PveFailure {
    /// Output tail worth showing to the user, if any.
    pub fn output(&self) -> Option<&str> {
        match self {
            PveFailure::TaskFailed { log, .. } if !log.trim().is_empty() => Some(log),
            _ => None,
        }
    }
}

/// Result of Proxmox calls.
pub type PveResult<T> = Result<T, PveFailure>;

/// A node of a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Name (`pve1`).
    pub name: String,
    /// Online.
    pub online: bool,
    /// Memory in use, bytes.
    pub mem: u64,
    /// Memory total, bytes.
    pub maxmem: u64,
    /// CPU load 0..1.
    pub cpu: f64,
    /// Cores.
    pub maxcpu: u32,
}

impl NodeInfo {
    /// Free memory, bytes.
    pub fn free_mem(&self) -> u64 {
        self.maxmem.saturating_sub(self.mem)
    }
}

/// A container as listed on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CtInfo {
    /// VMID.
    pub vmid: u32,
    /// Node.
    pub node: String,
    /// Host name of the CT.
    pub name: String,
    /// `running` / `stopped`.
    pub status: String,
    /// Memory limit, bytes.
    pub maxmem: u64,
    /// Tags (`;`-separated in PVE), if any.
    pub tags: Vec<String>,
}

/// A network interface of a running CT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtInterface {
    /// Name (`eth0`).
    pub name: String,
    /// MAC.
    pub hwaddr: String,
    /// IPv4 address (without prefix).
    pub inet: Option<Ipv4Addr>,
}

/// A volume in a storage (`content=backup` or `vztmpl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Volume id, `local:backup/vzdump-lxc-101-2026_11_22-02_00_00.tar.zst`.
    pub volid: String,
    /// Size, bytes.
    pub size: u64,
    /// Unix seconds.
    pub ctime: i64,
    /// VMID the backup is of.
    pub vmid: Option<u32>,
    /// Format (`tar.zst`, `tzst`, ...).
    pub format: String,
    /// Notes/comment.
    pub notes: Option<String>,
}

/// An appliance template offered by `aplinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appliance {
    /// File name, `alpine-3.22-default_20250617_amd64.tar.xz`.
    pub template: String,
    /// Section (`system`).
    pub section: String,
    /// Version string.
    pub version: String,
}

/// Parameters of `POST /nodes/{node}/lxc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateCt {
    /// VMID.
    pub vmid: u32,
    /// Template volume id.
    pub ostemplate: String,
    /// Host name.
    pub hostname: String,
    /// Cores.
    pub cores: u32,
    /// Memory, MiB.
    pub memory_mb: u32,
    /// Swap, MiB.
    pub swap_mb: u32,
    /// Root fs, `local-lvm:8`.
    pub rootfs: String,
    /// `name=eth0,bridge=...,hwaddr=...,ip=dhcp`.
    pub net0: String,
    /// Unprivileged.
    pub unprivileged: bool,
    /// `nesting=1`.
    pub features: String,
    /// Start at boot.
    pub onboot: bool,
    /// Description (carries our app id).
    pub description: String,
    /// Tags.
    pub tags: String,
}

/// Output of a command run over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOut {
    /// Exit status.
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ExecOut {
    /// stdout and stderr joined, for error tails.
    pub fn combined(&self) -> String {
        let mut s = self.stdout.clone();
        if !self.stderr.is_empty() {
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            s.push_str(&self.stderr);
        }
        s
    }
}

/// Backup mode of vzdump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackupMode {
    /// Live snapshot.
    #[default]
    Snapshot,
    /// Suspend during the copy.
    Suspend,
    /// Stop during the copy.
    Stop,
}

impl BackupMode {
    /// PVE value.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackupMode::Snapshot => "snapshot",
            BackupMode::Suspend => "suspend",
            BackupMode::Stop => "stop",
        }
    }
}

/// Compression of vzdump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd.
    #[default]
    Zstd,
    /// gzip.
    Gzip,
    /// lzo.
    Lzo,
}

impl Compression {
    /// PVE value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Lzo => "lzo",
        }
    }
}

/// One Proxmox host (cluster) as the platform uses it. Calls that start a task wait for
/// it and fail with [`PveFailure::TaskFailed`] carrying the log tail.
#[async_trait::async_trait]
pub trait PveHost: Send + Sync + 'static {
    /// Nodes with their load.
    async fn nodes(&self) -> PveResult<Vec<NodeInfo>>;
    /// Next free VMID.
    async fn next_vmid(&self) -> PveResult<u32>;
    /// Containers on a node.
    async fn list_cts(&self, node: &str) -> PveResult<Vec<CtInfo>>;
    /// Config of a CT (`NotFound` when it does not exist).
    async fn ct_config(&self, node: &str, vmid: u32) -> PveResult<BTreeMap<String, String>>;
    /// Update config keys of a CT.
    async fn set_ct_config(&self, node: &str, vmid: u32, params: &[(String, String)]) -> PveResult<()>;
    /// `running` / `stopped` (`NotFound` when it does not exist).
    async fn ct_status(&self, node: &str, vmid: u32) -> PveResult<String>;
    /// Interfaces of a running CT.
    async fn ct_interfaces(&self, node: &str, vmid: u32) -> PveResult<Vec<CtInterface>>;
    /// Appliance index of a node.
    async fn aplinfo(&self, node: &str) -> PveResult<Vec<Appliance>>;
    /// Volumes of a storage with the given content type.
    async fn storage_content(&self, node: &str, storage: &str, content: &str) -> PveResult<Vec<Volume>>;
    /// Download an appliance template into a storage (waits).
    async fn download_template(&self, node: &str, storage: &str, template: &str) -> PveResult<()>;
    /// Create a CT (waits).
    async fn create_ct(&self, node: &str, p: &CreateCt) -> PveResult<()>;
    /// Start (waits).
    async fn start_ct(&self, node: &str, vmid: u32) -> PveResult<()>;
    /// Hard stop (waits).
    async fn stop_ct(&self, node: &str, vmid: u32) -> PveResult<()>;
    /// Reboot (waits).
    async fn reboot_ct(&self, node: &str, vmid: u32) -> PveResult<()>;
    /// Destroy with purge (waits).
    async fn delete_ct(&self, node: &str, vmid: u32) -> PveResult<()>;
    /// Full clone to `newid` with a new host name (waits).
    async fn clone_ct(&self, node: &str, vmid: u32, newid: u32, hostname: &str) -> PveResult<()>;
    /// vzdump one CT into `storage` (waits); returns the volume id when it can be found.
    async fn vzdump(&self, node: &str, vmid: u32, storage: &str, mode: BackupMode, compress: Compression) -> PveResult<Option<String>>;
    /// Restore a backup over a CT (`force`; waits).
    async fn restore_ct(&self, node: &str, vmid: u32, archive: &str, storage: &str) -> PveResult<()>;
    /// Delete a volume (waits).
    async fn delete_volume(&self, node: &str, storage: &str, volid: &str) -> PveResult<()>;
    /// RRD data of a CT (`timeframe` hour/day/week/month/year).
    async fn rrddata(&self, node: &str, vmid: u32, timeframe: &str) -> PveResult<serde_json::Value>;
    /// `pct exec <vmid> -- argv...` over SSH.
    async fn pct_exec(&self, vmid: u32, argv: &[String]) -> PveResult<ExecOut>;
    /// `pct push <vmid> /dev/stdin <dst> --perms <perms>` over SSH.
    async fn pct_push(&self, vmid: u32, bytes: &[u8], dst: &str, perms: u32) -> PveResult<()>;
    /// `pct set <vmid> --features <features>` over SSH.
    async fn pct_set_features(&self, vmid: u32, features: &str) -> PveResult<()>;
}

/// Where a host puts things.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSettings {
    /// Bridge of the app LAN.
    pub bridge: String,
    /// Storage for root disks.
    pub storage: String,
    /// Storage for templates.
    pub template_storage: String,
    /// Storage for backups.
    pub backup_storage: String,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            bridge: "proximity-lan".into(),
            storage: "local-lvm".into(),
            template_storage: "local".into(),
            backup_storage: "local".into(),
        }
    }
}
