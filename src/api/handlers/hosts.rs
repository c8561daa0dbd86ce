//! `/api/v1/hosts` (admin) and `/api/v1/nodes`: Proxmox hosts (secrets sealed with the
//! appliance key, never returned) and their nodes.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiJson, ApiResult, FieldErrors, Problem};

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

fn hosts_missing() -> ApiError {
    ApiError::unavailable("Proxmox host management is not available in this build")
}

/// Validate a host input (pure).
pub fn validate_host(h: &HostInput) -> Result<(), ApiError> {
    let mut errs = FieldErrors::default();
    errs.check("name", crate::validate::hostname(&h.name));
    if !(h.url.starts_with("https://") && h.url.len() > 8) {
        errs.add("url", "must be an https:// URL such as https://pve.example:8006");
    }
    match (&h.token_id, &h.token_secret, &h.user, &h.password) {
        (Some(id), Some(_), None, None) => {
            if !id.contains('@') || !id.contains('!') {
                errs.add("token_id", "must look like user@realm!name");
            }
        }
        (None, None, Some(u), Some(_)) => {
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
#[utoipa::path(get, path = "/api/v1/hosts", tag = "hosts",
    responses((status = 200, body = Vec<HostView>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)))]
pub async fn list(State(_api): State<ApiState>) -> ApiResult<Json<Vec<HostView>>> {
    Err(hosts_missing())
}

/// Register a host.
#[utoipa::path(post, path = "/api/v1/hosts", tag = "hosts", request_body = HostInput,
    responses((status = 201, body = HostView), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn create(State(_api): State<ApiState>, ApiJson(h): ApiJson<HostInput>) -> ApiResult<Response> {
    validate_host(&h)?;
    Err(hosts_missing())
}

/// One host.
#[utoipa::path(get, path = "/api/v1/hosts/{name}", tag = "hosts", params(("name" = String, Path, description = "host name")),
    responses((status = 200, body = HostView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn get_one(State(_api): State<ApiState>, Path(_name): Path<String>) -> ApiResult<Json<HostView>> {
    Err(hosts_missing())
}

/// Replace a host's settings (omitted secrets stay as stored).
#[utoipa::path(put, path = "/api/v1/hosts/{name}", tag = "hosts", params(("name" = String, Path, description = "host name")), request_body = HostInput,
    responses((status = 200, body = HostView), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn update(State(_api): State<ApiState>, Path(_name): Path<String>, ApiJson(h): ApiJson<HostInput>) -> ApiResult<Json<HostView>> {
    validate_host(&h)?;
    Err(hosts_missing())
}

/// Remove a host (refused while apps run on it).
#[utoipa::path(delete, path = "/api/v1/hosts/{name}", tag = "hosts", params(("name" = String, Path, description = "host name")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn remove(State(_api): State<ApiState>, Path(_name): Path<String>) -> ApiResult<Response> {
    Err(hosts_missing())
}

/// Test the API (and SSH) connection of a host.
#[utoipa::path(post, path = "/api/v1/hosts/{name}/test", tag = "hosts", params(("name" = String, Path, description = "host name")),
    responses((status = 200, body = HostTest), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn test(State(_api): State<ApiState>, Path(_name): Path<String>) -> ApiResult<Json<HostTest>> {
    Err(hosts_missing())
}

/// Re-read the host's nodes.
#[utoipa::path(post, path = "/api/v1/hosts/{name}/sync", tag = "hosts", params(("name" = String, Path, description = "host name")),
    responses((status = 200, body = Vec<NodeView>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn sync(State(_api): State<ApiState>, Path(_name): Path<String>) -> ApiResult<Json<Vec<NodeView>>> {
    Err(hosts_missing())
}

/// Nodes of every host.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "hosts",
    responses((status = 200, body = Vec<NodeView>), (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn nodes(State(_api): State<ApiState>) -> ApiResult<Json<Vec<NodeView>>> {
    Err(hosts_missing())
}
