//! What the SSH server runs: the node-level `pct` commands and the CT "mini-OS" behind
//! `pct exec` (apk, rc-update/rc-service, a few coreutils, docker and docker compose).
//! Command strings are split with POSIX shell word rules; no other shell features.

use std::path::PathBuf;
use std::sync::Arc;

use super::api::ApiError;
use super::auth::Identity;
use super::schema::{self, Raw};
use super::state::{Project, ct_path};
use super::{Sim, compose};

/// Output of a command.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Exit status.
    pub status: u32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Success with stdout.
    pub fn ok(s: impl Into<String>) -> Output {
        Output {
            status: 0,
            stdout: s.into().into_bytes(),
            stderr: Vec::new(),
        }
    }
    /// Failure with stderr.
    pub fn err(status: u32, s: impl Into<String>) -> Output {
        let mut e: String = s.into();
        if !e.is_empty() && !e.ends_with('\n') {
            e.push('\n');
        }
        Output {
            status,
            stdout: Vec::new(),
            stderr: e.into_bytes(),
        }
    }
    /// Success with stderr (docker compose writes progress there).
    pub fn ok_err(s: impl Into<String>) -> Output {
        Output {
            status: 0,
            stdout: Vec::new(),
            stderr: s.into().into_bytes(),
        }
    }
}

/// Split a command line with POSIX shell quoting rules (single quotes, double quotes with
/// `\` escapes of `"\$` and backquote, backslash outside quotes). No expansion of any kind.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated quoted string".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    cur.push(c);
                }
                None => {
                    in_word = true;
                    cur.push('\\');
                }
            },
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Which node the SSH server speaks as for CTs that do not exist.
fn default_node(sim: &Sim) -> String {
    sim.state
        .lock()
        .expect("state")
        .nodes
        .first()
        .map(|n| n.name.clone())
        .unwrap_or_else(|| "pve1".into())
}

fn no_conf(sim: &Sim, vmid: &str) -> Output {
    Output::err(
        255,
        format!("Configuration file 'nodes/{}/lxc/{vmid}.conf' does not exist", default_node(sim)),
    )
}

/// Whether a command needs the channel's stdin (so the server waits for EOF before running it).
pub fn needs_stdin(argv: &[String]) -> bool {
    argv.first().map(String::as_str) == Some("pct")
        && argv.get(1).map(String::as_str) == Some("push")
        && argv.get(3).map(String::as_str) == Some("/dev/stdin")
}

/// Run a node-level command line (what `ssh root@node '<cmd>'` runs).
pub async fn run_host(sim: &Arc<Sim>, argv: &[String], stdin: &[u8]) -> Output {
    let Some(cmd) = argv.first() else { return Output::ok("") };
    match cmd.as_str() {
        "pct" => pct(sim, &argv[1..], stdin).await,
        "true" => Output::ok(""),
        "hostname" => Output::ok(format!("{}\n", default_node(sim))),
        "pveversion" => Output::ok(format!(
            "pve-manager/{}/42d4a5a4e0e5b7a1 (running kernel: 6.17.2-1-pve)\n",
            super::cluster::PVE_VERSION
        )),
        "echo" => Output::ok(format!("{}\n", argv[1..].join(" "))),
        other => Output::err(127, format!("sh: {other}: not found")),
    }
}

fn parse_vmid(s: Option<&String>) -> Result<u32, Output> {
    match s.and_then(|v| v.parse::<u32>().ok()).filter(|v| *v >= 100) {
        Some(v) => Ok(v),
        None => Err(Output::err(
            255,
            format!(
                "400 Parameter verification failed.\nvmid: type check ('integer') failed - got '{}'\n",
                s.map(String::as_str).unwrap_or("")
            ),
        )),
    }
}

