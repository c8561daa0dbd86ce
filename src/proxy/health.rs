//! Upstream health: passive (a failed connect marks the upstream down, a response marks it
//! up) and active (a TCP connect probe to every upstream each `proxy.health_check_secs`).
//!
//! A down upstream is still tried, but with a short connect timeout, so a client gets the
//! 502 page quickly for a blackholed host and gets through as soon as the app is back —
//! one upstream per route means there is no other backend to fail over to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::routes::RouteTable;
use crate::telemetry::Metrics;

/// Health state per upstream address. Unknown upstreams count as up.
#[derive(Debug, Default)]
pub struct HealthTable {
    down: Mutex<HashMap<SocketAddr, String>>,
    /// `down` is not empty. Read without the lock, so while every upstream is up the
    /// request path (`is_up`, `mark_up` on each response) never touches the mutex that all
    /// proxy threads would otherwise contend for.
    any_down: AtomicBool,
}

impl HealthTable {
    /// Is `addr` believed reachable?
    pub fn is_up(&self, addr: &SocketAddr) -> bool {
        if !self.any_down.load(Ordering::Acquire) {
            return true;
        }
        !self.down.lock().unwrap_or_else(|e| e.into_inner()).contains_key(addr)
    }

    /// Record a failure; logs the transition.
    pub fn mark_down(&self, addr: SocketAddr, app: &str, why: &str) {
        let mut d = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let new = d.insert(addr, app.to_string()).is_none();
        self.any_down.store(true, Ordering::Release);
        if new {
            tracing::warn!(upstream = %addr, app, reason = why, "upstream down");
        }
    }

    /// Record a success; logs the transition.
    pub fn mark_up(&self, addr: SocketAddr) {
        if !self.any_down.load(Ordering::Acquire) {
            return;
        }
        let mut d = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let removed = d.remove(&addr);
        self.any_down.store(!d.is_empty(), Ordering::Release);
        if let Some(app) = removed {
            tracing::info!(upstream = %addr, app, "upstream up");
        }
    }

    /// Forget upstreams that are no longer routed.
    pub fn retain(&self, live: &[SocketAddr]) {
        let mut d = self.down.lock().unwrap_or_else(|e| e.into_inner());
        d.retain(|a, _| live.contains(a));
        self.any_down.store(!d.is_empty(), Ordering::Release);
    }
}

/// Per-app proxy series (`app` label) whose app has no route any more are dropped: the
/// upstream gauge, the request counters and the latency histogram. `-` (requests that
/// matched no route) always stays.
pub fn prune_app_series(metrics: &Metrics, live_apps: &[String]) {
    let mut keep: Vec<&str> = live_apps.iter().map(String::as_str).collect();
    keep.push("-");
    for family in [
        "proximity_proxy_upstream_up",
        "proximity_proxy_requests_total",
        "proximity_proxy_request_duration_seconds",
    ] {
        metrics.retain_label(family, "app", &keep);
    }
}

/// Probe every routed upstream each `interval` until `shutdown`.
pub async fn run_active_checks(
    routes: Arc<ArcSwap<RouteTable>>,
    health: Arc<HealthTable>,
    metrics: Metrics,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let probe_timeout = interval.min(Duration::from_secs(2));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ups = routes.load().upstreams();
        health.retain(&ups.iter().map(|(a, _)| *a).collect::<Vec<_>>());
        // Deleted apps stop being exported (and stop holding memory).
        prune_app_series(&metrics, &routes.load().app_names());
        let probes = ups.into_iter().map(|(addr, app)| {
            let health = health.clone();
            let metrics = metrics.clone();
            async move {
                let ok = matches!(
                    tokio::time::timeout(probe_timeout, tokio::net::TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                );
                metrics
                    .gauge(
                        "proximity_proxy_upstream_up",
                        "1 when the last health probe of an upstream succeeded",
                        &[("app", &app)],
                    )
                    .set(ok as i64);
                if ok {
                    health.mark_up(addr);
                } else {
                    health.mark_down(addr, &app, "health probe failed");
                }
            }
        });
        futures::future::join_all(probes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        let h = HealthTable::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(h.is_up(&a));
        h.mark_down(a, "x", "test");
        assert!(!h.is_up(&a));
        h.mark_up(a);
        assert!(h.is_up(&a));
        h.mark_down(a, "x", "test");
        h.retain(&[]);
        assert!(h.is_up(&a));
        // Two down; one recovering leaves the other down (the lock-free "none down" flag).
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        h.mark_down(a, "x", "test");
        h.mark_down(b, "y", "test");
        h.mark_up(a);
        assert!(h.is_up(&a));
        assert!(!h.is_up(&b));
        h.mark_up(b);
        assert!(h.is_up(&b));
    }

    #[tokio::test]
    async fn active_probe_marks_closed_port_down_and_open_port_up() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open_addr = open.local_addr().unwrap();
        let closed_addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut plan = crate::plan::NetworkPlan::empty(&crate::config::Config::default().network);
        for (h, a) in [("a.prox.local", open_addr), ("b.prox.local", closed_addr)] {
            plan.routes.push(crate::plan::ProxyRoute {
                host: h.into(),
                upstream: a,
                app_id: h.into(),
                app_name: h.into(),
                https_redirect: false,
            });
        }
        let routes = Arc::new(ArcSwap::from_pointee(RouteTable::from_plan(&plan, None)));
        let health = Arc::new(HealthTable::default());
        health.mark_down(open_addr, "a", "test");
        let token = CancellationToken::new();
        let task = tokio::spawn(run_active_checks(
            routes,
            health.clone(),
            Metrics::new(),
            Duration::from_millis(50),
            token.clone(),
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while (health.is_up(&closed_addr) || !health.is_up(&open_addr)) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        token.cancel();
        task.await.unwrap();
        assert!(health.is_up(&open_addr));
        assert!(!health.is_up(&closed_addr));
    }

    #[test]
    fn per_app_series_of_deleted_apps_are_dropped() {
        let m = Metrics::new();
        for app in ["kept", "deleted", "-"] {
            m.counter("proximity_proxy_requests_total", "h", &[("app", app), ("code", "200")])
                .inc();
            m.histogram("proximity_proxy_request_duration_seconds", "h", &[("app", app)])
                .observe(0.01);
            if app != "-" {
                m.gauge("proximity_proxy_upstream_up", "h", &[("app", app)]).set(1);
            }
        }
        prune_app_series(&m, &["kept".to_string()]);
        let text = m.render();
        assert!(!text.contains("\"deleted\""), "{text}");
        assert!(
            text.contains("proximity_proxy_requests_total{app=\"kept\",code=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("proximity_proxy_requests_total{app=\"-\",code=\"200\"} 1"), "{text}");
        assert_eq!(m.series_count("proximity_proxy_request_duration_seconds"), 2);
        assert_eq!(m.series_count("proximity_proxy_upstream_up"), 1);
    }
}
