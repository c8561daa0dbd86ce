//! Strict validation of catalog files. Pure: text in, entry or `file:field: message` issues out.
//!
//! Rules (each has a failing example in the tests below):
//! - the file parses into [`CatalogEntry`] (unknown keys are errors);
//! - `id` equals the file name and is an RFC 1123 label; category is a known one;
//! - every image has a pinned tag (no missing tag, no `latest`/`stable`/... floating tags);
//! - no `network_mode: host` (nor `pid`/`ipc`/`userns_mode: host`), no `build:`, no
//!   `privileged: true` unless the entry declares `privileged: true`, no Docker socket mount
//!   unless it declares `docker_socket: true`, every service has a `restart:` policy;
//! - every `${VAR}` in compose is defined in `env` (or is a built-in `PROX_*` variable) and every
//!   env variable is used;
//! - published ports are literal `HOST:CONTAINER`, >= 1024, unique, and exactly the declared
//!   `web.port` + `ports[]`;
//! - no literal passwords: compose environment keys and env names containing PASSWORD, PASSWD,
//!   SECRET or TOKEN must get their value from a `${VAR}` (a generated secret or a form field);
//! - sane resources, health check, icons without remote URLs, declared volumes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_yaml::{Mapping, Value};

use super::model::{CatalogEntry, Compose, FieldType, Proto};

/// Categories an entry may use.
pub const CATEGORIES: &[&str] = &[
    "Automation",
    "Communication",
    "CMS",
    "Dashboard",
    "Database",
    "Development",
    "Media",
    "Monitoring",
    "Networking",
    "Productivity",
    "Security",
    "Storage",
    "Web Server",
];

/// Variables every rendered `.env` defines (see [`super::render`]).
pub const BUILTIN_VARS: &[&str] = &["PROX_HOSTNAME", "PROX_FQDN", "PROX_URL"];

/// Image tags that move and therefore do not pin anything.
const FLOATING_TAGS: &[&str] = &["latest", "stable", "main", "master", "edge", "nightly", "develop", "dev", "beta", "release", "rolling"];

/// Host paths a service may bind-mount (besides `./relative` paths in the project directory).
const ALLOWED_HOST_PATHS: &[&str] = &["/etc/localtime", "/etc/timezone"];

/// One problem in a catalog file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// File the problem is in, as given to the validator.
    pub file: String,
    /// Dotted path of the offending key (e.g. `compose.services.db.image`).
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.field, self.message)
    }
}

/// One published port found in a compose document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Compose service that publishes it.
    pub service: String,
    /// Host (CT) port.
    pub host: u16,
    /// Container port.
    pub container: u16,
    /// Protocol.
    pub proto: Proto,
}

/// Parse and validate one file. `file` labels the issues; `stem` is the file name without
/// `.yaml` (the expected id).
pub fn parse_file(file: &str, stem: &str, text: &str) -> Result<CatalogEntry, Vec<Issue>> {
    let de = serde_yaml::Deserializer::from_str(text);
    let entry: CatalogEntry = match serde_path_to_error::deserialize(de) {
        Ok(e) => e,
        Err(e) => {
            let path = e.path().to_string();
            let field = if path.is_empty() || path == "." { "(document)".to_string() } else { path };
            let mut message = e.into_inner().to_string();
            // serde_yaml prefixes the parent path ("web: unknown field ..."); the field says it.
            if let Some((head, rest)) = message.split_once(": ")
                && !head.contains(' ')
            {
                message = rest.to_string();
            }
            return Err(vec![Issue { file: file.into(), field, message }]);
        }
    };
    let issues = validate_entry(file, stem, &entry);
    if issues.is_empty() { Ok(entry) } else { Err(issues) }
}

struct Sink<'a> {
    file: &'a str,
    issues: Vec<Issue>,
}

impl Sink<'_> {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue { file: self.file.to_string(), field: field.into(), message: message.into() });
    }
}

/// Check every rule on a parsed entry; an empty result means valid.
pub fn validate_entry(file: &str, stem: &str, e: &CatalogEntry) -> Vec<Issue> {
    let mut s = Sink { file, issues: Vec::new() };
    check_meta(&mut s, stem, e);
    check_resources(&mut s, e);
    let defined = check_env(&mut s, e);
    match e.compose.to_mapping() {
        Err(m) => s.push("compose", m),
        Ok(compose) => check_compose(&mut s, e, &compose, &defined),
    }
    s.issues
}