async fn pct(sim: &Arc<Sim>, args: &[String], stdin: &[u8]) -> Output {
    let Some(sub) = args.first() else {
        return Output::err(255, "ERROR: no command specified\nUSAGE: pct <COMMAND> [ARGS] [OPTIONS]");
    };
    if sub == "list" {
        let st = sim.state.lock().expect("state");
        let mut out = format!("{:<10} {:<10} {:<12} {}\n", "VMID", "Status", "Lock", "Name");
        for ct in st.cts.values() {
            out.push_str(&format!(
                "{:<10} {:<10} {:<12} {}\n",
                ct.vmid,
                if ct.running { "running" } else { "stopped" },
                ct.lock.clone().unwrap_or_default(),
                ct.name()
            ));
        }
        return Output::ok(out);
    }
    let vmid = match parse_vmid(args.get(1)) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let (exists, running, node) = {
        let st = sim.state.lock().expect("state");
        match st.cts.get(&vmid) {
            Some(ct) => (true, ct.running, ct.node.clone()),
            None => (false, false, String::new()),
        }
    };
    if !exists {
        return no_conf(sim, &vmid.to_string());
    }
    if sim.faults.lock().expect("faults").offline_nodes.contains(&node) {
        return Output::err(255, format!("ssh: connect to host {node} port 22: Connection refused"));
    }
    match sub.as_str() {
        "status" => Output::ok(format!("status: {}\n", if running { "running" } else { "stopped" })),
        "exec" => {
            if !running {
                return Output::err(255, format!("CT {vmid} not running"));
            }
            let rest = &args[2..];
            let argv: Vec<String> = match rest.iter().position(|a| a == "--") {
                Some(i) => rest[i + 1..].to_vec(),
                None => rest.to_vec(),
            };
            if argv.is_empty() {
                return Output::err(255, "missing command");
            }
            ct_exec(sim, vmid, &argv).await
        }
        "push" => {
            if !running {
                return Output::err(255, format!("CT {vmid} not running"));
            }
            let (Some(src), Some(dst)) = (args.get(2), args.get(3)) else {
                return Output::err(255, "400 not enough arguments\npct push <vmid> <file> <destination> [OPTIONS]");
            };
            let mut perms: Option<u32> = None;
            let mut i = 4;
            while i < args.len() {
                match args[i].trim_start_matches('-') {
                    "perms" => {
                        match args
                            .get(i + 1)
                            .and_then(|p| u32::from_str_radix(p.trim_start_matches("0o"), 8).ok())
                        {
                            Some(p) => perms = Some(p),
                            None => return Output::err(255, "400 Parameter verification failed.\nperms: invalid format"),
                        }
                        i += 2;
                    }
                    "user" | "group" => i += 2,
                    o => return Output::err(255, format!("Unknown option: {o}")),
                }
            }
            let data = if src == "/dev/stdin" || src == "-" {
                stdin.to_vec()
            } else {
                return Output::err(255, format!("error opening '{src}': No such file or directory"));
            };
            push_file(sim, vmid, dst, &data, perms)
        }
        "set" => {
            let ep = schema::schema()
                .endpoint("PUT", "/nodes/{node}/lxc/{vmid}/config")
                .expect("config endpoint");
            let mut raw = vec![
                ("node".to_string(), Raw::Text(node.clone())),
                ("vmid".to_string(), Raw::Text(vmid.to_string())),
            ];
            let mut i = 2;
            while i < args.len() {
                let Some(key) = args[i].strip_prefix("--").or_else(|| args[i].strip_prefix('-')) else {
                    return Output::err(255, format!("400 unable to parse option '{}'", args[i]));
                };
                let Some(val) = args.get(i + 1) else {
                    return Output::err(255, format!("400 missing value for option '{key}'"));
                };
                raw.push((key.to_string(), Raw::Text(val.clone())));
                i += 2;
            }
            let params = match schema::verify(&ep.props, raw) {
                Ok(p) => p,
                Err(errs) => {
                    let lines: Vec<String> = errs.iter().map(|(k, v)| format!("{k}: {}", v.trim_end())).collect();
                    return Output::err(255, format!("400 Parameter verification failed.\n{}", lines.join("\n")));
                }
            };
            let root = Identity {
                user: "root@pam".into(),
                token: None,
            };
            match super::lxc::apply_config(sim, ep, &root, &node, vmid, &params) {
                Ok(()) => Output::ok(""),
                Err(ApiError { message, .. }) => Output::err(255, message),
            }
        }
        "start" | "stop" | "shutdown" => {
            let res = if sub == "start" {
                if running {
                    Err(format!("CT {vmid} already running"))
                } else {
                    let (upid, _) = sim.tasks.create(&node, "vzstart", &vmid.to_string(), "root@pam");
                    let ctx = super::tasks::TaskCtx::detached(sim.clone(), upid.clone());
                    let r = super::lxc::start_ct(&ctx, vmid).await;
                    sim.tasks.finish(&upid, r.as_ref().err().map(String::as_str).unwrap_or("OK"));
                    r
                }
            } else {
                super::lxc::stop_ct(sim, vmid).await
            };
            match res {
                Ok(()) => Output::ok(""),
                Err(e) => Output::err(255, e),
            }
        }
        "enter" => Output::err(255, "pct enter needs a terminal (request a pty)"),
        other => Output::err(
            255,
            format!("ERROR: unknown command 'pct {other}'\nUSAGE: pct <COMMAND> [ARGS] [OPTIONS]"),
        ),
    }
}

fn push_file(sim: &Sim, vmid: u32, dst: &str, data: &[u8], perms: Option<u32>) -> Output {
    use std::os::unix::fs::PermissionsExt as _;
    if !dst.starts_with('/') {
        return Output::err(255, format!("destination '{dst}' must be an absolute path"));
    }
    let root = sim.layout.ct_root(vmid);
    let Some(path) = ct_path(&root, dst) else {
        return Output::err(255, format!("invalid destination '{dst}'"));
    };
    let Some(parent) = path.parent() else {
        return Output::err(255, "invalid destination");
    };
    if !parent.is_dir() {
        return Output::err(255, format!("error opening '{dst}': No such file or directory"));
    }
    if let Err(e) = std::fs::write(&path, data) {
        return Output::err(255, format!("error writing '{dst}': {e}"));
    }
    let mode = perms.unwrap_or(0o644);
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777));
    Output::ok("")
}

fn ct_file(sim: &Sim, vmid: u32, cwd: &str, p: &str) -> Option<PathBuf> {
    let abs = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{}/{p}", cwd.trim_end_matches('/'))
    };
    ct_path(&sim.layout.ct_root(vmid), &abs)
}

