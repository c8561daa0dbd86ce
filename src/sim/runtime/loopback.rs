//! Loopback runtime (no root): a running CT is its own 127.<node>.<hi>.<lo> address; app
//! servers bind there. Nothing to create or remove outside this process.

use std::net::{Ipv4Addr, SocketAddr};

use super::{CtRuntime, CtSpec, bind_reuse};

/// The loopback runtime.
pub struct Loopback;

#[async_trait::async_trait]
impl CtRuntime for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }

    async fn start(&self, spec: &CtSpec) -> Result<Option<String>, String> {
        // Check that the address is usable on this host before reporting it.
        let probe = std::net::TcpListener::bind(SocketAddr::from((spec.loop_ip, 0)));
        probe.map_err(|e| format!("cannot use address {}: {e}", spec.loop_ip))?;
        Ok(Some(format!("{}/8", spec.loop_ip)))
    }

    async fn stop(&self, _vmid: u32) -> Result<(), String> {
        Ok(())
    }

    async fn listen(&self, _vmid: u32, loop_ip: Ipv4Addr, port: u16) -> Result<std::net::TcpListener, String> {
        bind_reuse(SocketAddr::from((loop_ip, port))).map_err(|e| format!("Bind for {loop_ip}:{port} failed: {e}"))
    }

    fn command_in(&self, _vmid: u32, argv: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(argv[0]);
        c.args(&argv[1..]);
        c
    }

    async fn shutdown(&self) -> Vec<String> {
        Vec::new()
    }

    fn shutdown_blocking(&self) {}
}
