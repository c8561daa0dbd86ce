//! Secrets at rest: ChaCha20-Poly1305 with a 256-bit key from a 0600 key file in the data
//! directory (created on first start). Used for PVE passwords/token secrets, the SSH
//! private key and the CA key. Sealed values are `v1:` + base64(nonce || ciphertext).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// Failures of the secrets box.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Key file problems.
    #[error("secrets key file {path}: {detail}")]
    KeyFile {
        /// File.
        path: String,
        /// What is wrong and what to do.
        detail: String,
    },
    /// A sealed value could not be opened (wrong key or tampered).
    #[error("cannot decrypt a stored secret: it was sealed with another key file or altered")]
    Open,
}

/// Seals and opens secrets with the appliance key. Cheap to clone.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Arc<ChaCha20Poly1305>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// Load the key file, creating it (mode 0600) with a random key if absent. Refuses a
    /// key file readable by group or others.
    pub fn open_or_create(path: &Path) -> Result<SecretBox, SecretError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let err = |detail: String| SecretError::KeyFile {
            path: path.display().to_string(),
            detail,
        };
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create directory: {e}")))?;
            }
            let key: [u8; 32] = rand::random();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(format!("cannot create: {e}")))?;
            f.write_all(hex::encode(key).as_bytes())
                .map_err(|e| err(format!("cannot write: {e}")))?;
            f.sync_all().map_err(|e| err(format!("cannot sync: {e}")))?;
        }
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err("is readable by group or others; run `chmod 600` on it".into()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let key = hex::decode(text.trim())
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| err("does not hold a 64-hex-digit key".into()))?;
        Ok(SecretBox {
            cipher: Arc::new(ChaCha20Poly1305::new(Key::from_slice(&key))),
        })
    }

    /// A box with a random in-memory key (tests).
    pub fn ephemeral() -> SecretBox {
        let key: [u8; 32] = rand::random();
        SecretBox {
            cipher: Arc::new(ChaCha20Poly1305::new(Key::from_slice(&key))),
        }
    }

    /// Encrypt bytes.
    pub fn seal(&self, plain: &[u8]) -> String {
        let nonce: [u8; 12] = rand::random();
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            .expect("chacha20poly1305 encryption cannot fail");
        let mut buf = nonce.to_vec();
        buf.extend_from_slice(&ct);
        format!("v1:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(buf))
    }

    /// Decrypt a value made by [`SecretBox::seal`].
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let b = sealed.strip_prefix("v1:").ok_or(SecretError::Open)?;
        let buf = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b)
            .map_err(|_| SecretError::Open)?;
        if buf.len() < 12 + 16 {
            return Err(SecretError::Open);
        }
        self.cipher
            .decrypt(Nonce::from_slice(&buf[..12]), &buf[12..])
            .map_err(|_| SecretError::Open)
    }

    /// Encrypt a string.
    pub fn seal_str(&self, s: &str) -> String {
        self.seal(s.as_bytes())
    }

    /// Decrypt to a string.
    pub fn open_str(&self, sealed: &str) -> Result<String, SecretError> {
        String::from_utf8(self.open(sealed)?).map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn seal_open_and_key_file_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret.key");
        let a = SecretBox::open_or_create(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let sealed = a.seal_str("hunter2");
        assert!(!sealed.contains("hunter2"));
        let b = SecretBox::open_or_create(&p).unwrap();
        assert_eq!(b.open_str(&sealed).unwrap(), "hunter2");
        assert!(SecretBox::ephemeral().open_str(&sealed).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(SecretBox::open_or_create(&p).is_err());
    }
}
