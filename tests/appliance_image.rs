//! `appliance/build-image.sh` (what `make image` runs): builds a CT template from a stand-in
//! minirootfs made of Debian's busybox-static, checks its listing (files, modes, owners,
//! mtimes), that two builds are byte-identical, and boots the service from it: the template is
//! unpacked and `proximity serve` (the command of the OpenRC service) runs chrooted in a fresh
//! mount + network namespace, where `GET /api/v1/system/health` must answer on loopback.
//! Needs root (namespaces, chroot); prints SKIPPED otherwise. The binary is the debug build
//! (dynamically linked, so its libraries are copied next to it for the boot; the real image
//! carries the static binary, see `make static`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{bin, is_root, skip};

const EPOCH: &str = "1767225600";

fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A minirootfs stand-in: busybox with its applet links, the usual directories.
fn standin_minirootfs(dir: &Path) -> PathBuf {
    let root = dir.join("mini");
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc/init.d",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "var/log",
        "root",
        "lib",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "mkdir", "ps", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/alpine-release"), "3.99.0-standin\n").unwrap();
    std::fs::write(root.join("etc/hostname"), "localhost\n").unwrap();
    let tarball = dir.join("minirootfs.tar.gz");
    sh(Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-czf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .arg("."));
    tarball
}

fn build(repo: &Path, mini: &Path, out: &Path) -> (PathBuf, String) {
    let t = Instant::now();
    let stdout = sh(Command::new(repo.join("appliance/build-image.sh"))
        .current_dir(repo)
        .args(["--minirootfs"])
        .arg(mini)
        .arg("--binary")
        .arg(bin())
        .args(["--allow-dynamic", "--zstd-level", "3", "--version", "0.0.0-test", "--out"])
        .arg(out)
        .env("SOURCE_DATE_EPOCH", EPOCH));
    eprintln!("build-image.sh ({:.1} s):\n{stdout}", t.elapsed().as_secs_f64());
    (out.join("proximity-appliance-0.0.0-test-amd64.tar.zst"), stdout)
}

/// `tar -tv` of a template: path → (mode string, owner, mtime).
fn listing(template: &Path) -> BTreeMap<String, (String, String, String)> {
    let text = sh(Command::new("tar")
        .args(["--zstd", "--numeric-owner", "--full-time", "-tvf"])
        .arg(template));
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // mode owner size date time path [-> target]
            let path = f[5].trim_start_matches("./").trim_end_matches('/').to_string();
            (path, (f[0].to_string(), f[1].to_string(), format!("{} {}", f[3], f[4])))
        })
        .collect()
}

