//! The proxy's HTTP/1.1 fast path end to end with the real binary, against a scripted raw
//! backend: body framings (length, chunked with trailers, close-delimited, HEAD, 204), 1xx
//! relayed, hop-by-hop headers removed and forwarding headers added, upstream keep-alive
//! reuse, a stale pooled connection retried, pipelined requests, a hand-off to pingora in
//! the middle of a keep-alive connection, and broken upstream bodies cutting the client off.

mod common;
mod proxy_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Proc;
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw HTTP/1.1 backend whose answer depends on the path; counts the connections that
/// carried a request (the proxy's TCP health probes send none).
struct ScriptedBackend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

async fn scripted_connection(mut s: tokio::net::TcpStream, connections: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        // Read one request head (and a Content-Length body).
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        if std::mem::take(&mut first) {
            connections.fetch_add(1, Ordering::SeqCst);
        }
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let cl: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < head_end + cl {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + cl]).to_string();
        buf.drain(..head_end + cl);
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let method = head.split(' ').next().unwrap_or("").to_string();
        let reply: Vec<Vec<u8>> = match path.as_str() {
            "/len" => {
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nhello".to_vec()]
            }
            "/chunked" => vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhel".to_vec(),
                b"lo\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n".to_vec(),
            ],
            "/close" => vec![
                b"HTTP/1.0 200 OK\r\nX-Kind: close-delimited\r\n\r\nuntil-".to_vec(),
                b"the-end".to_vec(),
            ],
            "/early" => vec![
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n".to_vec(),
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            ],
            "/head" => vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec()],
            "/nocontent" => vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()],
            "/echo-head" => {
                let b = head.clone();
                vec![
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n\r\n{b}",
                        b.len()
                    )
                    .into_bytes(),
                ]
            }
            "/post" => vec![
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{method}:{body}",
                    method.len() + 1 + body.len()
                )
                .into_bytes(),
            ],
            // Answers, then closes the idle connection without saying so (a stale pooled
            // connection for the proxy).
            "/then-close" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbye!").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            "/bad-chunk" => vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXXgarbage".to_vec()],
            "/short" => vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-this".to_vec()],
            _ => vec![b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()],
        };
        for (i, part) in reply.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if s.write_all(part).await.is_err() {
                return;
            }
        }
        if matches!(path.as_str(), "/close" | "/bad-chunk" | "/short") {
            return;
        }
    }
}

impl ScriptedBackend {
    async fn start() -> ScriptedBackend {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let c = connections.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(scripted_connection(s, c.clone()));
            }
        });
        ScriptedBackend { addr, connections }
    }
}

/// One response read from a client connection.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: String,
}

