//! The web console end to end: `proximity demo` (daemon + simulator with its SSH server, all
//! on ephemeral loopback ports), a deployed app, and a real websocket client over TLS that
//! trusts only the appliance CA. Checks: a shell answers `echo hello-<random>`, a resize
//! reaches the pty (`stty size`), bad control frames get an `error` frame, another user is
//! refused (404), cookie sessions need the CSRF value and API tokens the write scope, the
//! per-user limit closes with 1013,
//! an oversized input frame closes with 1009, deleting the app ends an open session with
//! its reason, and every session is in the audit log with byte counts.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Proc, bin, free_port, free_udp_tcp_port, setup_admin, write_sim_config};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Ws = WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

struct Demo {
    proc: Proc,
    _dir: tempfile::TempDir,
    port: u16,
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
}

impl Demo {
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/api/v1{path}", self.port)
    }

    async fn call(&self, m: reqwest::Method, path: &str, tok: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self.http.request(m, self.url(path)).bearer_auth(tok);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let s = r.status().as_u16();
        let text = r.text().await.unwrap();
        (s, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn login(&self, user: &str, pw: &str) -> reqwest::Response {
        self.http
            .post(self.url("/auth/login"))
            .json(&json!({"username": user, "password": pw}))
            .send()
            .await
            .unwrap()
    }

    async fn token(&self, user: &str, pw: &str) -> String {
        let r: Value = self.login(user, pw).await.json().await.unwrap();
        r["access_token"].as_str().expect("access token").to_string()
    }

    /// Open the console websocket with extra request headers.
    async fn ws(&self, app: &str, query: &str, headers: &[(&str, String)]) -> Result<Ws, WsError> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()), tcp)
            .await
            .unwrap();
        let mut req = format!("wss://127.0.0.1:{}/api/v1/apps/{app}/console?{query}", self.port)
            .into_client_request()
            .unwrap();
        for (k, v) in headers {
            let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            req.headers_mut().insert(name, v.parse().unwrap());
        }
        tokio_tungstenite::client_async(req, tls).await.map(|(ws, _)| ws)
    }

    async fn ws_bearer(&self, app: &str, tok: &str) -> Result<Ws, WsError> {
        self.ws(app, "cols=80&rows=24", &[("authorization", format!("Bearer {tok}"))]).await
    }
}

async fn start_demo() -> Demo {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let mut p = Proc::spawn({
        let mut c = Command::new(bin());
        c.arg("demo")
            .arg("--data-dir")
            .arg(&data)
            .args(["--admin-password", "admin-password-1", "--nodes", "1"])
            .args(["--api-listen", &addr(port)])
            .args(["--dns-listen", &addr(free_udp_tcp_port())])
            .args(["--http-listen", &addr(free_port())])
            .args(["--https-listen", &addr(free_port())])
            .args(["--sim-listen", &addr(free_port())])
            .args(["--sim-ssh-listen", &addr(free_port())]);
        c
    });
    p.wait_for(|l| l.starts_with("ready"), Duration::from_secs(120));
    // Trust exactly the appliance CA (written to the data directory at start).
    let pem = std::fs::read(data.join("ca.pem")).expect("ca.pem in the data dir");
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    Demo {
        proc: p,
        _dir: dir,
        port,
        http,
        tls,
    }
}

/// Read frames until the collected output satisfies `done`; returns the output, the text
/// frames and the close frame (if the server closed).
async fn read_until<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    secs: u64,
    done: impl Fn(&str) -> bool,
) -> (String, Vec<Value>, Option<(u16, String)>) {
    let mut out = Vec::new();
    let mut texts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => break,
            Ok(None) | Ok(Some(Err(_))) => return (String::from_utf8_lossy(&out).into(), texts, None),
            Ok(Some(Ok(m))) => match m {
                Message::Binary(b) => out.extend_from_slice(&b),
                Message::Text(t) => texts.push(serde_json::from_str(t.as_str()).unwrap_or(Value::Null)),
                Message::Close(f) => {
                    let f = f
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return (String::from_utf8_lossy(&out).into(), texts, Some(f));
                }
                _ => {}
            },
        }
        if done(&String::from_utf8_lossy(&out)) {
            break;
        }
    }
    (String::from_utf8_lossy(&out).into(), texts, None)
}

