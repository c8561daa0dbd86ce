//! Security checks against a real `proximity serve` (wired to the in-process simulator),
//! each recorded to `target/reliability/security.jsonl` for tests/RELIABILITY.md:
//! - the API is closed without credentials: every operation of the served OpenAPI
//!   document answers 401, except the documented public ones (health, setup, login,
//!   refresh, the CA certificate, the API docs and `/metrics`);
//! - first-run setup cannot be repeated;
//! - cookie sessions need the CSRF header on a state-changing request;
//! - secret files in the data directory (the database, the secrets key) are owner-only;
//! - every admin action done here has an audit record;
//! - no secret (passwords, the Proxmox token secret, session tokens) shows in the
//!   daemon's log output or in the API responses read here.
//!
//! Every check is recorded before the test asserts, so a failure is visible in the report.

mod rel_support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use rel_support::*;
use reqwest::Method as M;
use serde_json::{Value, json};

const FILE: &str = "security.jsonl";

/// Operations that answer without credentials (`security(())` in the handlers).
const PUBLIC: &[&str] = &[
    "auth.setup_status",
    "auth.setup",
    "auth.login",
    "auth.refresh",
    "system.health",
    "network.ca_info",
    "network.ca_pem",
    "network.ca_der",
    "docs.openapi",
    "docs.page",
    "metrics",
];

#[derive(Default)]
struct Checks(Vec<(String, bool, String)>);

impl Checks {
    fn check(&mut self, name: &str, passed: bool, detail: String) {
        record(FILE, json!({"kind": "check", "name": name, "passed": passed, "detail": detail}));
        eprintln!("{} {name}: {detail}", if passed { "ok  " } else { "FAIL" });
        self.0.push((name.to_string(), passed, detail));
    }
}

