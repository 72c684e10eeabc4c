"""Service benchmark: in-process screening, unary, streaming and batched gRPC, sync vs aio.

    python -m loadtests.bench_service [--quick]

prints Markdown tables (for the README) on stdout and progress lines on stderr. The full
run takes about 5 minutes, ``--quick`` about two minutes. Loopback only.

Why it is built this way:

- Every comparison is against a baseline measured in the same run: LightGBM's own
  ``Booster.predict`` for the model (``FRAUDSCREEN_MODEL_PREDICTOR=lightgbm``, the same
  server otherwise), and the sync ``grpc.server`` fraudscreen ships for the serving stack.
  Read the ratios; absolute µs depend on the machine.
- For the gRPC numbers the gateway runs in its own process (``fraudscreen serve``, or the
  ``grpc.aio`` variant built here around the very same ``Gateway`` objects) and the load
  comes from separate client processes: a Python client in the server's process would
  fight it for the GIL. On a 2-core gateway client and server still share the CPU, so
  the CPU each side used (psutil, same window) is printed beside every number.
- Traffic is the simulator's terminal traffic (cards come back, terminals repeat), sent
  in time order, pre-serialized so client CPU goes to gRPC rather than building messages.
  Every request carries a transaction_id unique to this run and server, so nothing is an
  idempotent retry. Responses are parsed and their decisions counted.
- Closed loop: each client thread sends its next request when the previous one answered
  (unary, and ScreenBatch with a whole batch per call); a stream keeps a fixed window of
  messages in flight (streaming).
- The servers run as shipped: the gateway freezes its start-up state out of the GC
  (``gc.freeze()``, then every 30 s); the in-process engines and the aio variant do too.
- Interleaved: all servers are up at once and each load shape runs on every one of them
  in turn (rotating order), so drift hurts every contender alike. The CPU other
  processes use is measured per phase; a disturbed phase is repeated once (within a
  bounded budget) and flagged, and left out of the sync-vs-aio verdict.
- The transport floor (``--echo`` servers: same gRPC server, a fixed answer) shows what
  gRPC itself costs per call here, so fraudscreen's own share can be read off.
- Nothing asserts a timing: the DESIGN.md targets, and issue 16's serving targets beside
  the empty-handler server of the same run, are printed PASS/MISS with the numbers.

This module is the entry point; the pieces live in ``loadtests/bench/``: plan (servers,
shapes, targets), stats, traffic, in_process (section 1), servers (the server processes
and the variants built here), clients (the load), shapes (phases measured on every
server in turn), report, verdicts and serving_targets (the Markdown tables).
tests/unit/loadtests/ checks their parsing, summaries and verdicts.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence

from loadtests.bench.clients import ClientPool
from loadtests.bench.in_process import bench_in_process
from loadtests.bench.plan import CLIENT_PROCESSES, FULL, QUICK, progress
from loadtests.bench.report import (
    report_environment,
    report_in_process,
    report_stream,
    report_unary,
)
from loadtests.bench.servers import serve_variant
from loadtests.bench.serving_targets import report_serving_targets
from loadtests.bench.shapes import RetryBudget, bench_servers
from loadtests.bench.traffic import load_requests
from loadtests.bench.verdicts import (
    report_floor,
    report_settings,
    report_sync_vs_aio,
    report_targets,
)


def run(quick: bool) -> int:
    plan = QUICK if quick else FULL
    began = time.monotonic()
    # SIGTERM -> SystemExit, so the finally blocks stop the servers and clients we started.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    from fraudscreen.logs import configure_logging

    configure_logging(json=True, level="warning")  # stdout is for the tables
    progress("loading simulated traffic")
    requests = load_requests()
    progress(f"{len(requests):,} transactions")
    run_id = f"b{int(time.time()) % 10**8:x}"
    retry = RetryBudget(plan.retry_seconds)
    in_process = bench_in_process(requests, plan.in_process_transactions, retry)
    pool = ClientPool(CLIENT_PROCESSES)
    try:
        results = bench_servers(plan, requests, pool, run_id, retry)
    finally:
        pool.close()
    sections = [
        report_environment(plan, quick, len(requests), in_process, results),
        report_in_process(in_process),
        report_unary(results, plan),
        report_stream(results, plan),
        report_sync_vs_aio(results, plan),
        report_floor(results, plan),
        report_settings(results, plan),
        report_targets(in_process, results, plan),
        report_serving_targets(in_process.screen["native"], results, plan),
        f"_Run time {time.monotonic() - began:.0f} s._",
    ]
    print("\n\n".join(sections))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_service",
        description="Service benchmark: in-process, unary, streaming and batched gRPC, "
        "sync vs aio.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="shorter phases, only the sync empty handler (about two minutes)",
    )
    parser.add_argument("--serve", choices=("sync", "aio"), help=argparse.SUPPRESS)
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:  # internal: a server variant, started by ServerProcess
        return serve_variant(args.serve, args.echo)
    return run(args.quick)


if __name__ == "__main__":
    sys.exit(main())
