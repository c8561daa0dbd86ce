//! Cluster-wide and node endpoints: version, nodes, node status, cluster resources, nextid,
//! and the task endpoints (status, log, list, stop).

use std::sync::Arc;

use serde_json::{Value, json};

use super::api::{ApiError, ApiResult, Reply, Req};
use super::faults::Faults;
use super::state::{Ct, GIB, State};
use super::{Sim, now};

/// PVE version reported.
pub const PVE_VERSION: &str = "9.1.1";

/// `GET /version`.
pub fn version() -> ApiResult {
    Ok(Reply::data(
        json!({"version": PVE_VERSION, "release": "9.1", "repoid": "42d4a5a4e0e5b7a1", "console": "xtermjs"}),
    ))
}

fn node_online(faults: &Faults, node: &str) -> bool {
    !faults.offline_nodes.iter().any(|n| n == node)
}

fn node_entry(st: &State, sim: &Sim, faults: &Faults, n: &super::state::Node) -> Value {
    let online = node_online(faults, &n.name);
    let mut v = json!({
        "node": n.name, "id": format!("node/{}", n.name), "type": "node",
        "status": if online { "online" } else { "offline" }, "level": "",
        "ssl_fingerprint": sim.fingerprint,
    });
    if online {
        let running = st.cts.values().filter(|c| c.node == n.name && c.running).count() as f64;
        v["cpu"] = json!(0.012 + running * 0.004);
        v["maxcpu"] = json!(n.maxcpu);
        v["mem"] = json!(st.node_mem(&n.name));
        v["maxmem"] = json!(n.maxmem);
        v["disk"] = json!(6 * GIB + n.index as u64 * 123_456_789);
        v["maxdisk"] = json!(100 * GIB);
        v["uptime"] = json!(uptime(sim));
    }
    v
}

fn uptime(sim: &Sim) -> u64 {
    let boot = sim.cfg.state_dir.metadata().and_then(|m| m.modified()).ok();
    let since = boot.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs()).unwrap_or(0);
    86_400 + since
}

/// `GET /nodes`.
pub fn nodes(sim: &Arc<Sim>, faults: &Faults) -> ApiResult {
    let st = sim.state.lock().expect("state");
    Ok(Reply::data(Value::Array(
        st.nodes.iter().map(|n| node_entry(&st, sim, faults, n)).collect(),
    )))
}

/// `GET /nodes/{node}/status`.
pub fn node_status(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let st = sim.state.lock().expect("state");
    let n = st.node(&r.node()).ok_or_else(|| ApiError::die("no such node"))?;
    let used = st.node_mem(&n.name);
    Ok(Reply::data(json!({
        "uptime": uptime(sim), "cpu": 0.02, "wait": 0.0, "idle": 0,
        "loadavg": ["0.12", "0.08", "0.05"],
        "memory": {"total": n.maxmem, "used": used, "free": n.maxmem - used, "available": n.maxmem - used},
        "swap": {"total": 8 * GIB, "used": 0, "free": 8 * GIB},
        "rootfs": {"total": 100 * GIB, "used": 6 * GIB, "free": 94 * GIB, "avail": 94 * GIB},
        "ksm": {"shared": 0},
        "cpuinfo": {"cpus": n.maxcpu, "sockets": 1, "cores": n.maxcpu, "model": "Simulated CPU", "mhz": "2400.000", "hvm": "1", "flags": "", "user_hz": 100},
        "kversion": "Linux 6.17.2-1-pve #1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1 x86_64",
        "pveversion": format!("pve-manager/{PVE_VERSION}/42d4a5a4e0e5b7a1"),
        "current-kernel": {"sysname": "Linux", "release": "6.17.2-1-pve", "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1", "machine": "x86_64"},
        "boot-info": {"mode": "efi", "secureboot": 0},
    })))
}

/// A CT in `/cluster/resources` form.
pub fn ct_resource(ct: &Ct, now: u64) -> Value {
    let mut v = json!({
        "id": format!("lxc/{}", ct.vmid), "type": "lxc", "vmid": ct.vmid, "name": ct.name(), "node": ct.node,
        "status": if ct.running { "running" } else { "stopped" },
        "cpu": if ct.running { 0.003 } else { 0.0 }, "maxcpu": ct.cores(),
        "mem": ct.mem(), "maxmem": ct.maxmem(), "disk": ct.disk(), "maxdisk": ct.maxdisk(),
        "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
        "uptime": ct.uptime(now), "template": ct.is_template() as i64,
    });
    if let Some(t) = ct.cfg_str("tags") {
        v["tags"] = json!(t);
    }
    if let Some(l) = &ct.lock {
        v["lock"] = json!(l);
    }
    v
}

