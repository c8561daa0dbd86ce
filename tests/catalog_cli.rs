//! `proximity catalog validate` on the shipped catalog and on a broken copy, and a render of
//! every shipped entry (valid YAML, published ports = declared ports, every `${VAR}` defined).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use proximity::catalog::model::{FieldType, Proto};
use proximity::catalog::render::parse_env_file;
use proximity::catalog::validate::{published_ports, var_refs};
use proximity::catalog::{Catalog, OsSecrets, render};

const REQUIRED: &[&str] = &[
    "nginx",
    "whoami",
    "uptime-kuma",
    "vaultwarden",
    "gitea",
    "nextcloud",
    "jellyfin",
    "home-assistant",
    "grafana",
    "prometheus",
    "n8n",
    "code-server",
    "syncthing",
    "filebrowser",
    "homepage",
    "dozzle",
    "paperless-ngx",
    "wordpress",
    "ghost",
    "minio",
    "adminer",
    "postgres",
    "redis",
    "mealie",
    "freshrss",
];

fn validate(dir: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(common::bin());
    cmd.args(["catalog", "validate"]);
    if let Some(d) = dir {
        cmd.arg(d);
    }
    let out = cmd.output().expect("run proximity");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn shipped_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog")
}

#[test]
fn shipped_catalog_validates() {
    let (code, out, err) = validate(None);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("apps ok"), "{out}");
    let (code, out, err) = validate(Some(&shipped_dir()));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let n: usize = std::fs::read_dir(shipped_dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "yaml"))
        .count();
    assert!(n >= 25, "only {n} apps shipped");
    assert!(out.contains(&format!("{n} apps ok")), "{out}");
}

#[test]
fn broken_copy_fails_with_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(shipped_dir()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
    }
    let edit = |name: &str, from: &str, to: &str| {
        let p = tmp.path().join(name);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{name} lacks {from:?}");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    };
    edit("nginx.yaml", "image: nginx:1.27.3-alpine", "image: nginx:latest");
    edit("gitea.yaml", "\"2222:2222\"", "\"22:2222\"");
    edit(
        "whoami.yaml",
        "      restart: unless-stopped\n",
        "      restart: unless-stopped\n      network_mode: host\n",
    );
    edit(
        "grafana.yaml",
        "GF_SECURITY_ADMIN_PASSWORD: ${ADMIN_PASSWORD}",
        "GF_SECURITY_ADMIN_PASSWORD: admin",
    );
    edit("redis.yaml", "id: redis", "id: redis-server");
    edit("adminer.yaml", "  port: 8080\n", "  port: 8080\n  colour: blue\n");

    let (code, out, _) = validate(Some(tmp.path()));
    assert_ne!(code, 0, "{out}");
    let d = tmp.path().display();
    for want in [
        format!("{d}/nginx.yaml:compose.services.nginx.image: \"nginx:latest\": tag \"latest\" floats"),
        format!("{d}/gitea.yaml:compose.services.gitea.ports: published port 22 is below 1024"),
        format!("{d}/whoami.yaml:compose.services.whoami.network_mode: `network_mode: host` is not allowed"),
        format!("{d}/grafana.yaml:compose.services.grafana.environment.GF_SECURITY_ADMIN_PASSWORD: literal value"),
        format!("{d}/redis.yaml:id: \"redis-server\" must equal the file name"),
        format!("{d}/adminer.yaml:web.colour: unknown field `colour`"),
    ] {
        assert!(out.lines().any(|l| l.starts_with(&want)), "missing {want:?} in:\n{out}");
    }
    // Every line has the file:field: message shape and names a file in the directory.
    for l in out.lines() {
        let rest = l.strip_prefix(&format!("{d}/")).unwrap_or_else(|| panic!("line without file: {l}"));
        let (file, rest) = rest.split_once(':').unwrap();
        assert!(file.ends_with(".yaml"), "{l}");
        let (field, msg) = rest.split_once(": ").unwrap_or_else(|| panic!("no field in {l}"));
        assert!(!field.is_empty() && !msg.is_empty(), "{l}");
    }
    // Untouched files produce no lines.
    assert!(!out.contains("jellyfin.yaml"), "{out}");

    // A missing directory is an error too.
    let (code, out, _) = validate(Some(&tmp.path().join("nope")));
    assert_ne!(code, 0, "{out}");
}

