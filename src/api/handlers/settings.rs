//! `/api/v1/settings/{resources,network,schedule}` (admin): runtime settings stored in
//! redb table `settings` (defaults from the configuration file). Every read carries a
//! digest; an update must send the digest it read, or it is refused with 409 (someone else
//! changed the settings in between).

use axum::Json;
use axum::extract::State;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiJson, ApiResult, FieldErrors, Problem};
use crate::config::Config;
use crate::store::{Store, StoreError};

pub use crate::settings::{NetworkSettings, ResourceSettings, SETTINGS, ScheduleSettings};

/// One section of settings and its digest.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SettingsDoc<T> {
    /// SHA-256 of the current values; send it back with an update.
    pub digest: String,
    /// Values.
    pub settings: T,
}

trait Section: Serialize + DeserializeOwned + Clone {
    const NAME: &'static str;
    fn defaults(c: &Config) -> Self;
    fn validate(&self) -> Result<(), ApiError>;
}

impl Section for ResourceSettings {
    const NAME: &'static str = "resources";
    fn defaults(c: &Config) -> Self {
        ResourceSettings::from_config(c)
    }
    fn validate(&self) -> Result<(), ApiError> {
        let mut e = FieldErrors::default();
        let r = crate::api::handlers::apps::ResourcesView {
            cores: self.cores,
            memory_mb: self.memory_mb,
            disk_gb: self.disk_gb,
        };
        crate::api::handlers::apps::check_resources(&mut e, "settings", &r);
        if self.max_apps_per_user > 10_000 {
            e.add("settings.max_apps_per_user", "must be at most 10000");
        }
        e.finish()
    }
}

impl Section for NetworkSettings {
    const NAME: &'static str = "network";
    fn defaults(c: &Config) -> Self {
        NetworkSettings::from_network(&c.network)
    }
    fn validate(&self) -> Result<(), ApiError> {
        let mut e = FieldErrors::default();
        for (i, a) in self.upstream_dns.iter().enumerate() {
            if a.parse::<std::net::SocketAddr>().is_err() {
                e.add(&format!("settings.upstream_dns[{i}]"), "must be ip:port, e.g. 1.1.1.1:53");
            }
        }
        if self.upstream_dns.len() > 8 {
            e.add("settings.upstream_dns", "at most 8 servers");
        }
        for (i, n) in self.management_networks.iter().enumerate() {
            if n.parse::<ipnet::Ipv4Net>().is_err() {
                e.add(
                    &format!("settings.management_networks[{i}]"),
                    "must be an IPv4 CIDR, e.g. 192.168.1.0/24",
                );
            }
        }
        if self.management_networks.len() > 64 {
            e.add("settings.management_networks", "at most 64 networks");
        }
        e.finish()
    }
}

impl Section for ScheduleSettings {
    const NAME: &'static str = "schedule";
    fn defaults(c: &Config) -> Self {
        ScheduleSettings::from_config(&c.schedule)
    }
    fn validate(&self) -> Result<(), ApiError> {
        let mut e = FieldErrors::default();
        e.check("settings.backup", crate::validate::cron_shape(&self.backup));
        e.check("settings.update_check", crate::validate::cron_shape(&self.update_check));
        e.check("settings.reconcile", crate::validate::cron_shape(&self.reconcile));
        e.check("settings.janitor", crate::validate::cron_shape(&self.janitor));
        if !(1..=365).contains(&self.keep_backups) {
            e.add("settings.keep_backups", "must be between 1 and 365");
        }
        e.finish()
    }
}

/// Parse and validate a settings update body for `section` (`resources`, `network` or
/// `schedule`) exactly as `PUT /api/v1/settings/{section}` does before it touches the
/// store: syntax → 400, shape and rule violations → 422, an unknown section → 404.
pub fn check_body(section: &str, body: &[u8]) -> ApiResult<()> {
    fn one<T: Section>(body: &[u8]) -> ApiResult<()> {
        let doc: SettingsDoc<T> = crate::api::error::parse_json(body)?;
        doc.settings.validate()
    }
    match section {
        ResourceSettings::NAME => one::<ResourceSettings>(body),
        NetworkSettings::NAME => one::<NetworkSettings>(body),
        ScheduleSettings::NAME => one::<ScheduleSettings>(body),
        other => Err(ApiError::not_found(format!("no settings section {other:?}"))),
    }
}

/// SHA-256 hex of a value's JSON.
pub fn digest<T: Serialize>(v: &T) -> String {
    crate::api::auth::tokens::sha256_hex(&serde_json::to_string(v).unwrap_or_default())
}

fn read<T: Section>(store: &Store, c: &Config) -> Result<T, StoreError> {
    Ok(store
        .get(SETTINGS, T::NAME)?
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_else(|| T::defaults(c)))
}

pub use crate::settings::{network, resources, schedule};

fn get_doc<T: Section>(api: &ApiState) -> ApiResult<Json<SettingsDoc<T>>> {
    let v: T = read(&api.ctx.store, &api.ctx.config)?;
    Ok(Json(SettingsDoc {
        digest: digest(&v),
        settings: v,
    }))
}

