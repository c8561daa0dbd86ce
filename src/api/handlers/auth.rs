//! `/api/v1/auth`: first-run setup, login, refresh, logout, me, password change.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::with_note;
use crate::api::ApiState;
use crate::api::audit::AuditNote;
use crate::api::auth::tokens::{IssuedPair, TokenError, TokenService};
use crate::api::auth::users::{self, Role, User, UserError};
use crate::api::auth::{self as a, Principal, SourceIp};
use crate::api::error::{ApiError, ApiJson, ApiResult, FieldErrors, Problem, parse_json};

/// Credentials.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// The user inside a login response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginUser {
    /// Id.
    pub id: String,
    /// Name.
    pub username: String,
    /// Role.
    pub role: Role,
}

/// Tokens after login, setup or refresh (also set as cookies).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Access JWT (HS256), for `Authorization: Bearer`.
    pub access_token: String,
    /// Refresh token (single use; rotated on every refresh).
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
    /// Who logged in.
    pub user: LoginUser,
}

/// Is first-run setup still open?
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SetupStatus {
    /// True while no user exists.
    pub needs_setup: bool,
}

/// Refresh request; without a body the `proximity_refresh` cookie is used (then the
/// CSRF header is required).
#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token from the last login/refresh.
    pub refresh_token: Option<String>,
}

/// Password change.
#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    /// Current password.
    pub current_password: String,
    /// New password (8–256 characters).
    pub new_password: String,
}

