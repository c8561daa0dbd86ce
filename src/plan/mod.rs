//! The network plan: everything the network plane needs, computed purely from the app
//! registry and the network settings. Published on a `watch` channel; DHCP, DNS, proxy and
//! firewall each apply the newest plan idempotently.
//!
//! **Architecture invariant:** this module does no I/O; `compute` is a pure function.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::config::NetworkConfig;
use crate::registry::{App, AppStatus, Proto};

/// DHCP reservation for an app container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// MAC, lower-case colon hex.
    pub mac: String,
    /// Reserved address.
    pub ip: Ipv4Addr,
    /// Host name (option 12 in replies).
    pub hostname: String,
}

/// A local DNS A record (and its PTR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// Fully qualified, lower case, no trailing dot.
    pub name: String,
    /// Address of the app container (LAN side).
    pub ip: Ipv4Addr,
    /// True when the name is served by the reverse proxy (WAN clients get the proxy's
    /// address for it).
    pub proxied: bool,
    /// App id.
    pub app_id: String,
}

/// A reverse-proxy route: `host` → `upstream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyRoute {
    /// Host name matched exactly (lower case).
    pub host: String,
    /// Where requests go.
    pub upstream: SocketAddr,
    /// App id.
    pub app_id: String,
    /// App hostname (for error pages).
    pub app_name: String,
    /// Redirect plain HTTP to HTTPS.
    pub https_redirect: bool,
}

/// A port forward from the WAN address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    /// Public port.
    pub public_port: u16,
    /// Protocol.
    pub proto: Proto,
    /// Container address and port.
    pub target: SocketAddr,
    /// App id.
    pub app_id: String,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// Increases with every published plan.
    pub generation: u64,
    /// Local zone.
    pub domain: String,
    /// LAN network with the appliance address.
    pub lan: Ipv4Net,
    /// Dynamic pool, inclusive.
    pub pool: (Ipv4Addr, Ipv4Addr),
    /// Upstream resolvers.
    pub upstream_dns: Vec<SocketAddr>,
    /// Networks app containers may not reach.
    pub management_networks: Vec<Ipv4Net>,
    /// Reservations, sorted by IP.
    pub reservations: Vec<Reservation>,
    /// DNS records, sorted by name.
    pub records: Vec<DnsRecord>,
    /// Proxy routes, sorted by host.
    pub routes: Vec<ProxyRoute>,
    /// Port forwards, sorted by public port.
    pub forwards: Vec<Forward>,
}

/// Shared, immutable plan.
pub type SharedPlan = Arc<NetworkPlan>;

impl NetworkPlan {
    /// A plan with no apps.
    pub fn empty(net: &NetworkConfig) -> Self {
        compute(net, &[], 0)
    }
}

/// Statuses whose app keeps its address, names and routes.
fn holds_network(status: AppStatus) -> bool {
    !matches!(status, AppStatus::Deleting)
}

