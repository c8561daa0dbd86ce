//! DNS: authoritative `<domain>` + LAN reverse zone from the plan and named leases
//! ([`zone`]), forwarding with a cache for LAN and loopback clients only, REFUSED for other
//! names from everyone else (no open resolver). UDP is served by our own receive loop:
//! plain `A` queries for local names are answered from the wire bytes ([`wire`], no
//! allocation), everything else is decoded and answered by the full path shared with TCP,
//! which hickory-server serves with our [`RequestHandler`]. The zone is swapped through an
//! `ArcSwap` whenever the plan or the leases change, so new records answer within
//! milliseconds.

pub mod batch;
pub mod wire;
pub mod zone;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use ipnet::Ipv4Net;

use crate::dhcp::LeaseBoard;
use crate::supervisor::{Context, StartError};
use crate::telemetry::metrics::Counter;
use zone::{Answer, Zone, ZoneSettings};

/// What to do with one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer from local data.
    Local {
        /// Response code (NOERROR or NXDOMAIN).
        rcode: ResponseCode,
        /// Answer section.
        answers: Vec<Record>,
        /// Authority section (SOA for negative answers).
        authorities: Vec<Record>,
    },
    /// Ask the upstream resolvers.
    Forward,
    /// Refuse (not our zone and the client may not recurse, or nothing to forward to).
    Refused,
    /// Malformed or unsupported request.
    Error(ResponseCode),
}

/// Decide one query. Pure.
pub fn decide(
    zone: &Zone,
    lan: Ipv4Net,
    op: OpCode,
    queries: &[(Name, RecordType, DNSClass)],
    client: IpAddr,
    can_forward: bool,
) -> Decision {
    if op != OpCode::Query {
        return Decision::Error(ResponseCode::NotImp);
    }
    let [(name, qtype, class)] = queries else {
        return Decision::Error(ResponseCode::FormErr);
    };
    let local_class = matches!(class, DNSClass::IN | DNSClass::ANY);
    match zone.lookup(name, *qtype, client) {
        Answer::NotLocal => {}
        _ if !local_class => return Decision::Refused,
        Answer::Records(answers) => {
            return Decision::Local {
                rcode: ResponseCode::NoError,
                answers,
                authorities: vec![],
            };
        }
        Answer::NoData(soa) => {
            return Decision::Local {
                rcode: ResponseCode::NoError,
                answers: vec![],
                authorities: vec![soa],
            };
        }
        Answer::NxDomain(soa) => {
            return Decision::Local {
                rcode: ResponseCode::NXDomain,
                answers: vec![],
                authorities: vec![soa],
            };
        }
    }
    if can_forward && zone::may_forward(client, lan) {
        Decision::Forward
    } else {
        Decision::Refused
    }
}

/// Whole request bytes → response bytes for local decisions (`None` for undecodable input
/// or a forward). Used by the fuzz target; the server path shares [`decide`].
pub fn handle_bytes(zone: &Zone, lan: Ipv4Net, bytes: &[u8], client: IpAddr) -> Option<Vec<u8>> {
    let req = Message::from_vec(bytes).ok()?;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let qs: Vec<_> = req
        .queries
        .iter()
        .map(|q| (q.name().clone(), q.query_type(), q.query_class()))
        .collect();
    let mut md = Metadata::response_from_request(&req.metadata);
    let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    match decide(zone, lan, req.metadata.op_code, &qs, client, false) {
        Decision::Local {
            rcode,
            answers,
            authorities,
        } => {
            md.authoritative = true;
            md.response_code = rcode;
            resp.answers = answers;
            resp.authorities = authorities;
        }
        Decision::Forward => return None,
        Decision::Refused => md.response_code = ResponseCode::Refused,
        Decision::Error(c) => md.response_code = c,
    }
    resp.metadata = md;
    resp.queries = req.queries.clone();
    resp.to_vec().ok()
}

/// Cached upstream answer.
#[derive(Clone)]
struct Cached {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    stored: Instant,
    ttl: u32,
}

/// Forwarding to upstream resolvers over UDP, with a TTL-respecting cache.
pub struct Forwarder {
    upstreams: ArcSwap<Vec<SocketAddr>>,
    timeout: Duration,
    cache: Mutex<HashMap<(String, RecordType, DNSClass), Cached>>,
    capacity: usize,
}

