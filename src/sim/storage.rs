//! Storages (`local`: dir with vztmpl/backup/iso; `local-lvm`: lvmthin with rootdir/images),
//! storage content (list/delete), vzdump backups (real archive files under the state
//! directory) and restore, and the appliance index (`aplinfo`) with template download.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::api::{ApiError, ApiResult, Reply, Req};
use super::state::{GIB, OsState, State};
use super::tasks::TaskCtx;
use super::{Sim, now};

/// A storage definition.
#[derive(Debug, Clone, Copy)]
pub struct StorageDef {
    /// Storage id.
    pub id: &'static str,
    /// Plugin type.
    pub kind: &'static str,
    /// Content types.
    pub content: &'static str,
}

/// The storages every node has.
pub const STORAGES: &[StorageDef] = &[
    StorageDef {
        id: "local",
        kind: "dir",
        content: "vztmpl,backup,iso",
    },
    StorageDef {
        id: "local-lvm",
        kind: "lvmthin",
        content: "rootdir,images",
    },
];

/// The embedded appliance index (PVE's `aplinfo.dat`, as `GET aplinfo` returns it).
pub const APLINFO_JSON: &str = include_str!("data/aplinfo.json");

fn storage_def(id: &str) -> Option<&'static StorageDef> {
    STORAGES.iter().find(|s| s.id == id)
}

fn supports(id: &str, content: &str) -> bool {
    storage_def(id).is_some_and(|s| s.content.split(',').any(|c| c == content))
}

/// (used, total) bytes of a storage on a node.
pub fn usage(sim: &Sim, st: &State, node: &str, storage: &str) -> (u64, u64) {
    match storage {
        "local-lvm" => (st.cts.values().filter(|c| c.node == node).map(|c| c.disk()).sum(), 200 * GIB),
        _ => (dir_size(&sim.layout.local_storage(node)) + 5 * GIB, 100 * GIB),
    }
}

fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn storage_entry(sim: &Sim, st: &State, node: &str, s: &StorageDef) -> Value {
    let (used, total) = usage(sim, st, node, s.id);
    json!({
        "storage": s.id, "type": s.kind, "content": s.content, "active": 1, "enabled": 1, "shared": 0,
        "total": total, "used": used, "avail": total - used.min(total), "used_fraction": used as f64 / total as f64,
    })
}

/// `GET /nodes/{node}/storage`.
pub fn list(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let st = sim.state.lock().expect("state");
    let node = r.node();
    let content = r.params.str("content");
    let only = r.params.str("storage");
    let out: Vec<Value> = STORAGES
        .iter()
        .filter(|s| content.as_ref().is_none_or(|c| c.split(',').any(|c| supports(s.id, c))))
        .filter(|s| only.as_ref().is_none_or(|o| o == s.id))
        .map(|s| storage_entry(sim, &st, &node, s))
        .collect();
    Ok(Reply::data(Value::Array(out)))
}

/// `GET /nodes/{node}/storage/{storage}/status`.
pub fn status(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let id = r.params.str("storage").unwrap_or_default();
    let s = storage_def(&id).ok_or_else(|| ApiError::die(format!("storage '{id}' does not exist")))?;
    let st = sim.state.lock().expect("state");
    Ok(Reply::data(storage_entry(sim, &st, &r.node(), s)))
}

/// Host path of a volume on `local` and its content type.
pub fn volume_path(sim: &Sim, node: &str, volid: &str) -> Option<(PathBuf, &'static str)> {
    let (storage, rel) = volid.split_once(':')?;
    if storage != "local" || rel.contains("..") {
        return None;
    }
    let (kind, file) = rel.split_once('/')?;
    if file.is_empty() || file.contains('/') {
        return None;
    }
    match kind {
        "vztmpl" => Some((sim.layout.template_dir(node).join(file), "vztmpl")),
        "backup" => Some((sim.layout.dump_dir(node).join(file), "backup")),
        "iso" => Some((sim.layout.local_storage(node).join("template/iso").join(file), "iso")),
        _ => None,
    }
}

