//! Reverse proxy (pingora): every app at `http(s)://<name>.<domain>`, the management API at
//! `proximity.<domain>`, HTTPS with per-SNI certificates from the appliance CA ([`crate::tls`]).
//!
//! Lifecycle:
//! ```text
//! daemon: bind()  ── checks every listen address (error names "proxy" and the port)
//!         start() ── route table from ctx.plan, pingora Server on its own OS thread
//!                    (Server::run with a shutdown signal tied to ctx.shutdown), waits
//!                    until every listener accepts
//!         run()   ── plan watcher (ArcSwap route swaps) + active health checks until
//!                    ctx.shutdown; then pingora stops (grace 0 s, runtimes ≤ 3 s)
//! ```
//! pingora binds its listeners itself (it cannot adopt our sockets), so `bind()` holds the
//! sockets only to fail start-up clearly; they are released right before pingora binds.

pub mod health;
pub mod policy;
pub mod routes;
pub mod service;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use tokio_util::sync::CancellationToken;

use self::health::HealthTable;
use self::routes::{ManagementUpstream, RouteTable};
use self::service::{Limits, ProxyApp, Shared};
use crate::supervisor::{Context, StartError, bind_tcp};
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
        let l = bind_tcp("proxy", *a)?;
        let actual = l.local_addr().unwrap_or(*a);
        Ok((actual, l))
    };
    Ok(ProxyListeners {
        http: ctx.config.proxy.http_listen.iter().map(one).collect::<Result<_, _>>()?,
        https: ctx.config.proxy.https_listen.iter().map(one).collect::<Result<_, _>>()?,
    })
}

/// Shutdown signal for pingora tied to our cancellation token.
struct TokenSignal(CancellationToken);

#[async_trait]
impl ShutdownSignalWatch for TokenSignal {
    async fn recv(&self) -> ShutdownSignal {
        self.0.cancelled().await;
        ShutdownSignal::GracefulTerminate
    }
}

/// No post-handshake callbacks (certificates come from the resolver).
struct NoCallbacks;
impl TlsAccept for NoCallbacks {}

/// A started proxy; [`ProxyHandle::run`] keeps routes and health current until shutdown.
pub struct ProxyHandle {
    ctx: Context,
    shared: Shared,
    management: Option<ManagementUpstream>,
    thread: std::thread::JoinHandle<()>,
    token: CancellationToken,
}

/// Path of the CA certificate the daemon writes for users and tests (`<data_dir>/ca.pem`).
pub fn ca_pem_path(ctx: &Context) -> std::path::PathBuf {
    ctx.config.data_dir.join("ca.pem")
}

/// Start pingora on its own OS thread with the current routes and wait until every listener
/// accepts connections.
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

    let conf = ServerConf {
        threads: cfg.threads.max(1),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(3),
        ca_file: Some(ca_path.display().to_string()),
        pid_file: ctx.config.data_dir.join("proxy.pid").display().to_string(),
        upgrade_sock: ctx.config.data_dir.join("proxy-upgrade.sock").display().to_string(),
        daemon: false,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let http_addrs = listeners.http_addrs();
    let https_addrs = listeners.https_addrs();
    if !http_addrs.is_empty() {
        let mut svc =
            pingora::proxy::http_proxy_service_with_name(&server.configuration, ProxyApp::new(shared.clone(), false), "proxy-http");
        set_server_options(&mut svc);
        for a in &http_addrs {
            svc.add_tcp(&a.to_string());
        }
        server.add_service(svc);
    }
    if !https_addrs.is_empty() {
        let mut svc =
            pingora::proxy::http_proxy_service_with_name(&server.configuration, ProxyApp::new(shared.clone(), true), "proxy-https");
        set_server_options(&mut svc);
        for a in &https_addrs {
            let mut tls = TlsSettings::with_callbacks(Box::new(NoCallbacks)).map_err(|e| anyhow::anyhow!("proxy: TLS settings: {e}"))?;
            tls.set_cert_resolver(ca.proxy_resolver());
            tls.enable_h2();
            svc.add_tls_with_settings(&a.to_string(), None, tls);
        }
        server.add_service(svc);
    }

    // Release our probe sockets right before pingora binds the same addresses.
    drop(listeners);
    let token = CancellationToken::new();
    let signal = TokenSignal(token.clone());
    let thread = std::thread::Builder::new()
        .name("proxy-pingora".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(signal),
            })
        })
        .context("proxy: cannot start the pingora thread")?;

    // Ready means pingora's listening socket exists. Checked in /proc/net/tcp* rather than
    // by connecting, so no half-open probe reaches the TLS listener (it would log a failed
    // handshake).
    let deadline = Instant::now() + Duration::from_secs(10);
    for a in http_addrs.iter().chain(https_addrs.iter()) {
        loop {
            if is_listening(*a)
                .unwrap_or_else(|| std::net::TcpStream::connect_timeout(&loopback_for(*a), Duration::from_millis(200)).is_ok())
            {
                break;
            }
            if Instant::now() > deadline || thread.is_finished() {
                token.cancel();
                anyhow::bail!(
                    "proxy: listener {a} did not come up (another program may have taken port {})",
                    a.port()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(service = "proxy", addr = %a, "listening");
    }
    Ok(ProxyHandle {
        ctx: ctx.clone(),
        shared,
        management,
        thread,
        token,
    })
}

/// Downstream connection limits: requests per keep-alive connection, idle HTTP/2 connections.
fn set_server_options(svc: &mut pingora::services::listening::Service<pingora::proxy::HttpProxy<ProxyApp>>) {
    if let Some(app) = svc.app_logic_mut() {
        // Non-exhaustive upstream: start from the defaults and set fields.
        #[allow(clippy::field_reassign_with_default)]
        {
            let mut o = pingora::apps::HttpServerOptions::default();
            o.keepalive_request_limit = Some(10_000);
            o.h2_idle_timeout = Some(Duration::from_secs(120));
            app.server_options = Some(o);
        }
    }
}

/// Connectable address for a listen address (unspecified → loopback).
fn loopback_for(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v) if v.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], v.port())),
        SocketAddr::V6(v) if v.ip().is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v.port())),
        a => a,
    }
}

