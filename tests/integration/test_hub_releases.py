"""Signed model releases through the hub: publish and fetch with canary targeting, every
refusal named, trusted keys, a published bin schema accepted across a restart."""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from fraudscreen.binschema import BinSchema
from fraudscreen.hub.storage import CellSum
from fraudscreen.model.bundle import GOLDEN_FILE, MANIFEST_FILE
from fraudscreen.model.signing import PublicKey, verify_bundle_signature
from tests.support.hub_support import (
    Bundles,
    Hub,
    Keys,
    bundle_files,
    bundle_version,
    codes,
    fetch,
    make_batch,
    publish,
    refused,
    running_hub,
)

# -- releases -----------------------------------------------------------------------------


def test_publish_and_fetch_with_canary_targeting(
    hub: Hub, bundles: Bundles, tmp_path: Path, keys: Keys
) -> None:
    v1, v2 = bundle_version(bundles.v1), bundle_version(bundles.v2)
    assert not fetch(hub, "shop-a").available  # nothing published yet
    reply = publish(hub, bundle_files(bundles.v1), v1, sites=("shop-a",))
    assert (reply.model_version, reply.sites) == (v1, 1)

    got = fetch(hub, "shop-a")
    assert got.available and got.release.model_version == v1
    assert got.release.published_at
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    for item in got.release.files:
        (fetched / item.name).write_bytes(item.content)
    verify_bundle_signature(fetched, [PublicKey.from_file(keys.public)])
    assert not fetch(hub, "shop-b").available  # not in the canary
    assert not fetch(hub, "shop-a", current=v1).available  # already runs it

    reply = publish(hub, bundle_files(bundles.v2), v2)  # everyone
    assert reply.sites == 2
    assert fetch(hub, "shop-a").release.model_version == v2
    assert fetch(hub, "shop-b").release.model_version == v2

    publish(hub, bundle_files(bundles.v1), v1, sites=("shop-b",))  # roll shop-b back
    assert fetch(hub, "shop-b").release.model_version == v1
    assert fetch(hub, "shop-a").release.model_version == v2
    records = hub.server.store.releases()
    assert [(r.model_version, r.sites) for r in records] == [
        (v1, ("shop-a",)),
        (v2, None),
        (v1, ("shop-b",)),
    ]


def test_release_refusals(hub: Hub, bundles: Bundles) -> None:
    v1 = bundle_version(bundles.v1)
    publish(hub, bundle_files(bundles.v1), v1)
    cases: list[tuple[str, dict[str, bytes], str, tuple[str, ...], grpc.StatusCode, str]] = [
        (
            "unsigned",
            bundle_files(bundles.unsigned),
            bundle_version(bundles.unsigned),
            (),
            grpc.StatusCode.FAILED_PRECONDITION,
            "fraudscreen sign",
        ),
        (
            "untrusted key",
            bundle_files(bundles.untrusted),
            bundle_version(bundles.untrusted),
            (),
            grpc.StatusCode.FAILED_PRECONDITION,
            "untrusted key",
        ),
        (
            "changed after signing",
            {**bundle_files(bundles.v2), GOLDEN_FILE: b'{"rows": [[1]], "scores": [0.5]}\n'},
            bundle_version(bundles.v2),
            (),
            grpc.StatusCode.FAILED_PRECONDITION,
            "golden.json",
        ),
        (
            "unsigned extra file",
            {**bundle_files(bundles.v2), "extra.txt": b"not covered"},
            bundle_version(bundles.v2),
            (),
            grpc.StatusCode.FAILED_PRECONDITION,
            "extra.txt",
        ),
        (
            "same version, other content",
            bundle_files(bundles.v1_edited),
            v1,
            (),
            grpc.StatusCode.ALREADY_EXISTS,
            "new model version",
        ),
    ]
    for what, files, version, sites, expected, hint in cases:
        code, message, _ = refused(lambda: publish(hub, files, version, sites))  # noqa: B023
        assert (code, hint in message) == (expected, True), (what, message)
        assert "fraudscreen-release-" not in message  # no temp paths in answers
    invalid: list[tuple[dict[str, bytes], str, tuple[str, ...], str]] = [
        (
            {"../evil": b"x", **bundle_files(bundles.v2)},
            bundle_version(bundles.v2),
            (),
            "release.files[0].name",
        ),
        (bundle_files(bundles.v2), "not-the-manifest-version", (), "release.model_version"),
        (bundle_files(bundles.v2), bundle_version(bundles.v2), ("shop-typo",), "sites[0]"),
        (bundle_files(bundles.v2), bundle_version(bundles.v2), ("shop-a", "shop-a"), "sites[1]"),
        ({}, bundle_version(bundles.v2), (), "release.files"),
    ]
    for files, version, sites, field in invalid:
        code, _, fields = refused(lambda: publish(hub, files, version, sites))  # noqa: B023
        assert code == grpc.StatusCode.INVALID_ARGUMENT and field in fields, (field, fields)
    assert [r.model_version for r in hub.server.store.releases()] == [v1]


def test_no_trusted_key_refuses_every_release(tmp_path: Path, keys: Keys, bundles: Bundles) -> None:
    with running_hub(tmp_path / "hub", keys, trusted_keys=()) as hub:
        code, message, _ = refused(
            lambda: publish(hub, bundle_files(bundles.v1), bundle_version(bundles.v1))
        )
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
        publish(hub, bundle_files(bundles.new_schema), bundle_version(bundles.new_schema))
        assert hub.push(batch).stored
    (directory / "sites.tokens").unlink()
    (directory / "publishers.tokens").unlink()
    with running_hub(directory, keys) as hub:
        assert hub.push(
            make_batch(period="2018-04-02", cells=[(codes(5), 9, 0)], schema_hash=new_hash)
        ).stored
        assert hub.server.store.summed_table(new_hash) == {tuple(codes(5)): CellSum(79, 2, 2)}
