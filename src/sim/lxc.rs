//! LXC endpoints: list, create/restore, destroy, status and power actions, config get/put
//! (with the keyctl rule for non-root@pam identities), pending, clone, rrddata, interfaces.
//! Start/stop of a CT is shared with the SSH `pct` commands.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::api::{ApiError, ApiResult, Reply, Req};
use super::auth::Identity;
use super::faults::Faults;
use super::schema::{self, Params};
use super::state::{Ct, OsState, State};
use super::{Sim, now};

/// Parameters of create that are not stored in the config.
const CREATE_ONLY: &[&str] = &[
    "node",
    "vmid",
    "ostemplate",
    "password",
    "ssh-public-keys",
    "restore",
    "force",
    "unique",
    "start",
    "storage",
    "pool",
    "ignore-unpack-errors",
    "bwlimit",
    "ha-managed",
];

/// The CT `vmid` on `node`, or PVE's "does not exist" error.
pub fn get_ct<'a>(st: &'a State, node: &str, vmid: u32) -> Result<&'a Ct, ApiError> {
    match st.cts.get(&vmid) {
        Some(ct) if ct.node == node => Ok(ct),
        _ => Err(ApiError::die(format!(
            "Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist"
        ))),
    }
}

fn get_ct_mut<'a>(st: &'a mut State, node: &str, vmid: u32) -> Result<&'a mut Ct, ApiError> {
    match st.cts.get_mut(&vmid) {
        Some(ct) if ct.node == node => Ok(ct),
        _ => Err(ApiError::die(format!(
            "Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist"
        ))),
    }
}

fn check_lock(ct: &Ct) -> Result<(), ApiError> {
    match &ct.lock {
        Some(l) => Err(ApiError::die(format!("CT {} is locked ({l})", ct.vmid))),
        None => Ok(()),
    }
}

/// The config digest (changes whenever the config changes).
pub fn digest(config: &BTreeMap<String, Value>) -> String {
    let h = Sha256::digest(serde_json::to_vec(config).unwrap_or_default());
    hex::encode(h)[..40].to_string()
}

fn num_or_string(v: u64, as_string: bool) -> Value {
    if as_string { json!(v.to_string()) } else { json!(v) }
}

/// `GET /nodes/{node}/lxc`.
pub fn list(sim: &Arc<Sim>, r: &Req, faults: &Faults) -> ApiResult {
    let st = sim.state.lock().expect("state");
    let t = now();
    let node = r.node();
    let s = faults.string_numbers;
    let out: Vec<Value> = st
        .cts
        .values()
        .filter(|c| c.node == node)
        .map(|ct| {
            let mut v = json!({
                "vmid": num_or_string(ct.vmid as u64, s), "name": ct.name(), "type": "lxc",
                "status": if ct.running { "running" } else { "stopped" },
                "cpu": if ct.running { 0.003 } else { 0.0 }, "cpus": num_or_string(ct.cores() as u64, s),
                "mem": ct.mem(), "maxmem": ct.maxmem(), "swap": 0, "maxswap": ct.maxswap(),
                "disk": num_or_string(ct.disk(), s), "maxdisk": num_or_string(ct.maxdisk(), s),
                "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0, "uptime": ct.uptime(t),
            });
            if ct.running {
                v["pid"] = num_or_string(ct.pid as u64, s);
            }
            if let Some(tags) = ct.cfg_str("tags") {
                v["tags"] = json!(tags);
            }
            if let Some(l) = &ct.lock {
                v["lock"] = json!(l);
            }
            if ct.is_template() {
                v["template"] = json!(1);
            }
            v
        })
        .collect();
    Ok(Reply::data(Value::Array(out)))
}

/// `GET /nodes/{node}/lxc/{vmid}/status/current`.
pub fn status_current(sim: &Arc<Sim>, r: &Req, faults: &Faults) -> ApiResult {
    let st = sim.state.lock().expect("state");
    let ct = get_ct(&st, &r.node(), r.vmid())?;
    let s = faults.string_numbers;
    let mut v = json!({
        "vmid": ct.vmid, "name": ct.name(), "type": "lxc", "status": if ct.running { "running" } else { "stopped" },
        "cpu": if ct.running { 0.003 } else { 0.0 }, "cpus": num_or_string(ct.cores() as u64, s),
        "mem": ct.mem(), "maxmem": ct.maxmem(), "swap": 0, "maxswap": ct.maxswap(),
        "disk": ct.disk(), "maxdisk": ct.maxdisk(), "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
        "uptime": ct.uptime(now()), "ha": {"managed": 0},
    });
    if ct.running {
        v["pid"] = json!(ct.pid);
        for k in [
            "pressurecpusome",
            "pressureiofull",
            "pressureiosome",
            "pressurememoryfull",
            "pressurememorysome",
        ] {
            v[k] = json!(0);
        }
    }
    if let Some(tags) = ct.cfg_str("tags") {
        v["tags"] = json!(tags);
    }
    if let Some(l) = &ct.lock {
        v["lock"] = json!(l);
    }
    if ct.is_template() {
        v["template"] = json!(1);
    }
    Ok(Reply::data(v))
}

