//! `proximity user add|passwd`: manage users of the management API offline (the daemon
//! holds the database open, so stop it first or use the API).

use std::path::Path;

use crate::api::auth::users::{self, Role};
use crate::cli::UserCommand;
use crate::store::Store;

fn generated_password() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 15]>())
}

fn open(config: &Path, data_dir: Option<std::path::PathBuf>) -> anyhow::Result<Store> {
    let c = super::load_config(config, data_dir)?;
    std::fs::create_dir_all(&c.data_dir).map_err(|e| anyhow::anyhow!("cannot create the data directory {}: {e}", c.data_dir.display()))?;
    Store::open(&c.db_path()).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the database in {} ({e}); if the daemon is running, stop it or use the API",
            c.data_dir.display()
        )
    })
}

/// Run a `user` subcommand.
pub fn run(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            name,
            admin,
            password,
            config,
            data_dir,
        } => {
            let store = open(&config, data_dir)?;
            let (pw, generated) = match password {
                Some(p) => (p, false),
                None => (generated_password(), true),
            };
            let role = if admin { Role::Admin } else { Role::User };
            let u = users::create(&store, &name, &pw, role, false)?;
            println!("created {} user {} ({})", role.as_str(), u.username, u.id);
            if generated {
                println!("password: {pw}");
            }
            Ok(())
        }
        UserCommand::Passwd {
            name,
            password,
            config,
            data_dir,
        } => {
            let store = open(&config, data_dir)?;
            let (pw, generated) = match password {
                Some(p) => (p, false),
                None => (generated_password(), true),
            };
            let u = users::set_password(&store, &name, &pw)?;
            crate::api::auth::tokens::TokenService::revoke_user_sessions(&store, &u.id, None, "password set with `proximity user passwd`")?;
            println!("password of {} changed; its sessions were revoked", u.username);
            if generated {
                println!("password: {pw}");
            }
            Ok(())
        }
    }
}
