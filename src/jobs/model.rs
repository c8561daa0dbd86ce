//! The job record and its pure state machine.
//!
//! **Architecture invariant:** no I/O here. Every transition is a function of the job and
//! a timestamp, so the engine, the janitor and the start-up recovery share one set of rules.

use serde::{Deserialize, Serialize};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Deploy an app from the catalog.
    Deploy,
    /// Start an app's container.
    Start,
    /// Stop an app's container.
    Stop,
    /// Restart an app's container.
    Restart,
    /// Destroy an app and release everything it held.
    Delete,
    /// Clone an app to a new hostname.
    Clone,
    /// Pull newer images (backup first, roll back when unhealthy).
    Update,
    /// Create a backup.
    Backup,
    /// Restore a backup.
    Restore,
    /// Delete a backup file.
    DeleteBackup,
    /// Import an existing container.
    Adopt,
    /// Compare the registry with Proxmox.
    Reconcile,
    /// Fail stuck jobs and apps.
    Janitor,
    /// Check apps for newer images.
    UpdateCheck,
}

impl JobKind {
    /// Name as stored and shown.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobKind::Deploy => "deploy",
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
            JobKind::Delete => "delete",
            JobKind::Clone => "clone",
            JobKind::Update => "update",
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
            JobKind::DeleteBackup => "delete_backup",
            JobKind::Adopt => "adopt",
            JobKind::Reconcile => "reconcile",
            JobKind::Janitor => "janitor",
            JobKind::UpdateCheck => "update_check",
        }
    }
}

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker (or for its app to be free).
    Queued,
    /// A worker runs it.
    Running,
    /// Every step done.
    Succeeded,
    /// A step failed; see `error`.
    Failed,
    /// Cancelled by a user or the janitor.
    Cancelled,
}

impl JobState {
    /// True for succeeded, failed and cancelled.
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }
    /// Name as shown.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// State of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not started.
    Pending,
    /// In progress.
    Running,
    /// Finished.
    Done,
    /// Failed (the job failed here).
    Failed,
    /// Not needed.
    Skipped,
}

/// Declaration of a step when a job is submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepSpec {
    /// Name, e.g. `create_ct`.
    pub name: &'static str,
    /// Safe to run again after an interruption (checks before acting).
    pub idempotent: bool,
}

impl StepSpec {
    /// An idempotent step.
    pub const fn idem(name: &'static str) -> Self {
        StepSpec { name, idempotent: true }
    }
    /// A step that must not be repeated blindly after a crash.
    pub const fn once(name: &'static str) -> Self {
        StepSpec { name, idempotent: false }
    }
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Name.
    pub name: String,
    /// State.
    pub state: StepState,
    /// Safe to repeat after an interruption.
    pub idempotent: bool,
    /// Unix milliseconds.
    pub started_at: Option<i64>,
    /// Unix milliseconds.
    pub finished_at: Option<i64>,
    /// Short outcome or failure reason.
    pub message: Option<String>,
}

/// A persistent background job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// `job-` + 16 hex.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// App it acts on (if any).
    pub target: Option<String>,
    /// Every app id this job holds exclusively while it runs (includes `target`).
    pub locks: Vec<String>,
    /// User id that asked for it (`system` for the scheduler).
    pub owner: String,
    /// State.
    pub state: JobState,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// 0–100.
    pub progress: u8,
    /// Failure reason, with the step.
    pub error: Option<String>,
    /// Input of the job (kind specific).
    pub params: serde_json::Value,
    /// Values steps recorded for later steps (kept across restarts).
    pub data: serde_json::Map<String, serde_json::Value>,
    /// How many times the job was resumed after an interruption or retried.
    pub attempts: u32,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Unix milliseconds.
    pub started_at: Option<i64>,
    /// Unix milliseconds.
    pub finished_at: Option<i64>,
}

/// An illegal transition (a bug or a race with another actor).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job}: cannot {action} while {state}")]
pub struct TransitionError {
    /// Job id.
    pub job: String,
    /// What was attempted.
    pub action: String,
    /// State it was in.
    pub state: String,
}