/// Detect `ostype` from a template name.
pub fn ostype_from_template(t: &str) -> &'static str {
    let file = t.rsplit('/').next().unwrap_or(t);
    for os in [
        "alpine",
        "debian",
        "ubuntu",
        "centos",
        "fedora",
        "opensuse",
        "archlinux",
        "devuan",
        "gentoo",
        "nixos",
    ] {
        if file.starts_with(os) {
            return os;
        }
    }
    if file.starts_with("almalinux") || file.starts_with("rockylinux") {
        return "centos";
    }
    "unmanaged"
}

/// Normalize one config value from a verified parameter (property strings printed like PVE).
fn normalize(ep: &schema::Endpoint, key: &str, v: &Value) -> Value {
    if let (Some(fmt), Value::String(s)) = (schema::property_format(ep, key), v)
        && let Ok(map) = schema::parse_property_string(fmt, s)
    {
        return json!(schema::print_property_string(fmt, &map));
    }
    v.clone()
}

/// Fill in `hwaddr` and `type=veth` of `netN` values.
fn complete_net(ep: &schema::Endpoint, st: &mut State, vmid: u32, key: &str, v: &str, new_mac: bool) -> String {
    let Some(fmt) = schema::property_format(ep, key) else {
        return v.to_string();
    };
    let Ok(mut map) = schema::parse_property_string(fmt, v) else {
        return v.to_string();
    };
    if new_mac || !map.contains_key("hwaddr") {
        map.insert("hwaddr".into(), st.new_mac(vmid));
    }
    map.entry("type".into()).or_insert_with(|| "veth".into());
    schema::print_property_string(fmt, &map)
}

