//! [`PveHost`] over the real client: `pve::Client` for the API, one shared
//! `pve::SshExec` session (reconnected on failure) for `pct`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::pve::types::{CloneLxc, CreateLxc, DeleteLxc, Vzdump};
use crate::pve::{Client, Error, Hosts, Params, SshExec};

use super::backend::*;

/// How long a PVE task may run before the step fails.
const TASK_TIMEOUT: Duration = Duration::from_secs(600);

fn fail(e: Error) -> PveFailure {
    match e {
        Error::NotFound { message } => PveFailure::NotFound(message),
        Error::Conflict { message } => PveFailure::Conflict(message),
        Error::NodeOffline { .. } | Error::Transport { .. } => PveFailure::Unavailable(e.to_string()),
        Error::TaskFailed {
            exitstatus,
            log_tail,
            upid,
        } => PveFailure::TaskFailed {
            message: format!("task {upid} failed: {exitstatus}"),
            log: log_tail.join("\n"),
        },
        Error::CommandFailed { .. } => PveFailure::TaskFailed {
            message: e.to_string(),
            log: String::new(),
        },
        Error::Server { status, ref message } if status == 500 && (message.contains("does not exist") || message.contains("not exist")) => {
            PveFailure::NotFound(message.clone())
        }
        other => PveFailure::Other(other.to_string()),
    }
}

/// One Proxmox host reached through the registry of hosts.
pub struct PveBackend {
    name: String,
    hosts: Hosts,
    client: Client,
    ssh: tokio::sync::Mutex<Option<Arc<SshExec>>>,
}

impl PveBackend {
    /// The backend of host `name` in the registry.
    pub fn new(hosts: &Hosts, name: &str) -> Result<PveBackend, Error> {
        Ok(PveBackend {
            name: name.to_string(),
            client: hosts.client(name)?,
            hosts: hosts.clone(),
            ssh: tokio::sync::Mutex::new(None),
        })
    }

    async fn wait(&self, upid: crate::pve::Upid) -> PveResult<()> {
        self.client.wait_task(&upid, TASK_TIMEOUT).await.map(|_| ()).map_err(fail)
    }

    async fn session(&self) -> PveResult<Arc<SshExec>> {
        let mut g = self.ssh.lock().await;
        if let Some(s) = g.as_ref() {
            return Ok(s.clone());
        }
        let s = Arc::new(self.hosts.ssh(&self.name).await.map_err(fail)?);
        *g = Some(s.clone());
        Ok(s)
    }

    async fn drop_session(&self) {
        *self.ssh.lock().await = None;
    }

    /// Run `f` on the SSH session, reconnecting once when the session broke.
    async fn with_ssh<T, F, Fut>(&self, f: F) -> PveResult<T>
    where
        F: Fn(Arc<SshExec>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let s = self.session().await?;
        match f(s).await {
            Err(Error::Ssh { .. }) => {
                self.drop_session().await;
                let s = self.session().await?;
                f(s).await.map_err(fail)
            }
            r => r.map_err(fail),
        }
    }
}