/// How a job interrupted by a crash continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Still queued: queue it again.
    Requeue,
    /// Continue at step index `from` (earlier steps are done).
    Resume {
        /// First step to run.
        from: usize,
    },
    /// Cannot continue safely.
    Fail {
        /// Why.
        reason: String,
    },
    /// Already terminal: nothing to do.
    Nothing,
}

/// Most times a job is resumed after crashes before it is failed.
pub const MAX_RESUMES: u32 = 3;

impl Job {
    /// A new queued job.
    pub fn new(
        id: String,
        kind: JobKind,
        target: Option<String>,
        owner: &str,
        steps: &[StepSpec],
        params: serde_json::Value,
        now: i64,
    ) -> Job {
        let locks = target.iter().cloned().collect();
        Job {
            id,
            kind,
            target,
            locks,
            owner: owner.to_string(),
            state: JobState::Queued,
            steps: steps
                .iter()
                .map(|s| Step {
                    name: s.name.to_string(),
                    state: StepState::Pending,
                    idempotent: s.idempotent,
                    started_at: None,
                    finished_at: None,
                    message: None,
                })
                .collect(),
            progress: 0,
            error: None,
            params,
            data: serde_json::Map::new(),
            attempts: 0,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
        }
    }

    fn bad(&self, action: &str) -> TransitionError {
        TransitionError {
            job: self.id.clone(),
            action: action.into(),
            state: self.state.as_str().into(),
        }
    }

    /// Index of the first step that is neither done nor skipped.
    pub fn next_step(&self) -> Option<usize> {
        self.steps
            .iter()
            .position(|s| !matches!(s.state, StepState::Done | StepState::Skipped))
    }

    /// Name of the step running (or failed), if any.
    pub fn current_step(&self) -> Option<&str> {
        self.steps
            .iter()
            .find(|s| matches!(s.state, StepState::Running | StepState::Failed))
            .map(|s| s.name.as_str())
    }

    fn recompute_progress(&mut self) {
        if self.steps.is_empty() {
            self.progress = if self.state == JobState::Succeeded { 100 } else { 0 };
            return;
        }
        let done = self
            .steps
            .iter()
            .filter(|s| matches!(s.state, StepState::Done | StepState::Skipped))
            .count();
        self.progress = ((done * 100) / self.steps.len()) as u8;
    }

    /// queued → running.
    pub fn start(&mut self, now: i64) -> Result<(), TransitionError> {
        if self.state != JobState::Queued {
            return Err(self.bad("start"));
        }
        self.state = JobState::Running;
        self.started_at.get_or_insert(now);
        self.updated_at = now;
        Ok(())
    }

    /// Mark step `i` running (the job must be running and earlier steps finished).
    pub fn begin_step(&mut self, i: usize, now: i64) -> Result<(), TransitionError> {
        if self.state != JobState::Running {
            return Err(self.bad("begin a step"));
        }
        if i >= self.steps.len() || self.next_step() != Some(i) {
            return Err(self.bad(&format!("begin step #{i} out of order")));
        }
        let s = &mut self.steps[i];
        s.state = StepState::Running;
        s.started_at = Some(now);
        s.finished_at = None;
        s.message = None;
        self.updated_at = now;
        Ok(())
    }

    /// Mark step `i` done (or skipped) with an optional message.
    pub fn end_step(&mut self, i: usize, skipped: bool, message: Option<String>, now: i64) -> Result<(), TransitionError> {
        if self.state != JobState::Running || self.steps.get(i).map(|s| s.state) != Some(StepState::Running) {
            return Err(self.bad(&format!("finish step #{i}")));
        }
        let s = &mut self.steps[i];
        s.state = if skipped { StepState::Skipped } else { StepState::Done };
        s.finished_at = Some(now);
        s.message = message;
        self.updated_at = now;
        self.recompute_progress();
        Ok(())
    }

