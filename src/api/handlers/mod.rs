//! Handlers, one module per resource.

pub mod apps;
pub mod auth;
pub mod backups;
pub mod catalog;
pub mod console;
pub mod hosts;
pub mod jobs;
pub mod network;
pub mod settings;
pub mod system;
pub mod tokens;
pub mod users;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// 405 as a problem document.
pub async fn method_not_allowed() -> Response {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "this method is not allowed on this path",
    )
    .into_response()
}

/// Security headers on every response; API responses are never cached.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if is_api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Response with extra audit facts.
pub fn with_note(resp: impl IntoResponse, note: super::audit::AuditNote) -> Response {
    let mut r = resp.into_response();
    r.extensions_mut().insert(note);
    r
}

/// Turn a panicking handler into a 500 problem instead of a dropped connection.
pub async fn catch_panic(req: Request, next: Next) -> Response {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => ApiError::internal("a request handler panicked").into_response(),
    }
}
