//! Fault injection: the same struct is set with `SimHandle::set_faults`, the admin endpoint
//! `POST /sim/faults`, or the `[faults]` table of the simulator settings file.

use serde::{Deserialize, Serialize};

/// Faults currently injected. The default injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added latency before every API reply.
    pub latency_ms: u64,
    /// Tasks that fail (or finish with warnings) with a given message.
    pub fail_tasks: Vec<TaskFault>,
    /// Nodes that are offline: calls proxied to them get `595 Errors during connection
    /// establishment, proxy handshake: Connection refused`; they show `offline` in `/nodes`.
    pub offline_nodes: Vec<String>,
    /// Nodes whose proxied calls time out: `596 Errors during TLS negotiation, request sending
    /// and header processing: Connection timed out`.
    pub timeout_nodes: Vec<String>,
    /// The next `count` API calls under `path_prefix` (with or without `/api2/json`) get `status`.
    pub http_5xx: Option<Http5xx>,
    /// SSH sessions are dropped this long after they connect.
    pub ssh_drop_after_ms: Option<u64>,
    /// Every task takes at least this long.
    pub slow_task_ms: Option<u64>,
    /// Every command run over SSH (`pct exec`, `pct push`, ...) is delayed this long.
    pub exec_delay_ms: Option<u64>,
    /// App servers started by `docker compose up` answer `503 starting` for this long (a
    /// slow-starting app: the deploy's health step waits for it).
    pub app_warmup_ms: Option<u64>,
    /// Delay of 401 replies (PVE delays them by about 3000 ms).
    pub auth_fail_delay_ms: u64,
    /// Mimic PVE before 8.3: error bodies without `message`.
    pub legacy_errors: bool,
    /// Mimic PVE before 8.2: `vmid`, `cpus` and some sizes as JSON strings in lists.
    pub string_numbers: bool,
}

/// A task fault: the next tasks of `type` (optionally only for `vmid`) end with `message`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskFault {
    /// Worker type: `vzcreate`, `vzstart`, `vzstop`, `vzdump`, `vzrestore`, `download`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Only tasks for this guest.
    pub vmid: Option<u32>,
    /// Error text (`TASK ERROR: <message>`), or the warning text when `warnings` is set.
    pub message: String,
    /// Fail this long after the task started.
    pub after_ms: Option<u64>,
    /// Instead of failing, finish with `WARNINGS: <n>` (n warning lines with `message`).
    pub warnings: Option<u32>,
    /// Apply to this many tasks, then disarm (default: every matching task).
    pub times: Option<u32>,
}

/// Injected HTTP errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http5xx {
    /// Path prefix, e.g. `/nodes/pve1/lxc` or `/api2/json/nodes`.
    pub path_prefix: String,
    /// Status code (500..=599).
    pub status: u16,
    /// How many requests fail.
    pub count: u32,
}

/// What a task should do according to the faults.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// Run normally.
    Normal,
    /// Fail with this message after `after_ms`.
    Fail {
        /// Error text.
        message: String,
        /// Delay before failing.
        after_ms: u64,
    },
    /// Succeed with this many warnings.
    Warn {
        /// Warning text.
        message: String,
        /// Number of warnings.
        count: u32,
    },
}

impl Faults {
    /// Decide (and consume one use of) the fault for a task of `kind` on `vmid`.
    pub fn take_task_outcome(&mut self, kind: &str, vmid: Option<u32>) -> TaskOutcome {
        let Some(i) = self
            .fail_tasks
            .iter()
            .position(|f| f.kind == kind && (f.vmid.is_none() || f.vmid == vmid))
        else {
            return TaskOutcome::Normal;
        };
        let f = self.fail_tasks[i].clone();
        if let Some(t) = f.times {
            if t <= 1 {
                self.fail_tasks.remove(i);
            } else {
                self.fail_tasks[i].times = Some(t - 1);
            }
        }
        match f.warnings {
            Some(n) => TaskOutcome::Warn {
                message: f.message,
                count: n.max(1),
            },
            None => TaskOutcome::Fail {
                message: if f.message.is_empty() {
                    "injected failure".into()
                } else {
                    f.message
                },
                after_ms: f.after_ms.unwrap_or(0),
            },
        }
    }

    /// Consume one injected HTTP error for `path` (relative to `/api2/json`).
    pub fn take_http_error(&mut self, path: &str) -> Option<u16> {
        let h = self.http_5xx.as_mut()?;
        let prefix = h.path_prefix.strip_prefix("/api2/json").unwrap_or(&h.path_prefix);
        if h.count == 0 || !path.starts_with(prefix) {
            return None;
        }
        h.count -= 1;
        let status = h.status.clamp(500, 599);
        if h.count == 0 {
            self.http_5xx = None;
        }
        Some(status)
    }

    /// The proxy error for a call forwarded to `node`, if the node is unreachable.
    pub fn proxy_error(&self, node: &str) -> Option<(u16, &'static str)> {
        if self.offline_nodes.iter().any(|n| n == node) {
            Some((595, "Errors during connection establishment, proxy handshake: Connection refused"))
        } else if self.timeout_nodes.iter().any(|n| n == node) {
            Some((
                596,
                "Errors during TLS negotiation, request sending and header processing: Connection timed out",
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_faults_match_and_disarm() {
        let mut f: Faults = serde_json::from_str(r#"{"fail_tasks":[{"type":"vzstart","vmid":101,"message":"boom","times":1}]}"#).unwrap();
        assert_eq!(f.take_task_outcome("vzstart", Some(100)), TaskOutcome::Normal);
        assert_eq!(
            f.take_task_outcome("vzstart", Some(101)),
            TaskOutcome::Fail {
                message: "boom".into(),
                after_ms: 0
            }
        );
        assert_eq!(f.take_task_outcome("vzstart", Some(101)), TaskOutcome::Normal);
        f.fail_tasks.push(TaskFault {
            kind: "vzdump".into(),
            message: "careful".into(),
            warnings: Some(2),
            ..Default::default()
        });
        assert_eq!(
            f.take_task_outcome("vzdump", None),
            TaskOutcome::Warn {
                message: "careful".into(),
                count: 2
            }
        );
        assert_eq!(
            f.take_task_outcome("vzdump", Some(5)),
            TaskOutcome::Warn {
                message: "careful".into(),
                count: 2
            }
        );
    }

    #[test]
    fn http_errors_count_down() {
        let mut f = Faults {
            http_5xx: Some(Http5xx {
                path_prefix: "/api2/json/nodes".into(),
                status: 503,
                count: 2,
            }),
            ..Default::default()
        };
        assert_eq!(f.take_http_error("/version"), None);
        assert_eq!(f.take_http_error("/nodes/pve1/lxc"), Some(503));
        assert_eq!(f.take_http_error("/nodes"), Some(503));
        assert_eq!(f.take_http_error("/nodes"), None);
    }

    #[test]
    fn unknown_fault_keys_are_rejected() {
        assert!(serde_json::from_str::<Faults>(r#"{"latency":5}"#).is_err());
        let f = Faults {
            offline_nodes: vec!["pve2".into()],
            ..Default::default()
        };
        assert_eq!(f.proxy_error("pve2").unwrap().0, 595);
        assert!(f.proxy_error("pve1").is_none());
    }
}
