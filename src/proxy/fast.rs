//! The proxy's connection loop: accepts client connections (plain and TLS), forwards the
//! common HTTP/1.1 requests itself ([`super::h1`]) over a per-thread pool of upstream
//! keep-alive connections, and gives every other connection to pingora
//! ([`super::handoff`]) with the bytes read so far.
//!
//! Each proxy thread runs its own single-threaded tokio runtime (like one nginx worker):
//! a request is read, forwarded and answered on one thread, with no cross-thread wake-ups
//! and no locks on the request path.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::apps::ServerApp;
use pingora::proxy::HttpProxy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::h1::{self, ChunkScanner, Forwarding, Framing, Parse, ResponseParse};
use super::handoff::Handed;
use super::policy;
use super::routes::Route;
use super::service::{ProxyApp, Shared};

/// Requests served on one client connection before it is closed.
pub const KEEPALIVE_REQUEST_LIMIT: u32 = 10_000;
/// Idle upstream connections kept per upstream address and thread.
const POOL_PER_UPSTREAM: usize = 256;
/// An idle upstream connection older than this is closed instead of reused.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// TLS handshake bound.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One listener kind (plain HTTP or HTTPS) as the worker threads see it.
pub struct Listener {
    /// Shared proxy state (routes, health, metrics, limits).
    pub shared: Shared,
    /// pingora, for connections the fast path does not take.
    pub pingora: Arc<HttpProxy<ProxyApp>>,
    /// `Some` for HTTPS listeners.
    pub tls: Option<TlsAcceptor>,
    /// Becomes `true` at shutdown (pingora stops keep-alive on it).
    pub shutdown: watch::Receiver<bool>,
}

thread_local! {
    /// Idle upstream connections of this thread, newest last.
    static POOL: RefCell<HashMap<SocketAddr, VecDeque<(TcpStream, Instant)>>> = RefCell::new(HashMap::new());
    /// Fast-path requests in progress on this thread (shutdown waits for them).
    static BUSY: Cell<usize> = const { Cell::new(0) };
    /// Spare upstream read buffers of this thread: a connection holds one only while a
    /// request is in flight, so idle keep-alive connections cost no 16 KiB each.
    static SPARE_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Size of an upstream read buffer.
const UPSTREAM_BUFFER: usize = 16 * 1024;
/// Spare buffers kept per thread.
const SPARE_BUFFERS_KEPT: usize = 64;

fn take_buffer() -> Vec<u8> {
    SPARE_BUFFERS
        .with(|b| b.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; UPSTREAM_BUFFER])
}

fn give_buffer(buf: Vec<u8>) {
    // Buffers grown for a large response head are not kept.
    if buf.len() == UPSTREAM_BUFFER {
        SPARE_BUFFERS.with(|b| {
            let mut b = b.borrow_mut();
            if b.len() < SPARE_BUFFERS_KEPT {
                b.push(buf);
            }
        });
    }
}

fn pool_take(addr: SocketAddr) -> Option<TcpStream> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let idle = p.get_mut(&addr)?;
        while let Some((s, since)) = idle.pop_back() {
            if since.elapsed() < POOL_IDLE {
                return Some(s);
            }
            // The rest are older still.
            idle.clear();
        }
        None
    })
}

fn pool_put(addr: SocketAddr, s: TcpStream) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let idle = p.entry(addr).or_default();
        let now = Instant::now();
        while idle.front().is_some_and(|(_, t)| now.duration_since(*t) >= POOL_IDLE) || idle.len() >= POOL_PER_UPSTREAM {
            idle.pop_front();
        }
        idle.push_back((s, now));
    })
}

/// Counts a fast-path request as in progress while alive.
struct BusyGuard;
impl BusyGuard {
    fn new() -> Self {
        BUSY.with(|b| b.set(b.get() + 1));
        BusyGuard
    }
}
impl Drop for BusyGuard {
    fn drop(&mut self) {
        BUSY.with(|b| b.set(b.get().saturating_sub(1)));
    }
}

/// Run one proxy worker thread's accept loops until `token` is cancelled, then wait up to
/// `drain` for the fast-path requests in progress.
pub fn run_worker(
    listeners: Vec<(std::net::TcpListener, Arc<Listener>)>,
    token: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    // Plain tasks on a current-thread runtime (no LocalSet: waking a LocalSet task from I/O
    // would also wake the runtime through its eventfd, one extra syscall per wake-up).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        for (std_listener, listener) in listeners {
            let l = TcpListener::from_std(std_listener)?;
            let token = token.clone();
            tokio::spawn(accept_loop(l, listener, token));
        }
        token.cancelled().await;
        let deadline = Instant::now() + drain;
        while BUSY.with(|b| b.get()) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<(), std::io::Error>(())
    })?;
    // Dropping the runtime closes the remaining (idle) connections.
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

