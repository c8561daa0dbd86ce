//! The steps of every job kind. Each step checks the world before acting, so running it
//! again after a crash or a retry is safe (steps declared `once` are the exceptions:
//! vzdump and restore).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::jobs::{Handler, Job, JobKind, JobState, StepCx, StepError, StepOutcome};
use crate::registry::{APPS, App, AppStatus, PortForward};

use super::backend::{BackupMode, Compression, CreateCt, ExecOut, PveFailure, PveHost};
use super::{Platform, PlatformError, alloc, project_dir};

/// Runs job steps for the platform.
pub(super) struct Runner(pub(super) Platform);

type StepResult = Result<StepOutcome, StepError>;

fn pve(e: PveFailure) -> StepError {
    match e.output() {
        Some(o) => StepError::with_output(e.to_string(), o.to_string()),
        None => StepError::new(e.to_string()),
    }
}

fn plat(e: PlatformError) -> StepError {
    StepError::new(e.to_string())
}

fn done(msg: impl Into<String>) -> StepResult {
    Ok(StepOutcome::Done(Some(msg.into())))
}

fn skipped(msg: impl Into<String>) -> StepResult {
    Ok(StepOutcome::Skipped(msg.into()))
}

/// Bounded poll interval helper.
const POLL: Duration = Duration::from_millis(250);

struct Loc {
    b: Arc<dyn PveHost>,
    host: String,
    node: String,
    vmid: u32,
}

impl Runner {
    fn p(&self) -> &Platform {
        &self.0
    }

    fn app(&self, cx: &StepCx) -> Result<App, StepError> {
        let id = cx.target().ok_or_else(|| StepError::new("job has no target app"))?;
        self.p().app(&id).map_err(plat)
    }

