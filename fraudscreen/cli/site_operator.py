"""The site operator's verbs: run the gateway (serve, health, replay), its model (compile,
bench, model status/rollback), its sync (sync status) and tokens for blocklists
(tokenize). Each parses its flags and calls the module that does the work."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fraudscreen.cli.arguments import (
    Verbs,
    add_wait,
    non_negative_int,
    positive_float,
    positive_int,
)
from fraudscreen.config import DEFAULT_BUNDLE
from fraudscreen.logs import configure_logging, resolve_format


def _cmd_serve(args: argparse.Namespace) -> int:
    from fraudscreen.config import load_config
    from fraudscreen.gateway.server import serve

    config = load_config(args.config)
    log_format = resolve_format(args.log_format or config.logging.format)
    configure_logging(json=log_format == "json", level=args.log_level or config.logging.level)
    return serve(config)


def _cmd_compile(args: argparse.Namespace) -> int:
    from fraudscreen.model.bundle import load_bundle
    from fraudscreen.model.compile import CompileOptions, compile_for_serving

    bundle = load_bundle(args.bundle)
    options = CompileOptions(compiler=args.compiler, cache_dir=args.cache_dir)
    for line in compile_for_serving(bundle, options):
        print(line)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from fraudscreen.model.bench import run_predictor_benchmark

    if args.front is not None:
        return _bench_front(args)
    print(
        run_predictor_benchmark(args.bundle, rows=args.rows, repeats=args.repeats, trees=args.trees)
    )
    return 0


def _bench_front(args: argparse.Namespace) -> int:
    from fraudscreen.features.batch import compute_features
    from fraudscreen.history import load_history
    from fraudscreen.model.front import choose, format_front, size_front
    from fraudscreen.model.train import TrainingConfig

    try:
        leaves = tuple(int(n) for n in args.leaves.split(","))
    except ValueError:
        raise ValueError(
            f"--leaves: {args.leaves!r} is not a comma-separated list of integers"
        ) from None
    if not leaves or min(leaves) < 2:
        raise ValueError("--leaves: every leaf budget must be at least 2")
    frame = load_history(args.front)
    points = size_front(
        frame,
        compute_features(frame),
        TrainingConfig(),
        leaves=leaves,
        rows=args.rows,
        repeats=args.repeats,
    )
    print(format_front(points, choose(points)))
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from fraudscreen.replay import ReplayOptions, run

    options = ReplayOptions(
        target=args.target,
        days=args.days,
        limit=args.limit,
        mode=args.mode,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        wait=args.wait,
    )
    return run(args.history, options)


def _cmd_model_rollback(args: argparse.Namespace) -> int:
    from fraudscreen.config import load_config
    from fraudscreen.model.releases import ReleaseStore

    config = load_config(args.config)
    state = ReleaseStore(config.model.releases_dir).rollback()
    target = state.current or f"the configured bundle {config.model.bundle}"
    print(
        f"rolled back to {target} (not taking {state.previous} again); a running "
        "gateway switches within seconds"
    )
    return 0


def _cmd_tokenize(args: argparse.Namespace) -> int:
    from fraudscreen.config import load_config
    from fraudscreen.tokenizer import (
        CardTokenizer,
        NotACardNumberError,
        load_site_key,
        tokenize_lines,
    )

    config = load_config(args.config)
    key = load_site_key(
        config.site.key_file,
        missing_hint=": tokenize reads the gateway's key and never creates one; give the "
        "gateway's --config FILE (or FRAUDSCREEN_CONFIG, or FRAUDSCREEN_SITE_KEY_FILE)",
    )
    try:
        for token in tokenize_lines(CardTokenizer(key), sys.stdin):
            print(token)
    except NotACardNumberError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def _cmd_sync_status(args: argparse.Namespace) -> int:
    from fraudscreen.config import load_config
    from fraudscreen.gateway.sync_status import sync_status

    status = sync_status(load_config(args.config))
    print("\n".join(status.lines))
    return 0 if status.healthy else 1


def _cmd_model_status(args: argparse.Namespace) -> int:
    from fraudscreen.config import load_config
    from fraudscreen.model.releases import ReleaseStore, describe_releases

    config = load_config(args.config)
    store = ReleaseStore(config.model.releases_dir)
    print("\n".join(describe_releases(store, config.model.bundle, config.model.trusted_keys)))
    return 0


def _cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the gateway reports SERVING (within --wait); the Docker HEALTHCHECK."""
    from fraudscreen.rpc.readiness import NotServingError, check_serving

    try:
        status = check_serving(
            args.target,
            service=args.service,
            wait_seconds=args.wait,
            what="gateway",
            hint="start it with `fraudscreen serve`, or give --wait SECONDS while it starts",
            call_timeout=args.timeout,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
        )
    except NotServingError as exc:
        print(f"fraudscreen health: {exc}", file=sys.stderr)
        return 1
    print(f"{args.target} {args.service or '(server)'}: {status}")
    return 0


def add_compile(verbs: Verbs) -> None:
    comp = verbs.add_parser("compile", help="compile a bundle to native code (cached)")
    comp.add_argument(
        "bundle", type=Path, nargs="?", default=DEFAULT_BUNDLE, help="model bundle directory"
    )
    comp.add_argument("--compiler", default="gcc", help="C compiler command or path")
    comp.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="compiled-model cache (default: $FRAUDSCREEN_CACHE_DIR, else ~/.cache/fraudscreen)",
    )
    comp.set_defaults(handler=_cmd_compile)