    /// All steps done: running → succeeded.
    pub fn succeed(&mut self, now: i64) -> Result<(), TransitionError> {
        if self.state != JobState::Running || self.next_step().is_some() {
            return Err(self.bad("succeed"));
        }
        self.state = JobState::Succeeded;
        self.progress = 100;
        self.error = None;
        self.finished_at = Some(now);
        self.updated_at = now;
        Ok(())
    }

    /// Fail the job (at the running step, if any). Allowed from queued and running.
    pub fn fail(&mut self, reason: &str, now: i64) -> Result<(), TransitionError> {
        if self.state.is_terminal() {
            return Err(self.bad("fail"));
        }
        let step = match self.steps.iter_mut().find(|s| s.state == StepState::Running) {
            Some(s) => {
                s.state = StepState::Failed;
                s.finished_at = Some(now);
                s.message = Some(reason.to_string());
                Some(s.name.clone())
            }
            None => None,
        };
        self.state = JobState::Failed;
        self.error = Some(match step {
            Some(step) => format!("step {step}: {reason}"),
            None => reason.to_string(),
        });
        self.finished_at = Some(now);
        self.updated_at = now;
        Ok(())
    }

    /// Cancel a job that has not finished; a running step is marked failed with "cancelled".
    pub fn cancel(&mut self, reason: &str, now: i64) -> Result<(), TransitionError> {
        if self.state.is_terminal() {
            return Err(self.bad("cancel"));
        }
        for s in self.steps.iter_mut().filter(|s| s.state == StepState::Running) {
            s.state = StepState::Failed;
            s.finished_at = Some(now);
            s.message = Some(reason.to_string());
        }
        self.state = JobState::Cancelled;
        self.error = Some(reason.to_string());
        self.finished_at = Some(now);
        self.updated_at = now;
        Ok(())
    }

    /// Retry a failed or cancelled job from its failed step: that step and every later one
    /// become pending again; done steps stay done.
    pub fn retry(&mut self, now: i64) -> Result<(), TransitionError> {
        if !matches!(self.state, JobState::Failed | JobState::Cancelled) {
            return Err(self.bad("retry"));
        }
        let from = self.next_step().unwrap_or(self.steps.len());
        for s in &mut self.steps[from..] {
            s.state = StepState::Pending;
            s.started_at = None;
            s.finished_at = None;
            s.message = None;
        }
        self.state = JobState::Queued;
        self.error = None;
        self.finished_at = None;
        self.attempts += 1;
        self.updated_at = now;
        self.recompute_progress();
        Ok(())
    }

    /// Decide how a job found in storage at start-up continues (pure).
    pub fn recovery(&self) -> Recovery {
        match self.state {
            JobState::Queued => Recovery::Requeue,
            s if s.is_terminal() => Recovery::Nothing,
            _ => {
                let Some(i) = self.next_step() else {
                    return Recovery::Resume { from: self.steps.len() };
                };
                let step = &self.steps[i];
                if self.attempts >= MAX_RESUMES {
                    return Recovery::Fail {
                        reason: format!(
                            "interrupted by a restart during step {} for the {}th time; giving up (use retry or cleanup)",
                            step.name,
                            self.attempts + 1
                        ),
                    };
                }
                if step.state == StepState::Running && !step.idempotent {
                    return Recovery::Fail {
                        reason: format!(
                            "interrupted by a restart during step {}, which is not safe to repeat automatically (use retry or cleanup)",
                            step.name
                        ),
                    };
                }
                Recovery::Resume { from: i }
            }
        }
    }