fn check_meta(s: &mut Sink, stem: &str, e: &CatalogEntry) {
    if let Err(m) = crate::validate::hostname(&e.id) {
        s.push("id", format!("{:?} is not an RFC 1123 label: {m}", e.id));
    }
    if e.id != stem {
        s.push("id", format!("{:?} must equal the file name ({stem:?})", e.id));
    }
    for (field, v, max) in [("name", &e.name, 64), ("description", &e.description, 400), ("version", &e.version, 64)] {
        if v.trim().is_empty() {
            s.push(field, "must not be empty");
        } else if v.chars().count() > max {
            s.push(field, format!("is longer than {max} characters"));
        }
    }
    if !CATEGORIES.contains(&e.category.as_str()) {
        s.push("category", format!("{:?} is not a known category (one of: {})", e.category, CATEGORIES.join(", ")));
    }
    let mut seen = BTreeSet::new();
    for (i, t) in e.tags.iter().enumerate() {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            s.push(format!("tags[{i}]"), format!("{t:?} must be lower-case a-z, 0-9 and '-'"));
        }
        if !seen.insert(t) {
            s.push(format!("tags[{i}]"), format!("{t:?} is listed twice"));
        }
    }
    check_icon(s, &e.icon);
    if let Some(h) = &e.homepage
        && !(h.starts_with("https://") || h.starts_with("http://"))
    {
        s.push("homepage", "must be an http(s) URL");
    }
}

fn check_icon(s: &mut Sink, icon: &str) {
    let icon = icon.trim();
    let lower = icon.to_ascii_lowercase();
    if icon.is_empty() {
        s.push("icon", "must not be empty (an emoji, inline <svg> or a data: URI)");
    } else if lower.starts_with("http:") || lower.starts_with("https:") || lower.starts_with("//") {
        s.push("icon", "remote URLs are not allowed (the appliance may have no internet); use an emoji, inline <svg> or a data: URI");
    } else if lower.starts_with("<svg") {
        if !lower.ends_with("</svg>") {
            s.push("icon", "inline SVG must end with </svg>");
        } else if icon.len() > 16 * 1024 {
            s.push("icon", "inline SVG is larger than 16 KiB");
        } else if lower.contains("<script") || lower.contains("href=\"http") {
            s.push("icon", "inline SVG must not contain scripts or remote references");
        }
    } else if lower.starts_with("data:") {
        if !(lower.starts_with("data:image/svg+xml") || lower.starts_with("data:image/png;base64,")) {
            s.push("icon", "data: URI must be image/svg+xml or image/png;base64");
        } else if icon.len() > 32 * 1024 {
            s.push("icon", "data: URI is larger than 32 KiB");
        }
    } else if icon.chars().count() > 8 {
        s.push("icon", "text icons are at most 8 characters (an emoji); use inline <svg> or a data: URI for images");
    }
}

fn check_resources(s: &mut Sink, e: &CatalogEntry) {
    let m = &e.min;
    if !(1..=32).contains(&m.cores) {
        s.push("min.cores", format!("{} is outside 1..=32", m.cores));
    }
    if !(64..=65536).contains(&m.memory_mb) {
        s.push("min.memory_mb", format!("{} MiB is outside 64..=65536", m.memory_mb));
    }
    if !(1..=1024).contains(&m.disk_gb) {
        s.push("min.disk_gb", format!("{} GiB is outside 1..=1024", m.disk_gb));
    }
    let h = &e.healthcheck;
    if let Some(p) = &h.path
        && !p.starts_with('/')
    {
        s.push("healthcheck.path", "must start with '/'");
    }
    if !(100..=599).contains(&h.expect_status) {
        s.push("healthcheck.expect_status", format!("{} is not an HTTP status", h.expect_status));
    }
    if !(5..=1800).contains(&h.timeout_secs) {
        s.push("healthcheck.timeout_secs", format!("{} is outside 5..=1800 seconds", h.timeout_secs));
    }
    if e.health_port().is_none() {
        s.push("healthcheck.port", "required when the entry has no web port");
    }
    if let Some(w) = &e.web
        && let Some(p) = &w.path
        && !p.starts_with('/')
    {
        s.push("web.path", "must start with '/'");
    }
    // Declared ports: >= 1024 and unique.
    let mut seen = BTreeSet::new();
    if let Some(w) = &e.web {
        if w.port < 1024 {
            s.push("web.port", format!("{} is below 1024; publish a CT port >= 1024 (e.g. \"8080:80\")", w.port));
        }
        seen.insert((w.port, Proto::Tcp));
    }
    for (i, p) in e.ports.iter().enumerate() {
        if p.port < 1024 {
            s.push(format!("ports[{i}].port"), format!("{} is below 1024; publish a CT port >= 1024", p.port));
        }
        if !seen.insert((p.port, p.proto)) {
            s.push(format!("ports[{i}].port"), format!("{}/{} is declared twice", p.port, p.proto.as_str()));
        }
        if p.description.trim().is_empty() {
            s.push(format!("ports[{i}].description"), "must not be empty");
        }
    }
    let mut names = BTreeSet::new();
    for (i, v) in e.volumes.iter().enumerate() {
        if !names.insert(&v.name) {
            s.push(format!("volumes[{i}].name"), format!("{:?} is declared twice", v.name));
        }
        if v.description.trim().is_empty() {
            s.push(format!("volumes[{i}].description"), "must not be empty");
        }
    }
}

/// True when a key name suggests it holds a credential.
pub fn is_secretish(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN"].iter().any(|w| k.contains(w))
}

/// Values that are clearly switches, not credentials (`..._PASSWORD_CHANGE: "false"`).
fn is_switch(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no" | "0" | "1" | "on" | "off")
}

