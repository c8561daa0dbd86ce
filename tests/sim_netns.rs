//! `netns` runtime (root): a CT with `ip=dhcp` on a bridge gets its address from a real DHCP
//! server on that bridge (dnsmasq, in a namespace the test creates), keyed by the MAC from
//! `hwaddr=`, and its compose HTTP port answers from that other namespace. Everything the
//! test and the simulator created is gone afterwards.

mod common;
mod sim_util;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use sim_util::{Ssh, alpine_template, start_sim};

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn namespaces() -> BTreeSet<String> {
    sh(&["ip", "netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Removes what the test created, also on failure.
struct Guard {
    bridge: String,
    dns_ns: String,
    dnsmasq: Option<std::process::Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.dns_ns]).status();
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_ct_gets_dhcp_address_and_serves_http() {
    if !common::is_root() {
        common::skip("netns_ct_gets_dhcp_address_and_serves_http", "needs root");
        return;
    }
    for tool in ["dnsmasq", "busybox", "curl"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            common::skip("netns_ct_gets_dhcp_address_and_serves_http", &format!("{tool} missing"));
            return;
        }
    }
    let pid = std::process::id() % 100_000;
    let k = pid % 200 + 20;
    let mut g = Guard {
        bridge: format!("pxb{pid}"),
        dns_ns: format!("pxd{pid}"),
        dnsmasq: None,
    };
    let host_veth = format!("pxdv{pid}");
    sh(&["ip", "link", "add", &g.bridge, "type", "bridge"]);
    sh(&["ip", "link", "set", &g.bridge, "up"]);
    sh(&["ip", "netns", "add", &g.dns_ns]);
    sh(&[
        "ip", "link", "add", &host_veth, "type", "veth", "peer", "name", "eth0", "netns", &g.dns_ns,
    ]);
    sh(&["ip", "link", "set", &host_veth, "master", &g.bridge, "up"]);
    sh(&["ip", "-n", &g.dns_ns, "link", "set", "lo", "up"]);
    sh(&["ip", "-n", &g.dns_ns, "addr", "add", &format!("10.99.{k}.1/24"), "dev", "eth0"]);
    sh(&["ip", "-n", &g.dns_ns, "link", "set", "eth0", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let mac = format!("BC:24:11:{:02X}:{:02X}:{:02X}", (pid >> 16) & 0xff, (pid >> 8) & 0xff, pid & 0xff);
    let want_ip = format!("10.99.{k}.123");
    g.dnsmasq = Some(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &g.dns_ns,
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=eth0",
                "--bind-interfaces",
            ])
            .arg(format!("--dhcp-range=10.99.{k}.100,10.99.{k}.150,255.255.255.0,1h"))
            .arg(format!("--dhcp-host={mac},{want_ip}"))
            .arg(format!("--dhcp-leasefile={}", dir.path().join("leases").display()))
            .arg(format!("--pid-file={}", dir.path().join("dnsmasq.pid").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let before = namespaces();

    let sim = start_sim(&dir.path().join("state"), &["--runtime", "netns"]);
    let api = sim.token_client();
    let tpl = alpine_template(&api, "pve1").await;
    api.run_ok("POST", "/nodes/pve1/aplinfo", &[("storage", "local"), ("template", &tpl)])
        .await;
    let net0 = format!("name=eth0,bridge={},hwaddr={mac},ip=dhcp", g.bridge);
    api.run_ok(
        "POST",
        "/nodes/pve1/lxc",
        &[
            ("vmid", "130"),
            ("ostemplate", &format!("local:vztmpl/{tpl}")),
            ("hostname", "nsapp"),
            ("rootfs", "local-lvm:4"),
            ("net0", &net0),
        ],
    )
    .await;
    api.run_ok("POST", "/nodes/pve1/lxc/130/status/start", &[]).await;
    let ifs = api.call("GET", "/nodes/pve1/lxc/130/interfaces", &[]).await;
    let eth0 = ifs.data().as_array().unwrap().iter().find(|i| i["name"] == "eth0").unwrap().clone();
    assert_eq!(eth0["inet"], format!("{want_ip}/24"), "{eth0}");
    assert_eq!(eth0["hwaddr"], mac);
    assert_eq!(namespaces().difference(&before).count(), 1, "one namespace for the running CT");

    let ssh = Ssh::password(&sim.ssh, &sim.password).await.unwrap();
    for cmd in ["apk add docker docker-cli-compose", "rc-service docker start", "mkdir -p /opt/app"] {
        assert_eq!(ssh.exec(&format!("pct exec 130 -- {cmd}"), None).await.status, 0, "{cmd}");
    }
    let compose = "services:\n  web:\n    image: nginx:alpine\n    ports: [\"8088:80\"]\n";
    assert_eq!(
        ssh.exec("pct push 130 /dev/stdin /opt/app/docker-compose.yml", Some(compose.as_bytes()))
            .await
            .status,
        0
    );
    let o = ssh
        .exec("pct exec 130 -- docker compose --project-directory /opt/app up -d", None)
        .await;
    assert_eq!(o.status, 0, "{o:?}");
    let out = Command::new("ip")
        .args(["netns", "exec", &g.dns_ns, "curl", "-s", "--max-time", "5"])
        .arg(format!("http://{want_ip}:8088/"))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains("nsapp") && body.contains("web"),
        "from the DHCP server's namespace: {body:?}"
    );

    // Stop removes the CT's namespace; simulator shutdown leaves nothing behind.
    api.run_ok("POST", "/nodes/pve1/lxc/130/status/stop", &[]).await;
    assert_eq!(namespaces(), before);
    api.run_ok("POST", "/nodes/pve1/lxc/130/status/start", &[]).await;
    assert_eq!(namespaces().difference(&before).count(), 1);
    sim.stop();
    assert_eq!(namespaces(), before, "namespaces left behind by the simulator");
    let ports = sh(&["ip", "-o", "link", "show", "master", &g.bridge]);
    assert_eq!(ports.lines().count(), 1, "only the test's own veth remains on the bridge: {ports}");
}
