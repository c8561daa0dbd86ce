//! Authentication and the per-route guard: bearer JWTs, personal API tokens, browser
//! cookies with a CSRF double-submit token; permission check from [`super::rbac::ROUTES`];
//! audit of every state-changing call.

pub mod throttle;
pub mod tokens;
pub mod users;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::audit::{self, AuditNote};
use super::error::ApiError;
use super::rbac;
use tokens::{Scope, TokenError};
use users::{Role, User};

/// Cookie holding the access JWT (HttpOnly).
pub const ACCESS_COOKIE: &str = "proximity_access";
/// Cookie holding the refresh token (HttpOnly, path `/api/v1/auth`).
pub const REFRESH_COOKIE: &str = "proximity_refresh";
/// Cookie holding the CSRF token (readable by the UI's script).
pub const CSRF_COOKIE: &str = "proximity_csrf";
/// Header that must repeat the CSRF cookie on state-changing cookie-authenticated calls.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer <access JWT>`.
    Bearer,
    /// Access cookie (+ CSRF header for unsafe methods).
    Cookie,
    /// Personal API token (id).
    ApiToken(String),
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user (re-read from storage for this request).
    pub user: User,
    /// Session id when authenticated with a JWT.
    pub session: Option<String>,
    /// How.
    pub via: Via,
}

impl Principal {
    /// Is the caller an administrator?
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
    /// May the caller see objects owned by `owner` (admins see everything)?
    pub fn can_see(&self, owner: &str) -> bool {
        self.is_admin() || self.user.id == owner
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("authentication required"))
    }
}

/// Source address of the request (`unknown` in in-process tests without connect info).
#[derive(Debug, Clone)]
pub struct SourceIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SourceIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(source_ip(parts.extensions.get::<ConnectInfo<SocketAddr>>()))
    }
}

fn source_ip(ci: Option<&ConnectInfo<SocketAddr>>) -> SourceIp {
    SourceIp(ci.map(|c| canonical_ip(c.0.ip()).to_string()).unwrap_or_else(|| "unknown".into()))
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::Store(s) => ApiError::internal(s),
        other => ApiError::unauthorized(other.to_string()),
    }
}

/// Authenticate a request from its headers. `Ok(None)` when no credentials were sent.
pub fn authenticate(api: &ApiState, headers: &HeaderMap, unsafe_method: bool) -> Result<Option<Principal>, ApiError> {
    let store = &api.ctx.store;
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let Some(tok) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) else {
            return Err(ApiError::unauthorized("use `Authorization: Bearer <token>`"));
        };
        let tok = tok.trim();
        if tok.starts_with(tokens::API_TOKEN_PREFIX) {
            let (t, user) = tokens::verify_api_token(store, tok).map_err(token_error)?;
            if unsafe_method && !t.scopes.contains(&Scope::Write) {
                return Err(ApiError::forbidden("this API token has only the `read` scope"));
            }
            return Ok(Some(Principal {
                user,
                session: None,
                via: Via::ApiToken(t.id),
            }));
        }
        let (claims, user) = api.tokens.verify_access(store, tok).map_err(token_error)?;
        return Ok(Some(Principal {
            user,
            session: Some(claims.sid),
            via: Via::Bearer,
        }));
    }
    if let Some(tok) = cookie(headers, ACCESS_COOKIE) {
        let (claims, user) = api.tokens.verify_access(store, tok).map_err(token_error)?;
        if unsafe_method {
            let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            let expected = cookie(headers, CSRF_COOKIE).unwrap_or("");
            if sent.is_empty() || expected.is_empty() || !ct_eq(sent, expected) {
                return Err(ApiError::forbidden(
                    "missing or wrong CSRF token: send the `proximity_csrf` cookie's value in the X-CSRF-Token header",
                ));
            }
        }
        return Ok(Some(Principal {
            user,
            session: Some(claims.sid),
            via: Via::Cookie,
        }));
    }
    Ok(None)
}

/// Checks a `GET` that changes state the way [`guard`] checks unsafe methods, for
/// websocket upgrades (browsers cannot set headers on them): cookie sessions must repeat
/// the CSRF cookie in `csrf` (query parameter), API tokens need the `write` scope.
pub fn require_write_access(api: &ApiState, headers: &HeaderMap, p: &Principal, csrf: Option<&str>) -> Result<(), ApiError> {
    match &p.via {
        Via::Bearer => Ok(()),
        Via::Cookie => {
            let sent = csrf.unwrap_or("");
            let expected = cookie(headers, CSRF_COOKIE).unwrap_or("");
            if sent.is_empty() || expected.is_empty() || !ct_eq(sent, expected) {
                return Err(ApiError::forbidden(
                    "missing or wrong CSRF token: repeat the `proximity_csrf` cookie's value in the `csrf` query parameter",
                ));
            }
            Ok(())
        }
        // Re-check the token as for an unsafe method: refuses a read-only token.
        Via::ApiToken(_) => authenticate(api, headers, true).map(|_| ()),
    }
}

