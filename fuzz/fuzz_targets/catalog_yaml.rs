//! Catalog: a YAML file → parse + every validation rule → (when valid) a render with default
//! values, whose compose file must be YAML again and whose `.env` must carry the built-ins.
//! Must never panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use proximity::catalog::model::SecretSpec;
use proximity::catalog::render::parse_env_file;
use proximity::catalog::validate::parse_file;
use proximity::catalog::{SecretGen, render};

/// Deterministic secrets of the requested length.
struct Fixed;
impl SecretGen for Fixed {
    fn generate(&mut self, spec: &SecretSpec) -> String {
        "s".repeat(spec.length)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The file stem must equal the id, so take the id the file claims (valid files pass).
    let stem = text
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| "fuzz".into());
    let Ok(entry) = parse_file("fuzz.yaml", &stem, text) else { return };
    let Ok(out) = render(&entry, "app-1", &BTreeMap::new(), &mut Fixed) else {
        return;
    };
    assert!(
        serde_yaml::from_str::<serde_yaml::Value>(&out.compose_yaml).is_ok(),
        "rendered compose is not YAML"
    );
    let env = parse_env_file(&out.env_file);
    assert_eq!(env.get("PROX_HOSTNAME").map(String::as_str), Some("app-1"));
});
