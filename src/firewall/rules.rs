//! The pure ruleset builder: plan + settings → one `nftables` batch that replaces our own
//! table (`ip proximity`) atomically and touches nothing else.
//!
//! Shape of the table:
//! - `input` (filter, policy accept; only LAN/WAN traffic is judged): established and
//!   loopback accepted; LAN may use DHCP, DNS and the proxy; WAN may use DNS, the proxy
//!   and the API; everything else arriving on LAN or WAN is dropped (so the LAN never
//!   reaches the management API).
//! - `forward` (filter): established and DNATed (port forwards) accepted; LAN → management
//!   networks (the WAN subnet included) dropped; LAN → WAN accepted; WAN → LAN dropped.
//! - `prerouting` (nat): port forwards from the WAN address to app ip:port.
//! - `postrouting` (nat): masquerade LAN → WAN.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use nftables::batch::Batch;
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::Serialize;
use serde_json::{Value, json};

use crate::plan::NetworkPlan;
use crate::registry::Proto;

/// Everything besides the plan that shapes the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallSettings {
    /// Our table (family `ip`).
    pub table: String,
    /// LAN interface.
    pub lan_if: String,
    /// WAN interface.
    pub wan_if: String,
    /// WAN address with its prefix, when known (its subnet is a management network).
    pub wan: Option<Ipv4Net>,
    /// Extra management networks.
    pub management: Vec<Ipv4Net>,
    /// DNS port.
    pub dns_ports: Vec<u16>,
    /// DHCP server port.
    pub dhcp_port: Option<u16>,
    /// Reverse proxy ports (HTTP and HTTPS).
    pub proxy_ports: Vec<u16>,
    /// Management API ports.
    pub api_ports: Vec<u16>,
    /// Public port range for forwards, inclusive.
    pub forward_range: (u16, u16),
}

/// What the ruleset contains (for the API and logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulesetSummary {
    /// Table name.
    pub table: String,
    /// Number of rules.
    pub rules: usize,
    /// Masquerade LAN → WAN present.
    pub masquerade: bool,
    /// Port forwards installed: `public_port/proto → ip:port`.
    pub forwards: Vec<String>,
    /// Forwards skipped (outside the public range).
    pub skipped_forwards: Vec<String>,
    /// Networks the LAN may not reach.
    pub blocked_networks: Vec<String>,
}

fn stmts(v: Value) -> Vec<Statement<'static>> {
    // Our JSON is built from fixed shapes; a failure here is a programming error caught by
    // the unit tests, so fall back to an empty rule rather than panic at runtime.
    serde_json::from_value(v).unwrap_or_default()
}

fn m(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}
fn iif(name: &str) -> Value {
    m(json!({"meta": {"key": "iifname"}}), json!(name))
}
fn oif(name: &str) -> Value {
    m(json!({"meta": {"key": "oifname"}}), json!(name))
}
fn prefix(n: Ipv4Net) -> Value {
    json!({"prefix": {"addr": n.network().to_string(), "len": n.prefix_len()}})
}
fn dport(proto: &str, ports: &[u16]) -> Value {
    let right = if ports.len() == 1 { json!(ports[0]) } else { json!({"set": ports}) };
    m(json!({"payload": {"protocol": proto, "field": "dport"}}), right)
}
fn established() -> Value {
    json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}})
}

