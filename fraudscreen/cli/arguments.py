"""Argument parsing for `fraudscreen`, shared by every user group's verbs: one-line usage
errors, defaults shown in every option's help, and argument types that reject bad values
before any work starts."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import NoReturn, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fraudscreen.logs import LOG_LEVELS

# what `add_subparsers` returns: each group module adds its verbs to it
Verbs: TypeAlias = "argparse._SubParsersAction[OneLineParser]"


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends `(default: X)` to an option's help unless the help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or not has_default(action):
            return text
        if action.option_strings or action.nargs in ("?", "*"):
            default = action.default
            if isinstance(default, tuple):
                shown = ",".join(str(part) for part in default)
            else:
                shown = str(default)
            return f"{text} (default: {shown.replace('%', '%%')})"
        return text


def has_default(action: argparse.Action) -> bool:
    """Worth showing: not None, not a store_true's False, not suppressed (0 is a default)."""
    default = action.default
    return not (default is None or default is False or default == argparse.SUPPRESS)


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line on stderr and exit code 2, pointing at `--help`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def describe_verbs(parser: argparse.ArgumentParser) -> None:
    """Give each verb's own `--help` the one-line description its parent lists."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if sub.description is None:
                    sub.description = helps.get(name)
                describe_verbs(sub)


def walk_verbs(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable verb (leaf of the subcommand tree) with its words, e.g. ("hub", "serve")."""
    found: list[tuple[tuple[str, ...], argparse.ArgumentParser]] = []
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(prefix, parser)]
    for action in subs:
        for name, sub in action.choices.items():
            found.extend(walk_verbs(sub, (*prefix, name)))
    return found


def date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least {least}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def time_zone(text: str) -> str:
    """An IANA zone name, checked now rather than after reading a whole history."""
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a known IANA time zone (e.g. UTC, Europe/Paris)"
        ) from None
    return text


def log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r}: use one of {', '.join(LOG_LEVELS)}")
    return text.lower()


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """'90' (seconds), '90s', '15m', '3h', '2d' -> seconds; argparse turns ValueError into
    a one-line usage error."""
    value = text.strip().lower()
    factor = _UNITS.get(value[-1:], 0)
    number = value[:-1] if factor else value
    try:
        seconds = float(number) * (factor or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration like 90s, 15m, 3h, 2d"
        ) from None
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be positive")
    return seconds


def epsilons(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 0.5,1,2") from None


def names(text: str) -> tuple[str, ...]:
    """'a, b,c,a' -> ('a', 'b', 'c'); what the names mean is checked where they are used."""
    parts = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not parts:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one name")
    return parts


def site_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 20,100,500") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: site counts must be positive")
    return counts


def mechanisms(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    known = ("known_domain", "threshold")  # privacy.release.MECHANISMS (no OpenDP import here)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give one or more of {', '.join(known)}, comma-separated"
        )
    return names


def add_wait(parser: argparse.ArgumentParser, seconds: float, what: str) -> None:
    """`--wait SECONDS` of a client verb: how long to wait for its server to be SERVING."""
    parser.add_argument(
        "--wait",
        type=non_negative_float,
        default=seconds,
        metavar="SECONDS",
        help=f"wait up to this long for the {what} to report SERVING (0: ask once)",
    )
