//! Service supervision: a shared [`Context`], binding helpers that name the service and the
//! port on failure, readiness reporting, signal handling and ordered shutdown.
//!
//! Lifecycle: the caller binds every socket first (so "port in use" fails start-up before
//! anything runs), then [`Supervisor::spawn`]s each service future in dependency order,
//! then [`Supervisor::run`] waits for SIGTERM/SIGINT or a service failure, cancels the
//! shared token and joins services in reverse order, each within a grace period.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::EventBus;
use crate::store::Store;
use crate::telemetry::Metrics;

/// State of one service, as shown by `/api/v1/system/health`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Bound and running.
    Ready,
    /// Turned off in the configuration.
    Disabled,
    /// Stopped with an error.
    Failed(String),
    /// Stopped normally.
    Stopped,
}

/// Readiness of every service.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<String, ServiceState>>>);

impl Health {
    /// Record a service's state.
    pub fn set(&self, name: &str, state: ServiceState) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), state);
    }
    /// A snapshot of all states.
    pub fn snapshot(&self) -> BTreeMap<String, ServiceState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// True when no service failed.
    pub fn all_ok(&self) -> bool {
        self.snapshot().values().all(|s| !matches!(s, ServiceState::Failed(_)))
    }
}

/// What every service gets: configuration, storage, metrics, events and the shutdown token.
#[derive(Clone)]
pub struct Context {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// Metrics registry.
    pub metrics: Metrics,
    /// In-process event bus.
    pub events: EventBus,
    /// Cancelled when the daemon stops.
    pub shutdown: CancellationToken,
    /// Service readiness.
    pub health: Health,
    /// The network plan, recomputed from the registry.
    pub plan: crate::plan::PlanPublisher,
    /// Encryption of secrets at rest.
    pub secrets: crate::secrets::SecretBox,
}

impl Context {
    /// A context over an opened store; creates the secrets key file in the data directory
    /// on first use.
    pub fn new(config: Config, store: Store) -> Result<Self, crate::secrets::SecretError> {
        let secrets = crate::secrets::SecretBox::open_or_create(&config.data_dir.join("secret.key"))?;
        let plan = crate::plan::PlanPublisher::new(config.network.clone());
        let _ = plan.refresh(&store);
        Ok(Context {
            plan,
            secrets,
            config: Arc::new(config),
            store,
            metrics: Metrics::new(),
            events: EventBus::new(),
            shutdown: CancellationToken::new(),
            health: Health::default(),
        })
    }
}

/// A start-up failure naming the service and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{service}: {message}")]
pub struct StartError {
    /// Service name.
    pub service: String,
    /// What failed and what to do.
    pub message: String,
}

fn bind_message(service: &str, proto: &str, addr: SocketAddr, e: &std::io::Error) -> StartError {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "{proto} port {} on {} is already in use by another program; stop it or choose another address for {service}",
            addr.port(),
            addr.ip()
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("no permission to bind {proto} {addr}; ports below 1024 need root or CAP_NET_BIND_SERVICE")
        }
        std::io::ErrorKind::AddrNotAvailable => format!("address {} is not assigned to this machine", addr.ip()),
        _ => format!("cannot bind {proto} {addr}"),
    };
    StartError {
        service: service.into(),
        message: format!("{hint} ({e})"),
    }
}

/// Bind a TCP listener for `service`, with an error naming the service and port.
pub fn bind_tcp(service: &str, addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    bind_tcp_with(service, addr, false)
}

/// Like [`bind_tcp`], with `SO_REUSEPORT`: several listeners of this process (one per
/// worker thread) on one address, the kernel spreading new connections over them. A port
/// held by another program without `SO_REUSEPORT` still fails clearly.
pub fn bind_tcp_shared(service: &str, addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    bind_tcp_with(service, addr, true)
}

fn bind_tcp_with(service: &str, addr: SocketAddr, reuse_port: bool) -> Result<std::net::TcpListener, StartError> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(|e| bind_message(service, "TCP", addr, &e))?;
    let _ = sock.set_reuse_address(true);
    if reuse_port {
        sock.set_reuse_port(true).map_err(|e| bind_message(service, "TCP", addr, &e))?;
    }
    if addr.is_ipv6() {
        let _ = sock.set_only_v6(true);
    }
    sock.bind(&addr.into()).map_err(|e| bind_message(service, "TCP", addr, &e))?;
    sock.listen(1024).map_err(|e| bind_message(service, "TCP", addr, &e))?;
    sock.set_nonblocking(true).map_err(|e| bind_message(service, "TCP", addr, &e))?;
    Ok(sock.into())
}

