//! Golden decoding tests: every file in `shared/pve-api/samples/` decodes into our types (no
//! network). A new sample file without a checker here fails the test.

use serde_json::Value;

use super::client::{decode_data, error_from_reply};
use super::error::Error;
use super::types::*;
use super::upid::Upid;

fn samples_dir() -> std::path::PathBuf {
    let rel = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pve-api/samples");
    if rel.is_dir() { rel } else { "/work/shared/pve-api/samples".into() }
}

fn load(name: &str) -> Value {
    let p = samples_dir().join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn data<T: serde::de::DeserializeOwned>(body: &Value) -> T {
    decode_data("golden", body.clone()).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// Split a status line `"595 Errors during ..."` into (status, reason).
fn status_line(s: &str) -> (u16, &str) {
    let (code, reason) = s.split_once(' ').unwrap();
    (code.parse().unwrap(), reason)
}

fn access_ticket_post(v: &Value) {
    let t: TicketInfo = data(&v["body"]);
    assert_eq!(t.username, "root@pam");
    assert!(t.ticket.starts_with("PVE:root@pam:"));
    assert!(t.csrf_token.contains(':'));
    assert_eq!(t.clustername.as_deref(), Some("pve-cluster"));
    // Debug never shows the ticket or CSRF token.
    let dbg = format!("{t:?}");
    assert!(!dbg.contains(&t.ticket) && !dbg.contains(&t.csrf_token), "{dbg}");
}

fn aplinfo_get(v: &Value) {
    let list: Vec<AplInfo> = data(v);
    assert!(list.len() > 10);
    let alpine: Vec<&AplInfo> = list.iter().filter(|a| a.os == "alpine").collect();
    assert!(!alpine.is_empty());
    assert!(alpine.iter().all(|a| a.template.starts_with("alpine-") && a.kind == "lxc"));
    assert!(list.iter().any(|a| a.section == "turnkeylinux") || list.iter().all(|a| !a.section.is_empty()));
}

fn cluster_nextid(v: &Value) {
    let id: Value = data(&v["ok"]["body"]);
    assert_eq!(super::perl::value_u64(&id), Some(100));
    let e = error_from_reply(400, v["taken"]["http_reason"].as_str().unwrap(), &v["taken"]["body"]);
    match e {
        Error::BadRequest { errors, message } => {
            assert_eq!(message, "Parameter verification failed.");
            assert_eq!(errors["vmid"], "VM 200 already exists");
        }
        other => panic!("{other:?}"),
    }
}

fn cluster_resources_get(v: &Value) {
    let list: Vec<ClusterResource> = data(&v["body"]);
    assert!(list.iter().any(|r| r.kind == "node"));
    assert!(list.iter().any(|r| r.kind == "storage" && r.storage.is_some()));
    let q = list.iter().find(|r| r.id == "qemu/101").unwrap();
    assert!(q.template);
    let lxc: Vec<ClusterResource> = serde_json::from_value(v["lxc_entries_example"].clone()).unwrap();
    assert_eq!(lxc[0].vmid, Some(733));
    assert_eq!(lxc[0].status.as_deref(), Some("running"));
    assert_eq!(lxc[1].maxmem, Some(8589934592));
}

fn errors(v: &Value) {
    let e = error_from_reply(400, "Parameter verification failed.", &v["param_verification_400_real"]["body"]);
    assert!(
        matches!(&e, Error::BadRequest { errors, .. } if errors["target"].starts_with("invalid format")),
        "{e:?}"
    );
    let e = error_from_reply(400, "Parameter verification failed.", &v["nextid_taken_400"]["body"]);
    assert!(matches!(&e, Error::BadRequest { errors, .. } if errors.contains_key("vmid")));
    // 500 with the message only in the status line (older PVE) and in the body (8.3+).
    let g = &v["generic_500_constructed"];
    let (code, reason) = status_line(g["status_line"].as_str().unwrap());
    for body in [&g["body_older"], &g["body_pve8_3plus"]] {
        match error_from_reply(code, reason, body) {
            Error::Conflict { message } => assert_eq!(message, "CT 105 already running"),
            other => panic!("{other:?}"),
        }
    }
    for (key, line) in v["auth_401"].as_object().unwrap() {
        if key.starts_with('_') {
            continue;
        }
        let (code, reason) = status_line(line.as_str().unwrap());
        assert!(
            matches!(error_from_reply(code, reason, &Value::Null), Error::Unauthorized { .. }),
            "{line}"
        );
    }
    for line in v["perm_403"]["examples"].as_array().unwrap() {
        let (code, reason) = status_line(line.as_str().unwrap());
        match error_from_reply(code, reason, &Value::Null) {
            Error::Forbidden { message } => assert!(message.starts_with("Permission check failed")),
            other => panic!("{other:?}"),
        }
    }
    let (code, reason) = status_line(v["not_implemented_501"]["example"].as_str().unwrap());
    assert!(matches!(
        error_from_reply(code, reason, &Value::Null),
        Error::Server { status: 501, .. }
    ));
    for line in v["proxy_59x_real"]["examples"].as_array().unwrap() {
        let (code, reason) = status_line(line.as_str().unwrap());
        let e = error_from_reply(code, reason, &Value::Null);
        assert!(matches!(e, Error::NodeOffline { .. }), "{line}");
        assert!(e.is_retryable());
    }
    let ok: Value = data(&v["vzdump_wrong_node"]["body"]);
    assert_eq!(ok, "OK");
}

fn lxc_config_get(v: &Value) {
    let c: LxcConfig = data(&v["pve7"]["body"]);
    assert_eq!(c.hostname.as_deref(), Some("test-container"));
    assert_eq!(c.memory, Some(4096));
    assert_eq!(c.onboot, Some(true));
    assert_eq!(c.feature_map().get("nesting").map(String::as_str), Some("1"));
    let nets = c.nets();
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0].1.bridge.as_deref(), Some("vmbr0"));
    assert_eq!(nets[0].1.ip.as_deref(), Some("dhcp"));
    assert_eq!(nets[0].1.firewall, Some(true));
    assert!(!c.raw.contains_key("lxc"), "the raw lxc list is not a scalar");
    let c: LxcConfig = data(&v["pve6_2_sanitized"]["body"]);
    assert_eq!(c.hostname.as_deref(), Some("test-lxc"));
    assert_eq!(c.onboot, Some(false));
    assert_eq!(c.raw.get("cpulimit").map(String::as_str), Some("0"));
    assert_eq!(c.nets()[0].1.ip.as_deref(), Some("10.1.1.3/24"));
}

