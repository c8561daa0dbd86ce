//! Configuration: TOML wire structs (`wire`) checked into validated types (`Config`).
//!
//! `Config::from_toml_str` collects every problem with its key path instead of stopping at
//! the first, so `proximity config check` can print them all.

pub mod wire;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

pub use wire::ConfigFile;

/// One problem in a configuration file, located by its key path (`network.lan_address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, `[n]` for array items.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid configuration: {}", .issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    /// The problems, in file order where known.
    pub issues: Vec<ConfigIssue>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Validated `[network]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Uplink interface name.
    pub wan_interface: String,
    /// LAN interface name.
    pub lan_interface: String,
    /// Appliance address on the LAN with its prefix.
    pub lan_address: Ipv4Net,
    /// Dynamic pool, inclusive.
    pub dhcp_range: (Ipv4Addr, Ipv4Addr),
    /// Local zone, lower case, no trailing dot.
    pub domain: String,
    /// Upstream resolvers.
    pub upstream_dns: Vec<SocketAddr>,
    /// Networks app containers may not reach.
    pub management_networks: Vec<Ipv4Net>,
    /// Ensure LAN link and address over netlink.
    pub manage_links: bool,
    /// Apply nftables rules.
    pub firewall: bool,
    /// Remove our table on exit.
    pub remove_firewall_on_exit: bool,
    /// Public port range for forwards, inclusive.
    pub port_forward_range: (u16, u16),
    /// WAN address override; `None`: read from `wan_interface` at start.
    pub wan_address: Option<Ipv4Addr>,
}

impl NetworkConfig {
    /// The appliance's own LAN address (gateway and DNS server for containers).
    pub fn gateway(&self) -> Ipv4Addr {
        self.lan_address.addr()
    }
}

/// Validated `[dhcp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// Serve DHCP.
    pub enabled: bool,
    /// Bind address.
    pub listen: SocketAddr,
    /// Lease time, seconds.
    pub lease_secs: u32,
    /// Hold time of declined addresses, seconds.
    pub decline_hold_secs: u32,
    /// New leases per second at most.
    pub max_new_leases_per_sec: u32,
}

/// Validated `[dns]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Serve DNS.
    pub enabled: bool,
    /// Listen addresses (UDP + TCP).
    pub listen: Vec<SocketAddr>,
    /// TTL of local answers.
    pub local_ttl: u32,
    /// Upstream timeout per attempt, ms.
    pub upstream_timeout_ms: u64,
    /// Cache entries.
    pub cache_size: usize,
    /// Queries/s per client, 0 = unlimited.
    pub rate_limit_per_client: u32,
}

/// Validated `[proxy]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Serve the proxy.
    pub enabled: bool,
    /// HTTP listeners.
    pub http_listen: Vec<SocketAddr>,
    /// HTTPS listeners.
    pub https_listen: Vec<SocketAddr>,
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Upstream timeout, seconds.
    pub upstream_timeout_secs: u64,
    /// Active health check interval, seconds.
    pub health_check_secs: u64,
    /// Proxy threads.
    pub threads: usize,
}

/// Validated `[api]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Listen addresses.
    pub listen: Vec<SocketAddr>,
    /// HTTPS on.
    pub tls: bool,
    /// Access token lifetime, seconds.
    pub access_token_secs: u64,
    /// Refresh token lifetime, seconds.
    pub refresh_token_secs: u64,
    /// Body limit, bytes.
    pub max_body_bytes: usize,
    /// Console idle timeout, seconds.
    pub console_idle_secs: u64,
    /// Consoles per user.
    pub console_max_per_user: usize,
    /// Consoles in total.
    pub console_max_total: usize,
    /// Console output rate, bytes per second.
    pub console_output_bytes_per_sec: u64,
    /// Largest console input frame, bytes.
    pub console_max_input_bytes: usize,
    /// Job event streams (SSE) per user.
    pub sse_max_per_user: usize,
    /// Job event streams (SSE) in total.
    pub sse_max_total: usize,
    /// Audit retention: records older than this many days are deleted.
    pub audit_keep_days: u32,
    /// Audit retention: the newest this many records are kept.
    pub audit_keep_records: usize,
}

