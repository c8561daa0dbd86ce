//! Deploy → running → stop → start → clone → update (with backup) → backup → restore →
//! delete against the in-process simulator (loopback runtime), checking the simulator's
//! state after every step and that nothing is left behind.

mod support_platform;

use std::collections::BTreeMap;

use proximity::jobs::JobState;
use proximity::platform::{Action, BackupRequest, DeployRequest, PlatformError};
use proximity::registry::AppStatus;
use support_platform::*;

async fn get_ok(url: &str) -> (u16, String) {
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = c.get(url).send().await.expect("GET");
    let s = r.status().as_u16();
    (s, r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_against_the_simulator() {
    let dir = tmp();
    let sim = start_sim(dir.path(), 1, 0).await;
    let info = SimInfo::of(&sim);
    let env = platform(&data(dir.path()), &info, Some(&sim), 4).await;
    let p = &env.platform;
    let me = user();

    // Validation errors are 422/409 before any job exists.
    let bad = p
        .deploy(
            &me,
            DeployRequest {
                catalog_id: "web".into(),
                hostname: "Bad_Name".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(bad.status(), 422, "{bad}");
    let bad = p
        .deploy(
            &me,
            DeployRequest {
                catalog_id: "nope".into(),
                hostname: "x1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(bad, PlatformError::Invalid { .. }), "{bad}");
    let too_small = p
        .deploy(
            &me,
            DeployRequest {
                catalog_id: "web".into(),
                hostname: "small".into(),
                resources: Some(proximity::registry::Resources {
                    cores: 1,
                    memory_mb: 64,
                    disk_gb: 2,
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(too_small.status(), 422);

    // Deploy.
    let (app, job) = p
        .deploy(
            &me,
            DeployRequest {
                catalog_id: "duo".into(),
                hostname: "shop".into(),
                values: BTreeMap::from([("TITLE".into(), "Shop".into())]),
                ..Default::default()
            },
        )
        .await
        .expect("deploy accepted");
    assert_eq!(app.status, AppStatus::Pending);
    assert_eq!(app.forwards.len(), 1);
    // The reservation is in the plan immediately.
    assert!(
        env.ctx
            .plan
            .current()
            .reservations
            .iter()
            .any(|r| r.mac == app.mac && r.ip == app.ip)
    );
    let dup = p
        .deploy(
            &me,
            DeployRequest {
                catalog_id: "web".into(),
                hostname: "shop".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(dup.status(), 409, "{dup}");
    let j = wait_ok(p, &job, 120).await;
    assert_eq!(j.progress, 100);
    assert!(
        j.steps.iter().all(|s| s.started_at.is_some() && s.finished_at.is_some()),
        "{:?}",
        j.steps
    );
    let app = p.app(&app.id).unwrap();
    assert_eq!(app.status, AppStatus::Running, "{:?}", app.error);
    let vmid = app.vmid.unwrap();
    let cts = sim_cts(&sim);
    assert!(cts.iter().any(|c| c.1 == vmid && c.2 == "running"), "{cts:?}");
    // The CT was created the Docker way.
    let cfg = p
        .backend("sim")
        .unwrap()
        .ct_config(app.node.as_deref().unwrap(), vmid)
        .await
        .unwrap();
    assert!(
        cfg.get("features")
            .is_some_and(|f| f.contains("nesting=1") && f.contains("keyctl=1")),
        "{cfg:?}"
    );
    assert_eq!(cfg.get("unprivileged").map(String::as_str), Some("1"));
    let net0 = cfg.get("net0").unwrap().to_ascii_lowercase();
    assert!(
        net0.contains(&format!("hwaddr={}", app.mac)) && net0.contains("ip=dhcp") && net0.contains("bridge=proximity-lan"),
        "{net0}"
    );
    // The app answers where the plan routes it.
    let up = app.upstream();
    let (s, body) = get_ok(&format!("http://{up}:8080/")).await;
    assert_eq!(s, 200);
    assert!(body.contains("shop"), "{body}");
    let route = env.ctx.plan.current().routes.iter().find(|r| r.app_id == app.id).cloned().unwrap();
    assert_eq!(route.upstream.ip(), std::net::IpAddr::V4(up));
    // Logs and safe commands.
    assert!(p.exec_safe(&app.id, "ps").await.unwrap().status == 0);
    assert_eq!(p.exec_safe(&app.id, "sh -c reboot").await.unwrap_err().status(), 422);
    let _ = p.logs(&app.id, 50).await.expect("logs");
    // Job logs are structured and stored.
    let logs = p.jobs().logs(&job.id).unwrap();
    assert!(logs.iter().any(|l| l.step.as_deref() == Some("create_ct")), "{logs:?}");

    // Stop.
    let j = p.action(&me, &app.id, Action::Stop).await.unwrap();
    wait_ok(p, &j, 60).await;
    assert_eq!(p.app(&app.id).unwrap().status, AppStatus::Stopped);
    assert!(sim_cts(&sim).iter().any(|c| c.1 == vmid && c.2 == "stopped"));
    assert!(get_ok_err(&format!("http://{up}:8080/")).await, "app still answers after stop");

    // Start.
    let j = p.action(&me, &app.id, Action::Start).await.unwrap();
    wait_ok(p, &j, 60).await;
    let app = p.app(&app.id).unwrap();
    assert_eq!(app.status, AppStatus::Running);
    assert_eq!(get_ok(&format!("http://{}:8080/healthz", app.upstream())).await.0, 200);

    // Clone: new hostname, MAC, address, ports, CT.
    let (clone, j) = p.clone_app(&me, &app.id, "shop-copy").await.unwrap();
    wait_ok(p, &j, 120).await;
    let clone = p.app(&clone.id).unwrap();
    assert_eq!(clone.status, AppStatus::Running, "{:?}", clone.error);
    assert_ne!(clone.mac, app.mac);
    assert_ne!(clone.ip, app.ip);
    assert_ne!(clone.vmid, app.vmid);
    assert_ne!(clone.forwards[0].public, app.forwards[0].public);
    let (s, body) = get_ok(&format!("http://{}:8080/", clone.upstream())).await;
    assert_eq!(s, 200);
    assert!(body.contains("shop-copy"), "{body}");
    assert_eq!(p.app(&app.id).unwrap().status, AppStatus::Running, "source untouched");

    // Update: backup first, then pull + up, healthy.
    let backups_before = p.list_backups(&app.id).await.unwrap().len();
    let j = p.update(&me, &app.id).await.unwrap();
    let j = wait_ok(p, &j, 120).await;
    assert!(j.data.get("rollback").is_some(), "update took a backup");
    assert_eq!(p.list_backups(&app.id).await.unwrap().len(), backups_before + 1);
    assert_eq!(p.app(&app.id).unwrap().status, AppStatus::Running);

    // Backup (stop mode, gzip), list/get/stats.
    let j = p
        .create_backup(
            &me,
            &app.id,
            BackupRequest {
                mode: proximity::platform::BackupMode::Stop,
                compression: proximity::platform::Compression::Gzip,
            },
        )
        .await
        .unwrap();
    wait_ok(p, &j, 120).await;
    let list = p.list_backups(&app.id).await.unwrap();
    assert_eq!(list.len(), backups_before + 2);
    assert!(list.iter().all(|b| b.vmid == vmid));
    let b = p.get_backup(&app.id, &list[0].id).await.unwrap();
    assert_eq!(b.volid, list[0].volid);
    let stats = p.backup_stats(&app.id).await.unwrap();
    assert_eq!(stats.total_backups, list.len());
    assert_eq!(p.app(&app.id).unwrap().status, AppStatus::Running);

    // Restore (stops the app, restores, starts it again).
    let j = p.restore_backup(&me, &app.id, &b.id).await.unwrap();
    wait_ok(p, &j, 120).await;
    let app = p.app(&app.id).unwrap();
    assert_eq!(app.status, AppStatus::Running, "{:?}", app.error);
    assert!(sim_cts(&sim).iter().any(|c| c.1 == vmid && c.2 == "running"));

    // Delete backup.
    let j = p.delete_backup(&me, &app.id, &b.id).await.unwrap();
    wait_ok(p, &j, 60).await;
    assert_eq!(p.list_backups(&app.id).await.unwrap().len(), list.len() - 1);

    // Delete both apps (with their backups): nothing left behind.
    for id in [&clone.id, &app.id] {
        let j = p.delete(&me, id, true).await.unwrap();
        let j = wait_ok(p, &j, 120).await;
        assert_eq!(j.state, JobState::Succeeded);
        assert_eq!(p.app(id).unwrap_err().status(), 404);
    }
    assert!(p.apps().unwrap().is_empty());
    let cts = sim_cts(&sim);
    assert!(cts.is_empty(), "containers left: {cts:?}");
    let plan = env.ctx.plan.current();
    assert!(
        plan.reservations.is_empty() && plan.routes.is_empty() && plan.forwards.is_empty(),
        "{plan:?}"
    );
    drop(env);
    sim.shutdown().await;
}

/// True when the URL does not answer 200.
async fn get_ok_err(url: &str) -> bool {
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    !matches!(c.get(url).send().await, Ok(r) if r.status().is_success())
}
