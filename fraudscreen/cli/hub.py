"""`fraudscreen hub ...`, the hub operator's verbs: serve, add-site, add-publisher, export,
status, report, migrate. Each parses its flags and calls hub/server or hub/commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from fraudscreen.cli.arguments import Verbs, duration, non_negative_float, positive_int
from fraudscreen.hub.defaults import (
    DEFAULT_DB,
    DEFAULT_LISTEN,
    DEFAULT_PUBLISHER_TOKENS,
    DEFAULT_SITE_TOKENS,
    STALE_AFTER_SECONDS,
)

DB_HELP = (
    f"SQLite file (default {DEFAULT_DB}) or postgresql://USER@HOST/DB URL "
    "(password from PGPASSWORD or ~/.pgpass, never the command line)"
)


def _cmd_serve(args: argparse.Namespace) -> int:
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


def _cmd_add_site(args: argparse.Namespace) -> int:
    from fraudscreen.hub.commands import issue_token

    return issue_token(args.tokens, args.site_id, rotate=args.rotate, what="site")


def _cmd_add_publisher(args: argparse.Namespace) -> int:
    from fraudscreen.hub.commands import issue_token

    return issue_token(args.publisher_token_file, args.name, rotate=args.rotate, what="publisher")


def _cmd_export(args: argparse.Namespace) -> int:
    from fraudscreen.hub.commands import export

    return export(args.db, args.schema_hash, args.out)


def _cmd_status(args: argparse.Namespace) -> int:
    from fraudscreen.hub.commands import status

    return status(args.db, stale_after=args.stale_after, stale_only=args.stale_only)


def _cmd_report(args: argparse.Namespace) -> int:
    from fraudscreen.hub.commands import report

    return report(args.db, args.out, stale_after=args.stale_after)


def _cmd_migrate(args: argparse.Namespace) -> int:
    from fraudscreen.hub.commands import migrate

    return migrate(args.db)


def add_hub(verbs: Verbs) -> None:
    hub = verbs.add_parser("hub", help="central hub: DP aggregates in, signed releases out")
    hub_verbs = hub.add_subparsers(dest="hub_verb", required=True, metavar="HUB_VERB")
    _add_serve(hub_verbs)
    _add_tokens(hub_verbs)
    _add_fleet(hub_verbs)


VERBS = {"hub": add_hub}


def _add_serve(verbs: Verbs) -> None:
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
        type=duration,
        default=STALE_AFTER_SECONDS,
        help="a site silent this long counts as stale in metrics (e.g. 90m, 3h, 2d; default 3h)",
    )
    srv.set_defaults(handler=_cmd_serve)


def _add_tokens(verbs: Verbs) -> None:
    site = verbs.add_parser("add-site", help="create (or --rotate) a site's token; shown once")
    site.add_argument("site_id", help="the site's id (its gateway's site.id)")
    site.add_argument(
        "--tokens", type=Path, default=DEFAULT_SITE_TOKENS, help="site token hashes file"
    )
    site.add_argument("--rotate", action="store_true", help="replace the site's token")
    site.set_defaults(handler=_cmd_add_site)

    pub = verbs.add_parser("add-publisher", help="create an analyst's publisher token")
    pub.add_argument("name", help="the analyst's name")
    pub.add_argument(
        "--publisher-token-file",
        type=Path,
        default=DEFAULT_PUBLISHER_TOKENS,
        help="publisher token hashes file",
    )
    pub.add_argument("--rotate", action="store_true", help="replace the analyst's token")
    pub.set_defaults(handler=_cmd_add_publisher)


def _add_fleet(verbs: Verbs) -> None:
    exp = verbs.add_parser("export", help="write the summed DP table of one schema")
    exp.add_argument("--db", default=str(DEFAULT_DB), help=DB_HELP)
    exp.add_argument("--schema-hash", required=True, help="see `fraudscreen hub status`")
    exp.add_argument("--out", type=Path, required=True, help=".csv or .parquet")
    exp.set_defaults(handler=_cmd_export)

    st = verbs.add_parser(
        "status", help="the fleet: per site model, last seen, pending, epsilon, canary; releases"
    )
    st.add_argument("--db", default=str(DEFAULT_DB), help=DB_HELP)
    st.add_argument(
        "--stale-after",
        type=duration,
        default=STALE_AFTER_SECONDS,
        help="a site silent this long is STALE (e.g. 90m, 3h, 2d; default 3h)",
    )
    st.add_argument("--stale-only", action="store_true", help="list only the stale sites")
    st.set_defaults(handler=_cmd_status)

    rep = verbs.add_parser(
        "report", help="static HTML fleet report: rollout, versions, silent sites, epsilon, drift"
    )
    rep.add_argument("--db", default=str(DEFAULT_DB), help=DB_HELP)
    rep.add_argument("--out", type=Path, required=True, help="the .html file to write")
    rep.add_argument(
        "--stale-after",
        type=duration,
        default=STALE_AFTER_SECONDS,
        help="a site silent this long is stale (e.g. 90m, 3h, 2d; default 3h)",
    )
    rep.set_defaults(handler=_cmd_report)

    mig = verbs.add_parser(
        "migrate", help="apply pending schema migrations (serve also does, at start)"
    )
    mig.add_argument("--db", default=str(DEFAULT_DB), help=DB_HELP)
    mig.set_defaults(handler=_cmd_migrate)
