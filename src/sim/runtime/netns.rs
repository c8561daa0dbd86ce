//! Network-namespace runtime (root): each running CT is a namespace `pxs<tag>-<vmid>` with a
//! veth whose host end joins the Linux bridge named by `net0`'s `bridge=` (created, and later
//! removed, if missing) and whose CT end is `eth0` with the MAC from `hwaddr=`. `ip=dhcp` runs
//! busybox `udhcpc` inside the namespace; a static `ip=` CIDR (and `gw=`) is configured
//! directly. App servers bind inside the namespace from a short-lived thread that `setns`es
//! into it. Stop and shutdown kill the namespace's processes and delete namespaces and the
//! bridges this runtime created.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use super::{CtRuntime, CtSpec, bind_reuse};

/// The netns runtime.
pub struct Netns {
    core: std::sync::Arc<Core>,
}

struct Core {
    tag: String,
    script: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// vmid → namespace name.
    namespaces: BTreeMap<u32, String>,
    /// Bridges we created.
    bridges: BTreeSet<String>,
    counter: u32,
}

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# udhcpc event script of proximity pve-sim
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then
      set -- $router
      ip route replace default via "$1" dev "$interface"
    fi
    ;;
esac
exit 0
"#;

/// Run a command, returning its stdout or an error with stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Netns {
    /// Create the runtime (needs root and the `ip` tool).
    pub fn new(state_dir: &Path) -> anyhow::Result<Netns> {
        if unsafe { libc::geteuid() } != 0 {
            anyhow::bail!("the netns runtime needs root (use --runtime loopback otherwise)");
        }
        run("ip", &["-V"]).map_err(|e| anyhow::anyhow!("the netns runtime needs iproute2: {e}"))?;
        let script = state_dir.join("udhcpc.script");
        std::fs::write(&script, UDHCPC_SCRIPT)?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        let tag = format!("{:04x}", rand::random::<u16>());
        Ok(Netns {
            core: std::sync::Arc::new(Core {
                tag,
                script,
                inner: Mutex::new(Inner::default()),
            }),
        })
    }

    /// Namespace name of a CT.
    pub fn ns_name(&self, vmid: u32) -> String {
        self.core.ns_name(vmid)
    }
}

impl Core {
    fn ns_name(&self, vmid: u32) -> String {
        format!("pxs{}-{vmid}", self.tag)
    }

