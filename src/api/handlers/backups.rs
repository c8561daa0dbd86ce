//! `/api/v1/apps/{id}/backups`: list, create, get, restore, delete, stats.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::apps::{platform_missing, visible_app};
use crate::api::ApiState;
use crate::api::auth::Principal;
use crate::api::error::{ApiResult, Problem};

/// A backup of an app's container.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupView {
    /// Id.
    pub id: String,
    /// App id.
    pub app_id: String,
    /// Proxmox volume id.
    pub volid: String,
    /// Size in bytes.
    pub size: u64,
    /// Created (RFC 3339).
    pub created_at: String,
    /// `creating`, `available`, `failed`.
    pub status: String,
}

/// Backup statistics of an app.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupStats {
    /// Number of backups.
    pub count: u64,
    /// Total size in bytes.
    pub total_bytes: u64,
    /// Newest backup (RFC 3339).
    pub latest: Option<String>,
}

/// The app's backups.
#[utoipa::path(get, path = "/api/v1/apps/{id}/backups", tag = "backups", params(("id" = String, Path, description = "app id")),
    responses((status = 200, body = Vec<BackupView>), (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn list(State(api): State<ApiState>, p: Principal, Path(id): Path<String>) -> ApiResult<Json<Vec<BackupView>>> {
    visible_app(&api, &p, &id)?;
    Err(platform_missing())
}

/// Start a backup: 202 + `Location` of the job.
#[utoipa::path(post, path = "/api/v1/apps/{id}/backups", tag = "backups", params(("id" = String, Path, description = "app id")),
    responses((status = 202, body = crate::api::handlers::jobs::JobRef, headers(("location" = String, description = "the job"))),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn create(State(api): State<ApiState>, p: Principal, Path(id): Path<String>) -> ApiResult<Response> {
    visible_app(&api, &p, &id)?;
    Err(platform_missing())
}

/// Backup statistics.
#[utoipa::path(get, path = "/api/v1/apps/{id}/backups/stats", tag = "backups", params(("id" = String, Path, description = "app id")),
    responses((status = 200, body = BackupStats), (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn stats(State(api): State<ApiState>, p: Principal, Path(id): Path<String>) -> ApiResult<Json<BackupStats>> {
    visible_app(&api, &p, &id)?;
    Err(platform_missing())
}

/// One backup.
#[utoipa::path(get, path = "/api/v1/apps/{id}/backups/{backup_id}", tag = "backups",
    params(("id" = String, Path, description = "app id"), ("backup_id" = String, Path, description = "backup id")),
    responses((status = 200, body = BackupView), (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn get_one(State(api): State<ApiState>, p: Principal, Path((id, _b)): Path<(String, String)>) -> ApiResult<Json<BackupView>> {
    visible_app(&api, &p, &id)?;
    Err(platform_missing())
}

/// Delete a backup: 202 + `Location` of the job.
#[utoipa::path(delete, path = "/api/v1/apps/{id}/backups/{backup_id}", tag = "backups",
    params(("id" = String, Path, description = "app id"), ("backup_id" = String, Path, description = "backup id")),
    responses((status = 202, body = crate::api::handlers::jobs::JobRef), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn remove(State(api): State<ApiState>, p: Principal, Path((id, _b)): Path<(String, String)>) -> ApiResult<Response> {
    visible_app(&api, &p, &id)?;
    Err(platform_missing())
}

/// Restore a backup into the app: 202 + `Location` of the job.
#[utoipa::path(post, path = "/api/v1/apps/{id}/backups/{backup_id}/restore", tag = "backups",
    params(("id" = String, Path, description = "app id"), ("backup_id" = String, Path, description = "backup id")),
    responses((status = 202, body = crate::api::handlers::jobs::JobRef), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn restore(State(api): State<ApiState>, p: Principal, Path((id, _b)): Path<(String, String)>) -> ApiResult<Response> {
    visible_app(&api, &p, &id)?;
    Err(platform_missing())
}
