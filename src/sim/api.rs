//! The HTTPS side: TLS accept loop, request → (auth, verification, proxy check) → handler,
//! and PVE's wire conventions: `{"data":...}` envelope, error text in the status line's reason
//! phrase (hyper's `ext::ReasonPhrase` on HTTP/1.1) plus `message` in the body, 400 with
//! `errors`, 501 for unknown paths and for bodies on GET/DELETE, 401/403 texts.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};

use super::auth::{self, Identity};
use super::schema::{self, Endpoint, FieldErrors, Lookup, Params, Raw};
use super::{Faults, Sim, now};

/// A verified API request.
pub struct Req {
    /// Endpoint matched.
    pub ep: &'static Endpoint,
    /// Verified parameters (path parameters included).
    pub params: Params,
    /// Caller.
    pub who: Identity,
}

impl Req {
    /// The `node` path parameter.
    pub fn node(&self) -> String {
        self.params.str("node").unwrap_or_default()
    }
    /// The `vmid` parameter.
    pub fn vmid(&self) -> u32 {
        self.params.int("vmid").unwrap_or(0) as u32
    }
}

/// A successful reply: `data` plus extra top-level keys (`total`, `changes`).
#[derive(Debug, Default)]
pub struct Reply {
    /// `data`.
    pub data: Value,
    /// Extra top-level keys.
    pub extra: Vec<(String, Value)>,
}

impl Reply {
    /// `{"data": v}`.
    pub fn data(v: Value) -> Reply {
        Reply {
            data: v,
            extra: Vec::new(),
        }
    }
}

/// An API error as PVE reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Full message (first line goes into the reason phrase).
    pub message: String,
    /// Field errors (400).
    pub errors: Option<FieldErrors>,
}

impl ApiError {
    /// Any status.
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            errors: None,
        }
    }
    /// A plain `die` in a handler: 500.
    pub fn die(message: impl Into<String>) -> ApiError {
        ApiError::new(500, message)
    }
    /// `400 Parameter verification failed.` with field errors.
    pub fn params(errors: FieldErrors) -> ApiError {
        ApiError {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: Some(errors),
        }
    }
    /// One field error.
    pub fn param(field: &str, msg: impl Into<String>) -> ApiError {
        ApiError::params(FieldErrors::from([(field.to_string(), msg.into())]))
    }
    /// `403 Permission check failed (<reason>)`.
    pub fn perm(reason: &str) -> ApiError {
        ApiError::new(403, format!("Permission check failed ({reason})"))
    }
}

/// Handler result.
pub type ApiResult = Result<Reply, ApiError>;

type Body = Full<Bytes>;

