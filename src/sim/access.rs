//! API tokens of users (`/access/users/{userid}/token/{tokenid}`): create (the secret is
//! returned once), read, delete. Tokens live in the state, so they survive restarts and show
//! in `/sim/state`; they authenticate like the built-in `root@pam!proximity` token.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::api::{ApiError, ApiResult, Reply, Req};
use super::{Sim, uuid_like};

/// One API token of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// The secret (a UUID, as PVE makes them).
    pub secret: String,
    /// Privilege separation (1 = own ACLs, 0 = the user's privileges).
    pub privsep: bool,
    /// Comment.
    #[serde(default)]
    pub comment: String,
    /// Expiry (seconds since epoch, 0 = never).
    #[serde(default)]
    pub expire: u64,
}

fn ids(r: &Req) -> Result<(String, String), ApiError> {
    let user = r.params.str("userid").unwrap_or_default();
    let token = r.params.str("tokenid").unwrap_or_default();
    // The simulator has one user; PVE answers an unknown one like this.
    if user != "root@pam" {
        return Err(ApiError::die(format!("no such user ('{user}')\n")));
    }
    Ok((format!("{user}!{token}"), token))
}

fn info(t: &ApiToken) -> Value {
    let mut v = json!({"privsep": t.privsep as i64, "expire": t.expire});
    if !t.comment.is_empty() {
        v["comment"] = json!(t.comment);
    }
    v
}

/// `POST /access/users/{userid}/token/{tokenid}`.
pub fn create(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let (full, _) = ids(r)?;
    let mut st = sim.state.lock().expect("state");
    if full == super::TOKEN_ID || st.tokens.contains_key(&full) {
        return Err(ApiError::die("Token already exists.\n"));
    }
    let t = ApiToken {
        secret: uuid_like(),
        privsep: r.params.int("privsep").unwrap_or(1) != 0,
        comment: r.params.str("comment").unwrap_or_default(),
        expire: r.params.int("expire").unwrap_or(0).max(0) as u64,
    };
    st.tokens.insert(full.clone(), t.clone());
    drop(st);
    sim.save();
    Ok(Reply::data(json!({"full-tokenid": full, "info": info(&t), "value": t.secret})))
}

/// `GET /access/users/{userid}/token/{tokenid}`.
pub fn read(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let (full, token) = ids(r)?;
    let st = sim.state.lock().expect("state");
    match st.tokens.get(&full) {
        Some(t) => Ok(Reply::data(info(t))),
        None => Err(ApiError::die(format!("no such token '{token}' for user 'root@pam'\n"))),
    }
}

/// `DELETE /access/users/{userid}/token/{tokenid}`.
pub fn delete(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let (full, token) = ids(r)?;
    let mut st = sim.state.lock().expect("state");
    if st.tokens.remove(&full).is_none() {
        return Err(ApiError::die(format!("no such token '{token}' for user 'root@pam'\n")));
    }
    drop(st);
    sim.save();
    Ok(Reply::data(Value::Null))
}

/// Does `full` (`user@realm!id`) with `secret` name a live token of the state?
pub fn token_ok(sim: &Sim, full: &str, secret: &str, now: u64) -> bool {
    let st = sim.state.lock().expect("state");
    st.tokens
        .get(full)
        .is_some_and(|t| (t.expire == 0 || t.expire > now) && super::auth::constant_eq(t.secret.as_bytes(), secret.as_bytes()))
}
