//! End to end through the API: the real daemon (`proximity serve`) with a Proxmox host
//! that is the built-in simulator (loopback runtime). A user deploys a catalog app
//! (202 + Location of the job), follows the job to `succeeded`, sees the app `running`,
//! stops and starts it, another user cannot see it (404), and deleting it removes it.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, bin, free_port, setup_admin, write_sim_config};
use serde_json::{Value, json};

struct Api {
    c: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, m: reqwest::Method, path: &str, tok: &str, body: Option<Value>) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut rb = self.c.request(m, format!("{}{path}", self.base)).bearer_auth(tok);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let s = r.status().as_u16();
        let h = r.headers().clone();
        let text = r.text().await.unwrap();
        (s, h, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn wait_job(&self, loc: &str, tok: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (s, _, j) = self.call(reqwest::Method::GET, loc, tok, None).await;
            assert_eq!(s, 200, "{j}");
            match j["state"].as_str().unwrap_or("") {
                "succeeded" => return j,
                "failed" | "cancelled" => panic!("job failed: {j:#}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "job did not finish: {j:#}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_follow_job_act_and_delete_through_the_api() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let sim_dir = dir.path().join("sim");
    let sim = proximity::sim::start(proximity::sim::SimConfig::new(&sim_dir))
        .await
        .expect("simulator");

    let port = free_port();
    let cfg = write_sim_config(dir.path(), port, &sim, "");
    let mut p = Proc::spawn({
        let mut c = Command::new(bin());
        c.args(["serve", "--config"]).arg(&cfg);
        c
    });
    p.wait_ready();

    let api = Api {
        c: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        base: format!("http://127.0.0.1:{port}/api/v1"),
    };
    use reqwest::Method as M;
    let admin = setup_admin(&api.c, &api.base, "admin", "admin-password-1").await;
    let mut tokens = Vec::new();
    for name in ["bob", "carol"] {
        let (s, _, _) = api
            .call(
                M::POST,
                "/users",
                &admin,
                Some(json!({"username":name,"password":"user-password-1"})),
            )
            .await;
        assert_eq!(s, 201);
        let r: Value = api
            .c
            .post(format!("{}/auth/login", api.base))
            .json(&json!({"username":name,"password":"user-password-1"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(r["access_token"].as_str().unwrap().to_string());
    }
    let (bob, carol) = (&tokens[0], &tokens[1]);
    let (s, _, nodes) = api.call(M::POST, "/hosts/sim/sync", &admin, None).await;
    assert_eq!(s, 200, "{nodes}");

    // Deploy: 202, the app and the job's Location.
    let (s, h, app) = api
        .call(M::POST, "/apps", bob, Some(json!({"catalog_id":"whoami","hostname":"who"})))
        .await;
    assert_eq!(s, 202, "{app}");
    let id = app["id"].as_str().unwrap().to_string();
    assert!(app["status"].is_string());
    let loc = h["location"].to_str().unwrap().trim_start_matches("/api/v1").to_string();
    assert!(loc.starts_with("/jobs/"), "{loc}");
    let (s, _, _) = api.call(M::GET, &loc, carol, None).await;
    assert_eq!(s, 404, "another user's job is invisible");
    api.wait_job(&loc, bob).await;
    let (s, _, a) = api.call(M::GET, &format!("/apps/{id}"), bob, None).await;
    assert_eq!((s, a["status"].as_str()), (200, Some("running")), "{a}");
    let (s, _, _) = api.call(M::GET, &format!("/apps/{id}"), carol, None).await;
    assert_eq!(s, 404);
    let (s, _, l) = api.call(M::GET, &format!("/apps/{id}/logs?tail=20"), bob, None).await;
    assert_eq!(s, 200, "{l}");
    let (s, _, out) = api
        .call(M::POST, &format!("/apps/{id}/exec"), bob, Some(json!({"command":"ps"})))
        .await;
    assert_eq!(s, 200, "{out}");

    // Stop and start.
    for (action, want) in [("stop", "stopped"), ("start", "running")] {
        let (s, h, body) = api
            .call(M::POST, &format!("/apps/{id}/action"), bob, Some(json!({"action": action})))
            .await;
        assert_eq!(s, 202, "{body}");
        let loc = h["location"].to_str().unwrap().trim_start_matches("/api/v1").to_string();
        api.wait_job(&loc, bob).await;
        let (_, _, a) = api.call(M::GET, &format!("/apps/{id}"), bob, None).await;
        assert_eq!(a["status"], want, "{a}");
    }
    let (s, _, _) = api
        .call(M::POST, &format!("/apps/{id}/action"), carol, Some(json!({"action":"stop"})))
        .await;
    assert_eq!(s, 404);

    // Metrics, backups (create, list, get, stats), clone, update.
    let (s, _, m) = api.call(M::GET, &format!("/apps/{id}/metrics?timeframe=hour"), bob, None).await;
    assert_eq!(s, 200, "{m}");
    let (s, h, b) = api.call(M::POST, &format!("/apps/{id}/backups"), bob, None).await;
    assert_eq!(s, 202, "{b}");
    let loc = h["location"].to_str().unwrap().trim_start_matches("/api/v1").to_string();
    api.wait_job(&loc, bob).await;
    let (s, _, list) = api.call(M::GET, &format!("/apps/{id}/backups"), bob, None).await;
    assert_eq!(s, 200, "{list}");
    let backup_id = list[0]["id"].as_str().expect("one backup").to_string();
    let (s, _, one) = api.call(M::GET, &format!("/apps/{id}/backups/{backup_id}"), bob, None).await;
    assert_eq!((s, one["id"].as_str()), (200, Some(backup_id.as_str())), "{one}");
    let (s, _, stats) = api.call(M::GET, &format!("/apps/{id}/backups/stats"), bob, None).await;
    assert_eq!((s, stats["total_backups"].as_u64()), (200, Some(1)), "{stats}");
    let (s, _, _) = api.call(M::GET, &format!("/apps/{id}/backups/{backup_id}"), carol, None).await;
    assert_eq!(s, 404);
    let (s, h, copy) = api
        .call(M::POST, &format!("/apps/{id}/clone"), bob, Some(json!({"hostname":"who2"})))
        .await;
    assert_eq!(s, 202, "{copy}");
    let loc = h["location"].to_str().unwrap().trim_start_matches("/api/v1").to_string();
    api.wait_job(&loc, bob).await;
    let copy_id = copy["id"].as_str().unwrap().to_string();
    let (_, _, c) = api.call(M::GET, &format!("/apps/{copy_id}"), bob, None).await;
    assert_eq!(c["status"], "running", "{c}");
    let (_, _, page) = api.call(M::GET, "/apps?search=who", bob, None).await;
    assert_eq!(page["total"], 2, "{page}");
    let (_, _, page) = api.call(M::GET, "/apps", carol, None).await;
    assert_eq!(page["total"], 0, "{page}");
    let (s, h, u) = api.call(M::POST, &format!("/apps/{copy_id}/update"), bob, None).await;
    assert_eq!(s, 202, "{u}");
    let loc = h["location"].to_str().unwrap().trim_start_matches("/api/v1").to_string();
    api.wait_job(&loc, bob).await;

    // Delete.
    let (s, h, _) = api.call(M::DELETE, &format!("/apps/{id}"), bob, None).await;
    assert_eq!(s, 202);
    let loc = h["location"].to_str().unwrap().trim_start_matches("/api/v1").to_string();
    api.wait_job(&loc, bob).await;
    let (s, _, _) = api.call(M::GET, &format!("/apps/{id}"), bob, None).await;
    assert_eq!(s, 404);

    // Resource defaults from the settings apply to the next deploy (raised to the catalog
    // minimum: gotify needs 2 GiB of disk), and so does the HTTPS redirect choice.
    let (_, _, doc) = api.call(M::GET, "/settings/resources", &admin, None).await;
    let body = json!({"digest": doc["digest"], "settings": {"cores": 2, "memory_mb": 256, "disk_gb": 1, "max_apps_per_user": 0}});
    let (s, _, r) = api.call(M::PUT, "/settings/resources", &admin, Some(body)).await;
    assert_eq!(s, 200, "{r}");
    let (_, _, doc) = api.call(M::GET, "/settings/network", &admin, None).await;
    let mut net = doc["settings"].clone();
    net["https_redirect"] = json!(false);
    let (s, _, r) = api
        .call(
            M::PUT,
            "/settings/network",
            &admin,
            Some(json!({"digest": doc["digest"], "settings": net})),
        )
        .await;
    assert_eq!(s, 200, "{r}");

    // Generated secrets come back once, in the deploy answer, and nowhere else.
    assert_eq!(app["generated_secrets"], json!({}), "whoami generates none: {app}");
    let (s, h, g) = api
        .call(M::POST, "/apps", bob, Some(json!({"catalog_id":"gotify","hostname":"notify"})))
        .await;
    assert_eq!(s, 202, "{g}");
    let secrets = g["generated_secrets"].as_object().expect("generated_secrets object").clone();
    assert!(!secrets.is_empty(), "gotify generates its admin password: {g}");
    assert_eq!(g["resources"], json!({"cores": 2, "memory_mb": 256, "disk_gb": 2}), "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    let (_, _, routes) = api.call(M::GET, "/network/routes", &admin, None).await;
    let route = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == "notify.prox.local")
        .cloned();
    assert_eq!(route.as_ref().map(|r| &r["https_redirect"]), Some(&json!(false)), "{routes}");
    let (_, _, again) = api.call(M::GET, &format!("/apps/{gid}"), bob, None).await;
    let (_, _, audit) = api.call(M::GET, "/audit?per_page=200", &admin, None).await;
    for v in secrets.values() {
        let v = v.as_str().unwrap();
        assert!(v.len() >= 12, "a generated secret is long: {v:?}");
        assert!(!again.to_string().contains(v), "secret shown again in GET /apps/{{id}}");
        assert!(!audit.to_string().contains(v), "secret in the audit log");
    }
    let loc = h["location"].to_str().unwrap().trim_start_matches("/api/v1").to_string();
    api.wait_job(&loc, bob).await;
    drop(p);
    sim.shutdown().await;
}
