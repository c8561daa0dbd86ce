//! The network-plane lab: real `proximity serve` in an `appliance` namespace between a `wan`
//! namespace (fake internet host, fake management host, dnsmasq as the upstream resolver)
//! and `ct-*` namespaces on a bridge standing for proximity-lan. Real clients: busybox
//! udhcpc, ISC dhclient, dig, curl; real nftables. Needs root; prints SKIPPED otherwise.
//!
//! Test-only seeding: the app record `web-app` (reserved MAC 02:50:58:00:00:65 →
//! 10.20.0.101, web port 8080, forward 30080 → 8080) is written into the redb file with the
//! library's store API before the daemon starts.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, bin, is_root, skip};
use proximity::registry::{APPS, App, AppStatus, PortForward, Proto, Resources};
use proximity::store::Store;

const RES_MAC: &str = "02:50:58:00:00:65";
const WAN_APPL: &str = "172.31.7.2";
const WAN_HOST: &str = "172.31.7.1";
const NET_HOST: &str = "198.18.0.10";

/// Record a security check that held (the test asserts first) in
/// `target/reliability/lab.jsonl` for tests/RELIABILITY.md.
fn held(name: &str, detail: &str) {
    use std::io::Write as _;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/reliability");
    let _ = std::fs::create_dir_all(&dir);
    let line = serde_json::json!({"kind": "check", "name": name, "passed": true, "detail": detail,
        "ts": proximity::sim::now(), "test": "net_lab"});
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("lab.jsonl")) {
        let _ = writeln!(f, "{line}");
    }
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().expect("spawn")
}

