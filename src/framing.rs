//! May an app be shown inside the web UI (an iframe on the app's "Open" tab)?
//!
//! [`evaluate`] is pure: from the app's `X-Frame-Options` and `Content-Security-Policy`
//! response headers and the UI's origin it decides as a browser would (CSP
//! `frame-ancestors` wins over `X-Frame-Options`; `DENY` and `SAMEORIGIN` forbid a
//! foreign parent). [`FrameProbe`] asks the app's route upstream (the address the reverse
//! proxy forwards to, with the app's host name) for `/` with a short timeout and caches the
//! headers for [`TTL`], so list endpoints never wait on the network.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a probe result is used.
pub const TTL: Duration = Duration::from_secs(300);
/// How long an unanswered probe is remembered (the app may still be starting).
pub const UNKNOWN_TTL: Duration = Duration::from_secs(15);
/// How long a probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The framing-relevant headers of an app's response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameHeaders {
    /// `X-Frame-Options` values.
    pub x_frame_options: Vec<String>,
    /// `Content-Security-Policy` values (enforced policies only).
    pub csp: Vec<String>,
}

/// The origin the UI is served from, e.g. `https://proximity.prox.local:8443`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP (lower case; IPv6 in brackets).
    pub host: String,
    /// Port (explicit or the scheme's default).
    pub port: u16,
}

impl Origin {
    /// From a scheme and a `Host` header value (`name[:port]`).
    pub fn from_host_header(scheme: &str, host: &str) -> Option<Origin> {
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        let default = if scheme == "https" { 443 } else { 80 };
        let (h, port) = split_host_port(&host, default)?;
        Some(Origin {
            scheme: scheme.to_string(),
            host: h,
            port,
        })
    }
}

fn split_host_port(s: &str, default: u16) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        return Some((format!("[{h}]"), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((s.to_string(), default)),
    }
}

/// Does one `frame-ancestors` source expression allow `parent`? `app` is the app's own
/// origin (for `'self'`).
fn source_allows(src: &str, parent: &Origin, app: &Origin) -> bool {
    let src = src.to_ascii_lowercase();
    match src.as_str() {
        "*" => return parent.scheme == "https" || parent.scheme == "http",
        "'self'" => return parent == app,
        "'none'" => return false,
        _ => {}
    }
    // Scheme-only source: `https:`.
    if let Some(s) = src.strip_suffix(':')
        && !s.contains('/')
        && !s.contains('.')
    {
        return parent.scheme == s || (s == "http" && parent.scheme == "https");
    }
    // Host source: [scheme://]host[:port][/path]
    let (scheme, rest) = match src.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, src.as_str()),
    };
    let hostport = rest.split('/').next().unwrap_or("");
    match scheme {
        Some(s) if s != parent.scheme && !(s == "http" && parent.scheme == "https") => return false,
        None if parent.scheme != "https" && parent.scheme != "http" => return false,
        _ => {}
    }
    let (host, port) = if let Some(h) = hostport.strip_suffix(":*") {
        (h.to_string(), None)
    } else {
        match split_host_port(hostport, 0) {
            Some((h, 0)) => (h, Some(if parent.scheme == "https" { 443 } else { 80 })),
            Some((h, p)) => (h, Some(p)),
            None => return false,
        }
    };
    // Without a scheme or port the source's default port is the parent scheme's.
    let port_ok = match port {
        None => true,
        Some(p) => p == parent.port,
    };
    let host_ok = if let Some(suffix) = host.strip_prefix("*.") {
        parent.host.ends_with(&format!(".{suffix}"))
    } else {
        host == parent.host
    };
    host_ok && port_ok
}

