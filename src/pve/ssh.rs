//! SSH execution on Proxmox nodes (russh): `pct exec`, `pct push`, `pct set --features`, and
//! interactive `pct enter` on a pty for the web console ([`SshExec::open_pty`]).
//!
//! - Client key: one ed25519 key generated on first use and stored sealed (SecretBox) in
//!   redb ([`SshKey::load_or_create`]); its public line is what the installer authorizes.
//! - Host keys: pinned on first use per endpoint ([`HostKeyStore`], redb-backed
//!   [`RedbHostKeys`]); a different key later is refused with [`Error::HostKeyMismatch`].
//! - Commands: built from argv with strict POSIX single-quote quoting of **every** element
//!   ([`quote`], [`command_line`]); never by concatenating user input into a shell string.
//! - Output: exit status plus stdout/stderr bounded to [`ExecOptions::max_output`] bytes each,
//!   optionally streamed line by line to a callback (job logs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::ChannelMsg;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use serde::{Deserialize, Serialize};

use super::error::Error;
use crate::secrets::SecretBox;
use crate::store::{Store, Table};

/// Quote one argument for a POSIX shell: always single quotes, `'` becomes `'\''`.
/// The result is one literal word for any input (including `$()`, `;`, newlines, quotes).
pub fn quote(arg: &str) -> String {
    let mut s = String::with_capacity(arg.len() + 2);
    s.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            s.push_str("'\\''");
        } else {
            s.push(c);
        }
    }
    s.push('\'');
    s
}

/// Build a command line from argv, quoting every element. Refuses empty argv and NUL bytes
/// (which no argv can carry).
pub fn command_line<S: AsRef<str>>(argv: &[S]) -> Result<String, Error> {
    if argv.is_empty() {
        return Err(Error::Invalid("empty command".into()));
    }
    let mut parts = Vec::with_capacity(argv.len());
    for a in argv {
        let a = a.as_ref();
        if a.contains('\0') {
            return Err(Error::Invalid("command argument contains a NUL byte".into()));
        }
        parts.push(quote(a));
    }
    Ok(parts.join(" "))
}

/// Result of a remote command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExecOutput {
    /// Exit status (128+signal when killed by a signal).
    pub status: u32,
    /// Standard output (UTF-8, lossy), at most `max_output` bytes.
    pub stdout: String,
    /// Standard error (UTF-8, lossy), at most `max_output` bytes.
    pub stderr: String,
    /// True when stdout or stderr was cut at the bound.
    pub truncated: bool,
}

impl ExecOutput {
    /// True for exit status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Which stream a streamed line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Line callback for streaming output.
pub type LineSink<'a> = &'a mut (dyn FnMut(OutputStream, &str) + Send);

/// Options of one command.
pub struct ExecOptions<'a> {
    /// Bytes sent on stdin (then EOF).
    pub stdin: Option<&'a [u8]>,
    /// Bound on captured bytes per stream (default 1 MiB).
    pub max_output: usize,
    /// Give up after this long (default 10 min).
    pub timeout: Duration,
    /// Called for every complete output line.
    pub on_line: Option<LineSink<'a>>,
}

impl Default for ExecOptions<'_> {
    fn default() -> Self {
        ExecOptions {
            stdin: None,
            max_output: 1 << 20,
            timeout: Duration::from_secs(600),
            on_line: None,
        }
    }
}

/// The appliance's SSH client key (ed25519). `Debug` shows only the fingerprint.
#[derive(Clone)]
pub struct SshKey {
    key: Arc<PrivateKey>,
}

impl std::fmt::Debug for SshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SshKey({})", self.fingerprint())
    }
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    sealed_private: String,
    public: String,
}

const KEY_TABLE: Table<StoredKey> = Table::new("pve_ssh_key");
const KEY_NAME: &str = "client";

