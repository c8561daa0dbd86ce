//! `proximity pve-sim`: run the Proxmox VE simulator alone until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;

use crate::cli::{PveSimArgs, RuntimeArg};
use crate::config::LogFormat;
use crate::sim::{self, Faults, Runtime, SimConfig};

/// Optional simulator settings file (`--config`, TOML).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSettings {
    /// Duration of one task step in milliseconds.
    pub task_delay_ms: Option<u64>,
    /// Cluster name.
    pub cluster_name: Option<String>,
    /// Faults injected from the start.
    pub faults: Faults,
}

/// Run the simulator.
pub fn run(args: PveSimArgs, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    crate::telemetry::init_logging(log_format.unwrap_or(LogFormat::Human), "info");
    let settings: SimSettings = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => SimSettings::default(),
    };
    let (state_dir, temporary) = match args.state_dir {
        Some(d) => (d, false),
        None => (std::env::temp_dir().join(format!("proximity-pve-sim-{}", std::process::id())), true),
    };
    let defaults = SimConfig::default();
    let cfg = SimConfig {
        api_listen: args.listen,
        ssh_listen: args.ssh_listen,
        runtime: match args.runtime {
            RuntimeArg::Loopback => Runtime::Loopback,
            RuntimeArg::Netns => Runtime::Netns,
        },
        nodes: args.nodes.clamp(1, 64),
        root_password: args.root_password.unwrap_or(defaults.root_password),
        token_secret: args.token_secret.unwrap_or(defaults.token_secret),
        state_dir: state_dir.clone(),
        task_delay_ms: settings.task_delay_ms.unwrap_or(defaults.task_delay_ms),
        cluster_name: settings.cluster_name.unwrap_or(defaults.cluster_name),
        faults: settings.faults,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("pve-sim")
        .build()?;
    let result = runtime.block_on(async move {
        let handle = sim::start(cfg).await?;
        println!("fingerprint {}", handle.fingerprint);
        println!("api https://{}/api2/json", handle.api_addr);
        println!("ssh {} host-key {}", handle.ssh_addr, handle.ssh_host_key);
        println!("user root@pam password {}", handle.root_password);
        println!("token {} secret {}", handle.token_id, handle.token_secret);
        println!("state-dir {}", handle.state_dir().display());
        println!("ready api={} ssh={}", handle.api_addr, handle.ssh_addr);
        tracing::info!(api = %handle.api_addr, ssh = %handle.ssh_addr, "pve-sim ready");
        wait_for_signal().await;
        tracing::info!("pve-sim shutting down");
        handle.shutdown().await;
        anyhow::Ok(())
    });
    if temporary {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    result
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let term_fut = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term_fut => {}
    }
}

/// The state directory a run would use by default (for documentation and tests).
pub fn default_state_dir() -> PathBuf {
    std::env::temp_dir().join(format!("proximity-pve-sim-{}", std::process::id()))
}
