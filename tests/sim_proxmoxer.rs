//! A client no one here wrote drives the simulator: `proxmoxer` (PyPI, installed into a venv
//! under `target/`) logs in with a ticket, and with the API token, lists nodes, downloads a
//! template, creates a CT, waits for the task, starts it, reads status, changes config, stops
//! and deletes it.

mod common;
mod sim_util;

use std::path::PathBuf;
use std::process::Command;

fn venv_python() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py-proxmoxer");
    let py = venv.join("bin/python");
    let ok = |py: &PathBuf| {
        Command::new(py)
            .args(["-c", "import proxmoxer, requests"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok(&py) {
        return Some(py);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    let installed = made
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "proxmoxer", "requests"])
            .status()
            .is_ok_and(|s| s.success());
    (installed && ok(&py)).then_some(py)
}

#[test]
fn proxmoxer_ticket_and_token_flows() {
    let Some(py) = venv_python() else {
        common::skip(
            "proxmoxer_ticket_and_token_flows",
            "python3 venv with proxmoxer could not be prepared (no PyPI access?)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sim = sim_util::start_sim(&dir.path().join("state"), &[]);
    let (host, port) = sim.api.rsplit_once(':').unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sim_py/proxmoxer_flow.py");
    for (mode, vmid) in [("ticket", "120"), ("token", "121")] {
        let out = Command::new(&py)
            .arg(&script)
            .arg(mode)
            .env("SIM_HOST", host)
            .env("SIM_PORT", port)
            .env("SIM_PASSWORD", &sim.password)
            .env("SIM_TOKEN", &sim.token)
            .env("SIM_VMID", vmid)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "proxmoxer {mode} flow failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(&format!("OK {mode}")), "{stdout}");
        assert!(stdout.contains("status running"), "{stdout}");
        assert!(
            stdout.contains(&format!("Configuration file 'nodes/pve1/lxc/{vmid}.conf' does not exist")),
            "{stdout}"
        );
    }
    sim.stop();
}
