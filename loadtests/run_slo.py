"""One command for the latency/throughput SLO: ``python -m loadtests.run_slo``.

Starts a gateway on loopback (unless ``--target``), runs Locust headless for a bounded time
and user count, writes CSV + HTML + exact-latency reports into an output directory, prints a
short table in µs with the CPU of client and server, checks ``slo.toml`` and exits:
0 all SLOs met, 1 an SLO was breached, 2 the test itself could not run, 130 interrupted.
Whatever happens, it stops what it started.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from loadtests import report, slo
from loadtests.cpu import GATEWAY, CpuSampler, Usage
from loadtests.gateway import GatewayError, handler_means_us, local_gateway
from loadtests.locust_runner import RunError, cpu_split, locust_command, read_summary, run_locust

HERE = Path(__file__).resolve().parent
DEFAULT_SLO = HERE / "slo.toml"
EXIT_OK, EXIT_BREACH, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
LOCUST_EXTRA_S = 120  # pool building, ramp-up and report writing beyond the run time


@dataclass(frozen=True)
class Outcome:
    measured: slo.Measured
    usage: Usage
    server_us: dict[str, float]  # gateway in-handler means, if we started it


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.run_slo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--profile", default="default", help="[profiles.NAME] in the SLO file")
    parser.add_argument("--slo", type=Path, default=DEFAULT_SLO, help="SLO file (TOML)")
    parser.add_argument("--target", help="loopback host:port of a running gateway")
    parser.add_argument("--users", type=int, help="override the profile's user count")
    parser.add_argument("--spawn-rate", type=float, help="override users started per second")
    parser.add_argument("--run-time", type=int, help="override the run time in seconds")
    parser.add_argument("--processes", type=int, help="Locust processes (1: no master/workers)")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        help="gateway on the last CPU, Locust on the others (default: the profile's pin_cpus)",
    )
    parser.add_argument("--out", type=Path, help="report directory (default loadtests/reports/…)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a threshold for this run, e.g. p99_us.Screen=1000 or min_tps=3000",
    )
    return parser.parse_args(argv)


def loopback_target(target: str) -> str:
    """Only loopback: a load test must never point at someone else's gateway by accident."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or not port.isdigit():
        raise RunError(
            f"--target {target!r}: give a loopback address such as 127.0.0.1:50051; "
            "run the load test on the gateway's own host"
        )
    return target


def with_overrides(profile: slo.Profile, args: argparse.Namespace) -> slo.Profile:
    changes = {
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "run_time_s": args.run_time,
        "processes": args.processes,
        "pin_cpus": args.pin,
    }
    return replace(profile, **{k: v for k, v in changes.items() if v is not None})


def execute(profile: slo.Profile, target: str | None, out: Path) -> Outcome:
    """Gateway (unless given) + Locust + CPU sampling; everything is stopped on the way out."""
    summary_path = out / "latency_us.json"
    summary_path.unlink(missing_ok=True)  # never read a previous run's numbers
    sampler = CpuSampler()
    locust_cpus, gateway_cpus = cpu_split(profile.pin_cpus)
    metrics_port: int | None = None
    with ExitStack() as stack:
        if target is not None:
            where = "given"
        else:
            gateway = stack.enter_context(local_gateway(out / "gateway.log", gateway_cpus))
            sampler.watch(GATEWAY, gateway.pid)
            target, where, metrics_port = gateway.address, "started here", gateway.metrics_port
        sampler.start()
        stack.callback(sampler.stop)
        print(
            f"load test: profile {profile.name}, {profile.users} users, {profile.run_time_s} s "
            f"against {target} ({where}); reports in {out}",
            flush=True,
        )
        code = run_locust(
            locust_command(profile, target, out, summary_path),
            out / "locust.log",
            sampler,
            profile.run_time_s + LOCUST_EXTRA_S,
            locust_cpus,
        )
        server_us = handler_means_us(metrics_port)  # while the gateway still runs
    measured, (first, last) = read_summary(summary_path, code, out / "locust.log")
    return Outcome(measured, sampler.usage(first, last), server_us)


def judge(outcome: Outcome, profile: slo.Profile, thresholds: slo.Thresholds, out: Path) -> int:
    """Print the table and the SLO checks; write them beside the reports; the exit code."""
    measured = outcome.measured
    header = (
        f"{profile.users} users, {profile.processes} Locust process(es), "
        f"{measured.seconds:.1f} s measured, {measured.tps:,.0f} tx/s screened"
    )
    print(report.format_table(header, measured, outcome.usage, profile.processes))
    if outcome.server_us:
        print(report.server_line(outcome.server_us))
    report.write_csv(out / "latency_us.csv", measured)
    checks = slo.evaluate(thresholds, measured)
    lines = [("PASS " if c.passed else "FAIL ") + c.text for c in checks]
    (out / "slo.txt").write_text("\n".join(lines) + "\n")
    print(f"SLO (profile {profile.name}):")
    print("\n".join("  " + line for line in lines))
    if all(c.passed for c in checks):
        print("all SLOs met")
        return EXIT_OK
    print(
        "SLO breached. What to do: read the CPU line (a load generator near 100% means the "
        f"client was the limit), then {out / 'report.html'} and {out / 'gateway.log'}; "
        "compare with a baseline run of the previous release on the same idle machine "
        "before blaming the code or changing slo.toml."
    )
    return EXIT_BREACH


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stop children the same way as on Ctrl-C
    started = time.monotonic()
    try:
        profile, thresholds = slo.load(args.slo, args.profile, args.set)
        profile = with_overrides(profile, args)
        target = loopback_target(args.target) if args.target else None
        out = args.out or HERE / "reports" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out.mkdir(parents=True, exist_ok=True)
        return judge(execute(profile, target, out), profile, thresholds, out)
    except (slo.SloFileError, GatewayError, RunError) as exc:
        print(f"load test error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            f"interrupted after {time.monotonic() - started:.0f} s; everything this command "
            "started was stopped; partial reports may be in the output directory",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
