//! Pure allocation decisions: reserved addresses, public ports, placement and VMIDs.
//!
//! **Architecture invariant:** no I/O; callers gather what is taken (registry, DHCP leases,
//! Proxmox) inside one store transaction and apply the decision there.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

/// The first free address of the inclusive `pool`, skipping `taken` and the gateway.
/// Addresses are handed out from the top of the pool down so reservations and dynamic
/// leases (handed out from the bottom) meet as late as possible.
pub fn pick_ip(pool: (Ipv4Addr, Ipv4Addr), gateway: Ipv4Addr, taken: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let (lo, hi) = (u32::from(pool.0), u32::from(pool.1));
    (lo..=hi).rev().map(Ipv4Addr::from).find(|ip| *ip != gateway && !taken.contains(ip))
}

/// `n` free public ports from the inclusive `range`, lowest first.
pub fn pick_ports(range: (u16, u16), taken: &HashSet<u16>, n: usize) -> Option<Vec<u16>> {
    let v: Vec<u16> = (range.0..=range.1).filter(|p| !taken.contains(p)).take(n).collect();
    (v.len() == n).then_some(v)
}

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLoad {
    /// Host name.
    pub host: String,
    /// Node name.
    pub node: String,
    /// Online.
    pub online: bool,
    /// Free memory reported by Proxmox, bytes.
    pub free: u64,
    /// Memory promised to apps placed there whose containers do not exist yet, bytes.
    pub pending: u64,
}

/// Pick a node: the requested one (must be online), else the online node with the most
/// memory left after pending placements; `need` bytes must fit.
pub fn place(nodes: &[NodeLoad], requested: Option<&str>, need: u64) -> Result<(String, String), String> {
    if let Some(want) = requested {
        let n = nodes
            .iter()
            .find(|n| n.node == want)
            .ok_or_else(|| format!("node `{want}` is not known; sync the Proxmox hosts or choose another node"))?;
        if !n.online {
            return Err(format!("node `{want}` is offline"));
        }
        return Ok((n.host.clone(), n.node.clone()));
    }
    let best = nodes
        .iter()
        .filter(|n| n.online)
        .map(|n| (n, n.free.saturating_sub(n.pending)))
        .filter(|(_, left)| *left >= need)
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.node.cmp(&a.0.node)));
    match best {
        Some((n, _)) => Ok((n.host.clone(), n.node.clone())),
        None if nodes.iter().any(|n| n.online) => Err(format!(
            "no online node has {} MiB of memory free for this app",
            need / (1024 * 1024)
        )),
        None => Err("no online Proxmox node is available".into()),
    }
}

/// The VMID to use: Proxmox's next free id, moved past ids already promised to other apps
/// in the registry (their containers may not exist yet).
pub fn pick_vmid(next_free: u32, promised: &BTreeSet<u32>) -> u32 {
    let mut v = next_free.max(100);
    while promised.contains(&v) {
        v += 1;
    }
    v
}

/// Newest Alpine template from an `aplinfo` list (by the version in the file name, e.g.
/// `alpine-3.22-default_20250617_amd64.tar.xz` beats `alpine-3.9-...`).
pub fn newest_alpine<'a>(templates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    fn key(t: &str) -> (Vec<u32>, String) {
        let ver = t.strip_prefix("alpine-").unwrap_or("").split('-').next().unwrap_or("");
        (ver.split('.').map(|p| p.parse().unwrap_or(0)).collect(), t.to_string())
    }
    templates.into_iter().filter(|t| t.starts_with("alpine-")).max_by_key(|t| key(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_skip_taken_and_gateway() {
        let pool = (Ipv4Addr::new(10, 20, 0, 100), Ipv4Addr::new(10, 20, 0, 102));
        let gw = Ipv4Addr::new(10, 20, 0, 1);
        let mut taken = HashSet::new();
        assert_eq!(pick_ip(pool, gw, &taken), Some(Ipv4Addr::new(10, 20, 0, 102)));
        taken.insert(Ipv4Addr::new(10, 20, 0, 102));
        taken.insert(Ipv4Addr::new(10, 20, 0, 101));
        assert_eq!(pick_ip(pool, gw, &taken), Some(Ipv4Addr::new(10, 20, 0, 100)));
        taken.insert(Ipv4Addr::new(10, 20, 0, 100));
        assert_eq!(pick_ip(pool, gw, &taken), None);
    }

    #[test]
    fn ports() {
        let taken: HashSet<u16> = [30000, 30002].into();
        assert_eq!(pick_ports((30000, 30005), &taken, 2), Some(vec![30001, 30003]));
        assert_eq!(pick_ports((30000, 30002), &taken, 2), None);
        assert_eq!(pick_ports((30000, 30002), &taken, 0), Some(vec![]));
    }

    fn n(node: &str, online: bool, free_mb: u64, pending_mb: u64) -> NodeLoad {
        NodeLoad {
            host: "h".into(),
            node: node.into(),
            online,
            free: free_mb << 20,
            pending: pending_mb << 20,
        }
    }

    #[test]
    fn placement_by_free_memory_minus_pending() {
        let nodes = [n("pve1", true, 4000, 0), n("pve2", true, 6000, 3000), n("pve3", false, 9000, 0)];
        assert_eq!(place(&nodes, None, 512 << 20).unwrap().1, "pve1");
        assert_eq!(place(&nodes, Some("pve2"), 512 << 20).unwrap().1, "pve2");
        assert!(place(&nodes, Some("pve3"), 0).unwrap_err().contains("offline"));
        assert!(place(&nodes, Some("pve9"), 0).unwrap_err().contains("not known"));
        assert!(place(&nodes, None, 5000 << 20).unwrap_err().contains("MiB"));
        assert!(place(&[n("a", false, 1, 0)], None, 0).unwrap_err().contains("no online"));
    }

    #[test]
    fn vmids_and_templates() {
        assert_eq!(pick_vmid(100, &[100, 101, 103].into()), 102);
        assert_eq!(pick_vmid(5, &BTreeSet::new()), 100);
        let t = [
            "debian-12-standard_12.7-1_amd64.tar.zst",
            "alpine-3.9-default_2019_amd64.tar.xz",
            "alpine-3.22-default_20250617_amd64.tar.xz",
            "alpine-3.21-default_20241217_amd64.tar.xz",
        ];
        assert_eq!(newest_alpine(t), Some("alpine-3.22-default_20250617_amd64.tar.xz"));
        assert_eq!(newest_alpine(["debian-12"]), None);
    }
}
