//! The PVE API schema subset (`data/schema-subset.json`, copied from `shared/pve-api`) drives
//! routing and parameter verification, so the simulator accepts exactly what PVE 9.1 accepts
//! for the endpoints it serves. Pure: no I/O besides the embedded JSON.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The embedded schema file.
pub const SCHEMA_JSON: &str = include_str!("data/schema-subset.json");

/// Endpoints the installer needs beyond the shared subset (API tokens of a user), taken
/// verbatim from PVE 9.1's `apidata.json`; kept apart so the subset stays the shared file.
pub const INSTALLER_SCHEMA_JSON: &str = include_str!("data/schema-installer.json");

/// One path segment of an endpoint pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    /// A literal segment.
    Lit(String),
    /// `{name}`: one segment.
    Var(String),
    /// `{volume}` under `/content/`: joins the rest of the path (PVE `fragmentDelimiter => ''`).
    Rest(String),
}

/// One endpoint of the schema.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// HTTP method (upper case).
    pub method: String,
    /// Path pattern, e.g. `/nodes/{node}/lxc`.
    pub path: String,
    /// Parsed pattern.
    pub segs: Vec<Seg>,
    /// PVE handler name (`create_vm`, ...).
    pub name: String,
    /// `proxyto` (`node` when the call is forwarded to the named node).
    pub proxyto: Option<String>,
    /// Whether API tokens may call it.
    pub allowtoken: bool,
    /// Parameter properties.
    pub props: Map<String, Value>,
    /// `returns` schema.
    pub returns: Value,
}

/// All endpoints the simulator knows.
pub struct Schema {
    /// Endpoints (`endpoints` + `extra_endpoints`).
    pub endpoints: Vec<Endpoint>,
}

/// Result of looking up a request path.
pub enum Lookup<'a> {
    /// Matched: the endpoint and the path parameters.
    Found(&'a Endpoint, Vec<(String, String)>),
    /// No endpoint for this method and path.
    NotImplemented,
}

/// The parsed, embedded schema.
pub fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        let mut s = Schema::parse(SCHEMA_JSON).expect("embedded schema parses");
        s.endpoints.extend(
            Schema::parse(INSTALLER_SCHEMA_JSON)
                .expect("embedded installer schema parses")
                .endpoints,
        );
        s
    })
}

impl Schema {
    /// Parse the schema JSON.
    pub fn parse(text: &str) -> Result<Schema, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut endpoints = Vec::new();
        for key in ["endpoints", "extra_endpoints"] {
            for e in v.get(key).and_then(Value::as_array).cloned().unwrap_or_default() {
                let path = e["path"].as_str().ok_or("endpoint without path")?.to_string();
                let segs = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some("volume") => Seg::Rest("volume".into()),
                        Some(v) => Seg::Var(v.to_string()),
                        None => Seg::Lit(s.to_string()),
                    })
                    .collect();
                endpoints.push(Endpoint {
                    method: e["method"].as_str().unwrap_or("GET").to_string(),
                    segs,
                    path,
                    name: e["name"].as_str().unwrap_or_default().to_string(),
                    proxyto: e["proxyto"].as_str().map(str::to_string),
                    allowtoken: e["allowtoken"].as_i64().unwrap_or(1) != 0,
                    props: e["parameters"]["properties"].as_object().cloned().unwrap_or_default(),
                    returns: e["returns"].clone(),
                });
            }
        }
        Ok(Schema { endpoints })
    }

    /// Find the endpoint for `method` and the (already percent-decoded) path segments.
    pub fn lookup(&self, method: &str, segs: &[&str]) -> Lookup<'_> {
        'ep: for ep in self.endpoints.iter().filter(|e| e.method == method) {
            let mut params = Vec::new();
            let mut i = 0;
            for seg in &ep.segs {
                match seg {
                    Seg::Lit(l) => {
                        if segs.get(i) != Some(&l.as_str()) {
                            continue 'ep;
                        }
                        i += 1;
                    }
                    Seg::Var(name) => {
                        match segs.get(i) {
                            Some(s) if !s.is_empty() => params.push((name.clone(), s.to_string())),
                            _ => continue 'ep,
                        }
                        i += 1;
                    }
                    Seg::Rest(name) => {
                        if i >= segs.len() {
                            continue 'ep;
                        }
                        params.push((name.clone(), segs[i..].join("/")));
                        i = segs.len();
                    }
                }
            }
            if i == segs.len() {
                return Lookup::Found(ep, params);
            }
        }
        Lookup::NotImplemented
    }

    /// The endpoint with this method and path pattern.
    pub fn endpoint(&self, method: &str, path: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.method == method && e.path == path)
    }
}

