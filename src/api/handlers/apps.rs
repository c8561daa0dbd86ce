//! `/api/v1/apps`: list, deploy, get, action, delete, clone, update, logs, metrics, safe
//! commands, discover, adopt. Users see only their own apps; others' apps are 404 exactly
//! like missing ones.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::ApiState;
use crate::api::auth::Principal;
use crate::api::auth::users::rfc3339;
use crate::api::error::{ApiError, ApiJson, ApiResult, FieldErrors, Problem};
use crate::registry::{self, App};

/// Container resources.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct ResourcesView {
    /// CPU cores (1–64).
    pub cores: u32,
    /// Memory in MiB (128–262144).
    pub memory_mb: u32,
    /// Root disk in GiB (1–4096).
    pub disk_gb: u32,
}

/// A published port.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ForwardView {
    /// Public port on the appliance.
    pub public: u16,
    /// Port inside the container.
    pub container: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

/// An app as returned by the API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppView {
    /// Id.
    pub id: String,
    /// Host name (`https://<hostname>.<domain>`).
    pub hostname: String,
    /// URL of the app's web UI.
    pub url: String,
    /// Catalog entry.
    pub catalog_id: String,
    /// Catalog version deployed.
    pub catalog_version: String,
    /// Owner user id.
    pub owner: String,
    /// `pending`, `deploying`, `running`, `stopped`, `changing`, `updating`,
    /// `backing_up`, `restoring`, `cloning`, `deleting`, `error`, `missing`.
    pub status: String,
    /// Proxmox host.
    pub host: Option<String>,
    /// Proxmox node.
    pub node: Option<String>,
    /// Container id.
    pub vmid: Option<u32>,
    /// LAN address.
    pub ip: String,
    /// MAC of the container.
    pub mac: String,
    /// Proxied web port.
    pub web_port: Option<u16>,
    /// Published ports.
    pub forwards: Vec<ForwardView>,
    /// Extra DNS names.
    pub aliases: Vec<String>,
    /// Resources.
    pub resources: ResourcesView,
    /// Non-secret settings.
    pub settings: BTreeMap<String, String>,
    /// Last error.
    pub error: Option<String>,
    /// Job acting on the app now.
    pub job_id: Option<String>,
    /// Adopted rather than deployed.
    pub adopted: bool,
    /// Whether the running app lets the web UI show it in a frame (its `X-Frame-Options` /
    /// CSP `frame-ancestors`, probed through its proxy route and cached ~5 min); `null` when
    /// unknown (not running, no web port, not probed yet or no answer).
    pub frameable: Option<bool>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Updated (RFC 3339).
    pub updated_at: String,
}

/// Convert a registry record.
pub fn view(a: &App, domain: &str) -> AppView {
    AppView {
        id: a.id.clone(),
        hostname: a.hostname.clone(),
        url: format!("https://{}.{}", a.hostname, domain),
        catalog_id: a.catalog_id.clone(),
        catalog_version: a.catalog_version.clone(),
        owner: a.owner.clone(),
        status: a.status.as_str().to_string(),
        host: a.host.clone(),
        node: a.node.clone(),
        vmid: a.vmid,
        ip: a.ip.to_string(),
        mac: a.mac.clone(),
        web_port: a.web_port,
        forwards: a
            .forwards
            .iter()
            .map(|f| ForwardView {
                public: f.public,
                container: f.container,
                proto: match f.proto {
                    registry::Proto::Tcp => "tcp".into(),
                    registry::Proto::Udp => "udp".into(),
                },
            })
            .collect(),
        aliases: a.aliases.clone(),
        resources: ResourcesView {
            cores: a.resources.cores,
            memory_mb: a.resources.memory_mb,
            disk_gb: a.resources.disk_gb,
        },
        settings: a.settings.clone(),
        error: a.error.clone(),
        job_id: a.job_id.clone(),
        adopted: a.adopted,
        frameable: None,
        created_at: rfc3339(a.created_at),
        updated_at: rfc3339(a.updated_at),
    }
}

/// The origin the caller reached the UI at (`Host`, or the HTTP/2 authority).
pub fn ui_origin(api: &ApiState, headers: &axum::http::HeaderMap, uri: &axum::http::Uri) -> Option<crate::framing::Origin> {
    let scheme = if api.ctx.config.api.tls { "https" } else { "http" };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))?;
    crate::framing::Origin::from_host_header(scheme, &host)
}