fn must(args: &[&str]) {
    let o = sh(args);
    assert!(o.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// Run argv inside namespace `ns`, with a hard time limit.
fn in_ns(ns: &str, args: &[&str], secs: u64) -> Output {
    let mut full = vec!["timeout", "-k", "2"];
    let s = secs.to_string();
    full.push(&s);
    full.extend(["ip", "netns", "exec", ns]);
    full.extend(args);
    sh(&full)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Everything the lab created; removed on drop (also when a test fails).
struct Lab {
    tag: String,
    dir: tempfile::TempDir,
    procs: Vec<Proc>,
    pidfiles: Vec<PathBuf>,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("px{role}{}", self.tag)
    }

    fn new() -> Lab {
        let tag = format!("{:x}", std::process::id());
        let lab = Lab {
            tag,
            dir: tempfile::tempdir().unwrap(),
            procs: Vec::new(),
            pidfiles: Vec::new(),
        };
        let (w, a, b) = (lab.ns("w"), lab.ns("a"), lab.ns("b"));
        for ns in [&w, &a, &b, &lab.ns("c1"), &lab.ns("c2"), &lab.ns("c3")] {
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // WAN: appliance wan0 <-> wan up0.
        must(&[
            "ip", "-n", &a, "link", "add", "wan0", "type", "veth", "peer", "name", "up0", "netns", &w,
        ]);
        must(&["ip", "-n", &a, "addr", "add", &format!("{WAN_APPL}/24"), "dev", "wan0"]);
        must(&["ip", "-n", &a, "link", "set", "wan0", "up"]);
        must(&["ip", "-n", &a, "route", "add", "default", "via", WAN_HOST]);
        must(&["ip", "-n", &w, "addr", "add", &format!("{WAN_HOST}/24"), "dev", "up0"]);
        must(&["ip", "-n", &w, "addr", "add", &format!("{NET_HOST}/24"), "dev", "up0"]);
        must(&["ip", "-n", &w, "link", "set", "up0", "up"]);
        // LAN: bridge in its own namespace; appliance lan0 (no address: the daemon adds it).
        must(&["ip", "-n", &b, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &b, "link", "set", "br0", "up"]);
        must(&[
            "ip", "-n", &a, "link", "add", "lan0", "type", "veth", "peer", "name", "pa", "netns", &b,
        ]);
        must(&["ip", "-n", &b, "link", "set", "pa", "master", "br0", "up"]);
        for (i, mac) in [(1, RES_MAC), (2, "02:11:22:33:44:02"), (3, "02:11:22:33:44:03")] {
            let ct = lab.ns(&format!("c{i}"));
            let port = format!("p{i}");
            must(&[
                "ip", "-n", &ct, "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name", &port, "netns", &b,
            ]);
            must(&["ip", "-n", &b, "link", "set", &port, "master", "br0", "up"]);
            must(&["ip", "-n", &ct, "link", "set", "eth0", "up"]);
        }
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn_in(&mut self, ns: &str, args: &[&str]) -> usize {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        self.procs.push(Proc::spawn(c));
        self.procs.len() - 1
    }

    fn write_config(&self, api_port: u16) -> PathBuf {
        let text = format!(
            r#"[general]
data_dir = "{data}"
log_filter = "info,proximity=debug"
[network]
wan_interface = "wan0"
lan_interface = "lan0"
lan_address = "10.20.0.1/24"
dhcp_range = ["10.20.0.100", "10.20.0.150"]
upstream_dns = ["{WAN_HOST}:53"]
management_networks = []
manage_links = true
firewall = true
remove_firewall_on_exit = true
[dhcp]
lease_secs = 600
[dns]
listen = ["0.0.0.0:53"]
upstream_timeout_ms = 1000
[proxy]
enabled = false
[api]
tls = false
listen = ["127.0.0.1:{api_port}"]
"#,
            data = self.path("data").display()
        );
        let p = self.path("proximity.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn start_daemon(&mut self, config: &Path) -> usize {
        let a = self.ns("a");
        let b = bin();
        let i = self.spawn_in(&a, &[b.to_str().unwrap(), "serve", "--config", config.to_str().unwrap()]);
        self.procs[i].wait_ready();
        i
    }

    fn stop(&mut self, i: usize) {
        self.procs[i].signal("TERM");
        assert!(
            self.procs[i].wait_exit(Duration::from_secs(10)).is_some(),
            "daemon did not stop on SIGTERM"
        );
    }

    /// busybox udhcpc: one attempt cycle; returns the address obtained.
    fn udhcpc(&self, ct: &str, hostname: Option<&str>) -> Option<Ipv4Addr> {
        let mut args = vec!["udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "4", "-T", "1", "-s", "/bin/true"];
        let h;
        if let Some(x) = hostname {
            h = format!("hostname:{x}");
            args.extend(["-x", &h]);
        }
        let o = in_ns(ct, &args, 20);
        let out = text(&o);
        out.lines().find_map(|l| {
            l.split("lease of ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|ip| ip.parse().ok())
        })
    }

    /// Put `ip` on the CT's eth0 with the appliance as gateway.
    fn configure(&self, ct: &str, ip: Ipv4Addr) {
        let _ = in_ns(ct, &["ip", "addr", "flush", "dev", "eth0"], 5);
        let o = in_ns(ct, &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"], 5);
        assert!(o.status.success(), "{}", text(&o));
        let o = in_ns(ct, &["ip", "route", "replace", "default", "via", "10.20.0.1"], 5);
        assert!(o.status.success(), "{}", text(&o));
    }

    fn dig(&self, ns: &str, server: &str, args: &[&str]) -> String {
        let at = format!("@{server}");
        let mut a = vec!["dig", at.as_str(), "+time=2", "+tries=1"];
        a.extend(args);
        text(&in_ns(ns, &a, 10))
    }

    fn dig_short(&self, ns: &str, server: &str, args: &[&str]) -> String {
        let mut a = vec!["+short"];
        a.extend(args);
        self.dig(ns, server, &a).trim().to_string()
    }

    fn curl(&self, ns: &str, url: &str) -> Result<String, String> {
        let o = in_ns(ns, &["curl", "-sS", "--max-time", "3", url], 8);
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).to_string())
        } else {
            Err(text(&o))
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &self.pidfiles {
            if let Ok(s) = std::fs::read_to_string(p)
                && let Ok(pid) = s.trim().parse::<i32>()
            {
                let _ = Command::new("kill").arg(pid.to_string()).stderr(Stdio::null()).status();
            }
        }
        // Stop the daemon first (it removes its nft table), then helpers.
        while let Some(mut p) = self.procs.pop() {
            p.signal("TERM");
            if p.wait_exit(Duration::from_secs(5)).is_none() {
                drop(p);
            }
        }
        for role in ["c1", "c2", "c3", "b", "a", "w"] {
            let _ = sh(&["ip", "netns", "del", &self.ns(role)]);
        }
    }
}

fn seed_app(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let store = Store::open(&data.join("proximity.redb")).unwrap();
    let app = App {
        id: "app-web".into(),
        hostname: "web-app".into(),
        catalog_id: "nginx".into(),
        catalog_version: "1".into(),
        owner: "u1".into(),
        status: AppStatus::Running,
        host: None,
        node: None,
        vmid: None,
        mac: RES_MAC.into(),
        ip: Ipv4Addr::new(10, 20, 0, 101),
        upstream_ip: None,
        web_port: Some(8080),
        forwards: vec![PortForward {
            public: 30080,
            container: 8080,
            proto: Proto::Tcp,
        }],
        aliases: vec![],
        https_redirect: false,
        resources: Resources {
            cores: 1,
            memory_mb: 256,
            disk_gb: 1,
        },
        settings: BTreeMap::new(),
        error: None,
        job_id: None,
        adopted: false,
        created_at: 0,
        updated_at: 0,
    };
    store.put(APPS, &app.id, &app).unwrap();
}

/// The system Python (pyenv shims are not usable inside `ip netns exec`).
const PY: &str = "/usr/bin/python3";

const HTTP_PY: &str = r#"
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(s):
        b = (sys.argv[2] + " " + s.client_address[0]).encode()
        s.send_response(200); s.send_header("Content-Length", str(len(b))); s.end_headers(); s.wfile.write(b)
    def log_message(s, *a): pass
# TCPServer, not HTTPServer: HTTPServer does a reverse DNS lookup before listening.
socketserver.TCPServer.allow_reuse_address = True
socketserver.TCPServer((sys.argv[1], int(sys.argv[3])), H).serve_forever()
"#;

fn wait_http(lab: &Lab, ns: &str, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if lab.curl(ns, url).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{url} never answered in {ns}");
}

#[test]
fn network_plane_lab() {
    if !is_root() {
        return skip("network_plane_lab", "needs root for network namespaces and nftables");
    }
    for tool in ["udhcpc", "dhclient", "dig", "dnsmasq", "nft", "curl", "/usr/bin/python3"] {
        if sh(&["sh", "-c", &format!("command -v {tool}")]).stdout.is_empty() {
            return skip("network_plane_lab", &format!("{tool} is not installed (make deps)"));
        }
    }
    let mut lab = Lab::new();
    let (w, a, c1, c2, c3) = (lab.ns("w"), lab.ns("a"), lab.ns("c1"), lab.ns("c2"), lab.ns("c3"));
    std::fs::write(lab.path("echo_server.py"), HTTP_PY).unwrap();
    let py = lab.path("echo_server.py");
    let py = py.to_str().unwrap().to_string();

    // WAN side: upstream resolver, fake internet host, fake management host.
    lab.spawn_in(
        &w,
        &[
            "dnsmasq",
            "-k",
            "--no-resolv",
            "--no-hosts",
            "--port=53",
            "--bind-interfaces",
            &format!("--listen-address={WAN_HOST}"),
            "--address=/example.test/198.18.0.10",
            "--pid-file=",
        ],
    );
    lab.spawn_in(&w, &[PY, &py, NET_HOST, "internet", "8081"]);
    lab.spawn_in(&w, &[PY, &py, WAN_HOST, "management", "8082"]);
    wait_http(&lab, &w, &format!("http://{NET_HOST}:8081/"));
    wait_http(&lab, &w, &format!("http://{WAN_HOST}:8082/"));

    seed_app(&lab.path("data"));
    let api_port = common::free_port();
    let config = lab.write_config(api_port);
    let d = lab.start_daemon(&config);

    // The daemon put the LAN address on lan0 and installed its table.
    let addrs = text(&in_ns(&a, &["ip", "-4", "addr", "show", "dev", "lan0"], 5));
    assert!(addrs.contains("10.20.0.1/24"), "{addrs}");
    let table = text(&in_ns(&a, &["nft", "list", "table", "ip", "proximity"], 5));
    assert!(
        table.contains("masquerade") && table.contains("dnat to 10.20.0.101:8080"),
        "{table}"
    );

    // DHCP: reserved MAC gets its reservation (udhcpc), others get pool addresses.
    let ip1 = lab.udhcpc(&c1, None).expect("udhcpc lease for the reserved MAC");
    assert_eq!(ip1, Ipv4Addr::new(10, 20, 0, 101));
    lab.configure(&c1, ip1);
    let ip3 = lab.udhcpc(&c3, Some("ct-three")).expect("udhcpc lease");
    assert!((100..=150).contains(&ip3.octets()[3]) && ip3 != ip1, "{ip3}");
    // Renewing with udhcpc again keeps the address.
    assert_eq!(lab.udhcpc(&c3, Some("ct-three")), Some(ip3));
    lab.configure(&c3, ip3);

    // ISC dhclient: lease, INIT-REBOOT with the remembered lease keeps it, release frees it.
    let conf = lab.path("dhclient.conf");
    std::fs::write(&conf, "send host-name \"ct-two\";\n").unwrap();
    let (lf, pf) = (lab.path("c2.leases"), lab.path("c2.pid"));
    lab.pidfiles.push(pf.clone());
    let dh = |extra: &[&str]| {
        let mut v = vec!["dhclient", "-v", "-sf", "/bin/true", "-cf", conf.to_str().unwrap()];
        v.extend(["-lf", lf.to_str().unwrap(), "-pf", pf.to_str().unwrap()]);
        v.extend(extra);
        v.push("eth0");
        text(&in_ns(&c2, &v, 30))
    };
    let out = dh(&["-1"]);
    let bound = |out: &str| -> Option<Ipv4Addr> {
        out.lines().rev().find_map(|l| {
            l.split("bound to ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|s| s.parse().ok())
        })
    };
    let ip2 = bound(&out).unwrap_or_else(|| panic!("dhclient got no lease:\n{out}"));
    assert!(ip2 != ip1 && ip2 != ip3);
    assert_eq!(lab.dig_short(&c1, "10.20.0.1", &["ct-two.prox.local"]), ip2.to_string());
    // Stop the first client (started by us, PID from its pid file), then a second run
    // reboots with the remembered lease (INIT-REBOOT).
    if let Ok(pid) = std::fs::read_to_string(&pf) {
        let _ = sh(&["kill", pid.trim()]);
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = dh(&["-1"]);
    assert_eq!(bound(&out), Some(ip2), "renewal changed the address:\n{out}");

    // WAN side never gets an offer.
    let o = in_ns(
        &w,
        &["udhcpc", "-i", "up0", "-n", "-q", "-f", "-t", "2", "-T", "1", "-s", "/bin/true"],
        15,
    );
    assert!(!text(&o).contains("lease of"), "WAN got a lease: {}", text(&o));
    held("no DHCP on the WAN", "udhcpc on the WAN side gets no offer");

    // DNS from a container: app name (proxied → appliance LAN address), PTR, client name,
    // upstream name through the wan resolver, TCP.
    assert_eq!(lab.dig_short(&c1, "10.20.0.1", &["web-app.prox.local"]), "10.20.0.1");
    assert_eq!(lab.dig_short(&c1, "10.20.0.1", &["WEB-APP.Prox.Local"]), "10.20.0.1");
    assert_eq!(lab.dig_short(&c1, "10.20.0.1", &["-x", "10.20.0.101"]), "web-app.prox.local.");
    assert_eq!(lab.dig_short(&c1, "10.20.0.1", &["ct-three.prox.local"]), ip3.to_string());
    assert_eq!(lab.dig_short(&c1, "10.20.0.1", &["www.example.test"]), NET_HOST);
    assert_eq!(lab.dig_short(&c1, "10.20.0.1", &["+tcp", "web-app.prox.local"]), "10.20.0.1");
    let nx = lab.dig(&c1, "10.20.0.1", &["nothing.prox.local"]);
    assert!(nx.contains("status: NXDOMAIN") && nx.contains("SOA"), "{nx}");
    let nodata = lab.dig(&c1, "10.20.0.1", &["web-app.prox.local", "AAAA"]);
    assert!(nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"), "{nodata}");
    // From the WAN: local zone (proxied name → WAN address), upstream refused, TCP too.
    assert_eq!(lab.dig_short(&w, WAN_APPL, &["web-app.prox.local"]), WAN_APPL);
    let refused = lab.dig(&w, WAN_APPL, &["www.example.test"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
    let refused = lab.dig(&w, WAN_APPL, &["+tcp", "www.example.test"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
    held(
        "no DNS recursion for the WAN",
        "an upstream name asked from the WAN (UDP and TCP) → REFUSED",
    );
    // Loopback inside the appliance: proxied names answer 127.0.0.1.
    assert_eq!(lab.dig_short(&a, "127.0.0.1", &["web-app.prox.local"]), "127.0.0.1");

    // NAT: the internet host sees the appliance WAN address; management host unreachable.
    let body = lab.curl(&c1, &format!("http://{NET_HOST}:8081/")).expect("internet via NAT");
    assert_eq!(body, format!("internet {WAN_APPL}"));
    assert!(
        lab.curl(&c1, &format!("http://{WAN_HOST}:8082/")).is_err(),
        "LAN reached the management host"
    );
    held(
        "containers cannot reach the management network",
        "HTTP from a container to the management host fails",
    );
    // The LAN may not reach the appliance API port: a listener on 10.20.0.1:<api port>
    // answers inside the appliance but not from a container.
    lab.spawn_in(&a, &[PY, &py, "10.20.0.1", "api", &api_port.to_string()]);
    wait_http(&lab, &a, &format!("http://10.20.0.1:{api_port}/"));
    assert!(
        lab.curl(&c1, &format!("http://10.20.0.1:{api_port}/")).is_err(),
        "LAN reached the API port"
    );
    held(
        "containers cannot reach the management API",
        "HTTP from a container to the appliance's API port fails",
    );

    // Port forward: WAN address:30080 → 10.20.0.101:8080 in ct1.
    lab.spawn_in(&c1, &[PY, &py, "10.20.0.101", "app", "8080"]);
    wait_http(&lab, &c1, "http://10.20.0.101:8080/");
    let body = lab.curl(&w, &format!("http://{WAN_APPL}:30080/")).expect("port forward");
    assert!(body.starts_with("app "), "{body}");

    // Release frees: the name disappears (dhclient unicasts the RELEASE from its address).
    lab.configure(&c2, ip2);
    let _ = dh(&["-r"]);
    let gone = lab.dig(&c1, "10.20.0.1", &["ct-two.prox.local"]);
    assert!(gone.contains("NXDOMAIN"), "released lease still named:\n{gone}");

    // Malformed datagrams are dropped and counted; the server keeps serving.
    let o = in_ns(
        &c1,
        &[
            PY,
            "-c",
            "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b'garbage' * i, ('10.20.0.1', 67)) for i in range(1, 4)]",
        ],
        5,
    );
    assert!(o.status.success(), "{}", text(&o));
    std::thread::sleep(Duration::from_millis(200));

    // Metrics count what happened.
    let metrics = text(&in_ns(&a, &["curl", "-s", &format!("http://127.0.0.1:{api_port}/metrics")], 5));
    assert!(metrics.contains("proximity_dhcp_replies_total{kind=\"ack\"}"), "{metrics}");
    assert!(metrics.contains("proximity_dns_responses_total{kind=\"refused\"}"), "{metrics}");
    let malformed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("proximity_dhcp_malformed_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(malformed, Some(3), "{metrics}");

    // Restart: leases survive (ct-three's name resolves before any new DHCP traffic).
    lab.stop(d);
    let gone = text(&in_ns(&a, &["nft", "list", "table", "ip", "proximity"], 5));
    assert!(
        gone.contains("No such file") || gone.contains("does not exist") || gone.is_empty() || gone.contains("Error"),
        "table left behind: {gone}"
    );
    lab.start_daemon(&config);
    assert_eq!(lab.dig_short(&c1, "10.20.0.1", &["ct-three.prox.local"]), ip3.to_string());
    assert_eq!(lab.udhcpc(&c3, Some("ct-three")), Some(ip3));

    // Relayed requests (RFC 2131 §4.1): perfdhcp acts as a relay agent with giaddr = its own
    // LAN address and expects replies unicast to giaddr:67.
    if !sh(&["sh", "-c", "command -v perfdhcp"]).stdout.is_empty() {
        let o = in_ns(
            &c3,
            &[
                "perfdhcp", "-4", "-l", "eth0", "-r", "10", "-R", "10", "-p", "3", "-n", "10", "-t", "1", "-W", "1000000",
            ],
            20,
        );
        let out = text(&o);
        let acks = out
            .split("REQUEST-ACK")
            .nth(1)
            .and_then(|s| s.lines().find_map(|l| l.trim().strip_prefix("received packets:")))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        assert!(acks >= 5, "relayed DORA failed:\n{out}");
    } else {
        skip("network_plane_lab (relay part)", "perfdhcp (kea-admin) not installed");
    }
}
