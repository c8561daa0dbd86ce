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

    let api_listeners = crate::api::bind(&ctx)?;
    for l in &api_listeners {
        tracing::info!(service = "api", addr = %l.local_addr()?, "listening");
    }
    sup.spawn("api", crate::api::run(ctx.clone(), api_listeners));

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
