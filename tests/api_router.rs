//! In-process router tests of the management API (axum `Router` + `oneshot`): every
//! endpoint's happy path where it does not need Proxmox, validation errors per field,
//! authentication required, wrong role (403), other users' apps and jobs (404), tokens
//! (expiry, rotation, reuse detection, logout revocation, throttling), CSRF, audit.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use proximity::api::auth::throttle::Limits;
use proximity::api::{ApiState, rbac, router_with};
use proximity::config::Config;
use proximity::registry::{self, App, AppStatus, Resources};
use proximity::store::Store;
use proximity::supervisor::Context;
use serde_json::{Value, json};
use tower::ServiceExt;

struct T {
    _dir: tempfile::TempDir,
    app: Router,
    ctx: Context,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

#[allow(clippy::field_reassign_with_default)]
fn setup_with(limits: Limits, access_secs: u64) -> T {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.data_dir = dir.path().to_path_buf();
    config.api.tls = false;
    config.api.access_token_secs = access_secs;
    config.api.max_body_bytes = 64 * 1024;
    let store = Store::open(&config.db_path()).unwrap();
    let ctx = Context::new(config, store).unwrap();
    let state = ApiState::with_limits(ctx.clone(), limits).unwrap();
    T {
        _dir: dir,
        app: router_with(state),
        ctx,
    }
}

fn setup() -> T {
    setup_with(Limits::default(), 900)
}

impl T {
    async fn call(&self, method: Method, path: &str, auth: Option<&str>, body: Option<Value>) -> Resp {
        self.call_from(method, path, auth, body, "127.0.0.1:40000", &[]).await
    }

