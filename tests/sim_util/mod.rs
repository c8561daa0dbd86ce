//! Helpers for the simulator tests: start `proximity pve-sim` (the real binary) on ephemeral
//! ports, a small PVE API client over reqwest, and an SSH exec client over russh.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{Proc, bin};

/// A simulator started from the binary.
pub struct SimProc {
    /// The process (killed on drop).
    pub proc: Proc,
    /// API address.
    pub api: String,
    /// SSH address.
    pub ssh: String,
    /// Fingerprint printed.
    pub fingerprint: String,
    /// Root password.
    pub password: String,
    /// Token secret.
    pub token: String,
}

/// Start `proximity pve-sim` with extra args.
pub fn start_sim(state: &Path, extra: &[&str]) -> SimProc {
    let password = "sim-root-pw".to_string();
    let token = "0b1e8d2c-3f4a-4c5d-9e6f-7a8b9c0d1e2f".to_string();
    let mut cmd = Command::new(bin());
    cmd.args([
        "pve-sim",
        "--listen",
        "127.0.0.1:0",
        "--ssh-listen",
        "127.0.0.1:0",
        "--root-password",
        &password,
        "--token-secret",
        &token,
        "--state-dir",
    ])
    .arg(state)
    .args(extra);
    let mut proc = Proc::spawn(cmd);
    let ready = proc.wait_ready();
    let field = |k: &str| {
        ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let fingerprint = proc.seen.iter().find_map(|l| l.strip_prefix("fingerprint ")).unwrap().to_string();
    SimProc {
        api: field("api"),
        ssh: field("ssh"),
        fingerprint,
        password,
        token,
        proc,
    }
}

impl SimProc {
    /// Base URL.
    pub fn base(&self) -> String {
        format!("https://{}/api2/json", self.api)
    }
    /// A token-authenticated client.
    pub fn token_client(&self) -> Api {
        Api::new(&self.base(), Auth::Token(format!("PVEAPIToken=root@pam!proximity={}", self.token)))
    }
    /// Stop with SIGTERM and wait.
    pub fn stop(mut self) {
        self.proc.signal("TERM");
        assert!(
            self.proc.wait_exit(Duration::from_secs(15)).is_some(),
            "simulator did not exit on SIGTERM"
        );
    }
}

/// Authentication of [`Api`].
#[derive(Clone)]
pub enum Auth {
    /// No credentials.
    None,
    /// `Authorization` header value.
    Token(String),
    /// Ticket cookie and CSRF token.
    Ticket(String, String),
}

/// Minimal PVE API client for tests.
#[derive(Clone)]
pub struct Api {
    /// Base URL.
    pub base: String,
    /// Auth.
    pub auth: Auth,
    http: reqwest::Client,
}

/// A raw response: status, reason phrase (first line of the message), JSON body.
#[derive(Debug)]
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Value,
}

impl Resp {
    /// `data` of a 200, or panic with the body.
    pub fn data(&self) -> &Value {
        assert_eq!(self.status, 200, "unexpected reply: {:?}", self.body);
        &self.body["data"]
    }
}

