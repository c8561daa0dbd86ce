//! The network plane assembled: [`start`] brings up the LAN link, finds the WAN address,
//! binds DHCP and DNS sockets, applies the firewall and spawns each enabled service;
//! [`network_status`] gives the API leases, DNS records, port forwards and the firewall
//! summary (read from the store and the current plan).

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::dhcp::Lease;
use crate::firewall::FirewallStatus;
use crate::plan::Forward;
use crate::store::StoreError;
use crate::supervisor::Context;

/// One DNS name served from the local zone.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordView {
    /// Fully qualified name.
    pub name: String,
    /// Container or lease address.
    pub ip: Ipv4Addr,
    /// Served by the reverse proxy (clients get the appliance address).
    pub proxied: bool,
    /// `app` or `lease`.
    pub source: &'static str,
}

/// Everything the API shows about the network plane.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkStatus {
    /// Plan generation.
    pub generation: u64,
    /// Bound, unexpired leases.
    pub leases: Vec<Lease>,
    /// Local DNS names.
    pub records: Vec<RecordView>,
    /// Port forwards from the plan.
    pub forwards: Vec<Forward>,
    /// Last firewall apply in this process (None when the firewall is off).
    pub firewall: Option<FirewallStatus>,
}

/// Collect the status. Lease names follow the DNS rule: they never shadow an app name.
pub fn network_status(ctx: &Context) -> Result<NetworkStatus, StoreError> {
    let plan = ctx.plan.current();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let leases: Vec<Lease> = crate::dhcp::store::load(&ctx.store)?
        .into_iter()
        .filter(|l| l.expires > now)
        .collect();
    let mut records: Vec<RecordView> = plan
        .records
        .iter()
        .map(|r| RecordView {
            name: r.name.clone(),
            ip: r.ip,
            proxied: r.proxied,
            source: "app",
        })
        .collect();
    for l in &leases {
        if let Some(h) = &l.hostname {
            let name = format!("{h}.{}", plan.domain);
            if !records.iter().any(|r| r.name == name) && !plan.reservations.iter().any(|r| r.ip == l.ip) {
                records.push(RecordView {
                    name,
                    ip: l.ip,
                    proxied: false,
                    source: "lease",
                });
            }
        }
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(NetworkStatus {
        generation: plan.generation,
        leases,
        records,
        forwards: plan.forwards.clone(),
        firewall: crate::firewall::last_status(),
    })
}

/// What [`start`] set up (addresses for logs and tests).
#[derive(Debug, Clone, Default)]
pub struct Started {
    /// WAN address with prefix, when found or configured.
    pub wan: Option<ipnet::Ipv4Net>,
    /// Bound DNS addresses.
    pub dns: Vec<std::net::SocketAddr>,
}

/// Bring up the network plane under `sup`: link, sockets (errors name the service), firewall,
/// then DHCP and DNS. Each part runs only when enabled in the configuration.
pub async fn start(ctx: &Context, sup: &mut crate::supervisor::Supervisor) -> anyhow::Result<Started> {
    use anyhow::Context as _;
    let net = &ctx.config.network;
    if net.manage_links {
        crate::link::ensure_lan(&net.lan_interface, net.lan_address)
            .await
            .with_context(|| format!("link: cannot set up LAN interface {} with {}", net.lan_interface, net.lan_address))?;
    }
    let found = match crate::link::interface_v4(&net.wan_interface).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the WAN address; proxied names answer the LAN address to WAN clients");
            None
        }
    };
    let wan = match (net.wan_address, found) {
        (Some(a), Some(f)) => Some(ipnet::Ipv4Net::new(a, f.prefix_len()).unwrap_or(f)),
        (Some(a), None) => Some(ipnet::Ipv4Net::from(a)),
        (None, f) => f,
    };
    let mut started = Started { wan, dns: vec![] };
    let board = crate::dhcp::LeaseBoard::default();
    let dhcp_sock = if ctx.config.dhcp.enabled {
        let sock = crate::dhcp::server::bind(ctx.config.dhcp.listen, &net.lan_interface)?;
        let pool = crate::dhcp::server::restore_pool(ctx).context("dhcp: reading stored leases")?;
        // DNS starts with the stored lease names (no window after a restart where they fail).
        board.publish(crate::dhcp::server::named_leases(&pool));
        Some((sock, pool))
    } else {
        None
    };
    let dns_socks = if ctx.config.dns.enabled {
        let s = crate::dns::bind(&ctx.config.dns.listen)?;
        started.dns = s.local_addrs();
        Some(s)
    } else {
        None
    };
    if net.firewall {
        crate::firewall::apply::enable_forwarding().context("firewall")?;
        let s = crate::firewall::settings(ctx, wan);
        crate::firewall::apply_current(ctx, &s).await.context("firewall: initial ruleset")?;
        tracing::info!(service = "firewall", table = %s.table, "ruleset applied");
        sup.spawn("firewall", crate::firewall::run(ctx.clone(), s, net.remove_firewall_on_exit));
    } else {
        sup.disabled("firewall");
    }
    match dhcp_sock {
        Some((sock, pool)) => {
            tracing::info!(service = "dhcp", addr = %ctx.config.dhcp.listen, interface = %net.lan_interface, "listening");
            sup.spawn("dhcp", crate::dhcp::server::run(ctx.clone(), sock, board.clone(), pool));
        }
        None => sup.disabled("dhcp"),
    }
    match dns_socks {
        Some(s) => {
            for a in &started.dns {
                tracing::info!(service = "dns", addr = %a, "listening");
            }
            sup.spawn("dns", crate::dns::run(ctx.clone(), s, board, wan.map(|w| w.addr())));
        }
        None => sup.disabled("dns"),
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::policy::Change;
    use crate::dhcp::pool::LeaseState;

    #[test]
    fn status_lists_leases_and_names_without_shadowing_apps() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let store = crate::store::Store::open(&config.db_path()).unwrap();
        let lease = |h: &str, n: u8, expires: u64| Lease {
            mac: format!("02:00:00:00:00:{n:02x}"),
            ip: Ipv4Addr::new(10, 20, 0, n),
            hostname: Some(h.into()),
            expires,
            state: LeaseState::Bound,
        };
        crate::dhcp::store::commit(
            &store,
            &[
                Change::Bind(lease("laptop", 120, u64::MAX)),
                Change::Bind(lease("web", 121, u64::MAX)),
                Change::Bind(lease("old", 122, 1)),
            ],
        )
        .unwrap();
        let ctx = Context::new(config, store).unwrap();
        let st = network_status(&ctx).unwrap();
        assert_eq!(st.leases.len(), 2, "expired lease listed");
        let names: Vec<_> = st.records.iter().map(|r| (r.name.as_str(), r.source)).collect();
        assert_eq!(names, vec![("laptop.prox.local", "lease"), ("web.prox.local", "lease")]);
        // With an app named `web`, the app's record wins over the lease name.
        let app: crate::registry::App = serde_json::from_value(serde_json::json!({
            "id": "a", "hostname": "web", "catalog_id": "nginx", "catalog_version": "1", "owner": "u",
            "status": "running", "host": null, "node": null, "vmid": null, "mac": "02:50:58:00:00:65",
            "ip": "10.20.0.101", "upstream_ip": null, "web_port": 80, "forwards": [], "aliases": [],
            "https_redirect": false, "resources": {"cores": 1, "memory_mb": 128, "disk_gb": 1},
            "settings": {}, "error": null, "job_id": null, "adopted": false, "created_at": 0, "updated_at": 0
        }))
        .unwrap();
        ctx.plan.publish_apps(&[app]);
        let st = network_status(&ctx).unwrap();
        let names: Vec<_> = st.records.iter().map(|r| (r.name.as_str(), r.source, r.ip)).collect();
        assert_eq!(
            names,
            vec![
                ("laptop.prox.local", "lease", Ipv4Addr::new(10, 20, 0, 120)),
                ("web.prox.local", "app", Ipv4Addr::new(10, 20, 0, 101))
            ]
        );
    }
}