async fn accept_loop(l: TcpListener, listener: Arc<Listener>, token: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = token.cancelled() => return,
            a = l.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(service = "proxy", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let listener = listener.clone();
        tokio::spawn(async move {
            let fd = tcp.as_raw_fd();
            match &listener.tls {
                None => serve(tcp, fd, peer, &listener).await,
                Some(acceptor) => {
                    let Ok(Ok(tls)) = timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
                        return;
                    };
                    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                        handoff(tls, fd, Vec::new(), true, &listener).await;
                    } else {
                        serve(tls, fd, peer, &listener).await;
                    }
                }
            }
        });
    }
}

/// Give the connection to pingora, replaying `prefix`; pingora serves it until it closes.
async fn handoff<S>(io: S, fd: RawFd, prefix: Vec<u8>, h2: bool, listener: &Listener)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    let mut stream: pingora::protocols::Stream = Box::new(Handed::new(io, fd, prefix, h2));
    let app = listener.pingora.clone();
    while let Some(s) = app.process_new(stream, &listener.shutdown).await {
        stream = s;
    }
}

/// Why a forwarded request got no upstream response.
enum Failure {
    /// Could not connect (upstream marked down): 502, or 504 when it timed out.
    Connect { why: &'static str, status: u16 },
    /// Timed out connecting or waiting for the response: 504.
    Timeout,
    /// Broken or invalid upstream response: 502.
    Broken(&'static str),
}

/// Serve one client connection: fast-path requests until it closes, or hand it off.
async fn serve<S>(mut io: S, fd: RawFd, peer: SocketAddr, listener: &Listener)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    let shared = &listener.shared;
    let limits = shared.limits;
    let is_tls = listener.tls.is_some();
    let client_ip = peer.ip().to_canonical().to_string();
    let fwd = Forwarding {
        client_ip: &client_ip,
        proto: if is_tls { "https" } else { "http" },
    };
    let mut inbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut req_head: Vec<u8> = Vec::with_capacity(1024);
    let mut resp_head: Vec<u8> = Vec::with_capacity(1024);
    let mut served = 0u32;
    loop {
        // The request head, within one read timeout in total (a client trickling bytes
        // cannot hold the connection longer).
        let deadline = tokio::time::Instant::now() + limits.downstream_read_timeout;
        let info = loop {
            if !inbuf.is_empty() {
                match h1::read_request(&inbuf, &limits.header, fwd, &mut req_head) {
                    Parse::Partial => {}
                    Parse::Handoff => return handoff(io, fd, inbuf, false, listener).await,
                    Parse::Request(info) => break info,
                }
            }
            if inbuf.capacity() - inbuf.len() < 1024 {
                inbuf.reserve(4096);
            }
            match tokio::time::timeout_at(deadline, io.read_buf(&mut inbuf)).await {
                Ok(Ok(n)) if n > 0 => {}
                // Closed, broken or idle too long: nothing to answer.
                _ => return,
            }
        };
        let route = shared.routes.load().lookup_normalized(&info.host).cloned();
        let Some(route) = route else {
            return handoff(io, fd, inbuf, false, listener).await;
        };
        if route.upstream_tls || (!is_tls && route.https_redirect && shared.https_port.is_some()) {
            return handoff(io, fd, inbuf, false, listener).await;
        }
        inbuf.drain(..info.head_len);
        let _busy = BusyGuard::new();
        let start = Instant::now();
        served += 1;
        let mut keep_alive = info.keep_alive && served < KEEPALIVE_REQUEST_LIMIT && !*listener.shutdown.borrow();
        let mut upbuf = take_buffer();
        let out = Outbound {
            route: &route,
            req_head: &req_head,
            head_method: info.head_method,
            keep_alive,
            shared,
        };
        let outcome = forward(&mut io, &out, &mut upbuf, &mut resp_head).await;
        give_buffer(upbuf);
        let (status, outcome_name, error) = match outcome {
            Ok((status, ka)) => {
                keep_alive = ka;
                (status, "proxied", None)
            }
            Err(Forwarded::Client) => {
                // The client went away mid-response: nothing more to send.
                keep_alive = false;
                (0, "proxied", Some("client connection closed"))
            }
            Err(Forwarded::Upstream(failure)) => {
                keep_alive = false;
                let (status, error) = match failure {
                    Failure::Connect { why, status } => {
                        shared.health.mark_down(route.upstream, &route.app_name, why);
                        (status, why)
                    }
                    Failure::Timeout => (504, "upstream timed out"),
                    Failure::Broken(why) => (502, why),
                };
                let page = policy::bad_gateway_page(&route.app_name);
                let head = format!(
                    "HTTP/1.1 {status} {}\r\ncontent-type: text/html; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    axum::http::StatusCode::from_u16(status)
                        .ok()
                        .and_then(|c| c.canonical_reason())
                        .unwrap_or(""),
                    page.len()
                );
                let mut all = head.into_bytes();
                all.extend_from_slice(page.as_bytes());
                let _ = write_down(&mut io, &all, limits.downstream_read_timeout).await;
                (status, "upstream unreachable", Some(error))
            }
            Err(Forwarded::Abort(why)) => {
                // Headers were sent already: the only signal left is closing the connection.
                keep_alive = false;
                (0, "proxied", Some(why))
            }
        };
        let elapsed = start.elapsed();
        shared.record(&route.app_name, status, elapsed);
        if tracing::enabled!(target: "proximity::proxy::access", tracing::Level::INFO) {
            let (method, path) = info.method_and_path(&req_head);
            tracing::info!(
                target: "proximity::proxy::access",
                client = %peer,
                method,
                host = %info.host,
                path,
                status,
                latency_ms = (elapsed.as_secs_f64() * 100_000.0).round() / 100.0,
                app = route.app_name.as_str(),
                scheme = fwd.proto,
                proto = "http/1.1",
                outcome = outcome_name,
                error = error.unwrap_or_default(),
                "request"
            );
        }
        if !keep_alive {
            let _ = timeout(Duration::from_secs(1), io.shutdown()).await;
            return;
        }
    }
}

/// Why [`forward`] did not complete a response.
enum Forwarded {
    /// No usable upstream response; nothing was sent to the client yet.
    Upstream(Failure),
    /// The response broke after its head was sent.
    Abort(&'static str),
    /// Writing to the client failed.
    Client,
}

async fn write_down<S: AsyncWrite + Unpin>(io: &mut S, buf: &[u8], limit: Duration) -> Result<(), Forwarded> {
    match timeout(limit, async {
        io.write_all(buf).await?;
        io.flush().await
    })
    .await
    {
        Ok(Ok(())) => Ok(()),
        _ => Err(Forwarded::Client),
    }
}

/// One request on its way upstream.
struct Outbound<'a> {
    route: &'a Route,
    /// The head to send upstream.
    req_head: &'a [u8],
    /// HEAD request (no response body).
    head_method: bool,
    /// The client keeps the connection open after this response.
    keep_alive: bool,
    shared: &'a Shared,
}

/// Send the request upstream and relay the response to `io` (`upbuf` reads the upstream,
/// `resp_head` holds the head for the client). Returns the status and whether the client
/// connection stays open.
async fn forward<S: AsyncWrite + Unpin>(
    io: &mut S,
    out: &Outbound<'_>,
    upbuf: &mut Vec<u8>,
    resp_head: &mut Vec<u8>,
) -> Result<(u16, bool), Forwarded> {
    let (route, shared) = (out.route, out.shared);
    let limits = &shared.limits;
    let up_timeout = limits.upstream_timeout;
    let down_timeout = limits.downstream_read_timeout;
    let (mut up, info, mut filled) = exchange(io, out, upbuf, resp_head).await?;
    shared.health.mark_up(route.upstream);

    let head_len = info.head_len;
    let mut reusable = info.upstream_reusable;
    let avail = filled - head_len;
    // The head and the body bytes that came with it leave in one write.
    let mut done;
    let mut scanner = ChunkScanner::default();
    let mut left = 0u64;
    match info.framing {
        Framing::Empty => {
            reusable &= avail == 0;
            done = true;
        }
        Framing::Length(n) => {
            let take = (avail as u64).min(n) as usize;
            resp_head.extend_from_slice(&upbuf[head_len..head_len + take]);
            reusable &= avail as u64 <= n;
            left = n - take as u64;
            done = left == 0;
        }
        Framing::Chunked => {
            let (take, end) = scanner
                .feed(&upbuf[head_len..filled])
                .map_err(|_| Forwarded::Upstream(Failure::Broken("invalid chunked body")))?;
            resp_head.extend_from_slice(&upbuf[head_len..head_len + take]);
            reusable &= take == avail;
            done = end;
        }
        Framing::UntilClose => {
            resp_head.extend_from_slice(&upbuf[head_len..filled]);
            done = false;
        }
    }
    write_down(io, resp_head, down_timeout).await?;
    while !done {
        let want = match info.framing {
            Framing::Length(_) => (left as usize).min(upbuf.len()),
            _ => upbuf.len(),
        };
        filled = match timeout(up_timeout, up.read(&mut upbuf[..want])).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return Err(Forwarded::Abort("upstream connection broken mid-body")),
            Err(_) => return Err(Forwarded::Abort("upstream timed out mid-body")),
        };
        if filled == 0 {
            if info.framing == Framing::UntilClose {
                break;
            }
            return Err(Forwarded::Abort("upstream closed mid-body"));
        }
        let send = match info.framing {
            Framing::Length(_) => {
                left -= filled as u64;
                done = left == 0;
                filled
            }
            Framing::Chunked => {
                let (take, end) = scanner
                    .feed(&upbuf[..filled])
                    .map_err(|_| Forwarded::Abort("invalid chunked body"))?;
                reusable &= take == filled;
                done = end;
                take
            }
            _ => filled,
        };
        write_down(io, &upbuf[..send], down_timeout).await?;
    }
    if reusable {
        pool_put(route.upstream, up);
    }
    Ok((info.status, info.keep_alive))
}