/// `GET /cluster/resources[?type=vm|storage|node|sdn]`.
pub fn resources(sim: &Arc<Sim>, r: &Req, faults: &Faults) -> ApiResult {
    let kind = r.params.str("type");
    let want = |k: &str| kind.as_deref().is_none_or(|t| t == k);
    let st = sim.state.lock().expect("state");
    let mut out = Vec::new();
    let t = now();
    if want("vm") {
        for ct in st.cts.values() {
            let mut v = ct_resource(ct, t);
            if !node_online(faults, &ct.node) {
                v["status"] = json!("unknown");
            }
            out.push(v);
        }
    }
    if want("node") {
        for n in &st.nodes {
            let mut v = node_entry(&st, sim, faults, n);
            if let Some(o) = v.as_object_mut() {
                o.remove("ssl_fingerprint");
                o.insert("cgroup-mode".into(), json!(2));
            }
            out.push(v);
        }
    }
    if want("storage") {
        for n in &st.nodes {
            for s in super::storage::STORAGES {
                let (used, total) = super::storage::usage(sim, &st, &n.name, s.id);
                out.push(json!({
                    "id": format!("storage/{}/{}", n.name, s.id), "type": "storage", "storage": s.id, "node": n.name,
                    "status": if node_online(faults, &n.name) { "available" } else { "unknown" },
                    "content": s.content, "plugintype": s.kind, "shared": 0, "disk": used, "maxdisk": total,
                }));
            }
        }
    }
    Ok(Reply::data(Value::Array(out)))
}

/// `GET /cluster/nextid[?vmid=N]` — a string, as PVE sends it.
pub fn nextid(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let st = sim.state.lock().expect("state");
    match r.params.int("vmid") {
        Some(v) if st.cts.contains_key(&(v as u32)) => Err(ApiError::param("vmid", format!("VM {v} already exists"))),
        Some(v) => Ok(Reply::data(json!(v.to_string()))),
        None => Ok(Reply::data(json!(st.next_vmid().to_string()))),
    }
}

fn find_task(sim: &Sim, r: &Req) -> Result<super::tasks::Task, ApiError> {
    let upid = r.params.str("upid").unwrap_or_default();
    let task = sim.tasks.get(&upid).ok_or_else(|| ApiError::param("upid", "no such task"))?;
    if task.info.node != r.node() {
        return Err(ApiError::param("upid", "no such task"));
    }
    Ok(task)
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
pub fn task_status(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    if super::tasks::parse_upid(&r.params.str("upid").unwrap_or_default()).is_none() {
        return Err(ApiError::param("upid", "unable to parse worker upid"));
    }
    Ok(Reply::data(find_task(sim, r)?.status_json()))
}

/// `GET /nodes/{node}/tasks/{upid}/log?start&limit`.
pub fn task_log(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let task = find_task(sim, r)?;
    let start = r.params.int("start").unwrap_or(0).max(0) as usize;
    let limit = r.params.int("limit").unwrap_or(50).max(0) as usize;
    let lines: Vec<Value> = task
        .log
        .iter()
        .enumerate()
        .skip(start)
        .take(limit)
        .map(|(i, t)| json!({"n": i + 1, "t": t}))
        .collect();
    let total = task.log.len();
    let lines = if lines.is_empty() && total == 0 {
        vec![json!({"n": 1, "t": "no content"})]
    } else {
        lines
    };
    Ok(Reply {
        data: Value::Array(lines),
        extra: vec![("total".into(), json!(total))],
    })
}

/// `DELETE /nodes/{node}/tasks/{upid}`.
pub fn task_stop(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let task = find_task(sim, r)?;
    task.cancel.cancel();
    Ok(Reply::data(Value::Null))
}

/// `GET /nodes/{node}/tasks`.
pub fn task_list(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let node = r.node();
    let vmid = r.params.int("vmid").map(|v| v.to_string());
    let typefilter = r.params.str("typefilter");
    let errors = r.params.flag("errors");
    let source = r.params.str("source").unwrap_or_else(|| "archive".into());
    let start = r.params.int("start").unwrap_or(0).max(0) as usize;
    let limit = r.params.int("limit").unwrap_or(50).max(0) as usize;
    let list = sim.tasks.list(|t| {
        t.info.node == node
            && vmid.as_ref().is_none_or(|v| &t.info.id == v)
            && typefilter.as_ref().is_none_or(|f| &t.info.wtype == f)
            && (!errors || t.failed())
            && match source.as_str() {
                "active" => t.exitstatus.is_none(),
                "all" => true,
                _ => t.exitstatus.is_some(),
            }
    });
    let total = list.len();
    let data: Vec<Value> = list.iter().skip(start).take(limit).map(|t| t.list_json()).collect();
    Ok(Reply {
        data: Value::Array(data),
        extra: vec![("total".into(), json!(total))],
    })
}

/// `GET /cluster/tasks`.
pub fn cluster_tasks(sim: &Arc<Sim>) -> ApiResult {
    Ok(Reply::data(Value::Array(
        sim.tasks.list(|_| true).iter().take(50).map(|t| t.list_json()).collect(),
    )))
}
