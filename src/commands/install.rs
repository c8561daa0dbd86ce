//! `proximity install [--dry-run | --uninstall]`: observe the node (PVE API, the
//! `authorized_keys` file, the install record), ask `install::plan` what is missing, carry it
//! out step by step and record every creation right after it succeeds, so an interrupted run
//! resumes and `--uninstall` removes exactly what was created.
//!
//! Local files: the record (`--state-file`, 0600 in a 0700 directory) and next to it `seed/`
//! with the appliance's data directory made before the container exists (database with the
//! admin user, SSH key and CA; the secrets key; the PVE token secret). The seed is pushed into
//! the container and kept so a re-run can push again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

use crate::cli::InstallArgs;
use crate::install::plan::{self, Action, CtSeen, IndexEntry, InstallRecord, Observed, Settings, Wan};
use crate::install::{self as inst, NodeAccess};
use crate::pve::client::{Auth, Client, ClientConfig, Tls};
use crate::pve::ssh::{MemoryHostKeys, SshExec, SshKey};
use crate::pve::types::{CreateLxc, DeleteLxc, NetworkCreate};

const ADMIN_USER: &str = "admin";
const KEY_COMMENT: &str = "proximity-appliance";
const DOMAIN: &str = "prox.local";
const API_PORT: u16 = 8443;

/// Run the installer.
pub fn run(args: InstallArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(args))
}

/// Files of the seeded data directory.
struct Seed {
    dir: PathBuf,
}

impl Seed {
    fn db(&self) -> PathBuf {
        self.dir.join("proximity.redb")
    }
    fn secret_key(&self) -> PathBuf {
        self.dir.join("secret.key")
    }
    fn token_secret(&self) -> PathBuf {
        self.dir.join("pve-token.secret")
    }
}

/// What the seed gives the installer.
struct SeedInfo {
    key: SshKey,
    ca_fingerprint: String,
    /// The admin password, only when it was created by this run.
    admin_password: Option<String>,
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.sync_all().ok();
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {} (run the installer as root on the node)", dir.display()))
}

fn load_record(path: &Path) -> anyhow::Result<InstallRecord> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| {
            format!(
                "the install record {} is unreadable; fix or remove it (it lists what --uninstall removes)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(InstallRecord::default()),
        Err(e) => Err(anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn save_record(path: &Path, r: &InstallRecord) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    write_private(path, &serde_json::to_vec_pretty(r)?)
}

/// Open (or make) the appliance's data directory in `seed.dir`.
fn seed_data(seed: &Seed) -> anyhow::Result<SeedInfo> {
    private_dir(&seed.dir)?;
    let secrets = crate::secrets::SecretBox::open_or_create(&seed.secret_key())?;
    let store = crate::store::Store::open(&seed.db()).with_context(|| format!("opening {}", seed.db().display()))?;
    let key = SshKey::load_or_create(&store, &secrets)?;
    let ca = crate::tls::CertAuthority::load_or_create(&store, &secrets, DOMAIN)?;
    let admin_password = if crate::api::auth::users::find_by_name(&store, ADMIN_USER)?.is_none() {
        use base64::Engine;
        let pw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 15]>());
        crate::api::auth::users::create(&store, ADMIN_USER, &pw, crate::api::auth::users::Role::Admin, false)?;
        Some(pw)
    } else {
        None
    };
    Ok(SeedInfo {
        key,
        ca_fingerprint: ca.fingerprint_sha256(),
        admin_password,
    })
}

fn key_id(line: &str) -> Option<(String, String)> {
    let mut it = line.split_whitespace();
    Some((it.next()?.to_string(), it.next()?.to_string()))
}

fn key_authorized(file: &Path, public: &str) -> bool {
    let Some(want) = key_id(public) else { return false };
    std::fs::read_to_string(file)
        .map(|t| t.lines().any(|l| key_id(l).as_ref() == Some(&want)))
        .unwrap_or(false)
}