impl Forwarder {
    /// A forwarder over `upstreams` (tried in order) with `capacity` cache entries.
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, capacity: usize) -> Self {
        Forwarder {
            upstreams: ArcSwap::from_pointee(upstreams),
            timeout,
            cache: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// True when there is at least one upstream.
    pub fn enabled(&self) -> bool {
        !self.upstreams.load().is_empty()
    }

    /// Use these upstreams from now on (runtime settings); a change empties the cache.
    pub fn set_upstreams(&self, upstreams: &[SocketAddr]) {
        if self.upstreams.load().as_slice() != upstreams {
            tracing::info!(?upstreams, "dns upstream resolvers changed");
            self.upstreams.store(Arc::new(upstreams.to_vec()));
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    fn cached(&self, key: &(String, RecordType, DNSClass)) -> Option<(ResponseCode, Vec<Record>, Vec<Record>)> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let c = cache.get(key)?;
        let age = c.stored.elapsed().as_secs() as u32;
        if age >= c.ttl {
            return None;
        }
        let dec = |rs: &[Record]| {
            rs.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = r.ttl.saturating_sub(age);
                    r
                })
                .collect::<Vec<_>>()
        };
        Some((c.rcode, dec(&c.answers), dec(&c.authorities)))
    }

    /// Resolve through the cache or the upstreams: (rcode, answers, authorities).
    pub async fn resolve(&self, name: &Name, qtype: RecordType, class: DNSClass) -> Option<(ResponseCode, Vec<Record>, Vec<Record>)> {
        let key = (zone::key_of(name), qtype, class);
        if let Some(hit) = self.cached(&key) {
            return Some(hit);
        }
        let mut q = Message::query();
        q.metadata.id = rand::random();
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(name.clone(), qtype));
        let bytes = q.to_vec().ok()?;
        let upstreams = self.upstreams.load_full();
        for up in upstreams.iter() {
            let bind: SocketAddr = if up.is_ipv4() {
                "0.0.0.0:0".parse().ok()?
            } else {
                "[::]:0".parse().ok()?
            };
            let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
                continue;
            };
            if sock.connect(up).await.is_err() || sock.send(&bytes).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            let deadline = tokio::time::Instant::now() + self.timeout;
            while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                let Ok(mut resp) = Message::from_vec(&buf[..n]) else { continue };
                if resp.metadata.id != q.metadata.id {
                    continue;
                }
                if resp.metadata.truncation {
                    // Too big for UDP: ask the same upstream over TCP.
                    match tokio::time::timeout_at(deadline, tcp_query(*up, &bytes)).await {
                        Ok(Some(full)) if full.metadata.id == q.metadata.id => resp = full,
                        _ => break,
                    }
                }
                let rcode = resp.metadata.response_code;
                let ttl = resp
                    .answers
                    .iter()
                    .chain(resp.authorities.iter())
                    .map(|r| r.ttl)
                    .min()
                    .unwrap_or(if rcode == ResponseCode::NoError || rcode == ResponseCode::NXDomain {
                        30
                    } else {
                        0
                    })
                    .min(3600);
                let out = (rcode, resp.answers, resp.authorities);
                if ttl > 0 && matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
                    let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                    if cache.len() >= self.capacity {
                        cache.retain(|_, c| c.stored.elapsed().as_secs() < u64::from(c.ttl));
                        if cache.len() >= self.capacity {
                            cache.clear();
                        }
                    }
                    cache.insert(
                        key,
                        Cached {
                            rcode,
                            answers: out.1.clone(),
                            authorities: out.2.clone(),
                            stored: Instant::now(),
                            ttl,
                        },
                    );
                }
                return Some(out);
            }
        }
        None
    }
}

/// One query over TCP (RFC 1035 §4.2.2 length prefix).
async fn tcp_query(up: SocketAddr, query: &[u8]) -> Option<Message> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(up).await.ok()?;
    let len = u16::try_from(query.len()).ok()?;
    let mut out = Vec::with_capacity(query.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(query);
    s.write_all(&out).await.ok()?;
    let mut l = [0u8; 2];
    s.read_exact(&mut l).await.ok()?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(l))];
    s.read_exact(&mut body).await.ok()?;
    Message::from_vec(&body).ok()
}

