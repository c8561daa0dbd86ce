//! `/api/v1/hosts` (admin) and `/api/v1/nodes`: Proxmox hosts (secrets sealed with the
//! appliance key, never returned) and their nodes.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::ApiState;
use crate::api::audit::AuditNote;
use crate::api::error::{ApiError, ApiJson, ApiResult, FieldErrors, Problem};
use crate::pve::Auth;
use crate::pve::hosts::{HostRecord, HostSpec, StoredAuth};

/// A Proxmox host as returned (no secrets: only whether they are set).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HostView {
    /// Name.
    pub name: String,
    /// API base URL (`https://host:8006`).
    pub url: String,
    /// API token id (`user@realm!name`), if token auth.
    pub token_id: Option<String>,
    /// User (`root@pam`), if ticket auth.
    pub user: Option<String>,
    /// A token secret or password is stored (sealed).
    pub has_secret: bool,
    /// Pinned certificate fingerprint.
    pub fingerprint: Option<String>,
    /// SSH endpoint for `pct`.
    pub ssh: Option<String>,
    /// Bridge for app containers.
    pub bridge: String,
    /// Storage for app containers.
    pub storage: String,
    /// Nodes found by the last sync.
    pub nodes: Vec<String>,
}

/// Create or replace a host. Secrets are write-only.
#[derive(Deserialize, ToSchema)]
pub struct HostInput {
    /// Name (RFC 1123 label).
    pub name: String,
    /// API base URL.
    pub url: String,
    /// API token id.
    pub token_id: Option<String>,
    /// API token secret (write-only).
    pub token_secret: Option<String>,
    /// User for ticket auth.
    pub user: Option<String>,
    /// Password for ticket auth (write-only).
    pub password: Option<String>,
    /// Certificate fingerprint (SHA-256, colon-separated hex).
    pub fingerprint: Option<String>,
    /// SSH endpoint (`host:port`).
    pub ssh: Option<String>,
    /// Bridge (default `proximity-lan`).
    pub bridge: Option<String>,
    /// Storage (default `local-lvm`).
    pub storage: Option<String>,
}

/// Result of a connection test.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HostTest {
    /// API reachable and authenticated.
    pub api_ok: bool,
    /// Proxmox version.
    pub version: Option<String>,
    /// SSH reachable.
    pub ssh_ok: Option<bool>,
    /// What failed.
    pub error: Option<String>,
}

/// A Proxmox node.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// Host it belongs to.
    pub host: String,
    /// Node name.
    pub node: String,
    /// `online` or `offline`.
    pub status: String,
    /// CPU usage 0–1.
    pub cpu: Option<f64>,
    /// Memory used (bytes).
    pub mem: Option<u64>,
    /// Memory total (bytes).
    pub maxmem: Option<u64>,
}

fn pve_err(e: crate::pve::Error) -> ApiError {
    let msg = e.to_string();
    match e.http_status() {
        404 => ApiError::not_found(msg),
        409 => ApiError::conflict(msg),
        422 => ApiError::field("body", msg),
        503 => ApiError::unavailable(msg),
        _ => ApiError::bad_gateway(msg),
    }
}

fn view(h: &HostRecord) -> HostView {
    let (token_id, user) = match &h.auth {
        StoredAuth::Token { id, .. } => (Some(id.clone()), None),
        StoredAuth::Ticket { user, .. } => (None, Some(user.clone())),
    };
    HostView {
        name: h.name.clone(),
        url: h.url.clone(),
        token_id,
        user,
        has_secret: true,
        fingerprint: h.fingerprint.clone(),
        ssh: h.ssh.clone(),
        bridge: h.bridge.clone(),
        storage: h.storage.clone(),
        nodes: h.nodes.iter().map(|n| n.node.clone()).collect(),
    }
}

fn node_view(host: &str, n: &crate::pve::hosts::NodeRecord) -> NodeView {
    NodeView {
        host: host.to_string(),
        node: n.node.clone(),
        status: if n.online { "online" } else { "offline" }.into(),
        cpu: Some(n.cpu),
        mem: Some(n.mem),
        maxmem: Some(n.maxmem),
    }
}

