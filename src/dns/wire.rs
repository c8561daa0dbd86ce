//! The DNS fast path: a plain `A`/`IN` query for a name of the local zone is answered
//! straight from the request bytes into a stack buffer, with no decoding into hickory
//! messages and no allocation. Anything else (other types or classes, unknown names,
//! compression or unusual label bytes in the question, EDNS versions other than 0, trailing
//! bytes, non-query opcodes, responses) returns `None` and takes the full path
//! ([`super::decide`] through hickory), so both paths give the same answers. Pure.

use std::net::{IpAddr, Ipv4Addr};

use super::zone::Zone;

/// Largest response the fast path writes (header + question ≤ 259 + answer 16 + OPT 11).
pub const MAX_FAST_RESPONSE: usize = 512;

/// EDNS UDP payload size we advertise (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// RCODE FORMERR (RFC 1035).
pub const RCODE_FORMERR: u8 = 1;
/// RCODE REFUSED (RFC 1035).
pub const RCODE_REFUSED: u8 = 5;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const TYPE_OPT: u16 = 41;
const HEADER_LEN: usize = 12;

/// The parts of a request the fast path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimpleQuery {
    /// End of the question section (offset after QTYPE/QCLASS).
    pub question_end: usize,
    /// Query type.
    pub qtype: u16,
    /// Query class.
    pub qclass: u16,
    /// `Some(dnssec_ok)` when the request carried an EDNS(0) OPT record.
    pub edns_do: Option<bool>,
}

/// Parse a request with exactly one question, no answer/authority records and at most one
/// EDNS(0) OPT record. Writes the lower-case dotted name (no trailing dot) into `key` and
/// returns its length with the parsed parts; `None` when the request is anything else.
pub fn parse_simple_query(req: &[u8], key: &mut [u8; 256]) -> Option<(SimpleQuery, usize)> {
    if req.len() < HEADER_LEN + 5 {
        return None;
    }
    let flags = u16::from_be_bytes([req[2], req[3]]);
    // QR must be 0 (a query), opcode 0 (QUERY), TC clear, RCODE 0.
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || flags & 0x0200 != 0 || flags & 0x000f != 0 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([req[4 + 2 * i], req[5 + 2 * i]]);
    let (qd, an, ns, ar) = (count(0), count(1), count(2), count(3));
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    // QNAME: plain labels only; bytes restricted so the dotted text is unambiguous.
    let mut pos = HEADER_LEN;
    let mut key_len = 0usize;
    loop {
        let len = usize::from(*req.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression pointer or reserved label type
        }
        let label = req.get(pos..pos + len)?;
        let dot = usize::from(key_len > 0);
        if key_len + dot + len > 253 {
            return None;
        }
        if dot == 1 {
            key[key_len] = b'.';
            key_len += 1;
        }
        for &b in label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            key[key_len] = b.to_ascii_lowercase();
            key_len += 1;
        }
        pos += len;
    }
    let tail = req.get(pos..pos + 4)?;
    let qtype = u16::from_be_bytes([tail[0], tail[1]]);
    let qclass = u16::from_be_bytes([tail[2], tail[3]]);
    let question_end = pos + 4;
    let edns_do = if ar == 1 {
        // OPT: root owner, type 41, class = payload, TTL = ext-rcode/version/flags, RDATA.
        let opt = req.get(question_end..question_end + 11)?;
        if opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != TYPE_OPT || opt[6] != 0 {
            return None; // not an OPT record, or EDNS version ≠ 0 (BADVERS on the full path)
        }
        let rdlen = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
        if question_end + 11 + rdlen != req.len() {
            return None;
        }
        // Options must be well-framed (code, length, data) to the last byte.
        let mut opts = &req[question_end + 11..];
        while !opts.is_empty() {
            let len = usize::from(u16::from_be_bytes([*opts.get(2)?, *opts.get(3)?]));
            opts = opts.get(4 + len..)?;
        }
        Some(opt[7] & 0x80 != 0)
    } else {
        if question_end != req.len() {
            return None;
        }
        None
    };
    Some((
        SimpleQuery {
            question_end,
            qtype,
            qclass,
            edns_do,
        },
        key_len,
    ))
}

/// Answer `req` from `zone` when it is a simple `A`/`IN` query for a local name: writes the
/// response into `out` and returns its length. `recursion_available` is the RA flag the
/// full path would set for this client.
pub fn answer_local_a(zone: &Zone, req: &[u8], client: IpAddr, recursion_available: bool, out: &mut [u8]) -> Option<usize> {
    let mut key = [0u8; 256];
    let (q, key_len) = parse_simple_query(req, &mut key)?;
    if q.qtype != TYPE_A || q.qclass != CLASS_IN {
        return None;
    }
    let name = std::str::from_utf8(&key[..key_len]).ok()?;
    let ip = zone.local_a(name, client)?;
    Some(write_a_response(req, &q, ip, zone.ttl(), recursion_available, out))
}

