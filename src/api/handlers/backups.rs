//! `/api/v1/apps/{id}/backups`: list, create, get, restore, delete, stats.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::apps::{accepted_job, owner, visible_app};
use crate::api::ApiState;
use crate::api::auth::Principal;
use crate::api::auth::users::rfc3339;
use crate::api::error::{ApiResult, Problem};

/// A backup of an app's container.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupView {
    /// Id (the backup file name).
    pub id: String,
    /// App id.
    pub app_id: String,
    /// Proxmox volume id.
    pub volid: String,
    /// Storage.
    pub storage: String,
    /// Node.
    pub node: String,
    /// Container id.
    pub vmid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Format / compression.
    pub format: String,
    /// Notes.
    pub notes: Option<String>,
}

fn bview(b: crate::platform::Backup) -> BackupView {
    BackupView {
        id: b.id,
        app_id: b.app_id,
        volid: b.volid,
        storage: b.storage,
        node: b.node,
        vmid: b.vmid,
        size: b.size,
        created_at: rfc3339(b.created_at),
        format: b.format,
        notes: b.notes,
    }
}

/// Backup statistics of an app.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupStats {
    /// Backups found.
    pub total_backups: usize,
    /// Sum of sizes (bytes).
    pub total_size: u64,
    /// Newest (RFC 3339).
    pub newest: Option<String>,
    /// Oldest (RFC 3339).
    pub oldest: Option<String>,
    /// Backup jobs running or queued.
    pub in_progress_backups: usize,
    /// Backup jobs failed.
    pub failed_backups: usize,
    /// Backups kept per app.
    pub keep: u32,
}

/// The app's backups.
#[utoipa::path(get, path = "/api/v1/apps/{id}/backups", operation_id = "backup.list", tag = "backups", params(("id" = String, Path, description = "app id")),
    responses((status = 200, body = Vec<BackupView>), (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn list(State(api): State<ApiState>, p: Principal, Path(id): Path<String>) -> ApiResult<Json<Vec<BackupView>>> {
    visible_app(&api, &p, &id)?;
    Ok(Json(api.platform()?.list_backups(&id).await?.into_iter().map(bview).collect()))
}

/// Start a backup: 202 + `Location` of the job.
#[utoipa::path(post, path = "/api/v1/apps/{id}/backups", operation_id = "backup.create", tag = "backups", params(("id" = String, Path, description = "app id")),
    responses((status = 202, body = crate::api::handlers::jobs::JobRef, headers(("location" = String, description = "the job"))),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn create(State(api): State<ApiState>, p: Principal, Path(id): Path<String>) -> ApiResult<Response> {
    visible_app(&api, &p, &id)?;
    let job = api.platform()?.create_backup(&owner(&p), &id, Default::default()).await?;
    Ok(accepted_job(&job, &id))
}

/// Backup statistics.
#[utoipa::path(get, path = "/api/v1/apps/{id}/backups/stats", operation_id = "backup.stats", tag = "backups", params(("id" = String, Path, description = "app id")),
    responses((status = 200, body = BackupStats), (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn stats(State(api): State<ApiState>, p: Principal, Path(id): Path<String>) -> ApiResult<Json<BackupStats>> {
    visible_app(&api, &p, &id)?;
    let s = api.platform()?.backup_stats(&id).await?;
    Ok(Json(BackupStats {
        total_backups: s.total_backups,
        total_size: s.total_size,
        newest: s.newest.map(rfc3339),
        oldest: s.oldest.map(rfc3339),
        in_progress_backups: s.in_progress_backups,
        failed_backups: s.failed_backups,
        keep: s.keep,
    }))
}

/// One backup.
#[utoipa::path(get, path = "/api/v1/apps/{id}/backups/{backup_id}", operation_id = "backup.get", tag = "backups",
    params(("id" = String, Path, description = "app id"), ("backup_id" = String, Path, description = "backup id")),
    responses((status = 200, body = BackupView), (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn get_one(State(api): State<ApiState>, p: Principal, Path((id, b)): Path<(String, String)>) -> ApiResult<Json<BackupView>> {
    visible_app(&api, &p, &id)?;
    Ok(Json(bview(api.platform()?.get_backup(&id, &b).await?)))
}

/// Delete a backup: 202 + `Location` of the job.
#[utoipa::path(delete, path = "/api/v1/apps/{id}/backups/{backup_id}", operation_id = "backup.delete", tag = "backups",
    params(("id" = String, Path, description = "app id"), ("backup_id" = String, Path, description = "backup id")),
    responses((status = 202, body = crate::api::handlers::jobs::JobRef), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn remove(State(api): State<ApiState>, p: Principal, Path((id, b)): Path<(String, String)>) -> ApiResult<Response> {
    visible_app(&api, &p, &id)?;
    let job = api.platform()?.delete_backup(&owner(&p), &id, &b).await?;
    Ok(accepted_job(&job, &id))
}

/// Restore a backup into the app: 202 + `Location` of the job.
#[utoipa::path(post, path = "/api/v1/apps/{id}/backups/{backup_id}/restore", operation_id = "backup.restore", tag = "backups",
    params(("id" = String, Path, description = "app id"), ("backup_id" = String, Path, description = "backup id")),
    responses((status = 202, body = crate::api::handlers::jobs::JobRef), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn restore(State(api): State<ApiState>, p: Principal, Path((id, b)): Path<(String, String)>) -> ApiResult<Response> {
    visible_app(&api, &p, &id)?;
    let job = api.platform()?.restore_backup(&owner(&p), &id, &b).await?;
    Ok(accepted_job(&job, &id))
}