/// Per-client queries per second.
struct RateLimit {
    per_sec: u32,
    seen: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl RateLimit {
    fn allow(&self, ip: IpAddr) -> bool {
        if self.per_sec == 0 {
            return true;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, (s, _)| *s == now);
        }
        let e = seen.entry(ip).or_insert((now, 0));
        if e.0 != now {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= self.per_sec
    }
}

struct DnsCounters {
    queries: Arc<Counter>,
    local: Arc<Counter>,
    nxdomain: Arc<Counter>,
    forwarded: Arc<Counter>,
    cache_miss_fail: Arc<Counter>,
    refused: Arc<Counter>,
    limited: Arc<Counter>,
    errors: Arc<Counter>,
    overload: Arc<Counter>,
    send_failed: Arc<Counter>,
}

/// The request handler: rate limit → decide → answer locally, forward or refuse.
pub struct Handler {
    zone: Arc<ArcSwap<Zone>>,
    lan: Ipv4Net,
    forwarder: Arc<Forwarder>,
    limit: RateLimit,
    c: DnsCounters,
}

/// A decided response before encoding: header and records.
struct Reply {
    md: Metadata,
    answers: Vec<Record>,
    authorities: Vec<Record>,
}

/// Concurrent UDP queries on the full path (decoding, forwarding); more are dropped and
/// counted, so a flood of odd queries cannot pile up tasks.
const UDP_FULL_PATH_TASKS: usize = 1024;

/// Packets handled per readiness wake-up before the UDP loop yields to other tasks.
const UDP_BATCH: usize = 256;

/// The OPT record of a response to a request that carried `req` (RFC 6891: version 0, our
/// payload size, DO echoed, no options).
fn response_edns(req: &Edns) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(wire::EDNS_PAYLOAD);
    e.set_version(0);
    e.set_dnssec_ok(req.flags().dnssec_ok);
    e
}

impl Handler {
    /// The RA flag for `client`: forwarding is configured and the client may use it.
    fn recursion_available(&self, client: IpAddr) -> bool {
        self.forwarder.enabled() && zone::may_forward(client, self.lan)
    }

    /// Decide one decoded request (after the rate limit) and resolve forwards.
    async fn reply(&self, req: &Metadata, qs: &[(Name, RecordType, DNSClass)], src: IpAddr) -> Reply {
        let mut md = Metadata::response_from_request(req);
        md.recursion_available = self.recursion_available(src);
        let (mut answers, mut authorities) = (vec![], vec![]);
        let zone = self.zone.load();
        let decision = if req.message_type != MessageType::Query {
            Decision::Error(ResponseCode::FormErr)
        } else {
            decide(&zone, self.lan, req.op_code, qs, src, self.forwarder.enabled())
        };
        match decision {
            Decision::Local {
                rcode,
                answers: a,
                authorities: n,
            } => {
                self.c.local.inc();
                if rcode == ResponseCode::NXDomain {
                    self.c.nxdomain.inc();
                }
                md.authoritative = true;
                md.response_code = rcode;
                (answers, authorities) = (a, n);
            }
            Decision::Forward => {
                self.c.forwarded.inc();
                let (name, qtype, class) = &qs[0];
                match self.forwarder.resolve(name, *qtype, *class).await {
                    Some((rcode, a, n)) => {
                        md.response_code = rcode;
                        (answers, authorities) = (a, n);
                    }
                    None => {
                        self.c.cache_miss_fail.inc();
                        md.response_code = ResponseCode::ServFail;
                    }
                }
            }
            Decision::Refused => {
                self.c.refused.inc();
                md.response_code = ResponseCode::Refused;
            }
            Decision::Error(code) => {
                self.c.errors.inc();
                md.response_code = code;
            }
        }
        Reply { md, answers, authorities }
    }