/// `frameable` of app `a` for a UI at `parent`: from the cache only (`probe = false`, for
/// lists), or probing the app when the cache is stale (bounded by
/// [`crate::framing::PROBE_TIMEOUT`]).
pub async fn frameable(api: &ApiState, a: &App, parent: Option<&crate::framing::Origin>, probe: bool) -> Option<bool> {
    use crate::framing::{Origin, Target, evaluate};
    if a.status != registry::AppStatus::Running {
        return None;
    }
    let parent = parent?;
    let port = a.web_port?;
    let host = format!("{}.{}", a.hostname, api.ctx.config.network.domain);
    let target = Target {
        upstream: std::net::SocketAddr::from((a.upstream(), port)),
        host: host.clone(),
    };
    let headers = if probe {
        api.framing.headers(&a.id, &target).await
    } else {
        api.framing.cached(&a.id, &target).flatten()
    }?;
    let app_origin = Origin {
        scheme: "https".into(),
        host,
        port: 443,
    };
    Some(evaluate(&headers, parent, &app_origin))
}

/// The app `id` if the caller may see it; 404 otherwise (no existence leak).
pub fn visible_app(api: &ApiState, p: &Principal, id: &str) -> ApiResult<App> {
    match registry::get(&api.ctx.store, id)? {
        Some(a) if p.can_see(&a.owner) => Ok(a),
        _ => Err(ApiError::not_found(format!("no app {id}"))),
    }
}

/// The platform's view of the caller.
pub fn owner(p: &Principal) -> crate::platform::User {
    crate::platform::User {
        id: p.user.id.clone(),
        username: p.user.username.clone(),
    }
}

/// 202 Accepted with `Location` of the job and a body.
pub fn accepted<T: Serialize>(job_id: &str, body: &T, target: &str) -> Response {
    use axum::response::IntoResponse;
    let loc = format!("/api/v1/jobs/{job_id}");
    let mut r = (axum::http::StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&loc) {
        r.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    r.extensions_mut().insert(crate::api::audit::AuditNote::target(target));
    r
}

/// 202 for a job acting on an existing app.
pub fn accepted_job(job: &crate::jobs::Job, target: &str) -> Response {
    let body = crate::api::handlers::jobs::JobRef {
        job_id: job.id.clone(),
        location: format!("/api/v1/jobs/{}", job.id),
    };
    accepted(&job.id, &body, target)
}

/// Query of the app list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppListQuery {
    /// Page (1-based, default 1).
    #[param(minimum = 1)]
    pub page: Option<String>,
    /// Apps per page (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub per_page: Option<String>,
    /// Substring of host name or catalog id.
    pub search: Option<String>,
    /// Only apps with this status.
    pub status: Option<String>,
}

/// A page of apps.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppPage {
    /// Apps.
    pub items: Vec<AppView>,
    /// Matching apps in total.
    pub total: usize,
    /// Page.
    pub page: u32,
    /// Page size.
    pub per_page: u32,
}

const STATUSES: &[&str] = &[
    "pending",
    "deploying",
    "running",
    "stopped",
    "changing",
    "updating",
    "backing_up",
    "restoring",
    "cloning",
    "deleting",
    "error",
    "missing",
];

