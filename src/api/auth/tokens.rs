//! Credentials: HS256 access tokens (JWT), rotating refresh tokens grouped in sessions
//! (families) with reuse detection, and personal API tokens.
//!
//! Refresh tokens and API tokens are stored only as SHA-256 hashes. Presenting a refresh
//! token that was already rotated revokes its whole family (RFC 6819 §5.2.2.3 / OAuth 2.0
//! Security BCP "refresh token rotation").

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::users::{Role, User, now};
use crate::secrets::SecretBox;
use crate::store::{Store, StoreError, Table};

/// Login sessions (refresh-token families) by id.
pub const SESSIONS: Table<Session> = Table::new("sessions");
/// Refresh tokens by SHA-256 hex.
pub const REFRESH: Table<RefreshRecord> = Table::new("refresh_tokens");
/// Personal API tokens by id.
pub const API_TOKENS: Table<ApiToken> = Table::new("api_tokens");
/// Small API metadata (the sealed JWT key).
const META: Table<String> = Table::new("api_meta");

/// Prefix of personal API tokens.
pub const API_TOKEN_PREFIX: &str = "prx_";

/// A login session = one refresh-token family.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Id (`ses-` + hex).
    pub id: String,
    /// User id.
    pub user_id: String,
    /// Start (unix seconds).
    pub created_at: i64,
    /// Revoked by logout, password change or reuse detection.
    pub revoked: bool,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
}

/// One issued refresh token (stored under its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// Family.
    pub session_id: String,
    /// User id.
    pub user_id: String,
    /// Expiry (unix seconds).
    pub expires_at: i64,
    /// Already exchanged for a new pair.
    pub used: bool,
}

/// Scope of a personal API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Safe methods (GET/HEAD) only.
    Read,
    /// Every method the owner's role allows.
    Write,
}

/// A personal API token (secret stored hashed).
#[derive(Clone, Serialize, Deserialize)]
pub struct ApiToken {
    /// Id (`tok-` + hex); part of the token string.
    pub id: String,
    /// Owner user id.
    pub user_id: String,
    /// Label.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// SHA-256 hex of the whole token string.
    pub hash: String,
    /// Creation (unix seconds).
    pub created_at: i64,
    /// Expiry (unix seconds), none = never.
    pub expires_at: Option<i64>,
    /// Last use (unix seconds).
    pub last_used_at: Option<i64>,
    /// Revoked.
    pub revoked: bool,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("hash", &"<hidden>")
            .finish()
    }
}

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Role at issue time (the user record is re-read on every request).
    pub role: Role,
    /// Session id.
    pub sid: String,
    /// Issued at.
    pub iat: i64,
    /// Expiry.
    pub exp: i64,
    /// Token id.
    pub jti: String,
}

/// Why a credential was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, bad signature or expired.
    #[error("the token is invalid or expired")]
    Invalid,
    /// Session revoked (logout, password change, reuse).
    #[error("the session was revoked; log in again")]
    Revoked,
    /// A rotated refresh token was presented again; the family is now revoked.
    #[error("refresh token reuse detected; every token of this session was revoked, log in again")]
    Reused,
    /// Storage.
    #[error("storage: {0}")]
    Store(String),
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        TokenError::Store(e.to_string())
    }
}

/// A fresh access + refresh pair.
#[derive(Clone)]
pub struct IssuedPair {
    /// JWT.
    pub access_token: String,
    /// Opaque refresh token.
    pub refresh_token: String,
    /// Access lifetime (seconds).
    pub expires_in: u64,
    /// Session id.
    pub session_id: String,
}

/// Issues and checks tokens; holds the HS256 key.
#[derive(Clone)]
pub struct TokenService {
    enc: EncodingKey,
    dec: DecodingKey,
    /// Access token lifetime (seconds).
    pub access_secs: u64,
    /// Refresh token lifetime (seconds).
    pub refresh_secs: u64,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService").field("key", &"<hidden>").finish()
    }
}

