//! The proxy's lookup table: host name → upstream, built purely from the [`NetworkPlan`].
//!
//! **Architecture invariant:** no I/O here. The service swaps a new table in (ArcSwap) on
//! every plan change; requests in flight keep the `Arc<Route>` they looked up.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use crate::plan::NetworkPlan;

/// Where one host name goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Host name (lower case, no port, no trailing dot).
    pub host: String,
    /// Upstream address.
    pub upstream: SocketAddr,
    /// Speak TLS to the upstream (the management API).
    pub upstream_tls: bool,
    /// App id (`"proximity"` for the management API).
    pub app_id: String,
    /// Name shown on error pages.
    pub app_name: String,
    /// Redirect plain HTTP to HTTPS.
    pub https_redirect: bool,
}

/// The management API as an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementUpstream {
    /// Address (the first `api.listen`, unspecified addresses replaced by loopback).
    pub addr: SocketAddr,
    /// The API speaks HTTPS.
    pub tls: bool,
}

impl ManagementUpstream {
    /// From the `api.listen` list and `api.tls` (`None` without addresses or for port 0).
    pub fn from_api(listen: &[SocketAddr], tls: bool) -> Option<ManagementUpstream> {
        let first = *listen.first()?;
        if first.port() == 0 {
            // An ephemeral API port is unknown here; no management route then.
            return None;
        }
        let ip = match first.ip() {
            IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Some(ManagementUpstream {
            addr: SocketAddr::new(ip, first.port()),
            tls,
        })
    }
}

/// Host → route table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Plan generation it was built from.
    pub generation: u64,
    by_host: HashMap<String, Arc<Route>>,
}

impl RouteTable {
    /// Build from a plan: every plan route (exact hosts and aliases) plus
    /// `proximity.<domain>` → the management API when given. A plan route never shadows
    /// the management name.
    pub fn from_plan(plan: &NetworkPlan, management: Option<&ManagementUpstream>) -> RouteTable {
        let mut by_host = HashMap::new();
        for r in &plan.routes {
            let host = r.host.to_ascii_lowercase();
            by_host.insert(
                host.clone(),
                Arc::new(Route {
                    host,
                    upstream: r.upstream,
                    upstream_tls: false,
                    app_id: r.app_id.clone(),
                    app_name: r.app_name.clone(),
                    https_redirect: r.https_redirect,
                }),
            );
        }
        if let Some(m) = management {
            let host = format!("proximity.{}", plan.domain);
            by_host.insert(
                host.clone(),
                Arc::new(Route {
                    host,
                    upstream: m.addr,
                    upstream_tls: m.tls,
                    app_id: "proximity".into(),
                    app_name: "Proximity".into(),
                    https_redirect: true,
                }),
            );
        }
        RouteTable {
            generation: plan.generation,
            by_host,
        }
    }

    /// The route for a `Host` header / `:authority` value (any case, optional port,
    /// optional trailing dot).
    pub fn lookup(&self, host: &str) -> Option<&Arc<Route>> {
        self.by_host.get(&normalize_host(host)?)
    }

    /// The route for a host already in [`normalize_host`] form (no second normalisation).
    pub fn lookup_normalized(&self, host: &str) -> Option<&Arc<Route>> {
        self.by_host.get(host)
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.by_host.len()
    }