/// Checks `env` and returns the names it defines (plus built-ins).
fn check_env(s: &mut Sink, e: &CatalogEntry) -> BTreeSet<String> {
    let mut defined: BTreeSet<String> = BUILTIN_VARS.iter().map(|v| v.to_string()).collect();
    for (i, v) in e.env.iter().enumerate() {
        let at = format!("env[{i}]");
        let valid_name = !v.name.is_empty()
            && v.name.bytes().next().is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
            && v.name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid_name {
            s.push(format!("{at}.name"), format!("{:?} must match [A-Z_][A-Z0-9_]*", v.name));
        }
        if v.name.starts_with("PROX_") {
            s.push(format!("{at}.name"), format!("{:?}: the PROX_ prefix is reserved for built-in variables", v.name));
        } else if !defined.insert(v.name.clone()) {
            s.push(format!("{at}.name"), format!("{:?} is defined twice", v.name));
        }
        if let Some(sec) = &v.secret {
            if !(12..=256).contains(&sec.length) {
                s.push(format!("{at}.secret.length"), format!("{} is outside 12..=256", sec.length));
            }
            if v.default.is_some() {
                s.push(format!("{at}.default"), "a secret must not have a default (it is generated per deploy)");
            }
        }
        if let Some(d) = &v.default
            && v.secret.is_none()
            && is_secretish(&v.name)
            && !is_switch(d)
        {
            s.push(
                format!("{at}.default"),
                "literal value for a password/secret/token variable; use `secret:` (generated per deploy) or a password field",
            );
        }
        if v.required && v.default.is_none() && v.field.is_none() && v.secret.is_none() {
            s.push(format!("{at}.required"), "required but nothing supplies it (add a default, a field or a secret)");
        }
        if let Some(f) = &v.field {
            if f.label.trim().is_empty() {
                s.push(format!("{at}.field.label"), "must not be empty");
            }
            match f.kind {
                FieldType::Select => {
                    if f.options.is_empty() {
                        s.push(format!("{at}.field.options"), "a select needs options");
                    }
                    let uniq: BTreeSet<_> = f.options.iter().collect();
                    if uniq.len() != f.options.len() {
                        s.push(format!("{at}.field.options"), "options must be unique");
                    }
                }
                _ if !f.options.is_empty() => s.push(format!("{at}.field.options"), "only a select has options"),
                _ => {}
            }
            if f.kind == FieldType::Password && v.default.is_some() {
                s.push(format!("{at}.default"), "a password field must not have a default");
            }
            if let Some(d) = &v.default
                && let Err(m) = super::render::check_value(f, d)
            {
                s.push(format!("{at}.default"), format!("default {d:?} {m}"));
            }
        }
    }
    defined
}