/// Parse `vzdump-lxc-<vmid>-<YYYY_MM_DD-HH_MM_SS>.tar[.ext]` → (vmid, ctime, format).
pub fn parse_backup_name(file: &str) -> Option<(u32, u64, String)> {
    let rest = file.strip_prefix("vzdump-lxc-")?;
    let (vmid, rest) = rest.split_once('-')?;
    let vmid: u32 = vmid.parse().ok()?;
    let (stamp, format) = rest.split_once('.')?;
    if !["tar", "tar.zst", "tar.gz", "tar.lzo"].contains(&format) {
        return None;
    }
    let fmt = time::macros::format_description!("[year]_[month]_[day]-[hour]_[minute]_[second]");
    let dt = time::PrimitiveDateTime::parse(stamp, &fmt).ok()?;
    Some((vmid, dt.assume_utc().unix_timestamp().max(0) as u64, format.to_string()))
}

fn mtime(p: &std::path::Path) -> u64 {
    p.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// All volumes of a storage on a node.
pub fn volumes(sim: &Sim, st: &State, node: &str, storage: &str) -> Vec<Value> {
    let mut out = Vec::new();
    if storage == "local" {
        let read = |dir: PathBuf| -> Vec<(String, PathBuf)> {
            let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        for (name, path) in read(sim.layout.template_dir(node)) {
            let format = if name.ends_with(".tar.xz") {
                "txz"
            } else if name.ends_with(".tar.zst") {
                "tzst"
            } else if name.ends_with(".tar.gz") {
                "tgz"
            } else {
                "tar"
            };
            out.push(json!({"volid": format!("local:vztmpl/{name}"), "content": "vztmpl", "format": format, "size": path.metadata().map(|m| m.len()).unwrap_or(0), "ctime": mtime(&path)}));
        }
        for (name, path) in read(sim.layout.dump_dir(node)) {
            let Some((vmid, ctime, format)) = parse_backup_name(&name) else {
                continue;
            };
            let mut v = json!({
                "volid": format!("local:backup/{name}"), "content": "backup", "format": format, "subtype": "lxc",
                "vmid": vmid, "ctime": ctime, "size": path.metadata().map(|m| m.len()).unwrap_or(0),
            });
            if let Ok(n) = std::fs::read_to_string(side_file(&path, ".notes")) {
                v["notes"] = json!(n.trim_end());
            }
            if side_file(&path, ".protected").exists() {
                v["protected"] = json!(1);
            }
            out.push(v);
        }
    } else if storage == "local-lvm" {
        for ct in st.cts.values().filter(|c| c.node == node) {
            if let Some(vol) = ct.cfg_str("rootfs").and_then(|r| r.split(',').next().map(str::to_string))
                && vol.starts_with("local-lvm:")
            {
                out.push(json!({"volid": vol, "content": "rootdir", "format": "raw", "size": ct.maxdisk(), "used": ct.disk(), "vmid": ct.vmid, "ctime": ct.started_at.max(1)}));
            }
        }
    }
    out
}

fn side_file(archive: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = archive.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn log_file(archive: &std::path::Path) -> PathBuf {
    let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let base = name.split(".tar").next().unwrap_or(&name).to_string();
    archive.with_file_name(format!("{base}.log"))
}

/// `GET /nodes/{node}/storage/{storage}/content[?content&vmid]`.
pub fn content(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let storage = r.params.str("storage").unwrap_or_default();
    if storage_def(&storage).is_none() {
        return Err(ApiError::die(format!("storage '{storage}' does not exist")));
    }
    let st = sim.state.lock().expect("state");
    let content = r.params.str("content");
    let vmid = r.params.int("vmid");
    let out: Vec<Value> = volumes(sim, &st, &r.node(), &storage)
        .into_iter()
        .filter(|v| content.as_ref().is_none_or(|c| v["content"] == json!(c)))
        .filter(|v| vmid.is_none_or(|id| v["vmid"].as_i64() == Some(id)))
        .collect();
    Ok(Reply::data(Value::Array(out)))
}

/// `DELETE /nodes/{node}/storage/{storage}/content/{volume}`.
pub async fn delete_volume(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let node = r.node();
    let storage = r.params.str("storage").unwrap_or_default();
    let volume = r.params.str("volume").unwrap_or_default();
    let volid = if volume.contains(':') {
        volume.clone()
    } else {
        format!("{storage}:{volume}")
    };
    if !volid.starts_with(&format!("{storage}:")) {
        return Err(ApiError::die(format!("volume '{volid}' is not on storage '{storage}'")));
    }
    if volid.starts_with("local-lvm:") {
        let st = sim.state.lock().expect("state");
        if let Some(ct) = st
            .cts
            .values()
            .find(|c| c.node == node && c.cfg_str("rootfs").is_some_and(|r| r.starts_with(&format!("{volid},"))))
        {
            return Err(ApiError::die(format!(
                "unable to delete '{volid}' - volume is used by CT {}",
                ct.vmid
            )));
        }
        return Err(ApiError::die(format!("no such volume '{volid}'")));
    }
    let (path, kind) = volume_path(sim, &node, &volid).ok_or_else(|| ApiError::die(format!("unable to parse volume ID '{volid}'")))?;
    if !path.exists() {
        return Err(ApiError::die(format!("volume '{volid}' does not exist")));
    }
    if kind == "backup" && side_file(&path, ".protected").exists() {
        return Err(ApiError::die(format!("cannot remove protected archive '{}'", path.display())));
    }
    let vmid = path
        .file_name()
        .and_then(|n| parse_backup_name(&n.to_string_lossy()))
        .map(|(v, _, _)| v);
    let id = format!("{}@{storage}", vmid.map(|v| v.to_string()).unwrap_or_default());
    let upid = sim.spawn_task(&node.clone(), "imgdel", &id, &r.who.authid(), vmid, move |ctx| {
        Box::pin(async move {
            ctx.step().await;
            ctx.checkpoint().await?;
            std::fs::remove_file(&path).map_err(|e| format!("unable to remove '{}' - {e}", path.display()))?;
            ctx.log(format!("Removed volume '{volid}'"));
            if kind == "backup" {
                for side in [log_file(&path), side_file(&path, ".notes")] {
                    if std::fs::remove_file(&side).is_ok() {
                        ctx.log(format!("Removed file '{}'", side.display()));
                    }
                }
            }
            Ok(0)
        })
    });
    if let Some(delay) = r.params.int("delay") {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(delay.clamp(0, 30) as u64);
        while tokio::time::Instant::now() < deadline {
            if let Some(t) = sim.tasks.get(&upid)
                && t.exitstatus.is_some()
            {
                if t.failed() {
                    return Err(ApiError::die(t.exitstatus.unwrap_or_default()));
                }
                return Ok(Reply::data(Value::Null));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(Reply::data(json!(upid)))
}

/// What a backup archive holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Archive {
    /// VMID backed up.
    pub vmid: u32,
    /// CT configuration.
    pub config: BTreeMap<String, Value>,
    /// Mini-OS state.
    pub os: OsState,
    /// Files of the CT root (path → base64).
    pub files: BTreeMap<String, String>,
}

fn collect_files(root: &std::path::Path, rel: &str, out: &mut BTreeMap<String, String>) {
    let Ok(rd) = std::fs::read_dir(root.join(rel.trim_start_matches('/'))) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let child = format!("{rel}/{name}");
        match e.file_type() {
            Ok(t) if t.is_dir() => collect_files(root, &child, out),
            Ok(t) if t.is_file() => {
                if let Ok(b) = std::fs::read(e.path()) {
                    out.insert(child, base64::engine::general_purpose::STANDARD.encode(b));
                }
            }
            _ => {}
        }
    }
}

/// `POST /nodes/{node}/vzdump`.
pub fn vzdump(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let node = r.node();
    let p = &r.params;
    let storage = p.str("storage").unwrap_or_else(|| "local".into());
    if !supports(&storage, "backup") {
        return Err(ApiError::param("storage", format!("storage '{storage}' does not support backups")));
    }
    if (p.has("notes-template") || p.has("protected")) && !p.has("storage") {
        return Err(ApiError::param(
            "storage",
            "storage must be specified when using notes-template or protected",
        ));
    }
    let st = sim.state.lock().expect("state");
    let requested: Vec<u32> = if p.flag("all") {
        st.cts.keys().copied().collect()
    } else {
        let list = p
            .str("vmid")
            .ok_or_else(|| ApiError::param("vmid", "property is missing and it is not optional"))?;
        list.split([',', ' ', ';'])
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect()
    };
    let local: Vec<u32> = requested
        .iter()
        .copied()
        .filter(|v| st.cts.get(v).is_some_and(|c| c.node == node))
        .collect();
    drop(st);
    if local.is_empty() {
        return Ok(Reply::data(json!("OK")));
    }
    let compress = p.str("compress").unwrap_or_else(|| "0".into());
    let ext = match compress.as_str() {
        "zstd" => "tar.zst",
        "gzip" => "tar.gz",
        "1" | "lzo" => "tar.lzo",
        _ => "tar",
    };
    let mode = p.str("mode").unwrap_or_else(|| "snapshot".into());
    let notes_tpl = p.str("notes-template");
    let protected = p.flag("protected");
    let id = if local.len() == 1 { local[0].to_string() } else { String::new() };
    let cmdline = format!(
        "vzdump {} --storage {storage} --mode {mode}{} --node {node}",
        local.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
        if compress != "0" {
            format!(" --compress {compress}")
        } else {
            String::new()
        }
    );
    let upid = sim.spawn_task(
        &node.clone(),
        "vzdump",
        &id,
        &r.who.authid(),
        local.first().copied().filter(|_| local.len() == 1),
        move |ctx| {
            Box::pin(async move {
                ctx.log(format!("INFO: starting new backup job: {cmdline}"));
                ctx.step().await;
                ctx.checkpoint().await?;
                let mut failed = 0;
                for vmid in &local {
                    if let Err(e) = backup_one(&ctx, &node, *vmid, ext, &mode, notes_tpl.as_deref(), protected).await {
                        ctx.log(format!("ERROR: Backup of VM {vmid} failed - {e}"));
                        failed += 1;
                    }
                }
                ctx.log(format!(
                    "INFO: Backup finished at {}",
                    local_time(now(), "[year]-[month]-[day] [hour]:[minute]:[second]")
                ));
                if failed > 0 {
                    ctx.log("INFO: Backup job finished with errors");
                    return Err("job errors".into());
                }
                ctx.log("INFO: Backup job finished successfully");
                Ok(0)
            })
        },
    );
    Ok(Reply::data(json!(upid)))
}

fn local_time(t: u64, fmt: &str) -> String {
    let Ok(f) = time::format_description::parse_borrowed::<1>(fmt) else {
        return String::new();
    };
    time::OffsetDateTime::from_unix_timestamp(t as i64)
        .ok()
        .and_then(|d| d.format(&f).ok())
        .unwrap_or_default()
}

async fn backup_one(
    ctx: &TaskCtx,
    node: &str,
    vmid: u32,
    ext: &str,
    mode: &str,
    notes_tpl: Option<&str>,
    protected: bool,
) -> Result<(), String> {
    let sim = &ctx.sim;
    let (config, os, name, running) = {
        let mut st = sim.state.lock().expect("state");
        let ct = st.cts.get_mut(&vmid).ok_or_else(|| format!("CT {vmid} does not exist"))?;
        if let Some(l) = &ct.lock {
            return Err(format!("CT is locked ({l})"));
        }
        ct.lock = Some("backup".into());
        (ct.config.clone(), ct.os.clone(), ct.name(), ct.running)
    };
    let res: Result<(), String> = async {
        let started = now();
        ctx.log(format!("INFO: Starting Backup of VM {vmid} (lxc)"));
        ctx.log(format!(
            "INFO: Backup started at {}",
            local_time(started, "[year]-[month]-[day] [hour]:[minute]:[second]")
        ));
        ctx.log(format!("INFO: status = {}", if running { "running" } else { "stopped" }));
        ctx.log(format!("INFO: CT Name: {name}"));
        ctx.log("INFO: including mount point rootfs ('/') in backup");
        ctx.log(format!("INFO: backup mode: {mode}"));
        ctx.log("INFO: ionice priority: 7");
        let dir = sim.layout.dump_dir(node);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut t = now();
        let mut path;
        loop {
            path = dir.join(format!(
                "vzdump-lxc-{vmid}-{}.{ext}",
                local_time(t, "[year]_[month]_[day]-[hour]_[minute]_[second]")
            ));
            if !path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            t = now();
        }
        ctx.log(format!(
            "INFO: creating vzdump archive '/var/lib/vz/dump/{}'",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let mut files = BTreeMap::new();
        collect_files(&sim.layout.ct_root(vmid), "", &mut files);
        let archive = Archive { vmid, config, os, files };
        let bytes = serde_json::to_vec(&archive).map_err(|e| e.to_string())?;
        ctx.step().await;
        std::fs::write(&path, &bytes).map_err(|e| format!("unable to write archive: {e}"))?;
        ctx.log(format!(
            "INFO: Total bytes written: {} ({}MiB, 120MiB/s)",
            bytes.len(),
            bytes.len() >> 20
        ));
        ctx.log(format!("INFO: archive file size: {}KB", bytes.len().div_ceil(1024)));
        if let Some(tpl) = notes_tpl {
            let notes = tpl
                .replace("{{guestname}}", &name)
                .replace("{{vmid}}", &vmid.to_string())
                .replace("{{node}}", node)
                .replace("{{cluster}}", &sim.cfg.cluster_name);
            ctx.log("INFO: adding notes to backup");
            let _ = std::fs::write(side_file(&path, ".notes"), format!("{notes}\n"));
        }
        if protected {
            ctx.log("INFO: marking backup as protected");
            let _ = std::fs::write(side_file(&path, ".protected"), b"");
        }
        let lines = sim.tasks.get(&ctx.upid).map(|t| t.log.join("\n")).unwrap_or_default();
        let _ = std::fs::write(log_file(&path), format!("{lines}\n"));
        ctx.log(format!("INFO: Finished Backup of VM {vmid} (00:00:0{})", (now() - started).min(9)));
        Ok(())
    }
    .await;
    if let Some(ct) = sim.state.lock().expect("state").cts.get_mut(&vmid)
        && ct.lock.as_deref() == Some("backup")
    {
        ct.lock = None;
    }
    sim.save();
    res
}

/// Restore a CT from a backup volume (the body of a `vzrestore` task).
pub async fn restore_into(ctx: &TaskCtx, vmid: u32, volid: &str, overrides: BTreeMap<String, Value>, unique: bool) -> Result<(), String> {
    let sim = &ctx.sim;
    let node = sim
        .state
        .lock()
        .expect("state")
        .cts
        .get(&vmid)
        .map(|c| c.node.clone())
        .ok_or("CT vanished")?;
    let (path, kind) = volume_path(sim, &node, volid).ok_or_else(|| format!("unable to parse volume ID '{volid}'"))?;
    if kind != "backup" || !path.exists() {
        return Err(format!("volume '{volid}' does not exist"));
    }
    ctx.log(format!("restoring '{volid}' now.."));
    let bytes = std::fs::read(&path).map_err(|e| format!("unable to read archive: {e}"))?;
    let archive: Archive = serde_json::from_slice(&bytes)
        .map_err(|_| format!("unable to restore CT {vmid} - archive '{volid}' is not a valid vzdump archive"))?;
    ctx.log(format!(
        "extracting archive '/var/lib/vz/dump/{}'",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let root = sim.layout.ct_root(vmid);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    for (rel, b64) in &archive.files {
        let Some(p) = super::state::ct_path(&root, rel) else { continue };
        if let Some(parent) = p.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let data = base64::engine::general_purpose::STANDARD.decode(b64).unwrap_or_default();
        std::fs::write(&p, data).map_err(|e| e.to_string())?;
    }
    ctx.step().await;
    ctx.log(format!("Total bytes read: {} ({}MiB, 150MiB/s)", bytes.len(), bytes.len() >> 20));
    ctx.log("merging backed-up and given configuration..");
    let mut config = archive.config.clone();
    // The rootfs keeps the backed-up size on the requested storage.
    let size = config
        .get("rootfs")
        .and_then(Value::as_str)
        .and_then(|r| r.split(',').find_map(|p| p.strip_prefix("size=")).map(str::to_string));
    for (k, v) in overrides {
        config.insert(k, v);
    }
    if let Some(rootfs) = config.get("rootfs").and_then(Value::as_str).map(str::to_string) {
        let vol = rootfs.split(',').next().unwrap_or("").to_string();
        let storage = vol.split(':').next().unwrap_or("local-lvm").to_string();
        let size = size.unwrap_or_else(|| "4G".into());
        let new_vol = if storage == "local-lvm" {
            format!("local-lvm:vm-{vmid}-disk-0")
        } else {
            format!("{storage}:{vmid}/vm-{vmid}-disk-0.raw")
        };
        config.insert("rootfs".into(), json!(format!("{new_vol},size={size}")));
    }
    let mut st = sim.state.lock().expect("state");
    if unique {
        let keys: Vec<String> = config.keys().filter(|k| k.starts_with("net")).cloned().collect();
        for k in keys {
            if let Some(v) = config.get(&k).and_then(Value::as_str) {
                let mut m = super::state::parse_kv(v);
                m.insert("hwaddr".into(), st.new_mac(vmid));
                let fmt = super::schema::property_format(super::schema::schema().endpoint("POST", "/nodes/{node}/lxc").expect("ep"), &k);
                let s = match fmt {
                    Some(f) => super::schema::print_property_string(f, &m),
                    None => v.to_string(),
                };
                config.insert(k, json!(s));
            }
        }
    }
    if let Some(ct) = st.cts.get_mut(&vmid) {
        ct.config = config;
        ct.os = archive.os;
        ct.os.running_services.clear();
    }
    Ok(())
}

/// `GET /nodes/{node}/aplinfo`.
pub fn aplinfo() -> ApiResult {
    Ok(Reply::data(serde_json::from_str(APLINFO_JSON).unwrap_or(Value::Array(Vec::new()))))
}

/// `POST /nodes/{node}/aplinfo` (template download into `<storage>:vztmpl/<file>`).
pub fn download(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let node = r.node();
    let storage = r.params.str("storage").unwrap_or_default();
    let template = r.params.str("template").unwrap_or_default();
    let index: Vec<Value> = serde_json::from_str(APLINFO_JSON).unwrap_or_default();
    let Some(entry) = index.iter().find(|e| e["template"] == json!(template)).cloned() else {
        return Err(ApiError::param("template", "no such template"));
    };
    if storage_def(&storage).is_none() {
        return Err(ApiError::param("storage", format!("storage '{storage}' does not exist")));
    }
    if !supports(&storage, "vztmpl") {
        return Err(ApiError::param(
            "storage",
            format!("storage '{storage}' does not support templates"),
        ));
    }
    let upid = sim.spawn_task(&node.clone(), "download", &template.clone(), &r.who.authid(), None, move |ctx| {
        Box::pin(async move {
            let location = entry["location"].as_str().unwrap_or_default().to_string();
            ctx.log(format!("starting template download from: {location}"));
            ctx.log(format!("target file: /var/lib/vz/template/cache/{template}"));
            ctx.step().await;
            ctx.checkpoint().await?;
            let dir = ctx.sim.layout.template_dir(&node);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let body = format!(
                "proximity pve-sim template {template}\nsha512sum {}\n",
                entry["sha512sum"].as_str().unwrap_or("")
            );
            let mut data = body.into_bytes();
            data.resize(256 * 1024, b'#');
            let tmp = dir.join(format!("{template}.tmp_dwnl.{}", std::process::id()));
            std::fs::write(&tmp, &data).map_err(|e| e.to_string())?;
            ctx.log(format!("{template}: 100% {} KiB", data.len() / 1024));
            ctx.step().await;
            ctx.log(format!("downloaded {} bytes", data.len()));
            ctx.log("calculating checksum...OK, checksum verified");
            std::fs::rename(&tmp, dir.join(&template)).map_err(|e| e.to_string())?;
            ctx.log(format!(
                "download of '{location}' to '/var/lib/vz/template/cache/{template}' finished"
            ));
            Ok(0)
        })
    });
    Ok(Reply::data(json!(upid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_parse() {
        let (vmid, ctime, fmt) = parse_backup_name("vzdump-lxc-105-2024_10_29-12_00_00.tar.zst").unwrap();
        assert_eq!((vmid, fmt.as_str()), (105, "tar.zst"));
        assert_eq!(ctime, 1_730_203_200);
        assert!(parse_backup_name("vzdump-lxc-105-2024_10_29-12_00_00.log").is_none());
        assert!(parse_backup_name("vzdump-qemu-105-2024_10_29-12_00_00.vma.zst").is_none());
    }

    #[test]
    fn aplinfo_lists_alpine() {
        let v: Vec<Value> = serde_json::from_str(APLINFO_JSON).unwrap();
        assert!(v.iter().any(|e| e["template"].as_str().unwrap().starts_with("alpine-3.22")));
    }

    #[test]
    fn log_side_file_name() {
        let p = std::path::Path::new("/d/vzdump-lxc-1-2024_01_01-00_00_00.tar.zst");
        assert_eq!(log_file(p), std::path::Path::new("/d/vzdump-lxc-1-2024_01_01-00_00_00.log"));
    }
}