/// The caller's apps (admins: all), filtered and paged, sorted by host name.
#[utoipa::path(get, path = "/api/v1/apps", operation_id = "app.list", tag = "apps", params(AppListQuery),
    responses((status = 200, body = AppPage), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn list(
    State(api): State<ApiState>,
    p: Principal,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<AppListQuery>,
) -> ApiResult<Json<AppPage>> {
    let mut errs = FieldErrors::default();
    let page = crate::api::num_param::<u32>(&mut errs, "page", q.page.as_deref());
    let per_page = crate::api::num_param::<u32>(&mut errs, "per_page", q.per_page.as_deref());
    if let Some(s) = &q.status
        && !STATUSES.contains(&s.as_str())
    {
        errs.add("status", format!("must be one of {}", STATUSES.join(", ")));
    }
    errs.finish()?;
    let (page, per_page) = crate::api::audit::paging(page, per_page, 200, 50)?;
    let search = q.search.as_deref().map(str::to_ascii_lowercase);
    let mut apps: Vec<App> = registry::list(&api.ctx.store)?
        .into_iter()
        .filter(|a| p.can_see(&a.owner))
        .filter(|a| q.status.as_deref().is_none_or(|s| a.status.as_str() == s))
        .filter(|a| {
            search
                .as_deref()
                .is_none_or(|s| a.hostname.to_ascii_lowercase().contains(s) || a.catalog_id.to_ascii_lowercase().contains(s))
        })
        .collect();
    apps.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    let total = apps.len();
    let domain = &api.ctx.config.network.domain;
    let origin = ui_origin(&api, &headers, &uri);
    let mut items = Vec::new();
    for a in apps
        .iter()
        .skip(((page as usize) - 1).saturating_mul(per_page as usize))
        .take(per_page as usize)
    {
        let mut v = view(a, domain);
        // Never network I/O on a list: only what GET /apps/{id} already probed.
        v.frameable = frameable(&api, a, origin.as_ref(), false).await;
        items.push(v);
    }
    Ok(Json(AppPage {
        items,
        total,
        page,
        per_page,
    }))
}

/// The answer to a deploy: the new app, and the secrets generated for it (shown once).
#[derive(Serialize, ToSchema)]
pub struct DeployAccepted {
    /// The app as registered (status `pending`; follow the job in `Location`).
    #[serde(flatten)]
    pub app: AppView,
    /// Secrets the catalog entry generated (field → value). Returned only here, once; stored
    /// encrypted on the appliance. Empty when the entry generates none.
    pub generated_secrets: BTreeMap<String, String>,
}

/// Deploy request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DeployRequest {
    /// Catalog entry id.
    pub catalog_id: String,
    /// Host name (RFC 1123 label, unique).
    pub hostname: String,
    /// Proxmox node (default: placement picks one).
    pub node: Option<String>,
    /// Resources (default: the catalog's minimum or the settings' defaults).
    pub resources: Option<ResourcesView>,
    /// Values of the catalog entry's form fields.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// Extra DNS names (labels).
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Validate resources; field errors under `prefix`.
pub fn check_resources(errs: &mut FieldErrors, prefix: &str, r: &ResourcesView) {
    if !(1..=64).contains(&r.cores) {
        errs.add(&format!("{prefix}.cores"), "must be between 1 and 64");
    }
    if !(128..=262_144).contains(&r.memory_mb) {
        errs.add(&format!("{prefix}.memory_mb"), "must be between 128 and 262144");
    }
    if !(1..=4096).contains(&r.disk_gb) {
        errs.add(&format!("{prefix}.disk_gb"), "must be between 1 and 4096");
    }
}

fn hostname_taken(api: &ApiState, hostname: &str) -> ApiResult<bool> {
    Ok(registry::list(&api.ctx.store)?
        .iter()
        .any(|a| a.hostname.eq_ignore_ascii_case(hostname) || a.aliases.iter().any(|x| x.eq_ignore_ascii_case(hostname))))
}

/// Validate a deploy request (pure apart from the uniqueness check).
pub fn validate_deploy(api: &ApiState, req: &DeployRequest) -> ApiResult<()> {
    check_deploy_fields(req)?;
    if hostname_taken(api, &req.hostname)? {
        return Err(ApiError::conflict(format!(
            "the host name {:?} is already used by another app",
            req.hostname
        )));
    }
    Ok(())
}

/// The pure part of [`validate_deploy`]: every field's shape (422 naming the fields).
pub fn check_deploy_fields(req: &DeployRequest) -> ApiResult<()> {
    let mut errs = FieldErrors::default();
    if req.catalog_id.trim().is_empty() {
        errs.add("catalog_id", "is required");
    }
    errs.check("hostname", crate::validate::hostname(&req.hostname));
    if let Some(n) = &req.node {
        errs.check("node", crate::validate::hostname(n));
    }
    if let Some(r) = &req.resources {
        check_resources(&mut errs, "resources", r);
    }
    for (i, a) in req.aliases.iter().enumerate() {
        errs.check(&format!("aliases[{i}]"), crate::validate::hostname(a));
    }
    for (k, v) in &req.values {
        if k.is_empty() || k.len() > 64 {
            errs.add(&format!("values.{k}"), "names must be 1 to 64 characters");
        } else if v.len() > 4096 {
            errs.add(&format!("values.{k}"), "must be at most 4096 characters");
        }
    }
    errs.finish()
}

/// Deploy an app from the catalog: 202 with the app and `Location` of its job.
#[utoipa::path(post, path = "/api/v1/apps", operation_id = "app.deploy", tag = "apps", request_body = DeployRequest,
    responses((status = 202, body = DeployAccepted, headers(("location" = String, description = "/api/v1/jobs/{job id}"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn deploy(State(api): State<ApiState>, p: Principal, ApiJson(req): ApiJson<DeployRequest>) -> ApiResult<Response> {
    validate_deploy(&api, &req)?;
    let platform = api.platform()?;
    if !p.is_admin() {
        let limit = crate::api::handlers::settings::resources(&api.ctx.store, &api.ctx.config)?.max_apps_per_user;
        let owned = registry::list(&api.ctx.store)?.iter().filter(|a| a.owner == p.user.id).count();
        if limit > 0 && owned >= limit as usize {
            return Err(ApiError::conflict(format!(
                "you already own {owned} app(s), the limit per user is {limit}"
            )));
        }
    }
    let r = crate::platform::DeployRequest {
        catalog_id: req.catalog_id,
        hostname: req.hostname,
        node: req.node,
        resources: req.resources.map(|r| registry::Resources {
            cores: r.cores,
            memory_mb: r.memory_mb,
            disk_gb: r.disk_gb,
        }),
        values: req.values,
        aliases: req.aliases,
    };
    let (app, job, generated_secrets) = platform.deploy_with_secrets(&owner(&p), r).await?;
    let body = DeployAccepted {
        app: view(&app, &api.ctx.config.network.domain),
        generated_secrets,
    };
    Ok(accepted(&job.id, &body, &app.id))
}

/// One app.
#[utoipa::path(get, path = "/api/v1/apps/{id}", operation_id = "app.get", tag = "apps", params(("id" = String, Path, description = "app id")),
    responses((status = 200, body = AppView), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_one(
    State(api): State<ApiState>,
    p: Principal,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    Path(id): Path<String>,
) -> ApiResult<Json<AppView>> {
    let a = visible_app(&api, &p, &id)?;
    let mut v = view(&a, &api.ctx.config.network.domain);
    v.frameable = frameable(&api, &a, ui_origin(&api, &headers, &uri).as_ref(), true).await;
    Ok(Json(v))
}

/// Start, stop or restart.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ActionRequest {
    /// `start`, `stop` or `restart`.
    pub action: String,
}

/// Start/stop/restart an app: 202 + `Location` of the job.
#[utoipa::path(post, path = "/api/v1/apps/{id}/action", operation_id = "app.action", tag = "apps", params(("id" = String, Path, description = "app id")), request_body = ActionRequest,
    responses((status = 202, body = crate::api::handlers::jobs::JobRef, headers(("location" = String, description = "the job"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn action(
    State(api): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ActionRequest>,
) -> ApiResult<Response> {
    let _app = visible_app(&api, &p, &id)?;
    let action = match req.action.as_str() {
        "start" => crate::platform::Action::Start,
        "stop" => crate::platform::Action::Stop,
        "restart" => crate::platform::Action::Restart,
        _ => return Err(ApiError::field("action", "must be `start`, `stop` or `restart`")),
    };
    let job = api.platform()?.action(&owner(&p), &id, action).await?;
    Ok(accepted_job(&job, &id))
}

/// Delete an app (container, address, name, route, rules): 202 + `Location` of the job.
#[utoipa::path(delete, path = "/api/v1/apps/{id}", operation_id = "app.delete", tag = "apps", params(("id" = String, Path, description = "app id")),
    responses((status = 202, body = crate::api::handlers::jobs::JobRef, headers(("location" = String, description = "the job"))),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn remove(State(api): State<ApiState>, p: Principal, Path(id): Path<String>) -> ApiResult<Response> {
    let _app = visible_app(&api, &p, &id)?;
    let job = api.platform()?.delete(&owner(&p), &id, false).await?;
    Ok(accepted_job(&job, &id))
}

/// Clone request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CloneRequest {
    /// Host name of the copy.
    pub hostname: String,
}

/// Clone an app under a new host name: 202 with the new app + `Location` of the job.
#[utoipa::path(post, path = "/api/v1/apps/{id}/clone", operation_id = "app.clone", tag = "apps", params(("id" = String, Path, description = "app id")), request_body = CloneRequest,
    responses((status = 202, body = AppView, headers(("location" = String, description = "the job"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn clone_app(
    State(api): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CloneRequest>,
) -> ApiResult<Response> {
    let _app = visible_app(&api, &p, &id)?;
    let mut errs = FieldErrors::default();
    errs.check("hostname", crate::validate::hostname(&req.hostname));
    errs.finish()?;
    if hostname_taken(&api, &req.hostname)? {
        return Err(ApiError::conflict(format!("the host name {:?} is already used", req.hostname)));
    }
    let (app, job) = api.platform()?.clone_app(&owner(&p), &id, &req.hostname).await?;
    Ok(accepted(&job.id, &view(&app, &api.ctx.config.network.domain), &app.id))
}

/// Update an app to the catalog's current version: 202 + `Location` of the job.
#[utoipa::path(post, path = "/api/v1/apps/{id}/update", operation_id = "app.update", tag = "apps", params(("id" = String, Path, description = "app id")),
    responses((status = 202, body = crate::api::handlers::jobs::JobRef, headers(("location" = String, description = "the job"))),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn update(State(api): State<ApiState>, p: Principal, Path(id): Path<String>) -> ApiResult<Response> {
    let _app = visible_app(&api, &p, &id)?;
    let job = api.platform()?.update(&owner(&p), &id).await?;
    Ok(accepted_job(&job, &id))
}

/// Log query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Last N lines (1–5000, default 200).
    #[param(minimum = 1, maximum = 5000)]
    pub tail: Option<String>,
}

/// App logs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogsView {
    /// `docker compose logs` output.
    pub logs: String,
}

/// The app's compose logs.
#[utoipa::path(get, path = "/api/v1/apps/{id}/logs", operation_id = "app.logs", tag = "apps", params(("id" = String, Path, description = "app id"), LogsQuery),
    responses((status = 200, body = LogsView), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn logs(
    State(api): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<LogsView>> {
    let _app = visible_app(&api, &p, &id)?;
    let mut errs = FieldErrors::default();
    let tail = crate::api::num_param::<u32>(&mut errs, "tail", q.tail.as_deref()).unwrap_or(200);
    if !(1..=5000).contains(&tail) {
        errs.add("tail", "must be between 1 and 5000");
    }
    errs.finish()?;
    let logs = api.platform()?.logs(&id, tail).await?;
    Ok(Json(LogsView { logs }))
}

/// Metrics query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// `hour` (default), `day`, `week`, `month`, `year`.
    pub timeframe: Option<String>,
}

/// Container metrics from Proxmox status/rrddata.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MetricsView {
    /// Time frame.
    pub timeframe: String,
    /// Current status and samples as Proxmox reports them.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// CPU, memory, disk and network of the app's container.
#[utoipa::path(get, path = "/api/v1/apps/{id}/metrics", operation_id = "app.metrics", tag = "apps", params(("id" = String, Path, description = "app id"), MetricsQuery),
    responses((status = 200, body = MetricsView), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn metrics(
    State(api): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> ApiResult<Json<MetricsView>> {
    let _app = visible_app(&api, &p, &id)?;
    let tf = q.timeframe.unwrap_or_else(|| "hour".into());
    if !matches!(tf.as_str(), "hour" | "day" | "week" | "month" | "year") {
        return Err(ApiError::field("timeframe", "must be hour, day, week, month or year"));
    }
    let data = api.platform()?.metrics(&id, &tf).await?;
    Ok(Json(MetricsView { timeframe: tf, data }))
}

/// A safe command to run.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ExecRequest {
    /// Name of a safe command: `logs`, `ps`, `disk_usage`, `restart_compose`, `images`, `uptime`.
    pub command: String,
}

/// Output of a safe command.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecResult {
    /// Command name.
    pub command: String,
    /// Exit status.
    pub status: i32,
    /// Output.
    pub output: String,
}

/// Run one of the predefined safe commands in the app's container.
#[utoipa::path(post, path = "/api/v1/apps/{id}/exec", operation_id = "app.exec", tag = "apps", params(("id" = String, Path, description = "app id")), request_body = ExecRequest,
    responses((status = 200, body = ExecResult), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn exec(
    State(api): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ExecRequest>,
) -> ApiResult<Json<ExecResult>> {
    let _app = visible_app(&api, &p, &id)?;
    if req.command.is_empty() || !req.command.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(ApiError::field("command", "must be the name of a safe command"));
    }
    if !crate::platform::SAFE_COMMANDS.iter().any(|(n, _)| *n == req.command) {
        let names: Vec<&str> = crate::platform::SAFE_COMMANDS.iter().map(|(n, _)| *n).collect();
        return Err(ApiError::field("command", format!("must be one of {}", names.join(", "))));
    }
    let out = api.platform()?.exec_safe(&id, &req.command).await?;
    let mut output = out.stdout;
    if !out.stderr.is_empty() {
        output.push_str(&out.stderr);
    }
    Ok(Json(ExecResult {
        command: out.command,
        status: out.status,
        output,
    }))
}

/// A container on Proxmox not managed by Proximity.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Unmanaged {
    /// Proxmox host.
    pub host: String,
    /// Node.
    pub node: String,
    /// Container id.
    pub vmid: u32,
    /// Container name.
    pub name: String,
    /// Status.
    pub status: String,
    /// Tagged by Proximity (an orphan of ours).
    pub ours: bool,
}

/// Containers on the Proxmox hosts that are not apps (candidates for adoption).
#[utoipa::path(get, path = "/api/v1/apps/discover", operation_id = "app.discover", tag = "apps",
    responses((status = 200, body = Vec<Unmanaged>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn discover(State(api): State<ApiState>) -> ApiResult<Json<Vec<Unmanaged>>> {
    let found = api.platform()?.discover().await?;
    Ok(Json(
        found
            .into_iter()
            .map(|u| Unmanaged {
                host: u.host,
                node: u.node,
                vmid: u.vmid,
                name: u.name,
                status: u.status,
                ours: u.ours,
            })
            .collect(),
    ))
}

/// Adopt an existing container as an app.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AdoptRequest {
    /// Container id (100–999999999).
    pub vmid: u32,
    /// Node it is on (searched on every host when absent).
    pub node: Option<String>,
    /// Host name for the app (default: the container's host name).
    pub hostname: Option<String>,
    /// Catalog entry it corresponds to (default `custom`).
    pub catalog_id: Option<String>,
    /// Web port inside the container to proxy.
    pub web_port: Option<u16>,
    /// Extra container ports to publish.
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// Adopt a container: 202 with the app + `Location` of the job.
#[utoipa::path(post, path = "/api/v1/apps/adopt", operation_id = "app.adopt", tag = "apps", request_body = AdoptRequest,
    responses((status = 202, body = AppView, headers(("location" = String, description = "the job"))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn adopt(State(api): State<ApiState>, p: Principal, ApiJson(req): ApiJson<AdoptRequest>) -> ApiResult<Response> {
    let mut errs = FieldErrors::default();
    if let Some(h) = &req.hostname {
        errs.check("hostname", crate::validate::hostname(h));
    }
    if let Some(n) = &req.node {
        errs.check("node", crate::validate::hostname(n));
    }
    if !(100..=999_999_999).contains(&req.vmid) {
        errs.add("vmid", "must be between 100 and 999999999");
    }
    if req.web_port == Some(0) {
        errs.add("web_port", "must be between 1 and 65535");
    }
    for (i, port) in req.ports.iter().enumerate() {
        if *port == 0 {
            errs.add(&format!("ports[{i}]"), "must be between 1 and 65535");
        }
    }
    errs.finish()?;
    if let Some(h) = &req.hostname
        && hostname_taken(&api, h)?
    {
        return Err(ApiError::conflict(format!("the host name {h:?} is already used")));
    }
    let r = crate::platform::AdoptRequest {
        vmid: req.vmid,
        node: req.node,
        hostname: req.hostname,
        catalog_id: req.catalog_id,
        web_port: req.web_port,
        ports: req.ports,
    };
    let (app, job) = api.platform()?.adopt(&owner(&p), r).await?;
    Ok(accepted(&job.id, &view(&app, &api.ctx.config.network.domain), &app.id))
}
