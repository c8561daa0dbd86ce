//! Reverse proxy: every app at `http(s)://<name>.<domain>`, the management API at
//! `proximity.<domain>`, HTTPS with per-SNI certificates from the appliance CA ([`crate::tls`]).
//!
//! Lifecycle:
//! ```text
//! daemon: bind()  ── binds every listen address (error names "proxy" and the port)
//!         start() ── route table from ctx.plan; `proxy.threads` worker threads, each with
//!                    its own single-threaded runtime accepting on all listeners (fast::run_worker)
//!         run()   ── plan watcher (ArcSwap route swaps) + active health checks until
//!                    ctx.shutdown; then the workers stop accepting and drain (≤ 3 s)
//! ```
//! Requests: plain HTTP/1.1 requests without a body are forwarded by the fast path
//! ([`fast`], [`h1`]); every other connection (HTTP/2, WebSocket, bodies, HTTP/1.0,
//! unknown hosts, redirects, TLS upstreams, malformed heads) is handed to pingora
//! ([`handoff`], [`service::ProxyApp`]), which applies the full policy.

pub mod fast;
pub mod h1;
pub mod handoff;
pub mod health;
pub mod policy;
pub mod routes;
pub mod service;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use pingora::server::configuration::ServerConf;
use tokio_util::sync::CancellationToken;

use self::health::HealthTable;
use self::routes::{ManagementUpstream, RouteTable};
use self::service::{Limits, ProxyApp, Shared};
use crate::supervisor::{Context, StartError, bind_tcp_shared};
use crate::tls::CertAuthority;

/// The proxy's listen addresses, bound by [`bind`] to check they are free.
#[derive(Debug)]
pub struct ProxyListeners {
    http: Vec<(SocketAddr, TcpListener)>,
    https: Vec<(SocketAddr, TcpListener)>,
}

impl ProxyListeners {
    /// Plain HTTP addresses (with the actual port).
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.http.iter().map(|(a, _)| *a).collect()
    }
    /// HTTPS addresses (with the actual port).
    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.https.iter().map(|(a, _)| *a).collect()
    }
}

/// Bind every `proxy.http_listen` / `proxy.https_listen` address; fails naming the proxy
/// service and the port when one is in use.
pub fn bind(ctx: &Context) -> Result<ProxyListeners, StartError> {
    let one = |a: &SocketAddr| -> Result<(SocketAddr, TcpListener), StartError> {
        let l = bind_tcp_shared("proxy", *a)?;
        let actual = l.local_addr().unwrap_or(*a);
        Ok((actual, l))
    };
    Ok(ProxyListeners {
        http: ctx.config.proxy.http_listen.iter().map(one).collect::<Result<_, _>>()?,
        https: ctx.config.proxy.https_listen.iter().map(one).collect::<Result<_, _>>()?,
    })
}

/// A started proxy; [`ProxyHandle::run`] keeps routes and health current until shutdown.
pub struct ProxyHandle {
    ctx: Context,
    shared: Shared,
    management: Option<ManagementUpstream>,
    workers: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
    token: CancellationToken,
    pingora_shutdown: tokio::sync::watch::Sender<bool>,
}

/// Path of the CA certificate the daemon writes for users and tests (`<data_dir>/ca.pem`).
pub fn ca_pem_path(ctx: &Context) -> std::path::PathBuf {
    ctx.config.data_dir.join("ca.pem")
}