fn authorize_key(file: &Path, line: &str) -> anyhow::Result<()> {
    if let Some(dir) = file.parent() {
        private_dir(dir)?;
    }
    let mut text = std::fs::read_to_string(file).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    write_private(file, text.as_bytes())
}

fn unauthorize_key(file: &Path, line: &str) -> anyhow::Result<()> {
    let Some(want) = key_id(line) else { return Ok(()) };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("cannot read {}: {e}", file.display()),
    };
    let kept: String = text
        .lines()
        .filter(|l| key_id(l).as_ref() != Some(&want))
        .map(|l| format!("{l}\n"))
        .collect();
    write_private(file, kept.as_bytes())
}

/// The node certificate's fingerprint: the flag, else the node's own certificate.
fn fingerprint(args: &InstallArgs) -> anyhow::Result<String> {
    if let Some(f) = &args.fingerprint {
        crate::pve::client::parse_fingerprint(f).map_err(|e| anyhow!("--fingerprint: {e}"))?;
        return Ok(f.clone());
    }
    let pem_path = Path::new("/etc/pve/local/pve-ssl.pem");
    let pem = std::fs::read(pem_path).map_err(|e| {
        anyhow!(
            "cannot read {} ({e}); run the installer on the Proxmox node as root, or pass --fingerprint (the SHA-256 fingerprint shown under node → System → Certificates)",
            pem_path.display()
        )
    })?;
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| anyhow!("{} holds no certificate; pass --fingerprint", pem_path.display()))?
        .map_err(|e| anyhow!("{}: {e}; pass --fingerprint", pem_path.display()))?;
    Ok(crate::pve::client::cert_fingerprint(&der))
}

fn client(args: &InstallArgs, fp: &str) -> anyhow::Result<Client> {
    let auth = match (&args.password, &args.token_id, &args.token_secret) {
        (Some(pw), _, _) => Auth::Ticket {
            user: args.user.clone(),
            password: pw.clone(),
        },
        (None, Some(id), Some(secret)) => Auth::Token {
            id: id.clone(),
            secret: secret.clone(),
        },
        _ => bail!(
            "no credentials for the Proxmox API: pass --password (or PROXIMITY_PVE_PASSWORD) for root@pam, or --token-id and --token-secret (PROXIMITY_PVE_TOKEN_ID/_SECRET) of a token with privsep=0"
        ),
    };
    Ok(Client::new(ClientConfig {
        base_url: args.api_url.clone(),
        auth,
        tls: Tls::Fingerprint(fp.to_string()),
        timeout: Duration::from_secs(60),
    })?)
}

async fn pick_node(c: &Client, wanted: Option<&str>) -> anyhow::Result<String> {
    let nodes = c
        .nodes()
        .await
        .context("listing the cluster's nodes (check --api-url, --fingerprint and the credentials)")?;
    if let Some(w) = wanted {
        return nodes
            .iter()
            .find(|n| n.node == w)
            .map(|n| n.node.clone())
            .ok_or_else(|| anyhow!("node `{w}` is not in the cluster (nodes: {})", names(&nodes)));
    }
    if nodes.len() == 1 {
        return Ok(nodes[0].node.clone());
    }
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host = host.trim().split('.').next().unwrap_or("");
    nodes
        .iter()
        .find(|n| n.node == host)
        .map(|n| n.node.clone())
        .ok_or_else(|| anyhow!("the cluster has several nodes ({}); choose one with --node", names(&nodes)))
}

fn names(nodes: &[crate::pve::types::NodeInfo]) -> String {
    nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>().join(", ")
}

