//! The appliance's own certificate authority and per-name leaf certificates.
//!
//! - On first start an ECDSA P-256 CA is created with rcgen; its certificate and its private
//!   key — sealed with the appliance [`SecretBox`] — are stored in redb (table `tls_ca`). Later
//!   starts load it, so browsers that installed the CA keep trusting the appliance.
//! - Leaf certificates are issued on demand, at TLS handshake time, for the SNI name the
//!   client asked for (names inside the local domain only), cached in memory and re-issued
//!   when less than a third of their lifetime is left. Leaves are not stored: the CA key is
//!   enough to make new ones after a restart.
//! - [`SniResolver`] implements rustls' `ResolvesServerCert`; the reverse proxy (pingora,
//!   `TlsSettings::set_cert_resolver`) and the management API (tokio-rustls, through
//!   [`CertAuthority::api_server_config`]) both use it.
//!
//! Clients trust the appliance by installing the CA certificate ([`CertAuthority::ca_pem`],
//! [`CertAuthority::ca_der`]); its SHA-256 fingerprint is shown so users can compare it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use time::{Duration, OffsetDateTime};

use crate::secrets::SecretBox;
use crate::store::{Store, StoreError, Table};

/// Stored CA: table `tls_ca`, key [`CA_KEY`].
pub const CA_TABLE: Table<CaRecord> = Table::new("tls_ca");
/// Key of the one CA record.
pub const CA_KEY: &str = "ca";

/// Lifetime of the CA certificate.
const CA_VALIDITY_DAYS: i64 = 3650;
/// Lifetime of leaf certificates (below the 398-day limit browsers enforce).
const LEAF_VALIDITY_DAYS: i64 = 90;
/// Leaves are re-issued when less than this is left.
const LEAF_RENEW_BEFORE_DAYS: i64 = 30;
/// Most leaf certificates kept in memory; the oldest are dropped beyond it.
const MAX_CACHED_LEAVES: usize = 4096;

/// The CA as stored in redb. The private key is sealed (never stored in clear).
#[derive(Clone, Serialize, Deserialize)]
pub struct CaRecord {
    /// CA certificate, PEM.
    pub cert_pem: String,
    /// PKCS#8 private key PEM, sealed with the appliance key (`v1:...`).
    pub key_sealed: String,
    /// Subject common name (the issuer name of every leaf).
    pub common_name: String,
    /// Unix seconds.
    pub created_at: i64,
}

impl std::fmt::Debug for CaRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaRecord")
            .field("common_name", &self.common_name)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Failures of the certificate authority.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sealed CA key cannot be opened.
    #[error(
        "the stored CA key cannot be decrypted ({0}); restore the matching secret.key or remove the `tls_ca` record to create a new CA"
    )]
    Secret(#[from] crate::secrets::SecretError),
    /// Certificate generation or parsing failed.
    #[error("certificate error: {0}")]
    Cert(String),
    /// A name outside what this appliance issues certificates for.
    #[error("no certificate for `{0}`: only names inside the local domain are served")]
    NameNotAllowed(String),
}

impl From<rcgen::Error> for TlsError {
    fn from(e: rcgen::Error) -> Self {
        TlsError::Cert(e.to_string())
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Cert(e.to_string())
    }
}

struct CachedLeaf {
    key: Arc<CertifiedKey>,
    renew_at: OffsetDateTime,
    issued_at: OffsetDateTime,
}

struct Inner {
    domain: String,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    leaves: Mutex<HashMap<String, CachedLeaf>>,
}

