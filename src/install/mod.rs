//! `proximity install`: the one-shot installer run on a Proxmox VE node. Pure parts live
//! here (`plan` decides what to do, [`appliance_config`] renders the appliance's config);
//! `commands::install` observes the node, carries the plan out and records what it created.

pub mod plan;

use crate::config::wire::PveHostWire;

/// The reference configuration shipped in the image (`rootfs/etc/proximity/proximity.toml`).
pub const REFERENCE_CONFIG: &str = include_str!("../../rootfs/etc/proximity/proximity.toml");
/// The OpenRC service (`rootfs/etc/init.d/proximity`).
pub const OPENRC_SERVICE: &str = include_str!("../../rootfs/etc/init.d/proximity");
/// Forwarding sysctl (`rootfs/etc/sysctl.d/90-proximity.conf`).
pub const SYSCTL_CONF: &str = include_str!("../../rootfs/etc/sysctl.d/90-proximity.conf");
/// Login banner (`rootfs/etc/motd`).
pub const MOTD: &str = include_str!("../../rootfs/etc/motd");

/// The node as the appliance must reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAccess {
    /// Node name (the host's display name in the appliance).
    pub node: String,
    /// `https://ADDRESS:PORT` of the node API, seen from the appliance.
    pub url: String,
    /// SHA-256 fingerprint of the node certificate.
    pub fingerprint: String,
    /// `ADDRESS:PORT` of the node's sshd.
    pub ssh: String,
    /// Full token id.
    pub token_id: String,
    /// Token secret.
    pub token_secret: String,
    /// The app network bridge.
    pub bridge: String,
    /// Storage for app root disks.
    pub storage: String,
}

/// The appliance's `/etc/proximity/proximity.toml`: the reference file plus one
/// `[[pve_hosts]]` entry for this node. Values are TOML-encoded, never pasted.
pub fn appliance_config(n: &NodeAccess) -> Result<String, String> {
    #[derive(serde::Serialize)]
    struct Hosts {
        pve_hosts: Vec<PveHostWire>,
    }
    let host = PveHostWire {
        name: n.node.clone(),
        url: n.url.clone(),
        token_id: n.token_id.clone(),
        token_secret: n.token_secret.clone(),
        fingerprint: n.fingerprint.clone(),
        ssh: n.ssh.clone(),
        ssh_user: "root".into(),
        bridge: n.bridge.clone(),
        storage: n.storage.clone(),
        ..Default::default()
    };
    let table = toml::to_string(&Hosts { pve_hosts: vec![host] }).map_err(|e| format!("cannot encode the host entry: {e}"))?;
    let text = format!(
        "{}\n# Written by `proximity install` for node {}.\n{table}",
        REFERENCE_CONFIG.trim_end(),
        n.node
    );
    crate::config::Config::from_toml_str(&text).map_err(|e| format!("the generated configuration is invalid: {e}"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_the_host_and_parses() {
        let n = NodeAccess {
            node: "pve1".into(),
            url: "https://192.168.1.10:8006".into(),
            fingerprint: ["AB"; 32].join(":"),
            ssh: "192.168.1.10:22".into(),
            token_id: "root@pam!proximity-appliance".into(),
            token_secret: "s\"e'c\nret".into(),
            bridge: "proximity-lan".into(),
            storage: "local-lvm".into(),
        };
        let text = appliance_config(&n).unwrap();
        let wire: crate::config::ConfigFile = toml::from_str(&text).unwrap();
        assert_eq!(wire.pve_hosts.len(), 1);
        assert_eq!(wire.pve_hosts[0].token_secret, "s\"e'c\nret");
        assert_eq!(wire.pve_hosts[0].url, "https://192.168.1.10:8006");
        assert_eq!(wire.pve_hosts[0].bridge, "proximity-lan");
    }
}
