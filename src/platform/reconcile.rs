//! Reconciliation of the registry with what Proxmox reports, and the janitor for stuck
//! jobs. The decision ([`diff`]) is pure; [`run`] gathers, decides and applies.
//!
//! **Invariant:** reconciliation never deletes a container or an app: it fixes statuses,
//! marks apps whose container vanished `missing`, and reports orphans.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::registry::{App, AppStatus};

use super::backend::CtInfo;
use super::{Platform, PlatformError, is_busy};

/// One status change decided by the reconciler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusFix {
    /// App.
    pub app_id: String,
    /// From.
    pub from: AppStatus,
    /// To.
    pub to: AppStatus,
}

/// What reconciliation found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Report {
    /// Status corrections.
    pub fixes: Vec<StatusFix>,
    /// Apps whose container is gone (marked missing).
    pub missing: Vec<String>,
    /// Containers tagged by Proximity that no app references (reported, untouched).
    pub orphans: Vec<(String, u32)>,
    /// Nodes that could not be inspected (their apps are left alone).
    pub unreachable: Vec<String>,
}

impl Report {
    /// One line for the job log.
    pub fn summary(&self) -> String {
        format!(
            "{} status fixes, {} missing, {} orphans, {} unreachable nodes",
            self.fixes.len(),
            self.missing.len(),
            self.orphans.len(),
            self.unreachable.len()
        )
    }
}

/// Decide fixes from the apps and the containers seen on the nodes that answered
/// (`seen`: node → containers; `ours`: (node, vmid) of containers tagged as Proximity's).
pub fn diff(apps: &[App], seen: &BTreeMap<String, Vec<CtInfo>>, ours: &BTreeSet<(String, u32)>) -> Report {
    let mut r = Report::default();
    let mut referenced = BTreeSet::new();
    for a in apps {
        let (Some(node), Some(vmid)) = (&a.node, a.vmid) else { continue };
        referenced.insert((node.clone(), vmid));
        let Some(cts) = seen.get(node) else { continue };
        if is_busy(a.status) {
            continue; // a job owns it
        }
        match cts.iter().find(|c| c.vmid == vmid) {
            None => {
                if a.status != AppStatus::Missing {
                    r.missing.push(a.id.clone());
                    r.fixes.push(StatusFix {
                        app_id: a.id.clone(),
                        from: a.status,
                        to: AppStatus::Missing,
                    });
                }
            }
            Some(ct) => {
                let want = match (ct.status.as_str(), a.status) {
                    ("running", AppStatus::Stopped | AppStatus::Missing) => Some(AppStatus::Running),
                    ("stopped", AppStatus::Running | AppStatus::Missing) => Some(AppStatus::Stopped),
                    _ => None,
                };
                if let Some(to) = want {
                    r.fixes.push(StatusFix {
                        app_id: a.id.clone(),
                        from: a.status,
                        to,
                    });
                }
            }
        }
    }
    for (node, vmid) in ours {
        if !referenced.contains(&(node.clone(), *vmid)) {
            r.orphans.push((node.clone(), *vmid));
        }
    }
    r
}

/// Gather from every host, decide, apply status fixes, publish the report.
pub async fn run(p: &Platform) -> Result<Report, PlatformError> {
    let apps = p.apps()?;
    let mut seen = BTreeMap::new();
    let mut ours = BTreeSet::new();
    let mut unreachable = Vec::new();
    for host in p.host_names()? {
        let b = p.backend(&host)?;
        let nodes = match b.nodes().await {
            Ok(n) => n,
            Err(e) => {
                unreachable.push(format!("{host}: {e}"));
                continue;
            }
        };
        for n in nodes {
            if !n.online {
                unreachable.push(n.name.clone());
                continue;
            }
            match b.list_cts(&n.name).await {
                Ok(cts) => {
                    let known: BTreeSet<u32> = apps
                        .iter()
                        .filter(|a| a.node.as_deref() == Some(&n.name))
                        .filter_map(|a| a.vmid)
                        .collect();
                    for c in &cts {
                        if !known.contains(&c.vmid)
                            && let Ok(cfg) = b.ct_config(&n.name, c.vmid).await
                            && cfg.get("description").is_some_and(|d| d.contains("proximity app"))
                        {
                            ours.insert((n.name.clone(), c.vmid));
                        }
                    }
                    seen.insert(n.name.clone(), cts);
                }
                Err(e) => unreachable.push(format!("{}: {e}", n.name)),
            }
        }
    }
    let mut report = diff(&apps, &seen, &ours);
    report.unreachable = unreachable;
    for f in &report.fixes {
        let to = f.to;
        let from = f.from;
        p.update_app(&f.app_id, |a| {
            // Re-check under the transaction: a job may have started meanwhile.
            if a.status == from {
                a.status = to;
                if to == AppStatus::Missing {
                    a.error = Some("container not found on Proxmox (reconciler); restore a backup or delete the app".into());
                }
            }
        })?;
    }
    for (node, vmid) in &report.orphans {
        tracing::warn!(node = %node, vmid, "orphan container tagged by Proximity; adopt or delete it");
    }
    p.context()
        .events
        .publish("reconcile.report", "reconcile", serde_json::to_value(&report).unwrap_or_default());
    Ok(report)
}

