#!/usr/bin/env python3
"""The benchmark: this project's api against the guide's Hono app (../shared/peer-hono),
side by side in one run, on the same machine and the same PostgreSQL. Prints one table of
ratios and writes the raw numbers to bench/out/results.json. Run it through bench/run.

Nothing here asserts a timing: it measures and reports.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
PEER_SRC = os.path.join(ROOT, "..", "shared", "peer-hono")
PEER = os.path.join(OUT, "peer")
TICKS = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


# ---- PostgreSQL ------------------------------------------------------------------------

SCRAM_ROLE, SCRAM_PASSWORD = "bench_scram", "bench-scram-pw"
# Round trips from nothing to the first row, over TLS to Neon: TCP 1, TLS 1 (1.3, started
# directly), start-up with SCRAM-SHA-256 3, the query 1.
FLOOR_ROUND_TRIPS = 6

class Postgres:
    """A throwaway cluster, trust auth on loopback. It serves TLS too (a self-signed
    certificate), for the cold-start rows with `sslmode=require`; the load rows connect
    without TLS, as the peer was first measured."""

    def __init__(self, bindir):
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="bench-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self.tool("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C")
        key, crt = os.path.join(self.data, "server.key"), os.path.join(self.data, "server.crt")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(key, 0o600)
        if self.as_postgres:
            for path in (key, crt):
                shutil.chown(path, "postgres", "postgres")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                    "max_connections = 200\nshared_buffers = 128MB\nfsync = off\n"
                    "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        # A role that logs in with SCRAM-SHA-256 over TCP, as every Neon role does: the
        # network rows count its three start-up round trips (first match wins in pg_hba).
        hba = os.path.join(self.data, "pg_hba.conf")
        with open(hba) as f:
            rules = f.read()
        with open(hba, "w") as f:
            f.write(f"host all {SCRAM_ROLE} 127.0.0.1/32 scram-sha-256\n" + rules)
        self.tool("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w", "-o", f"-p {self.port}", "start")
        self.tool("psql", "-h", self.dir, "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-c",
                  f"CREATE ROLE {SCRAM_ROLE} LOGIN PASSWORD '{SCRAM_PASSWORD}'")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self.cert = os.path.join(self.data, "server.crt")
        self.key = os.path.join(self.data, "server.key")

    def tool(self, name, *args):
        cmd = [os.path.join(self.bindir, name), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        run(cmd, stdout=subprocess.DEVNULL)

    def postmaster_pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def stop(self):
        try:
            self.tool("pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- process measurements ----------------------------------------------------------------

def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def children(ppid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        out.append(int(entry))
            except (OSError, ValueError):
                pass
    return out


def tree_ticks(pid):
    total = 0
    for p in [pid, *children(pid)]:
        try:
            total += cpu_ticks(p)
        except OSError:
            pass
    return total


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def get(port, path, timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body
    finally:
        conn.close()


def wait_200(port, path, deadline_s=30):
    start = time.perf_counter()
    while True:
        try:
            status, _ = get(port, path, timeout=5)
            if status == 200:
                return time.perf_counter() - start
        except OSError:
            pass
        if time.perf_counter() - start > deadline_s:
            raise RuntimeError(f"no 200 from {path} on port {port}")
        time.sleep(0.001)


class Server:
    def __init__(self, name, cmd, env, cwd=None):
        self.name = name
        self.port = free_port()
        full_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), "PORT": str(self.port),
                    "HOST": "127.0.0.1", "QUIET": "1", **env}
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=full_env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.first_200_s = wait_200(self.port, "/version")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---- wrk ---------------------------------------------------------------------------------

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(port, path, seconds, connections):
    out = run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}"],
              capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", out)
        lat[pct] = float(m.group(1)) * UNITS[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "requests": total, "p50_ms": lat["50"], "p99_ms": lat["99"],
            "non_2xx": int(errors.group(1)) if errors else 0}


def measure_load(server, pg, path, seconds, connections):
    s0, d0 = tree_ticks(server.proc.pid), tree_ticks(pg.postmaster_pid())
    r = wrk(server.port, path, seconds, connections)
    s1, d1 = tree_ticks(server.proc.pid), tree_ticks(pg.postmaster_pid())
    per = 1e6 / TICKS / max(r["requests"], 1)
    r["server_cpu_us_per_req"] = (s1 - s0) * per
    r["db_cpu_us_per_req"] = (d1 - d0) * per
    return r


def pgbench(pg, bindir, seconds, connections):
    script = os.path.join(OUT, "version.sql")
    with open(script, "w") as f:
        f.write("SELECT version();\n")
    out = run([os.path.join(bindir, "pgbench"), "-n", "-M", "prepared", "-c", str(connections), "-j", "2",
               "-T", str(seconds), "-f", script, "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "postgres"],
              capture_output=True, text=True).stdout
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


# ---- fixed rate, and a network in front of PostgreSQL -----------------------------------

def fixed_rate(bench_rate, port, rate, seconds, connections):
    out = run([bench_rate, f"http://127.0.0.1:{port}/version", str(rate), str(seconds), str(connections)],
              capture_output=True, text=True).stdout
    return json.loads(out)


class PgEdge:
    """tests/src/bin/pg-edge: a one-way delay on every packet, TLS terminated as Neon's
    proxy does (SSLRequest or direct), round trips counted per connection."""

    def __init__(self, binary, pg, rtt_ms):
        self.stats = os.path.join(OUT, f"edge-{rtt_ms}ms.json")
        if os.path.exists(self.stats):
            os.remove(self.stats)
        self.proc = subprocess.Popen([binary, str(pg.port), str(rtt_ms / 2), pg.cert, pg.key, self.stats],
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().strip().rsplit(":", 1)[1])

    def connections(self):
        time.sleep(0.02)  # the file is rewritten every 5 ms
        try:
            with open(self.stats) as f:
                return json.load(f)
        except FileNotFoundError:
            return []

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def warm_latencies(port, n):
    """`n` sequential `/version` on one keep-alive connection, ms each."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", "/version")
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"/version answered {resp.status}")
            out.append((time.perf_counter() - t0) * 1000)
    finally:
        conn.close()
    return out


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(len(v) * p + 0.999999) - 1))]


