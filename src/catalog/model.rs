//! Wire format of one catalog file (`catalog/<id>.yaml`, DESIGN §6).
//!
//! Every struct refuses unknown fields so a typo is an error, not a silently ignored key.
//! Parsing only checks shapes; the rules (pinned tags, ports, secrets, ...) live in
//! [`super::validate`].
//!
//! **Icons** are bundled in the file itself, never fetched at runtime: either a short text
//! (an emoji such as `"🐘"`), inline SVG markup (`<svg ...>...</svg>`), or a
//! `data:image/svg+xml;base64,...` / `data:image/png;base64,...` URI. Remote URLs are refused,
//! so the UI works on an appliance without internet access.

use serde::{Deserialize, Serialize};

/// One app of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// Unique id; equals the file name without `.yaml`; an RFC 1123 label.
    pub id: String,
    /// Display name.
    pub name: String,
    /// One or two sentences shown in the catalog.
    pub description: String,
    /// Version of the app this entry deploys (normally the main image's tag).
    pub version: String,
    /// Category (one of [`super::validate::CATEGORIES`]).
    pub category: String,
    /// Lower-case search tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Bundled icon: emoji, inline SVG or `data:` URI (no remote URLs).
    pub icon: String,
    /// Project home page (a link shown to users; never fetched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    /// The docker-compose project: a mapping, or a string holding compose YAML.
    pub compose: Compose,
    /// The proxied web interface; absent for apps without one (databases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebSpec>,
    /// Published ports other than the web port.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Named compose volumes holding the app's data.
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
    /// Variables written to the project's `.env` file and referenced as `${NAME}` in compose.
    #[serde(default)]
    pub env: Vec<EnvSpec>,
    /// Minimum container resources.
    pub min: MinResources,
    /// How the platform decides the app is up.
    pub healthcheck: HealthSpec,
    /// The compose project needs `privileged: true` (must be declared to be allowed).
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// The compose project mounts the Docker socket (must be declared to be allowed).
    #[serde(default, skip_serializing_if = "is_false")]
    pub docker_socket: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The compose document as written in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Compose {
    /// Compose YAML embedded as a string (`compose: |`).
    Text(String),
    /// Compose written as a YAML mapping.
    Mapping(serde_yaml::Mapping),
}

impl Compose {
    /// The compose document as a mapping (parses the text form).
    pub fn to_mapping(&self) -> Result<serde_yaml::Mapping, String> {
        match self {
            Compose::Mapping(m) => Ok(m.clone()),
            Compose::Text(t) => match serde_yaml::from_str::<serde_yaml::Value>(t) {
                Ok(serde_yaml::Value::Mapping(m)) => Ok(m),
                Ok(_) => Err("compose text must be a YAML mapping".into()),
                Err(e) => Err(format!("compose text is not valid YAML: {e}")),
            },
        }
    }
}

/// The web interface behind the reverse proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSpec {
    /// Published CT port (the host side of a compose `ports:` entry).
    pub port: u16,
    /// Path the "open" link points to (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Scheme the app itself speaks on that port (default `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
}

/// Scheme of a web port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP (the proxy terminates TLS).
    Http,
    /// The app serves TLS itself (the proxy re-encrypts).
    Https,
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// An extra published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Published CT port (>= 1024).
    pub port: u16,
    /// Protocol (default tcp).
    #[serde(default = "default_proto")]
    pub proto: Proto,
    /// What the port is for (shown to users).
    pub description: String,
}

fn default_proto() -> Proto {
    Proto::Tcp
}

/// A named data volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// Name under the compose file's top-level `volumes:`.
    pub name: String,
    /// What the volume holds.
    pub description: String,
}

/// One variable of the `.env` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSpec {
    /// Variable name (`[A-Z_][A-Z0-9_]*`).
    pub name: String,
    /// Default value (literal; never a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// A value must be present (from the user or the default).
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// Generated per deploy unless the caller supplies a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretSpec>,
    /// Shown as a form field in the deploy wizard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<FieldSpec>,
}

/// How a secret is generated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// Number of characters (default 32).
    #[serde(default = "default_secret_len")]
    pub length: usize,
    /// Characters drawn from (default alphanumeric).
    #[serde(default)]
    pub charset: Charset,
}

fn default_secret_len() -> usize {
    32
}

/// Character sets for generated secrets. All are safe unquoted in `.env` files and URLs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Charset {
    /// `A-Za-z0-9`.
    #[default]
    Alphanumeric,
    /// `0-9a-f`.
    Hex,
    /// `A-Za-z0-9-_`.
    Base64url,
}

impl Charset {
    /// The characters of the set.
    pub fn chars(self) -> &'static [u8] {
        match self {
            Charset::Alphanumeric => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            Charset::Hex => b"0123456789abcdef",
            Charset::Base64url => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        }
    }
}

/// A deploy-form field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Label shown next to the input.
    pub label: String,
    /// Input type; values are checked against it.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Allowed values of a `select`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Help text under the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// Input types of form fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Free text (one line).
    Text,
    /// An e-mail address.
    Email,
    /// A password (at least 8 characters); usually paired with `secret` so blank = generated.
    Password,
    /// A number.
    Number,
    /// One of `options`.
    Select,
}

/// Minimum resources of the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinResources {
    /// CPU cores.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mb: u32,
    /// Root disk in GiB.
    pub disk_gb: u32,
}

/// Health check: HTTP GET of `path` (or a TCP connect when `path` is absent) on `port`
/// (default: the web port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// HTTP path; absent = TCP connect check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Published port to probe (default: the web port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Expected HTTP status (default 200).
    #[serde(default = "default_status")]
    pub expect_status: u16,
    /// How long the app may take to become healthy after `compose up`, in seconds.
    pub timeout_secs: u32,
}

fn default_status() -> u16 {
    200
}

impl CatalogEntry {
    /// The port the health check probes.
    pub fn health_port(&self) -> Option<u16> {
        self.healthcheck.port.or(self.web.as_ref().map(|w| w.port))
    }

    /// All declared published ports (web first) with their protocol.
    pub fn declared_ports(&self) -> Vec<(u16, Proto)> {
        let mut v: Vec<(u16, Proto)> = self.web.iter().map(|w| (w.port, Proto::Tcp)).collect();
        v.extend(self.ports.iter().map(|p| (p.port, p.proto)));
        v
    }

    /// The env variables that are form fields (for the deploy wizard).
    pub fn form_fields(&self) -> impl Iterator<Item = (&EnvSpec, &FieldSpec)> {
        self.env.iter().filter_map(|e| e.field.as_ref().map(|f| (e, f)))
    }
}
