//! Container runtimes and the app HTTP servers that `docker compose up -d` starts.
//!
//! A runtime gives a running CT an address and lets us bind sockets "inside" it:
//! [`loopback::Loopback`] binds the CT's own 127.x.y.z; [`netns::Netns`] creates a network
//! namespace per CT (veth on the `bridge=` of `net0`, MAC from `hwaddr=`, DHCP via udhcpc).

pub mod loopback;
pub mod netns;
pub mod pty;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::Sim;
use super::state::{Ct, Layout, Project, State};

/// What a runtime needs to start a CT.
#[derive(Debug, Clone)]
pub struct CtSpec {
    /// VMID.
    pub vmid: u32,
    /// Node index (1-based).
    pub node_index: u32,
    /// Hostname.
    pub hostname: String,
    /// Loopback address.
    pub loop_ip: Ipv4Addr,
    /// `net0` key/values.
    pub net0: BTreeMap<String, String>,
    /// Root directory on the host.
    pub root: PathBuf,
}

impl CtSpec {
    /// Build from a CT.
    pub fn from_ct(ct: &Ct, st: &State, layout: &Layout) -> CtSpec {
        CtSpec {
            vmid: ct.vmid,
            node_index: st.node(&ct.node).map(|n| n.index).unwrap_or(1),
            hostname: ct.name(),
            loop_ip: ct.loop_ip,
            net0: ct.net0(),
            root: layout.ct_root(ct.vmid),
        }
    }
}

/// A container runtime.
#[async_trait::async_trait]
pub trait CtRuntime: Send + Sync {
    /// Runtime name.
    fn name(&self) -> &'static str;
    /// Start the CT's network; returns its IPv4 address with prefix (`a.b.c.d/len`), if any.
    async fn start(&self, spec: &CtSpec) -> Result<Option<String>, String>;
    /// Stop the CT: its processes end, its namespace goes away.
    async fn stop(&self, vmid: u32) -> Result<(), String>;
    /// Bind a TCP listener on `port` inside the CT.
    async fn listen(&self, vmid: u32, loop_ip: Ipv4Addr, port: u16) -> Result<std::net::TcpListener, String>;
    /// A command that runs `argv` inside the CT's network context (for `pct enter`).
    fn command_in(&self, vmid: u32, argv: &[&str]) -> std::process::Command;
    /// Remove everything this runtime created; returns the problems met.
    async fn shutdown(&self) -> Vec<String>;
    /// Same as [`CtRuntime::shutdown`], callable from `Drop`.
    fn shutdown_blocking(&self);
}

struct RunningApp {
    project: String,
    service: String,
    port: u16,
    cancel: CancellationToken,
}

/// HTTP servers standing in for compose services, per CT.
#[derive(Default)]
pub struct AppServers {
    inner: Mutex<HashMap<u32, Vec<RunningApp>>>,
}

