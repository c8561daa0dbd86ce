#!/usr/bin/env python3
"""Proximity benchmarks side by side with the incumbents (dnsmasq, Caddy, nginx).

Everything runs on loopback or in network namespaces this script creates; every load
run is bounded in time. Results: target/bench/results.md and results.tsv.

usage: tests/bench/bench.py [--smoke] [--runs N] [--seconds S] [--only footprint,dns,proxy,dhcp,platform]
"""
import argparse, json, os, platform, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "target", "bench")
BIN = os.environ.get("PROXIMITY_BIN", os.path.join(ROOT, "target", "release", "proximity"))
STARTED = []  # processes we started (stopped by PID at exit)
ROWS = []     # (section, subject, metric, value, unit)


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


def free_port():
    while True:
        s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
        try:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", p)); u.close(); return p
        except OSError:
            continue


def start(cmd, **kw):
    p = subprocess.Popen(cmd, stdout=kw.pop("stdout", subprocess.DEVNULL), stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)
    STARTED.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()


def wait_port(port, udp=False, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if udp:
                return True
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError):
        return 0


def tree_pids(pid):
    """`pid` and every descendant (nginx and Caddy fork workers)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop(); out.append(p); todo.extend(kids.get(p, []))
    return out


def pss_kb(pid):
    """Proportional set size of a process tree (shared pages counted once)."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def tree_cpu_ticks(pid):
    return sum(cpu_ticks(p) for p in tree_pids(pid))


def record(section, subject, metric, value, unit=""):
    ROWS.append((section, subject, metric, value, unit))


