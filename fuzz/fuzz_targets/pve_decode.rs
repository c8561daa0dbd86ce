//! PVE replies: JSON bytes → the lenient (Perl-typed) decoding of every reply type the
//! client reads, the error mapping of non-2xx replies, and the string parsers (UPIDs,
//! property strings, net devices, exit statuses) on every string in the body.
//! Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proximity::pve::client::{decode_data, error_from_reply};
use proximity::pve::types::*;
use proximity::pve::upid::Upid;
use serde_json::Value;

fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    for status in [400u16, 401, 403, 500, 595, 596] {
        let e = error_from_reply(status, "reason", &body);
        let _ = (e.to_string(), e.http_status(), e.is_retryable());
    }
    let d = |b: &Value| b.clone();
    let _ = decode_data::<Version>("/version", d(&body));
    let _ = decode_data::<Vec<NodeInfo>>("/nodes", d(&body)).map(|v| v.iter().map(|n| (n.is_online(), n.free_mem())).count());
    let _ = decode_data::<NodeStatus>("/status", d(&body));
    let _ = decode_data::<Vec<ClusterResource>>("/cluster/resources", d(&body));
    let _ = decode_data::<Vec<LxcSummary>>("/lxc", d(&body));
    let _ = decode_data::<LxcStatus>("/status/current", d(&body)).map(|s| s.is_running());
    if let Ok(c) = decode_data::<LxcConfig>("/config", d(&body)) {
        let _ = (c.nets(), c.feature_map());
    }
    let _ = decode_data::<Vec<RrdPoint>>("/rrddata", d(&body));
    let _ = decode_data::<Vec<LxcInterface>>("/interfaces", d(&body)).map(|v| v.iter().map(|i| i.ipv4()).count());
    let _ = decode_data::<Vec<StorageInfo>>("/storage", d(&body)).map(|v| v.iter().map(|s| s.supports("vztmpl")).count());
    let _ = decode_data::<Vec<StorageContent>>("/content", d(&body));
    let _ = decode_data::<TaskStatus>("/tasks/status", d(&body)).map(|t| (t.is_running(), t.is_success()));
    let _ = decode_data::<Vec<TaskLogLine>>("/tasks/log", d(&body));
    let _ = decode_data::<Vec<AplInfo>>("/aplinfo", d(&body));
    let _ = decode_data::<Vec<NetworkIface>>("/network", d(&body));
    let mut all = Vec::new();
    strings(&body, &mut all);
    for s in all.into_iter().take(64) {
        if let Ok(u) = Upid::parse(s) {
            assert_eq!(u.as_str(), s);
            let _ = u.vmid();
        }
        let _ = parse_property_string(s);
        let _ = NetDevice::parse(s);
        let _ = exit_ok(s);
    }
});
