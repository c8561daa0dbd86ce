//! No secret ever reaches the logs: a full client session (ticket login, renewal, token
//! calls, task waits, errors, host registry, SSH) runs with every log line captured at TRACE
//! (including `log`-crate output of hyper/rustls/russh bridged into tracing), then the capture
//! is searched for the password, the token secret and anything ticket- or header-shaped.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proximity::pve::client::{Auth, Client, ClientConfig, ClientOptions, Tls};
use proximity::pve::hosts::{HostSpec, Hosts};
use proximity::pve::ssh::{SshExec, SshKey};
use proximity::pve::types::*;
use proximity::sim::SimConfig;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn no_secret_in_any_log_line() {
    use tracing_subscriber::util::SubscriberInitExt as _;
    let cap = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(cap.clone())
        .with_ansi(false)
        .finish()
        .try_init()
        .expect("first subscriber in this test binary");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (password, token_secret) = rt.block_on(session(dir.path()));
    drop(rt);
    let text = String::from_utf8_lossy(&cap.0.lock().unwrap()).into_owned();
    assert!(
        text.lines().count() > 50,
        "the capture must actually contain the session's logs:\n{text}"
    );
    assert!(text.contains("PVE request parameters"), "TRACE-level client logs are captured");
    assert!(text.contains("PVE ticket renewed"), "the session includes a ticket renewal");
    assert!(
        text.contains("rustls::") && text.contains("russh"),
        "log-crate output (rustls, russh) is bridged and captured"
    );
    for (what, needle) in [
        ("root password", password.as_str()),
        ("token secret", token_secret.as_str()),
        ("ticket", "PVE:root@pam:"),
        ("ticket (url-encoded)", "PVE%3Aroot%40pam"),
        ("cookie header", "PVEAuthCookie="),
        ("token header", "PVEAPIToken="),
        ("CT password", "ct-secret-pw"),
    ] {
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            panic!("{what} appears in the logs: {line}");
        }
    }
}

async fn session(dir: &std::path::Path) -> (String, String) {
    let mut cfg = SimConfig::new(dir.join("sim"));
    cfg.task_delay_ms = 5;
    let sim = proximity::sim::start(cfg).await.unwrap();
    let ticket = Client::with_options(
        ClientConfig {
            base_url: sim.base_url(),
            auth: Auth::Ticket {
                user: "root@pam".into(),
                password: sim.root_password.clone(),
            },
            tls: Tls::Fingerprint(sim.fingerprint.clone()),
            timeout: Duration::from_secs(15),
        },
        ClientOptions {
            ticket_renew_after: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .unwrap();
    ticket.version().await.unwrap();
    let list = ticket.aplinfo("pve1").await.unwrap();
    let t = list.iter().find(|a| a.os == "alpine").unwrap().template.clone();
    let u = ticket.aplinfo_download("pve1", "local", &t).await.unwrap();
    ticket.wait_task(&u, Duration::from_secs(30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut req = CreateLxc::new(101, &format!("local:vztmpl/{t}"));
    req.password = Some("ct-secret-pw".into());
    req.rootfs = Some("local-lvm:2".into());
    let u = ticket.lxc_create("pve1", &req).await.unwrap();
    ticket.wait_task(&u, Duration::from_secs(30)).await.unwrap();
    ticket
        .lxc_set_config("pve1", 101, &Params::new().set("features", "nesting=1,keyctl=1"), &[], None)
        .await
        .unwrap();

    // Token client through the host registry (secrets sealed at rest).
    let store = proximity::store::Store::open(&dir.join("db.redb")).unwrap();
    let hosts = Hosts::new(store, proximity::secrets::SecretBox::ephemeral());
    hosts
        .add(HostSpec {
            name: "sim".into(),
            url: sim.base_url(),
            auth: Auth::Token {
                id: sim.token_id.clone(),
                secret: sim.token_secret.clone(),
            },
            fingerprint: Some(sim.fingerprint.clone()),
            ca_pem: None,
            ssh: Some(sim.ssh_addr.to_string()),
            ssh_user: "root".into(),
            bridge: "vmbr0".into(),
            storage: "local-lvm".into(),
        })
        .unwrap();
    hosts.sync("sim").await.unwrap();
    let token = hosts.client("sim").unwrap();
    let u = token.lxc_start("pve1", 101).await.unwrap();
    token.wait_task(&u, Duration::from_secs(30)).await.unwrap();
    let _ = token.lxc_start("pve1", 101).await.unwrap_err();
    let _ = token
        .lxc_set_config("pve1", 101, &Params::new().set("features", "nesting=1,keyctl=1,fuse=1"), &[], None)
        .await
        .unwrap_err();

    // SSH with the stored appliance key.
    let key: SshKey = hosts.ssh_key().unwrap();
    sim.authorize_ssh_key(&key.public_openssh()).unwrap();
    let (_, ssh): (_, SshExec) = hosts.ssh_for_node("pve1").await.unwrap();
    let out = ssh.pct_exec(101, &["echo", "hello"]).await.unwrap();
    assert_eq!(out.stdout, "hello\n");
    ssh.close().await;

    // Failed logins are logged without the attempted secret.
    let bad = Client::new(ClientConfig {
        base_url: sim.base_url(),
        auth: Auth::Ticket {
            user: "root@pam".into(),
            password: format!("{}-wrong", sim.root_password),
        },
        tls: Tls::Fingerprint(sim.fingerprint.clone()),
        timeout: Duration::from_secs(15),
    })
    .unwrap();
    let _ = bad.version().await.unwrap_err();
    let secrets = (sim.root_password.clone(), sim.token_secret.clone());
    sim.shutdown().await;
    secrets
}
