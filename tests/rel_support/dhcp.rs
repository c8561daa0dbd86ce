//! DHCP namespace lab of the reliability tests (root): the appliance namespace with `lan0`,
//! a client namespace with one macvlan per simulated client on the veth peer, busybox
//! udhcpc as the client.
#![allow(dead_code)]

use super::{Proc, bin, free_port};

/// True when busybox udhcpc is installed.
pub fn have_udhcpc() -> bool {
    !sh(&["sh", "-c", "command -v udhcpc"]).stdout.is_empty()
}

/// Network namespaces for DHCP tests: `a` (the appliance, `lan0`) and `c` (clients:
/// macvlans with their own MACs on the veth peer `up0`). Removed on drop.
pub struct DhcpLab {
    tag: String,
    /// Temp dir with the config and data.
    pub dir: tempfile::TempDir,
}

/// Run a command, capturing its output.
pub fn sh(args: &[&str]) -> std::process::Output {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("spawn")
}

/// Run a command that must succeed.
pub fn must(args: &[&str]) {
    let o = sh(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

impl DhcpLab {
    /// Namespace name of `role`.
    pub fn ns(&self, role: &str) -> String {
        format!("pxr{role}{}", self.tag)
    }

    /// Create the namespaces and `clients` macvlans `m0..` (MACs 02:77:00:00:00:<i>).
    pub fn new(clients: usize) -> DhcpLab {
        let lab = DhcpLab {
            tag: format!("{:x}", std::process::id()),
            dir: tempfile::tempdir().unwrap(),
        };
        let (a, c) = (lab.ns("a"), lab.ns("c"));
        for ns in [&a, &c] {
            let _ = sh(&["ip", "netns", "del", ns]);
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        must(&[
            "ip", "-n", &a, "link", "add", "lan0", "type", "veth", "peer", "name", "up0", "netns", &c,
        ]);
        must(&["ip", "-n", &c, "link", "set", "up0", "up"]);
        for i in 0..clients {
            let m = format!("m{i}");
            let mac = format!("02:77:00:00:00:{i:02x}");
            must(&[
                "ip", "-n", &c, "link", "add", &m, "link", "up0", "address", &mac, "type", "macvlan", "mode", "bridge",
            ]);
            must(&["ip", "-n", &c, "link", "set", &m, "up"]);
        }
        lab
    }

    /// Write the daemon config: pool 10.20.0.100 … `pool_last`; `dhcp_extra` is appended
    /// to the `[dhcp]` table.
    pub fn config(&self, pool_last: &str, dhcp_extra: &str) -> std::path::PathBuf {
        let text = format!(
            r#"[general]
data_dir = "{data}"
[network]
wan_interface = "lo"
lan_interface = "lan0"
lan_address = "10.20.0.1/24"
dhcp_range = ["10.20.0.100", "{pool_last}"]
upstream_dns = []
manage_links = true
firewall = false
wan_address = "192.0.2.1"
[dhcp]
lease_secs = 600
{dhcp_extra}
[dns]
enabled = false
[proxy]
enabled = false
[api]
tls = false
listen = ["127.0.0.1:{port}"]
"#,
            data = self.dir.path().join("data").display(),
            port = free_port(),
        );
        let p = self.dir.path().join("proximity.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Start `serve` inside the appliance namespace.
    pub fn daemon(&self, cfg: &std::path::Path) -> Proc {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.ns("a")])
            .arg(bin())
            .args(["serve", "--config"])
            .arg(cfg);
        let mut p = Proc::spawn(c);
        p.wait_ready();
        p
    }

    /// The data directory.
    pub fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// One busybox udhcpc cycle on macvlan `m<i>`; the address leased.
    pub fn lease(ns: &str, i: usize) -> Option<std::net::Ipv4Addr> {
        let m = format!("m{i}");
        let o = sh(&[
            "timeout",
            "-k",
            "2",
            "12",
            "ip",
            "netns",
            "exec",
            ns,
            "udhcpc",
            "-i",
            &m,
            "-n",
            "-q",
            "-f",
            "-t",
            "3",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ]);
        let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        out.lines().find_map(|l| {
            l.split("lease of ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|ip| ip.parse().ok())
        })
    }
}

impl Drop for DhcpLab {
    fn drop(&mut self) {
        for r in ["c", "a"] {
            let _ = sh(&["ip", "netns", "del", &self.ns(r)]);
        }
    }
}