/// Validated `[jobs]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsConfig {
    /// Concurrent jobs.
    pub workers: usize,
    /// Queue bound.
    pub max_queued: usize,
    /// Finished jobs kept with their logs (the oldest beyond are deleted).
    pub keep_finished: usize,
}

/// Validated `[schedule]` (cron strings checked for shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Backups.
    pub backup: String,
    /// Update checks.
    pub update_check: String,
    /// Reconcile.
    pub reconcile: String,
    /// Janitor.
    pub janitor: String,
    /// Backups kept per app.
    pub keep_backups: u32,
}

/// A Proxmox host from the config file.
#[derive(Clone, PartialEq, Eq)]
pub struct PveHostConfig {
    /// Unique name.
    pub name: String,
    /// Base URL.
    pub url: String,
    /// Token id, when token auth.
    pub token_id: Option<String>,
    /// Token secret (never logged).
    pub token_secret: Option<String>,
    /// User, when ticket auth.
    pub user: Option<String>,
    /// Password (never logged).
    pub password: Option<String>,
    /// Pinned certificate fingerprint.
    pub fingerprint: Option<String>,
    /// SSH endpoint.
    pub ssh: Option<String>,
    /// SSH user.
    pub ssh_user: String,
    /// LAN bridge.
    pub bridge: String,
    /// Root-disk storage.
    pub storage: String,
}

impl std::fmt::Debug for PveHostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PveHostConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("token_id", &self.token_id)
            .field("user", &self.user)
            .field("ssh", &self.ssh)
            .finish_non_exhaustive()
    }
}

/// The validated configuration used by every service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_filter: String,
    /// Page cache of the database, bytes.
    pub store_cache_bytes: usize,
    /// Network.
    pub network: NetworkConfig,
    /// DHCP.
    pub dhcp: DhcpConfig,
    /// DNS.
    pub dns: DnsConfig,
    /// Proxy.
    pub proxy: ProxyConfig,
    /// API.
    pub api: ApiConfig,
    /// Jobs.
    pub jobs: JobsConfig,
    /// Schedule.
    pub schedule: ScheduleConfig,
    /// Extra catalog directories.
    pub catalog_dirs: Vec<PathBuf>,
    /// Seeded Proxmox hosts.
    pub pve_hosts: Vec<PveHostConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_wire(ConfigFile::default()).expect("built-in defaults are valid")
    }
}