    /// True when there are no routes.
    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// Names of the apps that have a route (the management route's name included).
    pub fn app_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_host.values().map(|r| r.app_name.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Distinct upstreams with the name of (one of) their apps, for health checks.
    pub fn upstreams(&self) -> Vec<(SocketAddr, String)> {
        let mut v: Vec<(SocketAddr, String)> = self.by_host.values().map(|r| (r.upstream, r.app_name.clone())).collect();
        v.sort();
        v.dedup_by_key(|(a, _)| *a);
        v
    }
}

/// Lower-case host without port and trailing dot; `None` for empty or malformed values
/// (IPv6 literals are kept with their brackets).
pub fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    // An empty port (`host:`) is allowed by RFC 3986.
    let is_port = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let host = if raw.starts_with('[') {
        let end = raw.find(']')?;
        // After the literal: nothing, or `:port`.
        match &raw[end + 1..] {
            "" => {}
            rest if rest.strip_prefix(':').is_some_and(is_port) => {}
            _ => return None,
        }
        &raw[..=end]
    } else {
        let h = match raw.rsplit_once(':') {
            Some((h, port)) if is_port(port) => h,
            Some(_) => return None,
            None => raw,
        };
        // A second colon is no valid name (an unbracketed IPv6 literal or garbage).
        if h.contains(':') {
            return None;
        }
        h
    };
    let host = host.trim_end_matches('.');
    if host.is_empty() || host.bytes().any(|b| b.is_ascii_whitespace() || b == b'/' || b == b'@') {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ProxyRoute;

    fn plan(routes: &[(&str, &str, &str)]) -> NetworkPlan {
        let mut p = NetworkPlan::empty(&crate::config::Config::default().network);
        p.generation = 7;
        p.routes = routes
            .iter()
            .map(|(h, up, app)| ProxyRoute {
                host: h.to_string(),
                upstream: up.parse().unwrap(),
                app_id: format!("id-{app}"),
                app_name: app.to_string(),
                https_redirect: *app != "plain",
            })
            .collect();
        p
    }

    #[test]
    fn exact_hosts_aliases_and_management() {
        let p = plan(&[
            ("nginx.prox.local", "10.20.0.5:80", "nginx"),
            ("www.prox.local", "10.20.0.5:80", "nginx"),
            ("wiki.prox.local", "10.20.0.6:8080", "wiki"),
        ]);
        let m = ManagementUpstream::from_api(&["0.0.0.0:8443".parse().unwrap()], true).unwrap();
        let t = RouteTable::from_plan(&p, Some(&m));
        assert_eq!(t.generation, 7);
        assert_eq!(t.len(), 4);
        assert_eq!(t.lookup("nginx.prox.local").unwrap().upstream, "10.20.0.5:80".parse().unwrap());
        assert_eq!(t.lookup("WWW.Prox.Local:8443").unwrap().app_name, "nginx");
        assert_eq!(t.lookup("wiki.prox.local.").unwrap().upstream.port(), 8080);
        let api = t.lookup("proximity.prox.local").unwrap();
        assert_eq!(api.upstream, "127.0.0.1:8443".parse().unwrap());
        assert!(api.upstream_tls);
        assert!(t.lookup("other.prox.local").is_none());
        assert!(t.lookup("prox.local").is_none());
        assert!(t.lookup("").is_none());
        assert_eq!(t.upstreams().len(), 3);
    }

    #[test]
    fn plan_cannot_shadow_management_name() {
        let p = plan(&[("proximity.prox.local", "10.20.0.9:80", "evil")]);
        let m = ManagementUpstream::from_api(&["127.0.0.1:9443".parse().unwrap()], false).unwrap();
        let t = RouteTable::from_plan(&p, Some(&m));
        assert_eq!(t.lookup("proximity.prox.local").unwrap().app_id, "proximity");
        let t = RouteTable::from_plan(&p, None);
        assert_eq!(t.lookup("proximity.prox.local").unwrap().app_id, "id-evil");
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("A.B:80").as_deref(), Some("a.b"));
        assert_eq!(normalize_host("a.b.").as_deref(), Some("a.b"));
        assert_eq!(normalize_host("[::1]:443").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("a.b:x"), None);
        assert_eq!(normalize_host(":80"), None);
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host("user@a.b"), None);
        assert_eq!(normalize_host("a.b:").as_deref(), Some("a.b"));
        assert_eq!(normalize_host("[::1]x"), None);
        assert_eq!(normalize_host("[::1]:8443").as_deref(), Some("[::1]"));
    }

    /// Fuzz finding (proxy_head): `Host: 1WIKI.prox.st:1WIKlocal:80` normalised to
    /// `1wiki.prox.st:1wiklocal`, a key that normalised again to nothing. A colon left
    /// after the port is stripped means a malformed host: refuse it (400), don't route it.
    #[test]
    fn host_with_a_second_colon_is_refused_and_normalisation_is_stable() {
        assert_eq!(normalize_host("1WIKI.prox.st:1WIKlocal:80"), None);
        assert_eq!(normalize_host("a:80:80"), None);
        assert_eq!(normalize_host("::1"), None);
        for raw in ["A.B:80", "a.b.", "[::1]:443", "x.prox.local"] {
            let h = normalize_host(raw).unwrap();
            assert_eq!(normalize_host(&h).as_deref(), Some(h.as_str()), "{raw}");
        }
    }
}
