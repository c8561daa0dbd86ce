//! Users of the management API: table `users`, argon2id password hashes, validation.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{Store, StoreError, Table};

/// Users by id.
pub const USERS: Table<User> = Table::new("users");

/// Role of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including hosts, settings, users, audit and network changes.
    Admin,
    /// Own apps only.
    User,
}

impl Role {
    /// Name as shown in the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

/// A stored user. `password_hash` never leaves the server (see [`UserView`]).
#[derive(Clone, Serialize, Deserialize)]
pub struct User {
    /// Stable id (`usr-` + 12 hex).
    pub id: String,
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Creation time (unix seconds).
    pub created_at: i64,
    /// Last password change (unix seconds); tokens issued before are invalid.
    pub password_changed_at: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("password_hash", &"<hidden>")
            .finish()
    }
}

/// A user as returned by the API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.clone(),
            username: u.username.clone(),
            role: u.role,
            created_at: rfc3339(u.created_at),
        }
    }
}

/// Errors of user management.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// Bad username.
    #[error("username: {0}")]
    Username(String),
    /// Bad password.
    #[error("password: {0}")]
    Password(String),
    /// Name taken.
    #[error("a user named {0:?} already exists")]
    Exists(String),
    /// No such user.
    #[error("no user named {0:?}")]
    NotFound(String),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Unix seconds now.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 3339 of unix seconds.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Usernames: 1–32 of lowercase letters, digits, `.`, `_`, `-`, starting alphanumeric.
pub fn validate_username(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 32 {
        return Err("must be 1 to 32 characters".into());
    }
    if !name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err("must start with a lowercase letter or digit".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    {
        return Err("may contain only lowercase letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}

/// Passwords: 8–256 characters.
pub fn validate_password(pw: &str) -> Result<(), String> {
    let n = pw.chars().count();
    if n < 8 {
        return Err("must be at least 8 characters".into());
    }
    if n > 256 {
        return Err("must be at most 256 characters".into());
    }
    Ok(())
}

/// argon2id hash (PHC string) of a password.
pub fn hash_password(pw: &str) -> Result<String, UserError> {
    Argon2::default()
        .hash_password(pw.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Check a password against a PHC string.
pub fn verify_password(pw: &str, hash: &str) -> bool {
    Argon2::default().verify_password(pw.as_bytes(), hash).is_ok()
}

/// A hash that never verifies, used to spend the same time on unknown usernames.
pub fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("not-a-real-password-xyz").unwrap_or_default())
}

/// Find a user by login name.
pub fn find_by_name(store: &Store, name: &str) -> Result<Option<User>, StoreError> {
    Ok(store.list(USERS)?.into_iter().map(|(_, u)| u).find(|u| u.username == name))
}

/// Number of users.
pub fn count(store: &Store) -> Result<u64, StoreError> {
    store.count(USERS)
}

/// Create a user (validated, unique name). With `only_if_empty`, fails with `Exists` when
/// any user exists (first-run setup), atomically.
pub fn create(store: &Store, username: &str, password: &str, role: Role, only_if_empty: bool) -> Result<User, UserError> {
    validate_username(username).map_err(UserError::Username)?;
    validate_password(password).map_err(UserError::Password)?;
    let hash = hash_password(password)?;
    let now = now();
    let user = User {
        id: format!("usr-{}", hex::encode(rand::random::<[u8; 6]>())),
        username: username.to_string(),
        role,
        password_hash: hash,
        created_at: now,
        password_changed_at: now,
    };
    store.write(|tx| {
        let all = tx.list(USERS)?;
        if only_if_empty && !all.is_empty() {
            return Err(UserError::Exists("(setup already done)".into()));
        }
        if all.iter().any(|(_, u)| u.username == username) {
            return Err(UserError::Exists(username.to_string()));
        }
        tx.put(USERS, &user.id, &user)?;
        Ok(())
    })?;
    Ok(user)
}

/// Set a user's password (validated); returns the updated user.
pub fn set_password(store: &Store, username: &str, password: &str) -> Result<User, UserError> {
    validate_password(password).map_err(UserError::Password)?;
    let hash = hash_password(password)?;
    store.write(|tx| {
        let mut user = tx
            .list(USERS)?
            .into_iter()
            .map(|(_, u)| u)
            .find(|u| u.username == username)
            .ok_or_else(|| UserError::NotFound(username.to_string()))?;
        user.password_hash = hash;
        user.password_changed_at = now();
        tx.put(USERS, &user.id, &user)?;
        Ok(user)
    })
}

/// Create `name` as admin with `password` unless a user of that name exists (demo, installer).
pub fn ensure_admin(store: &Store, name: &str, password: &str) -> Result<User, UserError> {
    if let Some(u) = find_by_name(store, name)? {
        return Ok(u);
    }
    create(store, name, password, Role::Admin, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_roundtrip_and_phc_shape() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn username_rules() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("a.b_c-1").is_ok());
        for bad in ["", "Alice", "-x", "a b", &"a".repeat(33)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
    }

    #[test]
    fn create_unique_and_setup_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        create(&store, "admin", "password1", Role::Admin, true).unwrap();
        assert!(matches!(
            create(&store, "bob", "password1", Role::Admin, true),
            Err(UserError::Exists(_))
        ));
        assert!(matches!(
            create(&store, "admin", "password1", Role::User, false),
            Err(UserError::Exists(_))
        ));
        let u = set_password(&store, "admin", "password2").unwrap();
        assert!(verify_password("password2", &u.password_hash));
        assert!(format!("{u:?}").contains("<hidden>"));
    }
}