/// Would a browser show the app (origin `app`) in a frame inside `parent`?
pub fn evaluate(h: &FrameHeaders, parent: &Origin, app: &Origin) -> bool {
    // CSP frame-ancestors: every enforced policy that has the directive must allow it.
    let mut had_directive = false;
    for policy in &h.csp {
        for directive in policy.split(';') {
            let mut words = directive.split_ascii_whitespace();
            if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("frame-ancestors")) {
                continue;
            }
            had_directive = true;
            let sources: Vec<&str> = words.collect();
            if !sources.iter().any(|s| source_allows(s, parent, app)) {
                return false;
            }
            break; // only the first frame-ancestors of a policy counts
        }
    }
    if had_directive {
        return true;
    }
    // X-Frame-Options: DENY, or SAMEORIGIN with a different origin, forbid framing.
    // Browsers ignore other values (ALLOW-FROM is obsolete).
    for v in h.x_frame_options.iter().flat_map(|v| v.split(',')) {
        match v.trim().to_ascii_lowercase().as_str() {
            "deny" => return false,
            "sameorigin" if parent != app => return false,
            _ => {}
        }
    }
    true
}

/// Where to probe an app and how it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The proxy route's upstream (`ip:web_port`).
    pub upstream: SocketAddr,
    /// The app's host name (`<hostname>.<domain>`), sent as `Host`.
    pub host: String,
}

#[derive(Debug, Clone)]
struct Entry {
    target: Target,
    headers: Option<FrameHeaders>,
    at: Instant,
}

/// Cached probes per app id.
#[derive(Debug, Clone, Default)]
pub struct FrameProbe {
    cache: Arc<Mutex<HashMap<String, Entry>>>,
}

impl FrameProbe {
    /// An empty cache.
    pub fn new() -> FrameProbe {
        FrameProbe::default()
    }

    /// The cached headers of app `id` for `target` when fresh (`Some(None)`: probed, the app
    /// did not answer).
    pub fn cached(&self, id: &str, target: &Target) -> Option<Option<FrameHeaders>> {
        let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.get(id)
            .filter(|e| &e.target == target && e.at.elapsed() < if e.headers.is_some() { TTL } else { UNKNOWN_TTL })
            .map(|e| e.headers.clone())
    }

    /// Cached headers when fresh, else probe now (bounded by [`PROBE_TIMEOUT`]) and cache.
    /// `None` when the app did not answer in time.
    pub async fn headers(&self, id: &str, target: &Target) -> Option<FrameHeaders> {
        if let Some(h) = self.cached(id, target) {
            return h;
        }
        let h = probe(target).await.ok();
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() > 10_000 {
            c.retain(|_, e| e.at.elapsed() < TTL);
        }
        c.insert(
            id.to_string(),
            Entry {
                target: target.clone(),
                headers: h.clone(),
                at: Instant::now(),
            },
        );
        h
    }

