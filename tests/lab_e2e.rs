//! The namespace lab, end to end (root): the whole product the way a user meets it, with
//! every part real and only the Proxmox node simulated.
//!
//! ```text
//!  wan ns (the user's LAN + "internet"): br0 192.168.77.1/24 (router), 203.0.113.10
//!  │   (fake internet host: HTTP :80 + resolver for *.example.test), 198.51.100.7
//!  │   (fake management host, HTTP :80; its network is in management_networks)
//!  ├── cli ns  eth0 192.168.77.50   (curl, dig, udhcpc: the user's machine)
//!  ├── pve ns  eth0 192.168.77.3    `proximity pve-sim --runtime netns` (API :8006, SSH :22),
//!  │           bridge proximity-lan; each running CT is a namespace on that bridge
//!  └── app ns  eth0 192.168.77.2    `proximity serve` (API :8443, DNS :53, proxy :80/:443)
//!              eth1 ── proximity-lan (10.20.0.1/24 set by the daemon; DHCP, NAT, isolation)
//! ```
//!
//! Over the REST API only (curl from the client namespace): set up the admin, log in,
//! deploy two catalog apps and wait for `running`; resolve `<app>.prox.local` through the
//! appliance DNS and fetch it over HTTPS through the proxy, trusting the CA downloaded from
//! the API; from inside an app container reach the fake internet through NAT but neither
//! the management host, the Proxmox API nor the management API; the WAN side gets no DHCP
//! answer and no recursion; deleting an app removes its DNS name, route and lease. Then
//! everything is torn down (also on failure, by `Drop`) and the test checks that no
//! namespace or link it or the simulator created is left.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, bin, is_root, skip};
use serde_json::{Value, json};

