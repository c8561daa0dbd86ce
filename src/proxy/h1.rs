//! Pure HTTP/1.1 message handling of the proxy's fast path: which requests it forwards
//! itself, the request head sent upstream, the response head sent back and how the
//! response body is framed. No I/O.
//!
//! The fast path takes the common case only: an HTTP/1.1 request with an idempotent method
//! and without a body, upgrade or `Expect`, with a well-formed head. Everything else (bodies, WebSocket, HTTP/1.0, h2,
//! malformed or oversized heads) is [`Parse::Handoff`]: the connection goes to pingora with
//! the bytes read so far, which answers it with the full policy.

use super::policy::{self, HeaderLimits};

/// Most header lines parsed in a request or response head.
const MAX_PARSED_HEADERS: usize = 128;
/// Largest upstream response head, bytes (larger → 502).
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// What the fast path does with the bytes of a request head read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// The head is not complete yet: read more.
    Partial,
    /// Not for the fast path: give the connection to pingora.
    Handoff,
    /// Forward it; the upstream head was written to the output buffer.
    Request(RequestInfo),
}

/// A request the fast path forwards.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// Bytes of the request head in the input (the request ends there: no body).
    pub head_len: usize,
    /// Normalised host (route key, `X-Forwarded-Host`).
    pub host: String,
    /// The client keeps the connection open after this response.
    pub keep_alive: bool,
    /// `HEAD` request (the response has no body whatever its headers say).
    pub head_method: bool,
    /// Length of the method at the start of the upstream head (`out[..method_len]`).
    pub method_len: usize,
    /// Length of the request target, which follows the method and one space.
    pub path_len: usize,
}

impl RequestInfo {
    /// Method and request target, read back from the upstream head this request wrote.
    pub fn method_and_path<'a>(&self, upstream_head: &'a [u8]) -> (&'a str, &'a str) {
        let m = upstream_head.get(..self.method_len).unwrap_or_default();
        let p = upstream_head
            .get(self.method_len + 1..self.method_len + 1 + self.path_len)
            .unwrap_or_default();
        (std::str::from_utf8(m).unwrap_or("-"), std::str::from_utf8(p).unwrap_or("-"))
    }
}

/// Who is forwarding: the values of the `X-Forwarded-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The client's IP address, as text.
    pub client_ip: &'a str,
    /// `http` or `https`.
    pub proto: &'static str,
}