def median_range(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


def pct(sorted_vals, q):
    if not sorted_vals:
        return 0.0
    i = min(len(sorted_vals) - 1, int(round(q / 100.0 * (len(sorted_vals) - 1))))
    return sorted_vals[i]


# ---------------------------------------------------------------- registry seeding
def app_record(i, ip, web_port=None, upstream=None):
    return {
        "id": f"app-bench{i:06d}", "hostname": f"app{i}", "catalog_id": "nginx", "catalog_version": "1",
        "owner": "bench", "status": "running", "host": None, "node": None, "vmid": None,
        "mac": "02:50:58:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255), "ip": ip,
        "upstream_ip": upstream, "web_port": web_port, "forwards": [], "aliases": [], "https_redirect": False,
        "resources": {"cores": 1, "memory_mb": 256, "disk_gb": 2}, "settings": {}, "error": None, "job_id": None,
        "adopted": False, "created_at": 0, "updated_at": 0,
    }


def seed_db(data_dir, apps):
    dump = {"format": "proximity-db", "schema_version": 1, "tables": {"apps": {a["id"]: a for a in apps}}}
    path = os.path.join(data_dir, "seed.json")
    json.dump(dump, open(path, "w"))
    subprocess.run([BIN, "db", "import", path, "--data-dir", os.path.join(data_dir, "data")], check=True, capture_output=True)


def proximity_config(data_dir, dns=None, http=None, https=None, api=None, upstream=None, proxy=False):
    api = api or free_port()
    text = f"""[general]
data_dir = "{data_dir}/data"
log_filter = "warn"
[network]
manage_links = false
firewall = false
upstream_dns = [{f'"{upstream}"' if upstream else ''}]
dhcp_range = ["10.20.0.2", "10.20.255.250"]
lan_address = "10.20.0.1/16"
[dhcp]
enabled = false
[dns]
enabled = {"true" if dns else "false"}
listen = ["127.0.0.1:{dns or 53}"]
local_ttl = 0
[proxy]
enabled = {"true" if proxy else "false"}
http_listen = ["127.0.0.1:{http or 80}"]
https_listen = ["127.0.0.1:{https or 443}"]
[api]
tls = false
listen = ["127.0.0.1:{api}"]
"""
    path = os.path.join(data_dir, "proximity.toml")
    open(path, "w").write(text)
    return path, api


def start_proximity(cfg):
    t0 = time.time()
    p = start([BIN, "serve", "--config", cfg], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("ready"):
        raise RuntimeError(f"proximity did not become ready: {line!r}")
    return p, time.time() - t0


# ---------------------------------------------------------------- DNS
def dnsperf(port, qfile, seconds, server_pid):
    c0, t0 = cpu_ticks(server_pid), time.time()
    r = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile, "-c", "4", "-T", "1", "-q", "100",
                        "-l", str(seconds), "-v"], capture_output=True, text=True, timeout=seconds + 30)
    wall = time.time() - t0
    cpu = (cpu_ticks(server_pid) - c0) / os.sysconf("SC_CLK_TCK")
    lat = sorted(float(m.group(1)) for m in re.finditer(r"^> \S+ \S+ \S+ ([0-9.]+)$", r.stdout, re.M))
    qps = float(re.search(r"Queries per second:\s+([0-9.]+)", r.stdout).group(1))
    sent = int(re.search(r"Queries sent:\s+(\d+)", r.stdout).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", r.stdout).group(1))
    completed = max(1, sent - lost)
    return {"qps": qps, "avg_ms": 1000 * statistics.fmean(lat) if lat else 0, "p50_ms": 1000 * pct(lat, 50),
            "p99_ms": 1000 * pct(lat, 99), "lost_pct": 100.0 * lost / max(1, sent), "rss_kb": rss_kb(server_pid),
            "cpu_us_per_q": 1e6 * cpu / completed, "wall": wall}


def bench_dns(args, tmp):
    n = 1000
    hosts = os.path.join(tmp, "hosts")
    with open(hosts, "w") as f:
        for i in range(n):
            f.write(f"10.20.{i // 250}.{i % 250 + 2} app{i}.prox.local\n")
    local_q = os.path.join(tmp, "q-local.txt")
    open(local_q, "w").write("".join(f"app{i}.prox.local A\n" for i in range(n)))
    mixed_q = os.path.join(tmp, "q-mixed.txt")
    open(mixed_q, "w").write("".join(f"app{i}.prox.local A\nname{i}.example.test A\n" for i in range(n)))

    # Local test resolver for upstream names (never the internet).
    up_port = free_port()
    start(["dnsmasq", "--no-daemon", f"--port={up_port}", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
           "--no-hosts", "--address=/example.test/192.0.2.7", "--log-facility=/dev/null", "--cache-size=10000"])
    # dnsmasq under test: same names, upstream = the test resolver.
    dm_port = free_port()
    dm = start(["dnsmasq", "--no-daemon", f"--port={dm_port}", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
                "--no-hosts", f"--addn-hosts={hosts}", f"--server=127.0.0.1#{up_port}", "--log-facility=/dev/null"])
    # proximity under test: same names from its registry.
    pdir = os.path.join(tmp, "prox-dns"); os.makedirs(pdir)
    seed_db(pdir, [app_record(i, f"10.20.{i // 250}.{i % 250 + 2}") for i in range(n)])
    px_port = free_port()
    cfg, _ = proximity_config(pdir, dns=px_port, upstream=f"127.0.0.1:{up_port}")
    px, ready_s = start_proximity(cfg)
    record("footprint", "proximity", "exec→ready (DNS only)", round(ready_s * 1000, 1), "ms")
    time.sleep(0.5)
    for label, qfile in (("local", local_q), ("mixed", mixed_q)):
        res = {"dnsmasq": [], "proximity": []}
        for run in range(args.runs):
            for name, port, proc in (("dnsmasq", dm_port, dm), ("proximity", px_port, px)) if run % 2 == 0 else \
                    (("proximity", px_port, px), ("dnsmasq", dm_port, dm)):
                res[name].append(dnsperf(port, qfile, args.seconds, proc.pid))
        for name, runs in res.items():
            for metric, unit in (("qps", "q/s"), ("avg_ms", "ms"), ("p50_ms", "ms"), ("p99_ms", "ms"), ("lost_pct", "%"),
                                 ("cpu_us_per_q", "µs CPU/query"), ("rss_kb", "KiB")):
                med, lo, hi = median_range([r[metric] for r in runs])
                record(f"dns-{label}", name, metric, f"{med:.3f} ({lo:.3f}–{hi:.3f})", unit)
        q = statistics.median(r["qps"] for r in res["proximity"]) / max(1e-9, statistics.median(r["qps"] for r in res["dnsmasq"]))
        record(f"dns-{label}", "ratio", "proximity/dnsmasq QPS", f"{q:.2f}", "×")
    record("footprint", "proximity", "RSS after DNS load", rss_kb(px.pid), "KiB")
    stop(px); stop(dm)


# ---------------------------------------------------------------- proxy
NGINX_BACKEND = """worker_processes 1; daemon off; pid {dir}/nginx.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 '{body}'; }} }} }}
"""
NGINX_PROXY = """worker_processes 1; daemon off; pid {dir}/nginxp.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  upstream be {{ server 127.0.0.1:{be}; keepalive 64; keepalive_requests 1000000; }}
  server {{ listen 127.0.0.1:{port}; listen 127.0.0.1:{tport} ssl; server_name *.prox.local;
    ssl_certificate {cert}; ssl_certificate_key {key};
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }} }} }}
"""
WRK_LUA = """local i = 0
request = function()
  i = (i % {n}) + 1
  return wrk.format("GET", "/", {{["Host"] = "app" .. i .. ".prox.local"}})
end
"""


def wrk(url, seconds, lua, server_pids, prefix=()):
    c0 = sum(tree_cpu_ticks(p) for p in server_pids)
    r = subprocess.run([*prefix, "wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", "-s", lua, url], capture_output=True,
                       text=True, timeout=seconds + 30)
    cpu = (sum(tree_cpu_ticks(p) for p in server_pids) - c0) / os.sysconf("SC_CLK_TCK")
    out = r.stdout

    def lat(q):
        m = re.search(rf"^\s+{q}%\s+([0-9.]+)(us|ms|s)", out, re.M)
        if not m:
            return None
        v = float(m.group(1)); return v / 1000 if m.group(2) == "us" else (v * 1000 if m.group(2) == "s" else v)

    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)) if "Requests/sec" in out else 0.0
    total = int(re.search(r"(\d+) requests in", out).group(1)) if "requests in" in out else 0
    errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = int(re.search(r"Non-2xx or 3xx responses: (\d+)", out).group(1)) if "Non-2xx" in out else 0
    return {"rps": rps, "p50_ms": lat(50), "p99_ms": lat(99), "errors": errs + non2xx,
            "pss_kb": sum(pss_kb(p) for p in server_pids), "cpu_us_per_req": 1e6 * cpu / max(1, total)}


