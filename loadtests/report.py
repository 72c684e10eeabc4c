"""The short table a run prints (and the same numbers as CSV), in microseconds."""

from __future__ import annotations

import csv
from pathlib import Path

from loadtests.cpu import GATEWAY, LOAD_GENERATOR, MACHINE, Usage
from loadtests.latency import ITEM_SUFFIX
from loadtests.slo import Measured

COLUMNS = ("request", "calls", "fails", "calls/s", "tx/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs")
CLIENT_BOUND_PERCENT = 90.0  # one Locust process cannot use more than one core
OTHERS_LIMIT_PERCENT = 25.0  # more than this from other processes: not an idle machine


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def rows(measured: Measured) -> list[list[str]]:
    seconds = measured.seconds or float("nan")
    table: list[list[str]] = []
    for name, stats in measured.names.items():
        item = name.endswith(ITEM_SUFFIX)
        table.append(
            [
                name,
                "-" if item else f"{stats['calls']:,}",
                "-" if item else f"{stats['failures']:,}",
                "-" if item else _number(stats["calls"] / seconds, 1),
                _number(stats["transactions"] / seconds, 1) if stats["transactions"] else "-",
                *(_number(stats[key]) for key in ("p50_us", "p90_us", "p99_us", "p999_us")),
            ]
        )
    table.append(
        [
            "total",
            f"{measured.calls:,}",
            f"{measured.failures:,}",
            _number(measured.calls / seconds, 1),
            _number(measured.tps, 1),
            "",
            "",
            "",
            "",
        ]
    )
    return table


def server_line(means_us: dict[str, float]) -> str:
    """The gateway's own view: what part of a call is its work, the rest being transport."""
    parts = ", ".join(f"{method} {value:,.0f} µs" for method, value in means_us.items())
    return f"gateway in-handler time per item (mean, from its metrics): {parts}"


def _others(usage: Usage) -> float | None:
    """CPU of everything but the load generator and the gateway (None if unknown)."""
    percent = usage.percent_of_core
    if MACHINE not in percent:
        return None
    return max(percent[MACHINE] - percent.get(LOAD_GENERATOR, 0) - percent.get(GATEWAY, 0), 0)


def cpu_line(usage: Usage) -> str:
    percent = usage.percent_of_core
    parts = [
        f"{role} {percent[role]:.0f}%" for role in (LOAD_GENERATOR, GATEWAY) if role in percent
    ]
    others = _others(usage)
    if others is not None:
        rest = "everything else" if GATEWAY in percent else "rest of machine (incl. the gateway)"
        parts.append(f"{rest} {others:.0f}%")
        parts.append(f"whole machine {percent[MACHINE]:.0f}% of {100 * usage.cores}%")
    return "CPU (100% = one core): " + (", ".join(parts) or "not measured")


def notes(usage: Usage, processes: int) -> list[str]:
    """Who was the limit, and whether something else disturbed the run."""
    percent = usage.percent_of_core
    found = []
    if percent.get(LOAD_GENERATOR, 0.0) >= CLIENT_BOUND_PERCENT * max(processes, 1):
        found.append(
            "note: the load generator used all the CPU it can; the client may be the limit and "
            "latencies include client-side queueing (fewer users, or more --processes on a "
            "machine with spare cores)"
        )
    if percent.get(MACHINE, 0.0) >= 0.9 * 100 * usage.cores:
        found.append("note: all CPUs were busy; load generator and gateway competed for cores")
    others = _others(usage)
    if GATEWAY in percent and others is not None and others > OTHERS_LIMIT_PERCENT:
        found.append(
            f"warning: other processes (or kernel work) used {others:.0f}% of a core during the "
            "run, so these are not an idle machine's numbers; check `top` and rerun when idle"
        )
    return found


def format_table(header: str, measured: Measured, usage: Usage, processes: int) -> str:
    table = [list(COLUMNS), *rows(measured)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = [header]
    for row in table:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    lines.append(cpu_line(usage))
    lines.extend(notes(usage, processes))
    return "\n".join(lines)


def write_csv(path: Path, measured: Measured) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows(measured))