    /// One UDP datagram: rate limit, then the wire fast path (the reply is written into
    /// `out`, its length returned), else the full path in a task that sends its own reply.
    fn on_datagram(
        self: &Arc<Self>,
        sock: &Arc<tokio::net::UdpSocket>,
        req: &[u8],
        src: SocketAddr,
        out: &mut [u8],
        slots: &Arc<tokio::sync::Semaphore>,
    ) -> Option<usize> {
        if src.port() == 0 {
            return None; // nothing can be sent back to port 0
        }
        self.c.queries.inc();
        let ip = src.ip();
        let ra = self.recursion_available(ip);
        if !self.limit.allow(ip) {
            self.c.limited.inc();
            let resp = wire::error_response(req, wire::RCODE_REFUSED, ra)?;
            let n = resp.len().min(out.len());
            out[..n].copy_from_slice(&resp[..n]);
            return Some(n);
        }
        if let Some(n) = wire::answer_local_a(&self.zone.load(), req, ip, ra, out) {
            self.c.local.inc();
            return Some(n);
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            self.c.overload.inc();
            return None;
        };
        let (this, sock, req) = (self.clone(), sock.clone(), req.to_vec());
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(resp) = this.full_udp(&req, ip, ra).await
                && let Err(e) = sock.send_to(&resp, src).await
            {
                tracing::debug!(error = %e, "dns send failed");
            }
        });
        None
    }

    /// The full path for one UDP request: decode, decide, encode within the client's
    /// size limit (512 bytes, or its EDNS payload), truncating (TC) when the answer is larger.
    async fn full_udp(&self, bytes: &[u8], src: IpAddr, ra: bool) -> Option<Vec<u8>> {
        let req = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.c.errors.inc();
                return wire::error_response(bytes, wire::RCODE_FORMERR, ra);
            }
        };
        if req.metadata.message_type != MessageType::Query {
            return None; // never answer responses (reflection)
        }
        let qs = query_tuples(&req.queries);
        let r = self.reply(&req.metadata, &qs, src).await;
        let limit = req.edns.as_ref().map_or(512, |e| usize::from(e.max_payload().max(512)));
        let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
        resp.metadata = r.md;
        resp.queries = req.queries;
        resp.answers = r.answers;
        resp.authorities = r.authorities;
        resp.edns = req.edns.as_ref().map(response_edns);
        let bytes = resp.to_vec().ok()?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
        resp.metadata.truncation = true;
        resp.answers.clear();
        resp.authorities.clear();
        resp.to_vec().ok()
    }
}

/// (name, type, class) of each question, as [`decide`] takes them.
fn query_tuples<'a>(qs: impl IntoIterator<Item = &'a Query>) -> Vec<(Name, RecordType, DNSClass)> {
    qs.into_iter()
        .map(|q| (q.name().clone(), q.query_type(), q.query_class()))
        .collect()
}

/// Serve one UDP socket until `shutdown`: at each wake-up, read datagrams in batches
/// ([`batch`]), answer the fast-path ones with one `sendmmsg` per batch.
async fn serve_udp(sock: tokio::net::UdpSocket, handler: Arc<Handler>, shutdown: tokio_util::sync::CancellationToken) {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    let sock = Arc::new(sock);
    let fd = sock.as_raw_fd();
    let slots = Arc::new(tokio::sync::Semaphore::new(UDP_FULL_PATH_TASKS));
    let mut rx = batch::RecvBatch::default();
    let mut tx = batch::SendBatch::new(wire::MAX_FAST_RESPONSE);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = sock.readable() => if let Err(e) = r {
                tracing::warn!(error = %e, "dns udp socket failed");
                break;
            }
        }
        for _ in 0..UDP_BATCH / batch::BATCH {
            let n = match sock.try_io(Interest::READABLE, || rx.recv(fd)) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors of earlier sends surface here; the socket stays usable.
                    tracing::debug!(error = %e, "dns udp receive error");
                    break;
                }
            };
            for i in 0..n {
                let (req, src) = rx.get(i);
                let Some(src) = src else { continue };
                if let Some(len) = handler.on_datagram(&sock, req, src, tx.next_buf(), &slots) {
                    tx.push(len, &rx, i);
                }
            }
            flush(&sock, &mut tx, &handler.c.send_failed);
            if n < batch::BATCH {
                break;
            }
        }
    }
}

/// Send the queued replies; a full send buffer drops them as the network would (the
/// client retries), counted.
fn flush(sock: &tokio::net::UdpSocket, tx: &mut batch::SendBatch, failed: &Counter) {
    use std::os::fd::AsRawFd;
    let mut sent = 0;
    while sent < tx.len() {
        match sock.try_io(tokio::io::Interest::WRITABLE, || tx.send(sock.as_raw_fd(), sent)) {
            Ok(0) => break,
            Ok(k) => sent += k,
            Err(e) => {
                tracing::debug!(error = %e, "dns send failed");
                // Skip the datagram that failed (full buffer, unreachable destination).
                failed.inc();
                sent += 1;
            }
        }
    }
    tx.clear();
}

/// The TCP side (served by hickory-server): the same decisions as UDP, no size limit.
pub struct TcpHandler(Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for TcpHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response_handle: R) -> ResponseInfo {
        let this = &self.0;
        this.c.queries.inc();
        let src = request.src().ip();
        let edns = request.edns.as_ref().map(response_edns);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        if !this.limit.allow(src) {
            this.c.limited.inc();
            let mut md = Metadata::response_from_request(&request.metadata);
            md.recursion_available = this.recursion_available(src);
            md.response_code = ResponseCode::Refused;
            return send(&mut response_handle, builder.build_no_records(md), &request.metadata).await;
        }
        let qs = query_tuples(request.queries.queries().iter().map(|q| q.original()));
        let r = this.reply(&request.metadata, &qs, src).await;
        let resp = builder.build(r.md, r.answers.iter(), r.authorities.iter(), std::iter::empty(), std::iter::empty());
        send(&mut response_handle, resp, &request.metadata).await
    }
}

