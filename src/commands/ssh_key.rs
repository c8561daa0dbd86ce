//! `proximity ssh-key`: print the appliance's SSH public key (created and stored sealed in
//! the database on first use), so it can be authorized on a Proxmox node before `serve`.

use crate::cli::SshKeyArgs;
use crate::store::Store;

/// Print the public key as one OpenSSH line.
pub fn run(args: SshKeyArgs) -> anyhow::Result<()> {
    let c = super::load_config(&args.config, args.data_dir)?;
    std::fs::create_dir_all(&c.data_dir).map_err(|e| anyhow::anyhow!("cannot create the data directory {}: {e}", c.data_dir.display()))?;
    let store = Store::open(&c.db_path()).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the database in {} ({e}); if the daemon is running, stop it first",
            c.data_dir.display()
        )
    })?;
    let secrets = crate::secrets::SecretBox::open_or_create(&c.data_dir.join("secret.key"))?;
    let key = crate::pve::ssh::SshKey::load_or_create(&store, &secrets)?;
    println!("{}", key.public_openssh());
    Ok(())
}
