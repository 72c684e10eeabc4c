"""PushBatch over real gRPC with a real SQLite file: idempotent storage, every bad field
named, known-domain batches."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from fraudscreen.binschema import BinSchema
from fraudscreen.gateway.uploader import batch_message
from fraudscreen.hub.storage import CellSum
from fraudscreen.privacy.aggregate import Period
from fraudscreen.privacy.release import MECHANISMS, Mechanism, ReleaseParameters, release
from fraudscreen.storage.outbox import batch_id, encode_payload
from fraudscreen.v1 import sync_pb2 as pb
from fraudscreen.v1 import sync_pb2_grpc as pb_grpc
from tests.support.hub_support import (
    SCHEMA,
    Hub,
    Keys,
    bearer,
    codes,
    known_domain_batch,
    make_batch,
    refused,
    running_hub,
)

# -- PushBatch: idempotency ---------------------------------------------------------------


def test_push_is_stored_once_and_a_resend_is_a_duplicate(hub: Hub) -> None:
    batch = make_batch()
    first = hub.push(batch)
    assert (first.stored, first.duplicate) == (True, False)
    again = hub.push(batch)
    assert (again.stored, again.duplicate) == (False, True)
    reordered = make_batch(cells=[(codes(4, 1), 45, -2), (codes(0), 120, 3)])
    assert hub.push(reordered).duplicate  # cells are a set: order is not content
    assert hub.rows("SELECT site_id, batch_id FROM batches") == [("shop-a", batch.batch_id)]
    assert hub.rows("SELECT COUNT(*) FROM cells") == [(2,)]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_real_outbox_payload_is_accepted(hub: Hub, mechanism: Mechanism) -> None:
    """What the gateway's DP release, outbox and uploader produce passes the hub as is."""
    params = ReleaseParameters(epsilon=0.5, delta=1e-6, max_contributions=10)
    exact: dict[tuple[int, ...], tuple[int, int]] = {
        (0, 0, 0, 0, 0, 0, 0): (5000, 40),
        (4, 1, 2, 2, 2, 1, 2): (3000, 900),
        (1, 0, 1, 0, 0, -1, 1): (2500, 0),  # entry mode missing
    }
    table = release(mechanism, exact, SCHEMA, params)
    period = Period.containing(1_522_540_800)  # 2018-04-01
    batch = batch_id("shop-a", period.name, SCHEMA.hash, params, mechanism)
    payload = encode_payload("shop-a", batch, period, SCHEMA, table)
    assert hub.push(batch_message(payload)).stored
    expected = 3 if mechanism == "threshold" else SCHEMA.domain_size()
    assert len(hub.server.store.summed_table(SCHEMA.hash)) == len(table.cells) == expected
    [record] = hub.server.store.batches(SCHEMA.hash)
    assert record.kind == mechanism
    assert record.cells == expected


def test_concurrent_resends_store_the_batch_exactly_once(hub: Hub) -> None:
    batch = make_batch()
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda _: hub.push(batch), range(16)))
    assert sorted(r.stored for r in replies) == [False] * 15 + [True]
    assert all(r.stored != r.duplicate for r in replies)
    assert hub.rows("SELECT COUNT(*) FROM batches") == [(1,)]
    assert hub.rows("SELECT COUNT(*) FROM cells") == [(2,)]


def test_same_batch_id_with_other_content_is_already_exists(hub: Hub) -> None:
    hub.push(make_batch())
    changed = make_batch(cells=[(codes(0), 121, 3), (codes(4, 1), 45, -2)])
    code, message, _ = refused(lambda: hub.push(changed))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "already stored with different content" in message
    assert "resend the stored payload unchanged" in message
    assert hub.rows("SELECT SUM(noisy_total) FROM cells") == [(165,)]  # the first one kept


