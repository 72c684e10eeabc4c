"""What gateways report about themselves and what the hub derives from it (no gRPC, no SQL).

A gateway's state is public or already DP-protected by construction: which model it runs
and how, whether it is on its stand-in policy, how its last model update went, how many
batches wait in its outbox, how much privacy budget it has spent. Nothing about a single
transaction, card or terminal.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class GatewayState:
    model_version: str
    predictor: str  # "native", "ctypes", "" if not loaded
    stand_in: bool
    last_update_result: str  # "installed", "rejected: ...", "" if none yet
    last_update_at: float  # unix seconds; 0: never
    pending_batches: int
    epsilon_spent: float
    epsilon_budget: float
    software_version: str

    def tracked(self) -> tuple[object, ...]:
        """Fields whose change is recorded in the history (counters such as pending batches
        and epsilon move every day and are kept as the latest value only)."""
        return (
            self.model_version,
            self.predictor,
            self.stand_in,
            self.last_update_result,
            self.last_update_at,
            self.software_version,
        )


@dataclass(frozen=True)
class SiteState:
    """The latest state a site reported; `changed_at` when a tracked field last changed."""

    site_id: str
    state: GatewayState
    first_seen: float
    last_seen: float
    changed_at: float

    def stale(self, now: float, stale_after: float) -> bool:
        return now - self.last_seen > stale_after


@dataclass(frozen=True)
class StateChange:
    """One row of a site's history: the state as it became at `changed_at`."""

    site_id: str
    changed_at: float
    state: GatewayState


def sites_by_version(states: list[SiteState]) -> dict[str, int]:
    return dict(sorted(Counter(s.state.model_version for s in states).items()))


def stale_sites(states: list[SiteState], now: float, stale_after: float) -> list[SiteState]:
    return [s for s in states if s.stale(now, stale_after)]
