//! Integration tests of the Proxmox client and SSH executor against the in-process
//! simulator (`proximity::sim`), over real HTTPS and SSH on loopback with ephemeral ports.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use proximity::pve::client::{Auth, Client, ClientConfig, ClientOptions, Tls};
use proximity::pve::error::Error;
use proximity::pve::hosts::{HostSpec, Hosts};
use proximity::pve::ssh::{ExecOptions, HostKeyStore, MemoryHostKeys, OutputStream, RedbHostKeys, SshExec, SshKey};
use proximity::pve::types::*;
use proximity::sim::{Faults, Http5xx, SimConfig, SimHandle, TaskFault};

const WAIT: Duration = Duration::from_secs(30);

struct Env {
    sim: SimHandle,
    dir: tempfile::TempDir,
}

async fn start_sim(nodes: u32) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SimConfig::new(dir.path().join("sim"));
    cfg.nodes = nodes;
    cfg.task_delay_ms = 10;
    let sim = proximity::sim::start(cfg).await.expect("simulator starts");
    Env { sim, dir }
}

fn opts() -> ClientOptions {
    ClientOptions {
        retries: 2,
        retry_backoff: Duration::from_millis(50),
        ..Default::default()
    }
}

fn token_client(sim: &SimHandle) -> Client {
    Client::with_options(
        ClientConfig {
            base_url: format!("https://{}", sim.api_addr),
            auth: Auth::Token {
                id: sim.token_id.clone(),
                secret: sim.token_secret.clone(),
            },
            tls: Tls::Fingerprint(sim.fingerprint.clone()),
            timeout: Duration::from_secs(15),
        },
        opts(),
    )
    .unwrap()
}

fn ticket_client(sim: &SimHandle, o: ClientOptions) -> Client {
    Client::with_options(
        ClientConfig {
            base_url: sim.base_url(),
            auth: Auth::Ticket {
                user: "root@pam".into(),
                password: sim.root_password.clone(),
            },
            tls: Tls::Fingerprint(sim.fingerprint.replace(':', "").to_lowercase()),
            timeout: Duration::from_secs(15),
        },
        o,
    )
    .unwrap()
}

/// Download the newest Alpine template listed by aplinfo; returns its volid.
async fn alpine_template(c: &Client, node: &str) -> String {
    let list = c.aplinfo(node).await.unwrap();
    let newest = list
        .iter()
        .filter(|a| a.os == "alpine" && a.kind == "lxc")
        .max_by(|a, b| a.version.cmp(&b.version).then(a.template.cmp(&b.template)))
        .expect("aplinfo lists alpine")
        .template
        .clone();
    let upid = c.aplinfo_download(node, "local", &newest).await.unwrap();
    assert_eq!(upid.worker_type, "download");
    c.wait_task(&upid, WAIT).await.unwrap();
    format!("local:vztmpl/{newest}")
}

