"""The container keeps all state in its volume: the gateway's settings, built from the
Dockerfile's runtime ENV lines and WORKDIR, put every writable path under the VOLUME.

No Docker engine runs here, so the test reads the Dockerfile the way Docker would for
these three instructions and asks the real config loader what the gateway would use.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from fraudscreen.config import load_config

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"
SHIPPED_BUNDLE = PurePosixPath("/opt/fraudscreen/models/default")  # read-only image content


def runtime_stage(text: str) -> list[tuple[str, str]]:
    """(instruction, arguments) of the last stage, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    instructions = [
        line.strip().split(None, 1)
        for line in joined.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    start = max(i for i, parts in enumerate(instructions) if parts[0].upper() == "FROM")
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "") for parts in instructions[start:]
    ]


def runtime_settings(text: str) -> tuple[dict[str, str], PurePosixPath | None, PurePosixPath]:
    env: dict[str, str] = {}
    workdir: PurePosixPath | None = None
    volume: PurePosixPath | None = None
    for instruction, arguments in runtime_stage(text):
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
        elif instruction == "WORKDIR":
            workdir = PurePosixPath(arguments.strip())
        elif instruction == "VOLUME":
            (volume_text,) = json.loads(arguments)
            volume = PurePosixPath(volume_text)
    assert volume is not None, "the runtime stage declares no VOLUME"
    return env, workdir, volume


def config_paths(obj: Any, prefix: str = "") -> dict[str, Path]:
    """Every path-valued setting of the gateway config, by dotted name."""
    found: dict[str, Path] = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        name = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            found.update(config_paths(value, name + "."))
        elif isinstance(value, Path):
            found[name] = value
    return found


def paths_outside_volume(text: str, cwd: Path) -> dict[str, str]:
    """Settings the container would keep outside its volume (`cwd`: an empty directory
    standing for the container's working directory, `/` unless WORKDIR says otherwise)."""
    env, workdir, volume = runtime_settings(text)
    workdir = workdir or PurePosixPath("/")
    gateway_env = {k: v for k, v in env.items() if k.startswith("FRAUDSCREEN_")}
    config = load_config(None, gateway_env)  # relative settings resolve against the cwd

    def in_container(path: Path) -> PurePosixPath:
        if path.is_relative_to(cwd):
            return workdir / path.relative_to(cwd)
        return PurePosixPath(path)

    outside = {
        name: str(in_container(path))
        for name, path in config_paths(config).items()
        if not in_container(path).is_relative_to(volume) and in_container(path) != SHIPPED_BUNDLE
    }
    cache = PurePosixPath(env.get("FRAUDSCREEN_CACHE_DIR", "~/.cache/fraudscreen"))
    if not cache.is_relative_to(volume):  # model.cache_dir None: this variable decides
        outside["FRAUDSCREEN_CACHE_DIR"] = str(cache)
    if not workdir.is_relative_to(volume):
        outside["WORKDIR"] = str(workdir)
    return outside


def test_every_runtime_path_lies_in_the_volume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert paths_outside_volume(DOCKERFILE.read_text(), tmp_path) == {}


def test_the_check_finds_a_relative_default_outside_the_volume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Dockerfile before the fix: no WORKDIR and no releases variable put the signed
    releases in /var/releases, which the non-root user cannot create."""
    monkeypatch.chdir(tmp_path)
    text = DOCKERFILE.read_text().replace("WORKDIR /var/lib/fraudscreen\n", "")
    text = text.replace("FRAUDSCREEN_MODEL_RELEASES_DIR=/var/lib/fraudscreen/releases", "")
    outside = paths_outside_volume(text, tmp_path)
    assert outside == {"model.releases_dir": "/var/releases", "WORKDIR": "/"}
