//! Cluster state: nodes, containers (config + the mini-OS state behind `pct exec`), node
//! networks with staged changes. Persisted as JSON in the state directory after each change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Memory of each simulated node.
pub const GIB: u64 = 1 << 30;

/// A cluster node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    /// `pve1`...
    pub name: String,
    /// 1-based index (second octet of loopback CT addresses).
    pub index: u32,
    /// Total memory in bytes.
    pub maxmem: u64,
    /// CPU count.
    pub maxcpu: u32,
}

/// A compose service as parsed from the compose file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComposeService {
    /// Service name.
    pub name: String,
    /// Image.
    pub image: String,
    /// Published ports: (host ip, host port, container port).
    pub ports: Vec<(Option<String>, u16, u16)>,
}

/// A compose project inside a CT.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Project {
    /// Project name (directory base name).
    pub name: String,
    /// Project directory inside the CT.
    pub dir: String,
    /// Compose file path inside the CT.
    pub file: String,
    /// Services.
    pub services: Vec<ComposeService>,
    /// Whether `up -d` is in effect (re-run at CT start).
    pub up: bool,
    /// Images pulled.
    pub pulled: bool,
    /// Log lines (bounded).
    pub logs: Vec<String>,
}

/// The part of a CT that the SSH mini-OS changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OsState {
    /// Installed apk packages.
    pub packages: BTreeSet<String>,
    /// `apk update` ran.
    pub index_updated: bool,
    /// Services in the default runlevel.
    pub boot_services: BTreeSet<String>,
    /// Running services (cleared on stop).
    pub running_services: BTreeSet<String>,
    /// Compose projects by directory.
    pub projects: BTreeMap<String, Project>,
}

impl OsState {
    /// Docker CLI present.
    pub fn has_docker(&self) -> bool {
        self.packages.contains("docker") || self.packages.contains("docker-cli")
    }
    /// `docker compose` plugin present.
    pub fn has_compose(&self) -> bool {
        self.packages.contains("docker-cli-compose") || self.packages.contains("docker-compose")
    }
}

/// A container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ct {
    /// VMID.
    pub vmid: u32,
    /// Node holding it.
    pub node: String,
    /// Configuration as PVE returns it (typed values).
    pub config: BTreeMap<String, Value>,
    /// Running?
    pub running: bool,
    /// Unix time of the last start.
    pub started_at: u64,
    /// Fake PID while running.
    pub pid: u32,
    /// Lock (`create`, `backup`, `clone`, `destroyed`, ...).
    pub lock: Option<String>,
    /// Loopback address (loopback runtime).
    pub loop_ip: Ipv4Addr,
    /// Address the runtime reported at start (netns: DHCP result).
    pub ip: Option<String>,
    /// Mini-OS state.
    pub os: OsState,
}

impl Ct {
    /// Hostname (`name`).
    pub fn name(&self) -> String {
        self.config
            .get("hostname")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("CT{}", self.vmid))
    }
    /// A config value as string.
    pub fn cfg_str(&self, k: &str) -> Option<String> {
        match self.config.get(k)? {
            Value::String(s) => Some(s.clone()),
            v => Some(v.to_string()),
        }
    }
    /// A config value as integer.
    pub fn cfg_int(&self, k: &str) -> Option<i64> {
        match self.config.get(k)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
    /// Memory in bytes.
    pub fn maxmem(&self) -> u64 {
        self.cfg_int("memory").unwrap_or(512).max(0) as u64 * (1 << 20)
    }
    /// Swap in bytes.
    pub fn maxswap(&self) -> u64 {
        self.cfg_int("swap").unwrap_or(512).max(0) as u64 * (1 << 20)
    }
    /// Root disk size in bytes.
    pub fn maxdisk(&self) -> u64 {
        self.cfg_str("rootfs")
            .and_then(|r| {
                r.split(',')
                    .find_map(|p| p.strip_prefix("size=").and_then(super::schema::parse_disk_size))
            })
            .unwrap_or(4 * GIB)
    }
    /// Cores.
    pub fn cores(&self) -> i64 {
        self.cfg_int("cores").unwrap_or(1).max(1)
    }
    /// Uptime in seconds at `now`.
    pub fn uptime(&self, now: u64) -> u64 {
        if self.running { now.saturating_sub(self.started_at) } else { 0 }
    }
    /// Whether this CT is a template.
    pub fn is_template(&self) -> bool {
        self.cfg_int("template").unwrap_or(0) != 0
    }
    /// Used memory (a stable fraction of maxmem while running).
    pub fn mem(&self) -> u64 {
        if !self.running {
            return 0;
        }
        let base = 24u64 << 20;
        let apps: u64 = self
            .os
            .projects
            .values()
            .filter(|p| p.up)
            .map(|p| p.services.len() as u64 * (48 << 20))
            .sum();
        (base + apps + (self.vmid as u64 % 7) * (1 << 20)).min(self.maxmem())
    }
    /// Used disk.
    pub fn disk(&self) -> u64 {
        let base = 180u64 << 20;
        let docker = if self.os.has_docker() { 420u64 << 20 } else { 0 };
        let images: u64 = self
            .os
            .projects
            .values()
            .filter(|p| p.pulled)
            .map(|p| p.services.len() as u64 * (150 << 20))
            .sum();
        (base + docker + images).min(self.maxdisk())
    }
    /// `net0` as a key/value map.
    pub fn net0(&self) -> BTreeMap<String, String> {
        self.cfg_str("net0").map(|s| parse_kv(&s)).unwrap_or_default()
    }
}

