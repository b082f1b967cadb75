#!/usr/bin/env python3
"""The benchmark: the release binary under HTTP load (wrk) against the very
same SQL run by pgbench, plus round trips, cold start, memory and scale.

Run it through scripts/bench.sh, which builds the binary and starts a
PostgreSQL server with pg_stat_statements and CSV logs; this file drives
everything else and writes docs/benchmarks.md. Standard library only.
"""

import argparse
import base64
import csv
import glob
import http.client
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "amplifier-sessions")
ADMIN_KEY = "bench-admin-key-0123456789abcdef0123456789"
SECRET_KEY = "bench-secret-key-0123456789abcdef0123456789"
APP_ROLE = "bench_app"
APP_PASSWORD = "bench_password"
DB = "bench"


RUNNING = []  # service processes, stopped however the run ends


def log(*args):
    print(*args, file=sys.stderr, flush=True)


class Postgres:
    def __init__(self, port, log_dir):
        self.port = port
        self.log_dir = log_dir

    def psql(self, sql, db=DB, user="postgres"):
        env = dict(os.environ, PGPASSWORD="postgres" if user == "postgres" else APP_PASSWORD)
        out = subprocess.run(
            ["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", user, "-d", db, "-c", sql],
            env=env, check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def url(self):
        return f"postgres://{APP_ROLE}:{APP_PASSWORD}@127.0.0.1:{self.port}/{DB}"

    def statements_since(self, marker):
        """The statements the service executed after `marker` was logged,
        with their parameters, from the CSV server log."""
        rows = []
        for path in sorted(glob.glob(os.path.join(self.log_dir, "*.csv"))):
            with open(path, newline="") as f:
                rows.extend(csv.reader(f))
        seen_marker = False
        found = []
        for row in rows:
            message, detail, app = row[13], row[14], row[22]
            if marker in message:
                seen_marker = True
                continue
            if not seen_marker or app != "amplifier-sessions":
                continue
            m = re.match(r"duration: [\d.]+ ms  (parse|bind|execute) [^:]*: (.*)", message, re.S)
            if m:
                found.append((m.group(1), m.group(2), parse_parameters(detail)))
        return found

    def mark(self):
        marker = f"bench-marker-{uuid.uuid4().hex}"
        self.psql(f"SELECT '{marker}'")
        return marker


def parse_parameters(detail):
    """`parameters: $1 = 'a', $2 = NULL` -> {1: 'a', 2: None}."""
    values = {}
    for m in re.finditer(r"\$(\d+) = (NULL|'((?:[^']|'')*)')", detail or ""):
        values[int(m.group(1))] = None if m.group(2) == "NULL" else m.group(3).replace("''", "'")
    return values


class Service:
    def __init__(self, pg, pool_size, port):
        self.port = port
        self.env = {
            "PATH": os.environ["PATH"],
            "ENVIRONMENT": "test",
            "DATABASE_URL": pg.url(),
            "DATABASE_POOL_MAX_SIZE": str(pool_size),
            "SECRET_KEY": SECRET_KEY,
            "ADMIN_API_KEY": ADMIN_KEY,
            "FUNCTIONS_CUSTOMHANDLER_PORT": str(port),
            "LOG_LEVEL": "warn",
        }
        self.proc = None

    def start(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            raise RuntimeError(f"port {self.port} is already in use")
        except OSError:
            pass
        cwd = tempfile.mkdtemp()  # no .env files from the repository
        started = time.perf_counter()
        self.proc = subprocess.Popen([BIN, "serve"], env=self.env, cwd=cwd,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        RUNNING.append(self.proc)
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return time.perf_counter() - started, started
            except OSError:
                if time.perf_counter() - started > 10:
                    raise RuntimeError("service did not listen")
                time.sleep(0.0005)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()

    def rss_kib(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(field)

    def request(self, method, path, headers=None, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = json.dumps(body) if body is not None else None
        hdrs = dict(headers or {})
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        response = conn.getresponse()
        text = response.read().decode()
        conn.close()
        return response.status, (json.loads(text) if text else None)

    def dev_token(self, user):
        out = subprocess.run([BIN, "dev-token", "--user", user, "--ttl-minutes", "600"],
                             env=self.env, cwd=tempfile.mkdtemp(), check=True,
                             capture_output=True, text=True)
        return out.stdout.strip()


WRK_SCRIPT = """
local bodies = %(bodies)s
local paths = %(paths)s
local method = "%(method)s"
wrk.headers["X-API-Key"] = "%(key)s"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Content-Type"] = "application/json"
local counter = 0
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local function random_uuid()
  return string.format("%%08x-%%04x-4%%03x-8%%03x-%%06x%%06x", math.random(0, 0xffffffff),
    math.random(0, 0xffff), math.random(0, 0xfff), math.random(0, 0xfff),
    math.random(0, 0xffffff), math.random(0, 0xffffff))
end
request = function()
  counter = counter + 1
  local path = paths[math.random(#paths)]
  local body = bodies[math.random(#bodies)]
  if body then body = body:gsub("RANDOM_UUID", random_uuid) end
  return wrk.format(method, path, nil, body)
end
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
               + summary.errors.write + summary.errors.timeout
  io.write(string.format('BENCH {"requests": %%d, "seconds": %%f, "p50_ms": %%f, "p99_ms": %%f, "errors": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, errors))
end
"""


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """User + system CPU time of the given processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / TICK


def machine_busy_seconds():
    """CPU time all cores spent not idle, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


class CpuMeter:
    """CPU spent while a block runs: by the whole machine, by the service,
    and by our child tools (wrk or pgbench). PostgreSQL's share is what
    remains (the machine runs nothing else of note)."""

    def __init__(self, service_pid=None):
        self.service_pid = service_pid

    def __enter__(self):
        self.machine0 = machine_busy_seconds()
        self.svc0 = cpu_seconds([self.service_pid]) if self.service_pid else 0
        self.child0 = os.times().children_user + os.times().children_system
        return self

    def __exit__(self, *exc):
        self.machine = machine_busy_seconds() - self.machine0
        self.svc = (cpu_seconds([self.service_pid]) - self.svc0) if self.service_pid else 0
        self.tool = os.times().children_user + os.times().children_system - self.child0
        self.pg = max(self.machine - self.svc - self.tool, 0)


def lua_list(items):
    return "{" + ", ".join("nil" if i is None else json.dumps(i) for i in items) + "}"


def wrk(service, fn, args):
    script = WRK_SCRIPT % {
        "bodies": lua_list(fn["bodies"]), "paths": lua_list(fn["paths"]),
        "method": fn["method"], "key": fn["key"], "token": fn["token"],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency", "-s", f.name,
         f"http://127.0.0.1:{service.port}"],
        check=True, capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    result = json.loads(line[len("BENCH "):])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def body_for(fn):
    body = fn["bodies"][0]
    return json.loads(body.replace("RANDOM_UUID", str(uuid.uuid4()))) if body else None


def capture(pg, service, fn):
    """Sends one steady-state request and returns the statements it ran."""
    headers = {"X-API-Key": fn["key"], "Authorization": f"Bearer {fn['token']}"}
    for _ in range(20):  # the connection's statement cache is warm afterwards
        service.request(fn["method"], fn["paths"][0], headers, body_for(fn))
    pg.psql("ALTER SYSTEM SET log_min_duration_statement = 0")
    pg.psql("SELECT pg_reload_conf()")
    time.sleep(0.2)
    marker = pg.mark()
    status, _ = service.request(fn["method"], fn["paths"][0], headers, body_for(fn))
    time.sleep(0.3)
    pg.psql("ALTER SYSTEM RESET log_min_duration_statement")
    pg.psql("SELECT pg_reload_conf()")
    return status, pg.statements_since(marker)


def pgbench(pg, fn, executes, args):
    """The same statements, with the same parameters, straight to PostgreSQL.
    One script per path variant; pgbench picks one at random per transaction."""
    scripts, defines = [], []
    variants = fn.get("variants") or [{}]
    for v, replace in enumerate(variants):
        lines = []
        for s, (sql, params) in enumerate(executes):
            text = re.sub(r"\$(\d+)", lambda m: f":v{v}s{s}p{m.group(1)}", sql).strip().rstrip(";")
            lines.append(text + ";")
            for n, value in params.items():
                for old, new in replace.items():
                    value = value.replace(old, new) if value else value
                if value is None:
                    raise RuntimeError("NULL parameters are not supported by pgbench -D")
                defines += ["-D", f"v{v}s{s}p{n}={value}"]
        path = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False).name
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        scripts += ["-f", f"{path}@1"]
    env = dict(os.environ, PGPASSWORD=APP_PASSWORD)
    out = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", f"-c{args.connections}", "-j2", f"-T{args.duration}",
         "-h", "127.0.0.1", "-p", str(pg.port), "-U", APP_ROLE, *scripts, *defines, DB],
        env=env, check=True, capture_output=True, text=True).stdout
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return {"tps": tps, "failed": int(failed.group(1)) if failed else 0}


def reset(pg, fn):
    if fn.get("reset"):
        pg.psql(fn["reset"])


def calls_by_service(pg):
    return int(pg.psql(
        f"SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
        f"WHERE r.rolname = '{APP_ROLE}'"))


def cold_start(pg, args, fixtures):
    runs = []
    for i in range(args.cold_runs):
        service = Service(pg, args.connections, args.port + 1 + i)
        listen, started = service.start()
        status, _ = service.request("POST", "/api/sessions", fixtures["headers"],
                                    {"config_id": fixtures["config_id"]})
        first = time.perf_counter() - started
        assert status == 201, status
        runs.append((listen * 1000, first * 1000))
        service.stop()
    return runs


def explain(pg, sql, params):
    """EXPLAIN ANALYZE of a captured statement with its parameters."""
    values = ", ".join("NULL" if params.get(n) is None else "'" + params[n].replace("'", "''") + "'"
                       for n in range(1, len(params) + 1))
    name = "q" + uuid.uuid4().hex[:8]
    return pg.psql(f"PREPARE {name} AS {sql}; EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE {name}({values})",
                   user=APP_ROLE)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--port", type=int, default=7300)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--scale-sessions", type=int, default=1_000_000)
    parser.add_argument("--scale-user-sessions", type=int, default=10_000)
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()

    pg = Postgres(args.pg_port, args.log_dir)
    pg.psql(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'", db="postgres")
    pg.psql(f"CREATE DATABASE {DB} OWNER {APP_ROLE}", db="postgres")
    pg.psql("CREATE EXTENSION pg_stat_statements")
    pg.psql(f"GRANT pg_read_all_stats TO {APP_ROLE}", db="postgres")

    # Fixtures, through the API.
    service = Service(pg, args.connections, args.port)
    service.start()
    status, app = service.request("POST", "/api/applications", {"X-API-Key": ADMIN_KEY},
                                  {"app_id": "bench-app", "app_name": "bench"})
    assert status == 201, (status, app)
    key = app["api_key"]
    user = str(uuid.uuid4())
    token = service.dev_token(user)
    headers = {"X-API-Key": key, "Authorization": f"Bearer {token}"}
    status, config = service.request("POST", "/api/configs", headers,
                                     {"name": "bench", "yaml_content": "model: bench\n"})
    config_id = config["config_id"]
    sessions = []
    for _ in range(args.connections):
        status, s = service.request("POST", "/api/sessions", headers, {"config_id": config_id})
        sessions.append(s["session_id"])
    service.stop()
    fixtures = {"headers": headers, "config_id": config_id}

    log("cold start ...")
    cold = cold_start(pg, args, fixtures)

    service = Service(pg, args.connections, args.port)
    service.start()
    service.request("GET", "/api/health")
    idle_rss = service.rss_kib()

    base = {"key": key, "token": token}
    # Sessions are spread over `connections` rows so that row locks on one
    # session do not dominate; pgbench gets one script per session.
    spread = [{sessions[0]: s} for s in sessions]
    functions = [
        dict(base, name="create-session", method="POST", paths=["/api/sessions"],
             bodies=[json.dumps({"config_id": config_id})]),
        dict(base, name="get-session", method="GET", paths=[f"/api/sessions/{s}" for s in sessions],
             bodies=[None], variants=spread),
        dict(base, name="add-participant", method="POST",
             paths=[f"/api/sessions/{s}/participants" for s in sessions],
             bodies=['{"user_id": "RANDOM_UUID", "role": "viewer"}'], variants=spread),
        dict(base, name="list-user-sessions", method="GET", paths=["/api/users/me/sessions"],
             bodies=[None]),
        dict(base, name="append-messages", method="POST",
             paths=[f"/api/sessions/{s}/messages" for s in sessions],
             bodies=[json.dumps({"messages": [{"role": "user", "text": "hello " * 8}]})],
             variants=spread,
             # Both sides start from empty transcripts: an append rewrites the
             # whole transcript, so its length would otherwise favour one side.
             reset="UPDATE sessions SET transcript = '[]', message_count = 0"),
    ]
    results = []
    for fn in functions:
        log(f"{fn['name']} ...")
        status, statements = capture(pg, service, fn)
        executes = [(sql, params) for kind, sql, params in statements if kind == "execute"]
        parses = [sql for kind, sql, _ in statements if kind == "parse"]
        pg.psql("SELECT pg_stat_statements_reset()")
        reset(pg, fn)
        with CpuMeter(service.proc.pid) as http_cpu:
            http_result = wrk(service, fn, args)
        calls = calls_by_service(pg)
        reset(pg, fn)
        with CpuMeter() as bench_cpu:
            bench = pgbench(pg, fn, executes, args)
        n, t = max(http_result["requests"], 1), max(bench["tps"] * args.duration, 1)
        http_result["cpu_us"] = {"service": http_cpu.svc / n * 1e6, "postgres": http_cpu.pg / n * 1e6,
                                 "wrk": http_cpu.tool / n * 1e6}
        bench["cpu_us"] = {"postgres": bench_cpu.pg / t * 1e6, "pgbench": bench_cpu.tool / t * 1e6}
        results.append({
            "name": fn["name"], "status": status, "http": http_result, "pgbench": bench,
            "round_trips_captured": len(executes), "parses": len(parses),
            "round_trips_measured": calls / max(http_result["requests"], 1),
            "statements": executes,
        })
    peak_rss = service.rss_kib("VmHWM")

    # The GIN index on sessions.transcript and HOT updates of append-messages.
    log("append-messages with and without the transcript GIN index ...")
    append = next(f for f in functions if f["name"] == "append-messages")
    has_gin = pg.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_sessions_transcript'") == "1"

    def hot_run():
        reset(pg, append)
        pg.psql("SELECT pg_stat_reset()")
        r = wrk(service, append, args)
        time.sleep(0.6)  # statistics are flushed at most every 500 ms
        upd, hot = pg.psql("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                           "WHERE relname = 'sessions'").split("|")
        return {"rps": r["rps"], "p99_ms": r["p99_ms"], "hot_share": int(hot) / max(int(upd), 1)}

    gin = {("with" if has_gin else "without"): hot_run()}
    if has_gin:
        pg.psql("DROP INDEX idx_sessions_transcript")
        gin["without"] = hot_run()
        pg.psql("CREATE INDEX idx_sessions_transcript ON sessions USING GIN(transcript)")
    else:
        pg.psql("CREATE INDEX idx_sessions_transcript ON sessions USING GIN(transcript)")
        gin["with"] = hot_run()
        pg.psql("DROP INDEX idx_sessions_transcript")

    # Scale: one user with 10,000 sessions among 1,000,000.
    log(f"scale: generating {args.scale_sessions} sessions ...")
    heavy = str(uuid.uuid4())
    heavy_token = service.dev_token(heavy)
    started = time.perf_counter()
    pg.psql(f"""
        INSERT INTO sessions (config_id, owner_user_id, created_by_app_id)
        SELECT '{config_id}', CASE WHEN g <= {args.scale_user_sessions} THEN '{heavy}'::uuid
                                   ELSE gen_random_uuid() END, 'bench-app'
        FROM generate_series(1, {args.scale_sessions}) g;
        INSERT INTO session_participants (session_id, user_id, role, last_active_at)
        SELECT session_id, owner_user_id, 'owner',
               CASE WHEN random() < 0.1 THEN NULL ELSE now() - random() * interval '90 days' END
        FROM sessions WHERE owner_user_id IS DISTINCT FROM '{user}';
        ANALYZE;""")
    generated_s = time.perf_counter() - started
    scale_fn = dict(functions[3], name="list-user-sessions (10k of 1M)", token=heavy_token)
    status, statements = capture(pg, service, scale_fn)
    first_page = [(sql, p) for kind, sql, p in statements if kind == "execute"][-1]
    scale_http = wrk(service, scale_fn, args)
    # A deep page: the cursor after the 9,000th row of the heavy user.
    row = pg.psql(f"""
        SELECT coalesce(to_char(last_active_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), ''),
               session_id FROM session_participants WHERE user_id = '{heavy}'
        ORDER BY coalesce(last_active_at, '-infinity') DESC, session_id OFFSET 8999 LIMIT 1""").split("|")
    cursor = base64.urlsafe_b64encode(json.dumps(
        {"last_active_at": row[0] or None, "session_id": row[1]}).encode()).decode().rstrip("=")
    deep_fn = dict(scale_fn, paths=[f"/api/users/me/sessions?cursor={cursor}"])
    status, statements = capture(pg, service, deep_fn)
    assert status == 200, status
    deep_page = [(sql, p) for kind, sql, p in statements if kind == "execute"][-1]
    plans = {"first page": explain(pg, *first_page), "page after row 9,000": explain(pg, *deep_page)}
    service.stop()

    write_report(args, results, cold, idle_rss, peak_rss, gin, scale_http, plans, generated_s)
    log(f"wrote {args.out}")


def write_report(args, results, cold, idle_rss, peak_rss, gin, scale_http, plans, generated_s):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    pg_version = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Benchmarks",
        "",
        "Measured by `scripts/bench.sh` (reproduce with that one command; it needs the",
        "PostgreSQL server binaries, `wrk` and `pgbench`, and installs the last two from",
        "Debian when run as root). Numbers below are from one run on the machine named",
        "here; compare ratios, not absolutes, across machines.",
        "",
        f"- machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}",
        f"- {pg_version}, local server on loopback, `fsync=off` (both sides alike)",
        f"- load: wrk, 2 threads, {args.connections} connections, {args.duration} s per function;"
        f" pool size {args.connections}",
        f"- the limit: pgbench `-M prepared`, {args.connections} clients, {args.duration} s, running the very"
        " statements (text and parameters) the service ran for one request, read from the server log",
        "",
        "## Throughput, latency and round trips",
        "",
        "| function | HTTP req/s | p50 ms | p99 ms | errors | pgbench tx/s | ratio | round trips / request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        h, b = r["http"], r["pgbench"]
        lines.append(
            f"| {r['name']} | {h['rps']:.0f} | {h['p50_ms']:.2f} | {h['p99_ms']:.2f} | {h['errors']} "
            f"| {b['tps']:.0f} | {h['rps'] / b['tps']:.2f} | {r['round_trips_measured']:.2f} |")
    lines += [
        "",
        "### Where the CPU goes (µs of CPU per request or transaction)",
        "",
        f"The machine has {os.cpu_count()} cores for everything: load generator, service and PostgreSQL.",
        "At saturation throughput is about cores ÷ total CPU per request, so the ratio above is",
        "bounded by what the service and wrk add on top of PostgreSQL's own work.",
        "",
        "| function | HTTP: service | HTTP: PostgreSQL | HTTP: wrk | HTTP total | pgbench: PostgreSQL | pgbench: pgbench | pgbench total |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        h, b = r["http"]["cpu_us"], r["pgbench"]["cpu_us"]
        lines.append(
            f"| {r['name']} | {h['service']:.0f} | {h['postgres']:.0f} | {h['wrk']:.0f} "
            f"| {sum(h.values()):.0f} | {b['postgres']:.0f} | {b['pgbench']:.0f} | {sum(b.values()):.0f} |")
    lines += [
        "",
        "Reading it: the service adds its own CPU (HTTP, JSON, the application-key lookup)",
        "and wrk's on top of PostgreSQL's work. Where PostgreSQL's share is large",
        "(create-session, append-messages) the ratio is near 1; for the cheapest",
        "statements (get-session, list-user-sessions) that addition bounds it on two cores.",
        "pgbench repeats one request's parameters, so for add-participant it re-adds one",
        "user (the update path) while wrk adds new users: compare that row with care.",
        "",
        "Round trips are `pg_stat_statements` calls by the service's role divided by the",
        "requests wrk completed; each call is one round trip (no pipelining). In the captured",
        "steady-state request, statements parsed again (cache misses): "
        + ", ".join(f"{r['name']} {r['parses']}" for r in results) + ".",
        "",
        "The statements of one request, as the server logged them:",
        "",
    ]
    for r in results:
        lines.append(f"- **{r['name']}**: " + "; ".join(
            "`" + re.sub(r"\s+", " ", sql).strip()[:90] + ("…`" if len(sql) > 90 else "`")
            for sql, _ in r["statements"]))
    lines += [
        "",
        "## Cold start",
        "",
        "From `exec` of a fresh process to the port accepting connections, and to the first",
        "201 of create-session (building the pool, the migration check under the advisory",
        "lock, authenticating, inserting). No TLS.",
        "",
        "| run | to listening (ms) | to first 201 (ms) |",
        "|---:|---:|---:|",
    ]
    for i, (listen, first) in enumerate(cold, 1):
        lines.append(f"| {i} | {listen:.1f} | {first:.1f} |")
    lines.append(f"| median | {statistics.median(c[0] for c in cold):.1f} | "
                 f"{statistics.median(c[1] for c in cold):.1f} |")
    lines += [
        "",
        "## Memory",
        "",
        f"- resident set size idle (after start and one health check): {idle_rss / 1024:.1f} MiB",
        f"- peak resident set size (VmHWM) after all load runs: {peak_rss / 1024:.1f} MiB",
        "",
        "## append-messages and the GIN index on `sessions.transcript`",
        "",
        "| index | req/s | p99 ms | HOT share of session updates |",
        "|---|---:|---:|---:|",
    ]
    for label in ("with", "without"):
        g = gin[label]
        lines.append(f"| {label} | {g['rps']:.0f} | {g['p99_ms']:.2f} | {g['hot_share']:.0%} |")
    lines += [
        "",
        f"## Scale: list-user-sessions for a user with {args.scale_user_sessions:,} sessions"
        f" among {args.scale_sessions:,}",
        "",
        f"Generated with SQL in {generated_s:.0f} s (10% of participations never active).",
        "",
        f"- {scale_http['rps']:.0f} req/s, p50 {scale_http['p50_ms']:.2f} ms,"
        f" p99 {scale_http['p99_ms']:.2f} ms (first page, 50 rows)",
        "",
    ]
    for label, plan in plans.items():
        lines += [f"Plan, {label}:", "", "```", plan, "```", ""]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    finally:
        for proc in RUNNING:
            if proc.poll() is None:
                proc.terminate()
