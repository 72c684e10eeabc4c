"""The layering the README's Layout promises, checked on the source (ast, nothing imported).

The domain (transaction, features, model, policy, screening, privacy, the bin schema and
the records the journal keeps) imports no gRPC, SQLite, storage, CLI, hub, gateway or rpc;
the hub never imports the gateway; nothing imports the CLI (it may import everything)
but `python -m fraudscreen`; and no two packages import each other, directly or through
others. An import inside a function counts like one at the top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fraudscreen"

DOMAIN = (
    "fraudscreen.transaction",
    "fraudscreen.features",
    "fraudscreen.model",
    "fraudscreen.policy",
    "fraudscreen.screening",
    "fraudscreen.privacy",
    "fraudscreen.binschema",
    "fraudscreen.score_bands",
    "fraudscreen.records",
)
NOT_IN_DOMAIN = (
    "sqlite3",
    "grpc",
    "grpc_health",
    "grpc_reflection",
    "grpc_status",
    "fraudscreen.v1",
    "fraudscreen.storage",
    "fraudscreen.cli",
    "fraudscreen.hub",
    "fraudscreen.gateway",
    "fraudscreen.rpc",
)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, module: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the file; `from a import b` yields a.b as well as
    a, since b may be a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = (module or module_name(path)).split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = own[: len(own) - node.level + (path.name == "__init__.py")]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "v1" not in p.relative_to(PACKAGE).parts)


def violations(
    sources: tuple[str, ...], forbidden: tuple[str, ...], files: list[Path]
) -> list[str]:
    found = []
    for path in files:
        if not _within(module_name(path), sources):
            continue
        for line, name in imported(path):
            if _within(name, forbidden):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    return sorted(set(found))


def unit(name: str) -> str | None:
    """The package (or top-level module) of fraudscreen a module belongs to."""
    parts = name.split(".")
    if parts[0] != "fraudscreen" or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def package_graph(files: list[Path]) -> dict[str, set[str]]:
    known = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        source = unit(module_name(path))
        if source is None:
            continue
        edges = graph.setdefault(source, set())
        for _line, name in imported(path):
            target = unit(name)
            if target is not None and target != source and name in known:
                edges.add(target)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle between packages, as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_domain_imports_no_grpc_sqlite_storage_cli_hub_gateway_or_rpc() -> None:
    assert violations(DOMAIN, NOT_IN_DOMAIN, modules()) == []


def test_the_hub_imports_nothing_of_the_gateway() -> None:
    assert violations(("fraudscreen.hub",), ("fraudscreen.gateway",), modules()) == []


def test_nothing_imports_the_cli_but_python_dash_m() -> None:
    # the CLI sits on top: a module importing it would load every verb's parser with it
    others = [p for p in modules() if not _within(module_name(p), ("fraudscreen.cli",))]
    found = violations(("fraudscreen",), ("fraudscreen.cli",), others)
    assert sorted({v.split(":")[0] for v in found}) == ["fraudscreen/__main__.py"]


def test_no_import_cycle_between_packages() -> None:
    found = cycle(package_graph(modules()))
    assert found is None, "import cycle: " + " -> ".join(found or [])


def test_the_model_does_not_import_privacy() -> None:
    # privacy/evaluation trains models; the reverse would be the cycle this prevents
    assert violations(("fraudscreen.model",), ("fraudscreen.privacy",), modules()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"b", "c"}, "c": set()}, ["b", "b"]),
    ],
)
def test_cycle_finds_a_loop_and_only_a_loop(
    graph: dict[str, set[str]], expected: list[str] | None
) -> None:
    assert cycle(graph) == expected


def test_the_walk_sees_imports_inside_functions_and_resolves_relative_ones(
    tmp_path: Path,
) -> None:
    source = tmp_path / "screening.py"
    source.write_text(
        "import json\ndef later() -> None:\n    import sqlite3\n    from .storage import journal\n"
    )
    found = [name for _line, name in imported(source, "fraudscreen.screening")]
    assert found == [
        "json",
        "sqlite3",
        "fraudscreen.storage",
        "fraudscreen.storage.journal",
    ]