/// A raw parameter as received: from a form/query string, or a JSON body value.
#[derive(Debug, Clone)]
pub enum Raw {
    /// Form or query string value.
    Text(String),
    /// JSON body value.
    Json(Value),
}

/// Verified parameters: strings, integers (as i64 numbers), booleans (as 0/1 numbers).
#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, Value>);

impl Params {
    /// A string parameter (numbers are formatted).
    pub fn str(&self, k: &str) -> Option<String> {
        match self.0.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            v => Some(v.to_string()),
        }
    }
    /// An integer parameter.
    pub fn int(&self, k: &str) -> Option<i64> {
        match self.0.get(k)? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
    /// A boolean parameter (0/1).
    pub fn flag(&self, k: &str) -> bool {
        self.int(k).unwrap_or(0) != 0
    }
    /// Whether the parameter is present.
    pub fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
}

/// Field errors of a failed verification (`400 Parameter verification failed.`).
pub type FieldErrors = BTreeMap<String, String>;

/// The schema property that governs parameter `name` (indexed names like `net0` → `net[n]`).
pub fn prop_for<'a>(props: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(p) = props.get(name) {
        return Some(p);
    }
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if base.len() == name.len() || base.is_empty() {
        return None;
    }
    let idx: u32 = name[base.len()..].parse().ok()?;
    if idx > 255 || (name[base.len()..].starts_with('0') && name.len() - base.len() > 1) {
        return None;
    }
    props.get(&format!("{base}[n]"))
}

/// Verify raw parameters against an endpoint's properties. Path parameters must already be
/// included. Returns typed parameters or the field errors PVE would report.
pub fn verify(props: &Map<String, Value>, raw: Vec<(String, Raw)>) -> Result<Params, FieldErrors> {
    let mut out = BTreeMap::new();
    let mut errors = FieldErrors::new();
    for (name, value) in raw {
        let Some(prop) = prop_for(props, &name) else {
            errors.insert(
                name,
                "property is not defined in schema and the schema does not allow additional properties".into(),
            );
            continue;
        };
        match check_value(prop, &value) {
            Ok(v) => {
                out.insert(name, v);
            }
            Err(e) => {
                errors.insert(name, e);
            }
        }
    }
    for (name, prop) in props {
        if name.ends_with("[n]") {
            continue;
        }
        let optional = prop.get("optional").and_then(Value::as_i64).unwrap_or(0) != 0;
        if !optional && !out.contains_key(name) && !errors.contains_key(name) {
            errors.insert(name.clone(), "property is missing and it is not optional".into());
        }
    }
    if errors.is_empty() { Ok(Params(out)) } else { Err(errors) }
}

fn type_fail(ty: &str, got: &str) -> String {
    format!("type check ('{ty}') failed - got '{got}'")
}

