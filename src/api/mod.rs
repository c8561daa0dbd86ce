//! Management REST API and web UI (axum).

use std::net::TcpListener;

use axum::{Json, Router, extract::State, response::IntoResponse, routing::get};

use crate::supervisor::{Context, StartError, bind_tcp};

/// Bind every `api.listen` address.
pub fn bind(ctx: &Context) -> Result<Vec<TcpListener>, StartError> {
    ctx.config.api.listen.iter().map(|a| bind_tcp("api", *a)).collect()
}

/// The router.
pub fn router(ctx: Context) -> Router {
    Router::new()
        .route("/api/v1/system/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(ctx)
}

async fn health(State(ctx): State<Context>) -> impl IntoResponse {
    let services = ctx.health.snapshot();
    let ok = ctx.health.all_ok();
    let code = if ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(
            serde_json::json!({ "status": if ok { "ok" } else { "degraded" }, "services": services, "version": env!("CARGO_PKG_VERSION") }),
        ),
    )
}

async fn metrics(State(ctx): State<Context>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
}

/// Serve the API on the bound listeners until shutdown.
pub async fn run(ctx: Context, listeners: Vec<TcpListener>) -> anyhow::Result<()> {
    let app = router(ctx.clone());
    let mut tasks = Vec::new();
    for l in listeners {
        let l = tokio::net::TcpListener::from_std(l)?;
        let app = app.clone();
        let token = ctx.shutdown.clone();
        tasks.push(tokio::spawn(async move {
            axum::serve(l, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
