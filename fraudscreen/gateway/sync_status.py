"""`fraudscreen sync status`: what this gateway's DP ledger and outbox say, read from its
journal file without starting the gateway (so an operator can ask while it runs)."""

from __future__ import annotations

from dataclasses import dataclass

from fraudscreen.config import GatewayConfig
from fraudscreen.storage.outbox import PrivacyOutbox


@dataclass(frozen=True)
class SyncStatus:
    lines: list[str]
    healthy: bool  # nothing waiting, or waiting without an error: the sync keeps up


def sync_status(config: GatewayConfig) -> SyncStatus:
    journal = config.journal.path
    if not journal.exists():
        return SyncStatus([f"no journal at {journal}: this gateway has not run yet"], False)
    status = PrivacyOutbox(journal, budget=config.privacy.epsilon_budget).status()
    lines = [
        f"site {config.site.id} -> hub {config.sync.hub or '(none: sync disabled)'}",
        f"periods released: {status.periods} (epsilon spent {status.spent:g} of budget "
        f"{status.budget:g}, {config.privacy.epsilon_per_day:g} per card and day, "
        f"{config.privacy.period_days} days per period)",
        f"batches acknowledged by the hub: {status.sent}; waiting: {status.pending}"
        + (f" (oldest {status.oldest_pending_period})" if status.pending else ""),
    ]
    if status.last_error:
        lines.append(f"last error: {status.last_error}")
    return SyncStatus(lines, status.pending == 0 or status.last_error is None)