# ---- main --------------------------------------------------------------------------------

MAX_STEAL, STEAL_RETRIES = 0.02, 3


def cpu_steal():
    """(steal, all) CPU ticks from /proc/stat: time the hypervisor gave this VM's CPUs to
    others. A run with a few percent of it has stalls of tens of ms that no server causes."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:]]
    return ticks[7], sum(ticks)


def steal_share(start):
    steal, total = cpu_steal()
    return (steal - start[0]) / max(total - start[1], 1)


def summary(values):
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "all": values}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a short run that proves the script works")
    ap.add_argument("--pg-bindir", required=True)
    ap.add_argument("--api", required=True, help="release build of the api")
    ap.add_argument("--bench-lambda", required=True)
    ap.add_argument("--bench-deploy")
    ap.add_argument("--zip", required=True)
    ap.add_argument("--bench-rate", required=True)
    ap.add_argument("--pg-edge", required=True)
    args = ap.parse_args()

    rounds, seconds, warmup, cold_runs, conns = (1, 2, 1, 3, 32) if args.quick else (3, 8, 3, 7, 32)
    os.makedirs(OUT, exist_ok=True)
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.release()}",
               "quick": args.quick, "concurrency": conns, "seconds_per_round": seconds, "rounds": rounds}

    steal_at_start = cpu_steal()
    pg = Postgres(args.pg_bindir)
    try:
        ours_url = pg.url + "?sslmode=disable"
        node = shutil.which("node")
        impls = {
            "peer": ([node, "app.mjs"], {"DATABASE_URL": pg.url}, PEER),
            "ours": ([args.api], {"DATABASE_URL": ours_url, "RUST_LOG": "warn"}, None),
        }

        # 1 + 3: throughput, latency, CPU per request, memory.
        load = {name: {"/": [], "/version": []} for name in impls}
        rss = {name: {} for name in impls}
        servers = {}
        for name, (cmd, env, cwd) in impls.items():
            servers[name] = Server(name, cmd, env, cwd)
            rss[name]["after_start_mib"] = rss_mib(servers[name].proc.pid)
            for path in ("/", "/version"):
                wrk(servers[name].port, path, warmup, conns)
        for r in range(rounds):
            for path in ("/", "/version"):
                for name in impls:  # interleaved, so drift hits both alike
                    log(f"round {r + 1}/{rounds} {name} {path}")
                    load[name][path].append(measure_load(servers[name], pg, path, seconds, conns))
        # Latency at equal offered load, open loop: 25%, 50% and 75% of the peer's capacity.
        # Each rate runs `rounds` times, interleaved, and each percentile is the median of
        # the rounds': one 8 s run's p99.9 is its ~20 slowest requests, which one pause of
        # the machine (seen: both sides' max at 15 ms in the same run) decides on its own.
        capacity = med(load, "peer", "/version", "rps")
        fixed = []
        for share in (0.25, 0.5, 0.75):
            rate = round(capacity * share)
            entry = {"share": share, "rate": rate}
            # A round in which the hypervisor took more than MAX_STEAL of the CPUs is run
            # again (up to STEAL_RETRIES times): its tail is the host's, not the server's.
            runs = {name: [] for name in impls}
            entry["rerun_for_steal"] = 0
            for r in range(rounds):
                for name in impls:
                    log(f"fixed rate {rate}/s {name}, round {r + 1}/{rounds}")
                    for attempt in range(STEAL_RETRIES + 1):
                        before = cpu_steal()
                        run_ = fixed_rate(args.bench_rate, servers[name].port, rate, seconds, conns)
                        run_["cpu_steal"] = steal_share(before)
                        if run_["cpu_steal"] <= MAX_STEAL or attempt == STEAL_RETRIES:
                            break
                        log(f"  {run_['cpu_steal']:.1%} CPU steal in that round; running it again")
                        entry["rerun_for_steal"] += 1
                    runs[name].append(run_)
            for name, each in runs.items():
                entry[name] = {key: statistics.median(run[key] for run in each)
                               for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms", "achieved_rps", "errors")}
                entry[name]["rounds"] = each
            fixed.append(entry)
        results["fixed_rate"] = fixed
        for name, server in servers.items():
            rss[name]["after_load_mib"] = rss_mib(server.proc.pid)
            server.stop()
        results["load"] = load
        results["rss"] = rss

        # 5: what PostgreSQL itself serves at the same concurrency.
        log("pgbench SELECT version()")
        results["pgbench_tps"] = summary([pgbench(pg, args.pg_bindir, seconds, conns) for _ in range(rounds)])

        # 2: cold start, spawn to the first 200 on /version; without TLS and with it (every
        # Neon connection is TLS). Neither side verifies the self-signed certificate: ours
        # with libpq's sslmode=require, the peer with node-postgres' sslmode=no-verify.
        tls_urls = {"peer": pg.url + "?sslmode=no-verify", "ours": pg.url + "?sslmode=require"}
        for key, tls in (("cold_start_ms", False), ("cold_start_tls_ms", True)):
            cold = {name: [] for name in impls}
            for _ in range(cold_runs):
                for name, (cmd, env, cwd) in impls.items():
                    if tls:
                        env = {**env, "DATABASE_URL": tls_urls[name]}
                    s = Server(name, cmd, env, cwd)
                    cold[name].append(s.first_200_s * 1000)
                    s.stop()
            results[key] = {n: summary(v) for n, v in cold.items()}

        # 4: Lambda mode: exec to the first /version response, and warm invocations;
        # then the first response again with TLS to PostgreSQL.
        log("lambda mode")

        def lambda_mode(ours_db, peer_db, warm):
            ours = json.loads(run([args.bench_lambda, args.api, ours_db, str(cold_runs), "200" if warm else "1"],
                                  capture_output=True, text=True).stdout)
            peer_first, peer_warm = [], []
            for _ in range(cold_runs):
                env = {**os.environ, "DATABASE_URL": peer_db}
                t0 = time.perf_counter()
                run([node, "lambda_invoke.mjs", "/version", "1"], cwd=PEER, env=env, capture_output=True)
                peer_first.append((time.perf_counter() - t0) * 1000)
                if warm:
                    out = run([node, "lambda_invoke.mjs", "/version", "200"], cwd=PEER, env=env,
                              capture_output=True, text=True)
                    peer_warm.append(json.loads(out.stdout)["warm_invoke_ms"])
            out = {"peer": {"first_ms": summary(peer_first)}, "ours": {"first_ms": summary(ours["first_ms"])}}
            if warm:
                out["peer"]["warm_ms"] = summary(peer_warm)
                out["ours"]["warm_ms"] = summary(ours["warm_ms"])
            return out

        results["lambda"] = lambda_mode(ours_url, pg.url, True)
        results["lambda_tls"] = lambda_mode(tls_urls["ours"], tls_urls["peer"], False)

        # 8: PostgreSQL a network hop away (1 ms RTT within a region, 20 ms across), behind
        # a TLS edge as Neon's, with a SCRAM role: cold start, round trips, warm latency.
        results["network"] = {}
        for rtt in (1, 20):
            log(f"network, RTT {rtt} ms")
            edge = PgEdge(args.pg_edge, pg, rtt)
            try:
                base = f"postgres://{SCRAM_ROLE}:{SCRAM_PASSWORD}@127.0.0.1:{edge.port}/postgres"
                urls = {"peer": base + "?sslmode=no-verify",
                        "ours": base + "?sslmode=require&sslnegotiation=direct"}
                net = {name: {"cold_ms": [], "round_trips": [], "warm_ms": []} for name in impls}
                for _ in range(cold_runs):
                    for name, (cmd, env, cwd) in impls.items():
                        before = len(edge.connections())
                        s = Server(name, cmd, {**env, "DATABASE_URL": urls[name]}, cwd)
                        net[name]["cold_ms"].append(s.first_200_s * 1000)
                        new = edge.connections()[before:]
                        net[name]["round_trips"].append(new[0]["round_trips"] if new else None)
                        net[name]["warm_ms"] += warm_latencies(s.port, 10 if args.quick else 40)
                        s.stop()
                lam = lambda_mode(urls["ours"], urls["peer"], False)
                results["network"][str(rtt)] = {
                    name: {"cold_ms": summary(v["cold_ms"]), "round_trips": v["round_trips"],
                           "warm_p50_ms": pct(v["warm_ms"], 0.5), "warm_p99_ms": pct(v["warm_ms"], 0.99),
                           "lambda_first_ms": lam[name]["first_ms"]}
                    for name, v in net.items()}
            finally:
                edge.stop()
    finally:
        pg.stop()

    # 6: package size. The peer's: its handler plus node_modules, zipped the same way.
    peer_zip = os.path.join(OUT, "peer-lambda.zip")
    with zipfile.ZipFile(peer_zip, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(os.path.join(PEER, "lambda.mjs"), "lambda.mjs")
        for base, _, files in os.walk(os.path.join(PEER, "node_modules")):
            for f in files:
                full = os.path.join(base, f)
                z.write(full, os.path.relpath(full, PEER))
    results["zip_bytes"] = {"peer": os.path.getsize(peer_zip), "ours": os.path.getsize(args.zip)}

    # 7: the deployer against moto and the Neon emulator, with real-cloud delays injected.
    if args.bench_deploy:
        log("deployer")
        results["deploy"] = json.loads(run([args.bench_deploy, "1" if args.quick else "3"],
                                           capture_output=True, text=True).stdout)

    results["cpu_steal"] = steal_share(steal_at_start)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    table = render(results)
    with open(os.path.join(OUT, "table.md"), "w") as f:
        f.write(table)
    if not args.quick:
        update_benchmarks(table)
    print(table)


BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "BENCHMARKS.md")
START, END = "<!-- bench/run writes this table -->", "<!-- end of bench/run's table -->"


def update_benchmarks(table):
    """Puts a full run's table into docs/BENCHMARKS.md between its markers."""
    with open(BENCHMARKS) as f:
        text = f.read()
    before, found, rest = text.partition(START)
    _, found_end, after = rest.partition(END)
    if not (found and found_end):
        log("docs/BENCHMARKS.md has no bench table markers; not updated")
        return
    with open(BENCHMARKS, "w") as f:
        f.write(f"{before}{START}\n{table}{END}{after}")
    log("docs/BENCHMARKS.md's table updated")


