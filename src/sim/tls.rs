//! The simulator's self-signed certificate (kept in the state directory so the fingerprint is
//! stable across restarts) and its SHA-256 fingerprint in PVE's uppercase colon form.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Uppercase colon-separated SHA-256 of DER bytes (`AB:CD:...`).
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Load `pve-ssl.pem`/`pve-ssl.key` from `dir`, creating them first if absent.
pub fn load_or_create(dir: &Path) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let cert_path = dir.join("pve-ssl.pem");
    let key_path = dir.join("pve-ssl.key");
    if !cert_path.exists() || !key_path.exists() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string(), "pve1".to_string()])
            .context("generating the simulator certificate")?;
        std::fs::write(&cert_path, ck.cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
        write_private(&key_path, ck.signing_key.serialize_pem().as_bytes())?;
    }
    let cert = CertificateDer::from_pem_file(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    Ok((cert, key))
}

/// Write a file readable only by the owner.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

/// A rustls server config for HTTP/1.1 with the given certificate.
pub fn server_config(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .context("building the TLS configuration")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprint_format() {
        let f = super::fingerprint(b"abc");
        assert_eq!(f.len(), 32 * 3 - 1);
        assert!(f.starts_with("BA:78:16:BF"));
    }

    #[test]
    fn cert_is_stable_per_dir() {
        let d = tempfile::tempdir().unwrap();
        let (a, _) = super::load_or_create(d.path()).unwrap();
        let (b, _) = super::load_or_create(d.path()).unwrap();
        assert_eq!(a, b);
    }
}
