"""`fraudscreen` command line: each verb parses its flags and delegates to its module."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fraudscreen.logs import configure_logging

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "models" / "default"

Handler = Callable[[argparse.Namespace], int]


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _cmd_simulate(args: argparse.Namespace) -> int:
    from fraudscreen.simulate import SimulationConfig, simulate, write_transactions

    config = SimulationConfig(
        customers=args.customers,
        terminals=args.terminals,
        days=args.days,
        start=args.start,
        seed=args.seed,
    )
    frame = simulate(config, progress=not args.quiet)
    write_transactions(frame, args.out)
    fraud_rate = float(frame["TX_FRAUD"].mean()) if len(frame) else 0.0
    print(f"wrote {len(frame):,} transactions ({fraud_rate:.2%} fraud) to {args.out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from fraudscreen.history import load_history
    from fraudscreen.model.train import TrainingConfig, train_bundle

    config = TrainingConfig(
        train_end=args.train_end,
        train_days=args.train_days,
        max_trees=args.max_trees,
        seed=args.seed,
        name=args.name,
        timezone=args.timezone,
    )
    frame = load_history(args.history, currency=args.currency)
    result = train_bundle(
        frame, args.out, config, progress=not args.quiet, source=args.history.name
    )
    manifest = result.manifest
    print(f"bundle {manifest.model_version} written to {args.out}")
    print(
        f"thresholds: review >= {manifest.thresholds.review:.4f}, "
        f"decline >= {manifest.thresholds.decline:.4f}"
    )
    if manifest.metrics:
        m = manifest.metrics
        print(
            f"handbook protocol test: AUC {m['auc_roc']:.3f}, AP {m['average_precision']:.3f}, "
            f"CP@100 {m['card_precision_at_100']:.3f}"
        )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from fraudscreen.model.report import evaluate_bundle

    print(
        evaluate_bundle(args.bundle, args.history, currency=args.currency, timezone=args.timezone)
    )
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from fraudscreen.model.bundle import load_bundle
    from fraudscreen.model.compile import CompileOptions, compile_bundle

    bundle = load_bundle(args.bundle)
    compiled = compile_bundle(
        bundle, CompileOptions(compiler=args.compiler, cache_dir=args.cache_dir)
    )
    source = "cache" if compiled.from_cache else "fresh build"
    print(
        f"{bundle.model_version}: {compiled.library} ({source}, {compiled.seconds:.1f} s); "
        f"parity max |diff| = {compiled.max_abs_diff:.2e} on {len(bundle.golden.rows)} "
        "golden rows"
    )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from fraudscreen.model.bench import run_predictor_benchmark

    print(
        run_predictor_benchmark(args.bundle, rows=args.rows, repeats=args.repeats, trees=args.trees)
    )
    return 0


def _add_common_history(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--currency", default="EUR", help="currency of rows without a CURRENCY column (default EUR)"
    )
    parser.add_argument(
        "--timezone", default="UTC", help="site time zone of TX_DATETIME (IANA name, default UTC)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraudscreen", description=__doc__)
    parser.add_argument("--log-format", choices=["json", "console"], default="console")
    parser.add_argument("--log-level", default="info")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    sim = verbs.add_parser("simulate", help="write a synthetic transaction history")
    sim.add_argument("--out", type=Path, required=True, help=".csv, .csv.gz or .parquet")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--customers", type=int, default=5000)
    sim.add_argument("--terminals", type=int, default=10000)
    sim.add_argument("--days", type=int, default=183)
    sim.add_argument("--start", type=_date, default=dt.date(2018, 4, 1))
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(handler=_cmd_simulate)

    train = verbs.add_parser("train", help="train a model bundle from a history file")
    train.add_argument("history", type=Path, help="CSV or Parquet history (see README)")
    train.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    train.add_argument(
        "--train-end",
        type=_date,
        default=dt.date(2018, 8, 1),
        help="first day after the training week (default 2018-08-01)",
    )
    train.add_argument("--train-days", type=int, default=7)
    train.add_argument("--max-trees", type=int, default=300)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--name", default="fraudscreen", help="model version prefix")
    train.add_argument("--quiet", action="store_true")
    _add_common_history(train)
    train.set_defaults(handler=_cmd_train)

    ev = verbs.add_parser("evaluate", help="handbook-protocol metrics of a bundle")
    ev.add_argument("bundle", type=Path)
    ev.add_argument("history", type=Path)
    _add_common_history(ev)
    ev.set_defaults(handler=_cmd_evaluate)

    comp = verbs.add_parser("compile", help="compile a bundle to native code (cached)")
    comp.add_argument("bundle", type=Path, nargs="?", default=DEFAULT_BUNDLE)
    comp.add_argument("--compiler", default="gcc")
    comp.add_argument("--cache-dir", type=Path, default=None)
    comp.set_defaults(handler=_cmd_compile)

    bench = verbs.add_parser("bench", help="per-row latency: native vs tl2cgen vs LightGBM")
    bench.add_argument("bundle", type=Path, nargs="?", default=DEFAULT_BUNDLE)
    bench.add_argument("--rows", type=int, default=2000)
    bench.add_argument("--repeats", type=int, default=5)
    bench.add_argument(
        "--trees",
        type=int,
        default=300,
        help="also benchmark a synthetic model of this many 31-leaf trees",
    )
    bench.set_defaults(handler=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(json=args.log_format == "json", level=args.log_level)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"fraudscreen {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
