"""The analyst's loop on real components: DP batches at the hub -> export -> train from
aggregates (bundle reads bin codes, HTML report) -> sign -> the gateway serves it."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

from fraudscreen import history
from fraudscreen.binschema import BinSchema
from fraudscreen.features.batch import compute_features, epoch_seconds
from fraudscreen.gateway.uploader import batch_message
from fraudscreen.hub.server import HubServer
from fraudscreen.hub.tokens import add_token
from fraudscreen.model.bundle import load_bundle
from fraudscreen.model.compile import compile_bundle
from fraudscreen.model.signing import PublicKey, generate_keypair, load_verified_bundle
from fraudscreen.privacy.aggregate import LabelledRow, Period, exact_table
from fraudscreen.privacy.release import ReleaseParameters, release
from fraudscreen.storage.outbox import batch_id, encode_payload
from fraudscreen.v1 import sync_pb2, sync_pb2_grpc
from tests.support.service_support import (
    gateway_config,
    run_cli,
    running_gateway,
    running_hub,
    screen_request,
    stub_for,
)

DAY = 86_400
PARAMS = ReleaseParameters(epsilon=8.0, delta=1e-7, max_contributions=2)


def push_days(hub: HubServer, token: str, frame: pd.DataFrame, site: str) -> int:
    """One known-domain DP batch per simulated day, as a gateway's outbox would send."""
    schema = BinSchema.default()
    features = compute_features(frame)
    times = epoch_seconds(frame[history.TX_DATETIME], "UTC")
    cards = frame[history.CUSTOMER_ID].astype(str).to_numpy()
    ids = frame[history.TRANSACTION_ID].astype(str).to_numpy()
    frauds = frame[history.TX_FRAUD].to_numpy()
    pushed = 0
    with grpc.insecure_channel(f"127.0.0.1:{hub.port}") as channel:
        stub = sync_pb2_grpc.SyncStub(channel)
        for day in range(int(times.min()) // DAY + 30, int(times.max()) // DAY):
            period = Period(day * DAY, (day + 1) * DAY)
            mask = (times >= period.start) & (times < period.end)
            rows = [
                LabelledRow(cards[i], ids[i], tuple(features[i]), bool(frauds[i]))
                for i in np.flatnonzero(mask)
            ]
            table = release("known_domain", exact_table(rows, schema, 2), schema, PARAMS)
            batch = batch_id(site, period.name, schema.hash, PARAMS)
            payload = encode_payload(site, batch, period, schema, table)
            stub.PushBatch(
                sync_pb2.PushBatchRequest(batch=batch_message(payload)),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=30,
            )
            pushed += 1
    return pushed


@pytest.mark.slow
def test_export_train_sign_and_serve(
    tmp_path: Path, small_history: pd.DataFrame, small_bundle_path: Path
) -> None:
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    token = add_token(hub_dir / "sites.tokens", "shop-9")
    with running_hub(hub_dir, publisher_tokens=hub_dir / "pub.tokens") as hub:
        assert push_days(hub, token, small_history, "shop-9") > 20
    export = tmp_path / "export.parquet"
    out = run_cli(
        "hub",
        "export",
        "--db",
        str(hub_dir / "hub.sqlite3"),
        "--schema-hash",
        BinSchema.default().hash,
        "--out",
        str(export),
    )
    assert out.returncode == 0, out.stderr
    history_file = tmp_path / "history.parquet"
    small_history.to_parquet(history_file)
    bundle_dir = tmp_path / "dp-model"
    out = run_cli(
        "train",
        str(history_file),
        "--from-hub",
        str(export),
        "--out",
        str(bundle_dir),
        "--current",
        str(small_bundle_path),
        "--name",
        "dp-test",
    )
    assert out.returncode == 0, out.stderr
    assert "held-out share: AUC" in out.stdout
    bundle = load_bundle(bundle_dir)
    assert bundle.reads_bin_codes
    assert bundle.bin_schema == BinSchema.default()
    assert bundle.model_version.startswith("dp-test-")
    assert compile_bundle(bundle).max_abs_diff <= 1e-6  # golden rows are in code space
    report = (tmp_path / "dp-model.report.html").read_text()
    assert report.count("data:image/png;base64,") >= 4  # curves + distributions, 2 sections
    assert "current (test-" in report  # compared with the released model on the history
    held_out_auc = float(out.stdout.split("held-out share: AUC ")[1].split(",")[0])
    assert held_out_auc > 0.7

    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    out = run_cli("sign", str(bundle_dir), "--key", str(tmp_path / "k.key"))
    assert out.returncode == 0, out.stderr
    load_verified_bundle(bundle_dir, [PublicKey.from_file(tmp_path / "k.pub")])

    # a gateway serves the aggregate-trained model: bin transform applied before scoring
    with running_gateway(gateway_config(tmp_path / "gw", bundle_dir)) as gw:
        channel, stub = stub_for(gw)
        with channel:
            reply = stub.Screen(screen_request(amount_minor=99_000), timeout=5)
        assert reply.model_version == bundle.model_version
        model = gw.slot.current
        assert model is not None
        assert model.transform is not None