fn login_response(api: &ApiState, pair: IssuedPair, user: &User, status: StatusCode) -> Response {
    let body = LoginResponse {
        access_token: pair.access_token.clone(),
        refresh_token: pair.refresh_token.clone(),
        token_type: "Bearer".into(),
        expires_in: pair.expires_in,
        user: LoginUser {
            id: user.id.clone(),
            username: user.username.clone(),
            role: user.role,
        },
    };
    let mut resp = (status, Json(body)).into_response();
    for c in a::session_cookies(&pair, api.tokens.refresh_secs, api.secure_cookies) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

fn token_err(e: TokenError) -> ApiError {
    match e {
        TokenError::Store(s) => ApiError::internal(s),
        other => ApiError::unauthorized(other.to_string()),
    }
}

/// Whether first-run setup is needed.
#[utoipa::path(get, path = "/api/v1/auth/setup", operation_id = "auth.setup_status", tag = "auth", security(()), responses((status = 200, body = SetupStatus)))]
pub async fn setup_status(State(api): State<ApiState>) -> ApiResult<Json<SetupStatus>> {
    Ok(Json(SetupStatus {
        needs_setup: users::count(&api.ctx.store)? == 0,
    }))
}

/// First-run setup: create the first administrator (only while no user exists) and log in.
#[utoipa::path(post, path = "/api/v1/auth/setup", operation_id = "auth.setup", tag = "auth", security(()), request_body = LoginRequest,
    responses((status = 201, body = LoginResponse), (status = 400, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn setup(State(api): State<ApiState>, ApiJson(req): ApiJson<LoginRequest>) -> ApiResult<Response> {
    if users::count(&api.ctx.store)? > 0 {
        return Err(ApiError::conflict("setup is already done; log in instead"));
    }
    let mut errs = FieldErrors::default();
    errs.check("username", users::validate_username(&req.username));
    errs.check("password", users::validate_password(&req.password));
    errs.finish()?;
    let user = match users::create(&api.ctx.store, &req.username, &req.password, Role::Admin, true) {
        Ok(u) => u,
        Err(UserError::Exists(_)) => return Err(ApiError::conflict("setup is already done; log in instead")),
        Err(e) => return Err(ApiError::internal(e)),
    };
    let pair = api.tokens.login(&api.ctx.store, &user).map_err(token_err)?;
    Ok(with_note(
        login_response(&api, pair, &user, StatusCode::CREATED),
        AuditNote::actor(&user.username),
    ))
}

/// Log in with user name and password.
#[utoipa::path(post, path = "/api/v1/auth/login", operation_id = "auth.login", tag = "auth", security(()), request_body = LoginRequest,
    responses((status = 200, body = LoginResponse, headers(("set-cookie" = String, description = "proximity_access, proximity_refresh (HttpOnly) and proximity_csrf"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem, headers(("retry-after" = u64, description = "seconds to wait")))))]
pub async fn login(State(api): State<ApiState>, SourceIp(ip): SourceIp, ApiJson(req): ApiJson<LoginRequest>) -> ApiResult<Response> {
    let note = AuditNote::actor(&req.username);
    let name = req.username.chars().take(64).collect::<String>();
    if let Some(wait) = api.throttle.check(&name, &ip, Instant::now()) {
        let e = ApiError::too_many(format!("too many failed logins; try again in {wait} s"), wait);
        return Ok(with_note(e, note));
    }
    let user = users::find_by_name(&api.ctx.store, &req.username)?;
    let store_hash = user.as_ref().map(|u| u.password_hash.clone());
    let pw = req.password;
    // argon2 is CPU-heavy: off the async workers. Unknown users cost the same (dummy hash).
    let ok = tokio::task::spawn_blocking(move || {
        let h = store_hash.as_deref().unwrap_or_else(|| users::dummy_hash());
        users::verify_password(&pw, h)
    })
    .await
    .unwrap_or(false);
    match user {
        Some(user) if ok => {
            api.throttle.succeed(&name);
            let pair = api.tokens.login(&api.ctx.store, &user).map_err(token_err)?;
            Ok(with_note(login_response(&api, pair, &user, StatusCode::OK), note))
        }
        _ => {
            api.throttle.fail(&name, &ip, Instant::now());
            Ok(with_note(ApiError::unauthorized("invalid user name or password"), note))
        }
    }
}

/// Exchange a refresh token for a new pair (the old one becomes invalid; reusing it
/// revokes the session).
#[utoipa::path(post, path = "/api/v1/auth/refresh", operation_id = "auth.refresh", tag = "auth", security(()), request_body(content = RefreshRequest, description = "optional; the refresh cookie is used without it"),
    responses((status = 200, body = LoginResponse), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn refresh(State(api): State<ApiState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let from_body = if body.iter().all(|b| b.is_ascii_whitespace()) {
        None
    } else {
        parse_json::<RefreshRequest>(&body)?.refresh_token
    };
    let token = match from_body {
        Some(t) => t,
        None => {
            let Some(t) = a::cookie(&headers, a::REFRESH_COOKIE) else {
                return Err(ApiError::field(
                    "refresh_token",
                    "is required (in the body or the proximity_refresh cookie)",
                ));
            };
            let sent = headers.get(a::CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if sent.is_empty() || Some(sent) != a::cookie(&headers, a::CSRF_COOKIE) {
                return Err(ApiError::forbidden("missing or wrong CSRF token (X-CSRF-Token header)"));
            }
            t.to_string()
        }
    };
    let (pair, user) = api.tokens.rotate(&api.ctx.store, &token).map_err(token_err)?;
    Ok(with_note(
        login_response(&api, pair, &user, StatusCode::OK),
        AuditNote::actor(&user.username),
    ))
}

/// Log out: revoke this session (access and refresh tokens) and clear the cookies.
#[utoipa::path(post, path = "/api/v1/auth/logout", operation_id = "auth.logout", tag = "auth", responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn logout(State(api): State<ApiState>, p: Principal) -> ApiResult<Response> {
    if let Some(sid) = &p.session {
        TokenService::revoke_session(&api.ctx.store, sid, "logout")?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for c in a::clear_cookies(api.secure_cookies) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// The caller.
#[utoipa::path(get, path = "/api/v1/auth/me", operation_id = "auth.me", tag = "auth", responses((status = 200, body = users::UserView), (status = 401, body = Problem)))]
pub async fn me(p: Principal) -> Json<users::UserView> {
    Json(users::UserView::from(&p.user))
}

/// Change the caller's password; every other session of the user is revoked.
#[utoipa::path(post, path = "/api/v1/auth/password", operation_id = "auth.password", tag = "auth", request_body = PasswordChange,
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn password(State(api): State<ApiState>, p: Principal, ApiJson(req): ApiJson<PasswordChange>) -> ApiResult<StatusCode> {
    let mut errs = FieldErrors::default();
    errs.check("new_password", users::validate_password(&req.new_password));
    let hash = p.user.password_hash.clone();
    let cur = req.current_password.clone();
    let ok = tokio::task::spawn_blocking(move || users::verify_password(&cur, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        errs.add("current_password", "is wrong");
    }
    errs.finish()?;
    users::set_password(&api.ctx.store, &p.user.username, &req.new_password).map_err(ApiError::internal)?;
    TokenService::revoke_user_sessions(&api.ctx.store, &p.user.id, None, "password changed")?;
    Ok(StatusCode::NO_CONTENT)
}
