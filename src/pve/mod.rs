//! Proxmox VE access: the HTTP API client ([`Client`]), typed requests/responses
//! ([`types`], lenient [`perl`] decoding), UPIDs ([`Upid`]), task waiting ([`tasks`]), SSH
//! execution of `pct` commands ([`ssh`]) and the registry of hosts with placement
//! ([`hosts`]). Every failure is one [`Error`] enum the API layer maps to HTTP.

pub mod client;
pub mod error;
#[cfg(test)]
mod golden_tests;
pub mod hosts;
pub mod perl;
pub mod ssh;
pub mod tasks;
pub mod types;
pub mod upid;

pub use client::{Auth, Client, ClientConfig, ClientOptions, Tls};
pub use error::Error;
pub use hosts::{HostRecord, HostSpec, Hosts, Placement};
pub use ssh::{ExecOptions, ExecOutput, SshExec, SshKey};
pub use types::Params;
pub use upid::Upid;
