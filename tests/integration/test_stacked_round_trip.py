"""The score-band loop on real components (issue 13): a gateway serving a score-band model
releases its tables through its sync agent to a hub; `hub export` -> `train --from-hub`
-> `sign` -> `publish`; the gateway's updater verifies, compiles and swaps to the
correction, and Screen answers come from it."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest

from fraudscreen.hub.tokens import add_token
from fraudscreen.model.bundle import load_bundle
from fraudscreen.model.signing import generate_keypair
from fraudscreen.model.stacked import StackedPredictor
from fraudscreen.score_bands import with_score
from fraudscreen.v1 import screening_pb2 as pb
from tests.support.service_support import (
    free_port,
    gateway_config,
    run_cli,
    running_gateway,
    running_hub,
    screen_request,
    stub_for,
)

DAY = 86_400
DAYS_BACK = (30, 29, 28, 27)  # in matured 7-day periods (the default; maturity 14 days)
PER_DAY = 100
LATE_DAY_BACK = 37  # a week before DAYS_BACK: released only after the swap


def luhn(body: str) -> str:
    from fraudscreen.logs import luhn_valid

    return body + next(d for d in "0123456789" if luhn_valid(body + d))


@pytest.mark.slow
def test_score_band_tables_train_a_correction_the_gateway_then_serves(
    tmp_path: Path, score_band_bundle_path: Path
) -> None:
    base = load_bundle(score_band_bundle_path)
    schema = base.bin_schema
    assert schema is not None
    generate_keypair(tmp_path / "release.key", tmp_path / "release.pub")
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    (tmp_path / "site.token").write_text(add_token(hub_dir / "sites.tokens", "shop-1"))
    (tmp_path / "publisher.token").write_text(add_token(hub_dir / "publishers.tokens", "analyst"))
    port = free_port()
    config = gateway_config(
        tmp_path / "gw",
        score_band_bundle_path,
        {
            "FRAUDSCREEN_SITE_ID": "shop-1",
            "FRAUDSCREEN_SYNC_HUB": f"127.0.0.1:{port}",
            "FRAUDSCREEN_SYNC_TOKEN_FILE": str(tmp_path / "site.token"),
            "FRAUDSCREEN_SYNC_INTERVAL_SECONDS": "3600",  # the test drives sync and updates
            "FRAUDSCREEN_PRIVACY_EPSILON_PER_DAY": "8",
            "FRAUDSCREEN_PRIVACY_EPSILON_BUDGET": "2000",  # the weeks after the swap too
            "FRAUDSCREEN_MODEL_TRUSTED_KEYS": str(tmp_path / "release.pub"),
            "FRAUDSCREEN_MODEL_SHADOW_TRANSACTIONS": "0",
        },
    )
    now = int(time.time())
    with (
        running_hub(
            hub_dir,
            port=port,
            schemas=(score_band_bundle_path,),
            trusted_keys=(tmp_path / "release.pub",),
        ),
        running_gateway(config) as gw,
    ):
        channel, stub = stub_for(gw)
        with channel:
            for back in DAYS_BACK:  # big late-night card-not-present amounts are the fraud
                day_start = (now // DAY - back) * DAY
                for i in range(PER_DAY):
                    fraud = i % 8 == 0
                    reply = stub.Screen(
                        payment(f"t{back}-{i}", f"400000{back:03d}{i:06d}", day_start, i, fraud),
                        timeout=5,
                    )
                    assert reply.model_version == base.model_version
                    if fraud:
                        stub.ReportOutcome(
                            pb.ReportOutcomeRequest(
                                transaction_id=f"t{back}-{i}",
                                terminal_id=f"TERM{i % 5}",
                                outcome=pb.OUTCOME_CONFIRMED_FRAUD,
                            ),
                            timeout=5,
                        )
            gw.journal.flush()
            deadline = time.monotonic() + 30
            while True:  # the gateway's channel reconnects with its own backoff
                try:
                    gw.sync_agent.tick()
                    break
                except ConnectionError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            status = gw.outbox.status()
            assert status.sent >= 1  # one or two weeks, as the days fall in epoch weeks
            assert status.spent == pytest.approx(8 * 7 * status.periods)  # 7 days x epsilon

            export = tmp_path / "export.parquet"
            steps = [
                (
                    "hub",
                    "export",
                    "--db",
                    str(hub_dir / "hub.sqlite3"),
                    "--schema-hash",
                    schema.hash,
                    "--out",
                    str(export),
                ),
                (
                    "train",
                    "--from-hub",
                    str(export),
                    "--current",
                    str(score_band_bundle_path),
                    "--out",
                    str(tmp_path / "correction"),
                    "--name",
                    "corr-rt",
                ),
                ("sign", str(tmp_path / "correction"), "--key", str(tmp_path / "release.key")),
                (
                    "publish",
                    str(tmp_path / "correction"),
                    "--hub",
                    f"127.0.0.1:{port}",
                    "--token-file",
                    str(tmp_path / "publisher.token"),
                ),
            ]
            for step in steps:
                done = run_cli(*step)
                assert done.returncode == 0, (step[0], done.stderr)
            correction = load_bundle(tmp_path / "correction")
            assert correction.manifest.base is not None
            assert correction.manifest.base["model_version"] == base.model_version
            assert correction.manifest.training["frauds"] > 0  # the reported frauds arrived

            gw.updater.poll_hub()  # verify, compile both models, swap
            live = gw.slot.current
            assert live is not None and live.version == correction.model_version
            assert isinstance(live.predictor, StackedPredictor)
            reply = stub.Screen(screen_request("after-swap", amount_minor=61_000), timeout=5)
            assert reply.model_version == correction.model_version
            assert gw.updater.store.state().current == correction.model_version

            # the loop goes on: what the correction serves is tabled in its base model's
            # bands (the base model's score of the journaled features), for a week the hub
            # has not had yet, also once that correction is no longer live (rows are
            # released weeks after they were served): here the gateway has rolled back
            late = (now // DAY - LATE_DAY_BACK) * DAY
            for i in range(PER_DAY):  # both kinds of payment: the bands must differ
                risky = i % 2 == 0
                reply = stub.Screen(
                    payment(f"late-{i}", f"400001{LATE_DAY_BACK:03d}{i:06d}", late, i, risky),
                    timeout=5,
                )
                assert reply.model_version == correction.model_version
            gw.journal.flush()
            served = [r for r in gw.journal.iter_transactions(late, late + DAY) if r.model_version]
            assert {r.model_version for r in served} == {correction.model_version}
            gw.updater.store.rollback()
            gw.updater.follow_local_state()
            assert gw.slot.current is not None
            assert gw.slot.current.version == base.model_version
            before = _outbox_tables(config.journal.path)
            gw.sync_agent.tick()
            after = _outbox_tables(config.journal.path)
            new = [table for batch, table in after.items() if batch not in before]
            assert new and all(t["schema_hash"] == schema.hash for t in new)
            tabled = sum(total for t in new for _, total, _ in t["cells"])
            assert abs(tabled - PER_DAY) < 60, tabled  # noise: sd ~10 per weekly table at eps 8
            # ... in the cells of their base scores (noise per cell: sd ~0.3 at eps 8)
            booster = lightgbm.Booster(model_str=base.model_text)
            scores = booster.predict(np.array([r.features for r in served]))
            cells = {
                schema.cell(with_score(r.features, float(score)))
                for r, score in zip(served, scores, strict=True)
            }
            in_cells = sum(total for t in new for c, total, _ in t["cells"] if tuple(c) in cells)
            assert abs(in_cells - PER_DAY) < 15, (in_cells, sorted(cells))


def payment(
    transaction_id: str, pan_digits: str, day_start: int, i: int, risky: bool
) -> pb.ScreenRequest:
    """The i-th payment of a day: a big late-night card-not-present one when `risky` (the
    fraud pattern of this test), else a small daytime chip payment."""
    return screen_request(
        transaction_id,
        pan=luhn(pan_digits),
        seconds=day_start + (82_000 if risky else 36_000) + 60 * i,
        amount_minor=(45_000 + 97 * i) if risky else (1_500 + 37 * i),
        terminal_id=f"TERM{i % 5}",
        entry_mode=pb.ENTRY_MODE_MANUAL if risky else pb.ENTRY_MODE_CHIP,
    )


def _outbox_tables(journal: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(journal) as conn:
        rows = conn.execute("SELECT batch_id, payload FROM sync_outbox").fetchall()
    return {batch: json.loads(payload) for batch, payload in rows}
