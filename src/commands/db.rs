//! `proximity db export|import`.

use std::io::{Read, Write};

use anyhow::Context as _;

use crate::cli::DbCommand;
use crate::store::{Store, export::Dump};

/// Run a `db` subcommand.
pub fn run(cmd: DbCommand) -> anyhow::Result<()> {
    match cmd {
        DbCommand::Export { file, config, data_dir } => {
            let config = super::load_config(&config, data_dir)?;
            let store = Store::open(&config.db_path())?;
            let dump = store.export()?;
            let text = serde_json::to_string_pretty(&dump)?;
            if file.as_os_str() == "-" {
                std::io::stdout().write_all(text.as_bytes())?;
            } else {
                std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
                eprintln!("exported {} tables to {}", dump.tables.len(), file.display());
            }
            Ok(())
        }
        DbCommand::Import {
            file,
            replace,
            config,
            data_dir,
        } => {
            let config = super::load_config(&config, data_dir)?;
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            }
            let dump: Dump =
                serde_json::from_str(&text).with_context(|| format!("{} is not a proximity database export", file.display()))?;
            let store = Store::open(&config.db_path())?;
            let n = store.import(&dump, replace)?;
            eprintln!("imported {n} records into {}", config.db_path().display());
            Ok(())
        }
    }
}
