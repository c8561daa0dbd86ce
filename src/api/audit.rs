//! Audit log: one record per state-changing API call (who, what, target, result, source
//! IP, time) in redb table `audit`, keyed by time so listing is chronological. Request
//! bodies are never recorded, so secrets cannot leak into it.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::auth::Principal;
use super::error::{ApiError, ApiResult, FieldErrors};
use crate::store::{Store, StoreError, Table};

/// Audit records by `<unix nanos, 20 digits>-<random>`.
pub const AUDIT: Table<AuditEntry> = Table::new("audit");

/// One audited call.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Id (sortable by time).
    pub id: String,
    /// Time (RFC 3339).
    pub time: String,
    /// Unix seconds (for filtering).
    pub ts: i64,
    /// User name of the caller (`-` when unauthenticated).
    pub actor: String,
    /// User id of the caller.
    pub actor_id: Option<String>,
    /// Action, e.g. `app.deploy`.
    pub action: String,
    /// Target (request path, or the object named by the handler).
    pub target: String,
    /// `success` or `failure`.
    pub result: String,
    /// HTTP status of the response.
    pub status: u16,
    /// Source IP.
    pub source_ip: String,
    /// Facts of a long-lived action, e.g. a console session's start, end and byte counts
    /// (never its contents). Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// Extra audit facts a handler attaches to its response (e.g. the user name on login).
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    /// Actor name when the request was unauthenticated (login, setup).
    pub actor: Option<String>,
    /// More precise target (e.g. the created object's id).
    pub target: Option<String>,
}

impl AuditNote {
    /// A note naming the actor.
    pub fn actor(name: &str) -> Self {
        AuditNote {
            actor: Some(name.to_string()),
            target: None,
        }
    }
    /// A note naming the target.
    pub fn target(t: &str) -> Self {
        AuditNote {
            actor: None,
            target: Some(t.to_string()),
        }
    }
}

/// Record one call (errors are logged, never fail the request).
pub fn record_call(api: &ApiState, action: &str, path: &str, who: Option<&Principal>, note: AuditNote, status: StatusCode, ip: &str) {
    let target = note.target.unwrap_or_else(|| path.to_string());
    let actor = who
        .map(|p| p.user.username.clone())
        .or(note.actor.map(|a| a.chars().take(64).collect()));
    record(api, action, &target, actor, who.map(|p| p.user.id.clone()), status, ip, None);
}

/// Record an action with details (e.g. the start of a console session); returns the
/// record's id for [`update_details`].
pub fn record_details(
    api: &ApiState,
    action: &str,
    target: &str,
    who: &Principal,
    status: StatusCode,
    ip: &str,
    details: serde_json::Value,
) -> String {
    record(
        api,
        action,
        target,
        Some(who.user.username.clone()),
        Some(who.user.id.clone()),
        status,
        ip,
        Some(details),
    )
}

/// Rewrite the result and details of record `id` (e.g. when a console session ends).
pub fn update_details(api: &ApiState, id: &str, status: StatusCode, success: bool, details: serde_json::Value) {
    let r = api.ctx.store.write_eventual(|tx| {
        if let Some(mut e) = tx.get(AUDIT, id)? {
            e.status = status.as_u16();
            e.result = if success { "success" } else { "failure" }.into();
            e.details = Some(details.clone());
            tracing::info!(
                target: "audit",
                actor = %e.actor, action = %e.action, target = %e.target,
                result = %e.result, details = %details, "audit update"
            );
            tx.put(AUDIT, id, &e)?;
        }
        Ok::<(), crate::store::StoreError>(())
    });
    if let Err(e) = r {
        tracing::error!(error = %e, "cannot update the audit record");
    }
}

/// The key of a record written at `at`: its unix nanos, zero-padded so keys sort by time,
/// then a random suffix.
pub fn entry_id(at: time::OffsetDateTime) -> String {
    format!("{}-{}", time_key(at), hex::encode(rand::random::<[u8; 3]>()))
}

/// The time part of [`entry_id`]: every record written before `at` sorts below it.
fn time_key(at: time::OffsetDateTime) -> String {
    format!("{:020}", at.unix_timestamp_nanos().max(0))
}

#[allow(clippy::too_many_arguments)]
fn record(
    api: &ApiState,
    action: &str,
    target: &str,
    actor: Option<String>,
    actor_id: Option<String>,
    status: StatusCode,
    ip: &str,
    details: Option<serde_json::Value>,
) -> String {
    let now = time::OffsetDateTime::now_utc();
    let id = entry_id(now);
    let entry = AuditEntry {
        id: id.clone(),
        time: now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        ts: now.unix_timestamp(),
        actor: actor.unwrap_or_else(|| "-".into()),
        actor_id,
        action: action.to_string(),
        target: target.chars().take(256).collect(),
        result: if status.is_success() { "success" } else { "failure" }.into(),
        status: status.as_u16(),
        source_ip: ip.to_string(),
        details,
    };
    tracing::info!(
        target: "audit",
        actor = %entry.actor, action = %entry.action, target = %entry.target,
        result = %entry.result, status = entry.status, ip = %entry.source_ip, "audit"
    );
    if let Err(e) = api.ctx.store.write_eventual(|tx| tx.put(AUDIT, &id, &entry)) {
        tracing::error!(error = %e, "cannot write the audit record");
    }
    id
}

