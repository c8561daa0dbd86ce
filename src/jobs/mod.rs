//! Persistent background jobs (replaces Celery + Redis).
//!
//! Lifecycle of a job:
//! ```text
//!  submit ──► queued ──(worker free, app free)──► running ──► step 1 … step n ──► succeeded
//!               ▲                                    │  └─ step fails ─────────► failed ──retry──┐
//!               │                                    └─ cancel ───────────────► cancelled       │
//!               └───────────── start-up recovery / retry (from the failed step) ◄──────────────┘
//! ```
//! Job rows live in redb (table `jobs`), logs in `job_logs` (`<job>/<seq>`). Every change is
//! published on the event bus as `job.state`, `job.step` or `job.log` with the job id as
//! subject. At most `jobs.workers` jobs run at once, at most `jobs.max_queued` wait, and
//! two jobs holding the same app never run at the same time.
//!
//! **Architecture invariant:** a job is never left `running` across a restart:
//! [`Jobs::recover`] resumes it at its first unfinished idempotent step or fails it with
//! the reason (rules in [`model::Job::recovery`]).

pub mod cron;
pub mod model;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::JobsConfig;
use crate::events::EventBus;
use crate::store::{Store, StoreError, Table, WriteTx};

pub use model::{Job, JobKind, JobState, Recovery, Step, StepSpec, StepState, TransitionError};

/// Jobs by id.
pub const JOBS: Table<Job> = Table::new("jobs");
/// Job logs by `<job id>/<sequence>`.
pub const JOB_LOGS: Table<JobLog> = Table::new("job_logs");

/// Severity of a job log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Detail.
    Debug,
    /// Progress.
    Info,
    /// Something odd but not fatal.
    Warn,
    /// A failure.
    Error,
}

/// One structured log line of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLog {
    /// Unix milliseconds.
    pub time: i64,
    /// Severity.
    pub level: LogLevel,
    /// Step it belongs to.
    pub step: Option<String>,
    /// Text.
    pub message: String,
}

/// Failures of the jobs engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The queue holds `jobs.max_queued` jobs already.
    #[error("the job queue is full ({0} jobs waiting); try again later or raise jobs.max_queued")]
    QueueFull(usize),
    /// No such job.
    #[error("job {0} not found")]
    NotFound(String),
    /// Illegal state change.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Outcome of a successful step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Did its work (optional short note).
    Done(Option<String>),
    /// Nothing to do (already in the wanted state).
    Skipped(String),
}

/// A step failure: the reason and, if any, the tail of the PVE task log / command output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// Why it failed.
    pub reason: String,
    /// Output tail (task log, command stderr).
    pub output: Option<String>,
}

impl StepError {
    /// A failure with a reason only.
    pub fn new(reason: impl Into<String>) -> Self {
        StepError {
            reason: reason.into(),
            output: None,
        }
    }
    /// A failure with an output tail.
    pub fn with_output(reason: impl Into<String>, output: impl Into<String>) -> Self {
        let output = output.into();
        StepError {
            reason: reason.into(),
            output: if output.trim().is_empty() { None } else { Some(output) },
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.reason)?;
        if let Some(o) = &self.output {
            write!(f, " — output: {}", tail(o, 600))?;
        }
        Ok(())
    }
}

