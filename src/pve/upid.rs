//! UPIDs, the ids of Proxmox worker tasks:
//! `UPID:<node>:<pid %08X>:<pstart %08X, 8-9 digits>:<starttime %08X>:<type>:<id>:<user>:`.
//! Pure parsing and formatting; [`Upid::to_string`] gives back the exact input for every
//! valid UPID (hex digits keep their width and case).

use std::fmt;
use std::str::FromStr;

/// A parsed task id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    /// Node that runs the task (poll this node for its status).
    pub node: String,
    /// Worker process id.
    pub pid: u32,
    /// Process start time (jiffies).
    pub pstart: u64,
    /// Start time (unix epoch seconds).
    pub starttime: i64,
    /// Worker type (`vzcreate`, `vzstart`, `vzdump`, ...).
    pub worker_type: String,
    /// Worker id (often the vmid; may be empty).
    pub id: String,
    /// User (or token `user@realm!id`) that started it.
    pub user: String,
    raw: String,
}

/// Why a string is not a UPID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid UPID `{input}`: {reason}")]
pub struct UpidError {
    /// The input (truncated).
    pub input: String,
    /// What is wrong.
    pub reason: &'static str,
}

fn is_hex_len(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn valid_node(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

fn valid_field(s: &str, allow_empty: bool) -> bool {
    (allow_empty || !s.is_empty()) && !s.chars().any(|c| c == ':' || c == '/' || c.is_whitespace())
}

impl Upid {
    /// Parse a UPID (same grammar as pve-common `PVE::UPID::decode`).
    pub fn parse(s: &str) -> Result<Upid, UpidError> {
        let err = |reason| UpidError {
            input: s.chars().take(120).collect(),
            reason,
        };
        let rest = s.strip_prefix("UPID:").ok_or_else(|| err("does not start with `UPID:`"))?;
        let rest = rest.strip_suffix(':').ok_or_else(|| err("does not end with `:`"))?;
        let parts: Vec<&str> = rest.split(':').collect();
        if parts.len() != 7 {
            return Err(err("expected 7 colon-separated fields"));
        }
        let [node, pid, pstart, starttime, wtype, id, user] = [parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6]];
        if !valid_node(node) {
            return Err(err("bad node name"));
        }
        if !is_hex_len(pid, 8, 8) || !is_hex_len(pstart, 8, 9) || !is_hex_len(starttime, 8, 8) {
            return Err(err("pid/pstart/starttime must be 8-digit hex (pstart 8 or 9)"));
        }
        if !valid_field(wtype, false) || !valid_field(id, true) || !valid_field(user, false) {
            return Err(err("bad type, id or user field"));
        }
        Ok(Upid {
            node: node.to_string(),
            pid: u32::from_str_radix(pid, 16).map_err(|_| err("bad pid"))?,
            pstart: u64::from_str_radix(pstart, 16).map_err(|_| err("bad pstart"))?,
            starttime: i64::from_str_radix(starttime, 16).map_err(|_| err("bad starttime"))?,
            worker_type: wtype.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            raw: s.to_string(),
        })
    }

    /// Build a UPID from its fields (as pve-common `PVE::UPID::encode` does).
    pub fn new(node: &str, pid: u32, pstart: u64, starttime: i64, worker_type: &str, id: &str, user: &str) -> Result<Upid, UpidError> {
        let raw = format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{worker_type}:{id}:{user}:");
        Upid::parse(&raw)
    }

    /// The UPID text.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The vmid, when the worker id is one.
    pub fn vmid(&self) -> Option<u32> {
        self.id.parse().ok()
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for Upid {
    type Err = UpidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Upid::parse(s)
    }
}

impl serde::Serialize for Upid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for Upid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Upid::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_round_trip() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/pve-api/samples/upid_examples.json"
        ))
        .or_else(|_| std::fs::read_to_string("/work/shared/pve-api/samples/upid_examples.json"))
        .expect("upid samples");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let examples = v["examples"].as_array().unwrap();
        assert!(examples.len() >= 4);
        for ex in examples {
            let s = ex["upid"].as_str().unwrap();
            let u = Upid::parse(s).unwrap_or_else(|e| panic!("{e}"));
            let d = &ex["decoded"];
            assert_eq!(u.node, d["node"].as_str().unwrap(), "{s}");
            assert_eq!(u.pid as u64, d["pid"].as_u64().unwrap(), "{s}");
            assert_eq!(u.pstart, d["pstart"].as_u64().unwrap(), "{s}");
            assert_eq!(u.starttime, d["starttime"].as_i64().unwrap(), "{s}");
            assert_eq!(u.worker_type, d["type"].as_str().unwrap(), "{s}");
            assert_eq!(u.id, d["id"].as_str().unwrap(), "{s}");
            assert_eq!(u.user, d["user"].as_str().unwrap(), "{s}");
            assert_eq!(u.to_string(), s);
            // Re-encoding from the fields gives the same text (uppercase hex, same widths).
            let again = Upid::new(&u.node, u.pid, u.pstart, u.starttime, &u.worker_type, &u.id, &u.user).unwrap();
            assert_eq!(again.to_string(), s);
            assert_eq!(again, u);
        }
        for bad in v["must_fail"].as_array().unwrap() {
            assert!(Upid::parse(bad.as_str().unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "UPID:",
            "UPID:node:0000C346:165A0CE4:68D7279C:aptupdate::root@pam",
            "UPID:-node:0000C346:165A0CE4:68D7279C:aptupdate::root@pam:",
            "UPID:node:C346:165A0CE4:68D7279C:aptupdate::root@pam:",
            "UPID:node:0000C346:165A0CE4:68D7279C:apt/update::root@pam:",
            "UPID:node:0000C346:165A0CE4:68D7279C:aptupdate:::",
            "UPID:node:0000C346:165A0CE4:68D7279C:aptupdate::root@pam:extra:",
        ] {
            assert!(Upid::parse(bad).is_err(), "{bad}");
        }
        let u: Upid = "UPID:pve1:00001234:00ABCDEF:6700AAAA:vzstart:105:root@pam!proximity:"
            .parse()
            .unwrap();
        assert_eq!(u.vmid(), Some(105));
        assert_eq!(u.user, "root@pam!proximity");
    }
}
