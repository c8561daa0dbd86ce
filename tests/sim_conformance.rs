//! Conformance of `proximity pve-sim` with `shared/pve-api/schema-subset.json` and the
//! recorded samples: every endpoint of the schema is served; unknown parameters, missing
//! required parameters, enum/minimum violations and non-0/1 booleans are refused with PVE's
//! 400 for exactly the offending fields; responses carry every non-optional property of the
//! `returns` schema with the declared JSON type; response shapes cover the samples' keys.

mod common;
mod sim_util;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};
use sim_util::{Api, alpine_template, start_sim};

fn shared(file: &str) -> Option<Value> {
    let p = PathBuf::from("/work/shared/pve-api").join(file);
    let text = std::fs::read_to_string(&p).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

fn schema() -> Value {
    // The simulator embeds a copy; it must be the shared file when that is present.
    let embedded: Value = serde_json::from_str(proximity::sim::schema::SCHEMA_JSON).unwrap();
    if let Some(s) = shared("schema-subset.json") {
        assert_eq!(
            s, embedded,
            "src/sim/data/schema-subset.json differs from shared/pve-api/schema-subset.json"
        );
    }
    embedded
}

fn endpoints(s: &Value) -> Vec<Value> {
    let mut v = s["endpoints"].as_array().unwrap().clone();
    v.extend(s["extra_endpoints"].as_array().unwrap().iter().cloned());
    v
}

fn concrete(path: &str) -> String {
    path.replace("{node}", "pve1")
        .replace("{vmid}", "101")
        .replace("{storage}", "local")
        .replace("{volume}", "local%3Abackup%2Fvzdump-lxc-101-2024_01_01-00_00_00.tar.zst")
        .replace(
            "{upid}",
            "UPID%3Apve1%3A00001234%3A00001234%3A65000000%3Avzstart%3A101%3Aroot%40pam%3A",
        )
}

fn path_vars(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_string)
        .collect()
}

/// A value that violates the property, with a word the error must contain.
fn violation(prop: &Value) -> Option<(String, &'static str)> {
    if let Some(e) = prop.get("enum").and_then(Value::as_array) {
        let _ = e;
        return Some(("not-in-enum".into(), "enumeration"));
    }
    match prop["type"].as_str() {
        Some("boolean") => Some(("true".into(), "boolean")),
        Some("integer") => match prop.get("minimum").and_then(Value::as_i64) {
            Some(min) => Some(((min - 1).to_string(), "minimum")),
            None => Some(("x1".into(), "integer")),
        },
        Some("number") => Some(("abc".into(), "number")),
        _ => None,
    }
}

fn json_type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.as_i64().is_some_and(|n| n == 0 || n == 1),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

