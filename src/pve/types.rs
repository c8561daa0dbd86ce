//! Typed requests and responses for the Proxmox endpoints the product uses. Responses
//! decode leniently (Perl-typed values via [`super::perl`], unknown fields ignored);
//! requests become form parameters ([`Params`]) with booleans sent as `0`/`1`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::perl;

/// Form/query parameters in wire form. Booleans are encoded `1`/`0` (PVE rejects `true`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be passwords; show keys only.
        let keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "Params{keys:?}")
    }
}

impl Params {
    /// Empty parameter list.
    pub fn new() -> Params {
        Params(Vec::new())
    }
    /// Add a string/number parameter.
    pub fn set(mut self, key: &str, value: impl ToString) -> Params {
        self.0.push((key.to_string(), value.to_string()));
        self
    }
    /// Add a boolean parameter as `1`/`0`.
    pub fn flag(self, key: &str, value: bool) -> Params {
        self.set(key, if value { "1" } else { "0" })
    }
    /// Add a parameter when present.
    pub fn opt(self, key: &str, value: Option<impl ToString>) -> Params {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }
    /// Add a boolean parameter when present.
    pub fn opt_flag(self, key: &str, value: Option<bool>) -> Params {
        match value {
            Some(v) => self.flag(key, v),
            None => self,
        }
    }
    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Value of a key (first occurrence).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// `GET /version`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Version {
    /// `x.y`.
    #[serde(default, deserialize_with = "perl::string")]
    pub release: String,
    /// Full pve-manager version.
    #[serde(default, deserialize_with = "perl::string")]
    pub version: String,
    /// Git id.
    #[serde(default, deserialize_with = "perl::string")]
    pub repoid: String,
}

/// `POST /access/ticket` reply. The ticket and CSRF token are hidden from `Debug`.
#[derive(Clone, Deserialize)]
pub struct TicketInfo {
    /// The ticket (`PVE:user:time::sig`).
    pub ticket: String,
    /// CSRF token for writes.
    #[serde(rename = "CSRFPreventionToken", default)]
    pub csrf_token: String,
    /// Authenticated user.
    #[serde(default)]
    pub username: String,
    /// Cluster name, when clustered.
    #[serde(default)]
    pub clustername: Option<String>,
    /// Set when a second factor is required (unsupported here).
    #[serde(rename = "NeedTFA", default, deserialize_with = "perl::opt_bool")]
    pub need_tfa: Option<bool>,
}

impl std::fmt::Debug for TicketInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketInfo")
            .field("username", &self.username)
            .field("clustername", &self.clustername)
            .finish_non_exhaustive()
    }
}

/// One entry of `GET /nodes`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct NodeInfo {
    /// Node name.
    pub node: String,
    /// `online`, `offline` or `unknown`.
    #[serde(default, deserialize_with = "perl::string")]
    pub status: String,
    /// CPU usage 0..1.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub cpu: Option<f64>,
    /// CPU count.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub maxcpu: Option<u64>,
    /// Used memory bytes.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub mem: Option<u64>,
    /// Total memory bytes.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub maxmem: Option<u64>,
    /// Used root disk bytes.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub disk: Option<u64>,
    /// Root disk size bytes.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Uptime seconds.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub uptime: Option<u64>,
    /// Uppercase colon SHA-256 of the node certificate.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub ssl_fingerprint: Option<String>,
    /// Support level.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub level: Option<String>,
}

impl NodeInfo {
    /// True when the node reports `online`.
    pub fn is_online(&self) -> bool {
        self.status == "online"
    }
    /// Free memory in bytes (0 when unknown).
    pub fn free_mem(&self) -> u64 {
        match (self.maxmem, self.mem) {
            (Some(max), Some(used)) => max.saturating_sub(used),
            _ => 0,
        }
    }
}

/// Memory block of `GET /nodes/{node}/status`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct MemoryInfo {
    /// Total bytes.
    #[serde(default, deserialize_with = "perl::u64")]
    pub total: u64,
    /// Used bytes.
    #[serde(default, deserialize_with = "perl::u64")]
    pub used: u64,
    /// Free bytes.
    #[serde(default, deserialize_with = "perl::u64")]
    pub free: u64,
}

