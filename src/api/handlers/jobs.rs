//! `/api/v1/jobs`: job records (written by the platform's job runner in table `jobs`) and
//! a live SSE stream of a job's events (`job.step`, `job.progress`, `job.log`, `job.state`
//! on the event bus, subject = job id).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use crate::api::ApiState;
use crate::api::auth::Principal;
use crate::api::error::{ApiError, ApiResult, FieldErrors, Problem};
use crate::store::Table;

/// Jobs by id, read as JSON (the record type belongs to the job runner).
pub const JOBS: Table<serde_json::Value> = Table::new("jobs");

/// Reference to a started job (body of 202 responses for actions).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobRef {
    /// Job id.
    pub job_id: String,
    /// `/api/v1/jobs/{id}`.
    pub location: String,
}

/// A job: `{id, kind, target, owner, state, steps, progress, error, created_at, ...}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(value_type = Object)]
pub struct JobView(pub serde_json::Value);

/// Replace values under secret-looking keys (`*secret*`, `*password*`, `*token*`,
/// `*key*`) with `"<redacted>"`, recursively: job data never leaks credentials.
pub fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                let k = k.to_ascii_lowercase();
                if ["secret", "password", "token", "key", "private"].iter().any(|w| k.contains(w)) && !val.is_null() {
                    *val = serde_json::Value::String("<redacted>".into());
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

fn owner_of(job: &serde_json::Value) -> &str {
    job.get("owner").and_then(|v| v.as_str()).unwrap_or("")
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "cancelled")
}

