//! `GET /api/v1/apps/{id}/console`: a shell in the app's container over a websocket.
//!
//! The appliance opens its own SSH connection to the app's Proxmox host, requests a pty of
//! the browser's size and runs `pct enter <vmid>`; bytes flow both ways as binary frames,
//! `{"type":"resize"}` text frames become SSH window changes (protocol in
//! [`crate::console::protocol`]). A session ends when either side closes, after
//! `api.console_idle_secs` without traffic, when the app is being deleted, or on shutdown;
//! the client then gets an `exit` frame and a close frame saying why. Sessions are limited
//! per user and in total ([`crate::console::limits`]), output is paced by a token bucket and
//! input frames are bounded. Each session is one `app.console` audit record (who, app,
//! start, end, bytes each way — never the contents), written at start and completed at end.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::ApiState;
use crate::api::audit::{self, AuditNote};
use crate::api::auth::{Principal, SourceIp, require_write_access};
use crate::api::error::{ApiError, FieldErrors, Problem};
use crate::console::protocol::{self, Control, EndReason};
use crate::console::{Slot, TokenBucket};
use crate::pve::ssh::{PtyEvent, PtySession};
use crate::registry::{self, App, AppStatus};

/// Query of the console upgrade.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsoleQuery {
    /// Terminal columns (1–1000, default 80).
    #[param(minimum = 1, maximum = 1000)]
    pub cols: Option<String>,
    /// Terminal rows (1–1000, default 24).
    #[param(minimum = 1, maximum = 1000)]
    pub rows: Option<String>,
    /// With cookie authentication: the value of the `proximity_csrf` cookie (browsers
    /// cannot set headers on websockets).
    pub csrf: Option<String>,
}

fn parse_dims(q: &ConsoleQuery) -> Result<(u32, u32), ApiError> {
    let mut errs = FieldErrors::default();
    let mut one = |field: &'static str, v: Option<&str>, default: u32| -> u32 {
        let Some(v) = v else { return default };
        match protocol::dim(field, v.trim().parse::<u64>().ok()) {
            Ok(n) => n,
            Err(e) => {
                errs.add(field, e.to_string().trim_start_matches(field).trim());
                default
            }
        }
    };
    let cols = one("cols", q.cols.as_deref(), 80);
    let rows = one("rows", q.rows.as_deref(), 24);
    errs.finish()?;
    Ok((cols, rows))
}

