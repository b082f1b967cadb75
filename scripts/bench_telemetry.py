#!/usr/bin/env python3
"""The cost of telemetry (issue 19): get-session and append-messages
throughput with telemetry off, on with every trace kept (sampling 1) and
on with the deployed sampling (0.1), all exporting to a local OTLP/HTTP
receiver; a control service (off again) shows what the bench itself makes
of two equal services. Also each service's resident memory when idle.
Writes its section of docs/benchmarks.md.

Run through scripts/bench.sh (BENCH_ONLY=telemetry runs this alone). Uses
bench.py's PostgreSQL and service drivers. Standard library only.
"""

import argparse
import http.server
import json
import os
import statistics
import sys
import threading
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import Fixture, Postgres, log, wrk  # noqa: E402

DB = "bench_telemetry"
BEGIN, END = "<!-- telemetry: begin -->", "<!-- telemetry: end -->"
MODES = ("off", "on 100%", "on 10%", "control")


class Receiver:
    """An OTLP/HTTP endpoint that takes every export and answers 200 with
    an empty (valid) protobuf response, counting what it got."""

    def __init__(self):
        counts = self.counts = {"requests": 0, "bytes": 0}
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    counts["requests"] += 1
                    counts["bytes"] += len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def settings(mode, receiver, tls):
    """Every service connects to PostgreSQL over TLS as deployed, so that
    each has OpenSSL loaded whether or not its exporter needs it."""
    if mode in ("off", "control"):
        return {"TELEMETRY_ENABLED": "false", **tls}
    return {"TELEMETRY_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_TRACES_SAMPLER_ARG": "1" if mode == "on 100%" else "0.1", **tls}


def measure(pg, args):
    bench.own_database(pg, DB)
    receiver = Receiver()
    tls = bench.as_deployed(args.ca_file)
    setup = bench.service_on(pg, DB, args.port, {"TELEMETRY_ENABLED": "false"})
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
    rps = {(name, mode): [] for name in functions for mode in MODES}
    ratios = {(name, mode): [] for name in functions for mode in MODES[1:]}
    idle_rss = {mode: [] for mode in MODES}
    loaded_rss = {mode: [] for mode in MODES}
    for r in range(args.rounds):
        # All services up at once, each function run on one right after the
        # other, the order rotating: the machine's drift falls on all alike,
        # and each round gives paired ratios.
        services = {mode: bench.service_on(pg, DB, args.port + i, settings(mode, receiver, tls),
                                           sslmode="require")
                    for i, mode in enumerate(MODES)}
        order = MODES[r % len(MODES):] + MODES[:r % len(MODES)]
        if r % (2 * len(MODES)) >= len(MODES):
            order = order[::-1]
        # Idle as bench.py measures it: started and one health check made
        # (the pool, and with telemetry on the exporter and its first
        # spans), then left alone.
        for mode in order:
            status, _ = services[mode].request("GET", "/api/health")
            assert status == 200, (mode, status)
        time.sleep(args.idle_secs)
        for mode in order:
            idle_rss[mode].append(services[mode].rss_kib() / 1024)
        for mode in order:
            for requests in functions.values():
                wrk(services[mode], {"key": fx.key, "requests": requests}, wrk_args, duration=1)
        for name, requests in functions.items():
            for mode in order:
                result = wrk(services[mode], {"key": fx.key, "requests": requests}, wrk_args)
                assert result["errors"] == 0, (name, mode, result)
                rps[(name, mode)].append(result["rps"])
                log(f"telemetry {mode}: {name} {result['rps']:.0f} rps")
            for mode in MODES[1:]:
                ratios[(name, mode)].append(rps[(name, mode)][-1] / rps[(name, "off")][-1])
        for mode in order:
            loaded_rss[mode].append(services[mode].rss_kib() / 1024)
        for s in services.values():
            s.stop()
    return {
        "functions": {name: {mode: {"rps": statistics.median(rps[(name, mode)]),
                                    "ratio": statistics.median(ratios[(name, mode)])
                                    if mode != "off" else 1.0,
                                    "ratios": [round(x, 3) for x in ratios.get((name, mode), [])]}
                             for mode in MODES}
                      for name in functions},
        "idle_rss_mib": {mode: max(v) for mode, v in idle_rss.items()},
        "loaded_rss_mib": {mode: max(v) for mode, v in loaded_rss.items()},
        "exports": receiver.counts,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--port", type=int, default=7430)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--idle-secs", type=float, default=2.0)
    parser.add_argument("--out", default=os.path.join(bench.ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()

    pg = Postgres(args.pg_port, args.log_dir, args.ca_file)
    result = measure(pg, args)
    result.update(duration=args.duration, rounds=args.rounds, connections=args.connections,
                  idle_secs=args.idle_secs)
    log(json.dumps(result, indent=2))
    write(args.out, result)


def write(path, r):
    def met(ok):
        return "met" if ok else "**not met**"

    rows = []
    for name, by_mode in r["functions"].items():
        cells = " | ".join(f"{by_mode[m]['rps']:.0f}" for m in MODES)
        worst = min(by_mode[m]["ratio"] for m in ("on 100%", "on 10%"))
        rows.append(f"| {name} | {cells} | {by_mode['on 100%']['ratio']:.2f}× "
                    f"| {by_mode['on 10%']['ratio']:.2f}× | {by_mode['control']['ratio']:.2f}× "
                    f"| ≥ 0.95×: {met(worst >= 0.95)} |")
    rss = r["idle_rss_mib"]
    rss_cells = ", ".join(f"{m} {rss[m]:.1f} MiB" for m in MODES)
    loaded = ", ".join(f"{m} {r['loaded_rss_mib'][m]:.1f} MiB" for m in MODES)
    section = f"""{BEGIN}
## Telemetry (issue 19)

`scripts/bench_telemetry.py`. **Cost**: requests per second through wrk
({r['connections']} connections, {r['duration']} s runs, median of
{r['rounds']} rounds; a ratio is the median of each round's ratio to off,
the runs of a round back to back in rotating order). Off is
`TELEMETRY_ENABLED=false`; on exports traces and metrics over OTLP/HTTP to a
local receiver, keeping every trace (100%) or the deployed 10%. Every
service connects to PostgreSQL over TLS verified against the shipped Azure
roots, as deployed. The control
is a second service with telemetry off, run like the others: its ratio to
the first is what the bench itself makes of two equal services.

| function | off (rps) | on 100% | on 10% | control | on 100% / off | on 10% / off | control / off | target |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

**Idle memory** (VmRSS after start, one health check and {r['idle_secs']:g} s
of rest, as bench.py measures it; the highest of the rounds): {rss_cells}
(target < 20 MiB: {met(max(rss.values()) < 20)}); telemetry adds
{max(rss['on 100%'], rss['on 10%']) - rss['off']:.1f} MiB to the service with it off. After the runs
(what the allocator keeps of their peak): {loaded}. The receiver took
{r['exports']['requests']} exports, {r['exports']['bytes'] / 1e6:.1f} MB.
{END}
"""
    bench.replace_section(path, BEGIN, END, section)


if __name__ == "__main__":
    bench.run(main)
