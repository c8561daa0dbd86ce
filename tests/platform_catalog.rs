//! Every app of the built-in catalog deploys against the simulator: rendered compose and
//! .env pushed, `docker compose up -d`, health check passes, app running; then deleted.

mod support_platform;

use std::collections::BTreeMap;
use std::sync::Arc;

use proximity::catalog::Catalog;
use proximity::catalog::model::FieldType;
use proximity::jobs::Jobs;
use proximity::platform::{DeployRequest, Platform};
use proximity::registry::AppStatus;
use support_platform::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalog_app_deploys() {
    let dir = tmp();
    let sim = start_sim(dir.path(), 3, 0).await;
    let info = SimInfo::of(&sim);
    let ctx = context(&data(dir.path()), 8);
    let (hosts, key) = register(&ctx, &info).await;
    sim.authorize_ssh_key(&key).unwrap();
    let catalog = Catalog::builtin().expect("built-in catalog loads");
    let entries = catalog.list();
    assert!(entries.len() >= 25, "only {} catalog apps", entries.len());
    let jobs = Jobs::new(ctx.store.clone(), ctx.events.clone(), &ctx.config.jobs);
    let p = Platform::new(ctx.clone(), Arc::new(catalog), hosts, jobs.clone());
    let stop = CancellationToken::new();
    tokio::spawn(jobs.clone().run(p.handler(), stop.clone()));
    let me = user();

    let mut submitted = vec![];
    for e in &entries {
        let mut values = BTreeMap::new();
        for v in e.env.iter().filter(|v| v.required && v.default.is_none() && v.secret.is_none()) {
            let Some(f) = &v.field else { continue };
            let val = match f.kind {
                FieldType::Email => "admin@example.com".to_string(),
                FieldType::Number => "1".to_string(),
                FieldType::Select => f.options.first().cloned().unwrap_or_default(),
                FieldType::Password => "Correct-Horse-Battery-9".to_string(),
                FieldType::Text => "test".to_string(),
            };
            values.insert(v.name.clone(), val);
        }
        let hostname = format!("t-{}", e.id);
        let (app, job) = p
            .deploy(
                &me,
                DeployRequest {
                    catalog_id: e.id.clone(),
                    hostname,
                    values,
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|err| panic!("{}: deploy refused: {err:?}", e.id));
        submitted.push((e.id.clone(), app, job));
    }
    let mut failures = vec![];
    for (id, app, job) in &submitted {
        let j = wait(&p, job, 300).await;
        let a = p.app(&app.id).unwrap();
        if a.status != AppStatus::Running {
            failures.push(format!("{id}: {:?} {:?}", a.status, j.error));
            continue;
        }
        // The rendered files are in the container.
        let l = p.backend("sim").unwrap();
        let dir = format!("/opt/proximity/{}", a.hostname);
        let out = l
            .pct_exec(a.vmid.unwrap(), &["cat".into(), format!("{dir}/docker-compose.yml")])
            .await
            .unwrap();
        assert_eq!(out.status, 0, "{id}: compose file missing");
        assert!(out.stdout.contains("services"), "{id}");
    }
    assert!(failures.is_empty(), "apps that did not deploy:\n{}", failures.join("\n"));
    // Delete them all; nothing left.
    for (_, app, _) in &submitted {
        let j = p.delete(&me, &app.id, true).await.unwrap();
        wait_ok(&p, &j, 120).await;
    }
    assert!(sim_cts(&sim).is_empty());
    stop.cancel();
    sim.shutdown().await;
}
