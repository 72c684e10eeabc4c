"""The SLO file: thresholds that decide the exit code, and the load profiles they apply to.

``slo.toml`` has one ``[slo]`` table (the promise) and ``[profiles.NAME]`` tables (how much
load, for how long, which mix). A profile may carry its own ``[profiles.NAME.slo]`` with
looser or stricter numbers, merged over ``[slo]``. ``--set KEY=VALUE`` overrides one
threshold for one run (``p50_us.Screen=1``, ``min_tps=5000``, ``max_error_ratio=0``).
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests import options
from loadtests.latency import PERCENTILES, NameStats, percentile_key

PERCENTILE_KEYS = tuple(percentile_key(p) for p in PERCENTILES)  # p50_us, p90_us, ...
SCALAR_KEYS = ("max_error_ratio", "min_tps")


class SloFileError(ValueError):
    """The SLO file or an override is malformed; the message names the key and the fix."""


@dataclass(frozen=True)
class Profile:
    name: str
    users: int
    spawn_rate: float
    run_time_s: int
    processes: int
    mix: str
    stream_batch: str
    retry_share: float
    traffic_days: int
    traffic_limit: int
    pace: float
    pin_cpus: bool  # gateway on the last CPU, Locust on the others (needs >= 2 CPUs)


@dataclass(frozen=True)
class Thresholds:
    max_error_ratio: float
    min_tps: float
    latency_us: dict[str, dict[str, float]]  # "p99_us" -> request name -> limit


@dataclass(frozen=True)
class Check:
    passed: bool
    text: str  # e.g. "p99 Screen 1430 µs > 1000 µs (+43%)"


_PROFILE_TYPES: dict[str, type] = {
    "users": int,
    "spawn_rate": float,
    "run_time_s": int,
    "processes": int,
    "mix": str,
    "stream_batch": str,
    "retry_share": float,
    "traffic_days": int,
    "traffic_limit": int,
    "pace": float,
    "pin_cpus": bool,
}


def load(path: Path, profile: str, overrides: list[str]) -> tuple[Profile, Thresholds]:
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SloFileError(f"cannot read SLO file {path}: {exc}") from None
    profiles = document.get("profiles", {})
    if profile not in profiles:
        raise SloFileError(
            f"{path}: no [profiles.{profile}]; choose one of {', '.join(sorted(profiles))}"
        )
    table = dict(profiles[profile])
    slo = _merge(document.get("slo", {}), table.pop("slo", {}))
    for override in overrides:
        _apply_override(slo, override)
    return _profile(path, profile, table), _thresholds(path, slo)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _apply_override(slo: dict[str, Any], override: str) -> None:
    key, equals, text = override.partition("=")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not equals or value != value:
        raise SloFileError(f"--set {override!r}: write KEY=NUMBER, e.g. p99_us.Screen=1000")
    group, dot, name = key.strip().partition(".")
    if dot and group in PERCENTILE_KEYS and name:
        slo.setdefault(group, {})[name] = value
    elif not dot and group in SCALAR_KEYS:
        slo[group] = value
    else:
        raise SloFileError(
            f"--set {override!r}: KEY is one of {', '.join(SCALAR_KEYS)} or "
            f"{'|'.join(PERCENTILE_KEYS)}.<request name>, e.g. p50_us.Screen"
        )


def _profile(path: Path, name: str, table: dict[str, Any]) -> Profile:
    missing = sorted(set(_PROFILE_TYPES) - set(table))
    unknown = sorted(set(table) - set(_PROFILE_TYPES))
    if missing or unknown:
        raise SloFileError(
            f"{path} [profiles.{name}]: missing {missing or 'nothing'}, unknown {unknown or 'none'}"
            f"; the keys are {', '.join(_PROFILE_TYPES)}"
        )
    values: dict[str, Any] = {}
    for key, kind in _PROFILE_TYPES.items():
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise SloFileError(
                f"{path} [profiles.{name}] {key} = {value!r}: must be {kind.__name__}"
            )
        values[key] = value
    try:  # the same parsing Locust will do, so a typo fails here and not in a worker
        options.parse_mix(values["mix"])
        options.parse_batch(values["stream_batch"])
    except ValueError as exc:
        raise SloFileError(f"{path} [profiles.{name}]: {exc}") from None
    if values["users"] < 1 or values["run_time_s"] < 1 or values["processes"] < 1:
        raise SloFileError(f"{path} [profiles.{name}]: users, run_time_s, processes must be >= 1")
    return Profile(name=name, **values)


def _thresholds(path: Path, slo: dict[str, Any]) -> Thresholds:
    unknown = sorted(set(slo) - set(SCALAR_KEYS) - set(PERCENTILE_KEYS))
    if unknown:
        raise SloFileError(
            f"{path} [slo]: unknown keys {unknown}; use {', '.join(SCALAR_KEYS + PERCENTILE_KEYS)}"
        )
    for key in SCALAR_KEYS:
        if not isinstance(slo.get(key), int | float):
            raise SloFileError(f"{path} [slo]: {key} must be a number")
    latency = {
        key: {str(n): float(v) for n, v in slo.get(key, {}).items()} for key in PERCENTILE_KEYS
    }
    return Thresholds(float(slo["max_error_ratio"]), float(slo["min_tps"]), latency)


@dataclass(frozen=True)
class Measured:
    """What a run produced, in the terms the thresholds use."""

    names: dict[str, NameStats]
    seconds: float

    @property
    def calls(self) -> int:
        return sum(s["calls"] for s in self.names.values())

    @property
    def failures(self) -> int:
        return sum(s["failures"] for s in self.names.values())

    @property
    def transactions(self) -> int:
        return sum(s["transactions"] for s in self.names.values())

    @property
    def tps(self) -> float:
        return self.transactions / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_ratio(self) -> float:
        return self.failures / self.calls if self.calls else 1.0


def _relative(value: float, limit: float) -> str:
    return f" ({(value - limit) / limit:+.0%})" if limit else ""


def evaluate(thresholds: Thresholds, measured: Measured) -> list[Check]:
    checks: list[Check] = []
    for key, limits in thresholds.latency_us.items():
        label = key.removesuffix("_us").replace("p999", "p99.9")
        for name, limit in sorted(limits.items()):
            stats = measured.names.get(name)
            value = None if stats is None else dict(stats).get(key)
            if not isinstance(value, int | float):
                checks.append(
                    Check(False, f"{label} {name}: no successful {name} calls were measured")
                )
                continue
            ok = value <= limit
            sign = "<=" if ok else ">"
            text = f"{label} {name} {value:,.0f} µs {sign} {limit:,.0f} µs"
            checks.append(Check(ok, text + ("" if ok else _relative(value, limit))))
    tps, floor = measured.tps, thresholds.min_tps
    ok = tps >= floor
    text = f"throughput {tps:,.0f} tx/s {'>=' if ok else '<'} {floor:,.0f} tx/s"
    checks.append(Check(ok, text + ("" if ok else _relative(tps, floor))))
    ratio, ceiling = measured.error_ratio, thresholds.max_error_ratio
    ok = ratio <= ceiling and measured.calls > 0
    text = (
        f"error ratio {ratio:.3%} {'<=' if ok else '>'} {ceiling:.3%} "
        f"({measured.failures:,} failed of {measured.calls:,} calls)"
    )
    checks.append(Check(ok, text))
    return checks