fn features_map(s: Option<&str>) -> BTreeMap<String, String> {
    let fmt = schema::property_format(
        schema::schema().endpoint("POST", "/nodes/{node}/lxc").expect("create endpoint"),
        "features",
    );
    match (s, fmt) {
        (Some(s), Some(fmt)) => schema::parse_property_string(fmt, s).unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

/// PVE's `check_ct_modify_config_perm` rule for `features`: only root@pam may change any
/// feature but `nesting` (so API tokens, whose identity is `root@pam!id`, cannot set keyctl).
pub fn check_features(who: &Identity, unprivileged: bool, old: Option<&str>, new: Option<&str>) -> Result<(), ApiError> {
    if who.is_root_pam() {
        return Ok(());
    }
    let (o, n) = (features_map(old), features_map(new));
    if !unprivileged && o != n {
        return Err(ApiError::perm(
            "changing feature flags for privileged container is only allowed for root@pam",
        ));
    }
    let keys: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for k in keys {
        if k != "nesting" && o.get(k) != n.get(k) {
            return Err(ApiError::perm(
                "changing feature flags (except nesting) is only allowed for root@pam",
            ));
        }
    }
    Ok(())
}

/// Allocate the root volume from `rootfs` (`local-lvm:8` → `local-lvm:vm-N-disk-0,size=8G`).
fn alloc_rootfs(ep: &schema::Endpoint, vmid: u32, value: &str) -> Result<String, ApiError> {
    let fmt = schema::property_format(ep, "rootfs").ok_or_else(|| ApiError::die("no rootfs format"))?;
    let mut map = schema::parse_property_string(fmt, value).map_err(|e| ApiError::param("rootfs", format!("invalid format - {e}")))?;
    let volume = map.get("volume").cloned().unwrap_or_default();
    let (storage, rest) = volume
        .split_once(':')
        .ok_or_else(|| ApiError::param("rootfs", format!("unable to parse volume ID '{volume}'")))?;
    let st = super::storage::STORAGES
        .iter()
        .find(|s| s.id == storage)
        .ok_or_else(|| ApiError::die(format!("storage '{storage}' does not exist")))?;
    if !st.content.split(',').any(|c| c == "rootdir") {
        return Err(ApiError::die(format!("storage '{storage}' does not support container directories")));
    }
    if let Ok(gib) = rest.parse::<f64>() {
        if gib <= 0.0 {
            return Err(ApiError::param("rootfs", "invalid size"));
        }
        let name = if st.kind == "lvmthin" {
            format!("{storage}:vm-{vmid}-disk-0")
        } else {
            format!("{storage}:{vmid}/vm-{vmid}-disk-0.raw")
        };
        map.insert("volume".into(), name);
        map.insert("size".into(), format!("{}G", gib));
    }
    Ok(schema::print_property_string(fmt, &map))
}

/// `POST /nodes/{node}/lxc` (create or restore).
pub fn create(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let node = r.node();
    let vmid = r.vmid();
    let p = &r.params;
    let restore = p.flag("restore");
    let ostemplate = p.str("ostemplate").unwrap_or_default();
    let unprivileged = p.int("unprivileged").map(|v| v != 0).unwrap_or(true);
    check_features(&r.who, unprivileged, None, p.str("features").as_deref())?;
    let mut st = sim.state.lock().expect("state");
    if let Some(existing) = st.cts.get(&vmid) {
        let verb = if restore { "restore" } else { "create" };
        if !(restore && p.flag("force") && existing.node == node) {
            return Err(ApiError::die(format!(
                "unable to {verb} CT {vmid} - CT {vmid} already exists on node '{}'",
                existing.node
            )));
        }
        if existing.running {
            return Err(ApiError::die("can't overwrite running container"));
        }
        check_lock(existing)?;
    }
    let mut config: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in &p.0 {
        if CREATE_ONLY.contains(&k.as_str()) {
            continue;
        }
        config.insert(k.clone(), normalize(r.ep, k, v));
    }
    // A restore keeps the backed-up root volume (size, storage) unless told otherwise.
    let rootfs = config.get("rootfs").and_then(Value::as_str).map(str::to_string);
    let rootfs = match (rootfs, p.str("storage")) {
        (Some(v), _) => Some(v),
        (None, Some(s)) => Some(format!("{s}:4")),
        (None, None) if restore => None,
        (None, None) => Some("local:4".to_string()),
    };
    if let Some(rootfs) = rootfs {
        config.insert("rootfs".into(), json!(alloc_rootfs(r.ep, vmid, &rootfs)?));
    }
    let nets: Vec<(String, String)> = config
        .iter()
        .filter(|(k, _)| k.starts_with("net"))
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    for (k, v) in nets {
        let completed = complete_net(r.ep, &mut st, vmid, &k, &v, false);
        config.insert(k, json!(completed));
    }
    if !restore {
        config.entry("hostname".into()).or_insert_with(|| json!(format!("CT{vmid}")));
        config.entry("arch".into()).or_insert_with(|| json!("amd64"));
        config
            .entry("ostype".into())
            .or_insert_with(|| json!(ostype_from_template(&ostemplate)));
        config.entry("memory".into()).or_insert_with(|| json!(512));
        config.entry("swap".into()).or_insert_with(|| json!(512));
        config.insert("unprivileged".into(), json!(unprivileged as i64));
    }
    let loop_ip = match st.cts.get(&vmid) {
        Some(c) => c.loop_ip,
        None => st.alloc_loop_ip(&node),
    };
    let previous = st.cts.insert(
        vmid,
        Ct {
            vmid,
            node: node.clone(),
            config: config.clone(),
            running: false,
            started_at: 0,
            pid: 0,
            lock: Some("create".into()),
            loop_ip,
            ip: None,
            os: OsState::default(),
        },
    );
    drop(st);
    sim.save();
    let start = p.flag("start");
    let unique = p.flag("unique");
    let ssh_keys = p.str("ssh-public-keys");
    let overrides = config;
    let wtype = if restore { "vzrestore" } else { "vzcreate" };
    let upid = sim.spawn_task(&node.clone(), wtype, &vmid.to_string(), &r.who.authid(), Some(vmid), move |ctx| {
        Box::pin(async move {
            let res: Result<u32, String> = async {
                ctx.step().await;
                ctx.checkpoint().await?;
                if restore {
                    super::storage::restore_into(&ctx, vmid, &ostemplate, overrides, unique).await?;
                } else {
                    let (tnode_path, _) = super::storage::volume_path(&ctx.sim, &node, &ostemplate)
                        .ok_or_else(|| format!("volume '{ostemplate}' does not exist"))?;
                    if !tnode_path.exists() {
                        return Err(format!("volume '{ostemplate}' does not exist"));
                    }
                    let root = ctx.sim.layout.ct_root(vmid);
                    let _ = std::fs::remove_dir_all(&root);
                    std::fs::create_dir_all(root.join("etc")).map_err(|e| format!("unable to create CT {vmid} - {e}"))?;
                    let hostname = overrides.get("hostname").and_then(Value::as_str).unwrap_or("localhost").to_string();
                    let _ = std::fs::write(root.join("etc/hostname"), format!("{hostname}\n"));
                    if let Some(keys) = &ssh_keys {
                        let _ = std::fs::create_dir_all(root.join("root/.ssh"));
                        let _ = std::fs::write(root.join("root/.ssh/authorized_keys"), format!("{keys}\n"));
                    }
                    let size = tnode_path.metadata().map(|m| m.len()).unwrap_or(0);
                    let vol = overrides
                        .get("rootfs")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .split(',')
                        .next()
                        .unwrap_or("")
                        .to_string();
                    if vol.contains("vm-") && vol.starts_with("local-lvm:") {
                        ctx.log(format!("  Logical volume \"{}\" created.", vol.trim_start_matches("local-lvm:")));
                    }
                    ctx.log(format!(
                        "extracting archive '/var/lib/vz/template/cache/{}'",
                        ostemplate.rsplit('/').next().unwrap_or("")
                    ));
                    ctx.step().await;
                    ctx.log(format!("Total bytes read: {} ({}MiB, 95MiB/s)", size * 3, (size * 3) >> 20));
                    ctx.log("Detected container architecture: amd64");
                    ctx.log("Creating SSH host key 'ssh_host_ed25519_key' - this may take some time ...");
                    ctx.log(format!("done: SHA256:{} root@{hostname}", &super::random_secret(43)));
                    let mut st = ctx.sim.state.lock().expect("state");
                    if let Some(ct) = st.cts.get_mut(&vmid) {
                        ct.os = OsState::default();
                    }
                }
                ctx.step().await;
                {
                    let mut st = ctx.sim.state.lock().expect("state");
                    if let Some(ct) = st.cts.get_mut(&vmid) {
                        ct.lock = None;
                    }
                }
                ctx.sim.save();
                if start {
                    start_ct(&ctx, vmid).await?;
                }
                Ok(0)
            }
            .await;
            if res.is_err() {
                let mut st = ctx.sim.state.lock().expect("state");
                let keep = previous.clone();
                match keep {
                    Some(prev) if restore => {
                        st.cts.insert(vmid, prev);
                    }
                    _ => {
                        st.cts.remove(&vmid);
                    }
                }
                drop(st);
                if previous.is_none() {
                    let _ = std::fs::remove_dir_all(ctx.sim.layout.ct_root(vmid).parent().unwrap_or(&ctx.sim.layout.ct_root(vmid)));
                }
                ctx.sim.save();
            }
            res
        })
    });
    Ok(Reply::data(json!(upid)))
}

/// Start a CT (runtime, services, compose projects that were up). Used by tasks and `pct`.
pub async fn start_ct(ctx: &super::tasks::TaskCtx, vmid: u32) -> Result<(), String> {
    let sim = &ctx.sim;
    let spec = {
        let st = sim.state.lock().expect("state");
        let ct = st.cts.get(&vmid).ok_or_else(|| format!("CT {vmid} does not exist"))?;
        if ct.running {
            return Err(format!("CT {vmid} already running"));
        }
        super::runtime::CtSpec::from_ct(ct, &st, &sim.layout)
    };
    let ip = sim
        .runtime
        .start(&spec)
        .await
        .map_err(|e| format!("startup for container '{vmid}' failed: {e}"))?;
    let projects: Vec<super::state::Project> = {
        let mut st = sim.state.lock().expect("state");
        let ct = st.cts.get_mut(&vmid).ok_or_else(|| format!("CT {vmid} does not exist"))?;
        ct.running = true;
        ct.started_at = now();
        ct.pid = 200_000 + (vmid % 100_000) + (rand::random::<u32>() % 50_000);
        ct.ip = ip;
        ct.os.running_services = ct.os.boot_services.clone();
        if ct.os.running_services.contains("docker") {
            ct.os.projects.values().filter(|p| p.up).cloned().collect()
        } else {
            Vec::new()
        }
    };
    for p in projects {
        if let Err(e) = sim.apps.start_project(sim, vmid, &p).await {
            ctx.log(format!("WARN: compose project {}: {e}", p.name));
        }
    }
    sim.save();
    Ok(())
}

/// Stop a CT (compose servers, runtime).
pub async fn stop_ct(sim: &Arc<Sim>, vmid: u32) -> Result<(), String> {
    {
        let st = sim.state.lock().expect("state");
        let ct = st.cts.get(&vmid).ok_or_else(|| format!("CT {vmid} does not exist"))?;
        if !ct.running {
            return Err(format!("CT {vmid} not running"));
        }
    }
    sim.apps.stop_vmid(vmid);
    let res = sim.runtime.stop(vmid).await;
    {
        let mut st = sim.state.lock().expect("state");
        if let Some(ct) = st.cts.get_mut(&vmid) {
            ct.running = false;
            ct.ip = None;
            ct.pid = 0;
            ct.os.running_services.clear();
        }
    }
    sim.save();
    res
}

/// Power actions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Power {
    /// start
    Start,
    /// stop
    Stop,
    /// shutdown
    Shutdown,
    /// reboot
    Reboot,
}

/// `POST .../status/{start,stop,shutdown,reboot}`.
pub fn power(sim: &Arc<Sim>, r: &Req, action: Power) -> ApiResult {
    let vmid = r.vmid();
    let node = r.node();
    {
        let st = sim.state.lock().expect("state");
        let ct = get_ct(&st, &node, vmid)?;
        if ct.is_template() {
            return Err(ApiError::die(format!("CT {vmid} is a template")));
        }
        if action == Power::Start {
            if ct.running {
                return Err(ApiError::die(format!("CT {vmid} already running")));
            }
            check_lock(ct)?;
        } else if !ct.running {
            return Err(ApiError::die(format!("CT {vmid} not running")));
        }
        if action == Power::Shutdown || action == Power::Reboot {
            check_lock(ct)?;
        }
    }
    let wtype = match action {
        Power::Start => "vzstart",
        Power::Stop => "vzstop",
        Power::Shutdown => "vzshutdown",
        Power::Reboot => "vzreboot",
    };
    let upid = sim.spawn_task(&node.clone(), wtype, &vmid.to_string(), &r.who.authid(), Some(vmid), move |ctx| {
        Box::pin(async move {
            ctx.step().await;
            ctx.checkpoint().await?;
            match action {
                Power::Start => start_ct(&ctx, vmid).await?,
                Power::Stop | Power::Shutdown => {
                    if action == Power::Stop
                        && ctx
                            .sim
                            .state
                            .lock()
                            .expect("state")
                            .cts
                            .get(&vmid)
                            .is_some_and(|c| c.lock.is_some())
                    {
                        ctx.log("overruling lock");
                    }
                    stop_ct(&ctx.sim, vmid).await?
                }
                Power::Reboot => {
                    stop_ct(&ctx.sim, vmid).await?;
                    ctx.step().await;
                    start_ct(&ctx, vmid).await?;
                }
            }
            ctx.step().await;
            Ok(0)
        })
    });
    Ok(Reply::data(json!(upid)))
}

/// `DELETE /nodes/{node}/lxc/{vmid}`.
pub fn destroy(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let vmid = r.vmid();
    let node = r.node();
    let force = r.params.flag("force");
    let purge = r.params.flag("purge");
    let (running, rootfs) = {
        let mut st = sim.state.lock().expect("state");
        let ct = get_ct_mut(&mut st, &node, vmid)?;
        if ct.running && !force {
            return Err(ApiError::die(format!("unable to destroy CT {vmid} - container is running")));
        }
        check_lock(ct)?;
        if ct.cfg_int("protection").unwrap_or(0) != 0 {
            return Err(ApiError::die(format!("can't remove CT {vmid} - protection mode enabled")));
        }
        ct.lock = Some("destroyed".into());
        (ct.running, ct.cfg_str("rootfs").unwrap_or_default())
    };
    let upid = sim.spawn_task(
        &node.clone(),
        "vzdestroy",
        &vmid.to_string(),
        &r.who.authid(),
        Some(vmid),
        move |ctx| {
            Box::pin(async move {
                ctx.step().await;
                if let Err(e) = ctx.checkpoint().await {
                    if let Some(ct) = ctx.sim.state.lock().expect("state").cts.get_mut(&vmid) {
                        ct.lock = None;
                    }
                    return Err(e);
                }
                if running {
                    stop_ct(&ctx.sim, vmid).await?;
                }
                let vol = rootfs.split(',').next().unwrap_or("");
                if let Some(lv) = vol.strip_prefix("local-lvm:") {
                    ctx.log(format!("  Logical volume \"{lv}\" successfully removed."));
                }
                if purge {
                    ctx.log(format!("purging CT {vmid} from related configurations.."));
                }
                let dir = ctx.sim.layout.root.join("ct").join(vmid.to_string());
                let _ = std::fs::remove_dir_all(dir);
                ctx.sim.state.lock().expect("state").cts.remove(&vmid);
                ctx.sim.save();
                ctx.step().await;
                Ok(0)
            })
        },
    );
    Ok(Reply::data(json!(upid)))
}

/// `GET /nodes/{node}/lxc/{vmid}/config`.
pub fn get_config(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    if let Some(s) = r.params.str("snapshot") {
        return Err(ApiError::die(format!("snapshot '{s}' does not exist")));
    }
    let st = sim.state.lock().expect("state");
    let ct = get_ct(&st, &r.node(), r.vmid())?;
    let mut m: serde_json::Map<String, Value> = ct.config.clone().into_iter().collect();
    m.insert("digest".into(), json!(digest(&ct.config)));
    if let Some(l) = &ct.lock {
        m.insert("lock".into(), json!(l));
    }
    Ok(Reply::data(Value::Object(m)))
}

/// Apply config changes (shared by the API and `pct set`). Returns the new config.
pub fn apply_config(sim: &Sim, ep: &schema::Endpoint, who: &Identity, node: &str, vmid: u32, p: &Params) -> Result<(), ApiError> {
    let mut st = sim.state.lock().expect("state");
    let ct = get_ct(&st, node, vmid)?;
    check_lock(ct)?;
    if let Some(d) = p.str("digest")
        && d != digest(&ct.config)
    {
        return Err(ApiError::die(
            "detected modified configuration - file changed by other user? Try again.",
        ));
    }
    let deletes: Vec<String> = p
        .str("delete")
        .map(|d| d.split([',', ';', ' ']).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    for d in &deletes {
        if p.has(d) {
            return Err(ApiError::param("delete", format!("cannot set and delete '{d}' at the same time")));
        }
        if d == "rootfs" {
            return Err(ApiError::param("delete", format!("unable to delete required option '{d}'")));
        }
    }
    let unpriv = ct.cfg_int("unprivileged").unwrap_or(0) != 0;
    let old_features = ct.cfg_str("features");
    let new_features = if deletes.iter().any(|d| d == "features") {
        None
    } else {
        p.str("features").or(old_features.clone())
    };
    if p.has("features") || deletes.iter().any(|d| d == "features") {
        check_features(who, unpriv, old_features.as_deref(), new_features.as_deref())?;
    }
    if p.has("rootfs") {
        return Err(ApiError::param(
            "rootfs",
            "changing the root file system is not supported by the simulator",
        ));
    }
    let mut changes: Vec<(String, Option<Value>)> = Vec::new();
    for (k, v) in &p.0 {
        if ["node", "vmid", "digest", "delete", "revert"].contains(&k.as_str()) {
            continue;
        }
        changes.push((k.clone(), Some(normalize(ep, k, v))));
    }
    for d in deletes {
        changes.push((d, None));
    }
    let mut nets = Vec::new();
    let ct = get_ct_mut(&mut st, node, vmid)?;
    for (k, v) in changes {
        match v {
            Some(v) => {
                if k.starts_with("net") {
                    nets.push(k.clone());
                }
                ct.config.insert(k, v);
            }
            None => {
                ct.config.remove(&k);
            }
        }
    }
    for k in nets {
        let v = st.cts[&vmid].config[&k].as_str().unwrap_or("").to_string();
        let completed = complete_net(ep, &mut st, vmid, &k, &v, false);
        if let Some(ct) = st.cts.get_mut(&vmid) {
            ct.config.insert(k, json!(completed));
        }
    }
    drop(st);
    sim.save();
    Ok(())
}

/// `PUT /nodes/{node}/lxc/{vmid}/config` (synchronous, returns null).
pub fn put_config(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    apply_config(sim, r.ep, &r.who, &r.node(), r.vmid(), &r.params)?;
    Ok(Reply::data(Value::Null))
}

/// `GET /nodes/{node}/lxc/{vmid}/pending`.
pub fn pending(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let st = sim.state.lock().expect("state");
    let ct = get_ct(&st, &r.node(), r.vmid())?;
    // Pending values come straight from the config file parser: strings.
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    let mut out: Vec<Value> = ct.config.iter().map(|(k, v)| json!({"key": k, "value": text(v)})).collect();
    out.push(json!({"key": "digest", "value": digest(&ct.config)}));
    Ok(Reply::data(Value::Array(out)))
}

/// `POST /nodes/{node}/lxc/{vmid}/clone`.
pub fn clone(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let vmid = r.vmid();
    let node = r.node();
    let newid = r.params.int("newid").unwrap_or(0) as u32;
    let mut st = sim.state.lock().expect("state");
    let src = get_ct(&st, &node, vmid)?.clone();
    if let Some(t) = r.params.str("target")
        && t != node
    {
        if st.node(&t).is_none() {
            return Err(ApiError::param("target", "no such cluster node"));
        }
        return Err(ApiError::die(format!(
            "Can't clone to other node '{t}' - storage 'local-lvm' is not shared"
        )));
    }
    if let Some(existing) = st.cts.get(&newid) {
        return Err(ApiError::die(format!(
            "unable to create CT {newid} - CT {newid} already exists on node '{}'",
            existing.node
        )));
    }
    check_lock(&src)?;
    let full = r.params.int("full").map(|f| f != 0).unwrap_or(!src.is_template());
    if src.running && full && r.params.str("snapname").is_none() {
        return Err(ApiError::die("Cannot do full clones on a running container without snapshots"));
    }
    if let Some(s) = r.params.str("snapname") {
        return Err(ApiError::die(format!("snapshot '{s}' does not exist")));
    }
    let mut config = src.config.clone();
    config.insert(
        "hostname".into(),
        json!(r.params.str("hostname").unwrap_or_else(|| format!("Copy-of-{}", src.name()))),
    );
    if let Some(d) = r.params.str("description") {
        config.insert("description".into(), json!(d));
    }
    config.remove("template");
    if let Some(rootfs) = config.get("rootfs").and_then(Value::as_str).map(str::to_string) {
        config.insert(
            "rootfs".into(),
            json!(
                rootfs
                    .replace(&format!("-{vmid}-"), &format!("-{newid}-"))
                    .replace(&format!(":{vmid}/"), &format!(":{newid}/"))
            ),
        );
    }
    let nets: Vec<(String, String)> = config
        .iter()
        .filter(|(k, _)| k.starts_with("net"))
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    let create_ep = schema::schema().endpoint("POST", "/nodes/{node}/lxc").expect("create endpoint");
    for (k, v) in nets {
        let c = complete_net(create_ep, &mut st, newid, &k, &v, true);
        config.insert(k, json!(c));
    }
    let loop_ip = st.alloc_loop_ip(&node);
    let mut os = src.os.clone();
    os.running_services.clear();
    st.cts.insert(
        newid,
        Ct {
            vmid: newid,
            node: node.clone(),
            config,
            running: false,
            started_at: 0,
            pid: 0,
            lock: Some("create".into()),
            loop_ip,
            ip: None,
            os,
        },
    );
    drop(st);
    sim.save();
    let upid = sim.spawn_task(
        &node.clone(),
        "vzclone",
        &vmid.to_string(),
        &r.who.authid(),
        Some(vmid),
        move |ctx| {
            Box::pin(async move {
                ctx.step().await;
                let res: Result<u32, String> = async {
                    ctx.checkpoint().await?;
                    ctx.log(format!("create full clone of mountpoint rootfs (local-lvm:vm-{vmid}-disk-0)"));
                    ctx.log(format!("  Logical volume \"vm-{newid}-disk-0\" created."));
                    let from = ctx.sim.layout.ct_root(vmid);
                    let to = ctx.sim.layout.ct_root(newid);
                    copy_dir(&from, &to).map_err(|e| format!("clone failed: {e}"))?;
                    ctx.step().await;
                    ctx.log("Creating filesystem with 1048576 4k blocks and 262144 inodes");
                    if let Some(ct) = ctx.sim.state.lock().expect("state").cts.get_mut(&newid) {
                        ct.lock = None;
                    }
                    ctx.sim.save();
                    Ok(0)
                }
                .await;
                if res.is_err() {
                    ctx.sim.state.lock().expect("state").cts.remove(&newid);
                    let _ = std::fs::remove_dir_all(ctx.sim.layout.root.join("ct").join(newid.to_string()));
                    ctx.sim.save();
                }
                res
            })
        },
    );
    Ok(Reply::data(json!(upid)))
}

/// Copy a directory tree.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    if !from.exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let t = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &t)?;
        } else if e.file_type()?.is_file() {
            std::fs::copy(e.path(), &t)?;
        }
    }
    Ok(())
}