/// Build the registry's spec; secrets omitted on update are taken from `existing`.
fn spec(api: &ApiState, h: HostInput, existing: Option<&HostRecord>) -> ApiResult<HostSpec> {
    let open = |sealed: &str| api.ctx.secrets.open_str(sealed).map_err(ApiError::internal);
    let auth = match (h.token_id, h.token_secret, h.user, h.password) {
        (Some(id), Some(secret), _, _) => Auth::Token { id, secret },
        (Some(id), None, _, _) => match existing.map(|e| &e.auth) {
            Some(StoredAuth::Token { sealed_secret, .. }) => Auth::Token {
                id,
                secret: open(sealed_secret)?,
            },
            _ => return Err(ApiError::field("token_secret", "is required")),
        },
        (None, _, Some(user), Some(password)) => Auth::Ticket { user, password },
        (None, _, Some(user), None) => match existing.map(|e| &e.auth) {
            Some(StoredAuth::Ticket { sealed_password, .. }) => Auth::Ticket {
                user,
                password: open(sealed_password)?,
            },
            _ => return Err(ApiError::field("password", "is required")),
        },
        _ => {
            return Err(ApiError::field(
                "token_id",
                "give either token_id + token_secret or user + password",
            ));
        }
    };
    Ok(HostSpec {
        name: h.name,
        url: h.url,
        auth,
        fingerprint: h.fingerprint,
        ca_pem: None,
        ssh: h.ssh,
        ssh_user: "root".into(),
        bridge: h.bridge.unwrap_or_else(|| "proximity-lan".into()),
        storage: h.storage.unwrap_or_else(|| "local-lvm".into()),
    })
}

/// Validate a host input (pure).
pub fn validate_host(h: &HostInput, creating: bool) -> Result<(), ApiError> {
    let mut errs = FieldErrors::default();
    errs.check("name", crate::validate::hostname(&h.name));
    if !(h.url.starts_with("https://") && h.url.len() > 8) {
        errs.add("url", "must be an https:// URL such as https://pve.example:8006");
    }
    match (&h.token_id, &h.token_secret, &h.user, &h.password) {
        (Some(id), s, None, None) if s.is_some() || !creating => {
            if !id.contains('@') || !id.contains('!') {
                errs.add("token_id", "must look like user@realm!name");
            }
        }
        (None, None, Some(u), p) if p.is_some() || !creating => {
            if !u.contains('@') {
                errs.add("user", "must look like user@realm");
            }
        }
        _ => errs.add("token_id", "give either token_id + token_secret or user + password"),
    }
    if let Some(fp) = &h.fingerprint {
        let ok = fp.split(':').count() == 32 && fp.split(':').all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
        if !ok {
            errs.add("fingerprint", "must be a SHA-256 fingerprint: 32 colon-separated hex bytes");
        }
    }
    errs.finish()
}

/// Registered hosts.
#[utoipa::path(get, path = "/api/v1/hosts", operation_id = "host.list", tag = "hosts",
    responses((status = 200, body = Vec<HostView>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)))]
pub async fn list(State(api): State<ApiState>) -> ApiResult<Json<Vec<HostView>>> {
    Ok(Json(api.hosts.list().map_err(pve_err)?.iter().map(view).collect()))
}

