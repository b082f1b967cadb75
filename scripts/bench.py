#!/usr/bin/env python3
"""The benchmark: the release binary under HTTP load (wrk) against the very
same SQL run by pgbench, round trips of every function, cold start, memory,
transcripts growing to 100,000 messages, and a user with 10,000 sessions
among 1,000,000.

Run it through scripts/bench.sh, which builds the binary and starts a
PostgreSQL server (TLS on, pg_stat_statements, CSV logs); this file drives
everything else and writes docs/benchmarks.md. Standard library only.
"""

import argparse
import base64
import csv
import datetime
import glob
import hashlib
import hmac
import http.client
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BENCH_BINARY") or os.path.join(ROOT, "target", "release", "amplifier-sessions")
ADMIN_KEY = "bench-admin-key-0123456789abcdef0123456789"
SECRET_KEY = "bench-secret-key-0123456789abcdef0123456789"
APP_ROLE = "bench_app"
APP_PASSWORD = "bench_password"
DB = "bench"

def vocabulary(size=20_000, seed=3):
    """Words with Zipf's law frequencies (exponent 1), as in natural text: a
    1 KiB message repeats common words and brings some rare ones."""
    rng = random.Random(seed)
    words = sorted({"".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
                    for _ in range(size)})
    rng.shuffle(words)
    weights, total = [], 0.0
    for rank in range(1, len(words) + 1):
        total += 1 / rank
        weights.append(total)
    return words, weights


WORDS, WEIGHTS = vocabulary()