/// `GET /nodes/{node}/lxc/{vmid}/rrddata`.
pub fn rrddata(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let st = sim.state.lock().expect("state");
    let ct = get_ct(&st, &r.node(), r.vmid())?;
    let (points, step) = match r.params.str("timeframe").as_deref() {
        Some("hour") => (60u64, 60u64),
        Some("day") => (1440, 60),
        Some("week") => (336, 1800),
        Some("month") => (744, 3600),
        _ => (365, 86_400),
    };
    let max = r.params.str("cf").as_deref() == Some("MAX");
    let end = now() / step * step;
    let started = if ct.running { ct.started_at } else { u64::MAX };
    let mut out = Vec::with_capacity(points as usize);
    for i in 0..points {
        let t = end - (points - 1 - i) * step;
        let mut v = json!({"time": t, "maxcpu": ct.cores(), "maxmem": ct.maxmem(), "maxdisk": ct.maxdisk()});
        if t + step >= started {
            let wobble = ((t / step + ct.vmid as u64) % 17) as f64 / 17.0;
            let f = if max { 1.5 } else { 1.0 };
            v["cpu"] = json!(0.002 + 0.01 * wobble * f);
            v["mem"] = json!((ct.mem() as f64 * (0.9 + 0.1 * wobble)) as u64);
            v["disk"] = json!(ct.disk());
            v["netin"] = json!(120.0 * wobble * f);
            v["netout"] = json!(80.0 * wobble * f);
            v["diskread"] = json!(0.0);
            v["diskwrite"] = json!(512.0 * wobble * f);
        }
        out.push(v);
    }
    Ok(Reply::data(Value::Array(out)))
}