/// Register a host.
#[utoipa::path(post, path = "/api/v1/hosts", operation_id = "host.create", tag = "hosts", request_body = HostInput,
    responses((status = 201, body = HostView), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn create(State(api): State<ApiState>, ApiJson(h): ApiJson<HostInput>) -> ApiResult<Response> {
    validate_host(&h, true)?;
    let spec = spec(&api, h, None)?;
    let rec = api.hosts.add(spec).map_err(pve_err)?;
    Ok(super::with_note(
        (axum::http::StatusCode::CREATED, Json(view(&rec))),
        AuditNote::target(&rec.name),
    ))
}

/// One host.
#[utoipa::path(get, path = "/api/v1/hosts/{name}", operation_id = "host.get", tag = "hosts", params(("name" = String, Path, description = "host name")),
    responses((status = 200, body = HostView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn get_one(State(api): State<ApiState>, Path(name): Path<String>) -> ApiResult<Json<HostView>> {
    let h = api
        .hosts
        .get(&name)
        .map_err(pve_err)?
        .ok_or_else(|| ApiError::not_found(format!("no host {name}")))?;
    Ok(Json(view(&h)))
}

/// Replace a host's settings (omitted secrets stay as stored).
#[utoipa::path(put, path = "/api/v1/hosts/{name}", operation_id = "host.update", tag = "hosts", params(("name" = String, Path, description = "host name")), request_body = HostInput,
    responses((status = 200, body = HostView), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn update(State(api): State<ApiState>, Path(name): Path<String>, ApiJson(h): ApiJson<HostInput>) -> ApiResult<Json<HostView>> {
    let existing = api
        .hosts
        .get(&name)
        .map_err(pve_err)?
        .ok_or_else(|| ApiError::not_found(format!("no host {name}")))?;
    validate_host(&h, false)?;
    if h.name != name {
        return Err(ApiError::field(
            "name",
            "must equal the host name in the path (hosts cannot be renamed)",
        ));
    }
    let spec = spec(&api, h, Some(&existing))?;
    Ok(Json(view(&api.hosts.upsert(spec).map_err(pve_err)?)))
}

/// Remove a host (refused while apps run on it).
#[utoipa::path(delete, path = "/api/v1/hosts/{name}", operation_id = "host.delete", tag = "hosts", params(("name" = String, Path, description = "host name")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn remove(State(api): State<ApiState>, Path(name): Path<String>) -> ApiResult<Response> {
    api.hosts
        .get(&name)
        .map_err(pve_err)?
        .ok_or_else(|| ApiError::not_found(format!("no host {name}")))?;
    let used = crate::registry::list(&api.ctx.store)?
        .iter()
        .filter(|a| a.host.as_deref() == Some(name.as_str()))
        .count();
    if used > 0 {
        return Err(ApiError::conflict(format!("{used} app(s) run on host {name}; delete them first")));
    }
    api.hosts.remove(&name).map_err(pve_err)?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// Test the API (and SSH) connection of a host.
#[utoipa::path(post, path = "/api/v1/hosts/{name}/test", operation_id = "host.test", tag = "hosts", params(("name" = String, Path, description = "host name")),
    responses((status = 200, body = HostTest), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn test(State(api): State<ApiState>, Path(name): Path<String>) -> ApiResult<Json<HostTest>> {
    api.hosts
        .get(&name)
        .map_err(pve_err)?
        .ok_or_else(|| ApiError::not_found(format!("no host {name}")))?;
    let client = match api.hosts.client(&name) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Json(HostTest {
                api_ok: false,
                version: None,
                ssh_ok: None,
                error: Some(e.to_string()),
            }));
        }
    };
    Ok(Json(match client.version().await {
        Ok(v) => HostTest {
            api_ok: true,
            version: Some(v.version),
            ssh_ok: None,
            error: None,
        },
        Err(e) => HostTest {
            api_ok: false,
            version: None,
            ssh_ok: None,
            error: Some(e.to_string()),
        },
    }))
}

/// Re-read the host's nodes.
#[utoipa::path(post, path = "/api/v1/hosts/{name}/sync", operation_id = "host.sync", tag = "hosts", params(("name" = String, Path, description = "host name")),
    responses((status = 200, body = Vec<NodeView>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn sync(State(api): State<ApiState>, Path(name): Path<String>) -> ApiResult<Json<Vec<NodeView>>> {
    api.hosts
        .get(&name)
        .map_err(pve_err)?
        .ok_or_else(|| ApiError::not_found(format!("no host {name}")))?;
    let rec = api.hosts.sync(&name).await.map_err(pve_err)?;
    Ok(Json(rec.nodes.iter().map(|n| node_view(&rec.name, n)).collect()))
}

/// Nodes of every host.
#[utoipa::path(get, path = "/api/v1/nodes", operation_id = "node.list", tag = "hosts",
    responses((status = 200, body = Vec<NodeView>), (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn nodes(State(api): State<ApiState>) -> ApiResult<Json<Vec<NodeView>>> {
    Ok(Json(
        api.hosts.nodes().map_err(pve_err)?.iter().map(|(h, n)| node_view(h, n)).collect(),
    ))
}
