//! The one error type of the Proxmox client and SSH executor. Variants are chosen so the API
//! layer can map them to HTTP statuses without reading message text ([`Error::http_status`]).

use std::collections::BTreeMap;

/// Everything that can go wrong talking to Proxmox (HTTP API or SSH).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 401: bad, expired or missing credentials (or a missing CSRF token).
    #[error("Proxmox rejected the credentials: {message}; check the token id/secret or user/password of this host")]
    Unauthorized {
        /// Proxmox's message (`Authentication failed!`, `No ticket`, ...).
        message: String,
    },
    /// 403: authenticated but not allowed.
    #[error("Proxmox denied the operation: {message}")]
    Forbidden {
        /// Proxmox's message (`Permission check failed (...)`).
        message: String,
    },
    /// 404, or a 500 saying a configuration/guest does not exist.
    #[error("not found on Proxmox: {message}")]
    NotFound {
        /// Proxmox's message.
        message: String,
    },
    /// The guest/resource is in a state that forbids the call (already running, already
    /// exists, locked, ...).
    #[error("conflict on Proxmox: {message}")]
    Conflict {
        /// Proxmox's message.
        message: String,
    },
    /// 595/596 (or 599): the contacted node could not reach the target node.
    #[error("Proxmox node unreachable (HTTP {status}): {message}")]
    NodeOffline {
        /// HTTP status (595, 596, 599).
        status: u16,
        /// Proxmox's message.
        message: String,
    },
    /// 400 with per-parameter errors.
    #[error("Proxmox rejected the parameters: {message}{}", fmt_field_errors(errors))]
    BadRequest {
        /// Proxmox's message (`Parameter verification failed.`).
        message: String,
        /// Parameter name → reason.
        errors: BTreeMap<String, String>,
    },
    /// A worker task ended with an error exit status.
    #[error("Proxmox task {upid} failed: {exitstatus}")]
    TaskFailed {
        /// The task.
        upid: String,
        /// Exit status text (the error message of the task).
        exitstatus: String,
        /// Last lines of the task log.
        log_tail: Vec<String>,
    },
    /// A worker task did not finish within the allowed time.
    #[error("Proxmox task {upid} still running after {waited_secs} s")]
    TaskTimeout {
        /// The task.
        upid: String,
        /// Seconds waited.
        waited_secs: u64,
    },
    /// Any other HTTP error status (500 without a recognised message, 501, 502, ...).
    #[error("Proxmox returned HTTP {status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Proxmox's message.
        message: String,
    },
    /// Connection, timeout or protocol failure below HTTP.
    #[error("cannot reach Proxmox at {url}: {message}")]
    Transport {
        /// URL or endpoint contacted.
        url: String,
        /// What failed.
        message: String,
    },
    /// TLS failure; for a pin mismatch `seen` holds the fingerprint the server presented.
    #[error("{message}")]
    Tls {
        /// What failed and what to do.
        message: String,
        /// SHA-256 fingerprint (uppercase colon hex) the server presented, if known.
        seen: Option<String>,
    },
    /// The response did not have the expected shape.
    #[error("unexpected response from Proxmox for {path}: {message}")]
    Decode {
        /// API path.
        path: String,
        /// Decoder message.
        message: String,
    },
    /// Invalid input given to the client (bad URL, bad fingerprint, bad vmid, ...).
    #[error("{0}")]
    Invalid(String),
    /// SSH failure (connection, authentication, channel).
    #[error("SSH to {endpoint}: {message}")]
    Ssh {
        /// host:port.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// The SSH host key differs from the pinned one.
    #[error(
        "SSH host key of {endpoint} changed: pinned {pinned}, server presented {seen}; if the node was reinstalled, remove the pin for this host and reconnect, otherwise this may be an attack"
    )]
    HostKeyMismatch {
        /// host:port.
        endpoint: String,
        /// Pinned fingerprint.
        pinned: String,
        /// Fingerprint the server presented.
        seen: String,
    },
    /// A remote command exited non-zero where success was required.
    #[error("command `{command}` exited with status {status}: {stderr}")]
    CommandFailed {
        /// The command (quoted).
        command: String,
        /// Exit status.
        status: u32,
        /// Standard error (bounded).
        stderr: String,
    },
    /// Storage failure (host registry, SSH key or pins).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Secret could not be opened.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
}

fn fmt_field_errors(errors: &BTreeMap<String, String>) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = errors.iter().map(|(k, v)| format!("{k}: {}", v.trim())).collect();
    format!(" ({})", parts.join("; "))
}

impl Error {
    /// The HTTP status the management API should answer with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::NotFound { .. } => 404,
            Error::Conflict { .. } => 409,
            Error::BadRequest { .. } | Error::Invalid(_) => 422,
            Error::NodeOffline { .. } | Error::Transport { .. } | Error::TaskTimeout { .. } => 503,
            _ => 502,
        }
    }

    /// True for failures worth retrying later (node offline, transport, 502/503/504).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::NodeOffline { .. } | Error::Transport { .. } => true,
            Error::Server { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// Build the error for a non-success HTTP reply. `message` is the text from the body's
    /// `message` or the reason phrase; `errors` the body's parameter errors.
    pub fn from_status(status: u16, message: &str, errors: BTreeMap<String, String>) -> Error {
        let message = message.trim().to_string();
        let lower = message.to_ascii_lowercase();
        match status {
            400 => Error::BadRequest { message, errors },
            401 => Error::Unauthorized { message },
            403 => Error::Forbidden { message },
            404 => Error::NotFound { message },
            409 => Error::Conflict { message },
            595 | 596 | 599 => Error::NodeOffline { status, message },
            500 if lower.contains("does not exist") || lower.contains("no such") => Error::NotFound { message },
            500 if lower.contains("already running")
                || lower.contains("not running")
                || lower.contains("already exists")
                || lower.contains("is locked")
                || lower.contains("container is running")
                || lower.contains("can't overwrite running") =>
            {
                Error::Conflict { message }
            }
            _ => Error::Server { status, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert!(matches!(
            Error::from_status(401, "Authentication failed!", Default::default()),
            Error::Unauthorized { .. }
        ));
        assert!(matches!(
            Error::from_status(595, "Errors during connection establishment", Default::default()),
            Error::NodeOffline { status: 595, .. }
        ));
        assert!(matches!(
            Error::from_status(596, "x", Default::default()),
            Error::NodeOffline { status: 596, .. }
        ));
        assert!(matches!(
            Error::from_status(500, "CT 105 already running\n", Default::default()),
            Error::Conflict { .. }
        ));
        assert!(matches!(
            Error::from_status(
                500,
                "Configuration file 'nodes/pve/lxc/105.conf' does not exist",
                Default::default()
            ),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            Error::from_status(500, "something else", Default::default()),
            Error::Server { status: 500, .. }
        ));
        let mut errs = BTreeMap::new();
        errs.insert("vmid".to_string(), "VM 200 already exists".to_string());
        let e = Error::from_status(400, "Parameter verification failed.", errs);
        assert_eq!(
            e.to_string(),
            "Proxmox rejected the parameters: Parameter verification failed. (vmid: VM 200 already exists)"
        );
        assert_eq!(e.http_status(), 422);
    }
}
