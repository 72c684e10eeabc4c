"""Helpers of the configuration tests: write a file, read a dotted setting, catch the error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fraudscreen.config import ConfigError, GatewayConfig, load_config
from fraudscreen.config.settings import leaves

ALL_SETTINGS = [name for name, _ in leaves(GatewayConfig)]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def get(config: object, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def config_error(path: Path | None = None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={} if environ is None else environ)
    return str(info.value)
