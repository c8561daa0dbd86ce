//! DNS service in-process on loopback (no root needed): the real `dns::run` over real UDP/TCP
//! sockets on ephemeral ports, a fake upstream resolver, plan changes through the
//! `PlanPublisher`, and a real redb store.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proximity::config::Config;
use proximity::registry::{App, AppStatus, Resources};
use proximity::store::Store;
use proximity::supervisor::Context;

fn app(host: &str, ip: u8, web: bool) -> App {
    App {
        id: format!("id-{host}"),
        hostname: host.into(),
        catalog_id: "nginx".into(),
        catalog_version: "1".into(),
        owner: "u".into(),
        status: AppStatus::Running,
        host: None,
        node: None,
        vmid: None,
        mac: format!("02:50:58:00:00:{ip:02x}"),
        ip: Ipv4Addr::new(10, 20, 0, ip),
        upstream_ip: None,
        web_port: web.then_some(80),
        forwards: vec![],
        aliases: vec![],
        https_redirect: false,
        resources: Resources {
            cores: 1,
            memory_mb: 128,
            disk_gb: 1,
        },
        settings: BTreeMap::new(),
        error: None,
        job_id: None,
        adopted: false,
        created_at: 0,
        updated_at: 0,
    }
}

/// A fake upstream: answers every A query with 192.0.2.7 (TTL 300) and counts queries.
fn fake_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        // Bounded: the thread ends after 60 s of life.
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
            let Ok(req) = Message::from_vec(&buf[..n]) else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
            resp.metadata.recursion_available = true;
            resp.queries = req.queries.clone();
            let q = &req.queries[0];
            if q.name().to_ascii().starts_with("missing.") {
                resp.metadata.response_code = ResponseCode::NXDomain;
            } else {
                resp.answers
                    .push(Record::from_rdata(q.name().clone(), 300, RData::A(A(Ipv4Addr::new(192, 0, 2, 7)))));
            }
            let _ = sock.send_to(&resp.to_vec().unwrap(), from);
        }
    });
    (addr, count)
}

fn query(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut q = Message::query();
    q.metadata.id = rand_id();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    sock.send_to(&q.to_vec().unwrap(), server).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("dns answer");
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    m
}

fn query_tcp(server: SocketAddr, name: &str) -> Message {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut q = Message::query();
    q.metadata.id = 4242;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let b = q.to_vec().unwrap();
    s.write_all(&(b.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&b).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    Message::from_vec(&body).unwrap()
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        & 0xffff) as u16
}