    /// Forget app `id` (deleted).
    pub fn forget(&self, id: &str) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// `GET /` on the upstream with `Host: <app host>`, plain HTTP/1.1 as the proxy speaks to
/// apps; returns the framing headers of whatever answers (redirects included).
pub async fn probe(target: &Target) -> anyhow::Result<FrameHeaders> {
    use http_body_util::Empty;
    use hyper_util::rt::TokioIo;
    let run = async {
        let tcp = tokio::net::TcpStream::connect(target.upstream).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::get("/")
            .header(hyper::header::HOST, &target.host)
            .header(hyper::header::USER_AGENT, "proximity-frame-probe")
            .body(Empty::<bytes::Bytes>::new())?;
        let resp = send.send_request(req).await;
        driver.abort();
        let resp = resp?;
        let all = |name: &str| -> Vec<String> {
            resp.headers()
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect()
        };
        Ok::<_, anyhow::Error>(FrameHeaders {
            x_frame_options: all("x-frame-options"),
            csp: all("content-security-policy"),
        })
    };
    tokio::time::timeout(PROBE_TIMEOUT, run)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {PROBE_TIMEOUT:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Origin {
        let (scheme, host) = s.split_once("://").unwrap();
        Origin::from_host_header(scheme, host).unwrap()
    }

    fn h(xfo: &[&str], csp: &[&str]) -> FrameHeaders {
        FrameHeaders {
            x_frame_options: xfo.iter().map(|s| s.to_string()).collect(),
            csp: csp.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn browser_rules() {
        let ui = o("https://proximity.prox.local:8443");
        let app = o("https://nginx.prox.local");
        assert!(evaluate(&h(&[], &[]), &ui, &app), "no headers: framing allowed");
        assert!(!evaluate(&h(&["DENY"], &[]), &ui, &app));
        assert!(!evaluate(&h(&["sameorigin"], &[]), &ui, &app));
        assert!(evaluate(&h(&["SAMEORIGIN"], &[]), &app, &app));
        assert!(evaluate(&h(&["ALLOW-FROM https://x"], &[]), &ui, &app), "obsolete, ignored");
        assert!(!evaluate(&h(&[], &["default-src 'self'; frame-ancestors 'none'"]), &ui, &app));
        assert!(!evaluate(&h(&[], &["frame-ancestors 'self'"]), &ui, &app));
        assert!(evaluate(&h(&[], &["frame-ancestors *"]), &ui, &app));
        assert!(evaluate(&h(&[], &["frame-ancestors https:"]), &ui, &app));
        assert!(evaluate(&h(&[], &["frame-ancestors https://proximity.prox.local:8443"]), &ui, &app));
        assert!(
            !evaluate(&h(&[], &["frame-ancestors https://proximity.prox.local"]), &ui, &app),
            "port 443 ≠ 8443"
        );
        assert!(evaluate(&h(&[], &["frame-ancestors *.prox.local:*"]), &ui, &app));
        assert!(!evaluate(&h(&[], &["frame-ancestors https://other.example"]), &ui, &app));
        // CSP wins over X-Frame-Options.
        assert!(evaluate(&h(&["DENY"], &["frame-ancestors *"]), &ui, &app));
        // Every policy with the directive must allow.
        assert!(!evaluate(&h(&[], &["frame-ancestors *", "frame-ancestors 'none'"]), &ui, &app));
        // A CSP without frame-ancestors leaves X-Frame-Options in charge.
        assert!(!evaluate(&h(&["DENY"], &["default-src 'self'"]), &ui, &app));
        let ip = o("https://127.0.0.1:9443");
        assert_eq!((ip.host.as_str(), ip.port), ("127.0.0.1", 9443));
        assert_eq!(o("https://[::1]:9443").host, "[::1]");
        assert_eq!(o("http://x").port, 80);
        assert!(Origin::from_host_header("https", "a:b:c").is_none());
    }

    #[tokio::test]
    async fn probe_reads_headers_and_caches() {
        use std::convert::Infallible;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hits2 = hits.clone();
        let server = tokio::spawn(async move {
            for _ in 0..5 {
                let Ok((tcp, _)) = l.accept().await else { return };
                let hits = hits2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let host = req.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                        async move {
                            let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"hi")));
                            r.headers_mut().insert("x-frame-options", "SAMEORIGIN".parse().unwrap());
                            r.headers_mut().insert("x-host", host.parse().unwrap());
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        let t = Target {
            upstream: addr,
            host: "app.prox.local".into(),
        };
        let p = FrameProbe::new();
        let got = p.headers("app-1", &t).await.unwrap();
        assert_eq!(got.x_frame_options, vec!["SAMEORIGIN".to_string()]);
        let _ = p.headers("app-1", &t).await.unwrap();
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "second call served from the cache"
        );
        // A closed port answers None quickly (and is cached as unknown).
        let dead = Target {
            upstream: "127.0.0.1:1".parse().unwrap(),
            host: "x".into(),
        };
        assert!(p.headers("app-2", &dead).await.is_none());
        assert_eq!(p.cached("app-2", &dead), Some(None));
        p.forget("app-1");
        assert!(p.cached("app-1", &t).is_none());
        server.abort();
    }
}