def med(load, name, path, key):
    return statistics.median(r[key] for r in load[name][path])


def render(res):
    L = res["load"]
    rows = []

    def row(metric, peer, ours, ratio, target):
        rows.append(f"| {metric} | {peer} | {ours} | {ratio} | {target} |")

    for path, target_rps in (("/", "≥ 2×"), ("/version", "≥ 3×")):
        p, o = med(L, "peer", path, "rps"), med(L, "ours", path, "rps")
        row(f"`{path}` req/s (median)", f"{p:,.0f}", f"{o:,.0f}", f"{o / p:.2f}×", target_rps)
        p99p, p99o = med(L, "peer", path, "p99_ms"), med(L, "ours", path, "p99_ms")
        row(f"`{path}` p50 / p99 latency ms", f"{med(L, 'peer', path, 'p50_ms'):.2f} / {p99p:.2f}",
            f"{med(L, 'ours', path, 'p50_ms'):.2f} / {p99o:.2f}", f"p99 {p99o / p99p:.2f}×",
            "p99 ≤ 0.33×" if path == "/version" else "")
        cp, co = med(L, "peer", path, "server_cpu_us_per_req"), med(L, "ours", path, "server_cpu_us_per_req")
        row(f"`{path}` server CPU µs/request", f"{cp:.1f}", f"{co:.1f}", f"{co / cp:.2f}×", "")
        if path == "/version":
            dp, do = med(L, "peer", path, "db_cpu_us_per_req"), med(L, "ours", path, "db_cpu_us_per_req")
            row("`/version` PostgreSQL CPU µs/request", f"{dp:.1f}", f"{do:.1f}", f"{do / dp:.2f}×", "")
    pg = res["pgbench_tps"]["median"]
    o = med(L, "ours", "/version", "rps")
    p = med(L, "peer", "/version", "rps")
    row("`/version` as share of pgbench `SELECT version()`", f"{p / pg:.0%}", f"{o / pg:.0%}", f"pgbench {pg:,.0f} tps", "ours ≥ 50%")
    c = res["cold_start_ms"]
    row("cold start: spawn → first `/version` 200, ms (median)", f"{c['peer']['median']:.1f}", f"{c['ours']['median']:.1f}",
        f"{c['ours']['median'] / c['peer']['median']:.3f}×", "≤ 0.1×")
    t = res["cold_start_tls_ms"]
    row("cold start with TLS to PostgreSQL, ms (median)", f"{t['peer']['median']:.1f}", f"{t['ours']['median']:.1f}",
        f"{t['ours']['median'] / t['peer']['median']:.3f}×",
        f"ours ≤ no-TLS + 10 ms ({t['ours']['median'] - c['ours']['median']:+.1f} ms)")
    r = res["rss"]
    row("RSS after start, MiB", f"{r['peer']['after_start_mib']:.1f}", f"{r['ours']['after_start_mib']:.1f}",
        f"{r['ours']['after_start_mib'] / r['peer']['after_start_mib']:.2f}×", "")
    row("RSS after load, MiB", f"{r['peer']['after_load_mib']:.1f}", f"{r['ours']['after_load_mib']:.1f}",
        f"{r['ours']['after_load_mib'] / r['peer']['after_load_mib']:.2f}×", "≤ 0.2×")
    lam = res["lambda"]
    row("Lambda: exec → first `/version` response, ms", f"{lam['peer']['first_ms']['median']:.1f}",
        f"{lam['ours']['first_ms']['median']:.1f}",
        f"{lam['ours']['first_ms']['median'] / lam['peer']['first_ms']['median']:.3f}×", "")
    lt = res["lambda_tls"]
    row("Lambda with TLS: exec → first `/version` response, ms", f"{lt['peer']['first_ms']['median']:.1f}",
        f"{lt['ours']['first_ms']['median']:.1f}",
        f"{lt['ours']['first_ms']['median'] / lt['peer']['first_ms']['median']:.3f}×",
        f"{lt['ours']['first_ms']['median'] - lam['ours']['first_ms']['median']:+.1f} ms vs no TLS")
    row("Lambda: warm invocation, ms", f"{lam['peer']['warm_ms']['median']:.3f}", f"{lam['ours']['warm_ms']['median']:.3f}",
        f"{lam['ours']['warm_ms']['median'] / lam['peer']['warm_ms']['median']:.2f}×", "")
    for f in res.get("fixed_rate", []):
        p, o = f["peer"], f["ours"]
        rerun = f.get("rerun_for_steal", 0)
        steal = max(run["cpu_steal"] for side in (p, o) for run in side.get("rounds", [{"cpu_steal": 0}]))
        note = f" ({rerun} rounds rerun for CPU steal; worst kept {steal:.1%})" if rerun else ""
        row(f"`/version` at {f['rate']:,}/s ({f['share']:.0%} of the peer's capacity), open loop{note}: p50 / p99 / p99.9 ms",
            f"{p['p50_ms']:.2f} / {p['p99_ms']:.2f} / {p['p999_ms']:.2f}",
            f"{o['p50_ms']:.2f} / {o['p99_ms']:.2f} / {o['p999_ms']:.2f}",
            f"p99 {o['p99_ms'] / p['p99_ms']:.2f}×, p99.9 {o['p999_ms'] / p['p999_ms']:.2f}×",
            "p99 ≤ 0.33×, p99.9 ≤ 0.5×")
    for rtt, net in res.get("network", {}).items():
        p, o = net["peer"], net["ours"]
        floor = FLOOR_ROUND_TRIPS * int(rtt)
        rts = lambda x: "/".join(str(r) for r in sorted(set(x["round_trips"])))
        row(f"RTT {rtt} ms, TLS edge, SCRAM: cold start, ms (round trips; floor {FLOOR_ROUND_TRIPS} = {floor} ms)",
            f"{p['cold_ms']['median']:.1f} ({rts(p)})", f"{o['cold_ms']['median']:.1f} ({rts(o)})",
            f"{o['cold_ms']['median'] / p['cold_ms']['median']:.3f}×",
            f"≤ floor + 1 round trip{'; ≤ 0.2×' if rtt == '1' else ''}")
        row(f"RTT {rtt} ms: Lambda exec → first `/version` response, ms", f"{p['lambda_first_ms']['median']:.1f}",
            f"{o['lambda_first_ms']['median']:.1f}", f"{o['lambda_first_ms']['median'] / p['lambda_first_ms']['median']:.3f}×", "")
        row(f"RTT {rtt} ms: warm `/version` p50 / p99, ms", f"{p['warm_p50_ms']:.2f} / {p['warm_p99_ms']:.2f}",
            f"{o['warm_p50_ms']:.2f} / {o['warm_p99_ms']:.2f}", f"p50 {o['warm_p50_ms'] / p['warm_p50_ms']:.2f}×",
            f"one round trip: {rtt} ms")
    z = res["zip_bytes"]
    row("Lambda zip (cargo lambda's), MB", f"{z['peer'] / 1e6:.2f}", f"{z['ours'] / 1e6:.2f}", f"{z['ours'] / z['peer']:.2f}×", "ours ≤ 3 MB")
    if "deploy" in res and res["deploy"][0].get("zip_bytes"):
        up = res["deploy"][0]["zip_bytes"]
        row("Lambda zip the deployer uploads, MB", f"{z['peer'] / 1e6:.2f}", f"{up / 1e6:.2f}", f"{up / z['peer']:.2f}×", "ours ≤ 3 MB")
    if "deploy" in res:
        # Deploys under injected real-cloud delays (see tests/src/bin/bench-deploy.rs): wall
        # time against the critical path the same delays impose; --concurrency 1 compares.
        d = res["deploy"]
        # The code-only path includes the upload as Lambda took it, measured per run.
        crit = {k: statistics.median(x["critical"][k] for x in d) for k in d[0]["critical"]}

        def secs(k):
            return statistics.median(x[k]["seconds"] for x in d)

        def calls(k):
            x = d[0][k]
            return f"{x['neon_calls']}/{x['aws_calls']} calls, {x['neon_mutating']}/{x['aws_mutating']} mutating"

        for label, k, c, target in (
            ("deploy example 2 (project + function), fresh", "api_fresh", crit["api_fresh"], "≤ 1.15× critical path"),
            ("  same, --concurrency 1", "api_fresh_serial", crit["api_fresh"], "comparison"),
            ("deploy example 2, code-only redeploy", "api_code_only", crit["code_only"], "≤ 1.15× (read + upload + wait)"),
            ("deploy example 2 with two migrations, fresh", "api_migrations_fresh", crit["api_migrations_fresh"], "≤ 1.15× critical path"),
            ("deploy example 1 (Neon chain), fresh", "full_fresh", crit["full_fresh"], "≤ 1.15× critical path"),
            ("  same, --concurrency 1", "full_fresh_serial", crit["full_fresh"], "comparison"),
        ):
            row(f"{label}: s ({calls(k)})", "–", f"{secs(k):.2f} (critical {c:.2f})",
                f"{secs(k) / c:.2f}× critical", target)
        for label, k in (("deploy example 2, no-op", "api_noop"), ("deploy example 1, no-op", "full_noop")):
            row(f"{label}: s ({calls(k)})", "–", f"{secs(k):.2f}", "", "≤ 1 s, 0 mutating")
        if "api_rollback" in d[0]:
            row(f"rollback to the previous release: s ({calls('api_rollback')})", "–",
                f"{secs('api_rollback'):.2f}", "", "≤ 1 s, 1 mutating")
    head = [f"Benchmark {res['date']} on {res['machine']}; wrk -t2 -c{res['concurrency']} "
            f"-d{res['seconds_per_round']}s × {res['rounds']} rounds{' (quick)' if res['quick'] else ''}; "
            "local PostgreSQL; no TLS but in the rows that say so; "
            f"CPU steal {res.get('cpu_steal', 0):.1%} of the run.", "",
            "| metric | peer (Hono on Node) | this project | ratio | target |", "|---|---|---|---|---|"]
    return "\n".join(head + rows) + "\n"


if __name__ == "__main__":
    main()