/// Start the proxy worker threads on the bound listeners with the current routes.
pub async fn start(ctx: &Context, ca: CertAuthority, listeners: ProxyListeners) -> anyhow::Result<ProxyHandle> {
    let cfg = &ctx.config.proxy;
    let management = ManagementUpstream::from_api(&ctx.config.api.listen, ctx.config.api.tls);
    let table = RouteTable::from_plan(&ctx.plan.current(), management.as_ref());
    let shared = Shared {
        routes: Arc::new(ArcSwap::from_pointee(table)),
        health: Arc::new(HealthTable::default()),
        metrics: ctx.metrics.clone(),
        limits: Limits {
            max_body_bytes: cfg.max_body_bytes,
            header: policy::HeaderLimits::default(),
            connect_timeout: Duration::from_secs(3),
            connect_timeout_down: Duration::from_secs(1),
            upstream_timeout: Duration::from_secs(cfg.upstream_timeout_secs.max(1)),
            downstream_read_timeout: Duration::from_secs(20),
        },
        https_port: listeners.https.first().map(|(a, _)| a.port()),
        instance: service::next_instance(),
    };

    // The CA certificate: downloadable from the data dir, and pingora's upstream trust
    // store (its rustls connector needs a CA file; without one it panics on start).
    let ca_path = ca_pem_path(ctx);
    std::fs::write(&ca_path, ca.ca_pem()).with_context(|| format!("proxy: writing {}", ca_path.display()))?;

    // pingora serves the connections the fast path hands over; its upstream TLS connector
    // trusts our CA (the management API upstream) and needs a CA file.
    let conf = Arc::new(ServerConf {
        ca_file: Some(ca_path.display().to_string()),
        ..Default::default()
    });
    let (pingora_shutdown, pingora_watch) = tokio::sync::watch::channel(false);
    let pingora_for = |tls: bool| {
        let mut proxy = pingora::proxy::http_proxy(&conf, ProxyApp::new(shared.clone(), tls));
        // Non-exhaustive upstream: start from the defaults and set fields.
        #[allow(clippy::field_reassign_with_default)]
        {
            let mut o = pingora::apps::HttpServerOptions::default();
            o.keepalive_request_limit = Some(fast::KEEPALIVE_REQUEST_LIMIT);
            o.h2_idle_timeout = Some(Duration::from_secs(120));
            proxy.server_options = Some(o);
        }
        Arc::new(proxy)
    };
    let plain = Arc::new(fast::Listener {
        shared: shared.clone(),
        pingora: pingora_for(false),
        tls: None,
        shutdown: pingora_watch.clone(),
    });
    let tls_config = ca.proxy_server_config().map_err(|e| anyhow::anyhow!("proxy: TLS settings: {e}"))?;
    let secure = Arc::new(fast::Listener {
        shared: shared.clone(),
        pingora: pingora_for(true),
        tls: Some(tokio_rustls::TlsAcceptor::from(tls_config)),
        shutdown: pingora_watch,
    });

    let sockets: Vec<(SocketAddr, TcpListener, Arc<fast::Listener>)> = listeners
        .http
        .into_iter()
        .map(|(a, l)| (a, l, plain.clone()))
        .chain(listeners.https.into_iter().map(|(a, l)| (a, l, secure.clone())))
        .collect();
    let token = CancellationToken::new();
    let mut workers = Vec::new();
    let mut first = Some(sockets.iter().map(|(_, l, kind)| (l, kind.clone())).collect::<Vec<_>>());
    for n in 0..cfg.threads.max(1) {
        // Every worker has its own socket on every listen address (SO_REUSEPORT), so the
        // kernel spreads connections evenly; the first worker takes the sockets bound at start.
        let mine = match first.take() {
            Some(bound) => bound
                .into_iter()
                .map(|(l, kind)| Ok((l.try_clone().context("proxy: listener")?, kind)))
                .collect::<anyhow::Result<Vec<_>>>()?,
            None => sockets
                .iter()
                .map(|(a, _, kind)| Ok((bind_tcp_shared("proxy", *a).map_err(|e| anyhow::anyhow!("{e}"))?, kind.clone())))
                .collect::<anyhow::Result<Vec<_>>>()?,
        };
        let token = token.clone();
        let worker = std::thread::Builder::new()
            .name(format!("proxy-{n}"))
            .spawn(move || fast::run_worker(mine, token, Duration::from_secs(3)))
            .context("proxy: cannot start a worker thread")?;
        workers.push(worker);
    }
    for (a, _, _) in &sockets {
        tracing::info!(service = "proxy", addr = %a, "listening");
    }
    Ok(ProxyHandle {
        ctx: ctx.clone(),
        shared,
        management,
        workers,
        token,
        pingora_shutdown,
    })
}

impl ProxyHandle {
    /// The live route table (tests, diagnostics).
    pub fn routes(&self) -> Arc<RouteTable> {
        self.shared.routes.load_full()
    }

    /// Apply plan changes and run health checks until `ctx.shutdown`; then stop the workers.
    pub async fn run(self) -> anyhow::Result<()> {
        let ProxyHandle {
            ctx,
            shared,
            management,
            workers,
            token,
            pingora_shutdown,
        } = self;
        let checks = tokio::spawn(health::run_active_checks(
            shared.routes.clone(),
            shared.health.clone(),
            shared.metrics.clone(),
            Duration::from_secs(ctx.config.proxy.health_check_secs.max(1)),
            token.clone(),
        ));
        let mut plans = ctx.plan.subscribe();
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                changed = plans.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let plan = plans.borrow_and_update().clone();
                    let table = RouteTable::from_plan(&plan, management.as_ref());
                    tracing::info!(service = "proxy", generation = plan.generation, hosts = table.len(), "routes updated");
                    shared.routes.store(Arc::new(table));
                }
            }
        }
        let _ = pingora_shutdown.send(true);
        token.cancel();
        let _ = checks.await;
        let joined = tokio::task::spawn_blocking(move || workers.into_iter().map(|w| w.join()).collect::<Vec<_>>());
        match tokio::time::timeout(Duration::from_secs(5), joined).await {
            Ok(Ok(results)) => {
                for r in results {
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => anyhow::bail!("proxy: a worker failed: {e}"),
                        Err(_) => anyhow::bail!("proxy: a worker thread panicked"),
                    }
                }
                Ok(())
            }
            Ok(Err(e)) => anyhow::bail!("proxy: {e}"),
            Err(_) => {
                tracing::warn!(service = "proxy", "proxy workers did not stop within 5 s");
                Ok(())
            }
        }
    }
}
