//! The scheduler service: nightly backups, weekly update checks, hourly reconciliation and
//! the janitor, each a cron expression from `[schedule]`, each fired as a job.
//!
//! Times are evaluated in UTC (the appliance's clock; Alpine CTs run in UTC by default).

use time::{OffsetDateTime, PrimitiveDateTime};
use tokio_util::sync::CancellationToken;

use crate::jobs::cron::Cron;
use crate::jobs::{JobKind, Jobs};
use crate::registry::AppStatus;

use super::{BackupRequest, Platform, User, steps_of};

/// Which schedule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `schedule.backup`.
    Backup,
    /// `schedule.update_check`.
    UpdateCheck,
    /// `schedule.reconcile`.
    Reconcile,
    /// `schedule.janitor`.
    Janitor,
}

/// The parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    entries: Vec<(Task, Cron)>,
}

impl Schedule {
    /// Parse the four expressions of the configuration.
    pub fn from_config(c: &crate::config::ScheduleConfig) -> Result<Schedule, String> {
        let mut entries = Vec::new();
        for (t, e, key) in [
            (Task::Backup, &c.backup, "schedule.backup"),
            (Task::UpdateCheck, &c.update_check, "schedule.update_check"),
            (Task::Reconcile, &c.reconcile, "schedule.reconcile"),
            (Task::Janitor, &c.janitor, "schedule.janitor"),
        ] {
            entries.push((t, Cron::parse(e).map_err(|m| format!("{key}: {m}"))?));
        }
        Ok(Schedule { entries })
    }

    /// The next firing after `now`: the time and every task due then (pure).
    pub fn next(&self, now: PrimitiveDateTime) -> Option<(PrimitiveDateTime, Vec<Task>)> {
        let times: Vec<(Task, PrimitiveDateTime)> = self.entries.iter().filter_map(|(t, c)| Some((*t, c.next_after(now)?))).collect();
        let first = times.iter().map(|(_, at)| *at).min()?;
        Some((first, times.into_iter().filter(|(_, at)| *at == first).map(|(t, _)| t).collect()))
    }
}

fn now_utc() -> PrimitiveDateTime {
    let n = OffsetDateTime::now_utc();
    PrimitiveDateTime::new(n.date(), n.time())
}

/// Submit the jobs of one firing. Returns the job ids.
pub async fn fire(p: &Platform, task: Task) -> Vec<String> {
    let mut ids = Vec::new();
    let sys = User::system();
    match task {
        Task::Backup => {
            for app in p.apps().unwrap_or_default() {
                if app.vmid.is_none() || !matches!(app.status, AppStatus::Running | AppStatus::Stopped) {
                    continue;
                }
                match p.create_backup(&sys, &app.id, BackupRequest::default()).await {
                    Ok(j) => ids.push(j.id),
                    Err(e) => tracing::warn!(app = %app.hostname, error = %e, "scheduled backup not queued"),
                }
            }
        }
        Task::UpdateCheck | Task::Reconcile | Task::Janitor => {
            let kind = match task {
                Task::UpdateCheck => JobKind::UpdateCheck,
                Task::Reconcile => JobKind::Reconcile,
                _ => JobKind::Janitor,
            };
            let job = Jobs::build(kind, None, &[], &sys.id, steps_of(kind), serde_json::json!({}));
            match p.jobs().submit(job) {
                Ok(j) => ids.push(j.id),
                Err(e) => tracing::warn!(task = ?task, error = %e, "scheduled job not queued"),
            }
        }
    }
    ids
}

/// Pull newer images for every running app (without restarting anything) and record when
/// it was checked; `update` applies them. Returns a summary.
pub async fn update_check(p: &Platform) -> String {
    let mut ok = 0;
    let mut failed = Vec::new();
    for app in p.apps().unwrap_or_default() {
        if app.status != AppStatus::Running || app.vmid.is_none() {
            continue;
        }
        match p.exec_safe_argv(&app, "pull").await {
            Ok(true) => {
                ok += 1;
                let _ = p.update_app(&app.id, |a| {
                    a.settings.insert("update_checked_at".into(), super::now_s().to_string());
                });
            }
            Ok(false) | Err(_) => failed.push(app.hostname.clone()),
        }
    }
    format!("{ok} apps checked; failed: [{}]", failed.join(", "))
}

/// The schedule in force: the runtime settings (default: the configuration's `[schedule]`).
/// A stored schedule that does not parse falls back to the configuration, loudly.
fn current_schedule(p: &Platform) -> anyhow::Result<(Schedule, crate::settings::ScheduleSettings)> {
    let ctx = p.context();
    let s = crate::settings::schedule(&ctx.store, &ctx.config)?;
    match Schedule::from_config(&s.to_config(&ctx.config.schedule)) {
        Ok(schedule) => Ok((schedule, s)),
        Err(e) => {
            tracing::warn!(error = %e, "stored schedule settings are invalid; using the configuration file's");
            let c = &ctx.config.schedule;
            Ok((
                Schedule::from_config(c).map_err(|e| anyhow::anyhow!(e))?,
                crate::settings::ScheduleSettings::from_config(c),
            ))
        }
    }
}

/// Run the scheduler until shutdown. Schedule changes (settings) apply within a minute.
pub async fn run(p: Platform, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (mut schedule, mut in_force) = current_schedule(&p)?;
    loop {
        let now = now_utc();
        let Some((at, tasks)) = schedule.next(now) else {
            shutdown.cancelled().await;
            return Ok(());
        };
        let wait = (at - now).max(time::Duration::ZERO);
        let wait = std::time::Duration::from_millis(wait.whole_milliseconds().clamp(0, i64::MAX as i128) as u64);
        // Wake at least once a minute to pick up edited settings.
        let nap = wait.min(std::time::Duration::from_secs(60));
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(nap) => {}
        }
        if nap < wait {
            let (next, s) = current_schedule(&p)?;
            if s != in_force {
                tracing::info!(backup = %s.backup, update_check = %s.update_check, reconcile = %s.reconcile, janitor = %s.janitor, "schedule changed");
                (schedule, in_force) = (next, s);
            }
            continue;
        }
        for t in tasks {
            let ids = fire(&p, t).await;
            tracing::info!(task = ?t, jobs = ids.len(), "schedule fired");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn next_firing_groups_tasks_due_together() {
        let s = Schedule::from_config(&crate::config::Config::default().schedule).unwrap();
        // Sunday 2026-11-22 02:30: next is the hourly reconcile at 03:00 together with the
        // weekly update check.
        let (at, tasks) = s.next(datetime!(2026-11-22 02:30)).unwrap();
        assert_eq!(at, datetime!(2026-11-22 03:00));
        assert_eq!(tasks, vec![Task::UpdateCheck, Task::Reconcile]);
        let (at, tasks) = s.next(datetime!(2026-11-23 01:30)).unwrap();
        assert_eq!(at, datetime!(2026-11-23 02:00));
        assert_eq!(tasks, vec![Task::Backup, Task::Reconcile]);
        let (at, tasks) = s.next(datetime!(2026-11-23 05:10)).unwrap();
        assert_eq!(at, datetime!(2026-11-23 06:00));
        assert_eq!(tasks, vec![Task::Reconcile, Task::Janitor]);
    }
}