/// Audit records deleted per write transaction by [`prune`] (bounds its memory and lock time).
const PRUNE_BATCH: usize = 10_000;

/// Retention: delete audit records older than `keep_days` and the oldest beyond
/// `keep_records`, as of `now`. Returns how many were deleted.
pub fn prune(store: &Store, keep_days: u32, keep_records: usize, now: time::OffsetDateTime) -> Result<usize, StoreError> {
    let below = time_key(now - time::Duration::days(i64::from(keep_days)));
    let mut deleted = 0;
    loop {
        let over = store.count(AUDIT)?.saturating_sub(keep_records as u64);
        let n = store.write_eventual(|tx| tx.delete_leading(AUDIT, over, &below, PRUNE_BATCH))?;
        deleted += n;
        if n < PRUNE_BATCH {
            break;
        }
    }
    if deleted > 0 {
        store.sync()?;
    }
    Ok(deleted)
}

/// Apply the audit retention of `[api]` now and every 10 minutes until shutdown.
pub async fn run_retention(ctx: crate::supervisor::Context) -> anyhow::Result<()> {
    let (days, records) = (ctx.config.api.audit_keep_days, ctx.config.api.audit_keep_records);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let store = ctx.store.clone();
        match tokio::task::spawn_blocking(move || prune(&store, days, records, time::OffsetDateTime::now_utc())).await? {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, keep_days = days, keep_records = records, "old audit records deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot apply the audit retention"),
        }
    }
}

/// Filters of `GET /api/v1/audit`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Exact user name.
    pub actor: Option<String>,
    /// Action, exact or prefix ending in `.` (e.g. `app.`).
    pub action: Option<String>,
    /// Substring of the target.
    pub target: Option<String>,
    /// `success` or `failure`.
    pub result: Option<String>,
    /// Only records at or after this unix time.
    pub since: Option<i64>,
    /// Only records before this unix time.
    pub until: Option<i64>,
    /// Page (1-based).
    pub page: Option<u32>,
    /// Records per page (1–500, default 50).
    pub per_page: Option<u32>,
}

/// A page of audit records, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Records.
    pub items: Vec<AuditEntry>,
    /// Matching records in total.
    pub total: usize,
    /// Page.
    pub page: u32,
    /// Page size.
    pub per_page: u32,
}

/// Pure filter of one record.
pub fn matches(e: &AuditEntry, q: &AuditQuery) -> bool {
    q.actor.as_ref().is_none_or(|a| &e.actor == a)
        && q.action.as_ref().is_none_or(|a| {
            if a.ends_with('.') {
                e.action.starts_with(a.as_str())
            } else {
                &e.action == a
            }
        })
        && q.target.as_ref().is_none_or(|t| e.target.contains(t.as_str()))
        && q.result.as_ref().is_none_or(|r| &e.result == r)
        && q.since.is_none_or(|s| e.ts >= s)
        && q.until.is_none_or(|u| e.ts < u)
}

/// Validate page/per_page; returns (page, per_page).
pub fn paging(page: Option<u32>, per_page: Option<u32>, max: u32, default: u32) -> Result<(u32, u32), ApiError> {
    let mut errs = FieldErrors::default();
    let page = page.unwrap_or(1);
    let per_page = per_page.unwrap_or(default);
    if page == 0 {
        errs.add("page", "must be 1 or more");
    }
    if per_page == 0 || per_page > max {
        errs.add("per_page", format!("must be between 1 and {max}"));
    }
    errs.finish()?;
    Ok((page, per_page))
}

/// Query the audit log.
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "audit.list", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 401, body = super::error::Problem), (status = 403, body = super::error::Problem), (status = 422, body = super::error::Problem)))]
pub async fn list(State(api): State<ApiState>, _p: Principal, q: Query<AuditQueryRaw>) -> ApiResult<Json<AuditPage>> {
    let q = q.0.parse()?;
    let mut errs = FieldErrors::default();
    if let Some(r) = &q.result
        && r != "success"
        && r != "failure"
    {
        errs.add("result", "must be `success` or `failure`");
    }
    errs.finish()?;
    let (page, per_page) = paging(q.page, q.per_page, 500, 50)?;
    // One pass, newest first, holding one page: the log grows with every change, and
    // reading it all made each call's memory grow with it.
    let skip = ((page as usize) - 1).saturating_mul(per_page as usize);
    let (mut total, mut items) = (0usize, Vec::with_capacity(per_page as usize));
    api.ctx.store.visit_rev(AUDIT, |_, e| {
        if matches(&e, &q) {
            if total >= skip && items.len() < per_page as usize {
                items.push(e);
            }
            total += 1;
        }
    })?;
    Ok(Json(AuditPage {
        items,
        total,
        page,
        per_page,
    }))
}

