//! Shared helpers for integration tests: free ports, temp dirs, starting the real binary
//! and waiting for its `ready` line, and killing only what we started (by PID).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_proximity"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A free port for both UDP and TCP.
pub fn free_udp_tcp_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// True when running as root (namespace tests need it).
pub fn is_root() -> bool {
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Print a loud skip notice (used when a test needs root or a missing tool).
pub fn skip(test: &str, why: &str) {
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
}

/// A running child process, killed (by its PID) on drop; its output lines are collected.
pub struct Proc {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Proc {
    /// Start `cmd` with piped stdout+stderr.
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let (tx, rx) = mpsc::channel();
        for r in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    if std::env::var_os("TEST_ECHO").is_some() {
                        eprintln!("[child] {line}");
                    }
                    let _ = tx.send(line);
                }
            });
        }
        Proc {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Wait until a line satisfying `pred` appears; panics with the output so far on timeout.
    pub fn wait_for(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Ok(Some(st)) = self.child.try_wait() {
                        panic!("process exited ({st}) before the expected line; output:\n{}", self.seen.join("\n"));
                    }
                }
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?}; output:\n{}", self.seen.join("\n"));
            }
        }
    }

    /// Wait for the `ready` line.
    pub fn wait_ready(&mut self) -> String {
        self.wait_for(|l| l.starts_with("ready"), Duration::from_secs(60))
    }

    /// Send a signal to this process only.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Wait for exit up to `timeout`; returns the status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                while let Ok(l) = self.lines.try_recv() {
                    self.seen.push(l);
                }
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Drain output received so far.
    pub fn drain(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Write a minimal `serve` config for loopback tests with every network service off
/// except the API (plain HTTP on loopback); returns its path.
pub fn write_api_only_config(dir: &Path, api_port: u16) -> PathBuf {
    let text = format!(
        r#"[general]
data_dir = "{data}"
[network]
manage_links = false
firewall = false
upstream_dns = []
[dhcp]
enabled = false
[dns]
enabled = false
[proxy]
enabled = false
[api]
tls = false
listen = ["127.0.0.1:{api_port}"]
"#,
        data = dir.join("data").display()
    );
    let p = dir.join("proximity.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Authorise in the simulator the SSH key that a daemon with data directory `data` will
/// use (created exactly as the daemon creates it, so the daemon finds it on start).
pub fn authorize_appliance_key(sim: &proximity::sim::SimHandle, data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let store = proximity::store::Store::open(&data.join("proximity.redb")).unwrap();
    let secrets = proximity::secrets::SecretBox::open_or_create(&data.join("secret.key")).unwrap();
    let key = proximity::pve::ssh::SshKey::load_or_create(&store, &secrets).unwrap();
    sim.authorize_ssh_key(&key.public_openssh()).unwrap();
}

/// The `[[pve_hosts]]` table (host name `sim`) that points a daemon at the simulator.
pub fn sim_host_toml(sim: &proximity::sim::SimHandle) -> String {
    format!(
        "[[pve_hosts]]\nname = \"sim\"\nurl = \"https://{}\"\ntoken_id = \"{}\"\ntoken_secret = \"{}\"\nfingerprint = \"{}\"\nssh = \"{}\"\nssh_user = \"root\"\n",
        sim.api_addr, sim.token_id, sim.token_secret, sim.fingerprint, sim.ssh_addr
    )
}

/// [`write_api_only_config`] plus `api_extra` lines in `[api]` and the simulator as PVE
/// host, with the appliance SSH key authorised there; returns the config path.
pub fn write_sim_config(dir: &Path, api_port: u16, sim: &proximity::sim::SimHandle, api_extra: &str) -> PathBuf {
    authorize_appliance_key(sim, &dir.join("data"));
    let cfg = write_api_only_config(dir, api_port);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.trim_end().ends_with(']'), "[api] is the last table: {text}");
    text.push_str(api_extra);
    text.push_str(&sim_host_toml(sim));
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Create the first admin through `POST {api_base}/auth/setup` (`api_base` ends in
/// `/api/v1`); returns its access token.
pub async fn setup_admin(http: &reqwest::Client, api_base: &str, username: &str, password: &str) -> String {
    let r = http
        .post(format!("{api_base}/auth/setup"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "first-run setup");
    let v: serde_json::Value = r.json().await.unwrap();
    v["access_token"].as_str().expect("access_token").to_string()
}