async fn pick_storage(c: &Client, node: &str, given: Option<&str>, content: &str, flag: &str) -> anyhow::Result<String> {
    let st = c.storages(node, Some(content)).await.context("listing storages")?;
    if let Some(g) = given {
        return st
            .iter()
            .find(|s| s.storage == g)
            .map(|s| s.storage.clone())
            .ok_or_else(|| anyhow!("storage `{g}` ({flag}) does not exist on {node} or does not hold `{content}`"));
    }
    st.iter()
        .find(|s| s.supports(content) && s.enabled.unwrap_or(true) && s.active.unwrap_or(true))
        .map(|s| s.storage.clone())
        .ok_or_else(|| anyhow!("no storage on {node} holds `{content}`; choose one with {flag}"))
}

struct Ctx {
    args: InstallArgs,
    c: Client,
    s: Settings,
    fingerprint: String,
    seed: Seed,
    record: InstallRecord,
}

async fn observe(cx: &Ctx, key_line: Option<&str>) -> anyhow::Result<Observed> {
    let c = &cx.c;
    let node = &cx.s.node;
    let version = c.version().await.context("reading the Proxmox VE version")?;
    let net = c.network(node).await.context("reading the node's network configuration")?;
    // With staged changes the listing shows the staged set; the record tells what is active.
    let listed: Vec<String> = net.ifaces.iter().map(|i| i.iface.clone()).collect();
    let (ifaces, staged_ifaces) = match &net.changes {
        Some(d) if !d.trim().is_empty() => {
            let active = net
                .ifaces
                .iter()
                .filter(|i| i.active == Some(true))
                .map(|i| i.iface.clone())
                .collect();
            (active, Some(listed))
        }
        _ => (listed, None),
    };
    let templates = c
        .storage_content(node, &cx.s.template_storage, Some("vztmpl"), None)
        .await
        .context("listing templates")?
        .into_iter()
        .map(|t| t.volid)
        .collect();
    let index = c
        .aplinfo(node)
        .await
        .context("reading the template index (aplinfo)")?
        .into_iter()
        .map(|a| IndexEntry {
            template: a.template,
            os: a.os,
            section: a.section,
            version: a.version,
        })
        .collect();
    let cts = c.lxc_list(node).await.context("listing containers")?;
    let ct = cts.iter().find(|t| t.vmid == u64::from(cx.s.vmid)).map(|t| CtSeen {
        running: t.status == "running",
    });
    let mut bridge_users = Vec::new();
    for t in &cts {
        let Ok(cfg) = c.lxc_config(node, t.vmid as u32).await else {
            continue;
        };
        if cfg
            .nets()
            .iter()
            .any(|(_, n)| n.bridge.as_deref() == Some(cx.s.lan_bridge.as_str()))
        {
            bridge_users.push(t.vmid as u32);
        }
    }
    let token_exists = c
        .token_exists(&cx.s.token_user, &cx.s.token_name)
        .await
        .context("checking the appliance's API token")?;
    let key_authorized = key_line.is_some_and(|l| key_authorized(&cx.args.authorized_keys, l));
    Ok(Observed {
        pve_release: version.release,
        ifaces,
        staged_ifaces,
        templates,
        index,
        ct,
        bridge_users,
        token_exists,
        key_authorized,
    })
}

async fn wait(c: &Client, upid: crate::pve::upid::Upid, secs: u64, what: &str) -> anyhow::Result<()> {
    let st = c
        .wait_task(&upid, Duration::from_secs(secs))
        .await
        .with_context(|| format!("{what} (task {upid})"))?;
    if !st.is_success() {
        bail!("{what} failed: {}", st.exitstatus.unwrap_or_default());
    }
    Ok(())
}

async fn node_address(cx: &Ctx) -> anyhow::Result<String> {
    if let Some(a) = &cx.args.node_address {
        return Ok(a.clone());
    }
    let net = cx.c.network(&cx.s.node).await?;
    net.ifaces
        .iter()
        .find(|i| i.iface == cx.s.wan_bridge)
        .and_then(|i| {
            i.address
                .clone()
                .or_else(|| i.cidr.as_deref().and_then(|c| c.split('/').next()).map(str::to_string))
        })
        .ok_or_else(|| anyhow!("{} has no IPv4 address on {}; pass --node-address", cx.s.node, cx.s.wan_bridge))
}