/// `GET /nodes/{node}/status`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct NodeStatus {
    /// Memory.
    #[serde(default)]
    pub memory: MemoryInfo,
    /// CPU usage 0..1.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub cpu: Option<f64>,
    /// Uptime seconds.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub uptime: Option<u64>,
    /// pve-manager version string.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub pveversion: Option<String>,
    /// Kernel version.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub kversion: Option<String>,
}

/// One entry of `GET /cluster/resources`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ClusterResource {
    /// `lxc/105`, `node/pve1`, `storage/pve1/local`, ...
    pub id: String,
    /// `lxc`, `qemu`, `node`, `storage`, `sdn`, `pool`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Node.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub node: Option<String>,
    /// Guest id.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub vmid: Option<u64>,
    /// Guest name.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub name: Option<String>,
    /// Status (`running`, `stopped`, `online`, `available`, ...).
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub status: Option<String>,
    /// Storage id (storage entries).
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub storage: Option<String>,
    /// CPU usage.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub cpu: Option<f64>,
    /// CPU count.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub maxcpu: Option<f64>,
    /// Used memory.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub mem: Option<u64>,
    /// Memory size.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub maxmem: Option<u64>,
    /// Used disk.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub disk: Option<u64>,
    /// Disk size.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Uptime seconds.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub uptime: Option<u64>,
    /// Template flag.
    #[serde(default, deserialize_with = "perl::bool")]
    pub template: bool,
    /// Tags (`;`-separated).
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub tags: Option<String>,
    /// HA state.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub hastate: Option<String>,
    /// Pool.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub pool: Option<String>,
}

/// One entry of `GET /nodes/{node}/lxc`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct LxcSummary {
    /// Container id (a string before PVE 8.2).
    #[serde(deserialize_with = "perl::u64")]
    pub vmid: u64,
    /// `running` or `stopped`.
    #[serde(default, deserialize_with = "perl::string")]
    pub status: String,
    /// Hostname.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub name: Option<String>,
    /// CPU limit.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub cpus: Option<f64>,
    /// CPU usage.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub cpu: Option<f64>,
    /// Used memory.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub mem: Option<u64>,
    /// Memory limit.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub maxmem: Option<u64>,
    /// Used disk.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub disk: Option<u64>,
    /// Disk size.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Uptime seconds.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub uptime: Option<u64>,
    /// Template flag.
    #[serde(default, deserialize_with = "perl::bool")]
    pub template: bool,
    /// Tags.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub tags: Option<String>,
    /// Lock (`backup`, `create`, ...).
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub lock: Option<String>,
}

/// `GET /nodes/{node}/lxc/{vmid}/status/current`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct LxcStatus {
    /// `running` or `stopped`.
    #[serde(deserialize_with = "perl::string")]
    pub status: String,
    /// Container id.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub vmid: Option<u64>,
    /// Hostname.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub name: Option<String>,
    /// CPU limit.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub cpus: Option<f64>,
    /// CPU usage.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub cpu: Option<f64>,
    /// Used memory.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub mem: Option<u64>,
    /// Memory limit.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub maxmem: Option<u64>,
    /// Used swap.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub swap: Option<u64>,
    /// Swap limit.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub maxswap: Option<u64>,
    /// Used disk.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub disk: Option<u64>,
    /// Disk size.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Network bytes in.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub netin: Option<u64>,
    /// Network bytes out.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub netout: Option<u64>,
    /// Uptime seconds.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub uptime: Option<u64>,
    /// Init process id.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub pid: Option<u64>,
    /// Template flag.
    #[serde(default, deserialize_with = "perl::bool")]
    pub template: bool,
    /// Lock.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub lock: Option<String>,
    /// HA block (`{"managed":0}` when not HA-managed).
    #[serde(default)]
    pub ha: serde_json::Value,
}

