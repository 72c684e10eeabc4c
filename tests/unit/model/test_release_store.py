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
