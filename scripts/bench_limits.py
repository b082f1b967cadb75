#!/usr/bin/env python3
"""The cost and the bound of rate limiting (issue 16): get-session and
append-messages throughput with limits off and with limits on (counted and
synced, never reached), alternating runs in one go; and three processes on
one database held to one user's limit: how many requests they admit beyond
it. Writes its section of docs/benchmarks.md.

Run through scripts/bench.sh (BENCH_ONLY=limits runs this alone). Uses
bench.py's PostgreSQL and service drivers. Standard library only.
"""

import argparse
import json
import os
import statistics
import sys
import threading
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import ADMIN_KEY, Fixture, Postgres, log, token, wrk  # noqa: E402

DB = "bench_limits"
BEGIN, END = "<!-- limits: begin -->", "<!-- limits: end -->"
OFF = {name: "0" for name in ("RATE_LIMIT_REQUESTS_PER_MINUTE", "RATE_LIMIT_WRITES_PER_MINUTE",
                              "RATE_LIMIT_APP_REQUESTS_PER_MINUTE")}
# Counted and synced like any limit, but out of reach.
ON = {name: "1000000000" for name in OFF}


def fresh_database(pg):
    bench.own_database(pg, DB)


def service(pg, port, extra, pool=8):
    return bench.service_on(pg, DB, port, extra, pool)


def throughput(pg, args):
    """rps of get-session and append-messages, limits off vs on, and a
    control: a second service with limits off, run like the others, whose
    ratio to the first shows what the bench itself makes of two equal
    services (their order, the machine's drift)."""
    fresh_database(pg)
    setup = service(pg, args.port, OFF)
    fx = Fixture(setup, types.SimpleNamespace(users=args.users, sessions_per_user=1))
    setup.stop()
    small = json.dumps({"messages": [{"role": "user", "text": "hello " * 8}]})
    functions = {
        "get-session": [{"method": "GET", "path": f"/api/sessions/{fx.sessions[u][0]}",
                         "token": fx.tokens[u], "body": None} for u in fx.users],
        "append-messages": [{"method": "POST", "path": f"/api/sessions/{fx.sessions[u][0]}/messages",
                             "token": fx.tokens[u], "body": small} for u in fx.users],
    }
    wrk_args = types.SimpleNamespace(connections=args.connections, duration=args.duration)
    modes = ("off", "on", "control")
    rps = {(name, mode): [] for name in functions for mode in modes}
    ratios = {(name, mode): [] for name in functions for mode in ("on", "control")}
    for r in range(args.rounds):
        # All three services up at once, each function run on one right
        # after the other, the order rotating: the machine's drift (and the
        # sessions' growth) falls on all alike, and each round gives paired
        # ratios.
        extra = {"off": OFF, "on": ON, "control": OFF}
        services = {mode: service(pg, args.port + i, extra[mode]) for i, mode in enumerate(modes)}
        order = modes[r % 3:] + modes[:r % 3]
        if r % 6 >= 3:
            order = order[::-1]
        # Steady state: a fresh instance's first second has every caller's
        # first requests wait for one sync (README), which is not the cost
        # of counting; every service gets the same warm-up.
        for mode in order:
            for requests in functions.values():
                wrk(services[mode], {"key": fx.key, "requests": requests}, wrk_args, duration=2)
        for name, requests in functions.items():
            for mode in order:
                result = wrk(services[mode], {"key": fx.key, "requests": requests}, wrk_args)
                assert result["errors"] == 0, (name, mode, result)
                rps[(name, mode)].append(result["rps"])
                log(f"limits {mode}: {name} {result['rps']:.0f} rps")
            for mode in ("on", "control"):
                ratios[(name, mode)].append(rps[(name, mode)][-1] / rps[(name, "off")][-1])
        for s in services.values():
            s.stop()
    return {name: {"off": statistics.median(rps[(name, "off")]),
                   "on": statistics.median(rps[(name, "on")]),
                   "control": statistics.median(rps[(name, "control")]),
                   "ratio": statistics.median(ratios[(name, "on")]),
                   "control_ratio": statistics.median(ratios[(name, "control")]),
                   "ratios": [round(r, 3) for r in ratios[(name, "on")]],
                   "control_ratios": [round(r, 3) for r in ratios[(name, "control")]]}
            for name in functions}