impl LxcStatus {
    /// True when running.
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }
}

/// `GET /nodes/{node}/lxc/{vmid}/config`. Well-known keys are typed; every key (including
/// `net0`, `mp0`, ...) is also kept in `raw` as text.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LxcConfig {
    /// Hostname.
    pub hostname: Option<String>,
    /// Memory MiB.
    pub memory: Option<u64>,
    /// Swap MiB.
    pub swap: Option<u64>,
    /// Cores.
    pub cores: Option<u64>,
    /// Root filesystem property string.
    pub rootfs: Option<String>,
    /// Features property string.
    pub features: Option<String>,
    /// Start at boot.
    pub onboot: Option<bool>,
    /// Unprivileged container.
    pub unprivileged: Option<bool>,
    /// Template flag.
    pub template: Option<bool>,
    /// OS type.
    pub ostype: Option<String>,
    /// Architecture.
    pub arch: Option<String>,
    /// Description (notes).
    pub description: Option<String>,
    /// Tags.
    pub tags: Option<String>,
    /// Config digest (for lost-update protection).
    pub digest: Option<String>,
    /// Lock.
    pub lock: Option<String>,
    /// Every key as text (numbers/booleans formatted; the raw `lxc` list omitted).
    pub raw: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for LxcConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let mut raw = BTreeMap::new();
        for (k, v) in &map {
            if let Some(s) = perl::value_string(v) {
                raw.insert(k.clone(), s);
            }
        }
        let s = |k: &str| raw.get(k).cloned();
        let n = |k: &str| -> Result<Option<u64>, D::Error> {
            match map.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => perl::value_u64(v)
                    .map(Some)
                    .ok_or_else(|| D::Error::custom(format!("{k}: expected an integer, got {v}"))),
            }
        };
        let b = |k: &str| -> Result<Option<bool>, D::Error> {
            match map.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => perl::value_bool(v)
                    .map(Some)
                    .ok_or_else(|| D::Error::custom(format!("{k}: expected 0/1, got {v}"))),
            }
        };
        Ok(LxcConfig {
            hostname: s("hostname"),
            memory: n("memory")?,
            swap: n("swap")?,
            cores: n("cores")?,
            rootfs: s("rootfs"),
            features: s("features"),
            onboot: b("onboot")?,
            unprivileged: b("unprivileged")?,
            template: b("template")?,
            ostype: s("ostype"),
            arch: s("arch"),
            description: s("description"),
            tags: s("tags"),
            digest: s("digest"),
            lock: s("lock"),
            raw,
        })
    }
}

impl LxcConfig {
    /// Network devices `netN` parsed, ordered by index.
    pub fn nets(&self) -> Vec<(u32, NetDevice)> {
        let mut v: Vec<(u32, NetDevice)> = self
            .raw
            .iter()
            .filter_map(|(k, val)| {
                let idx: u32 = k.strip_prefix("net")?.parse().ok()?;
                Some((idx, NetDevice::parse(val)))
            })
            .collect();
        v.sort_by_key(|(i, _)| *i);
        v
    }
    /// Parsed `features` (`nesting=1,keyctl=1` → map).
    pub fn feature_map(&self) -> BTreeMap<String, String> {
        self.features.as_deref().map(parse_property_string).unwrap_or_default()
    }
}

/// Parse a Proxmox property string `a=1,b=x` (a leading value without `=` is stored under
/// the empty key, as in `rootfs`' `volume`).
pub fn parse_property_string(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (String::new(), p.trim().to_string()),
        })
        .collect()
}

/// A parsed `netN` value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetDevice {
    /// Interface name inside the CT.
    pub name: Option<String>,
    /// Bridge.
    pub bridge: Option<String>,
    /// MAC address.
    pub hwaddr: Option<String>,
    /// `dhcp`, CIDR or `manual`.
    pub ip: Option<String>,
    /// Gateway.
    pub gw: Option<String>,
    /// VLAN tag.
    pub tag: Option<String>,
    /// Firewall flag.
    pub firewall: Option<bool>,
}