fn port_of(url_or_endpoint: &str, default: u16) -> u16 {
    let rest = url_or_endpoint.split("://").last().unwrap_or(url_or_endpoint);
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(default)
}

async fn ssh(cx: &Ctx, key: &SshKey) -> anyhow::Result<SshExec> {
    SshExec::connect(&cx.args.ssh, "root", key, Arc::new(MemoryHostKeys::default()))
        .await
        .with_context(|| format!("connecting to the node's sshd at {} (pass --ssh HOST:PORT)", cx.args.ssh))
}

async fn push_files(cx: &Ctx, key: &SshKey) -> anyhow::Result<()> {
    let vmid = cx.s.vmid;
    let token_secret = std::fs::read_to_string(cx.seed.token_secret()).map_err(|_| {
        anyhow!(
            "the secret of API token {} is not in {}; remove the token (`pveum user token remove {} {}`) and re-run",
            cx.s.token_full_id(),
            cx.seed.token_secret().display(),
            cx.s.token_user,
            cx.s.token_name
        )
    })?;
    let addr = node_address(cx).await?;
    let config = inst::appliance_config(&NodeAccess {
        node: cx.s.node.clone(),
        url: format!("https://{addr}:{}", port_of(&cx.args.api_url, 8006)),
        fingerprint: cx.fingerprint.clone(),
        ssh: format!("{addr}:{}", port_of(&cx.args.ssh, 22)),
        token_id: cx.s.token_full_id(),
        token_secret: token_secret.trim().to_string(),
        bridge: cx.s.lan_bridge.clone(),
        storage: cx.s.rootfs_storage.clone(),
    })
    .map_err(|e| anyhow!(e))?;
    let binary = match &cx.args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("locating this executable (pass --binary)")?,
    };
    let bin = std::fs::read(&binary).with_context(|| format!("reading the binary {}", binary.display()))?;
    let db = std::fs::read(cx.seed.db()).with_context(|| format!("reading {}", cx.seed.db().display()))?;
    let secret = std::fs::read(cx.seed.secret_key()).with_context(|| format!("reading {}", cx.seed.secret_key().display()))?;
    let s = ssh(cx, key).await?;
    let mkdir = [
        "mkdir",
        "-p",
        "/etc/proximity",
        "/var/lib/proximity",
        "/etc/init.d",
        "/etc/sysctl.d",
        "/usr/bin",
    ];
    crate::pve::ssh::require_ok(&mkdir, s.pct_exec(vmid, &mkdir).await?)?;
    let files: [(&[u8], &str, u32); 7] = [
        (&bin, "/usr/bin/proximity", 0o755),
        (config.as_bytes(), "/etc/proximity/proximity.toml", 0o600),
        (inst::OPENRC_SERVICE.as_bytes(), "/etc/init.d/proximity", 0o755),
        (inst::SYSCTL_CONF.as_bytes(), "/etc/sysctl.d/90-proximity.conf", 0o644),
        (inst::MOTD.as_bytes(), "/etc/motd", 0o644),
        (&db, "/var/lib/proximity/proximity.redb", 0o600),
        (&secret, "/var/lib/proximity/secret.key", 0o600),
    ];
    for (bytes, dst, mode) in files {
        s.pct_push(vmid, bytes, dst, Some(mode))
            .await
            .with_context(|| format!("pct push {vmid} {dst}"))?;
    }
    s.close().await;
    Ok(())
}

