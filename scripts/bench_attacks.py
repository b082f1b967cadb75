#!/usr/bin/env python3
"""The attacks of issue 15, bounded in count and time, against one release
instance while a second application reads its own session: large exports
and pages of 1 MiB messages, readers that stop reading, forks of a large
session, 1 MiB bodies announced under a wrong key, unfinished request
heads. Prints,
beside their targets: the victim's latency against its baseline and its
refusals, the instance's peak memory above idle, the database connections
it held, the cost of a wrong key, and a fork's latency; and writes them as
a section of docs/benchmarks.md.

Run through scripts/bench.sh (BENCH_ONLY=attacks runs this alone). Uses
bench.py's PostgreSQL and service drivers. Standard library only.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import ADMIN_KEY, APP_PASSWORD, APP_ROLE, Postgres, Service, log, percentile, token  # noqa: E402

DB = "bench_attacks"
MESSAGE = "x" * (1000 * 1024)
BEGIN, END = "<!-- attacks: begin -->", "<!-- attacks: end -->"


class Run:
    """Statuses and latencies collected by threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies, self.statuses = [], []

    def add(self, status, seconds):
        with self.lock:
            self.statuses.append(status)
            self.latencies.append(seconds * 1000)


def timed(service, method, path, headers, body=None):
    started = time.perf_counter()
    try:
        status, _ = service.request(method, path, headers, body)
    except (OSError, http.client.HTTPException):
        status = "error"
    return status, time.perf_counter() - started


def loop(stop, run, call):
    while not stop.is_set():
        status, seconds = call()
        run.add(status, seconds)


def stalled_reader(port, path, headers, held):
    """Asks for `path`, takes 2 KiB, and then reads nothing."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.connect(("127.0.0.1", port))
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{lines}\r\n".encode())
    s.recv(2048)
    held.append(s)


def wrong_key_head(port, length):
    """A POST announcing `length` bytes under a wrong key, of which it sends
    none: the time to the 401 is what the server spent, whatever the body."""
    started = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"POST /api/configs HTTP/1.1\r\nHost: bench\r\nX-API-Key: amp_not_a_real_key\r\n"
               f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode())
    answer = s.recv(64)
    s.close()
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else "error"
    return status, time.perf_counter() - started


def unfinished_head(port, held):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /api/configs HTTP/1.1\r\nHost: bench\r\nX-Api")
    held.append(s)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--port", type=int, default=7310)
    parser.add_argument("--messages", type=int, default=64, help="1 MiB messages in the large session")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--out", default=os.path.join(bench.ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()

    pg = Postgres(args.pg_port, args.log_dir, args.ca_file)
    pg.psql(f"DO $$ BEGIN CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$", db="postgres")
    pg.psql(f"DROP DATABASE IF EXISTS {DB}", db="postgres")
    pg.psql(f"CREATE DATABASE {DB} OWNER {APP_ROLE}", db="postgres")
    pool = 10
    service = Service(pg, pool, args.port)
    service.env["DATABASE_URL"] = service.env["DATABASE_URL"].replace(f"/{bench.DB}?", f"/{DB}?")
    service.start()

    def app(app_id):
        status, body = service.request("POST", "/api/applications", {"X-API-Key": ADMIN_KEY},
                                       {"app_id": app_id, "app_name": app_id})
        assert status == 201, (status, body)
        key, user = body["api_key"], "7d4f0a3e-1c2b-4d5e-8f90-" + os.urandom(6).hex()
        headers = {"X-API-Key": key, "Authorization": f"Bearer {token(user)}"}
        status, config = service.request("POST", "/api/configs", {"X-API-Key": key},
                                         {"name": "c", "yaml_content": "model: bench\n"})
        status, session = service.request("POST", "/api/sessions", headers,
                                          {"config_id": config["config_id"]})
        assert status == 201, (status, session)
        return headers, session["session_id"]

    hostile, big = app("hostile-app")
    victim, victims_session = app("victim-app")
    log(f"attacks: {args.messages} messages of 1 MiB ...")
    for _ in range(args.messages):
        status, body = service.request("POST", f"/api/sessions/{big}/messages", hostile,
                                       {"messages": [{"text": MESSAGE}]})
        assert status == 200, (status, body)

    read_victim = lambda: timed(service, "GET", f"/api/sessions/{victims_session}", victim)  # noqa: E731
    stop = threading.Event()

    def phase(calls, seconds):
        runs = [Run() for _ in calls]
        threads = [threading.Thread(target=loop, args=(stop, run, call))
                   for run, call in zip(runs, calls)]
        stop.clear()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        return runs

    log("attacks: the victim's baseline ...")
    service.request("GET", "/api/health")
    time.sleep(1)
    idle_rss = service.rss_kib()
    wrong_key_call = lambda: wrong_key_head(service.port, 1024 * 1024)  # noqa: E731
    baseline = phase([read_victim] * 2 + [wrong_key_call], args.seconds / 2)
    base_ms = [ms for run in baseline[0:2] for ms in run.latencies]
    idle_wrong_key = [ms for ms, s in zip(baseline[2].latencies, baseline[2].statuses) if s == 401]

    log("attacks: under attack ...")
    held = []
    for _ in range(6):
        stalled_reader(service.port, f"/api/sessions/{big}/export", hostile, held)
    for _ in range(20):
        unfinished_head(service.port, held)
    calls = (
        [read_victim] * 2
        + [lambda: timed(service, "GET", f"/api/sessions/{big}/export", hostile)] * 5
        + [lambda: timed(service, "GET", f"/api/sessions/{big}/messages?limit=1000", hostile)] * 5
        + [lambda: timed(service, "POST", f"/api/sessions/{big}/fork", hostile, {})] * 2
        + [wrong_key_call]
    )
    peak, connections = [idle_rss], [0]
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            peak.append(service.rss_kib())
            connections.append(int(pg.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'amplifier-sessions'",
                db=DB)))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    runs = phase(calls, args.seconds)
    sampling.set()
    sampler.join()
    for s in held:
        s.close()

    attacked_ms = [ms for run in runs[0:2] for ms in run.latencies]
    refused = sum(1 for run in runs[0:2] for s in run.statuses if s != 200)
    forks = [ms for run in runs[12:14] for ms, s in zip(run.latencies, run.statuses) if s == 201]
    wrong_key = [ms for ms, s in zip(runs[14].latencies, runs[14].statuses) if s == 401]
    heavy = sum(1 for run in runs[2:12] for s in run.statuses if s == 200)
    over_share = sum(1 for run in runs[2:14] for s in run.statuses if s == 429)
    service.stop()

    result = {
        "messages": args.messages,
        "seconds": args.seconds,
        "baseline_p50": percentile(base_ms, 50), "baseline_p99": percentile(base_ms, 99),
        "attacked_p50": percentile(attacked_ms, 50), "attacked_p99": percentile(attacked_ms, 99),
        "victim_requests": len(attacked_ms), "victim_refused": refused,
        "idle_rss_mib": idle_rss / 1024, "peak_rss_mib": max(peak) / 1024,
        "connections_max": max(connections), "pool": pool,
        "fork_p50": statistics.median(forks) if forks else None, "forks": len(forks),
        "wrong_key_p50": statistics.median(wrong_key) if wrong_key else None,
        "idle_wrong_key_p50": statistics.median(idle_wrong_key) if idle_wrong_key else None,
        "heavy_requests": heavy, "over_share": over_share,
    }
    log(json.dumps(result, indent=2))
    write(args.out, result)


def write(path, r):
    ratio = r["attacked_p99"] / max(r["baseline_p99"], 1e-9)
    above = r["peak_rss_mib"] - r["idle_rss_mib"]

    def met(ok):
        return "met" if ok else "**not met**"

    fork = "no fork finished" if r["fork_p50"] is None else f"{r['fork_p50']:.1f} ms"
    def ms(value):
        return "none answered 401" if value is None else f"{value:.1f} ms"

    section = f"""{BEGIN}