    /// Apply a [`Recovery::Resume`]: the interrupted step becomes pending and the job
    /// queued again.
    pub fn prepare_resume(&mut self, now: i64) -> Result<(), TransitionError> {
        if self.state != JobState::Running {
            return Err(self.bad("resume"));
        }
        for s in self.steps.iter_mut().filter(|s| s.state == StepState::Running) {
            s.state = StepState::Pending;
            s.started_at = None;
        }
        self.state = JobState::Queued;
        self.attempts += 1;
        self.updated_at = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: [StepSpec; 3] = [StepSpec::idem("a"), StepSpec::once("b"), StepSpec::idem("c")];

    fn job() -> Job {
        Job::new(
            "job-1".into(),
            JobKind::Deploy,
            Some("app-1".into()),
            "u",
            &STEPS,
            serde_json::json!({}),
            1,
        )
    }

    #[test]
    fn happy_path_reaches_succeeded_with_progress() {
        let mut j = job();
        j.start(2).unwrap();
        for i in 0..3 {
            j.begin_step(i, 3).unwrap();
            j.end_step(i, false, None, 4).unwrap();
        }
        assert_eq!(j.progress, 100);
        j.succeed(5).unwrap();
        assert_eq!(j.state, JobState::Succeeded);
        assert_eq!(j.finished_at, Some(5));
    }

    #[test]
    fn steps_run_in_order_only() {
        let mut j = job();
        assert!(j.begin_step(0, 1).is_err(), "not running yet");
        j.start(1).unwrap();
        assert!(j.begin_step(1, 1).is_err());
        j.begin_step(0, 1).unwrap();
        assert!(j.succeed(2).is_err(), "steps left");
        j.end_step(0, true, Some("already there".into()), 2).unwrap();
        assert_eq!(j.steps[0].state, StepState::Skipped);
        assert_eq!(j.progress, 33);
    }

    #[test]
    fn failure_names_the_step_and_retry_restarts_there() {
        let mut j = job();
        j.start(1).unwrap();
        j.begin_step(0, 1).unwrap();
        j.end_step(0, false, None, 1).unwrap();
        j.begin_step(1, 2).unwrap();
        j.fail("PVE said no", 3).unwrap();
        assert_eq!(j.state, JobState::Failed);
        assert_eq!(j.error.as_deref(), Some("step b: PVE said no"));
        assert_eq!(j.current_step(), Some("b"));
        assert!(j.fail("again", 4).is_err(), "terminal");
        j.retry(5).unwrap();
        assert_eq!(j.state, JobState::Queued);
        assert_eq!(j.steps[0].state, StepState::Done);
        assert_eq!(j.steps[1].state, StepState::Pending);
        assert_eq!(j.next_step(), Some(1));
        assert_eq!(j.attempts, 1);
        assert!(j.retry(6).is_err(), "only failed jobs retry");
    }

    #[test]
    fn recovery_rules() {
        let mut j = job();
        assert_eq!(j.recovery(), Recovery::Requeue);
        j.start(1).unwrap();
        j.begin_step(0, 1).unwrap();
        // Interrupted inside an idempotent step: resume there.
        assert_eq!(j.recovery(), Recovery::Resume { from: 0 });
        j.end_step(0, false, None, 2).unwrap();
        // Between steps: resume at the next one even if it is not idempotent.
        assert_eq!(j.recovery(), Recovery::Resume { from: 1 });
        j.begin_step(1, 3).unwrap();
        match j.recovery() {
            Recovery::Fail { reason } => assert!(reason.contains("step b") && reason.contains("not safe"), "{reason}"),
            r => panic!("{r:?}"),
        }
        j.fail("x", 4).unwrap();
        assert_eq!(j.recovery(), Recovery::Nothing);
    }

    #[test]
    fn resume_is_bounded() {
        let mut j = job();
        for n in 0..MAX_RESUMES {
            j.start(1).unwrap();
            j.begin_step(0, 1).unwrap();
            assert_eq!(j.recovery(), Recovery::Resume { from: 0 }, "round {n}");
            j.prepare_resume(2).unwrap();
            assert_eq!(j.steps[0].state, StepState::Pending);
        }
        j.start(1).unwrap();
        j.begin_step(0, 1).unwrap();
        assert!(matches!(j.recovery(), Recovery::Fail { .. }));
    }

    #[test]
    fn cancel_marks_running_step() {
        let mut j = job();
        j.start(1).unwrap();
        j.begin_step(0, 1).unwrap();
        j.cancel("cancelled by admin", 2).unwrap();
        assert_eq!(j.state, JobState::Cancelled);
        assert_eq!(j.steps[0].state, StepState::Failed);
        assert!(j.cancel("again", 3).is_err());
    }
}
