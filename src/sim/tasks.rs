//! Worker tasks: UPIDs, asynchronous execution with log lines, final status (`OK`,
//! `WARNINGS: N`, error text), cancellation, and the task table behind the tasks endpoints.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::faults::TaskOutcome;
use super::{Sim, now};

/// Format a UPID (`UPID:node:PID:PSTART:STARTTIME:type:id:user:`).
pub fn format_upid(node: &str, pid: u32, pstart: u64, starttime: u64, wtype: &str, id: &str, user: &str) -> String {
    format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{wtype}:{id}:{user}:")
}

/// Decoded UPID fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Upid {
    /// Node.
    pub node: String,
    /// Worker PID.
    pub pid: u32,
    /// Process start (clock ticks).
    pub pstart: u64,
    /// Unix start time.
    pub starttime: u64,
    /// Worker type.
    pub wtype: String,
    /// Object id (may be empty).
    pub id: String,
    /// `user@realm` or `user@realm!token`.
    pub user: String,
}

/// Parse a UPID strictly (PVE's regex).
pub fn parse_upid(s: &str) -> Option<Upid> {
    let body = s.strip_prefix("UPID:")?.strip_suffix(':')?;
    let f: Vec<&str> = body.split(':').collect();
    if f.len() != 7 {
        return None;
    }
    let node = f[0];
    let node_ok =
        !node.is_empty() && node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !node.starts_with('-') && !node.ends_with('-');
    let hex = |s: &str, lens: &[usize]| lens.contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit());
    let field = |s: &str, empty_ok: bool| (empty_ok || !s.is_empty()) && !s.chars().any(|c| c.is_whitespace() || c == '/');
    if !node_ok
        || !hex(f[1], &[8])
        || !hex(f[2], &[8, 9])
        || !hex(f[3], &[8])
        || !field(f[4], false)
        || !field(f[5], true)
        || !field(f[6], false)
    {
        return None;
    }
    Some(Upid {
        node: node.into(),
        pid: u32::from_str_radix(f[1], 16).ok()?,
        pstart: u64::from_str_radix(f[2], 16).ok()?,
        starttime: u64::from_str_radix(f[3], 16).ok()?,
        wtype: f[4].into(),
        id: f[5].into(),
        user: f[6].into(),
    })
}

/// One task.
#[derive(Debug, Clone)]
pub struct Task {
    /// UPID string.
    pub upid: String,
    /// Decoded UPID.
    pub info: Upid,
    /// Log lines.
    pub log: Vec<String>,
    /// Exit status once stopped.
    pub exitstatus: Option<String>,
    /// End time once stopped.
    pub endtime: Option<u64>,
    /// Cancels the worker.
    pub cancel: CancellationToken,
}

impl Task {
    /// `GET .../tasks/{upid}/status` data.
    pub fn status_json(&self) -> Value {
        let mut v = json!({
            "upid": self.upid, "node": self.info.node, "pid": self.info.pid, "pstart": self.info.pstart,
            "starttime": self.info.starttime, "type": self.info.wtype, "id": self.info.id,
            "user": self.info.user, "status": if self.exitstatus.is_some() { "stopped" } else { "running" },
        });
        if let Some((user, token)) = self.info.user.split_once('!') {
            v["user"] = json!(user);
            v["tokenid"] = json!(token);
        }
        if let Some(e) = &self.exitstatus {
            v["exitstatus"] = json!(e);
        }
        v
    }
    /// An entry of the task lists.
    pub fn list_json(&self) -> Value {
        let mut v = self.status_json();
        let obj = v.as_object_mut().expect("object");
        obj.remove("exitstatus");
        match &self.exitstatus {
            Some(e) => {
                obj.insert("status".into(), json!(e));
                obj.insert("endtime".into(), json!(self.endtime.unwrap_or(self.info.starttime)));
            }
            None => {
                obj.remove("status");
            }
        }
        v
    }
    /// Whether the task failed.
    pub fn failed(&self) -> bool {
        self.exitstatus
            .as_deref()
            .is_some_and(|e| e != "OK" && !e.starts_with("WARNINGS: "))
    }
}

/// All tasks of the cluster.
#[derive(Default)]
pub struct TaskTable {
    tasks: Mutex<BTreeMap<String, Task>>,
    order: Mutex<Vec<String>>,
    pid: AtomicU32,
}

