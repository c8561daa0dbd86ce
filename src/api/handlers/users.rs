//! `/api/v1/users` (admin): list, create, get, update role/password, delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::with_note;
use crate::api::ApiState;
use crate::api::audit::AuditNote;
use crate::api::auth::Principal;
use crate::api::auth::tokens::{API_TOKENS, TokenService};
use crate::api::auth::users::{self, Role, USERS, UserError, UserView};
use crate::api::error::{ApiError, ApiJson, ApiResult, FieldErrors, Problem};

/// New user.
#[derive(Deserialize, ToSchema)]
pub struct NewUser {
    /// Login name (lowercase letters, digits, `.`, `_`, `-`; 1–32).
    pub username: String,
    /// Password (8–256 characters).
    pub password: String,
    /// Role (default `user`).
    pub role: Option<Role>,
}

/// Changes to a user; absent fields stay.
#[derive(Deserialize, ToSchema)]
pub struct UserPatch {
    /// New role.
    pub role: Option<Role>,
    /// New password (revokes the user's sessions).
    pub password: Option<String>,
}

fn admins(api: &ApiState) -> Result<usize, ApiError> {
    Ok(api.ctx.store.list(USERS)?.iter().filter(|(_, u)| u.role == Role::Admin).count())
}

/// All users.
#[utoipa::path(get, path = "/api/v1/users", operation_id = "user.list", tag = "users", responses((status = 200, body = Vec<UserView>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list(State(api): State<ApiState>) -> ApiResult<Json<Vec<UserView>>> {
    let mut v: Vec<UserView> = api.ctx.store.list(USERS)?.iter().map(|(_, u)| UserView::from(u)).collect();
    v.sort_by(|a, b| a.username.cmp(&b.username));
    Ok(Json(v))
}

/// Create a user.
#[utoipa::path(post, path = "/api/v1/users", operation_id = "user.create", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserView), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create(State(api): State<ApiState>, ApiJson(req): ApiJson<NewUser>) -> ApiResult<Response> {
    let mut errs = FieldErrors::default();
    errs.check("username", users::validate_username(&req.username));
    errs.check("password", users::validate_password(&req.password));
    errs.finish()?;
    let store = api.ctx.store.clone();
    let role = req.role.unwrap_or(Role::User);
    let u = tokio::task::spawn_blocking(move || users::create(&store, &req.username, &req.password, role, false))
        .await
        .map_err(ApiError::internal)?;
    match u {
        Ok(u) => Ok(with_note((StatusCode::CREATED, Json(UserView::from(&u))), AuditNote::target(&u.id))),
        Err(UserError::Exists(n)) => Err(ApiError::conflict(format!("a user named {n:?} already exists"))),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", operation_id = "user.get", tag = "users", params(("id" = String, Path, description = "user id")),
    responses((status = 200, body = UserView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_one(State(api): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<UserView>> {
    let u = api
        .ctx
        .store
        .get(USERS, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    Ok(Json(UserView::from(&u)))
}

/// Change a user's role or password. The last administrator cannot be demoted.
#[utoipa::path(patch, path = "/api/v1/users/{id}", operation_id = "user.update", tag = "users", params(("id" = String, Path, description = "user id")), request_body = UserPatch,
    responses((status = 200, body = UserView), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn update(State(api): State<ApiState>, Path(id): Path<String>, ApiJson(req): ApiJson<UserPatch>) -> ApiResult<Json<UserView>> {
    let mut u = api
        .ctx
        .store
        .get(USERS, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    let mut errs = FieldErrors::default();
    if let Some(pw) = &req.password {
        errs.check("password", users::validate_password(pw));
    }
    errs.finish()?;
    if let Some(role) = req.role {
        if u.role == Role::Admin && role != Role::Admin && admins(&api)? <= 1 {
            return Err(ApiError::conflict("cannot demote the last administrator"));
        }
        u.role = role;
        api.ctx.store.put(USERS, &id, &u)?;
    }
    if let Some(pw) = req.password {
        let store = api.ctx.store.clone();
        let name = u.username.clone();
        u = tokio::task::spawn_blocking(move || users::set_password(&store, &name, &pw))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        TokenService::revoke_user_sessions(&api.ctx.store, &id, None, "password reset by an administrator")?;
    }
    Ok(Json(UserView::from(&u)))
}

/// Delete a user (not yourself, not the last administrator, not while they own apps);
/// their sessions and API tokens are revoked.
#[utoipa::path(delete, path = "/api/v1/users/{id}", operation_id = "user.delete", tag = "users", params(("id" = String, Path, description = "user id")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn remove(State(api): State<ApiState>, p: Principal, Path(id): Path<String>) -> ApiResult<Response> {
    let u = api
        .ctx
        .store
        .get(USERS, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    if u.id == p.user.id {
        return Err(ApiError::conflict("you cannot delete your own account"));
    }
    if u.role == Role::Admin && admins(&api)? <= 1 {
        return Err(ApiError::conflict("cannot delete the last administrator"));
    }
    let owned = api
        .ctx
        .store
        .list(crate::registry::APPS)?
        .iter()
        .filter(|(_, a)| a.owner == id)
        .count();
    if owned > 0 {
        return Err(ApiError::conflict(format!("the user owns {owned} app(s); delete them first")));
    }
    TokenService::revoke_user_sessions(&api.ctx.store, &id, None, "user deleted")?;
    api.ctx.store.write(|tx| {
        for (tid, t) in tx.list(API_TOKENS)? {
            if t.user_id == id {
                tx.delete(API_TOKENS, &tid)?;
            }
        }
        tx.delete(USERS, &id)?;
        Ok::<_, crate::store::StoreError>(())
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
