//! `/api/v1/network`: what the network plane serves, read from the current network plan
//! (leases, DNS records, proxy routes, port forwards), firewall status, a self-test, and
//! the appliance CA certificate with install instructions.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::supervisor::ServiceState;

/// A DHCP lease or reservation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeaseView {
    /// MAC address.
    pub mac: String,
    /// IPv4 address.
    pub ip: String,
    /// Host name.
    pub hostname: String,
    /// `reserved` (an app) or `dynamic`.
    pub kind: String,
    /// When the current lease ends (RFC 3339); absent while a reservation has no bound lease.
    pub expires_at: Option<String>,
}

/// A DNS record served for the local zone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordView {
    /// Fully qualified name.
    pub name: String,
    /// Address.
    pub ip: String,
    /// Points at the appliance's proxy.
    pub proxied: bool,
    /// App id.
    pub app_id: String,
}

/// A reverse-proxy route.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RouteView {
    /// Host name matched.
    pub host: String,
    /// Upstream `ip:port`.
    pub upstream: String,
    /// App id.
    pub app_id: String,
    /// App host name.
    pub app_name: String,
    /// Plain HTTP redirects to HTTPS.
    pub https_redirect: bool,
}

/// A public port forward.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PortForwardView {
    /// Public port.
    pub public_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
    /// Target `ip:port`.
    pub target: String,
    /// App id.
    pub app_id: String,
}

/// Firewall status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FirewallStatus {
    /// `network.firewall` in the configuration.
    pub enabled: bool,
    /// State of the firewall service (`ready`, `disabled`, `failed: ...`, `unknown`).
    pub service: String,
    /// Port forwards in the current plan.
    pub forwards: usize,
    /// Networks app containers may not reach.
    pub management_networks: Vec<String>,
    /// Plan generation applied.
    pub generation: u64,
}

/// One self-test check.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// Name.
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// Details.
    pub detail: String,
}

/// Self-test result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SelfTest {
    /// Every check passed.
    pub ok: bool,
    /// Checks.
    pub checks: Vec<Check>,
}

/// How to trust the appliance CA.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaInfo {
    /// Download URL of the PEM certificate.
    pub pem_url: String,
    /// Download URL of the DER certificate.
    pub der_url: String,
    /// Per-platform install instructions.
    pub instructions: Vec<CaInstruction>,
}

/// Install instruction for one platform.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaInstruction {
    /// Platform.
    pub platform: String,
    /// Steps.
    pub steps: String,
}

fn state_name(s: Option<&ServiceState>) -> String {
    match s {
        Some(ServiceState::Ready) => "ready".into(),
        Some(ServiceState::Disabled) => "disabled".into(),
        Some(ServiceState::Stopped) => "stopped".into(),
        Some(ServiceState::Failed(e)) => format!("failed: {e}"),
        None => "unknown".into(),
    }
}