async fn send<'a, R: ResponseHandler>(
    h: &mut R,
    resp: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    req: &Metadata,
) -> ResponseInfo {
    match h.send_response(resp).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "dns send failed");
            let mut md = Metadata::response_from_request(req);
            md.response_code = ResponseCode::ServFail;
            ResponseInfo::from(hickory_proto::op::Header {
                metadata: md,
                counts: Default::default(),
            })
        }
    }
}

/// Sockets bound by the daemon before start (so port-in-use errors name the service).
pub struct DnsSockets {
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
}

impl DnsSockets {
    /// Local addresses (UDP).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp.iter().filter_map(|s| s.local_addr().ok()).collect()
    }
}

/// Bind UDP and TCP on every `dns.listen` address.
pub fn bind(listen: &[SocketAddr]) -> Result<DnsSockets, StartError> {
    let mut s = DnsSockets { udp: vec![], tcp: vec![] };
    for a in listen {
        s.udp.push(crate::supervisor::bind_udp("dns", *a)?);
        s.tcp.push(crate::supervisor::bind_tcp("dns", *a)?);
    }
    Ok(s)
}

/// Live zone handle: the current snapshot, rebuilt by [`run`] on plan or lease changes.
pub type ZoneHandle = Arc<ArcSwap<Zone>>;

fn build_zone(ctx: &Context, board: &LeaseBoard, wan: Option<std::net::Ipv4Addr>) -> Zone {
    let plan = ctx.plan.current();
    let serial = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1);
    Zone::build(
        &plan,
        &board.current(),
        ZoneSettings {
            ttl: ctx.config.dns.local_ttl,
            wan_address: wan,
        },
        serial,
    )
}

