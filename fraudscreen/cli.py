"""`fraudscreen` command line: each verb parses its flags and delegates to its module."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fraudscreen.cli_arguments import (
    OneLineParser,
    date,
    describe_verbs,
    log_level,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    time_zone,
)
from fraudscreen.config import DEFAULT_BUNDLE
from fraudscreen.logs import LOG_FORMATS, configure_logging, resolve_format
from fraudscreen.rpc.runtime import prefer_low_latency_io

Handler = Callable[[argparse.Namespace], int]
PRIVACY_REPORT_DIR = Path("reports/privacy")  # `evaluate --privacy --out` default
FLEET_SIZES = (20, 100, 500)  # `evaluate --privacy --sites` default without a HISTORY


def _cmd_simulate(args: argparse.Namespace) -> int:
    from fraudscreen.simulate import SimulationConfig, simulate, write_transactions

    if args.sites is not None:
        return _simulate_fleet(args)
    fleet_only = [
        flag
        for flag, value in (
            ("--drift-start", args.drift_start),
            ("--site-terminals", args.site_terminals),
            ("--site-volume", args.site_volume),
        )
        if value is not None
    ]
    if fleet_only:
        raise ValueError(f"{' and '.join(fleet_only)}: only with --sites N (a fleet)")
    if args.handbook_exact:
        from fraudscreen.simulate_handbook import HandbookConfig, simulate_handbook

        if args.seed != 0:
            raise ValueError("--handbook-exact uses the handbook's own seeds; drop --seed")
        handbook = HandbookConfig(
            customers=5000 if args.customers is None else args.customers,
            terminals=10000 if args.terminals is None else args.terminals,
            days=183 if args.days is None else args.days,
            start=args.start,
        )
        frame = simulate_handbook(handbook, progress=not args.quiet)
        write_transactions(frame, args.out)
        print(
            f"wrote {len(frame):,} transactions ({int(frame['TX_FRAUD'].sum()):,} frauds, "
            f"handbook-exact) to {args.out}"
        )
        return 0
    config = SimulationConfig(
        customers=5000 if args.customers is None else args.customers,
        terminals=10000 if args.terminals is None else args.terminals,
        days=183 if args.days is None else args.days,
        start=args.start,
        seed=args.seed,
    )
    frame = simulate(config, progress=not args.quiet)
    write_transactions(frame, args.out)
    fraud_rate = float(frame["TX_FRAUD"].mean()) if len(frame) else 0.0
    print(f"wrote {len(frame):,} transactions ({fraud_rate:.2%} fraud) to {args.out}")
    return 0


def _simulate_fleet(args: argparse.Namespace) -> int:
    """`simulate --sites N`: a fleet of shops (fleet_simulate), one line per bad flag."""
    from fraudscreen import fleet_simulate as fleet
    from fraudscreen.simulate import write_transactions

    single = [
        flag
        for flag, value in (("--customers", args.customers), ("--terminals", args.terminals))
        if value is not None
    ]
    if single:
        raise ValueError(
            f"{' and '.join(single)}: only without --sites (the single population); a fleet "
            "grows with --sites (see --site-terminals, --site-volume)"
        )
    config = fleet.FleetConfig(
        sites=fleet.parse_count(args.sites, "--sites"),
        days=fleet.DEFAULT_FLEET_DAYS if args.days is None else args.days,
        start=args.start,
        seed=args.seed,
        drift_start=None
        if args.drift_start is None
        else fleet.parse_day(args.drift_start, args.start, "--drift-start"),
        site_terminals=fleet.DEFAULT_SITE_TERMINALS
        if args.site_terminals is None
        else fleet.parse_range(args.site_terminals, "--site-terminals"),
        site_daily_transactions=fleet.DEFAULT_SITE_DAILY_TRANSACTIONS
        if args.site_volume is None
        else fleet.parse_range(args.site_volume, "--site-volume"),
    )
    frame = fleet.simulate_fleet(config, progress=not args.quiet)
    write_transactions(frame, args.out)
    fraud_rate = float(frame["TX_FRAUD"].mean()) if len(frame) else 0.0
    drift = ""
    if config.drift_start is not None:
        first = config.start + dt.timedelta(days=config.drift_start)
        tested = float((frame["TX_FRAUD_SCENARIO"] == fleet.SCENARIO_4).mean())
        drift = f", card testing (scenario 4) from {first}: {tested:.2%} of rows"
    print(
        f"wrote {len(frame):,} transactions at {config.sites} sites ({fraud_rate:.2%} fraud"
        f"{drift}) to {args.out}"
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from fraudscreen.history import load_history
    from fraudscreen.model.train import TrainingConfig, train_bundle

    if args.from_hub is not None:
        return _train_from_hub(args)
    if args.history is None:
        raise ValueError("give a HISTORY file to train on, or --from-hub EXPORT")

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
        frame,
        args.out,
        config,
        progress=not args.quiet,
        source=args.history.name,
        score_bands=args.score_bands,
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


def _train_from_hub(args: argparse.Namespace) -> int:
    from fraudscreen.model.retrain import retrain_from_export

    result = retrain_from_export(
        args.from_hub,
        args.out,
        name=args.name if args.name != "fraudscreen" else "fraudscreen-dp",
        holdout=args.holdout,
        seed=args.seed,
        current=args.current,
        history=args.history,
    )
    manifest = result.manifest
    reads = (
        f"a correction of {manifest.base['model_version']}"
        if manifest.base is not None
        else "reads bin codes"
    )
    print(f"bundle {manifest.model_version} ({reads}) written to {args.out}")
    print(
        f"held-out share: AUC {result.holdout.auc():.3f}, AP "
        f"{result.holdout.average_precision():.3f}"
    )
    print(
        f"thresholds: review >= {manifest.thresholds.review:.4f}, decline >= "
        f"{manifest.thresholds.decline:.4f}"
    )
    print(f"report: {result.report}")
    print(f"next: fraudscreen sign {args.out} --key KEY, then fraudscreen publish")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.privacy:
        return _cmd_evaluate_privacy(args)
    if args.bundle is None or args.history is None:
        raise ValueError("evaluate needs BUNDLE and HISTORY (or --privacy [HISTORY])")
    from fraudscreen.model.report import evaluate_bundle

    print(
        evaluate_bundle(args.bundle, args.history, currency=args.currency, timezone=args.timezone)
    )
    return 0


def _epsilons(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 0.5,1,2") from None


def _site_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 20,100,500") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: site counts must be positive")
    return counts


def _mechanisms(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    known = ("known_domain", "threshold")  # privacy.release.MECHANISMS (no OpenDP import here)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give one or more of {', '.join(known)}, comma-separated"
        )
    return names


def _cmd_evaluate_privacy(args: argparse.Namespace) -> int:
    """`evaluate --privacy [HISTORY]`: models from DP tables vs. raw rows (privacy/evaluation)."""
    from fraudscreen.history import load_history
    from fraudscreen.privacy.evaluation import (
        PrivacyEvaluationConfig,
        run_privacy_evaluation,
        write_report,
    )

    if args.bundle is not None and args.history is not None:
        raise ValueError("evaluate --privacy takes one HISTORY, not a bundle")
    path = args.bundle or args.history
    if path is None:
        return _cmd_evaluate_fleet(args)
    sites = args.sites or (5,)
    if len(sites) != 1:
        raise ValueError("with a HISTORY, --sites is one number (terminal_id % N)")
    config = PrivacyEvaluationConfig(
        sites=sites[0],
        epsilons=args.epsilons or (0.5, 1.0, 2.0, 4.0, 8.0),
        train_end=args.train_end,
        train_days=args.train_days,
        period_days=args.period_days,
        max_contributions=args.max_contributions,
        delta=args.delta,
        repetitions=args.repetitions,
        site_features=args.site_features,
        timezone=args.timezone,
        mechanisms=args.mechanisms,
        seed=args.seed,
    )
    frame = load_history(path, currency=args.currency)
    report = run_privacy_evaluation(frame, config)
    print(report.markdown())
    for written in write_report(report, args.out):
        print(f"wrote {written}")
    return 0


def _cmd_evaluate_fleet(args: argparse.Namespace) -> int:
    """`evaluate --privacy --sites 20,100,500 [--drift]`: fleet learning measured on the fleet
    simulator (privacy/fleet_report)."""
    from fraudscreen.privacy.fleet_report import FleetRunConfig, timed_run

    config = FleetRunConfig(
        sites=tuple(args.sites or FLEET_SIZES),
        epsilons=args.epsilons or (0.5, 1.0, 2.0, 4.0),
        draws=args.repetitions,
        drift=args.drift,
        seed=0 if args.seed is None else args.seed,
    )
    markdown, seconds = timed_run(config, args.out, progress=not args.quiet)
    print(markdown)
    print(f"wrote {args.out}/fleet_privacy.md, .png, .json ({seconds:.0f} s)")
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from fraudscreen.model.bundle import load_bundle
    from fraudscreen.model.compile import CompileOptions, compile_bundle, load_explainer
    from fraudscreen.model.predictor import LightGBMPredictor

    bundle = load_bundle(args.bundle)
    options = CompileOptions(compiler=args.compiler, cache_dir=args.cache_dir)
    # a stacked bundle serves two models: the base (also the explainer) and the correction
    parts = (
        [("", bundle)]
        if bundle.base is None
        else [
            ("base ", bundle.base),
            ("correction ", bundle.correction),
        ]
    )
    for label, part in parts:
        reference = LightGBMPredictor(part.model_text, len(part.manifest.features))
        compiled = compile_bundle(part, options, reference)
        if part is parts[0][1]:
            explainer = load_explainer(part, options, reference)
            print(f"reason codes: {explainer.kind} explainer")
        source = "cache" if compiled.from_cache else "fresh build"
        print(
            f"{label}{part.model_version}: {compiled.library} ({source}, "
            f"{compiled.seconds:.1f} s); parity max |diff| = {compiled.max_abs_diff:.2e} on "
            f"{len(part.golden.rows)} golden rows"
        )
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


def _cmd_serve(args: argparse.Namespace) -> int:
    from fraudscreen.config import load_config
    from fraudscreen.gateway.server import serve

    config = load_config(args.config)
    log_format = resolve_format(args.log_format or config.logging.format)
    configure_logging(json=log_format == "json", level=args.log_level or config.logging.level)
    return serve(config)


def _cmd_tokenize(args: argparse.Namespace) -> int:
    from fraudscreen.config import load_config
    from fraudscreen.logs import luhn_valid
    from fraudscreen.tokenizer import CARD_NUMBER, CardTokenizer, load_site_key

    config = load_config(args.config)
    key = load_site_key(
        config.site.key_file,
        missing_hint=": tokenize reads the gateway's key and never creates one; give the "
        "gateway's --config FILE (or FRAUDSCREEN_CONFIG, or FRAUDSCREEN_SITE_KEY_FILE)",
    )
    tokenizer = CardTokenizer(key)
    for number, line in enumerate(sys.stdin, start=1):
        pan = line.strip().replace(" ", "")
        if not pan:
            continue
        if not (CARD_NUMBER.fullmatch(pan) and luhn_valid(pan)):
            print(f"line {number}: not a card number (12-19 digits, Luhn)", file=sys.stderr)
            return 2
        print(tokenizer.tokenize(pan))
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


def _cmd_sync_status(args: argparse.Namespace) -> int:
    from fraudscreen.config import load_config
    from fraudscreen.storage.outbox import PrivacyOutbox

    config = load_config(args.config)
    if not config.journal.path.exists():
        print(f"no journal at {config.journal.path}: this gateway has not run yet")
        return 1
    status = PrivacyOutbox(config.journal.path, budget=config.privacy.epsilon_budget).status()
    print(f"site {config.site.id} -> hub {config.sync.hub or '(none: sync disabled)'}")
    print(
        f"periods released: {status.periods} (epsilon spent {status.spent:g} of budget "
        f"{status.budget:g}, {config.privacy.epsilon_per_period:g} per period)"
    )
    print(
        f"batches acknowledged by the hub: {status.sent}; waiting: {status.pending}"
        + (f" (oldest {status.oldest_pending_period})" if status.pending else "")
    )
    if status.last_error:
        print(f"last error: {status.last_error}")
    return 0 if status.pending == 0 or status.last_error is None else 1


def _passphrase(env_name: str | None) -> bytes | None:
    import os

    if not env_name:
        return None
    value = os.environ.get(env_name)
    if value is None:
        raise ValueError(f"--passphrase-env {env_name}: that environment variable is not set")
    return value.encode()


def _cmd_keys_generate(args: argparse.Namespace) -> int:
    from fraudscreen.model.signing import generate_keypair

    key = generate_keypair(args.private, args.public, passphrase=_passphrase(args.passphrase_env))
    print(
        f"key {key.key_id}: private {args.private} (0600, keep it off gateways), "
        f"public {args.public} (give it to gateways: model.trusted_keys)"
    )
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    from fraudscreen.model.signing import load_private_key, sign_bundle

    key_id = sign_bundle(args.bundle, load_private_key(args.key, _passphrase(args.passphrase_env)))
    print(f"signed {args.bundle}/manifest.sig with key {key_id}")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    import grpc

    from fraudscreen.model.bundle import load_bundle
    from fraudscreen.model.releases import RELEASE_FILES
    from fraudscreen.v1 import sync_pb2, sync_pb2_grpc

    bundle = load_bundle(args.bundle)  # refuse to publish something that does not even load
    files = [
        sync_pb2.ReleaseFile(name=name, content=(args.bundle / name).read_bytes())
        for name in sorted(RELEASE_FILES)
        if (args.bundle / name).is_file()
    ]
    token = _read_token(args.token_file, "--token-file")
    from fraudscreen.rpc.channels import client_channel
    from fraudscreen.rpc.readiness import FAST_RECONNECT, wait_until_serving

    channel = client_channel(args.hub, ca_file=args.ca_file, options=FAST_RECONNECT)
    sites = [s for s in (args.sites or "").split(",") if s]
    with channel:
        wait_until_serving(
            channel,
            args.hub,
            service="",
            wait_seconds=args.wait,
            what="hub",
            hint="check --hub (and --ca-file for TLS), or wait longer with --wait",
        )
        try:
            reply = sync_pb2_grpc.SyncStub(channel).PublishRelease(
                sync_pb2.PublishReleaseRequest(
                    release=sync_pb2.ModelRelease(model_version=bundle.model_version, files=files),
                    sites=sites,
                ),
                timeout=60,
                metadata=(("authorization", f"Bearer {token}"),),
            )
        except grpc.RpcError as exc:
            print(f"publish refused: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    audience = ", ".join(sites) if sites else "every site"
    print(
        f"published {reply.model_version} to {audience} ({reply.sites} site(s)); gateways "
        "pick it up at their next poll"
    )
    return 0


def _read_token(path: Path, flag: str) -> str:
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise ValueError(
            f"{flag} {path}: no such file (`fraudscreen hub add-publisher` prints the token; "
            "save it to a file)"
        ) from None
    except OSError as exc:
        raise ValueError(f"{flag} {path}: cannot read it ({exc.strerror})") from None
    if not token:
        raise ValueError(f"{flag} {path}: the file is empty")
    return token


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


def _cmd_model_status(args: argparse.Namespace) -> int:
    from fraudscreen.config import load_config
    from fraudscreen.model.releases import ReleaseStore

    config = load_config(args.config)
    store = ReleaseStore(config.model.releases_dir)
    state = store.state()
    print(f"releases in {store.root}")
    shipped = f"(none: the configured bundle {config.model.bundle})"
    print(f"current:  {state.current or shipped}")
    print(f"previous: {state.previous or '(none)'}")
    print(f"rejected: {', '.join(state.rejected) or '(none)'}")
    print(f"trusted keys: {', '.join(config.model.trusted_keys) or '(none: updates disabled)'}")
    return 0


def _cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the gateway reports SERVING (within --wait); the Docker HEALTHCHECK."""
    from fraudscreen.rpc.channels import client_channel
    from fraudscreen.rpc.readiness import (
        FAST_RECONNECT,
        NotServingError,
        wait_until_serving,
    )

    channel = client_channel(
        args.target,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        options=FAST_RECONNECT,
    )
    with channel:
        try:
            status = wait_until_serving(
                channel,
                args.target,
                service=args.service,
                wait_seconds=args.wait,
                what="gateway",
                hint="start it with `fraudscreen serve`, or give --wait SECONDS while it starts",
                call_timeout=args.timeout,
            )
        except NotServingError as exc:
            print(f"fraudscreen health: {exc}", file=sys.stderr)
            return 1
    print(f"{args.target} {args.service or '(server)'}: {status}")
    return 0