RUNNING = []  # service processes, stopped however the run ends


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def b64(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def token(user):
    """An HS256 user token, as `amplifier-sessions dev-token` makes them."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": user, "exp": int(time.time()) + 36000}).encode())
    signature = hmac.new(SECRET_KEY.encode(), f"{header}.{claims}".encode(), hashlib.sha256)
    return f"{header}.{claims}.{b64(signature.digest())}"


class Postgres:
    def __init__(self, port, log_dir, ca_file):
        self.port = port
        self.log_dir = log_dir
        self.ca_file = ca_file

    def psql(self, sql, db=DB, user="postgres"):
        env = dict(os.environ, PGPASSWORD="postgres" if user == "postgres" else APP_PASSWORD)
        out = subprocess.run(
            ["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", user, "-d", db, "-c", sql],
            env=env, check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def url(self, sslmode="disable"):
        return f"postgres://{APP_ROLE}:{APP_PASSWORD}@127.0.0.1:{self.port}/{DB}?sslmode={sslmode}"

    def log_rows(self):
        rows = []
        for path in sorted(glob.glob(os.path.join(self.log_dir, "*.csv"))):
            with open(path, newline="") as f:
                rows.extend(csv.reader(f))
        return rows

    def mark(self):
        marker = f"bench-marker-{uuid.uuid4().hex}"
        self.psql(f"SELECT '{marker}'")
        return marker

    def rows_since(self, marker):
        rows, seen = [], False
        for row in self.log_rows():
            if marker in row[13]:
                seen = True
            elif seen:
                rows.append(row)
        return rows

    def statements_since(self, marker):
        """The statements the service executed after `marker` was logged,
        with their parameters, from the CSV server log."""
        found = []
        for row in self.rows_since(marker):
            message, detail, app = row[13], row[14], row[22]
            if app != "amplifier-sessions":
                continue
            m = re.match(r"duration: [\d.]+ ms  (parse|bind|execute) [^:]*: (.*)", message, re.S)
            if m:
                found.append((m.group(1), m.group(2), parse_parameters(detail)))
        return found

    def set(self, name, value):
        self.psql(f"ALTER SYSTEM SET {name} = {value}")
        self.psql("SELECT pg_reload_conf()")
        time.sleep(0.2)

    def reset(self, name):
        self.psql(f"ALTER SYSTEM RESET {name}")
        self.psql("SELECT pg_reload_conf()")

    def calls_by_service(self):
        return int(self.psql(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
            f"WHERE r.rolname = '{APP_ROLE}'"))

    def wal_lsn(self):
        return self.psql("SELECT pg_current_wal_lsn()")

    def wal_bytes(self, since):
        return int(self.psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{since}')"))

    def wal_inserted_lsn(self):
        """Where WAL is being inserted: with synchronous_commit off the
        write position lags behind, too far for one small statement."""
        return self.psql("SELECT pg_current_wal_insert_lsn()")

    def wal_inserted_bytes(self, since):
        return int(self.psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '{since}')"))


def parse_parameters(detail):
    """`parameters: $1 = 'a', $2 = NULL` -> {1: 'a', 2: None}."""
    values = {}
    for m in re.finditer(r"\$(\d+) = (NULL|'((?:[^']|'')*)')", detail or ""):
        values[int(m.group(1))] = None if m.group(2) == "NULL" else m.group(3).replace("''", "'")
    return values


class Service:
    def __init__(self, pg, pool_size, port, sslmode="disable", extra=None, wrapper=()):
        self.port = port
        # A command the binary runs under (valgrind, for bench_limits.py).
        self.wrapper = list(wrapper)
        self.env = {
            "PATH": os.environ["PATH"],
            "ENVIRONMENT": "test",
            "DATABASE_URL": pg.url(sslmode),
            "DATABASE_POOL_MAX_SIZE": str(pool_size),
            "SECRET_KEY": SECRET_KEY,
            "ADMIN_API_KEY": ADMIN_KEY,
            "FUNCTIONS_CUSTOMHANDLER_PORT": str(port),
            "LOG_LEVEL": "warn",
            # Off unless a section measures them (bench_limits.py): the
            # load runs are thousands of requests a minute from one
            # application, over its limit by design.
            "RATE_LIMIT_REQUESTS_PER_MINUTE": "0",
            "RATE_LIMIT_WRITES_PER_MINUTE": "0",
            "RATE_LIMIT_APP_REQUESTS_PER_MINUTE": "0",
            "RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE": "0",
            **(extra or {}),
        }
        self.proc = None
        self.log_path = None

    def start(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            raise RuntimeError(f"port {self.port} is already in use")
        except OSError:
            pass
        cwd = tempfile.mkdtemp()  # no .env files from the repository
        self.log_path = os.path.join(cwd, "service.log")
        output = open(self.log_path, "w")
        started_wall, started = time.time(), time.perf_counter()
        self.proc = subprocess.Popen([*self.wrapper, BIN, "serve"], env=self.env, cwd=cwd,
                                     stdout=output, stderr=output)
        RUNNING.append(self.proc)
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return time.perf_counter() - started, started_wall
            except OSError:
                if time.perf_counter() - started > (120 if self.wrapper else 10):
                    raise RuntimeError("service did not listen")
                time.sleep(0.0002)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()

    def rss_kib(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(field)

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def request(self, method, path, headers=None, body=None, conn=None):
        own = conn is None
        conn = conn or self.connection()
        data = json.dumps(body) if body is not None else None
        hdrs = dict(headers or {})
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        response = conn.getresponse()
        raw = response.read()
        if own:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return response.status, parsed


WRK_SCRIPT = """
local requests = %(requests)s
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local function random_uuid()
  return string.format("%%08x-%%04x-4%%03x-8%%03x-%%06x%%06x", math.random(0, 0xffffffff),
    math.random(0, 0xffff), math.random(0, 0xfff), math.random(0, 0xfff),
    math.random(0, 0xffffff), math.random(0, 0xffffff))
end
request = function()
  local r = requests[math.random(#requests)]
  local headers = {["X-API-Key"] = "%(key)s", ["Authorization"] = "Bearer " .. r[3],
                   ["Content-Type"] = "application/json"}
  local body = r[4]
  if body then body = body:gsub("RANDOM_UUID", random_uuid) end
  return wrk.format(r[1], r[2], headers, body)
end
%(delay)s
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
               + summary.errors.write + summary.errors.timeout
  io.write(string.format('BENCH {"requests": %%d, "seconds": %%f, "p50_ms": %%f, "p99_ms": %%f, "errors": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, errors))
end
"""


def lua_string(s):
    return "nil" if s is None else json.dumps(s)


def wrk(service, fn, args, duration=None, think_ms=None):
    """One wrk run of `fn`'s requests; `think_ms`: each connection pauses
    this long between a response and its next request (wrk's `delay()`,
    not counted in the latency), for traffic below the machine's capacity
    rather than as much as it serves."""
    entries = ", ".join(
        "{" + ", ".join([lua_string(r["method"]), lua_string(r["path"]), lua_string(r["token"]),
                         lua_string(r["body"])]) + "}"
        for r in fn["requests"])
    delay = f"delay = function() return {int(think_ms)} end" if think_ms else ""
    script = WRK_SCRIPT % {"requests": "{" + entries + "}", "key": fn["key"], "delay": delay}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{args.connections}", f"-d{duration or args.duration}s", "--latency",
         "-s", f.name, f"http://127.0.0.1:{service.port}"],
        check=True, capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    result = json.loads(line[len("BENCH "):])
    result["rps"] = result["requests"] / result["seconds"]
    return result


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


def body_of(r):
    body = r["body"]
    return json.loads(body.replace("RANDOM_UUID", str(uuid.uuid4()))) if body else None


def capture(pg, service, fn):
    """Sends one steady-state request (the first of `fn`'s) and returns the
    statements it ran, after warming every pooled connection's cache."""
    first = fn["requests"][0]
    headers = {"X-API-Key": fn["key"], "Authorization": f"Bearer {first['token']}"}
    for r in fn["requests"][:40]:
        service.request(r["method"], r["path"], {"X-API-Key": fn["key"],
                                                 "Authorization": f"Bearer {r['token']}"}, body_of(r))
    pg.set("log_min_duration_statement", 0)
    marker = pg.mark()
    status, _ = service.request(first["method"], first["path"], headers, body_of(first))
    time.sleep(0.3)
    pg.reset("log_min_duration_statement")
    return status, pg.statements_since(marker)


def pgbench(pg, executes, variants, args):
    """The same statements, with the same parameters, straight to PostgreSQL.
    One script per variant (user/session pair); pgbench picks one at random
    per transaction. pgbench cannot pass NULL or an empty string, so those
    parameters become literals in its copy (which can only make pgbench's
    plan simpler)."""
    statements, defines = [], []
    for v, replace in enumerate(variants):
        lines = []
        for s, (sql, params) in enumerate(executes):
            def placeholder(m):
                n = int(m.group(1))
                return {None: "NULL", "": "''"}.get(params.get(n), f":v{v}s{s}p{n}")
            text = re.sub(r"\$(\d+)", placeholder, sql).strip().rstrip(";")
            lines.append(re.sub(r"\s+", " ", text) + ";")
            for n, value in params.items():
                if not value:
                    continue
                for old, new in replace.items():
                    value = value.replace(old, new)
                defines += ["-D", f"v{v}s{s}p{n}={value}"]
        statements.append(lines)
    # pgbench takes at most 128 scripts: each script picks one of its
    # variants with \if (pgbench picks scripts uniformly).
    groups = [statements[i::100] for i in range(min(100, len(statements)))]
    scripts = []
    for group in groups:
        lines = [f"\\set r random(0, {len(group) - 1})"]
        for k, variant in enumerate(group):
            lines.append(("\\if" if k == 0 else "\\elif") + f" :r = {k}")
            lines.extend(variant)
        lines.append("\\endif")
        path = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False).name
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        scripts += ["-f", f"{path}@1"]
    env = dict(os.environ, PGPASSWORD=APP_PASSWORD)
    run = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", f"-c{args.connections}", "-j2", f"-T{args.duration}",
         "-h", "127.0.0.1", "-p", str(pg.port), "-U", APP_ROLE, *scripts, *defines, DB],
        env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"pgbench failed: {run.stderr[-2000:]}")
    out = run.stdout
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return {"tps": tps, "failed": int(failed.group(1)) if failed else 0}


def log_time(row):
    """A CSV server log row's time, as seconds since the epoch."""
    return datetime.datetime.strptime(row[0].replace(" UTC", "+0000"), "%Y-%m-%d %H:%M:%S.%f%z").timestamp()


def cold_start(pg, args, fixtures, sslmode, extra=None):
    """exec -> listening -> pool built -> connection authorized -> first
    statement done -> first 201 of create-session, on a migrated database
    (MIGRATE_ON_START=false, as deployed)."""
    runs = []
    pg.set("log_connections", "on")
    pg.set("log_min_duration_statement", 0)
    for i in range(args.cold_runs):
        service = Service(pg, args.connections, args.port + 1 + i, sslmode,
                          {"MIGRATE_ON_START": "false", "LOG_LEVEL": "info", **(extra or {})})
        marker = pg.mark()
        listen, wall = service.start()
        started = time.perf_counter()
        status, _ = service.request("POST", "/api/sessions", fixtures["headers"],
                                    {"config_id": fixtures["config_id"]})
        first = time.perf_counter() - started + listen
        assert status == 201, status
        time.sleep(0.3)
        service.stop()
        pool = None
        for line in open(service.log_path):
            if "database pool ready" in line:
                pool = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp() - wall
        connected = statement = None
        for row in pg.rows_since(marker):
            if (row[22] == "amplifier-sessions" and statement is None
                    and re.match(r"duration: [\d.]+ ms  execute", row[13])):
                statement = log_time(row) - wall
            if connected is None and row[13].startswith("connection authorized") and row[1] == APP_ROLE:
                connected = log_time(row) - wall
        runs.append({"listen": listen * 1000, "pool": (pool or 0) * 1000,
                     "connected": (connected or 0) * 1000, "statement": (statement or 0) * 1000,
                     "first": first * 1000})
    pg.reset("log_connections")
    pg.reset("log_min_duration_statement")
    return runs


NO_TLS = "no TLS (sslmode=disable)"
SYSTEM_BUNDLE = "TLS (sslmode=require, system CA bundle)"
SHIPPED_ROOTS = "TLS (sslmode=require, the shipped Azure roots, as deployed)"


def ca_file_with(path, local_ca):
    """A copy of the CA file `path` with the local server's CA appended,
    standing in for Azure's chain."""
    out = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
    with out:
        out.write(open(path).read() if os.path.exists(path) else "")
        out.write(open(local_ca).read())
    return out.name


def as_deployed(local_ca):
    """Settings for TLS to PostgreSQL as deployed: verified against the
    package's Azure roots (SSL_CERT_FILE, infra/main.bicep)."""
    return {"SSL_CERT_FILE": ca_file_with(os.path.join(ROOT, "certs", "azure-postgres-roots.crt"),
                                          local_ca)}


def cold_starts(pg, args, fx):
    """The cold start without TLS, with TLS verified against the system's
    whole CA bundle, and as deployed: against the package's three Azure
    roots (SSL_CERT_FILE, infra/main.bicep). The local server's CA is
    appended to both files, standing in for Azure's chain."""
    log("cold start ...")
    fixtures = {"headers": fx.headers(fx.users[0]), "config_id": fx.config_id}

    return {
        NO_TLS: cold_start(pg, args, fixtures, "disable"),
        SYSTEM_BUNDLE: cold_start(pg, args, fixtures, "require", {
            "SSL_CERT_FILE": ca_file_with("/etc/ssl/certs/ca-certificates.crt", args.ca_file)}),
        SHIPPED_ROOTS: cold_start(pg, args, fixtures, "require", as_deployed(args.ca_file)),
    }


def first_201(runs):
    return statistics.median(r["first"] for r in runs)


def cold_target_rows(cold):
    def met(ok):
        return "met" if ok else "**not met**"

    plain, deployed = first_201(cold[NO_TLS]), first_201(cold[SHIPPED_ROOTS])
    return [
        f"| exec -> first 201, migrated, no TLS, <= 40 ms median | {plain:.1f} ms (before: {BEFORE_COLD_201_MS} ms)"
        f" | {met(plain <= 40)} |",
        f"| exec -> first 201, migrated, TLS as deployed, <= 25 ms median | {deployed:.1f} ms (with the"
        f" system bundle: {first_201(cold[SYSTEM_BUNDLE]):.1f} ms) | {met(deployed <= 25)} |",
    ]


def cold_section(cold):
    lines = [
        "## Cold start",
        "",
        "On a migrated database with `MIGRATE_ON_START=false` (as deployed): from `exec` of a",
        "fresh process to the port accepting connections, to the pool built (the service's log),",
        "to PostgreSQL logging the connection authorized and the first statement done (its",
        "CSV log, millisecond precision), to the first 201 of create-session.",
        "",
    ]
    for label, runs in cold.items():
        lines += [f"{label}:", "", "| run | listening | pool built | connected | first statement | first 201 |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for i, r in enumerate(runs, 1):
            lines.append(f"| {i} | {r['listen']:.1f} | {r['pool']:.1f} | {r['connected']:.1f} | "
                         f"{r['statement']:.1f} | {r['first']:.1f} |")
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        lines += [f"| median | {med['listen']:.1f} | {med['pool']:.1f} | {med['connected']:.1f} | "
                  f"{med['statement']:.1f} | {med['first']:.1f} |", ""]
    lines += [
        "With TLS the service reads the CA file `SSL_CERT_FILE` names to verify the server",
        "(OpenSSL); it starts doing so in the background as the process starts, so only the part",
        "the first request still has to wait for shows above. With the system's bundle (about 145",
        "certificates here) that is most of the cold start; the deployment names the package's",
        "three Azure roots instead (`certs/azure-postgres-roots.crt`; the local server's CA is",
        "appended to both files here, standing in for Azure's chain).",
        "",
    ]
    return lines


def replace_cold_section(path, cold):
    """Rewrites the cold-start section and its targets in an existing report."""
    text = open(path).read()
    start = text.index("## Cold start")
    end = text.index("\n## ", start) + 1
    text = text[:start] + "\n".join(cold_section(cold)) + "\n" + text[end:]
    lines = text.split("\n")
    rows = [i for i, line in enumerate(lines) if line.startswith("| exec -> first 201")]
    lines[rows[0]:rows[-1] + 1] = cold_target_rows(cold)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    log("\n".join(cold_target_rows(cold)))


def explain(pg, sql, params):
    """EXPLAIN ANALYZE of a captured statement with its parameters."""
    values = ", ".join("NULL" if params.get(n) is None else "'" + params[n].replace("'", "''") + "'"
                       for n in range(1, max(params, default=0) + 1))
    name = "q" + uuid.uuid4().hex[:8]
    return pg.psql(f"PREPARE {name} AS {sql}; EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE {name}({values})",
                   user=APP_ROLE)


def message(rng, n):
    """A ~1 KiB message of an agent conversation."""
    text = " ".join(rng.choices(WORDS, cum_weights=WEIGHTS, k=160))
    return {"role": "assistant", "content": text[:900], "tool_calls": [{"name": "search", "n": n}]}


def distinct_words(messages):
    return len({w.lower() for m in messages for w in re.split(r"[^0-9A-Za-z]+", m["content"]) if w})


class Fixture:
    """An application, a config, and USERS users each owning a few sessions."""

    def __init__(self, service, args):
        status, app = service.request("POST", "/api/applications", {"X-API-Key": ADMIN_KEY},
                                      {"app_id": "bench-app", "app_name": "bench"})
        assert status == 201, (status, app)
        self.key = app["api_key"]
        self.users = [str(uuid.uuid4()) for _ in range(args.users)]
        self.tokens = {u: token(u) for u in self.users}
        status, config = service.request("POST", "/api/configs", {"X-API-Key": self.key},
                                         {"name": "bench", "yaml_content": "model: bench\n"})
        self.config_id = config["config_id"]
        self.sessions = {}
        conn = service.connection()
        for user in self.users:
            mine = []
            for _ in range(args.sessions_per_user):
                status, s = service.request("POST", "/api/sessions", self.headers(user),
                                            {"config_id": self.config_id}, conn)
                assert status == 201, (status, s)
                mine.append(s["session_id"])
            self.sessions[user] = mine
        conn.close()

    def headers(self, user):
        return {"X-API-Key": self.key, "Authorization": f"Bearer {self.tokens[user]}"}


def throughput_functions(fx):
    """The functions measured under load, each as a list of requests (one
    per user) and the pgbench variants that map the captured request's user
    and session to each of the others."""
    def per_user(method, path, body=None):
        return [{"method": method, "path": path.format(session=fx.sessions[u][0]),
                 "token": fx.tokens[u], "body": body} for u in fx.users]

    u0, s0 = fx.users[0], fx.sessions[fx.users[0]][0]
    variants = [{u0: u, s0: fx.sessions[u][0]} for u in fx.users]
    small = json.dumps({"messages": [{"role": "user", "text": "hello " * 8}]})
    return [
        {"name": "create-session", "requests": per_user("POST", "/api/sessions",
                                                        json.dumps({"config_id": fx.config_id}))},
        {"name": "get-session", "requests": per_user("GET", "/api/sessions/{session}")},
        {"name": "list-user-sessions", "requests": per_user("GET", "/api/users/me/sessions")},
        {"name": "append-messages", "requests": per_user("POST", "/api/sessions/{session}/messages", small)},
        {"name": "add-participant", "requests": per_user(
            "POST", "/api/sessions/{session}/participants", '{"user_id": "RANDOM_UUID", "role": "viewer"}')},
    ], variants


def round_trips(pg, service, fx):
    """Statements executed per request, for every function with a database
    part: pg_stat_statements calls by the service's role over N requests of
    the function (each on its own fresh target where it destroys one),
    after warming the statement caches. One call is one round trip."""
    user, other = fx.users[0], fx.users[1]
    session = fx.sessions[user][0]
    h = fx.headers(user)
    admin = {"X-API-Key": ADMIN_KEY}
    app_key = {"X-API-Key": fx.key}
    n = 20

    def fresh_session():
        status, s = service.request("POST", "/api/sessions", h, {"config_id": fx.config_id})
        return s["session_id"]

    def fresh_config():
        status, c = service.request("POST", "/api/configs", app_key, {"name": "c", "yaml_content": "a: 1"})
        return c["config_id"]

    def fresh_app():
        app_id = f"rt-{uuid.uuid4().hex[:12]}"
        service.request("POST", "/api/applications", admin, {"app_id": app_id, "app_name": "rt"})
        return app_id

    def with_participant():
        s = fresh_session()
        target = str(uuid.uuid4())
        service.request("POST", f"/api/sessions/{s}/participants", h, {"user_id": target, "role": "viewer"})
        return s, target

    # name -> (setup returning a target or None, request(target) -> (method, path, headers, body))
    cases = {
        "health": (None, lambda t: ("GET", "/api/health", {}, None)),
        "create-application": (None, lambda t: ("POST", "/api/applications", admin,
                                                {"app_id": f"rt-{uuid.uuid4().hex[:12]}", "app_name": "rt"})),
        "list-applications": (None, lambda t: ("GET", "/api/applications", admin, None)),
        "get-application": (None, lambda t: ("GET", "/api/applications/bench-app", admin, None)),
        "update-application": (None, lambda t: ("PATCH", "/api/applications/bench-app", admin,
                                                {"settings": {"n": 1}})),
        "rotate-application-key": (fresh_app, lambda t: ("POST", f"/api/applications/{t}/rotate-key", admin, None)),
        "delete-application": (fresh_app, lambda t: ("DELETE", f"/api/applications/{t}", admin, None)),
        "create-config": (None, lambda t: ("POST", "/api/configs", app_key, {"name": "c", "yaml_content": "a: 1"})),
        "list-configs": (None, lambda t: ("GET", "/api/configs", app_key, None)),
        "get-config": (None, lambda t: ("GET", f"/api/configs/{fx.config_id}", app_key, None)),
        "update-config": (fresh_config, lambda t: ("PATCH", f"/api/configs/{t}", app_key, {"name": "d"})),
        "delete-config": (fresh_config, lambda t: ("DELETE", f"/api/configs/{t}", app_key, None)),
        "create-session": (None, lambda t: ("POST", "/api/sessions", h, {"config_id": fx.config_id})),
        "get-session": (None, lambda t: ("GET", f"/api/sessions/{session}", h, None)),
        "update-session": (None, lambda t: ("PATCH", f"/api/sessions/{session}", h, {"status": "active"})),
        "delete-session": (fresh_session, lambda t: ("DELETE", f"/api/sessions/{t}", h, None)),
        "append-messages": (None, lambda t: ("POST", f"/api/sessions/{session}/messages", h,
                                             {"messages": [{"text": "hi"}]})),
        "list-messages": (None, lambda t: ("GET", f"/api/sessions/{session}/messages?limit=10", h, None)),
        "export-session": (fresh_session, lambda t: ("GET", f"/api/sessions/{t}/export", h, None)),
        "fork-session": (None, lambda t: ("POST", f"/api/sessions/{session}/fork", h, {"up_to_seq": 1})),
        "add-participant": (None, lambda t: ("POST", f"/api/sessions/{session}/participants", h,
                                             {"user_id": str(uuid.uuid4()), "role": "viewer"})),
        "list-participants": (None, lambda t: ("GET", f"/api/sessions/{session}/participants", h, None)),
        "update-participant": (with_participant, lambda t: ("PATCH", f"/api/sessions/{t[0]}/participants/{t[1]}",
                                                            h, {"role": "editor"})),
        "remove-participant": (with_participant, lambda t: ("DELETE", f"/api/sessions/{t[0]}/participants/{t[1]}",
                                                            h, None)),
        "list-user-sessions": (None, lambda t: ("GET", "/api/users/me/sessions", h, None)),
    }
    results = {}
    conn = service.connection()
    for name, (setup, make) in cases.items():
        for _ in range(2):  # warm-up rounds: every pooled connection prepares its statements
            targets = [setup() if setup else None for _ in range(n)]
            pg.psql("SELECT pg_stat_statements_reset()")
            statuses = set()
            for t in targets:
                method, path, headers, body = make(t)
                status, _ = service.request(method, path, headers, body, conn)
                statuses.add(status)
            calls = pg.calls_by_service()
        assert all(s < 400 for s in statuses), (name, statuses)
        results[name] = calls / n
    conn.close()
    return results


def transcript_growth(pg, service, fx, args):
    """One session grows by appends of 100 messages of ~1 KiB each, through
    the API, to `args.growth_messages` and beyond; at each measured size a
    window of appends gives latency and WAL per append, then get-session
    and list-messages are timed."""
    rng = random.Random(7)
    user = fx.users[2]
    h = fx.headers(user)
    status, s = service.request("POST", "/api/sessions", h, {"config_id": fx.config_id})
    session = s["session_id"]
    conn = service.connection()
    count, rows = 0, []
    window = args.growth_window
    sizes = [100, 10_000, args.growth_messages]
    for size in sizes:
        while count < size:
            service.request("POST", f"/api/sessions/{session}/messages", h,
                            {"messages": [message(rng, count + i) for i in range(100)]}, conn)
            count += 100
        lsn = pg.wal_lsn()
        latencies = []
        for _ in range(window):
            body = {"messages": [message(rng, count + i) for i in range(100)]}
            started = time.perf_counter()
            status, _ = service.request("POST", f"/api/sessions/{session}/messages", h, body, conn)
            latencies.append((time.perf_counter() - started) * 1000)
            assert status == 200, status
            count += 100
        wal = pg.wal_bytes(lsn) / window
        reads = {}
        for name, path in [("get-session", f"/api/sessions/{session}"),
                           ("list-messages", f"/api/sessions/{session}/messages?after_seq={count // 2}&limit=100")]:
            times = []
            for _ in range(30):
                started = time.perf_counter()
                status, _ = service.request("GET", path, h, None, conn)
                times.append((time.perf_counter() - started) * 1000)
                assert status == 200, status
            reads[name] = statistics.median(times)
        rows.append({"size": size, "p50": statistics.median(latencies), "p99": percentile(latencies, 99),
                     "wal_kib": wal / 1024, **reads})
        log(f"  at {size}: append p50 {rows[-1]['p50']:.1f} ms, WAL {wal / 1024:.0f} KiB")
    conn.close()
    # Export of the whole transcript: time, bytes and the service's peak memory.
    before = service.rss_kib()
    started = time.perf_counter()
    conn = service.connection()
    conn.request("GET", f"/api/sessions/{session}/export", headers=h)
    response = conn.getresponse()
    exported, peak = 0, before
    while True:
        chunk = response.read(1 << 20)
        if not chunk:
            break
        exported += len(chunk)
        peak = max(peak, service.rss_kib())
    conn.close()
    export = {"messages": count, "mib": exported / 2**20, "seconds": time.perf_counter() - started,
              "rss_before_mib": before / 1024, "rss_peak_mib": peak / 1024}
    return rows, export


def fork_cost(pg, service, fx, args):
    """fork-session of a session of `args.fork_messages` messages of ~1 KiB
    (appended through the API): latency and WAL of whole-transcript forks
    one at a time, of a fork cutting through an append, and of
    `args.fork_concurrent` forks at once (with the latency of another
    user's get-session meanwhile); then list-messages on a fork."""
    rng = random.Random(13)
    user = fx.users[-1]
    h = fx.headers(user)
    status, s = service.request("POST", "/api/sessions", h, {"config_id": fx.config_id})
    session = s["session_id"]
    conn = service.connection()
    for count in range(0, args.fork_messages, 100):
        status, _ = service.request("POST", f"/api/sessions/{session}/messages", h,
                                    {"messages": [message(rng, count + i) for i in range(100)]}, conn)
        assert status == 200, status
    status, source = service.request("GET", f"/api/sessions/{session}", h, None, conn)
    settle(pg)
    path = f"/api/sessions/{session}/fork"

    def fork(body, connection):
        lsn = pg.wal_inserted_lsn()
        started = time.perf_counter()
        status, made = service.request("POST", path, h, body, connection)
        ms = (time.perf_counter() - started) * 1000
        assert status == 201, (status, made)
        return ms, pg.wal_inserted_bytes(lsn), made["session_id"]

    whole = [fork({}, conn) for _ in range(args.fork_runs)]
    cut = fork({"up_to_seq": args.fork_messages - 50}, conn)
    log(f"  whole: {[round(ms, 1) for ms, _, _ in whole]} ms, WAL {[w for _, w, _ in whole]} bytes;"
        f" cut through an append: {cut[0]:.1f} ms, WAL {cut[1]} bytes")
    concurrent = None
    if args.fork_concurrent:
        import threading
        other = fx.users[0]
        get_path = f"/api/sessions/{fx.sessions[other][0]}"
        results, gets, stop = [], [], threading.Event()

        def timed(record, method, p, headers, body):
            started = time.perf_counter()
            try:
                status, _ = service.request(method, p, headers, body)
            except OSError:  # no answer within the client's timeout
                status = "timeout"
            record.append(((time.perf_counter() - started) * 1000, status))

        def forker():
            timed(results, "POST", path, h, {})

        def getter():
            while not stop.is_set():
                timed(gets, "GET", get_path, fx.headers(other), None)

        lsn = pg.wal_inserted_lsn()
        started = time.perf_counter()
        watcher = threading.Thread(target=getter)
        watcher.start()
        threads = [threading.Thread(target=forker) for _ in range(args.fork_concurrent)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        watcher.join()
        concurrent = {"n": args.fork_concurrent, "seconds": time.perf_counter() - started,
                      "wal_mib": pg.wal_inserted_bytes(lsn) / 2**20,
                      "statuses": sorted({str(st) for _, st in results}),
                      "slowest_ms": max(ms for ms, _ in results),
                      "get_p50_ms": statistics.median(ms for ms, _ in gets),
                      "get_max_ms": max(ms for ms, _ in gets),
                      "get_statuses": sorted({str(st) for _, st in gets})}
    fork_id = whole[0][2]
    reads = []
    for _ in range(30):
        started = time.perf_counter()
        status, _ = service.request(
            "GET", f"/api/sessions/{fork_id}/messages?after_seq={args.fork_messages // 2}&limit=100",
            h, None, conn)
        reads.append((time.perf_counter() - started) * 1000)
        assert status == 200, status
    conn.close()
    times = [ms for ms, _, _ in whole]
    return {"messages": args.fork_messages, "mib": source["transcript_bytes"] / 2**20,
            "runs": len(whole), "p50_ms": statistics.median(times), "max_ms": max(times),
            "wal_kib": statistics.median(w for _, w, _ in whole) / 1024,
            "cut_ms": cut[0], "cut_wal_kib": cut[1] / 1024, "concurrent": concurrent,
            "list_messages_ms": statistics.median(reads)}


def settle(pg):
    """Before each measured run: the background work the previous run left
    (autovacuum, GIN pending lists, dirty buffers) is done now, not billed
    to whichever run comes next."""
    pg.psql("VACUUM (ANALYZE)")
    pg.psql("CHECKPOINT")


def search_index_effect(pg, service, fx, args):
    """append-messages of 100 messages of ~1 KiB under load, with and without
    the transcript search index."""
    rng = random.Random(11)
    batches = [[message(rng, i) for i in range(100)] for _ in range(8)]
    bodies = [json.dumps({"messages": batch}) for batch in batches]
    requests = [{"method": "POST", "path": f"/api/sessions/{fx.sessions[u][1]}/messages",
                 "token": fx.tokens[u], "body": random.choice(bodies)} for u in fx.users]
    fn = {"key": fx.key, "requests": requests}
    index = pg.psql("SELECT pg_get_indexdef('idx_session_search'::regclass)")
    settle(pg)
    with_index = wrk(service, fn, args)
    pg.psql("DROP INDEX idx_session_search")
    settle(pg)
    without = wrk(service, fn, args)
    pg.psql(index)
    words = statistics.mean(distinct_words(batch) for batch in batches)
    return {"with": with_index, "without": without, "words_per_append": words,
            "insert_cost": gin_insert_cost(pg, index, [fx.sessions[u][1] for u in fx.users])}


def gin_insert_cost(pg, index, sessions, docs=300):
    """What one document costs to insert, without load: the run's own
    documents (its appends to `sessions`) inserted one statement each into
    a scratch table without an index, with the index as deployed, and with
    `fastupdate` off (every entry straight into the tree instead of through
    the pending list)."""
    ids = ",".join(f"'{s}'" for s in sessions)
    pg.psql(f"""CREATE TABLE gin_docs AS SELECT session_id, first_seq, last_seq, words
                FROM session_search WHERE session_id IN ({ids}) AND first_seq > 0
                ORDER BY random() LIMIT {docs}""")
    entries = float(pg.psql("SELECT avg(length(words)) FROM gin_docs"))
    on_scratch = index.replace("idx_session_search", "gin_scratch_idx").replace(
        "public.session_search", "gin_scratch").replace(" session_search ", " gin_scratch ")
    variants = {"no index": "", "GIN as deployed": on_scratch,
                "GIN with fastupdate off": on_scratch + " WITH (fastupdate = off)"}
    costs = {}
    for label, create_index in variants.items():
        ms = pg.psql(f"""
            CREATE TABLE gin_scratch (LIKE gin_docs);
            {create_index + ';' if create_index else ''}
            CREATE FUNCTION pg_temp.load() RETURNS float8 LANGUAGE plpgsql AS $$
            DECLARE d record; t0 timestamptz := clock_timestamp();
            BEGIN
                FOR d IN SELECT * FROM gin_docs LOOP
                    INSERT INTO gin_scratch VALUES (d.session_id, d.first_seq, d.last_seq, d.words);
                END LOOP;
                RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
            END $$;
            SELECT pg_temp.load();""")
        pg.psql("DROP TABLE gin_scratch")
        costs[label] = float(ms.splitlines()[-1]) / docs
    pg.psql("DROP TABLE gin_docs")
    return {"entries": entries, "ms_per_doc": costs}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--port", type=int, default=7300)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--sessions-per-user", type=int, default=5)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--growth-messages", type=int, default=100_000)
    parser.add_argument("--growth-window", type=int, default=20)
    parser.add_argument("--scale-sessions", type=int, default=1_000_000)
    parser.add_argument("--scale-user-sessions", type=int, default=10_000)
    parser.add_argument("--fork-messages", type=int, default=200_000)
    parser.add_argument("--fork-runs", type=int, default=20)
    parser.add_argument("--fork-concurrent", type=int, default=10)
    parser.add_argument("--only", choices=["fork", "cold"],
                        help="run only this section (with the fixtures it needs) and print its numbers")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()

    pg = Postgres(args.pg_port, args.log_dir, args.ca_file)
    pg.psql(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'", db="postgres")
    pg.psql(f"CREATE DATABASE {DB} OWNER {APP_ROLE}", db="postgres")
    pg.psql("CREATE EXTENSION pg_stat_statements")
    pg.psql(f"GRANT pg_read_all_stats TO {APP_ROLE}", db="postgres")

    log("fixtures ...")
    # One application, as a deployment serving one would be configured: the
    # whole pool, no shares (bench_shares.py measures them).
    whole_pool = {"DATABASE_POOL_APP_SHARE": "1"}
    service = Service(pg, args.connections, args.port, extra=whole_pool)
    service.start()
    fx = Fixture(service, args)
    if args.only == "fork":
        log(f"fork-session of a {args.fork_messages}-message session ...")
        print(json.dumps(fork_cost(pg, service, fx, args), indent=2))
        service.stop()
        return
    service.stop()

    cold = cold_starts(pg, args, fx)
    if args.only == "cold":
        replace_cold_section(args.out, cold)
        return

    service = Service(pg, args.connections, args.port, extra=whole_pool)
    service.start()
    service.request("GET", "/api/health")
    time.sleep(0.5)
    idle_rss = service.rss_kib()

    functions, variants = throughput_functions(fx)
    results = []
    for fn in functions:
        fn["key"] = fx.key
        log(f"{fn['name']} ...")
        status, statements = capture(pg, service, fn)
        executes = [(sql, params) for kind, sql, params in statements if kind == "execute"]
        settle(pg)
        pg.psql("SELECT pg_stat_statements_reset()")
        with CpuMeter(service.proc.pid) as http_cpu:
            http_result = wrk(service, fn, args)
        calls = pg.calls_by_service()
        settle(pg)
        with CpuMeter() as bench_cpu:
            bench = pgbench(pg, executes, variants, args)
        n, t = max(http_result["requests"], 1), max(bench["tps"] * args.duration, 1)
        http_result["cpu_us"] = {"service": http_cpu.svc / n * 1e6, "postgres": http_cpu.pg / n * 1e6,
                                 "wrk": http_cpu.tool / n * 1e6}
        bench["cpu_us"] = {"postgres": bench_cpu.pg / t * 1e6, "pgbench": bench_cpu.tool / t * 1e6}
        results.append({"name": fn["name"], "status": status, "http": http_result, "pgbench": bench,
                        "round_trips": calls / n, "statements": executes})

    log("round trips of every function ...")
    trips = round_trips(pg, service, fx)
    log("search index and append throughput ...")
    search = search_index_effect(pg, service, fx, args)
    log(f"transcript growth to {args.growth_messages} messages ...")
    growth, export = transcript_growth(pg, service, fx, args)
    peak_rss = service.rss_kib("VmHWM")
    log(f"fork-session of a {args.fork_messages}-message session ...")
    forks = fork_cost(pg, service, fx, args)

    log(f"scale: generating {args.scale_sessions} sessions ...")
    heavy = str(uuid.uuid4())
    fx.tokens[heavy] = token(heavy)
    started = time.perf_counter()
    pg.psql(f"""
        INSERT INTO sessions (config_id, owner_user_id, created_by_app_id)
        SELECT '{fx.config_id}', CASE WHEN g <= {args.scale_user_sessions} THEN '{heavy}'::uuid
                                      ELSE gen_random_uuid() END, 'bench-app'
        FROM generate_series(1, {args.scale_sessions}) g;
        INSERT INTO session_participants (session_id, user_id, role, last_active_at)
        SELECT s.session_id, s.owner_user_id, 'owner',
               CASE WHEN random() < 0.1 THEN NULL ELSE now() - random() * interval '90 days' END
        FROM sessions s WHERE NOT EXISTS (SELECT 1 FROM session_participants p WHERE p.session_id = s.session_id);
        INSERT INTO session_lineage (session_id, origin_id, from_seq, through_seq)
        SELECT session_id, session_id, 1, 2147483647 FROM sessions
        ON CONFLICT DO NOTHING;
        ANALYZE;""")
    generated_s = time.perf_counter() - started
    scale_fn = {"name": "list-user-sessions (10k of 1M)", "key": fx.key,
                "requests": [{"method": "GET", "path": "/api/users/me/sessions", "token": fx.tokens[heavy],
                              "body": None}]}
    status, statements = capture(pg, service, scale_fn)
    first_page = [(sql, p) for kind, sql, p in statements if kind == "execute"][-1]
    scale_http = wrk(service, scale_fn, args)
    row = pg.psql(f"""
        SELECT coalesce(to_char(last_active_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), ''),
               session_id FROM session_participants WHERE user_id = '{heavy}'
        ORDER BY coalesce(last_active_at, '-infinity') DESC, session_id OFFSET 8999 LIMIT 1""").split("|")
    cursor = base64.urlsafe_b64encode(json.dumps(
        {"last_active_at": row[0] or None, "session_id": row[1]}).encode()).decode().rstrip("=")
    deep_fn = dict(scale_fn, requests=[dict(scale_fn["requests"][0], path=f"/api/users/me/sessions?cursor={cursor}")])
    status, statements = capture(pg, service, deep_fn)
    assert status == 200, status
    deep_page = [(sql, p) for kind, sql, p in statements if kind == "execute"][-1]
    search_fn = dict(scale_fn, requests=[dict(scale_fn["requests"][0], path="/api/users/me/sessions?q=zanzibar")])
    status, statements = capture(pg, service, search_fn)
    search_page = [(sql, p) for kind, sql, p in statements if kind == "execute"][-1]
    plans = {"first page": explain(pg, *first_page), "page after row 9,000": explain(pg, *deep_page),
             "first page with q=zanzibar (no session matches: every one of the 10,000 is probed)":
                 explain(pg, *search_page)}
    service.stop()

    write_report(args, results, trips, cold, idle_rss, peak_rss, growth, export, search,
                 forks, scale_http, plans, generated_s)
    log(f"wrote {args.out}")


# The transcript design before migration V10 (one JSONB array per session,
# rewritten by each append), measured with the same method (the release
# binary of the previous commit, appends of 100 messages of ~1 KiB).
BEFORE_GROWTH = [
    {"size": 100, "p50": 7.8, "wal_kib": 16, "get": 2.2},
    {"size": 10_000, "p50": 103.2, "wal_kib": 200, "get": 128.1},
    {"size": 40_000, "p50": 375.9, "wal_kib": 744, "get": 495.2},
]
BEFORE_COLD_201_MS = 95.6
# fork-session of a 200,000-message session when forks copied the
# transcript (migration V10), measured with `--only fork` and the release
# binary of the commit before migration V11; see fork_cost.
BEFORE_FORK = {
    "p50_ms": 14987, "max_ms": 18259, "wal_mib": 1201, "cut_ms": 22637, "cut_wal_mib": 1399,
    "list_messages_ms": 3.09,
    # The client gave up on each fork after 120 s; the WAL is what was
    # written until then.
    "concurrent": {"seconds": 120, "wal_mib": 5330, "statuses": ["201", "503", "timeout"],
                   "get_p50_ms": 1.9, "get_max_ms": 5013, "get_statuses": ["200", "503"]},
}
BEFORE_ROUND_TRIPS = 2


def fork_report(forks):
    """The fork-session section of docs/benchmarks.md."""
    c = forks["concurrent"]
    before_c = BEFORE_FORK["concurrent"]
    return [
        "",
        f"## fork-session of a {forks['messages']:,}-message session",
        "",
        f"One session of {forks['messages']:,} messages of ~1 KiB ({forks['mib']:.0f} MiB, appended through",
        f"the API as above), forked whole {forks['runs']} times one after another (time of the request,",
        "WAL between `pg_current_wal_insert_lsn()` before and after it), once cutting through its last append,",
        f"then {c['n']} times at once while another user reads a session (get-session in a loop);",
        "then list-messages (100 from the middle) on a fork. Before: the release binary of the",
        "commit before forks shared messages (each fork copied the transcript), same method. The",
        "server runs with `full_page_writes` off (`local-pg.sh --fast`), as for every number here:",
        "with it on, copies write more WAL still.",
        "",
        "| | p50 ms | max ms | WAL per fork | cut through an append: ms, WAL |",
        "|---|---:|---:|---:|---:|",
        f"| shared (now) | {forks['p50_ms']:.1f} | {forks['max_ms']:.1f} | {forks['wal_kib']:.0f} KiB"
        f" | {forks['cut_ms']:.1f}, {forks['cut_wal_kib']:.0f} KiB |",
        f"| copied (before) | {BEFORE_FORK['p50_ms']:.0f} | {BEFORE_FORK['max_ms']:.0f}"
        f" | {BEFORE_FORK['wal_mib']:.0f} MiB | {BEFORE_FORK['cut_ms']:.0f}, {BEFORE_FORK['cut_wal_mib']:.0f} MiB |",
        "",
        f"| {c['n']} forks at once | all done in | WAL | fork statuses | get-session p50 / max ms | get-session statuses |",
        "|---|---:|---:|---|---:|---|",
        f"| shared (now) | {c['seconds']:.2f} s | {c['wal_mib'] * 1024:.0f} KiB | {', '.join(c['statuses'])}"
        f" | {c['get_p50_ms']:.1f} / {c['get_max_ms']:.1f} | {', '.join(c['get_statuses'])} |",
        f"| copied (before) | not within {before_c['seconds']:.0f} s | {before_c['wal_mib']:.0f} MiB"
        f" | {', '.join(before_c['statuses'])} | {before_c['get_p50_ms']:.1f} / {before_c['get_max_ms']:.0f}"
        f" | {', '.join(before_c['get_statuses'])} |",
        "",
        f"list-messages on a fork (100 messages from the middle, read from its source's rows):"
        f" {forks['list_messages_ms']:.2f} ms (before, from its copies: {BEFORE_FORK['list_messages_ms']:.2f} ms).",
    ]


def write_report(args, results, trips, cold, idle_rss, peak_rss, growth, export, search,
                 forks, scale_http, plans, generated_s):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    pg_version = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    at = {r["size"]: r for r in growth}
    growth_ratio = at[args.growth_messages]["p50"] / at[100]["p50"]
    search_ratio = search["with"]["rps"] / search["without"]["rps"]
    ratio = {r["name"]: r["http"]["rps"] / r["pgbench"]["tps"] for r in results}
    over_one = [name for name, n in trips.items() if n > 1.01 and name != "export-session"]

    def met(ok):
        return "met" if ok else "**not met**"

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
        f"- load: wrk, 2 threads, {args.connections} connections, {args.duration} s per function,"
        f" {args.users} distinct users (each request picks one); service pool size {args.connections}",
        f"- the limit: pgbench `-M prepared`, {args.connections} clients, {args.duration} s, running the very"
        " statements (text and parameters) the service ran for one request, read from the server log,"
        f" in {args.users} variants (each user's own ids)",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| every function one round trip (steady state) | {', '.join(over_one) or 'all one'}"
        f" (before: {BEFORE_ROUND_TRIPS} for every application function) | {met(not over_one)} |",
        *cold_target_rows(cold),
    ]
    for name in ["create-session", "get-session", "list-user-sessions", "append-messages"]:
        lines.append(f"| {name} >= 0.8 x pgbench | {ratio[name]:.2f} | {met(ratio[name] >= 0.8)} |")
    lines += [
        f"| idle RSS < 20 MiB | {idle_rss / 1024:.1f} MiB | {met(idle_rss / 1024 < 20)} |",
        f"| append at {args.growth_messages:,} messages within 1.5 x of at 100 | {growth_ratio:.2f} x"
        f" | {met(growth_ratio <= 1.5)} |",
        f"| WAL per append flat | {at[100]['wal_kib']:.0f} / {at[10_000]['wal_kib']:.0f} /"
        f" {at[args.growth_messages]['wal_kib']:.0f} KiB | see below |",
        f"| get-session flat | {at[100]['get-session']:.2f} / {at[10_000]['get-session']:.2f} /"
        f" {at[args.growth_messages]['get-session']:.2f} ms | see below |",
        f"| appends with the search index >= 0.8 x without | {search_ratio:.2f} | {met(search_ratio >= 0.8)} |",
        f"| fork-session of a {forks['messages']:,}-message session p50 <= 20 ms, WAL bounded |"
        f" {forks['p50_ms']:.1f} ms, {forks['wal_kib']:.0f} KiB (before: {BEFORE_FORK['p50_ms'] / 1000:.1f} s,"
        f" {BEFORE_FORK['wal_mib']:.0f} MiB) | {met(forks['p50_ms'] <= 20)} |",
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
            f"| {b['tps']:.0f} | {h['rps'] / b['tps']:.2f} | {r['round_trips']:.2f} |")
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
        "Reading it: the service's own CPU (HTTP, JSON, token verification, the key's hash)",
        "and wrk's come on top of PostgreSQL's work on the same two cores. Where PostgreSQL's",
        "share is large the ratio is near 1; for the cheapest statements that addition is what",
        "bounds it. pgbench repeats each variant's parameters, so for add-participant it re-adds",
        "one user per variant (the conflict path) while wrk adds new users: compare that row with care.",
        "",
        "The statements of one request, as the server logged them:",
        "",
    ]
    for r in results:
        lines.append(f"- **{r['name']}**: " + "; ".join(
            "`" + re.sub(r"\s+", " ", sql).strip()[:100] + ("…`" if len(sql) > 100 else "`")
            for sql, _ in r["statements"]))
    lines += [
        "",
        "## Round trips of every function",
        "",
        "Statements executed per request (`pg_stat_statements` calls by the service's role,",
        "over 20 requests of each function after warm-up; each call is one round trip, there",
        "is no pipelining). The application key is checked inside each function's statement.",
        "Admin functions compare the admin key in the service. export-session reads the",
        "session, then the transcript 500 messages per statement as the client takes them",
        "(here: sessions without messages). A function above one is a regression:",
        "",
        "| function | round trips |",
        "|---|---:|",
    ]
    for name, n in trips.items():
        flag = " **REGRESSION**" if n > 1.01 and name != "export-session" else ""
        lines.append(f"| {name} | {n:.2f}{flag} |")
    lines += [
        "",
    ]
    lines += cold_section(cold)
    lines += [
        "## Memory",
        "",
        f"- resident set size idle (after start and one health check): {idle_rss / 1024:.1f} MiB",
        f"- peak resident set size (VmHWM) after all load runs and the export: {peak_rss / 1024:.1f} MiB",
        f"- export-session of {export['messages']:,} messages ({export['mib']:.0f} MiB of NDJSON in"
        f" {export['seconds']:.1f} s): RSS {export['rss_before_mib']:.1f} MiB before, at most"
        f" {export['rss_peak_mib']:.1f} MiB while streaming",
        "",
        f"## Transcripts growing to {args.growth_messages:,} messages",
        "",
        f"One session grows through the API by appends of 100 messages of ~1 KiB. At each size a",
        f"window of {args.growth_window} appends is timed (p50 and p99 of their latency) and the",
        "WAL they wrote is divided among them; then get-session and a page of list-messages",
        "(100 messages from the middle) are timed (median of 30).",
        "",
        "| messages | append p50 ms | append p99 ms | WAL per append KiB | get-session ms | list-messages ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in growth:
        lines.append(f"| {r['size']:,} | {r['p50']:.1f} | {r['p99']:.1f} | {r['wal_kib']:.0f} | "
                     f"{r['get-session']:.2f} | {r['list-messages']:.2f} |")
    lines += [
        "",
        "Before (migration V10: the whole transcript one JSONB value, rewritten by each append;",
        "same method, the previous release):",
        "",
        "| messages | append p50 ms | WAL per append KiB | get-session ms |",
        "|---:|---:|---:|---:|",
    ]
    for r in BEFORE_GROWTH:
        lines.append(f"| {r['size']:,} | {r['p50']:.1f} | {r['wal_kib']} | {r['get']:.1f} |")
    lines += fork_report(forks)
    lines += [
        "",
        "## The transcript search index and appends",
        "",
        f"append-messages of 100 messages of ~1 KiB under load ({args.duration} s each), with and without",
        "`idx_session_search` (GIN over session id and words; the service still takes the words and",
        "stores the document either way). The messages' words follow Zipf's law over a 20,000-word",
        f"vocabulary: {search['words_per_append']:.0f} distinct words per append of 100 messages on",
        "average, each one GIN entry. Before this design, PostgreSQL's own parser indexed every message",
        "(an expression index over `jsonb_to_tsvector`): with it appends ran at 0.29 of the rate",
        "without (96 against 326 req/s, same machine, a 24-word vocabulary).",
        "",
        "| index | req/s | messages/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for label in ("with", "without"):
        r = search[label]
        lines.append(f"| {label} | {r['rps']:.0f} | {r['rps'] * 100:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    cost = search["insert_cost"]
    base = cost["ms_per_doc"]["no index"]
    without_cpu_ms = os.cpu_count() * 1000 / search["without"]["rps"]
    lines += [
        "",
        "What bounds it: each append's document is one GIN entry per distinct word. Inserting the",
        f"run's documents ({cost['entries']:.0f} entries each on average) one statement each, without load:",
        "",
        "| table | ms per document | µs per entry over no index |",
        "|---|---:|---:|",
    ]
    for label, ms in cost["ms_per_doc"].items():
        lines.append(f"| {label} | {ms:.2f} | {(ms - base) * 1000 / cost['entries']:.2f} |")
    added = cost["ms_per_doc"]["GIN as deployed"] - base
    lines += [
        "",
        f"Without the index an append costs about {without_cpu_ms:.1f} ms of the machine's CPU",
        f"({os.cpu_count()} cores ÷ {search['without']['rps']:.0f} req/s); the index adds {added:.1f} ms",
        f"of its own work, a bound of {without_cpu_ms / (without_cpu_ms + added):.2f} before the",
        "pending list's flushes (the p99) and the WAL they write. Turning `fastupdate` off costs",
        "more, not less. Fewer entries per append is the way further down (e.g. only words new to the",
        "session), at the price of a lookup of the session's words in the same statement.",
    ]
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


def own_database(pg, name):
    """A fresh database `name` owned by the service's role, for a section
    that must not share (or disturb) another's data."""
    pg.psql(f"DO $$ BEGIN CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$", db="postgres")
    pg.psql(f"DROP DATABASE IF EXISTS {name}", db="postgres")
    pg.psql(f"CREATE DATABASE {name} OWNER {APP_ROLE}", db="postgres")


def service_on(pg, name, port, extra=None, pool=8, sslmode="disable", wrapper=()):
    """A started service on database `name` (see own_database)."""
    s = Service(pg, pool, port, sslmode=sslmode, extra=extra, wrapper=wrapper)
    s.env["DATABASE_URL"] = s.env["DATABASE_URL"].replace(f"/{DB}?", f"/{name}?")
    s.start()
    return s


def replace_section(path, begin, end, section):
    """Puts `section` (which starts with `begin` and ends with `end` and a
    newline) in place of the one between those marks in `path`, or at its end."""
    text = open(path).read() if os.path.exists(path) else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


def run(main):
    """Runs `main`, stopping the services it started however it ends."""
    try:
        main()
    finally:
        for proc in RUNNING:
            if proc.poll() is None:
                proc.terminate()


if __name__ == "__main__":
    run(main)
