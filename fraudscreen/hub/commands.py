"""`fraudscreen hub ...`: serve, add-site, add-publisher, export, status.

Flags live here so the top-level CLI only hands over; heavy imports wait for the verb.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fraudscreen.cli_arguments import non_negative_float, positive_int
from fraudscreen.hub.defaults import (
    DEFAULT_DB,
    DEFAULT_LISTEN,
    DEFAULT_PUBLISHER_TOKENS,
    DEFAULT_SITE_TOKENS,
    STALE_AFTER_SECONDS,
)

if TYPE_CHECKING:
    from fraudscreen.hub.storage import HubStore

HubHandler = Callable[[argparse.Namespace], int]
DB_HELP = (
    f"SQLite file (default {DEFAULT_DB}) or postgresql://USER@HOST/DB URL "
    "(password from PGPASSWORD or ~/.pgpass, never the command line)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="hub_verb", required=True, metavar="HUB_VERB")

    srv = verbs.add_parser("serve", help="run the hub's gRPC Sync service")
    srv.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"host:port (default {DEFAULT_LISTEN})"
    )
    srv.add_argument("--db", default=str(DEFAULT_DB), help=DB_HELP)
    srv.add_argument(
        "--tokens", type=Path, default=DEFAULT_SITE_TOKENS, help="site token hashes file"
    )
    srv.add_argument(
        "--publisher-token-file",
        type=Path,
        default=DEFAULT_PUBLISHER_TOKENS,
        help="publisher (analyst) token hashes file; missing: publishing is refused",
    )
    srv.add_argument(
        "--trusted-key",
        type=Path,
        action="append",
        default=[],
        help="analyst Ed25519 public key (PEM) releases must be signed with; repeatable",
    )
    srv.add_argument(
        "--schema",
        type=Path,
        action="append",
        default=[],
        help="accept batches binned with this bundle's (or schema JSON's) bin schema; "
        "repeatable (default: the built-in schema)",
    )
    srv.add_argument("--tls-cert", type=Path, default=None, help="server certificate (PEM)")
    srv.add_argument("--tls-key", type=Path, default=None, help="server private key (PEM)")
    srv.add_argument(
        "--tls-client-ca",
        type=Path,
        default=None,
        help="require client certificates signed by this CA (mTLS; CN = site id)",
    )
    srv.add_argument(
        "--grace-seconds", type=non_negative_float, default=10.0, help="drain time on SIGTERM"
    )
    srv.add_argument("--max-workers", type=positive_int, default=16, help="gRPC worker threads")
    srv.add_argument(
        "--metrics-listen",
        default="",
        help="host:port for Prometheus /metrics (default: none), e.g. 127.0.0.1:9465",
    )
    srv.add_argument(
        "--stale-after",
        type=_duration,
        default=STALE_AFTER_SECONDS,
        help="a site silent this long counts as stale in metrics (e.g. 90m, 3h, 2d; default 3h)",
    )
    srv.set_defaults(hub_handler=_serve)

    site = verbs.add_parser("add-site", help="create (or --rotate) a site's token; shown once")
    site.add_argument("site_id", help="the site's id (its gateway's site.id)")
    site.add_argument(
        "--tokens", type=Path, default=DEFAULT_SITE_TOKENS, help="site token hashes file"
    )
    site.add_argument("--rotate", action="store_true", help="replace the site's token")
    site.set_defaults(hub_handler=_add_site)

    pub = verbs.add_parser("add-publisher", help="create an analyst's publisher token")
    pub.add_argument("name", help="the analyst's name")
    pub.add_argument(
        "--publisher-token-file",
        type=Path,
        default=DEFAULT_PUBLISHER_TOKENS,
        help="publisher token hashes file",
    )
    pub.add_argument("--rotate", action="store_true", help="replace the analyst's token")
    pub.set_defaults(hub_handler=_add_publisher)

    exp = verbs.add_parser("export", help="write the summed DP table of one schema")
    exp.add_argument("--db", default=str(DEFAULT_DB), help=DB_HELP)
    exp.add_argument("--schema-hash", required=True, help="see `fraudscreen hub status`")
    exp.add_argument("--out", type=Path, required=True, help=".csv or .parquet")
    exp.set_defaults(hub_handler=_export)

    st = verbs.add_parser(
        "status", help="the fleet: per site model, last seen, pending, epsilon, canary; releases"
    )
    st.add_argument("--db", default=str(DEFAULT_DB), help=DB_HELP)
    st.add_argument(
        "--stale-after",
        type=_duration,
        default=STALE_AFTER_SECONDS,
        help="a site silent this long is STALE (e.g. 90m, 3h, 2d; default 3h)",
    )
    st.add_argument("--stale-only", action="store_true", help="list only the stale sites")
    st.set_defaults(hub_handler=_status)

    rep = verbs.add_parser(
        "report", help="static HTML fleet report: rollout, versions, silent sites, epsilon, drift"
    )
    rep.add_argument("--db", default=str(DEFAULT_DB), help=DB_HELP)
    rep.add_argument("--out", type=Path, required=True, help="the .html file to write")
    rep.add_argument(
        "--stale-after",
        type=_duration,
        default=STALE_AFTER_SECONDS,
        help="a site silent this long is stale (e.g. 90m, 3h, 2d; default 3h)",
    )
    rep.set_defaults(hub_handler=_report)

    mig = verbs.add_parser(
        "migrate", help="apply pending schema migrations (serve also does, at start)"
    )
    mig.add_argument("--db", default=str(DEFAULT_DB), help=DB_HELP)
    mig.set_defaults(hub_handler=_migrate)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
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


def run(args: argparse.Namespace) -> int:
    handler: HubHandler = args.hub_handler
    return handler(args)


def _serve(args: argparse.Namespace) -> int:
    from fraudscreen.config import TLSConfig
    from fraudscreen.hub.server import HubSettings, serve

    settings = HubSettings(
        db=args.db,
        site_tokens=args.tokens,
        publisher_tokens=args.publisher_token_file,
        trusted_keys=tuple(args.trusted_key),
        schemas=tuple(args.schema),
        listen=args.listen,
        tls=TLSConfig(
            cert_file=args.tls_cert, key_file=args.tls_key, client_ca_file=args.tls_client_ca
        ),
        max_workers=args.max_workers,
        grace_seconds=args.grace_seconds,
        metrics_listen=args.metrics_listen,
        stale_after_seconds=args.stale_after,
    )
    return serve(settings)


def _issue(path: Path, name: str, rotate: bool, what: str) -> int:
    from fraudscreen.hub.tokens import add_token

    token = add_token(path, name, rotate=rotate)
    print(
        f"{what} token for {name} below, shown this once: the hub keeps only its SHA-256 "
        f"in {path}. Hand it over securely; a lost token is replaced with --rotate.",
        file=sys.stderr,
    )
    print(token)
    return 0


def _add_site(args: argparse.Namespace) -> int:
    return _issue(args.tokens, args.site_id, args.rotate, "site")


def _add_publisher(args: argparse.Namespace) -> int:
    return _issue(args.publisher_token_file, args.name, args.rotate, "publisher")


def _open_store(db: str) -> HubStore:
    from fraudscreen.hub.database import open_store

    return open_store(db, pool_size=2, must_exist=True)


def _migrate(args: argparse.Namespace) -> int:
    from fraudscreen.hub.database import describe, open_store

    store = open_store(args.db, pool_size=1)
    try:
        applied = store.applied_migrations
        version = store.schema_version()
    finally:
        store.close()
    done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to apply"
    print(f"{describe(args.db)}: schema version {version} ({done})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from fraudscreen.hub.export import export_table

    store = _open_store(args.db)
    summary = export_table(store, args.schema_hash, args.out)
    print(
        f"wrote {summary.cells} cells summed over {summary.batches} batches from "
        f"{summary.sites} sites to {summary.table} (schema: {summary.sidecar})"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    import time

    from fraudscreen.hub.fleet_view import fleet_rows, format_table

    store = _open_store(args.db)
    try:
        now = time.time()
        rows = fleet_rows(store, now, args.stale_after)
        stale = [r for r in rows if r.stale]
        if args.stale_only:
            rows = stale
        print(
            f"{len(rows)} sites"
            + (f", {len(stale)} silent for more than {_age_text(args)}" if stale else "")
        )
        if rows:
            print("\n".join(format_table(rows, now)))
        hashes = sorted({h for s in store.sites_summary() for h in s.schema_hashes})
        for schema_hash in hashes:
            print(f"schema {schema_hash}")
        releases = store.releases()
    finally:
        store.close()
    print(f"{len(releases)} releases (newest last)")
    for r in releases:
        audience = "all sites" if r.sites is None else ", ".join(r.sites)
        print(f"  #{r.seq} {r.model_version} {r.published_at} -> {audience}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import time

    from fraudscreen.hub.report import write_fleet_report

    store = _open_store(args.db)
    try:
        summary = write_fleet_report(store, args.out, time.time(), args.stale_after)
    finally:
        store.close()
    print(
        f"wrote {args.out}: {summary.sites} sites ({summary.stale} stale), "
        f"{summary.periods} periods of drift, {summary.images} plots"
    )
    return 0


def _age_text(args: argparse.Namespace) -> str:
    from fraudscreen.hub.fleet_view import age

    return str(age(args.stale_after))