impl SshKey {
    /// A fresh random ed25519 key.
    pub fn generate() -> SshKey {
        let seed: [u8; 32] = rand::random();
        let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
        let key = PrivateKey::new(russh::keys::ssh_key::private::KeypairData::from(pair), "proximity")
            .expect("an ed25519 keypair is always a valid private key");
        SshKey { key: Arc::new(key) }
    }

    /// Load the appliance key from the store, generating and storing it (sealed) the first
    /// time.
    pub fn load_or_create(store: &Store, secrets: &SecretBox) -> Result<SshKey, Error> {
        if let Some(stored) = store.get(KEY_TABLE, KEY_NAME)? {
            let pem = secrets.open_str(&stored.sealed_private)?;
            let key = PrivateKey::from_openssh(pem.as_bytes()).map_err(|e| Error::Invalid(format!("stored SSH key is unreadable: {e}")))?;
            return Ok(SshKey { key: Arc::new(key) });
        }
        let k = SshKey::generate();
        let pem = k
            .key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(|e| Error::Invalid(format!("cannot encode SSH key: {e}")))?;
        store.put(
            KEY_TABLE,
            KEY_NAME,
            &StoredKey {
                sealed_private: secrets.seal_str(&pem),
                public: k.public_openssh(),
            },
        )?;
        tracing::info!(fingerprint = %k.fingerprint(), "generated the appliance SSH key");
        Ok(k)
    }

    /// The public key as an OpenSSH `authorized_keys` line.
    pub fn public_openssh(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    /// `SHA256:...` fingerprint of the public key.
    pub fn fingerprint(&self) -> String {
        self.key.public_key().fingerprint(HashAlg::Sha256).to_string()
    }
}

/// Where pinned SSH host keys live. Values are `SHA256:...` fingerprints.
pub trait HostKeyStore: Send + Sync {
    /// The pinned fingerprint of an endpoint.
    fn pinned(&self, endpoint: &str) -> Result<Option<String>, Error>;
    /// Pin a fingerprint (first use).
    fn pin(&self, endpoint: &str, fingerprint: &str) -> Result<(), Error>;
    /// Remove a pin (after a deliberate node reinstall). Returns true when one existed.
    fn forget(&self, endpoint: &str) -> Result<bool, Error>;
}

#[derive(Serialize, Deserialize)]
struct PinRecord {
    fingerprint: String,
    pinned_at: i64,
}

const PIN_TABLE: Table<PinRecord> = Table::new("pve_ssh_host_keys");

/// Host key pins in redb (table `pve_ssh_host_keys`).
#[derive(Debug, Clone)]
pub struct RedbHostKeys {
    store: Store,
}

impl RedbHostKeys {
    /// Pins in this store.
    pub fn new(store: Store) -> RedbHostKeys {
        RedbHostKeys { store }
    }
}

impl HostKeyStore for RedbHostKeys {
    fn pinned(&self, endpoint: &str) -> Result<Option<String>, Error> {
        Ok(self.store.get(PIN_TABLE, endpoint)?.map(|r| r.fingerprint))
    }
    fn pin(&self, endpoint: &str, fingerprint: &str) -> Result<(), Error> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.store.put(
            PIN_TABLE,
            endpoint,
            &PinRecord {
                fingerprint: fingerprint.into(),
                pinned_at: now,
            },
        )?;
        Ok(())
    }
    fn forget(&self, endpoint: &str) -> Result<bool, Error> {
        Ok(self.store.delete(PIN_TABLE, endpoint)?)
    }
}

/// Host key pins in memory (tests, one-shot tools).
#[derive(Debug, Default)]
pub struct MemoryHostKeys(Mutex<HashMap<String, String>>);

impl HostKeyStore for MemoryHostKeys {
    fn pinned(&self, endpoint: &str) -> Result<Option<String>, Error> {
        Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).get(endpoint).cloned())
    }
    fn pin(&self, endpoint: &str, fingerprint: &str) -> Result<(), Error> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(endpoint.into(), fingerprint.into());
        Ok(())
    }
    fn forget(&self, endpoint: &str) -> Result<bool, Error> {
        Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(endpoint).is_some())
    }
}