fn put_doc<T: Section>(api: &ApiState, doc: SettingsDoc<T>) -> ApiResult<Json<SettingsDoc<T>>> {
    doc.settings.validate()?;
    let value = serde_json::to_value(&doc.settings).map_err(ApiError::internal)?;
    let c = api.ctx.config.clone();
    let outcome = api.ctx.store.write(|tx| {
        let current: T = tx
            .get(SETTINGS, T::NAME)?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_else(|| T::defaults(&c));
        if digest(&current) != doc.digest {
            return Ok(Err(ApiError::conflict(
                "the settings changed since you read them (digest mismatch); reload and apply your change again",
            )));
        }
        tx.put(SETTINGS, T::NAME, &value)?;
        Ok::<_, StoreError>(Ok(()))
    })?;
    outcome?;
    // Upstream resolvers and management networks are part of the network plan.
    api.ctx.plan.refresh(&api.ctx.store)?;
    tracing::info!(section = T::NAME, "settings updated");
    Ok(Json(SettingsDoc {
        digest: digest(&doc.settings),
        settings: doc.settings,
    }))
}

/// Default resources of new apps.
#[utoipa::path(get, path = "/api/v1/settings/resources", operation_id = "settings.get_resources", tag = "settings",
    responses((status = 200, body = SettingsDoc<ResourceSettings>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn get_resources(State(api): State<ApiState>) -> ApiResult<Json<SettingsDoc<ResourceSettings>>> {
    get_doc(&api)
}

/// Update default resources (digest-checked).
#[utoipa::path(put, path = "/api/v1/settings/resources", operation_id = "settings.update_resources", tag = "settings", request_body = SettingsDoc<ResourceSettings>,
    responses((status = 200, body = SettingsDoc<ResourceSettings>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn put_resources(
    State(api): State<ApiState>,
    ApiJson(d): ApiJson<SettingsDoc<ResourceSettings>>,
) -> ApiResult<Json<SettingsDoc<ResourceSettings>>> {
    put_doc(&api, d)
}

/// Network settings.
#[utoipa::path(get, path = "/api/v1/settings/network", operation_id = "settings.get_network", tag = "settings",
    responses((status = 200, body = SettingsDoc<NetworkSettings>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn get_network(State(api): State<ApiState>) -> ApiResult<Json<SettingsDoc<NetworkSettings>>> {
    get_doc(&api)
}

/// Update network settings (digest-checked).
#[utoipa::path(put, path = "/api/v1/settings/network", operation_id = "settings.update_network", tag = "settings", request_body = SettingsDoc<NetworkSettings>,
    responses((status = 200, body = SettingsDoc<NetworkSettings>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn put_network(
    State(api): State<ApiState>,
    ApiJson(d): ApiJson<SettingsDoc<NetworkSettings>>,
) -> ApiResult<Json<SettingsDoc<NetworkSettings>>> {
    put_doc(&api, d)
}

/// Schedules.
#[utoipa::path(get, path = "/api/v1/settings/schedule", operation_id = "settings.get_schedule", tag = "settings",
    responses((status = 200, body = SettingsDoc<ScheduleSettings>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn get_schedule(State(api): State<ApiState>) -> ApiResult<Json<SettingsDoc<ScheduleSettings>>> {
    get_doc(&api)
}

/// Update schedules (digest-checked).
#[utoipa::path(put, path = "/api/v1/settings/schedule", operation_id = "settings.update_schedule", tag = "settings", request_body = SettingsDoc<ScheduleSettings>,
    responses((status = 200, body = SettingsDoc<ScheduleSettings>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn put_schedule(
    State(api): State<ApiState>,
    ApiJson(d): ApiJson<SettingsDoc<ScheduleSettings>>,
) -> ApiResult<Json<SettingsDoc<ScheduleSettings>>> {
    put_doc(&api, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_body_maps_syntax_shape_and_rules_to_statuses() {
        let ok = br#"{"digest":"x","settings":{"cores":1,"memory_mb":512,"disk_gb":4,"max_apps_per_user":10}}"#;
        assert!(check_body("resources", ok).is_ok());
        assert_eq!(check_body("resources", b"{").unwrap_err().status.as_u16(), 400);
        let shape = br#"{"digest":"x","settings":{"cores":"many"}}"#;
        assert_eq!(check_body("resources", shape).unwrap_err().status.as_u16(), 422);
        let rule = br#"{"digest":"x","settings":{"cores":0,"memory_mb":512,"disk_gb":4,"max_apps_per_user":10}}"#;
        let e = check_body("resources", rule).unwrap_err();
        assert_eq!(e.status.as_u16(), 422);
        assert!(e.errors.contains_key("settings.cores"), "{:?}", e.errors);
        let net = br#"{"digest":"x","settings":{"upstream_dns":["nope"],"management_networks":[],"https_redirect":true}}"#;
        assert!(
            check_body("network", net)
                .unwrap_err()
                .errors
                .contains_key("settings.upstream_dns[0]")
        );
        assert_eq!(check_body("other", ok).unwrap_err().status.as_u16(), 404);
    }
}
