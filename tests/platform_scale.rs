//! 50 parallel deploys across 3 simulated nodes complete; placement follows free memory
//! (pve2 has half the memory of pve1/pve3) and a requested node is honoured.

mod support_platform;

use std::collections::BTreeMap;

use proximity::platform::DeployRequest;
use proximity::registry::AppStatus;
use support_platform::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_deploys_on_three_nodes() {
    let dir = tmp();
    let sim = start_sim(dir.path(), 3, 0).await;
    let info = SimInfo::of(&sim);
    let env = platform(&data(dir.path()), &info, Some(&sim), 8).await;
    let p = &env.platform;
    let me = user();
    let free_before: BTreeMap<String, u64> = p
        .backend("sim")
        .unwrap()
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.name.clone(), n.free_mem()))
        .collect();

    let mut jobs = vec![];
    for i in 0..50 {
        let (_, j) = p
            .deploy(
                &me,
                DeployRequest {
                    catalog_id: "big".into(),
                    hostname: format!("app{i:02}"),
                    node: (i == 0).then(|| "pve2".to_string()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        jobs.push(j);
    }
    for j in &jobs {
        wait_ok(p, j, 300).await;
    }
    let apps = p.apps().unwrap();
    assert_eq!(apps.len(), 50);
    assert!(apps.iter().all(|a| a.status == AppStatus::Running));
    let first = apps.iter().find(|a| a.hostname == "app00").unwrap();
    assert_eq!(first.node.as_deref(), Some("pve2"), "requested node honoured");
    let mut per_node: BTreeMap<String, u64> = BTreeMap::new();
    for a in &apps {
        *per_node.entry(a.node.clone().unwrap()).or_default() += (a.resources.memory_mb as u64) << 20;
    }
    eprintln!("placement (bytes promised per node): {per_node:?}; free before: {free_before:?}");
    for (node, used) in &per_node {
        assert!(*used <= free_before[node], "{node} over-committed");
    }
    let count = |n: &str| apps.iter().filter(|a| a.node.as_deref() == Some(n)).count();
    assert!(
        count("pve1") > count("pve2") && count("pve3") > count("pve2"),
        "pve1 {} pve2 {} pve3 {}",
        count("pve1"),
        count("pve2"),
        count("pve3")
    );
    // One CT per app, distinct addresses.
    let cts = sim_cts(&sim);
    assert_eq!(cts.len(), 50);
    let mut vmids: Vec<u32> = apps.iter().map(|a| a.vmid.unwrap()).collect();
    vmids.sort();
    vmids.dedup();
    assert_eq!(vmids.len(), 50);
    assert_eq!(env.ctx.plan.current().routes.len(), 50);
    drop(env);
    sim.shutdown().await;
}