def add_bench(verbs: Verbs) -> None:
    bench = verbs.add_parser("bench", help="per-row latency: native vs tl2cgen vs LightGBM")
    bench.add_argument(
        "bundle", type=Path, nargs="?", default=DEFAULT_BUNDLE, help="model bundle directory"
    )
    bench.add_argument("--rows", type=positive_int, default=2000, help="rows scored per repeat")
    bench.add_argument("--repeats", type=positive_int, default=5, help="repeats (median shown)")
    bench.add_argument(
        "--trees",
        type=non_negative_int,
        default=300,
        help="also benchmark a synthetic model of this many 31-leaf trees (0: none)",
    )
    bench.add_argument(
        "--front",
        type=Path,
        metavar="HISTORY",
        help="instead: train the recipe at each --leaves budget on HISTORY and print size "
        "(trees x leaves) against validation/test AP and native µs per row",
    )
    bench.add_argument("--leaves", default="7,15,31,63", help="leaf budgets for --front")
    bench.set_defaults(handler=_cmd_bench)


def add_serve(verbs: Verbs) -> None:
    srv = verbs.add_parser("serve", help="run the screening gateway (gRPC)")
    _add_config(srv)
    srv.set_defaults(handler=_cmd_serve)


def add_tokenize(verbs: Verbs) -> None:
    tok = verbs.add_parser(
        "tokenize", help="card numbers on stdin -> this site's card tokens (for blocklists)"
    )
    _add_config(tok)
    tok.set_defaults(handler=_cmd_tokenize)


def add_sync(verbs: Verbs) -> None:
    sync = verbs.add_parser("sync", help="aggregate sync to the hub")
    sync_verbs = sync.add_subparsers(dest="sync_verb", required=True, metavar="SYNC_VERB")
    sync_status = sync_verbs.add_parser("status", help="ledger and outbox of this gateway")
    _add_config(sync_status)
    sync_status.set_defaults(handler=_cmd_sync_status)


def add_model(verbs: Verbs) -> None:
    model = verbs.add_parser("model", help="this gateway's model releases")
    model_verbs = model.add_subparsers(dest="model_verb", required=True, metavar="MODEL_VERB")
    rollback = model_verbs.add_parser("rollback", help="return to the previous release")
    _add_config(rollback)
    rollback.set_defaults(handler=_cmd_model_rollback)
    mstatus = model_verbs.add_parser("status", help="current, previous and rejected releases")
    _add_config(mstatus)
    mstatus.set_defaults(handler=_cmd_model_status)


def add_health(verbs: Verbs) -> None:
    hc = verbs.add_parser("health", help="gRPC health check of a gateway (exit 0 if SERVING)")
    hc.add_argument("--target", default="127.0.0.1:50051", help="gateway host:port")
    hc.add_argument(
        "--service",
        default="fraudscreen.v1.Screening",
        help="health service name ('' = the whole server; fraudscreen.model_update)",
    )
    hc.add_argument("--timeout", type=positive_float, default=3.0, help="seconds per health call")
    add_wait(hc, 0.0, "gateway")
    hc.add_argument("--ca-file", type=Path, default=None, help="TLS: CA of the gateway")
    hc.add_argument("--cert-file", type=Path, default=None, help="mTLS: client certificate")
    hc.add_argument("--key-file", type=Path, default=None, help="mTLS: client key")
    hc.set_defaults(handler=_cmd_health)


def add_replay(verbs: Verbs) -> None:
    rep = verbs.add_parser("replay", help="stream simulated terminal traffic at a gateway")
    rep.add_argument("--target", default="127.0.0.1:50051", help="gateway host:port")
    rep.add_argument(
        "--history",
        type=Path,
        default=None,
        help="simulated history with CARD_PAN (default: a demo simulation)",
    )
    rep.add_argument("--days", type=positive_int, default=38, help="replay the last N days")
    rep.add_argument(
        "--limit", type=positive_int, default=None, help="at most N transactions (default: all)"
    )
    rep.add_argument(
        "--mode",
        choices=["unary", "stream", "batch"],
        default="unary",
        help="Screen calls, one ScreenStream, or ScreenBatch calls",
    )
    rep.add_argument(
        "--batch-size", type=positive_int, default=100, help="batch: requests per call"
    )
    rep.add_argument(
        "--concurrency", type=positive_int, default=4, help="unary: parallel terminals"
    )
    add_wait(rep, 60.0, "gateway")
    rep.add_argument("--ca-file", type=Path, default=None, help="TLS: CA of the gateway")
    rep.add_argument("--cert-file", type=Path, default=None, help="mTLS: client certificate")
    rep.add_argument("--key-file", type=Path, default=None, help="mTLS: client key")
    rep.set_defaults(handler=_cmd_replay)


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the gateway's TOML file (default: $FRAUDSCREEN_CONFIG, else embedded defaults)",
    )


VERBS = {
    "compile": add_compile,
    "bench": add_bench,
    "serve": add_serve,
    "tokenize": add_tokenize,
    "sync": add_sync,
    "model": add_model,
    "health": add_health,
    "replay": add_replay,
}