    fn loc(&self, app: &App) -> Result<Loc, StepError> {
        let host = app.host.clone().ok_or_else(|| StepError::new("app has no Proxmox host yet"))?;
        let node = app.node.clone().ok_or_else(|| StepError::new("app has no node yet"))?;
        let vmid = app.vmid.ok_or_else(|| StepError::new("app has no container id yet"))?;
        Ok(Loc {
            b: self.p().backend(&host).map_err(plat)?,
            host,
            node,
            vmid,
        })
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut App)) -> Result<App, StepError> {
        self.p().update_app(id, f).map_err(plat)
    }

    async fn exec(&self, cx: &StepCx, l: &Loc, argv: &[&str]) -> Result<ExecOut, StepError> {
        let argv_s: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let out = l.b.pct_exec(l.vmid, &argv_s).await.map_err(pve)?;
        if out.status != 0 {
            return Err(StepError::with_output(
                format!("`{}` exited with status {}", argv.join(" "), out.status),
                out.combined(),
            ));
        }
        cx.log(crate::jobs::LogLevel::Debug, format!("$ {} → ok", argv.join(" ")));
        Ok(out)
    }

    async fn ct_status(&self, l: &Loc) -> Result<Option<String>, StepError> {
        match l.b.ct_status(&l.node, l.vmid).await {
            Ok(s) => Ok(Some(s)),
            Err(PveFailure::NotFound(_)) => Ok(None),
            Err(e) => Err(pve(e)),
        }
    }

    // ---------- shared steps ----------

    async fn start(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        match self.ct_status(&l).await? {
            Some(s) if s == "running" => {}
            Some(_) => {
                l.b.start_ct(&l.node, l.vmid).await.map_err(pve)?;
            }
            None => return Err(StepError::new(format!("container {} does not exist on {}", l.vmid, l.node))),
        }
        self.update(&app.id, |a| {
            a.settings.insert("_started".into(), "1".into());
        })?;
        done(format!("CT {} running on {}", l.vmid, l.node))
    }

    async fn stop(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        if app.vmid.is_none() {
            return skipped("no container");
        }
        let l = self.loc(&app)?;
        match self.ct_status(&l).await? {
            Some(s) if s == "running" => {
                l.b.stop_ct(&l.node, l.vmid).await.map_err(pve)?;
                done(format!("CT {} stopped", l.vmid))
            }
            Some(_) => skipped("already stopped"),
            None => skipped("container does not exist"),
        }
    }

    async fn discover_ip(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut last = String::from("no eth0 address reported");
        loop {
            match l.b.ct_interfaces(&l.node, l.vmid).await {
                Ok(ifs) => {
                    let addr = ifs
                        .iter()
                        .find(|i| i.name == "eth0" || i.hwaddr.eq_ignore_ascii_case(&app.mac))
                        .and_then(|i| i.inet)
                        .or_else(|| ifs.iter().filter(|i| i.name != "lo").find_map(|i| i.inet));
                    if let Some(ip) = addr {
                        let upstream = (ip != app.ip).then_some(ip);
                        self.update(&app.id, |a| a.upstream_ip = upstream)?;
                        return done(match upstream {
                            Some(u) => format!("container answers on {u} (reserved {})", app.ip),
                            None => format!("container has its reserved address {ip}"),
                        });
                    }
                }
                Err(e) => last = e.to_string(),
            }
            if tokio::time::Instant::now() >= deadline || cx.cancelled().is_cancelled() {
                return Err(StepError::new(format!("container {} got no address within 60 s: {last}", l.vmid)));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn health(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let Some(entry) = self.p().inner.catalog.app(&app.catalog_id) else {
            return match app.web_port {
                Some(port) => self.probe(cx, &app, port, "/", 200, 60).await,
                None => skipped("no catalog entry and no web port"),
            };
        };
        let Some(port) = entry.health_port.or(app.web_port) else {
            return skipped("app has no web port to check");
        };
        let timeout = entry.health_timeout_secs.clamp(5, 600) as u64;
        self.probe(cx, &app, port, &entry.health_path, entry.health_status, timeout).await
    }

    async fn probe(&self, cx: &StepCx, app: &App, port: u16, path: &str, expect: u16, timeout_secs: u64) -> StepResult {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let url = format!("http://{}:{port}{path}", app.upstream());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
        let mut last;
        let mut tries = 0u32;
        let Some(http) = self.p().inner.http.clone() else {
            return Err(StepError::new("no HTTP client for health checks (see the daemon log)"));
        };
        loop {
            tries += 1;
            match http.get(&url).send().await {
                Ok(r) if r.status().as_u16() == expect || (expect == 200 && r.status().is_success()) => {
                    return done(format!("{url} answered {} after {tries} tries", r.status().as_u16()));
                }
                Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                Err(e) => last = e.to_string(),
            }
            if tokio::time::Instant::now() >= deadline || cx.cancelled().is_cancelled() {
                return Err(StepError::new(format!("{url} not healthy within {timeout_secs} s (last: {last})")));
            }
            tokio::time::sleep(POLL * 2).await;
        }
    }

    async fn push_files(&self, cx: &StepCx, source_dir: Option<String>) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        let dir = project_dir(&app.hostname);
        if let Some(src) = source_dir
            && src != dir
        {
            // A clone carries the source's project: stop it so only ours runs.
            let argv: Vec<String> = ["docker", "compose", "--project-directory", &src, "down"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if let Ok(o) = l.b.pct_exec(l.vmid, &argv).await {
                cx.info(format!("source project {src} down (status {})", o.status));
            }
        }
        let values = self.p().secrets_of(&app.id).map_err(plat)?;
        let domain = self.p().inner.ctx.config.network.domain.clone();
        let rendered = self
            .p()
            .inner
            .catalog
            .render(&app.catalog_id, &app.hostname, &domain, &values)
            .map_err(|f| StepError::new(format!("cannot render {}: {}", app.catalog_id, f.message)))?;
        if !rendered.generated_secrets.is_empty() {
            let mut all = values.clone();
            all.extend(rendered.generated_secrets.clone());
            let sealed = self.p().seal_values(&all);
            self.p()
                .inner
                .ctx
                .store
                .put(super::APP_SECRETS, &app.id, &sealed)
                .map_err(|e| StepError::new(e.to_string()))?;
        }
        self.exec(cx, &l, &["mkdir", "-p", &dir]).await?;
        l.b.pct_push(
            l.vmid,
            rendered.compose_yaml.as_bytes(),
            &format!("{dir}/docker-compose.yml"),
            0o644,
        )
        .await
        .map_err(pve)?;
        l.b.pct_push(l.vmid, rendered.env_file.as_bytes(), &format!("{dir}/.env"), 0o600)
            .await
            .map_err(pve)?;
        done(format!("pushed {dir}/docker-compose.yml and .env"))
    }

    async fn compose(&self, cx: &StepCx, args: &[&str]) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        let dir = project_dir(&app.hostname);
        let file = format!("{dir}/docker-compose.yml");
        let mut argv = vec!["docker", "compose", "--project-directory", &dir, "-f", &file];
        argv.extend_from_slice(args);
        self.exec(cx, &l, &argv).await?;
        done(format!("docker compose {}", args.join(" ")))
    }

    // ---------- deploy ----------

    async fn place(&self, cx: &StepCx, same_as: Option<App>) -> StepResult {
        let app = self.app(cx)?;
        if app.node.is_some() && app.host.is_some() {
            return skipped(format!("already placed on {}", app.node.clone().unwrap_or_default()));
        }
        if let Some(src) = same_as {
            self.update(&app.id, |a| {
                a.host = src.host.clone();
                a.node = src.node.clone();
            })?;
            return done(format!("same node as the source: {}", src.node.unwrap_or_default()));
        }
        let requested: Option<String> = cx.params().get("node").and_then(|v| v.as_str()).map(String::from);
        let p = self.p();
        let _g = p.inner.place_lock.lock().await;
        let pending = p.pending_memory().map_err(plat)?;
        let mut loads = Vec::new();
        let mut errors = Vec::new();
        for host in p.host_names().map_err(plat)? {
            let b = p.backend(&host).map_err(plat)?;
            match b.nodes().await {
                Ok(nodes) => loads.extend(nodes.into_iter().map(|n| alloc::NodeLoad {
                    host: host.clone(),
                    online: n.online,
                    free: n.free_mem(),
                    pending: pending.get(&n.name).copied().unwrap_or(0),
                    node: n.name,
                })),
                Err(e) => errors.push(format!("{host}: {e}")),
            }
        }
        let need = (app.resources.memory_mb as u64) << 20;
        let (host, node) = alloc::place(&loads, requested.as_deref(), need).map_err(|e| {
            if errors.is_empty() {
                StepError::new(e)
            } else {
                StepError::new(format!("{e} ({})", errors.join("; ")))
            }
        })?;
        self.update(&app.id, |a| {
            a.host = Some(host.clone());
            a.node = Some(node.clone());
            a.status = AppStatus::Deploying;
        })?;
        done(format!("placed on {node} ({host})"))
    }

    async fn vmid(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        if let Some(v) = app.vmid {
            return skipped(format!("VMID {v} already chosen"));
        }
        let host = app.host.clone().ok_or_else(|| StepError::new("app is not placed"))?;
        let p = self.p();
        let _g = p.inner.place_lock.lock().await;
        let b = p.backend(&host).map_err(plat)?;
        let next = b.next_vmid().await.map_err(pve)?;
        let promised = p.promised_vmids(&host).map_err(plat)?;
        let vmid = alloc::pick_vmid(next, &promised);
        self.update(&app.id, |a| a.vmid = Some(vmid))?;
        done(format!("VMID {vmid}"))
    }

    async fn template(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let host = app.host.clone().ok_or_else(|| StepError::new("app is not placed"))?;
        let node = app.node.clone().ok_or_else(|| StepError::new("app is not placed"))?;
        let p = self.p();
        let b = p.backend(&host).map_err(plat)?;
        let storage = p.host_settings(&host).map_err(plat)?.template_storage;
        let lock = p.template_lock(&node);
        let _g = lock.lock().await;
        let apl = b.aplinfo(&node).await.map_err(pve)?;
        let name = alloc::newest_alpine(apl.iter().map(|a| a.template.as_str()))
            .ok_or_else(|| StepError::new(format!("aplinfo of {node} offers no alpine-* template")))?
            .to_string();
        let volid = format!("{storage}:vztmpl/{name}");
        cx.set_data("template", &volid)?;
        let have = b.storage_content(&node, &storage, "vztmpl").await.map_err(pve)?;
        if have.iter().any(|v| v.volid == volid || v.volid.ends_with(&format!("/{name}"))) {
            return skipped(format!("{volid} already present"));
        }
        b.download_template(&node, &storage, &name).await.map_err(pve)?;
        done(format!("downloaded {volid}"))
    }

    async fn create_ct(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        match l.b.ct_config(&l.node, l.vmid).await {
            Ok(cfg) => {
                if cfg.get("description").is_some_and(|d| d.contains(&app.id)) {
                    return skipped(format!("CT {} already created", l.vmid));
                }
                // Someone else took the id: forget it so a retry picks a new one.
                self.update(&app.id, |a| a.vmid = None)?;
                return Err(StepError::new(format!(
                    "VMID {} is used by another container; retry picks a new id",
                    l.vmid
                )));
            }
            Err(PveFailure::NotFound(_)) => {}
            Err(e) => return Err(pve(e)),
        }
        let template: String = cx
            .data("template")
            .ok_or_else(|| StepError::new("no template chosen (template step missing)"))?;
        let settings = self.p().host_settings(&l.host).map_err(plat)?;
        let req = CreateCt {
            vmid: l.vmid,
            ostemplate: template,
            hostname: app.hostname.clone(),
            cores: app.resources.cores,
            memory_mb: app.resources.memory_mb,
            swap_mb: 512,
            rootfs: format!("{}:{}", settings.storage, app.resources.disk_gb.max(1)),
            net0: super::net0(&settings.bridge, &app.mac),
            unprivileged: true,
            features: "nesting=1".into(),
            onboot: true,
            description: format!("proximity app {} ({})", app.id, app.catalog_id),
            tags: "proximity".into(),
        };
        match l.b.create_ct(&l.node, &req).await {
            Ok(()) => done(format!("CT {} created on {}", l.vmid, l.node)),
            Err(PveFailure::Conflict(m)) => {
                self.update(&app.id, |a| a.vmid = None)?;
                Err(StepError::new(format!(
                    "VMID {} taken meanwhile ({m}); retry picks a new id",
                    l.vmid
                )))
            }
            Err(e) => Err(pve(e)),
        }
    }

    async fn features(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        l.b.pct_set_features(l.vmid, "nesting=1,keyctl=1").await.map_err(pve)?;
        done("features nesting=1,keyctl=1")
    }

    async fn install_docker(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        self.exec(cx, &l, &["apk", "add", "--no-cache", "docker", "docker-cli-compose"])
            .await?;
        self.exec(cx, &l, &["rc-update", "add", "docker", "default"]).await?;
        self.exec(cx, &l, &["rc-service", "docker", "start"]).await?;
        done("docker installed and started")
    }

    // ---------- lifecycle ----------

    async fn reboot(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        match self.ct_status(&l).await? {
            Some(s) if s == "running" => l.b.reboot_ct(&l.node, l.vmid).await.map_err(pve)?,
            Some(_) => l.b.start_ct(&l.node, l.vmid).await.map_err(pve)?,
            None => return Err(StepError::new(format!("container {} does not exist", l.vmid))),
        }
        done(format!("CT {} restarted", l.vmid))
    }

    async fn destroy(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        if app.vmid.is_none() || app.host.is_none() {
            return skipped("no container was created");
        }
        let l = self.loc(&app)?;
        match l.b.ct_config(&l.node, l.vmid).await {
            Err(PveFailure::NotFound(_)) => return skipped(format!("CT {} already gone", l.vmid)),
            Err(e) => return Err(pve(e)),
            Ok(cfg) => {
                if !app.adopted && !cfg.get("description").is_some_and(|d| d.contains(&app.id)) {
                    return skipped(format!("CT {} is not this app's container; left alone", l.vmid));
                }
            }
        }
        if cx.params().get("purge_backups").and_then(|v| v.as_bool()) == Some(true)
            && let Ok(list) = self.p().list_backups(&app.id).await
        {
            for bk in list {
                let storage = bk.storage.clone();
                match l.b.delete_volume(&l.node, &storage, &bk.volid).await {
                    Ok(()) => cx.info(format!("deleted backup {}", bk.volid)),
                    Err(e) => cx.warn(format!("cannot delete backup {}: {e}", bk.volid)),
                }
            }
        }
        l.b.delete_ct(&l.node, l.vmid).await.map_err(pve)?;
        done(format!("CT {} destroyed (purge)", l.vmid))
    }

    async fn release(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let p = self.p();
        p.inner
            .ctx
            .store
            .write(|tx| {
                tx.delete(APPS, &app.id)?;
                tx.delete(super::APP_SECRETS, &app.id)?;
                Ok::<(), crate::store::StoreError>(())
            })
            .map_err(|e| StepError::new(e.to_string()))?;
        p.refresh_plan();
        p.inner
            .ctx
            .events
            .publish("app.deleted", &app.id, serde_json::json!({"hostname": app.hostname}));
        done(format!("released {} ({}, {})", app.hostname, app.ip, app.mac))
    }

    async fn clone_ct(&self, cx: &StepCx, src: &App) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        match l.b.ct_config(&l.node, l.vmid).await {
            Ok(cfg) => {
                if cfg.get("hostname").is_some_and(|h| *h == app.hostname) || cfg.get("description").is_some_and(|d| d.contains(&app.id)) {
                    return skipped(format!("CT {} already cloned", l.vmid));
                }
                self.update(&app.id, |a| a.vmid = None)?;
                return Err(StepError::new(format!(
                    "VMID {} is used by another container; retry picks a new id",
                    l.vmid
                )));
            }
            Err(PveFailure::NotFound(_)) => {}
            Err(e) => return Err(pve(e)),
        }
        let sl = self.loc(src)?;
        // Proxmox cannot full-clone a running container without snapshot support: stop the
        // source for the copy and start it again afterwards (also after a failure).
        if self.ct_status(&sl).await?.as_deref() == Some("running") {
            cx.set_data("restart_source", &true)?;
            cx.info(format!("stopping source CT {} for the copy", sl.vmid));
            sl.b.stop_ct(&sl.node, sl.vmid).await.map_err(pve)?;
        }
        let r = sl.b.clone_ct(&sl.node, sl.vmid, l.vmid, &app.hostname).await;
        if cx.data::<bool>("restart_source") == Some(true) {
            match sl.b.start_ct(&sl.node, sl.vmid).await {
                Ok(()) => cx.info(format!("source CT {} started again", sl.vmid)),
                Err(e) => cx.warn(format!("cannot start source CT {} again: {e}", sl.vmid)),
            }
        }
        r.map_err(pve)?;
        done(format!("CT {} cloned to {}", sl.vmid, l.vmid))
    }

    async fn clone_network(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        let settings = self.p().host_settings(&l.host).map_err(plat)?;
        let params = vec![
            ("net0".to_string(), super::net0(&settings.bridge, &app.mac)),
            ("hostname".to_string(), app.hostname.clone()),
            ("description".to_string(), format!("proximity app {} ({})", app.id, app.catalog_id)),
        ];
        l.b.set_ct_config(&l.node, l.vmid, &params).await.map_err(pve)?;
        done(format!("net0 hwaddr {}", app.mac))
    }

    async fn update_backup(&self, cx: &StepCx) -> StepResult {
        if let Some(v) = cx.data::<String>("rollback") {
            return skipped(format!("backup {v} already taken"));
        }
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        let storage = self.p().host_settings(&l.host).map_err(plat)?.backup_storage;
        let volid =
            l.b.vzdump(&l.node, l.vmid, &storage, BackupMode::Snapshot, Compression::Zstd)
                .await
                .map_err(pve)?
                .ok_or_else(|| StepError::new("vzdump finished but no backup file was found"))?;
        cx.set_data("rollback", &volid)?;
        done(format!("backup {volid}"))
    }

    async fn health_or_rollback(&self, cx: &StepCx) -> StepResult {
        match self.health(cx).await {
            Ok(o) => Ok(o),
            Err(e) => {
                let volid: String = cx
                    .data("rollback")
                    .ok_or_else(|| StepError::new(format!("{e}; no backup to roll back to")))?;
                cx.warn(format!("unhealthy after update ({e}); rolling back to {volid}"));
                let app = self.app(cx)?;
                let l = self.loc(&app)?;
                let storage = self.p().host_settings(&l.host).map_err(plat)?.storage;
                if self.ct_status(&l).await?.as_deref() == Some("running") {
                    l.b.stop_ct(&l.node, l.vmid).await.map_err(pve)?;
                }
                l.b.restore_ct(&l.node, l.vmid, &volid, &storage).await.map_err(pve)?;
                l.b.start_ct(&l.node, l.vmid).await.map_err(pve)?;
                cx.set_data("rolled_back", &true)?;
                let _ = self.discover_ip(cx).await;
                Err(StepError::new(format!(
                    "unhealthy after update ({}); rolled back to {volid}",
                    e.reason
                )))
            }
        }
    }

    async fn vzdump(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        let params = cx.params();
        let mode: BackupMode = serde_json::from_value(params.get("mode").cloned().unwrap_or_default()).unwrap_or_default();
        let comp: Compression = serde_json::from_value(params.get("compression").cloned().unwrap_or_default()).unwrap_or_default();
        let storage = self.p().host_settings(&l.host).map_err(plat)?.backup_storage;
        let volid = l.b.vzdump(&l.node, l.vmid, &storage, mode, comp).await.map_err(pve)?;
        if let Some(v) = &volid {
            cx.set_data("volid", v)?;
        }
        done(format!(
            "backup {} ({}, {})",
            volid.unwrap_or_else(|| "(file not found)".into()),
            mode.as_str(),
            comp.as_str()
        ))
    }

    async fn retention(&self, cx: &StepCx) -> StepResult {
        let keep = self.p().keep_backups() as usize;
        if keep == 0 {
            return skipped("retention disabled (keep_backups = 0)");
        }
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        let list = self.p().list_backups(&app.id).await.map_err(plat)?;
        let mut removed = 0;
        for b in list.iter().skip(keep) {
            l.b.delete_volume(&l.node, &b.storage, &b.volid).await.map_err(pve)?;
            cx.info(format!("retention: deleted {}", b.volid));
            removed += 1;
        }
        done(format!("kept {}, deleted {removed}", list.len().min(keep)))
    }

    async fn restore(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        let volid = cx
            .params()
            .get("volid")
            .and_then(|v| v.as_str())
            .map(String::from)
            .ok_or_else(|| StepError::new("no backup given"))?;
        let storage = self.p().host_settings(&l.host).map_err(plat)?.storage;
        l.b.restore_ct(&l.node, l.vmid, &volid, &storage).await.map_err(pve)?;
        done(format!("restored {volid}"))
    }

    async fn delete_volume(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        let params = cx.params();
        let volid = params.get("volid").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let storage = params.get("storage").and_then(|v| v.as_str()).unwrap_or("local").to_string();
        match l.b.delete_volume(&l.node, &storage, &volid).await {
            Ok(()) => done(format!("deleted {volid}")),
            Err(PveFailure::NotFound(_)) => skipped(format!("{volid} already gone")),
            Err(e) => Err(pve(e)),
        }
    }

    // ---------- adopt ----------

    async fn inspect(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        let l = self.loc(&app)?;
        let status = self
            .ct_status(&l)
            .await?
            .ok_or_else(|| StepError::new(format!("container {} no longer exists", l.vmid)))?;
        cx.set_data("ct_status", &status)?;
        done(format!("CT {} is {status}", l.vmid))
    }

    async fn adopt_ports(&self, cx: &StepCx) -> StepResult {
        let app = self.app(cx)?;
        if !app.forwards.is_empty() {
            return skipped("ports already published");
        }
        let mut ports: Vec<(u16, crate::registry::Proto)> = cx
            .params()
            .get("ports")
            .and_then(|v| serde_json::from_value::<Vec<u16>>(v.clone()).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p, crate::registry::Proto::Tcp))
            .collect();
        if ports.is_empty() && cx.data::<String>("ct_status").as_deref() == Some("running") {
            let l = self.loc(&app)?;
            let argv = vec!["docker".to_string(), "ps".to_string()];
            if let Ok(o) = l.b.pct_exec(l.vmid, &argv).await
                && o.status == 0
            {
                ports = super::published_ports(&o.stdout);
            }
        }
        if let Some(w) = app.web_port {
            ports.retain(|(p, _)| *p != w);
        }
        if ports.is_empty() {
            return skipped("no ports to publish");
        }
        let p = self.p();
        let range = p.inner.ctx.config.network.port_forward_range;
        let id = app.id.clone();
        let n = ports.len();
        p.inner
            .ctx
            .store
            .write(|tx| {
                let apps: Vec<App> = tx.list(APPS)?.into_iter().map(|(_, a)| a).collect();
                let taken: HashSet<u16> = apps.iter().flat_map(|a| a.forwards.iter().map(|f| f.public)).collect();
                let public =
                    alloc::pick_ports(range, &taken, n).ok_or_else(|| PlatformError::Unavailable("no free public ports left".into()))?;
                let mut a = tx.get(APPS, &id)?.ok_or_else(|| PlatformError::NotFound(id.clone()))?;
                a.forwards = ports
                    .iter()
                    .zip(public)
                    .map(|((c, proto), public)| PortForward {
                        public,
                        container: *c,
                        proto: *proto,
                    })
                    .collect();
                tx.put(APPS, &id, &a)?;
                Ok::<(), PlatformError>(())
            })
            .map_err(plat)?;
        p.refresh_plan();
        done(format!("published {n} ports"))
    }

    async fn finish(&self, cx: &StepCx, job: &Job) {
        let Some(id) = job.target.clone() else { return };
        let Ok(app) = self.p().app(&id) else { return };
        let prev: Option<AppStatus> = job.params.get("prev_status").and_then(|v| serde_json::from_value(v.clone()).ok());
        let ok = job.state == JobState::Succeeded;
        let error = job.error.clone();
        let rolled_back: bool = cx.data("rolled_back").unwrap_or(false);
        let adopted_status: Option<String> = cx.data("ct_status");
        let r = self.p().update_app(&id, |a| {
            a.settings.remove("_started");
            if ok {
                a.error = None;
                a.status = match job.kind {
                    JobKind::Stop => AppStatus::Stopped,
                    JobKind::Adopt => {
                        if adopted_status.as_deref() == Some("running") {
                            AppStatus::Running
                        } else {
                            AppStatus::Stopped
                        }
                    }
                    JobKind::Backup | JobKind::DeleteBackup => match prev {
                        Some(s) if !super::is_busy(s) => s,
                        _ => AppStatus::Running,
                    },
                    JobKind::Restore => match prev {
                        Some(AppStatus::Stopped) => AppStatus::Stopped,
                        _ => AppStatus::Running,
                    },
                    _ => AppStatus::Running,
                };
            } else if job.kind == JobKind::Update && rolled_back {
                a.status = AppStatus::Running;
                a.error = error.clone();
            } else if matches!(job.kind, JobKind::Backup | JobKind::DeleteBackup) {
                a.status = match prev {
                    Some(s) if !super::is_busy(s) => s,
                    _ => AppStatus::Error,
                };
                a.error = error.clone();
            } else {
                a.status = AppStatus::Error;
                a.error = Some(
                    error
                        .clone()
                        .unwrap_or_else(|| format!("{} {}", job.kind.as_str(), job.state.as_str())),
                );
            }
        });
        if let Err(e) = r
            && !matches!(e, PlatformError::NotFound(_))
        {
            tracing::warn!(app = %app.id, error = %e, "cannot record the job outcome on the app");
        }
    }
}

