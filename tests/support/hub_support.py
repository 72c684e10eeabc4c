"""A real hub for the tests/test_hub*.py modules: request builders, a running HubServer on
loopback with a SQLite file and token files, the analyst's keys, signed release bundles.

Each test module declares its own `keys`, `hub` and `bundles` fixtures on these builders
(pytest finds fixtures in conftest.py or the module, and an imported fixture reads as an
unused import)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import structlog
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from fraudscreen.binschema import BinSchema
from fraudscreen.cli import main
from fraudscreen.hub.server import HubServer, HubSettings
from fraudscreen.hub.tokens import add_token
from fraudscreen.model.bundle import MANIFEST_FILE, SIGNATURE_FILE, Manifest, rewrite_manifest
from fraudscreen.model.signing import generate_keypair, load_private_key, sign_bundle
from fraudscreen.privacy.release import ReleaseParameters, release_known_domain
from fraudscreen.v1 import sync_pb2 as pb
from fraudscreen.v1 import sync_pb2_grpc as pb_grpc

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default"
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


# -- a running hub ------------------------------------------------------------------------


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


def make_keys(directory: Path) -> Keys:
    """The analyst's key pair the hub trusts, and one it does not."""
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


# -- release bundles ----------------------------------------------------------------------


def signed_bundle(
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


def bundle_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def bundle_version(directory: Path) -> str:
    return str(json.loads((directory / MANIFEST_FILE).read_text())["model_version"])


@dataclass(frozen=True)
class Bundles:
    v1: Path
    v2: Path
    v1_edited: Path  # same version as v1, other content, validly signed
    new_schema: Path  # a bin schema the hub was not started with
    unsigned: Path
    untrusted: Path


def make_bundles(root: Path, keys: Keys) -> Bundles:
    """Release bundles for every publish case, signed (or not) with `keys`."""

    def more_amount_bins(data: dict[str, object]) -> None:
        schema = BinSchema.from_json(data["bin_schema"])  # type: ignore[arg-type]
        edges = list(schema.edges)
        edges[0] = (*edges[0], 500.0)
        data["bin_schema"] = BinSchema(schema.features, tuple(edges), schema.nullable).to_json()

    return Bundles(
        v1=signed_bundle(root / "v1", keys.private),
        v2=signed_bundle(root / "v2", keys.private, version="hub-test-v2"),
        v1_edited=signed_bundle(
            root / "v1e", keys.private, edit=lambda d: d.update(created_at="edited")
        ),
        new_schema=signed_bundle(
            root / "v3", keys.private, version="hub-test-v3", edit=more_amount_bins
        ),
        unsigned=signed_bundle(root / "unsigned", None, version="hub-test-unsigned"),
        untrusted=signed_bundle(
            root / "untrusted", keys.other_private, version="hub-test-untrusted"
        ),
    )


def publish(
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


def fetch(hub: Hub, site: str, current: str = "") -> pb.FetchReleaseResponse:
    with hub.stub() as stub:
        return stub.FetchRelease(
            pb.FetchReleaseRequest(current_version=current),
            metadata=bearer(hub.tokens[site]),
            timeout=10,
        )