fn check_compose(s: &mut Sink, e: &CatalogEntry, compose: &Mapping, defined: &BTreeSet<String>) {
    for (k, _) in compose {
        let key = k.as_str().unwrap_or("");
        if !matches!(key, "services" | "volumes" | "networks" | "configs") {
            let hint = match key {
                "version" => " (obsolete in the compose spec; remove it)",
                "name" => " (the project name is set to the app hostname at deploy)",
                _ => "",
            };
            s.push(format!("compose.{key}"), format!("top-level key not allowed{hint}; use services, volumes, networks, configs"));
        }
    }
    let services = match compose.get("services") {
        Some(Value::Mapping(m)) if !m.is_empty() => m,
        _ => {
            s.push("compose.services", "must be a non-empty mapping of services");
            return;
        }
    };
    let top_volumes: BTreeSet<String> = match compose.get("volumes") {
        Some(Value::Mapping(m)) => m.keys().filter_map(|k| k.as_str().map(String::from)).collect(),
        None | Some(Value::Null) => BTreeSet::new(),
        Some(_) => {
            s.push("compose.volumes", "must be a mapping");
            BTreeSet::new()
        }
    };
    let mut uses_privileged = false;
    let mut uses_socket = false;
    for (name, svc) in services {
        let name = name.as_str().unwrap_or("?");
        let at = format!("compose.services.{name}");
        let Some(svc) = svc.as_mapping() else {
            s.push(at, "must be a mapping");
            continue;
        };
        match svc.get("image").and_then(Value::as_str) {
            None => s.push(format!("{at}.image"), "every service needs an image (building is not supported)"),
            Some(img) => {
                if let Err(m) = check_image(img) {
                    s.push(format!("{at}.image"), format!("{img:?}: {m}"));
                }
            }
        }
        if svc.contains_key("build") {
            s.push(format!("{at}.build"), "building images is not supported; use a published image");
        }
        for key in ["network_mode", "pid", "ipc", "userns_mode"] {
            if let Some(v) = svc.get(key).and_then(Value::as_str)
                && v == "host"
            {
                s.push(format!("{at}.{key}"), format!("`{key}: host` is not allowed; publish ports instead"));
            }
        }
        match svc.get("privileged") {
            Some(Value::Bool(true)) => {
                uses_privileged = true;
                if !e.privileged {
                    s.push(format!("{at}.privileged"), "privileged containers must be declared with top-level `privileged: true`");
                }
            }
            Some(Value::Bool(false)) | None => {}
            Some(_) => s.push(format!("{at}.privileged"), "must be a boolean"),
        }
        match svc.get("restart").and_then(Value::as_str) {
            Some("unless-stopped" | "always" | "on-failure") => {}
            Some(other) => s.push(format!("{at}.restart"), format!("{other:?}: use unless-stopped or always")),
            None => s.push(format!("{at}.restart"), "missing; use `restart: unless-stopped` so the app survives a CT restart"),
        }
        if let Some(vols) = svc.get("volumes") {
            match vols.as_sequence() {
                None => s.push(format!("{at}.volumes"), "must be a list"),
                Some(list) => {
                    for (i, v) in list.iter().enumerate() {
                        let src = match v {
                            Value::String(t) => t.split(':').next().unwrap_or("").to_string(),
                            Value::Mapping(m) => m.get("source").and_then(Value::as_str).unwrap_or("").to_string(),
                            _ => String::new(),
                        };
                        let vat = format!("{at}.volumes[{i}]");
                        if src.ends_with("docker.sock") {
                            uses_socket = true;
                            if !e.docker_socket {
                                s.push(vat, "mounting the Docker socket must be declared with top-level `docker_socket: true`");
                            }
                        } else if src.starts_with('/') {
                            if !ALLOWED_HOST_PATHS.contains(&src.as_str()) {
                                s.push(vat, format!("host path {src:?} not allowed; use a named volume or ./relative path"));
                            }
                        } else if src.starts_with('.') || src.starts_with('~') || src.starts_with('$') {
                            if src.starts_with('~') || src.starts_with('$') || src.contains("..") {
                                s.push(vat, format!("{src:?}: bind mounts must stay inside the project directory"));
                            }
                        } else if !src.is_empty() && !top_volumes.contains(&src) {
                            s.push(vat, format!("named volume {src:?} is not defined under compose.volumes"));
                        }
                    }
                }
            }
        }
        if let Some(env) = svc.get("environment") {
            check_environment(s, &at, env);
        }
    }
    if e.privileged && !uses_privileged {
        s.push("privileged", "declared but no service is privileged");
    }
    if e.docker_socket && !uses_socket {
        s.push("docker_socket", "declared but no service mounts the Docker socket");
    }
    let declared_vols: BTreeSet<&String> = e.volumes.iter().map(|v| &v.name).collect();
    for (i, v) in e.volumes.iter().enumerate() {
        if !top_volumes.contains(&v.name) {
            s.push(format!("volumes[{i}].name"), format!("{:?} is not a volume under compose.volumes", v.name));
        }
    }
    for v in &top_volumes {
        if !declared_vols.contains(v) {
            s.push(format!("compose.volumes.{v}"), "volume not declared in the entry's `volumes` list (describe what it holds)");
        }
    }

    // Variables: every reference defined, every env variable used.
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    collect_refs(&Value::Mapping(compose.clone()), "compose", &mut used, s);
    for (var, at) in &used {
        if !defined.contains(var) {
            s.push(at.clone(), format!("${{{var}}} is not defined in env (built-ins: {})", BUILTIN_VARS.join(", ")));
        }
    }
    for (i, v) in e.env.iter().enumerate() {
        if !used.contains_key(&v.name) {
            s.push(format!("env[{i}].name"), format!("{:?} is never referenced as ${{{}}} in compose", v.name, v.name));
        }
    }

    // Ports.
    match published_ports(compose) {
        Err(errs) => {
            for (f, m) in errs {
                s.push(f, m);
            }
        }
        Ok(published) => {
            let mut seen = BTreeSet::new();
            for p in &published {
                if p.host < 1024 {
                    s.push(
                        format!("compose.services.{}.ports", p.service),
                        format!("published port {} is below 1024; publish a CT port >= 1024 (e.g. \"8080:{}\")", p.host, p.container),
                    );
                }
                if !seen.insert((p.host, p.proto)) {
                    s.push(
                        format!("compose.services.{}.ports", p.service),
                        format!("port {}/{} is published twice", p.host, p.proto.as_str()),
                    );
                }
            }
            let declared: BTreeSet<(u16, Proto)> = e.declared_ports().into_iter().collect();
            for (port, proto) in seen.difference(&declared) {
                s.push("ports", format!("compose publishes {port}/{} but the entry does not declare it (web.port or ports[])", proto.as_str()));
            }
            for (port, proto) in declared.difference(&seen) {
                let field = if e.web.as_ref().is_some_and(|w| w.port == *port) && *proto == Proto::Tcp { "web.port" } else { "ports" };
                s.push(field, format!("{port}/{} is declared but no compose service publishes it", proto.as_str()));
            }
            if let Some(hp) = e.healthcheck.port
                && !seen.contains(&(hp, Proto::Tcp))
            {
                s.push("healthcheck.port", format!("{hp}/tcp is not a published port"));
            }
        }
    }
}