/// `GET /nodes/{node}/lxc/{vmid}/interfaces` (running CTs only).
pub fn interfaces(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let st = sim.state.lock().expect("state");
    let ct = get_ct(&st, &r.node(), r.vmid())?;
    if !ct.running {
        return Err(ApiError::die(format!("CT {} not running", ct.vmid)));
    }
    let hw = ct.net0().get("hwaddr").cloned().unwrap_or_default();
    let mut out = vec![json!({
        "name": "lo", "hwaddr": "00:00:00:00:00:00", "hardware-address": "00:00:00:00:00:00",
        "inet": "127.0.0.1/8", "inet6": "::1/128",
        "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "inet", "prefix": 8}, {"ip-address": "::1", "ip-address-type": "inet6", "prefix": 128}],
    })];
    let mut eth = json!({"name": "eth0", "hwaddr": hw, "hardware-address": hw, "ip-addresses": []});
    if let Some(ip) = &ct.ip {
        let (addr, prefix) = ip.split_once('/').unwrap_or((ip.as_str(), "32"));
        eth["inet"] = json!(ip);
        eth["ip-addresses"] = json!([{"ip-address": addr, "ip-address-type": "inet", "prefix": prefix.parse::<u32>().unwrap_or(32)}]);
    }
    out.push(eth);
    Ok(Reply::data(Value::Array(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Identity {
        Identity {
            user: "root@pam".into(),
            token: Some("proximity".into()),
        }
    }

    #[test]
    fn tokens_may_change_only_nesting() {
        let root = Identity {
            user: "root@pam".into(),
            token: None,
        };
        assert!(check_features(&token(), true, None, Some("nesting=1")).is_ok());
        let e = check_features(&token(), true, None, Some("nesting=1,keyctl=1")).unwrap_err();
        assert_eq!(e.status, 403);
        assert_eq!(
            e.message,
            "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)"
        );
        assert!(check_features(&token(), true, Some("keyctl=1"), Some("keyctl=1,nesting=1")).is_ok());
        assert!(check_features(&token(), true, None, Some("keyctl=0")).is_err());
        assert!(check_features(&token(), true, Some("keyctl=1,nesting=1"), None).is_err());
        assert!(check_features(&root, true, None, Some("nesting=1,keyctl=1")).is_ok());
        assert!(check_features(&token(), false, None, Some("nesting=1")).is_err());
    }

    #[test]
    fn ostype_detection() {
        assert_eq!(
            ostype_from_template("local:vztmpl/alpine-3.22-default_20250617_amd64.tar.xz"),
            "alpine"
        );
        assert_eq!(
            ostype_from_template("local:vztmpl/debian-13-standard_13.6-1_amd64.tar.zst"),
            "debian"
        );
    }

    #[test]
    fn rootfs_allocation() {
        let ep = schema::schema().endpoint("POST", "/nodes/{node}/lxc").unwrap();
        assert_eq!(alloc_rootfs(ep, 105, "local-lvm:8").unwrap(), "local-lvm:vm-105-disk-0,size=8G");
        assert!(
            alloc_rootfs(ep, 105, "local:8")
                .unwrap_err()
                .message
                .contains("does not support container directories")
        );
        assert!(alloc_rootfs(ep, 105, "nosuch:8").is_err());
    }
}
