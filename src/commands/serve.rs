//! `proximity serve`: the appliance daemon.

use crate::cli::ServeArgs;
use crate::config::LogFormat;

/// Run the daemon until SIGTERM/SIGINT.
pub fn run(args: ServeArgs, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    let mut config = super::load_config(&args.config, args.data_dir)?;
    if let Some(f) = log_format {
        config.log_format = f;
    }
    crate::telemetry::init_logging(config.log_format, &config.log_filter);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("proximity")
        .build()?;
    runtime.block_on(async move {
        let supervisor = crate::daemon::start(config).await?;
        tracing::info!("ready");
        println!("ready");
        supervisor.run().await
    })
}
