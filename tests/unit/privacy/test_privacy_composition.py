"""Several tables of one period inside the one epsilon: the ledger equals the sum, and the
budget refuses a period that does not fit, writing nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fraudscreen.binschema import BinSchema
from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.privacy.aggregate import Period
from fraudscreen.privacy.composition import composed_epsilon, share
from fraudscreen.privacy.release import ReleaseParameters
from fraudscreen.score_bands import score_band_schema, with_score
from fraudscreen.storage.outbox import BudgetExhaustedError, PrivacyOutbox

DAY = 86_400
PARAMS = ReleaseParameters(epsilon=1.0, delta=1e-7, max_contributions=2)
# two deployed model versions in one day (a swap splits it): two schemas, one table each
OLD = score_band_schema((0.1, 0.5, 0.9), model_version="model-a")
NEW = score_band_schema((0.2, 0.6, 0.95), model_version="model-b")


def _table(schema: BinSchema) -> dict[tuple[int, ...], tuple[int, int]]:
    row = with_score([30.0] + [0.0] * (len(FEATURE_NAMES) - 1), 0.7)
    return {schema.cell(row): (500, 7)}


def _ledger(path: Path) -> list[tuple[str, str, float]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT period, schema_hash, epsilon FROM privacy_ledger ORDER BY seq"
        ).fetchall()


def test_several_tables_of_a_period_share_its_epsilon_and_the_ledger_holds_the_sum(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite3"
    outbox = PrivacyOutbox(path, budget=10)
    parts = [(OLD, lambda: _table(OLD)), (NEW, lambda: _table(NEW))]
    batches = outbox.release_many("s", Period(0, DAY), parts, PARAMS)
    assert len(batches) == 2
    ledger = _ledger(path)
    assert [h for _, h, _ in ledger] == [OLD.hash, NEW.hash]
    # each table gets half the period's epsilon; together exactly the period's epsilon
    assert all(eps <= PARAMS.epsilon / 2 + 1e-12 for _, _, eps in ledger)
    assert sum(eps for _, _, eps in ledger) == pytest.approx(PARAMS.epsilon, rel=1e-6)
    assert sum(eps for _, _, eps in ledger) <= PARAMS.epsilon + 1e-9
    # OpenDP's composition of the two measurements maps to the same total
    assert composed_epsilon(PARAMS, 2) == pytest.approx(sum(e for _, _, e in ledger), rel=1e-9)
    assert outbox.status().spent == pytest.approx(sum(e for _, _, e in ledger))
    # the payloads name their schemas (and so the model version the bands belong to)
    payloads = {e.payload["schema_hash"]: e.payload for e in outbox.pending()}
    assert set(payloads) == {OLD.hash, NEW.hash}
    assert all(abs(p["epsilon"] - 0.5) < 1e-9 for p in payloads.values())
    # released once: a second call adds nothing
    assert outbox.release_many("s", Period(0, DAY), parts, PARAMS) == []
    assert len(_ledger(path)) == 2


def test_the_budget_refuses_a_period_whose_tables_do_not_fit(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    outbox = PrivacyOutbox(path, budget=1.5)
    parts = [(OLD, lambda: _table(OLD)), (NEW, lambda: _table(NEW))]
    assert len(outbox.release_many("s", Period(0, DAY), parts, PARAMS)) == 2
    with pytest.raises(BudgetExhaustedError, match=r"spent epsilon 1 of 1\.5; .* needs 1 more"):
        outbox.release_many("s", Period(DAY, 2 * DAY), parts, PARAMS)
    # nothing of the refused period was written, ledger and outbox agree
    assert [p for p, _, _ in _ledger(path)] == ["1970-01-01", "1970-01-01"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sync_outbox").fetchone()[0] == 2


def test_a_period_never_takes_two_tables_of_one_schema(tmp_path: Path) -> None:
    outbox = PrivacyOutbox(tmp_path / "j.sqlite3", budget=10)
    with pytest.raises(ValueError, match="distinct bin schemas"):
        outbox.release_many("s", Period(0, DAY), [(OLD, dict), (OLD, dict)], PARAMS)


def test_share_splits_epsilon_and_delta() -> None:
    each = share(PARAMS, 4)
    assert each.epsilon == pytest.approx(0.25)
    assert each.delta == pytest.approx(PARAMS.delta / 4)
    assert each.max_contributions == PARAMS.max_contributions
    with pytest.raises(ValueError, match="at least one table"):
        share(PARAMS, 0)
