//! Update rolls back to its pre-update backup when the app is unhealthy afterwards.

mod support_platform;

use std::sync::atomic::Ordering;

use proximity::jobs::JobState;
use proximity::platform::DeployRequest;
use proximity::registry::AppStatus;
use support_platform::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_update_is_rolled_back() {
    let dir = tmp();
    let sim = start_sim(dir.path(), 1, 0).await;
    let info = SimInfo::of(&sim);
    let env = platform(&data(dir.path()), &info, Some(&sim), 2).await;
    let p = &env.platform;
    let me = user();
    let (app, job) = p
        .deploy(
            &me,
            DeployRequest {
                catalog_id: "web".into(),
                hostname: "upd".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    wait_ok(p, &job, 120).await;
    let app = p.app(&app.id).unwrap();
    WEB_UNHEALTHY.store(true, Ordering::SeqCst);
    let j = p.update(&me, &app.id).await.unwrap();
    let j = wait(p, &j, 120).await;
    WEB_UNHEALTHY.store(false, Ordering::SeqCst);
    assert_eq!(j.state, JobState::Failed);
    let err = j.error.clone().unwrap();
    assert!(err.contains("step health_or_rollback") && err.contains("rolled back"), "{err}");
    let backup: String = serde_json::from_value(j.data["rollback"].clone()).unwrap();
    assert!(backup.contains(&format!("vzdump-lxc-{}-", app.vmid.unwrap())), "{backup}");
    let a = p.app(&app.id).unwrap();
    assert_eq!(a.status, AppStatus::Running, "rolled back app runs");
    assert!(a.error.unwrap().contains("rolled back"));
    assert!(sim_cts(&sim).iter().any(|c| Some(c.1) == a.vmid && c.2 == "running"));
    let logs = p.jobs().logs(&j.id).unwrap();
    assert!(logs.iter().any(|l| l.message.contains("rolling back")), "{logs:?}");
    drop(env);
    sim.shutdown().await;
}
