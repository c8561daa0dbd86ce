//! Wire form of the configuration file: exactly what TOML says, nothing checked yet.
//!
//! Every struct denies unknown fields so a typo is an error, not a silent default.
//! Defaults live here (one place) and are mirrored, commented, in
//! `rootfs/etc/proximity/proximity.toml`.

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    /// `[general]`
    pub general: GeneralWire,
    /// `[network]`
    pub network: NetworkWire,
    /// `[dhcp]`
    pub dhcp: DhcpWire,
    /// `[dns]`
    pub dns: DnsWire,
    /// `[proxy]`
    pub proxy: ProxyWire,
    /// `[api]`
    pub api: ApiWire,
    /// `[jobs]`
    pub jobs: JobsWire,
    /// `[schedule]`
    pub schedule: ScheduleWire,
    /// `[catalog]`
    pub catalog: CatalogWire,
    /// `[[pve_hosts]]`: Proxmox hosts seeded at start (more can be added over the API).
    pub pve_hosts: Vec<PveHostWire>,
}

/// `[general]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneralWire {
    /// Directory holding the redb file, the secrets key and the CA.
    pub data_dir: String,
    /// `human` or `json`.
    pub log_format: String,
    /// tracing filter, `RUST_LOG` syntax; the `RUST_LOG` variable wins when set.
    pub log_filter: String,
    /// Page cache of the database, MiB (bounds how much of the daemon's memory the cache takes).
    pub store_cache_mib: usize,
}

impl Default for GeneralWire {
    fn default() -> Self {
        Self {
            data_dir: "/var/lib/proximity".into(),
            log_format: "human".into(),
            log_filter: "info".into(),
            store_cache_mib: 32,
        }
    }
}

/// `[network]` (DESIGN §10 names).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkWire {
    /// The uplink; DHCP never answers here.
    pub wan_interface: String,
    /// proximity-lan; the daemon ensures `lan_address` on it.
    pub lan_interface: String,
    /// Appliance address and prefix on the LAN.
    pub lan_address: String,
    /// First and last address of the dynamic pool.
    pub dhcp_range: Vec<String>,
    /// Local DNS zone.
    pub domain: String,
    /// Resolvers for names outside the local zone (`ip:port`).
    pub upstream_dns: Vec<String>,
    /// CIDRs app containers may not reach (the WAN subnet is always added).
    pub management_networks: Vec<String>,
    /// Bring the LAN interface up and assign `lan_address` over netlink.
    pub manage_links: bool,
    /// Apply the nftables ruleset (NAT, isolation, port forwards).
    pub firewall: bool,
    /// Remove the `proximity` nftables table when the daemon stops.
    pub remove_firewall_on_exit: bool,
    /// Public port range for port forwards on the WAN address.
    pub port_forward_range: Vec<u16>,
    /// The appliance's WAN address given explicitly (empty: found on `wan_interface` at start).
    pub wan_address: String,
}

impl Default for NetworkWire {
    fn default() -> Self {
        Self {
            wan_interface: "eth0".into(),
            lan_interface: "eth1".into(),
            lan_address: "10.20.0.1/24".into(),
            dhcp_range: vec!["10.20.0.100".into(), "10.20.0.250".into()],
            domain: "prox.local".into(),
            upstream_dns: vec!["1.1.1.1:53".into()],
            management_networks: vec![],
            manage_links: true,
            firewall: true,
            remove_firewall_on_exit: false,
            port_forward_range: vec![30000, 30999],
            wan_address: String::new(),
        }
    }
}

/// `[dhcp]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DhcpWire {
    /// Run the DHCPv4 server on the LAN interface.
    pub enabled: bool,
    /// Address to bind (port 67 in production; tests use another).
    pub listen: String,
    /// Lease time in seconds (option 51).
    pub lease_secs: u32,
    /// How long a DECLINEd address is kept out of the pool, in seconds.
    pub decline_hold_secs: u32,
    /// Upper bound of new leases handed out per second (starvation guard).
    pub max_new_leases_per_sec: u32,
}

impl Default for DhcpWire {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:67".into(),
            lease_secs: 43_200,
            decline_hold_secs: 600,
            max_new_leases_per_sec: 5_000,
        }
    }
}

/// `[dns]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsWire {
    /// Run the DNS server.
    pub enabled: bool,
    /// UDP and TCP listen addresses.
    pub listen: Vec<String>,
    /// TTL of local records, in seconds.
    pub local_ttl: u32,
    /// Per-attempt timeout of upstream queries, in milliseconds.
    pub upstream_timeout_ms: u64,
    /// Entries of the forwarding cache.
    pub cache_size: usize,
    /// Queries per second allowed per client address (0 = unlimited).
    pub rate_limit_per_client: u32,
}

impl Default for DnsWire {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: vec!["0.0.0.0:53".into()],
            local_ttl: 60,
            upstream_timeout_ms: 2_000,
            cache_size: 4_096,
            rate_limit_per_client: 0,
        }
    }
}

