"""`fraudscreen hub report`: the static fleet page, opened in real headless Debian
chromium: it renders, every image loads, and the numbers on it match the database
(per-site state and batches, stale sites, feature drift per period against the release's
training period, score drift per deployed model version against its training bands).
Never skipped: without chromium the test fails saying what to install."""

from __future__ import annotations

import itertools
import math
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.hub.database import open_store
from fraudscreen.hub.storage import CellSum, StoredBatch
from fraudscreen.model.bundle import load_bundle
from fraudscreen.score_bands import BAND_QUANTILES, DEPLOYED_SCORE, score_band_schema
from loadtests.postgres_server import PostgresServer
from tests.support.hub_records import state as _state
from tests.support.hub_support import run_cli

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default"
SCHEMA = BinSchema.default()
WIDTH = len(SCHEMA.binned)
CHROMIUM_HINT = (
    "chromium not found: install Debian's chromium (apt-get install chromium; .ci/run does)"
)


class _Cells(HTMLParser):
    """Rows of the page's tables: {table id: [{data-field: text}]}, and <body> attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict[str, str]]] = {}
        self.body: dict[str, str] = {}
        self._table = ""
        self._field: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = values
        elif tag == "table":
            self._table = values.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append({})
        elif tag == "td" and "data-field" in values:
            self._field = values["data-field"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._field = None

    def handle_data(self, data: str) -> None:
        if self._field is not None:
            row = self.tables[self._table][-1]
            row[self._field] = row.get(self._field, "") + data


def render(page: Path, profile: Path) -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(CHROMIUM_HINT)
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _batch(site: str, period: str, counts: dict[int, int]) -> StoredBatch:
    """Cells that differ in the first binned feature only (the others stay at code 0)."""
    cells = tuple(((code, *([0] * (WIDTH - 1))), total, 0) for code, total in counts.items())
    batch_id = f"{abs(hash((site, period))):032x}"[:32]
    return StoredBatch(site, batch_id, period, 1, SCHEMA.hash, 1.0, 1e-7, "m", cells)


def _psi(p: list[float], q: list[float]) -> float:
    return sum((a - b) * math.log(a / b) for a, b in zip(p, q, strict=True))


def test_fleet_report_renders_in_chromium_and_matches_the_database(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.database()
    store = open_store(url)
    now = time.time()
    try:
        files = {p.name: p.read_bytes() for p in DEFAULT_BUNDLE.iterdir() if p.is_file()}
        store.put_release("fleet-v1", files, None, "2026-01-01T00:00:00+00:00")
        # the default bundle trained on 2018-07-25..2018-08-01: the drift reference
        store.put_batch(_batch("shop-a", "2018-07-26", {0: 100, 1: 100}))
        store.put_batch(_batch("shop-a", "2018-08-10", {0: 100, 1: 100}))
        store.put_batch(_batch("shop-c", "2018-08-20", {0: 180, 1: 20}))  # never reported
        store.put_site_state("shop-a", _state(model_version="fleet-v0"), now - 7200)
        store.put_site_state(
            "shop-a", _state(model_version="fleet-v1", epsilon_spent=3.5), now - 60
        )
        store.put_site_state(
            "shop-b", _state(model_version="fleet-v0", pending_batches=4), now - 5 * 86400
        )
        states = {s.site_id: s for s in store.site_states()}
        summary = {s.site_id: s for s in store.sites_summary()}
    finally:
        store.close()

    out = tmp_path / "fleet.html"
    assert run_cli(["hub", "report", "--db", url, "--out", str(out), "--stale-after", "1d"]) == 0
    dom = render(out, tmp_path / "chromium-profile")
    page = _Cells()
    page.feed(dom)
    assert page.body["data-images-total"] == "5"
    assert page.body.get("data-images-loaded") == "5"  # every plot decoded in the browser
    assert len(re.findall(r"<img ", dom)) == 5

    sites = {row["site"]: row for row in page.tables["sites"] if row}
    assert set(sites) == {"shop-a", "shop-b", "shop-c"}
    assert sites["shop-c"]["model_version"] == "(unreported)" and sites["shop-c"]["batches"] == "1"
    for site in ("shop-a", "shop-b"):
        row = sites[site]
        assert row["model_version"] == states[site].state.model_version
        assert float(row["epsilon_spent"]) == states[site].state.epsilon_spent
        assert float(row["epsilon_budget"]) == states[site].state.epsilon_budget
        assert row["pending"] == str(states[site].state.pending_batches)
        assert int(row["batches"]) == (summary[site].batches if site in summary else 0)
    assert [sites[s]["status"] for s in ("shop-a", "shop-b", "shop-c")] == ["ok", "STALE", "ok"]

    drift = {row["period"]: row for row in page.tables["drift"] if row}
    assert list(drift) == ["2018-07-26", "2018-08-10", "2018-08-20"]
    assert (
        float(drift["2018-07-26"]["worst_psi"]) == 0
        and float(drift["2018-08-10"]["worst_psi"]) == 0
    )
    expected = _psi([0.9, 0.1], [0.5, 0.5])  # the first binned feature moved; no other did
    assert float(drift["2018-08-20"]["worst_psi"]) == pytest.approx(expected, abs=1e-4)
    assert drift["2018-08-20"]["worst_feature"] == SCHEMA.features[SCHEMA.binned[0]]
    assert drift["2018-08-20"]["suggests_retraining"] == "yes"
    assert drift["2018-08-10"]["suggests_retraining"] == "no"
    assert "score-drift" not in page.tables  # no score-band tables: said in words
    assert "No score-band tables released yet" in dom and "--score-bands" in dom


def _band_batch(site: str, period: str, schema: BinSchema, per_band: list[int]) -> StoredBatch:
    """A score-band batch: each band's count split over two cells of the other dimensions,
    plus a negative noisy count in band 0 (noise around an empty cell)."""
    others = len(schema.binned) - 1  # the band is the last code
    cells: list[tuple[Cell, int, int]] = []
    for band, count in enumerate(per_band):
        cells.append(((0,) * others + (band,), count - count // 4, 0))
        cells.append(((1,) * others + (band,), count // 4, 0))
    cells.append(((1,) + (0,) * (others - 1) + (0,), -3, 0))
    batch_id = f"{abs(hash((site, period, schema.hash))):032x}"[:32]
    return StoredBatch(site, batch_id, period, 1, schema.hash, 1.0, 1e-7, "m", tuple(cells))


def _expected_psi(table: dict[Cell, CellSum], reference: list[float]) -> tuple[float, float]:
    """(clamped noisy total, PSI) of a period's score bands, from the database's cells."""
    per_band = [0.0] * len(reference)
    for codes, cell in table.items():
        per_band[codes[-1]] += cell.total
    clamped = [max(0.0, v) for v in per_band]
    total = sum(clamped)
    p = [max(v / total, 1e-4) for v in clamped]
    q = [max(v, 1e-4) for v in reference]
    return total, _psi(p, q)


def test_fleet_report_shows_score_drift_per_model_version_matching_the_database(
    tmp_path: Path, score_band_bundle_path: Path
) -> None:
    bundle = load_bundle(score_band_bundle_path)
    banded = bundle.bin_schema
    assert banded is not None
    shares = list(bundle.manifest.training["score_band_reference"]["shares"])
    version = bundle.model_version
    # a second deployed model the hub holds no release of: 7 edges, nominal shares
    other = score_band_schema(tuple(q / 2 for q in BAND_QUANTILES), model_version="shop-model-b")
    levels = (0.0, *BAND_QUANTILES, 1.0)
    nominal = [b - a for a, b in itertools.pairwise(levels)]

    db = tmp_path / "hub.db"
    store = open_store(db)
    try:
        files = {p.name: p.read_bytes() for p in score_band_bundle_path.iterdir() if p.is_file()}
        store.put_release(version, files, None, "2026-01-01T00:00:00+00:00")
        store.put_schema(banded, accept=True)
        store.put_schema(other)
        like_training = [round(s * 20_000) for s in shares]
        top_heavy = [1000] * (len(shares) - 3) + [3000, 4000, 5000]
        store.put_batch(_band_batch("shop-a", "2018-08-01", banded, like_training))
        store.put_batch(_band_batch("shop-b", "2018-08-01", banded, like_training))
        store.put_batch(_band_batch("shop-a", "2018-08-02", banded, top_heavy))
        store.put_batch(
            _band_batch("shop-c", "2018-08-02", other, [round(s * 50_000) for s in nominal])
        )
        tables = {
            version: store.period_tables(banded.hash),
            "shop-model-b": store.period_tables(other.hash),
        }
    finally:
        store.close()

    out = tmp_path / "fleet.html"
    assert run_cli(["hub", "report", "--db", str(db), "--out", str(out)]) == 0
    dom = render(out, tmp_path / "chromium-profile")
    page = _Cells()
    page.feed(dom)
    assert page.body["data-images-total"] == "6"
    assert page.body.get("data-images-loaded") == "6"
    assert 'id="plot-score-drift"' in dom
    assert "No score-band tables released yet" not in dom

    rows = {(r["model_version"], r["period"]): r for r in page.tables["score-drift"] if r}
    assert list(rows) == [
        (version, "2018-08-01"),
        (version, "2018-08-02"),
        ("shop-model-b", "2018-08-02"),
    ]
    references = {version: shares, "shop-model-b": nominal}
    for (model, period), row in rows.items():
        total, expected = _expected_psi(tables[model][period], references[model])
        assert float(row["transactions"]) == pytest.approx(total, abs=0.5)
        assert float(row["psi"]) == pytest.approx(expected, abs=1e-4)
        assert float(row["retrain_psi"]) == 0.25
        assert row["suggests_retraining"] == ("yes" if expected > 0.25 else "no")
    assert float(rows[(version, "2018-08-01")]["psi"]) < 0.1  # as in training
    assert rows[(version, "2018-08-02")]["suggests_retraining"] == "yes"  # moved to the top
    assert rows[("shop-model-b", "2018-08-02")]["suggests_retraining"] == "no"
    flagged = re.findall(r'<tr data-model="([^"]+)" data-period="([^"]+)" class="retrain"', dom)
    assert flagged == [(version, "2018-08-02")]
    assert "stored in its manifest" in dom and "nominal shares" in dom
    # feature drift of the score-band release leaves the score column to score drift
    features = [r["worst_feature"] for r in page.tables["drift"] if r]
    assert features and DEPLOYED_SCORE not in features