impl TaskTable {
    /// Register a new running task and return its UPID.
    pub fn create(&self, node: &str, wtype: &str, id: &str, user: &str) -> (String, CancellationToken) {
        let pid = 100_000 + self.pid.fetch_add(1, Ordering::Relaxed) % 3_000_000;
        let started = now();
        let pstart = 4_000_000 + (started % 1_000_000) * 100;
        let upid = format_upid(node, pid, pstart, started, wtype, id, user);
        let cancel = CancellationToken::new();
        let info = parse_upid(&upid).expect("we format valid UPIDs");
        let task = Task {
            upid: upid.clone(),
            info,
            log: Vec::new(),
            exitstatus: None,
            endtime: None,
            cancel: cancel.clone(),
        };
        self.tasks.lock().expect("tasks").insert(upid.clone(), task);
        let mut order = self.order.lock().expect("order");
        order.push(upid.clone());
        if order.len() > 5000 {
            let old = order.remove(0);
            self.tasks.lock().expect("tasks").remove(&old);
        }
        (upid, cancel)
    }
    /// Append a log line.
    pub fn log(&self, upid: &str, line: &str) {
        if let Some(t) = self.tasks.lock().expect("tasks").get_mut(upid) {
            for l in line.lines() {
                t.log.push(l.to_string());
            }
        }
    }
    /// Mark stopped with `exitstatus`, writing the final `TASK ...` line.
    pub fn finish(&self, upid: &str, exitstatus: &str) {
        if let Some(t) = self.tasks.lock().expect("tasks").get_mut(upid) {
            let last = if exitstatus == "OK" {
                "TASK OK".to_string()
            } else if exitstatus.starts_with("WARNINGS: ") {
                format!("TASK {exitstatus}")
            } else {
                format!("TASK ERROR: {exitstatus}")
            };
            t.log.push(last);
            t.exitstatus = Some(exitstatus.to_string());
            t.endtime = Some(now());
        }
    }
    /// A task by UPID.
    pub fn get(&self, upid: &str) -> Option<Task> {
        self.tasks.lock().expect("tasks").get(upid).cloned()
    }
    /// Tasks (newest first) matching `filter`.
    pub fn list(&self, filter: impl Fn(&Task) -> bool) -> Vec<Task> {
        let order = self.order.lock().expect("order");
        let tasks = self.tasks.lock().expect("tasks");
        order
            .iter()
            .rev()
            .filter_map(|u| tasks.get(u))
            .filter(|t| filter(t))
            .cloned()
            .collect()
    }
    /// Cancel every running task (shutdown).
    pub fn cancel_all(&self) {
        for t in self.tasks.lock().expect("tasks").values() {
            t.cancel.cancel();
        }
    }
}

/// Boxed task body.
pub type TaskBody = Pin<Box<dyn Future<Output = Result<u32, String>> + Send>>;

/// Handle given to a task body.
#[derive(Clone)]
pub struct TaskCtx {
    /// The simulator.
    pub sim: Arc<Sim>,
    /// This task's UPID.
    pub upid: String,
    fail: Arc<Mutex<Option<(String, u64)>>>,
    started: std::time::Instant,
}

