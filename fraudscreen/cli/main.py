"""`fraudscreen`: the top-level parser (global flags), the verbs each user group registers
(cli/analyst, cli/site_operator, cli/hub), and one place that turns an error into one line
and exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from fraudscreen.cli import analyst, hub, site_operator
from fraudscreen.cli.arguments import OneLineParser, Verbs, describe_verbs, log_level
from fraudscreen.logs import LOG_FORMATS, configure_logging, resolve_format
from fraudscreen.rpc.runtime import prefer_low_latency_io

Handler = Callable[[argparse.Namespace], int]
# The order `fraudscreen --help` lists the verbs in: a workflow, not grouped by user.
VERB_ORDER = (
    "simulate",
    "train",
    "evaluate",
    "compile",
    "bench",
    "serve",
    "tokenize",
    "sync",
    "keys",
    "sign",
    "publish",
    "model",
    "health",
    "replay",
    "hub",
)


def _add_verbs(verbs: Verbs) -> None:
    adders = {**analyst.VERBS, **site_operator.VERBS, **hub.VERBS}
    assert sorted(adders) == sorted(VERB_ORDER), "a verb is missing from VERB_ORDER"
    for name in VERB_ORDER:
        adders[name](verbs)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="fraudscreen",
        description="Point-of-sale card-fraud screening: the gateway, its model and the hub.",
        epilog="`fraudscreen VERB --help` describes a verb and its options.",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="log lines on stderr: auto = console on a terminal, JSON otherwise (default: "
        "auto; for serve: the config's logging.format)",
    )
    parser.add_argument(
        "--log-level",
        type=log_level,
        default=None,
        help="debug, info, warning or error; debug also shows tracebacks (default: info; "
        "for serve: the config's logging.level)",
    )
    _add_verbs(parser.add_subparsers(dest="verb", required=True, metavar="VERB"))
    describe_verbs(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    prefer_low_latency_io()  # before any verb imports grpc
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    command = " ".join(["fraudscreen", *_verb_words(args)])
    try:
        configure_logging(
            json=resolve_format(args.log_format or "auto") == "json",
            level=args.log_level or "info",
        )
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.log_level == "debug":
            raise  # the traceback is what debugging asks for
        print(one_line_error(command, exc), file=sys.stderr)
        return 2


def _verb_words(args: argparse.Namespace) -> list[str]:
    names = ("verb", "sync_verb", "keys_verb", "model_verb", "hub_verb")
    return [word for name in names if (word := getattr(args, name, None))]


def one_line_error(command: str, exc: BaseException) -> str:
    """`fraudscreen VERB: error: ...` on one line. Our errors say what to do; anything else
    is named by its type (rerun with --log-level debug for the traceback)."""
    known = isinstance(exc, (ValueError, RuntimeError, OSError))
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 400:
        text = text[:400] + " ... (rerun with --log-level debug for the rest)"
    if not known:
        text = f"{type(exc).__name__}: {text} (rerun with --log-level debug for the traceback)"
    return f"{command}: error: {text}"