/// Open a console: upgrades to a websocket (protocol in the description of the
/// `app.console` operation and in `web/src/lib/console.ts`).
#[utoipa::path(get, path = "/api/v1/apps/{id}/console", operation_id = "app.console", tag = "apps",
    description = "WebSocket. Client → server: binary frames are keyboard input (at most `api.console_max_input_bytes` each), text frames are JSON control messages `{\"type\":\"resize\",\"cols\":C,\"rows\":R}`. Server → client: binary frames are terminal output (paced to `api.console_output_bytes_per_sec`), text frames `{\"type\":\"exit\",\"reason\":...}` just before the close frame or `{\"type\":\"error\",\"message\":...}` for a refused control message. The close frame's reason says why the session ended (shell exited, idle timeout, app deleted, appliance shutting down); code 1013 when a console limit refused it. Cookie sessions must send the `proximity_csrf` cookie's value as `csrf`; API tokens need the `write` scope. Each session is audited as `app.console` with start, end and bytes each way.",
    params(("id" = String, Path, description = "app id"), ConsoleQuery),
    responses((status = 101, description = "switching to the console websocket"), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn open(
    State(api): State<ApiState>,
    p: Principal,
    SourceIp(ip): SourceIp,
    Path(id): Path<String>,
    Query(q): Query<ConsoleQuery>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let path = format!("/api/v1/apps/{id}/console");
    let checked = (|| {
        let dims = parse_dims(&q)?;
        require_write_access(&api, &headers, &p, q.csrf.as_deref())?;
        let app = crate::api::handlers::apps::visible_app(&api, &p, &id)?;
        Ok::<_, ApiError>((dims, app))
    })();
    let ((cols, rows), app) = match checked {
        Ok(x) => x,
        Err(e) => {
            audit::record_call(&api, "app.console", &path, Some(&p), AuditNote::target(&id), e.status, &ip);
            return e.into_response();
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rej) => {
            audit::record_call(&api, "app.console", &path, Some(&p), AuditNote::target(&id), rej.status(), &ip);
            return rej.into_response();
        }
    };
    let cfg = &api.ctx.config.api;
    // Frames larger than the input limit are refused by us with a reason (1009); only far
    // larger ones are cut off by the websocket layer itself.
    let frame_cap = cfg.console_max_input_bytes.saturating_mul(2).max(64 * 1024);
    let slot = api.consoles.acquire(&p.user.id);
    let api2 = api.clone();
    let running = api.console_tasks.token();
    ws.max_message_size(frame_cap)
        .max_frame_size(frame_cap)
        .on_upgrade(move |socket| async move {
            let _running = running;
            let s = Session {
                api: api2,
                who: p,
                app,
                ip,
                cols,
                rows,
            };
            s.run(socket, slot).await;
        })
}

struct Session {
    api: ApiState,
    who: Principal,
    app: App,
    ip: String,
    cols: u32,
    rows: u32,
}

/// Byte counts and the clock of one session (for the audit record).
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    bytes_in: u64,
    bytes_out: u64,
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Session {
    async fn run(self, mut socket: WebSocket, slot: Result<Slot, crate::console::LimitError>) {
        let start = rfc3339_now();
        let started = Instant::now();
        let base = serde_json::json!({
            "app": self.app.id,
            "hostname": self.app.hostname,
            "host": self.app.host,
            "node": self.app.node,
            "vmid": self.app.vmid,
            "start": start,
            "cols": self.cols,
            "rows": self.rows,
        });
        let audit_id = audit::record_details(
            &self.api,
            "app.console",
            &self.app.id,
            &self.who,
            StatusCode::OK,
            &self.ip,
            with(&base, serde_json::json!({"state": "open"})),
        );
        let mut counters = Counters::default();
        let reason = match slot {
            Err(e) => EndReason::Limit(format!("Too many consoles: {e}.")),
            Ok(slot) => {
                let r = self.serve(&mut socket, &mut counters).await;
                drop(slot);
                r
            }
        };
        tracing::info!(app = %self.app.id, user = %self.who.user.username, reason = reason.code(),
            bytes_in = counters.bytes_in, bytes_out = counters.bytes_out, "console session ended");
        finish(&mut socket, &reason).await;
        let status = if reason.is_success() {
            StatusCode::OK
        } else if matches!(reason, EndReason::Limit(_)) {
            StatusCode::TOO_MANY_REQUESTS
        } else if matches!(reason, EndReason::InputTooLarge { .. }) {
            StatusCode::PAYLOAD_TOO_LARGE
        } else if matches!(reason, EndReason::Protocol(_)) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::BAD_GATEWAY
        };
        audit::update_details(
            &self.api,
            &audit_id,
            status,
            reason.is_success(),
            with(
                &base,
                serde_json::json!({
                    "state": "closed",
                    "end": rfc3339_now(),
                    "duration_secs": started.elapsed().as_secs(),
                    "bytes_in": counters.bytes_in,
                    "bytes_out": counters.bytes_out,
                    "reason": reason.code(),
                    "message": reason.message(),
                }),
            ),
        );
    }

    /// Open the terminal and relay until the session ends; returns why.
    async fn serve(&self, socket: &mut WebSocket, n: &mut Counters) -> EndReason {
        // Subscribe before looking at the app so a delete racing the start is not missed.
        let mut events = self.api.ctx.events.subscribe();
        let app = match registry::get(&self.api.ctx.store, &self.app.id) {
            Ok(Some(a)) => a,
            Ok(None) => return EndReason::AppDeleted,
            Err(e) => return EndReason::Failed(e.to_string()),
        };
        if app.status == AppStatus::Deleting {
            return EndReason::AppDeleted;
        }
        if app.status != AppStatus::Running {
            return EndReason::Failed(format!("the app is {}; start it to open a console", app.status.as_str()));
        }
        let (Some(host), Some(vmid)) = (app.host.clone(), app.vmid) else {
            return EndReason::Failed("the app has no container yet".into());
        };
        let shutdown = self.api.ctx.shutdown.clone();
        let opened = tokio::select! {
            r = open_terminal(&self.api, &host, vmid, self.cols, self.rows) => r,
            _ = shutdown.cancelled() => return EndReason::Shutdown,
        };
        let mut pty = match opened {
            Ok(p) => p,
            Err(e) => return EndReason::Failed(e),
        };
        let mut reason = relay(&self.api, &app.id, socket, &mut pty, n, &mut events).await;
        pty.close().await;
        if matches!(reason, EndReason::ShellExited(_) | EndReason::Failed(_)) {
            // The shell may end because its container is being removed: say so.
            match registry::get(&self.api.ctx.store, &app.id) {
                Ok(None) => reason = EndReason::AppDeleted,
                Ok(Some(a)) if a.status == AppStatus::Deleting => reason = EndReason::AppDeleted,
                _ => {}
            }
        }
        reason
    }
}

