//! Console wire protocol (client side in `web/src/lib/console.ts`):
//!
//! - client → server: binary frames are keyboard input; text frames are JSON control
//!   messages, today only `{"type":"resize","cols":C,"rows":R}`.
//! - server → client: binary frames are terminal output; text frames are
//!   `{"type":"exit","reason":...}` (once, just before the close frame) or
//!   `{"type":"error","message":...}` (a refused control message; the session goes on).
//! - The close frame's code and reason say why the session ended ([`EndReason`]).

use serde::Serialize;

/// Smallest and largest terminal size accepted (columns and rows).
pub const MIN_DIM: u32 = 1;
/// Largest terminal dimension accepted.
pub const MAX_DIM: u32 = 1000;
/// Longest control text frame accepted, bytes.
pub const MAX_CONTROL_BYTES: usize = 1024;

/// A parsed client control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The terminal was resized.
    Resize {
        /// Columns.
        cols: u32,
        /// Rows.
        rows: u32,
    },
}

/// Why a control frame was refused (told to the client as an `error` frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Longer than [`MAX_CONTROL_BYTES`].
    #[error("control message longer than {MAX_CONTROL_BYTES} bytes")]
    TooLong,
    /// Not a JSON object with a string `type`.
    #[error("control message is not JSON like {{\"type\":\"resize\",\"cols\":80,\"rows\":24}}")]
    NotJson,
    /// Unknown `type`.
    #[error("unknown control message type `{0}` (known: resize)")]
    UnknownType(String),
    /// A field is missing or out of range.
    #[error("{field} must be an integer between {MIN_DIM} and {MAX_DIM}")]
    BadField {
        /// Field name.
        field: &'static str,
    },
}

/// Check a terminal dimension (query parameter or resize field).
pub fn dim(field: &'static str, v: Option<u64>) -> Result<u32, ControlError> {
    match v {
        Some(n) if (MIN_DIM as u64..=MAX_DIM as u64).contains(&n) => Ok(n as u32),
        _ => Err(ControlError::BadField { field }),
    }
}

/// Parse a client text frame.
pub fn parse_control(text: &str) -> Result<Control, ControlError> {
    if text.len() > MAX_CONTROL_BYTES {
        return Err(ControlError::TooLong);
    }
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| ControlError::NotJson)?;
    let kind = v.get("type").and_then(|t| t.as_str()).ok_or(ControlError::NotJson)?;
    match kind {
        "resize" => Ok(Control::Resize {
            cols: dim("cols", v.get("cols").and_then(|n| n.as_u64()))?,
            rows: dim("rows", v.get("rows").and_then(|n| n.as_u64()))?,
        }),
        other => Err(ControlError::UnknownType(other.chars().take(32).collect())),
    }
}

/// Why a console session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The shell in the container exited (status when known).
    ShellExited(Option<u32>),
    /// The browser (or client) closed the websocket.
    ClientClosed,
    /// No traffic either way for the idle timeout.
    Idle {
        /// The timeout, seconds.
        secs: u64,
    },
    /// The app is being deleted or is gone.
    AppDeleted,
    /// The app stopped (or is no longer running).
    AppStopped,
    /// The daemon is shutting down.
    Shutdown,
    /// A concurrency limit refused the session.
    Limit(String),
    /// The client sent an input frame over the size limit.
    InputTooLarge {
        /// The limit, bytes.
        max: usize,
    },
    /// The client broke the protocol (e.g. a websocket error).
    Protocol(String),
    /// The session could not be opened or broke (SSH, Proxmox).
    Failed(String),
}

/// Websocket close codes (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away (server shutdown).
    pub const AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// Policy violation.
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error.
    pub const ERROR: u16 = 1011;
    /// Try again later.
    pub const TRY_AGAIN: u16 = 1013;
}

/// The close reason must fit a control frame: 125 bytes minus the 2-byte code.
pub const MAX_REASON_BYTES: usize = 123;

impl EndReason {
    /// Human sentence shown to the user (the `exit` frame and the close reason).
    pub fn message(&self) -> String {
        match self {
            EndReason::ShellExited(Some(0)) | EndReason::ShellExited(None) => "The shell exited.".into(),
            EndReason::ShellExited(Some(s)) => format!("The shell exited with status {s}."),
            EndReason::ClientClosed => "The console was closed.".into(),
            EndReason::Idle { secs } if *secs < 120 => format!("Idle timeout: no activity for {secs} s."),
            EndReason::Idle { secs } => format!("Idle timeout: no activity for {} min.", secs.div_ceil(60)),
            EndReason::AppDeleted => "The app was deleted.".into(),
            EndReason::AppStopped => "The app is not running.".into(),
            EndReason::Shutdown => "The appliance is shutting down.".into(),
            EndReason::Limit(m) => m.clone(),
            EndReason::InputTooLarge { max } => format!("Input frame over the limit of {max} bytes."),
            EndReason::Protocol(m) => format!("Protocol error: {m}"),
            EndReason::Failed(m) => format!("Console failed: {m}"),
        }
    }