/// Query string as sent (all strings), validated into [`AuditQuery`] with field errors.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditQueryRaw {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    result: Option<String>,
    since: Option<String>,
    until: Option<String>,
    page: Option<String>,
    per_page: Option<String>,
}

impl AuditQueryRaw {
    fn parse(self) -> Result<AuditQuery, ApiError> {
        let mut errs = FieldErrors::default();
        let since = super::num_param(&mut errs, "since", self.since.as_deref());
        let until = super::num_param(&mut errs, "until", self.until.as_deref());
        let page = super::num_param(&mut errs, "page", self.page.as_deref());
        let per_page = super::num_param(&mut errs, "per_page", self.per_page.as_deref());
        errs.finish()?;
        Ok(AuditQuery {
            actor: self.actor,
            action: self.action,
            target: self.target,
            result: self.result,
            since,
            until,
            page,
            per_page,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(actor: &str, action: &str, ts: i64, ok: bool) -> AuditEntry {
        AuditEntry {
            id: ts.to_string(),
            time: String::new(),
            ts,
            actor: actor.into(),
            actor_id: None,
            action: action.into(),
            target: format!("/api/v1/x/{ts}"),
            result: if ok { "success" } else { "failure" }.into(),
            status: 200,
            source_ip: "127.0.0.1".into(),
            details: None,
        }
    }

    #[test]
    fn filters() {
        let q = AuditQuery {
            action: Some("app.".into()),
            ..Default::default()
        };
        assert!(matches(&e("a", "app.deploy", 1, true), &q));
        assert!(!matches(&e("a", "user.create", 1, true), &q));
        let q = AuditQuery {
            actor: Some("bob".into()),
            result: Some("failure".into()),
            since: Some(10),
            until: Some(20),
            ..Default::default()
        };
        assert!(matches(&e("bob", "x", 15, false), &q));
        assert!(!matches(&e("bob", "x", 20, false), &q));
        assert!(!matches(&e("bob", "x", 15, true), &q));
        assert!(!matches(&e("al", "x", 15, false), &q));
        assert!(paging(Some(0), None, 10, 5).is_err());
        assert_eq!(paging(None, None, 10, 5).unwrap(), (1, 5));
    }

    #[test]
    fn records_without_details_still_decode() {
        let old = r#"{"id":"1","time":"","ts":1,"actor":"a","actor_id":null,"action":"app.deploy","target":"x","result":"success","status":202,"source_ip":"::1"}"#;
        let e: AuditEntry = serde_json::from_str(old).unwrap();
        assert!(e.details.is_none());
        assert!(!serde_json::to_string(&e).unwrap().contains("details"));
    }

    #[test]
    fn retention_deletes_by_age_and_by_count_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let day = 86_400i64;
        // One record a day for 10 days, the newest today.
        let put = |ts: i64| {
            let id = entry_id(time::OffsetDateTime::from_unix_timestamp(ts).unwrap());
            store
                .put(
                    AUDIT,
                    &id,
                    &AuditEntry {
                        id: id.clone(),
                        ..e("u", "app.deploy", ts, true)
                    },
                )
                .unwrap();
        };
        for d in 0..10 {
            put(now.unix_timestamp() - d * day - 60);
        }
        let kept = || -> Vec<i64> { store.list(AUDIT).unwrap().into_iter().map(|(_, e)| e.ts).collect() };
        // Nothing is old or over the count: nothing goes.
        assert_eq!(prune(&store, 30, 100, now).unwrap(), 0);
        assert_eq!(kept().len(), 10);
        // Age: older than 5 days goes (days 5..9), in one call.
        assert_eq!(prune(&store, 5, 100, now).unwrap(), 5);
        let oldest_kept = now.unix_timestamp() - 4 * day - 60;
        assert_eq!(kept().first().copied(), Some(oldest_kept));
        // Count: only the newest 2 stay, the oldest are the ones deleted.
        assert_eq!(prune(&store, 365, 2, now).unwrap(), 3);
        assert_eq!(kept(), vec![now.unix_timestamp() - day - 60, now.unix_timestamp() - 60]);
        // Idempotent.
        assert_eq!(prune(&store, 365, 2, now).unwrap(), 0);
    }
}