def _cmd_hub(args: argparse.Namespace) -> int:
    from fraudscreen.hub.commands import run

    return run(args)


def _add_common_history(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--currency", default="EUR", help="currency of rows without a CURRENCY column"
    )
    parser.add_argument(
        "--timezone",
        type=time_zone,
        default="UTC",
        help="site time zone of TX_DATETIME (IANA name)",
    )


def _add_privacy_evaluation(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cost of privacy (with --privacy)")
    group.add_argument(
        "--privacy",
        action="store_true",
        help="train from simulated per-site DP count tables at several epsilons and compare "
        "with raw-row models (without HISTORY: on simulated fleets, --sites)",
    )
    group.add_argument(
        "--sites",
        type=_site_counts,
        default=None,
        help="without HISTORY: fleet sizes to simulate (20,100,500); with HISTORY: one N, "
        "sites = terminal_id %% N (5)",
    )
    group.add_argument(
        "--drift",
        action="store_true",
        help="fleet mode: also measure recovery from card testing (scenario 4)",
    )
    group.add_argument(
        "--epsilons",
        type=_epsilons,
        default=None,
        help="epsilons per period to compare, comma-separated (fleet: 0.5,1,2,4; with "
        "HISTORY: 0.5,1,2,4,8)",
    )
    group.add_argument(
        "--train-end",
        type=date,
        default=dt.date(2018, 8, 1),
        help="first day after the DP training window",
    )
    group.add_argument(
        "--train-days", type=positive_int, default=28, help="DP training window (days)"
    )
    group.add_argument("--period-days", type=positive_int, default=1, help="days per DP batch")
    group.add_argument(
        "--max-contributions", type=positive_int, default=2, help="m: per card, site and period"
    )
    group.add_argument(
        "--delta", type=positive_float, default=1e-7, help="delta of the threshold mechanism"
    )
    group.add_argument(
        "--repetitions", type=positive_int, default=3, help="noise draws per epsilon"
    )
    group.add_argument(
        "--mechanisms",
        type=_mechanisms,
        default=("known_domain", "threshold"),
        help="DP releases to compare, side by side (known_domain,threshold)",
    )
    group.add_argument(
        "--site-features",
        action="store_true",
        help="compute each site's features from its own journal (as a gateway does)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=None,
        help="fleet mode: simulator seed (default 0); with HISTORY: draw the noise from a "
        "seeded generator so the table is reproducible (default: OpenDP's secure sampler, "
        "as gateways use; differs run to run)",
    )
    group.add_argument("--quiet", action="store_true", help="fleet mode: no progress lines")
    group.add_argument(
        "--out",
        type=Path,
        default=PRIVACY_REPORT_DIR,
        help="directory for privacy_cost.md/.json/.png",
    )


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the gateway's TOML file (default: $FRAUDSCREEN_CONFIG, else embedded defaults)",
    )


