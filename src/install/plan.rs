//! Pure install/uninstall planning: what the node looks like ([`Observed`]) plus what a
//! previous run created ([`InstallRecord`]) → the ordered list of [`Action`]s still needed.
//! No I/O; `commands::install` observes, asks for a plan and carries it out.
//!
//! Idempotence lives here: an action appears only when its effect is missing, so a second
//! run on a finished install plans nothing. Anything that exists but was not created by the
//! installer is never changed nor removed; where it would be in the way, planning fails with
//! what to do.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Oldest supported Proxmox VE major version.
pub const MIN_PVE_MAJOR: u32 = 8;

/// How the appliance's WAN side (eth0 on the WAN bridge) gets its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wan {
    /// DHCP on the user's LAN.
    Dhcp,
    /// Static address with prefix and gateway.
    Static {
        /// Address.
        ip: Ipv4Addr,
        /// Prefix length.
        prefix: u8,
        /// Default gateway.
        gateway: Ipv4Addr,
    },
}

impl Wan {
    /// Parse `--wan-ip A.B.C.D/N` + `--wan-gw A.B.C.D` (both or neither).
    pub fn parse(ip: Option<&str>, gw: Option<&str>) -> Result<Wan, PlanError> {
        match (ip, gw) {
            (None, None) => Ok(Wan::Dhcp),
            (Some(ip), Some(gw)) => {
                let (a, p) = ip
                    .split_once('/')
                    .ok_or_else(|| PlanError::Input(format!("--wan-ip `{ip}` must be ADDRESS/PREFIX, e.g. 192.168.1.50/24")))?;
                let ip: Ipv4Addr = a
                    .parse()
                    .map_err(|_| PlanError::Input(format!("--wan-ip: `{a}` is not an IPv4 address")))?;
                let prefix: u8 = p
                    .parse()
                    .ok()
                    .filter(|p| (1..=32).contains(p))
                    .ok_or_else(|| PlanError::Input(format!("--wan-ip: prefix `{p}` must be 1..32")))?;
                let gateway: Ipv4Addr = gw
                    .parse()
                    .map_err(|_| PlanError::Input(format!("--wan-gw: `{gw}` is not an IPv4 address")))?;
                Ok(Wan::Static { ip, prefix, gateway })
            }
            (Some(_), None) => Err(PlanError::Input("--wan-ip needs --wan-gw (the gateway of the WAN network)".into())),
            (None, Some(_)) => Err(PlanError::Input("--wan-gw needs --wan-ip ADDRESS/PREFIX".into())),
        }
    }
}

/// What the user asked for (defaults from the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Node to install on.
    pub node: String,
    /// VMID of the appliance container.
    pub vmid: u32,
    /// Hostname of the container.
    pub hostname: String,
    /// The WAN bridge (`vmbr0`).
    pub wan_bridge: String,
    /// The app network bridge to create (`proximity-lan`).
    pub lan_bridge: String,
    /// The appliance's address on the app network.
    pub lan_cidr: String,
    /// WAN addressing.
    pub wan: Wan,
    /// Storage for the container's root disk.
    pub rootfs_storage: String,
    /// Root disk size, GiB.
    pub disk_gib: u32,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// Cores.
    pub cores: u32,
    /// Storage for the template (`vztmpl` content).
    pub template_storage: String,
    /// PVE user that owns the appliance's API token.
    pub token_user: String,
    /// Token name (`<user>!<name>`).
    pub token_name: String,
}

impl Settings {
    /// `user@realm!name`.
    pub fn token_full_id(&self) -> String {
        format!("{}!{}", self.token_user, self.token_name)
    }

    /// The `net0` value (WAN).
    pub fn net0(&self) -> String {
        let ip = match &self.wan {
            Wan::Dhcp => "ip=dhcp".to_string(),
            Wan::Static { ip, prefix, gateway } => format!("ip={ip}/{prefix},gw={gateway}"),
        };
        format!("name=eth0,bridge={},{ip},firewall=0", self.wan_bridge)
    }