## Attacks on one instance (issue 15)

`scripts/bench_attacks.py`: for {r['seconds']:.0f} s, against one release
instance with a pool of {r['pool']}, a hostile application runs 5 exports and
5 pages of 1,000 messages of a session of {r['messages']} messages of 1 MiB in
loops, 2 loops of forks of that session, requests announcing 1 MiB under
a wrong key (the 401 comes before the body, so none is sent), 6 readers that take 2 KiB of an export and stop, and 20 unfinished
request heads, while a victim application reads its own session in 2
loops.

| measure | value | target |
|---|---|---|
| victim's get-session p50 / p99, baseline | {r['baseline_p50']:.2f} / {r['baseline_p99']:.2f} ms | |
| victim's get-session p50 / p99, under attack | {r['attacked_p50']:.2f} / {r['attacked_p99']:.2f} ms ({ratio:.2f}× the baseline p99) | ≤ 2×: {met(ratio <= 2)} |
| victim's requests refused (of {r['victim_requests']}) | {r['victim_refused']} | 0: {met(r['victim_refused'] == 0)} |
| RSS idle → peak | {r['idle_rss_mib']:.1f} → {r['peak_rss_mib']:.1f} MiB (+{above:.1f}) | ≤ idle + 64 MiB: {met(above <= 64)} |
| database connections held at most | {r['connections_max']} | ≤ the pool ({r['pool']}) |
| a request announcing 1 MiB under a wrong key, to its 401 (median), without / with the attack | {ms(r['idle_wrong_key_p50'])} / {ms(r['wrong_key_p50'])} | ≤ 2 ms without: {met(r['idle_wrong_key_p50'] is not None and r['idle_wrong_key_p50'] <= 2)} |
| fork of the {r['messages']}-message session (median of {r['forks']}) | {fork} | |
| hostile exports and pages served | {r['heavy_requests']} | |
| hostile requests refused over its pool share (429) | {r['over_share']} | |

How to read it: every request's own cost is bounded (pages and frames by
bytes, statements by `DATABASE_STATEMENT_TIMEOUT_MS`, stalled readers by
`HTTP_WRITE_TIMEOUT_MS`), so memory stays flat and the victim is never
refused; and the hostile application's 12 loops hold at most its share of
the pool (`DATABASE_POOL_APP_SHARE`, 5 of 10 connections; its other
requests wait for that share), so the victim is served from the rest
(issue 16, pool shares; without them its latency grew with the attacker's
concurrency). A wrong key's lookup needs a connection too, counted against
that key's own share.
{END}
"""
    bench.replace_section(path, BEGIN, END, section)


if __name__ == "__main__":
    bench.run(main)