impl NetDevice {
    /// Parse `name=eth0,bridge=vmbr0,hwaddr=..,ip=dhcp,...`.
    pub fn parse(s: &str) -> NetDevice {
        let m = parse_property_string(s);
        NetDevice {
            name: m.get("name").cloned(),
            bridge: m.get("bridge").cloned(),
            hwaddr: m.get("hwaddr").cloned(),
            ip: m.get("ip").cloned(),
            gw: m.get("gw").cloned(),
            tag: m.get("tag").cloned(),
            firewall: m
                .get("firewall")
                .and_then(|v| perl::value_bool(&serde_json::Value::String(v.clone()))),
        }
    }
}

/// One point of `GET /nodes/{node}/lxc/{vmid}/rrddata`. Missing fields are `None`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RrdPoint {
    /// Unix time.
    #[serde(deserialize_with = "perl::u64")]
    pub time: u64,
    /// CPU usage.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub cpu: Option<f64>,
    /// CPU count.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub maxcpu: Option<f64>,
    /// Memory used.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub mem: Option<f64>,
    /// Memory limit.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub maxmem: Option<f64>,
    /// Disk used.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub disk: Option<f64>,
    /// Disk size.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub maxdisk: Option<f64>,
    /// Net in rate.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub netin: Option<f64>,
    /// Net out rate.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub netout: Option<f64>,
    /// Disk read rate.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub diskread: Option<f64>,
    /// Disk write rate.
    #[serde(default, deserialize_with = "perl::opt_f64")]
    pub diskwrite: Option<f64>,
}

/// One entry of `GET /nodes/{node}/lxc/{vmid}/interfaces`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct LxcInterface {
    /// Interface name.
    pub name: String,
    /// MAC address.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub hwaddr: Option<String>,
    /// IPv4 CIDR.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub inet: Option<String>,
    /// IPv6 CIDR.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub inet6: Option<String>,
}

impl LxcInterface {
    /// The IPv4 address without prefix length.
    pub fn ipv4(&self) -> Option<std::net::Ipv4Addr> {
        self.inet.as_deref()?.split('/').next()?.parse().ok()
    }
}

/// One entry of `GET /nodes/{node}/storage`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct StorageInfo {
    /// Storage id.
    pub storage: String,
    /// Type (`dir`, `lvmthin`, `zfspool`, ...).
    #[serde(rename = "type", default, deserialize_with = "perl::string")]
    pub kind: String,
    /// Comma list of content types.
    #[serde(default, deserialize_with = "perl::string")]
    pub content: String,
    /// Active.
    #[serde(default, deserialize_with = "perl::opt_bool")]
    pub active: Option<bool>,
    /// Enabled.
    #[serde(default, deserialize_with = "perl::opt_bool")]
    pub enabled: Option<bool>,
    /// Shared.
    #[serde(default, deserialize_with = "perl::opt_bool")]
    pub shared: Option<bool>,
    /// Total bytes.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub total: Option<u64>,
    /// Used bytes.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub used: Option<u64>,
    /// Available bytes.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub avail: Option<u64>,
}

impl StorageInfo {
    /// True when the storage accepts a content type (`vztmpl`, `rootdir`, `backup`, ...).
    pub fn supports(&self, content: &str) -> bool {
        self.content.split(',').any(|c| c.trim() == content)
    }
}

