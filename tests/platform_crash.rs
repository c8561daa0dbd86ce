//! Crash safety: the platform runs in a child process (this test binary re-executed as a
//! helper) deploying 10 apps in parallel; it is SIGKILLed mid-way; a new platform on the
//! same data directory recovers. Every job ends succeeded or failed with a reason, every
//! app running or error, no duplicate containers, no leaked reservations.

mod support_platform;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proximity::jobs::{JobKind, JobState};
use proximity::platform::DeployRequest;
use proximity::registry::AppStatus;
use support_platform::*;

const CHILD_ENV: &str = "PROXIMITY_PLATFORM_CRASH_CHILD";

/// Helper run only inside the child process (does nothing in a normal test run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_helper() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let (info, data_dir): (SimInfo, std::path::PathBuf) = serde_json::from_str(&spec).unwrap();
    let env = platform(&data_dir, &info, None, 4).await;
    let me = user();
    for i in 0..10 {
        let (_, job) = env
            .platform
            .deploy(
                &me,
                DeployRequest {
                    catalog_id: "web".into(),
                    hostname: format!("crash{i}"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        println!("JOB {}", job.id);
    }
    println!("SUBMITTED");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_parallel_deploys_recovers_cleanly() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tmp();
    let sim = start_sim(dir.path(), 2, 30).await;
    let info = SimInfo::of(&sim);
    let data_dir = data(dir.path());
    {
        // Register the host and authorize our SSH key once, then release the database.
        let ctx = context(&data_dir, 4);
        let (_, key) = register(&ctx, &info).await;
        sim.authorize_ssh_key(&key).unwrap();
    }
    let spec = serde_json::to_string(&(&info, &data_dir)).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child_helper", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut submitted = false;
    while started.elapsed() < Duration::from_secs(60) && !submitted {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            submitted = l.contains("SUBMITTED");
        }
    }
    assert!(submitted, "child did not submit its deploys");
    // Kill once some containers exist but (very likely) not all deploys finished.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) && sim_cts(&sim).len() < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL, by PID
    let _ = child.wait();
    let cts_at_kill = sim_cts(&sim).len();
    eprintln!("killed with {cts_at_kill} containers created");

    // Restart on the same data directory.
    let env = platform(&data_dir, &info, Some(&sim), 4).await;
    let p = &env.platform;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let jobs = p.jobs().list(None).unwrap();
        if jobs.iter().all(|j| j.state.is_terminal()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let jobs = p.jobs().list(None).unwrap();
    assert_eq!(jobs.iter().filter(|j| j.kind == JobKind::Deploy).count(), 10);
    for j in &jobs {
        assert!(j.state.is_terminal(), "job {} left {:?}", j.id, j.state);
        if j.state != JobState::Succeeded {
            assert!(
                j.error.as_ref().is_some_and(|e| !e.is_empty()),
                "job {} failed without reason",
                j.id
            );
        }
    }
    // The kill interrupted work in progress: some jobs were resumed (or failed) by recovery.
    let recovered = jobs
        .iter()
        .filter(|j| {
            p.jobs()
                .logs(&j.id)
                .unwrap()
                .iter()
                .any(|l| l.message.contains("resumed after a restart") || l.message.contains("interrupted by a restart"))
        })
        .count();
    assert!(recovered >= 1, "no job was interrupted by the kill");
    eprintln!("{recovered} jobs went through start-up recovery");
    let apps = p.apps().unwrap();
    assert_eq!(apps.len(), 10);
    for a in &apps {
        assert!(
            a.status == AppStatus::Running || (a.status == AppStatus::Error && a.error.is_some()),
            "{} is {:?} ({:?})",
            a.hostname,
            a.status,
            a.error
        );
    }
    // Retry whatever failed: all end running.
    for a in apps.iter().filter(|a| a.status == AppStatus::Error) {
        let j = p.retry(&a.id).await.unwrap();
        wait_ok(p, &j, 120).await;
    }
    let apps = p.apps().unwrap();
    assert!(apps.iter().all(|a| a.status == AppStatus::Running));
    // No duplicate or orphan containers: one CT per app, matching vmid and hostname.
    let cts = sim_cts(&sim);
    assert_eq!(cts.len(), 10, "{cts:?}");
    for a in &apps {
        let mine: Vec<_> = cts.iter().filter(|c| c.3 == a.hostname).collect();
        assert_eq!(mine.len(), 1, "{}: {mine:?}", a.hostname);
        assert_eq!(Some(mine[0].1), a.vmid);
    }
    // No leaked reservations: exactly one per app, all distinct.
    let plan = env.ctx.plan.current();
    assert_eq!(plan.reservations.len(), 10);
    let mut ips: Vec<_> = plan.reservations.iter().map(|r| r.ip).collect();
    ips.dedup();
    assert_eq!(ips.len(), 10);
    drop(env);
    sim.shutdown().await;
}
