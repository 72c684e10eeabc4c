"""`fraudscreen hub report --out fleet.html`: one static HTML page for analysts (plots
embedded as PNG): rollout of each release over time, sites by model version, silent
sites, epsilon spent per site against its budget, and feature and score drift of the fleet
per period (PSI against the release's training reference, with the retraining threshold).
The per-site table and the drift tables carry the numbers the plots draw."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from fraudscreen.binschema import BinSchema
from fraudscreen.hub.drift import RETRAIN_PSI, WATCH_PSI, DriftTable, drift_table
from fraudscreen.hub.fleet import StateChange, sites_by_version
from fraudscreen.hub.fleet_view import FleetRow, age, fleet_rows
from fraudscreen.hub.score_drift import ScoreDrift, fleet_score_drift
from fraudscreen.hub.storage import HubStore


@dataclass(frozen=True)
class ReportSummary:
    sites: int
    stale: int
    periods: int
    images: int


def _png(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def rollout_series(history: list[StateChange]) -> dict[str, list[tuple[float, int]]]:
    """Per model version, (time, sites running it) after each reported change."""
    running: dict[str, str] = {}
    series: dict[str, list[tuple[float, int]]] = {}
    for change in sorted(history, key=lambda c: c.changed_at):
        running[change.site_id] = change.state.model_version
        counts = {v: 0 for v in series} | {v: 0 for v in running.values()}
        for version in running.values():
            counts[version] += 1
        for version, count in counts.items():
            series.setdefault(version, []).append((change.changed_at, count))
    return series


def _rollout_plot(history: list[StateChange], now: float) -> str:
    figure, ax = plt.subplots(figsize=(9, 3.6))
    for version, points in sorted(rollout_series(history).items()):
        times = [_utc(t) for t, _ in points] + [_utc(now)]
        counts = [c for _, c in points] + [points[-1][1]]
        ax.step(times, counts, where="post", label=version or "(none)")
    ax.set(title="rollout: sites running each model version", ylabel="sites")
    if history:
        ax.legend(fontsize=8)
    figure.autofmt_xdate()
    return _png(figure)


def _versions_plot(counts: dict[str, int]) -> str:
    figure, ax = plt.subplots(figsize=(6, 3.2))
    names = [v or "(none)" for v in counts]
    ax.barh(names, list(counts.values()), color="#4c72b0")
    ax.set(title="sites by model version (latest report)", xlabel="sites")
    return _png(figure)


def _silence_plot(rows: list[FleetRow], now: float, stale_after: float) -> str:
    figure, ax = plt.subplots(figsize=(9, max(2.5, 0.25 * len(rows) + 1)))
    hours = [(now - r.last_seen) / 3600 if r.last_seen else 0.0 for r in rows]
    colors = ["#c44e52" if r.stale else "#55a868" for r in rows]
    ax.barh([r.site_id for r in rows], hours, color=colors)
    ax.axvline(stale_after / 3600, color="black", linestyle="--", label="stale after")
    ax.set(title="hours since each site was last heard (red: stale)", xlabel="hours")
    ax.legend(fontsize=8)
    return _png(figure)


def _epsilon_plot(rows: list[FleetRow]) -> str:
    figure, ax = plt.subplots(figsize=(9, max(2.5, 0.25 * len(rows) + 1)))
    names = [r.site_id for r in rows]
    ax.barh(names, [r.epsilon_spent for r in rows], color="#8172b2", label="spent")
    budgets = [(i, r.epsilon_budget) for i, r in enumerate(rows) if r.epsilon_budget is not None]
    if budgets:
        ax.scatter(
            [b for _, b in budgets],
            [i for i, _ in budgets],
            marker="|",
            s=300,
            color="black",
            label="budget",
        )
    ax.set(title="privacy budget: epsilon spent per site against its budget", xlabel="epsilon")
    ax.legend(fontsize=8)
    return _png(figure)


def _drift_plot(drift: DriftTable) -> str:
    figure, ax = plt.subplots(figsize=(9, 3.6))
    if drift.periods:
        x = list(range(len(drift.periods)))
        worst = [drift.worst(i) for i in x]
        ax.plot(x, worst, marker="o", label="worst feature")
        means = [
            sum(v for v in row if math.isfinite(v))
            / max(1, sum(1 for v in row if math.isfinite(v)))
            for row in drift.values
        ]
        ax.plot(x, means, marker=".", label="mean over features")
        step = max(1, len(x) // 12)
        ax.set_xticks(x[::step], drift.periods[::step], rotation=30, fontsize=8)
    ax.axhline(RETRAIN_PSI, color="#c44e52", linestyle="--", label=f"retrain ({RETRAIN_PSI})")
    ax.axhline(WATCH_PSI, color="#dd8452", linestyle=":", label=f"watch ({WATCH_PSI})")
    ax.set(title="feature drift per period (PSI against the training reference)", ylabel="PSI")
    ax.legend(fontsize=8)
    return _png(figure)


def _score_drift_plot(drifts: list[ScoreDrift]) -> str:
    """PSI per period of each model version (left); band shares in the latest period
    against the training reference (right), to see which bands moved, for the version
    with the latest period (the most drifted one if several share it)."""
    figure, (ax, bars) = plt.subplots(1, 2, figsize=(11, 3.6), width_ratios=(3, 2))
    periods = sorted({p for d in drifts for p in d.periods})
    index = {p: i for i, p in enumerate(periods)}
    for d in drifts:
        ax.plot([index[p] for p in d.periods], d.values, marker="o", label=d.model_version)
    step = max(1, len(periods) // 12)
    ax.set_xticks(range(len(periods))[::step], periods[::step], rotation=30, fontsize=8)
    ax.axhline(RETRAIN_PSI, color="#c44e52", linestyle="--", label=f"retrain ({RETRAIN_PSI})")
    ax.axhline(WATCH_PSI, color="#dd8452", linestyle=":", label=f"watch ({WATCH_PSI})")
    ax.set(title="score drift per period (PSI against the training bands)", ylabel="PSI")
    ax.legend(fontsize=8)
    newest = max(
        drifts,
        key=lambda d: (d.periods[-1], d.values[-1] if math.isfinite(d.values[-1]) else -1.0),
    )
    band = list(range(len(newest.shares[-1])))
    bars.set_xticks(band[:: max(1, len(band) // 8)])
    width = 0.4
    if newest.reference is not None:
        bars.bar([b - width / 2 for b in band], newest.reference.shares, width, label="training")
    bars.bar([b + width / 2 for b in band], newest.shares[-1], width, label=newest.periods[-1])
    bars.set_yscale("symlog", linthresh=0.01)
    bars.set(
        title=f"{newest.model_version}: share per score band",
        xlabel="band (low to high score)",
        ylabel="share",
    )
    bars.legend(fontsize=8)
    return _png(figure)


def _score_drift_section(drifts: list[ScoreDrift]) -> str:
    if not drifts:
        return (
            '<p id="score-drift-none">No score-band tables released yet: gateways release '
            "them once serving a model trained with --score-bands.</p>"
        )
    notes = "".join(
        f"<li>{html.escape(d.model_version)}: reference "
        + (
            html.escape(d.reference.source)
            if d.reference
            else "unknown (no release of it here, and its band edges are not the standard "
            "quantiles): PSI not computed"
        )
        + "</li>"
        for d in drifts
    )
    rows = "\n".join(
        f'<tr data-model="{html.escape(d.model_version)}" data-period="{p}"'
        + (' class="retrain"' if d.suggests_retraining(i) else "")
        + ">"
        + _cell("model_version", d.model_version)
        + _cell("period", p)
        + _cell("transactions", f"{d.totals[i]:.0f}")
        + _cell("psi", f"{d.values[i]:.4f}" if math.isfinite(d.values[i]) else "-")
        + _cell("retrain_psi", RETRAIN_PSI)
        + _cell("suggests_retraining", "yes" if d.suggests_retraining(i) else "no")
        + "</tr>"
        for d in drifts
        for i, p in enumerate(d.periods)
    )
    return (
        "<p>Per deployed model version (a band means something only for the model whose "
        "scores it bins): PSI of the fleet's score-band distribution in each period (noisy "
        "totals summed per band over every site and cell, clamped at zero) against the "
        f"share of the model's training rows in each band. Above {RETRAIN_PSI} (red) "
        f"suggests retraining; above {WATCH_PSI}, watch. More weight in the top bands: "
        "more transactions score like fraud to the model (an attack, or traffic it "
        "misreads); weight moved to the low bands: fewer look risky (a quieter mix, or "
        "fraud it no longer recognises). PSI measures a shift in the scores, not in "
        "accuracy: check on labelled data before retraining.</p>"
        f"<ul>{notes}</ul>"
        '<table id="score-drift"><tr><th>model version</th><th>period</th>'
        "<th>transactions (noisy)</th><th>PSI</th><th>retrain above</th>"
        f"<th>suggests retraining</th></tr>\n{rows}</table>"
    )


def _release_reference(store: HubStore) -> tuple[str, BinSchema | None, tuple[str, str] | None]:
    """(version, bin schema, training period) of the newest release to every site."""
    release = store.release_for("")  # "" is no site's id: releases addressed to everyone
    if release is None or "manifest.json" not in release.files:
        return "", None, None
    manifest = json.loads(release.files["manifest.json"])
    schema = BinSchema.from_json(manifest["bin_schema"]) if manifest.get("bin_schema") else None
    period = manifest.get("training", {}).get("train_period")
    training = (
        (str(period[0]), str(period[1])) if isinstance(period, list) and len(period) == 2 else None
    )
    return release.model_version, schema, training


def _drift(store: HubStore) -> tuple[DriftTable | None, str]:
    version, schema, training = _release_reference(store)
    if schema is None:
        batches = store.batches()
        if not batches:
            return None, ""
        hashes: dict[str, int] = {}
        for b in batches:
            hashes[b.schema_hash] = hashes.get(b.schema_hash, 0) + 1
        schema = store.schema(max(hashes, key=lambda h: hashes[h]))
        if schema is None:
            return None, ""
    tables = store.period_tables(schema.hash)
    if not tables:
        return None, version
    return drift_table(schema, tables, training), version


def _cell(field: str, value: object) -> str:
    return f'<td data-field="{field}">{html.escape(str(value))}</td>'


def write_fleet_report(store: HubStore, out: Path, now: float, stale_after: float) -> ReportSummary:
    rows = fleet_rows(store, now, stale_after)
    states = store.site_states()
    history = store.state_history()
    drift, release_version = _drift(store)
    score_drifts = fleet_score_drift(store)
    images = [
        ("rollout", _rollout_plot(history, now)),
        ("versions", _versions_plot(sites_by_version(states))),
        ("silence", _silence_plot(rows, now, stale_after)),
        ("epsilon", _epsilon_plot(rows)),
    ]
    if drift is not None:
        images.append(("drift", _drift_plot(drift)))
    if score_drifts:
        images.append(("score-drift", _score_drift_plot(score_drifts)))
    site_rows = "\n".join(
        f'<tr data-site="{html.escape(r.site_id)}">'
        + _cell("site", r.site_id)
        + _cell("model_version", r.model_version or "(unreported)")
        + _cell("last_seen", f"{_utc(r.last_seen):%Y-%m-%d %H:%M:%S}" if r.last_seen else "never")
        + _cell("silent_for", age(now - r.last_seen) if r.last_seen else "-")
        + _cell("pending", "-" if r.pending_batches is None else r.pending_batches)
        + _cell("epsilon_spent", f"{r.epsilon_spent:.6g}")
        + _cell("epsilon_budget", "?" if r.epsilon_budget is None else f"{r.epsilon_budget:.6g}")
        + _cell("batches", r.batches)
        + _cell("canary", r.canary or "-")
        + _cell("status", "STALE" if r.stale else "ok")
        + "</tr>"
        for r in rows
    )
    drift_section = "<p>No aggregate batches yet: no drift to show.</p>"
    if drift is not None:
        drift_rows = "\n".join(
            f'<tr data-period="{p}">'
            + _cell("period", p)
            + _cell("worst_psi", f"{drift.worst(i):.4f}")
            + _cell(
                "worst_feature",
                drift.features[
                    max(
                        range(len(drift.features)),
                        key=lambda j: (
                            drift.values[i][j] if math.isfinite(drift.values[i][j]) else -1
                        ),
                    )
                ],
            )
            + _cell("suggests_retraining", "yes" if drift.worst(i) > RETRAIN_PSI else "no")
            + "</tr>"
            for i, p in enumerate(drift.periods)
        )
        drift_section = (
            f"<p>Reference: {html.escape(drift.reference_source)}"
            f"{' (release ' + html.escape(release_version) + ')' if release_version else ''}. "
            f"PSI above {RETRAIN_PSI} suggests retraining; above {WATCH_PSI}, watch.</p>"
            f'<table id="drift"><tr><th>period</th><th>worst PSI</th><th>feature</th>'
            f"<th>suggests retraining</th></tr>\n{drift_rows}</table>"
        )
    stale = [r for r in rows if r.stale]
    figures = "\n".join(
        f'<figure><img id="plot-{name}" alt="{name}" src="data:image/png;base64,{data}"></figure>'
        for name, data in images
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fraudscreen fleet</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:2px 6px}}
img{{max-width:100%}}tr.retrain td{{background:#f6d5d5}}</style></head>
<body data-images-total="{len(images)}">
<h1>fraudscreen fleet</h1>
<p>Generated {_utc(now):%Y-%m-%d %H:%M:%S} UTC. <span id="site-count">{len(rows)}</span> sites,
<span id="stale-count">{len(stale)}</span> silent for more than {age(stale_after)}.</p>
<h2>Sites</h2>
<table id="sites"><tr><th>site</th><th>model version</th><th>last seen (UTC)</th>
<th>silent for</th><th>pending</th><th>epsilon spent</th><th>budget</th><th>batches</th>
<th>canary</th><th>status</th></tr>
{site_rows}</table>
<h2>Plots</h2>
{figures}
<h2>Drift</h2>
{drift_section}
<h2>Score drift</h2>
{_score_drift_section(score_drifts)}
<script>
window.addEventListener("load", function () {{
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-images-loaded", String(ok));
}});
</script>
</body></html>
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return ReportSummary(len(rows), len(stale), len(drift.periods) if drift else 0, len(images))