/// Parse `k=v,k=v` loosely (for values we wrote ourselves).
pub fn parse_kv(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A node's network configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeNet {
    /// Active interfaces (`/etc/network/interfaces`).
    pub current: Vec<BTreeMap<String, Value>>,
    /// Staged (`/etc/network/interfaces.new`).
    pub staged: Option<Vec<BTreeMap<String, Value>>>,
}

/// The whole simulated cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Cluster name.
    pub cluster: String,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Containers by VMID.
    pub cts: BTreeMap<u32, Ct>,
    /// Node networks.
    pub net: BTreeMap<String, NodeNet>,
    /// Next loopback address counter per node.
    pub next_addr: BTreeMap<String, u32>,
    /// Counts MACs made.
    pub mac_counter: u32,
    /// Random offset of this simulator's loopback addresses, so simulators running side by
    /// side (parallel tests) rarely hand out the same 127.x.y.z.
    #[serde(default)]
    pub addr_base: u32,
    /// API tokens created through `/access/users/{userid}/token/{tokenid}`, by full id.
    #[serde(default)]
    pub tokens: BTreeMap<String, super::access::ApiToken>,
}

impl State {
    /// A fresh cluster of `n` nodes.
    pub fn new(cluster: &str, n: u32) -> State {
        let mut s = State {
            cluster: cluster.to_string(),
            addr_base: (rand::random::<u32>() % 250) * 254,
            ..Default::default()
        };
        for i in 1..=n.max(1) {
            let name = format!("pve{i}");
            s.nodes.push(Node {
                name: name.clone(),
                index: i,
                maxmem: if i % 2 == 1 { 32 * GIB } else { 16 * GIB },
                maxcpu: 8,
            });
            s.net.insert(
                name,
                NodeNet {
                    current: default_ifaces(i),
                    staged: None,
                },
            );
        }
        s
    }

    /// Load from `path`, or a fresh state; the node count follows `n` (nodes are added or
    /// removed at the end; CTs on removed nodes are kept but unreachable).
    pub fn load_or_new(path: &Path, cluster: &str, n: u32) -> anyhow::Result<State> {
        let mut s = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<State>(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::new(cluster, n),
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        };
        let fresh = State::new(cluster, n);
        s.nodes = fresh.nodes;
        for (k, v) in fresh.net {
            s.net.entry(k).or_insert(v);
        }
        for ct in s.cts.values_mut() {
            ct.running = false;
            ct.ip = None;
            ct.os.running_services.clear();
            // Tasks do not survive a restart, so neither do their locks.
            ct.lock = None;
        }
        Ok(s)
    }

    /// Save atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).unwrap_or_default())?;
        std::fs::rename(tmp, path)
    }

    /// Node by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Memory used on a node.
    pub fn node_mem(&self, node: &str) -> u64 {
        let base = 2 * GIB + GIB / 4;
        base + self
            .cts
            .values()
            .filter(|c| c.node == node && c.running)
            .map(Ct::maxmem)
            .sum::<u64>()
            / 2
    }

    /// Lowest free VMID >= 100.
    pub fn next_vmid(&self) -> u32 {
        (100..).find(|v| !self.cts.contains_key(v)).unwrap_or(100)
    }

    /// A fresh unique loopback address on `node` (127.<node>.<hi>.<lo>, lo in 1..=254).
    pub fn alloc_loop_ip(&mut self, node: &str) -> Ipv4Addr {
        let idx = self.node(node).map(|n| n.index).unwrap_or(1).min(255) as u8;
        loop {
            let c = self.next_addr.entry(node.to_string()).or_insert(0);
            let n = *c + self.addr_base;
            *c += 1;
            let ip = Ipv4Addr::new(127, idx, ((n / 254) % 256) as u8, (n % 254 + 1) as u8);
            if ip != Ipv4Addr::new(127, 0, 0, 1) && !self.cts.values().any(|c| c.loop_ip == ip) {
                return ip;
            }
        }
    }

    /// A fresh MAC with the Proxmox prefix `BC:24:11`.
    pub fn new_mac(&mut self, salt: u32) -> String {
        self.mac_counter = self.mac_counter.wrapping_add(1);
        let r: u32 = rand::random::<u32>() ^ salt.rotate_left(8) ^ self.mac_counter;
        format!("BC:24:11:{:02X}:{:02X}:{:02X}", (r >> 16) & 0xff, (r >> 8) & 0xff, r & 0xff)
    }
}

