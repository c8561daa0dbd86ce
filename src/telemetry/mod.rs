//! Logs (tracing, human or JSON) and the Prometheus metrics registry.

pub mod metrics;

pub use metrics::Metrics;

use crate::config::LogFormat;

/// Install the global tracing subscriber. `RUST_LOG`, when set, overrides `filter`.
/// Also bridges the `log` crate (pingora, russh) into tracing. Safe to call twice.
pub fn init_logging(format: LogFormat, filter: &str) {
    use tracing_subscriber::{EnvFilter, fmt, prelude::*};
    // hickory-server logs every DNS query at info; keep that out of the default log (and the
    // hot path) unless the filter names hickory explicitly.
    let filter = &if filter.contains("hickory") {
        filter.to_string()
    } else {
        format!("{filter},hickory_server=warn")
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info")));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Human => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_target(true))
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_writer(std::io::stderr))
            .try_init(),
    };
    let _ = result;
}