struct PinHandler {
    endpoint: String,
    pins: Arc<dyn HostKeyStore>,
    failure: Arc<Mutex<Option<Error>>>,
}

impl russh::client::Handler for PinHandler {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let public = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key().clone().into(),
        };
        let seen = public.fingerprint(HashAlg::Sha256).to_string();
        let verdict = match self.pins.pinned(&self.endpoint) {
            Ok(Some(pinned)) if pinned == seen => Ok(()),
            Ok(Some(pinned)) => Err(Error::HostKeyMismatch {
                endpoint: self.endpoint.clone(),
                pinned,
                seen,
            }),
            Ok(None) => {
                tracing::info!(endpoint = %self.endpoint, fingerprint = %seen, "pinning SSH host key on first use");
                self.pins.pin(&self.endpoint, &seen)
            }
            Err(e) => Err(e),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(e) => {
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Ok(false)
            }
        }
    }
}

/// An authenticated SSH session to one Proxmox node (or the simulator).
pub struct SshExec {
    handle: russh::client::Handle<PinHandler>,
    endpoint: String,
}

impl std::fmt::Debug for SshExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshExec").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl SshExec {
    /// Connect to `endpoint` (`host:port`), verify/pin its host key, authenticate `user`
    /// with `key`.
    pub async fn connect(endpoint: &str, user: &str, key: &SshKey, pins: Arc<dyn HostKeyStore>) -> Result<SshExec, Error> {
        let ssh_err = |message: String| Error::Ssh {
            endpoint: endpoint.to_string(),
            message,
        };
        let config = Arc::new(russh::client::Config {
            inactivity_timeout: Some(Duration::from_secs(3600)),
            keepalive_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        let failure = Arc::new(Mutex::new(None));
        let handler = PinHandler {
            endpoint: endpoint.to_string(),
            pins,
            failure: failure.clone(),
        };
        let connect = russh::client::connect(config, endpoint, handler);
        let mut handle = match tokio::time::timeout(Duration::from_secs(15), connect).await {
            Err(_) => return Err(ssh_err("timed out connecting".into())),
            Ok(Err(e)) => {
                if let Some(f) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(f);
                }
                return Err(ssh_err(format!("cannot connect: {e}")));
            }
            Ok(Ok(h)) => h,
        };
        let auth = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.key.clone(), None))
            .await
            .map_err(|e| ssh_err(format!("authentication failed: {e}")))?;
        if !auth.success() {
            return Err(ssh_err(format!(
                "public key of `{user}` was refused; add the appliance key ({}) to the node's authorized_keys",
                key.fingerprint()
            )));
        }
        tracing::debug!(endpoint, user, "SSH session established");
        Ok(SshExec {
            handle,
            endpoint: endpoint.to_string(),
        })
    }

    /// The endpoint this session talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Run argv (quoted) and collect its output.
    pub async fn exec<S: AsRef<str>>(&self, argv: &[S]) -> Result<ExecOutput, Error> {
        self.exec_with(argv, ExecOptions::default()).await
    }

    /// Run argv with options (stdin, bounds, streaming, timeout).
    pub async fn exec_with<S: AsRef<str>>(&self, argv: &[S], mut opts: ExecOptions<'_>) -> Result<ExecOutput, Error> {
        let cmd = command_line(argv)?;
        let ssh_err = |message: String| Error::Ssh {
            endpoint: self.endpoint.clone(),
            message,
        };
        let run = async {
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| ssh_err(format!("cannot open a channel: {e}")))?;
            channel
                .exec(true, cmd.as_bytes())
                .await
                .map_err(|e| ssh_err(format!("exec failed: {e}")))?;
            if let Some(input) = opts.stdin {
                channel
                    .data(input)
                    .await
                    .map_err(|e| ssh_err(format!("sending stdin failed: {e}")))?;
            }
            channel.eof().await.map_err(|e| ssh_err(format!("closing stdin failed: {e}")))?;
            let mut out = Capture::new(opts.max_output);
            let mut err = Capture::new(opts.max_output);
            let mut status = None;
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.push(&data, OutputStream::Stdout, &mut opts.on_line),
                    ChannelMsg::ExtendedData { data, ext: 1 } => err.push(&data, OutputStream::Stderr, &mut opts.on_line),
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        tracing::debug!(signal = ?signal_name, "remote command killed by a signal");
                        status = Some(128 + 9);
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            out.finish(OutputStream::Stdout, &mut opts.on_line);
            err.finish(OutputStream::Stderr, &mut opts.on_line);
            let status = status.ok_or_else(|| ssh_err("connection closed before the command reported its exit status".into()))?;
            Ok(ExecOutput {
                status,
                truncated: out.truncated || err.truncated,
                stdout: String::from_utf8_lossy(&out.buf).into_owned(),
                stderr: String::from_utf8_lossy(&err.buf).into_owned(),
            })
        };
        let res = tokio::time::timeout(opts.timeout, run)
            .await
            .map_err(|_| ssh_err(format!("command timed out after {} s", opts.timeout.as_secs())))?;
        if let Ok(o) = &res {
            tracing::debug!(endpoint = %self.endpoint, argv0 = argv[0].as_ref(), status = o.status, "SSH command finished");
        }
        res
    }

    /// `pct exec <vmid> -- argv...`.
    pub async fn pct_exec<S: AsRef<str>>(&self, vmid: u32, argv: &[S]) -> Result<ExecOutput, Error> {
        self.pct_exec_with(vmid, argv, ExecOptions::default()).await
    }

    /// `pct exec` with options (e.g. line streaming into job logs).
    pub async fn pct_exec_with<S: AsRef<str>>(&self, vmid: u32, argv: &[S], opts: ExecOptions<'_>) -> Result<ExecOutput, Error> {
        if argv.is_empty() {
            return Err(Error::Invalid("empty command".into()));
        }
        let mut full: Vec<String> = vec!["pct".into(), "exec".into(), vmid.to_string(), "--".into()];
        full.extend(argv.iter().map(|a| a.as_ref().to_string()));
        self.exec_with(&full, opts).await
    }

    /// `pct push <vmid> /dev/stdin <dst> --perms <octal>` with `bytes` on stdin. Non-zero exit
    /// is an error.
    pub async fn pct_push(&self, vmid: u32, bytes: &[u8], dst: &str, perms: Option<u32>) -> Result<(), Error> {
        if !dst.starts_with('/') {
            return Err(Error::Invalid(format!("pct push destination `{dst}` must be an absolute path")));
        }
        let mut argv: Vec<String> = vec!["pct".into(), "push".into(), vmid.to_string(), "/dev/stdin".into(), dst.into()];
        if let Some(p) = perms {
            argv.push("--perms".into());
            argv.push(format!("{p:o}"));
        }
        let out = self
            .exec_with(
                &argv,
                ExecOptions {
                    stdin: Some(bytes),
                    ..Default::default()
                },
            )
            .await?;
        require_ok(&argv, out).map(|_| ())
    }

    /// `pct set <vmid> --features <features>` (e.g. `nesting=1,keyctl=1`, which an API token
    /// cannot set).
    pub async fn pct_set_features(&self, vmid: u32, features: &str) -> Result<(), Error> {
        let argv = [
            "pct".to_string(),
            "set".into(),
            vmid.to_string(),
            "--features".into(),
            features.into(),
        ];
        let out = self.exec(&argv).await?;
        require_ok(&argv, out).map(|_| ())
    }

    /// Run argv (quoted) on a pseudo-terminal of `cols`×`rows` (e.g. `pct enter <vmid>`),
    /// for an interactive session. The session owns this connection.
    pub async fn open_pty<S: AsRef<str>>(self, argv: &[S], cols: u32, rows: u32) -> Result<PtySession, Error> {
        let cmd = command_line(argv)?;
        let ssh_err = |message: String| Error::Ssh {
            endpoint: self.endpoint.clone(),
            message,
        };
        let open = async {
            let channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| ssh_err(format!("cannot open a channel: {e}")))?;
            channel
                .request_pty(false, "xterm-256color", cols, rows, 0, 0, &[])
                .await
                .map_err(|e| ssh_err(format!("pty request failed: {e}")))?;
            channel
                .exec(true, cmd.as_bytes())
                .await
                .map_err(|e| ssh_err(format!("exec failed: {e}")))?;
            Ok::<_, Error>(channel)
        };
        let channel = tokio::time::timeout(Duration::from_secs(15), open)
            .await
            .map_err(|_| ssh_err("timed out opening the terminal".into()))??;
        tracing::debug!(endpoint = %self.endpoint, argv0 = argv[0].as_ref(), cols, rows, "SSH pty session opened");
        Ok(PtySession {
            channel,
            exit: None,
            ssh: self,
        })
    }

    /// Close the session.
    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