fn default_ifaces(i: u32) -> Vec<BTreeMap<String, Value>> {
    let to_map = |v: Value| v.as_object().map(|m| m.clone().into_iter().collect()).unwrap_or_default();
    vec![
        to_map(
            json!({"iface":"lo","type":"loopback","method":"loopback","method6":"manual","families":["inet"],"autostart":1,"active":1,"priority":3}),
        ),
        to_map(
            json!({"iface":"eno1","type":"eth","method":"manual","method6":"manual","families":["inet"],"active":1,"exists":1,"priority":4}),
        ),
        to_map(json!({
            "iface":"vmbr0","type":"bridge","method":"static","method6":"manual","families":["inet"],"autostart":1,"active":1,
            "bridge_ports":"eno1","bridge_stp":"off","bridge_fd":"0","cidr":format!("192.168.100.{}/24", 10 + i),
            "address":format!("192.168.100.{}", 10 + i),"netmask":"24","gateway":"192.168.100.1","priority":5
        })),
    ]
}

/// Render a node's interfaces as `/etc/network/interfaces` text (for the `changes` diff).
pub fn interfaces_text(ifaces: &[BTreeMap<String, Value>]) -> String {
    let s = |m: &BTreeMap<String, Value>, k: &str| m.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
    let mut out = String::new();
    for m in ifaces {
        let name = s(m, "iface").unwrap_or_default();
        if m.get("autostart").and_then(Value::as_i64) == Some(1) {
            out.push_str(&format!("auto {name}\n"));
        }
        let method = s(m, "method").unwrap_or_else(|| "manual".into());
        out.push_str(&format!("iface {name} inet {method}\n"));
        for (k, key) in [
            ("cidr", "address"),
            ("gateway", "gateway"),
            ("bridge_ports", "bridge-ports"),
            ("bridge_stp", "bridge-stp"),
            ("bridge_fd", "bridge-fd"),
            ("bridge_vlan_aware", "bridge-vlan-aware"),
            ("mtu", "mtu"),
            ("comments", "#"),
        ] {
            if let Some(v) = s(m, k) {
                out.push_str(&format!("\t{key} {v}\n"));
            }
        }
        out.push('\n');
    }
    out
}

/// A unified diff of two texts (one hunk; enough for PVE's `changes` field).
pub fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut body = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            body.push_str(&format!(" {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            body.push_str(&format!("+{}\n", b[j]));
            j += 1;
        } else {
            body.push_str(&format!("-{}\n", a[i]));
            i += 1;
        }
    }
    format!("--- {old_name}\n+++ {new_name}\n@@ -1,{n} +1,{m} @@\n{body}")
}

/// Directory layout inside the state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Root.
    pub root: PathBuf,
}

impl Layout {
    /// state.json.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// A CT's root filesystem.
    pub fn ct_root(&self, vmid: u32) -> PathBuf {
        self.root.join("ct").join(vmid.to_string()).join("rootfs")
    }
    /// Node `local` storage directory (`/var/lib/vz`).
    pub fn local_storage(&self, node: &str) -> PathBuf {
        self.root.join("nodes").join(node).join("vz")
    }
    /// Templates of a node.
    pub fn template_dir(&self, node: &str) -> PathBuf {
        self.local_storage(node).join("template").join("cache")
    }
    /// Backups of a node.
    pub fn dump_dir(&self, node: &str) -> PathBuf {
        self.local_storage(node).join("dump")
    }
    /// authorized_keys file.
    pub fn authorized_keys(&self) -> PathBuf {
        self.root.join("authorized_keys")
    }
}

/// Resolve a path inside a CT to a host path under its root (no escaping via `..`).
pub fn ct_path(root: &Path, inside: &str) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for comp in inside.split('/') {
        match comp {
            "" | "." => {}
            ".." => return None,
            c => p.push(c),
        }
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_unique_and_never_localhost() {
        let mut s = State::new("c", 2);
        let a = s.alloc_loop_ip("pve1");
        let b = s.alloc_loop_ip("pve1");
        let c = s.alloc_loop_ip("pve2");
        assert_ne!(a, b);
        assert_eq!(a.octets()[..2], [127, 1]);
        assert_eq!(c.octets()[..2], [127, 2]);
        for _ in 0..600 {
            let ip = s.alloc_loop_ip("pve1");
            assert!(ip.octets()[3] != 0 && ip.octets()[3] != 255);
        }
    }

    #[test]
    fn diff_marks_added_lines() {
        let d = unified_diff("a\nb\n", "a\nx\nb\n", "/etc/network/interfaces", "/etc/network/interfaces.new");
        assert!(d.contains("\n+x\n") && d.contains("\n a\n") && d.starts_with("--- /etc/network/interfaces\n"));
    }

    #[test]
    fn ct_paths_stay_inside() {
        let r = Path::new("/s/ct/100/rootfs");
        assert_eq!(ct_path(r, "/opt/app/x.yml").unwrap(), Path::new("/s/ct/100/rootfs/opt/app/x.yml"));
        assert!(ct_path(r, "/../../etc/passwd").is_none());
    }
}
