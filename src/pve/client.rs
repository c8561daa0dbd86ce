//! HTTP client for the Proxmox VE API (reqwest + rustls with the ring provider).
//!
//! - Auth: API token (`Authorization: PVEAPIToken=...`) or ticket (cookie + CSRF header on
//!   writes), renewed after [`ClientOptions::ticket_renew_after`] (default 1 h 30 m, before the
//!   2 h expiry) by posting the old ticket as password, falling back to a fresh login.
//! - TLS: SHA-256 pin of the leaf certificate ([`Tls::Fingerprint`], colon or plain hex), a CA
//!   bundle ([`Tls::CaPem`]) or the system roots.
//! - Retries with exponential backoff only for GET (idempotent); writes are sent once.
//! - Errors: the message comes from the body's `message` or the HTTP reason phrase.
//!
//! **Invariant:** secrets (password, token secret, ticket, CSRF token) are never logged and
//! are hidden from every `Debug` output; request logs carry method, path and status only.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::error::Error;
use super::types::*;
use super::upid::Upid;

/// How the client authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// API token: `id` is `user@realm!tokenid`.
    Token {
        /// Token id.
        id: String,
        /// Token secret (UUID).
        secret: String,
    },
    /// Ticket login with a password (needed for root-only operations).
    Ticket {
        /// User, e.g. `root@pam`.
        user: String,
        /// Password.
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token { id, .. } => f.debug_struct("Token").field("id", id).finish_non_exhaustive(),
            Auth::Ticket { user, .. } => f.debug_struct("Ticket").field("user", user).finish_non_exhaustive(),
        }
    }
}

/// How the server certificate is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Pin the SHA-256 of the leaf certificate (hex, colons optional; case-insensitive).
    Fingerprint(String),
    /// Trust this PEM CA bundle (with hostname verification).
    CaPem(String),
    /// Trust the system roots.
    System,
}

/// Connection settings of one Proxmox endpoint.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://host:8006` (a trailing `/api2/json` is accepted).
    pub base_url: String,
    /// Credentials.
    pub auth: Auth,
    /// Certificate verification.
    pub tls: Tls,
    /// Whole-request timeout.
    pub timeout: Duration,
}

/// Tuning knobs with sensible defaults.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Extra attempts for GET requests on transport errors, 502/503/504 and 595/596.
    pub retries: u32,
    /// First retry delay (doubles each attempt).
    pub retry_backoff: Duration,
    /// Renew the ticket once it is older than this (tickets expire after 2 h).
    pub ticket_renew_after: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            retries: 2,
            retry_backoff: Duration::from_millis(250),
            ticket_renew_after: Duration::from_secs(90 * 60),
        }
    }
}

/// Ticket lifetime on the server.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(2 * 3600);

/// Build a reqwest client that verifies against the system CA store, falling back to an
/// empty store when the system has none (a bare Alpine or busybox root): `make()` is called
/// again and the client trusts no public CA, so only pinned endpoints (`Tls::Fingerprint`)
/// and plain HTTP work. Never panics, unlike `reqwest::Client::default()`.
pub fn client_with_system_roots_or_empty(make: impl Fn() -> reqwest::ClientBuilder) -> Result<reqwest::Client, Error> {
    match make().build() {
        Ok(c) => Ok(c),
        Err(e) => {
            tracing::warn!(
                error = %error_chain(&e),
                "no usable system CA store; HTTPS to public names is disabled (pinned Proxmox hosts still work)"
            );
            make()
                .tls_certs_only(Vec::<reqwest::Certificate>::new())
                .build()
                .map_err(|e| Error::Invalid(format!("HTTP client: {}", error_chain(&e))))
        }
    }
}

/// Characters kept literal in a path segment; everything else is percent-encoded (so UPIDs
/// with `:`, `@`, `!` and volids with `/` are one segment).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encode one path segment.
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Parse a certificate fingerprint given as hex with or without `:` (or spaces).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], Error> {
    let clean: String = s.chars().filter(|c| !matches!(c, ':' | ' ' | '-')).collect();
    let bytes = hex::decode(&clean)
        .map_err(|_| Error::Invalid(format!("fingerprint `{s}` is not hex (expected 64 hex digits, colons allowed)")))?;
    bytes
        .try_into()
        .map_err(|_| Error::Invalid(format!("fingerprint `{s}` is not a SHA-256 (expected 32 bytes = 64 hex digits)")))
}