/// Build the batch and its summary.
pub fn build(plan: &NetworkPlan, s: &FirewallSettings) -> (Batch<'static>, RulesetSummary) {
    let t: Cow<'static, str> = Cow::Owned(s.table.clone());
    let mut b = Batch::new();
    // add + delete + add: replaces the table in one transaction whether or not it existed.
    let table = || {
        NfListObject::Table(Table {
            family: NfFamily::IP,
            name: t.clone(),
            handle: None,
        })
    };
    b.add(table());
    b.delete(table());
    b.add(table());
    let chain = |name: &'static str, ty: NfChainType, hook: NfHook, prio: i32| {
        NfListObject::Chain(Chain {
            family: NfFamily::IP,
            table: t.clone(),
            name: name.into(),
            _type: Some(ty),
            hook: Some(hook),
            prio: Some(prio),
            policy: Some(NfChainPolicy::Accept),
            ..Default::default()
        })
    };
    b.add(chain("input", NfChainType::Filter, NfHook::Input, 0));
    b.add(chain("forward", NfChainType::Filter, NfHook::Forward, 0));
    b.add(chain("prerouting", NfChainType::NAT, NfHook::Prerouting, -100));
    b.add(chain("postrouting", NfChainType::NAT, NfHook::Postrouting, 100));
    let mut rules = 0usize;
    let mut rule = |b: &mut Batch<'static>, chain: &'static str, v: Value| {
        rules += 1;
        b.add(NfListObject::Rule(Rule {
            family: NfFamily::IP,
            table: t.clone(),
            chain: chain.into(),
            expr: Cow::Owned(stmts(v)),
            handle: None,
            index: None,
            comment: None,
        }));
    };
    let (lan, wan) = (s.lan_if.as_str(), s.wan_if.as_str());
    let accept = json!({"accept": null});
    let drop = json!({"drop": null});
    let counter = json!({"counter": null});

    // input
    rule(&mut b, "input", json!([established(), accept]));
    rule(&mut b, "input", json!([iif("lo"), accept]));
    for side in [lan, wan] {
        rule(
            &mut b,
            "input",
            json!([iif(side), m(json!({"meta": {"key": "l4proto"}}), json!("icmp")), accept]),
        );
    }
    let mut lan_udp: Vec<u16> = s.dns_ports.clone();
    lan_udp.extend(s.dhcp_port);
    let mut lan_tcp: Vec<u16> = s.dns_ports.iter().chain(s.proxy_ports.iter()).copied().collect();
    let mut wan_tcp: Vec<u16> = s
        .dns_ports
        .iter()
        .chain(s.proxy_ports.iter())
        .chain(s.api_ports.iter())
        .copied()
        .collect();
    for v in [&mut lan_udp, &mut lan_tcp, &mut wan_tcp] {
        v.sort_unstable();
        v.dedup();
    }
    // The API port is never open from the LAN, even if it shares a number with the proxy.
    lan_tcp.retain(|p| !s.api_ports.contains(p));
    if !lan_udp.is_empty() {
        rule(&mut b, "input", json!([iif(lan), dport("udp", &lan_udp), accept]));
    }
    if !lan_tcp.is_empty() {
        rule(&mut b, "input", json!([iif(lan), dport("tcp", &lan_tcp), accept]));
    }
    if !s.dns_ports.is_empty() {
        rule(&mut b, "input", json!([iif(wan), dport("udp", &s.dns_ports), accept]));
    }
    if !wan_tcp.is_empty() {
        rule(&mut b, "input", json!([iif(wan), dport("tcp", &wan_tcp), accept]));
    }
    rule(&mut b, "input", json!([iif(lan), counter, drop]));
    rule(&mut b, "input", json!([iif(wan), counter, drop]));

    // forward
    // The configured networks and those set at runtime (settings), as the plan carries them.
    let mut blocked: Vec<Ipv4Net> = s.management.iter().chain(&plan.management_networks).map(|n| n.trunc()).collect();
    if let Some(w) = s.wan {
        blocked.push(w.trunc());
    }
    blocked.sort();
    blocked.dedup();
    rule(&mut b, "forward", json!([established(), accept]));
    rule(
        &mut b,
        "forward",
        json!([{"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}, accept]),
    );
    for n in &blocked {
        rule(
            &mut b,
            "forward",
            json!([
                iif(lan),
                m(json!({"payload": {"protocol": "ip", "field": "daddr"}}), prefix(*n)),
                counter,
                drop
            ]),
        );
    }
    rule(&mut b, "forward", json!([iif(lan), oif(wan), accept]));
    rule(&mut b, "forward", json!([iif(wan), oif(lan), counter, drop]));

    // port forwards
    let mut fwd = Vec::new();
    let mut skipped = Vec::new();
    for f in &plan.forwards {
        let proto = match f.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        let label = format!("{}/{proto} -> {}", f.public_port, f.target);
        if f.public_port < s.forward_range.0 || f.public_port > s.forward_range.1 {
            skipped.push(label);
            continue;
        }
        let target = match f.target {
            std::net::SocketAddr::V4(v4) => v4,
            std::net::SocketAddr::V6(_) => {
                skipped.push(label);
                continue;
            }
        };
        let mut expr = vec![iif(wan)];
        if let Some(w) = s.wan {
            expr.push(m(
                json!({"payload": {"protocol": "ip", "field": "daddr"}}),
                json!(w.addr().to_string()),
            ));
        }
        expr.push(dport(proto, &[f.public_port]));
        expr.push(json!({"dnat": {"addr": target.ip().to_string(), "port": target.port()}}));
        rule(&mut b, "prerouting", Value::Array(expr));
        fwd.push(label);
    }

    // masquerade
    let lan_net = plan.lan.trunc();
    rule(
        &mut b,
        "postrouting",
        json!([m(json!({"payload": {"protocol": "ip", "field": "saddr"}}), prefix(lan_net)), oif(wan), {"masquerade": null}]),
    );
    let summary = RulesetSummary {
        table: s.table.clone(),
        rules,
        masquerade: true,
        forwards: fwd,
        skipped_forwards: skipped,
        blocked_networks: blocked.iter().map(|n| n.to_string()).collect(),
    };
    (b, summary)
}

/// A batch that deletes our table (ignored by `nft` errors when it does not exist: add first).
pub fn teardown(table: &str) -> Batch<'static> {
    let mut b = Batch::new();
    let t = || {
        NfListObject::Table(Table {
            family: NfFamily::IP,
            name: Cow::Owned(table.to_string()),
            handle: None,
        })
    };
    b.add(t());
    b.delete(t());
    b
}

/// The LAN gateway address, for logs.
pub fn gateway(plan: &NetworkPlan) -> Ipv4Addr {
    plan.lan.addr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Forward;

    fn settings() -> FirewallSettings {
        FirewallSettings {
            table: "proximity".into(),
            lan_if: "eth1".into(),
            wan_if: "eth0".into(),
            wan: Some("192.168.1.50/24".parse().unwrap()),
            management: vec!["10.99.0.0/16".parse().unwrap()],
            dns_ports: vec![53],
            dhcp_port: Some(67),
            proxy_ports: vec![80, 443],
            api_ports: vec![8443],
            forward_range: (30000, 30999),
        }
    }
    fn plan() -> NetworkPlan {
        let mut p = NetworkPlan::empty(&crate::config::Config::default().network);
        p.forwards = vec![
            Forward {
                public_port: 30001,
                proto: Proto::Tcp,
                target: "10.20.0.101:22".parse().unwrap(),
                app_id: "a".into(),
            },
            Forward {
                public_port: 8080,
                proto: Proto::Udp,
                target: "10.20.0.101:53".parse().unwrap(),
                app_id: "a".into(),
            },
        ];
        p
    }

    #[test]
    fn every_rule_decodes_and_the_json_has_the_expected_shape() {
        let (b, sum) = build(&plan(), &settings());
        let json = serde_json::to_value(b.to_nftables()).unwrap();
        let items = json["nftables"].as_array().unwrap();
        let rules: Vec<&Value> = items.iter().filter_map(|i| i.get("add").and_then(|a| a.get("rule"))).collect();
        assert_eq!(rules.len(), sum.rules);
        for r in &rules {
            assert!(!r["expr"].as_array().unwrap().is_empty(), "rule lost its statements: {r}");
            assert_eq!(r["table"], "proximity");
        }
        let text = json.to_string();
        assert!(text.contains(r#""dnat":{"addr":"10.20.0.101","port":22}"#), "{text}");
        assert!(text.contains(r#""masquerade""#));
        assert!(text.contains(r#""addr":"192.168.1.0","len":24"#));
        assert!(text.contains(r#""addr":"10.99.0.0","len":16"#));
        // The table is added, deleted and re-added first; nothing outside it is touched.
        assert!(items[0].get("add").is_some() && items[1].get("delete").is_some());
        assert!(
            items
                .iter()
                .all(|i| !text.is_empty() && i.to_string().contains("proximity") || i.get("metainfo").is_some())
        );
        assert_eq!(sum.forwards, vec!["30001/tcp -> 10.20.0.101:22".to_string()]);
        assert_eq!(sum.skipped_forwards.len(), 1);
        assert_eq!(sum.blocked_networks, vec!["10.99.0.0/16".to_string(), "192.168.1.0/24".to_string()]);
    }

    #[test]
    fn lan_never_gets_the_api_port() {
        let mut s = settings();
        s.api_ports = vec![443];
        let (b, _) = build(&plan(), &s);
        let json = serde_json::to_value(b.to_nftables()).unwrap();
        let lan_tcp = json["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i.pointer("/add/rule/expr"))
            .find(|e| e.to_string().contains(r#""right":"eth1""#) && e.to_string().contains(r#""protocol":"tcp""#))
            .unwrap()
            .to_string();
        assert!(lan_tcp.contains("80") && !lan_tcp.contains("443"), "{lan_tcp}");
    }
}
