//! The in-process simulator API used by the demo and other teams' tests: `sim::start`,
//! `SimHandle` (addresses, fingerprint, credentials), `authorize_ssh_key`, `set_faults`
//! (SSH connection drop, slow tasks), `state_snapshot`, `pct enter` over a pty, `shutdown`.

mod common;
mod sim_util;

use std::time::{Duration, Instant};

use proximity::sim::{self, Faults, SimConfig};
use sim_util::{Api, Auth, Ssh, alpine_template};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_handle_faults_and_pty_shell() {
    let dir = tempfile::tempdir().unwrap();
    let h = sim::start(SimConfig {
        nodes: 2,
        task_delay_ms: 5,
        ..SimConfig::new(dir.path().join("state"))
    })
    .await
    .unwrap();
    assert_eq!(h.token_id, "root@pam!proximity");
    assert_eq!(h.fingerprint.len(), 95);
    let api = Api::new(&h.base_url(), Auth::Token(format!("PVEAPIToken={}={}", h.token_id, h.token_secret)));
    let before = h.state_snapshot();
    assert_eq!(before["nodes"].as_array().unwrap().len(), 2);

    let tpl = alpine_template(&api, "pve2").await;
    api.run_ok("POST", "/nodes/pve2/aplinfo", &[("storage", "local"), ("template", &tpl)])
        .await;
    api.run_ok(
        "POST",
        "/nodes/pve2/lxc",
        &[
            ("vmid", "140"),
            ("ostemplate", &format!("local:vztmpl/{tpl}")),
            ("hostname", "shell1"),
            ("rootfs", "local-lvm:4"),
            ("start", "1"),
        ],
    )
    .await;
    let after = h.state_snapshot();
    assert_eq!(after["cts"]["140"]["node"], "pve2");
    assert_eq!(after["cts"]["140"]["running"], true);

    // Keys added through the handle work; the host key is stable for the state dir.
    let key = russh::keys::PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[3u8; 32]));
    h.authorize_ssh_key(&key.public_key().to_openssh().unwrap()).unwrap();
    assert!(h.authorize_ssh_key("not a key").is_err());
    let ssh = Ssh::key(&h.ssh_addr.to_string(), key.clone()).await.unwrap();
    assert_eq!(ssh.exec("pct exec 140 -- hostname", None).await.stdout, "shell1\n");

    // pct enter: an interactive shell on a pty in the CT's directory.
    let mut ch = ssh.handle().channel_open_session().await.unwrap();
    ch.request_pty(true, "xterm", 80, 24, 0, 0, &[]).await.unwrap();
    ch.exec(true, "pct enter 140").await.unwrap();
    let marker = format!("hello-{}", std::process::id());
    ch.data(format!("echo {marker}; ls /opt >/dev/null 2>&1; pwd\n").as_bytes())
        .await
        .unwrap();
    ch.window_change(100, 30, 0, 0).await.unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let printed = |s: &str| s.lines().any(|l| l.trim().ends_with(&marker) && !l.contains("echo"));
    while !printed(&seen) && Instant::now() < deadline {
        if let Ok(Some(russh::ChannelMsg::Data { data })) = tokio::time::timeout(Duration::from_millis(500), ch.wait()).await {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(printed(&seen), "shell output: {seen:?}");
    ch.data(&b"exit\n"[..]).await.unwrap();
    let mut status = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while status.is_none() && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), ch.wait()).await {
            Ok(Some(russh::ChannelMsg::ExitStatus { exit_status })) => status = Some(exit_status),
            Ok(None) => break,
            _ => {}
        }
    }
    assert_eq!(status, Some(0), "shell exit status");
    let o = ssh.exec("pct enter 140", None).await;
    assert_eq!(o.status, 255, "pct enter without a pty is refused");

    // Faults through the handle: slow tasks, SSH drops.
    h.set_faults(Faults {
        slow_task_ms: Some(400),
        ..Default::default()
    });
    let t0 = Instant::now();
    api.run_ok("POST", "/nodes/pve2/lxc/140/status/stop", &[]).await;
    assert!(t0.elapsed() >= Duration::from_millis(400));
    h.set_faults(Faults {
        ssh_drop_after_ms: Some(300),
        ..Default::default()
    });
    let dropped = Ssh::key(&h.ssh_addr.to_string(), key.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut failed = false;
    match dropped.handle().channel_open_session().await {
        Err(_) => failed = true,
        Ok(ch) => {
            if ch.exec(true, "pct status 140").await.is_err() {
                failed = true;
            }
        }
    }
    assert!(failed || dropped.handle().is_closed(), "session should be dropped");
    h.set_faults(Faults::default());
    assert_eq!(h.faults(), Faults::default());

    let state_dir = h.state_dir();
    let host_key = h.ssh_host_key.clone();
    h.shutdown().await;
    // A restart on the same state directory keeps the certificate, host key and CTs.
    let h2 = sim::start(SimConfig::new(state_dir)).await.unwrap();
    assert_eq!(h2.ssh_host_key, host_key);
    assert_eq!(h2.state_snapshot()["cts"]["140"]["running"], false);
    h2.shutdown().await;
}
