"""The analyst's verbs: simulate data, train and evaluate models (and the cost of privacy),
generate keys, sign and publish releases. Each parses its flags and calls the module
that does the work (simulate, model/, privacy/, hub/publish)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from fraudscreen.cli.arguments import (
    Verbs,
    add_wait,
    date,
    epsilons,
    mechanisms,
    names,
    positive_float,
    positive_int,
    site_counts,
    time_zone,
)
from fraudscreen.config import DEFAULT_BUNDLE

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


def _cmd_evaluate_privacy(args: argparse.Namespace) -> int:
    """`evaluate --privacy [HISTORY]`: models from DP tables vs. raw rows (privacy/evaluation)."""
    from fraudscreen.history import load_history
    from fraudscreen.privacy.evaluation import run_privacy_evaluation
    from fraudscreen.privacy.evaluation_config import PrivacyEvaluationConfig
    from fraudscreen.privacy.evaluation_report import write_report

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
        **({"schemas": args.schemas} if args.schemas else {}),
    )
    markdown, seconds = timed_run(config, args.out, progress=not args.quiet)
    print(markdown)
    print(f"wrote {args.out}/fleet_privacy.md, .png, .json ({seconds:.0f} s)")
    return 0


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
    from fraudscreen.hub.publish import PublishRefusedError, publish_release

    sites = [s for s in (args.sites or "").split(",") if s]
    try:
        reply = publish_release(
            args.bundle,
            args.hub,
            token_file=args.token_file,
            sites=sites,
            ca_file=args.ca_file,
            wait_seconds=args.wait,
        )
    except PublishRefusedError as exc:
        print(exc, file=sys.stderr)
        return 1
    audience = ", ".join(sites) if sites else "every site"
    print(
        f"published {reply.model_version} to {audience} ({reply.sites} site(s)); gateways "
        "pick it up at their next poll"
    )
    return 0


def add_simulate(verbs: Verbs) -> None:
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


def add_train(verbs: Verbs) -> None:
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


def add_evaluate(verbs: Verbs) -> None:
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


def add_keys(verbs: Verbs) -> None:
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


def add_sign(verbs: Verbs) -> None:
    sign = verbs.add_parser("sign", help="sign a bundle's manifest (Ed25519)")
    sign.add_argument("bundle", type=Path, help="model bundle directory")
    sign.add_argument("--key", type=Path, required=True, help="private key file")
    sign.add_argument(
        "--passphrase-env",
        default=None,
        help="environment variable holding the private key's passphrase (default: none)",
    )
    sign.set_defaults(handler=_cmd_sign)


def add_publish(verbs: Verbs) -> None:
    pub = verbs.add_parser("publish", help="store a signed bundle on the hub as a release")
    pub.add_argument("bundle", type=Path, help="signed model bundle directory")
    pub.add_argument("--hub", required=True, help="hub host:port")
    pub.add_argument("--token-file", type=Path, required=True, help="publisher token file")
    pub.add_argument("--sites", default="", help="comma-separated canary sites (default all)")
    pub.add_argument("--ca-file", type=Path, default=None, help="TLS: the hub's CA")
    add_wait(pub, 30.0, "hub")
    pub.set_defaults(handler=_cmd_publish)


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
        type=site_counts,
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
        "--schemas",
        type=names,
        default=None,
        help="fleet mode: the tables compared side by side, comma-separated (feature bins,"
        "score bands; more in privacy/fleet_evaluation.py BAND_VARIANTS)",
    )
    group.add_argument(
        "--epsilons",
        type=epsilons,
        default=None,
        help="epsilons per card and day to compare, comma-separated (fleet: 0.5,1,2,4; with "
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
        type=mechanisms,
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


VERBS = {
    "simulate": add_simulate,
    "train": add_train,
    "evaluate": add_evaluate,
    "keys": add_keys,
    "sign": add_sign,
    "publish": add_publish,
}
