//! `/api/v1/tokens`: the caller's personal API tokens (scoped, expiring, revocable).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::with_note;
use crate::api::ApiState;
use crate::api::audit::AuditNote;
use crate::api::auth::tokens::{self, API_TOKENS, ApiToken, Scope};
use crate::api::auth::users::{now, rfc3339};
use crate::api::auth::{Principal, Via};
use crate::api::error::{ApiError, ApiJson, ApiResult, FieldErrors, Problem};

/// A token as listed (never the secret).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Id.
    pub id: String,
    /// Label.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Expiry (RFC 3339), null = never.
    pub expires_at: Option<String>,
    /// Last use (RFC 3339).
    pub last_used_at: Option<String>,
    /// Revoked.
    pub revoked: bool,
}

impl From<&ApiToken> for TokenView {
    fn from(t: &ApiToken) -> Self {
        TokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            scopes: t.scopes.clone(),
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
            revoked: t.revoked,
        }
    }
}

/// New token.
#[derive(Deserialize, ToSchema)]
pub struct NewToken {
    /// Label (1–64 characters).
    pub name: String,
    /// Scopes (default `["read"]`).
    pub scopes: Option<Vec<Scope>>,
    /// Lifetime in days (1–3650); absent = never expires.
    pub expires_in_days: Option<u32>,
}

/// A created token: the secret is shown only here, once.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The token (send as `Authorization: Bearer <token>`).
    pub token: String,
    /// Its record.
    #[serde(flatten)]
    pub info: TokenView,
}

/// The caller's tokens.
#[utoipa::path(get, path = "/api/v1/tokens", operation_id = "token.list", tag = "tokens", responses((status = 200, body = Vec<TokenView>), (status = 401, body = Problem)))]
pub async fn list(State(api): State<ApiState>, p: Principal) -> ApiResult<Json<Vec<TokenView>>> {
    let mut v: Vec<&ApiToken> = Vec::new();
    let all = api.ctx.store.list(API_TOKENS)?;
    for (_, t) in &all {
        if t.user_id == p.user.id {
            v.push(t);
        }
    }
    v.sort_by_key(|t| t.created_at);
    Ok(Json(v.into_iter().map(TokenView::from).collect()))
}

/// Create a token. API tokens cannot create further tokens.
#[utoipa::path(post, path = "/api/v1/tokens", operation_id = "token.create", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create(State(api): State<ApiState>, p: Principal, ApiJson(req): ApiJson<NewToken>) -> ApiResult<Response> {
    if matches!(p.via, Via::ApiToken(_)) {
        return Err(ApiError::forbidden("API tokens cannot create tokens; log in with a password"));
    }
    let mut errs = FieldErrors::default();
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(|c| c.is_control()) {
        errs.add("name", "must be 1 to 64 printable characters");
    }
    let scopes = req.scopes.unwrap_or_else(|| vec![Scope::Read]);
    if scopes.is_empty() {
        errs.add("scopes", "must name at least one scope");
    }
    if let Some(d) = req.expires_in_days
        && !(1..=3650).contains(&d)
    {
        errs.add("expires_in_days", "must be between 1 and 3650");
    }
    errs.finish()?;
    let mut scopes = scopes;
    scopes.sort_by_key(|s| *s as u8);
    scopes.dedup();
    let expires = req.expires_in_days.map(|d| now() + i64::from(d) * 86_400);
    let (rec, secret) = tokens::create_api_token(&api.ctx.store, &p.user.id, name, scopes, expires)?;
    let body = CreatedToken {
        token: secret,
        info: TokenView::from(&rec),
    };
    Ok(with_note((StatusCode::CREATED, Json(body)), AuditNote::target(&rec.id)))
}

/// Revoke one of the caller's tokens (others' tokens are 404).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", operation_id = "token.revoke", tag = "tokens", params(("id" = String, Path, description = "token id")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn revoke(State(api): State<ApiState>, p: Principal, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let mut t = api
        .ctx
        .store
        .get(API_TOKENS, &id)?
        .filter(|t| t.user_id == p.user.id)
        .ok_or_else(|| ApiError::not_found(format!("no token {id}")))?;
    t.revoked = true;
    api.ctx.store.put(API_TOKENS, &id, &t)?;
    Ok(StatusCode::NO_CONTENT)
}