/// One entry of `GET /nodes/{node}/storage/{storage}/content`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct StorageContent {
    /// Volume id (`local:backup/vzdump-lxc-...`).
    pub volid: String,
    /// Content type.
    #[serde(default, deserialize_with = "perl::string")]
    pub content: String,
    /// Format (`tar.zst`, `tzst`, `raw`, ...).
    #[serde(default, deserialize_with = "perl::string")]
    pub format: String,
    /// Size bytes.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub size: Option<u64>,
    /// Creation time (unix).
    #[serde(default, deserialize_with = "perl::opt_i64")]
    pub ctime: Option<i64>,
    /// Owning guest.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub vmid: Option<u64>,
    /// `lxc` or `qemu` (backups).
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub subtype: Option<String>,
    /// Notes.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub notes: Option<String>,
    /// Protected flag.
    #[serde(default, deserialize_with = "perl::opt_bool")]
    pub protected: Option<bool>,
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct TaskStatus {
    /// The task.
    #[serde(default, deserialize_with = "perl::string")]
    pub upid: String,
    /// Node.
    #[serde(default, deserialize_with = "perl::string")]
    pub node: String,
    /// `running` or `stopped`.
    #[serde(deserialize_with = "perl::string")]
    pub status: String,
    /// Exit status once stopped: `OK`, `WARNINGS: N` or the error text.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub exitstatus: Option<String>,
    /// Worker type.
    #[serde(rename = "type", default, deserialize_with = "perl::string")]
    pub kind: String,
    /// Worker id.
    #[serde(default, deserialize_with = "perl::string")]
    pub id: String,
    /// User.
    #[serde(default, deserialize_with = "perl::string")]
    pub user: String,
    /// Worker pid.
    #[serde(default, deserialize_with = "perl::opt_u64")]
    pub pid: Option<u64>,
    /// Start time.
    #[serde(default, deserialize_with = "perl::opt_i64")]
    pub starttime: Option<i64>,
}

impl TaskStatus {
    /// True while the task runs.
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }
    /// True when stopped with `OK` or `WARNINGS: N`.
    pub fn is_success(&self) -> bool {
        self.status == "stopped" && self.exitstatus.as_deref().is_some_and(exit_ok)
    }
}

/// True for the exit statuses Proxmox counts as success (`OK`, `WARNINGS: N`).
pub fn exit_ok(exitstatus: &str) -> bool {
    exitstatus == "OK" || exitstatus.starts_with("WARNINGS: ")
}

/// One line of `GET /nodes/{node}/tasks/{upid}/log`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct TaskLogLine {
    /// Line number (1-based).
    #[serde(deserialize_with = "perl::u64")]
    pub n: u64,
    /// Text.
    #[serde(default, deserialize_with = "perl::string")]
    pub t: String,
}

/// One entry of `GET /nodes/{node}/aplinfo`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct AplInfo {
    /// File name (what `POST aplinfo` takes).
    pub template: String,
    /// Package.
    #[serde(default, deserialize_with = "perl::string")]
    pub package: String,
    /// OS.
    #[serde(default, deserialize_with = "perl::string")]
    pub os: String,
    /// Version.
    #[serde(default, deserialize_with = "perl::string")]
    pub version: String,
    /// Section (`system`, `turnkeylinux`, `mail`).
    #[serde(default, deserialize_with = "perl::string")]
    pub section: String,
    /// Type (`lxc`).
    #[serde(rename = "type", default, deserialize_with = "perl::string")]
    pub kind: String,
    /// Headline.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub headline: Option<String>,
    /// Architecture.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub architecture: Option<String>,
    /// SHA-512.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub sha512sum: Option<String>,
}

/// Reply of `POST /access/users/{userid}/token/{tokenid}`. `Debug` hides the secret.
#[derive(Clone, Deserialize)]
pub struct NewToken {
    /// `user@realm!tokenid`.
    #[serde(rename = "full-tokenid")]
    pub full_tokenid: String,
    /// The secret (shown once).
    pub value: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("full_tokenid", &self.full_tokenid)
            .finish_non_exhaustive()
    }
}

/// One entry of `GET /nodes/{node}/network`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct NetworkIface {
    /// Interface name.
    pub iface: String,
    /// Type (`bridge`, `eth`, `bond`, ...).
    #[serde(rename = "type", default, deserialize_with = "perl::string")]
    pub kind: String,
    /// Active now.
    #[serde(default, deserialize_with = "perl::opt_bool")]
    pub active: Option<bool>,
    /// Brought up at boot.
    #[serde(default, deserialize_with = "perl::opt_bool")]
    pub autostart: Option<bool>,
    /// Bridge ports.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub bridge_ports: Option<String>,
    /// IPv4 CIDR.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub cidr: Option<String>,
    /// IPv4 address.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub address: Option<String>,
    /// Gateway.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub gateway: Option<String>,
    /// Comments.
    #[serde(default, deserialize_with = "perl::opt_string")]
    pub comments: Option<String>,
}

