//! The SSH server (russh) of the whole simulated cluster: `root` logs in with a key from
//! `<state_dir>/authorized_keys` (re-read on every attempt) or one added through
//! `SimHandle::authorize_ssh_key`, or with the root password. Exec requests run through
//! [`super::shell`]; `pct push ... /dev/stdin` waits for the channel's EOF. With a pty,
//! `pct enter <vmid>` (or a shell request) opens an interactive shell in the CT.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId};

use super::{Sim, shell};

/// Load the persistent ed25519 host key, creating it on first use.
pub fn load_or_create_host_key(dir: &Path) -> anyhow::Result<PrivateKey> {
    let path = dir.join("ssh_host_ed25519_key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return PrivateKey::from_openssh(text.trim()).with_context(|| format!("reading {}", path.display()));
    }
    let seed: [u8; 32] = rand::random();
    let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed));
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .context("encoding the SSH host key")?;
    super::tls::write_private(&path, text.as_bytes())?;
    Ok(key)
}

/// Keys from an authorized_keys file.
pub fn read_authorized_keys(path: &Path) -> Vec<PublicKey> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| PublicKey::from_openssh(l).ok())
        .collect()
}

/// Accept SSH connections until shutdown.
pub async fn serve(sim: Arc<Sim>, listener: tokio::net::TcpListener, key: PrivateKey) {
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        inactivity_timeout: Some(Duration::from_secs(3600)),
        server_id: russh::SshId::Standard("SSH-2.0-OpenSSH_10.0p2 Debian-7".into()),
        ..Default::default()
    });
    loop {
        let (tcp, _) = tokio::select! {
            _ = sim.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let sim2 = sim.clone();
        let config = config.clone();
        sim.tracker.spawn(async move {
            let handler = Conn {
                sim: sim2.clone(),
                stdin: HashMap::new(),
                pending: HashMap::new(),
                ptys: HashMap::new(),
                shells: HashMap::new(),
            };
            let Ok(session) = russh::server::run_stream(config, tcp, handler).await else {
                return;
            };
            let handle = session.handle();
            let drop_after = sim2.faults.lock().expect("faults").ssh_drop_after_ms;
            let dropper = async {
                match drop_after {
                    Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = session => {}
                _ = sim2.shutdown.cancelled() => {
                    let _ = handle.disconnect(russh::Disconnect::ByApplication, "simulator shutting down".into(), "".into()).await;
                }
                _ = dropper => {
                    let _ = handle.disconnect(russh::Disconnect::ConnectionLost, "injected connection drop".into(), "".into()).await;
                }
            }
        });
    }
}

struct Conn {
    sim: Arc<Sim>,
    stdin: HashMap<ChannelId, Vec<u8>>,
    pending: HashMap<ChannelId, Vec<String>>,
    ptys: HashMap<ChannelId, (u32, u32)>,
    shells: HashMap<ChannelId, super::runtime::pty::PtyShell>,
}

impl Conn {
    fn key_ok(&self, user: &str, key: &PublicKey) -> bool {
        if user != "root" {
            return false;
        }
        let extra = self.sim.ssh_keys.lock().expect("keys").clone();
        let file = read_authorized_keys(&self.sim.layout.authorized_keys());
        extra.iter().chain(file.iter()).any(|k| k.key_data() == key.key_data())
    }

    fn run(&mut self, channel: ChannelId, argv: Vec<String>, stdin: Vec<u8>, session: &mut Session) {
        let handle = session.handle();
        let sim = self.sim.clone();
        self.sim.tracker.spawn(async move {
            let delay = sim.faults.lock().expect("faults").exec_delay_ms.unwrap_or(0);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            let out = shell::run_host(&sim, &argv, &stdin).await;
            if !out.stdout.is_empty() {
                let _ = handle.data(channel, out.stdout).await;
            }
            if !out.stderr.is_empty() {
                let _ = handle.extended_data(channel, 1, out.stderr).await;
            }
            let _ = handle.exit_status_request(channel, out.status).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
    }

    fn open_shell(&mut self, channel: ChannelId, vmid: Option<u32>, session: &mut Session) -> Result<(), String> {
        let (cols, rows) = self
            .ptys
            .get(&channel)
            .copied()
            .ok_or("pct enter needs a terminal (request a pty)")?;
        let sh = super::runtime::pty::PtyShell::spawn(&self.sim, vmid, cols, rows, session.handle(), channel)?;
        self.shells.insert(channel, sh);
        Ok(())
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if user == "root" && super::auth::constant_eq(password.as_bytes(), self.sim.cfg.root_password.as_bytes()) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey_offered(&mut self, user: &str, offer: russh::server::PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        if self.key_ok(user, offer.public_key) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(&mut self, user: &str, key: russh::server::VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        if self.key_ok(user, key.public_key) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.ptys.insert(channel, (col_width.max(1), row_height.max(1)));
        session.channel_success(channel)?;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pw: u32,
        _ph: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.ptys.insert(channel, (col_width.max(1), row_height.max(1)));
        if let Some(sh) = self.shells.get(&channel) {
            sh.resize(col_width, row_height);
        }
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        match self.open_shell(channel, None, session) {
            Ok(()) => session.channel_success(channel)?,
            Err(e) => {
                session.channel_failure(channel)?;
                session.extended_data(channel, 1, format!("{e}\r\n").into_bytes())?;
                session.exit_status_request(channel, 1)?;
                session.close(channel)?;
            }
        }
        Ok(())
    }

    async fn exec_request(&mut self, channel: ChannelId, data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        let line = String::from_utf8_lossy(data).into_owned();
        let argv = match shell::split_words(&line) {
            Ok(a) => a,
            Err(e) => {
                session.channel_success(channel)?;
                session.extended_data(channel, 1, format!("sh: syntax error: {e}\n").into_bytes())?;
                session.exit_status_request(channel, 2)?;
                session.eof(channel)?;
                session.close(channel)?;
                return Ok(());
            }
        };
        session.channel_success(channel)?;
        if argv.len() >= 3 && argv[0] == "pct" && argv[1] == "enter" && self.ptys.contains_key(&channel) {
            let vmid = argv[2].parse::<u32>().ok();
            let running = vmid.and_then(|v| self.sim.state.lock().expect("state").cts.get(&v).map(|c| c.running));
            let err = match running {
                None => Some(format!("Configuration file 'nodes/pve1/lxc/{}.conf' does not exist", argv[2])),
                Some(false) => Some(format!("CT {} not running", argv[2])),
                Some(true) => self.open_shell(channel, vmid, session).err(),
            };
            if let Some(e) = err {
                session.extended_data(channel, 1, format!("{e}\r\n").into_bytes())?;
                session.exit_status_request(channel, 255)?;
                session.eof(channel)?;
                session.close(channel)?;
            }
            return Ok(());
        }
        if shell::needs_stdin(&argv) {
            self.pending.insert(channel, argv);
            self.stdin.entry(channel).or_default();
        } else {
            self.run(channel, argv, Vec::new(), session);
        }
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(sh) = self.shells.get(&channel) {
            sh.write(data);
            return Ok(());
        }
        if let Some(buf) = self.stdin.get_mut(&channel) {
            if buf.len() + data.len() > 64 << 20 {
                return Err(russh::Error::Disconnect);
            }
            buf.extend_from_slice(data);
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        if let Some(argv) = self.pending.remove(&channel) {
            let stdin = self.stdin.remove(&channel).unwrap_or_default();
            self.run(channel, argv, stdin, session);
        }
        if let Some(sh) = self.shells.get(&channel) {
            sh.write(&[4]);
        }
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.pending.remove(&channel);
        self.stdin.remove(&channel);
        self.ptys.remove(&channel);
        self.shells.remove(&channel);
        Ok(())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shells.clear();
    }
}
