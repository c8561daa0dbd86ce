//! Subcommand implementations. `main` parses the command line and dispatches.

pub mod catalog;
pub mod db;
pub mod demo;
pub mod install;
pub mod pve_sim;
pub mod serve;
pub mod ssh_key;
pub mod user;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{CatalogCommand, Cli, Command, ConfigCommand, LogFormatArg};
use crate::config::{Config, LogFormat};

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let log_format = cli.log_format.map(|f| match f {
        LogFormatArg::Human => LogFormat::Human,
        LogFormatArg::Json => LogFormat::Json,
    });
    let result = match cli.command {
        Command::Serve(args) => serve::run(args, log_format),
        Command::Demo(args) => demo::run(args, log_format),
        Command::PveSim(args) => pve_sim::run(args, log_format),
        Command::Install(args) => install::run(args),
        Command::User(cmd) => user::run(cmd),
        Command::Config(ConfigCommand::Check { file }) => return config_check(&file),
        Command::Config(ConfigCommand::Defaults) => {
            print!("{}", toml::to_string(&crate::config::ConfigFile::default()).unwrap_or_default());
            Ok(())
        }
        Command::Catalog(CatalogCommand::Validate { dir }) => return catalog::validate(dir.as_deref()),
        Command::Db(cmd) => db::run(cmd),
        Command::SshKey(args) => ssh_key::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_check(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            for issue in &e.issues {
                println!("{}:{}: {}", file.display(), issue.key, issue.message);
            }
            ExitCode::FAILURE
        }
    }
}

/// Load the configuration for admin verbs: the file if it exists (errors are fatal), the
/// built-in defaults if the default path is absent; `data_dir` overrides either.
pub fn load_config(path: &Path, data_dir: Option<PathBuf>) -> anyhow::Result<Config> {
    let mut config = if path.exists() {
        Config::load(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    } else if path == Path::new("/etc/proximity/proximity.toml") {
        Config::default()
    } else {
        anyhow::bail!("configuration file {} does not exist", path.display());
    };
    if let Some(d) = data_dir {
        config.data_dir = d;
    }
    Ok(config)
}
