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

/// Run the demo until Ctrl-C: the Proxmox simulator (loopback runtime) and the daemon
/// wired to it, with an admin user, everything on loopback.
pub fn run(args: DemoArgs, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    crate::telemetry::init_logging(log_format.unwrap_or(LogFormat::Human), "info");
    let (data_dir, _temp) = match &args.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = std::env::temp_dir().join(format!("proximity-demo-{}", std::process::id()));
            (t.clone(), Some(TempDir(t)))
        }
    };
    let mut config = demo_config(&args, data_dir.clone());
    let admin_password = args
        .admin_password
        .clone()
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>()));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    runtime.block_on(async move {
        // The simulated Proxmox cluster (its state lives with the demo data, so a restart with
        // the same --data-dir keeps containers, certificate and SSH host key).
        let sim_dir = data_dir.join("pve-sim");
        let secret_file = sim_dir.join("credentials.json");
        let (root_password, token_secret) = match std::fs::read_to_string(&secret_file)
            .ok()
            .and_then(|t| serde_json::from_str::<(String, String)>(&t).ok())
        {
            Some(c) => c,
            None => (
                hex::encode(rand::random::<[u8; 12]>()),
                crate::sim::SimConfig::default().token_secret,
            ),
        };
        std::fs::create_dir_all(&sim_dir)?;
        write_private(&secret_file, &serde_json::to_string(&(&root_password, &token_secret))?)?;
        let sim = crate::sim::start(crate::sim::SimConfig {
            api_listen: args.sim_listen,
            ssh_listen: args.sim_ssh_listen,
            runtime: crate::sim::Runtime::Loopback,
            nodes: args.nodes.max(1),
            root_password,
            token_secret,
            state_dir: sim_dir,
            task_delay_ms: 150,
            ..crate::sim::SimConfig::default()
        })
        .await
        .context("starting the Proxmox simulator")?;

        // The daemon talks to the simulator exactly as to a real node: API token, pinned
        // certificate, SSH key authorized on the node.
        config.pve_hosts = vec![crate::config::PveHostConfig {
            name: "pve-sim".into(),
            url: sim.base_url(),
            token_id: Some(sim.token_id.clone()),
            token_secret: Some(sim.token_secret.clone()),
            user: None,
            password: None,
            fingerprint: Some(sim.fingerprint.clone()),
            ssh: Some(sim.ssh_addr.to_string()),
            ssh_user: "root".into(),
            bridge: "proximity-lan".into(),
            storage: "local-lvm".into(),
        }];
        {
            // Before the daemon holds the database: the admin login and the SSH key.
            let store = crate::store::Store::open(&config.db_path())?;
            crate::api::auth::users::ensure_admin(&store, &args.admin_user, &admin_password)?;
            let secrets = crate::secrets::SecretBox::open_or_create(&config.data_dir.join("secret.key"))?;
            let key = crate::pve::ssh::SshKey::load_or_create(&store, &secrets)?;
            sim.authorize_ssh_key(&key.public_openssh())?;
        }
        let scheme = if config.api.tls { "https" } else { "http" };
        let supervisor = match crate::daemon::start(config).await {
            Ok(s) => s,
            Err(e) => {
                sim.shutdown().await;
                return Err(e);
            }
        };
        let h = args.https_listen;
        println!("Proximity demo — data in {}", data_dir.display());
        println!(
            "  Web UI / API   {scheme}://{}   (self-signed: accept the certificate, or use the CA below)",
            args.api_listen
        );
        println!("  login          {} / {}", args.admin_user, admin_password);
        println!("  DNS            {} (zone prox.local)", args.dns_listen);
        println!("  reverse proxy  http://{}  https://{}", args.http_listen, h);
        println!(
            "  Proxmox (sim)  {} ({} nodes, fingerprint {})",
            sim.base_url(),
            args.nodes.max(1),
            sim.fingerprint
        );
        println!("Try it:");
        println!(
            "  1. open {scheme}://{} and deploy \"nginx\" as nginx-01 from the catalog",
            args.api_listen
        );
        println!(
            "  2. dig @{} -p {} nginx-01.prox.local",
            args.dns_listen.ip(),
            args.dns_listen.port()
        );
        println!(
            "  3. curl -sk {scheme}://{}/api/v1/network/ca.pem -o proximity-ca.pem",
            args.api_listen
        );
        println!(
            "  4. curl --cacert proximity-ca.pem --resolve nginx-01.prox.local:{}:{} https://nginx-01.prox.local:{}/",
            h.port(),
            h.ip(),
            h.port()
        );
        println!(
            "ready api={scheme}://{} dns={} http={} https={} sim={}",
            args.api_listen,
            args.dns_listen,
            args.http_listen,
            args.https_listen,
            sim.base_url()
        );
        let result = supervisor.run().await;
        sim.shutdown().await;
        result
    })
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