/// Format a fingerprint as uppercase colon hex (the form `GET /nodes` shows).
pub fn format_fingerprint(fp: &[u8]) -> String {
    fp.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// SHA-256 fingerprint (uppercase colon hex) of a DER certificate.
pub fn cert_fingerprint(der: &[u8]) -> String {
    format_fingerprint(&Sha256::digest(der))
}

#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen_mismatch: Mutex<Option<String>>,
}

impl rustls::client::danger::ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let fp: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if fp == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            let seen = format_fingerprint(&fp);
            *self.seen_mismatch.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen.clone());
            Err(rustls::Error::General(format!(
                "certificate fingerprint mismatch: server presented {seen}"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

struct TicketState {
    ticket: String,
    csrf: String,
    obtained: Instant,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    opts: ClientOptions,
    pin: Option<Arc<PinVerifier>>,
    ticket: tokio::sync::Mutex<Option<TicketState>>,
}

/// A Proxmox VE API client for one endpoint. Cheap to clone; clones share connections and
/// the ticket.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(rustls::crypto::ring::default_provider())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

impl Client {
    /// A client with default [`ClientOptions`].
    pub fn new(cfg: ClientConfig) -> Result<Client, Error> {
        Client::with_options(cfg, ClientOptions::default())
    }

    /// A client with explicit options.
    pub fn with_options(cfg: ClientConfig, opts: ClientOptions) -> Result<Client, Error> {
        let trimmed = cfg.base_url.trim_end_matches('/');
        let trimmed = trimmed.strip_suffix("/api2/json").unwrap_or(trimmed);
        let url = reqwest::Url::parse(trimmed).map_err(|e| Error::Invalid(format!("PVE URL `{}`: {e}", cfg.base_url)))?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(Error::Invalid(format!("PVE URL `{}` must be https://host:port", cfg.base_url)));
        }
        match &cfg.auth {
            Auth::Token { id, secret } => {
                if !id.contains('!') || !id.contains('@') || secret.is_empty() {
                    return Err(Error::Invalid(
                        "API token id must be USER@REALM!TOKENID with a non-empty secret".into(),
                    ));
                }
            }
            Auth::Ticket { user, password } => {
                if !user.contains('@') || password.is_empty() {
                    return Err(Error::Invalid("ticket auth needs USER@REALM and a password".into()));
                }
            }
        }
        let provider = provider();
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(opts.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy()
            .user_agent(concat!("proximity/", env!("CARGO_PKG_VERSION")));
        let mut pin = None;
        let tls_cfg = match &cfg.tls {
            Tls::Fingerprint(fp) => {
                let v = Arc::new(PinVerifier {
                    pin: parse_fingerprint(fp)?,
                    provider: provider.clone(),
                    seen_mismatch: Mutex::new(None),
                });
                pin = Some(v.clone());
                Some(
                    rustls::ClientConfig::builder_with_provider(provider.clone())
                        .with_safe_default_protocol_versions()
                        .map_err(|e| Error::Invalid(format!("TLS setup: {e}")))?
                        .dangerous()
                        .with_custom_certificate_verifier(v)
                        .with_no_client_auth(),
                )
            }
            Tls::CaPem(pem) => {
                use rustls_pki_types::pem::PemObject;
                let mut roots = rustls::RootCertStore::empty();
                let mut n = 0;
                for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let cert = cert.map_err(|e| Error::Invalid(format!("CA bundle: {e}")))?;
                    roots.add(cert).map_err(|e| Error::Invalid(format!("CA bundle: {e}")))?;
                    n += 1;
                }
                if n == 0 {
                    return Err(Error::Invalid("CA bundle holds no PEM certificate".into()));
                }
                Some(
                    rustls::ClientConfig::builder_with_provider(provider.clone())
                        .with_safe_default_protocol_versions()
                        .map_err(|e| Error::Invalid(format!("TLS setup: {e}")))?
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            }
            Tls::System => None,
        };
        builder = match tls_cfg {
            Some(mut c) => {
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                builder.tls_backend_preconfigured(c)
            }
            None => builder.tls_backend_rustls(),
        };
        let http = builder
            .build()
            .map_err(|e| Error::Invalid(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: format!("{}/api2/json", url.as_str().trim_end_matches('/')),
                auth: cfg.auth,
                opts,
                pin,
                ticket: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// The API base (`https://host:port/api2/json`).
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The identity used (`user@realm` or `user@realm!token`).
    pub fn identity(&self) -> &str {
        match &self.inner.auth {
            Auth::Token { id, .. } => id,
            Auth::Ticket { user, .. } => user,
        }
    }

    /// True when authenticating with a ticket (root-only operations possible for root@pam).
    pub fn uses_ticket(&self) -> bool {
        matches!(self.inner.auth, Auth::Ticket { .. })
    }

    fn map_transport(&self, e: reqwest::Error) -> Error {
        if let Some(pin) = &self.inner.pin
            && let Some(seen) = pin.seen_mismatch.lock().unwrap_or_else(|e| e.into_inner()).take()
        {
            return Error::Tls {
                message: format!(
                    "TLS certificate of {} does not match the pinned fingerprint {}: the server presented {seen}; if the node certificate was renewed, update the host's fingerprint",
                    self.inner.base,
                    format_fingerprint(&pin.pin)
                ),
                seen: Some(seen),
            };
        }
        let chain = error_chain(&e);
        let lower = chain.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            return Error::Tls {
                message: format!("TLS with {} failed: {chain}", self.inner.base),
                seen: None,
            };
        }
        let message = if e.is_timeout() { format!("timed out ({chain})") } else { chain };
        Error::Transport {
            url: self.inner.base.clone(),
            message,
        }
    }

    async fn login_request(&self, user: &str, password: &str) -> Result<TicketInfo, Error> {
        let form = Params::new().set("username", user).set("password", password);
        let body = self.raw(Method::POST, "/access/ticket", &form, None).await?;
        let info: TicketInfo = decode_data("/access/ticket", body)?;
        if info.need_tfa == Some(true) {
            return Err(Error::Unauthorized {
                message: "the account requires two-factor authentication; use an API token instead".into(),
            });
        }
        Ok(info)
    }

    /// Log in (ticket auth) now, or renew the current ticket if it is older than the renewal
    /// threshold. Does nothing for token auth. Called automatically before requests.
    pub async fn login(&self) -> Result<(), Error> {
        self.ticket_headers(false).await.map(|_| ())
    }

    /// Age of the current ticket, if any (diagnostics and tests).
    pub async fn ticket_age(&self) -> Option<Duration> {
        self.inner.ticket.lock().await.as_ref().map(|t| t.obtained.elapsed())
    }

    /// Returns (ticket, csrf) for ticket auth, logging in or renewing as needed.
    async fn ticket_headers(&self, force_fresh: bool) -> Result<Option<(String, String)>, Error> {
        let Auth::Ticket { user, password } = &self.inner.auth else {
            return Ok(None);
        };
        let mut guard = self.inner.ticket.lock().await;
        if force_fresh {
            *guard = None;
        }
        if let Some(t) = guard.as_ref() {
            let age = t.obtained.elapsed();
            if age < self.inner.opts.ticket_renew_after {
                return Ok(Some((t.ticket.clone(), t.csrf.clone())));
            }
            if age < TICKET_LIFETIME {
                let old = t.ticket.clone();
                match self.login_request(user, &old).await {
                    Ok(info) => {
                        tracing::debug!(user = %user, "PVE ticket renewed");
                        *guard = Some(TicketState {
                            ticket: info.ticket,
                            csrf: info.csrf_token,
                            obtained: Instant::now(),
                        });
                        let t = guard.as_ref().expect("just set");
                        return Ok(Some((t.ticket.clone(), t.csrf.clone())));
                    }
                    Err(e) => tracing::debug!(user = %user, error = %e, "PVE ticket renewal failed; logging in again"),
                }
            }
        }
        let info = self.login_request(user, password).await?;
        tracing::debug!(user = %user, "PVE ticket obtained");
        *guard = Some(TicketState {
            ticket: info.ticket,
            csrf: info.csrf_token,
            obtained: Instant::now(),
        });
        let t = guard.as_ref().expect("just set");
        Ok(Some((t.ticket.clone(), t.csrf.clone())))
    }

    fn auth_headers(&self, method: &Method, ticket: Option<&(String, String)>) -> Result<HeaderMap, Error> {
        let mut h = HeaderMap::new();
        let bad = |_| Error::Invalid("credentials contain characters not allowed in HTTP headers".into());
        match (&self.inner.auth, ticket) {
            (Auth::Token { id, secret }, _) => {
                let mut v = HeaderValue::from_str(&format!("PVEAPIToken={id}={secret}")).map_err(bad)?;
                v.set_sensitive(true);
                h.insert(reqwest::header::AUTHORIZATION, v);
            }
            (Auth::Ticket { .. }, Some((ticket, csrf))) => {
                let mut v = HeaderValue::from_str(&format!("PVEAuthCookie={ticket}")).map_err(bad)?;
                v.set_sensitive(true);
                h.insert(reqwest::header::COOKIE, v);
                if *method != Method::GET {
                    let mut c = HeaderValue::from_str(csrf).map_err(bad)?;
                    c.set_sensitive(true);
                    h.insert("CSRFPreventionToken", c);
                }
            }
            (Auth::Ticket { .. }, None) => {}
        }
        Ok(h)
    }

    /// One HTTP exchange, no retries. Returns the whole JSON body on success.
    async fn raw(&self, method: Method, path: &str, params: &Params, headers: Option<HeaderMap>) -> Result<serde_json::Value, Error> {
        let url = format!("{}{}", self.inner.base, path);
        let mut req = self.inner.http.request(method.clone(), &url);
        if let Some(h) = headers {
            req = req.headers(h);
        }
        if method == Method::GET || method == Method::DELETE {
            if !params.is_empty() {
                req = req.query(&params.0);
            }
        } else {
            req = req.form(&params.0);
        }
        let started = Instant::now();
        let resp = req.send().await.map_err(|e| self.map_transport(e))?;
        let status = resp.status();
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .or_else(|| status.canonical_reason().map(str::to_string))
            .unwrap_or_default();
        let bytes = resp.bytes().await.map_err(|e| self.map_transport(e))?;
        tracing::debug!(%method, path, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "PVE request");
        tracing::trace!(params = ?params, "PVE request parameters (keys only)");
        let body: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return body.ok_or_else(|| Error::Decode {
                path: path.into(),
                message: format!("response is not JSON ({} bytes)", bytes.len()),
            });
        }
        Err(error_from_reply(status.as_u16(), &reason, &body.unwrap_or(serde_json::Value::Null)))
    }

    /// Authenticated request with retries for GET and one re-login on 401 (ticket auth).
    /// Returns the whole JSON body (`{"data":..., "total":...}`).
    pub async fn request(&self, method: Method, path: &str, params: &Params) -> Result<serde_json::Value, Error> {
        let attempts = if method == Method::GET { 1 + self.inner.opts.retries } else { 1 };
        let mut relogged = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ticket = self.ticket_headers(false).await?;
            let headers = self.auth_headers(&method, ticket.as_ref())?;
            match self.raw(method.clone(), path, params, Some(headers)).await {
                Ok(v) => return Ok(v),
                Err(Error::Unauthorized { .. }) if ticket.is_some() && !relogged => {
                    relogged = true;
                    tracing::debug!(path, "PVE ticket refused; logging in again");
                    self.ticket_headers(true).await?;
                    attempt -= 1;
                }
                Err(e) if attempt < attempts && e.is_retryable() && !matches!(e, Error::Tls { .. }) => {
                    let delay = self.inner.opts.retry_backoff.saturating_mul(1 << (attempt - 1).min(6));
                    tracing::debug!(path, attempt, error = %e, delay_ms = delay.as_millis() as u64, "PVE GET failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, params: &Params) -> Result<T, Error> {
        let body = self.request(Method::GET, path, params).await?;
        decode_data(path, body)
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, params: &Params) -> Result<T, Error> {
        let body = self.request(Method::POST, path, params).await?;
        decode_data(path, body)
    }

    async fn put<T: DeserializeOwned>(&self, path: &str, params: &Params) -> Result<T, Error> {
        let body = self.request(Method::PUT, path, params).await?;
        decode_data(path, body)
    }

    async fn delete<T: DeserializeOwned>(&self, path: &str, params: &Params) -> Result<T, Error> {
        let body = self.request(Method::DELETE, path, params).await?;
        decode_data(path, body)
    }

    // ----- endpoints -----

    /// `GET /version`.
    pub async fn version(&self) -> Result<Version, Error> {
        self.get("/version", &Params::new()).await
    }

    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, Error> {
        self.get("/nodes", &Params::new()).await
    }

    /// `GET /nodes/{node}/status`.
    pub async fn node_status(&self, node: &str) -> Result<NodeStatus, Error> {
        self.get(&format!("{}/status", node_path(node)), &Params::new()).await
    }

    /// `GET /cluster/resources[?type=vm|storage|node]`.
    pub async fn cluster_resources(&self, kind: Option<&str>) -> Result<Vec<ClusterResource>, Error> {
        self.get("/cluster/resources", &Params::new().opt("type", kind)).await
    }

    /// `GET /cluster/nextid`: the next free vmid (a hint; creation can still race).
    pub async fn next_id(&self) -> Result<u32, Error> {
        let v: serde_json::Value = self.get("/cluster/nextid", &Params::new()).await?;
        super::perl::value_u64(&v)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| Error::Decode {
                path: "/cluster/nextid".into(),
                message: format!("expected a vmid, got {v}"),
            })
    }

    /// `GET /cluster/nextid?vmid=N`: true when `vmid` is free.
    pub async fn vmid_is_free(&self, vmid: u32) -> Result<bool, Error> {
        match self
            .get::<serde_json::Value>("/cluster/nextid", &Params::new().set("vmid", vmid))
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::BadRequest { errors, .. }) if errors.contains_key("vmid") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /nodes/{node}/lxc`.
    pub async fn lxc_list(&self, node: &str) -> Result<Vec<LxcSummary>, Error> {
        self.get(&format!("{}/lxc", node_path(node)), &Params::new()).await
    }

    /// `POST /nodes/{node}/lxc`: create (or restore) a container; returns the task.
    pub async fn lxc_create(&self, node: &str, req: &CreateLxc) -> Result<Upid, Error> {
        if req.vmid < 100 {
            return Err(Error::Invalid(format!("vmid {} is below 100", req.vmid)));
        }
        self.post(&format!("{}/lxc", node_path(node)), &req.to_params()).await
    }

    /// `GET .../lxc/{vmid}/status/current`.
    pub async fn lxc_status(&self, node: &str, vmid: u32) -> Result<LxcStatus, Error> {
        self.get(&format!("{}/status/current", lxc_path(node, vmid)), &Params::new()).await
    }

    /// `POST .../status/start`.
    pub async fn lxc_start(&self, node: &str, vmid: u32) -> Result<Upid, Error> {
        self.post(&format!("{}/status/start", lxc_path(node, vmid)), &Params::new()).await
    }

    /// `POST .../status/stop` (immediate).
    pub async fn lxc_stop(&self, node: &str, vmid: u32) -> Result<Upid, Error> {
        self.post(&format!("{}/status/stop", lxc_path(node, vmid)), &Params::new()).await
    }

    /// `POST .../status/shutdown` (clean; `force_stop` kills after `timeout_secs`).
    pub async fn lxc_shutdown(&self, node: &str, vmid: u32, timeout_secs: Option<u32>, force_stop: bool) -> Result<Upid, Error> {
        let p = Params::new().opt("timeout", timeout_secs);
        let p = if force_stop { p.flag("forceStop", true) } else { p };
        self.post(&format!("{}/status/shutdown", lxc_path(node, vmid)), &p).await
    }

    /// `POST .../status/reboot`.
    pub async fn lxc_reboot(&self, node: &str, vmid: u32) -> Result<Upid, Error> {
        self.post(&format!("{}/status/reboot", lxc_path(node, vmid)), &Params::new()).await
    }

    /// `DELETE /nodes/{node}/lxc/{vmid}` with options in the query string.
    pub async fn lxc_delete(&self, node: &str, vmid: u32, opts: &DeleteLxc) -> Result<Upid, Error> {
        self.delete(&lxc_path(node, vmid), &opts.to_params()).await
    }

    /// `GET .../config`.
    pub async fn lxc_config(&self, node: &str, vmid: u32) -> Result<LxcConfig, Error> {
        self.get(&format!("{}/config", lxc_path(node, vmid)), &Params::new()).await
    }

    /// `PUT .../config` (synchronous): set `changes`, remove `delete` keys, optionally guarded
    /// by `digest`.
    pub async fn lxc_set_config(
        &self,
        node: &str,
        vmid: u32,
        changes: &Params,
        delete: &[&str],
        digest: Option<&str>,
    ) -> Result<(), Error> {
        let mut p = changes.clone();
        if !delete.is_empty() {
            p = p.set("delete", delete.join(","));
        }
        p = p.opt("digest", digest);
        if p.is_empty() {
            return Ok(());
        }
        let _: serde_json::Value = self.put(&format!("{}/config", lxc_path(node, vmid)), &p).await?;
        Ok(())
    }

    /// `POST .../clone`.
    pub async fn lxc_clone(&self, node: &str, vmid: u32, req: &CloneLxc) -> Result<Upid, Error> {
        self.post(&format!("{}/clone", lxc_path(node, vmid)), &req.to_params()).await
    }

    /// `GET .../rrddata?timeframe=hour|day|week|month|year[&cf=AVERAGE|MAX]`.
    pub async fn lxc_rrddata(&self, node: &str, vmid: u32, timeframe: &str, cf: Option<&str>) -> Result<Vec<RrdPoint>, Error> {
        if !matches!(timeframe, "hour" | "day" | "week" | "month" | "year") {
            return Err(Error::Invalid(format!(
                "timeframe `{timeframe}` must be hour, day, week, month or year"
            )));
        }
        self.get(
            &format!("{}/rrddata", lxc_path(node, vmid)),
            &Params::new().set("timeframe", timeframe).opt("cf", cf),
        )
        .await
    }

    /// `GET .../interfaces` (addresses of a running container).
    pub async fn lxc_interfaces(&self, node: &str, vmid: u32) -> Result<Vec<LxcInterface>, Error> {
        self.get(&format!("{}/interfaces", lxc_path(node, vmid)), &Params::new()).await
    }

    /// `POST /nodes/{node}/vzdump`. `None` when Proxmox answered `OK` (no guest on that node).
    pub async fn vzdump(&self, node: &str, req: &Vzdump) -> Result<Option<Upid>, Error> {
        if req.vmids.is_empty() {
            return Err(Error::Invalid("vzdump needs at least one vmid".into()));
        }
        let v: serde_json::Value = self.post(&format!("{}/vzdump", node_path(node)), &req.to_params()).await?;
        upid_or_none("/vzdump", v)
    }

    /// `GET /nodes/{node}/storage[?content=...]`.
    pub async fn storages(&self, node: &str, content: Option<&str>) -> Result<Vec<StorageInfo>, Error> {
        self.get(&format!("{}/storage", node_path(node)), &Params::new().opt("content", content))
            .await
    }

    /// `GET /nodes/{node}/storage/{storage}/content[?content=..][&vmid=..]`.
    pub async fn storage_content(
        &self,
        node: &str,
        storage: &str,
        content: Option<&str>,
        vmid: Option<u32>,
    ) -> Result<Vec<StorageContent>, Error> {
        self.get(
            &format!("{}/storage/{}/content", node_path(node), encode_segment(storage)),
            &Params::new().opt("content", content).opt("vmid", vmid),
        )
        .await
    }

    /// `DELETE /nodes/{node}/storage/{storage}/content/{volume}`: a task, or `None` when it
    /// finished at once.
    pub async fn storage_delete(&self, node: &str, storage: &str, volume: &str) -> Result<Option<Upid>, Error> {
        let path = format!(
            "{}/storage/{}/content/{}",
            node_path(node),
            encode_segment(storage),
            encode_segment(volume)
        );
        let v: serde_json::Value = self.delete(&path, &Params::new()).await?;
        upid_or_none(&path, v)
    }

    /// `GET /nodes/{node}/tasks/{upid}/status` (asked of the node inside the UPID).
    pub async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, Error> {
        self.get(&format!("{}/status", task_path(upid)), &Params::new()).await
    }

    /// `GET /nodes/{node}/tasks/{upid}/log?start=&limit=`: lines and the total line count.
    pub async fn task_log(&self, upid: &Upid, start: u64, limit: u64) -> Result<(Vec<TaskLogLine>, u64), Error> {
        let path = format!("{}/log", task_path(upid));
        let body = self
            .request(Method::GET, &path, &Params::new().set("start", start).set("limit", limit))
            .await?;
        let total = body.get("total").and_then(super::perl::value_u64);
        let lines: Vec<TaskLogLine> = decode_data(&path, body)?;
        let total = total.unwrap_or(start + lines.len() as u64);
        Ok((lines, total))
    }

    /// `GET /nodes/{node}/aplinfo`.
    pub async fn aplinfo(&self, node: &str) -> Result<Vec<AplInfo>, Error> {
        self.get(&format!("{}/aplinfo", node_path(node)), &Params::new()).await
    }

    /// `POST /nodes/{node}/aplinfo`: download a template into `storage`.
    pub async fn aplinfo_download(&self, node: &str, storage: &str, template: &str) -> Result<Upid, Error> {
        self.post(
            &format!("{}/aplinfo", node_path(node)),
            &Params::new().set("storage", storage).set("template", template),
        )
        .await
    }

    /// `GET /nodes/{node}/network` with staged changes.
    pub async fn network(&self, node: &str) -> Result<NetworkState, Error> {
        let path = format!("{}/network", node_path(node));
        let body = self.request(Method::GET, &path, &Params::new()).await?;
        let changes = body.get("changes").and_then(|c| c.as_str()).map(str::to_string);
        let ifaces: Vec<NetworkIface> = decode_data(&path, body)?;
        Ok(NetworkState { ifaces, changes })
    }

    /// `POST /nodes/{node}/network`: stage an interface (apply with [`Client::network_apply`]).
    pub async fn network_create(&self, node: &str, req: &NetworkCreate) -> Result<(), Error> {
        let _: serde_json::Value = self.post(&format!("{}/network", node_path(node)), &req.to_params()).await?;
        Ok(())
    }

    /// `PUT /nodes/{node}/network`: apply staged changes (`srvreload` task).
    pub async fn network_apply(&self, node: &str) -> Result<Upid, Error> {
        self.put(&format!("{}/network", node_path(node)), &Params::new()).await
    }

    /// `DELETE /nodes/{node}/network/{iface}`: stage the removal of an interface (apply
    /// with [`Client::network_apply`]).
    pub async fn network_delete_iface(&self, node: &str, iface: &str) -> Result<(), Error> {
        let path = format!("{}/network/{}", node_path(node), encode_segment(iface));
        let _: serde_json::Value = self.delete(&path, &Params::new()).await?;
        Ok(())
    }

    /// `POST /access/users/{userid}/token/{tokenid}`: create an API token; the secret is in
    /// the reply only.
    pub async fn token_create(&self, userid: &str, tokenid: &str, privsep: bool, comment: &str) -> Result<NewToken, Error> {
        let params = Params::new().flag("privsep", privsep).set("comment", comment);
        self.post(&token_path(userid, tokenid), &params).await
    }

    /// `GET /access/users/{userid}/token/{tokenid}`: false when there is no such token.
    pub async fn token_exists(&self, userid: &str, tokenid: &str) -> Result<bool, Error> {
        match self.get::<serde_json::Value>(&token_path(userid, tokenid), &Params::new()).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /access/users/{userid}/token/{tokenid}`.
    pub async fn token_delete(&self, userid: &str, tokenid: &str) -> Result<(), Error> {
        let _: serde_json::Value = self.delete(&token_path(userid, tokenid), &Params::new()).await?;
        Ok(())
    }

    /// `DELETE /nodes/{node}/network`: drop staged changes.
    pub async fn network_revert(&self, node: &str) -> Result<(), Error> {
        let _: serde_json::Value = self.delete(&format!("{}/network", node_path(node)), &Params::new()).await?;
        Ok(())
    }
}

fn token_path(userid: &str, tokenid: &str) -> String {
    format!("/access/users/{}/token/{}", encode_segment(userid), encode_segment(tokenid))
}

fn node_path(node: &str) -> String {
    format!("/nodes/{}", encode_segment(node))
}

fn lxc_path(node: &str, vmid: u32) -> String {
    format!("{}/lxc/{vmid}", node_path(node))
}

fn task_path(upid: &Upid) -> String {
    format!("{}/tasks/{}", node_path(&upid.node), encode_segment(upid.as_str()))
}

fn upid_or_none(path: &str, v: serde_json::Value) -> Result<Option<Upid>, Error> {
    match v.as_str() {
        None => Ok(None),
        Some("OK") | Some("") => Ok(None),
        Some(s) => Upid::parse(s).map(Some).map_err(|e| Error::Decode {
            path: path.into(),
            message: e.to_string(),
        }),
    }
}

/// The error for a non-success reply: the message is the body's `message` (PVE >= 8.3) or the
/// HTTP reason phrase; `errors` carries parameter errors.
pub fn error_from_reply(status: u16, reason: &str, body: &serde_json::Value) -> Error {
    let message = body
        .get("message")
        .and_then(|m| m.as_str())
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| reason.trim().to_string());
    let mut errors = std::collections::BTreeMap::new();
    if let Some(map) = body.get("errors").and_then(|e| e.as_object()) {
        for (k, v) in map {
            errors.insert(
                k.clone(),
                super::perl::value_string(v).unwrap_or_else(|| v.to_string()).trim().to_string(),
            );
        }
    }
    Error::from_status(status, &message, errors)
}

/// Decode the `data` member of a Proxmox reply (null decodes as `()`/`Value::Null`).
pub fn decode_data<T: DeserializeOwned>(path: &str, mut body: serde_json::Value) -> Result<T, Error> {
    let data = body.get_mut("data").map(serde_json::Value::take).unwrap_or(serde_json::Value::Null);
    serde_path_to_error::deserialize(data).map_err(|e| Error::Decode {
        path: path.into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        let colon = "80:D4:F2:DF:64:95:CD:8D:A0:82:82:AC:48:BA:C0:7A:1B:6B:87:8B:FE:B9:83:1C:95:4E:79:58:77:99:69:F5";
        let a = parse_fingerprint(colon).unwrap();
        let b = parse_fingerprint(&colon.replace(':', "").to_lowercase()).unwrap();
        assert_eq!(a, b);
        assert_eq!(format_fingerprint(&a), colon);
        assert!(parse_fingerprint("abc").is_err());
        assert!(parse_fingerprint("zz:zz").is_err());
        assert!(parse_fingerprint(&"ab".repeat(31)).is_err());
    }

    #[test]
    fn segments_encode_upids_and_volids() {
        assert_eq!(
            encode_segment("UPID:pve1:0000A1B2:00C0FFEE:6700AAAA:vzstart:105:root@pam!x:"),
            "UPID%3Apve1%3A0000A1B2%3A00C0FFEE%3A6700AAAA%3Avzstart%3A105%3Aroot%40pam%21x%3A"
        );
        assert_eq!(encode_segment("local:backup/vzdump.tar.zst"), "local%3Abackup%2Fvzdump.tar.zst");
        assert_eq!(encode_segment("pve-1"), "pve-1");
    }

    #[test]
    fn config_validation_and_debug_hides_secrets() {
        let cfg = ClientConfig {
            base_url: "https://127.0.0.1:8006/api2/json/".into(),
            auth: Auth::Token {
                id: "root@pam!p".into(),
                secret: "very-secret-uuid".into(),
            },
            tls: Tls::Fingerprint("AB".repeat(32)),
            timeout: Duration::from_secs(5),
        };
        let c = Client::new(cfg.clone()).unwrap();
        assert_eq!(c.base_url(), "https://127.0.0.1:8006/api2/json");
        assert!(!format!("{c:?} {cfg:?}").contains("very-secret-uuid"));
        let mut bad = cfg.clone();
        bad.base_url = "ftp://x".into();
        assert!(Client::new(bad).is_err());
        let mut bad = cfg.clone();
        bad.auth = Auth::Token {
            id: "nobang".into(),
            secret: "s".into(),
        };
        assert!(Client::new(bad).is_err());
        let mut bad = cfg;
        bad.tls = Tls::CaPem("not pem".into());
        assert!(Client::new(bad).is_err());
    }

    #[test]
    fn upid_or_ok() {
        assert_eq!(upid_or_none("/x", serde_json::json!("OK")).unwrap(), None);
        assert_eq!(upid_or_none("/x", serde_json::Value::Null).unwrap(), None);
        assert!(
            upid_or_none("/x", serde_json::json!("UPID:pve1:00000001:00000002:00000003:vzdump:105:root@pam:"))
                .unwrap()
                .is_some()
        );
        assert!(upid_or_none("/x", serde_json::json!("garbage")).is_err());
    }
}
