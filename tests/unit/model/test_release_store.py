"""The release store's rules that need no gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudscreen.model.releases import ReleaseError, ReleaseStore


@pytest.mark.parametrize("version", ["v1\n", "..", ".", "", "a/b", "x" * 129])
def test_a_release_version_must_be_a_whole_directory_name(tmp_path: Path, version: str) -> None:
    with pytest.raises(ReleaseError, match="is not a model version name"):
        ReleaseStore(tmp_path).path(version)