/// What an interactive session produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtyEvent {
    /// Terminal output (stdout and stderr share the pty).
    Output(bytes::Bytes),
    /// The command ended (exit status when the server reported one).
    Closed(Option<u32>),
}

/// A command running on a remote pseudo-terminal ([`SshExec::open_pty`]).
pub struct PtySession {
    channel: russh::Channel<russh::client::Msg>,
    exit: Option<u32>,
    ssh: SshExec,
}

impl std::fmt::Debug for PtySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtySession")
            .field("endpoint", &self.ssh.endpoint)
            .finish_non_exhaustive()
    }
}

impl PtySession {
    /// The next output or the end. Cancel-safe (a dropped call loses no message).
    pub async fn next(&mut self) -> PtyEvent {
        loop {
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => return PtyEvent::Output(bytes::Bytes::copy_from_slice(&data)),
                Some(ChannelMsg::ExtendedData { data, .. }) => return PtyEvent::Output(bytes::Bytes::copy_from_slice(&data)),
                Some(ChannelMsg::ExitStatus { exit_status }) => self.exit = Some(exit_status),
                Some(ChannelMsg::ExitSignal { .. }) => self.exit = Some(128 + 9),
                Some(ChannelMsg::Close) | None => return PtyEvent::Closed(self.exit),
                Some(_) => {}
            }
        }
    }

    /// Send input bytes (keystrokes).
    pub async fn write(&self, data: &[u8]) -> Result<(), Error> {
        self.channel
            .data_bytes(bytes::Bytes::copy_from_slice(data))
            .await
            .map_err(|e| Error::Ssh {
                endpoint: self.ssh.endpoint.clone(),
                message: format!("sending input failed: {e}"),
            })
    }

    /// Tell the remote side the terminal size changed.
    pub async fn resize(&self, cols: u32, rows: u32) -> Result<(), Error> {
        self.channel.window_change(cols, rows, 0, 0).await.map_err(|e| Error::Ssh {
            endpoint: self.ssh.endpoint.clone(),
            message: format!("window change failed: {e}"),
        })
    }

    /// End the session: EOF and close the channel, then disconnect.
    pub async fn close(self) {
        let _ = self.channel.eof().await;
        let _ = self.channel.close().await;
        self.ssh.close().await;
    }
}

