//! Firewall/NAT: the pure ruleset builder ([`rules`]) and its atomic application
//! ([`apply`]). The service re-applies the whole table whenever the plan changes.

pub mod apply;
pub mod rules;

use std::sync::Mutex;

use serde::Serialize;

use crate::supervisor::Context;
pub use rules::{FirewallSettings, RulesetSummary};

/// Last apply result, shown by the API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FirewallStatus {
    /// What is installed (or was attempted).
    pub summary: RulesetSummary,
    /// Plan generation applied.
    pub generation: u64,
    /// Unix seconds of the attempt.
    pub applied_at: u64,
    /// Error of the last attempt, if it failed.
    pub error: Option<String>,
}

static LAST: Mutex<Option<FirewallStatus>> = Mutex::new(None);

/// The last apply result in this process.
pub fn last_status() -> Option<FirewallStatus> {
    LAST.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Settings from the configuration plus the WAN address found at start.
pub fn settings(ctx: &Context, wan: Option<ipnet::Ipv4Net>) -> FirewallSettings {
    let c = &ctx.config;
    let ports = |v: &[std::net::SocketAddr]| v.iter().map(|a| a.port()).collect::<Vec<_>>();
    let mut proxy_ports = ports(&c.proxy.http_listen);
    proxy_ports.extend(ports(&c.proxy.https_listen));
    if !c.proxy.enabled {
        proxy_ports.clear();
    }
    FirewallSettings {
        table: "proximity".into(),
        lan_if: c.network.lan_interface.clone(),
        wan_if: c.network.wan_interface.clone(),
        wan,
        management: c.network.management_networks.clone(),
        dns_ports: if c.dns.enabled { ports(&c.dns.listen) } else { vec![] },
        dhcp_port: c.dhcp.enabled.then_some(c.dhcp.listen.port()),
        proxy_ports,
        api_ports: ports(&c.api.listen),
        forward_range: c.network.port_forward_range,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Apply the current plan once (start-up check: fails when `nft` cannot apply it).
pub async fn apply_current(ctx: &Context, s: &FirewallSettings) -> Result<(), apply::ApplyError> {
    let plan = ctx.plan.current();
    let (batch, summary) = rules::build(&plan, s);
    let r = apply::apply(batch).await;
    *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(FirewallStatus {
        summary,
        generation: plan.generation,
        applied_at: now(),
        error: r.as_ref().err().map(|e| e.to_string()),
    });
    r
}

/// Keep the ruleset in step with the plan until shutdown; remove the table on exit when
/// `remove_on_exit`.
pub async fn run(ctx: Context, s: FirewallSettings, remove_on_exit: bool) -> anyhow::Result<()> {
    let failures = ctx
        .metrics
        .counter("proximity_firewall_apply_failures_total", "failed ruleset applies", &[]);
    let applies = ctx.metrics.counter("proximity_firewall_applies_total", "ruleset applies", &[]);
    let mut rx = ctx.plan.subscribe();
    rx.borrow_and_update();
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            r = rx.changed() => if r.is_err() { break },
        }
        rx.borrow_and_update();
        match apply_current(&ctx, &s).await {
            Ok(()) => applies.inc(),
            Err(e) => {
                failures.inc();
                tracing::error!(error = %e, "firewall apply failed; previous ruleset stays");
            }
        }
    }
    if remove_on_exit {
        match apply::remove(&s.table).await {
            Ok(()) => tracing::info!(table = %s.table, "firewall table removed"),
            Err(e) => tracing::warn!(error = %e, "cannot remove firewall table"),
        }
    }
    Ok(())
}