/// Route guard: permission from the route table, authentication, and the audit record of
/// every state-changing call. Installed with `route_layer`, so the route is known.
pub async fn guard(State(api): State<ApiState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let ip = source_ip(req.extensions().get::<ConnectInfo<SocketAddr>>());
    let unsafe_method = rbac::is_unsafe(&method);
    let Some(spec) = rbac::lookup(&method, &matched) else {
        if rbac::ROUTES.iter().any(|r| r.path == matched) {
            return super::handlers::method_not_allowed().await;
        }
        tracing::error!(%method, route = %matched, "route has no entry in the permission table; refusing");
        return ApiError::internal(format!("route {method} {matched} has no permission entry")).into_response();
    };

    let mut principal_for_audit: Option<Principal> = None;
    let outcome: Result<Option<Principal>, ApiError> = match spec.perm {
        rbac::Perm::Public => Ok(authenticate(&api, req.headers(), unsafe_method).ok().flatten()),
        perm => match authenticate(&api, req.headers(), unsafe_method) {
            Ok(Some(p)) if perm.allows(p.user.role) => Ok(Some(p)),
            Ok(Some(p)) => {
                principal_for_audit = Some(p);
                Err(ApiError::forbidden(format!("`{}` needs the admin role", spec.action)))
            }
            Ok(None) => Err(ApiError::unauthorized("authentication required: log in or send a bearer token")),
            Err(e) => Err(e),
        },
    };
    match outcome {
        Ok(p) => {
            if let Some(p) = p.clone() {
                req.extensions_mut().insert(p);
            }
            let mut resp = next.run(req).await;
            if unsafe_method {
                let note = resp.extensions_mut().remove::<AuditNote>().unwrap_or_default();
                audit::record_call(&api, spec.action, &path, p.as_ref(), note, resp.status(), &ip.0);
            }
            resp
        }
        Err(e) => {
            if unsafe_method {
                audit::record_call(
                    &api,
                    spec.action,
                    &path,
                    principal_for_audit.as_ref(),
                    AuditNote::default(),
                    e.status,
                    &ip.0,
                );
            }
            e.into_response()
        }
    }
}

/// `Set-Cookie` values for a fresh login/refresh.
pub fn session_cookies(pair: &tokens::IssuedPair, refresh_secs: u64, secure: bool) -> Vec<HeaderValue> {
    let sec = if secure { "; Secure" } else { "" };
    let csrf = hex::encode(rand::random::<[u8; 16]>());
    [
        format!(
            "{ACCESS_COOKIE}={}; Path=/; HttpOnly{sec}; SameSite=Strict; Max-Age={}",
            pair.access_token, pair.expires_in
        ),
        format!(
            "{REFRESH_COOKIE}={}; Path=/api/v1/auth; HttpOnly{sec}; SameSite=Strict; Max-Age={refresh_secs}",
            pair.refresh_token
        ),
        format!("{CSRF_COOKIE}={csrf}; Path=/{sec}; SameSite=Strict; Max-Age={refresh_secs}"),
    ]
    .into_iter()
    .filter_map(|c| HeaderValue::from_str(&c).ok())
    .collect()
}

/// `Set-Cookie` values that clear the session cookies.
pub fn clear_cookies(secure: bool) -> Vec<HeaderValue> {
    let sec = if secure { "; Secure" } else { "" };
    [
        format!("{ACCESS_COOKIE}=; Path=/; HttpOnly{sec}; SameSite=Strict; Max-Age=0"),
        format!("{REFRESH_COOKIE}=; Path=/api/v1/auth; HttpOnly{sec}; SameSite=Strict; Max-Age=0"),
        format!("{CSRF_COOKIE}=; Path=/{sec}; SameSite=Strict; Max-Age=0"),
    ]
    .into_iter()
    .filter_map(|c| HeaderValue::from_str(&c).ok())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; proximity_csrf=abc; b=2"));
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "zzz"), None);
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("abc", "ab"));
    }
}