async fn create_ct(c: &Client, node: &str, vmid: u32, template: &str, hostname: &str) {
    let mut req = CreateLxc::new(vmid, template);
    req.hostname = Some(hostname.into());
    req.memory = Some(512);
    req.cores = Some(1);
    req.rootfs = Some("local-lvm:4".into());
    req.nets = vec!["name=eth0,bridge=vmbr0,ip=dhcp".into()];
    req.features = Some("nesting=1".into());
    req.password = Some("ct-root-pw".into());
    let upid = c.lxc_create(node, &req).await.unwrap();
    assert_eq!(upid.worker_type, "vzcreate");
    assert_eq!(upid.node, node);
    c.wait_task(&upid, WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_call_with_token_auth() {
    let env = start_sim(2).await;
    let c = token_client(&env.sim);

    let v = c.version().await.unwrap();
    assert!(!v.release.is_empty() && !v.version.is_empty());
    let nodes = c.nodes().await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(), ["pve1", "pve2"]);
    assert!(nodes.iter().all(|n| n.is_online() && n.free_mem() > 0));
    let st = c.node_status("pve1").await.unwrap();
    assert!(st.memory.total > 0);
    let res = c.cluster_resources(None).await.unwrap();
    assert!(res.iter().any(|r| r.kind == "node"));
    let storages = c.storages("pve1", None).await.unwrap();
    let local = storages.iter().find(|s| s.storage == "local").expect("local storage");
    assert!(local.supports("vztmpl") && local.supports("backup"));
    assert!(storages.iter().any(|s| s.storage == "local-lvm" && s.supports("rootdir")));

    let template = alpine_template(&c, "pve1").await;
    let tmpl = c.storage_content("pve1", "local", Some("vztmpl"), None).await.unwrap();
    assert!(tmpl.iter().any(|t| t.volid == template), "{tmpl:?}");

    let vmid = c.next_id().await.unwrap();
    assert!(vmid >= 100);
    assert!(c.vmid_is_free(vmid).await.unwrap());
    create_ct(&c, "pve1", vmid, &template, "app-one").await;
    assert!(!c.vmid_is_free(vmid).await.unwrap());
    // Creating the same vmid again is a conflict.
    match c.lxc_create("pve1", &CreateLxc::new(vmid, &template)).await {
        Err(Error::Conflict { message }) => assert!(message.contains("already exists"), "{message}"),
        other => panic!("{other:?}"),
    }

    let list = c.lxc_list("pve1").await.unwrap();
    let ct = list.iter().find(|x| x.vmid == vmid as u64).expect("listed");
    assert_eq!(ct.status, "stopped");
    assert_eq!(ct.name.as_deref(), Some("app-one"));
    let cfg = c.lxc_config("pve1", vmid).await.unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("app-one"));
    assert_eq!(cfg.memory, Some(512));
    assert_eq!(cfg.unprivileged, Some(true));
    assert_eq!(cfg.nets()[0].1.bridge.as_deref(), Some("vmbr0"));
    assert!(cfg.nets()[0].1.hwaddr.is_some(), "hwaddr generated");

    // Config update (sync), guarded by the digest; keyctl is refused for a token.
    c.lxc_set_config(
        "pve1",
        vmid,
        &Params::new().set("memory", 768).flag("onboot", true),
        &[],
        cfg.digest.as_deref(),
    )
    .await
    .unwrap();
    let cfg2 = c.lxc_config("pve1", vmid).await.unwrap();
    assert_eq!(cfg2.memory, Some(768));
    assert_eq!(cfg2.onboot, Some(true));
    let stale = c
        .lxc_set_config("pve1", vmid, &Params::new().set("memory", 640), &[], cfg.digest.as_deref())
        .await;
    assert!(stale.is_err(), "stale digest must be refused");
    let keyctl = c
        .lxc_set_config("pve1", vmid, &Params::new().set("features", "nesting=1,keyctl=1"), &[], None)
        .await;
    assert!(matches!(keyctl, Err(Error::Forbidden { .. })), "{keyctl:?}");
    c.lxc_set_config("pve1", vmid, &Params::new(), &["onboot"], None).await.unwrap();
    assert_eq!(c.lxc_config("pve1", vmid).await.unwrap().onboot, None);

    // Start, status, interfaces, rrddata; start again conflicts.
    let up = c.lxc_start("pve1", vmid).await.unwrap();
    assert_eq!(up.vmid(), Some(vmid));
    c.wait_task(&up, WAIT).await.unwrap();
    assert!(c.lxc_status("pve1", vmid).await.unwrap().is_running());
    let ifs = c.lxc_interfaces("pve1", vmid).await.unwrap();
    let eth0 = ifs.iter().find(|i| i.name == "eth0").expect("eth0");
    let ip = eth0.ipv4().expect("eth0 has an IPv4 address");
    assert!(ip.is_loopback() && ip != std::net::Ipv4Addr::LOCALHOST, "{ip}");
    let rrd = c.lxc_rrddata("pve1", vmid, "hour", Some("AVERAGE")).await.unwrap();
    assert!(rrd.iter().all(|p| p.time > 0));
    assert!(matches!(c.lxc_rrddata("pve1", vmid, "decade", None).await, Err(Error::Invalid(_))));
    match c.lxc_start("pve1", vmid).await {
        Err(Error::Conflict { message }) => assert!(message.contains("already running"), "{message}"),
        Ok(u) => match c.wait_task(&u, WAIT).await {
            Err(Error::TaskFailed { exitstatus, .. }) => assert!(exitstatus.contains("already running")),
            other => panic!("{other:?}"),
        },
        Err(e) => panic!("{e:?}"),
    }

    // Backup with vzdump, list it, delete it. On the other node the answer is "OK" (no task).
    let dump = c
        .vzdump(
            "pve1",
            &Vzdump {
                vmids: vec![vmid],
                storage: Some("local".into()),
                mode: Some("snapshot".into()),
                compress: Some("zstd".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .expect("a vzdump task");
    assert_eq!(dump.worker_type, "vzdump");
    c.wait_task(&dump, WAIT).await.unwrap();
    let (lines, total) = c.task_log(&dump, 0, 50).await.unwrap();
    assert!(total >= lines.len() as u64 && lines[0].n == 1);
    assert!(lines.iter().any(|l| l.t.contains("creating vzdump archive")), "{lines:?}");
    assert_eq!(lines.last().unwrap().t, "TASK OK");
    let backups = c.storage_content("pve1", "local", Some("backup"), Some(vmid)).await.unwrap();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(backups[0].volid.starts_with(&format!("local:backup/vzdump-lxc-{vmid}-")) && backups[0].volid.ends_with(".tar.zst"));
    assert_eq!(backups[0].subtype.as_deref(), Some("lxc"));
    let elsewhere = c
        .vzdump(
            "pve2",
            &Vzdump {
                vmids: vec![vmid],
                storage: Some("local".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(elsewhere.is_none());

    // Clone (stopped source), restore from the backup into a new vmid.
    let sd = c.lxc_shutdown("pve1", vmid, Some(30), true).await.unwrap();
    c.wait_task(&sd, WAIT).await.unwrap();
    assert!(!c.lxc_status("pve1", vmid).await.unwrap().is_running());
    match c.lxc_stop("pve1", vmid).await {
        Err(Error::Conflict { message }) => assert!(message.contains("not running"), "{message}"),
        other => panic!("stop on a stopped CT: {other:?}"),
    }
    let clone_id = c.next_id().await.unwrap();
    let cl = c
        .lxc_clone(
            "pve1",
            vmid,
            &CloneLxc {
                newid: clone_id,
                hostname: Some("app-two".into()),
                full: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cl.worker_type, "vzclone");
    c.wait_task(&cl, WAIT).await.unwrap();
    assert_eq!(c.lxc_config("pve1", clone_id).await.unwrap().hostname.as_deref(), Some("app-two"));
    let restore_id = c.next_id().await.unwrap();
    let mut r = CreateLxc::new(restore_id, &backups[0].volid);
    r.restore = true;
    r.storage = Some("local-lvm".into());
    r.unique = true;
    let ru = c.lxc_create("pve1", &r).await.unwrap();
    assert_eq!(ru.worker_type, "vzrestore");
    c.wait_task(&ru, WAIT).await.unwrap();
    assert_eq!(c.lxc_config("pve1", restore_id).await.unwrap().memory, Some(768));

    // Reboot and stop a running CT.
    let s = c.lxc_start("pve1", clone_id).await.unwrap();
    c.wait_task(&s, WAIT).await.unwrap();
    let rb = c.lxc_reboot("pve1", clone_id).await.unwrap();
    c.wait_task(&rb, WAIT).await.unwrap();
    let stop = c.lxc_stop("pve1", clone_id).await.unwrap();
    c.wait_task(&stop, WAIT).await.unwrap();

    // Delete the backup volume (volid with ':' and '/' in one path segment).
    if let Some(u) = c.storage_delete("pve1", "local", &backups[0].volid).await.unwrap() {
        c.wait_task(&u, WAIT).await.unwrap();
    }
    assert!(
        c.storage_content("pve1", "local", Some("backup"), Some(vmid))
            .await
            .unwrap()
            .is_empty()
    );

    // Delete with options in the query string; afterwards the CT is gone.
    for id in [vmid, clone_id, restore_id] {
        let del = c
            .lxc_delete(
                "pve1",
                id,
                &DeleteLxc {
                    purge: true,
                    destroy_unreferenced_disks: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(del.worker_type, "vzdestroy");
        c.wait_task(&del, WAIT).await.unwrap();
    }
    assert!(matches!(c.lxc_config("pve1", vmid).await, Err(Error::NotFound { .. })));
    assert!(c.lxc_list("pve1").await.unwrap().iter().all(|x| x.vmid != vmid as u64));

    // Network: stage, see changes, apply as a task; stage and revert.
    let bridge = NetworkCreate {
        iface: "vmbr7".into(),
        kind: "bridge".into(),
        bridge_ports: Some("none".into()),
        cidr: Some("10.77.0.1/24".into()),
        autostart: Some(true),
        ..Default::default()
    };
    c.network_create("pve1", &bridge).await.unwrap();
    let staged = c.network("pve1").await.unwrap();
    assert!(staged.changes.as_deref().is_some_and(|d| d.contains("vmbr7")), "{staged:?}");
    let apply = c.network_apply("pve1").await.unwrap();
    assert_eq!(apply.worker_type, "srvreload");
    c.wait_task(&apply, WAIT).await.unwrap();
    let applied = c.network("pve1").await.unwrap();
    assert!(applied.changes.is_none());
    assert!(applied.ifaces.iter().any(|i| i.iface == "vmbr7" && i.kind == "bridge"));
    c.network_create(
        "pve1",
        &NetworkCreate {
            iface: "vmbr8".into(),
            ..bridge.clone()
        },
    )
    .await
    .unwrap();
    c.network_revert("pve1").await.unwrap();
    let reverted = c.network("pve1").await.unwrap();
    assert!(reverted.changes.is_none() && !reverted.ifaces.iter().any(|i| i.iface == "vmbr8"));

    // Unknown task: 400 with a field error; unknown path: 501.
    let ghost: proximity::pve::Upid = "UPID:pve1:00000001:00000001:00000001:vzstart:999:root@pam:".parse().unwrap();
    assert!(matches!(c.task_status(&ghost).await, Err(Error::BadRequest { errors, .. }) if errors.contains_key("upid")));
    let bad = c.request(reqwest::Method::GET, "/nodes/pve1/nosuch", &Params::new()).await;
    assert!(matches!(bad, Err(Error::Server { status: 501, .. })), "{bad:?}");
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_auth_csrf_and_renewal() {
    let env = start_sim(1).await;
    let c = ticket_client(
        &env.sim,
        ClientOptions {
            ticket_renew_after: Duration::from_millis(1000),
            ..opts()
        },
    );
    assert_eq!(c.ticket_age().await, None);
    c.version().await.unwrap();
    let first = c.ticket_age().await.expect("logged in");
    // Writes need the CSRF header: root@pam may set keyctl (tokens may not).
    let template = alpine_template(&c, "pve1").await;
    create_ct(&c, "pve1", 150, &template, "ticketed").await;
    c.lxc_set_config("pve1", 150, &Params::new().set("features", "nesting=1,keyctl=1"), &[], None)
        .await
        .unwrap();
    assert_eq!(
        c.lxc_config("pve1", 150)
            .await
            .unwrap()
            .feature_map()
            .get("keyctl")
            .map(String::as_str),
        Some("1")
    );
    // After the threshold the ticket is renewed before the next call.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(c.ticket_age().await.unwrap() >= Duration::from_millis(1100));
    c.nodes().await.unwrap();
    let renewed = c.ticket_age().await.unwrap();
    assert!(
        renewed < Duration::from_millis(1000),
        "ticket renewed (age {renewed:?}, first {first:?})"
    );
    let u = c.lxc_start("pve1", 150).await.unwrap();
    c.wait_task(&u, WAIT).await.unwrap();

    // Wrong password / wrong token secret: Unauthorized.
    let bad = Client::with_options(
        ClientConfig {
            base_url: env.sim.base_url(),
            auth: Auth::Ticket {
                user: "root@pam".into(),
                password: "wrong-password".into(),
            },
            tls: Tls::Fingerprint(env.sim.fingerprint.clone()),
            timeout: Duration::from_secs(15),
        },
        opts(),
    )
    .unwrap();
    assert!(matches!(bad.version().await, Err(Error::Unauthorized { .. })));
    let bad = Client::new(ClientConfig {
        base_url: env.sim.base_url(),
        auth: Auth::Token {
            id: env.sim.token_id.clone(),
            secret: "00000000-0000-0000-0000-000000000000".into(),
        },
        tls: Tls::Fingerprint(env.sim.fingerprint.clone()),
        timeout: Duration::from_secs(15),
    })
    .unwrap();
    assert!(matches!(bad.nodes().await, Err(Error::Unauthorized { .. })));
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_success_warnings_failure_and_timeout() {
    let env = start_sim(1).await;
    let c = token_client(&env.sim);
    let template = alpine_template(&c, "pve1").await;
    create_ct(&c, "pve1", 120, &template, "tasks").await;

    env.sim.set_faults(Faults {
        fail_tasks: vec![TaskFault {
            kind: "vzstart".into(),
            vmid: Some(120),
            message: "disk quota nearly full".into(),
            warnings: Some(2),
            times: Some(1),
            ..Default::default()
        }],
        ..Default::default()
    });
    let u = c.lxc_start("pve1", 120).await.unwrap();
    let mut streamed = Vec::new();
    let st = c.wait_task_with(&u, WAIT, |l| streamed.push(l.t.clone())).await.unwrap();
    assert_eq!(st.exitstatus.as_deref(), Some("WARNINGS: 2"));
    assert!(st.is_success());
    assert!(streamed.iter().any(|l| l.starts_with("TASK WARNINGS")), "{streamed:?}");
    let u = c.lxc_stop("pve1", 120).await.unwrap();
    c.wait_task(&u, WAIT).await.unwrap();

    env.sim.set_faults(Faults {
        fail_tasks: vec![TaskFault {
            kind: "vzstart".into(),
            message: "startup for container '120' failed".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let u = c.lxc_start("pve1", 120).await.unwrap();
    match c.wait_task(&u, WAIT).await {
        Err(Error::TaskFailed {
            exitstatus,
            log_tail,
            upid,
        }) => {
            assert_eq!(exitstatus, "startup for container '120' failed");
            assert_eq!(upid, u.to_string());
            assert!(log_tail.last().is_some_and(|l| l.starts_with("TASK ERROR")), "{log_tail:?}");
        }
        other => panic!("{other:?}"),
    }

    env.sim.set_faults(Faults {
        slow_task_ms: Some(3000),
        ..Default::default()
    });
    let u = c.lxc_start("pve1", 120).await.unwrap();
    assert!(matches!(
        c.wait_task(&u, Duration::from_millis(500)).await,
        Err(Error::TaskTimeout { .. })
    ));
    env.sim.set_faults(Faults::default());
    c.wait_task(&u, WAIT).await.unwrap();
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_pinning_and_ca_bundle() {
    let env = start_sim(1).await;
    let wrong = "AA".repeat(32);
    let c = Client::new(ClientConfig {
        base_url: env.sim.base_url(),
        auth: Auth::Token {
            id: env.sim.token_id.clone(),
            secret: env.sim.token_secret.clone(),
        },
        tls: Tls::Fingerprint(wrong),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    match c.version().await {
        Err(Error::Tls { message, seen }) => {
            assert_eq!(seen.as_deref(), Some(env.sim.fingerprint.as_str()));
            assert!(message.contains(&env.sim.fingerprint), "{message}");
        }
        other => panic!("pin mismatch must be refused: {other:?}"),
    }
    // CA bundle: the simulator's self-signed certificate as the trust anchor.
    let pem = std::fs::read_to_string(env.dir.path().join("sim/pve-ssl.pem")).unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let c = Client::new(ClientConfig {
            base_url: format!("https://{host}:{}", env.sim.api_addr.port()),
            auth: Auth::Token {
                id: env.sim.token_id.clone(),
                secret: env.sim.token_secret.clone(),
            },
            tls: Tls::CaPem(pem.clone()),
            timeout: Duration::from_secs(10),
        })
        .unwrap();
        c.version().await.unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    // Another CA: refused.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let c = Client::new(ClientConfig {
        base_url: env.sim.base_url(),
        auth: Auth::Token {
            id: env.sim.token_id.clone(),
            secret: env.sim.token_secret.clone(),
        },
        tls: Tls::CaPem(other.cert.pem()),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    assert!(matches!(c.version().await, Err(Error::Tls { seen: None, .. })));
    // System roots do not trust the self-signed certificate either.
    let c = Client::new(ClientConfig {
        base_url: env.sim.base_url(),
        auth: Auth::Token {
            id: env.sim.token_id.clone(),
            secret: env.sim.token_secret.clone(),
        },
        tls: Tls::System,
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    assert!(matches!(c.version().await, Err(Error::Tls { .. })));
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_offline_retries_and_placement() {
    let env = start_sim(3).await;
    let c = token_client(&env.sim);
    env.sim.set_faults(Faults {
        offline_nodes: vec!["pve2".into()],
        timeout_nodes: vec!["pve3".into()],
        ..Default::default()
    });
    match c.lxc_list("pve2").await {
        Err(Error::NodeOffline { status, message }) => {
            assert_eq!(status, 595);
            assert!(message.contains("Connection refused"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.lxc_list("pve3").await, Err(Error::NodeOffline { status: 596, .. })));
    assert!(matches!(c.lxc_start("pve2", 100).await, Err(Error::NodeOffline { .. })));

    // Placement over the registry: pve2 is offline, named placement on it is refused.
    let dir = tempfile::tempdir().unwrap();
    let store = proximity::store::Store::open(&dir.path().join("db.redb")).unwrap();
    let hosts = Hosts::new(store, proximity::secrets::SecretBox::ephemeral());
    hosts
        .add(HostSpec {
            name: "sim".into(),
            url: format!("https://{}", env.sim.api_addr),
            auth: Auth::Token {
                id: env.sim.token_id.clone(),
                secret: env.sim.token_secret.clone(),
            },
            fingerprint: Some(env.sim.fingerprint.clone()),
            ca_pem: None,
            ssh: Some(env.sim.ssh_addr.to_string()),
            ssh_user: "root".into(),
            bridge: "vmbr0".into(),
            storage: "local-lvm".into(),
        })
        .unwrap();
    let rec = hosts.sync("sim").await.unwrap();
    assert_eq!(rec.nodes.len(), 3);
    assert!(!rec.nodes.iter().find(|n| n.node == "pve2").unwrap().online);
    let p = hosts.place(None, 0).unwrap();
    assert_ne!(p.node, "pve2");
    assert_eq!(p.host, "sim");
    assert!(matches!(hosts.place(Some("pve2"), 0), Err(Error::NodeOffline { .. })));
    assert_eq!(hosts.place(Some("pve1"), 0).unwrap().node, "pve1");
    assert_eq!(hosts.host_of_node("pve3").unwrap().name, "sim");
    let (rec, client) = hosts.client_for_node("pve1").unwrap();
    assert_eq!(rec.name, "sim");
    assert_eq!(client.lxc_list("pve1").await.unwrap().len(), 0);

    // GET is retried on 503; a POST is sent once.
    env.sim.set_faults(Faults {
        http_5xx: Some(Http5xx {
            path_prefix: "/version".into(),
            status: 503,
            count: 2,
        }),
        ..Default::default()
    });
    c.version().await.expect("GET retried past two 503s");
    env.sim.set_faults(Faults {
        http_5xx: Some(Http5xx {
            path_prefix: "/nodes/pve1/aplinfo".into(),
            status: 503,
            count: 1,
        }),
        ..Default::default()
    });
    let post = c
        .aplinfo_download("pve1", "local", "alpine-3.22-default_20250617_amd64.tar.xz")
        .await;
    assert!(
        matches!(post, Err(Error::Server { status: 503, .. })),
        "POST must not be retried: {post:?}"
    );
    env.sim.set_faults(Faults::default());

    // Host unreachable: sync marks it offline.
    env.sim.shutdown().await;
    assert!(hosts.sync("sim").await.is_err());
    let rec = hosts.get("sim").unwrap().unwrap();
    assert!(!rec.online && rec.last_error.is_some());
    assert!(matches!(hosts.place(None, 0), Err(Error::NodeOffline { .. })));
}

async fn ssh_setup(env: &Env, c: &Client, vmid: u32) -> (SshKey, Arc<MemoryHostKeys>) {
    let template = alpine_template(c, "pve1").await;
    create_ct(c, "pve1", vmid, &template, "shell").await;
    let key = SshKey::generate();
    env.sim.authorize_ssh_key(&key.public_openssh()).unwrap();
    (key, Arc::new(MemoryHostKeys::default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_exec_push_set_and_exit_codes() {
    let env = start_sim(1).await;
    let c = token_client(&env.sim);
    let (key, pins) = ssh_setup(&env, &c, 130).await;
    let endpoint = env.sim.ssh_addr.to_string();
    let ssh = SshExec::connect(&endpoint, "root", &key, pins.clone()).await.unwrap();
    assert!(
        pins.pinned(&endpoint).unwrap().is_some_and(|p| p.starts_with("SHA256:")),
        "host key pinned on first use"
    );

    let out = ssh.exec(&["pct", "status", "130"]).await.unwrap();
    assert_eq!((out.status, out.stdout.trim()), (0, "status: stopped"));
    let out = ssh.pct_exec(130, &["echo", "hi"]).await.unwrap();
    assert_eq!(out.status, 255);
    assert!(out.stderr.contains("CT 130 not running"), "{out:?}");
    let out = ssh.exec(&["nosuchcmd", "x"]).await.unwrap();
    assert_eq!(out.status, 127);
    assert!(out.stderr.contains("nosuchcmd: not found"));

    let u = c.lxc_start("pve1", 130).await.unwrap();
    c.wait_task(&u, WAIT).await.unwrap();
    let out = ssh.pct_exec(130, &["hostname"]).await.unwrap();
    assert_eq!((out.status, out.stdout.trim()), (0, "shell"));
    let out = ssh.pct_exec(130, &["cat", "/nonexistent/file"]).await.unwrap();
    assert_ne!(out.status, 0);

    // Push bytes over stdin, read them back; perms are accepted.
    ssh.pct_exec(130, &["mkdir", "-p", "/opt/proximity/app"]).await.unwrap();
    let content = "services:\n  web:\n    image: nginx\n    ports: [\"8080:80\"]\n# it's \"quoted\" $(id) ; rm -rf /\n";
    ssh.pct_push(130, content.as_bytes(), "/opt/proximity/app/docker-compose.yml", Some(0o600))
        .await
        .unwrap();
    let out = ssh.pct_exec(130, &["cat", "/opt/proximity/app/docker-compose.yml"]).await.unwrap();
    assert_eq!(out.stdout, content);
    let err = ssh.pct_push(130, b"x", "/no/such/dir/file", None).await;
    assert!(matches!(err, Err(Error::CommandFailed { status: 255, .. })), "{err:?}");
    assert!(matches!(ssh.pct_push(130, b"x", "relative", None).await, Err(Error::Invalid(_))));

    // pct set --features (what a token cannot do over the API).
    ssh.pct_set_features(130, "nesting=1,keyctl=1").await.unwrap();
    let f = c.lxc_config("pve1", 130).await.unwrap().feature_map();
    assert_eq!(
        (f.get("nesting").map(String::as_str), f.get("keyctl").map(String::as_str)),
        (Some("1"), Some("1"))
    );
    assert!(matches!(
        ssh.pct_set_features(99999, "nesting=1").await,
        Err(Error::CommandFailed { .. })
    ));

    // Streaming lines and bounded output.
    let mut lines = Vec::new();
    let mut sink = |s: OutputStream, l: &str| lines.push((s, l.to_string()));
    let out = ssh
        .pct_exec_with(
            130,
            &["cat", "/opt/proximity/app/docker-compose.yml"],
            ExecOptions {
                max_output: 10,
                on_line: Some(&mut sink),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(out.truncated && out.stdout.len() == 10);
    assert_eq!(lines.len(), content.lines().count());
    assert!(lines.iter().all(|(s, _)| *s == OutputStream::Stdout));
    assert_eq!(lines[1].1, "  web:");
    ssh.close().await;

    // A dropped SSH connection is a clear error, not a hang or a fake exit status.
    env.sim.set_faults(Faults {
        ssh_drop_after_ms: Some(1500),
        ..Default::default()
    });
    let ssh = SshExec::connect(&endpoint, "root", &key, pins.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let dropped = ssh.pct_exec(130, &["hostname"]).await;
    assert!(matches!(dropped, Err(Error::Ssh { .. })), "{dropped:?}");
    env.sim.set_faults(Faults::default());
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_arguments_arrive_literally() {
    let env = start_sim(1).await;
    let c = token_client(&env.sim);
    let (key, pins) = ssh_setup(&env, &c, 140).await;
    let u = c.lxc_start("pve1", 140).await.unwrap();
    c.wait_task(&u, WAIT).await.unwrap();
    let ssh = SshExec::connect(&env.sim.ssh_addr.to_string(), "root", &key, pins).await.unwrap();
    let hostile = [
        "; rm -rf /",
        "$(id)",
        "`id`",
        "it's",
        "\"double\"",
        "line1\nline2",
        "",
        "  two  spaces  ",
        "'",
        "\\",
        "$HOME",
        "*",
        "a|b&c>d",
    ];
    // argv[0] itself hostile: reported verbatim as an unknown command, not run by a shell.
    let out = ssh.pct_exec(140, &["$(id); rm -rf", "x"]).await.unwrap();
    assert_eq!(out.status, 127);
    assert!(out.stderr.contains("$(id); rm -rf: not found"), "{out:?}");
    let mut argv = vec!["echo"];
    argv.extend(hostile.iter());
    let out = ssh.pct_exec(140, &argv).await.unwrap();
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("{}\n", hostile.join(" ")),
        "every element is one literal argument"
    );
    // A hostile file name is created literally (not interpreted) and read back.
    let dir = "/tmp/x; rm -rf $(id) 'q'";
    ssh.pct_exec(140, &["mkdir", "-p", dir]).await.unwrap();
    let file = format!("{dir}/\"f\"\n`g`");
    ssh.pct_push(140, b"payload", &file, None).await.unwrap();
    let out = ssh.pct_exec(140, &["cat", &file]).await.unwrap();
    assert_eq!((out.status, out.stdout.as_str()), (0, "payload"));
    let out = ssh.pct_exec(140, &["ls", dir]).await.unwrap();
    assert!(out.stdout.contains("\"f\""), "{out:?}");
    ssh.close().await;
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_host_key_change_is_refused() {
    let a = start_sim(1).await;
    let b = start_sim(1).await;
    let key = SshKey::generate();
    a.sim.authorize_ssh_key(&key.public_openssh()).unwrap();
    b.sim.authorize_ssh_key(&key.public_openssh()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = proximity::store::Store::open(&dir.path().join("db.redb")).unwrap();
    let pins: Arc<dyn HostKeyStore> = Arc::new(RedbHostKeys::new(store.clone()));
    let ea = a.sim.ssh_addr.to_string();
    let eb = b.sim.ssh_addr.to_string();
    SshExec::connect(&ea, "root", &key, pins.clone()).await.unwrap().close().await;
    SshExec::connect(&ea, "root", &key, pins.clone())
        .await
        .expect("same key again is fine")
        .close()
        .await;
    let pinned_a = pins.pinned(&ea).unwrap().unwrap();
    // Endpoint b now "presents a different key" than the one pinned for it.
    pins.pin(&eb, &pinned_a).unwrap();
    match SshExec::connect(&eb, "root", &key, pins.clone()).await {
        Err(Error::HostKeyMismatch { endpoint, pinned, seen }) => {
            assert_eq!(endpoint, eb);
            assert_eq!(pinned, pinned_a);
            assert_ne!(seen, pinned_a);
            let text = Error::HostKeyMismatch { endpoint, pinned, seen }.to_string();
            assert!(text.contains("changed"), "{text}");
        }
        other => panic!("host key change must be refused: {other:?}"),
    }
    // The pin is unchanged after the refusal; a key not authorized is refused too.
    assert_eq!(pins.pinned(&eb).unwrap().unwrap(), pinned_a);
    let stranger = SshKey::generate();
    assert!(matches!(
        SshExec::connect(&ea, "root", &stranger, pins).await,
        Err(Error::Ssh { .. })
    ));
    a.sim.shutdown().await;
    b.sim.shutdown().await;
}

/// The real `proximity pve-sim` binary: parse its printed fingerprint and credentials, then
/// use both auth modes and SSH (key authorized through `<state_dir>/authorized_keys`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_pve_sim_binary() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (api_port, ssh_port) = (common::free_port(), common::free_port());
    let mut cmd = Command::new(common::bin());
    cmd.args([
        "pve-sim",
        "--listen",
        &format!("127.0.0.1:{api_port}"),
        "--ssh-listen",
        &format!("127.0.0.1:{ssh_port}"),
    ])
    .args([
        "--nodes",
        "2",
        "--root-password",
        "cli-root-pw",
        "--token-secret",
        "11111111-2222-3333-4444-555555555555",
    ])
    .arg("--state-dir")
    .arg(&state);
    let mut p = common::Proc::spawn(cmd);
    let ready = tokio::task::block_in_place(|| p.wait_ready());
    assert!(ready.contains(&format!("api=127.0.0.1:{api_port}")), "{ready}");
    let fp = p
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .expect("fingerprint line")
        .trim()
        .to_string();
    let base = format!("https://127.0.0.1:{api_port}");
    let token = Client::new(ClientConfig {
        base_url: base.clone(),
        auth: Auth::Token {
            id: "root@pam!proximity".into(),
            secret: "11111111-2222-3333-4444-555555555555".into(),
        },
        tls: Tls::Fingerprint(fp.clone()),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let nodes = token.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);
    let ticket = Client::new(ClientConfig {
        base_url: base,
        auth: Auth::Ticket {
            user: "root@pam".into(),
            password: "cli-root-pw".into(),
        },
        tls: Tls::Fingerprint(fp),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    assert_eq!(ticket.version().await.unwrap(), token.version().await.unwrap());
    let key = SshKey::generate();
    std::fs::write(state.join("authorized_keys"), format!("{}\n", key.public_openssh())).unwrap();
    let ssh = SshExec::connect(&format!("127.0.0.1:{ssh_port}"), "root", &key, Arc::new(MemoryHostKeys::default()))
        .await
        .unwrap();
    let out = ssh.exec(&["pct", "status", "4242"]).await.unwrap();
    assert_ne!(out.status, 0, "{out:?}");
    let out = ssh.exec(&["uname", "-a"]).await.unwrap();
    assert_eq!(out.status, 127);
    ssh.close().await;
}

/// Older PVE wire formats (numbers as strings, errors only in the reason phrase) and the
/// request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_wire_formats_and_request_timeout() {
    let env = start_sim(1).await;
    let c = token_client(&env.sim);
    let template = alpine_template(&c, "pve1").await;
    create_ct(&c, "pve1", 160, &template, "legacy").await;
    let u = c.lxc_start("pve1", 160).await.unwrap();
    c.wait_task(&u, WAIT).await.unwrap();
    env.sim.set_faults(Faults {
        string_numbers: true,
        legacy_errors: true,
        ..Default::default()
    });
    let list = c.lxc_list("pve1").await.unwrap();
    assert_eq!(list.iter().find(|x| x.name.as_deref() == Some("legacy")).unwrap().vmid, 160);
    assert!(c.lxc_status("pve1", 160).await.unwrap().is_running());
    assert_eq!(c.next_id().await.unwrap(), 100, "lowest free id, sent as a string");
    match c.lxc_start("pve1", 160).await {
        Err(Error::Conflict { message }) => assert_eq!(message, "CT 160 already running"),
        other => panic!("message must come from the reason phrase: {other:?}"),
    }

    env.sim.set_faults(Faults {
        latency_ms: 1500,
        ..Default::default()
    });
    let slow = Client::with_options(
        ClientConfig {
            base_url: env.sim.base_url(),
            auth: Auth::Token {
                id: env.sim.token_id.clone(),
                secret: env.sim.token_secret.clone(),
            },
            tls: Tls::Fingerprint(env.sim.fingerprint.clone()),
            timeout: Duration::from_millis(400),
        },
        ClientOptions {
            retries: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let started = std::time::Instant::now();
    match slow.version().await {
        Err(Error::Transport { message, .. }) => assert!(message.contains("timed out"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(1400));
    env.sim.set_faults(Faults::default());
    env.sim.shutdown().await;
}
