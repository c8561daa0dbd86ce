//! The real binary: help, config check, clean SIGTERM shutdown, port-in-use errors, db export.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn help_lists_every_subcommand() {
    let out = Command::new(bin()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "demo", "pve-sim", "install", "user", "config", "catalog", "db"] {
        assert!(text.contains(cmd), "--help lacks {cmd}:\n{text}");
    }
}

#[test]
fn config_check_accepts_reference_and_reports_key_paths() {
    let reference = concat!(env!("CARGO_MANIFEST_DIR"), "/rootfs/etc/proximity/proximity.toml");
    let ok = Command::new(bin()).args(["config", "check", reference]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[network]\nlan_address = \"10.20.0.1/33\"\ndhcp_range = [\"10.20.0.10\", \"x\"]\n",
    )
    .unwrap();
    let out = Command::new(bin()).args(["config", "check"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{}:network.lan_address:", bad.display())), "{text}");
    assert!(text.contains("network.dhcp_range[1]"), "{text}");
}

#[test]
fn sigterm_stops_the_daemon_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_api_only_config(dir.path(), port);
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--config"]).arg(&cfg);
    let mut p = Proc::spawn(cmd);
    p.wait_ready();
    let body = http_get(port, "/api/v1/system/health");
    assert!(body.contains("\"status\""), "{body}");
    let start = Instant::now();
    p.signal("TERM");
    let st = p
        .wait_exit(Duration::from_secs(2))
        .expect("daemon did not stop within 2 s of SIGTERM");
    assert!(st.success(), "exit status {st}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn port_in_use_fails_with_service_and_port() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let cfg = write_api_only_config(dir.path(), port);
    let out = Command::new(bin()).args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("api:") && err.contains(&format!("port {port}")) && err.contains("already in use"),
        "{err}"
    );
}

#[test]
fn db_export_import_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d1");
    let out = dir.path().join("dump.json");
    let st = Command::new(bin())
        .args(["db", "export"])
        .arg(&out)
        .arg("--data-dir")
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("\"format\": \"proximity-db\""), "{text}");
    let st = Command::new(bin())
        .args(["db", "import"])
        .arg(&out)
        .arg("--data-dir")
        .arg(dir.path().join("d2"))
        .status()
        .unwrap();
    assert!(st.success());
}

/// Minimal HTTP/1.1 GET over loopback (no client dependency).
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf
}