impl Config {
    /// Parse and validate TOML text. Every problem is reported with its key path.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError {
            issues: vec![ConfigIssue {
                key: "(syntax)".into(),
                message: one_line(&e.to_string()),
            }],
        })?;
        let wire: ConfigFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError {
                issues: vec![ConfigIssue {
                    key: if key == "." { "(top)".into() } else { key },
                    message: one_line(&e.into_inner().to_string()),
                }],
            }
        })?;
        Config::from_wire(wire)
    }

    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            issues: vec![ConfigIssue {
                key: "(file)".into(),
                message: format!("cannot read {}: {e}", path.display()),
            }],
        })?;
        Config::from_toml_str(&text)
    }

    /// Check a wire config and turn it into validated types.
    pub fn from_wire(w: ConfigFile) -> Result<Config, ConfigError> {
        let mut c = Checker::default();
        let log_format = match w.general.log_format.as_str() {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                c.bad("general.log_format", format!("`{other}` is not one of human, json"));
                LogFormat::Human
            }
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&w.general.log_filter) {
            c.bad("general.log_filter", format!("not a valid filter: {e}"));
        }
        if w.general.data_dir.is_empty() {
            c.bad("general.data_dir", "must not be empty".into());
        }
        if !(1..=4096).contains(&w.general.store_cache_mib) {
            c.bad("general.store_cache_mib", "must be between 1 and 4096".into());
        }

        let n = &w.network;
        c.ifname("network.wan_interface", &n.wan_interface);
        c.ifname("network.lan_interface", &n.lan_interface);
        if n.wan_interface == n.lan_interface {
            c.bad("network.lan_interface", "must differ from network.wan_interface".into());
        }
        let lan_address: Ipv4Net = match n.lan_address.parse() {
            Ok(v) => v,
            Err(_) => {
                c.bad(
                    "network.lan_address",
                    format!("`{}` is not an IPv4 address with prefix, e.g. 10.20.0.1/24", n.lan_address),
                );
                "10.20.0.1/24".parse().unwrap()
            }
        };
        if lan_address.prefix_len() > 30 || lan_address.addr() == lan_address.network() || lan_address.addr() == lan_address.broadcast() {
            c.bad("network.lan_address", "must be a host address in a network of /30 or larger".into());
        }
        let mut range = (Ipv4Addr::new(10, 20, 0, 100), Ipv4Addr::new(10, 20, 0, 250));
        if n.dhcp_range.len() != 2 {
            c.bad("network.dhcp_range", "expected [first, last]".into());
        } else {
            let a = n.dhcp_range[0].parse::<Ipv4Addr>();
            let b = n.dhcp_range[1].parse::<Ipv4Addr>();
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    for (i, ip) in [a, b].iter().enumerate() {
                        if !lan_address.contains(ip) || *ip == lan_address.network() || *ip == lan_address.broadcast() {
                            c.bad(
                                &format!("network.dhcp_range[{i}]"),
                                format!("{ip} is not a host address inside {}", lan_address.trunc()),
                            );
                        }
                    }
                    if u32::from(a) > u32::from(b) {
                        c.bad("network.dhcp_range", "first address is after the last".into());
                    }
                    if (a..=b).contains(&lan_address.addr()) {
                        c.bad(
                            "network.dhcp_range",
                            format!("contains the appliance's own address {}", lan_address.addr()),
                        );
                    }
                    range = (a, b);
                }
                (a, b) => {
                    if a.is_err() {
                        c.bad("network.dhcp_range[0]", format!("`{}` is not an IPv4 address", n.dhcp_range[0]));
                    }
                    if b.is_err() {
                        c.bad("network.dhcp_range[1]", format!("`{}` is not an IPv4 address", n.dhcp_range[1]));
                    }
                }
            }
        }
        let domain = n.domain.trim_end_matches('.').to_ascii_lowercase();
        if let Err(e) = crate::validate::dns_name(&domain) {
            c.bad("network.domain", e);
        }
        let upstream_dns = c.addrs("network.upstream_dns", &n.upstream_dns, 53);
        let mut management_networks = Vec::new();
        for (i, s) in n.management_networks.iter().enumerate() {
            match s.parse::<Ipv4Net>() {
                Ok(v) => management_networks.push(v.trunc()),
                Err(_) => c.bad(&format!("network.management_networks[{i}]"), format!("`{s}` is not an IPv4 CIDR")),
            }
        }
        let mut port_forward_range = (30000, 30999);
        if n.port_forward_range.len() != 2 || n.port_forward_range[0] > n.port_forward_range[1] || n.port_forward_range[0] == 0 {
            c.bad(
                "network.port_forward_range",
                "expected [first, last] with 1 <= first <= last".into(),
            );
        } else {
            port_forward_range = (n.port_forward_range[0], n.port_forward_range[1]);
        }

        let wan_address = if n.wan_address.is_empty() {
            None
        } else {
            match n.wan_address.parse::<Ipv4Addr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    c.bad("network.wan_address", format!("`{}` is not an IPv4 address", n.wan_address));
                    None
                }
            }
        };
        let dhcp_listen = c.addr("dhcp.listen", &w.dhcp.listen, 67);
        if w.dhcp.lease_secs < 60 {
            c.bad("dhcp.lease_secs", "must be at least 60".into());
        }
        let dns_listen = c.addrs("dns.listen", &w.dns.listen, 53);
        if w.dns.upstream_timeout_ms == 0 || w.dns.upstream_timeout_ms > 30_000 {
            c.bad("dns.upstream_timeout_ms", "must be between 1 and 30000".into());
        }
        let http_listen = c.addrs("proxy.http_listen", &w.proxy.http_listen, 80);
        let https_listen = c.addrs("proxy.https_listen", &w.proxy.https_listen, 443);
        if w.proxy.threads == 0 || w.proxy.threads > 64 {
            c.bad("proxy.threads", "must be between 1 and 64".into());
        }
        let api_listen = c.addrs("api.listen", &w.api.listen, 8443);
        if api_listen.is_empty() {
            c.bad("api.listen", "at least one address is required".into());
        }
        if !w.api.tls {
            for (i, a) in api_listen.iter().enumerate() {
                if !a.ip().is_loopback() {
                    c.bad(
                        &format!("api.listen[{i}]"),
                        format!("{a} is not loopback: plain HTTP (api.tls = false) is allowed only on loopback"),
                    );
                }
            }
        }
        if w.api.access_token_secs < 30 || w.api.access_token_secs > 86_400 {
            c.bad("api.access_token_secs", "must be between 30 and 86400".into());
        }
        if w.api.refresh_token_secs < w.api.access_token_secs {
            c.bad("api.refresh_token_secs", "must be at least api.access_token_secs".into());
        }
        if w.api.console_idle_secs < 10 || w.api.console_idle_secs > 86_400 {
            c.bad("api.console_idle_secs", "must be between 10 and 86400".into());
        }
        if w.api.console_max_per_user > 1_000 {
            c.bad("api.console_max_per_user", "must be between 0 (consoles off) and 1000".into());
        }
        if w.api.console_max_total > 10_000 {
            c.bad("api.console_max_total", "must be between 0 (consoles off) and 10000".into());
        }
        if w.api.sse_max_per_user == 0 || w.api.sse_max_per_user > 1_000 {
            c.bad("api.sse_max_per_user", "must be between 1 and 1000".into());
        }
        if w.api.sse_max_total == 0 || w.api.sse_max_total > 10_000 {
            c.bad("api.sse_max_total", "must be between 1 and 10000".into());
        }
        if !(1..=36_500).contains(&w.api.audit_keep_days) {
            c.bad("api.audit_keep_days", "must be between 1 and 36500".into());
        }
        if !(100..=100_000_000).contains(&w.api.audit_keep_records) {
            c.bad("api.audit_keep_records", "must be between 100 and 100000000".into());
        }
        if w.api.console_output_bytes_per_sec < 1024 || w.api.console_output_bytes_per_sec > 1 << 30 {
            c.bad("api.console_output_bytes_per_sec", "must be between 1024 and 1073741824".into());
        }
        if w.api.console_max_input_bytes < 16 || w.api.console_max_input_bytes > 16 << 20 {
            c.bad("api.console_max_input_bytes", "must be between 16 and 16777216".into());
        }
        if !(10..=1_000_000).contains(&w.jobs.keep_finished) {
            c.bad("jobs.keep_finished", "must be between 10 and 1000000".into());
        }
        if w.jobs.workers == 0 || w.jobs.workers > 256 {
            c.bad("jobs.workers", "must be between 1 and 256".into());
        }
        for (key, expr) in [
            ("schedule.backup", &w.schedule.backup),
            ("schedule.update_check", &w.schedule.update_check),
            ("schedule.reconcile", &w.schedule.reconcile),
            ("schedule.janitor", &w.schedule.janitor),
        ] {
            if let Err(e) = crate::validate::cron_shape(expr) {
                c.bad(key, e);
            }
        }
        let mut pve_hosts = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, h) in w.pve_hosts.iter().enumerate() {
            let p = format!("pve_hosts[{i}]");
            if h.name.is_empty() {
                c.bad(&format!("{p}.name"), "is required".into());
            } else if !names.insert(h.name.clone()) {
                c.bad(&format!("{p}.name"), format!("`{}` is used twice", h.name));
            }
            if !(h.url.starts_with("https://") || h.url.starts_with("http://")) {
                c.bad(
                    &format!("{p}.url"),
                    "must be an https:// URL, e.g. https://192.168.1.10:8006".into(),
                );
            }
            let token = !h.token_id.is_empty();
            let ticket = !h.user.is_empty();
            if token == ticket {
                c.bad(&p, "set either token_id + token_secret or user + password".into());
            }
            if token && (!h.token_id.contains('!') || h.token_secret.is_empty()) {
                c.bad(&format!("{p}.token_id"), "expected USER@REALM!TOKENID with token_secret".into());
            }
            let opt = |s: &String| if s.is_empty() { None } else { Some(s.clone()) };
            pve_hosts.push(PveHostConfig {
                name: h.name.clone(),
                url: h.url.trim_end_matches('/').to_string(),
                token_id: opt(&h.token_id),
                token_secret: opt(&h.token_secret),
                user: opt(&h.user),
                password: opt(&h.password),
                fingerprint: opt(&h.fingerprint),
                ssh: opt(&h.ssh),
                ssh_user: if h.ssh_user.is_empty() { "root".into() } else { h.ssh_user.clone() },
                bridge: if h.bridge.is_empty() {
                    "proximity-lan".into()
                } else {
                    h.bridge.clone()
                },
                storage: if h.storage.is_empty() {
                    "local-lvm".into()
                } else {
                    h.storage.clone()
                },
            });
        }

        if !c.issues.is_empty() {
            return Err(ConfigError { issues: c.issues });
        }
        Ok(Config {
            data_dir: PathBuf::from(&w.general.data_dir),
            log_format,
            log_filter: w.general.log_filter.clone(),
            store_cache_bytes: w.general.store_cache_mib << 20,
            network: NetworkConfig {
                wan_interface: n.wan_interface.clone(),
                lan_interface: n.lan_interface.clone(),
                lan_address,
                dhcp_range: range,
                domain,
                upstream_dns,
                management_networks,
                manage_links: n.manage_links,
                firewall: n.firewall,
                remove_firewall_on_exit: n.remove_firewall_on_exit,
                port_forward_range,
                wan_address,
            },
            dhcp: DhcpConfig {
                enabled: w.dhcp.enabled,
                listen: dhcp_listen,
                lease_secs: w.dhcp.lease_secs,
                decline_hold_secs: w.dhcp.decline_hold_secs,
                max_new_leases_per_sec: w.dhcp.max_new_leases_per_sec,
            },
            dns: DnsConfig {
                enabled: w.dns.enabled,
                listen: dns_listen,
                local_ttl: w.dns.local_ttl,
                upstream_timeout_ms: w.dns.upstream_timeout_ms,
                cache_size: w.dns.cache_size,
                rate_limit_per_client: w.dns.rate_limit_per_client,
            },
            proxy: ProxyConfig {
                enabled: w.proxy.enabled,
                http_listen,
                https_listen,
                max_body_bytes: w.proxy.max_body_bytes,
                upstream_timeout_secs: w.proxy.upstream_timeout_secs,
                health_check_secs: w.proxy.health_check_secs.max(1),
                threads: w.proxy.threads,
            },
            api: ApiConfig {
                listen: api_listen,
                tls: w.api.tls,
                access_token_secs: w.api.access_token_secs,
                refresh_token_secs: w.api.refresh_token_secs,
                max_body_bytes: w.api.max_body_bytes,
                console_idle_secs: w.api.console_idle_secs,
                console_max_per_user: w.api.console_max_per_user,
                console_max_total: w.api.console_max_total,
                sse_max_per_user: w.api.sse_max_per_user,
                sse_max_total: w.api.sse_max_total,
                audit_keep_days: w.api.audit_keep_days,
                audit_keep_records: w.api.audit_keep_records,
                console_output_bytes_per_sec: w.api.console_output_bytes_per_sec,
                console_max_input_bytes: w.api.console_max_input_bytes,
            },
            jobs: JobsConfig {
                workers: w.jobs.workers,
                max_queued: w.jobs.max_queued,
                keep_finished: w.jobs.keep_finished,
            },
            schedule: ScheduleConfig {
                backup: w.schedule.backup.clone(),
                update_check: w.schedule.update_check.clone(),
                reconcile: w.schedule.reconcile.clone(),
                janitor: w.schedule.janitor.clone(),
                keep_backups: w.schedule.keep_backups,
            },
            catalog_dirs: w.catalog.extra_dirs.iter().map(PathBuf::from).collect(),
            pve_hosts,
        })
    }

    /// Path of the redb file inside the data directory.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("proximity.redb")
    }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[derive(Default)]