/// SHA-256 hex.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TokenService {
    /// Load (or create and store, sealed) the signing key.
    pub fn load(store: &Store, secrets: &SecretBox, access_secs: u64, refresh_secs: u64) -> Result<Self, TokenError> {
        let key = match store.get(META, "jwt_key")? {
            Some(sealed) => secrets.open(&sealed).map_err(|e| TokenError::Store(e.to_string()))?,
            None => {
                let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
                store.put(META, "jwt_key", &secrets.seal(&key))?;
                key
            }
        };
        Ok(Self::from_key(&key, access_secs, refresh_secs))
    }

    /// From raw key bytes.
    pub fn from_key(key: &[u8], access_secs: u64, refresh_secs: u64) -> Self {
        TokenService {
            enc: EncodingKey::from_secret(key),
            dec: DecodingKey::from_secret(key),
            access_secs,
            refresh_secs,
        }
    }

    fn access(&self, user: &User, sid: &str, now: i64) -> Result<String, TokenError> {
        let claims = Claims {
            sub: user.id.clone(),
            role: user.role,
            sid: sid.to_string(),
            iat: now,
            exp: now + self.access_secs as i64,
            jti: hex::encode(rand::random::<[u8; 8]>()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.enc).map_err(|_| TokenError::Invalid)
    }

    fn refresh(&self, store_tx: &mut crate::store::WriteTx, user: &User, sid: &str, now: i64) -> Result<String, StoreError> {
        let token = format!("rt_{}", random_token(32));
        store_tx.put(
            REFRESH,
            &sha256_hex(&token),
            &RefreshRecord {
                session_id: sid.to_string(),
                user_id: user.id.clone(),
                expires_at: now + self.refresh_secs as i64,
                used: false,
            },
        )?;
        Ok(token)
    }

    /// Start a session for `user` (after a successful login).
    pub fn login(&self, store: &Store, user: &User) -> Result<IssuedPair, TokenError> {
        let now = now();
        let sid = format!("ses-{}", hex::encode(rand::random::<[u8; 8]>()));
        let access_token = self.access(user, &sid, now)?;
        let refresh_token = store.write(|tx| {
            tx.put(
                SESSIONS,
                &sid,
                &Session {
                    id: sid.clone(),
                    user_id: user.id.clone(),
                    created_at: now,
                    revoked: false,
                    revoked_reason: None,
                },
            )?;
            self.refresh(tx, user, &sid, now)
        })?;
        Ok(IssuedPair {
            access_token,
            refresh_token,
            expires_in: self.access_secs,
            session_id: sid,
        })
    }

    /// Exchange a refresh token for a new pair; a reused token revokes the family.
    pub fn rotate(&self, store: &Store, refresh_token: &str) -> Result<(IssuedPair, User), TokenError> {
        let now = now();
        let hash = sha256_hex(refresh_token);
        let outcome: Result<Result<(IssuedPair, User), TokenError>, StoreError> = store.write(|tx| {
            let Some(mut rec) = tx.get(REFRESH, &hash)? else {
                return Ok(Err(TokenError::Invalid));
            };
            let Some(mut session) = tx.get(SESSIONS, &rec.session_id)? else {
                return Ok(Err(TokenError::Invalid));
            };
            if session.revoked {
                return Ok(Err(TokenError::Revoked));
            }
            if rec.used {
                session.revoked = true;
                session.revoked_reason = Some("refresh token reuse".into());
                tx.put(SESSIONS, &session.id, &session)?;
                return Ok(Err(TokenError::Reused));
            }
            if rec.expires_at <= now {
                return Ok(Err(TokenError::Invalid));
            }
            let Some(user) = tx.get(super::users::USERS, &rec.user_id)? else {
                return Ok(Err(TokenError::Invalid));
            };
            rec.used = true;
            tx.put(REFRESH, &hash, &rec)?;
            let refresh_token = self.refresh(tx, &user, &session.id, now)?;
            let access_token = match self.access(&user, &session.id, now) {
                Ok(a) => a,
                Err(e) => return Ok(Err(e)),
            };
            Ok(Ok((
                IssuedPair {
                    access_token,
                    refresh_token,
                    expires_in: self.access_secs,
                    session_id: session.id.clone(),
                },
                user,
            )))
        });
        outcome?
    }

    /// Verify an access token's signature and expiry, then its session and user.
    pub fn verify_access(&self, store: &Store, token: &str) -> Result<(Claims, User), TokenError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.dec, &v).map_err(|_| TokenError::Invalid)?;
        let c = data.claims;
        let session = store.get(SESSIONS, &c.sid)?.ok_or(TokenError::Revoked)?;
        if session.revoked {
            return Err(TokenError::Revoked);
        }
        let user = store.get(super::users::USERS, &c.sub)?.ok_or(TokenError::Invalid)?;
        if c.iat < user.password_changed_at {
            return Err(TokenError::Revoked);
        }
        Ok((c, user))
    }

    /// Revoke one session (logout).
    pub fn revoke_session(store: &Store, sid: &str, reason: &str) -> Result<(), StoreError> {
        store.write(|tx| {
            if let Some(mut s) = tx.get(SESSIONS, sid)? {
                s.revoked = true;
                s.revoked_reason = Some(reason.to_string());
                tx.put(SESSIONS, sid, &s)?;
            }
            Ok(())
        })
    }

    /// Revoke every session of a user except `keep` (password change).
    pub fn revoke_user_sessions(store: &Store, user_id: &str, keep: Option<&str>, reason: &str) -> Result<usize, StoreError> {
        store.write(|tx| {
            let mut n = 0;
            for (id, mut s) in tx.list(SESSIONS)? {
                if s.user_id == user_id && !s.revoked && Some(id.as_str()) != keep {
                    s.revoked = true;
                    s.revoked_reason = Some(reason.to_string());
                    tx.put(SESSIONS, &id, &s)?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}

/// Create a personal API token; returns the record and the token string (shown once).
pub fn create_api_token(
    store: &Store,
    user_id: &str,
    name: &str,
    scopes: Vec<Scope>,
    expires_at: Option<i64>,
) -> Result<(ApiToken, String), StoreError> {
    let id = format!("tok-{}", hex::encode(rand::random::<[u8; 6]>()));
    let secret = format!("{API_TOKEN_PREFIX}{id}_{}", random_token(32));
    let rec = ApiToken {
        id: id.clone(),
        user_id: user_id.to_string(),
        name: name.to_string(),
        scopes,
        hash: sha256_hex(&secret),
        created_at: now(),
        expires_at,
        last_used_at: None,
        revoked: false,
    };
    store.put(API_TOKENS, &id, &rec)?;
    Ok((rec, secret))
}

/// Check a personal API token string; returns the token and its owner.
pub fn verify_api_token(store: &Store, token: &str) -> Result<(ApiToken, User), TokenError> {
    let rest = token.strip_prefix(API_TOKEN_PREFIX).ok_or(TokenError::Invalid)?;
    let id = rest.split_once('_').map(|(id, _)| id).ok_or(TokenError::Invalid)?;
    let mut rec = store.get(API_TOKENS, id)?.ok_or(TokenError::Invalid)?;
    if !ct_eq(&rec.hash, &sha256_hex(token)) {
        return Err(TokenError::Invalid);
    }
    if rec.revoked {
        return Err(TokenError::Revoked);
    }
    let now = now();
    if rec.expires_at.is_some_and(|e| e <= now) {
        return Err(TokenError::Invalid);
    }
    let user = store.get(super::users::USERS, &rec.user_id)?.ok_or(TokenError::Invalid)?;
    // Record use at most once a minute (no fsync).
    if rec.last_used_at.is_none_or(|t| now - t >= 60) {
        rec.last_used_at = Some(now);
        let _ = store.write_eventual(|tx| tx.put(API_TOKENS, id, &rec));
    }
    Ok((rec, user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::users;

    fn setup() -> (tempfile::TempDir, Store, TokenService, User) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let svc = TokenService::load(&store, &SecretBox::ephemeral(), 900, 3600).unwrap();
        let u = users::create(&store, "alice", "password1", Role::User, false).unwrap();
        (dir, store, svc, u)
    }

    #[test]
    fn rotation_and_reuse_detection_revokes_family() {
        let (_d, store, svc, u) = setup();
        let p1 = svc.login(&store, &u).unwrap();
        assert!(svc.verify_access(&store, &p1.access_token).is_ok());
        let (p2, _) = svc.rotate(&store, &p1.refresh_token).unwrap();
        assert_ne!(p1.refresh_token, p2.refresh_token);
        // Reuse of the rotated token: family revoked, including the newest tokens.
        assert_eq!(svc.rotate(&store, &p1.refresh_token).err(), Some(TokenError::Reused));
        assert_eq!(svc.rotate(&store, &p2.refresh_token).err(), Some(TokenError::Revoked));
        assert_eq!(svc.verify_access(&store, &p2.access_token).err(), Some(TokenError::Revoked));
        assert_eq!(svc.rotate(&store, "rt_garbage").err(), Some(TokenError::Invalid));
    }

    #[test]
    fn expired_access_token_is_refused() {
        let (_d, store, _svc, u) = setup();
        let svc = TokenService::from_key(b"a key of thirty-two bytes.......", 0, 3600);
        let p = svc.login(&store, &u).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(svc.verify_access(&store, &p.access_token).err(), Some(TokenError::Invalid));
        // A token signed with another key is refused too.
        let other = TokenService::from_key(b"another key of 32 bytes........!", 900, 3600);
        let p = other.login(&store, &u).unwrap();
        let svc2 = TokenService::from_key(b"yet another key of 32 bytes.....", 900, 3600);
        assert_eq!(svc2.verify_access(&store, &p.access_token).err(), Some(TokenError::Invalid));
    }

    #[test]
    fn api_tokens_hash_scope_expiry_revocation() {
        let (_d, store, _svc, u) = setup();
        let (rec, secret) = create_api_token(&store, &u.id, "ci", vec![Scope::Read], None).unwrap();
        assert!(!serde_json::to_string(&rec).unwrap().contains(&secret));
        assert_eq!(verify_api_token(&store, &secret).unwrap().1.id, u.id);
        assert!(verify_api_token(&store, &format!("{secret}x")).is_err());
        let (_, expired) = create_api_token(&store, &u.id, "old", vec![Scope::Write], Some(now() - 1)).unwrap();
        assert_eq!(verify_api_token(&store, &expired).err(), Some(TokenError::Invalid));
        let mut r = store.get(API_TOKENS, &rec.id).unwrap().unwrap();
        r.revoked = true;
        store.put(API_TOKENS, &rec.id, &r).unwrap();
        assert_eq!(verify_api_token(&store, &secret).err(), Some(TokenError::Revoked));
    }
}