fn with_ct<T>(sim: &Sim, vmid: u32, f: impl FnOnce(&mut super::state::Ct) -> T) -> Option<T> {
    let mut st = sim.state.lock().expect("state");
    st.cts.get_mut(&vmid).map(f)
}

fn pkg_version(p: &str) -> &'static str {
    match p {
        "docker" | "docker-engine" | "docker-cli" => "28.3.3-r0",
        "docker-cli-compose" => "2.39.1-r0",
        "curl" => "8.14.1-r1",
        _ => "1.0.0-r0",
    }
}

/// Run argv inside a running CT's mini-OS.
pub async fn ct_exec(sim: &Arc<Sim>, vmid: u32, argv: &[String]) -> Output {
    let cmd = argv[0].rsplit('/').next().unwrap_or(&argv[0]).to_string();
    let args = &argv[1..];
    let cwd = "/";
    match cmd.as_str() {
        "true" => Output::ok(""),
        "false" => Output::err(1, ""),
        "echo" => {
            let (nl, args) = if args.first().map(String::as_str) == Some("-n") {
                (false, &args[1..])
            } else {
                (true, args)
            };
            Output::ok(format!("{}{}", args.join(" "), if nl { "\n" } else { "" }))
        }
        "hostname" => Output::ok(format!("{}\n", with_ct(sim, vmid, |c| c.name()).unwrap_or_default())),
        "uptime" => {
            let up = with_ct(sim, vmid, |c| c.uptime(super::now())).unwrap_or(0);
            Output::ok(format!(" 12:00:00 up {} min,  0 users,  load average: 0.00, 0.01, 0.05\n", up / 60))
        }
        "df" => {
            let (size, used) = with_ct(sim, vmid, |c| (c.maxdisk(), c.disk())).unwrap_or((0, 0));
            let g = |b: u64| format!("{:.1}G", b as f64 / (1u64 << 30) as f64);
            Output::ok(format!(
                "Filesystem                Size      Used Available Use% Mounted on\n/dev/mapper/pve-vm--{vmid}--disk--0\n                          {:>6}    {:>6}    {:>6}  {:>2}% /\n",
                g(size),
                g(used),
                g(size.saturating_sub(used)),
                used * 100 / size.max(1)
            ))
        }
        "du" => {
            let Some(dir) = args.iter().find(|a| !a.starts_with('-')) else {
                return Output::err(1, "du: missing operand");
            };
            match ct_file(sim, vmid, cwd, dir) {
                Some(p) if p.exists() => Output::ok(format!("{}K\t{dir}\n", dir_size(&p).div_ceil(1024).max(4))),
                _ => Output::err(1, format!("du: {dir}: No such file or directory")),
            }
        }
        "mkdir" => {
            let parents = args.iter().any(|a| a == "-p");
            let mut failed = Vec::new();
            for d in args.iter().filter(|a| !a.starts_with('-')) {
                let Some(p) = ct_file(sim, vmid, cwd, d) else { continue };
                let r = if parents {
                    std::fs::create_dir_all(&p)
                } else {
                    std::fs::create_dir(&p)
                };
                if let Err(e) = r {
                    failed.push(format!(
                        "mkdir: can't create directory '{d}': {}",
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            "File exists".to_string()
                        } else {
                            "No such file or directory".to_string()
                        }
                    ));
                }
            }
            if failed.is_empty() {
                Output::ok("")
            } else {
                Output::err(1, failed.join("\n"))
            }
        }
        "cat" => {
            let mut out = Vec::new();
            for f in args {
                match ct_file(sim, vmid, cwd, f).map(std::fs::read) {
                    Some(Ok(b)) => out.extend(b),
                    _ => {
                        return Output {
                            status: 1,
                            stdout: out,
                            stderr: format!("cat: can't open '{f}': No such file or directory\n").into_bytes(),
                        };
                    }
                }
            }
            Output {
                status: 0,
                stdout: out,
                stderr: Vec::new(),
            }
        }
        "rm" => {
            let force = args.iter().any(|a| a.starts_with('-') && a.contains('f'));
            let recursive = args.iter().any(|a| a.starts_with('-') && (a.contains('r') || a.contains('R')));
            for f in args.iter().filter(|a| !a.starts_with('-')) {
                let Some(p) = ct_file(sim, vmid, cwd, f) else { continue };
                let r = if p.is_dir() {
                    if recursive {
                        std::fs::remove_dir_all(&p)
                    } else {
                        return Output::err(1, format!("rm: '{f}' is a directory"));
                    }
                } else {
                    std::fs::remove_file(&p)
                };
                if r.is_err() && !force {
                    return Output::err(1, format!("rm: can't remove '{f}': No such file or directory"));
                }
            }
            Output::ok("")
        }
        "ls" => {
            let all = args
                .iter()
                .any(|a| a.starts_with('-') && !a.starts_with("--") && (a.contains('a') || a.contains('A')));
            let dir = args
                .iter()
                .find(|a| !a.starts_with('-'))
                .cloned()
                .unwrap_or_else(|| cwd.to_string());
            match ct_file(sim, vmid, cwd, &dir) {
                Some(p) if p.is_dir() => {
                    let mut names: Vec<String> = std::fs::read_dir(&p)
                        .map(|rd| {
                            rd.filter_map(Result::ok)
                                .map(|e| e.file_name().to_string_lossy().into_owned())
                                .filter(|n| all || !n.starts_with('.'))
                                .collect()
                        })
                        .unwrap_or_default();
                    names.sort();
                    Output::ok(names.iter().map(|n| format!("{n}\n")).collect::<String>())
                }
                Some(p) if p.exists() => Output::ok(format!("{dir}\n")),
                _ => Output::err(1, format!("ls: {dir}: No such file or directory")),
            }
        }
        "test" | "[" => {
            let a: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "]").collect();
            let res = match a.as_slice() {
                ["-e", f] => ct_file(sim, vmid, cwd, f).is_some_and(|p| p.exists()),
                ["-f", f] => ct_file(sim, vmid, cwd, f).is_some_and(|p| p.is_file()),
                ["-d", f] => ct_file(sim, vmid, cwd, f).is_some_and(|p| p.is_dir()),
                _ => false,
            };
            if res { Output::ok("") } else { Output::err(1, "") }
        }
        "chmod" => {
            use std::os::unix::fs::PermissionsExt as _;
            let (Some(mode), Some(f)) = (args.first().and_then(|m| u32::from_str_radix(m, 8).ok()), args.get(1)) else {
                return Output::err(1, "chmod: invalid mode");
            };
            match ct_file(sim, vmid, cwd, f) {
                Some(p) if p.exists() => {
                    let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode));
                    Output::ok("")
                }
                _ => Output::err(1, format!("chmod: {f}: No such file or directory")),
            }
        }
        "sh" | "ash" | "bash" => {
            if args.first().map(String::as_str) != Some("-c") || args.len() < 2 {
                return Output::err(2, format!("{cmd}: interactive shells need a terminal (use pct enter)"));
            }
            let line = &args[1];
            if line.chars().any(|c| "|;&<>`$(){}*?".contains(c)) {
                return Output::err(
                    2,
                    format!("{cmd}: the simulator's CT shell runs one plain command (no pipes, redirections or expansions)"),
                );
            }
            match split_words(line) {
                Ok(w) if !w.is_empty() => Box::pin(ct_exec(sim, vmid, &w)).await,
                Ok(_) => Output::ok(""),
                Err(e) => Output::err(2, format!("{cmd}: syntax error: {e}")),
            }
        }
        "apk" => apk(sim, vmid, args),
        "rc-update" => rc_update(sim, vmid, args),
        "rc-service" => match (args.first(), args.get(1)) {
            (Some(svc), Some(action)) => service(sim, vmid, svc, action),
            _ => Output::err(1, "Usage: rc-service <service> <command>"),
        },
        "service" => match (args.first(), args.get(1)) {
            (Some(svc), Some(action)) => service(sim, vmid, svc, action),
            _ => Output::err(1, "Usage: service <service> <command>"),
        },
        "rc-status" => {
            let (boot, running) = with_ct(sim, vmid, |c| (c.os.boot_services.clone(), c.os.running_services.clone())).unwrap_or_default();
            let mut out = "Runlevel: default\n".to_string();
            for s in &boot {
                out.push_str(&format!(
                    " {s:<40} [  {}  ]\n",
                    if running.contains(s) { "started" } else { "stopped" }
                ));
            }
            Output::ok(out)
        }
        "docker" => docker(sim, vmid, args).await,
        "docker-compose" => Output::err(127, "docker-compose: not found"),
        other => Output::err(127, format!("{other}: not found")),
    }
}