def https_prefix(tmp, n):
    """Run wrk in a private mount namespace whose /etc/hosts maps app1.prox.local to loopback,
    so the TLS server name (taken from the URL) is a real app name. Needs root."""
    hosts = os.path.join(tmp, "hosts-sni")
    open(hosts, "w").write("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 app{i}.prox.local\n" for i in range(1, n + 1)))
    return ["unshare", "-m", "sh", "-c", f'mount --bind {hosts} /etc/hosts && exec "$0" "$@"']


def bench_proxy(args, tmp):
    """HTTP and HTTPS through each proxy to one nginx backend, 100 virtual hosts."""
    n = 100
    be_port = free_port()
    body = "x" * 1024
    open(os.path.join(tmp, "nginx-be.conf"), "w").write(NGINX_BACKEND.format(dir=tmp, port=be_port, body=body))
    be = start(["nginx", "-c", os.path.join(tmp, "nginx-be.conf"), "-p", tmp])
    wait_port(be_port)
    lua = os.path.join(tmp, "hosts.lua"); open(lua, "w").write(WRK_LUA.format(n=n))
    cert, key = os.path.join(tmp, "wild.pem"), os.path.join(tmp, "wild.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=*.prox.local",
                    "-addext", "subjectAltName=DNS:*.prox.local"], check=True, capture_output=True)
    # (name, http url, https url or None, pids whose process trees are the server)
    subjects = [("direct", f"http://127.0.0.1:{be_port}/", None, [be.pid])]

    ng_port, ng_tport = free_port(), free_port()
    open(os.path.join(tmp, "nginx-px.conf"), "w").write(NGINX_PROXY.format(dir=tmp, port=ng_port, tport=ng_tport, be=be_port,
                                                                           cert=cert, key=key))
    ng = start(["nginx", "-c", os.path.join(tmp, "nginx-px.conf"), "-p", tmp])
    wait_port(ng_port)
    subjects.append(("nginx", f"http://127.0.0.1:{ng_port}/", f"https://app1.prox.local:{ng_tport}/", [ng.pid]))

    cd_port, cd_tport = free_port(), free_port()
    caddyfile = os.path.join(tmp, "Caddyfile")
    open(caddyfile, "w").write("{\n admin off\n auto_https disable_redirects\n skip_install_trust\n storage file_system " + tmp
                               + "/caddy\n}\n"
                               f"http://*.prox.local:{cd_port} {{\n reverse_proxy 127.0.0.1:{be_port}\n}}\n"
                               f"https://*.prox.local:{cd_tport} {{\n tls {cert} {key}\n reverse_proxy 127.0.0.1:{be_port}\n}}\n")
    cd = start(["caddy", "run", "--config", caddyfile, "--adapter", "caddyfile"], env=dict(os.environ, HOME=tmp, XDG_DATA_HOME=tmp))
    wait_port(cd_port)
    subjects.append(("caddy", f"http://127.0.0.1:{cd_port}/", f"https://app1.prox.local:{cd_tport}/", [cd.pid]))

    pdir = os.path.join(tmp, "prox-px"); os.makedirs(pdir)
    seed_db(pdir, [app_record(i + 1, f"10.20.0.{i + 2}", web_port=be_port, upstream="127.0.0.1") for i in range(n)])
    h, hs = free_port(), free_port()
    cfg, _ = proximity_config(pdir, http=h, https=hs, proxy=True)
    px, _ = start_proximity(cfg)
    wait_port(h); wait_port(hs)
    subjects.append(("proximity", f"http://127.0.0.1:{h}/", f"https://app1.prox.local:{hs}/", [px.pid]))

    schemes = [("http", 1, ())]
    if os.geteuid() == 0 and shutil.which("unshare"):
        schemes.append(("https", 2, tuple(https_prefix(tmp, n))))
    else:
        log("SKIP proxy-https: needs root (a private /etc/hosts so the TLS server name is an app name)")
        record("proxy-https", "-", "skipped", "needs root", "")
    for scheme, idx, prefix in schemes:
        subs = [s for s in subjects if s[idx]]
        res = {s[0]: [] for s in subs}
        for run in range(args.runs):
            order = subs if run % 2 == 0 else list(reversed(subs))
            for sub in order:
                res[sub[0]].append(wrk(sub[idx], args.seconds, lua, sub[3], prefix))
        sec = f"proxy-{scheme}"
        for name, runs in res.items():
            for metric, unit in (("rps", "req/s"), ("p50_ms", "ms"), ("p99_ms", "ms"), ("errors", "count"),
                                 ("cpu_us_per_req", "µs CPU/req"), ("pss_kb", "KiB PSS")):
                med, lo, hi = median_range([r[metric] for r in runs])
                if med is not None:
                    record(sec, name, metric, f"{med:.3f} ({lo:.3f}–{hi:.3f})", unit)
        for other in ("nginx", "caddy"):
            q = statistics.median(r["rps"] for r in res["proximity"]) / max(1e-9, statistics.median(r["rps"] for r in res[other]))
            record(sec, "ratio", f"proximity/{other} req/s", f"{q:.2f}", "×")
        pss = {name: statistics.median(r["pss_kb"] for r in runs) for name, runs in res.items()}
        record(sec, "ratio", "proximity/caddy memory under load (PSS)", f"{pss['proximity'] / max(1, pss['caddy']):.2f}", "×")
    record("footprint", "proximity", "RSS after proxy load", rss_kb(px.pid), "KiB")
    for p in (px, cd, ng, be):
        stop(p)


