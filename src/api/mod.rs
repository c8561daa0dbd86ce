//! Management REST API and web UI (axum).
//!
//! Layout: [`rbac::ROUTES`] is the one table of routes and permissions; [`auth::guard`]
//! enforces it and audits state-changing calls ([`audit`]); handlers live per resource
//! in [`handlers`]; errors are RFC 9457 problems ([`error`]); [`docs`] holds the OpenAPI
//! document (golden file `src/api/openapi.json`) and [`web`] serves the embedded UI.

pub mod audit;
pub mod auth;
pub mod docs;
pub mod error;
pub mod handlers;
pub mod rbac;
pub mod web;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, get, post};

use crate::supervisor::{Context, StartError, bind_tcp};
use auth::throttle::{Limits, Throttle};
use auth::tokens::TokenService;
use error::FieldErrors;

/// Shared state of every handler.
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

/// Contents of [`ApiState`].
pub struct Inner {
    /// Daemon context.
    pub ctx: Context,
    /// Token issuing and checking.
    pub tokens: TokenService,
    /// Login throttle.
    pub throttle: Throttle,
    /// Open job event streams (SSE), bounded per user and in total (`api.sse_max_*`); the
    /// same accounting as consoles, a slot is given back when its stream is dropped.
    pub sse: crate::console::ConsoleSlots,
    /// Mark cookies `Secure` (HTTPS).
    pub secure_cookies: bool,
    /// The appliance CA (serves `ca.pem`/`ca.der` and the API's certificate).
    pub ca: Option<crate::tls::CertAuthority>,
    /// The app catalog.
    pub catalog: Option<Arc<crate::catalog::Catalog>>,
    /// Registry of Proxmox hosts.
    pub hosts: crate::pve::Hosts,
    /// The app platform (deploy, actions, backups...), set by whoever wires it.
    pub platform: std::sync::OnceLock<crate::platform::Platform>,
    /// Open web consoles against `api.console_max_*`.
    pub consoles: crate::console::ConsoleSlots,
    /// Running console sessions, so shutdown lets them send their close frames.
    pub console_tasks: tokio_util::task::TaskTracker,
    /// Cached "may this app be framed" probes (`frameable` of the app view).
    pub framing: crate::framing::FrameProbe,
}

impl std::ops::Deref for ApiState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl ApiState {
    /// State over a context with default throttle limits.
    pub fn new(ctx: Context) -> anyhow::Result<Self> {
        Self::with_limits(ctx, Limits::default())
    }

    /// State with explicit throttle limits (tests); loads its own catalog and host registry.
    pub fn with_limits(ctx: Context, limits: Limits) -> anyhow::Result<Self> {
        let catalog = match crate::catalog::Catalog::load(ctx.config.catalog_dirs.clone()) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                tracing::error!(error = %e, "app catalog unavailable");
                None
            }
        };
        let hosts = crate::pve::Hosts::from_context(&ctx);
        Self::with_parts(ctx, limits, catalog, hosts)
    }

    /// State over parts shared with the platform (the daemon passes the same catalog and
    /// host registry to both, so reloads and host edits are seen by deploys).
    pub fn with_parts(
        ctx: Context,
        limits: Limits,
        catalog: Option<Arc<crate::catalog::Catalog>>,
        hosts: crate::pve::Hosts,
    ) -> anyhow::Result<Self> {
        let api = &ctx.config.api;
        let tokens = TokenService::load(&ctx.store, &ctx.secrets, api.access_token_secs, api.refresh_token_secs)?;
        let secure_cookies = api.tls;
        let consoles = crate::console::ConsoleSlots::new(api.console_max_per_user, api.console_max_total);
        let sse = crate::console::ConsoleSlots::new(api.sse_max_per_user, api.sse_max_total);
        let ca = match crate::tls::CertAuthority::for_context(&ctx) {
            Ok(ca) => Some(ca),
            Err(e) => {
                tracing::error!(error = %e, "appliance CA unavailable; ca.pem and HTTPS will fail");
                None
            }
        };
        Ok(ApiState(Arc::new(Inner {
            ctx,
            tokens,
            throttle: Throttle::new(limits),
            sse,
            secure_cookies,
            ca,
            catalog,
            hosts,
            platform: std::sync::OnceLock::new(),
            consoles,
            console_tasks: tokio_util::task::TaskTracker::new(),
            framing: crate::framing::FrameProbe::new(),
        })))
    }

    /// Attach the app platform (once); app, backup and discovery endpoints use it.
    pub fn set_platform(&self, p: crate::platform::Platform) {
        let _ = self.platform.set(p);
    }

    /// The platform, or 503.
    pub fn platform(&self) -> Result<&crate::platform::Platform, error::ApiError> {
        self.platform
            .get()
            .ok_or_else(|| error::ApiError::unavailable("the app platform (jobs and Proxmox operations) is not running"))
    }
}

