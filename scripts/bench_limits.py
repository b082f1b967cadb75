#!/usr/bin/env python3
"""The cost and the bound of rate limiting (issue 16): get-session and
append-messages throughput, CPU and instructions per request with limits
off and with limits on (counted and synced, never reached); and three
processes on one database held to one user's limit: how many requests they
admit beyond it. Writes its section of docs/benchmarks.md.

Run through scripts/bench.sh (BENCH_ONLY=limits runs this alone). Uses
bench.py's PostgreSQL and service drivers. Standard library only.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
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


def service(pg, port, extra, pool=8, wrapper=()):
    return bench.service_on(pg, DB, port, extra, pool, wrapper=wrapper)


def functions_of(fx):
    """The two functions measured: each user's get-session, and an
    append of one small message to it."""
    small = json.dumps({"messages": [{"role": "user", "text": "hello " * 8}]})
    return {
        "get-session": [{"method": "GET", "path": f"/api/sessions/{fx.sessions[u][0]}",
                         "token": fx.tokens[u], "body": None} for u in fx.users],
        "append-messages": [{"method": "POST", "path": f"/api/sessions/{fx.sessions[u][0]}/messages",
                             "token": fx.tokens[u], "body": small} for u in fx.users],
    }


def instructions(pg, args):
    """Instructions the service runs per request, limits off and on,
    counted by callgrind over the same requests in the same order: unlike
    time on this machine, the same in every run (the background syncs
    included, as they come)."""
    fresh_database(pg)
    setup = service(pg, args.port, OFF)
    fx = Fixture(setup, types.SimpleNamespace(users=50, sessions_per_user=1))
    setup.stop()
    functions = functions_of(fx)
    counts = {}
    for mode, extra in (("off", OFF), ("on", ON)):
        dump = os.path.join(tempfile.mkdtemp(), "callgrind.out")
        s = service(pg, args.port, extra, pool=4,
                    wrapper=["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}"])
        conn = s.connection()
        for name, requests in functions.items():
            def send(i):
                r = requests[i % len(requests)]
                status, body = s.request(r["method"], r["path"], {
                    "X-API-Key": fx.key, "Authorization": f"Bearer {r['token']}"},
                    json.loads(r["body"]) if r["body"] else None, conn=conn)
                assert status in (200, 201), (name, mode, status, body)
            for i in range(len(requests)):
                send(i)  # warm: every caller's first requests and a lease
            # Zero the counts, send, dump them (callgrind.out.N).
            pid = str(s.proc.pid)
            subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
            for i in range(args.counted):
                send(i)
            subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
            newest = max((f for f in os.listdir(os.path.dirname(dump))
                          if f.startswith("callgrind.out.")), key=lambda f: int(f.rsplit(".", 1)[1]))
            with open(os.path.join(os.path.dirname(dump), newest)) as f:
                total = next(int(line.split()[1]) for line in f if line.startswith("totals:"))
            counts[(name, mode)] = total / args.counted
            log(f"limits {mode}: {name} {total / args.counted:.0f} instructions a request")
        s.stop()
    return {name: {"off": counts[(name, "off")], "on": counts[(name, "on")],
                   "ratio": counts[(name, "on")] / counts[(name, "off")]}
            for name in functions}


def throughput(pg, args):
    """rps and service CPU per request of get-session and append-messages,
    limits off vs on, and a control: a second service with limits off, run
    like the others, whose ratio to the first shows what the bench itself
    makes of two equal services.

    The three run at once, each under its own wrk: on this shared machine
    back-to-back runs of one service differ by up to 30% (other tenants'
    load, CPU steal), which hides a few percent; run together, the three
    meet the same moment's machine and share it, so each round's ratio is
    how much each serves of the same CPU."""
    fresh_database(pg)
    setup = service(pg, args.port, OFF)
    fx = Fixture(setup, types.SimpleNamespace(users=args.users, sessions_per_user=1))
    setup.stop()
    functions = functions_of(fx)
    wrk_args = types.SimpleNamespace(connections=args.connections, duration=args.duration)
    modes = ("off", "on", "control")
    extra = {"off": OFF, "on": ON, "control": OFF}
    rps = {(name, mode): [] for name in functions for mode in modes}
    cpu_us = {(name, mode): [] for name in functions for mode in modes}
    ratios = {(name, mode): [] for name in functions for mode in ("on", "control")}
    cpu_ratios = {(name, mode): [] for name in functions for mode in ("on", "control")}
    for r in range(args.rounds):
        # Ports and start order rotate, so that neither favours a mode.
        order = modes[r % 3:] + modes[:r % 3]
        services = {mode: service(pg, args.port + i, extra[mode]) for i, mode in enumerate(order)}
        for name, requests in functions.items():
            fn = {"key": fx.key, "requests": requests}
            # Steady state: a fresh instance's first second has every
            # caller's first requests wait for one sync (README), which is
            # not the cost of counting.
            at_once(services, order, fn, wrk_args, 2)
            before = {mode: bench.cpu_seconds([services[mode].proc.pid]) for mode in modes}
            results = at_once(services, order, fn, wrk_args, args.duration)
            for mode in modes:
                result = results[mode]
                assert result["errors"] == 0, (name, mode, result)
                spent = bench.cpu_seconds([services[mode].proc.pid]) - before[mode]
                rps[(name, mode)].append(result["rps"])
                cpu_us[(name, mode)].append(1e6 * spent / max(result["requests"], 1))
            for mode in ("on", "control"):
                ratios[(name, mode)].append(rps[(name, mode)][-1] / rps[(name, "off")][-1])
                cpu_ratios[(name, mode)].append(cpu_us[(name, mode)][-1] / cpu_us[(name, "off")][-1])
            log(f"limits round {r} {name}: " + ", ".join(
                f"{mode} {rps[(name, mode)][-1]:.0f} rps {cpu_us[(name, mode)][-1]:.0f} us" for mode in modes))
        for s in services.values():
            s.stop()
    return {name: {**{mode: statistics.median(rps[(name, mode)]) for mode in modes},
                   **{f"{mode}_us": statistics.median(cpu_us[(name, mode)]) for mode in modes},
                   "ratio": statistics.median(ratios[(name, "on")]),
                   "control_ratio": statistics.median(ratios[(name, "control")]),
                   "cpu_ratio": statistics.median(cpu_ratios[(name, "on")]),
                   "control_cpu_ratio": statistics.median(cpu_ratios[(name, "control")]),
                   "ratios": [round(r, 3) for r in ratios[(name, "on")]],
                   "control_ratios": [round(r, 3) for r in ratios[(name, "control")]]}
            for name in functions}


def at_once(services, order, fn, wrk_args, duration):
    """One wrk run against each service, all at the same time."""
    results = {}

    def run(mode):
        results[mode] = wrk(services[mode], fn, wrk_args, duration=duration)

    threads = [threading.Thread(target=run, args=(mode,)) for mode in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


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
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--counted", type=int, default=600)
    parser.add_argument("--out", default=os.path.join(bench.ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()

    pg = Postgres(args.pg_port, args.log_dir, args.ca_file)
    result = {"throughput": throughput(pg, args), "instructions": instructions(pg, args),
              "overshoot": overshoot(pg, args), "counted": args.counted,
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
                    f"| {t['off_us']:.0f} | {t['on_us']:.0f} | {t['cpu_ratio']:.2f}× | {t['control_cpu_ratio']:.2f}× "
                    f"| ≥ 0.95×: {met(ratio >= 0.95)} |")
    def spread(field):
        return "; ".join(f"{min(t[field]):.2f}–{max(t[field]):.2f} ({name})"
                         for name, t in r["throughput"].items())

    counted_rows = []
    for name, c in r["instructions"].items():
        counted_rows.append(f"| {name} | {c['off']:,.0f} | {c['on']:,.0f} | {c['ratio']:.3f}× |")
    o = r["overshoot"]
    over = o["admitted"] - o["limit"]
    # The README's bound: the limit plus one request on trust per process.
    bound = o["processes"]
    section = f"""{BEGIN}