    /// Close code of the websocket.
    pub fn close_code(&self) -> u16 {
        use close_code::*;
        match self {
            EndReason::ShellExited(_) | EndReason::ClientClosed | EndReason::AppDeleted | EndReason::AppStopped => NORMAL,
            EndReason::Idle { .. } => POLICY,
            EndReason::Shutdown => AWAY,
            EndReason::Limit(_) => TRY_AGAIN,
            EndReason::InputTooLarge { .. } => TOO_BIG,
            EndReason::Protocol(_) => PROTOCOL,
            EndReason::Failed(_) => ERROR,
        }
    }

    /// Short machine name for the audit log (`shell_exited`, `idle_timeout`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            EndReason::ShellExited(_) => "shell_exited",
            EndReason::ClientClosed => "client_closed",
            EndReason::Idle { .. } => "idle_timeout",
            EndReason::AppDeleted => "app_deleted",
            EndReason::AppStopped => "app_stopped",
            EndReason::Shutdown => "shutdown",
            EndReason::Limit(_) => "limit",
            EndReason::InputTooLarge { .. } => "input_too_large",
            EndReason::Protocol(_) => "protocol_error",
            EndReason::Failed(_) => "failed",
        }
    }

    /// Did the session end the way sessions normally end (for the audit `result`)?
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            EndReason::ShellExited(_)
                | EndReason::ClientClosed
                | EndReason::Idle { .. }
                | EndReason::AppDeleted
                | EndReason::AppStopped
                | EndReason::Shutdown
        )
    }

    /// The close-frame reason: [`Self::message`] cut to [`MAX_REASON_BYTES`] on a character
    /// boundary.
    pub fn close_reason(&self) -> String {
        truncate_utf8(&self.message(), MAX_REASON_BYTES)
    }

    /// The `exit` text frame sent before the close frame.
    pub fn exit_frame(&self) -> String {
        #[derive(Serialize)]
        struct Exit<'a> {
            r#type: &'a str,
            reason: String,
            code: &'a str,
        }
        serde_json::to_string(&Exit {
            r#type: "exit",
            reason: self.message(),
            code: self.code(),
        })
        .unwrap_or_default()
    }
}

/// An `error` text frame (a refused control message; the session goes on).
pub fn error_frame(message: &str) -> String {
    serde_json::json!({"type": "error", "message": message}).to_string()
}

/// Cut `s` to at most `max` bytes without splitting a character.
pub fn truncate_utf8(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_frames_parse_and_bad_ones_are_refused_with_reasons() {
        assert_eq!(
            parse_control(r#"{"type":"resize","cols":120,"rows":40}"#),
            Ok(Control::Resize { cols: 120, rows: 40 })
        );
        assert_eq!(parse_control("hello"), Err(ControlError::NotJson));
        assert_eq!(parse_control("[1,2]"), Err(ControlError::NotJson));
        assert_eq!(parse_control(r#"{"type":7}"#), Err(ControlError::NotJson));
        assert_eq!(parse_control(r#"{"type":"paste"}"#), Err(ControlError::UnknownType("paste".into())));
        assert_eq!(
            parse_control(r#"{"type":"resize","cols":0,"rows":40}"#),
            Err(ControlError::BadField { field: "cols" })
        );
        assert_eq!(
            parse_control(r#"{"type":"resize","cols":80,"rows":1001}"#),
            Err(ControlError::BadField { field: "rows" })
        );
        assert_eq!(
            parse_control(r#"{"type":"resize","cols":-3,"rows":4}"#),
            Err(ControlError::BadField { field: "cols" })
        );
        assert_eq!(
            parse_control(r#"{"type":"resize","cols":"80","rows":4}"#),
            Err(ControlError::BadField { field: "cols" })
        );
        let long = format!(r#"{{"type":"resize","cols":80,"rows":24,"x":"{}"}}"#, "a".repeat(2000));
        assert_eq!(parse_control(&long), Err(ControlError::TooLong));
        assert_eq!(dim("cols", Some(1000)), Ok(1000));
        assert!(dim("cols", None).is_err());
    }

    #[test]
    fn end_reasons_map_to_close_codes_and_fit_the_close_frame() {
        assert_eq!(EndReason::Limit("too many".into()).close_code(), 1013);
        assert_eq!(EndReason::Shutdown.close_code(), 1001);
        assert_eq!(EndReason::ShellExited(Some(0)).close_code(), 1000);
        assert_eq!(EndReason::InputTooLarge { max: 10 }.close_code(), 1009);
        assert!(EndReason::Idle { secs: 900 }.message().contains("15 min"));
        assert!(EndReason::Idle { secs: 10 }.message().contains("10 s"));
        assert!(!EndReason::Failed("x".into()).is_success());
        assert!(EndReason::AppDeleted.is_success());
        let long = EndReason::Failed("é".repeat(200));
        let r = long.close_reason();
        assert!(r.len() <= MAX_REASON_BYTES && !r.is_empty());
        let exit: serde_json::Value = serde_json::from_str(&EndReason::AppDeleted.exit_frame()).unwrap();
        assert_eq!(exit["type"], "exit");
        assert_eq!(exit["reason"], "The app was deleted.");
        assert_eq!(exit["code"], "app_deleted");
        let err: serde_json::Value = serde_json::from_str(&error_frame("bad")).unwrap();
        assert_eq!((err["type"].as_str(), err["message"].as_str()), (Some("error"), Some("bad")));
        assert_eq!(truncate_utf8("aé", 2), "a");
    }
}