    /// The `net1` value (app network).
    pub fn net1(&self) -> String {
        format!("name=eth1,bridge={},ip={},firewall=0", self.lan_bridge, self.lan_cidr)
    }
}

/// One template of the `aplinfo` index (only what planning needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// File name (`alpine-3.22-default_20250617_amd64.tar.xz`).
    pub template: String,
    /// OS (`alpine`).
    pub os: String,
    /// Section (`system`).
    pub section: String,
    /// Version string of the build.
    pub version: String,
}

/// The appliance container as found on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtSeen {
    /// Running now.
    pub running: bool,
}

/// What the node looks like now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// `release` of `GET /version` (`8.4`, `9.1`).
    pub pve_release: String,
    /// Interfaces in the node's active network configuration.
    pub ifaces: Vec<String>,
    /// Interfaces staged (pending apply), when there are staged changes.
    pub staged_ifaces: Option<Vec<String>>,
    /// Template volids already in the template storage.
    pub templates: Vec<String>,
    /// The `aplinfo` index.
    pub index: Vec<IndexEntry>,
    /// The container with our VMID, if any.
    pub ct: Option<CtSeen>,
    /// Other containers attached to the app network bridge (VMIDs).
    pub bridge_users: Vec<u32>,
    /// The token `<user>!<name>` exists.
    pub token_exists: bool,
    /// The appliance key line is in the node's `authorized_keys`.
    pub key_authorized: bool,
}

/// What an install created, persisted after every step (the uninstall list).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstallRecord {
    /// Format version.
    pub format: u32,
    /// Node.
    pub node: String,
    /// The bridge it created.
    pub bridge: Option<String>,
    /// The template volid it downloaded.
    pub template: Option<String>,
    /// The template storage and file, to delete it.
    pub template_storage: Option<String>,
    /// The container it created.
    pub vmid: Option<u32>,
    /// The API token it created (`user@realm!name`).
    pub token: Option<String>,
    /// The `authorized_keys` line it added.
    pub ssh_key_line: Option<String>,
    /// Binary, configuration, service and data are in the container.
    pub files_pushed: bool,
    /// The service is enabled in the container.
    pub service_enabled: bool,
    /// UI address printed at the end.
    pub ui_url: Option<String>,
    /// SHA-256 of the appliance CA certificate.
    pub ca_fingerprint: Option<String>,
}

impl InstallRecord {
    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.bridge.is_none() && self.template.is_none() && self.vmid.is_none() && self.token.is_none() && self.ssh_key_line.is_none()
    }
}

/// One step of an install or uninstall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stage the app network bridge (no ports, no host address, autostart).
    CreateBridge {
        /// Bridge name.
        iface: String,
    },
    /// Apply staged network changes (`PUT /nodes/{node}/network`), persisting them.
    ApplyNetwork,
    /// Download a template through `aplinfo`.
    DownloadTemplate {
        /// Storage.
        storage: String,
        /// Template file name from the index.
        template: String,
    },
    /// Create the appliance's API token (privsep 0: the privileges of its user).
    CreateToken {
        /// `user@realm`.
        user: String,
        /// Token name.
        name: String,
    },
    /// Add the appliance's SSH public key to the node's `authorized_keys`.
    AuthorizeKey,
    /// Create the appliance container.
    CreateCt {
        /// VMID.
        vmid: u32,
        /// Template volid.
        ostemplate: String,
    },
    /// Start the container.
    StartCt {
        /// VMID.
        vmid: u32,
    },
    /// Push the binary, configuration, OpenRC service and seeded data with `pct push`.
    PushFiles {
        /// VMID.
        vmid: u32,
    },
    /// Install nftables, enable and start the service inside the container.
    EnableService {
        /// VMID.
        vmid: u32,
    },
    /// Stop the container.
    StopCt {
        /// VMID.
        vmid: u32,
    },
    /// Destroy the container (purge).
    DestroyCt {
        /// VMID.
        vmid: u32,
    },
    /// Delete the API token.
    DeleteToken {
        /// `user@realm!name`.
        full_id: String,
    },
    /// Remove the appliance key line from `authorized_keys`.
    UnauthorizeKey,
    /// Stage the removal of the bridge.
    DeleteBridge {
        /// Bridge name.
        iface: String,
    },
    /// Delete the downloaded template.
    DeleteTemplate {
        /// Volid.
        volid: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateBridge { iface } => write!(f, "create bridge {iface} (staged in /etc/network/interfaces.new)"),
            Action::ApplyNetwork => write!(f, "apply the node's network configuration (ifreload)"),
            Action::DownloadTemplate { storage, template } => write!(f, "download template {template} to {storage}"),
            Action::CreateToken { user, name } => write!(f, "create API token {user}!{name} (privsep=0)"),
            Action::AuthorizeKey => write!(f, "authorize the appliance SSH key for root on the node"),
            Action::CreateCt { vmid, ostemplate } => write!(f, "create CT {vmid} from {ostemplate}"),
            Action::StartCt { vmid } => write!(f, "start CT {vmid}"),
            Action::PushFiles { vmid } => write!(f, "push binary, configuration, service and data into CT {vmid}"),
            Action::EnableService { vmid } => write!(f, "install nftables, enable and start the proximity service in CT {vmid}"),
            Action::StopCt { vmid } => write!(f, "stop CT {vmid}"),
            Action::DestroyCt { vmid } => write!(f, "destroy CT {vmid}"),
            Action::DeleteToken { full_id } => write!(f, "delete API token {full_id}"),
            Action::UnauthorizeKey => write!(f, "remove the appliance SSH key from the node's authorized_keys"),
            Action::DeleteBridge { iface } => write!(f, "delete bridge {iface}"),
            Action::DeleteTemplate { volid } => write!(f, "delete template {volid}"),
        }
    }
}