/// Read one response (Content-Length, chunked, or until close when neither).
fn read_response(r: &mut BufReader<TcpStream>, head_request: bool) -> std::io::Result<Resp> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {head:?}"),
            ));
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let lower = head.to_ascii_lowercase();
    let header = |name: &str| {
        lower
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_string()))
    };
    let mut body = Vec::new();
    if head_request || status == 204 || status == 304 || status < 200 {
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
            if n == 0 {
                // Trailers up to the empty line, kept in the body for the checks.
                loop {
                    let mut t = String::new();
                    r.read_line(&mut t)?;
                    if t == "\r\n" {
                        break;
                    }
                    body.extend_from_slice(format!("[trailer {}]", t.trim()).as_bytes());
                }
                break;
            }
            let mut data = vec![0u8; n + 2];
            r.read_exact(&mut data)?;
            body.extend_from_slice(&data[..n]);
        }
    } else if let Some(n) = header("content-length") {
        let mut data = vec![0u8; n.parse().unwrap()];
        r.read_exact(&mut data)?;
        body = data;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Resp {
        status,
        head,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

fn request(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: fast.prox.local\r\n{extra}\r\n")
}

fn connect(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

#[test]
fn fast_path_framing_reuse_retry_pipelining_and_handoff() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let be = rt.block_on(ScriptedBackend::start());
    let dir = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = write_config_and_seed(dir.path(), p, 60, &[app("app-ffffffffffff", "fast", be.addr, &[], false)]);
    let mut cmd = Command::new(common::bin());
    cmd.arg("serve").arg("--config").arg(&cfg);
    let mut d = Proc::spawn(cmd);
    d.wait_ready();
    let h = p.http;

    // Several requests on one client connection: every framing, one upstream connection.
    let (mut w, mut r) = connect(h);
    w.write_all(request("/len", "").as_bytes()).unwrap();
    let x = read_response(&mut r, false).unwrap();
    assert_eq!((x.status, x.body.as_str()), (200, "hello"), "{x:?}");
    assert!(
        !x.head.to_ascii_lowercase().contains("keep-alive"),
        "hop-by-hop headers removed: {x:?}"
    );
    w.write_all(request("/chunked", "").as_bytes()).unwrap();
    let x = read_response(&mut r, false).unwrap();
    assert_eq!((x.status, x.body.as_str()), (200, "hello world[trailer X-Sum: 11]"), "{x:?}");
    w.write_all(request("/early", "").as_bytes()).unwrap();
    let x = read_response(&mut r, false).unwrap();
    assert_eq!(x.status, 103, "interim response relayed: {x:?}");
    let x = read_response(&mut r, false).unwrap();
    assert_eq!((x.status, x.body.as_str()), (200, "ok"), "{x:?}");
    w.write_all(b"HEAD /head HTTP/1.1\r\nHost: fast.prox.local\r\n\r\n").unwrap();
    let x = read_response(&mut r, true).unwrap();
    assert_eq!(x.status, 200);
    assert!(x.head.contains("Content-Length: 100"), "{x:?}");
    w.write_all(request("/nocontent", "").as_bytes()).unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().status, 204);

    // Forwarded head: hop-by-hop request headers dropped, forwarding headers set, the
    // client's X-Forwarded-For extended; the response's Connection-listed header dropped.
    w.write_all(
        request(
            "/echo-head",
            "Connection: keep-alive\r\nKeep-Alive: 300\r\nTE: trailers\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: ftp\r\nX-Custom: kept\r\n",
        )
        .as_bytes(),
    )
    .unwrap();
    let x = read_response(&mut r, false).unwrap();
    let up = x.body.to_ascii_lowercase();
    assert!(up.starts_with("get /echo-head http/1.1\r\n"), "{up}");
    for want in [
        "x-forwarded-for: 192.0.2.1, 127.0.0.1\r\n",
        "x-forwarded-proto: http\r\n",
        "x-forwarded-host: fast.prox.local\r\n",
        "x-real-ip: 127.0.0.1\r\n",
        "x-custom: kept\r\n",
        "host: fast.prox.local\r\n",
    ] {
        assert!(up.contains(want), "upstream head lacks {want:?}: {up}");
    }
    for gone in ["keep-alive", "\r\nte:", "ftp"] {
        assert!(!up.contains(gone), "upstream head still has {gone:?}: {up}");
    }
    assert!(!x.head.to_ascii_lowercase().contains("x-hop"), "{x:?}");
    assert_eq!(
        be.connections.load(Ordering::SeqCst),
        1,
        "the first request's upstream connection served all of them"
    );

    // Pipelined: two requests in one write, answered in order.
    w.write_all(format!("{}{}", request("/len", ""), request("/chunked", "")).as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().body, "hello");
    assert_eq!(read_response(&mut r, false).unwrap().body, "hello world[trailer X-Sum: 11]");

    // Hand-off in the middle of the keep-alive connection: a POST with a body goes to
    // pingora, which keeps serving the connection.
    w.write_all(b"POST /post HTTP/1.1\r\nHost: fast.prox.local\r\nContent-Length: 4\r\n\r\nabcd")
        .unwrap();
    let x = read_response(&mut r, false).unwrap();
    assert_eq!((x.status, x.body.as_str()), (200, "POST:abcd"), "{x:?}");
    w.write_all(request("/len", "").as_bytes()).unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().body, "hello");

    // A pooled upstream connection closed by the backend while idle: retried on a new one.
    let (mut w2, mut r2) = connect(h);
    w2.write_all(request("/then-close", "").as_bytes()).unwrap();
    assert_eq!(read_response(&mut r2, false).unwrap().body, "bye!");
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        w2.write_all(request("/len", "").as_bytes()).unwrap();
        let x = read_response(&mut r2, false).unwrap();
        assert_eq!(
            (x.status, x.body.as_str()),
            (200, "hello"),
            "stale pooled connection retried: {x:?}"
        );
    }

    // Close-delimited upstream body: relayed, then the client connection closes.
    let (mut w3, mut r3) = connect(h);
    w3.write_all(request("/close", "").as_bytes()).unwrap();
    let x = read_response(&mut r3, false).unwrap();
    assert_eq!((x.status, x.body.as_str()), (200, "until-the-end"), "{x:?}");
    assert!(x.head.to_ascii_lowercase().contains("connection: close"), "{x:?}");

    // `Connection: close` from the client is honoured.
    let (mut w4, mut r4) = connect(h);
    w4.write_all(request("/len", "Connection: close\r\n").as_bytes()).unwrap();
    let x = read_response(&mut r4, false).unwrap();
    assert_eq!(x.body, "hello");
    let mut rest = Vec::new();
    assert_eq!(r4.read_to_end(&mut rest).unwrap(), 0, "closed after the response");

    // Broken upstream bodies: the client sees the connection end early, never a
    // truncated response passing as complete.
    for path in ["/bad-chunk", "/short"] {
        let (mut w5, mut r5) = connect(h);
        w5.write_all(request(path, "").as_bytes()).unwrap();
        let x = read_response(&mut r5, false);
        // Framing broken before anything was sent: a 502 page; after: the cut connection.
        assert!(x.as_ref().map_or(true, |x| x.status == 502), "{path}: {x:?}");
    }

    // Unknown host and HTTP/1.0 still get pingora's answers.
    let (c, t) = raw_status(h, b"GET / HTTP/1.1\r\nHost: nope.prox.local\r\n\r\n");
    assert_eq!(c, 404, "{t}");
    let (c, t) = raw_status(h, b"GET /len HTTP/1.0\r\nHost: fast.prox.local\r\n\r\n");
    assert_eq!(c, 200, "{t}");

    // The access log and metrics count fast-path requests like the others.
    let metrics = http_get(p.api, "127.0.0.1", "/metrics").unwrap().1;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("proximity_proxy_requests_total") && l.contains("app=\"fast\"") && l.contains("code=\"200\""))
        .unwrap_or_else(|| panic!("no request counter for the app: {metrics}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 10.0, "{line}");

    // Shutdown with idle keep-alive connections open is prompt and clean.
    d.signal("TERM");
    let st = d.wait_exit(Duration::from_secs(15)).expect("daemon stops on SIGTERM");
    assert!(st.success(), "{st:?}");
    drop((w, w2));
}
