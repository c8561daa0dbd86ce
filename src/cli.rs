//! Command line: every subcommand and flag (DESIGN §10 is the contract for names).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Proximity: one daemon that turns a Proxmox VE node into an app platform.
///
/// It runs the isolated app network `proximity-lan` (DHCP, DNS for `.prox.local`, reverse
/// proxy with HTTPS, NAT and isolation) and the management API and web UI that deploy
/// catalog apps as Docker-in-LXC containers. Start with `proximity demo` to try everything
/// on this machine without Proxmox.
#[derive(Debug, Parser)]
#[command(name = "proximity", version, propagate_version = true, arg_required_else_help = true)]
pub struct Cli {
    /// Log output: `human` (default) or `json`.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the appliance daemon (DHCP, DNS, proxy, firewall, API and web UI).
    Serve(ServeArgs),
    /// Run the whole product on this machine with a built-in Proxmox simulator (no root,
    /// no Proxmox): UI/API on https://127.0.0.1:9443, DNS on 127.0.0.1:5353.
    Demo(DemoArgs),
    /// Run the Proxmox VE simulator alone (API on HTTPS, SSH for `pct`).
    PveSim(PveSimArgs),
    /// Install the appliance on this Proxmox node (run as root on the node).
    Install(InstallArgs),
    /// Manage users of the management UI/API.
    #[command(subcommand)]
    User(UserCommand),
    /// Check a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Work with the app catalog.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Back up or restore the appliance's own database as JSON.
    #[command(subcommand)]
    Db(DbCommand),
    /// Print the appliance's SSH public key (OpenSSH line; created on first use) to
    /// authorize on Proxmox nodes. Works offline: stop the daemon first.
    SshKey(SshKeyArgs),
}

/// `ssh-key`
#[derive(Debug, Args)]
pub struct SshKeyArgs {
    /// Configuration file (to find the data directory).
    #[arg(long, short, default_value = "/etc/proximity/proximity.toml")]
    pub config: PathBuf,
    /// Data directory (overrides the configuration).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, short, default_value = "/etc/proximity/proximity.toml")]
    pub config: PathBuf,
    /// Data directory (overrides `general.data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Data directory (default: a new temporary directory, removed on exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Name of the admin user to create.
    #[arg(long, default_value = "admin")]
    pub admin_user: String,
    /// Admin password (default: generated and printed once).
    #[arg(long, env = "PROXIMITY_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// UI/API listen address.
    #[arg(long, default_value = "127.0.0.1:9443")]
    pub api_listen: SocketAddr,
    /// DNS listen address (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:5353")]
    pub dns_listen: SocketAddr,
    /// Reverse proxy HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// Reverse proxy HTTPS listen address.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub https_listen: SocketAddr,
    /// Proxmox simulator API listen address.
    #[arg(long, default_value = "127.0.0.1:8006")]
    pub sim_listen: SocketAddr,
    /// Proxmox simulator SSH listen address.
    #[arg(long, default_value = "127.0.0.1:2222")]
    pub sim_ssh_listen: SocketAddr,
    /// Forward names outside `.prox.local` to this resolver (default: no forwarding).
    #[arg(long)]
    pub upstream_dns: Option<SocketAddr>,
    /// Number of simulated Proxmox nodes.
    #[arg(long, default_value_t = 2)]
    pub nodes: u32,
}

/// Container runtimes of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeArg {
    /// No root: each container gets its own 127.x address.
    Loopback,
    /// Root: each container is a network namespace on a bridge.
    Netns,
}

/// `pve-sim`
#[derive(Debug, Args)]
pub struct PveSimArgs {
    /// API listen address (HTTPS).
    #[arg(long, default_value = "127.0.0.1:8006")]
    pub listen: SocketAddr,
    /// SSH listen address (`pct exec|push|set|enter`).
    #[arg(long, default_value = "127.0.0.1:2222")]
    pub ssh_listen: SocketAddr,
    /// Container runtime.
    #[arg(long, value_enum, default_value = "loopback")]
    pub runtime: RuntimeArg,
    /// Number of nodes (`pve1`..`pveN`).
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Password of `root@pam` (default: generated and printed).
    #[arg(long)]
    pub root_password: Option<String>,
    /// Secret of the API token `root@pam!proximity` (default: generated and printed).
    #[arg(long)]
    pub token_secret: Option<String>,
    /// Directory for state (containers, backups, templates); default: temporary.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Simulator settings file (TOML: task durations, faults, extra hosts).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `install`
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Proxmox API URL of this node.
    #[arg(long, default_value = "https://127.0.0.1:8006")]
    pub pve_url: String,
    /// Node name (default: the first node).
    #[arg(long)]
    pub node: Option<String>,
    /// VMID of the appliance container.
    #[arg(long, default_value_t = 9999)]
    pub vmid: u32,
    /// Print what would be done and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove everything a previous install created, and nothing else.
    #[arg(long)]
    pub uninstall: bool,
}

/// `user`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add {
        /// User name.
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Password (default: read from PROXIMITY_PASSWORD or generated and printed).
        #[arg(long, env = "PROXIMITY_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Configuration file (to find the data directory).
        #[arg(long, short, default_value = "/etc/proximity/proximity.toml")]
        config: PathBuf,
        /// Data directory (overrides the configuration).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Set a user's password.
    Passwd {
        /// User name.
        name: String,
        /// New password (default: read from PROXIMITY_PASSWORD or generated and printed).
        #[arg(long, env = "PROXIMITY_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/proximity/proximity.toml")]
        config: PathBuf,
        /// Data directory (overrides the configuration).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// `config`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE; prints `FILE:key: message` for each problem and exits non-zero.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print the built-in defaults as TOML.
    Defaults,
}

/// `catalog`
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Validate catalog files in DIR (default: the built-in catalog); prints
    /// `file:field: message` for each problem and exits non-zero.
    Validate {
        /// Directory of `<id>.yaml` files.
        dir: Option<PathBuf>,
    },
}

/// `db`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Write the whole database as JSON to FILE (or `-` for stdout).
    Export {
        /// Output file.
        file: PathBuf,
        /// Configuration file (to find the data directory).
        #[arg(long, short, default_value = "/etc/proximity/proximity.toml")]
        config: PathBuf,
        /// Data directory (overrides the configuration).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Load a JSON export into the database (stop the daemon first).
    Import {
        /// Input file.
        file: PathBuf,
        /// Replace the tables of a non-empty database.
        #[arg(long)]
        replace: bool,
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/proximity/proximity.toml")]
        config: PathBuf,
        /// Data directory (overrides the configuration).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}
