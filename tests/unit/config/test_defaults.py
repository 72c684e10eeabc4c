"""Gateway configuration: the embedded defaults, and the example file that lists them."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from fraudscreen.config import (
    DEFAULT_BUNDLE,
    EXAMPLE_TOML,
    GatewayConfig,
    InvalidSettingError,
    PolicyConfig,
    ServerConfig,
    SiteConfig,
    load_config,
    parse_host_port,
)
from tests.support.config_files import ALL_SETTINGS, get, write

# --- defaults ----------------------------------------------------------------------------


def test_defaults_without_file_or_env(tmp_path: Path) -> None:
    config = load_config(None, environ={})
    expected = GatewayConfig(
        site=SiteConfig(key_file=tmp_path / "var" / "site.key"),
        journal=dataclasses.replace(GatewayConfig().journal, path=tmp_path / "var/journal.sqlite3"),
        model=dataclasses.replace(GatewayConfig().model, releases_dir=tmp_path / "var/releases"),
    )
    assert config == expected
    assert config.model.bundle == DEFAULT_BUNDLE
    assert (DEFAULT_BUNDLE / "manifest.json").is_file()


def test_defaults_listen_on_loopback_only_and_plaintext() -> None:
    config = load_config(None, environ={})
    for listen in (config.server.listen, config.metrics.listen):
        host, port = parse_host_port(listen)
        assert ipaddress.ip_address(host).is_loopback
        assert port > 0
    assert not config.server.tls.enabled
    assert not config.metrics.tls.enabled
    assert config.metrics.enabled


def test_all_loaded_paths_are_absolute() -> None:
    config = load_config(None, environ={})
    paths = [get(config, name) for name in ALL_SETTINGS if isinstance(get(config, name), Path)]
    assert len(paths) == 4
    assert all(path.is_absolute() for path in paths)


def test_os_environ_is_used_when_environ_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDSCREEN_SITE_ID", "from-os-environ")
    assert load_config().site.id == "from-os-environ"


def test_direct_construction_validates_and_names_the_field() -> None:
    with pytest.raises(InvalidSettingError, match=r"^max_workers: must be >= 1 and <= 1024"):
        ServerConfig(max_workers=0)
    with pytest.raises(ValueError, match="review_threshold and decline_threshold"):
        PolicyConfig(review_threshold=0.9, decline_threshold=0.5)


# --- the example file --------------------------------------------------------------------


def test_example_toml_gives_exactly_the_defaults(tmp_path: Path) -> None:
    # Its relative paths resolve against its own directory: put it in the cwd.
    file = write(tmp_path / "fraudscreen.toml", EXAMPLE_TOML)
    assert load_config(file, environ={}) == load_config(None, environ={})


def test_example_toml_mentions_every_setting_in_its_table(tmp_path: Path) -> None:
    """Uncommenting the commented-out settings gives a file with every setting exactly once."""
    uncommented = re.sub(r"^# (\w+ = )", r"\1", EXAMPLE_TOML, flags=re.MULTILINE)
    data = tomllib.loads(uncommented)

    def flatten(table: dict[str, Any], prefix: str = "") -> list[str]:
        names: list[str] = []
        for key, value in table.items():
            if isinstance(value, dict):
                names += flatten(value, f"{prefix}{key}.")
            else:
                names.append(prefix + key)
        return names

    assert sorted(flatten(data)) == sorted(ALL_SETTINGS)
    config = load_config(write(tmp_path / "full.toml", uncommented), environ={})
    assert config.policy.review_threshold is not None
