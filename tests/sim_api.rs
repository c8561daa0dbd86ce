//! `proximity pve-sim` end to end: PVE wire conventions, auth, CT lifecycle with tasks,
//! SSH `pct` commands with docker compose on the loopback runtime, backups and restore,
//! network staging and fault injection. Runs the real binary on ephemeral ports.

mod common;
mod sim_util;

use std::time::Duration;

use serde_json::{Value, json};
use sim_util::{Api, Auth, Ssh, alpine_template, http_get, start_sim};

const CT_COMPOSE: &str =
    "services:\n  web:\n    image: nginx:alpine\n    ports:\n      - \"${WEB_PORT:-8080}:80\"\n  worker:\n    image: busybox\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_conventions_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&dir.path().join("state"), &[]);
    let fp = &sim.fingerprint;
    assert_eq!(fp.len(), 95, "{fp}");
    assert!(fp.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase() || c == ':'));
    let anon = Api::new(&sim.base(), Auth::None);
    let tok = sim.token_client();

    // 401 texts in the status line and message.
    let r = anon.call("GET", "/version", &[]).await;
    assert_eq!((r.status, r.body["message"].as_str()), (401, Some("No ticket\n")));
    assert_eq!(anon.curl_status_line("GET", "/version", &[]), "HTTP/1.1 401 No ticket");
    let bad = Api::new(&sim.base(), Auth::Token("PVEAPIToken=root@pam!proximity=wrong".into()));
    assert_eq!(bad.curl_status_line("GET", "/version", &[]), "HTTP/1.1 401 Authentication failed!");
    let r = anon
        .call("POST", "/access/ticket", &[("username", "root@pam"), ("password", "nope")])
        .await;
    assert_eq!(r.status, 401);

    // Envelope, string nextid, 501s.
    let v = tok.call("GET", "/version", &[]).await;
    assert_eq!(v.data()["release"], "9.1");
    assert_eq!(tok.call("GET", "/cluster/nextid", &[]).await.data(), &json!("100"));
    assert_eq!(
        tok.curl_status_line("GET", "/nodes/pve1/nosuch", &[]),
        "HTTP/1.1 501 Method 'GET /nodes/pve1/nosuch' not implemented"
    );
    assert_eq!(
        tok.curl_status_line("DELETE", "/nodes/pve1/lxc/100", &["-d", "purge=1"]),
        "HTTP/1.1 501 Unexpected content for method 'DELETE'"
    );
    assert_eq!(
        tok.curl_status_line("GET", "/nodes/pve1/lxc/100/config", &[]),
        "HTTP/1.1 500 Configuration file 'nodes/pve1/lxc/100.conf' does not exist"
    );

    // 400 with errors; booleans only 0/1 in forms, true in JSON.
    let r = tok
        .call(
            "POST",
            "/nodes/pve1/lxc",
            &[("vmid", "100"), ("ostemplate", "local:vztmpl/x.tar.xz"), ("unprivileged", "true")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"]["unprivileged"], "type check ('boolean') failed - got 'true'");
    assert_eq!(r.body["message"], "Parameter verification failed.\n");
    let r = tok.call("GET", "/nodes/pve1/lxc", &[("bogus", "1")]).await;
    assert!(r.body["errors"]["bogus"].as_str().unwrap().contains("not defined in schema"));

    // Token may not log in (allowtoken 0).
    let r = tok
        .call("POST", "/access/ticket", &[("username", "root@pam"), ("password", &sim.password)])
        .await;
    assert_eq!(r.status, 403);

    // Tickets: CSRF required on writes, renewal with the old ticket as password.
    let t = Api::login(&sim.base(), "root@pam", &sim.password).await;
    let Auth::Ticket(ticket, csrf) = t.auth.clone() else {
        unreachable!()
    };
    assert!(ticket.starts_with("PVE:root@pam:") && ticket.contains("::"));
    assert_eq!(csrf.split(':').next().unwrap().len(), 8);
    assert_eq!(t.call("GET", "/nodes", &[]).await.data()[0]["node"], "pve1");
    let no_csrf = Api::new(&sim.base(), Auth::Ticket(ticket.clone(), "00000000:bad".into()));
    let r = no_csrf
        .call("POST", "/nodes/pve1/network", &[("iface", "vmbr9"), ("type", "bridge")])
        .await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (401, Some("Permission denied - invalid csrf token\n"))
    );
    let renewed = Api::login(&sim.base(), "root", &ticket).await;
    assert_eq!(renewed.call("GET", "/version", &[]).await.status, 200);

    // Nodes carry the fingerprint; the 595 of an offline node comes from the faults endpoint.
    let nodes = tok.call("GET", "/nodes", &[]).await;
    assert_eq!(nodes.data()[0]["ssl_fingerprint"].as_str(), Some(fp.as_str()));
    let faults = std::process::Command::new("curl")
        .args([
            "-sk",
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {}", sim.password),
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"offline_nodes":["pve1"]}"#,
        ])
        .arg(format!("https://{}/sim/faults", sim.api))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&faults.stdout).contains("offline_nodes"), "{faults:?}");
    assert_eq!(
        tok.curl_status_line("GET", "/nodes/pve1/lxc", &[]),
        "HTTP/1.1 595 Errors during connection establishment, proxy handshake: Connection refused"
    );
    assert_eq!(tok.call("GET", "/nodes", &[]).await.data()[0]["status"], "offline");
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ct_lifecycle_ssh_compose_backup_restore() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&dir.path().join("state"), &["--nodes", "2"]);
    let tok = sim.token_client();
    let root = Api::login(&sim.base(), "root@pam", &sim.password).await;
    let tpl = alpine_template(&tok, "pve1").await;
    assert!(tpl.starts_with("alpine-3."));
    let ostemplate = format!("local:vztmpl/{tpl}");

    // Creating from a template that was not downloaded fails in the task.
    let r = tok
        .call(
            "POST",
            "/nodes/pve1/lxc",
            &[("vmid", "150"), ("ostemplate", &ostemplate), ("rootfs", "local-lvm:4")],
        )
        .await;
    let st = tok.wait_task(r.data().as_str().unwrap()).await;
    assert_eq!(st["exitstatus"], format!("volume '{ostemplate}' does not exist"));
    // Unknown template → 400.
    let r = tok
        .call("POST", "/nodes/pve1/aplinfo", &[("storage", "local"), ("template", "nope.tar.xz")])
        .await;
    assert_eq!(r.body["errors"]["template"], "no such template");
    tok.run_ok("POST", "/nodes/pve1/aplinfo", &[("storage", "local"), ("template", &tpl)])
        .await;
    let content = tok.call("GET", "/nodes/pve1/storage/local/content", &[("content", "vztmpl")]).await;
    assert_eq!(content.data()[0]["volid"], ostemplate);
    assert_eq!(content.data()[0]["format"], "txz");

    // Token cannot set keyctl; root@pam ticket can.
    let net0 = "name=eth0,bridge=vmbr0,ip=dhcp";
    let r = tok
        .call(
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", "101"),
                ("ostemplate", &ostemplate),
                ("features", "nesting=1,keyctl=1"),
                ("rootfs", "local-lvm:8"),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (
            403,
            Some("Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)\n")
        )
    );
    let create = [
        ("vmid", "101"),
        ("ostemplate", ostemplate.as_str()),
        ("hostname", "web1"),
        ("rootfs", "local-lvm:8"),
        ("memory", "1024"),
        ("net0", net0),
        ("features", "nesting=1"),
        ("unprivileged", "1"),
    ];
    let st = tok.run_ok("POST", "/nodes/pve1/lxc", &create).await;
    assert_eq!(st["type"], "vzcreate");
    assert_eq!(st["tokenid"], "proximity");
    let r = tok.call("POST", "/nodes/pve1/lxc", &create).await;
    assert_eq!(
        r.body["message"],
        "unable to create CT 101 - CT 101 already exists on node 'pve1'\n"
    );
    assert_eq!(
        tok.call("GET", "/cluster/nextid", &[("vmid", "101")]).await.body["errors"]["vmid"],
        "VM 101 already exists"
    );
    let cfg = tok.call("GET", "/nodes/pve1/lxc/101/config", &[]).await;
    let c = cfg.data();
    assert_eq!(c["rootfs"], "local-lvm:vm-101-disk-0,size=8G");
    assert!(
        c["net0"].as_str().unwrap().starts_with("name=eth0,bridge=vmbr0,hwaddr=BC:24:11:"),
        "{c}"
    );
    assert_eq!(
        (c["memory"].clone(), c["unprivileged"].clone(), c["ostype"].clone()),
        (json!(1024), json!(1), json!("alpine"))
    );
    let r = tok
        .call("PUT", "/nodes/pve1/lxc/101/config", &[("features", "nesting=1,keyctl=1")])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        root.call(
            "PUT",
            "/nodes/pve1/lxc/101/config",
            &[("features", "nesting=1,keyctl=1"), ("digest", c["digest"].as_str().unwrap())]
        )
        .await
        .data(),
        &Value::Null
    );
    let r = root
        .call(
            "PUT",
            "/nodes/pve1/lxc/101/config",
            &[("memory", "2048"), ("digest", c["digest"].as_str().unwrap())],
        )
        .await;
    assert_eq!(r.status, 500, "stale digest must be refused");

    // Start; state errors; status and interfaces.
    tok.run_ok("POST", "/nodes/pve1/lxc/101/status/start", &[]).await;
    assert_eq!(
        tok.call("POST", "/nodes/pve1/lxc/101/status/start", &[]).await.body["message"],
        "CT 101 already running\n"
    );
    let s = tok.call("GET", "/nodes/pve1/lxc/101/status/current", &[]).await;
    assert_eq!(
        (s.data()["status"].clone(), s.data()["ha"]["managed"].clone()),
        (json!("running"), json!(0))
    );
    let ifs = tok.call("GET", "/nodes/pve1/lxc/101/interfaces", &[]).await;
    let eth0 = ifs.data().as_array().unwrap().iter().find(|i| i["name"] == "eth0").unwrap().clone();
    let ip = eth0["inet"].as_str().unwrap().split('/').next().unwrap().to_string();
    assert!(ip.starts_with("127.1.") && ip != "127.0.0.1", "{ip}");
    let r = tok.call("DELETE", "/nodes/pve1/lxc/101", &[]).await;
    assert_eq!(r.body["message"], "unable to destroy CT 101 - container is running\n");

    // SSH: auth, pct exec/push/set/status, docker compose.
    assert!(Ssh::password(&sim.ssh, "wrong").await.is_err());
    let key = russh::keys::PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[7u8; 32]));
    assert!(Ssh::key(&sim.ssh, key.clone()).await.is_err(), "unknown key must be refused");
    std::fs::write(
        dir.path().join("state/authorized_keys"),
        format!("{}\n", key.public_key().to_openssh().unwrap()),
    )
    .unwrap();
    let ssh = Ssh::key(&sim.ssh, key).await.expect("key from authorized_keys accepted");
    let o = ssh.exec("pct status 101", None).await;
    assert_eq!((o.status, o.stdout.as_str()), (0, "status: running\n"));
    let o = ssh.exec("pct exec 101 -- docker ps", None).await;
    assert_eq!((o.status, o.stderr.trim()), (127, "docker: not found"));
    let o = ssh.exec("frobnicate --now", None).await;
    assert_eq!((o.status, o.stderr.trim()), (127, "sh: frobnicate: not found"));
    let o = ssh.exec("pct exec 999 -- true", None).await;
    assert_eq!(o.status, 255);
    for cmd in [
        "apk update",
        "apk add --no-cache docker docker-cli-compose",
        "rc-update add docker default",
        "rc-service docker start",
        "mkdir -p /opt/proximity/web1",
    ] {
        let o = ssh.exec(&format!("pct exec 101 -- {cmd}"), None).await;
        assert_eq!(o.status, 0, "{cmd}: {o:?}");
    }
    let o = ssh.exec("pct exec 101 -- echo 'a; rm -rf /' '$(id)' \"q\\\"uote\"", None).await;
    assert_eq!(o.stdout, "a; rm -rf / $(id) q\"uote\n");
    let o = ssh
        .exec(
            "pct push 101 /dev/stdin /opt/proximity/web1/docker-compose.yml --perms 0644",
            Some(CT_COMPOSE.as_bytes()),
        )
        .await;
    assert_eq!(o.status, 0, "{o:?}");
    let o = ssh
        .exec(
            "pct push 101 /dev/stdin /opt/proximity/web1/.env --perms 0600",
            Some(b"WEB_PORT=8088\n"),
        )
        .await;
    assert_eq!(o.status, 0);
    let o = ssh.exec("pct exec 101 -- cat /opt/proximity/web1/docker-compose.yml", None).await;
    assert_eq!(o.stdout, CT_COMPOSE);
    let o = ssh
        .exec("pct exec 101 -- docker compose --project-directory /opt/proximity/web1 up -d", None)
        .await;
    assert_eq!(o.status, 0, "{o:?}");
    assert!(o.stderr.contains("Container web1-web-1  Started"), "{o:?}");
    let (code, body) = http_get(&format!("http://{ip}:8088/"));
    assert_eq!(code, 200);
    assert!(body.contains("web") && body.contains("web1"), "{body}");
    assert_eq!(http_get(&format!("http://{ip}:8088/healthz")), (200, "ok\n".into()));
    let o = ssh
        .exec(
            "pct exec 101 -- docker compose --project-directory /opt/proximity/web1 ps --format json",
            None,
        )
        .await;
    let first: Value = serde_json::from_str(o.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["State"], "running");
    let o = ssh
        .exec(
            "pct exec 101 -- docker compose --project-directory /opt/proximity/web1 logs --tail 1 --no-color",
            None,
        )
        .await;
    assert_eq!(o.stdout.lines().count(), 1);
    let o = ssh.exec("pct set 101 --features nesting=1,keyctl=1 --memory 1536", None).await;
    assert_eq!(o.status, 0, "{o:?}");
    assert_eq!(tok.call("GET", "/nodes/pve1/lxc/101/config", &[]).await.data()["memory"], 1536);

    // Stop ends the app, start brings it back (docker enabled at boot).
    tok.run_ok("POST", "/nodes/pve1/lxc/101/status/stop", &[]).await;
    assert_eq!(http_get(&format!("http://{ip}:8088/")).0, 0);
    assert_eq!(
        tok.call("POST", "/nodes/pve1/lxc/101/status/stop", &[]).await.body["message"],
        "CT 101 not running\n"
    );
    let o = ssh.exec("pct exec 101 -- true", None).await;
    assert_eq!((o.status, o.stderr.trim()), (255, "CT 101 not running"));
    tok.run_ok("POST", "/nodes/pve1/lxc/101/status/start", &[]).await;
    assert_eq!(http_get(&format!("http://{ip}:8088/")).0, 200);

    // Backup (zstd), content listing, restore into a new CT, clone, delete.
    let st = tok
        .run_ok(
            "POST",
            "/nodes/pve1/vzdump",
            &[
                ("vmid", "101"),
                ("storage", "local"),
                ("compress", "zstd"),
                ("mode", "snapshot"),
                ("notes-template", "{{guestname}}"),
            ],
        )
        .await;
    let log = tok.task_log(st["upid"].as_str().unwrap()).await;
    let archive_line = log.iter().find(|l| l.contains("creating vzdump archive")).unwrap();
    assert!(
        archive_line.contains("/var/lib/vz/dump/vzdump-lxc-101-") && archive_line.ends_with(".tar.zst'"),
        "{archive_line}"
    );
    assert_eq!(log.last().unwrap(), "TASK OK");
    let backups = tok
        .call(
            "GET",
            "/nodes/pve1/storage/local/content",
            &[("content", "backup"), ("vmid", "101")],
        )
        .await;
    let b = backups.data()[0].clone();
    assert_eq!(
        (b["subtype"].clone(), b["format"].clone(), b["vmid"].clone(), b["notes"].clone()),
        (json!("lxc"), json!("tar.zst"), json!(101), json!("web1"))
    );
    assert!(b["ctime"].as_u64().unwrap() > 1_700_000_000 && b["size"].as_u64().unwrap() > 0);
    assert_eq!(
        tok.call("POST", "/nodes/pve2/vzdump", &[("vmid", "101"), ("storage", "local")])
            .await
            .data(),
        &json!("OK")
    );
    let volid = b["volid"].as_str().unwrap().to_string();
    let st = tok
        .run_ok(
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", "102"),
                ("ostemplate", &volid),
                ("restore", "1"),
                ("storage", "local-lvm"),
                ("unique", "1"),
                ("hostname", "web1-restored"),
            ],
        )
        .await;
    assert_eq!(st["type"], "vzrestore");
    let rc = tok.call("GET", "/nodes/pve1/lxc/102/config", &[]).await;
    assert_eq!(rc.data()["hostname"], "web1-restored");
    assert_eq!(rc.data()["rootfs"], "local-lvm:vm-102-disk-0,size=8G");
    assert_ne!(
        rc.data()["net0"],
        tok.call("GET", "/nodes/pve1/lxc/101/config", &[]).await.data()["net0"]
    );
    tok.run_ok("POST", "/nodes/pve1/lxc/102/status/start", &[]).await;
    let o = ssh.exec("pct exec 102 -- cat /opt/proximity/web1/.env", None).await;
    assert_eq!(o.stdout, "WEB_PORT=8088\n", "restored files");
    let ip2 = tok.call("GET", "/nodes/pve1/lxc/102/interfaces", &[]).await.data()[1]["inet"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(ip2, ip);
    assert_eq!(
        http_get(&format!("http://{ip2}:8088/")).0,
        200,
        "restored CT runs its app after start"
    );
    let r = tok
        .call("POST", "/nodes/pve1/lxc/101/clone", &[("newid", "103"), ("hostname", "web1-clone")])
        .await;
    assert_eq!(
        r.body["message"],
        "Cannot do full clones on a running container without snapshots\n"
    );
    tok.run_ok("POST", "/nodes/pve1/lxc/102/status/stop", &[]).await;
    tok.run_ok("POST", "/nodes/pve1/lxc/102/clone", &[("newid", "103"), ("hostname", "web1-clone")])
        .await;
    assert_eq!(
        tok.call("GET", "/nodes/pve1/lxc/103/config", &[]).await.data()["hostname"],
        "web1-clone"
    );
    let enc = percent_encoding::utf8_percent_encode(&volid, percent_encoding::NON_ALPHANUMERIC).to_string();
    assert_eq!(
        tok.call("DELETE", &format!("/nodes/pve1/storage/local/content/{enc}"), &[("delay", "5")])
            .await
            .data(),
        &Value::Null
    );
    assert_eq!(
        tok.call("GET", "/nodes/pve1/storage/local/content", &[("content", "backup")])
            .await
            .data(),
        &json!([])
    );
    tok.run_ok("DELETE", "/nodes/pve1/lxc/101", &[("force", "1"), ("purge", "1")]).await;
    assert_eq!(http_get(&format!("http://{ip}:8088/")).0, 0);
    let list = tok.call("GET", "/nodes/pve1/lxc", &[]).await;
    let ids: Vec<i64> = list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["vmid"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![102, 103]);
    let res = tok.call("GET", "/cluster/resources", &[("type", "vm")]).await;
    assert_eq!(res.data().as_array().unwrap().len(), 2);
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_staging_and_faults() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&dir.path().join("state"), &["--nodes", "2"]);
    let tok = sim.token_client();
    let r = tok.call("GET", "/nodes/pve1/network", &[]).await;
    assert!(r.body.get("changes").is_none());
    assert_eq!(
        tok.call(
            "POST",
            "/nodes/pve1/network",
            &[
                ("iface", "vmbr1"),
                ("type", "bridge"),
                ("cidr", "10.20.0.254/24"),
                ("autostart", "1"),
                ("comments", "proximity-lan")
            ]
        )
        .await
        .data(),
        &Value::Null
    );
    let r = tok
        .call("POST", "/nodes/pve1/network", &[("iface", "vmbr1"), ("type", "bridge")])
        .await;
    assert_eq!(r.body["errors"]["iface"], "interface already exists");
    let r = tok.call("GET", "/nodes/pve1/network", &[("type", "bridge")]).await;
    let changes = r.body["changes"].as_str().unwrap();
    assert!(
        changes.contains("+iface vmbr1 inet static") && changes.starts_with("--- /etc/network/interfaces"),
        "{changes}"
    );
    let vmbr1 = r.data().as_array().unwrap().iter().find(|i| i["iface"] == "vmbr1").unwrap().clone();
    assert_eq!(vmbr1["active"], 0);
    let st = tok.run_ok("PUT", "/nodes/pve1/network", &[]).await;
    assert_eq!((st["type"].clone(), st["id"].clone()), (json!("srvreload"), json!("networking")));
    let r = tok.call("GET", "/nodes/pve1/network", &[]).await;
    assert!(r.body.get("changes").is_none());
    assert_eq!(
        r.data().as_array().unwrap().iter().find(|i| i["iface"] == "vmbr1").unwrap()["active"],
        1
    );
    tok.call("POST", "/nodes/pve1/network", &[("iface", "vmbr2"), ("type", "bridge")])
        .await;
    tok.call("DELETE", "/nodes/pve1/network", &[]).await;
    assert!(
        tok.call("GET", "/nodes/pve1/network", &[])
            .await
            .data()
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["iface"] != "vmbr2")
    );

    // Task faults: failure with a message, then warnings, through the admin endpoint (JSON).
    let admin = |body: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-sk",
                "-X",
                "POST",
                "-H",
                &format!("Authorization: Bearer {}", sim.password),
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            ])
            .arg(format!("https://{}/sim/faults", sim.api))
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let bad = admin(r#"{"nope":1}"#);
    assert!(
        bad["data"].is_null() && bad["message"].as_str().unwrap().starts_with("invalid faults"),
        "{bad}"
    );
    admin(
        r#"{"fail_tasks":[{"type":"download","message":"download failed: 404 Not Found","times":1},{"type":"srvreload","message":"ifreload says hi","warnings":2}]}"#,
    );
    let tpl = alpine_template(&tok, "pve2").await;
    let r = tok
        .call("POST", "/nodes/pve2/aplinfo", &[("storage", "local"), ("template", &tpl)])
        .await;
    let upid = r.data().as_str().unwrap().to_string();
    let st = tok.wait_task(&upid).await;
    assert_eq!(st["exitstatus"], "download failed: 404 Not Found");
    assert_eq!(
        tok.task_log(&upid).await.last().unwrap(),
        "TASK ERROR: download failed: 404 Not Found"
    );
    tok.run_ok("POST", "/nodes/pve2/aplinfo", &[("storage", "local"), ("template", &tpl)])
        .await;
    let r = tok.call("PUT", "/nodes/pve2/network", &[]).await;
    let st = tok.wait_task(r.data().as_str().unwrap()).await;
    assert_eq!(st["exitstatus"], "WARNINGS: 2");
    let errs = tok.call("GET", "/nodes/pve2/tasks", &[("errors", "1")]).await;
    assert_eq!(errs.data().as_array().unwrap().len(), 1);
    assert_eq!(errs.data()[0]["status"], "download failed: 404 Not Found");

    // HTTP 5xx injection, latency, 596 for a timing-out node, unknown node.
    admin(r#"{"http_5xx":{"path_prefix":"/nodes/pve1/lxc","status":503,"count":1},"timeout_nodes":["pve2"],"latency_ms":150}"#);
    let t0 = std::time::Instant::now();
    assert_eq!(tok.call("GET", "/nodes/pve1/lxc", &[]).await.status, 503);
    assert!(t0.elapsed() >= Duration::from_millis(150));
    assert_eq!(tok.call("GET", "/nodes/pve1/lxc", &[]).await.status, 200);
    assert_eq!(tok.call("GET", "/nodes/pve2/status", &[]).await.status, 596);
    let r = tok.call("GET", "/nodes/pve7/status", &[]).await;
    assert!(r.status == 500 && r.body["message"].as_str().unwrap().starts_with("hostname lookup 'pve7' failed"));
    admin("{}");
    sim.stop();
}