/// Get a response head for `req_head`: on a pooled connection first, on a new one when
/// the pooled one turns out closed before answering. Interim (1xx) responses are relayed
/// to the client on the way.
async fn exchange<S: AsyncWrite + Unpin>(
    io: &mut S,
    out: &Outbound<'_>,
    upbuf: &mut Vec<u8>,
    resp_head: &mut Vec<u8>,
) -> Result<(TcpStream, h1::ResponseInfo, usize), Forwarded> {
    let (route, shared) = (out.route, out.shared);
    let limits = &shared.limits;
    let mut pooled = pool_take(route.upstream);
    loop {
        let reused = pooled.is_some();
        let mut up = match pooled.take() {
            Some(s) => s,
            None => connect(route.upstream, shared).await.map_err(Forwarded::Upstream)?,
        };
        match timeout(limits.upstream_timeout, up.write_all(out.req_head)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) if reused => continue,
            Ok(Err(_)) => return Err(Forwarded::Upstream(Failure::Broken("upstream write failed"))),
            Err(_) => return Err(Forwarded::Upstream(Failure::Timeout)),
        }
        let mut filled = 0usize;
        let mut relayed_interim = false;
        loop {
            if filled == upbuf.len() {
                upbuf.resize(upbuf.len() * 2, 0);
            }
            let n = match timeout(limits.upstream_timeout, up.read(&mut upbuf[filled..])).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) if reused && filled == 0 && !relayed_interim => 0,
                Ok(Err(_)) => return Err(Forwarded::Upstream(Failure::Broken("upstream connection broken"))),
                Err(_) => return Err(Forwarded::Upstream(Failure::Timeout)),
            };
            if n == 0 {
                if reused && filled == 0 && !relayed_interim {
                    // A stale keep-alive connection: the upstream closed it while idle.
                    break;
                }
                return Err(Forwarded::Upstream(Failure::Broken("upstream closed the connection")));
            }
            filled += n;
            match h1::read_response(&upbuf[..filled], out.head_method, out.keep_alive, resp_head) {
                ResponseParse::Partial => {}
                ResponseParse::Invalid => return Err(Forwarded::Upstream(Failure::Broken("invalid upstream response"))),
                ResponseParse::Interim { head_len } => {
                    write_down(io, &upbuf[..head_len], limits.downstream_read_timeout).await?;
                    upbuf.copy_within(head_len..filled, 0);
                    filled -= head_len;
                    relayed_interim = true;
                }
                ResponseParse::Final(info) => return Ok((up, info, filled)),
            }
        }
        // Stale pooled connection: the next round connects anew (pooled is None now).
    }
}

async fn connect(addr: SocketAddr, shared: &Shared) -> Result<TcpStream, Failure> {
    match timeout(shared.connect_timeout(&addr), TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(_)) => Err(Failure::Connect {
            why: "connect error",
            status: 502,
        }),
        Err(_) => Err(Failure::Connect {
            why: "connect timed out",
            status: 504,
        }),
    }
}