impl TaskCtx {
    /// A context for work that runs outside a spawned task (e.g. `pct start` over SSH).
    pub fn detached(sim: Arc<Sim>, upid: String) -> TaskCtx {
        TaskCtx {
            sim,
            upid,
            fail: Arc::new(Mutex::new(None)),
            started: std::time::Instant::now(),
        }
    }
    /// Append a log line.
    pub fn log(&self, line: impl AsRef<str>) {
        self.sim.tasks.log(&self.upid, line.as_ref());
    }
    /// One unit of simulated work.
    pub async fn step(&self) {
        let ms = self.sim.cfg.task_delay_ms;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    /// Where an injected failure strikes: waits until its `after_ms` and returns the error.
    /// Bodies call this before they change state.
    pub async fn checkpoint(&self) -> Result<(), String> {
        let pending = self.fail.lock().expect("fail").take();
        if let Some((msg, after)) = pending {
            let elapsed = self.started.elapsed().as_millis() as u64;
            if after > elapsed {
                tokio::time::sleep(Duration::from_millis(after - elapsed)).await;
            }
            return Err(msg);
        }
        Ok(())
    }
}

impl Sim {
    /// Start a worker task; returns its UPID at once. `body` returns the number of warnings
    /// it logged, or an error text. Task faults for (`wtype`, `vmid`) are applied.
    pub fn spawn_task<F>(self: &Arc<Self>, node: &str, wtype: &str, id: &str, user: &str, vmid: Option<u32>, body: F) -> String
    where
        F: FnOnce(TaskCtx) -> TaskBody,
    {
        let (upid, cancel) = self.tasks.create(node, wtype, id, user);
        let outcome = self.faults.lock().expect("faults").take_task_outcome(wtype, vmid);
        let slow = self.faults.lock().expect("faults").slow_task_ms.unwrap_or(0);
        let fail = match &outcome {
            TaskOutcome::Fail { message, after_ms } => Some((message.clone(), *after_ms)),
            _ => None,
        };
        let ctx = TaskCtx {
            sim: self.clone(),
            upid: upid.clone(),
            fail: Arc::new(Mutex::new(fail)),
            started: std::time::Instant::now(),
        };
        let fut = body(ctx.clone());
        let sim = self.clone();
        let u = upid.clone();
        self.tracker.spawn(async move {
            let res = tokio::select! {
                r = fut => r,
                _ = cancel.cancelled() => Err("received interrupt".to_string()),
            };
            // A failure armed for a task whose body never reached a checkpoint still fails it.
            let res = match res {
                Ok(w) => ctx.checkpoint().await.map(|_| w),
                e => e,
            };
            let elapsed = ctx.started.elapsed().as_millis() as u64;
            if slow > elapsed {
                tokio::time::sleep(Duration::from_millis(slow - elapsed)).await;
            }
            let status = match (res, outcome) {
                (Err(e), _) => e.lines().next().unwrap_or("unexpected status").to_string(),
                (Ok(w), TaskOutcome::Warn { message, count }) => {
                    for _ in 0..count {
                        sim.tasks.log(&u, &format!("WARN: {message}"));
                    }
                    format!("WARNINGS: {}", w + count)
                }
                (Ok(0), _) => "OK".to_string(),
                (Ok(w), _) => format!("WARNINGS: {w}"),
            };
            if status != "OK" && !status.starts_with("WARNINGS") {
                tracing::debug!(upid = %u, %status, "simulated task failed");
            }
            sim.tasks.finish(&u, &status);
        });
        upid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upids_round_trip_and_reject_garbage() {
        let u = format_upid("pve1", 0x1234, 0x0D015579, 0x68BF3A41, "vzcreate", "100", "root@pam!proximity");
        assert_eq!(u, "UPID:pve1:00001234:0D015579:68BF3A41:vzcreate:100:root@pam!proximity:");
        let p = parse_upid(&u).unwrap();
        assert_eq!(p.user, "root@pam!proximity");
        assert_eq!(p.starttime, 0x68BF3A41);
        assert!(parse_upid("UPID:example-node:000934AF:0D015579:68BF3A41:broken type string:100:root@pam:").is_none());
        assert!(parse_upid("invalid garbage").is_none());
        assert_eq!(parse_upid("UPID:n:0000C346:165A0CE4:68D7279C:aptupdate::root@pam:").unwrap().id, "");
    }

    #[test]
    fn upid_examples_from_samples_parse() {
        let text = include_str!("data/upid_examples.json");
        let v: Value = serde_json::from_str(text).unwrap();
        for e in v["examples"].as_array().unwrap() {
            let p = parse_upid(e["upid"].as_str().unwrap()).unwrap_or_else(|| panic!("{e}"));
            assert_eq!(p.pid as i64, e["decoded"]["pid"].as_i64().unwrap());
            assert_eq!(p.wtype, e["decoded"]["type"].as_str().unwrap());
        }
        for bad in v["must_fail"].as_array().unwrap() {
            assert!(parse_upid(bad.as_str().unwrap()).is_none(), "{bad}");
        }
    }

    #[test]
    fn finish_writes_task_lines() {
        let t = TaskTable::default();
        let (u, _) = t.create("pve1", "vzstart", "100", "root@pam");
        t.log(&u, "starting");
        t.finish(&u, "WARNINGS: 2");
        let task = t.get(&u).unwrap();
        assert_eq!(task.log.last().unwrap(), "TASK WARNINGS: 2");
        assert!(!task.failed());
        assert_eq!(task.status_json()["status"], "stopped");
        let (u2, _) = t.create("pve1", "vzstart", "100", "root@pam!tok");
        assert_eq!(t.get(&u2).unwrap().status_json()["tokenid"], "tok");
        t.finish(&u2, "CT 100 already running");
        assert!(t.get(&u2).unwrap().failed());
        assert_eq!(t.list(|_| true)[0].upid, u2);
    }
}