/// Janitor: fail jobs stuck for more than two hours, and mark apps that sit in a busy
/// status without a live job as `error`. Returns how many were touched.
pub fn janitor(p: &Platform) -> Result<usize, PlatformError> {
    let jobs = p.jobs();
    let mut n = jobs.janitor(2 * 3600 * 1000)?.len();
    for app in p.apps()? {
        if !is_busy(app.status) {
            continue;
        }
        let live = app
            .job_id
            .as_deref()
            .and_then(|j| jobs.get(j).ok())
            .is_some_and(|j| !j.state.is_terminal());
        if !live {
            let status = app.status;
            p.update_app(&app.id, |a| {
                if a.status == status {
                    a.status = AppStatus::Error;
                    a.error = Some(format!(
                        "stuck in {} without a running job (janitor); retry or delete",
                        status.as_str()
                    ));
                }
            })?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Resources;
    use std::net::Ipv4Addr;

    fn app(id: &str, node: &str, vmid: u32, status: AppStatus) -> App {
        App {
            id: id.into(),
            hostname: id.into(),
            catalog_id: "nginx".into(),
            catalog_version: "1".into(),
            owner: "u".into(),
            status,
            host: Some("h".into()),
            node: Some(node.into()),
            vmid: Some(vmid),
            mac: "02:50:58:00:00:01".into(),
            ip: Ipv4Addr::new(10, 20, 0, 200),
            upstream_ip: None,
            web_port: Some(8080),
            forwards: vec![],
            aliases: vec![],
            https_redirect: true,
            resources: Resources {
                cores: 1,
                memory_mb: 512,
                disk_gb: 4,
            },
            settings: Default::default(),
            error: None,
            job_id: None,
            adopted: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn ct(vmid: u32, status: &str) -> CtInfo {
        CtInfo {
            vmid,
            node: "pve1".into(),
            name: format!("ct{vmid}"),
            status: status.into(),
            maxmem: 0,
            tags: vec![],
        }
    }

    #[test]
    fn drift_missing_orphans_and_busy_apps() {
        let apps = vec![
            app("a", "pve1", 100, AppStatus::Running),   // stopped on PVE → Stopped
            app("b", "pve1", 101, AppStatus::Running),   // gone → Missing
            app("c", "pve1", 102, AppStatus::Deploying), // busy → untouched
            app("d", "pve2", 103, AppStatus::Running),   // node unreachable → untouched
            app("e", "pve1", 104, AppStatus::Missing),   // back → Running
        ];
        let seen = BTreeMap::from([("pve1".to_string(), vec![ct(100, "stopped"), ct(104, "running"), ct(150, "running")])]);
        let ours = BTreeSet::from([("pve1".to_string(), 150), ("pve1".to_string(), 100)]);
        let r = diff(&apps, &seen, &ours);
        assert_eq!(r.missing, vec!["b".to_string()]);
        let fixes: Vec<(&str, AppStatus)> = r.fixes.iter().map(|f| (f.app_id.as_str(), f.to)).collect();
        assert_eq!(
            fixes,
            vec![("a", AppStatus::Stopped), ("b", AppStatus::Missing), ("e", AppStatus::Running)]
        );
        assert_eq!(r.orphans, vec![("pve1".to_string(), 150)]);
    }
}
