//! The embedded web UI (`web/dist`, built by `make web` before cargo) with SPA fallback:
//! unknown non-API paths serve `index.html`; unknown `/api/` paths are problem+json 404s.
//! A missing or empty `web/dist` still builds (`allow_missing`) and serves a short page
//! saying how to build the UI.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::RustEmbed;

use super::error::ApiError;

#[derive(RustEmbed)]
#[folder = "web/dist"]
#[allow_missing = true]
struct Assets;

const NOT_BUILT: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Proximity</title></head><body>\
<h1>Proximity</h1><p>The web UI is not part of this build (run <code>make build</code>, which builds <code>web/</code> \
before the daemon). The API is available: <a href=\"/api/v1/docs\">API documentation</a>.</p></body></html>";

/// Content type by file extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

fn asset(path: &str) -> Option<Response> {
    let file = Assets::get(path)?;
    let mut r = file.data.into_owned().into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Some(r)
}

/// Fallback of the router: API 404s, static files, SPA `index.html`.
pub async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api/") || path == "/api" {
        return ApiError::not_found(format!("no API endpoint {path}; see /api/v1/docs")).into_response();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here").into_response();
    }
    let rel = path.trim_start_matches('/');
    if !rel.is_empty()
        && !rel.split('/').any(|s| s == "..")
        && let Some(r) = asset(rel)
    {
        return r;
    }
    // A missing file with an extension is a real 404; anything else is a UI route.
    if rel.rsplit('/').next().is_some_and(|last| last.contains('.')) {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    asset("index.html").unwrap_or_else(|| Html(NOT_BUILT).into_response())
}