/// `GET /nodes/{node}/network`: interfaces plus staged (not yet applied) changes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NetworkState {
    /// Interfaces.
    pub ifaces: Vec<NetworkIface>,
    /// Unified diff of staged changes, when any.
    pub changes: Option<String>,
}

/// Parameters of `POST /nodes/{node}/lxc` (create, or restore with `restore`).
#[derive(Clone, Default)]
pub struct CreateLxc {
    /// Container id.
    pub vmid: u32,
    /// Template volid (`local:vztmpl/alpine-...tar.xz`) or backup volid when restoring.
    pub ostemplate: String,
    /// Hostname.
    pub hostname: Option<String>,
    /// Memory MiB.
    pub memory: Option<u64>,
    /// Swap MiB.
    pub swap: Option<u64>,
    /// Cores.
    pub cores: Option<u64>,
    /// Root disk `<storage>:<GiB>`.
    pub rootfs: Option<String>,
    /// `net0`, `net1`, ... values.
    pub nets: Vec<String>,
    /// Unprivileged (always sent; default true).
    pub unprivileged: bool,
    /// Features (only `nesting` is settable with a token).
    pub features: Option<String>,
    /// Root password (never logged).
    pub password: Option<String>,
    /// Newline-separated SSH public keys.
    pub ssh_public_keys: Option<String>,
    /// Target storage (restore).
    pub storage: Option<String>,
    /// Start after create.
    pub start: bool,
    /// Start at boot.
    pub onboot: Option<bool>,
    /// DNS server.
    pub nameserver: Option<String>,
    /// DNS search domain.
    pub searchdomain: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Tags (`;`-separated).
    pub tags: Option<String>,
    /// Restore from `ostemplate` (a backup).
    pub restore: bool,
    /// Overwrite an existing stopped CT (restore).
    pub force: bool,
    /// New MAC addresses (restore).
    pub unique: bool,
    /// Anything else, sent verbatim.
    pub extra: Vec<(String, String)>,
}

impl std::fmt::Debug for CreateLxc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateLxc")
            .field("vmid", &self.vmid)
            .field("ostemplate", &self.ostemplate)
            .field("hostname", &self.hostname)
            .field("restore", &self.restore)
            .finish_non_exhaustive()
    }
}

impl CreateLxc {
    /// A create request with the defaults the product uses (unprivileged).
    pub fn new(vmid: u32, ostemplate: &str) -> CreateLxc {
        CreateLxc {
            vmid,
            ostemplate: ostemplate.into(),
            unprivileged: true,
            ..Default::default()
        }
    }

    /// Wire parameters.
    pub fn to_params(&self) -> Params {
        let mut p = Params::new()
            .set("vmid", self.vmid)
            .set("ostemplate", &self.ostemplate)
            .opt("hostname", self.hostname.as_ref())
            .opt("memory", self.memory)
            .opt("swap", self.swap)
            .opt("cores", self.cores)
            .opt("rootfs", self.rootfs.as_ref())
            .flag("unprivileged", self.unprivileged)
            .opt("features", self.features.as_ref())
            .opt("password", self.password.as_ref())
            .opt("ssh-public-keys", self.ssh_public_keys.as_ref())
            .opt("storage", self.storage.as_ref())
            .opt_flag("onboot", self.onboot)
            .opt("nameserver", self.nameserver.as_ref())
            .opt("searchdomain", self.searchdomain.as_ref())
            .opt("description", self.description.as_ref())
            .opt("tags", self.tags.as_ref());
        for (i, n) in self.nets.iter().enumerate() {
            p = p.set(&format!("net{i}"), n);
        }
        if self.start {
            p = p.flag("start", true);
        }
        if self.restore {
            p = p.flag("restore", true);
        }
        if self.force {
            p = p.flag("force", true);
        }
        if self.unique {
            p = p.flag("unique", true);
        }
        for (k, v) in &self.extra {
            p = p.set(k, v);
        }
        p
    }
}