impl AppServers {
    /// Start one HTTP server per published port of `project` (idempotent).
    pub async fn start_project(&self, sim: &Arc<Sim>, vmid: u32, project: &Project) -> Result<(), String> {
        let (loop_ip, hostname) = {
            let st = sim.state.lock().expect("state");
            let ct = st.cts.get(&vmid).ok_or_else(|| format!("CT {vmid} does not exist"))?;
            (ct.loop_ip, ct.name())
        };
        for svc in &project.services {
            for (_ip, hport, cport) in &svc.ports {
                {
                    let map = self.inner.lock().expect("apps");
                    if let Some(other) = map.get(&vmid).and_then(|v| v.iter().find(|a| a.port == *hport)) {
                        if other.project == project.dir && other.service == svc.name {
                            continue;
                        }
                        return Err(format!("Bind for 0.0.0.0:{hport} failed: port is already allocated"));
                    }
                }
                let std_listener = sim.runtime.listen(vmid, loop_ip, *hport).await?;
                let listener = tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())?;
                let cancel = sim.shutdown.child_token();
                let warmup = sim.faults.lock().expect("faults").app_warmup_ms.unwrap_or(0);
                let ready_at = tokio::time::Instant::now() + std::time::Duration::from_millis(warmup);
                let page = AppPage {
                    project: project.name.clone(),
                    service: svc.name.clone(),
                    image: svc.image.clone(),
                    hostname: hostname.clone(),
                    vmid,
                    container_port: *cport,
                };
                sim.tracker.spawn(serve_app(listener, Arc::new(page), ready_at, cancel.clone()));
                self.inner.lock().expect("apps").entry(vmid).or_default().push(RunningApp {
                    project: project.dir.clone(),
                    service: svc.name.clone(),
                    port: *hport,
                    cancel,
                });
            }
        }
        Ok(())
    }

    /// Stop the servers of one project.
    pub fn stop_project(&self, vmid: u32, dir: &str) {
        if let Some(v) = self.inner.lock().expect("apps").get_mut(&vmid) {
            v.retain(|a| {
                if a.project == dir {
                    a.cancel.cancel();
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Stop every server of a CT.
    pub fn stop_vmid(&self, vmid: u32) {
        if let Some(v) = self.inner.lock().expect("apps").remove(&vmid) {
            for a in v {
                a.cancel.cancel();
            }
        }
    }

    /// Stop everything.
    pub fn stop_all(&self) {
        for (_, v) in self.inner.lock().expect("apps").drain() {
            for a in v {
                a.cancel.cancel();
            }
        }
    }

    /// (service, host port) pairs serving for a project of a CT.
    pub fn running(&self, vmid: u32, dir: &str) -> Vec<(String, u16)> {
        self.inner
            .lock()
            .expect("apps")
            .get(&vmid)
            .map(|v| v.iter().filter(|a| a.project == dir).map(|a| (a.service.clone(), a.port)).collect())
            .unwrap_or_default()
    }
}

/// What an app server answers with.
#[derive(Debug, Clone)]
pub struct AppPage {
    /// Compose project.
    pub project: String,
    /// Compose service.
    pub service: String,
    /// Image.
    pub image: String,
    /// CT hostname.
    pub hostname: String,
    /// VMID.
    pub vmid: u32,
    /// Container port.
    pub container_port: u16,
}

impl AppPage {
    /// The HTML page.
    pub fn html(&self) -> String {
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{svc} on {host}</title></head>\n<body><h1>{svc}</h1>\n<p>Compose service <b>{svc}</b> of project <b>{proj}</b> (image <code>{img}</code>) running in CT {vmid} <b>{host}</b>, container port {cport}.</p>\n<p data-service=\"{svc}\" data-hostname=\"{host}\">proximity pve-sim app server</p></body></html>\n",
            svc = esc(&self.service),
            host = esc(&self.hostname),
            proj = esc(&self.project),
            img = esc(&self.image),
            vmid = self.vmid,
            cport = self.container_port
        )
    }
}

async fn serve_app(listener: tokio::net::TcpListener, page: Arc<AppPage>, ready_at: tokio::time::Instant, cancel: CancellationToken) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
        };
        let page = page.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let page = page.clone();
                async move {
                    let (status, ctype, body) = match req.uri().path() {
                        _ if tokio::time::Instant::now() < ready_at => (503, "text/plain; charset=utf-8", "starting\n".to_string()),
                        "/healthz" => (200, "text/plain; charset=utf-8", "ok\n".to_string()),
                        _ => (200, "text/html; charset=utf-8", page.html()),
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
                    resp.headers_mut().insert("content-type", ctype.parse().expect("hv"));
                    resp.headers_mut().insert(
                        "x-served-by",
                        format!("{}/{}", page.hostname, page.service)
                            .parse()
                            .unwrap_or_else(|_| "app".parse().expect("hv")),
                    );
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}

/// Bind a listener with SO_REUSEADDR, non-blocking (for tokio).
pub fn bind_reuse(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}