/// Check one value against a property schema; returns the normalized value.
pub fn check_value(prop: &Value, raw: &Raw) -> Result<Value, String> {
    let ty = prop.get("type").and_then(Value::as_str).unwrap_or("string");
    let text = match raw {
        Raw::Text(s) => s.clone(),
        Raw::Json(Value::String(s)) => s.clone(),
        Raw::Json(Value::Bool(b)) if ty == "boolean" => return Ok(Value::from(*b as i64)),
        Raw::Json(Value::Number(n)) => n.to_string(),
        Raw::Json(Value::Bool(b)) => if *b { "1" } else { "0" }.to_string(),
        Raw::Json(Value::Array(a)) if ty == "array" => return Ok(Value::Array(a.clone())),
        Raw::Json(other) => return Err(type_fail(ty, &other.to_string())),
    };
    let v = match ty {
        "boolean" => match text.as_str() {
            "1" => Value::from(1),
            "0" => Value::from(0),
            _ => return Err(type_fail("boolean", &text)),
        },
        "integer" => {
            let n: i64 = text.trim().parse().map_err(|_| type_fail("integer", &text))?;
            check_range(prop, n as f64)?;
            Value::from(n)
        }
        "number" => {
            let n: f64 = text.trim().parse().map_err(|_| type_fail("number", &text))?;
            check_range(prop, n)?;
            serde_json::Number::from_f64(n).map(Value::Number).unwrap_or(Value::Null)
        }
        _ => {
            check_string(prop, &text)?;
            Value::String(text)
        }
    };
    Ok(v)
}

fn check_range(prop: &Value, n: f64) -> Result<(), String> {
    if let Some(min) = prop.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        return Err(format!("value must have a minimum value of {min}"));
    }
    if let Some(max) = prop.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        return Err(format!("value must have a maximum value of {max}"));
    }
    Ok(())
}

fn check_string(prop: &Value, s: &str) -> Result<(), String> {
    if let Some(en) = prop.get("enum").and_then(Value::as_array) {
        let vals: Vec<&str> = en.iter().filter_map(Value::as_str).collect();
        if !vals.contains(&s) {
            return Err(format!(
                "value '{s}' does not have a value in the enumeration '{}'",
                vals.join(", ")
            ));
        }
    }
    if let Some(max) = prop.get("maxLength").and_then(Value::as_u64)
        && s.chars().count() as u64 > max
    {
        return Err(format!("value may only be {max} characters long"));
    }
    if let Some(min) = prop.get("minLength").and_then(Value::as_u64)
        && (s.chars().count() as u64) < min
    {
        return Err(format!("value must be at least {min} characters long"));
    }
    match prop.get("format") {
        Some(Value::Object(fmt)) => {
            parse_property_string(fmt, s).map_err(|e| format!("invalid format - {e}"))?;
        }
        Some(Value::String(f)) => check_format(f, s).map_err(|e| format!("invalid format - {e}"))?,
        _ => {}
    }
    Ok(())
}

/// Check one of PVE's named string formats (the ones that matter for our clients).
pub fn check_format(format: &str, s: &str) -> Result<(), String> {
    let ok = match format {
        "pve-node" => is_hostname_label(s),
        "pve-vmid" => s.parse::<u64>().is_ok_and(|n| (100..=999_999_999).contains(&n)),
        "pve-storage-id" => {
            s.len() >= 2
                && s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        }
        "dns-name" => !s.is_empty() && s.len() <= 255 && s.split('.').all(is_hostname_label),
        "mac-addr" => is_mac(s),
        "pve-volume-id" => s.split_once(':').is_some_and(|(st, rest)| !st.is_empty() && !rest.is_empty()),
        "pve-vmid-list" => s.split([',', ' ', ';']).filter(|x| !x.is_empty()).all(|x| x.parse::<u64>().is_ok()),
        "disk-size" => parse_disk_size(s).is_some(),
        "pve-iface" => (2..=20).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "pve-configid-list" => s
            .split([',', ';', ' '])
            .filter(|x| !x.is_empty())
            .all(|x| x.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        let what = match format {
            "pve-node" => "value does not look like a valid node name".to_string(),
            "pve-storage-id" => format!("storage ID '{s}' contains illegal characters"),
            "dns-name" => format!("value '{s}' does not look like a valid DNS name"),
            "mac-addr" => format!("value '{s}' does not look like a valid MAC address"),
            "pve-volume-id" => format!("unable to parse volume ID '{s}'"),
            other => format!("value does not match the regex pattern ({other})"),
        };
        Err(format!("{what}\n"))
    }
}

fn is_hostname_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !s.starts_with('-') && !s.ends_with('-')
}

