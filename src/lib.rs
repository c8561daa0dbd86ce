//! Proximity: an application delivery appliance for Proxmox VE in one daemon.
//!
//! See `ARCHITECTURE.md` for the code map. Services follow one shape: the caller binds
//! sockets, the service's `run(ctx, ...)` future returns when `ctx.shutdown` is cancelled.
#![warn(missing_docs)]

pub mod api;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod daemon;
pub mod dhcp;
pub mod dns;
pub mod events;
pub mod firewall;
pub mod framing;
pub mod install;
pub mod jobs;
pub mod link;
pub mod netplane;
pub mod plan;
pub mod platform;
pub mod proxy;
pub mod pve;
pub mod registry;
pub mod secrets;
pub mod settings;
pub mod sim;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod tls;
pub mod validate;
