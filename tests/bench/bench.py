#!/usr/bin/env python3
"""Proximity benchmarks side by side with the incumbents (dnsmasq, Caddy, nginx).

Everything runs on loopback or in network namespaces this script creates; every load
run is bounded in time. Results: target/bench/results.md and results.tsv.

usage: tests/bench/bench.py [--smoke] [--runs N] [--seconds S] [--only dns,proxy,dhcp,footprint]
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
  server {{ listen 127.0.0.1:{port}; server_name *.prox.local;
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }} }} }}
"""
WRK_LUA = """local i = 0
request = function()
  i = (i % {n}) + 1
  return wrk.format("GET", "/", {{["Host"] = "app" .. i .. ".prox.local"}})
end
"""


def wrk(url, seconds, lua, server_pids):
    c0 = sum(cpu_ticks(p) for p in server_pids)
    r = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", "-s", lua, url], capture_output=True, text=True,
                       timeout=seconds + 30)
    cpu = (sum(cpu_ticks(p) for p in server_pids) - c0) / os.sysconf("SC_CLK_TCK")
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
            "rss_kb": sum(rss_kb(p) for p in server_pids), "cpu_us_per_req": 1e6 * cpu / max(1, total)}


def bench_proxy(args, tmp):
    n = 100
    be_port = free_port()
    body = "x" * 1024
    open(os.path.join(tmp, "nginx-be.conf"), "w").write(NGINX_BACKEND.format(dir=tmp, port=be_port, body=body))
    be = start(["nginx", "-c", os.path.join(tmp, "nginx-be.conf"), "-p", tmp])
    wait_port(be_port)
    lua = os.path.join(tmp, "hosts.lua"); open(lua, "w").write(WRK_LUA.format(n=n))
    subjects = [("direct", f"http://127.0.0.1:{be_port}/", [be.pid], None)]

    ng_port = free_port()
    open(os.path.join(tmp, "nginx-px.conf"), "w").write(NGINX_PROXY.format(dir=tmp, port=ng_port, be=be_port))
    ng = start(["nginx", "-c", os.path.join(tmp, "nginx-px.conf"), "-p", tmp])
    wait_port(ng_port)
    subjects.append(("nginx", f"http://127.0.0.1:{ng_port}/", [ng.pid], ng))

    cd_port = free_port()
    caddyfile = os.path.join(tmp, "Caddyfile")
    open(caddyfile, "w").write("{\n admin off\n auto_https off\n storage file_system " + tmp + "/caddy\n}\n"
                               f"http://*.prox.local:{cd_port} {{\n reverse_proxy 127.0.0.1:{be_port}\n}}\n")
    cd = start(["caddy", "run", "--config", caddyfile, "--adapter", "caddyfile"], env=dict(os.environ, HOME=tmp, XDG_DATA_HOME=tmp))
    wait_port(cd_port)
    subjects.append(("caddy", f"http://127.0.0.1:{cd_port}/", [cd.pid], cd))

    pdir = os.path.join(tmp, "prox-px"); os.makedirs(pdir)
    seed_db(pdir, [app_record(i + 1, f"10.20.0.{i + 2}", web_port=be_port, upstream="127.0.0.1") for i in range(n)])
    h, hs = free_port(), free_port()
    cfg, _ = proximity_config(pdir, http=h, https=hs, proxy=True)
    px, _ = start_proximity(cfg)
    wait_port(h)
    subjects.append(("proximity", f"http://127.0.0.1:{h}/", [px.pid], px))

    res = {s[0]: [] for s in subjects}
    for run in range(args.runs):
        order = subjects if run % 2 == 0 else list(reversed(subjects))
        for name, url, pids, _ in order:
            res[name].append(wrk(url, args.seconds, lua, pids))
    for name, runs in res.items():
        for metric, unit in (("rps", "req/s"), ("p50_ms", "ms"), ("p99_ms", "ms"), ("errors", "count"), ("cpu_us_per_req", "µs CPU/req"),
                             ("rss_kb", "KiB")):
            med, lo, hi = median_range([r[metric] for r in runs])
            if med is not None:
                record("proxy-http", name, metric, f"{med:.3f} ({lo:.3f}–{hi:.3f})", unit)
    for other in ("nginx", "caddy"):
        q = statistics.median(r["rps"] for r in res["proximity"]) / max(1e-9, statistics.median(r["rps"] for r in res[other]))
        record("proxy-http", "ratio", f"proximity/{other} req/s", f"{q:.2f}", "×")
    record("footprint", "proximity", "RSS after proxy load", rss_kb(px.pid), "KiB")
    for p in (px, cd, ng, be):
        stop(p)


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
          "", "| section | subject | metric | value | unit |", "|---|---|---|---|---|"]
    md += [f"| {s} | {su} | {m} | {v} | {u} |" for s, su, m, v, u in ROWS]
    open(os.path.join(OUT, "results.md"), "w").write("\n".join(md) + "\n")
    print("\n".join(md))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny runs: checks that the harness works")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--only", default="footprint,dns,proxy,dhcp")
    args = ap.parse_args()
    if args.smoke:
        args.runs, args.seconds = 1, 1
    if not os.path.exists(BIN):
        sys.exit(f"binary {BIN} not found: run `make release` or set PROXIMITY_BIN")
    sections = args.only.split(",")
    tmp = tempfile.mkdtemp(prefix="proximity-bench-")
    try:
        for name, fn in (("footprint", bench_footprint), ("dns", bench_dns), ("proxy", bench_proxy), ("dhcp", globals().get("bench_dhcp"))):
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
