//! `proximity demo`: the whole product on loopback with the built-in Proxmox simulator.

use crate::cli::DemoArgs;
use crate::config::{Config, LogFormat};

/// Build the demo configuration from the flags (DESIGN §10 defaults).
pub fn demo_config(args: &DemoArgs, data_dir: std::path::PathBuf) -> Config {
    let mut c = Config {
        data_dir,
        ..Config::default()
    };
    c.api.listen = vec![args.api_listen];
    c.dns.listen = vec![args.dns_listen];
    c.proxy.http_listen = vec![args.http_listen];
    c.proxy.https_listen = vec![args.https_listen];
    c.network.upstream_dns = args.upstream_dns.into_iter().collect();
    c.network.manage_links = false;
    c.network.firewall = false;
    c.dhcp.enabled = false;
    c
}

/// Run the demo until Ctrl-C.
pub fn run(args: DemoArgs, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    crate::telemetry::init_logging(log_format.unwrap_or(LogFormat::Human), "info");
    let (data_dir, _temp) = match &args.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = std::env::temp_dir().join(format!("proximity-demo-{}", std::process::id()));
            (t.clone(), Some(TempDir(t)))
        }
    };
    let config = demo_config(&args, data_dir.clone());
    let admin_password = args.admin_password.clone().unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>()));
    {
        // The admin login (before the daemon holds the database).
        std::fs::create_dir_all(&data_dir)?;
        let store = crate::store::Store::open(&config.db_path())?;
        crate::api::auth::users::ensure_admin(&store, &args.admin_user, &admin_password)?;
    }
    let scheme = if config.api.tls { "https" } else { "http" };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    runtime.block_on(async move {
        let supervisor = crate::daemon::start(config).await?;
        println!("Proximity demo (data in {})", data_dir.display());
        println!("  UI/API   {scheme}://{}", args.api_listen);
        println!("  DNS      {}", args.dns_listen);
        println!("  login    {} / {}", args.admin_user, admin_password);
        println!(
            "ready api={} dns={} http={} https={}",
            args.api_listen, args.dns_listen, args.http_listen, args.https_listen
        );
        supervisor.run().await
    })
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