fn dir_size(p: &std::path::Path) -> u64 {
    if p.is_file() {
        return p.metadata().map(|m| m.len()).unwrap_or(0);
    }
    std::fs::read_dir(p)
        .map(|rd| rd.filter_map(Result::ok).map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

fn apk(sim: &Sim, vmid: u32, args: &[String]) -> Output {
    match args.first().map(String::as_str) {
        Some("update") => {
            with_ct(sim, vmid, |c| c.os.index_updated = true);
            Output::ok(
                "fetch https://dl-cdn.alpinelinux.org/alpine/v3.22/main/x86_64/APKINDEX.tar.gz\nfetch https://dl-cdn.alpinelinux.org/alpine/v3.22/community/x86_64/APKINDEX.tar.gz\nv3.22.1-12-g0e3c1f2 [https://dl-cdn.alpinelinux.org/alpine/v3.22/main]\nOK: 26326 distinct packages available\n",
            )
        }
        Some("add") => {
            let pkgs: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
            if pkgs.is_empty() {
                return Output::err(1, "ERROR: No packages specified");
            }
            let bad: Vec<&&String> = pkgs
                .iter()
                .filter(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+=<>~".contains(c)))
                .collect();
            if !bad.is_empty() {
                return Output::err(
                    1,
                    format!(
                        "ERROR: unable to select packages:\n  {} (no such package):\n    required by: world[{}]",
                        bad[0], bad[0]
                    ),
                );
            }
            let mut out = String::new();
            let mut installed = with_ct(sim, vmid, |c| c.os.packages.clone()).unwrap_or_default();
            let mut n = 0;
            let mut expanded: Vec<String> = Vec::new();
            for p in &pkgs {
                let name = p.split(['=', '<', '>', '~']).next().unwrap_or(p).to_string();
                if name == "docker" {
                    for dep in ["containerd", "runc", "docker-cli", "docker-engine", "docker-openrc"] {
                        expanded.push(dep.into());
                    }
                }
                expanded.push(name);
            }
            let total = expanded.iter().filter(|p| !installed.contains(*p)).count();
            for p in expanded {
                if installed.insert(p.clone()) {
                    n += 1;
                    out.push_str(&format!("({n}/{total}) Installing {p} ({})\n", pkg_version(&p)));
                }
            }
            if installed.contains("docker") {
                out.push_str("Executing docker-28.3.3-r0.pre-install\n");
            }
            out.push_str(&format!(
                "OK: {} MiB in {} packages\n",
                12 + installed.len() * 9,
                14 + installed.len()
            ));
            with_ct(sim, vmid, |c| c.os.packages = installed);
            Output::ok(out)
        }
        Some("del") => {
            for p in args[1..].iter().filter(|a| !a.starts_with('-')) {
                with_ct(sim, vmid, |c| c.os.packages.remove(p));
            }
            Output::ok("OK\n")
        }
        Some("info") => {
            Output::ok(with_ct(sim, vmid, |c| c.os.packages.iter().map(|p| format!("{p}\n")).collect::<String>()).unwrap_or_default())
        }
        _ => Output::err(
            1,
            "apk-tools 2.14.9, compiled for x86_64.\n\nusage: apk [<OPTIONS>...] COMMAND [<ARGUMENTS>...]",
        ),
    }
}

fn service_exists(c: &super::state::Ct, svc: &str) -> bool {
    match svc {
        "docker" => c.os.packages.contains("docker") || c.os.packages.contains("docker-openrc"),
        "containerd" => c.os.packages.contains("containerd"),
        "crond" | "networking" | "sshd" | "syslog" | "local" => true,
        _ => c.os.packages.contains(svc),
    }
}

/// An OpenRC service exists when a package provides it or its script is in `/etc/init.d`.
fn init_script(sim: &Sim, vmid: u32, svc: &str) -> bool {
    !svc.contains('/') && sim.layout.ct_root(vmid).join("etc/init.d").join(svc).is_file()
}

fn rc_update(sim: &Sim, vmid: u32, args: &[String]) -> Output {
    let (Some(action), Some(svc)) = (args.first(), args.get(1)) else {
        return Output::ok(" docker | default\n");
    };
    let level = args.get(2).cloned().unwrap_or_else(|| "default".into());
    let script = init_script(sim, vmid, svc);
    with_ct(sim, vmid, |c| {
        if !script && !service_exists(c, svc) {
            return Output::err(1, format!(" * rc-update: service `{svc}' does not exist"));
        }
        match action.as_str() {
            "add" => {
                if c.os.boot_services.insert(svc.clone()) {
                    Output::ok(format!(" * service {svc} added to runlevel {level}\n"))
                } else {
                    Output::err(0, format!(" * rc-update: {svc} already installed in runlevel `{level}'; skipping"))
                }
            }
            "del" | "delete" => {
                c.os.boot_services.remove(svc);
                Output::ok(format!(" * service {svc} removed from runlevel {level}\n"))
            }
            _ => Output::err(1, format!(" * rc-update: unknown action `{action}'")),
        }
    })
    .unwrap_or_else(|| Output::err(1, "CT vanished"))
}

fn service(sim: &Sim, vmid: u32, svc: &str, action: &str) -> Output {
    let script = init_script(sim, vmid, svc);
    with_ct(sim, vmid, |c| {
        if !script && !service_exists(c, svc) {
            return Output::err(1, format!(" * rc-service: service `{svc}' does not exist"));
        }
        let label = if svc == "docker" {
            "Docker Daemon".to_string()
        } else {
            svc.to_string()
        };
        match action {
            "start" => {
                if !c.os.running_services.insert(svc.to_string()) {
                    return Output::ok(format!(" * WARNING: {svc} has already been started\n"));
                }
                Output::ok(format!(" * Starting {label} ... [ ok ]\n"))
            }
            "stop" => {
                c.os.running_services.remove(svc);
                Output::ok(format!(" * Stopping {label} ... [ ok ]\n"))
            }
            "restart" => {
                c.os.running_services.insert(svc.to_string());
                Output::ok(format!(" * Stopping {label} ... [ ok ]\n * Starting {label} ... [ ok ]\n"))
            }
            "status" => {
                if c.os.running_services.contains(svc) {
                    Output::ok(" * status: started\n")
                } else {
                    Output::err(3, " * status: stopped")
                }
            }
            other => Output::err(1, format!(" * {svc}: unknown function `{other}'")),
        }
    })
    .unwrap_or_else(|| Output::err(1, "CT vanished"))
}

const DAEMON_DOWN: &str = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?";

async fn docker(sim: &Arc<Sim>, vmid: u32, args: &[String]) -> Output {
    let (has_docker, has_compose, daemon) = with_ct(sim, vmid, |c| {
        (c.os.has_docker(), c.os.has_compose(), c.os.running_services.contains("docker"))
    })
    .unwrap_or_default();
    if !has_docker {
        return Output::err(127, "docker: not found");
    }
    let sub = args.first().map(String::as_str).unwrap_or("");
    if sub == "compose" && !has_compose {
        return Output::err(125, "docker: 'compose' is not a docker command.\nSee 'docker --help'");
    }
    if sub == "version" || sub == "--version" || sub == "-v" {
        let client = "Client:\n Version:           28.3.3\n API version:       1.51\n Go version:        go1.24.6\n OS/Arch:           linux/amd64\n";
        if !daemon {
            return Output {
                status: 1,
                stdout: client.as_bytes().to_vec(),
                stderr: format!("{DAEMON_DOWN}\n").into_bytes(),
            };
        }
        return Output::ok(format!(
            "{client}\nServer:\n Engine:\n  Version:          28.3.3\n  API version:      1.51 (minimum version 1.24)\n  OS/Arch:          linux/amd64\n"
        ));
    }
    if !daemon {
        return Output::err(1, DAEMON_DOWN);
    }
    match sub {
        "ps" => {
            let projects = with_ct(sim, vmid, |c| c.os.projects.values().filter(|p| p.up).cloned().collect::<Vec<_>>()).unwrap_or_default();
            let mut out = format!(
                "{:<14} {:<24} {:<14} {:<20} {:<30} {}\n",
                "CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "PORTS", "NAMES"
            );
            for p in projects {
                for s in &p.services {
                    out.push_str(&format!(
                        "{:<14} {:<24} {:<14} {:<20} {:<30} {}\n",
                        short_id(&format!("{vmid}/{}/{}", p.name, s.name)),
                        s.image,
                        "\"entrypoint\"",
                        "Up 2 minutes",
                        ports_text(s),
                        container_name(&p, &s.name)
                    ));
                }
            }
            Output::ok(out)
        }
        "info" => Output::ok(
            "Client:\n Version:    28.3.3\n Context:    default\n\nServer:\n Containers: 0\n Server Version: 28.3.3\n Storage Driver: overlay2\n Cgroup Driver: cgroupfs\n",
        ),
        "images" => Output::ok("REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n"),
        "compose" => compose_cmd(sim, vmid, &args[1..]).await,
        other => Output::err(
            125,
            format!("docker: unknown command: docker {other}\n\nRun 'docker --help' for more information"),
        ),
    }
}

/// A docker-like 12-hex-digit id derived from `seed`.
fn short_id(seed: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(seed.as_bytes()))[..12].to_string()
}

fn container_name(p: &Project, svc: &str) -> String {
    format!("{}-{svc}-1", p.name)
}

fn ports_text(s: &super::state::ComposeService) -> String {
    s.ports
        .iter()
        .map(|(ip, h, c)| format!("{}:{h}->{c}/tcp", ip.clone().unwrap_or_else(|| "0.0.0.0".into())))
        .collect::<Vec<_>>()
        .join(", ")
}

fn project_name(dir: &str) -> String {
    let base = dir.trim_end_matches('/').rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    let clean: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    if clean.is_empty() { "root".into() } else { clean }
}

async fn compose_cmd(sim: &Arc<Sim>, vmid: u32, args: &[String]) -> Output {
    let mut dir: Option<String> = None;
    let mut files: Vec<String> = Vec::new();
    let mut name: Option<String> = None;
    let mut env_file: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a, None),
        };
        let takes = [
            "--project-directory",
            "-f",
            "--file",
            "-p",
            "--project-name",
            "--env-file",
            "--profile",
            "--ansi",
            "--progress",
        ];
        if takes.contains(&flag) {
            let v = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    match args.get(i) {
                        Some(v) => v.clone(),
                        None => return Output::err(1, format!("flag needs an argument: {flag}")),
                    }
                }
            };
            match flag {
                "--project-directory" => dir = Some(v),
                "-f" | "--file" => files.push(v),
                "-p" | "--project-name" => name = Some(v),
                "--env-file" => env_file = Some(v),
                _ => {}
            }
            i += 1;
            continue;
        }
        break;
    }
    let Some(sub) = args.get(i).cloned() else {
        return Output::err(1, "Usage:  docker compose [OPTIONS] COMMAND");
    };
    let sub_args: Vec<String> = args[i + 1..].to_vec();
    let dir = dir
        .or_else(|| {
            files.first().and_then(|f| {
                f.rsplit_once('/')
                    .map(|(d, _)| if d.is_empty() { "/".to_string() } else { d.to_string() })
            })
        })
        .unwrap_or_else(|| "/".into());
    let file = files
        .first()
        .cloned()
        .unwrap_or_else(|| format!("{}/docker-compose.yml", dir.trim_end_matches('/')));
    let file = if file.starts_with('/') {
        file
    } else {
        format!("{}/{file}", dir.trim_end_matches('/'))
    };
    let pname = name.unwrap_or_else(|| project_name(&dir));

    let load = || -> Result<Project, Output> {
        let path = ct_file(sim, vmid, "/", &file).ok_or_else(|| Output::err(1, "invalid path"))?;
        let mut candidates = vec![path.clone()];
        if files.is_empty() {
            for alt in ["compose.yaml", "compose.yml", "docker-compose.yaml"] {
                if let Some(p) = ct_file(sim, vmid, "/", &format!("{}/{alt}", dir.trim_end_matches('/'))) {
                    candidates.push(p);
                }
            }
        }
        let Some(found) = candidates.into_iter().find(|p| p.is_file()) else {
            return Err(if files.is_empty() {
                Output::err(14, "no configuration file provided: not found")
            } else {
                Output::err(14, format!("open {file}: no such file or directory"))
            });
        };
        let text = std::fs::read_to_string(&found).map_err(|e| Output::err(1, e.to_string()))?;
        let envp = env_file.clone().unwrap_or_else(|| format!("{}/.env", dir.trim_end_matches('/')));
        let env = ct_file(sim, vmid, "/", &envp)
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| compose::parse_env(&t))
            .unwrap_or_default();
        let text = compose::interpolate(&text, &env).map_err(|e| Output::err(15, e))?;
        let services = compose::parse_compose(&text).map_err(|e| Output::err(15, e))?;
        Ok(Project {
            name: pname.clone(),
            dir: dir.clone(),
            file: file.clone(),
            services,
            up: false,
            pulled: false,
            logs: Vec::new(),
        })
    };
    let existing = with_ct(sim, vmid, |c| c.os.projects.get(&dir).cloned()).flatten();

    match sub.as_str() {
        "config" => match load() {
            Ok(p) => Output::ok(serde_yaml::to_string(&serde_json::json!({"name": p.name, "services": p.services.iter().map(|s| (s.name.clone(), serde_json::json!({"image": s.image}))).collect::<serde_json::Map<_, _>>()})).unwrap_or_default()),
            Err(o) => o,
        },
        "pull" => match load() {
            Ok(mut p) => {
                let mut err = String::new();
                for s in &p.services {
                    err.push_str(&format!(" {} Pulled \n", s.name));
                }
                p.pulled = true;
                if let Some(e) = &existing {
                    p.up = e.up;
                    p.logs = e.logs.clone();
                }
                with_ct(sim, vmid, |c| c.os.projects.insert(dir.clone(), p));
                Output::ok_err(err)
            }
            Err(o) => o,
        },
        "up" => {
            if !sub_args.iter().any(|a| a == "-d" || a == "--detach" || (a.starts_with('-') && !a.starts_with("--") && a.contains('d'))) {
                return Output::err(1, "the simulator runs `docker compose up` only detached: add -d");
            }
            let mut p = match load() {
                Ok(p) => p,
                Err(o) => return o,
            };
            if let Some(old) = &existing {
                sim.apps.stop_project(vmid, &old.dir);
                p.logs = old.logs.clone();
            }
            let mut err = String::new();
            if !p.pulled && existing.as_ref().is_none_or(|e| !e.pulled) {
                for s in &p.services {
                    err.push_str(&format!(" {} Pulled \n", s.name));
                }
            }
            p.pulled = true;
            err.push_str(&format!(" Network {}_default  Created\n", p.name));
            if let Err(e) = sim.apps.start_project(sim, vmid, &p).await {
                sim.apps.stop_project(vmid, &p.dir);
                return Output { status: 1, stdout: Vec::new(), stderr: format!("{err}Error response from daemon: driver failed programming external connectivity on endpoint: {e}\n").into_bytes() };
            }
            for s in &p.services {
                err.push_str(&format!(" Container {}  Started\n", container_name(&p, &s.name)));
                for (_, h, c) in &s.ports {
                    p.logs.push(format!("{}  | listening on container port {c} (published {h})", container_name(&p, &s.name)));
                }
                p.logs.push(format!("{}  | ready", container_name(&p, &s.name)));
            }
            if p.logs.len() > 2000 {
                let cut = p.logs.len() - 2000;
                p.logs.drain(..cut);
            }
            p.up = true;
            with_ct(sim, vmid, |c| c.os.projects.insert(dir.clone(), p));
            sim.save();
            Output::ok_err(err)
        }
        "down" | "stop" => {
            let Some(mut p) = existing else {
                return match load() {
                    Ok(_) => Output::ok_err(""),
                    Err(o) => o,
                };
            };
            sim.apps.stop_project(vmid, &p.dir);
            let mut err = String::new();
            for s in &p.services {
                err.push_str(&format!(" Container {}  {}\n", container_name(&p, &s.name), if sub == "down" { "Removed" } else { "Stopped" }));
            }
            if sub == "down" {
                err.push_str(&format!(" Network {}_default  Removed\n", p.name));
            }
            p.up = false;
            with_ct(sim, vmid, |c| c.os.projects.insert(dir.clone(), p));
            sim.save();
            Output::ok_err(err)
        }
        "restart" | "start" => {
            let Some(p) = existing else { return Output::err(1, format!("no container found for project \"{pname}\": not found")) };
            sim.apps.stop_project(vmid, &p.dir);
            if let Err(e) = sim.apps.start_project(sim, vmid, &p).await {
                return Output::err(1, format!("Error response from daemon: {e}"));
            }
            let mut p = p;
            p.up = true;
            let err: String = p.services.iter().map(|s| format!(" Container {}  Started\n", container_name(&p, &s.name))).collect();
            with_ct(sim, vmid, |c| c.os.projects.insert(dir.clone(), p));
            sim.save();
            Output::ok_err(err)
        }
        "ps" => {
            let p = match existing {
                Some(p) => p,
                None => match load() {
                    Ok(p) => p,
                    Err(o) => return o,
                },
            };
            let running = sim.apps.running(vmid, &p.dir);
            let up = |svc: &str| p.up && (running.iter().any(|(s, _)| s == svc) || p.services.iter().any(|s| s.name == svc && s.ports.is_empty()));
            let json = sub_args.windows(2).any(|w| w[0] == "--format" && w[1] == "json") || sub_args.iter().any(|a| a == "--format=json");
            let all = sub_args.iter().any(|a| a == "-a" || a == "--all");
            let mut out = String::new();
            if json {
                for s in p.services.iter().filter(|s| all || up(&s.name)) {
                    let publishers: Vec<serde_json::Value> = s.ports.iter().map(|(ip, h, c)| serde_json::json!({"URL": ip.clone().unwrap_or_else(|| "0.0.0.0".into()), "TargetPort": c, "PublishedPort": h, "Protocol": "tcp"})).collect();
                    let state = if up(&s.name) { "running" } else { "exited" };
                    out.push_str(&serde_json::json!({"Name": container_name(&p, &s.name), "Service": s.name, "Project": p.name, "Image": s.image, "State": state, "Status": if state == "running" { "Up 2 minutes" } else { "Exited (0)" }, "Health": "", "ExitCode": 0, "Publishers": publishers}).to_string());
                    out.push('\n');
                }
            } else {
                out.push_str(&format!("{:<28} {:<24} {:<12} {:<20} {}\n", "NAME", "IMAGE", "SERVICE", "STATUS", "PORTS"));
                for s in p.services.iter().filter(|s| all || up(&s.name)) {
                    out.push_str(&format!("{:<28} {:<24} {:<12} {:<20} {}\n", container_name(&p, &s.name), s.image, s.name, if up(&s.name) { "Up 2 minutes" } else { "Exited (0)" }, ports_text(s)));
                }
            }
            Output::ok(out)
        }
        "logs" => {
            let Some(p) = existing else { return Output::ok("") };
            let mut tail: Option<usize> = None;
            let mut svc_filter: Vec<String> = Vec::new();
            let mut j = 0;
            while j < sub_args.len() {
                let a = &sub_args[j];
                if a == "--tail" || a == "-n" {
                    tail = sub_args.get(j + 1).and_then(|t| t.parse().ok());
                    j += 2;
                    continue;
                }
                if let Some(t) = a.strip_prefix("--tail=") {
                    tail = t.parse().ok();
                } else if !a.starts_with('-') {
                    svc_filter.push(a.clone());
                }
                j += 1;
            }
            let lines: Vec<&String> = p.logs.iter().filter(|l| svc_filter.is_empty() || svc_filter.iter().any(|s| l.starts_with(&container_name(&p, s)))).collect();
            let start = tail.map(|t| lines.len().saturating_sub(t)).unwrap_or(0);
            Output::ok(lines[start..].iter().map(|l| format!("{l}\n")).collect::<String>())
        }
        "images" => {
            let Some(p) = existing else { return Output::ok("") };
            let mut out = format!("{:<28} {:<24} {:<10} {:<14} {}\n", "CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE");
            for s in &p.services {
                let (repo, tag) = s.image.rsplit_once(':').filter(|(_, t)| !t.contains('/')).unwrap_or((s.image.as_str(), "latest"));
                out.push_str(&format!("{:<28} {:<24} {:<10} {:<14} {}\n", container_name(&p, &s.name), repo, tag, short_id(&s.image), "150MB"));
            }
            Output::ok(out)
        }
        other => Output::err(1, format!("unknown docker command: \"compose {other}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_word_splitting() {
        assert_eq!(
            split_words("pct exec 100 -- echo 'a b' \"c \\\"d\\\"\" e\\ f").unwrap(),
            vec!["pct", "exec", "100", "--", "echo", "a b", "c \"d\"", "e f"]
        );
        assert_eq!(split_words("x '' y").unwrap(), vec!["x", "", "y"]);
        assert_eq!(
            split_words("'; rm -rf /' '$(id)' 'it'\\''s'").unwrap(),
            vec!["; rm -rf /", "$(id)", "it's"]
        );
        assert_eq!(split_words("a 'multi\nline'").unwrap(), vec!["a", "multi\nline"]);
        assert!(split_words("'open").is_err());
        assert!(split_words("\"open").is_err());
    }

    #[test]
    fn stdin_detection() {
        let w = split_words("pct push 100 /dev/stdin /opt/x --perms 0600").unwrap();
        assert!(needs_stdin(&w));
        assert!(!needs_stdin(&split_words("pct exec 100 -- cat /dev/stdin").unwrap()));
    }

    #[test]
    fn project_names() {
        assert_eq!(project_name("/opt/proximity/My.App"), "myapp");
        assert_eq!(project_name("/"), "root");
    }
}
