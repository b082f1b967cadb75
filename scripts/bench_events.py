#!/usr/bin/env python3
"""Live sessions (issue 17): event streams across two release instances.

- Latency: 1,000 subscribers of one session, spread over two processes
  (500 streams each), while one client appends a message every
  --interval seconds through the first; for each message, the time from
  just before its append was sent (the message carries that time) to its
  arrival on a stream, on every 10th stream (the others read and count).
  Target: p99 <= 50 ms. Also: the feed's reads per append (from
  pg_stat_statements): one per instance, not one per subscriber.
- Memory: RSS of a fresh instance before and after 1,000 idle streams are
  open. Target: <= 10 MiB per 1,000.
- Append throughput (wrk, many sessions) without notifications (the
  trigger disabled), with them for sessions nobody follows (migration V19:
  no NOTIFY) and with every session followed (every append notifies, as
  before V19), alternating, with a stream open (the instance listens); on
  a server without durability and on one that flushes every commit.
  Target: notifications on >= 0.95x off.

Writes its section of docs/benchmarks.md. Run through scripts/bench.sh
(BENCH_ONLY=events runs this alone). Uses bench.py's PostgreSQL and
service drivers. Standard library only.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import ADMIN_KEY, APP_PASSWORD, APP_ROLE, Postgres, Service, log, percentile, token  # noqa: E402

DB = "bench_events"
POOL = 10
BEGIN, END = "<!-- events: begin -->", "<!-- events: end -->"
STREAM_SETTINGS = {
    "EVENTS_MAX_STREAMS": "5000",
    "EVENTS_MAX_STREAMS_PER_USER": "5000",
    "EVENTS_MAX_STREAM_SECONDS": "220",
}
T = re.compile(rb'"t":([0-9.]+)')


async def open_stream(port, path, headers, opening):
    """Opens a stream and reads up to its snapshot; `opening` bounds how many
    open at once (one application's burst of opens is held to its pool
    share: beyond it, 429s)."""
    async with opening:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{lines}\r\n".encode())
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"no stream: {status!r}")
        got = b""
        while b"event: snapshot" not in got:
            got += await reader.read(65536)
        return reader, writer


async def subscriber(port, path, headers, probe, expected, latencies, ready, opening):
    """One stream: counts its messages until `expected`; a probe also
    notes each one's latency."""
    reader, writer = await open_stream(port, path, headers, opening)
    seen = 0
    ready()
    while seen < expected:
        chunk = await reader.read(65536)
        if not chunk:
            raise RuntimeError("a stream ended early")
        now = time.time()
        seen += chunk.count(b"event: message")
        if probe:
            latencies.extend((now - float(t)) * 1000 for t in T.findall(chunk))
    writer.close()


def subscribers(port, path, headers, count, expected, ready_count, out):
    """`count` streams in one process (an event loop of its own)."""
    latencies = []

    def ready():
        with ready_count.get_lock():
            ready_count.value += 1

    async def run():
        opening = asyncio.Semaphore(20)
        await asyncio.gather(*(subscriber(port, path, headers, i % 10 == 0, expected, latencies, ready,
                                          opening)
                               for i in range(count)))

    asyncio.run(run())
    out.put(latencies)


async def idle_streams(port, path, headers, count, opened):
    """Opens `count` streams, waits for every snapshot, then holds them
    until `opened` (a pipe) is told to close."""
    opening = asyncio.Semaphore(20)
    held = await asyncio.gather(*(open_stream(port, path, headers, opening) for _ in range(count)))
    opened.send("open")
    await asyncio.get_running_loop().run_in_executor(None, opened.recv)
    for _, writer in held:
        writer.close()


def hold_idle(port, path, headers, count, opened):
    asyncio.run(idle_streams(port, path, headers, count, opened))


async def open_plain(port, opening):
    """A keep-alive connection that made one health request, then idles:
    what any open HTTP connection costs the instance, stream or not."""
    async with opening:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: bench\r\n\r\n")
        await writer.drain()
        got = b""
        while not got.endswith(b"}"):
            got += await reader.read(65536)
        return reader, writer


async def idle_plain(port, count, opened):
    opening = asyncio.Semaphore(20)
    held = await asyncio.gather(*(open_plain(port, opening) for _ in range(count)))
    opened.send("open")
    await asyncio.get_running_loop().run_in_executor(None, opened.recv)
    for _, writer in held:
        writer.close()