/// The appliance CA: loads or creates the CA, issues and caches leaf certificates.
/// Cheap to clone (shared cache).
#[derive(Clone)]
pub struct CertAuthority {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("domain", &self.inner.domain)
            .field("fingerprint", &self.fingerprint_sha256())
            .finish_non_exhaustive()
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Proximity appliance");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Process-wide authorities by database path, so the proxy and the API share one leaf cache.
fn registry() -> &'static Mutex<HashMap<PathBuf, CertAuthority>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, CertAuthority>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl CertAuthority {
    /// The authority of a daemon context: loaded (or created) once per database and shared
    /// by every caller in the process (the proxy and the API use the same instance).
    pub fn for_context(ctx: &crate::supervisor::Context) -> Result<CertAuthority, TlsError> {
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        let key = ctx.store.path().to_path_buf();
        if let Some(ca) = reg.get(&key)
            && ca.domain() == ctx.config.network.domain
        {
            return Ok(ca.clone());
        }
        let ca = CertAuthority::load_or_create(&ctx.store, &ctx.secrets, &ctx.config.network.domain)?;
        reg.insert(key, ca.clone());
        Ok(ca)
    }

    /// Load the CA from `store`, creating (and storing) a new one on first use. Creation
    /// happens inside one write transaction, so concurrent callers end up with the same CA.
    pub fn load_or_create(store: &Store, secrets: &SecretBox, domain: &str) -> Result<CertAuthority, TlsError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let record = match store.get(CA_TABLE, CA_KEY)? {
            Some(r) => r,
            None => store.write(|tx| -> Result<CaRecord, TlsError> {
                if let Some(r) = tx.get(CA_TABLE, CA_KEY)? {
                    return Ok(r);
                }
                let r = Self::new_ca_record(secrets, &domain)?;
                tx.put(CA_TABLE, CA_KEY, &r)?;
                tracing::info!(common_name = %r.common_name, "created the appliance certificate authority");
                Ok(r)
            })?,
        };
        Self::from_record(&record, secrets, &domain)
    }

    fn new_ca_record(secrets: &SecretBox, domain: &str) -> Result<CaRecord, TlsError> {
        let key = KeyPair::generate()?;
        let suffix: [u8; 3] = rand::random();
        let common_name = format!("Proximity CA {domain} {}", hex::encode(suffix));
        let mut params = ca_params(&common_name);
        let t = now();
        params.not_before = t - Duration::hours(1);
        params.not_after = t + Duration::days(CA_VALIDITY_DAYS);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
        let cert = params.self_signed(&key)?;
        Ok(CaRecord {
            cert_pem: cert.pem(),
            key_sealed: secrets.seal_str(&key.serialize_pem()),
            common_name,
            created_at: t.unix_timestamp(),
        })
    }

    /// Build from a stored record (opens the sealed key).
    pub fn from_record(record: &CaRecord, secrets: &SecretBox, domain: &str) -> Result<CertAuthority, TlsError> {
        let key_pem = secrets.open_str(&record.key_sealed)?;
        let key = KeyPair::from_pem(&key_pem)?;
        let ca_der = pem_to_der(&record.cert_pem).ok_or_else(|| TlsError::Cert("stored CA certificate is not PEM".into()))?;
        // The issuer needs only the subject name, key usages and key-id method; they are
        // rebuilt from the stored common name exactly as at creation.
        let issuer = Issuer::new(ca_params(&record.common_name), key);
        Ok(CertAuthority {
            inner: Arc::new(Inner {
                domain: domain.trim_end_matches('.').to_ascii_lowercase(),
                ca_pem: record.cert_pem.clone(),
                ca_der: CertificateDer::from(ca_der),
                issuer,
                leaves: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The local domain (`prox.local`).
    pub fn domain(&self) -> &str {
        &self.inner.domain
    }

    /// CA certificate, PEM (for download and `curl --cacert`).
    pub fn ca_pem(&self) -> &str {
        &self.inner.ca_pem
    }

    /// CA certificate, DER (`application/pkix-cert`, `.crt`/`.cer` download).
    pub fn ca_der(&self) -> &[u8] {
        self.inner.ca_der.as_ref()
    }

    /// SHA-256 of the CA certificate DER, upper-case hex pairs joined by `:`.
    pub fn fingerprint_sha256(&self) -> String {
        fingerprint(self.ca_der())
    }

    /// Is `name` one this authority serves (the domain itself or a name inside it)?
    pub fn allows(&self, name: &str) -> bool {
        let d = &self.inner.domain;
        let inside =
            name == d || (name.len() > d.len() + 1 && name.ends_with(d.as_str()) && name.as_bytes()[name.len() - d.len() - 1] == b'.');
        inside && crate::validate::dns_name(name).is_ok()
    }

    /// The leaf for one DNS name inside the domain, from the cache or newly issued.
    pub fn leaf_for(&self, name: &str) -> Result<Arc<CertifiedKey>, TlsError> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if !self.allows(&name) {
            return Err(TlsError::NameNotAllowed(name));
        }
        self.cached(&name, || Ok(vec![SanType::DnsName(name.clone().try_into()?)]), &name)
    }

    /// One certificate for several names and addresses (the management API). `cache_key`
    /// identifies it in the cache. Names are not restricted to the domain.
    pub fn leaf_for_names(&self, cache_key: &str, dns: &[String], ips: &[IpAddr]) -> Result<Arc<CertifiedKey>, TlsError> {
        let cn = dns.first().cloned().unwrap_or_else(|| format!("proximity.{}", self.inner.domain));
        self.cached(
            cache_key,
            || {
                let mut sans = Vec::new();
                for d in dns {
                    sans.push(SanType::DnsName(d.clone().try_into()?));
                }
                sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
                Ok(sans)
            },
            &cn,
        )
    }

    fn cached(&self, key: &str, sans: impl FnOnce() -> Result<Vec<SanType>, TlsError>, cn: &str) -> Result<Arc<CertifiedKey>, TlsError> {
        let t = now();
        {
            let cache = self.inner.leaves.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.get(key)
                && c.renew_at > t
            {
                return Ok(c.key.clone());
            }
        }
        let sans = sans()?;
        let (ck, not_after) = self.issue(sans, cn)?;
        let mut cache = self.inner.leaves.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED_LEAVES
            && let Some(oldest) = cache.iter().min_by_key(|(_, v)| v.issued_at).map(|(k, _)| k.clone())
        {
            cache.remove(&oldest);
        }
        cache.insert(
            key.to_string(),
            CachedLeaf {
                key: ck.clone(),
                renew_at: not_after - Duration::days(LEAF_RENEW_BEFORE_DAYS),
                issued_at: t,
            },
        );
        tracing::debug!(name = %key, "issued leaf certificate");
        Ok(ck)
    }

    fn issue(&self, sans: Vec<SanType>, cn: &str) -> Result<(Arc<CertifiedKey>, OffsetDateTime), TlsError> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.subject_alt_names = sans;
        let t = now();
        p.not_before = t - Duration::hours(1);
        p.not_after = t + Duration::days(LEAF_VALIDITY_DAYS);
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.inner.issuer)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = rustls::crypto::ring::sign::any_supported_type(&der)?;
        let chain = vec![cert.der().clone(), self.inner.ca_der.clone()];
        Ok((Arc::new(CertifiedKey::new(chain, signer)), p.not_after))
    }

    /// Number of cached leaf certificates (metrics, tests).
    pub fn cached_leaves(&self) -> usize {
        self.inner.leaves.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A resolver for the reverse proxy: a leaf per SNI name inside the domain;
    /// `proximity.<domain>` when there is no SNI or the name is outside the domain.
    pub fn proxy_resolver(&self) -> Arc<SniResolver> {
        Arc::new(SniResolver {
            ca: self.clone(),
            mode: Mode::PerName,
        })
    }

    /// A resolver for the management API: one certificate for `proximity.<domain>`,
    /// `localhost`, 127.0.0.1, ::1 and the given listen addresses (unspecified addresses
    /// are skipped); names inside the domain other than these still get their own leaf.
    pub fn api_resolver(&self, listen: &[SocketAddr]) -> Arc<SniResolver> {
        let mut dns = vec![format!("proximity.{}", self.inner.domain), "localhost".to_string()];
        dns.dedup();
        let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)];
        for a in listen {
            if !a.ip().is_unspecified() && !ips.contains(&a.ip()) {
                ips.push(a.ip());
            }
        }
        Arc::new(SniResolver {
            ca: self.clone(),
            mode: Mode::Fixed { dns, ips },
        })
    }

    /// A rustls server configuration for the reverse proxy (tokio-rustls), ALPN `h2` and
    /// `http/1.1`, certificates from [`CertAuthority::proxy_resolver`].
    pub fn proxy_server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        server_config(self.proxy_resolver())
    }

    /// A rustls server configuration for the management API (tokio-rustls), ALPN `h2` and
    /// `http/1.1`, certificates from [`CertAuthority::api_resolver`].
    pub fn api_server_config(&self, listen: &[SocketAddr]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        server_config(self.api_resolver(listen))
    }
}