fn sample_value(kind: FieldType, options: &[String]) -> String {
    match kind {
        FieldType::Email => "admin@example.com".into(),
        FieldType::Password => "s3cret-pass-word".into(),
        FieldType::Number => "42".into(),
        FieldType::Select => options.last().cloned().unwrap_or_default(),
        FieldType::Text => "admin".into(),
    }
}

#[test]
fn every_shipped_entry_renders_with_declared_ports() {
    let cat = Catalog::builtin().expect("built-in catalog loads");
    let ids: BTreeSet<String> = cat.list().iter().map(|e| e.id.clone()).collect();
    for r in REQUIRED {
        assert!(ids.contains(*r), "required app {r} missing");
    }
    for entry in cat.list() {
        // Fill every required field without default (as the deploy wizard would).
        let mut values = BTreeMap::new();
        for (env, field) in entry.form_fields() {
            if env.required && env.default.is_none() {
                values.insert(env.name.clone(), sample_value(field.kind, &field.options));
            }
        }
        let host = format!("t-{}", entry.id);
        let r = render(&entry, &host, &values, &mut OsSecrets).unwrap_or_else(|e| panic!("{}: {e}", entry.id));

        // Debug aid: SHOW_RENDER=<id> prints that entry's rendered compose file.
        if std::env::var("SHOW_RENDER").as_deref() == Ok(entry.id.as_str()) {
            println!("{}", r.compose_yaml);
        }
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&r.compose_yaml).unwrap_or_else(|e| panic!("{}: rendered compose is not YAML: {e}", entry.id));
        let map = doc.as_mapping().expect("mapping");
        assert_eq!(doc["name"].as_str(), Some(host.as_str()), "{}", entry.id);
        let published: BTreeSet<(u16, Proto)> = published_ports(map)
            .unwrap_or_else(|e| panic!("{}: {e:?}", entry.id))
            .iter()
            .map(|p| (p.host, p.proto))
            .collect();
        let declared: BTreeSet<(u16, Proto)> = entry.declared_ports().into_iter().collect();
        assert_eq!(published, declared, "{}: published ports differ from declared", entry.id);
        assert!(published.iter().all(|(p, _)| *p >= 1024), "{}: {published:?}", entry.id);
        if let Some(w) = &entry.web {
            assert!(published.contains(&(w.port, Proto::Tcp)), "{}", entry.id);
        }

        // Every service has a pinned image and no host networking after rendering.
        for (name, svc) in doc["services"].as_mapping().unwrap() {
            let img = svc["image"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: {name:?} without image", entry.id));
            let last = img.rsplit('/').next().unwrap();
            let tag = last
                .split_once(':')
                .map(|(_, t)| t)
                .unwrap_or_else(|| panic!("{}: {img} untagged", entry.id));
            assert!(
                tag != "latest" && tag.bytes().any(|b| b.is_ascii_digit()),
                "{}: {img} is not a version tag",
                entry.id
            );
            assert_ne!(svc["network_mode"].as_str(), Some("host"), "{}", entry.id);
        }

        // The .env defines every variable compose references, secrets are fresh and non-empty.
        let env = parse_env_file(&r.env_file);
        for var in var_refs(&r.compose_yaml) {
            assert!(env.contains_key(&var), "{}: ${{{var}}} not in .env", entry.id);
        }
        for e in &entry.env {
            if e.secret.is_some() && !values.contains_key(&e.name) {
                let v = &r.generated_secrets[&e.name];
                assert_eq!(env[&e.name], *v, "{}", entry.id);
                assert!(v.len() >= 12, "{}", entry.id);
            }
        }
        assert_eq!(env["PROX_URL"], format!("https://{host}.prox.local"));
        // No literal password survives into compose: password-ish keys hold references only.
        assert!(!r.compose_yaml.contains("changeme"), "{}", entry.id);
    }
}
