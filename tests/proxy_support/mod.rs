//! Helpers for the reverse-proxy tests: backend HTTP/websocket servers on loopback (axum),
//! seeding app records into the redb file, a config writer, raw HTTP/1 and websocket
//! clients, and curl.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::routing::get;
use proximity::registry::{App, AppStatus, Resources};
use tokio_util::sync::CancellationToken;

/// A backend HTTP server on 127.0.0.1 answering `backend-<name>` plus the forwarding
/// headers it received, and echoing websocket messages on `/ws`.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    token: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

async fn ws_echo(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        let reply = match msg {
            Message::Text(t) => Message::Text(format!("echo:{t}").into()),
            Message::Binary(b) => Message::Binary(b),
            Message::Close(_) => return,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}

impl Backend {
    /// Start on `addr` (port 0 for a new port).
    pub async fn start(name: &str, addr: SocketAddr) -> Backend {
        let n = name.to_string();
        let app = axum::Router::new()
            .route(
                "/",
                get(move |h: HeaderMap| {
                    let n = n.clone();
                    async move {
                        let g = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
                        format!(
                            "backend-{n} xff={} proto={} xhost={} host={}\n",
                            g("x-forwarded-for"),
                            g("x-forwarded-proto"),
                            g("x-forwarded-host"),
                            g("host")
                        )
                    }
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    "late"
                }),
            )
            .route("/ws", get(|ws: WebSocketUpgrade| async move { ws.on_upgrade(ws_echo) }));
        let listener = tokio::net::TcpListener::bind(addr).await.expect("backend bind");
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let t = token.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { t.cancelled().await })
                .await;
        });
        Backend {
            name: name.into(),
            addr,
            token,
            task: Some(task),
        }
    }

    /// Stop accepting and close connections (bounded wait).
    pub async fn stop(&mut self) {
        self.token.cancel();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// An app record routed to `upstream` (a loopback backend).
pub fn app(id: &str, hostname: &str, upstream: SocketAddr, aliases: &[&str], https_redirect: bool) -> App {
    let n = id.bytes().fold(0u8, |a, b| a.wrapping_add(b)) % 100;
    App {
        id: id.into(),
        hostname: hostname.into(),
        catalog_id: "nginx".into(),
        catalog_version: "1".into(),
        owner: "u1".into(),
        status: AppStatus::Running,
        host: None,
        node: None,
        vmid: None,
        mac: format!("02:50:58:00:01:{n:02x}"),
        ip: Ipv4Addr::new(10, 20, 0, 100 + n),
        upstream_ip: Some(match upstream.ip() {
            std::net::IpAddr::V4(v) => v,
            _ => panic!("ipv4 backend expected"),
        }),
        web_port: Some(upstream.port()),
        forwards: vec![],
        aliases: aliases.iter().map(|s| s.to_string()).collect(),
        https_redirect,
        resources: Resources {
            cores: 1,
            memory_mb: 256,
            disk_gb: 2,
        },
        settings: BTreeMap::new(),
        error: None,
        job_id: None,
        adopted: false,
        created_at: 0,
        updated_at: 0,
    }
}

/// Ports of one proxy test daemon.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: u16,
    pub https: u16,
    pub api: u16,
}

impl Ports {
    pub fn new() -> Ports {
        Ports {
            http: free_port(),
            https: free_port(),
            api: free_port(),
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Config text: proxy on loopback ports, API plain HTTP on loopback, everything else off.
pub fn config_text(dir: &Path, p: Ports, health_secs: u64) -> String {
    format!(
        r#"[general]
data_dir = "{data}"
[network]
manage_links = false
firewall = false
upstream_dns = []
[dhcp]
enabled = false
[dns]
enabled = false
[proxy]
enabled = true
http_listen = ["127.0.0.1:{http}"]
https_listen = ["127.0.0.1:{https}"]
health_check_secs = {health_secs}
threads = 1
max_body_bytes = 1024
upstream_timeout_secs = 5
[api]
tls = false
listen = ["127.0.0.1:{api}"]
"#,
        data = dir.join("data").display(),
        http = p.http,
        https = p.https,
        api = p.api,
    )
}

/// Write the config file and seed `apps` into the database file before the daemon starts.
pub fn write_config_and_seed(dir: &Path, p: Ports, health_secs: u64, apps: &[App]) -> PathBuf {
    let text = config_text(dir, p, health_secs);
    let cfg = proximity::config::Config::from_toml_str(&text).expect("test config valid");
    let store = proximity::store::Store::open(&cfg.db_path()).expect("open store");
    for a in apps {
        store.put(proximity::registry::APPS, &a.id, a).unwrap();
    }
    drop(store);
    let path = dir.join("proximity.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Output of one curl run: body, status code, HTTP version, redirect target.
#[derive(Debug)]
pub struct CurlOut {
    pub body: String,
    pub code: u16,
    pub version: String,
    pub location: String,
    pub ok: bool,
    pub stderr: String,
}

/// Run curl against the proxy with `--resolve host:port:127.0.0.1` (never DNS).
pub fn curl(url: &str, host: &str, port: u16, extra: &[&str]) -> CurlOut {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--noproxy", "*"])
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(["-w", "\n@@%{http_code} %{http_version} %{redirect_url}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, meta) = stdout.rsplit_once("\n@@").unwrap_or((&stdout, "0 0 "));
    let mut it = meta.splitn(3, ' ');
    CurlOut {
        body: body.to_string(),
        code: it.next().unwrap_or("0").parse().unwrap_or(0),
        version: it.next().unwrap_or("").to_string(),
        location: it.next().unwrap_or("").trim().to_string(),
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// Send raw bytes to `127.0.0.1:port` and return the status code of the first response
/// (0 when the connection closed without one).
pub fn raw_status(port: u16, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

/// One plain HTTP/1.1 GET with `Connection: close`; returns (status, body).
pub fn http_get(port: u16, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// The CA certificate (DER) from a PEM file.
pub fn pem_cert_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let start = pem.find("-----BEGIN CERTIFICATE-----").expect("PEM") + 27;
    let end = start + pem[start..].find("-----END CERTIFICATE-----").expect("PEM end");
    let b64: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

/// A websocket round trip over TLS (`wss://host:port/ws`, SNI = host) trusting only the
/// given CA: sends one masked text frame, returns the text of the reply frame.
pub async fn wss_echo(port: u16, host: &str, ca_pem: &str, text: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(pem_cert_der(ca_pem))).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).unwrap();
    let mut s = conn.connect(name, tcp).await.expect("TLS handshake with the appliance CA");
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("ws handshake timeout")
            .unwrap();
        assert!(
            n == 1,
            "connection closed during websocket handshake: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
    // RFC 6455 sample key → this accept value.
    assert!(head.to_ascii_lowercase().contains("s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    let payload = text.as_bytes();
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, c)| c ^ mask[i % 4]));
    s.write_all(&frame).await.unwrap();
    let mut hdr = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut hdr))
        .await
        .expect("ws reply timeout")
        .unwrap();
    assert_eq!(hdr[0], 0x81, "text frame expected");
    let len = (hdr[1] & 0x7f) as usize;
    assert!(len < 126);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    String::from_utf8(body).unwrap()
}