/// Is there a TCP socket in LISTEN state on exactly `addr` (this network namespace)?
/// `None` when /proc/net is not readable.
fn is_listening(addr: SocketAddr) -> Option<bool> {
    let (file, want) = match addr {
        SocketAddr::V4(v) => ("/proc/net/tcp", proc_net_addr(&v.ip().octets(), v.port())),
        SocketAddr::V6(v) => ("/proc/net/tcp6", proc_net_addr(&v.ip().octets(), v.port())),
    };
    let text = std::fs::read_to_string(file).ok()?;
    Some(listening_in(&text, &want))
}

/// The `local_address` column of /proc/net/tcp*: each 32-bit word of the address printed
/// as a native-endian hex number, then the port in hex.
fn proc_net_addr(octets: &[u8], port: u16) -> String {
    let mut s = String::new();
    for w in octets.chunks(4) {
        s.push_str(&format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])));
    }
    format!("{s}:{port:04X}")
}

/// Does the /proc/net/tcp* text hold a LISTEN (state `0A`) socket on `local`?
fn listening_in(text: &str, local: &str) -> bool {
    text.lines().skip(1).any(|l| {
        let mut f = l.split_whitespace();
        let (_sl, loc, _rem, st) = (f.next(), f.next(), f.next(), f.next());
        loc == Some(local) && st == Some("0A")
    })
}

impl ProxyHandle {
    /// The live route table (tests, diagnostics).
    pub fn routes(&self) -> Arc<RouteTable> {
        self.shared.routes.load_full()
    }

    /// Apply plan changes and run health checks until `ctx.shutdown`; then stop pingora.
    pub async fn run(self) -> anyhow::Result<()> {
        let ProxyHandle {
            ctx,
            shared,
            management,
            thread,
            token,
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
        token.cancel();
        let _ = checks.await;
        let joined = tokio::task::spawn_blocking(move || thread.join());
        match tokio::time::timeout(Duration::from_secs(5), joined).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(_))) => anyhow::bail!("proxy: the pingora thread panicked"),
            Ok(Err(e)) => anyhow::bail!("proxy: {e}"),
            Err(_) => {
                tracing::warn!(service = "proxy", "pingora did not stop within 5 s");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_listen_detection() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        assert_eq!(is_listening(a), Some(true));
        drop(l);
        assert_eq!(is_listening(a), Some(false));
        let text = "  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A 0\n   1: 0100007F:0050 0100007F:9C40 01 0\n";
        assert!(listening_in(text, &proc_net_addr(&[127, 0, 0, 1], 8080)));
        assert!(
            !listening_in(text, &proc_net_addr(&[127, 0, 0, 1], 80)),
            "established, not listening"
        );
    }
}
