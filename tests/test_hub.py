"""The hub over real gRPC on loopback with a real SQLite file: idempotent batch storage,
authentication, validation by field, exact export sums, no raw data at rest, signed
releases with canary targeting, TLS and mTLS, the CLI verbs, SIGTERM drain."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pandas as pd
import pytest
import structlog
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from structlog.testing import capture_logs

from fraudscreen.binschema import BinSchema
from fraudscreen.cli import main
from fraudscreen.config import TLSConfig
from fraudscreen.gateway.uploader import batch_message
from fraudscreen.hub.server import HubServer, HubSettings
from fraudscreen.hub.sqlite_store import SQLiteHubStore
from fraudscreen.hub.storage import (
    STATE_FIELDS,
    CellSum,
    ConflictError,
    StoredBatch,
)
from fraudscreen.hub.tokens import add_token, hash_token
from fraudscreen.logs import luhn_valid
from fraudscreen.model.bundle import (
    GOLDEN_FILE,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    Manifest,
    load_bundle,
    rewrite_manifest,
)
from fraudscreen.model.signing import (
    PublicKey,
    generate_keypair,
    load_private_key,
    sign_bundle,
    verify_bundle_signature,
)
from fraudscreen.privacy.aggregate import Period
from fraudscreen.privacy.release import (
    MECHANISMS,
    Mechanism,
    ReleaseParameters,
    release,
    release_known_domain,
)
from fraudscreen.storage.outbox import batch_id, encode_payload
from fraudscreen.v1 import sync_pb2 as pb
from fraudscreen.v1 import sync_pb2_grpc as pb_grpc
from tests.service_support import PANS, drain_log, read_log_until
from tests.tls_material import TLSFiles, secure_channel

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "models" / "default"
SCHEMA = BinSchema.default()
WIDTH = len(SCHEMA.binned)
SITES = ("shop-a", "shop-b")
MECHANISM = "opendp laplace_threshold (discrete) + laplace; l0=l1=linf=10"


# -- building requests --------------------------------------------------------------------


def codes(*head: int) -> list[int]:
    """A cell key of the default schema: the given leading codes, zeros after."""
    return [*head, *([0] * (WIDTH - len(head)))]


def make_batch(
    site: str = "shop-a",
    period: str = "2018-04-01",
    cells: list[tuple[list[int], int, int]] | None = None,
    schema_hash: str = SCHEMA.hash,
    kind: pb.ReleaseKind.ValueType = pb.RELEASE_KIND_THRESHOLD,
) -> pb.AggregateBatch:
    if cells is None:
        cells = [(codes(0), 120, 3), (codes(4, 1), 45, -2)]
    return pb.AggregateBatch(
        site_id=site,
        batch_id=hashlib.sha256(f"{site}|{period}|{schema_hash}".encode()).hexdigest()[:32],
        period=period,
        period_days=1,
        schema_hash=schema_hash,
        epsilon=1.0,
        delta=1e-7,
        mechanism=MECHANISM,
        cells=[pb.AggregateCell(codes=c, noisy_total=t, noisy_fraud=f) for c, t, f in cells],
        kind=kind,
    )


def known_domain_batch(
    site: str = "shop-a", period: str = "2018-04-01", schema: BinSchema = SCHEMA
) -> pb.AggregateBatch:
    """A real known-domain release of a small table: every cell of the schema's domain."""
    exact = {tuple(codes(0)): (400, 2), tuple(codes(4, 1)): (3, 5)}
    table = release_known_domain(exact, schema, ReleaseParameters(1.0, max_contributions=2))
    batch = make_batch(
        site,
        period,
        [(list(c), t, f) for c, (t, f) in table.cells.items()],
        schema.hash,
        pb.RELEASE_KIND_KNOWN_DOMAIN,
    )
    batch.delta = table.delta
    batch.mechanism = table.mechanism
    return batch