fn lxc_list_get(v: &Value) {
    for key in ["pve7", "pve6_2_sanitized"] {
        let list: Vec<LxcSummary> = data(&v[key]["body"]);
        assert!(!list.is_empty(), "{key}");
        assert!(list.iter().all(|c| c.vmid >= 100), "{key}");
    }
    let list: Vec<LxcSummary> = data(&v["pve7"]["body"]);
    assert_eq!(list[0].vmid, 106);
    assert_eq!(list[0].status, "running");
    assert!(list.iter().any(|c| c.template));
}

fn lxc_status_current_get(v: &Value) {
    let s: LxcStatus = data(&v["running_pve6_2"]["body"]);
    assert!(s.is_running());
    assert_eq!(s.cpus, Some(1.0));
    assert_eq!(s.ha["managed"], 1);
    let s: LxcStatus = data(&v["stopped_template_pve7"]["body"]);
    assert!(!s.is_running() && s.template);
    assert_eq!(s.vmid, Some(101));
}

fn nodes_get(v: &Value) {
    let nodes: Vec<NodeInfo> = data(&v["body"]);
    assert_eq!(nodes.len(), 4);
    let n1 = &nodes[0];
    assert_eq!(n1.node, "node1");
    assert!(n1.is_online());
    assert_eq!(n1.free_mem(), 33568288768 - 11508809728);
    let fp = n1.ssl_fingerprint.as_deref().unwrap();
    assert_eq!(
        super::client::format_fingerprint(&super::client::parse_fingerprint(fp).unwrap()),
        fp
    );
}