## Rate limits (issue 16)

`scripts/bench_limits.py`. **Cost**: limits off (`0`) against limits on
(every request counted in three policies and synced as its leases need,
at limits never reached) and a control (a second service with limits
off), the three run **at the same time**, each under its own wrk
({r['connections']} connections, {r['duration']} s, after a 2 s warm-up),
in {r['rounds']} rounds with ports and start order rotating; each figure is
the median over the rounds, a ratio the median of each round's ratio.
Together because on this shared machine back-to-back runs of one service
differ by up to 30% (other tenants' load, CPU steal) and would hide a few
percent; run at once, the three share the same moment's machine, so the
rps are each one's share of it (a third of what one alone serves) and a
round's ratio compares them under the same conditions. CPU is the service
process's user + system time per request. The control's ratios are what
the bench itself makes of two equal services: per round, on / off ranged
{spread('ratios')}, control / off {spread('control_ratios')}, so a median of
{r['rounds']} rounds is good to about ±5%; the instructions below are exact.

| function | off (rps) | on (rps) | on / off | control / off | off CPU (µs/request) | on CPU | on / off CPU | control / off CPU | target |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

**Instructions**, which do not depend on the machine's load: the service
under callgrind, {r['counted']} requests of each function one after another
(50 users, after one request of each), limits off and on, the same
requests in the same order; all the service's work is counted, its
background syncs included.

| function | off (instructions / request) | on | on / off |
|---|---|---|---|
{chr(10).join(counted_rows)}

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
