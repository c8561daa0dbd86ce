//! One API error type rendered as RFC 9457 `application/problem+json`, and a JSON body
//! extractor whose failures become problems with per-field errors.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

/// RFC 9457 problem details, as returned by every failing API call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// URI naming the problem type (`about:blank` or `/problems/<slug>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong and what to do.
    pub detail: String,
    /// Field errors: JSON path of the field → message (validation problems only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub errors: BTreeMap<String, String>,
}

/// An API failure. Converts into a problem+json response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable explanation.
    pub detail: String,
    /// Field errors.
    pub errors: BTreeMap<String, String>,
    /// Seconds for `Retry-After` (429/503).
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status.as_u16(), self.detail)
    }
}

impl std::error::Error for ApiError {}

/// Result alias of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with a status and detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
            errors: BTreeMap::new(),
            retry_after: None,
        }
    }
    /// 400: malformed request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    /// 401: no or invalid credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }
    /// 403: authenticated but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }
    /// 404: no such resource (or not visible to the caller).
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }
    /// 409: conflicts with the current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }
    /// 422: well-formed but invalid; one message per field.
    pub fn validation(errors: BTreeMap<String, String>) -> Self {
        let n = errors.len();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: format!("{n} field(s) are invalid; see `errors`"),
            errors,
            retry_after: None,
        }
    }
    /// 422 for one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(BTreeMap::from([(field.to_string(), message.into())]))
    }
    /// 429 with `Retry-After`.
    pub fn too_many(detail: impl Into<String>, retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, detail)
        }
    }
    /// Add a `Retry-After`.
    pub fn with_retry(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
    /// 502: Proxmox (or another upstream) failed.
    pub fn bad_gateway(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, detail)
    }
    /// 503: a needed part is not available (yet).
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }
    /// 500: an internal failure; the detail is logged, the client sees a generic message.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal API error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the appliance log")
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("/problems/{}", slug(self.status)),
            title: self.status.canonical_reason().unwrap_or("Error").to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
        }
    }
}

fn slug(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"proximity\""));
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl From<crate::platform::PlatformError> for ApiError {
    fn from(e: crate::platform::PlatformError) -> Self {
        use crate::platform::PlatformError as P;
        match e {
            P::NotFound(m) => ApiError::not_found(m),
            P::Conflict(m) => ApiError::conflict(m),
            P::Invalid { fields, message } => {
                if fields.is_empty() {
                    ApiError::field("body", message)
                } else {
                    ApiError::validation(fields)
                }
            }
            P::Upstream(m) => ApiError::bad_gateway(m),
            P::Unavailable(m) => ApiError::unavailable(m),
            other => ApiError::internal(other),
        }
    }
}

/// JSON body extractor: syntax errors → 400, shape errors → 422 naming the field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct_ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let v = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !ct_ok {
            return Err(ApiError::bad_request(
                "the request body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is larger than api.max_body_bytes")
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parse a JSON body: syntax errors → 400, type/shape errors → 422 with the field path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::bad_request(format!("the request body is not valid JSON: {e}")));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let inner = inner.split(" at line ").next().unwrap_or(&inner).to_string();
        let (field, msg) = match missing_field(&inner) {
            Some(f) if path == "." => (f.to_string(), "is required".to_string()),
            Some(f) => (format!("{path}.{f}"), "is required".to_string()),
            None if path == "." => ("body".to_string(), inner),
            None => (path, inner),
        };
        ApiError::field(&field, msg)
    })
}

fn missing_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Accumulates field errors during validation.
#[derive(Debug, Default)]
pub struct FieldErrors(pub BTreeMap<String, String>);

impl FieldErrors {
    /// Record `msg` for `field` when `result` is an error.
    pub fn check(&mut self, field: &str, result: Result<(), String>) {
        if let Err(m) = result {
            self.0.entry(field.to_string()).or_insert(m);
        }
    }
    /// Record an error for `field`.
    pub fn add(&mut self, field: &str, msg: impl Into<String>) {
        self.0.entry(field.to_string()).or_insert(msg.into());
    }
    /// `Ok` when nothing was recorded, else a 422.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
    }

    #[test]
    fn syntax_is_400_and_shape_is_422_with_field() {
        let e = parse_json::<Body>(b"{not json").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_json::<Body>(br#"{"name":"x"}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.errors.get("count").map(String::as_str), Some("is required"));
        let e = parse_json::<Body>(br#"{"name":"x","count":"many"}"#).unwrap_err();
        assert!(e.errors.contains_key("count"), "{:?}", e.errors);
    }

    #[test]
    fn problem_has_rfc9457_members() {
        let p = ApiError::too_many("slow down", 0).problem();
        assert_eq!(p.status, 429);
        assert_eq!(p.title, "Too Many Requests");
        assert_eq!(p.kind, "/problems/too-many-requests");
    }
}