fn first_a(m: &Message) -> Option<Ipv4Addr> {
    m.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

#[test]
fn dns_service_on_loopback() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (upstream, upstream_count) = fake_upstream();
    let port = common::free_udp_tcp_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.network.upstream_dns = vec![upstream];
    config.network.wan_interface = "lo".into();
    config.dns.listen = vec![listen];
    config.dns.upstream_timeout_ms = 500;
    let store = Store::open(&config.db_path()).unwrap();
    let ctx = Context::new(config, store).unwrap();
    ctx.plan.publish_apps(&[app("nginx-01", 101, true), app("db", 102, false)]);

    let sockets = proximity::dns::bind(&[listen]).unwrap();
    let board = proximity::dhcp::LeaseBoard::default();
    let task = rt.spawn(proximity::dns::run(
        ctx.clone(),
        sockets,
        board.clone(),
        Some(Ipv4Addr::new(192, 168, 1, 50)),
    ));

    // The demo's rule: a proxied app name answers 127.0.0.1 to a loopback client.
    let m = query(listen, "nginx-01.prox.local.", RecordType::A);
    assert!(m.metadata.authoritative);
    assert_eq!(first_a(&m), Some(Ipv4Addr::LOCALHOST));
    assert_eq!(
        first_a(&query(listen, "DB.PROX.LOCAL.", RecordType::A)),
        Some(Ipv4Addr::new(10, 20, 0, 102))
    );
    assert_eq!(first_a(&query_tcp(listen, "db.prox.local.")), Some(Ipv4Addr::new(10, 20, 0, 102)));
    let nx = query(listen, "nope.prox.local.", RecordType::A);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.authorities.iter().any(|r| r.record_type() == RecordType::SOA));

    // A plan change is visible within 100 ms.
    let t0 = Instant::now();
    ctx.plan
        .publish_apps(&[app("nginx-01", 101, true), app("db", 102, false), app("fresh", 103, false)]);
    let mut seen = None;
    while t0.elapsed() < Duration::from_millis(100) {
        let m = query(listen, "fresh.prox.local.", RecordType::A);
        if let Some(a) = first_a(&m) {
            seen = Some((a, t0.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (a, took) = seen.expect("new record not visible within 100 ms");
    assert_eq!(a, Ipv4Addr::new(10, 20, 0, 103));
    eprintln!("plan change visible after {took:?}");

    // Lease names appear (and never shadow apps).
    board.publish(vec![proximity::dhcp::Lease {
        mac: "02:00:00:00:00:09".into(),
        ip: Ipv4Addr::new(10, 20, 0, 140),
        hostname: Some("laptop".into()),
        expires: u64::MAX,
        state: proximity::dhcp::pool::LeaseState::Bound,
    }]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        first_a(&query(listen, "laptop.prox.local.", RecordType::A)),
        Some(Ipv4Addr::new(10, 20, 0, 140))
    );

    // Forwarding for loopback with a cache: the second query does not reach the upstream.
    let m = query(listen, "www.example.test.", RecordType::A);
    assert_eq!(first_a(&m), Some(Ipv4Addr::new(192, 0, 2, 7)));
    assert!(m.metadata.recursion_available);
    let before = upstream_count.load(Ordering::SeqCst);
    let m = query(listen, "WWW.example.test.", RecordType::A);
    assert_eq!(first_a(&m), Some(Ipv4Addr::new(192, 0, 2, 7)));
    assert_eq!(upstream_count.load(Ordering::SeqCst), before, "cache miss on repeat query");
    let m = query(listen, "missing.example.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    ctx.shutdown.cancel();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await })
        .expect("dns stops on shutdown")
        .unwrap()
        .unwrap();
}

#[test]
fn dns_port_in_use_names_the_service() {
    let held = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let err = match proximity::dns::bind(&[addr]) {
        Ok(_) => panic!("bound a UDP port that is in use"),
        Err(e) => e.to_string(),
    };
    assert!(err.starts_with("dns:") && err.contains(&format!("port {}", addr.port())), "{err}");
}

/// Changing the upstream resolvers in the runtime settings (what `PUT /settings/network`
/// stores) switches the forwarder without a restart, and the plan carries the new
/// management networks.
#[test]
fn upstream_resolvers_follow_the_settings() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (first, first_count) = fake_upstream();
    let (second, second_count) = fake_upstream();
    let port = common::free_udp_tcp_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.network.upstream_dns = vec![first];
    config.network.wan_interface = "lo".into();
    config.dns.listen = vec![listen];
    config.dns.upstream_timeout_ms = 500;
    let store = Store::open(&config.db_path()).unwrap();
    let ctx = Context::new(config, store).unwrap();
    ctx.plan.refresh(&ctx.store).unwrap();
    let sockets = proximity::dns::bind(&[listen]).unwrap();
    let task = rt.spawn(proximity::dns::run(
        ctx.clone(),
        sockets,
        proximity::dhcp::LeaseBoard::default(),
        None,
    ));

    assert_eq!(
        first_a(&query(listen, "one.example.test.", RecordType::A)),
        Some(Ipv4Addr::new(192, 0, 2, 7))
    );
    assert_eq!((first_count.load(Ordering::SeqCst), second_count.load(Ordering::SeqCst)), (1, 0));

    let mut s = proximity::settings::network(&ctx.store, &ctx.config).unwrap();
    s.upstream_dns = vec![second.to_string()];
    s.management_networks = vec!["192.168.77.0/24".into()];
    ctx.store
        .put(proximity::settings::SETTINGS, "network", &serde_json::to_value(&s).unwrap())
        .unwrap();
    let plan = ctx.plan.refresh(&ctx.store).unwrap();
    assert_eq!(plan.upstream_dns, vec![second]);
    assert_eq!(plan.management_networks, vec!["192.168.77.0/24".parse().unwrap()]);

    // The zone task applies the new plan asynchronously: poll (bounded) for the switch.
    let t0 = Instant::now();
    while second_count.load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(3) {
        let m = query(listen, &format!("n{}.example.test.", t0.elapsed().as_micros()), RecordType::A);
        assert_eq!(first_a(&m), Some(Ipv4Addr::new(192, 0, 2, 7)));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(second_count.load(Ordering::SeqCst) > 0, "the new upstream was never asked");
    let before = first_count.load(Ordering::SeqCst);
    query(listen, "two.example.test.", RecordType::A);
    assert_eq!(first_count.load(Ordering::SeqCst), before, "the old upstream is no longer used");

    ctx.shutdown.cancel();
    rt.block_on(task).unwrap().unwrap();
}