def run_cli(argv: list[str]) -> int:
    """`fraudscreen ARGV` in-process; main() configures logging, so restore it after."""
    saved = structlog.get_config()
    try:
        return main(argv)
    finally:
        structlog.configure(**saved)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def refusal(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """(code, message, BadRequest fields) of a refused call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:  # refused by the transport (TLS), not by the hub
        return error.code(), error.details() or "", {}
    fields: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields.update({v.field: v.description for v in bad.field_violations})
    return error.code(), status.message, fields


def refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return refusal(caught.value)


# -- fixtures -----------------------------------------------------------------------------


@dataclass
class Hub:
    server: HubServer
    db: Path
    tokens: dict[str, str]  # site -> token
    publisher: str
    directory: Path

    @contextmanager
    def stub(self) -> Iterator[pb_grpc.SyncStub]:
        with grpc.insecure_channel(f"127.0.0.1:{self.server.port}") as channel:
            yield pb_grpc.SyncStub(channel)

    def push(self, batch: pb.AggregateBatch, site: str = "shop-a") -> pb.PushBatchResponse:
        with self.stub() as stub:
            return stub.PushBatch(
                pb.PushBatchRequest(batch=batch), metadata=bearer(self.tokens[site]), timeout=5
            )

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql).fetchall()


@dataclass(frozen=True)
class Keys:
    private: Path
    public: Path
    other_private: Path  # a key the hub does not trust
    other_public: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("keys")
    generate_keypair(directory / "analyst.key", directory / "analyst.pub")
    generate_keypair(directory / "other.key", directory / "other.pub")
    return Keys(
        directory / "analyst.key",
        directory / "analyst.pub",
        directory / "other.key",
        directory / "other.pub",
    )


def hub_settings(directory: Path, keys: Keys, **overrides: object) -> HubSettings:
    values: dict[str, object] = {
        "db": directory / "hub.sqlite3",
        "site_tokens": directory / "sites.tokens",
        "publisher_tokens": directory / "publishers.tokens",
        "trusted_keys": (keys.public,),
        "listen": "127.0.0.1:0",
        "grace_seconds": 0.5,
    }
    values.update(overrides)
    return HubSettings(**values)  # type: ignore[arg-type]


@contextmanager
def running_hub(directory: Path, keys: Keys, **overrides: object) -> Iterator[Hub]:
    directory.mkdir(parents=True, exist_ok=True)
    tokens = {site: add_token(directory / "sites.tokens", site) for site in SITES}
    publisher = add_token(directory / "publishers.tokens", "alice")
    settings = hub_settings(directory, keys, **overrides)
    server = HubServer(settings)
    server.start()
    try:
        yield Hub(server, Path(settings.db), tokens, publisher, directory)
    finally:
        server.stop(grace=0)


@pytest.fixture
def hub(tmp_path: Path, keys: Keys) -> Iterator[Hub]:
    with running_hub(tmp_path / "hub", keys) as running:
        yield running


# -- release bundles ----------------------------------------------------------------------


def _bundle(
    directory: Path,
    key: Path | None,
    *,
    version: str | None = None,
    edit: Callable[[dict[str, object]], None] | None = None,
) -> Path:
    """A copy of models/default, optionally re-versioned or edited, signed with `key`."""
    shutil.copytree(DEFAULT_BUNDLE, directory)
    for stale in directory.glob(SIGNATURE_FILE):
        stale.unlink()
    if version is not None or edit is not None:
        data = json.loads((directory / MANIFEST_FILE).read_text())
        if version is not None:
            data["model_version"] = version
        if edit is not None:
            edit(data)
        rewrite_manifest(directory, Manifest.from_json(data))
    if key is not None:
        sign_bundle(directory, load_private_key(key))
    return directory


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _version(directory: Path) -> str:
    return str(json.loads((directory / MANIFEST_FILE).read_text())["model_version"])


@dataclass(frozen=True)
class Bundles:
    v1: Path
    v2: Path
    v1_edited: Path  # same version as v1, other content, validly signed
    new_schema: Path  # a bin schema the hub was not started with
    unsigned: Path
    untrusted: Path


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Bundles:
    root = tmp_path_factory.mktemp("bundles")

    def more_amount_bins(data: dict[str, object]) -> None:
        schema = BinSchema.from_json(data["bin_schema"])  # type: ignore[arg-type]
        edges = list(schema.edges)
        edges[0] = (*edges[0], 500.0)
        data["bin_schema"] = BinSchema(schema.features, tuple(edges), schema.nullable).to_json()

    return Bundles(
        v1=_bundle(root / "v1", keys.private),
        v2=_bundle(root / "v2", keys.private, version="hub-test-v2"),
        v1_edited=_bundle(root / "v1e", keys.private, edit=lambda d: d.update(created_at="edited")),
        new_schema=_bundle(root / "v3", keys.private, version="hub-test-v3", edit=more_amount_bins),
        unsigned=_bundle(root / "unsigned", None, version="hub-test-unsigned"),
        untrusted=_bundle(root / "untrusted", keys.other_private, version="hub-test-untrusted"),
    )


def _publish(
    hub: Hub,
    files: dict[str, bytes],
    version: str,
    sites: tuple[str, ...] = (),
    token: str | None = None,
) -> pb.PublishReleaseResponse:
    request = pb.PublishReleaseRequest(
        release=pb.ModelRelease(
            model_version=version,
            files=[pb.ReleaseFile(name=n, content=c) for n, c in files.items()],
        ),
        sites=sites,
    )
    with hub.stub() as stub:
        return stub.PublishRelease(request, metadata=bearer(token or hub.publisher), timeout=10)


def _fetch(hub: Hub, site: str, current: str = "") -> pb.FetchReleaseResponse:
    with hub.stub() as stub:
        return stub.FetchRelease(
            pb.FetchReleaseRequest(current_version=current),
            metadata=bearer(hub.tokens[site]),
            timeout=10,
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


# -- authentication and authorization -----------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer not-a-token"),),
        (("authorization", "Basic c2hvcDpwdw=="),),
        (("authorization", "Bearer"),),
    ],
    ids=["none", "unknown", "not-bearer", "empty"],
)
def test_missing_or_unknown_token_is_unauthenticated(
    hub: Hub, metadata: tuple[tuple[str, str], ...]
) -> None:
    with hub.stub() as stub:
        for call in (
            lambda: stub.PushBatch(pb.PushBatchRequest(batch=make_batch()), metadata=metadata),
            lambda: stub.FetchRelease(pb.FetchReleaseRequest(), metadata=metadata),
            lambda: stub.PublishRelease(pb.PublishReleaseRequest(), metadata=metadata),
        ):
            code, message, _ = refused(call)
            assert code == grpc.StatusCode.UNAUTHENTICATED
            assert "Bearer" in message or "token" in message
    assert hub.rows("SELECT COUNT(*) FROM batches") == [(0,)]


def test_a_site_cannot_push_another_sites_batch(hub: Hub) -> None:
    code, message, _ = refused(lambda: hub.push(make_batch(site="shop-b"), site="shop-a"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "'shop-b'" in message and "'shop-a'" in message
    assert hub.rows("SELECT COUNT(*) FROM batches") == [(0,)]


def test_publisher_token_cannot_push_and_site_token_cannot_publish(hub: Hub) -> None:
    with hub.stub() as stub:
        code, message, _ = refused(
            lambda: stub.PushBatch(
                pb.PushBatchRequest(batch=make_batch()), metadata=bearer(hub.publisher)
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED and "publisher" in message
        code, message, _ = refused(
            lambda: stub.PublishRelease(
                pb.PublishReleaseRequest(), metadata=bearer(hub.tokens["shop-a"])
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED and "add-publisher" in message


def test_tokens_are_never_logged(hub: Hub) -> None:
    with capture_logs() as logs:
        hub.push(make_batch())
        with hub.stub() as stub:
            refused(
                lambda: stub.PushBatch(
                    pb.PushBatchRequest(batch=make_batch()),
                    metadata=bearer("a-secret-that-is-not-known"),
                )
            )
    text = json.dumps(logs, default=str)
    assert "sync.batch_stored" in text and "sync.refused" in text
    for token in (*hub.tokens.values(), hub.publisher, "a-secret-that-is-not-known"):
        assert token not in text


def test_token_file_holds_hashes_only_and_a_new_site_works_without_restart(hub: Hub) -> None:
    path = hub.directory / "sites.tokens"
    text = path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    for site, token in hub.tokens.items():
        assert token not in text
        assert f"{site} {hash_token(token)}" in text
    new_token = add_token(path, "shop-c")
    hub.tokens["shop-c"] = new_token
    assert hub.push(make_batch(site="shop-c"), site="shop-c").stored
    with pytest.raises(ValueError, match="--rotate"):
        add_token(path, "shop-c")
    rotated = add_token(path, "shop-c", rotate=True)
    code, _, _ = refused(lambda: hub.push(make_batch(site="shop-c", period="2018-04-02"), "shop-c"))
    assert code == grpc.StatusCode.UNAUTHENTICATED  # the old token stopped working
    hub.tokens["shop-c"] = rotated
    assert hub.push(make_batch(site="shop-c", period="2018-04-02"), site="shop-c").stored


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


def test_health_and_reflection_name_the_sync_service(hub: Hub) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{hub.server.port}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="fraudscreen.v1.Sync"), timeout=5
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert "fraudscreen.v1.Sync" in names


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


def test_schemas_come_from_bundles_and_json_files(tmp_path: Path, keys: Keys) -> None:
    other = BinSchema.from_edges({"TX_AMOUNT": (10.0, 100.0)})
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(other.to_json()))
    # the shipped bundle's schema (it may predate nullable lists: then its legacy hash)
    bundled = load_bundle(DEFAULT_BUNDLE).bin_schema
    assert bundled is not None and bundled.edges == SCHEMA.edges
    with running_hub(tmp_path / "hub", keys, schemas=(DEFAULT_BUNDLE, schema_file)) as hub:
        assert set(hub.server.schemas.hashes()) == {bundled.hash, other.hash}
        assert hub.push(make_batch(cells=[([2], 60, 1)], schema_hash=other.hash)).stored
        assert hub.push(make_batch(period="2018-04-02", schema_hash=bundled.hash)).stored
    broken = tmp_path / "broken.json"
    broken.write_text('{"features": ["TX_AMOUNT"]}')
    with pytest.raises(ValueError, match="not a valid bin schema"):
        HubServer(hub_settings(tmp_path / "hub", keys, schemas=(broken,)))


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


# -- export and status --------------------------------------------------------------------

SUMS = {
    # cell: sums over shop-a 2018-04-01, shop-a 2018-04-02 and shop-b 2018-04-01
    tuple(codes(0)): CellSum(100 + 120 + 30, 3 + 5 + 1, 3),
    tuple(codes(4, 1)): CellSum(50, -2, 1),
    tuple(codes(1, 0, 2, 0, 0, -1)): CellSum(40 + 25, 0 - 4, 2),
}


def _push_fleet(hub: Hub) -> None:
    hub.push(make_batch("shop-a", "2018-04-01", [(codes(0), 100, 3), (codes(4, 1), 50, -2)]))
    hub.push(
        make_batch("shop-a", "2018-04-02", [(codes(0), 120, 5), (codes(1, 0, 2, 0, 0, -1), 25, -4)])
    )
    shop_b = make_batch(
        "shop-b", "2018-04-01", [(codes(0), 30, 1), (codes(1, 0, 2, 0, 0, -1), 40, 0)]
    )
    hub.push(shop_b, "shop-b")
    assert hub.push(shop_b, "shop-b").duplicate  # a resend must not count twice
    other = BinSchema.from_edges({"TX_AMOUNT": (100.0,)})
    hub.server.store.put_schema(other)
    hub.server.schemas.add(other)
    hub.push(make_batch("shop-a", "2018-04-01", [([1], 999, 9)], schema_hash=other.hash))
    # ^ another schema's batch: never summed into the default schema's table


def test_summed_table_and_sites_summary_are_exact(hub: Hub) -> None:
    _push_fleet(hub)
    assert hub.server.store.summed_table(SCHEMA.hash) == SUMS
    summary = {s.site_id: s for s in hub.server.store.sites_summary()}
    a, b = summary["shop-a"], summary["shop-b"]
    assert (a.batches, a.periods, a.last_period, a.epsilon) == (3, 2, "2018-04-02", 3.0)
    assert (b.batches, b.periods, b.last_period, b.epsilon) == (1, 1, "2018-04-01", 1.0)
    assert len(a.schema_hashes) == 2 and b.schema_hashes == (SCHEMA.hash,)
    assert len(hub.server.store.batches(SCHEMA.hash)) == 3


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_cli_writes_the_summed_table_and_a_schema_sidecar(
    hub: Hub, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _push_fleet(hub)
    out = hub.directory / f"table{suffix}"
    argv = ["hub", "export", "--db", str(hub.db), "--schema-hash", SCHEMA.hash, "--out", str(out)]
    assert run_cli(argv) == 0
    assert "3 cells summed over 3 batches from 2 sites" in capsys.readouterr().out
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    names = [SCHEMA.features[i] for i in SCHEMA.binned]
    assert list(frame.columns) == [*names, "noisy_total", "noisy_fraud", "batches"]
    got = {
        tuple(int(v) for v in row[: len(names)]): CellSum(*(int(v) for v in row[len(names) :]))
        for row in frame.itertuples(index=False)
    }
    assert got == SUMS
    sidecar = json.loads(out.with_suffix(".schema.json").read_text())
    assert sidecar["schema_hash"] == SCHEMA.hash
    assert BinSchema.from_json(sidecar["bin_schema"]) == SCHEMA
    assert sidecar["binned_features"] == names
    assert (sidecar["batches"], sidecar["sites"], sidecar["cells"]) == (3, 2, 3)
    assert sidecar["periods"] == {"first": "2018-04-01", "last": "2018-04-02"}


def test_export_refuses_an_unknown_schema_or_missing_db(
    hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(hub.directory / "t.csv")
    assert (
        run_cli(["hub", "export", "--db", str(hub.db), "--schema-hash", "0" * 64, "--out", out])
        == 2
    )
    assert "fraudscreen hub status" in capsys.readouterr().err
    missing = str(hub.directory / "nope.sqlite3")
    assert (
        run_cli(["hub", "export", "--db", missing, "--schema-hash", SCHEMA.hash, "--out", out]) == 2
    )
    assert "no hub database" in capsys.readouterr().err
    assert not Path(missing).exists()


def test_status_cli_lists_sites_schemas_and_releases(
    hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    _push_fleet(hub)
    assert run_cli(["hub", "status", "--db", str(hub.db)]) == 0
    out = capsys.readouterr().out
    assert "2 sites" in out and "0 releases" in out
    line_a = next(line for line in out.splitlines() if line.startswith("shop-a"))
    # site, (unreported) version, predictor -, last seen date + time, ago, pending -,
    # epsilon spent (summed over its batches)/budget unknown, batches, canary -, status
    fields = line_a.split()
    assert fields[1:3] == ["(unreported)", "-"] and fields[6:10] == ["-", "3/?", "3", "-"]
    assert fields[10] == "ok"
    assert f"schema {SCHEMA.hash}" in out
    with pytest.raises(SystemExit) as usage:  # argparse: one usage line, exit 2
        run_cli(["hub", "status", "--db", str(hub.db), "--stale-after", "soon"])
    assert usage.value.code == 2
    assert "not a duration like 90s" in capsys.readouterr().err


# -- no raw data at rest ------------------------------------------------------------------

# Every column of every aggregate table, and what its values may be: codes, counts and
# batch metadata. Nothing else has a place to be.
_INTEGER = re.compile(r"-?\d+")
ALLOWED_COLUMNS = {
    "batches": {
        "site_id",
        "batch_id",
        "period",
        "period_days",
        "schema_hash",
        "epsilon",
        "delta",
        "mechanism",
        "cell_count",
        "content_sha256",
        "received_at",
        "kind",
    },
    "cells": {"site_id", "batch_id", "codes", "noisy_total", "noisy_fraud"},
    "bin_schemas": {"schema_hash", "definition", "accepted"},
    "releases": {"seq", "model_version", "content_sha256", "everyone", "published_at"},
    "release_targets": {"seq", "site_id"},
    "release_files": {"seq", "name", "content"},
    "schema_migrations": {"version", "name", "applied_at"},
    "site_states": {"site_id", "first_seen", "last_seen", "changed_at", *STATE_FIELDS},
    "site_state_history": {"id", "site_id", "changed_at", *STATE_FIELDS},
}
_LUHN_RUN = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
_HASH = re.compile(r"[0-9a-f]{32}|[0-9a-f]{64}")


def test_the_database_holds_only_codes_counts_and_metadata(hub: Hub, bundles: Bundles) -> None:
    _push_fleet(hub)
    _publish(hub, _files(bundles.v1), _version(bundles.v1), sites=("shop-a",))
    pushed = hub.server.store.batches()
    allowed_text = {
        "site_id": {b.site_id for b in pushed},
        "batch_id": {b.batch_id for b in pushed},
        "period": {b.period for b in pushed},
        "schema_hash": {b.schema_hash for b in pushed},
        "mechanism": {MECHANISM},
        "kind": {"threshold", "known_domain"},
    }
    with sqlite3.connect(hub.db) as conn:
        tables = {
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith("sqlite_")
        }
        assert tables == set(ALLOWED_COLUMNS)
        for table in ("batches", "cells"):
            cursor = conn.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed names
            columns = [d[0] for d in cursor.description]
            assert set(columns) == ALLOWED_COLUMNS[table]
            for row in cursor:
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, int | float):
                        continue  # counts, codes' metadata, epsilon, the hub's receive time
                    assert isinstance(value, str), (table, column, value)
                    if column == "codes":
                        assert all(
                            _INTEGER.fullmatch(c) and -1 <= int(c) <= 4 for c in value.split(",")
                        )
                    elif column == "content_sha256":
                        assert re.fullmatch(r"[0-9a-f]{64}", value)
                    else:
                        assert value in allowed_text[column], (table, column, value)
        definitions = [json.loads(d) for (d,) in conn.execute("SELECT definition FROM bin_schemas")]
        assert all(set(d) == {"features", "edges", "nullable", "sha256"} for d in definitions)
        # Nothing anywhere (release files excepted: analysts' signed model, not site data)
        # looks like a card number.
        for table in tables - {"release_files"}:
            for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 - fixed names
                for value in row:
                    text = str(value)
                    assert not any(pan in text for pan in PANS)
                    if _HASH.fullmatch(text):
                        continue  # ids and hashes, checked per column above
                    runs = _LUHN_RUN.findall(text.replace(".", " "))
                    assert not [r for r in runs if luhn_valid(r)], (table, value)
    assert oct(hub.db.stat().st_mode & 0o777) == "0o600"
    assert hub.rows("PRAGMA journal_mode") == [("wal",)]


# -- storage directly ---------------------------------------------------------------------


def test_storage_migrates_a_database_from_before_release_kinds(tmp_path: Path) -> None:
    """Old hub databases have no kind column: their batches were all thresholded, and a
    thresholded batch resent by an upgraded gateway is still a duplicate, not a conflict."""
    path = tmp_path / "hub.sqlite3"
    SQLiteHubStore(path)
    with sqlite3.connect(path) as conn:  # make it look like a database from before kinds
        conn.execute("ALTER TABLE batches DROP COLUMN kind")
    old = StoredBatch(
        "s", "b" * 32, "2018-04-01", 1, SCHEMA.hash, 1.0, 1e-7, "m", ((tuple(codes(0)), 10, 1),)
    )
    document = {
        "site_id": "s",
        "batch_id": "b" * 32,
        "period": "2018-04-01",
        "period_days": 1,
        "schema_hash": SCHEMA.hash,
        "epsilon": 1.0,
        "delta": 1e-7,
        "mechanism": "m",
        "cells": [[codes(0), 10, 1]],
    }
    legacy_digest = hashlib.sha256(json.dumps(document, separators=(",", ":")).encode())
    assert old.content_sha256() == legacy_digest.hexdigest()  # the hash from before kinds
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO batches (site_id, batch_id, period, period_days, schema_hash, epsilon,"
            " delta, mechanism, cell_count, content_sha256, received_at)"
            " VALUES ('s', ?, '2018-04-01', 1, ?, 1.0, 1e-7, 'm', 1, ?, 0)",
            ("b" * 32, SCHEMA.hash, old.content_sha256()),
        )
    store = SQLiteHubStore(path)  # reopened by the new code
    [record] = store.batches()
    assert record.kind == "threshold"
    assert store.put_batch(old) is False  # the resend is a duplicate
    known = StoredBatch(**{**old.__dict__, "batch_id": "c" * 32, "kind": "known_domain"})
    assert (
        known.content_sha256()
        != StoredBatch(**{**known.__dict__, "kind": "threshold"}).content_sha256()
    )
    assert store.put_batch(known) is True
    assert {r.batch_id: r.kind for r in store.batches()} == {
        "b" * 32: "threshold",
        "c" * 32: "known_domain",
    }


def test_storage_put_batch_is_idempotent_and_refuses_conflicts(tmp_path: Path) -> None:
    store = SQLiteHubStore(tmp_path / "sub" / "hub.sqlite3")
    batch = StoredBatch(
        "s", "a" * 32, "2018-04-01", 1, SCHEMA.hash, 1.0, 1e-7, "m", ((tuple(codes(0)), 10, 1),)
    )
    assert store.put_batch(batch) is True
    assert store.put_batch(batch) is False
    changed = StoredBatch(**{**batch.__dict__, "epsilon": 2.0})
    with pytest.raises(ConflictError, match="already stored with different content"):
        store.put_batch(changed)
    assert store.summed_table(SCHEMA.hash) == {tuple(codes(0)): CellSum(10, 1, 1)}
    assert store.release_for("s") is None and store.releases() == []
    assert oct((tmp_path / "sub" / "hub.sqlite3").stat().st_mode & 0o777) == "0o600"


# -- releases -----------------------------------------------------------------------------


def test_publish_and_fetch_with_canary_targeting(
    hub: Hub, bundles: Bundles, tmp_path: Path, keys: Keys
) -> None:
    v1, v2 = _version(bundles.v1), _version(bundles.v2)
    assert not _fetch(hub, "shop-a").available  # nothing published yet
    reply = _publish(hub, _files(bundles.v1), v1, sites=("shop-a",))
    assert (reply.model_version, reply.sites) == (v1, 1)

    got = _fetch(hub, "shop-a")
    assert got.available and got.release.model_version == v1
    assert got.release.published_at
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    for item in got.release.files:
        (fetched / item.name).write_bytes(item.content)
    verify_bundle_signature(fetched, [PublicKey.from_file(keys.public)])
    assert not _fetch(hub, "shop-b").available  # not in the canary
    assert not _fetch(hub, "shop-a", current=v1).available  # already runs it

    reply = _publish(hub, _files(bundles.v2), v2)  # everyone
    assert reply.sites == 2
    assert _fetch(hub, "shop-a").release.model_version == v2
    assert _fetch(hub, "shop-b").release.model_version == v2

    _publish(hub, _files(bundles.v1), v1, sites=("shop-b",))  # roll shop-b back
    assert _fetch(hub, "shop-b").release.model_version == v1
    assert _fetch(hub, "shop-a").release.model_version == v2
    records = hub.server.store.releases()
    assert [(r.model_version, r.sites) for r in records] == [
        (v1, ("shop-a",)),
        (v2, None),
        (v1, ("shop-b",)),
    ]


def test_release_refusals(hub: Hub, bundles: Bundles) -> None:
    v1 = _version(bundles.v1)
    _publish(hub, _files(bundles.v1), v1)
    cases: list[tuple[str, dict[str, bytes], str, tuple[str, ...], grpc.StatusCode, str]] = [
        (
            "unsigned",
            _files(bundles.unsigned),
            _version(bundles.unsigned),
            (),
            grpc.StatusCode.FAILED_PRECONDITION,
            "fraudscreen sign",
        ),
        (
            "untrusted key",
            _files(bundles.untrusted),
            _version(bundles.untrusted),
            (),
            grpc.StatusCode.FAILED_PRECONDITION,
            "untrusted key",
        ),
        (
            "changed after signing",
            {**_files(bundles.v2), GOLDEN_FILE: b'{"rows": [[1]], "scores": [0.5]}\n'},
            _version(bundles.v2),
            (),
            grpc.StatusCode.FAILED_PRECONDITION,
            "golden.json",
        ),
        (
            "unsigned extra file",
            {**_files(bundles.v2), "extra.txt": b"not covered"},
            _version(bundles.v2),
            (),
            grpc.StatusCode.FAILED_PRECONDITION,
            "extra.txt",
        ),
        (
            "same version, other content",
            _files(bundles.v1_edited),
            v1,
            (),
            grpc.StatusCode.ALREADY_EXISTS,
            "new model version",
        ),
    ]
    for what, files, version, sites, expected, hint in cases:
        code, message, _ = refused(lambda: _publish(hub, files, version, sites))  # noqa: B023
        assert (code, hint in message) == (expected, True), (what, message)
        assert "fraudscreen-release-" not in message  # no temp paths in answers
    invalid: list[tuple[dict[str, bytes], str, tuple[str, ...], str]] = [
        (
            {"../evil": b"x", **_files(bundles.v2)},
            _version(bundles.v2),
            (),
            "release.files[0].name",
        ),
        (_files(bundles.v2), "not-the-manifest-version", (), "release.model_version"),
        (_files(bundles.v2), _version(bundles.v2), ("shop-typo",), "sites[0]"),
        (_files(bundles.v2), _version(bundles.v2), ("shop-a", "shop-a"), "sites[1]"),
        ({}, _version(bundles.v2), (), "release.files"),
    ]
    for files, version, sites, field in invalid:
        code, _, fields = refused(lambda: _publish(hub, files, version, sites))  # noqa: B023
        assert code == grpc.StatusCode.INVALID_ARGUMENT and field in fields, (field, fields)
    assert [r.model_version for r in hub.server.store.releases()] == [v1]


def test_no_trusted_key_refuses_every_release(tmp_path: Path, keys: Keys, bundles: Bundles) -> None:
    with running_hub(tmp_path / "hub", keys, trusted_keys=()) as hub:
        code, message, _ = refused(lambda: _publish(hub, _files(bundles.v1), _version(bundles.v1)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "--trusted-key" in message


def test_a_published_schema_is_accepted_and_survives_a_restart(
    tmp_path: Path, keys: Keys, bundles: Bundles
) -> None:
    manifest = json.loads((bundles.new_schema / MANIFEST_FILE).read_text())
    new_hash = BinSchema.from_json(manifest["bin_schema"]).hash
    batch = make_batch(cells=[(codes(5), 70, 2)], schema_hash=new_hash)  # code 5: new bin
    directory = tmp_path / "hub"
    with running_hub(directory, keys) as hub:
        code, _, _ = refused(lambda: hub.push(batch))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        _publish(hub, _files(bundles.new_schema), _version(bundles.new_schema))
        assert hub.push(batch).stored
    (directory / "sites.tokens").unlink()
    (directory / "publishers.tokens").unlink()
    with running_hub(directory, keys) as hub:
        assert hub.push(
            make_batch(period="2018-04-02", cells=[(codes(5), 9, 0)], schema_hash=new_hash)
        ).stored
        assert hub.server.store.summed_table(new_hash) == {tuple(codes(5)): CellSum(79, 2, 2)}


# -- TLS ----------------------------------------------------------------------------------


def test_tls(tmp_path: Path, keys: Keys, tls: TLSFiles) -> None:
    settings = {"tls": TLSConfig(cert_file=tls.server_cert, key_file=tls.server_key)}
    with running_hub(tmp_path / "hub", keys, **settings) as hub:
        with secure_channel(hub.server.port, tls.ca_cert) as channel:
            reply = pb_grpc.SyncStub(channel).PushBatch(
                pb.PushBatchRequest(batch=make_batch()),
                metadata=bearer(hub.tokens["shop-a"]),
                timeout=5,
            )
            assert reply.stored
        with grpc.insecure_channel(f"127.0.0.1:{hub.server.port}") as plain:
            code, _, _ = refused(
                lambda: pb_grpc.SyncStub(plain).PushBatch(
                    pb.PushBatchRequest(batch=make_batch()),
                    metadata=bearer(hub.tokens["shop-a"]),
                    timeout=3,
                )
            )
            assert code == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_names_the_site_by_certificate_and_tokens_still_work(
    tmp_path: Path, keys: Keys, tls: TLSFiles
) -> None:
    mutual = TLSConfig(
        cert_file=tls.server_cert, key_file=tls.server_key, client_ca_file=tls.ca_cert
    )
    with running_hub(tmp_path / "hub", keys, tls=mutual) as hub:
        port = hub.server.port
        with secure_channel(port, tls.ca_cert, tls.client_cert, tls.client_key) as channel:
            stub = pb_grpc.SyncStub(channel)
            # the client certificate's CN is "terminal-1": that is the site, no token needed
            assert stub.PushBatch(
                pb.PushBatchRequest(batch=make_batch("terminal-1")), timeout=5
            ).stored
            code, _, _ = refused(
                lambda: stub.PushBatch(pb.PushBatchRequest(batch=make_batch("shop-a")), timeout=5)
            )
            assert code == grpc.StatusCode.PERMISSION_DENIED
            assert stub.PushBatch(  # a token, when sent, names the site
                pb.PushBatchRequest(batch=make_batch("shop-a")),
                metadata=bearer(hub.tokens["shop-a"]),
                timeout=5,
            ).stored
        for cert, key in ((None, None), (tls.other_client_cert, tls.other_client_key)):
            with secure_channel(port, tls.ca_cert, cert, key) as channel:
                code, _, _ = refused(
                    lambda: pb_grpc.SyncStub(channel).PushBatch(
                        pb.PushBatchRequest(batch=make_batch()),
                        metadata=bearer(hub.tokens["shop-a"]),
                        timeout=3,
                    )
                )
                assert code == grpc.StatusCode.UNAVAILABLE


# -- CLI ----------------------------------------------------------------------------------


def test_add_site_cli_prints_the_token_once_and_stores_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "var" / "sites.tokens"
    assert run_cli(["hub", "add-site", "shop-9", "--tokens", str(path)]) == 0
    captured = capsys.readouterr()
    token = captured.out.strip()
    assert len(token) >= 40 and "\n" not in token
    assert "shown this once" in captured.err and token not in captured.err
    assert token not in path.read_text() and hash_token(token) in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert run_cli(["hub", "add-site", "shop-9", "--tokens", str(path)]) == 2
    assert "--rotate" in capsys.readouterr().err
    assert run_cli(["hub", "add-site", "bad/name", "--tokens", str(path)]) == 2
    assert (
        run_cli(["hub", "add-publisher", "alice", "--publisher-token-file", str(path.parent / "p")])
        == 0
    )
    assert capsys.readouterr().out.strip()


def test_hub_serve_process_drains_on_sigterm(tmp_path: Path) -> None:
    tokens = tmp_path / "sites.tokens"
    token = add_token(tokens, "shop-a")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fraudscreen",
            "--log-format",
            "json",
            "hub",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            str(tmp_path / "hub.sqlite3"),
            "--tokens",
            str(tokens),
            "--publisher-token-file",
            str(tmp_path / "publishers.tokens"),
            "--grace-seconds",
            "5",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    try:
        lines, events = read_log_until(process, "hub.listening", timeout=30)
        port = events.get("hub.listening", {}).get("port", 0)
        assert port, "".join(lines)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="fraudscreen.v1.Sync"), timeout=5
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            reply = pb_grpc.SyncStub(channel).PushBatch(
                pb.PushBatchRequest(batch=make_batch()), metadata=bearer(token), timeout=5
            )
            assert reply.stored
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    logs = drain_log(process, lines)
    assert '"hub.draining"' in logs and '"hub.stopped"' in logs
    assert token not in logs
    assert "hub.no_publishers" in logs  # publishing disabled is said, not silent