struct Checker {
    issues: Vec<ConfigIssue>,
}

impl Checker {
    fn bad(&mut self, key: &str, message: String) {
        self.issues.push(ConfigIssue { key: key.into(), message });
    }

    fn ifname(&mut self, key: &str, name: &str) {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
            self.bad(
                key,
                format!("`{name}` is not a valid interface name (1-15 characters, no '/' or space)"),
            );
        }
    }

    fn addr(&mut self, key: &str, s: &str, default_port: u16) -> SocketAddr {
        match parse_socket_addr(s, default_port) {
            Some(a) => a,
            None => {
                self.bad(key, format!("`{s}` is not an address like 0.0.0.0:{default_port}"));
                SocketAddr::from(([0, 0, 0, 0], default_port))
            }
        }
    }

    fn addrs(&mut self, key: &str, list: &[String], default_port: u16) -> Vec<SocketAddr> {
        list.iter()
            .enumerate()
            .map(|(i, s)| self.addr(&format!("{key}[{i}]"), s, default_port))
            .collect()
    }
}

/// Parse `ip:port`, `[v6]:port` or a bare IP (then `default_port`).
pub fn parse_socket_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    s.parse::<std::net::IpAddr>().ok().map(|ip| SocketAddr::new(ip, default_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../../rootfs/etc/proximity/proximity.toml");

    #[test]
    fn reference_config_parses_and_matches_defaults() {
        let c = Config::from_toml_str(REFERENCE).expect("reference config must be valid");
        let d = Config::default();
        assert_eq!(c.network, d.network);
        assert_eq!(c.dhcp, d.dhcp);
        assert_eq!(c.dns, d.dns);
        assert_eq!(c.proxy, d.proxy);
        assert_eq!(c.api, d.api);
        assert_eq!(c.schedule, d.schedule);
        assert_eq!(c.data_dir, d.data_dir);
    }

    #[test]
    fn reference_config_mentions_every_default_key() {
        let defaults = toml::to_string(&ConfigFile::default()).unwrap();
        let parsed: toml::Table = defaults.parse().unwrap();
        for (section, v) in parsed {
            if let toml::Value::Table(t) = v {
                for key in t.keys() {
                    let needle = format!("{key} =");
                    assert!(REFERENCE.contains(&needle), "reference config lacks {section}.{key}");
                }
            }
        }
    }

    #[test]
    fn unknown_key_is_reported_with_its_path() {
        let e = Config::from_toml_str("[network]\nlan_adress = \"10.0.0.1/24\"\n").unwrap_err();
        assert_eq!(e.issues[0].key, "network.lan_adress", "{e:?}");
        assert!(e.issues[0].message.contains("unknown field"), "{e:?}");
    }

    #[test]
    fn wrong_type_is_reported_with_its_path() {
        let e = Config::from_toml_str("[dhcp]\nlease_secs = \"long\"\n").unwrap_err();
        assert_eq!(e.issues[0].key, "dhcp.lease_secs");
    }

    #[test]
    fn semantic_errors_are_all_collected() {
        let e = Config::from_toml_str(
            "[network]\nlan_address = \"10.20.0.1/24\"\ndhcp_range = [\"10.30.0.1\", \"bogus\"]\n[api]\nlisten = [\"nope\"]\n",
        )
        .unwrap_err();
        let keys: Vec<_> = e.issues.iter().map(|i| i.key.as_str()).collect();
        assert!(keys.contains(&"network.dhcp_range[1]"), "{keys:?}");
        assert!(keys.contains(&"api.listen[0]"), "{keys:?}");
    }

    #[test]
    fn pool_outside_lan_is_rejected() {
        let e = Config::from_toml_str("[network]\ndhcp_range = [\"10.30.0.1\", \"10.30.0.9\"]\n").unwrap_err();
        assert_eq!(e.issues[0].key, "network.dhcp_range[0]");
    }

    #[test]
    fn plain_http_api_only_on_loopback() {
        assert!(Config::from_toml_str("[api]\ntls = false\nlisten = [\"127.0.0.1:9443\"]\n").is_ok());
        let e = Config::from_toml_str("[api]\ntls = false\nlisten = [\"0.0.0.0:9443\"]\n").unwrap_err();
        assert_eq!(e.issues[0].key, "api.listen[0]");
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let c = Config::from_toml_str(
            "[[pve_hosts]]\nname = \"pve\"\nurl = \"https://127.0.0.1:8006\"\ntoken_id = \"root@pam!p\"\ntoken_secret = \"s3cr3t-value\"\n",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
    }
}