/// Why no plan can be made; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Bad command-line input.
    #[error("{0}")]
    Input(String),
    /// Proxmox VE too old or unreadable version.
    #[error("Proxmox VE {0} is not supported: Proximity needs Proxmox VE 8 or newer (upgrade the node first)")]
    PveTooOld(String),
    /// Someone else's staged network changes would be applied with ours.
    #[error(
        "the node has pending network changes that were not made by the installer; apply or revert them first (Datacenter → node → System → Network → Apply/Revert), then re-run"
    )]
    ForeignPendingNetwork,
    /// The VMID is taken by a container the installer did not create.
    #[error("CT {0} exists and was not created by `proximity install`; choose a free VMID with --vmid")]
    VmidTaken(u32),
    /// The token exists and was not created by the installer (its secret is unknown).
    #[error(
        "API token {0} exists and was not created by `proximity install` (its secret cannot be read back); remove it with `pveum user token remove {1}` or choose another --token-name"
    )]
    TokenTaken(String, String),
    /// The bridge is staged by someone else.
    #[error(
        "bridge {0} is staged but not applied and the installer did not stage it; apply or revert the node's pending network changes, then re-run"
    )]
    BridgeStagedElsewhere(String),
    /// No Alpine template in the index.
    #[error("the node's template index (aplinfo) lists no Alpine system template; run `pveam update` on the node and re-run")]
    NoAlpineTemplate,
    /// Uninstall would cut off containers that still use the bridge.
    #[error(
        "bridge {bridge} is still used by CT {users}; delete those apps first (in the Proximity UI) or detach them, then re-run --uninstall"
    )]
    BridgeInUse {
        /// Bridge.
        bridge: String,
        /// Comma-separated VMIDs.
        users: String,
    },
}

/// Major version of a PVE `release` (`9.1` → 9).
pub fn pve_major(release: &str) -> Option<u32> {
    release.split(['.', '-']).next()?.trim().parse().ok()
}