/// `[proxy]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyWire {
    /// Run the reverse proxy.
    pub enabled: bool,
    /// Plain HTTP listeners (redirect to HTTPS by default).
    pub http_listen: Vec<String>,
    /// HTTPS listeners.
    pub https_listen: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Upstream connect/read timeout, in seconds.
    pub upstream_timeout_secs: u64,
    /// Interval of active upstream health checks, in seconds.
    pub health_check_secs: u64,
    /// Worker threads of the proxy runtime.
    pub threads: usize,
}

impl Default for ProxyWire {
    fn default() -> Self {
        Self {
            enabled: true,
            http_listen: vec!["0.0.0.0:80".into()],
            https_listen: vec!["0.0.0.0:443".into()],
            max_body_bytes: 64 * 1024 * 1024,
            upstream_timeout_secs: 60,
            health_check_secs: 5,
            threads: 2,
        }
    }
}

/// `[api]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiWire {
    /// Listen addresses of the management API and web UI.
    pub listen: Vec<String>,
    /// Serve HTTPS (plain HTTP is allowed only on loopback addresses).
    pub tls: bool,
    /// Lifetime of access tokens, in seconds.
    pub access_token_secs: u64,
    /// Lifetime of refresh tokens, in seconds.
    pub refresh_token_secs: u64,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Idle timeout of web console sessions, in seconds.
    pub console_idle_secs: u64,
    /// Web consoles one user may have open at once.
    pub console_max_per_user: usize,
    /// Web consoles open at once in total.
    pub console_max_total: usize,
    /// Terminal output sent to one console, bytes per second (token bucket, 1 s burst).
    pub console_output_bytes_per_sec: u64,
    /// Largest input frame a console accepts, bytes.
    pub console_max_input_bytes: usize,
    /// Job event streams (SSE) one user may have open at once.
    pub sse_max_per_user: usize,
    /// Job event streams (SSE) open at once in total.
    pub sse_max_total: usize,
    /// Audit records older than this many days are deleted.
    pub audit_keep_days: u32,
    /// Audit records kept at most; the oldest beyond are deleted.
    pub audit_keep_records: usize,
}

impl Default for ApiWire {
    fn default() -> Self {
        Self {
            listen: vec!["0.0.0.0:8443".into()],
            tls: true,
            access_token_secs: 900,
            refresh_token_secs: 7 * 24 * 3600,
            max_body_bytes: 1024 * 1024,
            console_idle_secs: 900,
            console_max_per_user: 4,
            console_max_total: 32,
            console_output_bytes_per_sec: 1024 * 1024,
            console_max_input_bytes: 64 * 1024,
            sse_max_per_user: 16,
            sse_max_total: 64,
            audit_keep_days: 365,
            audit_keep_records: 100_000,
        }
    }
}

/// `[jobs]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsWire {
    /// Jobs running at once.
    pub workers: usize,
    /// Jobs waiting at most; more are refused with 503.
    pub max_queued: usize,
    /// Finished jobs kept (with their logs); older ones are deleted.
    pub keep_finished: usize,
}

impl Default for JobsWire {
    fn default() -> Self {
        Self {
            workers: 8,
            max_queued: 1_000,
            keep_finished: 1_000,
        }
    }
}

/// `[schedule]`: five-field cron expressions (minute hour day month weekday), UTC.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleWire {
    /// Nightly backups of every app.
    pub backup: String,
    /// Weekly check for newer images.
    pub update_check: String,
    /// Registry ↔ Proxmox reconciliation.
    pub reconcile: String,
    /// Fail jobs stuck for too long.
    pub janitor: String,
    /// Backups kept per app.
    pub keep_backups: u32,
}

impl Default for ScheduleWire {
    fn default() -> Self {
        Self {
            backup: "0 2 * * *".into(),
            update_check: "0 3 * * 0".into(),
            reconcile: "0 * * * *".into(),
            janitor: "0 */6 * * *".into(),
            keep_backups: 7,
        }
    }
}

/// `[catalog]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogWire {
    /// Extra directories of `<id>.yaml` files, added to the built-in catalog.
    pub extra_dirs: Vec<String>,
}

/// One `[[pve_hosts]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PveHostWire {
    /// Display name, unique.
    pub name: String,
    /// Base URL, e.g. `https://192.168.1.10:8006`.
    pub url: String,
    /// API token id `user@realm!tokenid` (token auth).
    pub token_id: String,
    /// API token secret.
    pub token_secret: String,
    /// User for ticket auth, e.g. `root@pam`.
    pub user: String,
    /// Password for ticket auth.
    pub password: String,
    /// SHA-256 fingerprint of the node certificate (hex, colons allowed).
    pub fingerprint: String,
    /// SSH endpoint `host:port` for `pct exec`.
    pub ssh: String,
    /// SSH user (default root).
    pub ssh_user: String,
    /// Bridge the app containers attach to.
    pub bridge: String,
    /// Storage for container root disks.
    pub storage: String,
}
