"""`--help` of every verb: a one-line description, help text on every option, defaults
shown wherever an option has one."""

from __future__ import annotations

import argparse

import pytest

from fraudscreen.cli.arguments import has_default, names, walk_verbs
from fraudscreen.cli.main import build_parser


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
    ]


def test_every_verb_has_a_one_line_description() -> None:
    for words, parser in walk_verbs(build_parser()):
        assert parser.description, f"fraudscreen {' '.join(words)} has no description"
        assert "\n" not in parser.description
        assert f"\n{parser.description}\n" in parser.format_help()


def test_every_option_has_help_and_shows_its_default() -> None:
    root = build_parser()
    parsers = [((), root), *walk_verbs(root)]
    missing: list[str] = []
    for words, parser in parsers:
        formatter = parser._get_formatter()
        for action in _options(parser):
            name = f"fraudscreen {' '.join(words)} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(f"{name}: no help")
                continue
            shown = formatter._get_help_string(action) or ""  # what --help prints
            shows_default = action.option_strings or action.nargs == "?"
            if has_default(action) and shows_default and "default" not in shown.lower():
                missing.append(f"{name}: default {action.default!r} not shown")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["simulate", "--help"], "--customers CUSTOMERS simulated cards (5000; not with --sites)"),
        (["simulate", "--help"], "--seed SEED random seed (same seed, same data) (default: 0)"),
        (["replay", "--help"], "(default: 60.0)"),
        (["health", "--help"], "(0: ask once) (default: 0.0)"),
    ],
)
def test_help_shows_defaults(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert words in " ".join(capsys.readouterr().out.split())


def test_a_list_of_names_keeps_each_once_in_order() -> None:
    """`--schemas "score bands,feature bins,score bands"` measures each table once."""
    assert names(" score bands,feature bins, score bands,") == ("score bands", "feature bins")
