//! LAN link over rtnetlink: bring `lan_interface` up with `lan_address` (idempotent), and
//! find the WAN interface's IPv4 address at start.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;

/// Errors of link management.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The interface does not exist.
    #[error("interface {0} not found; check network.lan_interface / network.wan_interface")]
    NotFound(String),
    /// Netlink failed.
    #[error("netlink: {0}")]
    Netlink(String),
}

fn nl<E: std::fmt::Display>(e: E) -> LinkError {
    LinkError::Netlink(e.to_string())
}

async fn index_of(handle: &rtnetlink::Handle, name: &str) -> Result<u32, LinkError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(l.header.index),
        Ok(None) => Err(LinkError::NotFound(name.into())),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Err(LinkError::NotFound(name.into())),
        Err(e) => Err(nl(e)),
    }
}

async fn v4_addrs(handle: &rtnetlink::Handle, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, LinkError> {
    let mut out = Vec::new();
    let mut addrs = handle.address().get().set_link_index_filter(index).execute();
    while let Some(a) = addrs.try_next().await.map_err(nl)? {
        for attr in &a.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                out.push((*ip, a.header.prefix_len));
            }
        }
    }
    Ok(out)
}

/// Ensure `iface` is up and carries `addr` (adds it only when missing).
pub async fn ensure_lan(iface: &str, addr: Ipv4Net) -> Result<(), LinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(nl)?;
    let task = tokio::spawn(conn);
    let r = async {
        let index = index_of(&handle, iface).await?;
        let have = v4_addrs(&handle, index).await?;
        if !have.iter().any(|(ip, p)| *ip == addr.addr() && *p == addr.prefix_len()) {
            handle
                .address()
                .add(index, IpAddr::V4(addr.addr()), addr.prefix_len())
                .execute()
                .await
                .map_err(nl)?;
        }
        handle
            .link()
            .set(rtnetlink::LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl)?;
        Ok(())
    }
    .await;
    task.abort();
    r
}

/// The first IPv4 address (with prefix) of `iface`.
pub async fn interface_v4(iface: &str) -> Result<Option<Ipv4Net>, LinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(nl)?;
    let task = tokio::spawn(conn);
    let r = async {
        let index = index_of(&handle, iface).await?;
        let addrs = v4_addrs(&handle, index).await?;
        Ok(addrs.first().and_then(|(ip, p)| Ipv4Net::new(*ip, *p).ok()))
    }
    .await;
    task.abort();
    r
}
