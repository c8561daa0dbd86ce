//! The pingora `ProxyHttp` implementation: host routing, redirects, limits, forwarding
//! headers, error pages, passive health, access log and metrics.
//!
//! One [`ProxyApp`] per listener kind (plain HTTP or TLS); both share the route table,
//! health table and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use super::health::HealthTable;
use super::policy::{self, HeaderLimits};
use super::routes::{Route, RouteTable};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{Counter, Histogram};

/// Limits and timeouts of one proxy.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body, bytes.
    pub max_body_bytes: u64,
    /// Request head limits.
    pub header: HeaderLimits,
    /// Upstream connect timeout (healthy upstream).
    pub connect_timeout: Duration,
    /// Upstream connect timeout when the upstream is marked down.
    pub connect_timeout_down: Duration,
    /// Upstream read/write timeout (`proxy.upstream_timeout_secs`).
    pub upstream_timeout: Duration,
    /// Downstream read timeout for bodies and keep-alive requests (slowloris bound).
    pub downstream_read_timeout: Duration,
}

/// Shared state of the proxy listeners.
#[derive(Clone)]
pub struct Shared {
    /// Current route table (swapped on plan changes).
    pub routes: Arc<ArcSwap<RouteTable>>,
    /// Upstream health.
    pub health: Arc<HealthTable>,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Limits.
    pub limits: Limits,
    /// Port of the first HTTPS listener (redirect target), if any.
    pub https_port: Option<u16>,
    /// Distinguishes proxies in one process (metric handle cache key); see [`next_instance`].
    pub instance: u64,
}

impl Shared {
    /// Connect timeout for `upstream`: shorter while it is marked down, so a dead app
    /// answers 502 quickly (both request paths use it).
    pub fn connect_timeout(&self, upstream: &SocketAddr) -> Duration {
        if self.health.is_up(upstream) {
            self.limits.connect_timeout
        } else {
            self.limits.connect_timeout_down
        }
    }
}

/// A process-unique id for [`Shared::instance`].
pub fn next_instance() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The proxy logic for one listener kind.
pub struct ProxyApp {
    shared: Shared,
    tls: bool,
}

impl ProxyApp {
    /// Logic for plain-HTTP (`tls = false`) or HTTPS listeners.
    pub fn new(shared: Shared, tls: bool) -> Self {
        ProxyApp { shared, tls }
    }
}

type MetricHandles = (Arc<Counter>, Arc<Histogram>);
/// (proxy instance, status) → app → handles; the inner map is looked up by `&str`, so a
/// cached request allocates nothing.
type MetricCache = std::collections::HashMap<(u64, u16), std::collections::HashMap<String, MetricHandles>>;

thread_local! {
    /// Metric handles per (proxy instance, status, app) on this worker thread, so the hot
    /// path takes no registry lock after the first request of a kind.
    /// Emptied when the registry's generation changes (series of deleted apps removed).
    static METRIC_CACHE: std::cell::RefCell<(u64, MetricCache)> = std::cell::RefCell::new((0, MetricCache::new()));
}

impl Shared {
    /// Count a finished request in the per-app request counter and latency histogram.
    pub fn record(&self, app: &str, status: u16, elapsed: Duration) {
        let key = (self.instance, status);
        let (c, h) = METRIC_CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let generation = self.metrics.generation();
            if cache.0 != generation || cache.1.values().map(|apps| apps.len()).sum::<usize>() > 10_000 {
                cache.1.clear();
                cache.0 = generation;
            } else if let Some(hit) = cache.1.get(&key).and_then(|apps| apps.get(app)) {
                return hit.clone();
            }
            cache
                .1
                .entry(key)
                .or_default()
                .entry(app.to_string())
                .or_insert_with(|| {
                    let m = &self.metrics;
                    let code = status.to_string();
                    (
                        m.counter(
                            "proximity_proxy_requests_total",
                            "Requests handled by the reverse proxy",
                            &[("app", app), ("code", &code)],
                        ),
                        m.histogram(
                            "proximity_proxy_request_duration_seconds",
                            "Reverse proxy request latency (downstream view)",
                            &[("app", app)],
                        ),
                    )
                })
                .clone()
        });
        c.inc();
        h.observe(elapsed.as_secs_f64());
    }
}

/// Per-request state.
pub struct ReqCtx {
    start: Instant,
    host: String,
    route: Option<Arc<Route>>,
    body_bytes: u64,
    outcome: &'static str,
}