/// `name=value` of the `Set-Cookie` headers.
fn cookies(r: &reqwest::Response) -> Vec<(String, String)> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_checks_on_the_real_daemon() {
    let env = Env::new(1, 20, &Knobs::default()).await;
    let mut daemon = env.start();
    let mut api = env.api();
    api.setup().await;
    let mut checks = Checks::default();
    let root = format!("http://127.0.0.1:{}", env.ports.api);
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let mut bodies = String::new();

    // 1. Closed without credentials: walk the served OpenAPI document.
    let doc: Value = plain
        .get(format!("{root}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut public = BTreeSet::new();
    let (mut closed, mut open) = (0, Vec::new());
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            let Ok(m) = M::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            if !matches!(m, M::GET | M::POST | M::PUT | M::PATCH | M::DELETE) {
                continue;
            }
            let id = op["operationId"].as_str().unwrap_or(path).to_string();
            let is_public = op["security"]
                .as_array()
                .is_some_and(|s| s.is_empty() || s.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty())));
            if is_public {
                public.insert(id);
                continue;
            }
            let url = format!("{root}{}", path.replace(['{', '}'], ""));
            let mut rb = plain.request(m.clone(), &url);
            if m != M::GET && m != M::DELETE {
                rb = rb.json(&json!({}));
            }
            match rb.send().await {
                Ok(r) if r.status().as_u16() == 401 => closed += 1,
                Ok(r) => open.push(format!("{m} {path} → {}", r.status().as_u16())),
                Err(e) => open.push(format!("{m} {path} → {e}")),
            }
        }
    }
    let unexpected: Vec<&String> = public.iter().filter(|p| !PUBLIC.contains(&p.as_str())).collect();
    checks.check(
        "API closed without credentials",
        open.is_empty() && closed > 20,
        format!(
            "{closed} operations of the OpenAPI document answer 401 without credentials{}",
            if open.is_empty() {
                String::new()
            } else {
                format!("; OPEN: {open:?}")
            }
        ),
    );
    checks.check(
        "public operations are only the documented ones",
        unexpected.is_empty(),
        format!(
            "public: {}{}",
            public.iter().cloned().collect::<Vec<_>>().join(", "),
            if unexpected.is_empty() {
                String::new()
            } else {
                format!("; UNEXPECTED: {unexpected:?}")
            }
        ),
    );
    let (s, _) = env
        .api()
        .call(
            M::POST,
            "/auth/setup",
            Some(json!({"username": "intruder", "password": "intruder-password"})),
        )
        .await;
    checks.check(
        "first-run setup cannot be repeated",
        s != 200 && s != 201,
        format!("POST /auth/setup after setup, without credentials → {s}"),
    );

    // 2. CSRF: a cookie session must repeat the CSRF cookie in X-CSRF-Token.
    let r = plain
        .post(format!("{root}/api/v1/auth/login"))
        .json(&json!({"username": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .unwrap();
    let jar = cookies(&r);
    let login_body = r.text().await.unwrap_or_default();
    let get = |n: &str| jar.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let (access, csrf) = (get("proximity_access"), get("proximity_csrf"));
    let refresh = get("proximity_refresh");
    let cookie = format!("proximity_access={access}; proximity_csrf={csrf}");
    let new_user = json!({"username": "csrf-probe", "password": "csrf-probe-password", "role": "user"});
    let post = |token: Option<&str>| {
        let mut rb = plain
            .post(format!("{root}/api/v1/users"))
            .header(reqwest::header::COOKIE, cookie.clone())
            .json(&new_user);
        if let Some(t) = token {
            rb = rb.header("x-csrf-token", t);
        }
        rb.send()
    };
    let without = post(None).await.map(|r| r.status().as_u16()).unwrap_or(0);
    let wrong = post(Some("not-the-token")).await.map(|r| r.status().as_u16()).unwrap_or(0);
    let with = post(Some(&csrf)).await.unwrap();
    let with_status = with.status().as_u16();
    let created: Value = with.json().await.unwrap_or_default();
    checks.check(
        "CSRF enforced for cookie sessions",
        !access.is_empty() && !csrf.is_empty() && without == 403 && wrong == 403 && (with_status == 200 || with_status == 201),
        format!("POST /users with the session cookie: no X-CSRF-Token → {without}, wrong token → {wrong}, right token → {with_status}"),
    );

    // More admin actions, for the audit check.
    let user_id = created["id"].as_str().unwrap_or("").to_string();
    let (patch_status, _) = api
        .call(M::PATCH, &format!("/users/{user_id}"), Some(json!({"role": "admin"})))
        .await;
    let settings = api.get("/settings/network").await;
    let (put_status, v) = api.call(M::PUT, "/settings/network", Some(settings)).await;
    assert_eq!(put_status, 200, "{v}");
    let (del_status, _) = api.call(M::DELETE, &format!("/users/{user_id}"), None).await;

    // 3. Audit: one record per admin action above.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let audit = api.get("/audit").await;
    bodies.push_str(&audit.to_string());
    let items = audit["items"].as_array().cloned().unwrap_or_default();
    let done = [
        ("auth.setup", 0u16),
        ("host.sync", 200),
        ("user.create", with_status),
        ("user.update", patch_status),
        ("settings.update_network", put_status),
        ("user.delete", del_status),
    ];
    let mut missing = Vec::new();
    for (action, status) in done {
        let found = items
            .iter()
            .any(|e| e["action"] == action && (status == 0 || e["status"] == status) && e["actor"].as_str().is_some_and(|a| a == ADMIN.0));
        if !found {
            missing.push(action);
        }
    }
    let csrf_refusals = items.iter().filter(|e| e["action"] == "user.create" && e["status"] == 403).count();
    checks.check(
        "audit record for each admin action",
        missing.is_empty(),
        format!(
            "{} actions ({}) each found with actor and status; CSRF refusals recorded as failures: {csrf_refusals}{}",
            done.len(),
            done.iter().map(|d| d.0).collect::<Vec<_>>().join(", "),
            if missing.is_empty() {
                String::new()
            } else {
                format!("; MISSING: {missing:?}")
            }
        ),
    );

    // 4. Secret files in the data directory are owner-only.
    let data = env.data_dir();
    let mut files = Vec::new();
    let mut loose = Vec::new();
    for e in std::fs::read_dir(&data).unwrap().flatten() {
        let meta = e.metadata().unwrap();
        if !meta.is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy().to_string();
        let mode = meta.permissions().mode() & 0o777;
        files.push(format!("{name} {mode:o}"));
        let secret = name.ends_with(".redb") || name.contains("key") || name.contains("secret");
        if secret && mode & 0o077 != 0 {
            loose.push(format!("{name} {mode:o}"));
        }
    }
    let required = ["proximity.redb", "secret.key"];
    let present = required.iter().all(|r| files.iter().any(|f| f.starts_with(&format!("{r} "))));
    checks.check(
        "secret files are owner-only (0600)",
        loose.is_empty() && present,
        format!(
            "data dir: {}{}",
            files.join(", "),
            if loose.is_empty() {
                String::new()
            } else {
                format!("; TOO OPEN: {loose:?}")
            }
        ),
    );

    // 5. No secret in responses or logs.
    for p in [
        "/hosts",
        "/hosts/sim",
        "/settings/network",
        "/settings/resources",
        "/users",
        "/jobs?limit=50",
        "/auth/me",
        "/system/info",
    ] {
        let (_, v) = api.call(M::GET, p, None).await;
        bodies.push_str(&v.to_string());
    }
    let secrets = [
        ("admin password", ADMIN.1.to_string()),
        ("created user's password", "csrf-probe-password".to_string()),
        ("Proxmox token secret", env.sim.token_secret.clone()),
        ("refresh token", refresh.clone()),
    ];
    let in_bodies: Vec<&str> = secrets
        .iter()
        .filter(|(_, s)| !s.is_empty() && bodies.contains(s.as_str()))
        .map(|(n, _)| *n)
        .collect();
    checks.check(
        "no secret in API responses",
        in_bodies.is_empty() && !login_body.contains(ADMIN.1),
        format!(
            "{} bytes of responses (hosts, settings, users, jobs, audit, me) searched for the passwords and the Proxmox token secret{}",
            bodies.len(),
            if in_bodies.is_empty() {
                String::new()
            } else {
                format!("; FOUND: {in_bodies:?}")
            }
        ),
    );
    daemon.signal("TERM");
    let _ = daemon.wait_exit(Duration::from_secs(20));
    let log = daemon.drain().join("\n");
    let mut log_secrets = secrets.to_vec();
    log_secrets.push(("access token", access.clone()));
    log_secrets.push(("API access token", api.token.clone()));
    let in_log: Vec<&str> = log_secrets
        .iter()
        .filter(|(_, s)| !s.is_empty() && log.contains(s.as_str()))
        .map(|(n, _)| *n)
        .collect();
    checks.check(
        "no secret in the daemon's log",
        in_log.is_empty() && log.lines().count() > 5,
        format!(
            "{} log lines searched for {} secrets (passwords, token secret, session tokens){}",
            log.lines().count(),
            log_secrets.len(),
            if in_log.is_empty() {
                String::new()
            } else {
                format!("; FOUND: {in_log:?}")
            }
        ),
    );

    // Audit retention ([api] audit_keep_days, 365 by default): records older than that,
    // written into the stopped daemon's database, are gone after a restart; recent ones stay.
    let db = rel_support::db_path(&env.data_dir());
    let recent = {
        let store = proximity::store::Store::open(&db).expect("open the database of the stopped daemon");
        let recent = store.count(proximity::api::audit::AUDIT).unwrap();
        let old_ts = time::OffsetDateTime::now_utc().unix_timestamp() - 400 * 86_400;
        let mut entry = items.first().cloned().expect("an audit record to copy");
        for i in 0..3i64 {
            let id = proximity::api::audit::entry_id(time::OffsetDateTime::from_unix_timestamp(old_ts + i).unwrap());
            entry["id"] = json!(id);
            entry["ts"] = json!(old_ts + i);
            let e: proximity::api::audit::AuditEntry = serde_json::from_value(entry.clone()).unwrap();
            store.put(proximity::api::audit::AUDIT, &id, &e).unwrap();
        }
        recent
    };
    let mut daemon = env.start();
    api.login().await;
    let cutoff = time::OffsetDateTime::now_utc().unix_timestamp() - 365 * 86_400;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (old_left, total) = loop {
        let page = api.get("/audit?per_page=500").await;
        let list = page["items"].as_array().cloned().unwrap_or_default();
        let old = list.iter().filter(|e| e["ts"].as_i64().unwrap_or(0) < cutoff).count();
        if old == 0 || std::time::Instant::now() > deadline {
            break (old, page["total"].as_u64().unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    checks.check(
        "audit log retention",
        old_left == 0 && total > recent,
        format!(
            "3 records 400 days old written while stopped; after a restart {old_left} of them left, {total} records listed ({recent} recent before + the new login)"
        ),
    );
    daemon.signal("TERM");
    let _ = daemon.wait_exit(Duration::from_secs(20));

    let failed: Vec<_> = checks.0.iter().filter(|c| !c.1).collect();
    assert!(failed.is_empty(), "security checks failed: {failed:#?}");
}