    async fn call_from(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
        peer: &str,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = auth {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        let mut req = b.body(body).unwrap();
        req.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        self.send(req).await
    }

    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    /// First-run setup as `admin`; returns the access token.
    async fn admin(&self) -> String {
        let r = self
            .call(
                Method::POST,
                "/api/v1/auth/setup",
                None,
                Some(json!({"username":"admin","password":"admin-password-1"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["access_token"].as_str().unwrap().to_string()
    }

    /// Create a user (as admin) and log in; returns (user id, access token).
    async fn user(&self, admin: &str, name: &str) -> (String, String) {
        let r = self
            .call(
                Method::POST,
                "/api/v1/users",
                Some(admin),
                Some(json!({"username": name, "password": "user-password-1"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let id = r.body["id"].as_str().unwrap().to_string();
        let r = self.login(name, "user-password-1").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        (id, r.body["access_token"].as_str().unwrap().to_string())
    }

    async fn login(&self, name: &str, pw: &str) -> Resp {
        self.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": name, "password": pw})),
        )
        .await
    }

    fn put_app(&self, id: &str, hostname: &str, owner: &str) {
        let app = App {
            id: id.into(),
            hostname: hostname.into(),
            catalog_id: "whoami".into(),
            catalog_version: "1".into(),
            owner: owner.into(),
            status: AppStatus::Running,
            host: Some("pve".into()),
            node: Some("pve1".into()),
            vmid: Some(100),
            mac: registry::new_mac(&[]),
            ip: "10.20.0.101".parse().unwrap(),
            upstream_ip: None,
            web_port: Some(8080),
            forwards: vec![],
            aliases: vec![],
            https_redirect: true,
            resources: Resources {
                cores: 1,
                memory_mb: 512,
                disk_gb: 4,
            },
            settings: Default::default(),
            error: None,
            job_id: None,
            adopted: false,
            created_at: 1,
            updated_at: 1,
        };
        self.ctx.store.put(registry::APPS, id, &app).unwrap();
    }
}

fn is_problem(r: &Resp, status: StatusCode) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(
        r.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/problem+json",
        "{}",
        r.text
    );
    assert_eq!(r.body["status"], status.as_u16(), "{}", r.text);
    assert!(
        r.body["title"].is_string() && r.body["type"].is_string() && r.body["detail"].is_string(),
        "{}",
        r.text
    );
}

fn field_error(r: &Resp, field: &str) {
    is_problem(r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["errors"][field].is_string(), "expected an error for {field}: {}", r.text);
}

#[tokio::test]
async fn setup_only_while_no_user_and_field_validation() {
    let t = setup();
    let r = t.call(Method::GET, "/api/v1/auth/setup", None, None).await;
    assert_eq!(r.body["needs_setup"], true);
    let r = t
        .call(
            Method::POST,
            "/api/v1/auth/setup",
            None,
            Some(json!({"username":"Bad Name","password":"admin-password-1"})),
        )
        .await;
    field_error(&r, "username");
    let r = t
        .call(
            Method::POST,
            "/api/v1/auth/setup",
            None,
            Some(json!({"username":"admin","password":"short"})),
        )
        .await;
    field_error(&r, "password");
    let r = t
        .call(Method::POST, "/api/v1/auth/setup", None, Some(json!({"username":"admin"})))
        .await;
    field_error(&r, "password");
    let tok = t.admin().await;
    let r = t
        .call(
            Method::POST,
            "/api/v1/auth/setup",
            None,
            Some(json!({"username":"evil","password":"evil-password"})),
        )
        .await;
    is_problem(&r, StatusCode::CONFLICT);
    let r = t.call(Method::GET, "/api/v1/auth/setup", None, None).await;
    assert_eq!(r.body["needs_setup"], false);
    let r = t.call(Method::GET, "/api/v1/auth/me", Some(&tok), None).await;
    assert_eq!(r.body["username"], "admin");
    assert_eq!(r.body["role"], "admin");
    assert!(!r.text.contains("password"), "{}", r.text);
}

#[tokio::test]
async fn login_contract_cookies_and_errors() {
    let t = setup();
    t.admin().await;
    let r = t.login("admin", "admin-password-1").await;
    assert_eq!(r.status, StatusCode::OK);
    for k in ["access_token", "refresh_token", "token_type", "expires_in"] {
        assert!(!r.body[k].is_null(), "{k} missing: {}", r.text);
    }
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 900);
    assert_eq!(r.body["user"]["username"], "admin");
    assert_eq!(r.body["user"]["role"], "admin");
    let cookies: Vec<&str> = r.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    for c in &cookies {
        assert!(c.contains("SameSite=Strict"), "{c}");
    }
    assert!(cookies.iter().any(|c| c.starts_with("proximity_access=") && c.contains("HttpOnly")));
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("proximity_refresh=") && c.contains("HttpOnly") && c.contains("Path=/api/v1/auth"))
    );
    assert!(cookies.iter().any(|c| c.starts_with("proximity_csrf=") && !c.contains("HttpOnly")));

    is_problem(&t.login("admin", "wrong-password").await, StatusCode::UNAUTHORIZED);
    is_problem(&t.login("nobody", "wrong-password").await, StatusCode::UNAUTHORIZED);
    let r = t
        .call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username":"admin"})))
        .await;
    field_error(&r, "password");
    let r = t
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": 5, "password":"x"})),
        )
        .await;
    field_error(&r, "username");
    let req = Request::post("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{nope"))
        .unwrap();
    is_problem(&t.send(req).await, StatusCode::BAD_REQUEST);
    let req = Request::post("/api/v1/auth/login").body(Body::from("username=admin")).unwrap();
    is_problem(&t.send(req).await, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn auth_required_and_bad_tokens_are_401() {
    let t = setup();
    t.admin().await;
    for tok in [
        None,
        Some("garbage"),
        Some("prx_tok-000000000000_xyz"),
        Some("eyJhbGciOiJIUzI1NiJ9.e30.x"),
    ] {
        let r = t.call(Method::GET, "/api/v1/auth/me", tok, None).await;
        is_problem(&r, StatusCode::UNAUTHORIZED);
        assert!(r.headers.get(header::WWW_AUTHENTICATE).is_some());
    }
}

#[tokio::test]
async fn access_token_expiry() {
    let t = setup_with(Limits::default(), 1);
    let tok = t.admin().await;
    assert_eq!(
        t.call(Method::GET, "/api/v1/auth/me", Some(&tok), None).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    is_problem(
        &t.call(Method::GET, "/api/v1/auth/me", Some(&tok), None).await,
        StatusCode::UNAUTHORIZED,
    );
}

#[tokio::test]
async fn refresh_rotation_reuse_detection_and_logout() {
    let t = setup();
    t.admin().await;
    let l = t.login("admin", "admin-password-1").await;
    let rt1 = l.body["refresh_token"].as_str().unwrap().to_string();
    let r = t
        .call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": rt1})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rt2 = r.body["refresh_token"].as_str().unwrap().to_string();
    let at2 = r.body["access_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2);
    assert_eq!(
        t.call(Method::GET, "/api/v1/auth/me", Some(&at2), None).await.status,
        StatusCode::OK
    );
    // Reuse of the rotated token revokes the whole family.
    let r = t
        .call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": rt1})))
        .await;
    is_problem(&r, StatusCode::UNAUTHORIZED);
    assert!(r.body["detail"].as_str().unwrap().contains("reuse"), "{}", r.text);
    is_problem(
        &t.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": rt2})))
            .await,
        StatusCode::UNAUTHORIZED,
    );
    is_problem(
        &t.call(Method::GET, "/api/v1/auth/me", Some(&at2), None).await,
        StatusCode::UNAUTHORIZED,
    );
    // Missing token → 422; garbage → 401.
    field_error(
        &t.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({}))).await,
        "refresh_token",
    );
    is_problem(
        &t.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token":"rt_x"})))
            .await,
        StatusCode::UNAUTHORIZED,
    );

    // Logout revokes the access and the refresh token of that session only.
    let a = t.login("admin", "admin-password-1").await;
    let b = t.login("admin", "admin-password-1").await;
    let (at_a, rt_a) = (a.body["access_token"].as_str().unwrap(), a.body["refresh_token"].as_str().unwrap());
    let at_b = b.body["access_token"].as_str().unwrap();
    let r = t.call(Method::POST, "/api/v1/auth/logout", Some(at_a), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(
        r.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .all(|c| c.to_str().unwrap().contains("Max-Age=0"))
    );
    is_problem(
        &t.call(Method::GET, "/api/v1/auth/me", Some(at_a), None).await,
        StatusCode::UNAUTHORIZED,
    );
    is_problem(
        &t.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": rt_a})))
            .await,
        StatusCode::UNAUTHORIZED,
    );
    assert_eq!(
        t.call(Method::GET, "/api/v1/auth/me", Some(at_b), None).await.status,
        StatusCode::OK
    );
    is_problem(
        &t.call(Method::POST, "/api/v1/auth/logout", None, None).await,
        StatusCode::UNAUTHORIZED,
    );
}

#[tokio::test]
async fn login_throttling_per_user_and_per_ip() {
    let t = setup_with(
        Limits {
            per_user: 3,
            per_ip: 5,
            window: Duration::from_secs(60),
        },
        900,
    );
    t.admin().await;
    let body = |u: &str, p: &str| Some(json!({"username": u, "password": p}));
    for _ in 0..3 {
        let r = t
            .call_from(
                Method::POST,
                "/api/v1/auth/login",
                None,
                body("admin", "bad-password"),
                "10.0.0.1:1",
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Per user: even the right password from another address waits.
    let r = t
        .call_from(
            Method::POST,
            "/api/v1/auth/login",
            None,
            body("admin", "admin-password-1"),
            "10.0.0.2:1",
            &[],
        )
        .await;
    is_problem(&r, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers.get(header::RETRY_AFTER).unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Per IP: spraying names from one address.
    for n in ["a1", "a2"] {
        t.call_from(Method::POST, "/api/v1/auth/login", None, body(n, "bad-password"), "10.0.0.1:1", &[])
            .await;
    }
    let r = t
        .call_from(
            Method::POST,
            "/api/v1/auth/login",
            None,
            body("zz", "bad-password"),
            "10.0.0.1:1",
            &[],
        )
        .await;
    is_problem(&r, StatusCode::TOO_MANY_REQUESTS);
    let r = t
        .call_from(
            Method::POST,
            "/api/v1/auth/login",
            None,
            body("zz", "bad-password"),
            "10.0.0.3:1",
            &[],
        )
        .await;
    is_problem(&r, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cookie_auth_requires_csrf_for_unsafe_methods() {
    let t = setup();
    t.admin().await;
    let l = t.login("admin", "admin-password-1").await;
    let mut jar = Vec::new();
    let mut csrf = String::new();
    for c in l.headers.get_all(header::SET_COOKIE) {
        let kv = c.to_str().unwrap().split(';').next().unwrap().to_string();
        if let Some(v) = kv.strip_prefix("proximity_csrf=") {
            csrf = v.to_string();
        }
        jar.push(kv);
    }
    let cookie = jar.join("; ");
    let r = t
        .call_from(Method::GET, "/api/v1/auth/me", None, None, "127.0.0.1:1", &[("cookie", &cookie)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = t
        .call_from(
            Method::POST,
            "/api/v1/tokens",
            None,
            Some(json!({"name":"x"})),
            "127.0.0.1:1",
            &[("cookie", &cookie)],
        )
        .await;
    is_problem(&r, StatusCode::FORBIDDEN);
    let r = t
        .call_from(
            Method::POST,
            "/api/v1/tokens",
            None,
            Some(json!({"name":"x"})),
            "127.0.0.1:1",
            &[("cookie", &cookie), ("x-csrf-token", "wrong")],
        )
        .await;
    is_problem(&r, StatusCode::FORBIDDEN);
    let r = t
        .call_from(
            Method::POST,
            "/api/v1/tokens",
            None,
            Some(json!({"name":"x"})),
            "127.0.0.1:1",
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Refresh with the cookie also needs the CSRF header.
    let r = t
        .call_from(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            None,
            "127.0.0.1:1",
            &[("cookie", &cookie)],
        )
        .await;
    is_problem(&r, StatusCode::FORBIDDEN);
    let r = t
        .call_from(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            None,
            "127.0.0.1:1",
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn password_change_revokes_sessions() {
    let t = setup();
    let tok = t.admin().await;
    let r = t
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&tok),
            Some(json!({"current_password":"wrong-one","new_password":"x"})),
        )
        .await;
    field_error(&r, "current_password");
    field_error(&r, "new_password");
    let r = t
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&tok),
            Some(json!({"current_password":"admin-password-1","new_password":"admin-password-2"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    is_problem(
        &t.call(Method::GET, "/api/v1/auth/me", Some(&tok), None).await,
        StatusCode::UNAUTHORIZED,
    );
    is_problem(&t.login("admin", "admin-password-1").await, StatusCode::UNAUTHORIZED);
    assert_eq!(t.login("admin", "admin-password-2").await.status, StatusCode::OK);
}

#[tokio::test]
async fn users_admin_only_crud_and_guards() {
    let t = setup();
    let admin = t.admin().await;
    let (bob_id, bob) = t.user(&admin, "bob").await;
    for (m, p) in [
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/audit"),
        (Method::GET, "/api/v1/hosts"),
        (Method::GET, "/api/v1/settings/resources"),
    ] {
        is_problem(&t.call(m, p, Some(&bob), None).await, StatusCode::FORBIDDEN);
    }
    is_problem(
        &t.call(
            Method::POST,
            "/api/v1/users",
            Some(&bob),
            Some(json!({"username":"eve","password":"eve-password"})),
        )
        .await,
        StatusCode::FORBIDDEN,
    );
    let r = t.call(Method::GET, "/api/v1/users", Some(&admin), None).await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    assert!(!r.text.contains("argon2"), "{}", r.text);
    field_error(
        &t.call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username":"X Y","password":"long-enough"})),
        )
        .await,
        "username",
    );
    field_error(
        &t.call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username":"carol","password":"short"})),
        )
        .await,
        "password",
    );
    field_error(
        &t.call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username":"carol","password":"long-enough","role":"root"})),
        )
        .await,
        "role",
    );
    is_problem(
        &t.call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username":"bob","password":"long-enough"})),
        )
        .await,
        StatusCode::CONFLICT,
    );
    let r = t.call(Method::GET, &format!("/api/v1/users/{bob_id}"), Some(&admin), None).await;
    assert_eq!(r.body["username"], "bob");
    is_problem(
        &t.call(Method::GET, "/api/v1/users/usr-nope", Some(&admin), None).await,
        StatusCode::NOT_FOUND,
    );
    let r = t
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{bob_id}"),
            Some(&admin),
            Some(json!({"role":"admin"})),
        )
        .await;
    assert_eq!(r.body["role"], "admin", "{}", r.text);
    field_error(
        &t.call(
            Method::PATCH,
            &format!("/api/v1/users/{bob_id}"),
            Some(&admin),
            Some(json!({"password":"x"})),
        )
        .await,
        "password",
    );
    let r = t
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{bob_id}"),
            Some(&admin),
            Some(json!({"role":"user","password":"bob-new-password"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    is_problem(
        &t.call(Method::GET, "/api/v1/auth/me", Some(&bob), None).await,
        StatusCode::UNAUTHORIZED,
    );
    let me = t.call(Method::GET, "/api/v1/auth/me", Some(&admin), None).await;
    let admin_id = me.body["id"].as_str().unwrap().to_string();
    is_problem(
        &t.call(Method::DELETE, &format!("/api/v1/users/{admin_id}"), Some(&admin), None)
            .await,
        StatusCode::CONFLICT,
    );
    is_problem(
        &t.call(
            Method::PATCH,
            &format!("/api/v1/users/{admin_id}"),
            Some(&admin),
            Some(json!({"role":"user"})),
        )
        .await,
        StatusCode::CONFLICT,
    );
    t.put_app("app-000000000001", "bobs", &bob_id);
    is_problem(
        &t.call(Method::DELETE, &format!("/api/v1/users/{bob_id}"), Some(&admin), None).await,
        StatusCode::CONFLICT,
    );
    t.ctx.store.delete(registry::APPS, "app-000000000001").unwrap();
    assert_eq!(
        t.call(Method::DELETE, &format!("/api/v1/users/{bob_id}"), Some(&admin), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    is_problem(
        &t.call(Method::DELETE, &format!("/api/v1/users/{bob_id}"), Some(&admin), None).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn api_tokens_scope_expiry_revocation_and_ownership() {
    let t = setup();
    let admin = t.admin().await;
    let (_, bob) = t.user(&admin, "bob").await;
    field_error(
        &t.call(Method::POST, "/api/v1/tokens", Some(&bob), Some(json!({"name":""}))).await,
        "name",
    );
    field_error(
        &t.call(Method::POST, "/api/v1/tokens", Some(&bob), Some(json!({"name":"a","scopes":[]})))
            .await,
        "scopes",
    );
    field_error(
        &t.call(
            Method::POST,
            "/api/v1/tokens",
            Some(&bob),
            Some(json!({"name":"a","scopes":["root"]})),
        )
        .await,
        "scopes[0]",
    );
    field_error(
        &t.call(
            Method::POST,
            "/api/v1/tokens",
            Some(&bob),
            Some(json!({"name":"a","expires_in_days":0})),
        )
        .await,
        "expires_in_days",
    );
    let r = t
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&bob),
            Some(json!({"name":"ci","expires_in_days":30})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let read = r.body["token"].as_str().unwrap().to_string();
    let read_id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["scopes"], json!(["read"]));
    assert!(r.body["expires_at"].is_string());
    let r = t.call(Method::GET, "/api/v1/auth/me", Some(&read), None).await;
    assert_eq!(r.body["username"], "bob");
    // Read scope cannot change anything.
    is_problem(
        &t.call(Method::POST, "/api/v1/auth/logout", Some(&read), None).await,
        StatusCode::FORBIDDEN,
    );
    let r = t
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&bob),
            Some(json!({"name":"rw","scopes":["read","write"]})),
        )
        .await;
    let rw = r.body["token"].as_str().unwrap().to_string();
    // Tokens cannot mint tokens.
    is_problem(
        &t.call(Method::POST, "/api/v1/tokens", Some(&rw), Some(json!({"name":"x"}))).await,
        StatusCode::FORBIDDEN,
    );
    let r = t.call(Method::GET, "/api/v1/tokens", Some(&bob), None).await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    assert!(!r.text.contains(&read) && !r.text.contains(&rw), "secrets listed");
    // Someone else's token is 404.
    is_problem(
        &t.call(Method::DELETE, &format!("/api/v1/tokens/{read_id}"), Some(&admin), None)
            .await,
        StatusCode::NOT_FOUND,
    );
    assert_eq!(
        t.call(Method::DELETE, &format!("/api/v1/tokens/{read_id}"), Some(&bob), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    is_problem(
        &t.call(Method::GET, "/api/v1/auth/me", Some(&read), None).await,
        StatusCode::UNAUTHORIZED,
    );
    // Expired tokens are refused.
    let (_, expired) = proximity::api::auth::tokens::create_api_token(
        &t.ctx.store,
        "usr-x",
        "old",
        vec![proximity::api::auth::tokens::Scope::Read],
        Some(1),
    )
    .unwrap();
    is_problem(
        &t.call(Method::GET, "/api/v1/auth/me", Some(&expired), None).await,
        StatusCode::UNAUTHORIZED,
    );
}

#[tokio::test]
async fn apps_are_private_to_their_owner() {
    let t = setup();
    let admin = t.admin().await;
    let (bob_id, bob) = t.user(&admin, "bob").await;
    let (carol_id, _carol) = t.user(&admin, "carol").await;
    t.put_app("app-00000000000b", "bobapp", &bob_id);
    t.put_app("app-00000000000c", "carolapp", &carol_id);
    let r = t.call(Method::GET, "/api/v1/apps", Some(&bob), None).await;
    assert_eq!(r.body["total"], 1, "{}", r.text);
    assert_eq!(r.body["items"][0]["hostname"], "bobapp");
    assert_eq!(r.body["items"][0]["url"], "https://bobapp.prox.local");
    let r = t.call(Method::GET, "/api/v1/apps", Some(&admin), None).await;
    assert_eq!(r.body["total"], 2);
    let r = t
        .call(
            Method::GET,
            "/api/v1/apps?search=carol&status=running&page=1&per_page=1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.body["total"], 1);
    let r = t.call(Method::GET, "/api/v1/apps?status=stopped", Some(&admin), None).await;
    assert_eq!(r.body["total"], 0);
    field_error(&t.call(Method::GET, "/api/v1/apps?per_page=0", Some(&bob), None).await, "per_page");
    let r = t
        .call(Method::GET, "/api/v1/apps?page=4294967295&per_page=200", Some(&bob), None)
        .await;
    assert_eq!(
        (r.status, r.body["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0)),
        "{}",
        r.text
    );
    let r = t
        .call(Method::GET, "/api/v1/audit?page=4294967295&per_page=500", Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    field_error(&t.call(Method::GET, "/api/v1/apps?page=x", Some(&bob), None).await, "page");
    field_error(&t.call(Method::GET, "/api/v1/apps?status=bogus", Some(&bob), None).await, "status");

    assert_eq!(
        t.call(Method::GET, "/api/v1/apps/app-00000000000b", Some(&bob), None).await.status,
        StatusCode::OK
    );
    // Other user's app and a missing app look the same.
    let other = t.call(Method::GET, "/api/v1/apps/app-00000000000c", Some(&bob), None).await;
    let missing = t.call(Method::GET, "/api/v1/apps/app-0000000000ff", Some(&bob), None).await;
    is_problem(&other, StatusCode::NOT_FOUND);
    is_problem(&missing, StatusCode::NOT_FOUND);
    assert_eq!(
        other.body["detail"].as_str().unwrap().replace("app-00000000000c", "X"),
        missing.body["detail"].as_str().unwrap().replace("app-0000000000ff", "X")
    );
    let c = "/api/v1/apps/app-00000000000c";
    for (m, p, b) in [
        (Method::POST, format!("{c}/action"), Some(json!({"action":"stop"}))),
        (Method::DELETE, c.to_string(), None),
        (Method::POST, format!("{c}/clone"), Some(json!({"hostname":"copy"}))),
        (Method::POST, format!("{c}/update"), None),
        (Method::GET, format!("{c}/logs"), None),
        (Method::GET, format!("{c}/metrics"), None),
        (Method::POST, format!("{c}/exec"), Some(json!({"command":"ps"}))),
        (Method::GET, format!("{c}/backups"), None),
        (Method::POST, format!("{c}/backups"), None),
        (Method::GET, format!("{c}/backups/stats"), None),
        (Method::GET, format!("{c}/backups/b1"), None),
        (Method::DELETE, format!("{c}/backups/b1"), None),
        (Method::POST, format!("{c}/backups/b1/restore"), None),
    ] {
        is_problem(&t.call(m.clone(), &p, Some(&bob), b).await, StatusCode::NOT_FOUND);
    }
    // Own app: input validated before anything runs.
    let b = "/api/v1/apps/app-00000000000b";
    field_error(
        &t.call(Method::POST, &format!("{b}/action"), Some(&bob), Some(json!({"action":"explode"})))
            .await,
        "action",
    );
    field_error(
        &t.call(Method::POST, &format!("{b}/action"), Some(&bob), Some(json!({}))).await,
        "action",
    );
    field_error(
        &t.call(Method::POST, &format!("{b}/clone"), Some(&bob), Some(json!({"hostname":"-bad-"})))
            .await,
        "hostname",
    );
    is_problem(
        &t.call(
            Method::POST,
            &format!("{b}/clone"),
            Some(&bob),
            Some(json!({"hostname":"carolapp"})),
        )
        .await,
        StatusCode::CONFLICT,
    );
    field_error(&t.call(Method::GET, &format!("{b}/logs?tail=0"), Some(&bob), None).await, "tail");
    field_error(
        &t.call(Method::GET, &format!("{b}/metrics?timeframe=decade"), Some(&bob), None)
            .await,
        "timeframe",
    );
    field_error(
        &t.call(Method::POST, &format!("{b}/exec"), Some(&bob), Some(json!({"command":"rm -rf /"})))
            .await,
        "command",
    );
    field_error(
        &t.call(Method::POST, &format!("{b}/exec"), Some(&bob), Some(json!({"command":"shutdown"})))
            .await,
        "command",
    );
    // Without a platform attached, operations are 503 (never a fake success).
    is_problem(
        &t.call(Method::POST, &format!("{b}/action"), Some(&bob), Some(json!({"action":"stop"})))
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    // Admin-only discovery.
    is_problem(
        &t.call(Method::GET, "/api/v1/apps/discover", Some(&bob), None).await,
        StatusCode::FORBIDDEN,
    );
    is_problem(
        &t.call(Method::POST, "/api/v1/apps/adopt", Some(&bob), Some(json!({"vmid":100})))
            .await,
        StatusCode::FORBIDDEN,
    );
    field_error(
        &t.call(Method::POST, "/api/v1/apps/adopt", Some(&admin), Some(json!({"vmid":5})))
            .await,
        "vmid",
    );
    field_error(
        &t.call(
            Method::POST,
            "/api/v1/apps/adopt",
            Some(&admin),
            Some(json!({"vmid":100,"hostname":"no way"})),
        )
        .await,
        "hostname",
    );
}

#[tokio::test]
async fn deploy_validates_each_field() {
    let t = setup();
    let admin = t.admin().await;
    let (bob_id, bob) = t.user(&admin, "bob").await;
    t.put_app("app-00000000000b", "taken", &bob_id);
    let ok = json!({"catalog_id":"whoami","hostname":"fresh"});
    for (patch, field) in [
        (json!({"hostname":"Not_Valid"}), "hostname"),
        (json!({"catalog_id":""}), "catalog_id"),
        (json!({"node":"bad node"}), "node"),
        (json!({"resources":{"cores":0,"memory_mb":512,"disk_gb":4}}), "resources.cores"),
        (json!({"resources":{"cores":1,"memory_mb":1,"disk_gb":4}}), "resources.memory_mb"),
        (json!({"resources":{"cores":1,"memory_mb":512,"disk_gb":0}}), "resources.disk_gb"),
        (json!({"aliases":["ok","-no"]}), "aliases[1]"),
        (json!({"values":{"": "x"}}), "values."),
    ] {
        let mut body = ok.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        field_error(&t.call(Method::POST, "/api/v1/apps", Some(&bob), Some(body)).await, field);
    }
    field_error(
        &t.call(Method::POST, "/api/v1/apps", Some(&bob), Some(json!({"hostname":"x"})))
            .await,
        "catalog_id",
    );
    is_problem(
        &t.call(
            Method::POST,
            "/api/v1/apps",
            Some(&bob),
            Some(json!({"catalog_id":"whoami","hostname":"taken"})),
        )
        .await,
        StatusCode::CONFLICT,
    );
    is_problem(
        &t.call(Method::POST, "/api/v1/apps", None, Some(ok.clone())).await,
        StatusCode::UNAUTHORIZED,
    );
    is_problem(
        &t.call(Method::POST, "/api/v1/apps", Some(&bob), Some(ok)).await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
}

#[tokio::test]
async fn jobs_visibility_and_live_events() {
    let t = setup();
    let admin = t.admin().await;
    let (bob_id, bob) = t.user(&admin, "bob").await;
    let (_, carol) = t.user(&admin, "carol").await;
    let job =
        json!({"id":"job-1","kind":"deploy","target":"app-1","owner": bob_id,"state":"running","steps":[],"progress":10,"created_at":1});
    t.ctx.store.put(proximity::api::handlers::jobs::JOBS, "job-1", &job).unwrap();
    let r = t.call(Method::GET, "/api/v1/jobs/job-1", Some(&bob), None).await;
    assert_eq!(r.body["progress"], 10);
    is_problem(
        &t.call(Method::GET, "/api/v1/jobs/job-1", Some(&carol), None).await,
        StatusCode::NOT_FOUND,
    );
    is_problem(
        &t.call(Method::GET, "/api/v1/jobs/job-1/events", Some(&carol), None).await,
        StatusCode::NOT_FOUND,
    );
    assert_eq!(
        t.call(Method::GET, "/api/v1/jobs", Some(&bob), None)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        t.call(Method::GET, "/api/v1/jobs", Some(&carol), None)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        0
    );
    field_error(&t.call(Method::GET, "/api/v1/jobs?limit=0", Some(&bob), None).await, "limit");

    // SSE: snapshot, then step/progress/log/state events; ends after the final state.
    let req = Request::get("/api/v1/jobs/job-1/events")
        .header(header::AUTHORIZATION, format!("Bearer {bob}"))
        .body(Body::empty())
        .unwrap();
    let resp = t.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = t.ctx.events.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        events.publish("job.step", "job-other", json!({"name":"ignored"}));
        events.publish("job.step", "job-1", json!({"name":"create_ct","state":"running"}));
        events.publish("job.progress", "job-1", json!({"progress":50}));
        events.publish("job.log", "job-1", json!({"line":"hello"}));
        events.publish("job.state", "job-1", json!({"state":"succeeded"}));
    });
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("stream ended")
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names, ["snapshot", "step", "progress", "log", "state"], "{text}");
    assert!(!text.contains("ignored"));

    // Open streams are bounded per user: beyond api.sse_max_per_user → 429 + Retry-After.
    let mut open = Vec::new();
    for _ in 0..proximity::config::Config::default().api.sse_max_per_user {
        let req = Request::get("/api/v1/jobs/job-1/events")
            .header(header::AUTHORIZATION, format!("Bearer {bob}"))
            .body(Body::empty())
            .unwrap();
        let resp = t.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        open.push(resp);
    }
    let r = t.call(Method::GET, "/api/v1/jobs/job-1/events", Some(&bob), None).await;
    is_problem(&r, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
    drop(open);
    let req = Request::get("/api/v1/jobs/job-1/events")
        .header(header::AUTHORIZATION, format!("Bearer {bob}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        t.app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::OK,
        "slots are released when streams end"
    );
}

#[tokio::test]
async fn settings_digest_checked_updates() {
    let t = setup();
    let admin = t.admin().await;
    for section in ["resources", "network", "schedule"] {
        let r = t
            .call(Method::GET, &format!("/api/v1/settings/{section}"), Some(&admin), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["digest"].as_str().unwrap().len(), 64);
    }
    let r = t.call(Method::GET, "/api/v1/settings/resources", Some(&admin), None).await;
    let digest = r.body["digest"].as_str().unwrap().to_string();
    let mut s = r.body["settings"].clone();
    s["cores"] = json!(2);
    let r = t
        .call(
            Method::PUT,
            "/api/v1/settings/resources",
            Some(&admin),
            Some(json!({"digest": digest, "settings": s})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["settings"]["cores"], 2);
    assert_ne!(r.body["digest"], digest.as_str());
    // The old digest is stale now.
    is_problem(
        &t.call(
            Method::PUT,
            "/api/v1/settings/resources",
            Some(&admin),
            Some(json!({"digest": digest, "settings": s})),
        )
        .await,
        StatusCode::CONFLICT,
    );
    let d2 = r.body["digest"].as_str().unwrap().to_string();
    s["memory_mb"] = json!(1);
    field_error(
        &t.call(
            Method::PUT,
            "/api/v1/settings/resources",
            Some(&admin),
            Some(json!({"digest": d2, "settings": s})),
        )
        .await,
        "settings.memory_mb",
    );
    field_error(
        &t.call(
            Method::PUT,
            "/api/v1/settings/resources",
            Some(&admin),
            Some(json!({"settings": s})),
        )
        .await,
        "digest",
    );

    let r = t.call(Method::GET, "/api/v1/settings/network", Some(&admin), None).await;
    let body = json!({"digest": r.body["digest"], "settings": {"upstream_dns":["nope"],"management_networks":["10.0.0.0/33"],"https_redirect":true}});
    let r = t.call(Method::PUT, "/api/v1/settings/network", Some(&admin), Some(body)).await;
    field_error(&r, "settings.upstream_dns[0]");
    field_error(&r, "settings.management_networks[0]");
    let r = t.call(Method::GET, "/api/v1/settings/schedule", Some(&admin), None).await;
    let mut s = r.body["settings"].clone();
    s["backup"] = json!("not cron");
    s["keep_backups"] = json!(0);
    let r = t
        .call(
            Method::PUT,
            "/api/v1/settings/schedule",
            Some(&admin),
            Some(json!({"digest": r.body["digest"], "settings": s})),
        )
        .await;
    field_error(&r, "settings.backup");
    field_error(&r, "settings.keep_backups");
}

#[tokio::test]
async fn audit_records_state_changes_without_secrets() {
    let t = setup();
    let admin = t.admin().await;
    t.user(&admin, "bob").await;
    t.login("bob", "wrong-password-zzz").await;
    let r = t.call(Method::GET, "/api/v1/audit", Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let items = r.body["items"].as_array().unwrap();
    let actions: Vec<&str> = items.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["auth.setup", "user.create", "auth.login"] {
        assert!(actions.contains(&a), "{a} not in {actions:?}");
    }
    let failed = items
        .iter()
        .find(|e| e["action"] == "auth.login" && e["result"] == "failure")
        .expect("failed login audited");
    assert_eq!(failed["actor"], "bob");
    assert_eq!(failed["source_ip"], "127.0.0.1");
    assert_eq!(failed["status"], 401);
    for e in items {
        for k in ["id", "time", "actor", "action", "target", "result", "source_ip"] {
            assert!(e[k].is_string(), "{k} in {e}");
        }
    }
    for secret in ["admin-password-1", "user-password-1", "wrong-password-zzz"] {
        assert!(!r.text.contains(secret));
    }
    let r = t
        .call(Method::GET, "/api/v1/audit?action=user.&result=success", Some(&admin), None)
        .await;
    assert_eq!(r.body["total"], 1, "{}", r.text);
    let r = t.call(Method::GET, "/api/v1/audit?actor=bob&per_page=1", Some(&admin), None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    field_error(
        &t.call(Method::GET, "/api/v1/audit?result=maybe", Some(&admin), None).await,
        "result",
    );
    field_error(
        &t.call(Method::GET, "/api/v1/audit?since=yesterday", Some(&admin), None).await,
        "since",
    );
    field_error(
        &t.call(Method::GET, "/api/v1/audit?per_page=9999", Some(&admin), None).await,
        "per_page",
    );
    // Pages are windows of the newest-first list.
    let all = t.call(Method::GET, "/api/v1/audit?per_page=500", Some(&admin), None).await;
    let ids = |r: &Resp| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let all_ids = ids(&all);
    assert!(all_ids.len() >= 3, "{}", all.text);
    let mut sorted = all_ids.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(all_ids, sorted, "newest first");
    let p1 = t.call(Method::GET, "/api/v1/audit?per_page=2&page=1", Some(&admin), None).await;
    let p2 = t.call(Method::GET, "/api/v1/audit?per_page=2&page=2", Some(&admin), None).await;
    assert_eq!(ids(&p1), all_ids[..2].to_vec());
    assert_eq!(ids(&p2), all_ids[2..all_ids.len().min(4)].to_vec());
    assert_eq!(p2.body["total"], all.body["total"]);
    let far = t.call(Method::GET, "/api/v1/audit?per_page=2&page=999", Some(&admin), None).await;
    assert!(far.body["items"].as_array().unwrap().is_empty(), "{}", far.text);
}

#[tokio::test]
async fn network_catalog_system_docs_and_ui() {
    let t = setup();
    let admin = t.admin().await;
    let (_, bob) = t.user(&admin, "bob").await;
    let r = t.call(Method::GET, "/api/v1/network/ca.pem", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.starts_with("-----BEGIN CERTIFICATE-----"), "{}", r.text);
    let r = t.call(Method::GET, "/api/v1/network/ca.der", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/x-x509-ca-cert");
    let r = t.call(Method::GET, "/api/v1/network/ca", None, None).await;
    assert!(r.body["instructions"].as_array().unwrap().len() >= 3);
    for p in ["leases", "records", "routes", "forwards", "firewall"] {
        let path = format!("/api/v1/network/{p}");
        assert_eq!(t.call(Method::GET, &path, Some(&admin), None).await.status, StatusCode::OK, "{p}");
        is_problem(&t.call(Method::GET, &path, Some(&bob), None).await, StatusCode::FORBIDDEN);
    }
    let r = t.call(Method::POST, "/api/v1/network/self-test", Some(&admin), None).await;
    assert!(r.body["checks"].as_array().unwrap().len() >= 3, "{}", r.text);

    let r = t.call(Method::GET, "/api/v1/catalog", Some(&bob), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let first = r.body[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        t.call(Method::GET, &format!("/api/v1/catalog/{first}"), Some(&bob), None)
            .await
            .body["id"],
        first.as_str()
    );
    is_problem(
        &t.call(Method::GET, "/api/v1/catalog/does-not-exist", Some(&bob), None).await,
        StatusCode::NOT_FOUND,
    );
    assert!(
        !t.call(Method::GET, "/api/v1/catalog/categories", Some(&bob), None)
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );
    let r = t
        .call(Method::GET, &format!("/api/v1/catalog/search?q={first}"), Some(&bob), None)
        .await;
    assert!(r.body.as_array().unwrap().iter().any(|e| e["id"] == first.as_str()), "{}", r.text);
    is_problem(
        &t.call(Method::POST, "/api/v1/catalog/reload", Some(&bob), None).await,
        StatusCode::FORBIDDEN,
    );
    assert_eq!(
        t.call(Method::POST, "/api/v1/catalog/reload", Some(&admin), None).await.status,
        StatusCode::OK
    );
    is_problem(&t.call(Method::GET, "/api/v1/catalog", None, None).await, StatusCode::UNAUTHORIZED);

    let r = t.call(Method::GET, "/api/v1/system/health", None, None).await;
    assert_eq!(r.body["status"], "ok");
    let r = t.call(Method::GET, "/api/v1/system/info", Some(&bob), None).await;
    assert_eq!(r.body["domain"], "prox.local");
    assert!(r.body["users"].is_null());
    assert_eq!(
        t.call(Method::GET, "/api/v1/system/info", Some(&admin), None).await.body["users"],
        2
    );
    assert_eq!(t.call(Method::GET, "/metrics", None, None).await.status, StatusCode::OK);

    let r = t.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(r.body["info"]["title"], "Proximity management API");
    let r = t.call(Method::GET, "/api/v1/docs", None, None).await;
    assert!(
        r.text.contains("openapi.json") && !r.text.contains("https://"),
        "docs page must be self-contained"
    );
    let r = t.call(Method::GET, "/", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("<html") || r.text.contains("<!doctype"), "{}", r.text);
    let r = t.call(Method::GET, "/apps/some/ui/route", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    is_problem(
        &t.call(Method::GET, "/api/v1/nothing-here", None, None).await,
        StatusCode::NOT_FOUND,
    );
    is_problem(
        &t.call(Method::PATCH, "/api/v1/auth/me", Some(&bob), None).await,
        StatusCode::METHOD_NOT_ALLOWED,
    );
}

#[tokio::test]
async fn hosts_secrets_are_sealed_and_never_returned() {
    let t = setup();
    let admin = t.admin().await;
    let (_, bob) = t.user(&admin, "bob").await;
    let secret = "0b6b8f0e-3c1a-4b7e-9f00-SECRETSECRET";
    let host = json!({"name":"pve","url":"https://127.0.0.1:1","token_id":"root@pam!proximity","token_secret": secret});
    is_problem(
        &t.call(Method::POST, "/api/v1/hosts", Some(&bob), Some(host.clone())).await,
        StatusCode::FORBIDDEN,
    );
    field_error(
        &t.call(
            Method::POST,
            "/api/v1/hosts",
            Some(&admin),
            Some(json!({"name":"x y","url":"https://a","token_id":"a@b!c","token_secret":"s"})),
        )
        .await,
        "name",
    );
    field_error(
        &t.call(
            Method::POST,
            "/api/v1/hosts",
            Some(&admin),
            Some(json!({"name":"p","url":"http://a","token_id":"a@b!c","token_secret":"s"})),
        )
        .await,
        "url",
    );
    field_error(
        &t.call(
            Method::POST,
            "/api/v1/hosts",
            Some(&admin),
            Some(json!({"name":"p","url":"https://a:8006","token_id":"nope","token_secret":"s"})),
        )
        .await,
        "token_id",
    );
    field_error(
        &t.call(
            Method::POST,
            "/api/v1/hosts",
            Some(&admin),
            Some(json!({"name":"p","url":"https://a:8006"})),
        )
        .await,
        "token_id",
    );
    field_error(
        &t.call(
            Method::POST,
            "/api/v1/hosts",
            Some(&admin),
            Some(json!({"name":"p","url":"https://a:8006","user":"root@pam","password":"x","fingerprint":"zz"})),
        )
        .await,
        "fingerprint",
    );
    let r = t.call(Method::POST, "/api/v1/hosts", Some(&admin), Some(host.clone())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["has_secret"], true);
    assert!(!r.text.contains(secret));
    is_problem(
        &t.call(Method::POST, "/api/v1/hosts", Some(&admin), Some(host)).await,
        StatusCode::CONFLICT,
    );
    for p in ["/api/v1/hosts", "/api/v1/hosts/pve"] {
        let r = t.call(Method::GET, p, Some(&admin), None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(!r.text.contains(secret), "{}", r.text);
    }
    // Update without the secret keeps it (sealed); rename refused.
    let r = t
        .call(
            Method::PUT,
            "/api/v1/hosts/pve",
            Some(&admin),
            Some(json!({"name":"pve","url":"https://127.0.0.1:2","token_id":"root@pam!proximity"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rec = t.ctx.store.get(proximity::pve::hosts::HOSTS, "pve").unwrap().unwrap();
    let raw = serde_json::to_string(&rec).unwrap();
    assert!(!raw.contains(secret), "secret stored in clear");
    field_error(
        &t.call(
            Method::PUT,
            "/api/v1/hosts/pve",
            Some(&admin),
            Some(json!({"name":"other","url":"https://a:1","token_id":"a@b!c"})),
        )
        .await,
        "name",
    );
    is_problem(
        &t.call(Method::GET, "/api/v1/hosts/nope", Some(&admin), None).await,
        StatusCode::NOT_FOUND,
    );
    // Test connection reports the failure (nothing listens on port 2) instead of erroring.
    let r = t.call(Method::POST, "/api/v1/hosts/pve/test", Some(&admin), None).await;
    assert_eq!(r.body["api_ok"], false, "{}", r.text);
    assert!(!r.text.contains(secret));
    assert_eq!(t.call(Method::GET, "/api/v1/nodes", Some(&bob), None).await.status, StatusCode::OK);
    assert_eq!(
        t.call(Method::DELETE, "/api/v1/hosts/pve", Some(&admin), None).await.status,
        StatusCode::NO_CONTENT
    );
    is_problem(
        &t.call(Method::DELETE, "/api/v1/hosts/pve", Some(&admin), None).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn body_limit_is_enforced() {
    let t = setup();
    let admin = t.admin().await;
    let big = "x".repeat(100 * 1024);
    let r = t
        .call(Method::POST, "/api/v1/tokens", Some(&admin), Some(json!({"name": big})))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", &r.text[..r.text.len().min(200)]);
}

/// Walk the router: every registered route has a permission entry (and vice versa), and
/// every non-public route refuses anonymous callers.
#[tokio::test]
async fn every_route_declares_a_permission_and_enforces_it() {
    let t = setup();
    let table: std::collections::BTreeSet<(String, String)> =
        rbac::ROUTES.iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
    let routed: std::collections::BTreeSet<(String, String)> = proximity::api::api_routes()
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = routed.difference(&table).collect();
    assert!(missing.is_empty(), "routes without a permission entry: {missing:?}");
    let stale: Vec<_> = table.difference(&routed).collect();
    assert!(stale.is_empty(), "permission entries without a route: {stale:?}");
    for r in rbac::ROUTES {
        let path = r.path.replace("{id}", "x1").replace("{name}", "x1").replace("{backup_id}", "x1");
        let method: Method = r.method.parse().unwrap();
        let body = if method == Method::GET || method == Method::DELETE {
            None
        } else {
            Some(json!({}))
        };
        let resp = t.call(method, &path, None, body).await;
        match r.perm {
            rbac::Perm::Public => assert_ne!(resp.status, StatusCode::UNAUTHORIZED, "{} {} is public", r.method, r.path),
            _ => assert_eq!(
                resp.status,
                StatusCode::UNAUTHORIZED,
                "{} {} must need authentication: {}",
                r.method,
                r.path,
                resp.text
            ),
        }
    }
}
