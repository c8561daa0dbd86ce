//! Failure paths: a fault injected into the simulator at each pipeline step ends the deploy
//! in `error` with the step and the reason (and the PVE task output); retry re-runs the
//! job from the failed step; cleanup leaves nothing behind.

mod support_platform;

use proximity::jobs::JobState;
use proximity::platform::DeployRequest;
use proximity::registry::AppStatus;
use proximity::sim::{Faults, Http5xx, TaskFault};
use support_platform::*;

fn task_fault(kind: &str, message: &str) -> Faults {
    Faults {
        fail_tasks: vec![TaskFault {
            kind: kind.into(),
            message: message.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_failure_ends_in_error_with_step_and_reason() {
    let dir = tmp();
    let sim = start_sim(dir.path(), 2, 0).await;
    let info = SimInfo::of(&sim);
    let env = platform(&data(dir.path()), &info, Some(&sim), 4).await;
    let p = &env.platform;
    let me = user();

    // (catalog id, hostname, faults, failing step, text expected in the error)
    let cases: Vec<(&str, &str, Faults, &str, &str)> = vec![
        (
            "web",
            "f-place",
            Faults {
                offline_nodes: vec!["pve1".into(), "pve2".into()],
                ..Default::default()
            },
            "place",
            "no online",
        ),
        (
            "web",
            "f-vmid",
            Faults {
                http_5xx: Some(Http5xx {
                    path_prefix: "/api2/json/cluster/nextid".into(),
                    status: 500,
                    count: 1000,
                }),
                ..Default::default()
            },
            "vmid",
            "500",
        ),
        (
            "web",
            "f-template",
            task_fault("download", "template mirror unreachable"),
            "template",
            "template mirror unreachable",
        ),
        (
            "web",
            "f-create",
            task_fault("vzcreate", "storage full"),
            "create_ct",
            "storage full",
        ),
        ("web", "f-start", task_fault("vzstart", "cgroup error"), "start", "cgroup error"),
        ("broken", "f-compose", Faults::default(), "compose_up", "docker compose"),
        ("sick", "f-health", Faults::default(), "health", "not healthy"),
    ];
    let mut failed_apps = vec![];
    for (cat, host, faults, step, text) in cases {
        sim.set_faults(faults);
        let (app, job) = p
            .deploy(
                &me,
                DeployRequest {
                    catalog_id: cat.into(),
                    hostname: host.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let j = wait(p, &job, 120).await;
        sim.set_faults(Faults::default());
        assert_eq!(j.state, JobState::Failed, "{host}: {j:?}");
        let err = j.error.clone().unwrap();
        assert!(err.starts_with(&format!("step {step}:")), "{host}: {err}");
        assert!(err.contains(text), "{host}: `{text}` not in {err}");
        let a = p.app(&app.id).unwrap();
        assert_eq!(a.status, AppStatus::Error, "{host}");
        assert_eq!(a.error.as_deref(), Some(err.as_str()));
        failed_apps.push((app.id.clone(), host, step));
    }

    // Retry after the fault is gone continues at the failed step and reaches running.
    let (start_app, _, _) = failed_apps.iter().find(|(_, h, _)| *h == "f-start").cloned().unwrap();
    let j = p.retry(&start_app).await.unwrap();
    let j = wait_ok(p, &j, 120).await;
    assert!(j.attempts >= 1);
    let create = j.steps.iter().find(|s| s.name == "create_ct").unwrap();
    assert!(create.finished_at.unwrap() < j.steps.iter().find(|s| s.name == "start").unwrap().started_at.unwrap());
    assert_eq!(p.app(&start_app).unwrap().status, AppStatus::Running);

    // Cleanup of every failed app (delete for those with a container) leaves nothing.
    let ids: Vec<String> = p.apps().unwrap().into_iter().map(|a| a.id).collect();
    for id in ids {
        let a = p.app(&id).unwrap();
        if a.vmid.is_some() {
            let j = p.delete(&me, &id, true).await.unwrap();
            wait_ok(p, &j, 120).await;
        } else {
            p.cleanup(&id).await.unwrap();
        }
    }
    assert!(p.apps().unwrap().is_empty());
    assert!(sim_cts(&sim).is_empty(), "{:?}", sim_cts(&sim));
    assert!(env.ctx.plan.current().reservations.is_empty());
    drop(env);
    sim.shutdown().await;
}