#[test]
fn image_is_complete_reproducible_and_boots() {
    if !is_root() {
        skip("image_is_complete_reproducible_and_boots", "needs root for namespaces and chroot");
        return;
    }
    if !Path::new("/bin/busybox").exists() || Command::new("unshare").arg("--version").output().is_err() {
        skip(
            "image_is_complete_reproducible_and_boots",
            "needs /bin/busybox (apt-get install busybox-static) and unshare",
        );
        return;
    }
    let t0 = Instant::now();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let mini = standin_minirootfs(tmp.path());
    let (template, out) = build(&repo, &mini, &tmp.path().join("out1"));
    assert!(out.contains("binary:") && out.contains("template:"), "sizes not printed: {out}");

    // Contents.
    let list = listing(&template);
    for (path, mode) in [
        ("usr/bin/proximity", "-rwxr-xr-x"),
        ("etc/init.d/proximity", "-rwxr-xr-x"),
        ("etc/proximity/proximity.toml", "-rw-r--r--"),
        ("etc/sysctl.d/90-proximity.conf", "-rw-r--r--"),
        ("etc/motd", "-rw-r--r--"),
        ("etc/local.d/proximity-firstboot.start", "-rwxr-xr-x"),
        ("var/lib/proximity", "drwx------"),
        ("etc/runlevels/default/proximity", "lrwxrwxrwx"),
        ("bin/busybox", "-rwxr-xr-x"),
        ("etc/alpine-release", "-rw-r--r--"),
    ] {
        let e = list
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from the template: {list:?}"));
        assert_eq!(e.0, mode, "{path}");
    }
    let mtime = list["usr/bin/proximity"].2.clone();
    assert!(mtime.starts_with("2026-01-01"), "{mtime}");
    for (p, (_, owner, t)) in &list {
        assert_eq!(owner, "0/0", "{p} not owned by root");
        assert_eq!(*t, mtime, "{p} has its own mtime");
    }
    // Nothing but the minirootfs, the overlay and the binary.
    let allowed = |p: &str| {
        p.is_empty()
            || p.starts_with("bin")
            || p.starts_with("sbin")
            || p.starts_with("usr")
            || p.starts_with("etc")
            || p.starts_with("var")
            || ["dev", "proc", "sys", "tmp", "run", "root", "lib"].contains(&p)
    };
    for p in list.keys() {
        assert!(allowed(p), "unexpected entry {p}");
    }
    let bin_bytes = std::fs::metadata(bin()).unwrap().len();
    let img_bytes = std::fs::metadata(&template).unwrap().len();
    eprintln!("sizes: binary {bin_bytes} bytes (debug), template {img_bytes} bytes");

    // Reproducible: a second build is byte-identical; the .sha256 file matches.
    let (template2, _) = build(&repo, &mini, &tmp.path().join("out2"));
    let sum = |p: &Path| sh(Command::new("sha256sum").arg(p)).split_whitespace().next().unwrap().to_string();
    assert_eq!(sum(&template), sum(&template2), "two builds differ");
    let recorded = std::fs::read_to_string(template.with_extension("zst.sha256")).unwrap();
    assert!(recorded.starts_with(&sum(&template)), "{recorded}");

    // Boot the service from the template in a fresh mount + network namespace.
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    sh(Command::new("tar").args(["--zstd", "-xpf"]).arg(&template).arg("-C").arg(&root));
    // The debug binary is dynamic: give the chroot its libraries (the static one needs none).
    let ldd = sh(Command::new("ldd").arg(bin()));
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let dst = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(lib, &dst).unwrap();
    }
    // As in a CT, /dev is populated (LXC provides it; a static glibc binary reads
    // /dev/urandom when the getrandom symbol is not linked in).
    // The shipped config, with the firewall off (no nft in the stand-in root).
    let conf_path = root.join("etc/proximity/proximity.toml");
    let conf = std::fs::read_to_string(&conf_path)
        .unwrap()
        .replace("firewall = true", "firewall = false");
    assert!(conf.contains("firewall = false"));
    std::fs::write(&conf_path, conf).unwrap();
    // The service's command line, read from the OpenRC script itself.
    let rc = std::fs::read_to_string(root.join("etc/init.d/proximity")).unwrap();
    let args = rc
        .lines()
        .find_map(|l| l.strip_prefix("command_args=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("command_args in the OpenRC service");
    let script = format!(
        r#"set -u
ip link set lo up
ip link add eth0 type veth peer name eth0p && ip addr add 192.0.2.2/24 dev eth0 && ip link set eth0p up && ip link set eth0 up
ip link add eth1 type veth peer name eth1p && ip link set eth1p up && ip link set eth1 up
mount -t proc proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
chroot "$ROOT" /usr/bin/proximity {args} >"$ROOT/var/log/proximity.log" 2>&1 &
pid=$!
code=000
for i in $(seq 1 100); do
  code=$(curl -sk -o "$ROOT/tmp/health.json" -w '%{{http_code}}' --max-time 2 https://127.0.0.1:8443/api/v1/system/health || true)
  [ "$code" = 200 ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.3
done
echo "health=$code"
cat "$ROOT/tmp/health.json" 2>/dev/null; echo
kill -TERM $pid 2>/dev/null
for i in $(seq 1 50); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done
kill -KILL $pid 2>/dev/null
umount "$ROOT/dev"
umount "$ROOT/proc"
"#
    );
    let t = Instant::now();
    let o = Command::new("timeout")
        .args(["60", "unshare", "--mount", "--net", "--fork", "sh", "-c", &script])
        .env("ROOT", &root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let log = std::fs::read_to_string(root.join("var/log/proximity.log")).unwrap_or_default();
    eprintln!(
        "boot ({:.1} s):\n{stdout}\n{}\n--- proximity.log (tail)\n{}",
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&o.stderr),
        log.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(stdout.contains("health=200"), "the service did not answer its health endpoint");
    let body: serde_json::Value = serde_json::from_str(stdout.lines().nth(1).unwrap_or("")).expect("health is JSON");
    assert!(body.is_object(), "{body}");
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
    // The stand-in root has no CA store: the daemon must have fallen back, not panicked.
    assert!(log.contains("no usable system CA store"), "no CA-store fallback logged:\n{log}");
    eprintln!("appliance image test: {:.1} s", t0.elapsed().as_secs_f64());
}
