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
    #[arg(
        long = "api-url",
        alias = "pve-url",
        default_value = "https://127.0.0.1:8006",
        env = "PROXIMITY_PVE_URL"
    )]
    pub api_url: String,
    /// SHA-256 fingerprint of the node's API certificate (default: read from
    /// /etc/pve/local/pve-ssl.pem on the node).
    #[arg(long, env = "PROXIMITY_PVE_FINGERPRINT")]
    pub fingerprint: Option<String>,
    /// User for ticket (password) authentication.
    #[arg(long, default_value = "root@pam")]
    pub user: String,
    /// Password of --user (ticket authentication; the installer needs root@pam to create tokens).
    #[arg(long, env = "PROXIMITY_PVE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// API token id USER@REALM!NAME (instead of a password).
    #[arg(long, env = "PROXIMITY_PVE_TOKEN_ID")]
    pub token_id: Option<String>,
    /// API token secret.
    #[arg(long, env = "PROXIMITY_PVE_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// The node's sshd (`pct push`/`pct exec` run over SSH with the appliance key).
    #[arg(long, default_value = "127.0.0.1:22")]
    pub ssh: String,
    /// The node's root authorized_keys file (the appliance key is added here).
    #[arg(long, default_value = "/root/.ssh/authorized_keys")]
    pub authorized_keys: PathBuf,
    /// Address of the node as the appliance reaches it (default: the WAN bridge's address).
    #[arg(long)]
    pub node_address: Option<String>,
    /// Node name (default: the only node, or the one named like this host).
    #[arg(long)]
    pub node: Option<String>,
    /// VMID of the appliance container.
    #[arg(long, default_value_t = 9999)]
    pub vmid: u32,
    /// Hostname of the appliance container.
    #[arg(long, default_value = "proximity")]
    pub hostname: String,
    /// Bridge of the user's LAN (the appliance's eth0).
    #[arg(long, default_value = "vmbr0")]
    pub wan_bridge: String,
    /// Static WAN address ADDRESS/PREFIX for eth0 (default: DHCP); needs --wan-gw.
    #[arg(long)]
    pub wan_ip: Option<String>,
    /// WAN gateway (with --wan-ip).
    #[arg(long)]
    pub wan_gw: Option<String>,
    /// Storage for the container's root disk (default: the first storage for containers).
    #[arg(long)]
    pub storage: Option<String>,
    /// Storage for the Alpine template (default: the first storage for templates).
    #[arg(long)]
    pub template_storage: Option<String>,
    /// Root disk size, GiB.
    #[arg(long, default_value_t = 4)]
    pub disk: u32,
    /// Memory, MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// CPU cores.
    #[arg(long, default_value_t = 2)]
    pub cores: u32,
    /// Name of the API token created for the appliance (user root@pam).
    #[arg(long, default_value = "proximity-appliance")]
    pub token_name: String,
    /// Binary to install in the container (default: this executable).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Where the installer records what it created (the uninstall list).
    #[arg(long, default_value = "/var/lib/proximity-install/install.json")]
    pub state_file: PathBuf,
    /// Do not wait for the appliance's health endpoint.
    #[arg(long)]
    pub no_wait_health: bool,
    /// Seconds to wait for the appliance to answer.
    #[arg(long, default_value_t = 180)]
    pub health_timeout: u64,
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