# ---------------------------------------------------------------- DHCP
def perfdhcp(ns, iface, rate, seconds, clients):
    """One perfdhcp run (relay mode: giaddr = its interface address) → DORA/s, drops, delays."""
    r = subprocess.run(["ip", "netns", "exec", ns, "perfdhcp", "-4", "-l", iface, "-r", str(rate), "-R", str(clients),
                        "-p", str(seconds), "-n", str(rate * seconds), "-t", "5", "-W", "1000000"],
                       capture_output=True, text=True, timeout=seconds + 60)
    out = r.stdout
    parts = out.split("***Statistics for: REQUEST-ACK***")
    if len(parts) < 2:
        raise RuntimeError(f"perfdhcp printed no REQUEST-ACK statistics: {out[-500:]} {r.stderr[-500:]}")
    do, ra = parts[0], parts[1]

    def num(text, label):
        m = re.search(rf"^{label}:\s+([0-9.]+)", text, re.M)
        return float(m.group(1)) if m else 0.0
    sent_d, acks = num(do, "sent packets"), num(ra, "received packets")
    return {"dora_per_s": acks / seconds, "drop_pct": 100.0 * (1 - acks / max(1.0, sent_d)),
            "avg_ms": num(do, "avg delay") + num(ra, "avg delay"), "max_ms": num(do, "max delay") + num(ra, "max delay")}


def fsync_ms(path):
    """Median fsync latency of this disk (the cost of a durable lease commit)."""
    f = os.path.join(path, "fsync-probe"); t = []
    with open(f, "wb") as fh:
        for _ in range(20):
            fh.write(b"x" * 4096); fh.flush(); t0 = time.perf_counter(); os.fsync(fh.fileno()); t.append(time.perf_counter() - t0)
    os.unlink(f)
    return 1000 * statistics.median(t)


