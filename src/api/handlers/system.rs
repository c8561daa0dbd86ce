//! `/api/v1/system` (info, health with each service's readiness) and `/metrics`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::ApiState;
use crate::api::error::{ApiResult, Problem};

/// Health of the appliance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// `ok` or `degraded` (a service failed).
    pub status: String,
    /// Each service's state: `ready`, `disabled`, `stopped` or `{"failed": "reason"}`.
    #[schema(value_type = Object)]
    pub services: BTreeMap<String, serde_json::Value>,
    /// Daemon version.
    pub version: String,
}

/// Facts about the appliance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InfoView {
    /// Daemon version.
    pub version: String,
    /// Seconds since the API started.
    pub uptime_secs: u64,
    /// Local DNS domain.
    pub domain: String,
    /// LAN address of the appliance.
    pub lan_address: String,
    /// DHCP pool.
    pub dhcp_range: [String; 2],
    /// Apps the caller can see.
    pub apps: usize,
    /// Users (admins only; null for users).
    pub users: Option<u64>,
    /// Network plan generation.
    pub plan_generation: u64,
}

fn started() -> std::time::Instant {
    static T: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *T.get_or_init(std::time::Instant::now)
}

/// Readiness of every service (503 when one failed).
#[utoipa::path(get, path = "/api/v1/system/health", operation_id = "system.health", tag = "system", security(()),
    responses((status = 200, body = HealthView), (status = 503, body = HealthView)))]
pub async fn health(State(api): State<ApiState>) -> impl IntoResponse {
    let _ = started();
    let services = api
        .ctx
        .health
        .snapshot()
        .into_iter()
        .map(|(k, v)| (k, serde_json::to_value(v).unwrap_or_default()))
        .collect();
    let ok = api.ctx.health.all_ok();
    (
        if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
        Json(HealthView {
            status: if ok { "ok" } else { "degraded" }.into(),
            services,
            version: env!("CARGO_PKG_VERSION").into(),
        }),
    )
}

/// Version, uptime, network facts and counts.
#[utoipa::path(get, path = "/api/v1/system/info", operation_id = "system.info", tag = "system",
    responses((status = 200, body = InfoView), (status = 401, body = Problem)))]
pub async fn info(State(api): State<ApiState>, p: crate::api::auth::Principal) -> ApiResult<Json<InfoView>> {
    let net = &api.ctx.config.network;
    let apps = crate::registry::list(&api.ctx.store)?
        .iter()
        .filter(|a| p.can_see(&a.owner))
        .count();
    let users = if p.is_admin() {
        Some(crate::api::auth::users::count(&api.ctx.store)?)
    } else {
        None
    };
    Ok(Json(InfoView {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: started().elapsed().as_secs(),
        domain: net.domain.clone(),
        lan_address: net.lan_address.to_string(),
        dhcp_range: [net.dhcp_range.0.to_string(), net.dhcp_range.1.to_string()],
        apps,
        users,
        plan_generation: api.ctx.plan.current().generation,
    }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "system", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(api): State<ApiState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], api.ctx.metrics.render())
}