impl Api {
    /// New client (accepts the self-signed certificate).
    pub fn new(base: &str, auth: Auth) -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Api {
            base: base.to_string(),
            auth,
            http,
        }
    }

    /// Log in with a ticket.
    pub async fn login(base: &str, user: &str, password: &str) -> Api {
        let anon = Api::new(base, Auth::None);
        let r = anon
            .call("POST", "/access/ticket", &[("username", user), ("password", password)])
            .await;
        let d = r.data();
        Api::new(
            base,
            Auth::Ticket(
                d["ticket"].as_str().unwrap().into(),
                d["CSRFPreventionToken"].as_str().unwrap().into(),
            ),
        )
    }

    /// Call with form parameters (query string for GET/DELETE).
    pub async fn call(&self, method: &str, path: &str, params: &[(&str, &str)]) -> Resp {
        let url = format!("{}{}", self.base, path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self.http.request(m, &url);
        rb = if method == "GET" || method == "DELETE" {
            rb.query(params)
        } else {
            rb.form(params)
        };
        rb = self.authorize(rb, method);
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.json::<Value>().await.unwrap_or(Value::Null);
        Resp { status, body }
    }

    /// POST/PUT a JSON body.
    pub async fn call_json(&self, method: &str, path: &str, body: &Value) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let rb = self.authorize(self.http.request(m, format!("{}{}", self.base, path)).json(body), method);
        let r = rb.send().await.unwrap();
        Resp {
            status: r.status().as_u16(),
            body: r.json::<Value>().await.unwrap_or(Value::Null),
        }
    }

    fn authorize(&self, rb: reqwest::RequestBuilder, method: &str) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => rb,
            Auth::Token(t) => rb.header("Authorization", t),
            Auth::Ticket(t, csrf) => {
                let rb = rb.header("Cookie", format!("PVEAuthCookie={t}"));
                if method == "GET" {
                    rb
                } else {
                    rb.header("CSRFPreventionToken", csrf)
                }
            }
        }
    }

    /// Raw request returning the status line's reason phrase too (via curl, a real client).
    pub fn curl_status_line(&self, method: &str, path: &str, extra: &[&str]) -> String {
        let mut c = Command::new("curl");
        c.args(["-sk", "-o", "/dev/null", "-D", "-", "-X", method]).args(extra);
        if let Auth::Token(t) = &self.auth {
            c.args(["-H", &format!("Authorization: {t}")]);
        }
        let out = c.arg(format!("{}{}", self.base, path)).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string()
    }

    /// Wait for a task; returns its final status object.
    pub async fn wait_task(&self, upid: &str) -> Value {
        let node = upid.split(':').nth(1).unwrap();
        let enc = percent_encoding::utf8_percent_encode(upid, percent_encoding::NON_ALPHANUMERIC).to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.call("GET", &format!("/nodes/{node}/tasks/{enc}/status"), &[]).await;
            let d = r.data().clone();
            if d["status"] == "stopped" {
                return d;
            }
            assert!(Instant::now() < deadline, "task {upid} did not finish");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Task log lines.
    pub async fn task_log(&self, upid: &str) -> Vec<String> {
        let node = upid.split(':').nth(1).unwrap();
        let enc = percent_encoding::utf8_percent_encode(upid, percent_encoding::NON_ALPHANUMERIC).to_string();
        let r = self
            .call("GET", &format!("/nodes/{node}/tasks/{enc}/log"), &[("limit", "1000")])
            .await;
        r.data()
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["t"].as_str().unwrap().to_string())
            .collect()
    }

    /// Run an async call to completion and assert success.
    pub async fn run_ok(&self, method: &str, path: &str, params: &[(&str, &str)]) -> Value {
        let r = self.call(method, path, params).await;
        let upid = r.data().as_str().unwrap_or_else(|| panic!("no UPID: {:?}", r.body)).to_string();
        let st = self.wait_task(&upid).await;
        assert_eq!(
            st["exitstatus"],
            "OK",
            "task {upid} failed: {:?}\n{:?}",
            st,
            self.task_log(&upid).await
        );
        st
    }
}

/// The newest Alpine template of the index.
pub async fn alpine_template(api: &Api, node: &str) -> String {
    let list = api.call("GET", &format!("/nodes/{node}/aplinfo"), &[]).await;
    let mut names: Vec<String> = list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["template"].as_str())
        .filter(|t| t.starts_with("alpine-"))
        .map(str::to_string)
        .collect();
    names.sort();
    names.pop().unwrap()
}

/// Accepts any host key (tests pin nothing).
pub struct TrustAll;

impl russh::client::Handler for TrustAll {
    type Error = russh::Error;
    async fn check_server_key(&mut self, _key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// An SSH session to the simulator.
pub struct Ssh {
    handle: russh::client::Handle<TrustAll>,
}

/// Output of an SSH exec.
#[derive(Debug, Default)]
pub struct ExecOut {
    /// Exit status.
    pub status: u32,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

impl Ssh {
    /// Connect with the root password.
    pub async fn password(addr: &str, password: &str) -> Result<Ssh, String> {
        let cfg = Arc::new(russh::client::Config::default());
        let mut handle = russh::client::connect(cfg, addr, TrustAll).await.map_err(|e| e.to_string())?;
        let ok = handle.authenticate_password("root", password).await.map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err("password rejected".into());
        }
        Ok(Ssh { handle })
    }

    /// Connect with a private key.
    pub async fn key(addr: &str, key: russh::keys::PrivateKey) -> Result<Ssh, String> {
        let cfg = Arc::new(russh::client::Config::default());
        let mut handle = russh::client::connect(cfg, addr, TrustAll).await.map_err(|e| e.to_string())?;
        let k = russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), None);
        let ok = handle.authenticate_publickey("root", k).await.map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err("key rejected".into());
        }
        Ok(Ssh { handle })
    }

    /// Run a command line, optionally feeding stdin.
    pub async fn exec(&self, cmd: &str, stdin: Option<&[u8]>) -> ExecOut {
        let mut ch = self.handle.channel_open_session().await.unwrap();
        ch.exec(true, cmd).await.unwrap();
        if let Some(data) = stdin {
            ch.data(data).await.unwrap();
        }
        ch.eof().await.unwrap();
        let mut out = ExecOut::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let msg = tokio::time::timeout_at(deadline, ch.wait()).await.expect("ssh exec timed out");
            match msg {
                Some(russh::ChannelMsg::Data { data }) => out.stdout.push_str(&String::from_utf8_lossy(&data)),
                Some(russh::ChannelMsg::ExtendedData { data, .. }) => out.stderr.push_str(&String::from_utf8_lossy(&data)),
                Some(russh::ChannelMsg::ExitStatus { exit_status }) => out.status = exit_status,
                Some(_) => {}
                None => break,
            }
        }
        out
    }

    /// The underlying handle.
    pub fn handle(&self) -> &russh::client::Handle<TrustAll> {
        &self.handle
    }
}

/// Plain HTTP GET with curl (a real client); returns (status, body).
pub fn http_get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