def bench_dhcp(args, tmp):
    """perfdhcp as a relay in one namespace, the server in another; same /16 pool for both."""
    if os.geteuid() != 0:
        log("SKIP dhcp: needs root for network namespaces")
        record("dhcp", "-", "skipped", "needs root", "")
        return
    tag = f"pxb{os.getpid() % 100000}"
    srv_ns, cli_ns, srv_if, cli_if = f"{tag}s", f"{tag}c", f"{tag}a", f"{tag}b"
    sh = lambda *c: subprocess.run(list(c), check=True, capture_output=True)
    try:
        sh("ip", "netns", "add", srv_ns); sh("ip", "netns", "add", cli_ns)
        sh("ip", "link", "add", srv_if, "type", "veth", "peer", "name", cli_if)
        sh("ip", "link", "set", srv_if, "netns", srv_ns); sh("ip", "link", "set", cli_if, "netns", cli_ns)
        for ns, ifc, addr in ((srv_ns, srv_if, "10.20.0.1/16"), (cli_ns, cli_if, "10.20.0.2/16")):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", ifc)
            sh("ip", "-n", ns, "link", "set", ifc, "up"); sh("ip", "-n", ns, "link", "set", "lo", "up")
        record("dhcp", "disk", "fsync latency (median of 20)", f"{fsync_ms(tmp):.2f}", "ms")
        rates = [50] if args.smoke else [250, 500, 1000, 2000, 4000]
        clients = 200 if args.smoke else 60000
        seconds = args.seconds

        def run_dnsmasq(run_dir):
            return start(["ip", "netns", "exec", srv_ns, "dnsmasq", "--no-daemon", "--port=0", f"--interface={srv_if}",
                          "--bind-interfaces", "--dhcp-range=10.20.1.1,10.20.254.254,255.255.0.0,12h",
                          "--dhcp-lease-max=100000", "--no-ping", "--quiet-dhcp",
                          f"--dhcp-leasefile={run_dir}/dnsmasq.leases", "--log-facility=/dev/null"])

        def run_proximity(run_dir):
            cfg = os.path.join(run_dir, "proximity.toml")
            open(cfg, "w").write(f"""[general]
data_dir = "{run_dir}/data"
log_filter = "warn"
[network]
lan_interface = "{srv_if}"
wan_interface = "lo"
lan_address = "10.20.0.1/16"
dhcp_range = ["10.20.1.1", "10.20.254.254"]
upstream_dns = []
manage_links = false
firewall = false
[dhcp]
enabled = true
[dns]
enabled = false
[proxy]
enabled = false
[api]
tls = false
listen = ["127.0.0.1:{free_port()}"]
""")
            p = start(["ip", "netns", "exec", srv_ns, BIN, "serve", "--config", cfg], stdout=subprocess.PIPE, text=True)
            if not p.stdout.readline().startswith("ready"):
                raise RuntimeError("proximity (DHCP) did not become ready")
            return p

        n = 0
        for rate in rates:
            res = {"dnsmasq": [], "proximity": []}
            for run in range(args.runs):
                order = (("dnsmasq", run_dnsmasq), ("proximity", run_proximity))
                for name, launch in (order if run % 2 == 0 else tuple(reversed(order))):
                    n += 1
                    run_dir = os.path.join(tmp, f"dhcp-{n}"); os.makedirs(run_dir)
                    proc = launch(run_dir)  # fresh, empty lease database per run
                    time.sleep(0.5)
                    c0 = tree_cpu_ticks(proc.pid)
                    r = perfdhcp(cli_ns, cli_if, rate, seconds, clients)
                    r["cpu_us_per_dora"] = 1e6 * (tree_cpu_ticks(proc.pid) - c0) / os.sysconf("SC_CLK_TCK") / max(1, r["dora_per_s"] * seconds)
                    r["pss_kb"] = pss_kb(proc.pid)
                    res[name].append(r)
                    stop(proc)
            for name, runs in res.items():
                for metric, unit in (("dora_per_s", "DORA/s"), ("drop_pct", "%"), ("avg_ms", "ms"), ("max_ms", "ms"),
                                     ("cpu_us_per_dora", "µs CPU/DORA"), ("pss_kb", "KiB PSS")):
                    med, lo, hi = median_range([r[metric] for r in runs])
                    record(f"dhcp-{rate}/s", name, metric, f"{med:.3f} ({lo:.3f}–{hi:.3f})", unit)
            q = statistics.median(r["dora_per_s"] for r in res["proximity"]) / max(1e-9, statistics.median(r["dora_per_s"] for r in res["dnsmasq"]))
            record(f"dhcp-{rate}/s", "ratio", "proximity/dnsmasq DORA/s (leases durable in both)", f"{q:.2f}", "×")
    finally:
        for ns in (srv_ns, cli_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# ---------------------------------------------------------------- platform
def api_call(base, method, path, token=None, body=None, timeout=30):
    import ssl, urllib.request
    ctx = ssl._create_unverified_context()  # loopback demo with its own CA; not a trust decision
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)