async fn enable_service(cx: &Ctx, key: &SshKey) -> anyhow::Result<()> {
    let vmid = cx.s.vmid;
    let s = ssh(cx, key).await?;
    let apk = ["apk", "add", "--no-cache", "nftables"];
    let out = s.pct_exec(vmid, &apk).await?;
    if !out.success() {
        eprintln!(
            "warning: `apk add nftables` failed in CT {vmid} ({}); the firewall stays off until you run `pct exec {vmid} -- apk add nftables` with internet access",
            out.stderr.trim()
        );
    }
    let steps: [&[&str]; 2] = [
        &["rc-update", "add", "proximity", "default"],
        &["rc-service", "proximity", "restart"],
    ];
    for argv in steps {
        let out = s.pct_exec(vmid, argv).await?;
        // `rc-update add` of an enabled service says so and exits 0; anything else failing is an error.
        if !out.success() {
            bail!("`pct exec {vmid} -- {}` failed: {}", argv.join(" "), out.stderr.trim());
        }
    }
    s.close().await;
    Ok(())
}

async fn ct_address(cx: &Ctx) -> Option<String> {
    if let Wan::Static { ip, .. } = &cx.s.wan {
        return Some(ip.to_string());
    }
    let ifs = cx.c.lxc_interfaces(&cx.s.node, cx.s.vmid).await.ok()?;
    ifs.iter().find(|i| i.name == "eth0").and_then(|i| i.ipv4()).map(|a| a.to_string())
}

