"""Locust load test of the fraudscreen gateway's Screening service (gRPC).

Each user runs a configurable mix (``--fs-mix``) of:
- ``Screen``: one simulated transaction, unary; a small share (``--fs-retry-share``) is then
  re-sent unchanged and must come back ``replayed=true`` and equal ("Screen retry");
- ``ScreenStream``: one bidi call carrying a batch of 10-50 transactions (``--fs-stream-batch``),
  reported as ONE request per batch; exact per-item latencies are kept as "ScreenStream item";
- ``ReportOutcome``: a confirmed fraud for a fraud this user already screened (skipped while
  none is waiting, so its weight is an upper bound).

Run by hand (from the repository root)::

    python -m locust -f loadtests/locustfile.py --headless -u 4 -r 4 -t 30s \\
        --host 127.0.0.1:50051 --fs-summary-out latency.json

or let ``python -m loadtests.run_slo`` start a gateway, run this and check the SLOs.
"""

from __future__ import annotations

# First: patches gRPC for gevent before any channel is created.
from loadtests.grpc_user import ScreeningGrpcUser  # isort: skip

import argparse
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import grpc
from locust import constant_throughput, events, task
from locust.env import Environment
from locust.exception import LocustError
from locust.runners import MasterRunner

from fraudscreen.v1 import screening_pb2 as pb
from loadtests import options, recording, traffic
from loadtests.checks import REPORT_OUTCOME, SCREEN, SCREEN_STREAM


@dataclass
class _Process:
    """What every user of this Locust process shares, set up once by the init event."""

    settings: options.LoadOptions | None = None
    pool: list[traffic.Pooled] = field(default_factory=list)


_process = _Process()
_user_numbers = itertools.count()


def _add_arguments(parser: argparse.ArgumentParser, **_: Any) -> None:
    options.add_arguments(parser)


def _on_init(environment: Environment, **_: Any) -> None:
    settings = options.from_parsed(environment.parsed_options)
    _process.settings = settings
    recording.install(environment, settings.summary_out)
    if not isinstance(environment.runner, MasterRunner):  # the master sends nothing
        _process.pool = traffic.build_pool(settings.traffic_days, settings.traffic_limit)


events.init_command_line_parser.add_listener(_add_arguments)
events.init.add_listener(_on_init)


class FraudscreenUser(ScreeningGrpcUser):
    """A POS host: screens transactions one by one or in batches and reports frauds."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        settings = _process.settings
        if settings is None or not _process.pool:
            raise LocustError("the locustfile's init hook did not run; start it with locust -f")
        number = next(_user_numbers)
        self.rng = random.Random(f"{traffic.RUN_TOKEN}.{number}")  # differs per process/run
        self.settings = settings
        self.traffic = traffic.UserTraffic(_process.pool, number, self.rng)
        self._actions = list(settings.mix)
        self._weights = [settings.mix[a] for a in self._actions]
        self._pacer = constant_throughput(settings.pace) if settings.pace > 0 else None

    def wait_time(self) -> float:
        return 0.0 if self._pacer is None else float(self._pacer(self))

    @task  # type: ignore[untyped-decorator]  # locust is untyped
    def step(self) -> None:
        action = self.rng.choices(self._actions, self._weights)[0]
        if action == SCREEN:
            self.screen()
        elif action == SCREEN_STREAM:
            self.screen_stream()
        elif action == REPORT_OUTCOME:
            self.report_outcome()

    def screen(self) -> None:
        item = self.traffic.next()
        try:
            response = self.stub.Screen(item.request, timeout=10)
        except grpc.RpcError:
            return  # already reported as a failure by the interceptor
        self.traffic.screened(item)
        if self.rng.random() < self.settings.retry_share:
            self.checks.expect_replay(item.request, response)
            try:
                self.stub.Screen(item.request, timeout=10)
            except grpc.RpcError:
                return

    def screen_stream(self) -> None:
        size = self.rng.randint(self.settings.batch_min, self.settings.batch_max)
        batch = self.traffic.batch(size)
        try:
            replies = list(self.stub.ScreenStream(iter([b.request for b in batch]), timeout=30))
        except grpc.RpcError:
            return
        for item, reply in zip(batch, replies, strict=False):
            if reply.HasField("response"):
                self.traffic.screened(item)

    def report_outcome(self) -> None:
        if not self.traffic.frauds:
            return
        screened = self.traffic.frauds.popleft()
        request = pb.ReportOutcomeRequest(
            transaction_id=screened.transaction_id,
            terminal_id=screened.terminal_id,
            outcome=pb.OUTCOME_CONFIRMED_FRAUD,
        )
        try:
            self.stub.ReportOutcome(request, timeout=10)
        except grpc.RpcError:
            return