/// `XX:XX:XX:XX:XX:XX` with the I/G bit not set.
pub fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

/// Parse a PVE disk size (`8`, `8G`, `512M`, `1T`) into bytes.
pub fn parse_disk_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let f: f64 = num.parse().ok()?;
    (f >= 0.0).then_some((f * mult as f64) as u64)
}

/// Parse a property string (`name=eth0,bridge=vmbr0,...`) against its sub-schema.
pub fn parse_property_string(fmt: &Map<String, Value>, s: &str) -> Result<BTreeMap<String, String>, String> {
    let default_key = fmt
        .iter()
        .find(|(_, p)| p.get("default_key").and_then(Value::as_i64).unwrap_or(0) != 0)
        .map(|(k, _)| k.clone());
    let mut out = BTreeMap::new();
    let mut errs = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = match part.split_once('=') {
            Some((k, v)) if fmt.contains_key(k) => (k.to_string(), v.to_string()),
            Some((k, _)) if default_key.is_none() => {
                errs.push(format!(
                    "{k}: property is not defined in schema and the schema does not allow additional properties"
                ));
                continue;
            }
            _ => match &default_key {
                Some(dk) if !out.contains_key(dk) => (dk.clone(), part.to_string()),
                _ => {
                    errs.push(format!(
                        "{part}: property is not defined in schema and the schema does not allow additional properties"
                    ));
                    continue;
                }
            },
        };
        let prop = &fmt[&k];
        let ty = prop.get("type").and_then(Value::as_str).unwrap_or("string");
        let v = if ty == "boolean" {
            match v.to_ascii_lowercase().as_str() {
                "1" | "on" | "yes" | "true" => "1".to_string(),
                "0" | "off" | "no" | "false" => "0".to_string(),
                _ => {
                    errs.push(format!("{k}: type check ('boolean') failed - got '{v}'"));
                    continue;
                }
            }
        } else {
            match check_value(prop, &Raw::Text(v.clone())) {
                Ok(_) => v,
                Err(e) => {
                    errs.push(format!("{k}: {e}"));
                    continue;
                }
            }
        };
        if out.insert(k.clone(), v).is_some() {
            errs.push(format!("{k}: duplicate key in comma-separated list property"));
        }
    }
    for (k, p) in fmt {
        let optional = p.get("optional").and_then(Value::as_i64).unwrap_or(0) != 0;
        if !optional && !out.contains_key(k) {
            errs.push(format!("{k}: property is missing and it is not optional"));
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(format!("format error\n{}\n", errs.join("\n")))
    }
}