def hold_plain(port, count, opened):
    asyncio.run(idle_plain(port, count, opened))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--port", type=int, default=7330)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--appends", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--duration", type=int, default=6, help="seconds per throughput run")
    parser.add_argument("--cycles", type=int, default=6, help="throughput runs per mode")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", default=os.path.join(bench.ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    pg = Postgres(args.pg_port, args.log_dir, args.ca_file)
    pg.psql(f"DO $$ BEGIN CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$", db="postgres")
    pg.psql(f"DROP DATABASE IF EXISTS {DB}", db="postgres")
    pg.psql(f"CREATE DATABASE {DB} OWNER {APP_ROLE}", db="postgres")
    pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", db=DB)

    def start(port, extra=None):
        service = Service(pg, POOL, port, extra={**STREAM_SETTINGS, **(extra or {})})
        service.env["DATABASE_URL"] = service.env["DATABASE_URL"].replace(f"/{bench.DB}?", f"/{DB}?")
        service.start()
        service.request("GET", "/api/health")
        return service

    a, b = start(args.port), start(args.port + 1)
    key, config, headers = application(a)
    status, session = a.request("POST", "/api/sessions", headers, {"config_id": config["config_id"]})
    assert status == 201, (status, session)
    session_id = session["session_id"]
    events = f"/api/sessions/{session_id}/events"
    messages = f"/api/sessions/{session_id}/messages"
    result = {"subscribers": args.subscribers, "appends": args.appends, "interval": args.interval,
              "connections": args.connections, "duration": args.duration,
              "cycles": args.cycles}

    # Latency: half the streams on each instance, appends through the first.
    log(f"events: {args.subscribers} streams over 2 instances ...")
    fork = multiprocessing.get_context("fork")
    ready, out = fork.Value("i", 0), fork.Queue()
    half = args.subscribers // 2
    procs = [fork.Process(target=subscribers, args=(s.port, events, headers, n, args.appends, ready, out))
             for s, n in [(a, half), (b, args.subscribers - half)]]
    for p in procs:
        p.start()
    deadline = time.time() + 120
    while ready.value < args.subscribers:
        if time.time() > deadline:
            raise RuntimeError(f"only {ready.value} streams opened")
        time.sleep(0.05)
    reads_before = feed_reads(pg)
    log(f"events: {args.appends} appends, one every {args.interval} s ...")
    conn = a.connection()
    append_ms = []
    for _ in range(args.appends):
        started = time.perf_counter()
        status, _ = a.request("POST", messages, headers, {"messages": [{"t": time.time()}]}, conn=conn)
        assert status == 200, status
        append_ms.append((time.perf_counter() - started) * 1000)
        time.sleep(max(0.0, args.interval - (time.perf_counter() - started)))
    latencies = [ms for _ in procs for ms in out.get()]
    for p in procs:
        p.join()
    reads = feed_reads(pg) - reads_before
    result["latency"] = {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                         "max": max(latencies), "samples": len(latencies)}
    result["append"] = {"p50": percentile(append_ms, 50), "p99": percentile(append_ms, 99)}
    result["feed_reads"] = reads
    a.stop()
    b.stop()

    # Memory: a fresh instance, warmed by one stream, then 1,000 idle ones.
    log("events: RSS of 1,000 idle streams ...")
    c = start(args.port + 2)
    c.request("GET", f"{messages}?after_seq=0", headers)
    parent, child = fork.Pipe()
    warm = fork.Process(target=hold_idle, args=(c.port, events, headers, 10, child))
    warm.start()
    parent.recv()
    parent.send("close")
    warm.join()
    time.sleep(1)
    before = c.rss_kib()
    holder = fork.Process(target=hold_idle, args=(c.port, events, headers, 1000, child))
    holder.start()
    parent.recv()
    time.sleep(1)
    after = c.rss_kib()
    parent.send("close")
    holder.join()
    result["rss"] = {"before_kib": before, "after_kib": after, "per_1000_kib": after - before}
    c.stop()
    # The control: a fresh instance, 1,000 idle keep-alive connections
    # that each made one health request (no stream).
    d = start(args.port + 5)
    d.request("GET", "/api/health")
    time.sleep(1)
    before = d.rss_kib()
    holder = fork.Process(target=hold_plain, args=(d.port, 1000, child))
    holder.start()
    parent.recv()
    time.sleep(1)
    after = d.rss_kib()
    parent.send("close")
    holder.join()
    result["rss"]["plain_per_1000_kib"] = after - before
    d.stop()

    # Throughput of appends with and without the notifying trigger: on
    # bench.sh's server (durability off, as every section), then on a
    # server of its own that flushes every commit.
    log("events: append throughput with and without notifications ...")
    result["throughput"] = throughput(pg, start(args.port + 3), key, config, headers, args,
                                      "durability off")
    durable_dir = tempfile.mkdtemp(prefix="amplifier-bench-durable-")
    os.chmod(durable_dir, 0o755)
    durable_port = int(subprocess.run([os.path.join(bench.ROOT, "scripts", "local-pg.sh"), "free-port",
                                       str(args.pg_port + 100)],
                                      check=True, capture_output=True, text=True).stdout)
    local_pg = os.path.join(bench.ROOT, "scripts", "local-pg.sh")
    subprocess.run([local_pg, "start", durable_dir, str(durable_port)], check=True)
    try:
        durable = Postgres(durable_port, args.log_dir, args.ca_file)
        durable.psql(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'", db="postgres")
        durable.psql(f"CREATE DATABASE {DB} OWNER {APP_ROLE}", db="postgres")
        service = Service(durable, POOL, args.port + 4, extra=STREAM_SETTINGS)
        service.env["DATABASE_URL"] = service.env["DATABASE_URL"].replace(f"/{bench.DB}?", f"/{DB}?")
        service.start()
        service.request("GET", "/api/health")
        d_key, d_config, d_headers = application(service)
        result["durable"] = throughput(durable, service, d_key, d_config, d_headers, args,
                                       "durable commits")
    finally:
        subprocess.run([local_pg, "stop", durable_dir], check=False)
        shutil.rmtree(durable_dir, ignore_errors=True)
    tp, dur = result["throughput"], result["durable"]

    log(json.dumps(result, indent=2))
    print(f"append -> event p99 {result['latency']['p99']:.1f} ms over {args.subscribers} streams "
          f"(target <= 50); {reads} feed reads for {args.appends} appends; "
          f"{result['rss']['per_1000_kib'] / 1024:.1f} MiB per 1,000 idle streams (target <= 10); "
          f"appends/s off/unwatched/watched: {tp['off']:.0f}/{tp['unwatched']:.0f}/{tp['watched']:.0f} "
          f"(durability off), {dur['off']:.0f}/{dur['unwatched']:.0f}/{dur['watched']:.0f} (durable); "
          f"target unwatched >= 0.95x off")
    write(args.out, result)


def application(service):
    """An application, its config, and an owner's headers."""
    status, body = service.request("POST", "/api/applications", {"X-API-Key": ADMIN_KEY},
                                   {"app_id": "live-app", "app_name": "live"})
    assert status == 201, (status, body)
    key = body["api_key"]
    owner = "7d4f0a3e-1c2b-4d5e-8f90-" + os.urandom(6).hex()
    headers = {"X-API-Key": key, "Authorization": f"Bearer {token(owner)}"}
    status, config = service.request("POST", "/api/configs", {"X-API-Key": key},
                                     {"name": "c", "yaml_content": "model: bench\n"})
    assert status == 201, (status, config)
    return key, config, headers


MODES = ["off", "unwatched", "watched"]
MODE_LABELS = {
    "off": "no notifications (triggers disabled: as before live sessions)",
    "unwatched": "notifications on, nobody follows these sessions (V19: no NOTIFY)",
    "watched": "notifications on, every session followed (every append notifies, as before V19)",
}


def throughput(pg, service, key, config, headers, args, label):
    """wrk appending to 50 sessions of 50 users in three modes (MODES),
    in cycles of one run each, rotating the order; one stream open on another session (so
    the instance listens). "watched" marks every one of the 50 sessions
    followed (their watched_until, as a feed's registration does), so every
    append notifies. Stops `service`."""
    fn = {"key": key, "requests": []}
    sessions = []
    for _ in range(50):
        user = "6a1b2c3d-0000-4000-8000-" + os.urandom(6).hex()
        hdrs = {"X-API-Key": key, "Authorization": f"Bearer {token(user)}"}
        status, s = service.request("POST", "/api/sessions", hdrs, {"config_id": config["config_id"]})
        assert status == 201, (status, s)
        sessions.append(s["session_id"])
        fn["requests"].append({"method": "POST", "path": f"/api/sessions/{s['session_id']}/messages",
                               "token": token(user),
                               "body": json.dumps({"messages": [{"role": "user", "text": "hello"}]})})
    status, followed = service.request("POST", "/api/sessions", headers, {"config_id": config["config_id"]})
    assert status == 201, (status, followed)
    fork = multiprocessing.get_context("fork")
    parent, child = fork.Pipe()
    listening = fork.Process(target=hold_idle, args=(
        service.port, f"/api/sessions/{followed['session_id']}/events", headers, 1, child))
    listening.start()
    parent.recv()
    wrk_args = argparse.Namespace(connections=args.connections, duration=args.duration)
    bench.wrk(service, fn, wrk_args, duration=3)  # warm
    listed = ", ".join(f"'{s}'" for s in sessions)
    runs = {mode: [] for mode in MODES}
    ratios = {mode: [] for mode in MODES}
    for cycle in range(args.cycles):
        # Each cycle runs every mode once, back to back, in rotating order,
        # and gives each mode's ratio to that cycle's "off": the machine's
        # drift falls on the modes alike.
        order = MODES[cycle % len(MODES):] + MODES[:cycle % len(MODES)]
        for mode in order:
            state = "DISABLE" if mode == "off" else "ENABLE"
            pg.psql(f"ALTER TABLE sessions {state} TRIGGER sessions_notify_change", db=DB)
            if mode == "watched":
                pg.psql("UPDATE sessions SET watched_until = now() + interval '1 hour' "
                        f"WHERE session_id IN ({listed})", db=DB)
            runs[mode].append(bench.wrk(service, fn, wrk_args)["rps"])
            pg.psql(f"UPDATE sessions SET watched_until = NULL WHERE session_id IN ({listed})", db=DB)
            log(f"events: {label}, {mode}: {runs[mode][-1]:.0f} appends/s")
        for mode in MODES:
            ratios[mode].append(runs[mode][-1] / runs["off"][-1])
    pg.psql("ALTER TABLE sessions ENABLE TRIGGER sessions_notify_change", db=DB)
    parent.send("close")
    listening.join()
    service.stop()
    result = {mode: statistics.median(r) for mode, r in runs.items()}
    result["runs"] = runs
    result["ratio"] = {mode: statistics.median(r) for mode, r in ratios.items()}
    return result


def feed_reads(pg):
    """Calls of the statement feeds and catching-up streams read messages
    with (`messages::export_page`)."""
    return int(pg.psql(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
        "WHERE query LIKE '%LEAST(l.through_seq, $3::int, $2::int + $4::bigint)%'", db=DB) or 0)


def write(path, r):
    def met(ok):
        return "met" if ok else "**not met**"

    def runs(t, mode):
        return ", ".join(f"{x:.0f}" for x in t["runs"][mode])

    def spread(t):
        return max(max(t["runs"][m]) / min(t["runs"][m]) - 1 for m in MODES) * 100

    def rows(t, server):
        return "\n".join(
            f"| {server} | {MODE_LABELS[mode]} | {t[mode]:.0f} ({runs(t, mode)}) | "
            f"{t['ratio'][mode]:.3f}× |" for mode in MODES)

    lat, rss, tp, dur = r["latency"], r["rss"], r["throughput"], r["durable"]
    per_1000 = rss["per_1000_kib"] / 1024
    ratio, durable_ratio = tp["ratio"]["unwatched"], dur["ratio"]["unwatched"]
    section = f"""{BEGIN}
## Live sessions (issue 17)

`scripts/bench_events.py`: two release instances on one database (pool of
{POOL} each). {r['subscribers']} streams follow one session, half on each
instance; one client appends a message through the first instance every
{r['interval'] * 1000:.0f} ms, {r['appends']} times. Latency is from just
before the append was sent (the message carries that time) to the event's
arrival, measured on every 10th stream ({lat['samples']} samples); so it
includes the append itself (p50 {r['append']['p50']:.1f} ms, p99
{r['append']['p99']:.1f} ms), the commit, the notification, the feed's read
and the write to {r['subscribers'] // 2} connections per instance. The
subscribers are two Python processes on the same 2 cores as the service
and PostgreSQL.

| measure | value | target |
|---|---|---|
| append → event received, p50 / p99 / max | {lat['p50']:.1f} / {lat['p99']:.1f} / {lat['max']:.1f} ms | p99 ≤ 50 ms: {met(lat['p99'] <= 50)} |
| reads of new messages for {r['appends']} appends to {r['subscribers']} subscribers | {r['feed_reads']} (one per instance per append: {2 * r['appends']}) | not one per subscriber |
| RSS of an instance, before / with 1,000 idle streams | {rss['before_kib'] / 1024:.1f} / {rss['after_kib'] / 1024:.1f} MiB ({per_1000:.1f} MiB per 1,000) | ≤ 10 MiB: {met(per_1000 <= 10)} |
| the same for 1,000 idle keep-alive connections that made one health request (no stream) | {rss['plain_per_1000_kib'] / 1024:.1f} MiB per 1,000 | (the control) |
| appends/s, notifications on (nobody following) / off | {tp['unwatched']:.0f} / {tp['off']:.0f} ({ratio:.3f}×); durable commits: {dur['unwatched']:.0f} / {dur['off']:.0f} ({durable_ratio:.3f}×) | ≥ 0.95×: {met(min(ratio, durable_ratio) >= 0.95)} |

Memory: the control row is what any open HTTP/1.1 connection costs here
(hyper keeps a read and a write buffer of at least 8 KiB each per
connection, plus its task); a stream adds
{(rss['per_1000_kib'] - rss['plain_per_1000_kib']) / 1024:.1f} MiB per 1,000: its state, subscription
and timers, and whatever the allocator kept from opening it (RSS counts
freed memory not returned to the system). A stream's own state is small
because its reads are boxed: inline, a read's future made every idle
stream 11.8 KB (12.0 MiB per 1,000 before that change, 24.2 in all). The
target counts the connection too: its part is the control row, what
hyper costs for any open connection, which no stream design lowers.

The reads: each instance has one feed per session with subscribers there;
a notification wakes it, it reads the new messages once (one statement,
counted in `pg_stat_statements`) and hands the same SSE frames to all of
its subscribers.

### Append throughput and notifications

wrk with {r['connections']} connections appending one message at a time to 50
sessions of 50 users, {r['duration']} s per run, {r['cycles']} cycles of one run
per mode in rotating order (runs in parentheses; appends/s is the median
run, "vs off" the median of each cycle's ratio to its own "off" run), with one stream open on another session
so that the instance listens. On bench.sh's server (durability off, as
every section of this document), then on a server of its own that flushes
every commit (`fsync`, `synchronous_commit` on).

| server | mode | appends/s | vs off |
|---|---|---|---|
{rows(tp, "durability off")}
{rows(dur, "durable commits")}

Runs of one mode spread by up to {spread(tp):.0f}% with durability off and
{spread(dur):.0f}% with durable commits (the largest over the modes of
max/min of its runs; the machine is shared): the per-cycle ratios
are what cancels that drift.

Why the modes differ: PostgreSQL keeps notifications in commit order by
holding a database-wide lock from just before a notifying transaction's
commit until after it, so notifying commits cannot share a WAL flush
(group commit): with durable commits, when every append notifies (as
before migration V19, the "every session followed" mode), appends of all
sessions go one flush at a time. Since V19 only sessions that some instance
follows notify: a feed registers its session (a row in `watched_sessions`,
renewed while the feed lives, removed when it ends, swept once expired)
and raises the session's `watched_until`; the triggers fire only `WHEN`
that is in the future, so an append to a session nobody follows calls no
function at all and commits as before. Appends to a session with
followers still notify (their readers need them), one flush at a time
among themselves. (Measured along the way: a PL/pgSQL trigger looking the
session up in `watched_sessions` on every append ran at about 0.92× of
"off", a SQL-language one, planned again at every call, at 0.80×.)
{END}
"""
    bench.replace_section(path, BEGIN, END, section)


if __name__ == "__main__":
    bench.run(main)