fn storage_content_backup(v: &Value) {
    let list: Vec<StorageContent> = data(&v["pve9_mixed"]["body"]);
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].vmid, Some(10000));
    assert_eq!(list[0].subtype.as_deref(), Some("lxc"));
    assert_eq!(list[0].format, "tar.zst");
    assert_eq!(list[2].content, "vztmpl");
    assert_eq!(list[2].vmid, None);
    let items: Vec<StorageContent> = serde_json::from_value(v["lxc_backups_real"]["items"].clone()).unwrap();
    assert!(items.iter().all(|i| i.volid.contains(":backup/")));
}

fn task_log(v: &Value) {
    let lines: Vec<TaskLogLine> = data(&v["vzdump_lxc_ok_abridged"]["body"]);
    assert_eq!(lines.first().unwrap().n, 1);
    assert_eq!(lines.last().unwrap().t, "TASK OK");
    assert!(
        v["vzdump_lxc_cli_output_real"]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("creating vzdump archive"))
    );
}

fn task_status(v: &Value) {
    let s: TaskStatus = data(&v["stopped_ok_real"]["body"]);
    assert!(s.is_success());
    assert_eq!(s.kind, "hastop");
    let s: TaskStatus = data(&v["stopped_warnings_real"]["body"]);
    assert!(s.is_success(), "WARNINGS: N is success");
    Upid::parse(&s.upid).unwrap();
    let s: TaskStatus = data(&v["stopped_ok_vzdump"]["body"]);
    assert!(s.is_success());
    let s: TaskStatus = data(&v["stopped_error_from_task_list"]["equivalent_status_response_constructed"]);
    assert!(!s.is_success() && !s.is_running());
    assert_eq!(
        super::tasks::outcome(&s),
        Some(Err("command 'ifreload -a' failed: exit code 1".into()))
    );
    let s: TaskStatus = data(&v["running_constructed"]["body"]);
    assert!(s.is_running() && !s.is_success());
    let s: TaskStatus = data(&v["api_token_task_constructed"]["body"]);
    assert!(Upid::parse(&s.upid).unwrap().user.contains('!'));
    let e = error_from_reply(400, v["unknown_upid"]["http_reason"].as_str().unwrap(), &v["unknown_upid"]["body"]);
    assert!(
        matches!(&e, Error::BadRequest { errors, .. } if errors["upid"] == "no such task"),
        "{e:?}"
    );
}

fn upid_examples(v: &Value) {
    for ex in v["examples"].as_array().unwrap() {
        let s = ex["upid"].as_str().unwrap();
        assert_eq!(Upid::parse(s).unwrap().to_string(), s);
    }
    for bad in v["must_fail"].as_array().unwrap() {
        assert!(Upid::parse(bad.as_str().unwrap()).is_err());
    }
}

fn version_get(v: &Value) {
    for ex in v["examples"].as_array().unwrap() {
        let ver: Version = data(&ex["body"]);
        assert!(ver.version.starts_with(&ver.release), "{ver:?}");
    }
}

#[test]
fn every_sample_file_decodes() {
    let checkers: &[(&str, fn(&Value))] = &[
        ("access_ticket_post.json", access_ticket_post),
        ("aplinfo_get.json", aplinfo_get),
        ("cluster_nextid.json", cluster_nextid),
        ("cluster_resources_get.json", cluster_resources_get),
        ("errors.json", errors),
        ("lxc_config_get.json", lxc_config_get),
        ("lxc_list_get.json", lxc_list_get),
        ("lxc_status_current_get.json", lxc_status_current_get),
        ("nodes_get.json", nodes_get),
        ("storage_content_backup.json", storage_content_backup),
        ("task_log.json", task_log),
        ("task_status.json", task_status),
        ("upid_examples.json", upid_examples),
        ("version_get.json", version_get),
    ];
    let mut files: Vec<String> = std::fs::read_dir(samples_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in &files {
        let (_, check) = checkers
            .iter()
            .find(|(n, _)| n == f)
            .unwrap_or_else(|| panic!("sample {f} has no golden checker; add one"));
        check(&load(f));
    }
}
