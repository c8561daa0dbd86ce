//! Node network configuration: `POST` stages an interface into `interfaces.new`, `PUT`
//! applies staged changes in a `srvreload:networking` task, `DELETE` reverts, and `GET`
//! lists interfaces with the unified diff in the top-level `changes`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Sim;
use super::api::{ApiError, ApiResult, Reply, Req};
use super::state::{interfaces_text, unified_diff};

/// `GET /nodes/{node}/network[?type=...]`.
pub fn list(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let st = sim.state.lock().expect("state");
    let net = st.net.get(&r.node()).cloned().unwrap_or_default();
    let shown = net.staged.clone().unwrap_or_else(|| net.current.clone());
    let filter = r.params.str("type");
    let data: Vec<Value> = shown
        .iter()
        .filter(|m| {
            let t = m.get("type").and_then(Value::as_str).unwrap_or("");
            match filter.as_deref() {
                None => true,
                Some("any_bridge") => t == "bridge" || t == "OVSBridge",
                Some("any_local_bridge") => t == "bridge" || t == "OVSBridge",
                Some(f) => t == f,
            }
        })
        .map(|m| {
            let mut m = m.clone();
            let name = m.get("iface").cloned();
            let active = net.current.iter().any(|c| c.get("iface") == name.as_ref());
            m.insert("active".into(), json!(active as i64));
            Value::Object(m.into_iter().collect())
        })
        .collect();
    let mut reply = Reply::data(Value::Array(data));
    if let Some(staged) = &net.staged {
        reply.extra.push((
            "changes".into(),
            json!(unified_diff(
                &interfaces_text(&net.current),
                &interfaces_text(staged),
                "/etc/network/interfaces",
                "/etc/network/interfaces.new"
            )),
        ));
    }
    Ok(reply)
}

/// `POST /nodes/{node}/network` (stage a new interface; synchronous, null).
pub fn create(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let iface = r.params.str("iface").unwrap_or_default();
    let kind = r.params.str("type").unwrap_or_default();
    let mut st = sim.state.lock().expect("state");
    let net = st.net.entry(r.node()).or_default();
    let mut staged = net.staged.clone().unwrap_or_else(|| net.current.clone());
    if staged.iter().any(|m| m.get("iface") == Some(&json!(iface))) {
        return Err(ApiError::param("iface", "interface already exists"));
    }
    if kind == "bridge" && !iface.starts_with("vmbr") && iface.len() > 15 {
        return Err(ApiError::param("iface", "interface name too long"));
    }
    let mut m: BTreeMap<String, Value> = BTreeMap::new();
    m.insert("iface".into(), json!(iface));
    m.insert("type".into(), json!(kind));
    m.insert("families".into(), json!(["inet"]));
    m.insert("method6".into(), json!("manual"));
    let mut method = "manual";
    for (k, v) in &r.params.0 {
        if ["node", "iface", "type"].contains(&k.as_str()) {
            continue;
        }
        m.insert(k.clone(), v.clone());
    }
    if let Some(cidr) = r.params.str("cidr") {
        method = "static";
        if let Some((a, n)) = cidr.split_once('/') {
            m.insert("address".into(), json!(a));
            m.insert("netmask".into(), json!(n));
        }
    } else if let (Some(a), Some(n)) = (r.params.str("address"), r.params.str("netmask")) {
        method = "static";
        m.insert("cidr".into(), json!(format!("{a}/{n}")));
    }
    m.insert("method".into(), json!(method));
    if kind == "bridge" {
        m.entry("bridge_stp".into()).or_insert(json!("off"));
        m.entry("bridge_fd".into()).or_insert(json!("0"));
    }
    staged.push(m);
    net.staged = Some(staged);
    drop(st);
    sim.save();
    Ok(Reply::data(Value::Null))
}

/// `PUT /nodes/{node}/network` (apply staged changes: `srvreload` task).
pub fn apply(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let node = r.node();
    let upid = sim.spawn_task(&node.clone(), "srvreload", "networking", &r.who.authid(), None, move |ctx| {
        Box::pin(async move {
            ctx.step().await;
            ctx.checkpoint().await?;
            {
                let mut st = ctx.sim.state.lock().expect("state");
                let net = st.net.entry(node.clone()).or_default();
                if let Some(staged) = net.staged.take() {
                    net.current = staged;
                }
            }
            ctx.sim.save();
            ctx.log("info: executing ifreload -a");
            Ok(0)
        })
    });
    Ok(Reply::data(json!(upid)))
}

/// `DELETE /nodes/{node}/network` (revert staged changes).
pub fn revert(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let mut st = sim.state.lock().expect("state");
    if let Some(net) = st.net.get_mut(&r.node()) {
        net.staged = None;
    }
    drop(st);
    sim.save();
    Ok(Reply::data(Value::Null))
}

/// `DELETE /nodes/{node}/network/{iface}` (stage the removal of an interface; synchronous,
/// null; applied with `PUT`).
pub fn delete_iface(sim: &Arc<Sim>, r: &Req) -> ApiResult {
    let iface = r.params.str("iface").unwrap_or_default();
    let mut st = sim.state.lock().expect("state");
    let net = st.net.entry(r.node()).or_default();
    let mut staged = net.staged.clone().unwrap_or_else(|| net.current.clone());
    let before = staged.len();
    staged.retain(|m| m.get("iface") != Some(&json!(iface)));
    if staged.len() == before {
        return Err(ApiError::die(format!("interface '{iface}' does not exist\n")));
    }
    net.staged = Some(staged);
    drop(st);
    sim.save();
    Ok(Reply::data(Value::Null))
}
