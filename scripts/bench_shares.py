#!/usr/bin/env python3
"""Pool shares (issue 16): application A floods one release instance with
slow requests (get-session of a session whose row a transaction of the
benchmark holds locked, so each keeps its connection until
DATABASE_STATEMENT_TIMEOUT_MS), while application B reads its own session.
Prints B's get-session p50/p99 alone, during the flood with pool shares (the
defaults), and during the flood with shares off (DATABASE_POOL_APP_SHARE=1,
the behaviour before them), the ratio of B's p99 to its baseline (target
<= 2x with shares), B's refusals, and how A's requests ended; and writes
them as a section of docs/benchmarks.md.

Run through scripts/bench.sh (BENCH_ONLY=shares runs this alone). Uses
bench.py's PostgreSQL and service drivers. Standard library only.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import ADMIN_KEY, APP_PASSWORD, APP_ROLE, Postgres, Service, log, percentile, token  # noqa: E402
from bench_attacks import Run, loop, timed  # noqa: E402

DB = "bench_shares"
POOL = 10
BEGIN, END = "<!-- shares: begin -->", "<!-- shares: end -->"


class RowLock:
    """A transaction holding a session's row lock until `release`."""

    def __init__(self, pg, session_id):
        self.proc = subprocess.Popen(
            ["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(pg.port),
             "-U", "postgres", "-d", DB],
            env=dict(os.environ, PGPASSWORD="postgres"), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        self.proc.stdin.write(f"BEGIN; SELECT 1 FROM sessions WHERE session_id = '{session_id}' "
                              "FOR UPDATE;\n\\echo locked\n")
        self.proc.stdin.flush()
        while self.proc.stdout.readline().strip() != "locked":
            pass

    def release(self):
        self.proc.stdin.write("ROLLBACK;\n")
        self.proc.stdin.close()
        self.proc.wait()


def get_then_wait(service, path, headers):
    """A GET that, when refused, waits as long as `Retry-After` asks."""
    started = time.perf_counter()
    conn = service.connection()
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        status, retry = response.status, response.getheader("Retry-After")
    except (OSError, http.client.HTTPException):
        status, retry = "error", None
    finally:
        conn.close()
    elapsed = time.perf_counter() - started
    if retry:
        time.sleep(float(retry))
    return status, elapsed


def flood(service, path, headers, loops, seconds, polite, out):
    """A's flood, in a process of its own (the measuring threads of B do
    not share its interpreter lock): `loops` threads asking for `path`,
    after a refusal either as `Retry-After` asks (`polite`) or at once."""
    call = (lambda: get_then_wait(service, path, headers)) if polite else \
        (lambda: timed(service, "GET", path, headers))
    stop = threading.Event()
    runs = [Run() for _ in range(loops)]
    threads = [threading.Thread(target=loop, args=(stop, run, call)) for run in runs]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    out.put([(s, ms) for run in runs for s, ms in zip(run.statuses, run.latencies)])
    for t in threads:
        t.join()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--port", type=int, default=7320)
    parser.add_argument("--flood", type=int, default=64, help="A's concurrent slow requests")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--out", default=os.path.join(bench.ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()

    pg = Postgres(args.pg_port, args.log_dir, args.ca_file)
    pg.psql(f"DO $$ BEGIN CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$", db="postgres")
    pg.psql(f"DROP DATABASE IF EXISTS {DB}", db="postgres")
    pg.psql(f"CREATE DATABASE {DB} OWNER {APP_ROLE}", db="postgres")

    def start(extra):
        service = Service(pg, POOL, args.port, extra=extra)
        service.env["DATABASE_URL"] = service.env["DATABASE_URL"].replace(f"/{bench.DB}?", f"/{DB}?")
        service.start()
        service.request("GET", "/api/health")
        return service

    def app(service, app_id):
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
        return headers, f"/api/sessions/{session['session_id']}", session["session_id"]

    def measure(service, b, seconds):
        """B's get-session in 2 loops for `seconds`: latencies (ms), refusals."""
        runs = [Run(), Run()]
        call = lambda: timed(service, "GET", b[1], b[0])  # noqa: E731
        stop = threading.Event()
        threads = [threading.Thread(target=loop, args=(stop, run, call)) for run in runs]
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        return ([ms for run in runs for ms in run.latencies],
                sum(1 for run in runs for s in run.statuses if s != 200))

    def flooded(service, a, b, polite=True):
        """B measured while A floods: B's latencies and refusals, A's answers."""
        lock = RowLock(pg, a[2])
        fork = multiprocessing.get_context("fork")
        out = fork.Queue()
        flooder = fork.Process(target=flood, args=(
            service, a[1], a[0], args.flood, args.seconds + 2, polite, out))
        flooder.start()
        time.sleep(2)  # A's requests have taken what they can
        b_ms, b_refused = measure(service, b, args.seconds)
        answers = out.get()
        lock.release()
        flooder.join()
        return b_ms, b_refused, answers

    result = {"pool": POOL, "flood": args.flood, "seconds": args.seconds}
    service = start({})
    a, b = app(service, "flooding-app"), app(service, "steady-app")
    log("shares: B alone ...")
    measure(service, b, 2)  # warm
    base, _ = measure(service, b, args.seconds)
    log(f"shares: B while A floods with {args.flood} slow requests (shares on) ...")
    with_shares = flooded(service, a, b)
    log("shares: the same, A retrying refusals at once ...")
    impolite = flooded(service, a, b, polite=False)
    service.stop()
    log("shares: the same with shares off (DATABASE_POOL_APP_SHARE=1) ...")
    service = start({"DATABASE_POOL_APP_SHARE": "1"})
    measure(service, b, 2)
    # A retrying at once: a polite A would leave B windows while it waits.
    without_shares = flooded(service, a, b, polite=False)
    service.stop()

    result["baseline"] = summary(base, 0)
    for name, (b_ms, refused, answers) in [("shares", with_shares), ("impolite", impolite),
                                           ("no_shares", without_shares)]:
        result[name] = summary(b_ms, refused)
        result[name]["ratio"] = result[name]["p99"] / max(result["baseline"]["p99"], 1e-9)
        result[name]["a"] = a_answers(answers)
    log(json.dumps(result, indent=2))
    print(f"B's get-session p99: alone {result['baseline']['p99']:.2f} ms; "
          f"during A's flood {result['shares']['p99']:.2f} ms with shares "
          f"({result['shares']['ratio']:.2f}x, target <= 2x), "
          f"{result['impolite']['p99']:.2f} ms with shares and A retrying at once "
          f"({result['impolite']['ratio']:.2f}x), "
          f"{result['no_shares']['p99']:.2f} ms without shares ({result['no_shares']['ratio']:.2f}x)")
    write(args.out, result)


def summary(ms, refused):
    return {"p50": percentile(ms, 50), "p99": percentile(ms, 99), "requests": len(ms), "refused": refused}


def a_answers(answers):
    """A's answers by status: how many, and their median latency (ms)."""
    by_status = {}
    for status, ms in answers:
        by_status.setdefault(str(status), []).append(ms)
    return {s: {"count": len(v), "p50": percentile(v, 50)} for s, v in sorted(by_status.items())}


def write(path, r):
    def met(ok):
        return "met" if ok else "**not met**"

    def a_line(answers):
        return "; ".join(f"{s}: {v['count']} (median {v['p50']:.0f} ms)" for s, v in answers.items())

    base, on, hot, off = r["baseline"], r["shares"], r["impolite"], r["no_shares"]
    section = f"""{BEGIN}
## Pool shares (issue 16)

`scripts/bench_shares.py`: one release instance with a pool of {r['pool']}.
Application A floods it with {r['flood']} concurrent slow requests in loops
(get-session of a session whose row the benchmark keeps locked, so each
holds its connection until `DATABASE_STATEMENT_TIMEOUT_MS`, 5 s, and is
then a 503; after a 429 or 503, A waits as `Retry-After` asks) while
application B reads its own session in 2 loops, {r['seconds']:.0f} s each.
First with the default shares (`DATABASE_POOL_APP_SHARE=0.5`: A holds at
most 5 connections, 50 more of its requests wait for them, the rest are
refused at once); then the same with A retrying every refusal at once (a
flood of requests as well as of connections: {r['flood'] - 55} loops of
refusals as fast as this machine's 2 cores turn them around, the load
generator included); then with shares off (`DATABASE_POOL_APP_SHARE=1`,
as before them), A retrying at once (a polite A would leave B windows
while it waits). B's loops are closed: a request that waits 5 s holds its
loop, so B's request count says as much as its percentiles.

| measure | value | target |
|---|---|---|
| B's get-session p50 / p99, alone | {base['p50']:.2f} / {base['p99']:.2f} ms | |
| B's get-session p50 / p99, A flooding, shares on | {on['p50']:.2f} / {on['p99']:.2f} ms ({on['ratio']:.2f}× the baseline p99) | ≤ 2×: {met(on['ratio'] <= 2)} |
| B's requests refused, shares on | {on['refused']} of {on['requests']} | 0: {met(on['refused'] == 0)} |
| B's get-session p50 / p99, A flooding and retrying refusals at once, shares on | {hot['p50']:.2f} / {hot['p99']:.2f} ms ({hot['ratio']:.2f}× the baseline p99) | |
| B's requests refused, A retrying at once, shares on | {hot['refused']} of {hot['requests']} | |
| B's get-session p50 / p99, A flooding and retrying at once, shares off | {off['p50']:.2f} / {off['p99']:.2f} ms ({off['ratio']:.2f}× the baseline p99) | |
| B's requests refused, A retrying at once, shares off | {off['refused']} of {off['requests']} | |
| A's answers, shares on | {a_line(on['a'])} | |
| A's answers, retrying at once, shares on | {a_line(hot['a'])} | |
| A's answers, retrying at once, shares off | {a_line(off['a'])} | |

How to read it: with shares, A's slow requests hold 5 of the 10
connections and B is served from the other 5; A's excess waits for A's own
share (429 after `DATABASE_POOL_TIMEOUT_MS`) or, beyond its waiting slots,
is refused at once (429, milliseconds). Without shares, A's requests take
every connection and queue before B's: B waits for the pool timeout and
gets 503s. A client that retries refusals at once costs CPU per refusal
(its key and token are checked before it is refused): shares bound
connections, not the request rate.
{END}
"""
    bench.replace_section(path, BEGIN, END, section)


if __name__ == "__main__":
    bench.run(main)