/// Serve HTTPS until the simulator shuts down.
pub async fn serve(sim: Arc<Sim>, listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = sim.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "pve-sim accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let sim2 = sim.clone();
        let acceptor = acceptor.clone();
        sim.tracker.spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                _ => return,
            };
            let svc_sim = sim2.clone();
            let svc = hyper::service::service_fn(move |req| {
                let sim = svc_sim.clone();
                async move { Ok::<_, Infallible>(handle(sim, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { tracing::trace!(%peer, error = %e, "pve-sim connection") },
                _ = sim2.shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}

/// Build a JSON response with PVE's headers; for errors the reason phrase carries the message.
pub fn respond(status: u16, body: &Value, reason: Option<&str>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("server", "pve-api-daemon/3.0".parse().expect("hv"));
    h.insert("content-type", "application/json;charset=UTF-8".parse().expect("hv"));
    h.insert("cache-control", "max-age=0".parse().expect("hv"));
    h.insert("pragma", "no-cache".parse().expect("hv"));
    h.insert("expires", httpdate_now().parse().unwrap_or_else(|_| "0".parse().expect("hv")));
    if let Some(r) = reason {
        let clean: String = r
            .chars()
            .map(|c| {
                if c.is_ascii() && (c == '\t' || (' '..='~').contains(&c)) {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if let Ok(rp) = hyper::ext::ReasonPhrase::try_from(clean.into_bytes()) {
            resp.extensions_mut().insert(rp);
        }
    }
    resp
}

fn httpdate_now() -> String {
    let fmt = time::macros::format_description!("[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT");
    time::OffsetDateTime::now_utc().format(&fmt).unwrap_or_default()
}

/// Render an error the way PVE does.
pub fn error_response(e: &ApiError, legacy: bool) -> Response<Body> {
    let first = e.message.lines().next().unwrap_or("").to_string();
    let mut body = Map::new();
    body.insert("data".into(), Value::Null);
    if let Some(errs) = &e.errors {
        body.insert("errors".into(), json!(errs));
    }
    if !legacy {
        let mut msg = e.message.clone();
        if !msg.ends_with('\n') {
            msg.push('\n');
        }
        body.insert("message".into(), json!(msg));
    }
    respond(e.status, &Value::Object(body), Some(&first))
}

fn ok_response(r: Reply) -> Response<Body> {
    let mut body = Map::new();
    body.insert("data".into(), r.data);
    for (k, v) in r.extra {
        body.insert(k, v);
    }
    respond(200, &Value::Object(body), None)
}

async fn handle(sim: Arc<Sim>, req: Request<Incoming>) -> Response<Body> {
    let faults = sim.faults.lock().expect("faults").clone();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let legacy = faults.legacy_errors;
    match handle_inner(&sim, req, &faults).await {
        Ok(r) => ok_response(r),
        Err(e) => {
            if e.status == 401 && faults.auth_fail_delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(faults.auth_fail_delay_ms)).await;
            }
            error_response(&e, legacy)
        }
    }
}

async fn handle_inner(sim: &Arc<Sim>, req: Request<Incoming>, faults: &Faults) -> ApiResult {
    let method = req.method().as_str().to_string();
    let raw_path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = Limited::new(req.into_body(), 4 << 20)
        .collect()
        .await
        .map_err(|_| ApiError::new(413, "request entity too large"))?
        .to_bytes();

    if raw_path == "/sim/faults" || raw_path == "/sim/state" {
        return admin(sim, &method, &raw_path, &headers, &body);
    }
    let decoded = percent_encoding::percent_decode_str(&raw_path).decode_utf8_lossy().into_owned();
    let Some(rel) = decoded.strip_prefix("/api2/json") else {
        return Err(ApiError::new(501, format!("Method '{method} {decoded}' not implemented")));
    };
    let rel = if rel.is_empty() { "/" } else { rel }.to_string();
    if (method == "GET" || method == "DELETE" || method == "HEAD") && !body.is_empty() {
        return Err(ApiError::new(501, format!("Unexpected content for method '{method}'")));
    }
    let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    let lookup_method = if method == "HEAD" { "GET" } else { method.as_str() };
    let (ep, path_params) = match schema::schema().lookup(lookup_method, &segs) {
        Lookup::Found(ep, p) => (ep, p),
        Lookup::NotImplemented => return Err(ApiError::new(501, format!("Method '{method} {rel}' not implemented"))),
    };

    // Authentication.
    let token_header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("PVEAPIToken"));
    let who = if ep.path == "/access/ticket" && !token_header {
        Identity {
            user: String::new(),
            token: None,
        }
    } else {
        authenticate(sim, &method, &headers)?
    };
    if who.token.is_some() && !ep.allowtoken {
        return Err(ApiError::perm(&format!(
            "URI '{rel}' not available with API token, need proper ticket."
        )));
    }
    if let Some(status) = sim.faults.lock().expect("faults").take_http_error(&rel) {
        let msg = match status {
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "Internal Server Error",
        };
        return Err(ApiError::new(status, msg));
    }

    // Parameters: body, then the query string overrides, then path parameters.
    let mut raw: Vec<(String, Raw)> = Vec::new();
    let ctype = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !body.is_empty() {
        if ctype.starts_with("application/json") {
            let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::new(400, format!("unable to parse JSON body - {e}")))?;
            match v {
                Value::Object(m) => raw.extend(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, Raw::Json(v)))),
                Value::Null => {}
                _ => return Err(ApiError::new(400, "JSON body must be an object")),
            }
        } else {
            raw.extend(form_pairs(&body));
        }
    }
    for (k, v) in form_pairs(query.as_bytes()) {
        raw.retain(|(rk, _)| rk != &k);
        raw.push((k, v));
    }
    for (k, v) in &path_params {
        if let Some((_, existing)) = raw.iter().find(|(rk, _)| rk == k) {
            let same = match existing {
                Raw::Text(s) => s == v,
                Raw::Json(Value::String(s)) => s == v,
                Raw::Json(j) => j.as_i64().is_some_and(|n| v.parse::<i64>().ok() == Some(n)),
            };
            if !same {
                return Err(ApiError::param(
                    k,
                    "duplicate parameter (already defined in URI) with conflicting values!",
                ));
            }
            raw.retain(|(rk, _)| rk != k);
        }
        raw.push((k.clone(), Raw::Text(v.clone())));
    }
    let params = schema::verify(&ep.props, raw).map_err(ApiError::params)?;

    // Proxying to the target node.
    if ep.proxyto.as_deref() == Some("node")
        && let Some(node) = params.str("node")
    {
        let known = sim.state.lock().expect("state").node(&node).is_some();
        if !known {
            return Err(ApiError::die(format!(
                "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
            )));
        }
        if let Some((status, msg)) = faults.proxy_error(&node) {
            return Err(ApiError::new(status, msg));
        }
    }

    let r = Req { ep, params, who };
    dispatch(sim, &r, faults).await
}

fn form_pairs(bytes: &[u8]) -> Vec<(String, Raw)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, Raw::Text(v)))
        .collect()
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError::new(401, msg)
}

