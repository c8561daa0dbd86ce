//! Assembles `proximity serve`: opens storage, binds every socket, starts services in
//! dependency order under one [`Supervisor`].

use anyhow::Context as _;

use crate::config::Config;
use crate::store::Store;
use crate::supervisor::{Context, Supervisor};

/// Open storage, bind and start every enabled service. Fails (naming the service and
/// port) before anything runs if a socket cannot be bound.
pub async fn start(config: Config) -> anyhow::Result<Supervisor> {
    let store = Store::open(&config.db_path()).with_context(|| format!("opening the database in {}", config.data_dir.display()))?;
    let ctx = Context::new(config, store)?;
    start_with(ctx).await
}

/// Start services over an existing context (used by `demo` and tests).
pub async fn start_with(ctx: Context) -> anyhow::Result<Supervisor> {
    let mut sup = Supervisor::new(ctx.clone());

    // Network plane (branch net): link, DHCP, DNS, firewall — each only when enabled.
    crate::netplane::start(&ctx, &mut sup).await?;

    let api_listeners = crate::api::bind(&ctx)?;
    for l in &api_listeners {
        tracing::info!(service = "api", addr = %l.local_addr()?, "listening");
    }
    sup.spawn("api", crate::api::run(ctx.clone(), api_listeners));
    Ok(sup)
}