/// Bind every `api.listen` address. Plain HTTP (`api.tls = false`) is refused on
/// non-loopback addresses.
pub fn bind(ctx: &Context) -> Result<Vec<TcpListener>, StartError> {
    if !ctx.config.api.tls
        && let Some(a) = ctx.config.api.listen.iter().find(|a| !a.ip().is_loopback())
    {
        return Err(StartError {
            service: "api".into(),
            message: format!("api.tls = false is allowed only on loopback addresses, but api.listen contains {a}; enable api.tls"),
        });
    }
    ctx.config.api.listen.iter().map(|a| bind_tcp("api", *a)).collect()
}

/// Parse an optional numeric query parameter, recording a field error when malformed.
pub fn num_param<T: std::str::FromStr>(errs: &mut FieldErrors, field: &str, v: Option<&str>) -> Option<T> {
    let v = v?;
    match v.trim().parse::<T>() {
        Ok(n) => Some(n),
        Err(_) => {
            errs.add(field, "must be a non-negative integer in range");
            None
        }
    }
}

/// All API routes with their handlers (paths and methods must match [`rbac::ROUTES`]).
pub fn api_routes() -> Vec<(&'static str, &'static str, MethodRouter<ApiState>)> {
    use self::{audit, docs};
    use axum::routing::{delete, patch, put};
    use handlers::*;
    vec![
        ("GET", "/api/v1/auth/setup", get(auth::setup_status)),
        ("POST", "/api/v1/auth/setup", post(auth::setup)),
        ("POST", "/api/v1/auth/login", post(auth::login)),
        ("POST", "/api/v1/auth/refresh", post(auth::refresh)),
        ("POST", "/api/v1/auth/logout", post(auth::logout)),
        ("GET", "/api/v1/auth/me", get(auth::me)),
        ("POST", "/api/v1/auth/password", post(auth::password)),
        ("GET", "/api/v1/users", get(users::list)),
        ("POST", "/api/v1/users", post(users::create)),
        ("GET", "/api/v1/users/{id}", get(users::get_one)),
        ("PATCH", "/api/v1/users/{id}", patch(users::update)),
        ("DELETE", "/api/v1/users/{id}", delete(users::remove)),
        ("GET", "/api/v1/tokens", get(tokens::list)),
        ("POST", "/api/v1/tokens", post(tokens::create)),
        ("DELETE", "/api/v1/tokens/{id}", delete(tokens::revoke)),
        ("GET", "/api/v1/apps", get(apps::list)),
        ("POST", "/api/v1/apps", post(apps::deploy)),
        ("GET", "/api/v1/apps/discover", get(apps::discover)),
        ("POST", "/api/v1/apps/adopt", post(apps::adopt)),
        ("GET", "/api/v1/apps/{id}", get(apps::get_one)),
        ("DELETE", "/api/v1/apps/{id}", delete(apps::remove)),
        ("POST", "/api/v1/apps/{id}/action", post(apps::action)),
        ("POST", "/api/v1/apps/{id}/clone", post(apps::clone_app)),
        ("POST", "/api/v1/apps/{id}/update", post(apps::update)),
        ("GET", "/api/v1/apps/{id}/logs", get(apps::logs)),
        ("GET", "/api/v1/apps/{id}/metrics", get(apps::metrics)),
        ("POST", "/api/v1/apps/{id}/exec", post(apps::exec)),
        ("GET", "/api/v1/apps/{id}/console", get(console::open)),
        ("GET", "/api/v1/apps/{id}/backups", get(backups::list)),
        ("POST", "/api/v1/apps/{id}/backups", post(backups::create)),
        ("GET", "/api/v1/apps/{id}/backups/stats", get(backups::stats)),
        ("GET", "/api/v1/apps/{id}/backups/{backup_id}", get(backups::get_one)),
        ("DELETE", "/api/v1/apps/{id}/backups/{backup_id}", delete(backups::remove)),
        ("POST", "/api/v1/apps/{id}/backups/{backup_id}/restore", post(backups::restore)),
        ("GET", "/api/v1/catalog", get(catalog::list)),
        ("GET", "/api/v1/catalog/categories", get(catalog::categories)),
        ("GET", "/api/v1/catalog/search", get(catalog::search)),
        ("POST", "/api/v1/catalog/reload", post(catalog::reload)),
        ("GET", "/api/v1/catalog/{id}", get(catalog::get_one)),
        ("GET", "/api/v1/hosts", get(hosts::list)),
        ("POST", "/api/v1/hosts", post(hosts::create)),
        ("GET", "/api/v1/hosts/{name}", get(hosts::get_one)),
        ("PUT", "/api/v1/hosts/{name}", put(hosts::update)),
        ("DELETE", "/api/v1/hosts/{name}", delete(hosts::remove)),
        ("POST", "/api/v1/hosts/{name}/test", post(hosts::test)),
        ("POST", "/api/v1/hosts/{name}/sync", post(hosts::sync)),
        ("GET", "/api/v1/nodes", get(hosts::nodes)),
        ("GET", "/api/v1/jobs", get(jobs::list)),
        ("GET", "/api/v1/jobs/{id}", get(jobs::get_one)),
        ("GET", "/api/v1/jobs/{id}/events", get(jobs::events)),
        ("GET", "/api/v1/network/leases", get(network::leases)),
        ("GET", "/api/v1/network/records", get(network::records)),
        ("GET", "/api/v1/network/routes", get(network::routes)),
        ("GET", "/api/v1/network/forwards", get(network::forwards)),
        ("GET", "/api/v1/network/firewall", get(network::firewall)),
        ("POST", "/api/v1/network/self-test", post(network::self_test)),
        ("GET", "/api/v1/network/ca", get(network::ca_info)),
        ("GET", "/api/v1/network/ca.pem", get(network::ca_pem)),
        ("GET", "/api/v1/network/ca.der", get(network::ca_der)),
        ("GET", "/api/v1/settings/resources", get(settings::get_resources)),
        ("PUT", "/api/v1/settings/resources", put(settings::put_resources)),
        ("GET", "/api/v1/settings/network", get(settings::get_network)),
        ("PUT", "/api/v1/settings/network", put(settings::put_network)),
        ("GET", "/api/v1/settings/schedule", get(settings::get_schedule)),
        ("PUT", "/api/v1/settings/schedule", put(settings::put_schedule)),
        ("GET", "/api/v1/system/health", get(system::health)),
        ("GET", "/api/v1/system/info", get(system::info)),
        ("GET", "/api/v1/audit", get(audit::list)),
        ("GET", "/api/v1/openapi.json", get(docs::openapi_json)),
        ("GET", "/api/v1/docs", get(docs::docs_page)),
        ("GET", "/metrics", get(system::metrics)),
    ]
}