fn numeric_key(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The newest Alpine system template of the index: highest Alpine release (from the name,
/// `alpine-3.24-default_...`), then highest build version.
pub fn newest_alpine(index: &[IndexEntry]) -> Option<&IndexEntry> {
    index
        .iter()
        .filter(|e| e.os.eq_ignore_ascii_case("alpine") && e.section == "system" && e.template.starts_with("alpine-"))
        .max_by_key(|e| {
            let release = e
                .template
                .strip_prefix("alpine-")
                .and_then(|r| r.split(['-', '_']).next())
                .unwrap_or("");
            (numeric_key(release), numeric_key(&e.version), e.template.clone())
        })
}

/// The volid a template gets in `storage`.
pub fn template_volid(storage: &str, template: &str) -> String {
    format!("{storage}:vztmpl/{template}")
}

/// Plan an install. `record` is what earlier runs created.
pub fn plan_install(s: &Settings, o: &Observed, record: &InstallRecord) -> Result<Vec<Action>, PlanError> {
    match pve_major(&o.pve_release) {
        Some(m) if m >= MIN_PVE_MAJOR => {}
        _ => return Err(PlanError::PveTooOld(o.pve_release.clone())),
    }
    let mut actions = Vec::new();

    // Network: the bridge must be in the active configuration.
    let active = o.ifaces.contains(&s.lan_bridge);
    if !active {
        let ours = record.bridge.as_deref() == Some(s.lan_bridge.as_str());
        match &o.staged_ifaces {
            Some(staged) => {
                let staged_has = staged.contains(&s.lan_bridge);
                // Staged changes other than our bridge would be applied together with it.
                let mut others: Vec<&String> = staged.iter().filter(|i| **i != s.lan_bridge).collect();
                let mut current: Vec<&String> = o.ifaces.iter().collect();
                others.sort();
                current.sort();
                if others != current {
                    return Err(PlanError::ForeignPendingNetwork);
                }
                if staged_has && !ours {
                    return Err(PlanError::BridgeStagedElsewhere(s.lan_bridge.clone()));
                }
                if !staged_has {
                    actions.push(Action::CreateBridge {
                        iface: s.lan_bridge.clone(),
                    });
                }
            }
            None => actions.push(Action::CreateBridge {
                iface: s.lan_bridge.clone(),
            }),
        }
        actions.push(Action::ApplyNetwork);
    }

    // The container (and what it is made from).
    let ct_ours = record.vmid == Some(s.vmid);
    let ostemplate = match (&o.ct, ct_ours) {
        (Some(_), false) => return Err(PlanError::VmidTaken(s.vmid)),
        (Some(_), true) => None,
        (None, _) => {
            let newest = newest_alpine(&o.index).ok_or(PlanError::NoAlpineTemplate)?;
            let volid = template_volid(&s.template_storage, &newest.template);
            // Any Alpine template already there will do; otherwise fetch the newest.
            let present = o
                .templates
                .iter()
                .filter(|v| v.contains(":vztmpl/alpine-"))
                .max_by_key(|v| numeric_key(v))
                .cloned();
            match present {
                Some(v) => Some(v),
                None => {
                    actions.push(Action::DownloadTemplate {
                        storage: s.template_storage.clone(),
                        template: newest.template.clone(),
                    });
                    Some(volid)
                }
            }
        }
    };

    // Token: ours when recorded; someone else's is in the way (its secret is unknown).
    let full = s.token_full_id();
    let token_ours = record.token.as_deref() == Some(full.as_str());
    let new_token = match (o.token_exists, token_ours) {
        (true, true) => false,
        (true, false) => return Err(PlanError::TokenTaken(full, format!("{} {}", s.token_user, s.token_name))),
        (false, _) => {
            actions.push(Action::CreateToken {
                user: s.token_user.clone(),
                name: s.token_name.clone(),
            });
            true
        }
    };
    if !o.key_authorized {
        actions.push(Action::AuthorizeKey);
    }
    let created = ostemplate.is_some();
    if let Some(ostemplate) = ostemplate {
        actions.push(Action::CreateCt { vmid: s.vmid, ostemplate });
    }
    let running = o.ct.as_ref().is_some_and(|c| c.running);
    if created || !running {
        actions.push(Action::StartCt { vmid: s.vmid });
    }
    // A new container or a new token secret means the files must be (re)pushed.
    if created || new_token || !record.files_pushed {
        actions.push(Action::PushFiles { vmid: s.vmid });
    }
    if created || new_token || !record.files_pushed || !record.service_enabled {
        actions.push(Action::EnableService { vmid: s.vmid });
    }
    Ok(actions)
}

/// Plan an uninstall: undo exactly what `record` lists and still exists, in reverse order.
pub fn plan_uninstall(record: &InstallRecord, o: &Observed) -> Result<Vec<Action>, PlanError> {
    let mut actions = Vec::new();
    if let Some(vmid) = record.vmid
        && let Some(ct) = &o.ct
    {
        if ct.running {
            actions.push(Action::StopCt { vmid });
        }
        actions.push(Action::DestroyCt { vmid });
    }
    if let Some(full_id) = &record.token
        && o.token_exists
    {
        actions.push(Action::DeleteToken { full_id: full_id.clone() });
    }
    if record.ssh_key_line.is_some() && o.key_authorized {
        actions.push(Action::UnauthorizeKey);
    }
    if let Some(bridge) = &record.bridge {
        let users: Vec<String> = o
            .bridge_users
            .iter()
            .filter(|v| Some(**v) != record.vmid)
            .map(u32::to_string)
            .collect();
        if !users.is_empty() {
            return Err(PlanError::BridgeInUse {
                bridge: bridge.clone(),
                users: users.join(", "),
            });
        }
        let staged_has = o.staged_ifaces.as_ref().map(|s| s.iter().any(|i| i == bridge));
        let active = o.ifaces.iter().any(|i| i == bridge);
        match staged_has {
            // Pending changes exist: only go ahead if they are ours alone.
            Some(has) => {
                let mut others: Vec<&String> = o.staged_ifaces.iter().flatten().filter(|i| *i != bridge).collect();
                let mut current: Vec<&String> = o.ifaces.iter().filter(|i| *i != bridge).collect();
                others.sort();
                current.sort();
                if others != current {
                    return Err(PlanError::ForeignPendingNetwork);
                }
                if has {
                    actions.push(Action::DeleteBridge { iface: bridge.clone() });
                }
                if has || active {
                    actions.push(Action::ApplyNetwork);
                }
            }
            None if active => {
                actions.push(Action::DeleteBridge { iface: bridge.clone() });
                actions.push(Action::ApplyNetwork);
            }
            None => {}
        }
    }
    if let Some(volid) = &record.template
        && o.templates.contains(volid)
    {
        actions.push(Action::DeleteTemplate { volid: volid.clone() });
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            node: "pve1".into(),
            vmid: 9999,
            hostname: "proximity".into(),
            wan_bridge: "vmbr0".into(),
            lan_bridge: "proximity-lan".into(),
            lan_cidr: "10.20.0.1/24".into(),
            wan: Wan::Dhcp,
            rootfs_storage: "local-lvm".into(),
            disk_gib: 4,
            memory_mib: 512,
            cores: 2,
            template_storage: "local".into(),
            token_user: "root@pam".into(),
            token_name: "proximity-appliance".into(),
        }
    }

    fn index() -> Vec<IndexEntry> {
        let e = |t: &str, v: &str| IndexEntry {
            template: t.into(),
            os: "alpine".into(),
            section: "system".into(),
            version: v.into(),
        };
        vec![
            e("alpine-3.9-default_20190224_amd64.tar.xz", "20190224"),
            e("alpine-3.22-default_20250617_amd64.tar.xz", "20250617"),
            e("alpine-3.24-default_20260714_amd64.tar.xz", "20260714"),
            IndexEntry {
                template: "debian-13-standard_13.1-2_amd64.tar.zst".into(),
                os: "debian-13".into(),
                section: "system".into(),
                version: "13.1-2".into(),
            },
        ]
    }

    fn fresh() -> Observed {
        Observed {
            pve_release: "9.1".into(),
            ifaces: vec!["eno1".into(), "vmbr0".into()],
            index: index(),
            ..Default::default()
        }
    }

    /// What a finished install leaves: the node after the fresh plan, and its record.
    fn installed() -> (Observed, InstallRecord) {
        let mut o = fresh();
        o.ifaces.push("proximity-lan".into());
        o.templates.push("local:vztmpl/alpine-3.24-default_20260714_amd64.tar.xz".into());
        o.ct = Some(CtSeen { running: true });
        o.bridge_users = vec![9999];
        o.token_exists = true;
        o.key_authorized = true;
        let r = InstallRecord {
            format: 1,
            node: "pve1".into(),
            bridge: Some("proximity-lan".into()),
            template: Some("local:vztmpl/alpine-3.24-default_20260714_amd64.tar.xz".into()),
            template_storage: Some("local".into()),
            vmid: Some(9999),
            token: Some("root@pam!proximity-appliance".into()),
            ssh_key_line: Some("ssh-ed25519 AAAA proximity-appliance".into()),
            files_pushed: true,
            service_enabled: true,
            ..Default::default()
        };
        (o, r)
    }

    #[test]
    fn fresh_node_gets_everything_in_order() {
        let a = plan_install(&settings(), &fresh(), &InstallRecord::default()).unwrap();
        assert_eq!(
            a,
            vec![
                Action::CreateBridge {
                    iface: "proximity-lan".into()
                },
                Action::ApplyNetwork,
                Action::DownloadTemplate {
                    storage: "local".into(),
                    template: "alpine-3.24-default_20260714_amd64.tar.xz".into()
                },
                Action::CreateToken {
                    user: "root@pam".into(),
                    name: "proximity-appliance".into()
                },
                Action::AuthorizeKey,
                Action::CreateCt {
                    vmid: 9999,
                    ostemplate: "local:vztmpl/alpine-3.24-default_20260714_amd64.tar.xz".into()
                },
                Action::StartCt { vmid: 9999 },
                Action::PushFiles { vmid: 9999 },
                Action::EnableService { vmid: 9999 },
            ]
        );
    }

    #[test]
    fn installed_node_plans_nothing() {
        let (o, r) = installed();
        assert_eq!(plan_install(&settings(), &o, &r).unwrap(), vec![]);
    }

    #[test]
    fn partial_install_resumes_where_it_stopped() {
        // Bridge and template done, then the run died before the container was created.
        let (mut o, mut r) = installed();
        o.ct = None;
        o.token_exists = false;
        o.key_authorized = false;
        r.vmid = None;
        r.token = None;
        r.ssh_key_line = None;
        r.files_pushed = false;
        r.service_enabled = false;
        let a = plan_install(&settings(), &o, &r).unwrap();
        assert_eq!(
            a,
            vec![
                Action::CreateToken {
                    user: "root@pam".into(),
                    name: "proximity-appliance".into()
                },
                Action::AuthorizeKey,
                Action::CreateCt {
                    vmid: 9999,
                    ostemplate: "local:vztmpl/alpine-3.24-default_20260714_amd64.tar.xz".into()
                },
                Action::StartCt { vmid: 9999 },
                Action::PushFiles { vmid: 9999 },
                Action::EnableService { vmid: 9999 },
            ]
        );
        // Container created and started, files not yet pushed.
        let (mut o, mut r) = installed();
        r.files_pushed = false;
        r.service_enabled = false;
        o.ct = Some(CtSeen { running: false });
        assert_eq!(
            plan_install(&settings(), &o, &r).unwrap(),
            vec![
                Action::StartCt { vmid: 9999 },
                Action::PushFiles { vmid: 9999 },
                Action::EnableService { vmid: 9999 }
            ]
        );
        // Our bridge staged but never applied.
        let mut o = fresh();
        o.staged_ifaces = Some(vec!["eno1".into(), "vmbr0".into(), "proximity-lan".into()]);
        let r = InstallRecord {
            bridge: Some("proximity-lan".into()),
            ..Default::default()
        };
        assert_eq!(plan_install(&settings(), &o, &r).unwrap()[0], Action::ApplyNetwork);
    }

    #[test]
    fn existing_alpine_template_is_reused() {
        let mut o = fresh();
        o.templates = vec!["local:vztmpl/alpine-3.22-default_20250617_amd64.tar.xz".into()];
        let a = plan_install(&settings(), &o, &InstallRecord::default()).unwrap();
        assert!(!a.iter().any(|a| matches!(a, Action::DownloadTemplate { .. })));
        assert!(a.contains(&Action::CreateCt {
            vmid: 9999,
            ostemplate: "local:vztmpl/alpine-3.22-default_20250617_amd64.tar.xz".into()
        }));
    }

    #[test]
    fn foreign_things_in_the_way_fail_with_advice() {
        let mut o = fresh();
        o.pve_release = "7.4".into();
        assert_eq!(
            plan_install(&settings(), &o, &InstallRecord::default()),
            Err(PlanError::PveTooOld("7.4".into()))
        );
        let mut o = fresh();
        o.ct = Some(CtSeen { running: true });
        assert_eq!(
            plan_install(&settings(), &o, &InstallRecord::default()),
            Err(PlanError::VmidTaken(9999))
        );
        let mut o = fresh();
        o.token_exists = true;
        assert!(matches!(
            plan_install(&settings(), &o, &InstallRecord::default()),
            Err(PlanError::TokenTaken(..))
        ));
        let mut o = fresh();
        o.staged_ifaces = Some(vec!["eno1".into(), "vmbr0".into(), "vmbr1".into()]);
        assert_eq!(
            plan_install(&settings(), &o, &InstallRecord::default()),
            Err(PlanError::ForeignPendingNetwork)
        );
        let mut o = fresh();
        o.index.retain(|e| e.os != "alpine");
        assert_eq!(
            plan_install(&settings(), &o, &InstallRecord::default()),
            Err(PlanError::NoAlpineTemplate)
        );
    }

    #[test]
    fn uninstall_reverses_only_what_was_recorded() {
        let (o, r) = installed();
        assert_eq!(
            plan_uninstall(&r, &o).unwrap(),
            vec![
                Action::StopCt { vmid: 9999 },
                Action::DestroyCt { vmid: 9999 },
                Action::DeleteToken {
                    full_id: "root@pam!proximity-appliance".into()
                },
                Action::UnauthorizeKey,
                Action::DeleteBridge {
                    iface: "proximity-lan".into()
                },
                Action::ApplyNetwork,
                Action::DeleteTemplate {
                    volid: "local:vztmpl/alpine-3.24-default_20260714_amd64.tar.xz".into()
                },
            ]
        );
        // A template and a bridge that were already there are kept.
        let (o, mut r) = installed();
        r.template = None;
        r.bridge = None;
        let a = plan_uninstall(&r, &o).unwrap();
        assert!(
            !a.iter()
                .any(|a| matches!(a, Action::DeleteTemplate { .. } | Action::DeleteBridge { .. }))
        );
        // Nothing recorded: nothing to do.
        assert_eq!(plan_uninstall(&InstallRecord::default(), &o).unwrap(), vec![]);
        // Apps still on the bridge block its removal.
        let (mut o, r) = installed();
        o.bridge_users = vec![9999, 101];
        assert!(matches!(plan_uninstall(&r, &o), Err(PlanError::BridgeInUse { .. })));
    }

    #[test]
    fn newest_alpine_compares_releases_numerically() {
        assert_eq!(
            newest_alpine(&index()).unwrap().template,
            "alpine-3.24-default_20260714_amd64.tar.xz"
        );
        assert_eq!(pve_major("9.1"), Some(9));
        assert_eq!(pve_major("8"), Some(8));
        assert_eq!(pve_major("x"), None);
    }

    #[test]
    fn wan_and_net_values() {
        let mut s = settings();
        assert_eq!(s.net0(), "name=eth0,bridge=vmbr0,ip=dhcp,firewall=0");
        assert_eq!(s.net1(), "name=eth1,bridge=proximity-lan,ip=10.20.0.1/24,firewall=0");
        s.wan = Wan::parse(Some("192.168.1.50/24"), Some("192.168.1.1")).unwrap();
        assert_eq!(s.net0(), "name=eth0,bridge=vmbr0,ip=192.168.1.50/24,gw=192.168.1.1,firewall=0");
        assert!(Wan::parse(Some("192.168.1.50"), Some("192.168.1.1")).is_err());
        assert!(Wan::parse(Some("192.168.1.50/24"), None).is_err());
        assert!(Wan::parse(Some("192.168.1.50/40"), Some("192.168.1.1")).is_err());
    }
}