/// Write the response to the simple query `q` of `req` with one `A` record.
fn write_a_response(req: &[u8], q: &SimpleQuery, ip: Ipv4Addr, ttl: u32, recursion_available: bool, out: &mut [u8]) -> usize {
    // Header: same ID; QR, AA, RD copied; RA as given; CD copied; RCODE 0.
    out[0] = req[0];
    out[1] = req[1];
    out[2] = 0x80 | 0x04 | (req[2] & 0x01);
    out[3] = if recursion_available { 0x80 } else { 0 } | (req[3] & 0x10);
    let ar: u16 = q.edns_do.map_or(0, |_| 1);
    out[4..12].copy_from_slice(&[0, 1, 0, 1, 0, 0, (ar >> 8) as u8, ar as u8]);
    // Question verbatim (keeps the client's letter case).
    let qlen = q.question_end - HEADER_LEN;
    out[HEADER_LEN..q.question_end].copy_from_slice(&req[HEADER_LEN..q.question_end]);
    let mut pos = HEADER_LEN + qlen;
    // Answer: owner = pointer to the question name, A, IN, TTL, RDLENGTH 4, address.
    out[pos..pos + 6].copy_from_slice(&[0xc0, 0x0c, 0, TYPE_A as u8, 0, CLASS_IN as u8]);
    out[pos + 6..pos + 10].copy_from_slice(&ttl.to_be_bytes());
    out[pos + 10..pos + 12].copy_from_slice(&[0, 4]);
    out[pos + 12..pos + 16].copy_from_slice(&ip.octets());
    pos += 16;
    if let Some(dnssec_ok) = q.edns_do {
        // OPT: root, type 41, our payload size, ext-rcode 0, version 0, DO echoed, no options.
        let [p0, p1] = EDNS_PAYLOAD.to_be_bytes();
        out[pos..pos + 11].copy_from_slice(&[0, 0, TYPE_OPT as u8, p0, p1, 0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        pos += 11;
    }
    pos
}

/// A header-only error response (`rcode`) that echoes the question when the request has a
/// parseable one; `None` when the request is too short to carry an ID or is a response.
pub fn error_response(req: &[u8], rcode: u8, recursion_available: bool) -> Option<Vec<u8>> {
    if req.len() < HEADER_LEN || req[2] & 0x80 != 0 {
        return None;
    }
    let mut key = [0u8; 256];
    let question_end = parse_simple_query(req, &mut key).map(|(q, _)| q.question_end);
    let mut out = Vec::with_capacity(question_end.unwrap_or(HEADER_LEN));
    out.extend_from_slice(&req[..2]);
    out.push(0x80 | (req[2] & 0x79)); // QR, opcode and RD copied
    out.push(if recursion_available { 0x80 } else { 0 } | (req[3] & 0x10) | (rcode & 0x0f));
    out.extend_from_slice(&[0, u8::from(question_end.is_some()), 0, 0, 0, 0, 0, 0]);
    if let Some(end) = question_end {
        out.extend_from_slice(&req[HEADER_LEN..end]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::zone::ZoneSettings;
    use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};

    fn zone() -> Zone {
        let mut plan = crate::plan::NetworkPlan::empty(&crate::config::Config::default().network);
        plan.records = vec![
            crate::plan::DnsRecord {
                name: "db.prox.local".into(),
                ip: Ipv4Addr::new(10, 20, 0, 101),
                proxied: false,
                app_id: "a".into(),
            },
            crate::plan::DnsRecord {
                name: "web.prox.local".into(),
                ip: Ipv4Addr::new(10, 20, 0, 102),
                proxied: true,
                app_id: "b".into(),
            },
        ];
        Zone::build(
            &plan,
            &[],
            ZoneSettings {
                ttl: 7,
                wan_address: Some(Ipv4Addr::new(192, 168, 1, 5)),
            },
            1,
        )
    }

    fn query(name: &str, t: RecordType, edns: Option<bool>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if let Some(dnssec_ok) = edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            e.set_dnssec_ok(dnssec_ok);
            m.edns = Some(e);
        }
        m.to_vec().unwrap()
    }

    const LAN: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 20, 0, 50));
    const WAN: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 77));

    fn fast(req: &[u8], client: IpAddr, ra: bool) -> Option<Message> {
        let mut out = [0u8; MAX_FAST_RESPONSE];
        let n = answer_local_a(&zone(), req, client, ra, &mut out)?;
        Some(Message::from_vec(&out[..n]).expect("fast response decodes"))
    }

    #[test]
    fn fast_answer_decodes_like_the_full_path() {
        for (edns, ra) in [(None, true), (Some(false), false), (Some(true), true)] {
            let req = query("DB.Prox.Local.", RecordType::A, edns);
            let m = fast(&req, LAN, ra).expect("answered on the fast path");
            assert_eq!(m.metadata.id, 0x1234);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert!(m.metadata.authoritative && m.metadata.recursion_desired);
            assert_eq!(m.metadata.recursion_available, ra);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert_eq!(m.queries.len(), 1);
            assert_eq!(m.queries[0].name().to_ascii(), "DB.Prox.Local.");
            assert_eq!(m.answers.len(), 1);
            let a = &m.answers[0];
            assert_eq!(a.name.to_ascii(), "DB.Prox.Local.");
            assert_eq!(a.ttl, 7);
            assert_eq!(a.data, RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(10, 20, 0, 101))));
            match edns {
                None => assert!(m.edns.is_none()),
                Some(d) => {
                    let e = m.edns.expect("OPT echoed");
                    assert_eq!(e.max_payload(), EDNS_PAYLOAD);
                    assert_eq!(e.flags().dnssec_ok, d);
                }
            }
            // Same records as the full path.
            let full = crate::dns::handle_bytes(&zone(), "10.20.0.1/24".parse().unwrap(), &req, LAN).unwrap();
            let full = Message::from_vec(&full).unwrap();
            assert_eq!(full.answers, m.answers);
            assert_eq!(full.metadata.response_code, m.metadata.response_code);
        }
    }

    #[test]
    fn proxied_names_answer_the_facing_address() {
        let req = query("web.prox.local.", RecordType::A, None);
        let ip = |m: Message| m.answers[0].data.clone();
        let a = |o: [u8; 4]| RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::from(o)));
        assert_eq!(ip(fast(&req, LAN, true).unwrap()), a([10, 20, 0, 1]));
        assert_eq!(ip(fast(&req, WAN, false).unwrap()), a([192, 168, 1, 5]));
        assert_eq!(ip(fast(&req, "127.0.0.1".parse().unwrap(), true).unwrap()), a([127, 0, 0, 1]));
    }

    #[test]
    fn everything_else_takes_the_full_path() {
        // Other types, unknown names, names outside the zone.
        assert!(fast(&query("db.prox.local.", RecordType::AAAA, None), LAN, true).is_none());
        assert!(fast(&query("db.prox.local.", RecordType::ANY, None), LAN, true).is_none());
        assert!(fast(&query("nope.prox.local.", RecordType::A, None), LAN, true).is_none());
        assert!(fast(&query("example.test.", RecordType::A, None), LAN, true).is_none());
        assert!(fast(&query("prox.local.", RecordType::A, None), LAN, true).is_none());
        let good = query("db.prox.local.", RecordType::A, None);
        // A response, a non-zero opcode, two questions, trailing bytes, truncation.
        let mut r = good.clone();
        r[2] |= 0x80;
        assert!(fast(&r, LAN, true).is_none());
        let mut r = good.clone();
        r[2] |= 0x28;
        assert!(fast(&r, LAN, true).is_none());
        let mut r = good.clone();
        r[5] = 2;
        assert!(fast(&r, LAN, true).is_none());
        let mut r = good.clone();
        r.push(0);
        assert!(fast(&r, LAN, true).is_none());
        // EDNS version 1 → BADVERS on the full path.
        let mut r = query("db.prox.local.", RecordType::A, Some(false));
        let v = r.len() - 5;
        r[v] = 1;
        assert!(fast(&r, LAN, true).is_none());
        // A label byte outside [A-Za-z0-9-_] (a literal dot inside a label).
        let mut r = good.clone();
        r[14] = b'.';
        assert!(fast(&r, LAN, true).is_none());
        // A compression pointer in the question.
        let mut r = good[..HEADER_LEN].to_vec();
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        assert!(fast(&r, LAN, true).is_none());
    }

    #[test]
    fn every_truncation_and_byte_flip_is_safe() {
        let good = query("db.prox.local.", RecordType::A, Some(true));
        for n in 0..good.len() {
            let _ = fast(&good[..n], LAN, true);
            let _ = error_response(&good[..n], 5, true);
        }
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut r = good.clone();
                r[i] ^= 1 << bit;
                if let Some(m) = fast(&r, LAN, true) {
                    assert_eq!(m.answers.len(), 1);
                }
                if let Some(e) = error_response(&r, 5, false) {
                    Message::from_vec(&e).expect("error response decodes");
                }
            }
        }
    }

    #[test]
    fn error_response_echoes_the_question() {
        let req = query("db.prox.local.", RecordType::A, None);
        let m = Message::from_vec(&error_response(&req, 5, false).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.recursion_desired && !m.metadata.recursion_available);
        assert_eq!(m.queries.len(), 1);
        assert!(m.answers.is_empty());
        assert!(error_response(&req[..5], 5, false).is_none());
    }
}