/// Compute the plan from settings and apps. Pure and deterministic (sorted output).
pub fn compute(net: &NetworkConfig, apps: &[App], generation: u64) -> NetworkPlan {
    let domain = net.domain.clone();
    let mut reservations = Vec::new();
    let mut records = Vec::new();
    let mut routes = Vec::new();
    let mut forwards = Vec::new();
    for app in apps.iter().filter(|a| holds_network(a.status)) {
        reservations.push(Reservation {
            mac: app.mac.to_ascii_lowercase(),
            ip: app.ip,
            hostname: app.hostname.clone(),
        });
        let mut names = vec![format!("{}.{domain}", app.hostname)];
        for alias in &app.aliases {
            let alias = alias.to_ascii_lowercase();
            let fqdn = if alias.ends_with(&format!(".{domain}")) {
                alias
            } else {
                format!("{alias}.{domain}")
            };
            if !names.contains(&fqdn) {
                names.push(fqdn);
            }
        }
        for name in &names {
            records.push(DnsRecord {
                name: name.clone(),
                ip: app.ip,
                proxied: app.web_port.is_some(),
                app_id: app.id.clone(),
            });
            if let Some(port) = app.web_port {
                routes.push(ProxyRoute {
                    host: name.clone(),
                    upstream: SocketAddr::from((app.upstream(), port)),
                    app_id: app.id.clone(),
                    app_name: app.hostname.clone(),
                    https_redirect: app.https_redirect,
                });
            }
        }
        for f in &app.forwards {
            forwards.push(Forward {
                public_port: f.public,
                proto: f.proto,
                target: SocketAddr::from((app.upstream(), f.container)),
                app_id: app.id.clone(),
            });
        }
    }
    reservations.sort_by_key(|r| r.ip);
    records.sort_by(|a, b| a.name.cmp(&b.name));
    routes.sort_by(|a, b| a.host.cmp(&b.host));
    forwards.sort_by_key(|f| (f.public_port, f.proto as u8));
    let mut mgmt = net.management_networks.clone();
    mgmt.sort();
    mgmt.dedup();
    NetworkPlan {
        generation,
        domain,
        lan: net.lan_address,
        pool: net.dhcp_range,
        upstream_dns: net.upstream_dns.clone(),
        management_networks: mgmt,
        reservations,
        records,
        routes,
        forwards,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{PortForward, Resources};
    use std::collections::BTreeMap;

    fn app(id: &str, host: &str, ip: u8, status: AppStatus) -> App {
        App {
            id: id.into(),
            hostname: host.into(),
            catalog_id: "nginx".into(),
            catalog_version: "1".into(),
            owner: "u1".into(),
            status,
            host: None,
            node: None,
            vmid: None,
            mac: format!("02:50:58:00:00:{ip:02X}"),
            ip: Ipv4Addr::new(10, 20, 0, ip),
            upstream_ip: None,
            web_port: Some(80),
            forwards: vec![PortForward {
                public: 30001,
                container: 22,
                proto: Proto::Tcp,
            }],
            aliases: vec!["www".into()],
            https_redirect: true,
            resources: Resources {
                cores: 1,
                memory_mb: 512,
                disk_gb: 4,
            },
            settings: BTreeMap::new(),
            error: None,
            job_id: None,
            adopted: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn app_yields_reservation_records_routes_forwards() {
        let net = crate::config::Config::default().network;
        let p = compute(&net, &[app("a", "nginx-01", 101, AppStatus::Running)], 1);
        assert_eq!(
            p.reservations,
            vec![Reservation {
                mac: "02:50:58:00:00:65".into(),
                ip: Ipv4Addr::new(10, 20, 0, 101),
                hostname: "nginx-01".into()
            }]
        );
        let names: Vec<_> = p.records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["nginx-01.prox.local", "www.prox.local"]);
        assert_eq!(p.routes.len(), 2);
        assert_eq!(p.routes[0].upstream, "10.20.0.101:80".parse().unwrap());
        assert_eq!(p.forwards[0].target, "10.20.0.101:22".parse().unwrap());
    }

    #[test]
    fn deleting_apps_release_everything_and_output_is_sorted() {
        let net = crate::config::Config::default().network;
        let p = compute(
            &net,
            &[
                app("b", "zeta", 120, AppStatus::Running),
                app("a", "alpha", 110, AppStatus::Running),
                app("c", "gone", 130, AppStatus::Deleting),
            ],
            2,
        );
        assert_eq!(p.reservations.len(), 2);
        assert_eq!(p.reservations[0].hostname, "alpha");
        assert!(p.records.iter().all(|r| !r.name.starts_with("gone")));
    }

    #[test]
    fn upstream_override_is_used_for_routes() {
        let net = crate::config::Config::default().network;
        let mut a = app("a", "x", 101, AppStatus::Running);
        a.upstream_ip = Some(Ipv4Addr::new(127, 0, 10, 2));
        let p = compute(&net, &[a], 1);
        assert_eq!(p.routes[0].upstream, "127.0.10.2:80".parse().unwrap());
        assert_eq!(p.records[0].ip, Ipv4Addr::new(10, 20, 0, 101));
    }
}

/// Recomputes the plan from the registry and publishes it on a `watch` channel.
/// Cheap to clone; every service subscribes and applies the newest plan.
#[derive(Clone)]
pub struct PlanPublisher {
    tx: std::sync::Arc<tokio::sync::watch::Sender<SharedPlan>>,
    net: std::sync::Arc<NetworkConfig>,
}

impl PlanPublisher {
    /// A publisher whose first plan has no apps.
    pub fn new(net: NetworkConfig) -> Self {
        let (tx, _) = tokio::sync::watch::channel(Arc::new(NetworkPlan::empty(&net)));
        PlanPublisher {
            tx: Arc::new(tx),
            net: Arc::new(net),
        }
    }

    /// Subscribe to plan changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<SharedPlan> {
        self.tx.subscribe()
    }

    /// The current plan.
    pub fn current(&self) -> SharedPlan {
        self.tx.borrow().clone()
    }

    /// Recompute from the registry; publishes only when something changed. Call after
    /// every committed registry change.
    pub fn refresh(&self, store: &crate::store::Store) -> Result<SharedPlan, crate::store::StoreError> {
        let apps = crate::registry::list(store)?;
        let net = crate::settings::network_for(store, &self.net)?.apply_to(&self.net);
        Ok(self.publish_with(&net, &apps))
    }

    /// Recompute from a given app list (tests, hand-built plans).
    pub fn publish_apps(&self, apps: &[App]) -> SharedPlan {
        self.publish_with(&self.net.clone(), apps)
    }

    /// Recompute over `net` (the configuration with the runtime settings applied).
    fn publish_with(&self, net: &NetworkConfig, apps: &[App]) -> SharedPlan {
        let mut out = None;
        self.tx.send_if_modified(|cur| {
            let mut next = compute(net, apps, cur.generation);
            if next == **cur {
                out = Some(cur.clone());
                return false;
            }
            next.generation = cur.generation + 1;
            let next = Arc::new(next);
            out = Some(next.clone());
            *cur = next;
            true
        });
        out.expect("send_if_modified runs the closure")
    }
}