/// Check an image reference: a tag is required and must not float.
pub fn check_image(img: &str) -> Result<(), String> {
    if img.contains('$') {
        return Err("must be literal (no variables)".into());
    }
    if img.contains("@sha256:") {
        return Ok(());
    }
    let last = img.rsplit('/').next().unwrap_or(img);
    match last.split_once(':') {
        None => Err("no tag; pin a version (e.g. name:1.2.3)".into()),
        Some((_, tag)) if tag.is_empty() => Err("empty tag".into()),
        Some((_, tag)) if FLOATING_TAGS.contains(&tag.to_ascii_lowercase().as_str()) => {
            Err(format!("tag {tag:?} floats; pin a version"))
        }
        Some(_) => Ok(()),
    }
}

fn check_environment(s: &mut Sink, at: &str, env: &Value) {
    let pairs: Vec<(String, Option<String>)> = match env {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let val = match v {
                    Value::Null => None,
                    Value::String(t) => Some(t.clone()),
                    Value::Bool(b) => Some(b.to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => Some(String::new()),
                };
                (k.as_str().unwrap_or("").to_string(), val)
            })
            .collect(),
        Value::Sequence(l) => l
            .iter()
            .filter_map(Value::as_str)
            .map(|t| match t.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (t.to_string(), None),
            })
            .collect(),
        _ => {
            s.push(format!("{at}.environment"), "must be a mapping or a list");
            return;
        }
    };
    for (k, v) in pairs {
        let Some(v) = v else { continue };
        if is_secretish(&k) && !v.contains("${") && !is_switch(&v) && !(k.ends_with("_FILE") && v.starts_with('/')) {
            s.push(
                format!("{at}.environment.{k}"),
                "literal value for a password/secret/token; reference a generated secret as ${VAR} from env",
            );
        }
    }
}