/// Check credentials: API token header, or ticket (cookie or `Authorization: PVEAuthCookie=`)
/// plus the CSRF header on writes.
pub fn authenticate(sim: &Sim, method: &str, headers: &hyper::HeaderMap) -> Result<Identity, ApiError> {
    let authz = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(a) = authz.as_deref()
        && a.starts_with("PVEAPIToken")
    {
        let Some((user, token, secret)) = auth::parse_token_header(a) else {
            return Err(unauthorized("Authentication failed!"));
        };
        let full = format!("{user}!{token}");
        let ok = (full == super::TOKEN_ID && auth::constant_eq(secret.as_bytes(), sim.cfg.token_secret.as_bytes()))
            || super::access::token_ok(sim, &full, &secret, now());
        return if ok {
            Ok(Identity { user, token: Some(token) })
        } else {
            Err(unauthorized("Authentication failed!"))
        };
    }
    let ticket = headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(auth::cookie_ticket)
        .or_else(|| authz.as_deref().and_then(|a| a.strip_prefix("PVEAuthCookie=")).map(str::to_string));
    let Some(ticket) = ticket else {
        return Err(unauthorized("No ticket"));
    };
    let Some(user) = auth::verify_ticket(&sim.secret, &ticket, now()) else {
        return Err(unauthorized("Authentication failed!"));
    };
    if method != "GET" && method != "HEAD" {
        let csrf = headers.get("csrfpreventiontoken").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !auth::verify_csrf(&sim.secret, &user, csrf, now()) {
            return Err(unauthorized("Permission denied - invalid csrf token"));
        }
    }
    Ok(Identity { user, token: None })
}

fn admin(sim: &Arc<Sim>, method: &str, path: &str, headers: &hyper::HeaderMap, body: &[u8]) -> ApiResult {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    if !auth::constant_eq(bearer.as_bytes(), sim.cfg.root_password.as_bytes()) {
        return Err(unauthorized("No ticket"));
    }
    match (method, path) {
        ("GET", "/sim/faults") => Ok(Reply::data(json!(*sim.faults.lock().expect("faults")))),
        ("POST", "/sim/faults") | ("PUT", "/sim/faults") => {
            let f: Faults = if body.is_empty() {
                Faults::default()
            } else {
                serde_json::from_slice(body).map_err(|e| ApiError::new(400, format!("invalid faults: {e}")))?
            };
            *sim.faults.lock().expect("faults") = f.clone();
            Ok(Reply::data(json!(f)))
        }
        ("GET", "/sim/state") => Ok(Reply::data(
            serde_json::to_value(&*sim.state.lock().expect("state")).unwrap_or(Value::Null),
        )),
        _ => Err(ApiError::new(501, format!("Method '{method} {path}' not implemented"))),
    }
}