#[async_trait::async_trait]
impl Handler for Runner {
    async fn run_step(&self, cx: &StepCx, step: &str) -> StepResult {
        super::pvehost::TASK_LOG.scope(cx.logger(), self.dispatch(cx, step)).await
    }

    async fn finished(&self, cx: &StepCx, job: &Job) {
        self.finish(cx, job).await;
    }
}

impl Runner {
    async fn dispatch(&self, cx: &StepCx, step: &str) -> StepResult {
        let kind = cx.kind();
        match (kind, step) {
            (JobKind::Reconcile, _) => {
                let r = super::reconcile::run(self.p()).await.map_err(plat)?;
                done(r.summary())
            }
            (JobKind::Janitor, _) => {
                let n = super::reconcile::janitor(self.p()).map_err(plat)?;
                done(format!("{n} stuck jobs/apps failed"))
            }
            (JobKind::UpdateCheck, _) => {
                let n = super::scheduler::update_check(self.p()).await;
                done(n)
            }
            (JobKind::Deploy, "validate") => {
                let app = self.app(cx)?;
                if self.p().inner.catalog.app(&app.catalog_id).is_none() {
                    return Err(StepError::new(format!("catalog entry {} no longer exists", app.catalog_id)));
                }
                crate::validate::hostname(&app.hostname).map_err(StepError::new)?;
                self.update(&app.id, |a| a.status = AppStatus::Deploying)?;
                done("request valid")
            }
            (JobKind::Deploy, "allocate") => {
                let app = self.app(cx)?;
                let others = self.p().apps().map_err(plat)?;
                if let Some(o) = others
                    .iter()
                    .find(|o| o.id != app.id && (o.ip == app.ip || o.mac.eq_ignore_ascii_case(&app.mac)))
                {
                    return Err(StepError::new(format!(
                        "address {} / MAC {} collides with app {}",
                        app.ip, app.mac, o.hostname
                    )));
                }
                self.p().refresh_plan();
                let ports: Vec<String> = app.forwards.iter().map(|f| format!("{}→{}", f.public, f.container)).collect();
                done(format!("reserved {} for {} ports [{}]", app.ip, app.mac, ports.join(", ")))
            }
            (JobKind::Deploy, "place") => self.place(cx, None).await,
            (JobKind::Clone, "place") => {
                let src = self.source(cx)?;
                self.place(cx, Some(src)).await
            }
            (_, "vmid") => self.vmid(cx).await,
            (_, "template") => self.template(cx).await,
            (_, "create_ct") => self.create_ct(cx).await,
            (_, "features") => self.features(cx).await,
            (_, "start") => self.start(cx).await,
            (_, "install_docker") => self.install_docker(cx).await,
            (JobKind::Clone, "push_files") => {
                let src = self.source(cx)?;
                self.push_files(cx, Some(project_dir(&src.hostname))).await
            }
            (_, "push_files") => self.push_files(cx, None).await,
            (_, "compose_up") => match self.compose(cx, &["up", "-d"]).await {
                Err(e) if e.output.as_deref().is_some_and(|o| o.contains("already in use")) => {
                    // Services restarted by a container start under another project state hold
                    // the ports: take the project down and bring it up again.
                    cx.warn(format!("compose up failed ({}); recreating the project", e.reason));
                    self.compose(cx, &["down"]).await?;
                    self.compose(cx, &["up", "-d"]).await
                }
                r => r,
            },
            (_, "pull") => self.compose(cx, &["pull"]).await,
            (_, "discover_ip") => {
                if kind == JobKind::Adopt && cx.data::<String>("ct_status").as_deref() != Some("running") {
                    return skipped("container is stopped");
                }
                self.discover_ip(cx).await
            }
            (_, "health") => self.health(cx).await,
            (_, "health_or_rollback") => self.health_or_rollback(cx).await,
            (_, "stop") => self.stop(cx).await,
            (_, "reboot") => self.reboot(cx).await,
            (_, "destroy") => self.destroy(cx).await,
            (_, "release") => self.release(cx).await,
            (JobKind::Clone, "clone_ct") => {
                let src = self.source(cx)?;
                self.clone_ct(cx, &src).await
            }
            (JobKind::Clone, "network") => self.clone_network(cx).await,
            (JobKind::Update, "backup") => self.update_backup(cx).await,
            (_, "vzdump") => self.vzdump(cx).await,
            (_, "retention") => self.retention(cx).await,
            (_, "restore") => self.restore(cx).await,
            (_, "delete_volume") => self.delete_volume(cx).await,
            (_, "inspect") => self.inspect(cx).await,
            (_, "ports") => self.adopt_ports(cx).await,
            (k, s) => Err(StepError::new(format!("unknown step {s} for a {} job", k.as_str()))),
        }
    }
}

impl Runner {
    fn source(&self, cx: &StepCx) -> Result<App, StepError> {
        let id = cx
            .params()
            .get("source")
            .and_then(|v| v.as_str())
            .map(String::from)
            .ok_or_else(|| StepError::new("clone job without source"))?;
        self.p().app(&id).map_err(plat)
    }
}