fn http_status(e: &WsError) -> Option<u16> {
    match e {
        WsError::Http(r) => Some(r.status().as_u16()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_over_a_real_websocket() {
    let d = start_demo().await;
    use reqwest::Method as M;
    let admin = d.token("admin", "admin-password-1").await;
    for name in ["bob", "carol"] {
        let (s, b) = d
            .call(
                M::POST,
                "/users",
                &admin,
                Some(json!({"username": name, "password": "user-password-1"})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let bob = d.token("bob", "user-password-1").await;
    let carol = d.token("carol", "user-password-1").await;

    // Deploy two apps as bob (one to delete, one for the shutdown) and wait until they run.
    let mut ids = Vec::new();
    for n in 0..2 {
        let host = format!("con-{}-{n}", std::process::id());
        let (s, app) = d
            .call(M::POST, "/apps", &bob, Some(json!({"catalog_id": "whoami", "hostname": host})))
            .await;
        assert_eq!(s, 202, "{app}");
        ids.push(app["id"].as_str().unwrap().to_string());
    }
    let (id, id2) = (ids[0].clone(), ids[1].clone());
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut app = Value::Null;
    for i in &ids {
        app = loop {
            let (s, a) = d.call(M::GET, &format!("/apps/{i}"), &bob, None).await;
            assert_eq!(s, 200, "{a}");
            if a["status"] == "running" {
                break a;
            }
            assert!(a["status"] != "error", "deploy failed: {a}");
            assert!(Instant::now() < deadline, "app not running: {a}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
    }
    // The simulator's app server sends no framing headers: the UI may frame it.
    assert_eq!(app["frameable"], json!(true), "{app}");

    // 1. A shell: echo a random word back.
    let word = format!("hello-{:08x}", rand::random::<u32>());
    let mut ws = d.ws_bearer(&id, &bob).await.expect("console opens");
    let (prompt, _, closed) = read_until(&mut ws, 15, |o| o.contains("# ") || o.contains("$ ")).await;
    assert!(closed.is_none(), "closed early: {closed:?} {prompt}");
    ws.send(Message::Binary(format!("echo {word}\n").into_bytes().into()))
        .await
        .unwrap();
    let line = format!("\n{word}\r\n");
    let (out, _, closed) = read_until(&mut ws, 15, |o| o.contains(&line)).await;
    assert!(out.contains(&line), "no echo of {word}: {out:?} closed={closed:?}");

    // 2. Resize reaches the pty; a bad control frame gets an error frame, the session goes on.
    ws.send(Message::Text(r#"{"type":"resize","cols":111,"rows":33}"#.into()))
        .await
        .unwrap();
    ws.send(Message::Text(r#"{"type":"resize","cols":0,"rows":33}"#.into()))
        .await
        .unwrap();
    ws.send(Message::Binary(b"stty size\n".to_vec().into())).await.unwrap();
    let (out, texts, _) = read_until(&mut ws, 15, |o| o.contains("33 111")).await;
    assert!(out.contains("33 111"), "resize not applied: {out:?}");
    assert!(
        texts
            .iter()
            .any(|t| t["type"] == "error" && t["message"].as_str().unwrap_or("").contains("cols")),
        "{texts:?}"
    );

    // 3. Close from the client.
    ws.close(None).await.unwrap();
    let _ = read_until(&mut ws, 5, |_| false).await;

    // 4. Another plain user: 404 like every other endpoint of someone else's app; no auth: 401.
    let e = d.ws_bearer(&id, &carol).await.expect_err("carol must be refused");
    assert_eq!(http_status(&e), Some(404), "{e}");
    let e = d.ws(&id, "", &[]).await.expect_err("anonymous must be refused");
    assert_eq!(http_status(&e), Some(401), "{e}");
    // Bad size: 422.
    let e = d
        .ws(&id, "cols=0&rows=24", &[("authorization", format!("Bearer {bob}"))])
        .await
        .expect_err("cols=0");
    assert_eq!(http_status(&e), Some(422), "{e}");

    // 5. Cookie sessions must repeat the CSRF cookie in `csrf`.
    let r = d.login("bob", "user-password-1").await;
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .filter(|c| !c.starts_with("proximity_refresh="))
        .collect();
    let csrf = cookies
        .iter()
        .find_map(|c| c.strip_prefix("proximity_csrf="))
        .expect("csrf cookie")
        .to_string();
    let cookie = cookies.join("; ");
    let e = d
        .ws(&id, "cols=80&rows=24", &[("cookie", cookie.clone())])
        .await
        .expect_err("cookie without csrf");
    assert_eq!(http_status(&e), Some(403), "{e}");
    let e = d
        .ws(&id, "cols=80&rows=24&csrf=wrong", &[("cookie", cookie.clone())])
        .await
        .expect_err("cookie with a wrong csrf");
    assert_eq!(http_status(&e), Some(403), "{e}");
    let mut ws = d
        .ws(&id, &format!("cols=80&rows=24&csrf={csrf}"), &[("cookie", cookie.clone())])
        .await
        .expect("cookie + csrf opens");
    let (prompt, _, closed) = read_until(&mut ws, 15, |o| o.contains("# ") || o.contains("$ ")).await;
    assert!(closed.is_none(), "{closed:?} {prompt}");

    // API tokens: a read-only token is refused, a token with the write scope opens.
    let mut api_tokens = Vec::new();
    for scopes in [json!(["read"]), json!(["read", "write"])] {
        let (s, t) = d
            .call(M::POST, "/tokens", &bob, Some(json!({"name": "console-test", "scopes": scopes})))
            .await;
        assert_eq!(s, 201, "{t}");
        api_tokens.push(t["token"].as_str().unwrap().to_string());
    }
    let e = d.ws_bearer(&id, &api_tokens[0]).await.expect_err("read-only token");
    assert_eq!(http_status(&e), Some(403), "{e}");
    let mut tws = d.ws_bearer(&id, &api_tokens[1]).await.expect("write token opens");
    let (o, _, closed) = read_until(&mut tws, 15, |o| o.contains("# ") || o.contains("$ ")).await;
    assert!(closed.is_none(), "{closed:?} {o}");
    tws.close(None).await.unwrap();
    let _ = read_until(&mut tws, 5, |_| false).await;

    // 6. An input frame over the limit (64 KiB) ends the session with 1009 and a reason.
    ws.send(Message::Binary(vec![b'x'; 64 * 1024 + 1].into())).await.unwrap();
    let (_, texts, closed) = read_until(&mut ws, 10, |_| false).await;
    let (code, reason) = closed.expect("closed after oversized input");
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("65536"), "{reason}");
    assert!(texts.iter().any(|t| t["type"] == "exit"), "{texts:?}");

    // 7. Per-user limit (4): the fifth console is refused with 1013 and a reason.
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut ws = d.ws_bearer(&id, &bob).await.expect("within the limit");
        let (o, _, closed) = read_until(&mut ws, 15, |o| o.contains("# ") || o.contains("$ ")).await;
        assert!(closed.is_none(), "{closed:?} {o}");
        open.push(ws);
    }
    let mut fifth = d.ws_bearer(&id, &bob).await.expect("upgrade, then refused");
    let (_, texts, closed) = read_until(&mut fifth, 10, |_| false).await;
    let (code, reason) = closed.expect("fifth console closed");
    assert_eq!(code, u16::from(CloseCode::Again), "{reason}");
    assert!(reason.contains("limit per user is 4"), "{reason}");
    assert!(texts.iter().any(|t| t["type"] == "exit"), "{texts:?}");
    // The admin is another user: not affected by bob's limit.
    let mut adm = d.ws_bearer(&id, &admin).await.expect("admin console");
    let (o, _, closed) = read_until(&mut adm, 15, |o| o.contains("# ") || o.contains("$ ")).await;
    assert!(closed.is_none(), "{closed:?} {o}");
    adm.close(None).await.unwrap();
    for mut ws in open.drain(..) {
        ws.close(None).await.unwrap();
        let _ = read_until(&mut ws, 5, |_| false).await;
    }
    // Places are given back: a new console opens again.
    let mut again = None;
    for _ in 0..20 {
        let mut ws = d.ws_bearer(&id, &bob).await.expect("upgrade");
        let (_, _, closed) = read_until(&mut ws, 3, |o| o.contains("# ") || o.contains("$ ")).await;
        if closed.is_none() {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut ws = again.expect("a console opens again once others closed");

    // 8. Deleting the app ends the open session, saying why.
    let (s, b) = d.call(M::DELETE, &format!("/apps/{id}"), &bob, None).await;
    assert_eq!(s, 202, "{b}");
    let (_, texts, closed) = read_until(&mut ws, 60, |_| false).await;
    let (code, reason) = closed.expect("closed by the delete");
    assert_eq!((code, reason.as_str()), (1000, "The app was deleted."), "{texts:?}");
    assert!(
        texts.iter().any(|t| t["type"] == "exit" && t["reason"] == "The app was deleted."),
        "{texts:?}"
    );

    // 9. The audit log: every session as `app.console` with start, end and bytes, no contents.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, page) = d.call(M::GET, "/audit?action=app.console&per_page=100", &admin, None).await;
        assert_eq!(s, 200, "{page}");
        let items = page["items"].as_array().unwrap().clone();
        let text = serde_json::to_string(&items).unwrap();
        assert!(!text.contains(&word), "the audit log must not hold session contents");
        let first = items.iter().find(|e| {
            e["actor"] == "bob"
                && e["target"] == id.as_str()
                && e["details"]["state"] == "closed"
                && e["details"]["reason"] == "client_closed"
                && e["details"]["bytes_in"].as_u64() == Some(format!("echo {word}\n").len() as u64 + 10)
        });
        let refused_carol = items
            .iter()
            .any(|e| e["actor"] == "carol" && e["result"] == "failure" && e["status"] == 404);
        let limited = items
            .iter()
            .any(|e| e["actor"] == "bob" && e["details"]["reason"] == "limit" && e["status"] == 429);
        let deleted = items.iter().any(|e| e["details"]["reason"] == "app_deleted");
        if let Some(e) = first
            && refused_carol
            && limited
            && deleted
        {
            assert!(e["details"]["bytes_out"].as_u64().unwrap() > 0, "{e}");
            assert!(e["details"]["start"].is_string() && e["details"]["end"].is_string(), "{e}");
            assert_eq!(e["result"], "success", "{e}");
            break;
        }
        assert!(Instant::now() < deadline, "audit records missing: {text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // 10. Shutting the appliance down ends open consoles with 1001 and the reason.
    let mut ws = d.ws_bearer(&id2, &bob).await.expect("console on the second app");
    let (o, _, closed) = read_until(&mut ws, 15, |o| o.contains("# ") || o.contains("$ ")).await;
    assert!(closed.is_none(), "{closed:?} {o}");
    d.proc.signal("TERM");
    let (_, texts, closed) = read_until(&mut ws, 20, |_| false).await;
    let (code, reason) = closed.expect("closed by the shutdown");
    assert_eq!((code, reason.as_str()), (1001, "The appliance is shutting down."), "{texts:?}");
}

/// `api.console_idle_secs` ends a quiet session with its reason (daemon from a config file,
/// plain HTTP on loopback, the simulator in-process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_console_is_closed_with_its_reason() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let sim = proximity::sim::start(proximity::sim::SimConfig::new(dir.path().join("sim")))
        .await
        .expect("simulator");
    let port = free_port();
    let cfg = write_sim_config(dir.path(), port, &sim, "console_idle_secs = 10\n");
    let mut p = Proc::spawn({
        let mut c = Command::new(bin());
        c.args(["serve", "--config"]).arg(&cfg);
        c
    });
    p.wait_ready();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let tok = setup_admin(&http, &base, "admin", "admin-password-1").await;
    let call = |m: reqwest::Method, path: String, body: Option<Value>| {
        let mut rb = http.request(m, format!("{base}{path}")).bearer_auth(&tok);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        async move {
            let r = rb.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, b) = call(reqwest::Method::POST, "/hosts/sim/sync".into(), None).await;
    assert_eq!(s, 200, "{b}");
    let (s, app) = call(
        reqwest::Method::POST,
        "/apps".into(),
        Some(json!({"catalog_id": "whoami", "hostname": "idle"})),
    )
    .await;
    assert_eq!(s, 202, "{app}");
    let id = app["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, a) = call(reqwest::Method::GET, format!("/apps/{id}"), None).await;
        if a["status"] == "running" {
            break;
        }
        assert!(a["status"] != "error" && Instant::now() < deadline, "{a}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut req = format!("ws://127.0.0.1:{port}/api/v1/apps/{id}/console?cols=80&rows=24")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {tok}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("console opens");
    let (o, _, closed) = read_until(&mut ws, 15, |o| o.contains("# ") || o.contains("$ ")).await;
    assert!(closed.is_none(), "{closed:?} {o}");
    // Activity keeps it open past the timeout...
    let opened = Instant::now();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        ws.send(Message::Binary(b"\n".to_vec().into())).await.unwrap();
    }
    // ...then silence closes it after ~10 s.
    let quiet = Instant::now();
    let (_, texts, closed) = read_until(&mut ws, 30, |_| false).await;
    let (code, reason) = closed.expect("closed when idle");
    assert!(opened.elapsed() > Duration::from_secs(20), "closed while active");
    assert!(quiet.elapsed() >= Duration::from_secs(9), "{:?}", quiet.elapsed());
    assert_eq!((code, reason.as_str()), (1008, "Idle timeout: no activity for 10 s."), "{texts:?}");
    drop(p);
    sim.shutdown().await;
}