def _add_wait(parser: argparse.ArgumentParser, seconds: float, what: str) -> None:
    parser.add_argument(
        "--wait",
        type=non_negative_float,
        default=seconds,
        metavar="SECONDS",
        help=f"wait up to this long for the {what} to report SERVING (0: ask once)",
    )


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
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    sim = verbs.add_parser("simulate", help="write a synthetic transaction history")
    sim.add_argument("--out", type=Path, required=True, help=".csv, .csv.gz or .parquet")
    sim.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    sim.add_argument(
        "--customers",
        type=positive_int,
        default=None,
        help="simulated cards (5000; not with --sites)",
    )
    sim.add_argument(
        "--terminals",
        type=positive_int,
        default=None,
        help="simulated terminals (10000; not with --sites)",
    )
    sim.add_argument(
        "--days",
        type=positive_int,
        default=None,
        help="days of transactions (183; with --sites 79 = 30 + 28 + 7 + 14)",
    )
    sim.add_argument(
        "--start", type=date, default=dt.date(2018, 4, 1), help="first day (YYYY-MM-DD)"
    )
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.add_argument(
        "--handbook-exact",
        action="store_true",
        help="regenerate the Fraud Detection Handbook's published data set draw for draw "
        "(its seeding, a per-transaction loop: ~30 s; no point-of-sale columns)",
    )
    fleet = sim.add_argument_group("fleet of shops (README, Simulated data)")
    fleet.add_argument(
        "--sites",
        default=None,
        metavar="N",
        help="simulate N shops (1..5000) instead of the handbook's single population; adds SITE_ID",
    )
    fleet.add_argument(
        "--drift-start",
        default=None,
        metavar="DAY",
        help="YYYY-MM-DD or day index (0 = --start): card testing (TX_FRAUD_SCENARIO 4) from "
        "that day on (default: none)",
    )
    fleet.add_argument(
        "--site-terminals", default=None, metavar="LOW,HIGH", help="terminals per shop (20,50)"
    )
    fleet.add_argument(
        "--site-volume",
        default=None,
        metavar="LOW,HIGH",
        help="intended transactions per shop per day (1000,3000)",
    )
    sim.set_defaults(handler=_cmd_simulate)

    train = verbs.add_parser(
        "train", help="train a model bundle from a history file, or from the hub's DP tables"
    )
    train.add_argument(
        "history",
        type=Path,
        nargs="?",
        default=None,
        help="CSV or Parquet history (see README); with --from-hub: used for the report only",
    )
    train.add_argument(
        "--from-hub",
        type=Path,
        default=None,
        metavar="EXPORT",
        help="train on a `fraudscreen hub export` table instead of raw rows",
    )
    train.add_argument(
        "--holdout",
        type=positive_float,
        default=0.2,
        help="--from-hub: share of every cell kept aside (default 0.2)",
    )
    train.add_argument(
        "--current",
        type=Path,
        default=DEFAULT_BUNDLE,
        help="--from-hub: the released bundle to compare with in the report",
    )
    train.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    train.add_argument(
        "--train-end",
        type=date,
        default=dt.date(2018, 8, 1),
        help="first day after the training week (default 2018-08-01)",
    )
    train.add_argument("--train-days", type=positive_int, default=7, help="training window (days)")
    train.add_argument(
        "--max-trees", type=positive_int, default=300, help="LightGBM trees at most (early stop)"
    )
    train.add_argument("--seed", type=int, default=0, help="LightGBM random seed")
    train.add_argument("--name", default="fraudscreen", help="model version prefix")
    train.add_argument("--quiet", action="store_true", help="no progress lines")
    train.add_argument(
        "--score-bands",
        action="store_true",
        help="gateways running this model release score-band tables (its score in bands x "
        "amount x terminal risk x entry mode) instead of today's feature bins",
    )
    _add_common_history(train)
    train.set_defaults(handler=_cmd_train)

    ev = verbs.add_parser(
        "evaluate",
        help="handbook-protocol metrics of a bundle; --privacy: the cost of DP aggregates",
        usage="fraudscreen evaluate BUNDLE HISTORY | fraudscreen evaluate --privacy "
        "[--sites 20,100,500 [--drift] | HISTORY --sites N]",
    )
    ev.add_argument("bundle", type=Path, nargs="?", help="model bundle (HISTORY with --privacy)")
    ev.add_argument("history", type=Path, nargs="?", help="CSV or Parquet history")
    _add_common_history(ev)
    _add_privacy_evaluation(ev)
    ev.set_defaults(handler=_cmd_evaluate)

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
    srv = verbs.add_parser("serve", help="run the screening gateway (gRPC)")
    _add_config(srv)
    srv.set_defaults(handler=_cmd_serve)

    tok = verbs.add_parser(
        "tokenize", help="card numbers on stdin -> this site's card tokens (for blocklists)"
    )
    _add_config(tok)
    tok.set_defaults(handler=_cmd_tokenize)

    sync = verbs.add_parser("sync", help="aggregate sync to the hub")
    sync_verbs = sync.add_subparsers(dest="sync_verb", required=True, metavar="SYNC_VERB")
    sync_status = sync_verbs.add_parser("status", help="ledger and outbox of this gateway")
    _add_config(sync_status)
    sync_status.set_defaults(handler=_cmd_sync_status)

    keys = verbs.add_parser("keys", help="release signing keys (analysts)")
    key_verbs = keys.add_subparsers(dest="keys_verb", required=True, metavar="KEYS_VERB")
    gen = key_verbs.add_parser("generate", help="new Ed25519 key pair")
    gen.add_argument("--private", type=Path, required=True, help="private key file (0600)")
    gen.add_argument("--public", type=Path, required=True, help="public key file")
    gen.add_argument(
        "--passphrase-env",
        default=None,
        help="encrypt the private key with the passphrase in this env variable",
    )
    gen.set_defaults(handler=_cmd_keys_generate)

    sign = verbs.add_parser("sign", help="sign a bundle's manifest (Ed25519)")
    sign.add_argument("bundle", type=Path, help="model bundle directory")
    sign.add_argument("--key", type=Path, required=True, help="private key file")
    sign.add_argument(
        "--passphrase-env",
        default=None,
        help="environment variable holding the private key's passphrase (default: none)",
    )
    sign.set_defaults(handler=_cmd_sign)

    pub = verbs.add_parser("publish", help="store a signed bundle on the hub as a release")
    pub.add_argument("bundle", type=Path, help="signed model bundle directory")
    pub.add_argument("--hub", required=True, help="hub host:port")
    pub.add_argument("--token-file", type=Path, required=True, help="publisher token file")
    pub.add_argument("--sites", default="", help="comma-separated canary sites (default all)")
    pub.add_argument("--ca-file", type=Path, default=None, help="TLS: the hub's CA")
    _add_wait(pub, 30.0, "hub")
    pub.set_defaults(handler=_cmd_publish)

    model = verbs.add_parser("model", help="this gateway's model releases")
    model_verbs = model.add_subparsers(dest="model_verb", required=True, metavar="MODEL_VERB")
    rollback = model_verbs.add_parser("rollback", help="return to the previous release")
    _add_config(rollback)
    rollback.set_defaults(handler=_cmd_model_rollback)
    mstatus = model_verbs.add_parser("status", help="current, previous and rejected releases")
    _add_config(mstatus)
    mstatus.set_defaults(handler=_cmd_model_status)

    hc = verbs.add_parser("health", help="gRPC health check of a gateway (exit 0 if SERVING)")
    hc.add_argument("--target", default="127.0.0.1:50051", help="gateway host:port")
    hc.add_argument(
        "--service",
        default="fraudscreen.v1.Screening",
        help="health service name ('' = the whole server; fraudscreen.model_update)",
    )
    hc.add_argument("--timeout", type=positive_float, default=3.0, help="seconds per health call")
    _add_wait(hc, 0.0, "gateway")
    hc.add_argument("--ca-file", type=Path, default=None, help="TLS: CA of the gateway")
    hc.add_argument("--cert-file", type=Path, default=None, help="mTLS: client certificate")
    hc.add_argument("--key-file", type=Path, default=None, help="mTLS: client key")
    hc.set_defaults(handler=_cmd_health)

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
    _add_wait(rep, 60.0, "gateway")
    rep.add_argument("--ca-file", type=Path, default=None, help="TLS: CA of the gateway")
    rep.add_argument("--cert-file", type=Path, default=None, help="mTLS: client certificate")
    rep.add_argument("--key-file", type=Path, default=None, help="mTLS: client key")
    rep.set_defaults(handler=_cmd_replay)

    from fraudscreen.hub.commands import add_arguments as add_hub_arguments

    hub = verbs.add_parser("hub", help="central hub: DP aggregates in, signed releases out")
    add_hub_arguments(hub)
    hub.set_defaults(handler=_cmd_hub)
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


if __name__ == "__main__":
    sys.exit(main())