async fn dispatch(sim: &Arc<Sim>, r: &Req, faults: &Faults) -> ApiResult {
    use super::{access, cluster, lxc, network, storage};
    match (r.ep.method.as_str(), r.ep.path.as_str()) {
        ("GET", "/version") => cluster::version(),
        ("POST", "/access/ticket") => login(sim, r),
        ("GET", "/cluster/resources") => cluster::resources(sim, r, faults),
        ("GET", "/cluster/nextid") => cluster::nextid(sim, r),
        ("GET", "/cluster/tasks") => cluster::cluster_tasks(sim),
        ("GET", "/nodes") => cluster::nodes(sim, faults),
        ("GET", "/nodes/{node}/status") => cluster::node_status(sim, r),
        ("GET", "/nodes/{node}/tasks") => cluster::task_list(sim, r),
        ("GET", "/nodes/{node}/tasks/{upid}/status") => cluster::task_status(sim, r),
        ("GET", "/nodes/{node}/tasks/{upid}/log") => cluster::task_log(sim, r),
        ("DELETE", "/nodes/{node}/tasks/{upid}") => cluster::task_stop(sim, r),
        ("GET", "/nodes/{node}/lxc") => lxc::list(sim, r, faults),
        ("POST", "/nodes/{node}/lxc") => lxc::create(sim, r),
        ("DELETE", "/nodes/{node}/lxc/{vmid}") => lxc::destroy(sim, r),
        ("GET", "/nodes/{node}/lxc/{vmid}/status/current") => lxc::status_current(sim, r, faults),
        ("POST", "/nodes/{node}/lxc/{vmid}/status/start") => lxc::power(sim, r, lxc::Power::Start),
        ("POST", "/nodes/{node}/lxc/{vmid}/status/stop") => lxc::power(sim, r, lxc::Power::Stop),
        ("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown") => lxc::power(sim, r, lxc::Power::Shutdown),
        ("POST", "/nodes/{node}/lxc/{vmid}/status/reboot") => lxc::power(sim, r, lxc::Power::Reboot),
        ("GET", "/nodes/{node}/lxc/{vmid}/config") => lxc::get_config(sim, r),
        ("PUT", "/nodes/{node}/lxc/{vmid}/config") => lxc::put_config(sim, r),
        ("GET", "/nodes/{node}/lxc/{vmid}/pending") => lxc::pending(sim, r),
        ("POST", "/nodes/{node}/lxc/{vmid}/clone") => lxc::clone(sim, r),
        ("GET", "/nodes/{node}/lxc/{vmid}/rrddata") => lxc::rrddata(sim, r),
        ("GET", "/nodes/{node}/lxc/{vmid}/interfaces") => lxc::interfaces(sim, r),
        ("POST", "/nodes/{node}/vzdump") => storage::vzdump(sim, r),
        ("GET", "/nodes/{node}/storage") => storage::list(sim, r),
        ("GET", "/nodes/{node}/storage/{storage}/status") => storage::status(sim, r),
        ("GET", "/nodes/{node}/storage/{storage}/content") => storage::content(sim, r),
        ("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}") => storage::delete_volume(sim, r).await,
        ("GET", "/nodes/{node}/aplinfo") => storage::aplinfo(),
        ("POST", "/nodes/{node}/aplinfo") => storage::download(sim, r),
        ("GET", "/nodes/{node}/network") => network::list(sim, r),
        ("POST", "/nodes/{node}/network") => network::create(sim, r),
        ("PUT", "/nodes/{node}/network") => network::apply(sim, r),
        ("DELETE", "/nodes/{node}/network") => network::revert(sim, r),
        ("DELETE", "/nodes/{node}/network/{iface}") => network::delete_iface(sim, r),
        ("POST", "/access/users/{userid}/token/{tokenid}") => access::create(sim, r),
        ("GET", "/access/users/{userid}/token/{tokenid}") => access::read(sim, r),
        ("DELETE", "/access/users/{userid}/token/{tokenid}") => access::delete(sim, r),
        (m, p) => Err(ApiError::new(501, format!("Method '{m} {p}' not implemented"))),
    }
}

fn login(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let mut username = r.params.str("username").unwrap_or_default();
    if !username.contains('@') {
        username = format!("{username}@{}", r.params.str("realm").unwrap_or_else(|| "pam".into()));
    }
    let password = r.params.str("password").unwrap_or_default();
    let now = now();
    let ok = username == "root@pam"
        && (auth::constant_eq(password.as_bytes(), sim.cfg.root_password.as_bytes())
            || auth::verify_ticket(&sim.secret, &password, now).as_deref() == Some("root@pam"));
    if !ok {
        return Err(unauthorized("authentication failure"));
    }
    let cap = json!({
        "vms": {"VM.Allocate":1,"VM.Audit":1,"VM.Backup":1,"VM.Clone":1,"VM.Config.CPU":1,"VM.Config.Disk":1,"VM.Config.Memory":1,"VM.Config.Network":1,"VM.Config.Options":1,"VM.Console":1,"VM.Migrate":1,"VM.PowerMgmt":1,"VM.Snapshot":1,"Permissions.Modify":1},
        "storage": {"Datastore.Allocate":1,"Datastore.AllocateSpace":1,"Datastore.AllocateTemplate":1,"Datastore.Audit":1,"Permissions.Modify":1},
        "nodes": {"Sys.Audit":1,"Sys.Console":1,"Sys.Modify":1,"Sys.PowerMgmt":1,"Sys.Syslog":1,"Permissions.Modify":1},
        "access": {"Group.Allocate":1,"User.Modify":1,"Permissions.Modify":1},
        "dc": {"Sys.Audit":1,"SDN.Allocate":1,"SDN.Audit":1,"SDN.Use":1},
    });
    Ok(Reply::data(json!({
        "username": username,
        "ticket": auth::make_ticket(&sim.secret, &username, now),
        "CSRFPreventionToken": auth::make_csrf(&sim.secret, &username, now),
        "clustername": sim.cfg.cluster_name,
        "cap": cap,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_reason_and_message() {
        let r = error_response(&ApiError::die("CT 105 already running"), false);
        assert_eq!(r.status(), 500);
        assert_eq!(
            r.extensions().get::<hyper::ext::ReasonPhrase>().unwrap().as_bytes(),
            b"CT 105 already running"
        );
        let r = error_response(
            &ApiError::new(595, "Errors during connection establishment, proxy handshake: Connection refused"),
            true,
        );
        assert_eq!(r.status().as_u16(), 595);
    }
}