def overshoot(pg, args):
    """Three processes, one user with a limit of `limit` per minute, 24
    callers spread over them until each process refuses: admitted − limit."""
    fresh_database(pg)
    extra = {"RATE_LIMIT_REQUESTS_PER_MINUTE": str(args.limit)}
    processes = [service(pg, args.port + i, extra) for i in range(3)]
    status, app = processes[0].request("POST", "/api/applications", {"X-API-Key": ADMIN_KEY},
                                       {"app_id": "bench-limits", "app_name": "bench"})
    assert status == 201, (status, app)
    user = "5a1e0c3d-2b4f-4a6e-9c8d-7f6e5d4c3b2a"
    headers = {"X-API-Key": app["api_key"], "Authorization": f"Bearer {token(user)}"}
    lock = threading.Lock()
    counts = {"admitted": 0, "refused": 0}
    refused_by = set()
    stop = threading.Event()

    def caller(i):
        conns = [p.connection() for p in processes]
        n = i
        while not stop.is_set():
            p = n % 3
            n += 1
            status, _ = processes[p].request("GET", f"/api/users/{user}/sessions", headers,
                                             conn=conns[p])
            with lock:
                if status == 200:
                    counts["admitted"] += 1
                elif status == 429:
                    counts["refused"] += 1
                    refused_by.add(p)
                    if len(refused_by) == 3:
                        stop.set()
                else:
                    counts.setdefault(f"status {status}", 0)
                    counts[f"status {status}"] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    for p in processes:
        p.stop()
    others = {k: v for k, v in counts.items() if k.startswith("status")}
    return {"limit": args.limit, "admitted": counts["admitted"], "refused": counts["refused"],
            "others": others, "seconds": seconds, "processes": 3}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--port", type=int, default=7410)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--out", default=os.path.join(bench.ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()

    pg = Postgres(args.pg_port, args.log_dir, args.ca_file)
    result = {"throughput": throughput(pg, args), "overshoot": overshoot(pg, args),
              "duration": args.duration, "rounds": args.rounds, "connections": args.connections}
    log(json.dumps(result, indent=2))
    write(args.out, result)


def write(path, r):
    def met(ok):
        return "met" if ok else "**not met**"

    rows = []
    for name, t in r["throughput"].items():
        ratio = t["ratio"]
        rows.append(f"| {name} | {t['off']:.0f} | {t['on']:.0f} | {ratio:.2f}× | {t['control_ratio']:.2f}× "
                    f"| ≥ 0.95×: {met(ratio >= 0.95)} |")
    o = r["overshoot"]
    over = o["admitted"] - o["limit"]
    # The README's bound: the limit plus one request on trust per process.
    bound = o["processes"]
    section = f"""{BEGIN}
## Rate limits (issue 16)

`scripts/bench_limits.py`. **Cost**: requests per second through wrk
({r['connections']} connections, {r['duration']} s runs, median of
{r['rounds']} rounds; on / off is the median of each round's ratio, the
runs of a round back to back in rotating order), limits off (`0`)
against limits on (every
request counted in three policies and synced as its leases need, at limits
never reached; after a 2 s warm-up of each). The control is a second
service with limits off, run like the others: its ratio to the first is
what the bench itself makes of two equal services.

| function | off (rps) | on (rps) | on / off | control / off | target |
|---|---|---|---|---|---|
{chr(10).join(rows)}

**Bound across instances**: {o['processes']} processes on one database,
one user limited to {o['limit']} requests per minute, 24 callers spread
over the processes until each one refuses: {o['admitted']} admitted
({over:+d} over the limit; the README's bound is +{bound}, one per process: {met(over <= bound)}),
{o['refused']} refused (429), other answers: {o['others'] or 'none'}, in {o['seconds']:.1f} s.
{END}
"""
    text = open(path).read() if os.path.exists(path) else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    try:
        main()
    finally:
        for proc in bench.RUNNING:
            if proc.poll() is None:
                proc.terminate()
