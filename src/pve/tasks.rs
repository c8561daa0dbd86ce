//! Waiting for Proxmox worker tasks: poll `GET /nodes/<upid.node>/tasks/<upid>/status` with
//! backoff until it stops; `OK` and `WARNINGS: N` are success, anything else is
//! [`Error::TaskFailed`] with the error text and the last log lines.

use std::time::{Duration, Instant};

use super::client::Client;
use super::error::Error;
use super::types::{TaskLogLine, TaskStatus, exit_ok};
use super::upid::Upid;

/// Lines of the task log returned with a failure.
pub const LOG_TAIL_LINES: u64 = 20;

/// Poll delays: 100 ms growing by half each step up to 2 s.
pub fn poll_delay(step: u32) -> Duration {
    let ms = 100.0 * 1.5f64.powi(step.min(20) as i32);
    Duration::from_millis(ms.min(2000.0) as u64)
}

/// What a stopped task means.
pub fn outcome(status: &TaskStatus) -> Option<Result<(), String>> {
    if status.is_running() {
        return None;
    }
    match status.exitstatus.as_deref() {
        Some(s) if exit_ok(s) => Some(Ok(())),
        Some(s) => Some(Err(s.to_string())),
        None => Some(Err("unexpected status".into())),
    }
}

impl Client {
    /// Wait until the task stops, up to `timeout`. Returns its final status on success
    /// (`OK` or `WARNINGS: N`).
    pub async fn wait_task(&self, upid: &Upid, timeout: Duration) -> Result<TaskStatus, Error> {
        self.wait_task_with(upid, timeout, |_| {}).await
    }

    /// Like [`Client::wait_task`], calling `on_log` for every new task log line as it
    /// appears (for job logs).
    pub async fn wait_task_with(
        &self,
        upid: &Upid,
        timeout: Duration,
        mut on_log: impl FnMut(&TaskLogLine) + Send,
    ) -> Result<TaskStatus, Error> {
        let started = Instant::now();
        let mut step = 0u32;
        let mut next_line = 0u64;
        loop {
            let status = self.task_status(upid).await?;
            if next_line != u64::MAX {
                // Best effort: a failing log read must not fail the wait.
                match self.task_log(upid, next_line, 500).await {
                    Ok((lines, _)) => {
                        for l in &lines {
                            on_log(l);
                        }
                        next_line += lines.len() as u64;
                    }
                    Err(e) => {
                        tracing::debug!(upid = %upid, error = %e, "cannot read task log; continuing without it");
                        next_line = u64::MAX;
                    }
                }
            }
            match outcome(&status) {
                Some(Ok(())) => {
                    tracing::debug!(upid = %upid, exitstatus = ?status.exitstatus, "PVE task finished");
                    return Ok(status);
                }
                Some(Err(exitstatus)) => {
                    let log_tail = self.log_tail(upid).await;
                    tracing::debug!(upid = %upid, exitstatus = %exitstatus, "PVE task failed");
                    return Err(Error::TaskFailed {
                        upid: upid.to_string(),
                        exitstatus,
                        log_tail,
                    });
                }
                None => {}
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(Error::TaskTimeout {
                    upid: upid.to_string(),
                    waited_secs: waited.as_secs(),
                });
            }
            let delay = poll_delay(step).min(timeout - waited);
            step += 1;
            tokio::time::sleep(delay).await;
        }
    }

    /// The last [`LOG_TAIL_LINES`] lines of a task log (empty if unreadable).
    pub async fn log_tail(&self, upid: &Upid) -> Vec<String> {
        let total = match self.task_log(upid, 0, 1).await {
            Ok((_, total)) => total,
            Err(_) => return Vec::new(),
        };
        let start = total.saturating_sub(LOG_TAIL_LINES);
        match self.task_log(upid, start, LOG_TAIL_LINES).await {
            Ok((lines, _)) => lines.into_iter().map(|l| l.t).collect(),
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(status: &str, exit: Option<&str>) -> TaskStatus {
        serde_json::from_value(serde_json::json!({"status": status, "exitstatus": exit, "upid": "", "node": "n"})).unwrap()
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome(&st("running", None)), None);
        assert_eq!(outcome(&st("stopped", Some("OK"))), Some(Ok(())));
        assert_eq!(outcome(&st("stopped", Some("WARNINGS: 3"))), Some(Ok(())));
        assert_eq!(
            outcome(&st("stopped", Some("CT 105 already running"))),
            Some(Err("CT 105 already running".into()))
        );
        assert_eq!(outcome(&st("stopped", Some("WARNINGS"))), Some(Err("WARNINGS".into())));
        assert_eq!(outcome(&st("stopped", None)), Some(Err("unexpected status".into())));
    }

    #[test]
    fn delays_grow_and_cap() {
        assert_eq!(poll_delay(0), Duration::from_millis(100));
        assert!(poll_delay(1) > poll_delay(0));
        assert_eq!(poll_delay(50), Duration::from_secs(2));
    }
}
