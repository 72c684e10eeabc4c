"""Section 1: screening in-process (no gRPC), by stage, against LightGBM's own predict."""

from __future__ import annotations

import gc
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudscreen.v1 import screening_pb2 as pb
from loadtests.bench.plan import BLOCK, FOREIGN_WARNING, IN_PROCESS_WARMUP, progress
from loadtests.bench.servers import ForeignLoad
from loadtests.bench.shapes import RetryBudget
from loadtests.bench.stats import Latency, us
from loadtests.bench.traffic import assign_ids, gateway_env

if TYPE_CHECKING:  # only for annotations
    from fraudscreen.gateway.server import Gateway


def engine_only_gateway(directory: Path, predictor: str) -> Gateway:
    """A Gateway with journal, state and model up but no gRPC server: the domain alone."""
    from fraudscreen.config import load_config
    from fraudscreen.gateway.server import Gateway, settle_garbage_collector

    gateway = Gateway(load_config(None, gateway_env(directory, predictor)))
    gateway.journal.start()
    gateway.engine.restore()
    gateway.load_model()
    if gateway.engine.stand_in_active:
        raise RuntimeError(f"no model loaded for predictor={predictor}; see the log above")
    settle_garbage_collector()  # as Gateway.become_ready: start-up state frozen out of the GC
    gateway.servicer.ready = True
    return gateway


class StageClock:
    """Times every call of chosen methods of a live engine, leaving behaviour unchanged.

    The wrappers cost ~0.2 µs a call, which is why the headline numbers come from a
    separate, uninstrumented run.
    """

    def __init__(self) -> None:
        self.samples: dict[str, list[int]] = {}

    def instrument(self, owner: object, method: str, stage: str) -> None:
        original: Callable[..., Any] = getattr(owner, method)
        samples = self.samples.setdefault(stage, [])
        clock = time.perf_counter_ns

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = clock()
            try:
                return original(*args, **kwargs)
            finally:
                samples.append(clock() - began)

        setattr(owner, method, timed)


class GcPauses:
    """Records how long each garbage collection takes while active, by generation.

    A collection stops every Python thread, so it is what a hot loop's p99.9 is made of.
    """

    def __init__(self) -> None:
        self.pauses_ns: dict[int, list[int]] = {0: [], 1: [], 2: []}
        self._began = 0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter_ns()
        else:
            self.pauses_ns[info["generation"]].append(time.perf_counter_ns() - self._began)

    def summary(self) -> str:
        parts = []
        for generation, pauses in self.pauses_ns.items():
            if pauses:
                lat = Latency.of(pauses)
                parts.append(
                    f"gen{generation} ×{lat.count} (median {us(lat.p50)} µs, "
                    f"max {us(max(pauses) / 1000)} µs)"
                )
        return ", ".join(parts) or "none"


@dataclass
class InProcessResult:
    screen: dict[str, Latency]  # predictor -> validate + engine.screen, uninstrumented
    stages: dict[str, dict[str, Latency]]  # predictor -> stage -> latency
    decisions: Counter[str]
    reason_share: float  # share of transactions that needed reason codes
    collections: str  # garbage collections during the uninstrumented run
    foreign_cores: float  # CPU other processes used meanwhile


def _screen_once(gateway: Gateway, request: pb.ScreenRequest) -> None:
    gateway.engine.screen(gateway.validator.transaction(request))


def time_screens(
    gateways: dict[str, Gateway], requests: Sequence[pb.ScreenRequest]
) -> tuple[dict[str, list[int]], Counter[str]]:
    """validate+tokenize+screen per transaction; gateways alternate block by block."""
    clock = time.perf_counter_ns
    samples: dict[str, list[int]] = {name: [] for name in gateways}
    decisions: Counter[str] = Counter()
    for gateway in gateways.values():
        for request in requests[:IN_PROCESS_WARMUP]:
            _screen_once(gateway, request)
    for start in range(IN_PROCESS_WARMUP, len(requests), BLOCK):
        block = requests[start : start + BLOCK]
        for name, gateway in gateways.items():
            out = samples[name]
            validate, screen = gateway.validator.transaction, gateway.engine.screen
            for request in block:
                began = clock()
                result = screen(validate(request))
                out.append(clock() - began)
                if name == "native":
                    decisions[result.decision.name] += 1
    return samples, decisions