async fn wait_health(cx: &Ctx) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(cx.args.health_timeout);
    // The health endpoint is public and carries no secret; the certificate is the
    // appliance's own CA, which the user trusts later, so this probe does not verify it.
    let http = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .context("building the HTTP client for the health probe")?;
    let mut last = String::from("no address yet");
    while Instant::now() < deadline {
        if let Some(ip) = ct_address(cx).await {
            let url = format!("https://{ip}:{API_PORT}/api/v1/system/health");
            match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(ip),
                Ok(r) => last = format!("{url} answered {}", r.status()),
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    bail!(
        "the appliance did not become healthy within {} s ({last}); look at `pct exec {} -- cat /var/log/proximity.log`, then re-run the installer",
        cx.args.health_timeout,
        cx.s.vmid
    )
}

async fn execute(cx: &mut Ctx, a: &Action, seed: Option<&SeedInfo>) -> anyhow::Result<()> {
    let node = cx.s.node.clone();
    let need_seed = || seed.ok_or_else(|| anyhow!("internal: the seed is missing for `{a}`"));
    match a {
        Action::CreateBridge { iface } => {
            cx.c.network_create(
                &node,
                &NetworkCreate {
                    iface: iface.clone(),
                    kind: "bridge".into(),
                    autostart: Some(true),
                    comments: Some("Proximity app network (created by proximity install)".into()),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("staging bridge {iface}"))?;
            cx.record.bridge = Some(iface.clone());
        }
        Action::ApplyNetwork => {
            let upid = cx.c.network_apply(&node).await.context("applying the network configuration")?;
            wait(&cx.c, upid, 120, "applying the network configuration").await?;
        }
        Action::DownloadTemplate { storage, template } => {
            let upid =
                cx.c.aplinfo_download(&node, storage, template)
                    .await
                    .context("downloading the template")?;
            wait(&cx.c, upid, 900, "downloading the template").await?;
            cx.record.template = Some(plan::template_volid(storage, template));
            cx.record.template_storage = Some(storage.clone());
        }
        Action::CreateToken { user, name } => {
            let t =
                cx.c.token_create(user, name, false, "Proximity appliance (created by proximity install)")
                    .await
                    .with_context(|| format!("creating API token {user}!{name} (needs a root@pam ticket: pass --password)"))?;
            write_private(&cx.seed.token_secret(), t.value.as_bytes())?;
            cx.record.token = Some(t.full_tokenid);
        }
        Action::AuthorizeKey => {
            let line = format!(
                "{} {KEY_COMMENT}",
                need_seed()?
                    .key
                    .public_openssh()
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            authorize_key(&cx.args.authorized_keys, &line)?;
            cx.record.ssh_key_line = Some(line);
        }
        Action::CreateCt { vmid, ostemplate } => {
            let mut req = CreateLxc::new(*vmid, ostemplate);
            req.hostname = Some(cx.s.hostname.clone());
            req.memory = Some(u64::from(cx.s.memory_mib));
            req.swap = Some(256);
            req.cores = Some(u64::from(cx.s.cores));
            req.rootfs = Some(format!("{}:{}", cx.s.rootfs_storage, cx.s.disk_gib));
            req.nets = vec![cx.s.net0(), cx.s.net1()];
            req.unprivileged = true;
            req.features = Some("nesting=1".into());
            req.onboot = Some(true);
            req.description =
                Some("Proximity appliance (created by proximity install; remove with `proximity install --uninstall`)".into());
            req.tags = Some("proximity".into());
            let upid = cx.c.lxc_create(&node, &req).await.with_context(|| format!("creating CT {vmid}"))?;
            // Record before waiting: a failed create can leave a half-made CT to clean up.
            cx.record.vmid = Some(*vmid);
            save_record(&cx.args.state_file, &cx.record)?;
            wait(&cx.c, upid, 600, &format!("creating CT {vmid}")).await?;
        }
        Action::StartCt { vmid } => {
            let upid = cx.c.lxc_start(&node, *vmid).await.with_context(|| format!("starting CT {vmid}"))?;
            wait(&cx.c, upid, 120, &format!("starting CT {vmid}")).await?;
        }
        Action::PushFiles { .. } => {
            push_files(cx, &need_seed()?.key).await?;
            cx.record.files_pushed = true;
        }
        Action::EnableService { .. } => {
            enable_service(cx, &need_seed()?.key).await?;
            cx.record.service_enabled = true;
        }
        Action::StopCt { vmid } => {
            let upid = cx.c.lxc_stop(&node, *vmid).await.with_context(|| format!("stopping CT {vmid}"))?;
            wait(&cx.c, upid, 120, &format!("stopping CT {vmid}")).await?;
        }
        Action::DestroyCt { vmid } => {
            let opts = DeleteLxc {
                purge: true,
                destroy_unreferenced_disks: true,
                ..Default::default()
            };
            let upid =
                cx.c.lxc_delete(&node, *vmid, &opts)
                    .await
                    .with_context(|| format!("destroying CT {vmid}"))?;
            wait(&cx.c, upid, 300, &format!("destroying CT {vmid}")).await?;
            cx.record.vmid = None;
            cx.record.files_pushed = false;
            cx.record.service_enabled = false;
        }
        Action::DeleteToken { full_id } => {
            let (user, name) = full_id
                .split_once('!')
                .ok_or_else(|| anyhow!("recorded token id `{full_id}` is malformed"))?;
            cx.c.token_delete(user, name)
                .await
                .with_context(|| format!("deleting API token {full_id}"))?;
            cx.record.token = None;
        }
        Action::UnauthorizeKey => {
            if let Some(line) = &cx.record.ssh_key_line {
                unauthorize_key(&cx.args.authorized_keys, line)?;
            }
            cx.record.ssh_key_line = None;
        }
        Action::DeleteBridge { iface } => {
            cx.c.network_delete_iface(&node, iface)
                .await
                .with_context(|| format!("deleting bridge {iface}"))?;
            cx.record.bridge = None;
        }
        Action::DeleteTemplate { volid } => {
            let storage = volid.split(':').next().unwrap_or_default().to_string();
            if let Some(upid) =
                cx.c.storage_delete(&node, &storage, volid)
                    .await
                    .with_context(|| format!("deleting {volid}"))?
            {
                wait(&cx.c, upid, 120, &format!("deleting {volid}")).await?;
            }
            cx.record.template = None;
            cx.record.template_storage = None;
        }
    }
    save_record(&cx.args.state_file, &cx.record)
}

async fn run_async(args: InstallArgs) -> anyhow::Result<()> {
    let wan = Wan::parse(args.wan_ip.as_deref(), args.wan_gw.as_deref())?;
    let fp = fingerprint(&args)?;
    let c = client(&args, &fp)?;
    let record = load_record(&args.state_file)?;
    let node = match (&args.node, record.node.is_empty()) {
        (Some(n), _) => pick_node(&c, Some(n)).await?,
        (None, false) => record.node.clone(),
        (None, true) => pick_node(&c, None).await?,
    };
    if !record.node.is_empty() && record.node != node {
        bail!(
            "the install record {} belongs to node {}; run on that node or pass --state-file",
            args.state_file.display(),
            record.node
        );
    }
    let rootfs_storage = pick_storage(&c, &node, args.storage.as_deref(), "rootdir", "--storage").await?;
    let template_storage = match &record.template_storage {
        Some(s) if args.template_storage.is_none() => s.clone(),
        _ => pick_storage(&c, &node, args.template_storage.as_deref(), "vztmpl", "--template-storage").await?,
    };
    let s = Settings {
        node: node.clone(),
        vmid: record.vmid.unwrap_or(args.vmid),
        hostname: args.hostname.clone(),
        wan_bridge: args.wan_bridge.clone(),
        lan_bridge: record.bridge.clone().unwrap_or_else(|| "proximity-lan".into()),
        lan_cidr: "10.20.0.1/24".into(),
        wan,
        rootfs_storage,
        disk_gib: args.disk,
        memory_mib: args.memory,
        cores: args.cores,
        template_storage,
        token_user: "root@pam".into(),
        token_name: record
            .token
            .as_deref()
            .and_then(|t| t.split_once('!'))
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| args.token_name.clone()),
    };
    let seed = Seed {
        dir: args.state_file.parent().unwrap_or(Path::new(".")).join("seed"),
    };
    let mut cx = Ctx {
        args,
        c,
        s,
        fingerprint: fp,
        seed,
        record,
    };

    if cx.args.uninstall {
        return uninstall(&mut cx).await;
    }

    // The key line is known only from the seed; a dry run must not create one.
    let existing_key_line = cx.record.ssh_key_line.clone();
    let seed_exists = cx.seed.db().exists();
    let seed_info = if cx.args.dry_run && !seed_exists {
        None
    } else {
        Some(seed_data(&cx.seed)?)
    };
    let key_line = seed_info.as_ref().map(|s| s.key.public_openssh()).or(existing_key_line);
    let observed = observe(&cx, key_line.as_deref()).await?;
    let actions = plan::plan_install(&cx.s, &observed, &cx.record)?;
    if cx.args.dry_run {
        print_plan("install", &cx.s.node, &actions);
        return Ok(());
    }
    if actions.is_empty() {
        println!(
            "proximity install: nothing to do, the appliance is installed (CT {} on {})",
            cx.s.vmid, cx.s.node
        );
    }
    cx.record.format = 1;
    cx.record.node = cx.s.node.clone();
    for (i, a) in actions.iter().enumerate() {
        println!("[{}/{}] {a}", i + 1, actions.len());
        execute(&mut cx, a, seed_info.as_ref()).await?;
    }
    let seed_info = seed_info.ok_or_else(|| anyhow!("internal: no seed"))?;
    cx.record.ca_fingerprint = Some(seed_info.ca_fingerprint.clone());
    let ip = if cx.args.no_wait_health {
        ct_address(&cx).await
    } else {
        println!(
            "waiting for the appliance to answer (up to {} s; skip with --no-wait-health)",
            cx.args.health_timeout
        );
        Some(wait_health(&cx).await?)
    };
    let url = match &ip {
        Some(ip) => format!("https://{ip}:{API_PORT}/"),
        None => format!("https://<address of CT {} on {}>:{API_PORT}/", cx.s.vmid, cx.s.wan_bridge),
    };
    cx.record.ui_url = Some(url.clone());
    save_record(&cx.args.state_file, &cx.record)?;
    println!("Proximity is installed in CT {} on {}.", cx.s.vmid, cx.s.node);
    println!("UI:             {url}");
    println!(
        "CA fingerprint: {} (SHA-256; the CA is at {url}api/v1/network/ca.pem)",
        seed_info.ca_fingerprint
    );
    match &seed_info.admin_password {
        Some(pw) => println!("first login:    user `{ADMIN_USER}`, password `{pw}` (shown once; change it after logging in)"),
        None => println!(
            "first login:    user `{ADMIN_USER}`; the password was shown by the first run (reset it: `pct exec {} -- proximity user passwd {ADMIN_USER}` with the service stopped)",
            cx.s.vmid
        ),
    }
    println!(
        "record:         {} (`proximity install --uninstall` removes what it lists)",
        cx.args.state_file.display()
    );
    Ok(())
}

fn print_plan(what: &str, node: &str, actions: &[Action]) {
    if actions.is_empty() {
        println!("{what} plan for {node}: nothing to do");
        return;
    }
    println!(
        "{what} plan for {node} ({} steps, nothing changed; drop --dry-run to run it):",
        actions.len()
    );
    for (i, a) in actions.iter().enumerate() {
        println!("  {}. {a}", i + 1);
    }
}

async fn uninstall(cx: &mut Ctx) -> anyhow::Result<()> {
    if cx.record.is_empty() {
        println!(
            "proximity install --uninstall: nothing to remove ({} lists nothing this installer created)",
            cx.args.state_file.display()
        );
        if !cx.args.dry_run {
            remove_local(cx)?;
        }
        return Ok(());
    }
    if let Some(v) = cx.record.vmid {
        cx.s.vmid = v;
    }
    let observed = observe(cx, cx.record.ssh_key_line.clone().as_deref()).await?;
    let actions = plan::plan_uninstall(&cx.record, &observed)?;
    if cx.args.dry_run {
        print_plan("uninstall", &cx.s.node, &actions);
        return Ok(());
    }
    let mut errors = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        println!("[{}/{}] {a}", i + 1, actions.len());
        if let Err(e) = execute(cx, a, None).await {
            // Keep going: remove as much as possible, report everything that failed.
            eprintln!("error: {e:#}");
            errors.push(format!("{a}: {e:#}"));
        }
    }
    if !errors.is_empty() {
        bail!(
            "{} step(s) failed; the record {} still lists what remains, fix the cause and re-run --uninstall:\n  {}",
            errors.len(),
            cx.args.state_file.display(),
            errors.join("\n  ")
        );
    }
    remove_local(cx)?;
    println!("Proximity is uninstalled from {}.", cx.s.node);
    Ok(())
}

fn remove_local(cx: &Ctx) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(&cx.seed.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot remove {}: {e}", cx.seed.dir.display()),
    }
    match std::fs::remove_file(&cx.args.state_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot remove {}: {e}", cx.args.state_file.display()),
    }
    if let Some(dir) = cx.args.state_file.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_keys_add_and_remove_exactly_one_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("ssh/authorized_keys");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "ssh-rsa AAAAother user@host").unwrap();
        let line = "ssh-ed25519 AAAAmine proximity-appliance";
        assert!(!key_authorized(&f, "ssh-ed25519 AAAAmine proximity"));
        authorize_key(&f, line).unwrap();
        assert!(key_authorized(&f, "ssh-ed25519 AAAAmine proximity"));
        unauthorize_key(&f, line).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "ssh-rsa AAAAother user@host\n");
    }

    #[test]
    fn ports_from_urls_and_endpoints() {
        assert_eq!(port_of("https://127.0.0.1:40123/api2/json", 8006), 40123);
        assert_eq!(port_of("https://pve.example", 8006), 8006);
        assert_eq!(port_of("127.0.0.1:2222", 22), 2222);
    }
}