/// The job `id` when visible to the caller; 404 otherwise.
pub fn visible_job(api: &ApiState, p: &Principal, id: &str) -> ApiResult<serde_json::Value> {
    match api.ctx.store.get(JOBS, id)? {
        Some(mut j) if p.can_see(owner_of(&j)) => {
            redact(&mut j);
            Ok(j)
        }
        _ => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

/// Job list query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// Only jobs acting on this app.
    pub target: Option<String>,
    /// Most jobs returned, newest first (1–500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

/// The caller's jobs (admins: all), newest first.
#[utoipa::path(get, path = "/api/v1/jobs", operation_id = "job.list", tag = "jobs", params(JobListQuery),
    responses((status = 200, body = Vec<JobView>), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn list(State(api): State<ApiState>, p: Principal, Query(q): Query<JobListQuery>) -> ApiResult<Json<Vec<serde_json::Value>>> {
    let mut errs = FieldErrors::default();
    let limit = crate::api::num_param::<usize>(&mut errs, "limit", q.limit.as_deref()).unwrap_or(50);
    if !(1..=500).contains(&limit) {
        errs.add("limit", "must be between 1 and 500");
    }
    errs.finish()?;
    // Newest first, holding at most 2 × limit jobs at a time (the history has up to
    // `jobs.keep_finished` of them; reading all at once made each list call's memory grow
    // with it).
    let created = |j: &serde_json::Value| j.get("created_at").and_then(|v| v.as_i64()).unwrap_or(0);
    let newest_first = |jobs: &mut Vec<serde_json::Value>| {
        jobs.sort_by_key(|j| std::cmp::Reverse(created(j)));
        jobs.truncate(limit);
    };
    let mut jobs: Vec<serde_json::Value> = Vec::with_capacity(2 * limit);
    api.ctx.store.visit(JOBS, |_, j| {
        let wanted = p.can_see(owner_of(&j))
            && q.target
                .as_deref()
                .is_none_or(|t| j.get("target").and_then(|v| v.as_str()) == Some(t));
        if wanted {
            jobs.push(j);
            if jobs.len() >= 2 * limit {
                newest_first(&mut jobs);
            }
        }
    })?;
    newest_first(&mut jobs);
    jobs.iter_mut().for_each(redact);
    Ok(Json(jobs))
}

/// One job.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", operation_id = "job.get", tag = "jobs", params(("id" = String, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_one(State(api): State<ApiState>, p: Principal, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(visible_job(&api, &p, &id)?))
}

struct StreamState {
    rx: tokio::sync::broadcast::Receiver<crate::events::Event>,
    id: String,
    first: Option<serde_json::Value>,
    done: bool,
    api: ApiState,
    _slot: crate::console::Slot,
}

/// Why a job event stream was refused, as an API error (429 for the caller's own limit,
/// 503 when the appliance is full).
fn sse_refused(e: crate::console::LimitError) -> ApiError {
    use crate::console::LimitError as L;
    match e {
        L::PerUser { open, max } => ApiError::too_many(
            format!(
                "you already have {open} job event streams open, the limit per user (api.sse_max_per_user) is {max}; close one and try again"
            ),
            5,
        ),
        L::Total { max } => ApiError::unavailable(format!(
            "the appliance has {max} job event streams open, its limit (api.sse_max_total); try again later"
        ))
        .with_retry(5),
        L::Disabled => ApiError::unavailable("job event streams are turned off on this appliance"),
    }
}

/// Live events of a job as Server-Sent Events: first `snapshot` (the job record), then
/// `step`, `progress`, `log` and `state` events; the stream ends after a final state.
/// Streams are bounded per user (`api.sse_max_per_user`, 429 beyond) and in total
/// (`api.sse_max_total`, 503 beyond); a closed stream gives its place back.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/events", operation_id = "job.events", tag = "jobs", params(("id" = String, Path, description = "job id")),
    responses((status = 200, description = "text/event-stream of job events", content_type = "text/event-stream", body = String),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
pub async fn events(
    State(api): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    // Subscribe before reading the snapshot so no event falls between the two.
    let rx = api.ctx.events.subscribe();
    let job = visible_job(&api, &p, &id)?;
    let slot = api.sse.acquire(&p.user.id).map_err(sse_refused)?;
    let st = StreamState {
        rx,
        id,
        first: Some(job),
        done: false,
        api: api.clone(),
        _slot: slot,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(job) = st.first.take() {
            let state = job.get("state").and_then(|v| v.as_str()).unwrap_or("");
            st.done = is_terminal(state);
            let ev = Event::default().event("snapshot").json_data(&job).unwrap_or_default();
            return Some((Ok(ev), st));
        }
        loop {
            let shutdown = st.api.ctx.shutdown.clone();
            let msg = tokio::select! {
                m = st.rx.recv() => m,
                _ = shutdown.cancelled() => return None,
            };
            match msg {
                Ok(mut e) if e.subject == st.id && e.kind.starts_with("job.") => {
                    redact(&mut e.data);
                    let name = e.kind.trim_start_matches("job.").to_string();
                    if name == "state" {
                        let s = e.data.get("state").and_then(|v| v.as_str()).unwrap_or("");
                        st.done = is_terminal(s);
                    }
                    let ev = Event::default().event(name).json_data(&e.data).unwrap_or_default();
                    return Some((Ok(ev), st));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    // Resynchronise from storage.
                    let mut job = st.api.ctx.store.get(JOBS, &st.id).ok().flatten().unwrap_or_default();
                    redact(&mut job);
                    let state = job.get("state").and_then(|v| v.as_str()).unwrap_or("");
                    st.done = is_terminal(state);
                    let ev = Event::default()
                        .event("snapshot")
                        .json_data(serde_json::json!({"lagged": n, "job": job}))
                        .unwrap_or_default();
                    return Some((Ok(ev), st));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_secret_looking_keys_recursively() {
        let mut v = serde_json::json!({"id":"j","data":{"db_password":"p","nested":[{"api_token":"t","ok":1}],"ssh_private":"k"},"state":"running"});
        super::redact(&mut v);
        let s = v.to_string();
        assert!(!s.contains("\"p\"") && !s.contains("\"t\"") && !s.contains("\"k\""), "{s}");
        assert_eq!(v["state"], "running");
        assert_eq!(v["data"]["nested"][0]["ok"], 1);
    }
}
