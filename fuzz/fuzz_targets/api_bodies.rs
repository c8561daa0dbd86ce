//! API bodies: the first byte picks the endpoint (deploy, or the settings sections
//! resources/network/schedule), the rest is the JSON body; it goes through the same parse
//! and validation the handlers use before they touch state. Errors must be 4xx problems
//! that serialise; nothing may panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use proximity::api::error::parse_json;
use proximity::api::handlers::apps::{DeployRequest, check_deploy_fields};
use proximity::api::handlers::settings::check_body;
use proximity::catalog::{Catalog, check_values};

fn catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(|| Catalog::builtin().expect("built-in catalog loads"))
}

fn client_error(e: &proximity::api::error::ApiError) {
    let s = e.status.as_u16();
    assert!((400..500).contains(&s), "validation answered {s}: {e}");
    assert!(serde_json::to_vec(&e.problem()).is_ok());
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    match sel % 4 {
        0 => {
            let req: DeployRequest = match parse_json(body) {
                Ok(r) => r,
                Err(e) => return client_error(&e),
            };
            if let Err(e) = check_deploy_fields(&req) {
                return client_error(&e);
            }
            if let Some(entry) = catalog().get(&req.catalog_id) {
                let _ = check_values(&entry, &req.values);
            }
        }
        n => {
            let section = ["resources", "network", "schedule"][(n - 1) as usize];
            if let Err(e) = check_body(section, body) {
                client_error(&e);
            }
        }
    }
});