/// A rustls server configuration (ring, safe default versions, ALPN `h2` and `http/1.1`)
/// over `resolver`; one certificate is issued now so a broken CA fails start-up instead of
/// every handshake.
fn server_config(resolver: Arc<SniResolver>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    resolver.default_leaf()?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[derive(Debug, Clone)]
enum Mode {
    PerName,
    Fixed { dns: Vec<String>, ips: Vec<IpAddr> },
}

/// rustls certificate resolver over a [`CertAuthority`] (see its `*_resolver` constructors).
pub struct SniResolver {
    ca: CertAuthority,
    mode: Mode,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver").field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl SniResolver {
    /// The certificate used without SNI or for names outside the domain.
    pub fn default_leaf(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        match &self.mode {
            Mode::PerName => self.ca.leaf_for(&format!("proximity.{}", self.ca.domain())),
            Mode::Fixed { dns, ips } => self.ca.leaf_for_names("\0api", dns, ips),
        }
    }

    /// The certificate for an optional SNI name.
    pub fn resolve_name(&self, sni: Option<&str>) -> Result<Arc<CertifiedKey>, TlsError> {
        let name = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase());
        match (&self.mode, name) {
            (Mode::Fixed { dns, .. }, Some(n)) if dns.contains(&n) => self.default_leaf(),
            (_, Some(n)) if self.ca.allows(&n) => self.ca.leaf_for(&n),
            _ => self.default_leaf(),
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match self.resolve_name(hello.server_name()) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(sni = ?hello.server_name(), error = %e, "no certificate for TLS handshake");
                None
            }
        }
    }
}

