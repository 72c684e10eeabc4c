"""Sync requests -> hub values, or every bad field named (`batch.cells[3].codes`).

The hub checks what a correct gateway can produce and nothing looser: codes within the
schema's ranges, counts a DP release can yield, privacy parameters the gateway's release
code accepts, ids of the shape the outbox makes. What fails here is a bug or tampering,
never noise, and it is refused before anything is stored.

What a release can yield depends on its kind (`batch.kind`):
  threshold     released cells only, each with noisy_total above the DP threshold (>= 1),
                delta in (0, 1e-3)
  known_domain  every cell of the schema's domain exactly once; noise around empty cells
                makes noisy counts zero or negative; pure DP, delta 0
An unspecified kind is refused: the hub cannot tell which rules apply.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Sequence

from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.hub.errors import UnknownSchemaError
from fraudscreen.hub.fleet import GatewayState
from fraudscreen.hub.schemas import SchemaRegistry
from fraudscreen.hub.storage import ReleaseKind, StoredBatch, StoredCell
from fraudscreen.hub.tokens import NAME
from fraudscreen.privacy.release import MAX_DELTA, MAX_DOMAIN_CELLS, MAX_EPSILON
from fraudscreen.rpc.status import FieldViolation, RequestInvalidError
from fraudscreen.v1 import sync_pb2 as pb

MAX_CELLS = MAX_DOMAIN_CELLS  # also the largest domain a known-domain batch may cover
MAX_CELL_TOTAL = 10**12
# Threshold batches: the fraud count's noise and the selection threshold share one scale,
# and a released
# cell has noisy_total > threshold ~ scale * ln(m / delta) >= 9 * scale. A legitimate
# |noisy_fraud| above 4 * noisy_total is then about e^-27 unlikely: past it, the batch is
# corrupt. The slack covers tiny totals.
FRAUD_BOUND_FACTOR = 4
FRAUD_BOUND_SLACK = 100
MAX_PERIOD_DAYS = 31
MAX_MECHANISM_CHARS = 2000
MAX_VIOLATIONS = 20  # listed per answer; the rest are counted

_KINDS: dict[int, ReleaseKind] = {
    pb.RELEASE_KIND_THRESHOLD: "threshold",
    pb.RELEASE_KIND_KNOWN_DOMAIN: "known_domain",
}

_BATCH_ID = re.compile(r"[0-9a-f]{32}")
_SCHEMA_HASH = re.compile(r"[0-9a-f]{64}")
_PERIOD = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class _Violations:
    def __init__(self, root: str) -> None:
        self.root = root
        self.listed: list[FieldViolation] = []
        self.more = 0

    def add(self, field: str, description: str) -> None:
        if len(self.listed) < MAX_VIOLATIONS:
            self.listed.append(FieldViolation(field, description))
        else:
            self.more += 1

    def raise_if_any(self) -> None:
        if not self.listed:
            return
        listed = list(self.listed)
        if self.more:
            listed.append(FieldViolation(self.root, f"and {self.more} more problems not listed"))
        raise RequestInvalidError(listed)


def batch_from_request(
    request: pb.PushBatchRequest, schemas: SchemaRegistry, *, today: dt.date
) -> StoredBatch:
    """The validated batch; RequestInvalidError (bad fields) or UnknownSchemaError."""
    if not request.HasField("batch"):
        raise RequestInvalidError([FieldViolation("batch", "required: the aggregate batch")])
    batch = request.batch
    bad = _Violations("batch")
    if not NAME.fullmatch(batch.site_id):
        bad.add("batch.site_id", "must be 1 to 64 of A-Z a-z 0-9 . _ -")
    if not _BATCH_ID.fullmatch(batch.batch_id):
        bad.add(
            "batch.batch_id",
            "must be 32 lower-case hex characters (the outbox's deterministic batch id)",
        )
    _check_period(batch.period, batch.period_days, today, bad)
    kind = _KINDS.get(batch.kind)
    if kind is None:
        got = (
            pb.ReleaseKind.Name(batch.kind)
            if batch.kind in pb.ReleaseKind.values()
            else str(batch.kind)
        )
        bad.add(
            "batch.kind",
            "must say how the table was released: RELEASE_KIND_KNOWN_DOMAIN or "
            f"RELEASE_KIND_THRESHOLD, got {got} (a gateway that leaves it unset predates "
            "release kinds: upgrade it)",
        )
    if not (math.isfinite(batch.epsilon) and 0.0 < batch.epsilon <= MAX_EPSILON):
        bad.add("batch.epsilon", f"must be a number in (0, {MAX_EPSILON:g}]")
    if kind == "known_domain":
        if batch.delta != 0.0:
            bad.add("batch.delta", "must be 0: a known-domain release is pure epsilon-DP")
    elif not (math.isfinite(batch.delta) and 0.0 < batch.delta < MAX_DELTA):
        bad.add("batch.delta", f"must be a number in (0, {MAX_DELTA:g})")
    if not (0 < len(batch.mechanism) <= MAX_MECHANISM_CHARS and batch.mechanism.isprintable()):
        bad.add(
            "batch.mechanism",
            f"must describe the DP mechanism in 1 to {MAX_MECHANISM_CHARS} printable characters",
        )
    schema: BinSchema | None = None
    if not _SCHEMA_HASH.fullmatch(batch.schema_hash):
        bad.add("batch.schema_hash", "must be the 64 lower-case hex digits of a bin schema hash")
    else:
        schema = schemas.get(batch.schema_hash)
    cells = _cells(batch.cells, schema, kind, bad)
    bad.raise_if_any()
    assert kind is not None  # refused above otherwise
    if schema is None:
        accepted = ", ".join(h[:12] for h in schemas.hashes()) or "none"
        raise UnknownSchemaError(
            f"batch.schema_hash {batch.schema_hash} is not a bin schema this hub accepts "
            f"(it accepts {accepted}). Start the hub with --schema pointing at the bundle the "
            "gateway aggregates with, or publish that bundle through the hub; the batch stays "
            "in the gateway's outbox and is resent later"
        )
    return StoredBatch(
        site_id=batch.site_id,
        batch_id=batch.batch_id,
        period=batch.period,
        period_days=batch.period_days,
        schema_hash=batch.schema_hash,
        epsilon=batch.epsilon,
        delta=batch.delta,
        mechanism=batch.mechanism,
        cells=cells,
        kind=kind,
    )


def _check_period(period: str, days: int, today: dt.date, bad: _Violations) -> None:
    start: dt.date | None = None
    if _PERIOD.fullmatch(period):
        try:
            start = dt.date.fromisoformat(period)
        except ValueError:
            start = None
    if start is None:
        bad.add("batch.period", "must be the period's first UTC day as YYYY-MM-DD")
    elif start > today:
        bad.add("batch.period", f"{period} lies in the future (hub date {today}); check clocks")
    if not 1 <= days <= MAX_PERIOD_DAYS:
        bad.add("batch.period_days", f"must be between 1 and {MAX_PERIOD_DAYS}")


@functools.lru_cache(maxsize=16)
def _domain(schema: BinSchema) -> frozenset[Cell]:
    return frozenset(schema.domain())


def _cells(
    cells: Sequence[pb.AggregateCell],
    schema: BinSchema | None,
    kind: ReleaseKind | None,
    bad: _Violations,
) -> tuple[StoredCell, ...]:
    if len(cells) > MAX_CELLS:
        bad.add(
            "batch.cells",
            f"{len(cells)} cells is more than {MAX_CELLS}; a batch holds one site-period",
        )
        return ()
    width = len(schema.binned) if schema is not None else None
    ranges = schema.code_ranges() if schema is not None else ()
    names = [schema.features[i] for i in schema.binned] if schema is not None else []
    seen: dict[Cell, int] = {}
    out: list[StoredCell] = []
    for index, cell in enumerate(cells):
        where = f"batch.cells[{index}]"
        codes: Cell = tuple(cell.codes)
        if width is not None and len(codes) != width:
            bad.add(
                f"{where}.codes",
                f"must hold {width} codes, one per binned feature of the schema, got {len(codes)}",
            )
        elif width is not None:
            for code, (low, high), name in zip(codes, ranges, names, strict=True):
                if not low <= code <= high:
                    bad.add(f"{where}.codes", f"code {code} of {name} is outside {low}..{high}")
                    break
        first = seen.setdefault(codes, index)
        if first != index:
            bad.add(f"{where}.codes", f"repeats the cell of batch.cells[{first}]; merge them")
        total, fraud = cell.noisy_total, cell.noisy_fraud
        if kind == "known_domain":
            # noise around an empty cell: zero and negative counts are legitimate
            for name, value in (("noisy_total", total), ("noisy_fraud", fraud)):
                if not -MAX_CELL_TOTAL <= value <= MAX_CELL_TOTAL:
                    bad.add(
                        f"{where}.{name}",
                        f"must be between -{MAX_CELL_TOTAL} and {MAX_CELL_TOTAL}",
                    )
        elif not 1 <= total <= MAX_CELL_TOTAL:
            bad.add(
                f"{where}.noisy_total",
                f"must be between 1 and {MAX_CELL_TOTAL} (released cells are above the "
                "DP threshold)",
            )
        elif abs(fraud) > FRAUD_BOUND_FACTOR * total + FRAUD_BOUND_SLACK:
            bad.add(
                f"{where}.noisy_fraud",
                f"|{fraud}| is beyond what DP noise can produce for noisy_total {total} (at "
                f"most {FRAUD_BOUND_FACTOR} x noisy_total + {FRAUD_BOUND_SLACK})",
            )
        out.append((codes, total, fraud))
    if kind == "known_domain" and schema is not None:
        domain = _domain(schema)
        missing = sorted(domain - seen.keys())
        if missing:
            bad.add(
                "batch.cells",
                f"a known-domain batch holds every cell of the bin schema's domain exactly "
                f"once ({len(domain)} cells); {len(missing)} missing, e.g. codes "
                f"{list(missing[0])}",
            )
    return tuple(out)


def release_from_request(
    request: pb.PublishReleaseRequest, known_sites: frozenset[str]
) -> tuple[str, dict[str, bytes], list[str] | None]:
    """(model_version, files, target sites or None for all); RequestInvalidError."""
    bad = _Violations("release")
    if not request.HasField("release"):
        raise RequestInvalidError([FieldViolation("release", "required: the signed bundle")])
    release = request.release
    if not _VERSION.fullmatch(release.model_version):
        bad.add(
            "release.model_version",
            "must be 1 to 128 of A-Z a-z 0-9 . _ : + - (the manifest's model_version)",
        )
    files: dict[str, bytes] = {}
    if not release.files:
        bad.add("release.files", "required: the bundle's files, manifest.sig included")
    for index, item in enumerate(release.files):
        where = f"release.files[{index}].name"
        if not _FILE_NAME.fullmatch(item.name):
            bad.add(where, "must be a plain file name (A-Z a-z 0-9 . _ -, no path, no dot first)")
        elif item.name in files:
            bad.add(where, f"{item.name} is sent twice")
        else:
            files[item.name] = bytes(item.content)
    sites: list[str] = []
    for index, site in enumerate(request.sites):
        where = f"sites[{index}]"
        if not NAME.fullmatch(site):
            bad.add(where, "must be a site id (1 to 64 of A-Z a-z 0-9 . _ -)")
        elif site in sites:
            bad.add(where, f"{site} is listed twice")
        elif site not in known_sites:
            bad.add(
                where,
                f"{site} is not a site this hub knows (no token, no batch); check the "
                "spelling, or add it with `fraudscreen hub add-site` first",
            )
        else:
            sites.append(site)
    bad.raise_if_any()
    return release.model_version, files, (sites or None)


_LABEL = re.compile(r"[A-Za-z0-9._:+ -]{0,64}")
_UPDATE_RESULTS = frozenset({"", "swapped", "refused", "failed", "rolled_back"})
MAX_PENDING_BATCHES = 100_000


def gateway_state_from_request(state: pb.GatewayState, root: str = "state") -> GatewayState:
    """A gateway's self-report -> GatewayState; every bad field named (`state.predictor`).
    Short labels and bounded numbers only: the fleet view must not become a side channel."""
    bad = _Violations(root)
    if state.model_version and not _VERSION.fullmatch(state.model_version):
        bad.add(f"{root}.model_version", "must be a model version (A-Z a-z 0-9 . _ : + -)")
    for name in ("predictor", "software_version"):
        if not _LABEL.fullmatch(getattr(state, name)):
            bad.add(f"{root}.{name}", "must be at most 64 of A-Z a-z 0-9 . _ : + - and space")
    if state.last_update_result not in _UPDATE_RESULTS:
        bad.add(
            f"{root}.last_update_result",
            f"must be one of {', '.join(repr(r) for r in sorted(_UPDATE_RESULTS))}",
        )
    for name in ("last_update_at", "epsilon_spent", "epsilon_budget"):
        value = getattr(state, name)
        if not math.isfinite(value) or value < 0:
            bad.add(f"{root}.{name}", "must be a finite number >= 0")
    if not 0 <= state.pending_batches <= MAX_PENDING_BATCHES:
        bad.add(f"{root}.pending_batches", f"must be in [0, {MAX_PENDING_BATCHES}]")
    bad.raise_if_any()
    return GatewayState(
        model_version=state.model_version,
        predictor=state.predictor,
        stand_in=state.stand_in,
        last_update_result=state.last_update_result,
        last_update_at=state.last_update_at,
        pending_batches=state.pending_batches,
        epsilon_spent=state.epsilon_spent,
        epsilon_budget=state.epsilon_budget,
        software_version=state.software_version,
    )