/// The router over a prepared state.
pub fn router_with(state: ApiState) -> Router {
    let max_body = state.ctx.config.api.max_body_bytes;
    let mut r: Router<ApiState> = Router::new();
    for (_, path, mr) in api_routes() {
        r = r.route(path, mr);
    }
    r.route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard))
        .fallback(web::fallback)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn(handlers::catch_panic))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(handlers::security_headers))
        .with_state(state)
}

/// The router (panics only if the signing key cannot be loaded; use [`router_with`] and
/// [`ApiState::new`] to handle that).
pub fn router(ctx: Context) -> Router {
    match ApiState::new(ctx) {
        Ok(s) => router_with(s),
        Err(e) => panic!("cannot initialise the API state: {e:#}"),
    }
}

/// Serve the API on the bound listeners until shutdown (state built from the context,
/// no platform attached; see [`run_with`]).
pub async fn run(ctx: Context, listeners: Vec<TcpListener>) -> anyhow::Result<()> {
    let state = ApiState::new(ctx)?;
    run_with(state, listeners).await
}

/// Serve a prepared state: HTTPS with the appliance CA when `api.tls` (ALPN h2 and
/// http/1.1), plain HTTP otherwise (loopback only, checked by [`bind`]).
pub async fn run_with(state: ApiState, listeners: Vec<TcpListener>) -> anyhow::Result<()> {
    let ctx = state.ctx.clone();
    let tls = if ctx.config.api.tls {
        let ca = state
            .ca
            .clone()
            .ok_or_else(|| anyhow::anyhow!("api.tls is on but the appliance CA could not be loaded"))?;
        let mut listen: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
        // Listening on 0.0.0.0 (the default) the certificate would name only loopback, so a
        // user who trusts the downloaded CA still got a name mismatch at
        // https://<appliance>:8443. Add the WAN address (configured, or read from the WAN
        // interface as netplane does for DNS answers).
        if listen.iter().any(|a| a.ip().is_unspecified()) {
            let net = &ctx.config.network;
            let wan = match net.wan_address {
                Some(a) => Some(a),
                None => crate::link::interface_v4(&net.wan_interface).await.ok().flatten().map(|n| n.addr()),
            };
            listen.extend(wan.map(|ip| SocketAddr::from((ip, 0))));
        }
        Some(tokio_rustls::TlsAcceptor::from(ca.api_server_config(&listen)?))
    } else {
        None
    };
    let consoles = state.console_tasks.clone();
    let app = router_with(state);
    let mut tasks = Vec::new();
    for l in listeners {
        let l = tokio::net::TcpListener::from_std(l)?;
        let app = app.clone();
        let token = ctx.shutdown.clone();
        match tls.clone() {
            None => tasks.push(tokio::spawn(async move {
                axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await
                    .map_err(anyhow::Error::from)
            })),
            Some(acceptor) => tasks.push(tokio::spawn(serve_tls(l, acceptor, app, token))),
        }
    }
    for t in tasks {
        t.await??;
    }
    // Upgraded websockets outlive their HTTP connections: give open consoles a moment to
    // tell their clients that the appliance is shutting down (they watch the same token).
    consoles.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), consoles.wait()).await;
    Ok(())
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt as _;
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "api accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        conns.spawn(async move {
            let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
                }
            }
        });
    }
    conns.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conns.wait()).await;
    Ok(())
}