/// Run the DNS server until `ctx.shutdown`.
pub async fn run(ctx: Context, sockets: DnsSockets, board: LeaseBoard, wan: Option<std::net::Ipv4Addr>) -> anyhow::Result<()> {
    let zone: ZoneHandle = Arc::new(ArcSwap::from_pointee(build_zone(&ctx, &board, wan)));
    let m = &ctx.metrics;
    let by = |kind: &str| m.counter("proximity_dns_responses_total", "DNS responses by kind", &[("kind", kind)]);
    let forwarder = Arc::new(Forwarder::new(
        ctx.plan.current().upstream_dns.clone(),
        Duration::from_millis(ctx.config.dns.upstream_timeout_ms),
        ctx.config.dns.cache_size.max(16),
    ));
    let handler = Arc::new(Handler {
        zone: zone.clone(),
        lan: ctx.config.network.lan_address,
        forwarder: forwarder.clone(),
        limit: RateLimit {
            per_sec: ctx.config.dns.rate_limit_per_client,
            seen: Mutex::new(HashMap::new()),
        },
        c: DnsCounters {
            queries: m.counter("proximity_dns_queries_total", "DNS queries received", &[]),
            local: by("local"),
            nxdomain: by("nxdomain"),
            forwarded: by("forwarded"),
            cache_miss_fail: by("upstream_failed"),
            refused: by("refused"),
            limited: by("rate_limited"),
            errors: by("error"),
            overload: by("dropped_overload"),
            send_failed: by("send_failed"),
        },
    });
    // Each UDP socket is served by its own thread with a single-threaded runtime: a burst
    // of datagrams is received, answered and sent on one thread, with no cross-thread
    // wake-ups (the full-path tasks it spawns run there too).
    let mut udp_threads = Vec::new();
    for u in sockets.udp {
        let (handler, token) = (handler.clone(), ctx.shutdown.clone());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::Builder::new().name("dns-udp".into()).spawn(move || {
            rt.block_on(async move {
                match tokio::net::UdpSocket::from_std(u) {
                    Ok(sock) => serve_udp(sock, handler, token).await,
                    Err(e) => tracing::error!(error = %e, "dns udp socket unusable"),
                }
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        })?;
        udp_threads.push(thread);
    }
    let mut server = hickory_server::Server::new(TcpHandler(handler));
    for t in sockets.tcp {
        server.register_listener(tokio::net::TcpListener::from_std(t)?, Duration::from_secs(10), 32);
    }
    let mut plan_rx = ctx.plan.subscribe();
    let mut lease_rx = board.subscribe();
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            r = plan_rx.changed() => { if r.is_err() { break } }
            r = lease_rx.changed() => { if r.is_err() { break } }
        }
        let plan = plan_rx.borrow_and_update().clone();
        forwarder.set_upstreams(&plan.upstream_dns);
        lease_rx.borrow_and_update();
        zone.store(Arc::new(build_zone(&ctx, &board, wan)));
        tracing::debug!("dns zone rebuilt");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), server.shutdown_gracefully()).await;
    let joined = tokio::task::spawn_blocking(move || udp_threads.into_iter().all(|t| t.join().is_ok()));
    match tokio::time::timeout(Duration::from_secs(3), joined).await {
        Ok(Ok(true)) => Ok(()),
        Ok(_) => anyhow::bail!("dns: a UDP thread panicked"),
        Err(_) => {
            tracing::warn!("dns UDP threads did not stop within 3 s");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn zone() -> Zone {
        let mut plan = crate::plan::NetworkPlan::empty(&crate::config::Config::default().network);
        plan.records = vec![crate::plan::DnsRecord {
            name: "app.prox.local".into(),
            ip: Ipv4Addr::new(10, 20, 0, 101),
            proxied: false,
            app_id: "a".into(),
        }];
        Zone::build(&plan, &[], ZoneSettings { ttl: 5, wan_address: None }, 1)
    }
    fn q(name: &str, t: RecordType) -> Vec<(Name, RecordType, DNSClass)> {
        vec![(Name::from_ascii(name).unwrap(), t, DNSClass::IN)]
    }
    const LAN_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 20, 0, 150));
    const WAN_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 9));

    #[test]
    fn no_open_resolver() {
        let (z, lan) = (zone(), "10.20.0.1/24".parse().unwrap());
        let other = q("example.test.", RecordType::A);
        assert_eq!(decide(&z, lan, OpCode::Query, &other, LAN_CLIENT, true), Decision::Forward);
        assert_eq!(decide(&z, lan, OpCode::Query, &other, WAN_CLIENT, true), Decision::Refused);
        // Nothing to forward to: refused for everyone.
        assert_eq!(decide(&z, lan, OpCode::Query, &other, LAN_CLIENT, false), Decision::Refused);
        // The local zone answers WAN clients.
        assert!(matches!(
            decide(&z, lan, OpCode::Query, &q("app.prox.local.", RecordType::A), WAN_CLIENT, true),
            Decision::Local {
                rcode: ResponseCode::NoError,
                ..
            }
        ));
    }

    #[test]
    fn malformed_requests() {
        let (z, lan) = (zone(), "10.20.0.1/24".parse().unwrap());
        let mut two = q("app.prox.local.", RecordType::A);
        two.extend(q("app.prox.local.", RecordType::A));
        assert_eq!(
            decide(&z, lan, OpCode::Query, &two, LAN_CLIENT, true),
            Decision::Error(ResponseCode::FormErr)
        );
        assert_eq!(
            decide(&z, lan, OpCode::Query, &[], LAN_CLIENT, true),
            Decision::Error(ResponseCode::FormErr)
        );
        assert_eq!(
            decide(&z, lan, OpCode::Update, &q("app.prox.local.", RecordType::A), LAN_CLIENT, true),
            Decision::Error(ResponseCode::NotImp)
        );
        let chaos = vec![(Name::from_ascii("app.prox.local.").unwrap(), RecordType::A, DNSClass::CH)];
        assert_eq!(decide(&z, lan, OpCode::Query, &chaos, LAN_CLIENT, true), Decision::Refused);
        assert!(handle_bytes(&z, lan, &[0, 1, 2], LAN_CLIENT).is_none());
    }

    #[test]
    fn rate_limit_per_client() {
        let rl = RateLimit {
            per_sec: 3,
            seen: Mutex::new(HashMap::new()),
        };
        let allowed = (0..10).filter(|_| rl.allow(LAN_CLIENT)).count();
        // At most 3 per second; the loop may straddle a second boundary.
        assert!((3..=6).contains(&allowed), "{allowed}");
        assert!(rl.allow(WAN_CLIENT));
        let unlimited = RateLimit {
            per_sec: 0,
            seen: Mutex::new(HashMap::new()),
        };
        assert!((0..100).all(|_| unlimited.allow(LAN_CLIENT)));
    }
}
