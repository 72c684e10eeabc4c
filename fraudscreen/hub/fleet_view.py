"""The fleet as analysts read it: one row per site from what it pushed, what it reported
and which release targets it. Shared by `hub status` and `hub report` so both say the
same thing (no gRPC, no SQL: reads a HubStore)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fraudscreen.hub.fleet import SiteState
from fraudscreen.hub.storage import HubStore, ReleaseRecord, SiteSummary


@dataclass(frozen=True)
class FleetRow:
    site_id: str
    model_version: str  # as the gateway reported it; "" if it never reported
    predictor: str
    stand_in: bool
    last_seen: float | None  # last state report or batch received, unix seconds
    pending_batches: int | None
    epsilon_spent: float  # reported by the gateway, else summed over stored batches
    epsilon_budget: float | None
    batches: int
    canary: str  # version of a targeted (canary) release this site gets; "" if none
    last_update_result: str
    stale: bool


def targeted_version(site: str, releases: list[ReleaseRecord]) -> ReleaseRecord | None:
    """The newest release addressed to the site (or to everyone), as release_for picks."""
    for record in reversed(releases):
        if record.sites is None or site in record.sites:
            return record
    return None


def fleet_rows(store: HubStore, now: float, stale_after: float) -> list[FleetRow]:
    states = {s.site_id: s for s in store.site_states()}
    summaries = {s.site_id: s for s in store.sites_summary()}
    releases = store.releases()
    rows = []
    for site in sorted(states.keys() | summaries.keys()):
        state: SiteState | None = states.get(site)
        summary: SiteSummary | None = summaries.get(site)
        seen = [t for t in (state and state.last_seen, summary and summary.last_received_at) if t]
        last_seen = max(seen) if seen else None
        target = targeted_version(site, releases)
        rows.append(
            FleetRow(
                site_id=site,
                model_version=state.state.model_version if state else "",
                predictor=state.state.predictor if state else "",
                stand_in=state.state.stand_in if state else False,
                last_seen=last_seen,
                pending_batches=state.state.pending_batches if state else None,
                epsilon_spent=(
                    state.state.epsilon_spent if state else (summary.epsilon if summary else 0.0)
                ),
                epsilon_budget=state.state.epsilon_budget if state else None,
                batches=summary.batches if summary else 0,
                canary=target.model_version if target and target.sites is not None else "",
                last_update_result=state.state.last_update_result if state else "",
                stale=last_seen is None or now - last_seen > stale_after,
            )
        )
    return rows


def age(seconds: float) -> str:
    """'42s', '17m', '5h', '3d' ago."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def format_table(rows: list[FleetRow], now: float) -> list[str]:
    header = (
        f"{'site':<20} {'model version':<22} {'predictor':<9} {'last seen (UTC)':<19} "
        f"{'ago':>5} {'pending':>7} {'eps spent/budget':>16} {'batches':>7} "
        f"{'canary':<16} status"
    )
    lines = [header]
    for r in rows:
        seen = (
            f"{dt.datetime.fromtimestamp(r.last_seen, dt.UTC):%Y-%m-%d %H:%M:%S}"
            if r.last_seen
            else "never"
        )
        ago = age(now - r.last_seen) if r.last_seen else "-"
        budget = f"{r.epsilon_budget:g}" if r.epsilon_budget is not None else "?"
        flags = [
            "STALE" if r.stale else "ok",
            *(["stand-in"] if r.stand_in else []),
            *(
                [f"update {r.last_update_result}"]
                if r.last_update_result in ("refused", "failed")
                else []
            ),
        ]
        lines.append(
            f"{r.site_id:<20} {r.model_version or '(unreported)':<22} {r.predictor or '-':<9} "
            f"{seen:<19} {ago:>5} "
            f"{'-' if r.pending_batches is None else r.pending_batches:>7} "
            f"{f'{r.epsilon_spent:.3g}/{budget}':>16} {r.batches:>7} {r.canary or '-':<16} "
            f"{', '.join(flags)}"
        )
    return lines