/// The last `max` bytes of `s` (on a char boundary), trimmed.
pub fn tail(s: &str, max: usize) -> &str {
    let s = s.trim();
    if s.len() <= max {
        return s;
    }
    let mut i = s.len() - max;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// What runs the steps of jobs (the platform).
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Run one step. Must be idempotent when the step was declared so.
    async fn run_step(&self, cx: &StepCx, step: &str) -> Result<StepOutcome, StepError>;
    /// Called once when the job reaches a terminal state (succeeded, failed, cancelled).
    async fn finished(&self, cx: &StepCx, job: &Job);
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A new job id.
pub fn new_job_id() -> String {
    format!("job-{}", hex::encode(rand::random::<[u8; 8]>()))
}

struct Sched {
    queue: VecDeque<String>,
    running: HashMap<String, CancellationToken>,
    busy: HashSet<String>,
}

struct Inner {
    store: Store,
    events: EventBus,
    workers: usize,
    max_queued: usize,
    keep_finished: usize,
    sched: Mutex<Sched>,
    notify: Notify,
    log_seq: AtomicU64,
    metrics: std::sync::OnceLock<crate::telemetry::Metrics>,
}

/// Handle to the jobs engine; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

/// Passed to a [`Handler`] for each step: the job's input, a place to record values for
/// later steps (persisted), logging, and cancellation.
pub struct StepCx {
    jobs: Jobs,
    job: Mutex<Job>,
    step: Mutex<Option<String>>,
    cancel: CancellationToken,
}

impl StepCx {
    /// Job id.
    pub fn id(&self) -> String {
        self.lock().id.clone()
    }
    /// Kind.
    pub fn kind(&self) -> JobKind {
        self.lock().kind
    }
    /// Target app.
    pub fn target(&self) -> Option<String> {
        self.lock().target.clone()
    }
    /// Owner user id.
    pub fn owner(&self) -> String {
        self.lock().owner.clone()
    }
    /// Job parameters.
    pub fn params(&self) -> serde_json::Value {
        self.lock().params.clone()
    }
    /// A snapshot of the job.
    pub fn job(&self) -> Job {
        self.lock().clone()
    }
    /// How many times this job was resumed or retried.
    pub fn attempts(&self) -> u32 {
        self.lock().attempts
    }
    fn set_job(&self, job: Job) {
        *self.lock() = job;
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Job> {
        self.job.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// A value recorded by an earlier step (also before a restart).
    pub fn data<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.lock().data.get(key).and_then(|v| serde_json::from_value(v.clone()).ok())
    }
    /// Record a value durably for later steps and resumption.
    pub fn set_data<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StepError> {
        let v = serde_json::to_value(value).map_err(|e| StepError::new(format!("cannot encode job data {key}: {e}")))?;
        let job = {
            let mut j = self.lock();
            j.data.insert(key.to_string(), v);
            j.updated_at = now_ms();
            j.clone()
        };
        self.jobs
            .inner
            .store
            .put(JOBS, &job.id, &job)
            .map_err(|e| StepError::new(format!("cannot save job state: {e}")))
    }
    /// Cancelled when the job is cancelled.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }
    /// Append a log line (stored and published as `job.log`).
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        let step = self.step.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let id = self.id();
        self.jobs.append_log(&id, level, step, message.into());
    }
    /// An owned logger for this job's current step (for callbacks that outlive `&self`).
    pub fn logger(&self) -> JobLogger {
        JobLogger {
            jobs: self.jobs.clone(),
            id: self.id(),
            step: self.step.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
    /// Info line.
    pub fn info(&self, message: impl Into<String>) {
        self.log(LogLevel::Info, message)
    }
    /// Warning line.
    pub fn warn(&self, message: impl Into<String>) {
        self.log(LogLevel::Warn, message)
    }
}

/// Appends log lines to one job step; cheap to clone.
#[derive(Clone)]
pub struct JobLogger {
    jobs: Jobs,
    id: String,
    step: Option<String>,
}

impl JobLogger {
    /// Append a line (stored and published as `job.log`).
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        self.jobs.append_log(&self.id, level, self.step.clone(), message.into());
    }
}

impl Jobs {
    /// An engine over the store; call [`Jobs::recover`] and then run [`Jobs::run`].
    pub fn new(store: Store, events: EventBus, cfg: &JobsConfig) -> Jobs {
        Jobs {
            inner: Arc::new(Inner {
                store,
                events,
                workers: cfg.workers.max(1),
                max_queued: cfg.max_queued.max(1),
                keep_finished: cfg.keep_finished.max(1),
                sched: Mutex::new(Sched {
                    queue: VecDeque::new(),
                    running: HashMap::new(),
                    busy: HashSet::new(),
                }),
                notify: Notify::new(),
                log_seq: AtomicU64::new(0),
                metrics: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Report job counts and durations to `metrics` (`proximity_jobs_total{kind,state}`,
    /// `proximity_job_duration_seconds{kind}`, `proximity_jobs_queued`, `proximity_jobs_running`).
    pub fn set_metrics(&self, metrics: crate::telemetry::Metrics) {
        let _ = self.inner.metrics.set(metrics);
    }

    fn record_metrics(&self, job: &Job) {
        let Some(m) = self.inner.metrics.get() else { return };
        m.counter(
            "proximity_jobs_total",
            "Jobs finished, by kind and final state.",
            &[("kind", job.kind.as_str()), ("state", job.state.as_str())],
        )
        .inc();
        if let (Some(a), Some(b)) = (job.started_at, job.finished_at) {
            m.histogram("proximity_job_duration_seconds", "Job run time.", &[("kind", job.kind.as_str())])
                .observe((b - a) as f64 / 1000.0);
        }
        let (q, r) = self.load();
        m.gauge("proximity_jobs_queued", "Jobs waiting.", &[]).set(q as i64);
        m.gauge("proximity_jobs_running", "Jobs running.", &[]).set(r as i64);
    }

    fn sched(&self) -> std::sync::MutexGuard<'_, Sched> {
        self.inner.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store the engine writes to.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Build a queued job (not stored yet). `locks` are extra app ids held while it runs.
    pub fn build(
        kind: JobKind,
        target: Option<String>,
        locks: &[String],
        owner: &str,
        steps: &[StepSpec],
        params: serde_json::Value,
    ) -> Job {
        let mut job = Job::new(new_job_id(), kind, target, owner, steps, params, now_ms());
        for l in locks {
            if !job.locks.contains(l) {
                job.locks.push(l.clone());
            }
        }
        job
    }

    /// Fail with [`JobError::QueueFull`] when no more jobs may wait.
    pub fn check_capacity(&self) -> Result<(), JobError> {
        let queued = self.sched().queue.len();
        if queued >= self.inner.max_queued {
            return Err(JobError::QueueFull(queued));
        }
        Ok(())
    }

    /// Store and queue a job.
    pub fn submit(&self, job: Job) -> Result<Job, JobError> {
        self.submit_with(job, |_| Ok::<(), JobError>(())).map(|(j, _)| j)
    }

    /// Store a job together with other records in one transaction (`f` runs inside it),
    /// then queue it. Nothing is stored when `f` fails or the queue is full.
    pub fn submit_with<T, E>(&self, job: Job, f: impl FnOnce(&mut WriteTx) -> Result<T, E>) -> Result<(Job, T), E>
    where
        E: From<JobError> + From<StoreError>,
    {
        self.check_capacity()?;
        let out = self.inner.store.write(|tx| {
            let out = f(tx)?;
            tx.put(JOBS, &job.id, &job)?;
            Ok::<T, E>(out)
        })?;
        self.publish_state(&job);
        self.sched().queue.push_back(job.id.clone());
        self.inner.notify.notify_one();
        Ok((job, out))
    }

    /// One job.
    pub fn get(&self, id: &str) -> Result<Job, JobError> {
        self.inner.store.get(JOBS, id)?.ok_or_else(|| JobError::NotFound(id.into()))
    }

    /// All jobs, newest first; only those targeting `app` when given.
    pub fn list(&self, app: Option<&str>) -> Result<Vec<Job>, JobError> {
        let mut v: Vec<Job> = self
            .inner
            .store
            .list(JOBS)?
            .into_iter()
            .map(|(_, j)| j)
            .filter(|j| app.is_none() || j.target.as_deref() == app || app.is_some_and(|a| j.locks.iter().any(|l| l == a)))
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(v)
    }

    /// A job's log lines in order.
    pub fn logs(&self, id: &str) -> Result<Vec<JobLog>, JobError> {
        Ok(self
            .inner
            .store
            .scan_prefix(JOB_LOGS, &format!("{id}/"))?
            .into_iter()
            .map(|(_, l)| l)
            .collect())
    }

    /// Number of jobs waiting and running.
    pub fn load(&self) -> (usize, usize) {
        let s = self.sched();
        (s.queue.len(), s.running.len())
    }

    /// True while a job holding `app` is queued or running in this process.
    pub fn app_busy(&self, app: &str) -> bool {
        let s = self.sched();
        if s.busy.contains(app) {
            return true;
        }
        s.queue.iter().any(|id| {
            self.inner
                .store
                .get(JOBS, id)
                .ok()
                .flatten()
                .is_some_and(|j| j.locks.iter().any(|l| l == app))
        })
    }

    /// Cancel a job: a queued one is cancelled at once, a running one at its next step
    /// boundary (its current step is asked to stop through [`StepCx::cancelled`]).
    pub fn cancel(&self, id: &str, reason: &str) -> Result<Job, JobError> {
        let mut job = self.get(id)?;
        {
            let mut s = self.sched();
            if let Some(tok) = s.running.get(id) {
                tok.cancel();
                return Ok(job);
            }
            s.queue.retain(|q| q != id);
        }
        job.cancel(reason, now_ms())?;
        self.save(&job)?;
        self.publish_state(&job);
        Ok(job)
    }

    /// Retry a failed or cancelled job from the step that failed.
    pub fn retry(&self, id: &str) -> Result<Job, JobError> {
        self.check_capacity()?;
        let mut job = self.get(id)?;
        job.retry(now_ms())?;
        self.save(&job)?;
        self.append_log(id, LogLevel::Info, None, format!("retry #{} requested", job.attempts));
        self.publish_state(&job);
        self.sched().queue.push_back(job.id.clone());
        self.inner.notify.notify_one();
        Ok(job)
    }

    fn save(&self, job: &Job) -> Result<(), StoreError> {
        self.inner.store.put(JOBS, &job.id, job)
    }

    fn publish_state(&self, job: &Job) {
        let v = serde_json::to_value(job).unwrap_or_default();
        self.inner.events.publish("job.state", &job.id, v);
    }

    fn publish_step(&self, job: &Job, i: usize) {
        let s = &job.steps[i];
        self.inner.events.publish(
            "job.step",
            &job.id,
            serde_json::json!({"index": i, "name": s.name, "state": s.state, "started_at": s.started_at,
                "finished_at": s.finished_at, "message": s.message, "progress": job.progress}),
        );
    }

    fn append_log(&self, id: &str, level: LogLevel, step: Option<String>, message: String) {
        let time = now_ms();
        let seq = self.inner.log_seq.fetch_add(1, Ordering::Relaxed) % 10_000;
        let key = format!("{id}/{:016}{seq:04}", time);
        let line = JobLog {
            time,
            level,
            step,
            message,
        };
        match level {
            LogLevel::Error | LogLevel::Warn => tracing::warn!(job = id, step = ?line.step, "{}", line.message),
            _ => tracing::info!(job = id, step = ?line.step, "{}", line.message),
        }
        if let Err(e) = self.inner.store.write_eventual(|tx| tx.put(JOB_LOGS, &key, &line)) {
            tracing::warn!(job = id, error = %e, "cannot store job log");
        }
        self.inner
            .events
            .publish("job.log", id, serde_json::to_value(&line).unwrap_or_default());
    }

    /// Start-up recovery: queue waiting jobs again, resume interrupted ones at their first
    /// unfinished idempotent step, fail the rest with the reason. Returns
    /// `(requeued+resumed, failed)`. Call before [`Jobs::run`].
    pub fn recover(&self) -> Result<(usize, Vec<Job>), JobError> {
        let mut jobs: Vec<Job> = self.inner.store.list(JOBS)?.into_iter().map(|(_, j)| j).collect();
        jobs.sort_by_key(|j| j.created_at);
        let mut queued = 0;
        let mut failed = Vec::new();
        for mut job in jobs {
            match job.recovery() {
                Recovery::Nothing => {}
                Recovery::Requeue => {
                    self.sched().queue.push_back(job.id.clone());
                    queued += 1;
                }
                Recovery::Resume { .. } => {
                    job.prepare_resume(now_ms())?;
                    self.save(&job)?;
                    self.append_log(
                        &job.id,
                        LogLevel::Warn,
                        None,
                        format!(
                            "resumed after a restart at step {}",
                            job.next_step().map(|i| job.steps[i].name.as_str()).unwrap_or("end")
                        ),
                    );
                    self.sched().queue.push_back(job.id.clone());
                    queued += 1;
                }
                Recovery::Fail { reason } => {
                    job.fail(&reason, now_ms())?;
                    self.save(&job)?;
                    self.append_log(&job.id, LogLevel::Error, None, reason);
                    failed.push(job);
                }
            }
        }
        self.inner.notify.notify_one();
        Ok((queued, failed))
    }

    /// Run jobs until `shutdown` is cancelled. Jobs still running then stay `running` in
    /// storage and are resumed by the next [`Jobs::recover`].
    pub async fn run(self, handler: Arc<dyn Handler>, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            let notified = self.inner.notify.notified();
            for id in self.pick() {
                let jobs = self.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let id2 = id.clone();
                    jobs.execute(&id, handler).await;
                    jobs.release(&id2);
                });
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = notified => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    }

    /// Dequeue jobs that may start now: free worker, none of their apps busy. Jobs that
    /// must wait keep their place; a later job for another app may overtake them.
    fn pick(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut s = self.sched();
        let mut i = 0;
        while i < s.queue.len() && s.running.len() < self.inner.workers {
            let id = s.queue[i].clone();
            let job = match self.inner.store.get(JOBS, &id) {
                Ok(Some(j)) if j.state == JobState::Queued => j,
                Ok(_) => {
                    s.queue.remove(i);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "cannot read queued job");
                    i += 1;
                    continue;
                }
            };
            if job.locks.iter().any(|l| s.busy.contains(l)) {
                i += 1;
                continue;
            }
            s.queue.remove(i);
            for l in &job.locks {
                s.busy.insert(l.clone());
            }
            s.running.insert(id.clone(), CancellationToken::new());
            out.push(id);
        }
        out
    }

    fn release(&self, id: &str) {
        {
            let mut s = self.sched();
            s.running.remove(id);
            if let Ok(Some(job)) = self.inner.store.get(JOBS, id) {
                for l in &job.locks {
                    s.busy.remove(l);
                }
            }
        }
        self.inner.notify.notify_one();
    }

    async fn execute(&self, id: &str, handler: Arc<dyn Handler>) {
        let cancel = self.sched().running.get(id).cloned().unwrap_or_default();
        let mut job = match self.get(id) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(job = id, error = %e, "cannot load job");
                return;
            }
        };
        if job.start(now_ms()).is_err() {
            return;
        }
        if let Err(e) = self.save(&job) {
            tracing::error!(job = id, error = %e, "cannot save job");
            return;
        }
        self.publish_state(&job);
        let cx = StepCx {
            jobs: self.clone(),
            job: Mutex::new(job),
            step: Mutex::new(None),
            cancel: cancel.clone(),
        };
        let job = loop {
            let mut job = cx.job();
            let Some(i) = job.next_step() else {
                let _ = job.succeed(now_ms());
                break job;
            };
            if cancel.is_cancelled() {
                let _ = job.cancel("cancelled", now_ms());
                break job;
            }
            let name = job.steps[i].name.clone();
            if job.begin_step(i, now_ms()).is_err() {
                let _ = job.fail(&format!("step {name} cannot start"), now_ms());
                break job;
            }
            cx.set_job(job.clone());
            *cx.step.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.clone());
            if let Err(e) = self.save(&job) {
                let _ = job.fail(&format!("cannot save job state: {e}"), now_ms());
                break job;
            }
            self.publish_step(&job, i);
            let started = std::time::Instant::now();
            let r = handler.run_step(&cx, &name).await;
            let mut job = cx.job();
            match r {
                Ok(outcome) => {
                    let (skipped, msg) = match outcome {
                        StepOutcome::Done(m) => (false, m),
                        StepOutcome::Skipped(m) => (true, Some(m)),
                    };
                    cx.log(
                        LogLevel::Info,
                        format!(
                            "step {name} {} in {} ms{}",
                            if skipped { "skipped" } else { "done" },
                            started.elapsed().as_millis(),
                            msg.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
                        ),
                    );
                    let _ = job.end_step(i, skipped, msg, now_ms());
                    cx.set_job(job.clone());
                    if let Err(e) = self.save(&job) {
                        tracing::error!(job = id, error = %e, "cannot save job");
                    }
                    self.publish_step(&job, i);
                }
                Err(e) => {
                    cx.log(LogLevel::Error, format!("step {name} failed: {e}"));
                    if cancel.is_cancelled() {
                        let _ = job.cancel(&format!("cancelled during step {name}"), now_ms());
                    } else {
                        let _ = job.fail(&e.to_string(), now_ms());
                    }
                    self.publish_step(&job, i);
                    break job;
                }
            }
        };
        *cx.job.lock().unwrap_or_else(|e| e.into_inner()) = job.clone();
        *cx.step.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(e) = self.save(&job) {
            tracing::error!(job = id, error = %e, "cannot save finished job");
        }
        handler.finished(&cx, &job).await;
        let job = cx.job();
        if let Err(e) = self.save(&job) {
            tracing::error!(job = id, error = %e, "cannot save finished job");
        }
        cx.log(
            if job.state == JobState::Succeeded {
                LogLevel::Info
            } else {
                LogLevel::Error
            },
            format!(
                "job {}{}",
                job.state.as_str(),
                job.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
            ),
        );
        self.publish_state(&job);
        self.record_metrics(&job);
        // Bounded history: prune in batches (10 % over the limit) so a finish rarely pays
        // for a scan of the job table.
        let keep = self.inner.keep_finished;
        if self.inner.store.count(JOBS).unwrap_or(0) as usize > keep + keep / 10 {
            match self.prune_finished(keep) {
                Ok(n) => tracing::debug!(deleted = n, keep, "old finished jobs deleted"),
                Err(e) => tracing::warn!(error = %e, "cannot delete old finished jobs"),
            }
        }
    }

    /// Delete the oldest finished jobs, with their logs, beyond the newest `keep` (by
    /// finish time); jobs still held by a worker stay. Returns how many were deleted.
    pub fn prune_finished(&self, keep: usize) -> Result<usize, JobError> {
        let held: HashSet<String> = self.sched().running.keys().cloned().collect();
        // (finish time, id) of the finished jobs; the records themselves are not kept.
        let mut done: Vec<(i64, String)> = Vec::new();
        self.inner.store.visit(JOBS, |id, j| {
            if j.state.is_terminal() && !held.contains(id) {
                done.push((j.finished_at.unwrap_or(j.created_at), id.to_string()));
            }
        })?;
        if done.len() <= keep {
            return Ok(0);
        }
        done.sort();
        done.truncate(done.len() - keep);
        let mut log_keys = Vec::new();
        for (_, id) in &done {
            log_keys.extend(
                self.inner
                    .store
                    .scan_prefix(JOB_LOGS, &format!("{id}/"))?
                    .into_iter()
                    .map(|(k, _)| k),
            );
        }
        self.inner.store.write(|tx| {
            for (_, id) in &done {
                tx.delete(JOBS, id)?;
            }
            for k in &log_keys {
                tx.delete(JOB_LOGS, k)?;
            }
            Ok::<_, StoreError>(())
        })?;
        Ok(done.len())
    }

    /// Fail jobs stuck in `running` for more than `max_age_ms` (they are cancelled if a
    /// worker still runs them, failed directly otherwise). Returns the ids touched.
    pub fn janitor(&self, max_age_ms: i64) -> Result<Vec<String>, JobError> {
        let now = now_ms();
        let mut out = Vec::new();
        for (_, mut job) in self.inner.store.list(JOBS)? {
            if job.state != JobState::Running || now - job.updated_at < max_age_ms {
                continue;
            }
            let tok = self.sched().running.get(&job.id).cloned();
            match tok {
                Some(t) => t.cancel(),
                None => {
                    job.fail(
                        &format!("stuck in step {} for too long (janitor)", job.current_step().unwrap_or("?")),
                        now,
                    )?;
                    self.save(&job)?;
                    self.publish_state(&job);
                }
            }
            out.push(job.id.clone());
        }
        Ok(out)
    }

    /// Wait until a job is terminal (bounded by `timeout`); returns the job.
    pub async fn wait(&self, id: &str, timeout: std::time::Duration) -> Result<Job, JobError> {
        let mut rx = self.inner.events.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.get(id)?;
            if job.state.is_terminal() && !self.sched().running.contains_key(id) {
                return Ok(job);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(job);
            }
            let _ = tokio::time::timeout(left.min(std::time::Duration::from_millis(200)), rx.recv()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    struct Recorder {
        concurrent: AtomicUsize,
        max_concurrent: AtomicUsize,
        per_app: Mutex<HashSet<String>>,
        overlap: AtomicUsize,
        fail_step: Option<&'static str>,
    }

    #[async_trait::async_trait]
    impl Handler for Recorder {
        async fn run_step(&self, cx: &StepCx, step: &str) -> Result<StepOutcome, StepError> {
            let app = cx.target().unwrap_or_default();
            if step == "one" {
                let n = self.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_concurrent.fetch_max(n, Ordering::SeqCst);
                if !self.per_app.lock().unwrap().insert(app.clone()) {
                    self.overlap.fetch_add(1, Ordering::SeqCst);
                }
            }
            cx.info(format!("running {step}"));
            tokio::time::sleep(Duration::from_millis(20)).await;
            if step == "two" {
                self.concurrent.fetch_sub(1, Ordering::SeqCst);
                self.per_app.lock().unwrap().remove(&app);
            }
            if Some(step) == self.fail_step {
                return Err(StepError::with_output("it broke", "line1\nline2"));
            }
            cx.set_data(step, &true)?;
            Ok(StepOutcome::Done(None))
        }
        async fn finished(&self, _cx: &StepCx, _job: &Job) {}
    }

    fn rec(fail: Option<&'static str>) -> Arc<Recorder> {
        Arc::new(Recorder {
            concurrent: AtomicUsize::new(0),
            max_concurrent: AtomicUsize::new(0),
            per_app: Mutex::new(HashSet::new()),
            overlap: AtomicUsize::new(0),
            fail_step: fail,
        })
    }

    const STEPS: [StepSpec; 2] = [StepSpec::idem("one"), StepSpec::idem("two")];

    fn engine(dir: &std::path::Path, workers: usize, max_queued: usize) -> Jobs {
        let store = Store::open(&dir.join("db.redb")).unwrap();
        Jobs::new(
            store,
            EventBus::new(),
            &JobsConfig {
                workers,
                max_queued,
                keep_finished: 1_000,
            },
        )
    }

    #[tokio::test]
    async fn pool_bound_and_per_app_serialization() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = engine(dir.path(), 3, 100);
        let h = rec(None);
        let stop = CancellationToken::new();
        tokio::spawn(jobs.clone().run(h.clone(), stop.clone()));
        let mut ids = vec![];
        for i in 0..12 {
            let app = format!("app-{}", i % 4);
            let j = jobs
                .submit(Jobs::build(JobKind::Start, Some(app), &[], "u", &STEPS, serde_json::json!({})))
                .unwrap();
            ids.push(j.id);
        }
        for id in &ids {
            let j = jobs.wait(id, Duration::from_secs(20)).await.unwrap();
            assert_eq!(j.state, JobState::Succeeded, "{j:?}");
            assert_eq!(j.progress, 100);
            assert_eq!(j.data.get("two"), Some(&serde_json::json!(true)));
        }
        assert!(h.max_concurrent.load(Ordering::SeqCst) <= 3);
        assert!(h.max_concurrent.load(Ordering::SeqCst) >= 2, "ran in parallel");
        assert_eq!(h.overlap.load(Ordering::SeqCst), 0, "two jobs on one app at once");
        let logs = jobs.logs(&ids[0]).unwrap();
        assert!(
            logs.iter().any(|l| l.message == "running one" && l.step.as_deref() == Some("one")),
            "{logs:?}"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn finished_jobs_beyond_the_limit_are_deleted_with_their_logs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let cfg = JobsConfig {
            workers: 2,
            max_queued: 100,
            keep_finished: 10,
        };
        let jobs = Jobs::new(store, EventBus::new(), &cfg);
        let stop = CancellationToken::new();
        tokio::spawn(jobs.clone().run(rec(None), stop.clone()));
        let mut ids = vec![];
        for _ in 0..25 {
            let j = jobs
                .submit(Jobs::build(JobKind::Start, None, &[], "u", &STEPS, serde_json::json!({})))
                .unwrap();
            jobs.wait(&j.id, Duration::from_secs(20)).await.unwrap();
            ids.push(j.id);
        }
        stop.cancel();
        let left = jobs.inner.store.count(JOBS).unwrap() as usize;
        assert!((10..=11).contains(&left), "kept {left}, limit 10 (+10 % slack)");
        assert!(jobs.get(&ids[24]).is_ok(), "the newest job stays");
        assert!(jobs.get(&ids[0]).is_err(), "the oldest job is gone");
        assert!(jobs.logs(&ids[0]).unwrap().is_empty(), "with its logs");
        assert!(!jobs.logs(&ids[24]).unwrap().is_empty());
        assert_eq!(jobs.prune_finished(5).unwrap(), left - 5);
        assert_eq!(jobs.inner.store.count(JOBS).unwrap(), 5);
    }

    #[tokio::test]
    async fn queue_full_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = engine(dir.path(), 1, 2);
        for _ in 0..2 {
            jobs.submit(Jobs::build(JobKind::Start, None, &[], "u", &STEPS, serde_json::json!({})))
                .unwrap();
        }
        let e = jobs
            .submit(Jobs::build(JobKind::Start, None, &[], "u", &STEPS, serde_json::json!({})))
            .unwrap_err();
        assert!(matches!(e, JobError::QueueFull(2)));
        assert!(e.to_string().contains("queue is full"));
    }

    #[tokio::test]
    async fn failure_records_step_reason_output_and_retry_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = engine(dir.path(), 2, 10);
        let stop = CancellationToken::new();
        let first_runner = tokio::spawn(jobs.clone().run(rec(Some("two")), stop.clone()));
        let mut events = {
            let j = Jobs::build(JobKind::Deploy, Some("app-x".into()), &[], "u", &STEPS, serde_json::json!({}));
            let rx = jobs.inner.events.subscribe();
            jobs.submit(j).unwrap();
            rx
        };
        let mut id = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut kinds = HashSet::new();
        while tokio::time::Instant::now() < deadline {
            if let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
                kinds.insert(ev.kind.clone());
                id = ev.subject.clone();
                if ev.kind == "job.state" && ev.data["state"] == "failed" {
                    break;
                }
            }
        }
        assert!(
            kinds.contains("job.step") && kinds.contains("job.log") && kinds.contains("job.state"),
            "{kinds:?}"
        );
        let j = jobs.wait(&id, Duration::from_secs(5)).await.unwrap();
        assert_eq!(j.state, JobState::Failed);
        let err = j.error.clone().unwrap();
        assert!(err.starts_with("step two: it broke") && err.contains("line2"), "{err}");
        assert_eq!(j.steps[0].state, StepState::Done);
        stop.cancel();
        // The failing runner must be gone before the retry, or it could take the job again.
        let _ = tokio::time::timeout(Duration::from_secs(10), first_runner).await;
        // Retry with a handler that succeeds: only step two runs again.
        let stop = CancellationToken::new();
        tokio::spawn(jobs.clone().run(rec(None), stop.clone()));
        jobs.retry(&id).unwrap();
        let j = jobs.wait(&id, Duration::from_secs(5)).await.unwrap();
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
        assert_eq!(j.attempts, 1);
        stop.cancel();
    }

    #[tokio::test]
    async fn recovery_after_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = {
            let jobs = engine(dir.path(), 1, 10);
            let mk = |steps: &[StepSpec]| Jobs::build(JobKind::Deploy, Some(new_job_id()), &[], "u", steps, serde_json::json!({}));
            // a: interrupted in an idempotent step; b: in a non-idempotent one; c: still queued.
            let mut a = mk(&STEPS);
            a.start(1).unwrap();
            a.begin_step(0, 1).unwrap();
            let mut b = mk(&[StepSpec::once("one"), StepSpec::idem("two")]);
            b.start(1).unwrap();
            b.begin_step(0, 1).unwrap();
            let c = mk(&STEPS);
            for j in [&a, &b, &c] {
                jobs.store().put(JOBS, &j.id, j).unwrap();
            }
            (a.id, b.id, c.id)
        };
        let jobs = engine(dir.path(), 2, 10);
        let (queued, failed) = jobs.recover().unwrap();
        assert_eq!(queued, 2);
        assert_eq!(failed.len(), 1);
        assert!(failed[0].error.as_ref().unwrap().contains("not safe to repeat"));
        let stop = CancellationToken::new();
        tokio::spawn(jobs.clone().run(rec(None), stop.clone()));
        for id in [&a, &c] {
            assert_eq!(jobs.wait(id, Duration::from_secs(10)).await.unwrap().state, JobState::Succeeded);
        }
        assert_eq!(jobs.get(&b).unwrap().state, JobState::Failed);
        assert_eq!(jobs.get(&a).unwrap().attempts, 1);
        stop.cancel();
    }
}