def test_unknown_schema_hash_is_failed_precondition_naming_it(hub: Hub) -> None:
    code, message, fields = refused(lambda: hub.push(make_batch(schema_hash="ab" * 32)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "schema_hash" in message and "--schema" in message
    assert set(fields) == {"batch.schema_hash"}
    assert hub.rows("SELECT COUNT(*) FROM batches") == [(0,)]


# -- PushBatch: validation ----------------------------------------------------------------


def _set(field: str, value: object) -> Callable[[pb.AggregateBatch], None]:
    return lambda batch: setattr(batch, field, value)


def _cell(index: int, field: str, value: int) -> Callable[[pb.AggregateBatch], None]:
    return lambda batch: setattr(batch.cells[index], field, value)


def _code(index: int, position: int, value: int) -> Callable[[pb.AggregateBatch], None]:
    def mutate(batch: pb.AggregateBatch) -> None:
        batch.cells[index].codes[position] = value

    return mutate


def _extra_code(batch: pb.AggregateBatch) -> None:
    batch.cells[0].codes.append(0)


def _missing_code(batch: pb.AggregateBatch) -> None:
    del batch.cells[1].codes[-1]


def _duplicate_cell(batch: pb.AggregateBatch) -> None:
    batch.cells.add().CopyFrom(batch.cells[0])


def _too_many_cells(batch: pb.AggregateBatch) -> None:
    del batch.cells[:]
    batch.cells.extend(
        pb.AggregateCell(codes=codes(i % 5, i // 5 % 2), noisy_total=50) for i in range(100_001)
    )


def _append(name: str, suffix: str) -> Callable[[pb.AggregateBatch], None]:
    def mutate(batch: pb.AggregateBatch) -> None:
        setattr(batch, name, getattr(batch, name) + suffix)

    return mutate


INVALID: list[tuple[str, Callable[[pb.AggregateBatch], None], str]] = [
    ("extra-code", _extra_code, "batch.cells[0].codes"),
    ("missing-code", _missing_code, "batch.cells[1].codes"),
    ("code-above-range", _code(1, 0, 5), "batch.cells[1].codes"),
    ("code-below-missing", _code(0, 2, -2), "batch.cells[0].codes"),
    ("missing-code-not-nullable", _code(0, 0, -1), "batch.cells[0].codes"),
    ("duplicate-cell", _duplicate_cell, "batch.cells[2].codes"),
    ("total-zero", _cell(0, "noisy_total", 0), "batch.cells[0].noisy_total"),
    ("total-negative", _cell(1, "noisy_total", -5), "batch.cells[1].noisy_total"),
    ("total-huge", _cell(0, "noisy_total", 10**13), "batch.cells[0].noisy_total"),
    ("fraud-huge", _cell(0, "noisy_fraud", 10**6), "batch.cells[0].noisy_fraud"),
    ("fraud-very-negative", _cell(1, "noisy_fraud", -(10**6)), "batch.cells[1].noisy_fraud"),
    ("epsilon-zero", _set("epsilon", 0.0), "batch.epsilon"),
    ("epsilon-negative", _set("epsilon", -1.0), "batch.epsilon"),
    ("epsilon-above-50", _set("epsilon", 50.5), "batch.epsilon"),
    ("epsilon-nan", _set("epsilon", math.nan), "batch.epsilon"),
    ("epsilon-inf", _set("epsilon", math.inf), "batch.epsilon"),
    ("delta-zero", _set("delta", 0.0), "batch.delta"),
    ("delta-too-big", _set("delta", 1e-3), "batch.delta"),
    ("period-format", _set("period", "01/04/2018"), "batch.period"),
    ("period-no-such-day", _set("period", "2018-02-30"), "batch.period"),
    ("period-future", _set("period", "2999-01-01"), "batch.period"),
    ("period-empty", _set("period", ""), "batch.period"),
    ("period-days-zero", _set("period_days", 0), "batch.period_days"),
    ("period-days-32", _set("period_days", 32), "batch.period_days"),
    ("batch-id-short", _set("batch_id", "abc123"), "batch.batch_id"),
    ("batch-id-upper-case", _set("batch_id", "A" * 32), "batch.batch_id"),
    ("batch-id-empty", _set("batch_id", ""), "batch.batch_id"),
    ("batch-id-trailing-newline", _set("batch_id", "a" * 32 + "\n"), "batch.batch_id"),
    ("schema-hash-trailing-newline", _append("schema_hash", "\n"), "batch.schema_hash"),
    ("period-trailing-newline", _append("period", "\n"), "batch.period"),
    ("schema-hash-malformed", _set("schema_hash", "df2d42"), "batch.schema_hash"),
    ("mechanism-empty", _set("mechanism", ""), "batch.mechanism"),
    ("mechanism-control-chars", _set("mechanism", "a\nb"), "batch.mechanism"),
    ("kind-unspecified", _set("kind", pb.RELEASE_KIND_UNSPECIFIED), "batch.kind"),
    ("kind-unknown", _set("kind", 7), "batch.kind"),
    ("too-many-cells", _too_many_cells, "batch.cells"),
]


@pytest.mark.parametrize(
    ("mutate", "field"), [(m, f) for _, m, f in INVALID], ids=[name for name, _, _ in INVALID]
)
def test_each_invalid_field_is_named(
    hub: Hub, mutate: Callable[[pb.AggregateBatch], None], field: str
) -> None:
    batch = make_batch()
    mutate(batch)
    code, message, fields = refused(lambda: hub.push(batch))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields) == {field}, fields
    assert field in message
    assert hub.rows("SELECT COUNT(*) FROM batches") == [(0,)]


def test_every_bad_field_is_named_at_once_and_the_list_is_bounded(hub: Hub) -> None:
    batch = make_batch(cells=[(codes(9), 0, 0)] * 50)
    batch.epsilon = 0.0
    code, message, fields = refused(lambda: hub.push(batch))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert {"batch.epsilon", "batch.cells[0].codes", "batch.cells[0].noisy_total"} <= set(fields)
    assert "more problems not listed" in fields["batch"]
    assert len(message) < 5000


def test_missing_batch_and_undecodable_bytes_are_invalid_argument(hub: Hub) -> None:
    token = hub.tokens["shop-a"]
    with grpc.insecure_channel(f"127.0.0.1:{hub.server.port}") as channel:
        stub = pb_grpc.SyncStub(channel)
        code, _, fields = refused(
            lambda: stub.PushBatch(pb.PushBatchRequest(), metadata=bearer(token))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and set(fields) == {"batch"}
        raw = channel.unary_unary(
            "/fraudscreen.v1.Sync/PushBatch", request_serializer=None, response_deserializer=None
        )
        code, message, _ = refused(lambda: raw(b"\xff\xff\xff", metadata=bearer(token)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "fraudscreen.v1.PushBatchRequest" in message


def test_a_batch_with_no_released_cells_is_stored(hub: Hub) -> None:
    assert hub.push(make_batch(cells=[])).stored  # nothing passed the DP threshold


# -- PushBatch: known-domain batches --------------------------------------------------------


def test_a_known_domain_batch_with_non_positive_totals_is_accepted(hub: Hub) -> None:
    batch = known_domain_batch()
    totals = [cell.noisy_total for cell in batch.cells]
    assert len(totals) == SCHEMA.domain_size() == 2430
    assert min(totals) <= 0  # noise around empty cells
    batch.cells[7].noisy_total = -3  # certainly one non-positive total
    batch.cells[8].noisy_total = 0
    assert hub.push(batch).stored
    assert hub.push(batch).duplicate
    summed = hub.server.store.summed_table(SCHEMA.hash)
    assert len(summed) == 2430
    assert summed[tuple(batch.cells[7].codes)].total == -3
    assert hub.rows("SELECT kind, delta, cell_count FROM batches") == [("known_domain", 0.0, 2430)]


def test_known_domain_and_threshold_batches_sum_together(hub: Hub) -> None:
    known = known_domain_batch("shop-a", "2018-04-01")
    assert hub.push(known).stored
    assert hub.push(make_batch("shop-a", "2018-04-02", [(codes(0), 120, 3)])).stored
    summed = hub.server.store.summed_table(SCHEMA.hash)
    first = next(c for c in known.cells if list(c.codes) == codes(0))
    assert summed[tuple(codes(0))] == CellSum(first.noisy_total + 120, first.noisy_fraud + 3, 2)
    kinds = {r.period: r.kind for r in hub.server.store.batches(SCHEMA.hash)}
    assert kinds == {"2018-04-01": "known_domain", "2018-04-02": "threshold"}


def test_a_known_domain_batch_missing_cells_is_refused(hub: Hub) -> None:
    batch = known_domain_batch()
    del batch.cells[100:103]
    code, message, fields = refused(lambda: hub.push(batch))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields) == {"batch.cells"}
    assert "every cell of the bin schema's domain exactly once" in fields["batch.cells"]
    assert "3 missing" in fields["batch.cells"]
    assert "batch.cells" in message
    assert hub.rows("SELECT COUNT(*) FROM batches") == [(0,)]


def test_a_known_domain_batch_with_a_repeated_cell_is_refused(hub: Hub) -> None:
    batch = known_domain_batch()
    batch.cells[5].codes[:] = batch.cells[4].codes  # one cell twice, another missing
    code, _, fields = refused(lambda: hub.push(batch))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields) == {"batch.cells[5].codes", "batch.cells"}
    assert "repeats the cell of batch.cells[4]" in fields["batch.cells[5].codes"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_set("delta", 1e-7), "batch.delta"),  # pure DP: delta must be 0
        (_cell(3, "noisy_total", -(10**13)), "batch.cells[3].noisy_total"),
        (_cell(3, "noisy_fraud", 10**13), "batch.cells[3].noisy_fraud"),
        (_code(0, 0, -1), "batch.cells[0].codes"),  # the amount is never missing
    ],
)
def test_known_domain_batch_fields_are_checked(
    hub: Hub, mutate: Callable[[pb.AggregateBatch], None], field: str
) -> None:
    batch = known_domain_batch()
    mutate(batch)
    code, _, fields = refused(lambda: hub.push(batch))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in fields, fields


def test_an_unspecified_kind_is_refused_naming_the_field(hub: Hub) -> None:
    batch = make_batch(kind=pb.RELEASE_KIND_UNSPECIFIED)  # e.g. a gateway from before kinds
    code, message, fields = refused(lambda: hub.push(batch))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields) == {"batch.kind"}
    assert "RELEASE_KIND_UNSPECIFIED" in fields["batch.kind"]
    assert "batch.kind" in message


def test_a_legacy_schema_takes_known_domain_batches_over_its_wider_domain(
    tmp_path: Path, keys: Keys
) -> None:
    legacy = BinSchema(SCHEMA.features, SCHEMA.edges)  # no nullable list: every feature
    schema_file = tmp_path / "legacy.json"
    schema_file.write_text(json.dumps(legacy.to_json()))
    with running_hub(tmp_path / "hub", keys, schemas=(schema_file,)) as hub:
        batch = known_domain_batch(schema=legacy)
        assert len(batch.cells) == 13_824
        assert hub.push(batch).stored