/// DHCP reservations of apps, then the dynamic leases currently bound (from the lease table).
#[utoipa::path(get, path = "/api/v1/network/leases", operation_id = "network.leases", tag = "network",
    responses((status = 200, body = Vec<LeaseView>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn leases(State(api): State<ApiState>) -> ApiResult<Json<Vec<LeaseView>>> {
    let plan = api.ctx.plan.current();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let bound: Vec<_> = crate::dhcp::store::load(&api.ctx.store)?
        .into_iter()
        .filter(|l| l.expires > now)
        .collect();
    Ok(Json(lease_views(&plan.reservations, &bound)))
}

/// Reservations first (with their bound lease's end when there is one), then dynamic leases
/// whose MAC has no reservation, ordered by address.
fn lease_views(reservations: &[crate::plan::Reservation], bound: &[crate::dhcp::pool::Lease]) -> Vec<LeaseView> {
    let expiry = |secs: u64| crate::api::auth::users::rfc3339(i64::try_from(secs).unwrap_or(i64::MAX));
    let mut out: Vec<LeaseView> = reservations
        .iter()
        .map(|r| LeaseView {
            mac: r.mac.clone(),
            ip: r.ip.to_string(),
            hostname: r.hostname.clone(),
            kind: "reserved".into(),
            expires_at: bound
                .iter()
                .find(|l| l.ip == r.ip && l.mac.eq_ignore_ascii_case(&r.mac))
                .map(|l| expiry(l.expires)),
        })
        .collect();
    let mut dynamic: Vec<&crate::dhcp::pool::Lease> = bound
        .iter()
        .filter(|l| !reservations.iter().any(|r| r.mac.eq_ignore_ascii_case(&l.mac)))
        .collect();
    dynamic.sort_by_key(|l| l.ip);
    out.extend(dynamic.into_iter().map(|l| LeaseView {
        mac: l.mac.clone(),
        ip: l.ip.to_string(),
        hostname: l.hostname.clone().unwrap_or_default(),
        kind: "dynamic".into(),
        expires_at: Some(expiry(l.expires)),
    }));
    out
}

/// DNS records of the local zone.
#[utoipa::path(get, path = "/api/v1/network/records", operation_id = "network.records", tag = "network",
    responses((status = 200, body = Vec<RecordView>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn records(State(api): State<ApiState>) -> Json<Vec<RecordView>> {
    let plan = api.ctx.plan.current();
    Json(
        plan.records
            .iter()
            .map(|r| RecordView {
                name: r.name.clone(),
                ip: r.ip.to_string(),
                proxied: r.proxied,
                app_id: r.app_id.clone(),
            })
            .collect(),
    )
}

/// Reverse-proxy routes.
#[utoipa::path(get, path = "/api/v1/network/routes", operation_id = "network.routes", tag = "network",
    responses((status = 200, body = Vec<RouteView>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn routes(State(api): State<ApiState>) -> Json<Vec<RouteView>> {
    let plan = api.ctx.plan.current();
    Json(
        plan.routes
            .iter()
            .map(|r| RouteView {
                host: r.host.clone(),
                upstream: r.upstream.to_string(),
                app_id: r.app_id.clone(),
                app_name: r.app_name.clone(),
                https_redirect: r.https_redirect,
            })
            .collect(),
    )
}

/// Port forwards.
#[utoipa::path(get, path = "/api/v1/network/forwards", operation_id = "network.forwards", tag = "network",
    responses((status = 200, body = Vec<PortForwardView>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn forwards(State(api): State<ApiState>) -> Json<Vec<PortForwardView>> {
    let plan = api.ctx.plan.current();
    Json(
        plan.forwards
            .iter()
            .map(|f| PortForwardView {
                public_port: f.public_port,
                proto: match f.proto {
                    crate::registry::Proto::Tcp => "tcp".into(),
                    crate::registry::Proto::Udp => "udp".into(),
                },
                target: f.target.to_string(),
                app_id: f.app_id.clone(),
            })
            .collect(),
    )
}

/// Firewall status.
#[utoipa::path(get, path = "/api/v1/network/firewall", operation_id = "network.firewall", tag = "network",
    responses((status = 200, body = FirewallStatus), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn firewall(State(api): State<ApiState>) -> Json<FirewallStatus> {
    let plan = api.ctx.plan.current();
    let health = api.ctx.health.snapshot();
    Json(FirewallStatus {
        enabled: api.ctx.config.network.firewall,
        service: if api.ctx.config.network.firewall {
            state_name(health.get("firewall"))
        } else {
            "disabled".into()
        },
        forwards: plan.forwards.len(),
        management_networks: plan.management_networks.iter().map(|n| n.to_string()).collect(),
        generation: plan.generation,
    })
}

/// Pure consistency checks of the plan against the registry.
pub fn plan_checks(plan: &crate::plan::NetworkPlan, apps: &[crate::registry::App]) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut missing = Vec::new();
    for a in apps {
        let fqdn = format!("{}.{}", a.hostname, plan.domain);
        if !plan
            .records
            .iter()
            .any(|r| r.name.trim_end_matches('.') == fqdn || r.app_id == a.id)
        {
            missing.push(format!("{}: no DNS record", a.hostname));
        }
        if !plan.reservations.iter().any(|r| r.mac.eq_ignore_ascii_case(&a.mac)) {
            missing.push(format!("{}: no DHCP reservation", a.hostname));
        }
    }
    checks.push(Check {
        name: "plan covers every app".into(),
        ok: missing.is_empty(),
        detail: if missing.is_empty() {
            format!("{} app(s) have address and name", apps.len())
        } else {
            missing.join("; ")
        },
    });
    let mut ips: Vec<_> = plan.reservations.iter().map(|r| r.ip).collect();
    ips.sort();
    let n = ips.len();
    ips.dedup();
    checks.push(Check {
        name: "no duplicate addresses".into(),
        ok: ips.len() == n,
        detail: format!("{n} reservation(s)"),
    });
    let outside: Vec<String> = plan
        .reservations
        .iter()
        .filter(|r| !plan.lan.contains(&r.ip))
        .map(|r| format!("{} {}", r.hostname, r.ip))
        .collect();
    checks.push(Check {
        name: "reservations inside the LAN".into(),
        ok: outside.is_empty(),
        detail: if outside.is_empty() {
            plan.lan.to_string()
        } else {
            outside.join("; ")
        },
    });
    checks
}

/// Check the network plane: the plan is consistent with the registry and every enabled
/// network service is ready.
#[utoipa::path(post, path = "/api/v1/network/self-test", operation_id = "network.self_test", tag = "network",
    responses((status = 200, body = SelfTest), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn self_test(State(api): State<ApiState>) -> ApiResult<Json<SelfTest>> {
    let plan = api.ctx.plan.current();
    let apps = crate::registry::list(&api.ctx.store)?;
    let mut checks = plan_checks(&plan, &apps);
    let health = api.ctx.health.snapshot();
    let cfg = &api.ctx.config;
    for (name, enabled) in [
        ("dhcp", cfg.dhcp.enabled),
        ("dns", cfg.dns.enabled),
        ("proxy", cfg.proxy.enabled),
        ("firewall", cfg.network.firewall),
    ] {
        let s = health.get(name);
        checks.push(Check {
            name: format!("{name} service"),
            ok: !enabled || matches!(s, Some(ServiceState::Ready)),
            detail: if enabled {
                state_name(s)
            } else {
                "disabled in the configuration".into()
            },
        });
    }
    let ok = checks.iter().all(|c| c.ok);
    Ok(Json(SelfTest { ok, checks }))
}

/// Where to get the CA certificate and how to install it.
#[utoipa::path(get, path = "/api/v1/network/ca", operation_id = "network.ca_info", tag = "network", security(()), responses((status = 200, body = CaInfo)))]
pub async fn ca_info() -> Json<CaInfo> {
    let i = |p: &str, s: &str| CaInstruction {
        platform: p.into(),
        steps: s.into(),
    };
    Json(CaInfo {
        pem_url: "/api/v1/network/ca.pem".into(),
        der_url: "/api/v1/network/ca.der".into(),
        instructions: vec![
            i(
                "Debian/Ubuntu",
                "curl -k -o /usr/local/share/ca-certificates/proximity.crt https://<appliance>:8443/api/v1/network/ca.pem && update-ca-certificates",
            ),
            i(
                "Fedora/RHEL",
                "save ca.pem to /etc/pki/ca-trust/source/anchors/proximity.pem, then run update-ca-trust",
            ),
            i(
                "Alpine",
                "save ca.pem to /usr/local/share/ca-certificates/proximity.crt, then run update-ca-certificates",
            ),
            i(
                "macOS",
                "open ca.der, add it to the System keychain, then set 'Always Trust' for SSL",
            ),
            i(
                "Windows",
                "open ca.der, Install Certificate, Local Machine, 'Trusted Root Certification Authorities'",
            ),
            i(
                "Firefox",
                "Settings, Privacy & Security, Certificates, View Certificates, Authorities, Import ca.pem, trust for websites",
            ),
            i(
                "Android/iOS",
                "download ca.der in the browser and install it as a CA certificate in the security settings",
            ),
        ],
    })
}

fn ca_missing() -> ApiError {
    ApiError::unavailable("the appliance CA could not be loaded; see the appliance log")
}

fn ca_pem_text(api: &ApiState) -> Option<String> {
    api.ca.as_ref().map(|c| c.ca_pem().to_string())
}

/// The appliance CA certificate (PEM).
#[utoipa::path(get, path = "/api/v1/network/ca.pem", operation_id = "network.ca_pem", tag = "network", security(()),
    responses((status = 200, description = "PEM certificate", content_type = "application/x-pem-file", body = String), (status = 503, body = Problem)))]
pub async fn ca_pem(State(api): State<ApiState>) -> ApiResult<Response> {
    let pem = ca_pem_text(&api).ok_or_else(ca_missing)?;
    let mut r = pem.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"));
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"proximity-ca.pem\""),
    );
    Ok(r)
}

/// The appliance CA certificate (DER).
#[utoipa::path(get, path = "/api/v1/network/ca.der", operation_id = "network.ca_der", tag = "network", security(()),
    responses((status = 200, description = "DER certificate", content_type = "application/x-x509-ca-cert", body = Vec<u8>), (status = 503, body = Problem)))]
pub async fn ca_der(State(api): State<ApiState>) -> ApiResult<Response> {
    let der = api.ca.as_ref().map(|c| c.ca_der().to_vec()).ok_or_else(ca_missing)?;
    let mut r = der.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-x509-ca-cert"));
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"proximity-ca.der\""),
    );
    Ok(r)
}

/// First certificate of a PEM text as DER bytes.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = pem[start..].find("-----END CERTIFICATE-----")? + start;
    let b64: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::pool::{Lease, LeaseState};
    use crate::plan::Reservation;
    use std::net::Ipv4Addr;

    fn lease(mac: &str, last: u8, host: Option<&str>) -> Lease {
        Lease {
            mac: mac.into(),
            ip: Ipv4Addr::new(10, 20, 0, last),
            hostname: host.map(Into::into),
            expires: 2_000_000_000,
            state: LeaseState::Bound,
        }
    }

    #[test]
    fn reservations_come_first_then_dynamic_leases_by_address() {
        let res = vec![Reservation {
            mac: "02:00:00:00:00:01".into(),
            ip: Ipv4Addr::new(10, 20, 0, 250),
            hostname: "web".into(),
        }];
        let bound = vec![
            lease("aa:bb:cc:00:00:02", 120, Some("laptop")),
            lease("02:00:00:00:00:01", 250, None),
            lease("aa:bb:cc:00:00:01", 101, None),
        ];
        let v = lease_views(&res, &bound);
        let got: Vec<_> = v.iter().map(|l| (l.ip.as_str(), l.kind.as_str(), l.hostname.as_str())).collect();
        assert_eq!(
            got,
            [
                ("10.20.0.250", "reserved", "web"),
                ("10.20.0.101", "dynamic", ""),
                ("10.20.0.120", "dynamic", "laptop")
            ]
        );
        assert_eq!(v[0].expires_at.as_deref(), Some("2033-05-18T03:33:20Z"));
        assert!(lease_views(&res, &[])[0].expires_at.is_none());
    }
}