/// Bind a UDP socket for `service`, with an error naming the service and port.
pub fn bind_udp(service: &str, addr: SocketAddr) -> Result<std::net::UdpSocket, StartError> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(|e| bind_message(service, "UDP", addr, &e))?;
    if addr.is_ipv6() {
        let _ = sock.set_only_v6(true);
    }
    sock.bind(&addr.into()).map_err(|e| bind_message(service, "UDP", addr, &e))?;
    sock.set_nonblocking(true).map_err(|e| bind_message(service, "UDP", addr, &e))?;
    Ok(sock.into())
}

/// Runs services and stops them in order.
pub struct Supervisor {
    ctx: Context,
    tasks: Vec<(String, JoinHandle<anyhow::Result<()>>)>,
    failed: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    failures: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    grace: Duration,
    /// Registered at construction so a signal that arrives before `run` is not lost
    /// (the default action would kill the process).
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Supervisor {
    /// A supervisor over a context.
    pub fn new(ctx: Context) -> Self {
        let (failed, failures) = tokio::sync::mpsc::unbounded_channel();
        Supervisor {
            ctx,
            tasks: Vec::new(),
            failed,
            failures,
            grace: Duration::from_secs(5),
            signals: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .ok()
                .zip(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok()),
        }
    }

    /// The shared context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Start a service future; it must return when `ctx.shutdown` is cancelled.
    pub fn spawn<F>(&mut self, name: &str, fut: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name_s = name.to_string();
        let health = self.ctx.health.clone();
        let failed = self.failed.clone();
        let shutdown = self.ctx.shutdown.clone();
        health.set(name, ServiceState::Ready);
        let handle = tokio::spawn(async move {
            let r = fut.await;
            match &r {
                Ok(()) => {
                    health.set(&name_s, ServiceState::Stopped);
                    if !shutdown.is_cancelled() {
                        tracing::warn!(service = %name_s, "service stopped unexpectedly");
                    }
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    tracing::error!(service = %name_s, error = %msg, "service failed");
                    health.set(&name_s, ServiceState::Failed(msg.clone()));
                    let _ = failed.send((name_s.clone(), msg));
                }
            }
            r
        });
        tracing::info!(service = name, "service started");
        self.tasks.push((name.to_string(), handle));
    }

    /// Mark a service as disabled by configuration (shown in health).
    pub fn disabled(&self, name: &str) {
        self.ctx.health.set(name, ServiceState::Disabled);
    }

    /// Wait for SIGTERM/SIGINT, cancellation, or a service failure; then stop every service
    /// in reverse start order. Returns an error if a service failed.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let (mut term, mut int) = match self.signals.take() {
            Some(s) => s,
            None => (
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?,
            ),
        };
        let mut failure = None;
        tokio::select! {
            _ = int.recv() => tracing::info!("interrupt received, shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = self.ctx.shutdown.cancelled() => tracing::info!("shutdown requested"),
            f = self.failures.recv() => {
                if let Some((name, msg)) = f {
                    failure = Some(anyhow::anyhow!("service {name} failed: {msg}"));
                }
            }
        }
        self.shutdown().await;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Cancel the shared token and join services in reverse order.
    pub async fn shutdown(&mut self) {
        self.ctx.shutdown.cancel();
        while let Some((name, handle)) = self.tasks.pop() {
            match tokio::time::timeout(self.grace, handle).await {
                Ok(_) => tracing::debug!(service = %name, "service stopped"),
                Err(_) => tracing::warn!(service = %name, "service did not stop within {:?}; abandoning it", self.grace),
            }
        }
        tracing::info!("all services stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_in_use_names_service_and_port() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let e = bind_tcp("api", addr).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("api:"), "{s}");
        assert!(s.contains(&format!("port {}", addr.port())), "{s}");
        assert!(s.contains("already in use"), "{s}");
    }
}
