//! Routes change live under load. In-process daemon (`daemon::start_with`) because the
//! running daemon holds the redb file locked: the test writes registry records through the
//! daemon's own `Store` and calls `ctx.plan.refresh`, exactly what the platform does after a
//! deploy or delete. pingora, the listeners and the clients are the real ones.

mod proxy_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proxy_support::*;

fn wait_status(port: u16, host: &str, want: u16, within: Duration) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        let got = http_get(port, host, "/").unwrap_or((0, String::new()));
        if got.0 == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn route_added_and_removed_under_load_without_failures() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stable = rt.block_on(Backend::start("stable", "127.0.0.1:0".parse().unwrap()));
    let newer = rt.block_on(Backend::start("newer", "127.0.0.1:0".parse().unwrap()));
    let p = Ports::new();
    let cfg = proximity::config::Config::from_toml_str(&config_text(dir.path(), p, 1)).unwrap();
    let store = proximity::store::Store::open(&cfg.db_path()).unwrap();
    let stable_app = app("app-111111111111", "stable", stable.addr, &[], false);
    store.put(proximity::registry::APPS, &stable_app.id, &stable_app).unwrap();
    let ctx = proximity::supervisor::Context::new(cfg, store.clone()).unwrap();
    let mut sup = rt.block_on(proximity::daemon::start_with(ctx.clone())).expect("daemon starts");

    let (c, b) = http_get(p.http, "stable.prox.local", "/").unwrap();
    assert_eq!(c, 200, "{b}");
    assert_eq!(http_get(p.http, "newer.prox.local", "/").unwrap().0, 404);

    // Bounded load on the unchanged route: 2 clients, at most 2000 requests each / 30 s.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                for _ in 0..2000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    match http_get(p.http, "stable.prox.local", "/") {
                        Ok((200, body)) if body.starts_with("backend-stable") => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.lock().unwrap().push(format!("{other:?}")),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // Add a route.
    let newer_app = app("app-222222222222", "newer", newer.addr, &["newer-alias"], false);
    store.put(proximity::registry::APPS, &newer_app.id, &newer_app).unwrap();
    ctx.plan.refresh(&store).unwrap();
    let (c, b) = wait_status(p.http, "newer.prox.local", 200, Duration::from_secs(3));
    assert_eq!(c, 200, "added route live: {b}");
    assert!(b.starts_with("backend-newer"), "{b}");
    assert_eq!(wait_status(p.http, "newer-alias.prox.local", 200, Duration::from_secs(3)).0, 200);
    std::thread::sleep(Duration::from_millis(300));

    // Remove it.
    store.delete(proximity::registry::APPS, &newer_app.id).unwrap();
    ctx.plan.refresh(&store).unwrap();
    let (c, b) = wait_status(p.http, "newer.prox.local", 404, Duration::from_secs(3));
    assert_eq!(c, 404, "removed route gone: {b}");
    std::thread::sleep(Duration::from_millis(300));

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let ok = ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} failed requests on the unchanged route (of {}): {:?}",
        failures.len(),
        ok,
        &failures[..failures.len().min(5)]
    );
    assert!(ok >= 50, "load loop ran only {ok} requests");

    rt.block_on(sup.shutdown());
    drop(newer);
    drop(stable);
}