/// Parameters of `POST /nodes/{node}/lxc/{vmid}/clone`.
#[derive(Debug, Clone, Default)]
pub struct CloneLxc {
    /// New container id.
    pub newid: u32,
    /// New hostname.
    pub hostname: Option<String>,
    /// Full clone (default for a normal CT).
    pub full: Option<bool>,
    /// Target storage (full clone only).
    pub storage: Option<String>,
    /// Target node.
    pub target: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Snapshot to clone from.
    pub snapname: Option<String>,
}

impl CloneLxc {
    /// Wire parameters.
    pub fn to_params(&self) -> Params {
        Params::new()
            .set("newid", self.newid)
            .opt("hostname", self.hostname.as_ref())
            .opt_flag("full", self.full)
            .opt("storage", self.storage.as_ref())
            .opt("target", self.target.as_ref())
            .opt("description", self.description.as_ref())
            .opt("snapname", self.snapname.as_ref())
    }
}

/// Parameters of `POST /nodes/{node}/vzdump`.
#[derive(Debug, Clone, Default)]
pub struct Vzdump {
    /// Guests to back up.
    pub vmids: Vec<u32>,
    /// Target storage.
    pub storage: Option<String>,
    /// `snapshot`, `suspend` or `stop`.
    pub mode: Option<String>,
    /// `zstd`, `gzip`, `lzo` or `0`.
    pub compress: Option<String>,
    /// Notes template (needs `storage`).
    pub notes_template: Option<String>,
    /// Protect the backup (needs `storage`).
    pub protected: Option<bool>,
}

impl Vzdump {
    /// Wire parameters.
    pub fn to_params(&self) -> Params {
        let ids: Vec<String> = self.vmids.iter().map(|v| v.to_string()).collect();
        Params::new()
            .set("vmid", ids.join(","))
            .opt("storage", self.storage.as_ref())
            .opt("mode", self.mode.as_ref())
            .opt("compress", self.compress.as_ref())
            .opt("notes-template", self.notes_template.as_ref())
            .opt_flag("protected", self.protected)
    }
}

/// Options of `DELETE /nodes/{node}/lxc/{vmid}` (sent in the query string).
#[derive(Debug, Clone, Default)]
pub struct DeleteLxc {
    /// Also remove from backup jobs, replication, HA.
    pub purge: bool,
    /// Destroy even if running.
    pub force: bool,
    /// Destroy unreferenced disks owned by the vmid.
    pub destroy_unreferenced_disks: bool,
}

impl DeleteLxc {
    /// Wire parameters (only the set flags).
    pub fn to_params(&self) -> Params {
        let mut p = Params::new();
        if self.purge {
            p = p.flag("purge", true);
        }
        if self.force {
            p = p.flag("force", true);
        }
        if self.destroy_unreferenced_disks {
            p = p.flag("destroy-unreferenced-disks", true);
        }
        p
    }
}

/// Parameters of `POST /nodes/{node}/network` (stage an interface).
#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    /// Interface name.
    pub iface: String,
    /// Type (`bridge`, ...).
    pub kind: String,
    /// Bridge ports (`none` or `eth1`).
    pub bridge_ports: Option<String>,
    /// IPv4 CIDR.
    pub cidr: Option<String>,
    /// Gateway.
    pub gateway: Option<String>,
    /// Bring up at boot.
    pub autostart: Option<bool>,
    /// Comments.
    pub comments: Option<String>,
}

impl NetworkCreate {
    /// Wire parameters.
    pub fn to_params(&self) -> Params {
        Params::new()
            .set("iface", &self.iface)
            .set("type", &self.kind)
            .opt("bridge_ports", self.bridge_ports.as_ref())
            .opt("cidr", self.cidr.as_ref())
            .opt("gateway", self.gateway.as_ref())
            .opt_flag("autostart", self.autostart)
            .opt("comments", self.comments.as_ref())
    }
}
