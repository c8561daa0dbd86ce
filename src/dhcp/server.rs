//! The thin socket layer: one UDP socket on port 67 bound to the LAN interface
//! (`SO_BINDTODEVICE`, so nothing from another interface is ever seen or answered), a
//! receive loop that batches datagrams, decides each with [`policy::decide`], commits the
//! batch's lease changes in one durable transaction, then sends the replies.
//!
//! Cancel-safety: the loop only awaits `recv_from` (cancel-safe) and the commit task, which
//! runs to completion on the blocking pool even when shutdown wins the select.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dhcproto::Encodable;

use super::policy::{self, Change, Dest, Kind, PolicyConfig, Reservations};
use super::pool::Pool;
use super::{Lease, LeaseBoard};
use crate::supervisor::{Context, StartError};
use crate::telemetry::metrics::{Counter, Gauge};

/// Most datagrams decided and committed together.
const BATCH: usize = 128;

/// Bind the DHCP socket on `listen`, restricted to `interface`, with broadcast enabled.
pub fn bind(listen: SocketAddr, interface: &str) -> Result<std::net::UdpSocket, StartError> {
    let err = |what: &str, e: std::io::Error| StartError {
        service: "dhcp".into(),
        message: format!("{what}: {e}"),
    };
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(|e| err("cannot create a UDP socket", e))?;
    sock.bind_device(Some(interface.as_bytes())).map_err(|e| {
        err(
            &format!("cannot bind to LAN interface {interface} (does it exist? network.lan_interface)"),
            e,
        )
    })?;
    sock.set_broadcast(true).map_err(|e| err("cannot enable broadcast", e))?;
    let _ = sock.set_reuse_address(true);
    sock.bind(&listen.into()).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "UDP port {} is already in use by another program (another DHCP server?)",
                listen.port()
            )
        } else {
            format!("cannot bind UDP {listen}")
        };
        err(&hint, e)
    })?;
    sock.set_nonblocking(true).map_err(|e| err("cannot set non-blocking", e))?;
    Ok(sock.into())
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

struct Counters {
    received: Arc<Counter>,
    malformed: Arc<Counter>,
    offers: Arc<Counter>,
    acks: Arc<Counter>,
    naks: Arc<Counter>,
    informs: Arc<Counter>,
    releases: Arc<Counter>,
    declines: Arc<Counter>,
    limited: Arc<Counter>,
    ignored: Arc<Counter>,
    commit_failures: Arc<Counter>,
    leases: Arc<Gauge>,
}

impl Counters {
    fn new(ctx: &Context) -> Self {
        let m = &ctx.metrics;
        let by = |kind: &str| m.counter("proximity_dhcp_replies_total", "DHCP outcomes by kind", &[("kind", kind)]);
        Counters {
            received: m.counter("proximity_dhcp_received_total", "DHCP datagrams received", &[]),
            malformed: m.counter("proximity_dhcp_malformed_total", "DHCP datagrams dropped as malformed", &[]),
            offers: by("offer"),
            acks: by("ack"),
            naks: by("nak"),
            informs: by("inform"),
            releases: by("release"),
            declines: by("decline"),
            limited: by("rate_limited"),
            ignored: by("ignored"),
            commit_failures: m.counter("proximity_dhcp_commit_failures_total", "lease batches that failed to commit", &[]),
            leases: m.gauge("proximity_dhcp_leases", "bound leases", &[]),
        }
    }
}

/// The lease pool as stored: unexpired leases restored, expired ones deleted. Runs before
/// the daemon reports ready so DNS names of stored leases answer from the first query.
pub fn restore_pool(ctx: &Context) -> Result<Pool, crate::store::StoreError> {
    let mut pool = Pool::new(
        ctx.config.network.dhcp_range.0,
        ctx.config.network.dhcp_range.1,
        ctx.config.dhcp.max_new_leases_per_sec,
    );
    let now = now_secs();
    let mut expired = Vec::new();
    for l in super::store::load(&ctx.store)? {
        if l.expires > now {
            pool.insert(l);
        } else {
            expired.push(l.ip);
        }
    }
    if let Err(e) = super::store::forget(&ctx.store, &expired) {
        tracing::warn!(error = %e, "cannot delete expired leases");
    }
    Ok(pool)
}

/// Named, bound leases of `pool`: what DNS serves.
pub fn named_leases(pool: &Pool) -> Vec<Lease> {
    pool.bound(now_secs()).into_iter().filter(|l| l.hostname.is_some()).collect()
}