def time_stages(gateway: Gateway, requests: Sequence[pb.ScreenRequest]) -> dict[str, Latency]:
    """Where one screen's time goes, per transaction, on an instrumented engine."""
    model = gateway.slot.current
    assert model is not None
    stages = StageClock()
    stages.instrument(gateway.engine.store, "add", "features")
    stages.instrument(model.predictor, "predict_row", "model")
    stages.instrument(gateway.policy, "decide", "policy")
    stages.instrument(model.explainer, "contributions", "reasons")
    for request in requests[:IN_PROCESS_WARMUP]:
        _screen_once(gateway, request)
    for samples in stages.samples.values():
        samples.clear()
    clock = time.perf_counter_ns
    validate_ns: list[int] = []
    screen_ns: list[int] = []
    for request in requests[IN_PROCESS_WARMUP:]:
        began = clock()
        tx = gateway.validator.transaction(request)
        validated = clock()
        gateway.engine.screen(tx)
        screen_ns.append(clock() - validated)
        validate_ns.append(validated - began)
    parts = stages.samples
    rest = np.asarray(screen_ns, dtype=np.int64)
    for stage in ("features", "model", "policy"):  # once per screen each, so they line up
        rest = rest - np.asarray(parts[stage], dtype=np.int64)
    return {
        "validate": Latency.of(validate_ns),
        "features": Latency.of(parts["features"]),
        "model": Latency.of(parts["model"]),
        "policy": Latency.of(parts["policy"]),
        "reasons": Latency.of(parts["reasons"]),
        "rest": Latency.of(rest),
        "total": Latency.of(np.asarray(screen_ns) + np.asarray(validate_ns)),
    }


@dataclass
class _Screens:
    samples: dict[str, list[int]]
    decisions: Counter[str]
    collections: str
    foreign_cores: float
    seconds: float


def _timed_screens(root: Path, sample: Sequence[pb.ScreenRequest]) -> _Screens:
    """Fresh native and LightGBM engines screen the same sample, interleaved."""
    began = time.monotonic()
    gateways = {p: engine_only_gateway(root / p, p) for p in ("native", "lightgbm")}
    try:
        foreign = ForeignLoad([])
        with GcPauses() as collections:
            samples, decisions = time_screens(gateways, sample)
        foreign_cores = foreign.cores()
    finally:
        for gateway in gateways.values():
            gateway.stop(grace=0)
    elapsed = time.monotonic() - began
    return _Screens(samples, decisions, collections.summary(), foreign_cores, elapsed)


def bench_in_process(
    requests: Sequence[pb.ScreenRequest], count: int, retry: RetryBudget
) -> InProcessResult:
    """Section 1: the domain without gRPC, native vs LightGBM on identical traffic."""
    sample = list(requests[: IN_PROCESS_WARMUP + count])
    assign_ids(sample, "inproc")
    with tempfile.TemporaryDirectory(prefix="bench-inproc-") as tmp:
        root = Path(tmp)
        progress(f"in-process: timing {count:,} screens per predictor, interleaved")
        screens = _timed_screens(root / "clean", sample)
        if screens.foreign_cores > FOREIGN_WARNING and retry.take(screens.seconds):
            progress(f"  other processes used {screens.foreign_cores:.2f} cores: repeating once")
            again = _timed_screens(root / "again", sample)
            screens = min(screens, again, key=lambda s: s.foreign_cores)
        stages: dict[str, dict[str, Latency]] = {}
        for predictor in ("native", "lightgbm"):
            progress(f"in-process: stage breakdown, {predictor}")
            gateway = engine_only_gateway(root / f"stages-{predictor}", predictor)
            try:
                stages[predictor] = time_stages(gateway, sample)
            finally:
                gateway.stop(grace=0)
    return InProcessResult(
        screen={name: Latency.of(values) for name, values in screens.samples.items()},
        stages=stages,
        decisions=screens.decisions,
        collections=screens.collections,
        foreign_cores=screens.foreign_cores,
        reason_share=stages["native"]["reasons"].count / max(1, stages["native"]["model"].count),
    )
