"""The README's facts that code can check: its commands parse, the headers the direct C
call needs are named, and the privacy report is where the README says."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from fraudscreen.cli.analyst import PRIVACY_REPORT_DIR
from fraudscreen.cli.main import build_parser
from fraudscreen.privacy.fleet_report import FLEET_PLOT_FILE

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    """Every `fraudscreen ...` command in the README's bash blocks, continuations joined."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL):
        lines = block.replace("\\\n", " ").splitlines()
        for line in (part for text in lines for part in text.split("#", 1)[0].split("&&")):
            words = shlex.split(line)
            if words and words[0] == "time":
                words = words[1:]
            if words and words[0].endswith("fraudscreen"):
                commands.append(shlex.join(words[1:]))
    return commands


def test_readme_has_the_commands_it_should() -> None:
    commands = readme_commands()
    assert "serve" in commands and "replay" in commands
    assert any(c.startswith("evaluate --privacy") and "--sites" in c for c in commands)


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command: str) -> None:
    build_parser().parse_args(shlex.split(command))  # exits (fails the test) if not


def test_headers_for_the_direct_c_call_are_named() -> None:
    native = (ROOT / "fraudscreen" / "model" / "native_call.c").read_text()
    if "#include <Python.h>" in native:
        quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
        assert "python3-dev" in quickstart


def test_privacy_report_path_is_the_real_one() -> None:
    """The report lands in reports/privacy/; the README's plot is a kept copy of its file."""
    assert f"`{PRIVACY_REPORT_DIR.as_posix()}/`" in README
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    for image in images:
        assert (ROOT / image).is_file(), image
    assert f"models/reports/{FLEET_PLOT_FILE}" in images


def test_every_test_file_the_readme_names_exists() -> None:
    """Tests are cited as evidence; a moved or renamed file must take the README along."""
    named = set(re.findall(r"`(tests/[\w/]+\.py)`", README))
    assert len(named) >= 5
    missing = sorted(path for path in named if not (ROOT / path).is_file())
    assert not missing, missing