def dns_a(port, name, timeout=0.05):
    """One A query over UDP to 127.0.0.1:port; True when the answer carries an address."""
    qid = os.getpid() & 0xFFFF
    q = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    q += b"".join(len(l).to_bytes(1, "big") + l.encode() for l in name.split(".")) + b"\x00\x00\x01\x00\x01"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
    try:
        s.sendto(q, ("127.0.0.1", port)); r = s.recv(2048)
        return len(r) > 12 and (r[3] & 0x0F) == 0 and int.from_bytes(r[6:8], "big") > 0
    except OSError:
        return False
    finally:
        s.close()


def http_status(port, host, timeout=0.2):
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout)
        c.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        line = c.recv(64).split(b"\r\n", 1)[0].decode(errors="replace"); c.close()
        return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def bench_platform(args, tmp):
    """Deploys against the in-process simulator (no injected latency), plan-change latency, API list p99."""
    ddir = os.path.join(tmp, "demo")
    ports = {k: free_port() for k in ("api", "dns", "http", "https", "sim", "ssh")}
    demo = start([BIN, "demo", "--data-dir", ddir, "--admin-password", "bench-admin-pass", "--api-listen", f"127.0.0.1:{ports['api']}",
                  "--dns-listen", f"127.0.0.1:{ports['dns']}", "--http-listen", f"127.0.0.1:{ports['http']}",
                  "--https-listen", f"127.0.0.1:{ports['https']}", "--sim-listen", f"127.0.0.1:{ports['sim']}",
                  "--sim-ssh-listen", f"127.0.0.1:{ports['ssh']}"], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = demo.stdout.readline()
        if not line or line.startswith("ready"):
            break
    if not line.startswith("ready"):
        raise RuntimeError("proximity demo did not become ready")
    base = f"https://127.0.0.1:{ports['api']}/api/v1"
    _, tok = api_call(base, "POST", "/auth/login", body={"username": "admin", "password": "bench-admin-pass"})
    token = tok["access_token"]

    # Plan change: the app is in the registry when POST returns; time until DNS and proxy know it.
    dns_ms, route_ms = [], []
    for i in range(1 if args.smoke else 5):
        name = f"plan{i}"
        _, app = api_call(base, "POST", "/apps", token, {"catalog_id": "nginx", "hostname": name})
        t0 = time.perf_counter(); got_dns = got_route = None
        while time.perf_counter() - t0 < 5 and (got_dns is None or got_route is None):
            if got_dns is None and dns_a(ports["dns"], f"{name}.prox.local"):
                got_dns = time.perf_counter() - t0
            if got_route is None and http_status(ports["http"], f"{name}.prox.local") not in (0, 404):
                got_route = time.perf_counter() - t0
            time.sleep(0.001)
        dns_ms.append(1000 * got_dns if got_dns is not None else None)
        route_ms.append(1000 * got_route if got_route is not None else None)
    for label, vals in (("plan change → DNS answers", dns_ms), ("plan change → proxy route", route_ms)):
        med, lo, hi = median_range(vals)
        record("platform", "proximity", label, f"{med:.1f} ({lo:.1f}–{hi:.1f})" if med is not None else "not seen in 5 s", "ms")

    # N parallel deploys: wall time until all are running, and daemon CPU per deploy.
    import concurrent.futures as cf
    n = 5 if args.smoke else 50
    c0, t0 = tree_cpu_ticks(demo.pid), time.time()
    with cf.ThreadPoolExecutor(16) as ex:
        ids = list(ex.map(lambda i: api_call(base, "POST", "/apps", token, {"catalog_id": "nginx", "hostname": f"load{i}"})[1]["id"], range(n)))
    states = {}
    while time.time() - t0 < 600:
        _, page = api_call(base, "GET", "/apps?per_page=200", token)
        states = {a["id"]: a["status"] for a in page["items"] if a["id"] in ids}
        if all(st in ("running", "error", "failed") for st in states.values()) and len(states) == n:
            break
        time.sleep(0.2)
    wall = time.time() - t0
    cpu = (tree_cpu_ticks(demo.pid) - c0) / os.sysconf("SC_CLK_TCK")
    ok = sum(1 for st in states.values() if st == "running")
    record("platform", "proximity", f"{n} parallel deploys: running", f"{ok}/{n}", "")
    record("platform", "proximity", f"{n} parallel deploys: wall time", f"{wall:.2f}", "s")
    record("platform", "proximity", "deploys per second", f"{ok / wall:.2f}", "/s")
    record("platform", "proximity+sim", "CPU per deploy (daemon and in-process simulator)", f"{1000 * cpu / max(1, n):.1f}", "ms")
    stop(demo)

    # API: list with 1,000 apps in the registry (hey, bearer token).
    sdir = os.path.join(tmp, "prox-api"); os.makedirs(sdir)
    seed_db(sdir, [app_record(i, f"10.20.{i // 250}.{i % 250 + 2}") for i in range(1000)])
    cfg, api_port = proximity_config(sdir)
    subprocess.run([BIN, "user", "add", "bench", "--admin", "--password", "bench-pass-123", "--config", cfg],
                   check=True, capture_output=True)
    px, _ = start_proximity(cfg)
    abase = f"http://127.0.0.1:{api_port}/api/v1"
    _, tok = api_call(abase, "POST", "/auth/login", body={"username": "bench", "password": "bench-pass-123"})
    for per_page in (50, 200):
        r = subprocess.run(["hey", "-z", f"{args.seconds}s", "-c", "8", "-H", f"Authorization: Bearer {tok['access_token']}",
                            f"{abase}/apps?per_page={per_page}"], capture_output=True, text=True, timeout=args.seconds + 30)
        rps = re.search(r"Requests/sec:\s+([0-9.]+)", r.stdout)
        p99 = re.search(r"99%+ in ([0-9.]+) secs", r.stdout) or re.search(r"Slowest:\s+([0-9.]+) secs", r.stdout)
        codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", r.stdout)
        bad = sum(int(c) for code, c in codes if code != "200")
        record("platform", "proximity", f"GET /apps?per_page={per_page} (1,000 apps) req/s", rps.group(1) if rps else "?", "req/s")
        record("platform", "proximity", f"GET /apps?per_page={per_page} (1,000 apps) p99", f"{1000 * float(p99.group(1)):.2f}" if p99 else "?", "ms")
        record("platform", "proximity", f"GET /apps?per_page={per_page} non-200", bad, "count")
    stop(px)


# ---------------------------------------------------------------- footprint
def bench_footprint(args, tmp):
    record("footprint", "proximity", "binary size", os.path.getsize(BIN) // 1024, "KiB")
    pdir = os.path.join(tmp, "prox-idle"); os.makedirs(pdir)
    dns = free_port()
    cfg, _ = proximity_config(pdir, dns=dns, http=free_port(), https=free_port(), proxy=True)
    times = []
    for _ in range(max(3, args.runs)):
        p, t = start_proximity(cfg)
        times.append(t * 1000)
        time.sleep(1.0)
        rss = rss_kb(p.pid)
        stop(p)
    med, lo, hi = median_range(times)
    record("footprint", "proximity", "exec→ready (DNS+proxy+API)", f"{med:.1f} ({lo:.1f}–{hi:.1f})", "ms")
    record("footprint", "proximity", "idle RSS", rss, "KiB")


def value(section, subject, metric):
    """The median (first number) of a recorded row, or None."""
    for s, su, m, v, _ in ROWS:
        if (s, su, m) == (section, subject, metric):
            found = re.match(r"\s*(-?[0-9.]+)", str(v))
            return float(found.group(1)) if found else None
    return None


def targets():
    """Issue 12's targets, each with the measured value and a verdict (None: not measured)."""
    def ratio(section, metric, a="proximity", b="dnsmasq"):
        x, y = value(section, a, metric), value(section, b, metric)
        return None if x is None or not y else x / y

    def row(name, measured, ok, shown):
        return (name, shown if measured is not None else "not measured", None if measured is None else ok)

    out = []
    q = value("dns-local", "ratio", "proximity/dnsmasq QPS")
    out.append(row("DNS local QPS ≥ 1.2× dnsmasq", q, q is not None and q >= 1.2, f"{q:.2f}×" if q else ""))
    c = ratio("dns-local", "cpu_us_per_q")
    out.append(row("DNS CPU per query ≤ 0.5× dnsmasq", c, c is not None and c <= 0.5, f"{c:.2f}×" if c else ""))
    p = ratio("dns-local", "p99_ms")
    out.append(row("DNS p99 ≤ 0.8× dnsmasq", p, p is not None and p <= 0.8, f"{p:.2f}×" if p else ""))
    lost = value("dns-local", "proximity", "lost_pct")
    out.append(row("DNS 0 lost", lost, lost == 0, f"{lost}%" if lost is not None else ""))
    best = None
    for s in sorted({r[0] for r in ROWS if r[0].startswith("dhcp-")}):
        d, r = value(s, "proximity", "drop_pct"), value(s, "ratio", "proximity/dnsmasq DORA/s (leases durable in both)")
        if d is not None and r is not None and d < 1 and (best is None or r > best[0]):
            best = (r, s, d)
    out.append(row("DHCP ≥ 5× dnsmasq DORA/s, durable, < 1 % drops", best, best is not None and best[0] >= 5,
                   f"{best[0]:.2f}× at {best[1][5:]} ({best[2]:.2f} % drops)" if best else ""))
    for scheme in ("http", "https"):
        sec = f"proxy-{scheme}"
        q = value(sec, "ratio", "proximity/nginx req/s")
        out.append(row(f"Proxy {scheme.upper()} ≥ 1.0× nginx req/s", q, q is not None and q >= 1.0, f"{q:.2f}×" if q else ""))
        p, n, c = (value(sec, x, "p99_ms") for x in ("proximity", "nginx", "caddy"))
        known = None if None in (p, n, c) else p
        out.append(row(f"Proxy {scheme.upper()} p99 below nginx and Caddy", known, known is not None and p < n and p < c,
                       f"{p} ms (nginx {n}, Caddy {c})" if known is not None else ""))
    m = value("proxy-http", "ratio", "proximity/caddy memory under load (PSS)")
    out.append(row("Daemon memory under proxy load < Caddy's", m, m is not None and m < 1, f"{m:.2f}× Caddy" if m else ""))
    idle = value("footprint", "proximity", "idle RSS")
    out.append(row("Idle RSS < 30 MB", idle, idle is not None and idle < 30 * 1024, f"{idle / 1024:.1f} MiB" if idle else ""))
    ready = value("footprint", "proximity", "exec→ready (DNS+proxy+API)")
    out.append(row("Ready < 300 ms after exec", ready, ready is not None and ready < 300, f"{ready} ms" if ready else ""))
    d, r = value("platform", "proximity", "plan change → DNS answers"), value("platform", "proximity", "plan change → proxy route")
    known = None if None in (d, r) else max(d, r)
    out.append(row("Plan change visible in DNS and proxy < 100 ms", known, known is not None and known < 100,
                   f"DNS {d} ms, proxy {r} ms" if known is not None else ""))
    return out


def write_results(args):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "results.tsv"), "w") as f:
        f.write("section\tsubject\tmetric\tvalue\tunit\n")
        for r in ROWS:
            f.write("\t".join(str(x) for x in r) + "\n")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    md = [f"# Proximity benchmarks ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
          "## Methodology",
          f"- Machine: {platform.node()}, {os.cpu_count()} cores ({cpu}), {platform.platform()}.",
          "- The load generators (dnsperf, wrk, perfdhcp) share the machine with the servers: compare ratios from the same run,",
          "  and the CPU-per-operation columns, not absolute numbers.",
          f"- Runs alternate A/B; {args.runs} runs of {args.seconds} s per subject; values are median (min–max).",
          "- All traffic on loopback or inside namespaces created by the benchmark." + (" **SMOKE MODE: numbers are not meaningful.**" if args.smoke else ""),
          "", "## Targets (issue 12; medians of this run)", "", "| target | measured | verdict |", "|---|---|---|"]
    md += [f"| {n} | {v} | {'met' if ok else ('—' if ok is None else '**missed**')} |" for n, v, ok in targets()]
    md += ["", "## All results", "", "| section | subject | metric | value | unit |", "|---|---|---|---|---|"]
    md += [f"| {s} | {su} | {m} | {v} | {u} |" for s, su, m, v, u in ROWS]
    open(os.path.join(OUT, "results.md"), "w").write("\n".join(md) + "\n")
    print("\n".join(md))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny runs: checks that the harness works")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--only", default="footprint,dns,proxy,dhcp,platform")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite results.md (with the targets table) from an earlier run's results.tsv; --runs/--seconds describe that run")
    args = ap.parse_args()
    if args.report_only:
        with open(os.path.join(OUT, "results.tsv")) as f:
            ROWS.extend(tuple(line.rstrip("\n").split("\t")) for line in list(f)[1:])
        write_results(args)
        return
    if args.smoke:
        args.runs, args.seconds = 1, 1
    if not os.path.exists(BIN):
        sys.exit(f"binary {BIN} not found: run `make release` or set PROXIMITY_BIN")
    sections = args.only.split(",")
    tmp = tempfile.mkdtemp(prefix="proximity-bench-")
    try:
        for name, fn in (("footprint", bench_footprint), ("dns", bench_dns), ("proxy", bench_proxy), ("dhcp", bench_dhcp), ("platform", bench_platform)):
            if name in sections and fn:
                log(f"running {name}")
                fn(args, tmp)
    finally:
        for p in STARTED:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    write_results(args)


if __name__ == "__main__":
    main()