const WAN_GW: &str = "192.168.77.1";
const APPL_WAN: &str = "192.168.77.2";
const PVE_WAN: &str = "192.168.77.3";
const CLIENT: &str = "192.168.77.50";
const INET: &str = "203.0.113.10";
const MGMT: &str = "198.51.100.7";
const LAN_GW: &str = "10.20.0.1";
const API: &str = "192.168.77.2:8443";
const TEST: &str = "lab_e2e";

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn must(args: &[&str]) -> String {
    let o = sh(args);
    assert!(o.status.success(), "{args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Run argv inside namespace `ns` with a hard time limit.
fn in_ns(ns: &str, args: &[&str], secs: u64) -> Output {
    let s = secs.to_string();
    let mut full = vec!["timeout", "-k", "2", s.as_str(), "ip", "netns", "exec", ns];
    full.extend(args);
    sh(&full)
}

fn namespaces() -> BTreeSet<String> {
    must(&["ip", "netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn root_links() -> BTreeSet<String> {
    must(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect()
}

/// SIGTERM the child when the test thread dies without running `Drop` (the harness was
/// killed): the daemon then removes its nft table and the simulator its CT namespaces.
fn die_with_test(c: &mut Command) {
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Namespaces of an earlier run of this test that was killed before it could clean up
/// (`pxl-<role>-<pid>` with that PID gone): only their names are removed.
fn sweep_stale() {
    for ns in namespaces() {
        let Some(rest) = ns.strip_prefix("pxl-") else { continue };
        let Some((role, pid)) = rest.rsplit_once('-') else { continue };
        if ["wan", "pve", "app", "cli"].contains(&role)
            && pid.parse::<u32>().is_ok()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            eprintln!("{TEST}: removing namespace {ns} left by a killed earlier run");
            let _ = sh(&["ip", "netns", "del", &ns]);
        }
    }
}

fn have(tool: &str) -> bool {
    sh(&["sh", "-c", &format!("command -v {tool}")]).status.success()
}

/// Everything the lab created. `teardown` (also run by `Drop`, so on failure too) stops
/// only the processes it started, by PID, and deletes only namespaces it or the simulator
/// it started created.
struct Lab {
    pid: u32,
    dir: tempfile::TempDir,
    /// (label, process) in start order; stopped in reverse.
    procs: Vec<(String, Proc)>,
    /// Namespaces this test created.
    created: Vec<String>,
    /// Container namespaces of the simulator, as discovered.
    ct_ns: BTreeSet<String>,
    /// The simulator's namespace tag (`pxs<tag>-<vmid>`), once known.
    sim_tag: Option<String>,
    /// Namespaces that existed before the test (never touched).
    ns_before: BTreeSet<String>,
    torn_down: bool,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("pxl-{role}-{}", self.pid)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn add_ns(&mut self, role: &str) -> String {
        let ns = self.ns(role);
        must(&["ip", "netns", "add", &ns]);
        self.created.push(ns.clone());
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Build the namespaces and links (no processes yet).
    fn build(ns_before: BTreeSet<String>) -> Lab {
        let mut lab = Lab {
            pid: std::process::id(),
            dir: tempfile::tempdir().expect("temp dir"),
            procs: Vec::new(),
            created: Vec::new(),
            ct_ns: BTreeSet::new(),
            sim_tag: None,
            ns_before,
            torn_down: false,
        };
        let w = lab.add_ns("wan");
        let p = lab.add_ns("pve");
        let a = lab.add_ns("app");
        let c = lab.add_ns("cli");
        // Every link is created inside a namespace (never in the root one), so interface
        // names are local and cannot collide with other runs.
        must(&["ip", "-n", &w, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &w, "addr", "add", &format!("{WAN_GW}/24"), "dev", "br0"]);
        must(&["ip", "-n", &w, "link", "set", "br0", "up"]);
        must(&["ip", "-n", &w, "addr", "add", &format!("{INET}/32"), "dev", "lo"]);
        must(&["ip", "-n", &w, "addr", "add", &format!("{MGMT}/32"), "dev", "lo"]);
        for (ns, port, ip) in [(&a, "p-app", APPL_WAN), (&p, "p-pve", PVE_WAN), (&c, "p-cli", CLIENT)] {
            must(&[
                "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", &w,
            ]);
            must(&["ip", "-n", &w, "link", "set", port, "master", "br0", "up"]);
            must(&["ip", "-n", ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            must(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
            must(&["ip", "-n", ns, "route", "add", "default", "via", WAN_GW]);
        }
        // The Proxmox node's app bridge and the appliance's LAN leg on it (no address: the
        // daemon puts 10.20.0.1/24 there).
        must(&["ip", "-n", &p, "link", "add", "proximity-lan", "type", "bridge"]);
        must(&["ip", "-n", &p, "link", "set", "proximity-lan", "up"]);
        must(&[
            "ip", "-n", &a, "link", "add", "eth1", "type", "veth", "peer", "name", "p-appl", "netns", &p,
        ]);
        must(&["ip", "-n", &p, "link", "set", "p-appl", "master", "proximity-lan", "up"]);
        must(&["ip", "-n", &a, "link", "set", "eth1", "up"]);
        lab
    }

    /// Start `argv` inside `ns` (`ip netns exec` execs, so the PID is the program's).
    fn spawn_in(&mut self, label: &str, ns: &str, argv: &[&str]) -> usize {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(argv);
        die_with_test(&mut c);
        self.procs.push((label.to_string(), Proc::spawn(c)));
        self.procs.len() - 1
    }

    /// Start `argv` in `ns`'s network namespace only (same mount namespace as the test, so
    /// namespaces the program creates with `ip netns add` are visible to the test).
    fn spawn_net_only(&mut self, label: &str, ns: &str, argv: &[&str]) -> usize {
        use std::os::fd::AsRawFd as _;
        let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("namespace file");
        let fd = f.as_raw_fd();
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        die_with_test(&mut c);
        // SAFETY: setns is async-signal-safe; fd stays open until after spawn.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let p = Proc::spawn(c);
        drop(f);
        self.procs.push((label.to_string(), p));
        self.procs.len() - 1
    }

    fn proc(&mut self, i: usize) -> &mut Proc {
        &mut self.procs[i].1
    }

    fn wait_http(&self, ns: &str, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let o = in_ns(ns, &["curl", "-sS", "--max-time", "2", url], 5);
            if o.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "{url} never answered in {ns}: {}", text(&o));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop what we started and delete what we (or our simulator) created; returns problems.
    fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.torn_down {
            return problems;
        }
        self.torn_down = true;
        // Reverse start order: the daemon first (it removes its nft table), then the
        // simulator (it stops every CT and deletes their namespaces), then helpers.
        while let Some((label, mut p)) = self.procs.pop() {
            p.signal("TERM");
            if p.wait_exit(Duration::from_secs(15)).is_none() {
                problems.push(format!("{label} (pid {}) ignored SIGTERM for 15 s; killed", p.child.id()));
            }
            if std::thread::panicking() {
                let seen = p.drain();
                let tail = seen.len().saturating_sub(40);
                eprintln!("---- last output of {label} ----\n{}", seen[tail..].join("\n"));
            }
            drop(p);
        }
        // CT namespaces the simulator should have removed: only those we know are its (found
        // earlier, or new since the test began and wired to our pve namespace's bridge).
        let mut leftovers: BTreeSet<String> = self.ct_ns.clone();
        let pve_link = format!("link-netns {}", self.ns("pve"));
        for n in namespaces().difference(&self.ns_before) {
            let tagged = self.sim_tag.as_ref().is_some_and(|t| n.starts_with(&format!("pxs{t}-")));
            if tagged || (n.starts_with("pxs") && text(&sh(&["ip", "-n", n, "-o", "link", "show"])).contains(&pve_link)) {
                leftovers.insert(n.clone());
            }
        }
        for ns in leftovers {
            if namespaces().contains(&ns) {
                problems.push(format!("simulator left namespace {ns} behind"));
                for pid in String::from_utf8_lossy(&sh(&["ip", "netns", "pids", &ns]).stdout).split_whitespace() {
                    let _ = sh(&["kill", "-9", pid]);
                }
                let _ = sh(&["ip", "netns", "del", &ns]);
            }
        }
        for ns in self.created.iter().rev() {
            // Nothing of ours may still run there; the processes are gone by now.
            let o = sh(&["ip", "netns", "del", ns]);
            if !o.status.success() {
                problems.push(format!("ip netns del {ns}: {}", text(&o)));
            }
        }
        problems
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in self.teardown() {
            eprintln!("lab teardown: {p}");
        }
    }
}

/// The management API, spoken with curl from the client namespace.
struct Api {
    dir: PathBuf,
    ns: String,
    ca: PathBuf,
    token: Option<String>,
}

struct Reply {
    status: u16,
    headers: String,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let (hdr, out) = (self.dir.join("api.headers"), self.dir.join("api.body"));
        let _ = std::fs::remove_file(&hdr);
        let _ = std::fs::remove_file(&out);
        let url = if path == "/metrics" {
            format!("https://{API}/metrics")
        } else {
            format!("https://{API}/api/v1{path}")
        };
        let (ca, hdr_s, out_s) = (self.ca.display().to_string(), hdr.display().to_string(), out.display().to_string());
        let mut args = vec![
            "curl",
            "-sS",
            "--max-time",
            "30",
            "-X",
            method,
            "--cacert",
            &ca,
            "-D",
            &hdr_s,
            "-o",
            &out_s,
            "-w",
            "%{http_code}",
        ];
        let auth = self.token.as_ref().map(|t| format!("Authorization: Bearer {t}"));
        if let Some(a) = &auth {
            args.extend(["-H", a]);
        }
        let data = body.map(|b| b.to_string());
        if let Some(d) = &data {
            args.extend(["-H", "Content-Type: application/json", "--data-binary", d]);
        }
        args.push(&url);
        let o = in_ns(&self.ns, &args, 40);
        assert!(o.status.success(), "{method} {path}: curl failed: {}", text(&o));
        let status: u16 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0);
        let raw = std::fs::read_to_string(&out).unwrap_or_default();
        Reply {
            status,
            headers: std::fs::read_to_string(&hdr).unwrap_or_default(),
            body: serde_json::from_str(&raw).unwrap_or(Value::String(raw)),
        }
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>, want: u16) -> Reply {
        let r = self.call(method, path, body);
        assert_eq!(r.status, want, "{method} {path}: {:#}", r.body);
        r
    }

    /// Follow a job (its `Location`) until it succeeds; bounded.
    fn wait_job(&self, location: &str, what: &str, timeout: Duration) -> Value {
        let path = location.trim_start_matches("/api/v1").to_string();
        let deadline = Instant::now() + timeout;
        loop {
            let j = self.ok("GET", &path, None, 200).body;
            match j["state"].as_str().unwrap_or("") {
                "succeeded" => return j,
                "failed" | "cancelled" => panic!("{what}: job ended {}: {j:#}", j["state"]),
                _ => {}
            }
            assert!(Instant::now() < deadline, "{what}: job not done after {timeout:?}: {j:#}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let r = self.ok("GET", "/metrics", None, 200);
        let text = r.body.as_str().unwrap_or("").to_string();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }
}

fn dig(ns: &str, server: &str, args: &[&str]) -> String {
    let at = format!("@{server}");
    let mut a = vec!["dig", at.as_str(), "+time=2", "+tries=2"];
    a.extend(args);
    text(&in_ns(ns, &a, 15))
}

fn dig_short(ns: &str, server: &str, name: &str) -> String {
    dig(ns, server, &["+short", name]).trim().to_string()
}

fn curl(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut a = vec!["curl", "-sS", "--max-time", "4"];
    a.extend(args);
    let o = in_ns(ns, &a, 10);
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(text(&o))
    }
}

/// One deployed app as the API reports it.
#[derive(Debug, Clone)]
struct Deployed {
    id: String,
    hostname: String,
    service: String,
    mac: String,
    ip: String,
    vmid: u64,
}

#[test]
fn namespace_lab_end_to_end() {
    if !is_root() {
        return skip(TEST, "needs root (network namespaces, nftables); CI runs it as root");
    }
    for tool in ["ip", "curl", "dig", "dnsmasq", "busybox", "nft", "timeout"] {
        if !have(tool) {
            return skip(TEST, &format!("{tool} is not installed (make deps)"));
        }
    }
    let started = Instant::now();
    sweep_stale();
    let ns_before = namespaces();
    let links_before = root_links();

    let mut lab = Lab::build(ns_before.clone());
    let (w, p, a, c) = (lab.ns("wan"), lab.ns("pve"), lab.ns("app"), lab.ns("cli"));

    // The WAN side: the fake internet (web page + resolver for *.example.test) and the
    // fake management host.
    for (dir, page) in [("www-inet", "hello from the internet\n"), ("www-mgmt", "management host\n")] {
        std::fs::create_dir_all(lab.path(dir)).unwrap();
        std::fs::write(lab.path(dir).join("index.html"), page).unwrap();
    }
    let (inet_www, mgmt_www) = (
        lab.path("www-inet").display().to_string(),
        lab.path("www-mgmt").display().to_string(),
    );
    lab.spawn_in(
        "dnsmasq",
        &w,
        &[
            "dnsmasq",
            "-k",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--port=53",
            "--bind-interfaces",
            &format!("--listen-address={INET}"),
            &format!("--address=/example.test/{INET}"),
            "--pid-file=",
        ],
    );
    lab.spawn_in(
        "internet httpd",
        &w,
        &["busybox", "httpd", "-f", "-p", &format!("{INET}:80"), "-h", &inet_www],
    );
    lab.spawn_in(
        "management httpd",
        &w,
        &["busybox", "httpd", "-f", "-p", &format!("{MGMT}:80"), "-h", &mgmt_www],
    );
    lab.wait_http(&w, &format!("http://{INET}/"));
    lab.wait_http(&w, &format!("http://{MGMT}/"));
    // Positive controls from the client: both hosts are up and routable from the WAN side.
    assert_eq!(curl(&c, &[&format!("http://{MGMT}/")]).as_deref(), Ok("management host\n"));
    assert_eq!(dig_short(&c, INET, "www.example.test"), INET, "the upstream resolver works");

    // The Proxmox node: the simulator with the netns runtime, in the pve namespace.
    let sim_dir = lab.path("sim");
    std::fs::create_dir_all(&sim_dir).unwrap();
    let (root_pw, token_secret) = (format!("root-{}", lab.pid), format!("tok-{:x}", rand_u64()));
    let b = bin();
    let sim = lab.spawn_net_only(
        "pve-sim",
        &p,
        &[
            b.to_str().unwrap(),
            "pve-sim",
            "--listen",
            &format!("{PVE_WAN}:8006"),
            "--ssh-listen",
            &format!("{PVE_WAN}:22"),
            "--runtime",
            "netns",
            "--nodes",
            "2",
            "--root-password",
            &root_pw,
            "--token-secret",
            &token_secret,
            "--state-dir",
            sim_dir.to_str().unwrap(),
        ],
    );
    lab.proc(sim).wait_ready();
    // Positive control: the Proxmox API answers on the WAN side.
    let pve = curl(
        &c,
        &[
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("https://{PVE_WAN}:8006/api2/json/version"),
        ],
    );
    assert!(pve.is_ok(), "the Proxmox API is not reachable from the WAN side: {pve:?}");
    let fingerprint = lab
        .proc(sim)
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .expect("pve-sim prints its fingerprint")
        .trim()
        .to_string();

    // The appliance: config pointing at the node (token, pinned certificate, SSH), its SSH
    // key authorized on the node (as the installer does), then `proximity serve`.
    let cfg = lab.path("proximity.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[general]
data_dir = "{data}"
log_filter = "info,proximity=debug"
[network]
wan_interface = "eth0"
lan_interface = "eth1"
lan_address = "{LAN_GW}/24"
dhcp_range = ["10.20.0.100", "10.20.0.150"]
domain = "prox.local"
upstream_dns = ["{INET}:53"]
management_networks = ["198.51.100.0/24"]
manage_links = true
firewall = true
remove_firewall_on_exit = true
[dns]
listen = ["0.0.0.0:53"]
upstream_timeout_ms = 1000
[proxy]
http_listen = ["0.0.0.0:80"]
https_listen = ["0.0.0.0:443"]
health_check_secs = 1
[api]
listen = ["0.0.0.0:8443"]
[[pve_hosts]]
name = "pve"
url = "https://{PVE_WAN}:8006"
token_id = "root@pam!proximity"
token_secret = "{token_secret}"
fingerprint = "{fingerprint}"
ssh = "{PVE_WAN}:22"
ssh_user = "root"
bridge = "proximity-lan"
storage = "local-lvm"
"#,
            data = lab.path("data").display()
        ),
    )
    .unwrap();
    let key = must(&[b.to_str().unwrap(), "ssh-key", "--config", cfg.to_str().unwrap()]);
    assert!(key.starts_with("ssh-"), "proximity ssh-key printed {key:?}");
    std::fs::write(sim_dir.join("authorized_keys"), &key).unwrap();
    let daemon = lab.spawn_in(
        "proximity serve",
        &a,
        &[b.to_str().unwrap(), "serve", "--config", cfg.to_str().unwrap()],
    );
    lab.proc(daemon).wait_ready();

    // The user: downloads the CA (not yet trusted: -k, as the docs say), then trusts it.
    let ca = lab.path("ca.pem");
    let o = in_ns(
        &c,
        &[
            "curl",
            "-sS",
            "-k",
            "--max-time",
            "10",
            "-o",
            ca.to_str().unwrap(),
            &format!("https://{APPL_WAN}:8443/api/v1/network/ca.pem"),
        ],
        15,
    );
    assert!(o.status.success(), "download the CA: {}", text(&o));
    let pem = std::fs::read_to_string(&ca).unwrap_or_default();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "ca.pem: {pem}");
    std::fs::create_dir_all(lab.path("api")).unwrap();
    let mut api = Api {
        dir: lab.path("api"),
        ns: c.clone(),
        ca: ca.clone(),
        token: None,
    };
    let password = format!("lab-admin-{}", lab.pid);
    api.ok("POST", "/auth/setup", Some(json!({"username": "admin", "password": password})), 201);
    let login = api.ok("POST", "/auth/login", Some(json!({"username": "admin", "password": password})), 200);
    api.token = Some(login.body["access_token"].as_str().expect("access_token").to_string());
    assert_eq!(api.ok("GET", "/system/health", None, 200).body["status"], "ok");
    api.ok("POST", "/hosts/pve/sync", None, 200);

    // Deploy two catalog apps, follow their jobs, see them running.
    let mut apps = Vec::new();
    let mut jobs = Vec::new();
    for (catalog, hostname, service) in [("nginx", "site-01", "nginx"), ("whoami", "echo-01", "whoami")] {
        let r = api.ok("POST", "/apps", Some(json!({"catalog_id": catalog, "hostname": hostname})), 202);
        let loc = r
            .header("location")
            .unwrap_or_else(|| panic!("no Location for {hostname}: {}", r.headers));
        jobs.push((hostname, loc));
        apps.push((r.body["id"].as_str().expect("app id").to_string(), hostname, service));
    }
    for (hostname, loc) in &jobs {
        api.wait_job(loc, &format!("deploy {hostname}"), Duration::from_secs(240));
    }
    let apps: Vec<Deployed> = apps
        .into_iter()
        .map(|(id, hostname, service)| {
            let a = api.ok("GET", &format!("/apps/{id}"), None, 200).body;
            assert_eq!(a["status"], "running", "{a:#}");
            Deployed {
                id,
                hostname: hostname.to_string(),
                service: service.to_string(),
                mac: a["mac"].as_str().expect("mac").to_ascii_lowercase(),
                ip: a["ip"].as_str().expect("ip").to_string(),
                vmid: a["vmid"].as_u64().expect("vmid"),
            }
        })
        .collect();
    eprintln!("{TEST}: both apps running after {:?}: {apps:?}", started.elapsed());

    // Find each app's container namespace: new since the test began, named by the
    // simulator `pxs<tag>-<vmid>`, its eth0 carries the app's MAC and its peer sits in our
    // pve namespace (on proximity-lan).
    let mut ct_of = Vec::new();
    let pve_link = format!("link-netns {p}");
    for app in &apps {
        let suffix = format!("-{}", app.vmid);
        let found = namespaces()
            .difference(&ns_before)
            .filter(|n| n.starts_with("pxs") && n.ends_with(&suffix))
            .find(|n| {
                let eth0 = text(&sh(&["ip", "-n", n, "link", "show", "dev", "eth0"])).to_ascii_lowercase();
                eth0.contains(&app.mac) && eth0.contains(&pve_link)
            })
            .cloned()
            .unwrap_or_else(|| panic!("no container namespace for {} (vmid {}, mac {})", app.hostname, app.vmid, app.mac));
        lab.sim_tag = found.strip_prefix("pxs").and_then(|r| r.split('-').next()).map(str::to_string);
        lab.ct_ns.insert(found.clone());
        // The container got its reserved address from the appliance's DHCP server.
        let addr = text(&sh(&["ip", "-n", &found, "-4", "-o", "addr", "show", "dev", "eth0"]));
        assert!(addr.contains(&format!("inet {}/24", app.ip)), "{}: {addr}", app.hostname);
        ct_of.push(found);
    }

    // From the WAN client: the appliance DNS answers the app names with its WAN address,
    // and the proxy serves them over HTTPS with a certificate from the downloaded CA.
    for app in &apps {
        let name = format!("{}.prox.local", app.hostname);
        let ip = dig_short(&c, APPL_WAN, &name);
        assert_eq!(ip, APPL_WAN, "{name} from the WAN side");
        let url = format!("https://{name}/");
        let resolve = format!("{name}:443:{ip}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let body = loop {
            match curl(&c, &["--cacert", ca.to_str().unwrap(), "--resolve", &resolve, &url]) {
                Ok(b) if b.contains("data-service") => break b,
                other => {
                    assert!(Instant::now() < deadline, "{url} through the proxy: {other:?}");
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        };
        assert!(
            body.contains(&format!("data-service=\"{}\"", app.service)) && body.contains(&format!("data-hostname=\"{}\"", app.hostname)),
            "{url} served another app: {body}"
        );
        // Plain HTTP answers too (a redirect to HTTPS or the page); never the wrong app.
        let plain = curl(
            &c,
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--resolve",
                &format!("{name}:80:{ip}"),
                &format!("http://{name}/"),
            ],
        );
        assert!(
            matches!(plain.as_deref(), Ok("200" | "301" | "302" | "307" | "308")),
            "http://{name}/: {plain:?}"
        );
    }

    // The WAN side gets no recursion (the local zone only) and no DHCP answer.
    let refused = dig(&c, APPL_WAN, &["www.example.test"]);
    assert!(refused.contains("status: REFUSED"), "open resolver on the WAN side:\n{refused}");
    let o = in_ns(
        &c,
        &[
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-f",
            "-t",
            "2",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ],
        15,
    );
    assert!(!text(&o).contains("lease of"), "the WAN side got a DHCP lease: {}", text(&o));

    // Inside an app container: upstream names resolve through the appliance, the internet
    // answers through NAT (the wan namespace has no route back to 10.20.0.0/24, so only a
    // masqueraded connection can get a reply), but the management host, the Proxmox API and
    // the management API (LAN and WAN addresses) are out of reach.
    let ct = &ct_of[0];
    let routes = must(&["ip", "-n", &w, "route", "show"]);
    assert!(!routes.contains("10.20.0."), "wan namespace must not route the LAN: {routes}");
    assert_eq!(dig_short(ct, LAN_GW, "www.example.test"), INET, "LAN clients get recursion");
    assert_eq!(dig_short(ct, LAN_GW, &format!("{}.prox.local", apps[1].hostname)), LAN_GW);
    assert_eq!(
        curl(ct, &[&format!("http://{INET}/")]).as_deref(),
        Ok("hello from the internet\n"),
        "internet through NAT"
    );
    for (what, url) in [
        ("the management host", format!("http://{MGMT}/")),
        ("the Proxmox API", format!("https://{PVE_WAN}:8006/")),
        (
            "the management API on the WAN address",
            format!("https://{APPL_WAN}:8443/api/v1/system/health"),
        ),
        (
            "the management API on the LAN address",
            format!("https://{LAN_GW}:8443/api/v1/system/health"),
        ),
    ] {
        let r = curl(ct, &["-k", "--max-time", "3", &url]);
        assert!(r.is_err(), "an app container reached {what} ({url}): {r:?}");
    }

    // Delete the second app: its DNS name, proxy route and lease disappear.
    let gone = &apps[1];
    let name = format!("{}.prox.local", gone.hostname);
    let has_route = |api: &Api| {
        api.ok("GET", "/network/routes", None, 200)
            .body
            .as_array()
            .expect("routes")
            .iter()
            .any(|r| r["host"].as_str().is_some_and(|h| h.starts_with(&gone.hostname)))
    };
    let has_lease = |api: &Api| {
        api.ok("GET", "/network/leases", None, 200)
            .body
            .as_array()
            .expect("leases")
            .iter()
            .any(|l| l["mac"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(&gone.mac)) || l["ip"] == gone.ip.as_str())
    };
    assert!(has_route(&api) && has_lease(&api), "before delete the plan holds {name}");
    let leases = api.ok("GET", "/network/leases", None, 200).body;
    let bound = leases
        .as_array()
        .expect("leases")
        .iter()
        .find(|l| l["mac"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(&gone.mac)));
    assert!(
        bound.is_some_and(|l| l["kind"] == "reserved" && l["expires_at"].is_string()),
        "{name}'s container holds a bound lease on its reservation: {leases:#}"
    );
    let leases_before = api.metric("proximity_dhcp_leases").expect("proximity_dhcp_leases gauge");
    let r = api.ok("DELETE", &format!("/apps/{}", gone.id), None, 202);
    let loc = r.header("location").expect("Location of the delete job");
    api.wait_job(&loc, "delete", Duration::from_secs(120));
    api.ok("GET", &format!("/apps/{}", gone.id), None, 404);
    assert!(!has_route(&api), "route of {name} still there");
    assert!(!has_lease(&api), "reservation of {name} still there");
    let leases_after = api.metric("proximity_dhcp_leases").expect("proximity_dhcp_leases gauge");
    assert_eq!(leases_after, leases_before - 1.0, "the bound DHCP lease of {name} was not released");
    for (ns, server) in [(&c, APPL_WAN), (ct, LAN_GW)] {
        let out = dig(ns, server, &[&name]);
        assert!(out.contains("status: NXDOMAIN"), "{name} still resolves from {ns}:\n{out}");
        let out = dig(ns, server, &["-x", &gone.ip]);
        assert!(!out.contains(&name), "PTR of {} still names {name} from {ns}:\n{out}", gone.ip);
    }
    let r = curl(
        &c,
        &[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &format!("{name}:443:{APPL_WAN}"),
            &format!("https://{name}/"),
        ],
    );
    assert!(
        !r.as_ref().is_ok_and(|b| b.contains("data-service")),
        "the proxy still serves {name}: {r:?}"
    );
    assert!(
        !namespaces().contains(&ct_of[1]),
        "the deleted app's container namespace is still there"
    );
    // The first app is untouched.
    assert_eq!(dig_short(&c, APPL_WAN, &format!("{}.prox.local", apps[0].hostname)), APPL_WAN);

    // Tear down and check that nothing is left behind.
    drop(api);
    let problems = lab.teardown();
    assert!(problems.is_empty(), "teardown problems: {problems:#?}");
    let left: Vec<String> = namespaces()
        .difference(&ns_before)
        .filter(|n| {
            n.ends_with(&format!("-{}", lab.pid))
                || lab.ct_ns.contains(*n)
                || lab.sim_tag.as_ref().is_some_and(|t| n.starts_with(&format!("pxs{t}-")))
        })
        .cloned()
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let new_links: Vec<String> = root_links().difference(&links_before).cloned().collect();
    let ours: Vec<&String> = new_links
        .iter()
        .filter(|l| {
            l.starts_with("p-") || lab.sim_tag.as_ref().is_some_and(|t| l.starts_with(&format!("vp{t}"))) || l.as_str() == "proximity-lan"
        })
        .collect();
    assert!(ours.is_empty(), "links left in the root namespace: {ours:?}");
    eprintln!("{TEST}: passed in {:?}", started.elapsed());
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// `proximity ssh-key` (no root needed): the key is created once, sealed in the store, and
/// printed the same on every run; a missing config file is a clear error.
#[test]
fn ssh_key_is_created_once_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_api_only_config(dir.path(), common::free_port());
    let run = || {
        let o = Command::new(bin()).args(["ssh-key", "--config"]).arg(&cfg).output().unwrap();
        assert!(o.status.success(), "ssh-key failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let first = run();
    assert!(first.starts_with("ssh-ed25519 ") && first.lines().count() == 1, "{first:?}");
    assert_eq!(run(), first, "the key changed between runs");
    let o = Command::new(bin())
        .args(["ssh-key", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "a missing config must fail");
    assert!(text(&o).contains("missing.toml"), "the error names the file: {}", text(&o));
}
