//! PVE authentication: tickets (`PVE:<user>:<hex time>::<sig>`), CSRF prevention tokens and
//! API tokens (`PVEAPIToken=USER@REALM!ID=SECRET`). Pure functions over a server secret.

use base64::Engine;
use sha2::{Digest, Sha256};

/// Ticket lifetime (PVE: 2 h).
pub const TICKET_LIFETIME: u64 = 2 * 3600;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `root@pam`.
    pub user: String,
    /// Token id when authenticated with an API token.
    pub token: Option<String>,
}

impl Identity {
    /// `user@realm` or `user@realm!tokenid` (what PVE checks `root@pam` against).
    pub fn authid(&self) -> String {
        match &self.token {
            Some(t) => format!("{}!{t}", self.user),
            None => self.user.clone(),
        }
    }
    /// True only for a `root@pam` ticket (not for root's tokens).
    pub fn is_root_pam(&self) -> bool {
        self.user == "root@pam" && self.token.is_none()
    }
}

fn sign(secret: &[u8], what: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(secret);
    h.update(what.as_bytes());
    h.update(secret);
    h.finalize().to_vec()
}

/// Create a ticket for `user` at `now`.
pub fn make_ticket(secret: &[u8], user: &str, now: u64) -> String {
    let plain = format!("PVE:{user}:{now:08X}");
    let sig = base64::engine::general_purpose::STANDARD.encode(sign(secret, &plain));
    format!("{plain}::{sig}")
}

/// Verify a ticket; returns the user when it is valid at `now`.
pub fn verify_ticket(secret: &[u8], ticket: &str, now: u64) -> Option<String> {
    let (plain, sig) = ticket.split_once("::")?;
    let mut parts = plain.splitn(3, ':');
    if parts.next()? != "PVE" {
        return None;
    }
    let user = parts.next()?;
    let time = u64::from_str_radix(parts.next()?, 16).ok()?;
    let want = base64::engine::general_purpose::STANDARD.encode(sign(secret, plain));
    if !constant_eq(want.as_bytes(), sig.as_bytes()) {
        return None;
    }
    if time > now + 300 || now.saturating_sub(time) >= TICKET_LIFETIME {
        return None;
    }
    Some(user.to_string())
}

/// Create the CSRF prevention token for `user`.
pub fn make_csrf(secret: &[u8], user: &str, now: u64) -> String {
    let sig = base64::engine::general_purpose::STANDARD_NO_PAD.encode(sign(secret, &format!("csrf:{now:08X}:{user}")));
    format!("{now:08X}:{sig}")
}

/// Verify a CSRF token for `user`.
pub fn verify_csrf(secret: &[u8], user: &str, token: &str, now: u64) -> bool {
    let Some((t, _)) = token.split_once(':') else { return false };
    let Ok(time) = u64::from_str_radix(t, 16) else { return false };
    time <= now + 300
        && now.saturating_sub(time) < TICKET_LIFETIME
        && constant_eq(make_csrf(secret, user, time).as_bytes(), token.as_bytes())
}

/// Parse an `Authorization: PVEAPIToken=USER@REALM!ID=SECRET` value (a space may replace the
/// first `=`; the secret is split off at the last `=`). Returns (user, tokenid, secret).
pub fn parse_token_header(value: &str) -> Option<(String, String, String)> {
    let rest = value.strip_prefix("PVEAPIToken")?;
    let rest = rest.strip_prefix('=').or_else(|| rest.strip_prefix(' '))?.trim();
    let (id, secret) = rest.rsplit_once('=')?;
    let (user, token) = id.split_once('!')?;
    if user.is_empty() || token.is_empty() || !user.contains('@') {
        return None;
    }
    Some((user.to_string(), token.to_string(), secret.to_string()))
}

/// Compare without early exit.
pub fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Extract `PVEAuthCookie` from a Cookie header.
pub fn cookie_ticket(cookie: &str) -> Option<String> {
    cookie.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == "PVEAuthCookie").then(|| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_verify_and_expire() {
        let s = b"secret";
        let t = make_ticket(s, "root@pam", 1_700_000_000);
        assert!(t.starts_with("PVE:root@pam:6553F100::"), "{t}");
        assert_eq!(verify_ticket(s, &t, 1_700_000_100).as_deref(), Some("root@pam"));
        assert_eq!(verify_ticket(s, &t, 1_700_000_000 + TICKET_LIFETIME), None);
        assert_eq!(verify_ticket(b"other", &t, 1_700_000_100), None);
        let forged = t.replace("root@pam", "admin@pve");
        assert_eq!(verify_ticket(s, &forged, 1_700_000_100), None);
    }

    #[test]
    fn csrf_is_bound_to_user() {
        let c = make_csrf(b"k", "root@pam", 1_700_000_000);
        assert!(verify_csrf(b"k", "root@pam", &c, 1_700_000_010));
        assert!(!verify_csrf(b"k", "other@pve", &c, 1_700_000_010));
        assert!(!verify_csrf(b"k", "root@pam", "garbage", 1_700_000_010));
    }

    #[test]
    fn token_header_forms() {
        assert_eq!(
            parse_token_header("PVEAPIToken=root@pam!proximity=1b2c-3d"),
            Some(("root@pam".into(), "proximity".into(), "1b2c-3d".into()))
        );
        assert_eq!(parse_token_header("PVEAPIToken root@pam!x=s").unwrap().1, "x");
        assert_eq!(parse_token_header("Bearer x"), None);
        assert_eq!(parse_token_header("PVEAPIToken=root@pam=s"), None);
        assert_eq!(
            cookie_ticket("a=b; PVEAuthCookie=PVE%3Aroot%40pam%3A1::x").as_deref(),
            Some("PVE:root@pam:1::x")
        );
    }
}