/// Turn a non-zero exit into [`Error::CommandFailed`].
pub fn require_ok<S: AsRef<str>>(argv: &[S], out: ExecOutput) -> Result<ExecOutput, Error> {
    if out.success() {
        return Ok(out);
    }
    Err(Error::CommandFailed {
        command: command_line(argv).unwrap_or_default(),
        status: out.status,
        stderr: out.stderr.trim().chars().take(2000).collect(),
    })
}

struct Capture {
    buf: Vec<u8>,
    max: usize,
    truncated: bool,
    partial: Vec<u8>,
}

impl Capture {
    fn new(max: usize) -> Capture {
        Capture {
            buf: Vec::new(),
            max,
            truncated: false,
            partial: Vec::new(),
        }
    }

    fn push(&mut self, data: &[u8], stream: OutputStream, sink: &mut Option<LineSink<'_>>) {
        let room = self.max.saturating_sub(self.buf.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
        if let Some(sink) = sink.as_mut() {
            self.partial.extend_from_slice(data);
            while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                sink(stream, text.trim_end_matches('\r'));
            }
            // Bound a line without newline.
            if self.partial.len() > self.max {
                let text = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                sink(stream, &text);
            }
        }
    }

    fn finish(&mut self, stream: OutputStream, sink: &mut Option<LineSink<'_>>) {
        if let Some(sink) = sink.as_mut()
            && !self.partial.is_empty()
        {
            let text = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            sink(stream, &text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split like a POSIX shell would for single-quoted words (enough to check our quoting).
    fn shell_split(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    in_word = true;
                    for d in chars.by_ref() {
                        if d == '\'' {
                            break;
                        }
                        cur.push(d);
                    }
                }
                '\\' => {
                    in_word = true;
                    if let Some(d) = chars.next() {
                        cur.push(d);
                    }
                }
                ' ' => {
                    if in_word {
                        out.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                }
                other => {
                    in_word = true;
                    cur.push(other);
                }
            }
        }
        if in_word {
            out.push(cur);
        }
        out
    }

    #[test]
    fn quoting_is_literal() {
        let hostile = [
            "; rm -rf /",
            "$(id)",
            "`id`",
            "it's",
            "\"dq\"",
            "a\nb",
            "",
            "  spaced  ",
            "'",
            "''",
            "\\",
            "$HOME",
            "*",
            "x|y&z>w",
        ];
        let line = command_line(&hostile).unwrap();
        assert_eq!(shell_split(&line), hostile.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert!(command_line::<&str>(&[]).is_err());
        assert!(command_line(&["a\0b"]).is_err());
    }

    #[test]
    fn capture_bounds_and_lines() {
        let mut lines = Vec::new();
        let mut f = |s: OutputStream, l: &str| lines.push((s, l.to_string()));
        let mut c = Capture::new(8);
        {
            let mut sink: Option<LineSink<'_>> = Some(&mut f);
            c.push(b"hello\nwor", OutputStream::Stdout, &mut sink);
            c.push(b"ld\r\nend", OutputStream::Stdout, &mut sink);
            c.finish(OutputStream::Stdout, &mut sink);
        }
        assert!(c.truncated);
        assert_eq!(c.buf, b"hello\nwo");
        assert_eq!(
            lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(),
            vec!["hello", "world", "end"]
        );
    }

    #[test]
    fn key_generation_and_storage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let secrets = SecretBox::ephemeral();
        let a = SshKey::load_or_create(&store, &secrets).unwrap();
        let b = SshKey::load_or_create(&store, &secrets).unwrap();
        assert_eq!(a.public_openssh(), b.public_openssh());
        assert!(a.public_openssh().starts_with("ssh-ed25519 "));
        let stored = store.get(KEY_TABLE, KEY_NAME).unwrap().unwrap();
        assert!(!stored.sealed_private.contains("OPENSSH"));
        assert!(SshKey::load_or_create(&store, &SecretBox::ephemeral()).is_err());
        let pins = RedbHostKeys::new(store);
        assert_eq!(pins.pinned("h:22").unwrap(), None);
        pins.pin("h:22", "SHA256:x").unwrap();
        assert_eq!(pins.pinned("h:22").unwrap().as_deref(), Some("SHA256:x"));
        assert!(pins.forget("h:22").unwrap());
    }
}