/// Request headers never forwarded (hop-by-hop, or set by the proxy itself).
fn dropped_request_header(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
        "x-forwarded-for",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Does a `Connection` header value only hold `keep-alive` / `close` tokens?
/// Returns (ok, close requested).
fn connection_tokens(value: &[u8]) -> (bool, bool) {
    let mut close = false;
    for token in value.split(|b| *b == b',') {
        let t = token.trim_ascii();
        if t.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if !(t.is_empty() || t.eq_ignore_ascii_case(b"keep-alive")) {
            return (false, close);
        }
    }
    (true, close)
}

/// Parse a request head from `buf` and, when the fast path takes it, write the head to
/// send upstream into `out` (cleared first).
pub fn read_request(buf: &[u8], limits: &HeaderLimits, fwd: Forwarding<'_>, out: &mut Vec<u8>) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_PARSED_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < limits.max_header_bytes => return Parse::Partial,
        _ => return Parse::Handoff,
    };
    if req.version != Some(1) || policy::check_raw_head(&buf[..head_len], limits).is_err() {
        return Parse::Handoff;
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Parse::Handoff;
    };
    // Only idempotent methods: a pooled upstream connection found closed is retried on a
    // new one, which must not repeat a POST. CONNECT and absolute-form targets go too.
    if !matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE") || !path.starts_with('/') {
        return Parse::Handoff;
    }
    let mut host_raw: Option<&[u8]> = None;
    let mut keep_alive = true;
    let mut xff_prev: Vec<&[u8]> = Vec::new();
    for h in req.headers.iter() {
        let n = h.name;
        if n.eq_ignore_ascii_case("host") {
            if host_raw.is_some() {
                return Parse::Handoff;
            }
            host_raw = Some(h.value);
        } else if n.eq_ignore_ascii_case("content-length") {
            if h.value.trim_ascii() != b"0" {
                return Parse::Handoff;
            }
        } else if n.eq_ignore_ascii_case("transfer-encoding") || n.eq_ignore_ascii_case("upgrade") || n.eq_ignore_ascii_case("expect") {
            return Parse::Handoff;
        } else if n.eq_ignore_ascii_case("connection") {
            let (ok, close) = connection_tokens(h.value);
            if !ok {
                return Parse::Handoff;
            }
            keep_alive &= !close;
        } else if n.eq_ignore_ascii_case("x-forwarded-for") {
            let v = h.value.trim_ascii();
            if !v.is_empty() {
                xff_prev.push(v);
            }
        }
    }
    let Some(host) = host_raw
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(super::routes::normalize_host)
    else {
        return Parse::Handoff;
    };

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        if dropped_request_header(h.name) {
            continue;
        }
        push_header(out, h.name.as_bytes(), h.value);
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    for prev in &xff_prev {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(fwd.client_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    push_header(out, b"x-forwarded-proto", fwd.proto.as_bytes());
    push_header(out, b"x-forwarded-host", host.as_bytes());
    push_header(out, b"x-real-ip", fwd.client_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    Parse::Request(RequestInfo {
        head_len,
        host,
        keep_alive,
        head_method: method == "HEAD",
        method_len: method.len(),
        path_len: path.len(),
    })
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, relayed as is.
    Chunked,
    /// Until the upstream closes (the client connection closes after it too).
    UntilClose,
}

/// A parsed upstream response head.
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseParse {
    /// Read more.
    Partial,
    /// Not a valid HTTP/1 response (or a head over [`MAX_RESPONSE_HEAD`]): 502.
    Invalid,
    /// An interim 1xx response (not 101): forward it and read the final one.
    Interim {
        /// Bytes of the interim head.
        head_len: usize,
    },
    /// The final response head; the head for the client was written to the output.
    Final(ResponseInfo),
}

/// The final response of a forwarded request.
#[derive(Debug, PartialEq, Eq)]
pub struct ResponseInfo {
    /// Bytes of the response head in the input.
    pub head_len: usize,
    /// Status code.
    pub status: u16,
    /// Body framing.
    pub framing: Framing,
    /// The upstream connection may carry another request after this body.
    pub upstream_reusable: bool,
    /// The client connection stays open after this response.
    pub keep_alive: bool,
}

/// Parse an upstream response head from `buf`; for a final response write the head for
/// the client into `out` (cleared first): status line `HTTP/1.1`, hop-by-hop headers
/// removed, `connection: close` when the client connection ends after it.
/// `head_method`: the request was HEAD. `client_keep_alive`: what the client asked for.
pub fn read_response(buf: &[u8], head_method: bool, client_keep_alive: bool, out: &mut Vec<u8>) -> ResponseParse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_PARSED_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => return ResponseParse::Partial,
        _ => return ResponseParse::Invalid,
    };
    let Some(status) = resp.code else {
        return ResponseParse::Invalid;
    };
    if status == 101 || !(100..=999).contains(&status) {
        return ResponseParse::Invalid;
    }
    let http11 = resp.version == Some(1);
    let mut upstream_close = !http11;
    let mut content_length: Option<u64> = None;
    let mut chunked = None::<bool>;
    let mut listed: Vec<&[u8]> = Vec::new();
    for h in resp.headers.iter() {
        let n = h.name;
        if n.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    upstream_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    if !http11 {
                        upstream_close = false;
                    }
                } else if !t.is_empty() {
                    listed.push(t);
                }
            }
        } else if n.eq_ignore_ascii_case("content-length") {
            let Some(v) = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok()) else {
                return ResponseParse::Invalid;
            };
            if content_length.is_some_and(|c| c != v) {
                return ResponseParse::Invalid;
            }
            content_length = Some(v);
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default().trim_ascii();
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        }
    }
    if status < 200 {
        return ResponseParse::Interim { head_len };
    }
    let framing = if head_method || status == 204 || status == 304 {
        Framing::Empty
    } else if let Some(c) = chunked {
        if c { Framing::Chunked } else { Framing::UntilClose }
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let keep_alive = client_keep_alive && framing != Framing::UntilClose;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        let n = h.name;
        if ["connection", "keep-alive", "proxy-connection"]
            .iter()
            .any(|d| n.eq_ignore_ascii_case(d))
            || listed.iter().any(|l| l.eq_ignore_ascii_case(n.as_bytes()))
        {
            continue;
        }
        // A chunked body and a Content-Length together: the length is ignored (RFC 9112
        // §6.3) and not passed on, so the client sees one framing only.
        if framing == Framing::Chunked && n.eq_ignore_ascii_case("content-length") {
            continue;
        }
        push_header(out, n.as_bytes(), h.value);
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    ResponseParse::Final(ResponseInfo {
        head_len,
        status,
        framing,
        upstream_reusable: !upstream_close && framing != Framing::UntilClose,
        keep_alive,
    })
}