#[async_trait::async_trait]
impl PveHost for PveBackend {
    async fn nodes(&self) -> PveResult<Vec<NodeInfo>> {
        let nodes = self.client.nodes().await.map_err(fail)?;
        Ok(nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.node.clone(),
                online: n.is_online(),
                mem: n.mem.unwrap_or(0),
                maxmem: n.maxmem.unwrap_or(0),
                cpu: n.cpu.unwrap_or(0.0),
                maxcpu: n.maxcpu.unwrap_or(0) as u32,
            })
            .collect())
    }

    async fn next_vmid(&self) -> PveResult<u32> {
        self.client.next_id().await.map_err(fail)
    }

    async fn list_cts(&self, node: &str) -> PveResult<Vec<CtInfo>> {
        let list = self.client.lxc_list(node).await.map_err(fail)?;
        Ok(list
            .into_iter()
            .map(|c| CtInfo {
                vmid: c.vmid as u32,
                node: node.to_string(),
                name: c.name.unwrap_or_default(),
                status: c.status,
                maxmem: c.maxmem.unwrap_or(0),
                tags: vec![],
            })
            .collect())
    }

    async fn ct_config(&self, node: &str, vmid: u32) -> PveResult<BTreeMap<String, String>> {
        self.client.lxc_config(node, vmid).await.map(|c| c.raw).map_err(fail)
    }

    async fn set_ct_config(&self, node: &str, vmid: u32, params: &[(String, String)]) -> PveResult<()> {
        self.client
            .lxc_set_config(node, vmid, &Params(params.to_vec()), &[], None)
            .await
            .map_err(fail)
    }

    async fn ct_status(&self, node: &str, vmid: u32) -> PveResult<String> {
        self.client.lxc_status(node, vmid).await.map(|s| s.status).map_err(fail)
    }

    async fn ct_interfaces(&self, node: &str, vmid: u32) -> PveResult<Vec<CtInterface>> {
        // Read leniently: Proxmox (and the simulator) may send both `hwaddr` and
        // `hardware-address`, which the typed decoder refuses as a duplicate field.
        let path = format!("/nodes/{}/lxc/{vmid}/interfaces", crate::pve::client::encode_segment(node));
        let body = self
            .client
            .request(reqwest::Method::GET, &path, &Params::new())
            .await
            .map_err(fail)?;
        Ok(parse_interfaces(&body["data"]))
    }

    async fn aplinfo(&self, node: &str) -> PveResult<Vec<Appliance>> {
        let v = self.client.aplinfo(node).await.map_err(fail)?;
        Ok(v.into_iter()
            .map(|a| Appliance {
                template: a.template,
                section: a.section,
                version: a.version,
            })
            .collect())
    }

    async fn storage_content(&self, node: &str, storage: &str, content: &str) -> PveResult<Vec<Volume>> {
        let v = self
            .client
            .storage_content(node, storage, Some(content), None)
            .await
            .map_err(fail)?;
        Ok(v.into_iter()
            .map(|c| Volume {
                volid: c.volid,
                size: c.size.unwrap_or(0),
                ctime: c.ctime.unwrap_or(0),
                vmid: c.vmid.map(|v| v as u32),
                format: c.format,
                notes: c.notes,
            })
            .collect())
    }

    async fn download_template(&self, node: &str, storage: &str, template: &str) -> PveResult<()> {
        let upid = self.client.aplinfo_download(node, storage, template).await.map_err(fail)?;
        self.wait(upid).await
    }

    async fn create_ct(&self, node: &str, p: &CreateCt) -> PveResult<()> {
        let mut req = CreateLxc::new(p.vmid, &p.ostemplate);
        req.hostname = Some(p.hostname.clone());
        req.cores = Some(p.cores as u64);
        req.memory = Some(p.memory_mb as u64);
        req.swap = Some(p.swap_mb as u64);
        req.rootfs = Some(p.rootfs.clone());
        req.nets = vec![p.net0.clone()];
        req.unprivileged = p.unprivileged;
        req.features = Some(p.features.clone());
        req.onboot = Some(p.onboot);
        req.description = Some(p.description.clone());
        req.tags = Some(p.tags.clone());
        let upid = self.client.lxc_create(node, &req).await.map_err(fail)?;
        self.wait(upid).await
    }

    async fn start_ct(&self, node: &str, vmid: u32) -> PveResult<()> {
        let upid = self.client.lxc_start(node, vmid).await.map_err(fail)?;
        self.wait(upid).await
    }

    async fn stop_ct(&self, node: &str, vmid: u32) -> PveResult<()> {
        let upid = self.client.lxc_stop(node, vmid).await.map_err(fail)?;
        self.wait(upid).await
    }

    async fn reboot_ct(&self, node: &str, vmid: u32) -> PveResult<()> {
        let upid = self.client.lxc_reboot(node, vmid).await.map_err(fail)?;
        self.wait(upid).await
    }

    async fn delete_ct(&self, node: &str, vmid: u32) -> PveResult<()> {
        let opts = DeleteLxc {
            purge: true,
            force: true,
            destroy_unreferenced_disks: true,
        };
        let upid = self.client.lxc_delete(node, vmid, &opts).await.map_err(fail)?;
        self.wait(upid).await
    }

    async fn clone_ct(&self, node: &str, vmid: u32, newid: u32, hostname: &str) -> PveResult<()> {
        let req = CloneLxc {
            newid,
            hostname: Some(hostname.to_string()),
            full: Some(true),
            ..Default::default()
        };
        let upid = self.client.lxc_clone(node, vmid, &req).await.map_err(fail)?;
        self.wait(upid).await
    }

    async fn vzdump(&self, node: &str, vmid: u32, storage: &str, mode: BackupMode, compress: Compression) -> PveResult<Option<String>> {
        let req = Vzdump {
            vmids: vec![vmid],
            storage: Some(storage.to_string()),
            mode: Some(mode.as_str().into()),
            compress: Some(compress.as_str().into()),
            ..Default::default()
        };
        let before: Vec<String> = self
            .storage_content(node, storage, "backup")
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.volid)
            .collect();
        if let Some(upid) = self.client.vzdump(node, &req).await.map_err(fail)? {
            self.wait(upid).await?;
        }
        let after = self.storage_content(node, storage, "backup").await?;
        Ok(after
            .into_iter()
            .filter(|v| v.vmid == Some(vmid) && !before.contains(&v.volid))
            .max_by_key(|v| v.ctime)
            .map(|v| v.volid))
    }

    async fn restore_ct(&self, node: &str, vmid: u32, archive: &str, storage: &str) -> PveResult<()> {
        let mut req = CreateLxc::new(vmid, archive);
        req.restore = true;
        req.force = true;
        req.storage = Some(storage.to_string());
        let upid = self.client.lxc_create(node, &req).await.map_err(fail)?;
        self.wait(upid).await
    }

    async fn delete_volume(&self, node: &str, storage: &str, volid: &str) -> PveResult<()> {
        if let Some(upid) = self.client.storage_delete(node, storage, volid).await.map_err(fail)? {
            self.wait(upid).await?;
        }
        Ok(())
    }

    async fn rrddata(&self, node: &str, vmid: u32, timeframe: &str) -> PveResult<serde_json::Value> {
        let v = self.client.lxc_rrddata(node, vmid, timeframe, None).await.map_err(fail)?;
        Ok(serde_json::to_value(v).unwrap_or_default())
    }

    async fn pct_exec(&self, vmid: u32, argv: &[String]) -> PveResult<ExecOut> {
        let out = self.with_ssh(|s| async move { s.pct_exec(vmid, argv).await }).await?;
        Ok(ExecOut {
            status: out.status as i32,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    async fn pct_push(&self, vmid: u32, bytes: &[u8], dst: &str, perms: u32) -> PveResult<()> {
        self.with_ssh(|s| async move { s.pct_push(vmid, bytes, dst, Some(perms)).await })
            .await
    }

    async fn pct_set_features(&self, vmid: u32, features: &str) -> PveResult<()> {
        self.with_ssh(|s| async move { s.pct_set_features(vmid, features).await }).await
    }
}

/// Interfaces from the `data` of `GET .../interfaces` (lenient about field names).
pub fn parse_interfaces(data: &serde_json::Value) -> Vec<CtInterface> {
    let Some(list) = data.as_array() else { return vec![] };
    list.iter()
        .map(|i| {
            let s = |k: &str| i.get(k).and_then(|v| v.as_str()).map(String::from);
            CtInterface {
                name: s("name").unwrap_or_default(),
                hwaddr: s("hwaddr").or_else(|| s("hardware-address")).unwrap_or_default(),
                inet: s("inet").and_then(|v| v.split('/').next().and_then(|a| a.parse().ok())),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_with_both_mac_fields() {
        let v = serde_json::json!([{"name":"lo","inet":"127.0.0.1/8"},
            {"name":"eth0","hwaddr":"02:50:58:00:00:01","hardware-address":"02:50:58:00:00:01","inet":"127.1.0.5/8"}]);
        let i = parse_interfaces(&v);
        assert_eq!(i[1].hwaddr, "02:50:58:00:00:01");
        assert_eq!(i[1].inet, Some(std::net::Ipv4Addr::new(127, 1, 0, 5)));
        assert!(parse_interfaces(&serde_json::json!(null)).is_empty());
    }
}
