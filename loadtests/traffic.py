"""Realistic requests: the replay simulator's transactions, each sent under a fresh id.

The pool is built once per Locust process from ``fraudscreen.replay`` (cards come back,
terminals repeat, the simulator's amounts and frauds are in it, timestamps end just before
now). Every request sent gets a transaction_id no other request of any run has used, so the
gateway never mistakes load for idempotent retries; deliberate retries are the user's job.

Each user walks the pool in time order under its own "population": card numbers and
terminal ids are re-branded with a 5-digit tag drawn per user and per pass through the
pool. Without that, two users (or a second pass) would replay the same cards at the same
moments, every card would look twice as busy as in the simulation, and the gateway's
per-card windows would keep growing during the run (measured: throughput falling ~15 %
over 45 s). With it, a longer run means more cards and terminals, as on a busier site.
"""

from __future__ import annotations

import os
import random
from collections import deque
from dataclasses import dataclass

from fraudscreen import replay
from fraudscreen.v1 import screening_pb2 as pb

# Per process: keeps ids unique across processes and across runs against one gateway.
RUN_TOKEN = os.urandom(4).hex()


@dataclass(frozen=True)
class Pooled:
    request: pb.ScreenRequest
    fraud: bool


def build_pool(days: int, limit: int | None) -> list[Pooled]:
    """The last `days` of the demo simulation as template requests (takes ~2 s)."""
    frame = replay.load_traffic(None, days, limit)
    pool = [Pooled(request, fraud) for request, fraud in replay.requests(frame)]
    if not pool:
        raise RuntimeError(
            f"the simulator produced no transactions for days={days}, limit={limit}; "
            "raise traffic_days / traffic_limit in the profile"
        )
    return pool


def luhn_check_digit(body: str) -> str:
    """The digit that makes `body` + digit pass the Luhn check."""
    total = 0
    for index, char in enumerate(reversed(body)):
        value = ord(char) - 48
        if index % 2 == 0:  # doubled once the check digit is appended
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return str(-total % 10)


def rebrand_pan(pan: str, tag: str) -> str:
    """Same card, other population: the tag replaces the digits after the first, the
    account digits stay and the check digit is recomputed ('4000009551332177', '12345' ->
    '4123459551332176')."""
    body = pan[0] + tag + pan[1 + len(tag) : -1]
    return body + luhn_check_digit(body)


class UserTraffic:
    """One user's walk through the pool, from a random start, with unique ids."""

    def __init__(self, pool: list[Pooled], user_number: int, rng: random.Random) -> None:
        self._pool = pool
        self._rng = rng
        self._position = rng.randrange(len(pool))
        self._left_in_pass = len(pool)
        self._tag = self._new_tag()
        self._prefix = f"lt{RUN_TOKEN}.{user_number}."
        self._sent = 0
        self.frauds: deque[pb.ScreenRequest] = deque(maxlen=10_000)  # screened, not reported

    def _new_tag(self) -> str:
        return f"{self._rng.randrange(100_000):05d}"

    def next(self) -> Pooled:
        if self._left_in_pass == 0:  # a new pass through the timeline: a new population
            self._left_in_pass, self._tag = len(self._pool), self._new_tag()
        template = self._pool[self._position]
        self._position = (self._position + 1) % len(self._pool)
        self._left_in_pass -= 1
        self._sent += 1
        request = pb.ScreenRequest()
        request.CopyFrom(template.request)
        request.transaction_id = f"{self._prefix}{self._sent}"
        request.pan = rebrand_pan(request.pan, self._tag)
        request.terminal_id = f"{request.terminal_id}.{self._tag}"
        return Pooled(request, template.fraud)

    def batch(self, size: int) -> list[Pooled]:
        return [self.next() for _ in range(size)]

    def screened(self, item: Pooled) -> None:
        """Remember a screened fraud so ReportOutcome can report it later."""
        if item.fraud:
            self.frauds.append(item.request)
