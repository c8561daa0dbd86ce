//! `proximity install` against `proximity pve-sim` (with its SSH server): the dry run changes
//! nothing; the install creates exactly the bridge, the container (config, files, service) and
//! the API token; a second run changes nothing; `--uninstall` returns the simulator to the
//! state it had before (network config, containers, tokens, templates, authorized_keys).

mod common;
mod sim_util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::{Value, json};

use common::bin;
use sim_util::{SimProc, start_sim};

fn curl_json(sim: &SimProc, path: &str, auth: &str) -> Value {
    let o = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-H", auth])
        .arg(format!("https://{}{path}", sim.api))
        .output()
        .expect("curl runs");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// What the installer may touch, as the simulator reports it.
fn snapshot(sim: &SimProc, state_dir: &Path) -> Value {
    let st = curl_json(sim, "/sim/state", &format!("Authorization: Bearer {}", sim.password));
    let st = &st["data"];
    let templates = curl_json(
        sim,
        "/api2/json/nodes/pve1/storage/local/content?content=vztmpl",
        &format!("Authorization: PVEAPIToken=root@pam!proximity={}", sim.token),
    );
    let mut templates: Vec<String> = templates["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["volid"].as_str().unwrap().to_string())
        .collect();
    templates.sort();
    json!({
        "net": st["net"],
        "cts": st["cts"],
        "tokens": st.get("tokens").cloned().unwrap_or(json!({})),
        "templates": templates,
        "authorized_keys": std::fs::read_to_string(state_dir.join("authorized_keys")).unwrap_or_default(),
    })
}

struct Installer {
    args: Vec<String>,
}

impl Installer {
    fn new(sim: &SimProc, state_dir: &Path, work: &Path, binary: &Path) -> Installer {
        let args = [
            "install",
            "--api-url",
            &format!("https://{}", sim.api),
            "--fingerprint",
            &sim.fingerprint,
            "--password",
            &sim.password,
            "--ssh",
            &sim.ssh,
            "--authorized-keys",
            &state_dir.join("authorized_keys").display().to_string(),
            "--node-address",
            "127.0.0.1",
            "--state-file",
            &work.join("install/install.json").display().to_string(),
            "--binary",
            &binary.display().to_string(),
            "--no-wait-health",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Installer { args }
    }

    fn run(&self, extra: &[&str]) -> Output {
        let t = Instant::now();
        let o = Command::new(bin())
            .args(&self.args)
            .args(extra)
            .env_remove("PROXIMITY_PVE_PASSWORD")
            .output()
            .expect("proximity install runs");
        eprintln!(
            "--- proximity install {extra:?} ({:.1} s, {})\n{}{}",
            t.elapsed().as_secs_f64(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn install_is_exact_idempotent_and_reversible() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("sim");
    std::fs::create_dir_all(&state_dir).unwrap();
    let sim = start_sim(&state_dir, &[]);
    // A small stand-in for the appliance binary: what is pushed is checked byte for byte.
    let binary: PathBuf = tmp.path().join("proximity-standin");
    std::fs::write(&binary, b"#!/bin/sh\necho proximity stand-in\n").unwrap();
    let inst = Installer::new(&sim, &state_dir, tmp.path(), &binary);
    let before = snapshot(&sim, &state_dir);
    assert!(before["tokens"].as_object().unwrap().is_empty(), "{before}");

    // Dry run: prints the plan, changes nothing on the node.
    let o = inst.run(&["--dry-run"]);
    assert!(o.status.success());
    let plan = stdout(&o);
    for step in [
        "create bridge proximity-lan",
        "apply the node's network configuration",
        "download template alpine-3.24-default_20260714_amd64.tar.xz to local",
        "create API token root@pam!proximity-appliance",
        "authorize the appliance SSH key",
        "create CT 9999 from local:vztmpl/alpine-3.24-default_20260714_amd64.tar.xz",
        "start CT 9999",
        "push binary, configuration, service and data into CT 9999",
    ] {
        assert!(plan.contains(step), "dry-run plan lacks `{step}`:\n{plan}");
    }
    assert_eq!(snapshot(&sim, &state_dir), before, "--dry-run changed the simulator");
    assert!(!tmp.path().join("install/install.json").exists());

    // Install.
    let o = inst.run(&[]);
    assert!(o.status.success(), "install failed");
    let out = stdout(&o);
    assert!(out.contains("UI:"), "{out}");
    assert!(out.contains("CA fingerprint:"), "{out}");
    let pw_line = out.lines().find(|l| l.starts_with("first login:")).expect("first-login line");
    assert!(pw_line.contains("password `"), "{pw_line}");
    let after = snapshot(&sim, &state_dir);

    // Exactly one new interface: the bridge, applied (nothing staged).
    let net = &after["net"]["pve1"];
    assert!(net["staged"].is_null(), "changes left staged: {net}");
    let old_ifaces = before["net"]["pve1"]["current"].as_array().unwrap();
    let new_ifaces = net["current"].as_array().unwrap();
    assert_eq!(new_ifaces.len(), old_ifaces.len() + 1);
    for i in old_ifaces {
        assert!(new_ifaces.contains(i), "interface changed: {i}");
    }
    let bridge = new_ifaces.iter().find(|i| i["iface"] == "proximity-lan").expect("bridge created");
    assert_eq!(bridge["type"], "bridge");
    assert!(
        bridge.get("cidr").is_none(),
        "the host gets no address on the app network: {bridge}"
    );
    // Exactly one new container with the expected configuration.
    let cts = after["cts"].as_object().unwrap();
    assert_eq!(cts.len(), before["cts"].as_object().unwrap().len() + 1);
    let ct = &cts["9999"];
    let cfg = &ct["config"];
    let cfg_s = |k: &str| cfg[k].as_str().map(str::to_string).unwrap_or_else(|| cfg[k].to_string());
    assert!(
        cfg_s("net0").contains("name=eth0") && cfg_s("net0").contains("bridge=vmbr0") && cfg_s("net0").contains("ip=dhcp"),
        "{cfg}"
    );
    assert!(
        cfg_s("net1").contains("name=eth1") && cfg_s("net1").contains("bridge=proximity-lan") && cfg_s("net1").contains("ip=10.20.0.1/24"),
        "{cfg}"
    );
    assert_eq!(cfg_s("onboot"), "1", "{cfg}");
    assert_eq!(cfg_s("unprivileged"), "1", "{cfg}");
    assert_eq!(cfg_s("features"), "nesting=1", "{cfg}");
    assert_eq!(cfg_s("ostype"), "alpine", "{cfg}");
    assert_eq!(ct["running"], true, "{ct}");
    assert!(
        ct["os"]["boot_services"].as_array().unwrap().iter().any(|s| s == "proximity"),
        "{ct}"
    );
    // Exactly one new token, privsep off.
    let tokens = after["tokens"].as_object().unwrap();
    assert_eq!(tokens.keys().collect::<Vec<_>>(), vec!["root@pam!proximity-appliance"]);
    let token = &tokens["root@pam!proximity-appliance"];
    assert_eq!(token["privsep"], false);
    // The template the installer downloaded.
    let new_templates: Vec<&Value> = after["templates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !before["templates"].as_array().unwrap().contains(t))
        .collect();
    assert_eq!(new_templates, vec!["local:vztmpl/alpine-3.24-default_20260714_amd64.tar.xz"]);
    // The appliance key, authorized for root.
    let keys = after["authorized_keys"].as_str().unwrap();
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(
        keys.starts_with("ssh-ed25519 ") && keys.trim_end().ends_with(" proximity-appliance"),
        "{keys}"
    );
    // Files inside the container.
    let root = state_dir.join("ct/9999/rootfs");
    assert_eq!(
        std::fs::read(root.join("usr/bin/proximity")).unwrap(),
        std::fs::read(&binary).unwrap()
    );
    let conf = std::fs::read_to_string(root.join("etc/proximity/proximity.toml")).unwrap();
    let wire: proximity::config::ConfigFile = toml::from_str(&conf).unwrap();
    let host = &wire.pve_hosts[0];
    assert_eq!(host.token_id, "root@pam!proximity-appliance");
    assert_eq!(host.token_secret, token["secret"].as_str().unwrap());
    assert_eq!(host.fingerprint, sim.fingerprint);
    assert_eq!(host.url, format!("https://127.0.0.1:{}", sim.api.rsplit(':').next().unwrap()));
    assert_eq!(host.ssh, format!("127.0.0.1:{}", sim.ssh.rsplit(':').next().unwrap()));
    assert_eq!(host.bridge, "proximity-lan");
    proximity::config::Config::from_toml_str(&conf).expect("the pushed config is valid");
    for f in [
        "etc/init.d/proximity",
        "etc/sysctl.d/90-proximity.conf",
        "var/lib/proximity/proximity.redb",
        "var/lib/proximity/secret.key",
    ] {
        assert!(root.join(f).is_file(), "{f} not pushed");
    }
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(root.join("etc/proximity/proximity.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the config holds the token secret");
    }
    // The record lists what was created.
    let record: Value = serde_json::from_slice(&std::fs::read(tmp.path().join("install/install.json")).unwrap()).unwrap();
    assert_eq!(record["vmid"], 9999);
    assert_eq!(record["bridge"], "proximity-lan");
    assert_eq!(record["token"], "root@pam!proximity-appliance");

    // Second run: nothing to do, nothing changes.
    let o = inst.run(&[]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));
    assert_eq!(snapshot(&sim, &state_dir), after, "the second run changed the simulator");
    let o = inst.run(&["--dry-run"]);
    assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));

    // Something else on the same VMID is never taken over.
    let other = tmp.path().join("other/install.json");
    let mut args = inst.args.clone();
    let i = args.iter().position(|a| a == "--state-file").unwrap();
    args[i + 1] = other.display().to_string();
    let o = Command::new(bin()).args(&args).arg("--dry-run").output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CT 9999 exists and was not created by `proximity install`"), "{err}");

    // Uninstall: back to the snapshot.
    let o = inst.run(&["--uninstall", "--dry-run"]);
    assert!(stdout(&o).contains("destroy CT 9999"), "{}", stdout(&o));
    assert_eq!(snapshot(&sim, &state_dir), after, "--uninstall --dry-run changed the simulator");
    let o = inst.run(&["--uninstall"]);
    assert!(o.status.success(), "uninstall failed");
    assert_eq!(snapshot(&sim, &state_dir), before, "--uninstall did not restore the simulator");
    assert!(!tmp.path().join("install/install.json").exists(), "record left behind");
    assert!(!tmp.path().join("install/seed").exists(), "seed left behind");
    // And once more: nothing left to remove.
    let o = inst.run(&["--uninstall"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("nothing to remove"), "{}", stdout(&o));
    sim.stop();
    eprintln!("install test: {:.1} s", t0.elapsed().as_secs_f64());
}