/// Upper-case colon-separated SHA-256 of `der`.
pub fn fingerprint(der: &[u8]) -> String {
    let d = sha2::Sha256::digest(der);
    d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// First `CERTIFICATE` block of a PEM text, as DER.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let b64: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        (dir, s)
    }

    fn verify(ca: &CertAuthority, ck: &CertifiedKey, name: &str) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier as _;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.ca_der().to_vec())).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let sn = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        v.verify_server_cert(&ck.cert[0], &ck.cert[1..], &sn, &[], rustls_pki_types::UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn ca_is_created_once_and_reloaded_with_the_same_key() {
        let (_d, s) = store();
        let sb = SecretBox::ephemeral();
        let a = CertAuthority::load_or_create(&s, &sb, "prox.local").unwrap();
        let b = CertAuthority::load_or_create(&s, &sb, "prox.local").unwrap();
        assert_eq!(a.ca_pem(), b.ca_pem());
        assert_eq!(a.fingerprint_sha256(), b.fingerprint_sha256());
        assert_eq!(a.fingerprint_sha256().len(), 32 * 3 - 1);
        // The key is sealed, not stored in clear.
        let rec = s.get(CA_TABLE, CA_KEY).unwrap().unwrap();
        assert!(rec.key_sealed.starts_with("v1:"));
        assert!(!rec.key_sealed.contains("PRIVATE KEY"));
        // A leaf issued by the reloaded CA verifies against the original CA certificate.
        let leaf = b.leaf_for("app.prox.local").unwrap();
        verify(&a, &leaf, "app.prox.local").unwrap();
    }

    #[test]
    fn wrong_secret_key_is_a_clear_error() {
        let (_d, s) = store();
        CertAuthority::load_or_create(&s, &SecretBox::ephemeral(), "prox.local").unwrap();
        let e = CertAuthority::load_or_create(&s, &SecretBox::ephemeral(), "prox.local").unwrap_err();
        assert!(e.to_string().contains("cannot be decrypted"), "{e}");
    }

    #[test]
    fn leaves_are_per_name_cached_and_verify() {
        let (_d, s) = store();
        let ca = CertAuthority::load_or_create(&s, &SecretBox::ephemeral(), "prox.local").unwrap();
        let a1 = ca.leaf_for("nginx-01.prox.local").unwrap();
        let a2 = ca.leaf_for("NGINX-01.prox.local.").unwrap();
        assert!(Arc::ptr_eq(&a1, &a2), "cached");
        verify(&ca, &a1, "nginx-01.prox.local").unwrap();
        assert!(verify(&ca, &a1, "other.prox.local").is_err(), "name mismatch must fail");
        let b = ca.leaf_for("other.prox.local").unwrap();
        verify(&ca, &b, "other.prox.local").unwrap();
        assert_eq!(ca.cached_leaves(), 2);
    }

    #[test]
    fn names_outside_the_domain_are_refused() {
        let (_d, s) = store();
        let ca = CertAuthority::load_or_create(&s, &SecretBox::ephemeral(), "prox.local").unwrap();
        for bad in ["example.com", "evilprox.local", "a..prox.local", "-x.prox.local", ""] {
            assert!(matches!(ca.leaf_for(bad), Err(TlsError::NameNotAllowed(_))), "{bad}");
        }
        assert!(ca.allows("prox.local"));
        // The proxy resolver falls back to proximity.<domain>.
        let r = ca.proxy_resolver();
        let k = r.resolve_name(Some("example.com")).unwrap();
        verify(&ca, &k, "proximity.prox.local").unwrap();
        let k = r.resolve_name(None).unwrap();
        verify(&ca, &k, "proximity.prox.local").unwrap();
    }

    #[test]
    fn api_certificate_covers_names_and_addresses() {
        let (_d, s) = store();
        let ca = CertAuthority::load_or_create(&s, &SecretBox::ephemeral(), "prox.local").unwrap();
        let r = ca.api_resolver(&["192.0.2.7:8443".parse().unwrap(), "0.0.0.0:8443".parse().unwrap()]);
        let k = r.resolve_name(None).unwrap();
        for n in ["proximity.prox.local", "localhost", "127.0.0.1", "192.0.2.7"] {
            verify(&ca, &k, n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        let cfg = ca.api_server_config(&[]).unwrap();
        assert_eq!(cfg.alpn_protocols[0], b"h2");
    }

    #[test]
    fn expired_leaves_are_renewed() {
        let (_d, s) = store();
        let ca = CertAuthority::load_or_create(&s, &SecretBox::ephemeral(), "prox.local").unwrap();
        let a = ca.leaf_for("x.prox.local").unwrap();
        ca.inner.leaves.lock().unwrap().get_mut("x.prox.local").unwrap().renew_at = now() - Duration::seconds(1);
        let b = ca.leaf_for("x.prox.local").unwrap();
        assert!(!Arc::ptr_eq(&a, &b), "renewed");
    }

    #[test]
    fn pem_round_trip() {
        let (_d, s) = store();
        let ca = CertAuthority::load_or_create(&s, &SecretBox::ephemeral(), "prox.local").unwrap();
        assert_eq!(pem_to_der(ca.ca_pem()).unwrap(), ca.ca_der());
        assert!(pem_to_der("garbage").is_none());
    }
}