/// Print a property string the way PVE does: the default key bare and first, then required
/// keys, then optional keys, each group sorted.
pub fn print_property_string(fmt: &Map<String, Value>, map: &BTreeMap<String, String>) -> String {
    let is_default = |k: &str| fmt.get(k).and_then(|p| p.get("default_key")).and_then(Value::as_i64).unwrap_or(0) != 0;
    let is_optional = |k: &str| fmt.get(k).and_then(|p| p.get("optional")).and_then(Value::as_i64).unwrap_or(0) != 0;
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by_key(|k| (!is_default(k), is_optional(k), (*k).clone()));
    keys.iter()
        .map(|k| {
            if is_default(k) {
                map[*k].clone()
            } else {
                format!("{k}={}", map[*k])
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The sub-schema (`format` object) of a property-string parameter of an endpoint.
pub fn property_format<'a>(ep: &'a Endpoint, name: &str) -> Option<&'a Map<String, Value>> {
    prop_for(&ep.props, name)?.get("format")?.as_object()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create() -> &'static Endpoint {
        schema().endpoint("POST", "/nodes/{node}/lxc").unwrap()
    }

    #[test]
    fn lookup_matches_paths_and_rest_segments() {
        let s = schema();
        match s.lookup("GET", &["nodes", "pve1", "lxc", "100", "status", "current"]) {
            Lookup::Found(ep, p) => {
                assert_eq!(ep.path, "/nodes/{node}/lxc/{vmid}/status/current");
                assert_eq!(p, vec![("node".into(), "pve1".into()), ("vmid".into(), "100".into())]);
            }
            Lookup::NotImplemented => panic!("not found"),
        }
        match s.lookup(
            "DELETE",
            &["nodes", "pve1", "storage", "local", "content", "local:backup", "vzdump-lxc-1.tar"],
        ) {
            Lookup::Found(_, p) => assert_eq!(p[2], ("volume".into(), "local:backup/vzdump-lxc-1.tar".into())),
            Lookup::NotImplemented => panic!("not found"),
        }
        assert!(matches!(s.lookup("GET", &["nodes", "pve1", "nosuch"]), Lookup::NotImplemented));
        assert!(matches!(s.lookup("PATCH", &["version"]), Lookup::NotImplemented));
    }

    #[test]
    fn verify_reports_pve_texts() {
        let ep = create();
        let raw = vec![
            ("node".to_string(), Raw::Text("pve1".into())),
            ("vmid".to_string(), Raw::Text("99".into())),
            ("unprivileged".to_string(), Raw::Text("true".into())),
            ("bogus".to_string(), Raw::Text("1".into())),
            ("net0".to_string(), Raw::Text("name=eth0,bridge=vmbr0,colour=red".into())),
        ];
        let e = verify(&ep.props, raw).unwrap_err();
        assert_eq!(e["vmid"], "value must have a minimum value of 100");
        assert_eq!(e["unprivileged"], "type check ('boolean') failed - got 'true'");
        assert!(e["bogus"].contains("not defined in schema"));
        assert!(e["ostemplate"].contains("not optional"));
        assert!(e["net0"].starts_with("invalid format - format error\ncolour:"), "{}", e["net0"]);
    }

    #[test]
    fn verify_accepts_json_booleans_and_numbers() {
        let ep = create();
        let raw = vec![
            ("node".to_string(), Raw::Text("pve1".into())),
            ("vmid".to_string(), Raw::Json(Value::from(105))),
            ("ostemplate".to_string(), Raw::Json(Value::from("local:vztmpl/a.tar.xz"))),
            ("unprivileged".to_string(), Raw::Json(Value::Bool(true))),
            ("memory".to_string(), Raw::Text("1024".into())),
        ];
        let p = verify(&ep.props, raw).unwrap();
        assert_eq!(p.int("vmid"), Some(105));
        assert!(p.flag("unprivileged"));
        assert_eq!(p.int("memory"), Some(1024));
    }

    #[test]
    fn property_strings_round_trip_in_pve_order() {
        let ep = create();
        let fmt = property_format(ep, "net0").unwrap();
        let m = parse_property_string(fmt, "ip=dhcp,name=eth0,bridge=vmbr0,firewall=on,hwaddr=BC:24:11:2E:C5:7E").unwrap();
        assert_eq!(
            print_property_string(fmt, &m),
            "name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:2E:C5:7E,ip=dhcp"
        );
        let rf = property_format(ep, "rootfs").unwrap();
        let m = parse_property_string(rf, "local-lvm:8,size=8G").unwrap();
        assert_eq!(m["volume"], "local-lvm:8");
        assert_eq!(print_property_string(rf, &m), "local-lvm:8,size=8G");
        assert!(
            parse_property_string(fmt, "bridge=vmbr0")
                .unwrap_err()
                .contains("name: property is missing")
        );
    }

    #[test]
    fn formats() {
        assert!(check_format("pve-node", "pve1").is_ok());
        assert!(check_format("pve-node", "bad node").is_err());
        assert!(is_mac("BC:24:11:2E:C5:7E"));
        assert!(!is_mac("BD:24:11:2E:C5:7E"));
        assert_eq!(parse_disk_size("8G"), Some(8 << 30));
        assert_eq!(parse_disk_size("8"), Some(8));
    }
}