/// Variable names referenced in a string with compose interpolation syntax (`${VAR}`,
/// `${VAR:-x}`, `${VAR?err}`, `$VAR`); `$$` is an escaped dollar.
pub fn var_refs(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => {
                let start = i + 2;
                let mut j = start;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                if j > start {
                    out.push(text[start..j].to_string());
                }
                i = j;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                out.push(text[start..j].to_string());
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}

fn collect_refs(v: &Value, at: &str, out: &mut BTreeMap<String, String>, s: &mut Sink) {
    match v {
        Value::String(t) => {
            for r in var_refs(t) {
                out.entry(r).or_insert_with(|| at.to_string());
            }
        }
        Value::Sequence(l) => {
            for (i, x) in l.iter().enumerate() {
                collect_refs(x, &format!("{at}[{i}]"), out, s);
            }
        }
        Value::Mapping(m) => {
            for (k, x) in m {
                let key = match k {
                    Value::String(t) => t.clone(),
                    other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
                };
                if !var_refs(&key).is_empty() {
                    s.push(format!("{at}.{key}"), "keys must not contain variables");
                }
                collect_refs(x, &format!("{at}.{key}"), out, s);
            }
        }
        Value::Tagged(t) => collect_refs(&t.value, at, out, s),
        _ => {}
    }
}

/// Published ports of every service, or `(field, message)` problems.
pub fn published_ports(compose: &Mapping) -> Result<Vec<Published>, Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    let Some(Value::Mapping(services)) = compose.get("services") else {
        return Ok(out);
    };
    for (name, svc) in services {
        let name = name.as_str().unwrap_or("?").to_string();
        let Some(ports) = svc.get("ports") else { continue };
        let at = format!("compose.services.{name}.ports");
        let Some(list) = ports.as_sequence() else {
            errs.push((at, "must be a list".into()));
            continue;
        };
        for (i, p) in list.iter().enumerate() {
            match parse_port(p) {
                Ok((host, container, proto)) => out.push(Published { service: name.clone(), host, container, proto }),
                Err(m) => errs.push((format!("{at}[{i}]"), m)),
            }
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

fn parse_num(s: &str, what: &str) -> Result<u16, String> {
    if s.contains('-') {
        return Err(format!("{what} {s:?}: port ranges are not supported"));
    }
    if s.contains('$') {
        return Err(format!("{what} {s:?} must be a literal number"));
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{what} {s:?} is not a port number")),
        Ok(n) => Ok(n),
    }
}

fn parse_proto(s: &str) -> Result<Proto, String> {
    match s {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        other => Err(format!("protocol {other:?} is not tcp or udp")),
    }
}

fn parse_port(p: &Value) -> Result<(u16, u16, Proto), String> {
    match p {
        Value::Number(_) => Err("publishes a random host port; write \"HOST:CONTAINER\"".into()),
        Value::String(t) => {
            let (spec, proto) = match t.rsplit_once('/') {
                Some((a, pr)) => (a, parse_proto(pr)?),
                None => (t.as_str(), Proto::Tcp),
            };
            let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
            match parts.as_slice() {
                [_] => Err(format!("{t:?} publishes a random host port; write \"HOST:CONTAINER\"")),
                [container, host] | [container, host, _] => Ok((parse_num(host, "host port")?, parse_num(container, "container port")?, proto)),
                _ => Err(format!("{t:?} is not HOST:CONTAINER")),
            }
        }
        Value::Mapping(m) => {
            let num = |k: &str| -> Result<Option<u16>, String> {
                match m.get(k) {
                    None => Ok(None),
                    Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()).map(Some).ok_or(format!("{k} is not a port")),
                    Some(Value::String(t)) => parse_num(t, k).map(Some),
                    Some(_) => Err(format!("{k} is not a port")),
                }
            };
            let target = num("target")?.ok_or("long syntax needs `target`")?;
            let published = num("published")?.ok_or("long syntax needs `published` (a random host port cannot be proxied)")?;
            let proto = match m.get("protocol").and_then(Value::as_str) {
                Some(pr) => parse_proto(pr)?,
                None => Proto::Tcp,
            };
            Ok((published, target, proto))
        }
        _ => Err("must be a string or a mapping".into()),
    }
}

/// The compose mapping of an entry that already validated.
pub fn compose_of(e: &CatalogEntry) -> Mapping {
    match &e.compose {
        Compose::Mapping(m) => m.clone(),
        Compose::Text(_) => e.compose.to_mapping().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
id: demo
name: Demo
description: A demo app.
version: "1.2.3"
category: Database
tags: [demo, test]
icon: "🧪"
homepage: https://example.org
compose:
  services:
    app:
      image: example/app:1.2.3
      restart: unless-stopped
      ports:
        - "8080:80"
        - "5432:5432"
      environment:
        DB_PASSWORD: ${DB_PASSWORD}
        ADMIN_EMAIL: ${ADMIN_EMAIL}
        URL: ${PROX_URL}
      volumes:
        - data:/data
  volumes:
    data: {}
web:
  port: 8080
ports:
  - port: 5432
    proto: tcp
    description: SQL
volumes:
  - name: data
    description: Data
env:
  - name: DB_PASSWORD
    secret:
      length: 24
  - name: ADMIN_EMAIL
    required: true
    field:
      label: Admin e-mail
      type: email
min:
  cores: 1
  memory_mb: 256
  disk_gb: 2
healthcheck:
  path: /health
  expect_status: 200
  timeout_secs: 60
"#;

    fn issues(yaml: &str) -> Vec<String> {
        match parse_file("demo.yaml", "demo", yaml) {
            Ok(_) => vec![],
            Err(i) => i.iter().map(|i| i.to_string()).collect(),
        }
    }

    /// Apply a replacement to BASE (which must match) and return the issues.
    fn broken(from: &str, to: &str) -> Vec<String> {
        assert!(BASE.contains(from), "test pattern {from:?} not in BASE");
        issues(&BASE.replacen(from, to, 1))
    }

    fn has(issues: &[String], prefix: &str) -> bool {
        issues.iter().any(|i| i.starts_with(prefix))
    }

    #[test]
    fn base_is_valid() {
        assert_eq!(issues(BASE), Vec::<String>::new());
    }

    #[test]
    fn unknown_key_is_reported_with_path() {
        let i = broken("web:\n  port: 8080", "web:\n  port: 8080\n  prot: 1");
        assert!(has(&i, "demo.yaml:web.prot: unknown field `prot`"), "{i:?}");
        let i = broken("id: demo", "id: demo\nimage: x");
        assert!(i[0].starts_with("demo.yaml:") && i[0].contains("unknown field `image`"), "{i:?}");
    }

    #[test]
    fn id_must_match_file_and_be_a_label() {
        assert!(has(&broken("id: demo", "id: other"), "demo.yaml:id: \"other\" must equal the file name"));
        assert!(has(&broken("id: demo", "id: Demo_App"), "demo.yaml:id: \"Demo_App\" is not an RFC 1123 label"));
    }

    #[test]
    fn images_must_be_pinned() {
        let i = broken("example/app:1.2.3", "example/app:latest");
        assert!(has(&i, "demo.yaml:compose.services.app.image: \"example/app:latest\": tag \"latest\" floats"), "{i:?}");
        let i = broken("example/app:1.2.3", "example/app");
        assert!(has(&i, "demo.yaml:compose.services.app.image: \"example/app\": no tag"), "{i:?}");
        // A registry port is not a tag.
        let i = broken("example/app:1.2.3", "registry.local:5000/app");
        assert!(has(&i, "demo.yaml:compose.services.app.image:"), "{i:?}");
        assert!(check_image("ghcr.io/x/y@sha256:abc").is_ok());
        assert!(check_image("registry.local:5000/app:2.0").is_ok());
    }

    #[test]
    fn host_network_privileged_and_socket_are_refused() {
        let i = broken("      restart: unless-stopped\n", "      restart: unless-stopped\n      network_mode: host\n");
        assert!(has(&i, "demo.yaml:compose.services.app.network_mode: `network_mode: host` is not allowed"), "{i:?}");
        let i = broken("      restart: unless-stopped\n", "      restart: unless-stopped\n      privileged: true\n");
        assert!(has(&i, "demo.yaml:compose.services.app.privileged:"), "{i:?}");
        // Declared: accepted.
        let ok = BASE
            .replacen("      restart: unless-stopped\n", "      restart: unless-stopped\n      privileged: true\n", 1)
            .replacen("id: demo", "id: demo\nprivileged: true", 1);
        assert_eq!(issues(&ok), Vec::<String>::new());
        let i = broken("        - data:/data", "        - data:/data\n        - /var/run/docker.sock:/var/run/docker.sock");
        assert!(has(&i, "demo.yaml:compose.services.app.volumes[1]: mounting the Docker socket"), "{i:?}");
        let i = broken("        - data:/data", "        - /etc:/host-etc");
        assert!(has(&i, "demo.yaml:compose.services.app.volumes[0]: host path \"/etc\""), "{i:?}");
        let i = broken("      restart: unless-stopped\n", "      build: .\n");
        assert!(has(&i, "demo.yaml:compose.services.app.build:"), "{i:?}");
        assert!(has(&i, "demo.yaml:compose.services.app.restart: missing"), "{i:?}");
    }

    #[test]
    fn every_variable_is_defined_and_used() {
        let i = broken("URL: ${PROX_URL}", "URL: ${SITE_URL}");
        assert!(has(&i, "demo.yaml:compose.services.app.environment.URL: ${SITE_URL} is not defined in env"), "{i:?}");
        let i = broken("ADMIN_EMAIL: ${ADMIN_EMAIL}", "ADMIN_EMAIL: $$ADMIN_EMAIL");
        assert!(has(&i, "demo.yaml:env[1].name: \"ADMIN_EMAIL\" is never referenced"), "{i:?}");
        assert_eq!(var_refs("a ${X} $Y $$Z ${W:-d} $${V}"), vec!["X", "Y", "W"]);
    }

    #[test]
    fn published_ports_rules() {
        let i = broken("\"8080:80\"", "\"80:80\"");
        assert!(has(&i, "demo.yaml:compose.services.app.ports: published port 80 is below 1024"), "{i:?}");
        assert!(has(&i, "demo.yaml:web.port: 8080/tcp is declared but no compose service publishes it"), "{i:?}");
        let i = broken("\"5432:5432\"", "\"8080:81\"");
        assert!(has(&i, "demo.yaml:compose.services.app.ports: port 8080/tcp is published twice"), "{i:?}");
        let i = broken("\"5432:5432\"", "\"5433:5432\"");
        assert!(has(&i, "demo.yaml:ports: compose publishes 5433/tcp but the entry does not declare it"), "{i:?}");
        let i = broken("\"5432:5432\"", "\"5432\"");
        assert!(has(&i, "demo.yaml:compose.services.app.ports[1]: \"5432\" publishes a random host port"), "{i:?}");
        let i = broken("web:\n  port: 8080", "web:\n  port: 9999");
        assert!(has(&i, "demo.yaml:web.port: 9999/tcp is declared but no compose service publishes it"), "{i:?}");
        let i = broken("  - port: 5432", "  - port: 80");
        assert!(has(&i, "demo.yaml:ports[0].port: 80 is below 1024"), "{i:?}");
        let i = broken("\"5432:5432\"", "\"6000-6010:6000-6010\"");
        assert!(has(&i, "demo.yaml:compose.services.app.ports[1]: host port \"6000-6010\": port ranges"), "{i:?}");
        let i = broken("\"5432:5432\"", "{target: 5432, published: 5432, protocol: udp}");
        assert!(has(&i, "demo.yaml:ports: compose publishes 5432/udp"), "{i:?}");
    }

    #[test]
    fn literal_passwords_are_refused() {
        let i = broken("DB_PASSWORD: ${DB_PASSWORD}", "DB_PASSWORD: hunter2hunter2");
        assert!(has(&i, "demo.yaml:compose.services.app.environment.DB_PASSWORD: literal value"), "{i:?}");
        let i = broken("URL: ${PROX_URL}", "URL: ${PROX_URL}\n        - API_TOKEN=abc");
        // environment mixing mapping and list is a YAML error; use list form instead:
        assert!(!i.is_empty());
        let list = BASE.replacen(
            "        DB_PASSWORD: ${DB_PASSWORD}\n        ADMIN_EMAIL: ${ADMIN_EMAIL}\n        URL: ${PROX_URL}\n",
            "        - DB_PASSWORD=${DB_PASSWORD}\n        - ADMIN_EMAIL=${ADMIN_EMAIL}\n        - URL=${PROX_URL}\n        - API_TOKEN=abc\n",
            1,
        );
        let i = issues(&list);
        assert!(has(&i, "demo.yaml:compose.services.app.environment.API_TOKEN: literal value"), "{i:?}");
        let i = broken("  - name: DB_PASSWORD\n    secret:\n      length: 24", "  - name: DB_PASSWORD\n    default: changeme");
        assert!(has(&i, "demo.yaml:env[0].default: literal value for a password"), "{i:?}");
        let i = broken("    secret:\n      length: 24", "    default: x\n    secret:\n      length: 24");
        assert!(has(&i, "demo.yaml:env[0].default: a secret must not have a default"), "{i:?}");
        let i = broken("      length: 24", "      length: 4");
        assert!(has(&i, "demo.yaml:env[0].secret.length:"), "{i:?}");
        // Switches are not credentials.
        let ok = BASE.replacen("URL: ${PROX_URL}", "URL: ${PROX_URL}\n        DISABLE_PASSWORD_LOGIN: \"false\"", 1);
        assert_eq!(issues(&ok), Vec::<String>::new());
    }

    #[test]
    fn resources_and_healthcheck_must_be_sane() {
        assert!(has(&broken("cores: 1", "cores: 0"), "demo.yaml:min.cores: 0 is outside"));
        assert!(has(&broken("memory_mb: 256", "memory_mb: 16"), "demo.yaml:min.memory_mb:"));
        assert!(has(&broken("disk_gb: 2", "disk_gb: 0"), "demo.yaml:min.disk_gb:"));
        assert!(has(&broken("path: /health", "path: health"), "demo.yaml:healthcheck.path:"));
        assert!(has(&broken("expect_status: 200", "expect_status: 42"), "demo.yaml:healthcheck.expect_status:"));
        assert!(has(&broken("timeout_secs: 60", "timeout_secs: 0"), "demo.yaml:healthcheck.timeout_secs:"));
        let i = broken("timeout_secs: 60", "timeout_secs: 60\n  port: 7000");
        assert!(has(&i, "demo.yaml:healthcheck.port: 7000/tcp is not a published port"), "{i:?}");
        let i = broken("web:\n  port: 8080\n", "");
        assert!(has(&i, "demo.yaml:ports: compose publishes 8080/tcp"), "{i:?}");
        assert!(has(&i, "demo.yaml:healthcheck.port: required when the entry has no web port"), "{i:?}");
    }

    #[test]
    fn metadata_rules() {
        assert!(has(&broken("category: Database", "category: Stuff"), "demo.yaml:category: \"Stuff\" is not a known category"));
        assert!(has(&broken("icon: \"🧪\"", "icon: https://cdn.example.org/x.png"), "demo.yaml:icon: remote URLs are not allowed"));
        assert!(has(&broken("tags: [demo, test]", "tags: [demo, demo]"), "demo.yaml:tags[1]: \"demo\" is listed twice"));
        assert!(has(&broken("tags: [demo, test]", "tags: [Demo]"), "demo.yaml:tags[0]:"));
        assert!(has(&broken("name: Demo", "name: \"\""), "demo.yaml:name: must not be empty"));
        assert!(issues(&BASE.replacen("icon: \"🧪\"", "icon: '<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>'", 1)).is_empty());
    }

    #[test]
    fn env_and_field_rules() {
        let i = broken("  - name: ADMIN_EMAIL\n    required: true", "  - name: admin-email\n    required: true");
        assert!(has(&i, "demo.yaml:env[1].name: \"admin-email\" must match"), "{i:?}");
        let i = broken("      type: email", "      type: select");
        assert!(has(&i, "demo.yaml:env[1].field.options: a select needs options"), "{i:?}");
        let i = broken("    required: true\n", "    required: true\n    default: not-an-email\n");
        assert!(has(&i, "demo.yaml:env[1].default: default \"not-an-email\" is not an e-mail address"), "{i:?}");
        let i = broken("  - name: ADMIN_EMAIL\n    required: true\n    field:\n      label: Admin e-mail\n      type: email\n", "  - name: ADMIN_EMAIL\n    required: true\n");
        assert!(has(&i, "demo.yaml:env[1].required: required but nothing supplies it"), "{i:?}");
        let i = broken("  - name: ADMIN_EMAIL", "  - name: DB_PASSWORD");
        assert!(has(&i, "demo.yaml:env[1].name: \"DB_PASSWORD\" is defined twice"), "{i:?}");
        let i = broken("  - name: ADMIN_EMAIL", "  - name: PROX_URL");
        assert!(has(&i, "demo.yaml:env[1].name: \"PROX_URL\": the PROX_ prefix is reserved"), "{i:?}");
    }

    #[test]
    fn volumes_must_be_declared() {
        let i = broken("  - name: data\n    description: Data\n", "");
        assert!(has(&i, "demo.yaml:compose.volumes.data: volume not declared"), "{i:?}");
        let i = broken("        - data:/data", "        - other:/data");
        assert!(has(&i, "demo.yaml:compose.services.app.volumes[0]: named volume \"other\" is not defined"), "{i:?}");
    }

    #[test]
    fn compose_as_text_is_accepted_and_checked() {
        let text = "compose: |\n  services:\n    app:\n      image: example/app:latest\n      restart: always\n      ports: [\"8080:80\", \"5432:5432\"]\n      environment:\n        DB_PASSWORD: ${DB_PASSWORD}\n        ADMIN_EMAIL: ${ADMIN_EMAIL}\n      volumes: [\"data:/data\"]\n  volumes:\n    data: {}\n";
        let start = BASE.find("compose:").unwrap();
        let end = BASE.find("web:").unwrap();
        let doc = format!("{}{}{}", &BASE[..start], text, &BASE[end..]);
        let i = issues(&doc);
        assert_eq!(i.len(), 1, "{i:?}");
        assert!(has(&i, "demo.yaml:compose.services.app.image: \"example/app:latest\""), "{i:?}");
    }
}