/// The status code as three ASCII digits.
fn itoa3(status: u16) -> [u8; 3] {
    [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

/// Finds where a chunked body ends, fed the bytes as they arrive.
#[derive(Debug, Clone, Default)]
pub struct ChunkScanner {
    state: ChunkState,
    /// Digits of the current size line (bounded).
    size: u64,
    size_digits: u8,
    /// Length of the current trailer line.
    line_len: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// Chunk extension after the size, up to CRLF.
    Extension,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    /// Trailer section after the last chunk; `line_len` counts the current line.
    Trailer,
    TrailerLf,
    Done,
}

/// A chunked body that cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError;

impl ChunkScanner {
    /// One byte of a chunk-extension or trailer line: CR moves to `on_cr`, a bare LF or a
    /// line longer than `max` is an error.
    fn line_byte(&mut self, b: u8, on_cr: ChunkState, max: usize) -> Result<(), ChunkError> {
        match b {
            b'\r' => self.state = on_cr,
            b'\n' => return Err(ChunkError),
            _ => {
                self.line_len += 1;
                if self.line_len > max {
                    return Err(ChunkError);
                }
            }
        }
        Ok(())
    }

    /// Feed the next bytes; returns how many of them belong to the body and whether the
    /// body ended there. Bytes after the end are not consumed.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, bool), ChunkError> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match self.state {
                ChunkState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.size_digits += 1;
                        if self.size_digits > 15 {
                            return Err(ChunkError);
                        }
                        self.size = self.size * 16 + d;
                    }
                    b';' | b' ' | b'\t' if self.size_digits > 0 => self.state = ChunkState::Extension,
                    b'\r' if self.size_digits > 0 => self.state = ChunkState::SizeLf,
                    _ => return Err(ChunkError),
                },
                ChunkState::Extension => self.line_byte(b, ChunkState::SizeLf, 4096)?,
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.line_len = 0;
                    self.size_digits = 0;
                    if self.size == 0 {
                        self.state = ChunkState::Trailer;
                    } else {
                        self.state = ChunkState::Data(self.size);
                    }
                    self.size = 0;
                }
                ChunkState::Data(left) => {
                    let take = left.min((buf.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left - take)
                    };
                    continue;
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError);
                    }
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => self.line_byte(b, ChunkState::TrailerLf, 8192)?,
                ChunkState::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    if self.line_len == 0 {
                        self.state = ChunkState::Done;
                        return Ok((i + 1, true));
                    }
                    self.line_len = 0;
                    self.state = ChunkState::Trailer;
                }
                ChunkState::Done => return Ok((i, true)),
            }
            i += 1;
        }
        Ok((i, self.state == ChunkState::Done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FWD: Forwarding<'static> = Forwarding {
        client_ip: "10.0.0.9",
        proto: "http",
    };

    fn req(raw: &str) -> (Parse, String) {
        let mut out = Vec::new();
        let p = read_request(raw.as_bytes(), &HeaderLimits::default(), FWD, &mut out);
        (p, String::from_utf8(out).unwrap())
    }

    #[test]
    fn plain_get_is_forwarded_with_forwarding_headers_and_without_hop_by_hop() {
        let raw = "GET /a?b=1 HTTP/1.1\r\nHost: App.Prox.Local:80\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nX-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 6.6.6.6\r\nAccept: */*\r\n\r\nGET /next";
        let (p, out) = req(raw);
        let Parse::Request(info) = p else { panic!("{p:?}") };
        assert_eq!(info.head_len, raw.len() - "GET /next".len());
        assert_eq!(info.host, "app.prox.local");
        assert!(info.keep_alive && !info.head_method);
        assert_eq!(info.method_and_path(out.as_bytes()), ("GET", "/a?b=1"));
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: App.Prox.Local:80\r\nAccept: */*\r\nx-forwarded-for: 1.2.3.4, 10.0.0.9\r\nx-forwarded-proto: http\r\nx-forwarded-host: app.prox.local\r\nx-real-ip: 10.0.0.9\r\n\r\n"
        );
    }

    #[test]
    fn unusual_requests_go_to_pingora() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            "PATCH / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: bad host\r\n\r\n",
            "GE T / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(req(raw).0, Parse::Handoff, "{raw:?}");
        }
        assert_eq!(req("GET / HTTP/1.1\r\nHost: a\r\n").0, Parse::Partial);
        let huge = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "y".repeat(40_000));
        assert_eq!(req(&huge).0, Parse::Handoff, "over the head limit");
    }

    #[test]
    fn connection_close_and_head_are_noticed() {
        let (p, _) = req("HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        let Parse::Request(info) = p else { panic!() };
        assert!(!info.keep_alive && info.head_method);
    }

    fn resp(raw: &str, head: bool, ka: bool) -> (ResponseParse, String) {
        let mut out = Vec::new();
        let p = read_response(raw.as_bytes(), head, ka, &mut out);
        (p, String::from_utf8(out).unwrap())
    }

    #[test]
    fn response_framing_and_reuse() {
        let (p, out) = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nhello",
            false,
            true,
        );
        let ResponseParse::Final(i) = p else { panic!() };
        assert_eq!(
            (i.status, i.framing, i.upstream_reusable, i.keep_alive),
            (200, Framing::Length(5), true, true)
        );
        assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");

        let (p, out) = resp("HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody", false, true);
        let ResponseParse::Final(i) = p else { panic!() };
        assert_eq!((i.framing, i.upstream_reusable, i.keep_alive), (Framing::UntilClose, false, false));
        assert_eq!(out, "HTTP/1.1 200 OK\r\nServer: x\r\nconnection: close\r\n\r\n");

        let (p, out) = resp(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n",
            false,
            true,
        );
        let ResponseParse::Final(i) = p else { panic!() };
        assert_eq!((i.framing, i.upstream_reusable, i.keep_alive), (Framing::Chunked, false, true));
        assert_eq!(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");

        let ResponseParse::Final(i) = resp("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", true, false).0 else {
            panic!()
        };
        assert_eq!((i.framing, i.keep_alive), (Framing::Empty, false));
        let ResponseParse::Final(i) = resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", false, true).0 else {
            panic!()
        };
        assert_eq!(i.framing, Framing::Empty);
        assert_eq!(
            resp("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false, true).0,
            ResponseParse::Interim { head_len: 40 }
        );
        assert_eq!(resp("HTTP/1.1 101 Switching\r\n\r\n", false, true).0, ResponseParse::Invalid);
        assert_eq!(
            resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false, true).0,
            ResponseParse::Invalid
        );
        assert_eq!(
            resp("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false, true).0,
            ResponseParse::Invalid
        );
        assert_eq!(resp("HTTP/1.1 200 OK\r\nA: b\r\n", false, true).0, ResponseParse::Partial);
        assert_eq!(resp("garbage\r\n\r\n", false, true).0, ResponseParse::Invalid);
    }

    #[test]
    fn chunk_scanner_finds_the_end_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut s = ChunkScanner::default();
            let (a, done_a) = s.feed(&body[..split]).unwrap();
            assert_eq!(a, split.min(end));
            if done_a {
                assert!(split >= end);
                continue;
            }
            let (b, done) = s.feed(&body[split..]).unwrap();
            assert!(done, "split {split}");
            assert_eq!(split + b, end);
        }
        let mut s = ChunkScanner::default();
        assert_eq!(s.feed(b"0\r\n\r\n"), Ok((5, true)));
        for bad in [&b"x\r\n"[..], b"5\r\nhelloXX", b"\r\n", b"0\n", b"fffffffffffffffff\r\n"] {
            assert_eq!(ChunkScanner::default().feed(bad), Err(ChunkError), "{bad:?}");
        }
    }
}