/// Run the DHCP server over the restored `pool` until `ctx.shutdown`.
pub async fn run(ctx: Context, sock: std::net::UdpSocket, board: LeaseBoard, mut pool: Pool) -> anyhow::Result<()> {
    let sock = tokio::net::UdpSocket::from_std(sock)?;
    let net = &ctx.config.network;
    let cfg = PolicyConfig {
        server_id: net.gateway(),
        lan: net.lan_address,
        domain: net.domain.clone(),
        lease_secs: ctx.config.dhcp.lease_secs,
        offer_secs: 60,
        decline_hold_secs: ctx.config.dhcp.decline_hold_secs,
    };
    let c = Counters::new(&ctx);
    // DNS only needs named leases; publishing scans the pool, so it runs only when a batch
    // touched a named lease or freed one.
    let publish = |pool: &Pool| board.publish(named_leases(pool));
    publish(&pool);
    tracing::info!(leases = pool.len(), "dhcp serving on {}", ctx.config.network.lan_interface);

    let mut plan_rx = ctx.plan.subscribe();
    let mut reservations = Reservations::from_plan(&plan_rx.borrow_and_update().reservations);
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 1500];
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);

    loop {
        batch.clear();
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = plan_rx.changed() => {
                let next = Reservations::from_plan(&plan_rx.borrow_and_update().reservations);
                let freed = policy::release_unreserved(&reservations, &next, &mut pool);
                reservations = next;
                if !freed.is_empty() {
                    tracing::info!(leases = freed.len(), "released the leases of removed reservations");
                    c.leases.set(pool.len() as i64);
                    let store = ctx.store.clone();
                    match tokio::task::spawn_blocking(move || super::store::commit(&store, &freed)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!(error = %e, "cannot delete released leases"),
                        Err(e) => tracing::warn!(error = %e, "lease delete task failed"),
                    }
                    publish(&pool);
                }
                continue;
            }
            _ = sweep.tick() => {
                let gone: Vec<Ipv4Addr> = pool.expire(now_secs()).into_iter().map(|l| l.ip).collect();
                if !gone.is_empty() {
                    let store = ctx.store.clone();
                    let _ = tokio::task::spawn_blocking(move || super::store::forget(&store, &gone)).await;
                    publish(&pool);
                }
                continue;
            }
            r = sock.recv_from(&mut buf) => {
                match r {
                    Ok((n, _)) => batch.push(buf[..n].to_vec()),
                    Err(e) => { tracing::debug!(error = %e, "dhcp recv"); continue; }
                }
            }
        }
        // Drain whatever else is queued, up to BATCH (group commit).
        while batch.len() < BATCH {
            match sock.try_recv_from(&mut buf) {
                Ok((n, _)) => batch.push(buf[..n].to_vec()),
                Err(_) => break,
            }
        }
        let now = now_secs();
        let mut changes = Vec::new();
        let mut held = Vec::new();
        for pkt in &batch {
            c.received.inc();
            let Some(msg) = policy::decode(pkt) else {
                c.malformed.inc();
                continue;
            };
            let out = policy::decide(&msg, &mut pool, &reservations, &cfg, now);
            match out.kind {
                Kind::Offer => c.offers.inc(),
                Kind::Ack => c.acks.inc(),
                Kind::Nak => c.naks.inc(),
                Kind::InformAck => c.informs.inc(),
                Kind::Released => c.releases.inc(),
                Kind::Declined => c.declines.inc(),
                Kind::RateLimited => c.limited.inc(),
                Kind::Ignored(why) => {
                    c.ignored.inc();
                    tracing::debug!(reason = why, "dhcp request ignored");
                }
            }
            if let Some(ch) = out.change {
                changes.push(ch);
            }
            if let Some(r) = out.reply {
                if out.kind == Kind::Ack {
                    held.push(r);
                } else {
                    send(&sock, r).await;
                }
            }
        }
        if changes.is_empty() {
            for r in held {
                send(&sock, r).await;
            }
            continue;
        }
        let store = ctx.store.clone();
        let names_changed = changes.iter().any(|ch| match ch {
            Change::Bind(l) => l.hostname.is_some(),
            Change::Free(_) => true,
        });
        c.leases.set(pool.len() as i64);
        let committed = tokio::task::spawn_blocking(move || super::store::commit(&store, &changes)).await;
        match committed {
            Ok(Ok(())) => {
                for r in held {
                    send(&sock, r).await;
                }
            }
            Ok(Err(e)) => {
                c.commit_failures.inc();
                tracing::error!(error = %e, "lease commit failed; ACKs of this batch withheld");
            }
            Err(e) => {
                c.commit_failures.inc();
                tracing::error!(error = %e, "lease commit task failed");
            }
        }
        if names_changed {
            publish(&pool);
        }
    }
    Ok(())
}

async fn send(sock: &tokio::net::UdpSocket, (msg, dest): (dhcproto::v4::Message, Dest)) {
    let to = match dest {
        Dest::Relay(gi) => SocketAddrV4::new(gi, 67),
        Dest::Unicast(ip) => SocketAddrV4::new(ip, 68),
        Dest::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
    };
    match msg.to_vec() {
        Ok(bytes) => {
            if let Err(e) = sock.send_to(&bytes, to).await {
                tracing::debug!(error = %e, %to, "dhcp send failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot encode DHCP reply"),
    }
}
