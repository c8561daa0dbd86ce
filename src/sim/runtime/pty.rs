//! Interactive shells for `pct enter <vmid>`: a `/bin/sh` on a pseudo-terminal, started in
//! the CT's root directory (loopback) or inside its network namespace (netns), bytes relayed
//! to the SSH channel. The child is ours; it is killed by PID when the channel closes.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use russh::ChannelId;

use super::super::Sim;

/// A running pty shell.
pub struct PtyShell {
    master: Arc<Mutex<File>>,
    pid: i32,
    exited: Arc<std::sync::atomic::AtomicBool>,
}

fn winsize(cols: u32, rows: u32) -> libc::winsize {
    libc::winsize {
        ws_row: rows.min(u16::MAX as u32) as u16,
        ws_col: cols.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl PtyShell {
    /// Start a shell for CT `vmid` and relay its output to `channel`.
    pub fn spawn(
        sim: &Arc<Sim>,
        vmid: Option<u32>,
        cols: u32,
        rows: u32,
        handle: russh::server::Handle,
        channel: ChannelId,
    ) -> Result<PtyShell, String> {
        let vmid = vmid.ok_or("interactive login is not available on the simulator; use `pct enter <vmid>`")?;
        let hostname = {
            let st = sim.state.lock().expect("state");
            let ct = st.cts.get(&vmid).ok_or_else(|| format!("CT {vmid} does not exist"))?;
            if !ct.running {
                return Err(format!("CT {vmid} not running"));
            }
            ct.name()
        };
        let root = sim.layout.ct_root(vmid);
        let _ = std::fs::create_dir_all(root.join("root"));
        let mut master_fd: libc::c_int = -1;
        let mut slave_fd: libc::c_int = -1;
        let ws = winsize(cols, rows);
        let rc = unsafe { libc::openpty(&mut master_fd, &mut slave_fd, std::ptr::null_mut(), std::ptr::null_mut(), &ws) };
        if rc != 0 {
            return Err(format!("openpty: {}", std::io::Error::last_os_error()));
        }
        let master = unsafe { OwnedFd::from_raw_fd(master_fd) };
        let slave = unsafe { OwnedFd::from_raw_fd(slave_fd) };
        let mut cmd = sim.runtime.command_in(vmid, &["/bin/sh", "-i"]);
        cmd.current_dir(&root)
            .env_clear()
            .env("HOME", root.join("root"))
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("TERM", "xterm-256color")
            .env("PS1", format!("{hostname}:~# "))
            .env("HOSTNAME", &hostname)
            .stdin(Stdio::from(slave.try_clone().map_err(|e| e.to_string())?))
            .stdout(Stdio::from(slave.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(slave));
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("starting the CT shell: {e}"))?;
        let pid = child.id() as i32;
        let master_file = File::from(master);
        let mut reader = master_file.try_clone().map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Handle::current();
        let exited = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let exited2 = exited.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if rt.block_on(handle.data(channel, bytes::Bytes::copy_from_slice(&buf[..n]))).is_err() {
                            break;
                        }
                    }
                }
            }
            let status = child.wait().ok().and_then(|s| s.code()).unwrap_or(0) as u32;
            exited2.store(true, std::sync::atomic::Ordering::SeqCst);
            rt.block_on(async {
                let _ = handle.exit_status_request(channel, status).await;
                let _ = handle.eof(channel).await;
                let _ = handle.close(channel).await;
            });
        });
        Ok(PtyShell {
            master: Arc::new(Mutex::new(master_file)),
            pid,
            exited,
        })
    }

    /// Write input to the shell.
    pub fn write(&self, data: &[u8]) {
        let _ = self.master.lock().expect("pty").write_all(data);
    }

    /// Forward a window size change.
    pub fn resize(&self, cols: u32, rows: u32) {
        let ws = winsize(cols, rows);
        let fd = self.master.lock().expect("pty").as_raw_fd();
        unsafe {
            libc::ioctl(fd, libc::TIOCSWINSZ as _, &ws);
        }
    }
}

impl Drop for PtyShell {
    fn drop(&mut self) {
        // Our own child, by PID, unless it was already reaped (the PID could be reused).
        if self.exited.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        unsafe {
            libc::kill(self.pid, libc::SIGHUP);
            libc::kill(self.pid, libc::SIGKILL);
        }
    }
}