/// Check a value against a `returns` schema: non-optional properties present with their type.
fn check_returns(what: &str, returns: &Value, v: &Value, problems: &mut Vec<String>) {
    match returns["type"].as_str() {
        Some("array") => {
            let Some(items) = v.as_array() else {
                return problems.push(format!("{what}: not an array: {v}"));
            };
            for it in items {
                check_returns(what, &returns["items"], it, problems);
            }
        }
        Some("object") => {
            let Some(obj) = v.as_object() else {
                return problems.push(format!("{what}: not an object: {v}"));
            };
            for (k, p) in returns["properties"].as_object().into_iter().flatten() {
                let optional = p.get("optional").and_then(Value::as_i64).unwrap_or(0) != 0;
                match obj.get(k) {
                    None if !optional => problems.push(format!("{what}: missing required property '{k}'")),
                    Some(val) if !val.is_null() && !json_type_ok(p["type"].as_str().unwrap_or(""), val) => {
                        problems.push(format!("{what}: property '{k}' should be {} but is {val}", p["type"]))
                    }
                    _ => {}
                }
            }
        }
        Some(t) if !v.is_null() && !json_type_ok(t, v) => problems.push(format!("{what}: expected {t}, got {v}")),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_and_returns_follow_the_schema() {
    let s = schema();
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&dir.path().join("state"), &[]);
    let api = sim.token_client();
    let anon = Api::new(&sim.base(), sim_util::Auth::None);

    // Parameter verification, endpoint by endpoint (each request carries an invalid field,
    // so nothing is executed).
    for ep in endpoints(&s) {
        let method = ep["method"].as_str().unwrap();
        let path = ep["path"].as_str().unwrap();
        let url = concrete(path);
        let vars = path_vars(path);
        let props = ep["parameters"]["properties"].as_object().cloned().unwrap_or_default();
        let what = format!("{method} {path}");
        let api = if path == "/access/ticket" { &anon } else { &api };
        let r = api.call(method, &url, &[("zz-unknown", "1")]).await;
        assert_eq!(r.status, 400, "{what}: unknown parameter accepted: {:?}", r.body);
        let errs = r.body["errors"].as_object().unwrap();
        assert!(errs["zz-unknown"].as_str().unwrap().contains("not defined in schema"), "{what}");
        let want_missing: BTreeSet<String> = ep["required_parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .filter(|p| !vars.contains(p))
            .collect();
        let got_missing: BTreeSet<String> = errs
            .iter()
            .filter(|(_, v)| v.as_str().unwrap().contains("not optional"))
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(got_missing, want_missing, "{what}: required parameters");
        for (name, prop) in &props {
            if vars.contains(name) || name.ends_with("[n]") {
                continue;
            }
            let Some((bad, word)) = violation(prop) else { continue };
            let r = api.call(method, &url, &[(name.as_str(), bad.as_str()), ("zz-unknown", "1")]).await;
            assert_eq!(r.status, 400, "{what}: {name}={bad} accepted");
            let e = r.body["errors"][name.as_str()]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: no error for {name}={bad}: {:?}", r.body));
            assert!(e.contains(word), "{what}: {name}={bad}: {e}");
        }
    }

    // Build some state, then check every GET's reply against its `returns` schema.
    let tpl = alpine_template(&api, "pve1").await;
    api.run_ok("POST", "/nodes/pve1/aplinfo", &[("storage", "local"), ("template", &tpl)])
        .await;
    let ost = format!("local:vztmpl/{tpl}");
    let st = api
        .run_ok(
            "POST",
            "/nodes/pve1/lxc",
            &[
                ("vmid", "101"),
                ("ostemplate", &ost),
                ("rootfs", "local-lvm:4"),
                ("net0", "name=eth0,bridge=vmbr0,ip=dhcp"),
                ("start", "1"),
            ],
        )
        .await;
    let upid = st["upid"].as_str().unwrap().to_string();
    api.run_ok(
        "POST",
        "/nodes/pve1/vzdump",
        &[("vmid", "101"), ("storage", "local"), ("compress", "zstd")],
    )
    .await;
    api.call("POST", "/nodes/pve1/network", &[("iface", "vmbr7"), ("type", "bridge")])
        .await;
    let enc_upid = percent_encoding::utf8_percent_encode(&upid, percent_encoding::NON_ALPHANUMERIC).to_string();
    let mut problems = Vec::new();
    for ep in endpoints(&s).iter().filter(|e| e["method"] == "GET") {
        let path = ep["path"].as_str().unwrap();
        let url = concrete(path).replace(&concrete("{upid}"), &enc_upid);
        let params: Vec<(&str, &str)> = match path {
            "/nodes/{node}/lxc/{vmid}/rrddata" => vec![("timeframe", "hour")],
            _ => vec![],
        };
        let r = api.call("GET", &url, &params).await;
        assert_eq!(r.status, 200, "GET {path}: {:?}", r.body);
        if path == "/cluster/nextid" {
            // Documented PVE quirk (NOTES §2): the schema says integer, the wire carries a string.
            assert!(r.body["data"].as_str().is_some_and(|s| s.parse::<u32>().is_ok()), "{:?}", r.body);
            continue;
        }
        check_returns(&format!("GET {path}"), &ep["returns"], &r.body["data"], &mut problems);
    }
    assert!(problems.is_empty(), "returns schema violations:\n{}", problems.join("\n"));

    // Sample shapes: our replies have every key the recorded PVE 9 replies have, same JSON types.
    let Some(samples) = Some(()).and(shared("samples/nodes_get.json")) else {
        common::skip("sample shapes", "shared samples not present");
        sim.stop();
        return;
    };
    let pairs: Vec<(&str, Value, Value)> = vec![
        (
            "nodes",
            samples["body"]["data"][0].clone(),
            api.call("GET", "/nodes", &[]).await.data()[0].clone(),
        ),
        (
            "version",
            shared("samples/version_get.json")
                .map(|v| v["examples"][2]["body"]["data"].clone())
                .unwrap_or(json!({})),
            api.call("GET", "/version", &[]).await.data().clone(),
        ),
        (
            "lxc list",
            shared("samples/lxc_list_get.json").unwrap()["pve7"]["body"]["data"][0].clone(),
            api.call("GET", "/nodes/pve1/lxc", &[]).await.data()[0].clone(),
        ),
        (
            "status/current",
            shared("samples/lxc_status_current_get.json").unwrap()["running_pve6_2"]["body"]["data"].clone(),
            api.call("GET", "/nodes/pve1/lxc/101/status/current", &[]).await.data().clone(),
        ),
        (
            "task status",
            shared("samples/task_status.json").unwrap()["stopped_ok_real"]["body"]["data"].clone(),
            api.call("GET", &format!("/nodes/pve1/tasks/{enc_upid}/status"), &[])
                .await
                .data()
                .clone(),
        ),
        (
            "backup content",
            shared("samples/storage_content_backup.json").unwrap()["lxc_backups_real"]["items"][0].clone(),
            api.call("GET", "/nodes/pve1/storage/local/content", &[("content", "backup")])
                .await
                .data()[0]
                .clone(),
        ),
        (
            "template content",
            shared("samples/storage_content_backup.json").unwrap()["pve9_mixed"]["body"]["data"][2].clone(),
            api.call("GET", "/nodes/pve1/storage/local/content", &[("content", "vztmpl")])
                .await
                .data()[0]
                .clone(),
        ),
        (
            "ticket",
            shared("samples/access_ticket_post.json").unwrap()["body"]["data"].clone(),
            {
                let anon = Api::new(&sim.base(), sim_util::Auth::None);
                anon.call("POST", "/access/ticket", &[("username", "root@pam"), ("password", &sim.password)])
                    .await
                    .data()
                    .clone()
            },
        ),
    ];
    // Legacy PVE < 8.2 string numbers, per-sample fields that only some replies carry.
    let skip_keys = [
        "vmid",
        "cpus",
        "pid",
        "notes",
        "ha",
        "template",
        "tags",
        "lock",
        "diskread",
        "diskwrite",
        "maxswap",
        "swap",
    ];
    for (what, sample, ours) in pairs {
        for (k, sv) in sample.as_object().unwrap() {
            if (what == "lxc list" || what == "status/current") && skip_keys.contains(&k.as_str()) {
                continue;
            }
            if what == "backup content" && k == "notes" {
                continue;
            }
            let ov = ours.get(k).unwrap_or_else(|| panic!("{what}: missing key '{k}' (ours: {ours})"));
            let same_type = (sv.is_number() && ov.is_number())
                || (sv.is_string() && ov.is_string())
                || (sv.is_object() && ov.is_object())
                || (sv.is_array() && ov.is_array());
            assert!(same_type, "{what}: key '{k}' sample {sv} vs ours {ov}");
        }
    }
    // Exact pieces: aplinfo equals the recorded index; nextid is a JSON string; task log shape.
    if let Some(apl) = shared("samples/aplinfo_get.json") {
        assert_eq!(api.call("GET", "/nodes/pve1/aplinfo", &[]).await.data(), &apl["data"]);
    }
    assert!(api.call("GET", "/cluster/nextid", &[]).await.data().is_string());
    let log = api
        .call(
            "GET",
            &format!("/nodes/pve1/tasks/{enc_upid}/log"),
            &[("start", "0"), ("limit", "2")],
        )
        .await;
    assert_eq!(log.data()[0]["n"], 1);
    assert_eq!(log.data().as_array().unwrap().len(), 2);
    assert!(log.body["total"].as_u64().unwrap() > 2);
    // UPIDs match PVE's regex (upid_examples.json format).
    let re_ok = proximity::sim::tasks::parse_upid(&upid).is_some();
    assert!(re_ok && upid.ends_with(':'), "{upid}");
    sim.stop();
}
