//! Discovery and adoption of unmanaged containers, reconciliation of status drift and
//! vanished containers (never deleting data), the janitor, and scheduled backups with
//! retention — against the simulator.

mod support_platform;

use std::time::Duration;

use proximity::jobs::JobState;
use proximity::platform::backend::CreateCt;
use proximity::platform::scheduler::{Task, fire};
use proximity::platform::{AdoptRequest, DeployRequest};
use proximity::registry::{APPS, AppStatus};
use support_platform::*;

async fn fire_and_wait(p: &proximity::platform::Platform, t: Task) -> usize {
    let ids = fire(p, t).await;
    for id in &ids {
        let j = p.jobs().wait(id, Duration::from_secs(120)).await.unwrap();
        assert_eq!(j.state, JobState::Succeeded, "{t:?}: {:?}", j.error);
    }
    ids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_reconcile_janitor_and_scheduled_backups() {
    let dir = tmp();
    let sim = start_sim(dir.path(), 2, 0).await;
    let info = SimInfo::of(&sim);
    let env = platform(&data(dir.path()), &info, Some(&sim), 4).await;
    let p = &env.platform;
    let me = user();
    let (app, job) = p
        .deploy(
            &me,
            DeployRequest {
                catalog_id: "web".into(),
                hostname: "kept".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    wait_ok(p, &job, 120).await;
    let app = p.app(&app.id).unwrap();
    let node = app.node.clone().unwrap();

    // A container created outside Proximity.
    let b = p.backend("sim").unwrap();
    let tmpl = b.storage_content(&node, "local", "vztmpl").await.unwrap()[0].volid.clone();
    let foreign = b.next_vmid().await.unwrap();
    b.create_ct(
        &node,
        &CreateCt {
            vmid: foreign,
            ostemplate: tmpl,
            hostname: "legacy".into(),
            cores: 1,
            memory_mb: 256,
            swap_mb: 0,
            rootfs: "local-lvm:2".into(),
            net0: "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:42,ip=dhcp".into(),
            unprivileged: true,
            features: "nesting=1".into(),
            onboot: false,
            description: "hand made".into(),
            tags: String::new(),
        },
    )
    .await
    .unwrap();
    b.start_ct(&node, foreign).await.unwrap();

    let found = p.discover().await.unwrap();
    assert!(
        found.iter().any(|u| u.vmid == foreign && u.name == "legacy" && !u.ours),
        "{found:?}"
    );
    assert!(!found.iter().any(|u| Some(u.vmid) == app.vmid), "managed CT listed as unmanaged");
    let (adopted, j) = p
        .adopt(
            &me,
            AdoptRequest {
                vmid: foreign,
                web_port: Some(8080),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    wait_ok(p, &j, 60).await;
    let adopted = p.app(&adopted.id).unwrap();
    assert!(adopted.adopted);
    assert_eq!(adopted.status, AppStatus::Running);
    assert_eq!(adopted.mac, "bc:24:11:00:00:42", "keeps its MAC for the reservation");
    assert!(env.ctx.plan.current().reservations.iter().any(|r| r.mac == adopted.mac));
    assert!(!p.discover().await.unwrap().iter().any(|u| u.vmid == foreign));

    // Drift: stopped behind our back → reconcile marks it stopped.
    b.stop_ct(&node, app.vmid.unwrap()).await.unwrap();
    assert_eq!(fire_and_wait(p, Task::Reconcile).await, 1);
    assert_eq!(p.app(&app.id).unwrap().status, AppStatus::Stopped);
    b.start_ct(&node, app.vmid.unwrap()).await.unwrap();
    fire_and_wait(p, Task::Reconcile).await;
    assert_eq!(p.app(&app.id).unwrap().status, AppStatus::Running);
    // Vanished container → missing, record kept.
    b.stop_ct(&node, foreign).await.unwrap();
    b.delete_ct(&node, foreign).await.unwrap();
    fire_and_wait(p, Task::Reconcile).await;
    let gone = p.app(&adopted.id).unwrap();
    assert_eq!(gone.status, AppStatus::Missing);
    assert!(gone.error.unwrap().contains("not found"));

    // Janitor: an app stuck in a busy state without a live job becomes error.
    let mut stuck = p.app(&adopted.id).unwrap();
    stuck.status = AppStatus::Deploying;
    stuck.job_id = Some("job-doesnotexist".into());
    env.ctx.store.put(APPS, &stuck.id, &stuck).unwrap();
    fire_and_wait(p, Task::Janitor).await;
    let s = p.app(&adopted.id).unwrap();
    assert_eq!(s.status, AppStatus::Error);
    assert!(s.error.unwrap().contains("janitor"));
    p.cleanup(&adopted.id).await.unwrap();

    // Scheduled backups with retention (keep_backups = 3 in the test config).
    for _ in 0..4 {
        assert_eq!(fire_and_wait(p, Task::Backup).await, 1);
        tokio::time::sleep(Duration::from_millis(1100)).await; // distinct vzdump file names
    }
    let backups = p.list_backups(&app.id).await.unwrap();
    assert_eq!(backups.len(), 3, "{backups:?}");
    assert_eq!(p.app(&app.id).unwrap().status, AppStatus::Running);
    assert_eq!(p.backup_stats(&app.id).await.unwrap().keep, 3);

    let j = p.delete(&me, &app.id, true).await.unwrap();
    wait_ok(p, &j, 60).await;
    assert!(sim_cts(&sim).is_empty(), "{:?}", sim_cts(&sim));
    drop(env);
    sim.shutdown().await;
}