fn with(base: &serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    let mut v = base.clone();
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

async fn open_terminal(api: &ApiState, host: &str, vmid: u32, cols: u32, rows: u32) -> Result<PtySession, String> {
    let ssh = api
        .hosts
        .ssh(host)
        .await
        .map_err(|e| format!("cannot reach the Proxmox host over SSH: {e}"))?;
    let argv = ["pct".to_string(), "enter".into(), vmid.to_string()];
    ssh.open_pty(&argv, cols, rows)
        .await
        .map_err(|e| format!("cannot open a terminal: {e}"))
}

/// Is this event the end of app `id` (deleted, or its delete started)?
fn ends_app(ev: &crate::events::Event, id: &str) -> bool {
    ev.subject == id
        && (ev.kind == "app.deleted" || (ev.kind == "app.status" && ev.data.get("status").and_then(|s| s.as_str()) == Some("deleting")))
}

async fn relay(
    api: &ApiState,
    app_id: &str,
    socket: &mut WebSocket,
    pty: &mut PtySession,
    n: &mut Counters,
    events: &mut tokio::sync::broadcast::Receiver<crate::events::Event>,
) -> EndReason {
    use tokio::sync::broadcast::error::RecvError;
    let cfg = &api.ctx.config.api;
    let idle = Duration::from_secs(cfg.console_idle_secs.max(1));
    let max_input = cfg.console_max_input_bytes;
    let shutdown = api.ctx.shutdown.clone();
    let mut bucket = TokenBucket::new(cfg.console_output_bytes_per_sec, Instant::now());
    let mut last_activity = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return EndReason::Shutdown,
            _ = tokio::time::sleep_until(last_activity + idle) => return EndReason::Idle { secs: idle.as_secs() },
            ev = events.recv() => match ev {
                Ok(ev) if ends_app(&ev, app_id) => return EndReason::AppDeleted,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => match registry::get(&api.ctx.store, app_id) {
                    Ok(Some(a)) if a.status != AppStatus::Deleting => {}
                    Ok(_) => return EndReason::AppDeleted,
                    Err(e) => return EndReason::Failed(e.to_string()),
                },
                Err(RecvError::Closed) => return EndReason::Shutdown,
            },
            msg = socket.recv() => {
                let msg = match msg {
                    None | Some(Ok(Message::Close(_))) => return EndReason::ClientClosed,
                    Some(Err(e)) => return EndReason::Protocol(e.to_string()),
                    Some(Ok(m)) => m,
                };
                match msg {
                    Message::Binary(data) => {
                        if data.len() > max_input {
                            return EndReason::InputTooLarge { max: max_input };
                        }
                        last_activity = tokio::time::Instant::now();
                        if let Err(e) = pty.write(&data).await {
                            return EndReason::Failed(e.to_string());
                        }
                        n.bytes_in += data.len() as u64;
                    }
                    Message::Text(text) => {
                        last_activity = tokio::time::Instant::now();
                        match protocol::parse_control(text.as_str()) {
                            Ok(Control::Resize { cols, rows }) => {
                                if let Err(e) = pty.resize(cols, rows).await {
                                    return EndReason::Failed(e.to_string());
                                }
                            }
                            Err(e) => {
                                if socket.send(Message::Text(protocol::error_frame(&e.to_string()).into())).await.is_err() {
                                    return EndReason::ClientClosed;
                                }
                            }
                        }
                    }
                    // Pings are answered by the websocket layer.
                    _ => {}
                }
            }
            ev = pty.next() => match ev {
                PtyEvent::Closed(status) => return EndReason::ShellExited(status),
                PtyEvent::Output(data) => {
                    last_activity = tokio::time::Instant::now();
                    let wait = bucket.take(data.len(), Instant::now());
                    if !wait.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.cancelled() => return EndReason::Shutdown,
                        }
                    }
                    n.bytes_out += data.len() as u64;
                    if socket.send(Message::Binary(data)).await.is_err() {
                        return EndReason::ClientClosed;
                    }
                }
            },
        }
    }
}

/// Tell the client why (an `exit` frame, then the close frame) and wait briefly for its
/// close reply so the browser sees a clean close with our reason.
async fn finish(socket: &mut WebSocket, reason: &EndReason) {
    if *reason == EndReason::ClientClosed {
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    let _ = socket.send(Message::Text(reason.exit_frame().into())).await;
    let frame = CloseFrame {
        code: reason.close_code(),
        reason: reason.close_reason().into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_default_and_are_checked() {
        let q = |c: Option<&str>, r: Option<&str>| ConsoleQuery {
            cols: c.map(String::from),
            rows: r.map(String::from),
            csrf: None,
        };
        assert_eq!(parse_dims(&q(None, None)).unwrap(), (80, 24));
        assert_eq!(parse_dims(&q(Some("132"), Some(" 43 "))).unwrap(), (132, 43));
        let e = parse_dims(&q(Some("0"), Some("x"))).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let body = serde_json::to_string(&e.problem()).unwrap();
        assert!(body.contains("cols") && body.contains("rows"), "{body}");
    }

    #[test]
    fn delete_events_end_the_session() {
        let ev = |kind: &str, subject: &str, data| crate::events::Event {
            kind: kind.into(),
            subject: subject.into(),
            data,
        };
        assert!(ends_app(&ev("app.deleted", "a", serde_json::json!({})), "a"));
        assert!(ends_app(&ev("app.status", "a", serde_json::json!({"status":"deleting"})), "a"));
        assert!(!ends_app(&ev("app.status", "a", serde_json::json!({"status":"running"})), "a"));
        assert!(!ends_app(&ev("app.deleted", "b", serde_json::json!({})), "a"));
    }
}
