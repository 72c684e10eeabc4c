"""The release store's rules that need no gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraudscreen.model.releases import ReleaseError, ReleaseStore, describe_releases


@pytest.mark.parametrize("version", ["v1\n", "..", ".", "", "a/b", "x" * 129])
def test_a_release_version_must_be_a_whole_directory_name(tmp_path: Path, version: str) -> None:
    with pytest.raises(ReleaseError, match="is not a model version name"):
        ReleaseStore(tmp_path).path(version)


def test_describe_releases_names_the_configured_bundle_when_none_is_active(
    tmp_path: Path,
) -> None:
    store = ReleaseStore(tmp_path / "releases")
    lines = describe_releases(store, Path("models/default"), ())
    assert lines == [
        f"releases in {store.root}",
        "current:  (none: the configured bundle models/default)",
        "previous: (none)",
        "rejected: (none)",
        "trusted keys: (none: updates disabled)",
    ]
    store.root.mkdir()
    (store.root / "state.json").write_text(
        json.dumps({"current": "m-2", "previous": "m-1", "rejected": ["m-0", "m-9"]})
    )
    assert describe_releases(store, Path("models/default"), ("a.pem", "b.pem"))[1:] == [
        "current:  m-2",
        "previous: m-1",
        "rejected: m-0, m-9",
        "trusted keys: a.pem, b.pem",
    ]


def test_base_of_names_the_model_an_installed_correction_corrects(tmp_path: Path) -> None:
    """What the uploader asks to band rows a correction served, live or not: the manifest's
    `base`; None for a plain release, a version not installed or a damaged manifest."""
    store = ReleaseStore(tmp_path)
    manifests = {
        "corr-1": {"model_version": "corr-1", "base": {"model_version": "base-1", "sha256": "x"}},
        "plain-1": {"model_version": "plain-1"},
        "odd-1": {"model_version": "odd-1", "base": "base-1"},
    }
    for version, manifest in manifests.items():
        store.path(version).mkdir(parents=True)
        (store.path(version) / "manifest.json").write_text(json.dumps(manifest))
    store.path("broken-1").mkdir()
    (store.path("broken-1") / "manifest.json").write_text("{not json")
    assert store.base_of("corr-1") == "base-1"
    for version in ("plain-1", "odd-1", "broken-1", "missing-1", "stand-in", "../corr-1"):
        assert store.base_of(version) is None
