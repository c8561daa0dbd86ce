//! Pure request decisions of the proxy: framing checks against request smuggling, header
//! size limits, redirects and the small branded pages. No I/O.

/// A request refused before routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status to answer.
    pub status: u16,
    /// Short reason (logged and shown).
    pub reason: &'static str,
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// Largest request head (request line + headers), bytes.
    pub max_header_bytes: usize,
    /// Most header lines.
    pub max_headers: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        HeaderLimits {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
        }
    }
}

/// Check the raw HTTP/1 request head as received (before any normalisation): more than one
/// `Content-Length` line, a `Content-Length` together with `Transfer-Encoding`, or a head over
/// the limits is refused. Ambiguous framing is how requests are smuggled past proxies, so
/// it is rejected rather than repaired.
pub fn check_raw_head(raw: &[u8], limits: &HeaderLimits) -> Result<(), Reject> {
    if raw.len() > limits.max_header_bytes {
        return Err(Reject {
            status: 431,
            reason: "request header fields too large",
        });
    }
    let mut cl = 0usize;
    let mut te = 0usize;
    let mut lines = 0usize;
    // Skip the request line.
    for line in raw.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        lines += 1;
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = &line[..colon];
        if name.eq_ignore_ascii_case(b"content-length") {
            cl += 1;
            let value = &line[colon + 1..];
            if value.contains(&b',') {
                return Err(Reject {
                    status: 400,
                    reason: "Content-Length with several values",
                });
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te += 1;
        }
    }
    if lines > limits.max_headers {
        return Err(Reject {
            status: 431,
            reason: "too many header fields",
        });
    }
    if cl > 1 {
        return Err(Reject {
            status: 400,
            reason: "duplicate Content-Length",
        });
    }
    if cl > 0 && te > 0 {
        return Err(Reject {
            status: 400,
            reason: "both Content-Length and Transfer-Encoding",
        });
    }
    Ok(())
}

/// The `Location` for an HTTP → HTTPS redirect (port omitted when 443).
pub fn https_location(host: &str, path_and_query: &str, https_port: u16) -> String {
    let path = if path_and_query.starts_with('/') { path_and_query } else { "/" };
    if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    }
}

/// Escape text for HTML.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: u16, title: &str, body_html: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status} {title} · Proximity</title>\
<style>body{{font-family:system-ui,sans-serif;background:#0f172a;color:#e2e8f0;display:flex;min-height:100vh;margin:0;align-items:center;justify-content:center}}\
main{{max-width:36rem;padding:2rem}}h1{{font-size:1.4rem}}.brand{{color:#38bdf8;font-weight:700;letter-spacing:.05em}}code{{color:#fbbf24}}</style></head>\
<body><main><div class=\"brand\">PROXIMITY</div><h1>{status} · {title}</h1>{body_html}</main></body></html>\n"
    )
}

/// Unknown host page (404).
pub fn not_found_page(host: &str) -> String {
    page(
        404,
        "No app here",
        &format!(
            "<p>No app answers at <code>{}</code> on this appliance.</p><p>Check the address, or deploy an app with this name from the Proximity dashboard.</p>",
            html_escape(host)
        ),
    )
}

/// Upstream unreachable page (502) naming the app.
pub fn bad_gateway_page(app: &str) -> String {
    page(
        502,
        "App not reachable",
        &format!(
            "<p>The app <code>{}</code> is not answering right now.</p><p>It may be starting, stopped or failing; check its status in the Proximity dashboard.</p>",
            html_escape(app)
        ),
    )
}

/// Generic error page for other statuses.
pub fn error_page(status: u16, reason: &str) -> String {
    page(status, reason, "<p>The request could not be handled.</p>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[&str]) -> Vec<u8> {
        let mut s = String::from("POST / HTTP/1.1\r\n");
        for l in lines {
            s.push_str(l);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    #[test]
    fn smuggling_shapes_are_rejected() {
        let l = HeaderLimits::default();
        assert!(check_raw_head(&head(&["Host: a", "Content-Length: 3"]), &l).is_ok());
        assert!(check_raw_head(&head(&["Host: a", "Transfer-Encoding: chunked"]), &l).is_ok());
        let dup = check_raw_head(&head(&["Host: a", "Content-Length: 3", "content-length: 3"]), &l).unwrap_err();
        assert_eq!(dup.status, 400);
        assert_eq!(dup.reason, "duplicate Content-Length");
        let both = check_raw_head(&head(&["Host: a", "Content-Length: 3", "Transfer-Encoding: chunked"]), &l).unwrap_err();
        assert_eq!(both.status, 400);
        assert!(check_raw_head(&head(&["Host: a", "Content-Length: 3, 3"]), &l).is_err());
        assert!(check_raw_head(&head(&["Host: a", "TRANSFER-ENCODING: chunked", "CONTENT-LENGTH: 1"]), &l).is_err());
    }

    #[test]
    fn oversized_heads_are_rejected() {
        let l = HeaderLimits {
            max_header_bytes: 200,
            max_headers: 3,
        };
        let big = "X-Big: ".to_string() + &"a".repeat(300);
        assert_eq!(check_raw_head(&head(&["Host: a", &big]), &l).unwrap_err().status, 431);
        assert_eq!(
            check_raw_head(&head(&["Host: a", "A: 1", "B: 2", "C: 3"]), &l).unwrap_err().status,
            431
        );
        assert!(check_raw_head(&head(&["Host: a", "A: 1", "B: 2"]), &l).is_ok());
    }

    #[test]
    fn redirects_and_pages() {
        assert_eq!(https_location("a.prox.local", "/x?y=1", 443), "https://a.prox.local/x?y=1");
        assert_eq!(https_location("a.prox.local", "", 8443), "https://a.prox.local:8443/");
        let p = not_found_page("<script>.prox.local");
        assert!(p.contains("&lt;script&gt;") && !p.contains("<script>"));
        assert!(p.contains("404"));
        let p = bad_gateway_page("nginx-01");
        assert!(p.contains("nginx-01") && p.contains("502"));
    }
}