    fn start_sync(&self, spec: &CtSpec) -> Result<Option<String>, String> {
        let ns = self.ns_name(spec.vmid);
        let bridge = spec.net0.get("bridge").cloned().unwrap_or_else(|| "vmbr0".into());
        if bridge.len() > 15 {
            return Err(format!("bridge name '{bridge}' too long"));
        }
        let host_if = {
            let mut inner = self.inner.lock().expect("netns");
            inner.counter += 1;
            format!("vp{}{}", self.tag, inner.counter)
        };
        if !link_exists(&bridge) {
            run("ip", &["link", "add", "name", &bridge, "type", "bridge"])?;
            self.inner.lock().expect("netns").bridges.insert(bridge.clone());
        }
        run("ip", &["link", "set", &bridge, "up"])?;
        // Leftover from a crashed run of this runtime instance: remove first.
        let _ = run("ip", &["netns", "del", &ns]);
        run("ip", &["netns", "add", &ns])?;
        self.inner.lock().expect("netns").namespaces.insert(spec.vmid, ns.clone());
        let setup = || -> Result<Option<String>, String> {
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &["link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns],
            )?;
            if let Some(mac) = spec.net0.get("hwaddr") {
                run("ip", &["-n", &ns, "link", "set", "eth0", "address", mac])?;
            }
            if let Some(mtu) = spec.net0.get("mtu") {
                run("ip", &["-n", &ns, "link", "set", "eth0", "mtu", mtu])?;
            }
            run("ip", &["link", "set", &host_if, "master", &bridge])?;
            run("ip", &["link", "set", &host_if, "up"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            let _ = std::fs::write(spec.root.join("etc/hostname"), format!("{}\n", spec.hostname));
            match spec.net0.get("ip").map(String::as_str) {
                Some("dhcp") => {
                    let (prog, mut args) = if Path::new("/usr/bin/busybox").exists() || Path::new("/bin/busybox").exists() {
                        ("busybox", vec!["udhcpc"])
                    } else {
                        ("udhcpc", vec![])
                    };
                    let script = self.script.to_string_lossy().into_owned();
                    let host = format!("hostname:{}", spec.hostname);
                    args.extend(["-i", "eth0", "-f", "-q", "-n", "-t", "8", "-T", "1", "-s", &script, "-x", &host]);
                    let mut full = vec!["netns", "exec", &ns, prog];
                    full.extend(args.iter().copied());
                    run("ip", &full).map_err(|e| format!("DHCP failed on eth0: {e}"))?;
                }
                Some("manual") | None => {}
                Some(cidr) => {
                    run("ip", &["-n", &ns, "addr", "add", cidr, "dev", "eth0"])?;
                    if let Some(gw) = spec.net0.get("gw") {
                        run("ip", &["-n", &ns, "route", "add", "default", "via", gw])?;
                    }
                }
            }
            let out = run("ip", &["-n", &ns, "-4", "-o", "addr", "show", "dev", "eth0"])?;
            Ok(out.split_whitespace().skip_while(|w| *w != "inet").nth(1).map(str::to_string))
        };
        match setup() {
            Ok(ip) => Ok(ip),
            Err(e) => {
                let _ = self.stop_sync(spec.vmid);
                Err(e)
            }
        }
    }

    fn stop_sync(&self, vmid: u32) -> Result<(), String> {
        let ns = self.inner.lock().expect("netns").namespaces.remove(&vmid);
        match ns {
            Some(ns) => remove_ns(&ns),
            None => Ok(()),
        }
    }

    fn cleanup_sync(&self) -> Vec<String> {
        let (nss, bridges) = {
            let mut inner = self.inner.lock().expect("netns");
            (std::mem::take(&mut inner.namespaces), std::mem::take(&mut inner.bridges))
        };
        let mut errors = Vec::new();
        for ns in nss.values() {
            if let Err(e) = remove_ns(ns) {
                errors.push(e);
            }
        }
        for br in bridges {
            if let Err(e) = run("ip", &["link", "del", &br]) {
                errors.push(e);
            }
        }
        errors
    }
}

/// Kill the processes in a namespace (they are ours: we created it) and delete it.
fn remove_ns(ns: &str) -> Result<(), String> {
    for _ in 0..20 {
        let pids = run("ip", &["netns", "pids", ns]).unwrap_or_default();
        let pids: Vec<i32> = pids.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    run("ip", &["netns", "del", ns]).map(|_| ())
}

/// Bind a TCP listener inside a named network namespace.
pub fn bind_in_ns(ns: &str, addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    let path = format!("/run/netns/{ns}");
    // A fresh thread: setns changes the calling thread only, and this one then ends.
    std::thread::spawn(move || -> Result<std::net::TcpListener, String> {
        use std::os::fd::AsRawFd as _;
        let f = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        bind_reuse(addr).map_err(|e| format!("Bind for {addr} failed: {e}"))
    })
    .join()
    .map_err(|_| "bind thread panicked".to_string())?
}

#[async_trait::async_trait]
impl CtRuntime for Netns {
    fn name(&self) -> &'static str {
        "netns"
    }

    async fn start(&self, spec: &CtSpec) -> Result<Option<String>, String> {
        let (core, spec) = (self.core.clone(), spec.clone());
        tokio::task::spawn_blocking(move || core.start_sync(&spec))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn stop(&self, vmid: u32) -> Result<(), String> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || core.stop_sync(vmid))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn listen(&self, vmid: u32, _loop_ip: Ipv4Addr, port: u16) -> Result<std::net::TcpListener, String> {
        let ns = self
            .core
            .inner
            .lock()
            .expect("netns")
            .namespaces
            .get(&vmid)
            .cloned()
            .ok_or_else(|| format!("CT {vmid} not running"))?;
        tokio::task::spawn_blocking(move || bind_in_ns(&ns, SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))))
            .await
            .map_err(|e| e.to_string())?
    }

    fn command_in(&self, vmid: u32, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns_name(vmid)]).args(argv);
        c
    }

    async fn shutdown(&self) -> Vec<String> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || core.cleanup_sync())
            .await
            .unwrap_or_else(|e| vec![e.to_string()])
    }

    fn shutdown_blocking(&self) {
        for e in self.core.cleanup_sync() {
            tracing::warn!(error = %e, "pve-sim netns cleanup");
        }
    }
}
