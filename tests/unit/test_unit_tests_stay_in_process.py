"""tests/unit/ stays in this process: no server, no child process, no CLI entry point, no
PostgreSQL. Those belong in tests/integration/, so `pytest tests/unit` stays quick and a
red unit test points at a rule, not at a server. Checked on the imports (ast)."""

from __future__ import annotations

import ast
from pathlib import Path

UNIT = Path(__file__).resolve().parent
FORBIDDEN_MODULES = ("subprocess", "multiprocessing")
FORBIDDEN_NAMES = {
    "tests.support.service_support": {
        "running_gateway",
        "running_hub",
        "run_cli",
        "stub_for",
        "gateway_env",
        "free_port",
    },
    "fraudscreen.cli": {"main"},
    "fraudscreen.gateway.server": {"Gateway"},
    "fraudscreen.hub.server": {"HubServer"},
    "loadtests.postgres_server": {"PostgresServer", "started_server"},
}


def problems(path: Path) -> list[str]:
    """What in this file starts a server, a process, the CLI or PostgreSQL."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            found += [n for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(node.module)
            banned = FORBIDDEN_NAMES.get(node.module, set())
            found += [f"{node.module}.{a.name}" for a in node.names if a.name in banned]
        elif isinstance(node, ast.arg) and node.arg == "postgres":  # the PostgreSQL fixture
            found.append("the postgres fixture")
    return found


def test_unit_tests_start_no_server_process_or_cli() -> None:
    files = sorted(UNIT.rglob("*.py"))
    assert len(files) > 40
    found = [
        f"{path.relative_to(UNIT.parent)}: {what}"
        for path in files
        if path != Path(__file__).resolve()
        for what in problems(path)
    ]
    assert not found, "move these tests to tests/integration/:\n" + "\n".join(found)


def test_the_check_sees_a_server_and_a_child_process(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import subprocess\n"
        "from tests.support.service_support import gateway_config, running_gateway\n"
        "def test_x(postgres: object) -> None: ...\n"
    )
    assert problems(sample) == [
        "subprocess",
        "tests.support.service_support.running_gateway",
        "the postgres fixture",
    ]
