//! Assembles `proximity serve`: opens storage, binds every socket, starts services in
//! dependency order under one [`Supervisor`].

use anyhow::Context as _;

use crate::config::Config;
use crate::store::Store;
use crate::supervisor::{Context, Supervisor};

/// Open storage, bind and start every enabled service. Fails (naming the service and
/// port) before anything runs if a socket cannot be bound.
pub async fn start(config: Config) -> anyhow::Result<Supervisor> {
    let store = Store::open_with_cache(&config.db_path(), config.store_cache_bytes)
        .with_context(|| format!("opening the database in {}", config.data_dir.display()))?;
    let ctx = Context::new(config, store)?;
    start_with(ctx).await
}

/// Start services over an existing context (used by `demo` and tests).
pub async fn start_with(ctx: Context) -> anyhow::Result<Supervisor> {
    let mut sup = Supervisor::new(ctx.clone());

    // Network plane (branch net): link, DHCP, DNS, firewall — each only when enabled.
    crate::netplane::start(&ctx, &mut sup).await?;

    // Platform: persistent jobs (interrupted ones resumed or failed first), deploy
    // pipeline and scheduler. The API gets `platform` for its app routes.
    // One catalog and one host registry (with its client cache) shared by API and platform.
    let catalog = std::sync::Arc::new(crate::catalog::Catalog::load(ctx.config.catalog_dirs.clone()).context("loading the app catalog")?);
    let hosts = crate::pve::Hosts::from_context(&ctx);
    let platform = start_platform(&ctx, &mut sup, catalog.clone(), hosts.clone())?;
    sup.spawn(
        "pve-sync",
        crate::pve::hosts::run_sync(ctx.clone(), hosts.clone(), std::time::Duration::from_secs(60)),
    );

    let api_listeners = crate::api::bind(&ctx)?;
    for l in &api_listeners {
        tracing::info!(service = "api", addr = %l.local_addr()?, "listening");
    }
    let api = crate::api::ApiState::with_parts(ctx.clone(), Default::default(), Some(catalog), hosts)?;
    api.set_platform(platform);
    sup.spawn("api", crate::api::run_with(api, api_listeners));
    sup.spawn("audit-retention", crate::api::audit::run_retention(ctx.clone()));

    // Reverse proxy (pingora on its own thread); HTTPS certificates from the appliance CA.
    if ctx.config.proxy.enabled {
        let listeners = crate::proxy::bind(&ctx)?;
        let ca = crate::tls::CertAuthority::for_context(&ctx).context("proxy: loading the certificate authority")?;
        let proxy = crate::proxy::start(&ctx, ca, listeners).await?;
        sup.spawn("proxy", proxy.run());
    } else {
        sup.disabled("proxy");
    }
    Ok(sup)
}

/// Build the app platform, recover interrupted jobs, and start the jobs engine and the
/// scheduler under `sup`.
pub fn start_platform(
    ctx: &Context,
    sup: &mut Supervisor,
    catalog: std::sync::Arc<crate::catalog::Catalog>,
    hosts: crate::pve::Hosts,
) -> anyhow::Result<crate::platform::Platform> {
    if let Err(e) = hosts.seed_from_config(&ctx.config.pve_hosts) {
        tracing::warn!(error = %e, "cannot seed Proxmox hosts from the configuration");
    }
    let jobs = crate::jobs::Jobs::new(ctx.store.clone(), ctx.events.clone(), &ctx.config.jobs);
    let platform = crate::platform::Platform::new(ctx.clone(), catalog, hosts, jobs.clone());
    let (resumed, failed) = jobs.recover().context("recovering interrupted jobs")?;
    for j in &failed {
        tracing::warn!(job = %j.id, kind = j.kind.as_str(), error = ?j.error, "interrupted job failed");
    }
    platform.recovered(&failed);
    tracing::info!(resumed, failed = failed.len(), "jobs recovered");
    sup.spawn("jobs", jobs.run(platform.handler(), ctx.shutdown.clone()));
    sup.spawn("scheduler", crate::platform::scheduler::run(platform.clone(), ctx.shutdown.clone()));
    Ok(platform)
}