fn request_host(session: &Session) -> Option<String> {
    let req = session.req_header();
    let raw = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers.get("host").and_then(|h| h.to_str().ok()))?;
    super::routes::normalize_host(raw)
}

/// The SNI of the upstream connection: the host name for a TLS upstream, none for plain HTTP.
/// pingora's keep-alive pool is keyed by (address, scheme, SNI, …), so the host name as SNI of
/// a plain-HTTP upstream (where it means nothing) would split one backend's idle connections
/// into a pool per virtual host, and apps sharing a backend would keep opening connections.
fn peer_sni(route: &Route) -> String {
    if route.upstream_tls { route.host.clone() } else { String::new() }
}

async fn respond_page(session: &mut Session, status: u16, html: String, extra: &[(&'static str, String)]) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header("content-type", "text/html; charset=utf-8")?;
    resp.insert_header("cache-control", "no-store")?;
    for (k, v) in extra {
        resp.insert_header(*k, v.as_str())?;
    }
    let body = Bytes::from(html);
    resp.set_content_length(body.len())?;
    session.write_error_response(resp, body).await
}

#[async_trait]
impl ProxyHttp for ProxyApp {
    type CTX = ReqCtx;

    /// No downstream modules. pingora's default adds a response-compression module at
    /// level 0 (disabled) that still runs per request; the proxy never compresses.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> ReqCtx {
        ReqCtx {
            start: Instant::now(),
            host: String::new(),
            route: None,
            body_bytes: 0,
            outcome: "proxied",
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut ReqCtx) -> Result<bool> {
        let limits = &self.shared.limits;
        session.set_read_timeout(Some(limits.downstream_read_timeout));
        // Framing checks on the head exactly as received (HTTP/1; h2 frames are unambiguous).
        if let Some(h1) = session.as_http1() {
            let raw = h1.get_headers_raw_bytes();
            if let Err(rej) = policy::check_raw_head(&raw, &limits.header) {
                ctx.outcome = rej.reason;
                session.set_keepalive(None);
                respond_page(session, rej.status, policy::error_page(rej.status, rej.reason), &[]).await?;
                return Ok(true);
            }
        } else if session.req_header().headers.len() > limits.header.max_headers {
            ctx.outcome = "too many header fields";
            respond_page(session, 431, policy::error_page(431, "too many header fields"), &[]).await?;
            return Ok(true);
        }
        let Some(host) = request_host(session) else {
            ctx.outcome = "missing host";
            respond_page(session, 400, policy::error_page(400, "missing or invalid Host"), &[]).await?;
            return Ok(true);
        };
        ctx.host = host;
        let host = ctx.host.as_str();
        let Some(route) = self.shared.routes.load().lookup_normalized(host).cloned() else {
            ctx.outcome = "unknown host";
            respond_page(session, 404, policy::not_found_page(host), &[]).await?;
            return Ok(true);
        };
        if !self.tls
            && route.https_redirect
            && let Some(port) = self.shared.https_port
        {
            let pq = session.req_header().uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let location = policy::https_location(host, pq, port);
            ctx.outcome = "redirect";
            let body = format!("<a href=\"{0}\">{0}</a>\n", policy::html_escape(&location));
            let mut resp = ResponseHeader::build(308, Some(3))?;
            resp.insert_header("location", location.as_str())?;
            resp.insert_header("content-type", "text/html; charset=utf-8")?;
            resp.set_content_length(body.len())?;
            session.write_response_header(Box::new(resp), false).await?;
            session.write_response_body(Some(Bytes::from(body)), true).await?;
            ctx.route = Some(route);
            return Ok(true);
        }
        let declared = session
            .req_header()
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        ctx.route = Some(route);
        if declared.is_some_and(|n| n > limits.max_body_bytes) {
            ctx.outcome = "body too large";
            respond_page(session, 413, policy::error_page(413, "request body too large"), &[]).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn request_body_filter(&self, _session: &mut Session, body: &mut Option<Bytes>, _end: bool, ctx: &mut ReqCtx) -> Result<()> {
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > self.shared.limits.max_body_bytes {
                ctx.outcome = "body too large";
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over proxy.max_body_bytes");
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut ReqCtx) -> Result<Box<HttpPeer>> {
        let Some(route) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::HTTPStatus(404), "no route");
        };
        let limits = &self.shared.limits;
        let mut peer = HttpPeer::new(route.upstream, route.upstream_tls, peer_sni(&route));
        let o = &mut peer.options;
        o.connection_timeout = Some(self.shared.connect_timeout(&route.upstream));
        o.total_connection_timeout = Some(limits.connect_timeout + Duration::from_secs(2));
        o.read_timeout = Some(limits.upstream_timeout);
        o.write_timeout = Some(limits.upstream_timeout);
        o.idle_timeout = Some(Duration::from_secs(60));
        if route.upstream_tls {
            // The only TLS upstream is our own management API on this machine, whose
            // certificate comes from our CA; loopback traffic needs no verification.
            o.verify_cert = false;
            o.verify_hostname = false;
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(&self, session: &mut Session, up: &mut RequestHeader, ctx: &mut ReqCtx) -> Result<()> {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a: &SocketAddr| a.ip().to_string())
            .unwrap_or_default();
        let xff = match up.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {client}"),
            _ => client.clone(),
        };
        up.insert_header("x-forwarded-for", xff)?;
        up.insert_header("x-forwarded-proto", if self.tls { "https" } else { "http" })?;
        up.insert_header("x-forwarded-host", ctx.host.as_str())?;
        up.insert_header("x-real-ip", client)?;
        if up.headers.get("host").is_none() {
            up.insert_header("host", ctx.host.as_str())?;
        }
        Ok(())
    }

    async fn upstream_response_filter(&self, _session: &mut Session, _resp: &mut ResponseHeader, ctx: &mut ReqCtx) -> Result<()> {
        if let Some(r) = &ctx.route {
            self.shared.health.mark_up(r.upstream);
        }
        Ok(())
    }

    fn fail_to_connect(&self, _session: &mut Session, peer: &HttpPeer, ctx: &mut ReqCtx, mut e: Box<Error>) -> Box<Error> {
        if let Some(r) = &ctx.route {
            self.shared.health.mark_down(r.upstream, &r.app_name, e.etype().as_str());
        }
        let _ = peer;
        e.set_retry(false);
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut ReqCtx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(c) => *c,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout if e.esource() == &ErrorSource::Upstream => 504,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    ErrorType::ReadTimedout => 408,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            let html = match (code, &ctx.route) {
                (502 | 504, Some(r)) => {
                    ctx.outcome = "upstream unreachable";
                    policy::bad_gateway_page(&r.app_name)
                }
                (413, _) => policy::error_page(413, "request body too large"),
                (c, _) => policy::error_page(c, "error"),
            };
            if let Err(we) = respond_page(session, code, html, &[]).await {
                tracing::debug!(error = %we, "could not send error page");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut ReqCtx) {
        let status = session.response_written().map(|r| r.status.as_u16()).unwrap_or(0);
        let elapsed = ctx.start.elapsed();
        let app = ctx.route.as_ref().map(|r| r.app_name.as_str()).unwrap_or("-");
        self.shared.record(app, status, elapsed);
        if !tracing::enabled!(target: "proximity::proxy::access", tracing::Level::INFO) {
            return;
        }
        let req = session.req_header();
        let client = session.client_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(
            target: "proximity::proxy::access",
            client = %client,
            method = %req.method,
            host = %ctx.host,
            path = %req.uri.path(),
            status,
            latency_ms = (elapsed.as_secs_f64() * 100_000.0).round() / 100.0,
            app,
            scheme = if self.tls { "https" } else { "http" },
            proto = if session.is_http2() { "h2" } else { "http/1.1" },
            outcome = ctx.outcome,
            error = e.map(|e| e.to_string()).unwrap_or_default(),
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::upstreams::peer::Peer;

    fn route(host: &str, tls: bool) -> Route {
        Route {
            host: host.into(),
            upstream: "127.0.0.1:8080".parse().unwrap(),
            upstream_tls: tls,
            app_id: host.into(),
            app_name: host.into(),
            https_redirect: false,
        }
    }

    #[test]
    fn plain_http_hosts_on_one_backend_share_the_keepalive_pool() {
        let key = |r: &Route| HttpPeer::new(r.upstream, r.upstream_tls, peer_sni(r)).reuse_hash();
        assert_eq!(key(&route("a.prox.local", false)), key(&route("b.prox.local", false)));
        assert_ne!(
            key(&route("a.prox.local", true)),
            key(&route("b.prox.local", true)),
            "TLS keeps the SNI"
        );
        assert_eq!(peer_sni(&route("a.prox.local", true)), "a.prox.local");
    }
}
