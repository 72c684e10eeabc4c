"""Differentially private release of per-site, per-period (cell, label) count tables.

Two mechanisms, both OpenDP, both per card per period (``m`` = contribution bound):

* ``release_known_domain`` (the default, ``privacy.mechanism = "known_domain"``): the bin
  schema is public, so the set of possible cells (its domain) is public too. Every cell of
  the domain is released with discrete Laplace noise on its (genuine, fraud) counts and
  nothing is selected: pure epsilon-DP, delta 0. Sparse cells (where fraud lives) survive
  as noisy counts around their truth and average out when the hub sums sites and periods.
* ``release_table`` (``"threshold"``): the thresholded mechanism below, which releases
  only cells whose noisy total passes a threshold (the set of populated cells is protected
  by the threshold's delta). It suits schemas whose domain is too large to enumerate, but
  with a small fixed schema it suppresses most fraud (see `fraudscreen evaluate --privacy`).

The thresholded mechanism in detail. The gateway holds exact counts
``{(cell, label): n}`` for one site and one period, after contribution bounding (each card
contributes at most ``m = max_contributions`` transactions per period; that is the
caller's job). ``release_counts`` releases them with OpenDP's thresholded discrete Laplace
mechanism (``make_laplace_threshold`` on integer counts; Rogers 2023,
"A Unifying Privacy Analysis Framework for Unknown Domain Algorithms"):

* every non-empty key gets independent discrete Laplace (two-sided geometric) noise of
  ``scale``, sampled exactly by OpenDP's own CSPRNG-backed sampler;
* only keys whose noisy count is strictly greater than ``threshold`` are released, so the
  set of non-empty cells is itself protected. Empty cells are never enumerated.

Privacy accounting: one card changes at most ``m`` transactions, each in exactly one key, so
neighbouring tables are ``(l0, l1, linf) = (m, m, m)``-close under ``L01InfDistance``. The
``(epsilon, delta)`` reported is OpenDP's privacy map evaluated at that distance.

How the parameters are chosen (``plan_release``, deterministic and cached):

1. ``scale``: the smallest scale whose OpenDP epsilon is <= the requested epsilon, found by
   ``dp.binary_search`` on the privacy map (it comes out as ``m / epsilon``). All of epsilon
   goes to the noise; the threshold only costs delta.
2. ``threshold``: the smallest integer ``tau >= m`` whose OpenDP delta is <= the requested
   delta, found the same way.

OpenDP 0.16 off-by-one (opendp/opendp#2922, open at the time of writing): the measurement
*keeps* noisy counts ``>= threshold`` but its privacy map computes delta from the tail
strictly *above* the threshold, so the reported delta is too small (by about a factor
``e^(1/scale)``; at tiny scales it can be wildly wrong). We therefore account with OpenDP's
map at ``tau`` (which is the correct analysis of "release iff noisy > tau") and run the
OpenDP measurement with ``threshold = tau + 1`` (which releases exactly "noisy >= tau + 1",
i.e. "noisy > tau" on integers). If OpenDP fixes either side, this stays conservative.

Fresh noise on every call: ``release_counts`` re-noises each time it is called. Releasing
the same period twice spends the budget twice and lets noise be averaged away, so it is the
CALLER's job to noise a batch once, store it (with the epsilon in the privacy ledger, in the
same transaction as the outbox row) and resend the stored payload on retry.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal

import opendp.prelude as dp

from fraudscreen.binschema import BinSchema, Cell

CountKey = tuple[Cell, int]  # (cell, label)
Mechanism = Literal["known_domain", "threshold"]
MECHANISMS: tuple[Mechanism, ...] = ("known_domain", "threshold")
# A known-domain batch carries every cell of the domain; the hub takes at most this many.
MAX_DOMAIN_CELLS = 100_000

MAX_EPSILON = 50.0
MAX_DELTA = 1e-3
# Counts travel as i64 inside OpenDP; keep well clear of saturation once noise is added.
MAX_COUNT = 2**62

# Threshold used while searching for the scale: only the epsilon part of the map is read
# there, but the map needs a threshold >= linf to evaluate at all.
_SCALE_SEARCH_THRESHOLD = 2**40


@dataclass(frozen=True)
class ReleaseParameters:
    """Budget for one release (one site, one period)."""

    epsilon: float  # per period, per card (0 < eps <= 50)
    delta: float = 1e-7  # 0 < delta < 1e-3
    max_contributions: int = 10  # m: transactions per card per period, >= 1

    def __post_init__(self) -> None:
        if not _is_real(self.epsilon) or not (0.0 < self.epsilon <= MAX_EPSILON):
            raise ValueError(
                f"epsilon must be a number in (0, {MAX_EPSILON}], got {self.epsilon!r}"
            )
        if not _is_real(self.delta) or not (0.0 < self.delta < MAX_DELTA):
            raise ValueError(f"delta must be a number in (0, {MAX_DELTA}), got {self.delta!r}")
        m = self.max_contributions
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"max_contributions must be an int >= 1, got {m!r}")


@dataclass(frozen=True)
class NoisyCounts:
    """A DP release: only keys whose noisy count is > ``threshold``."""

    counts: dict[CountKey, int]  # released keys only, noisy counts (all > threshold)
    epsilon: float  # spent, from OpenDP's privacy map at (l0, l1, linf) = (m, m, m)
    delta: float
    scale: float  # discrete Laplace scale (std = sqrt(2) * scale, approximately)
    threshold: int  # a key is released iff its noisy count > threshold
    mechanism: str


def _is_real(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _opendp_ready() -> None:
    # "contrib" is required by make_laplace_threshold and, in OpenDP 0.16, by make_laplace
    # too: it marks constructors whose proofs have not been through OpenDP's full vetting.
    # Acceptable here because the proof documents are published (linked from the OpenDP
    # docs), the integer path samples noise exactly (no "floating-point" flag is needed,
    # and we do not enable it), and we work around the threshold's one known accounting bug
    # (#2922, see the module docstring).
    dp.enable_features("contrib")


def _input_space() -> tuple[Any, Any]:
    domain = dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=dp.i64))
    metric = dp.l01inf_distance(dp.absolute_distance(T=dp.i64))
    return domain, metric


def _measurement(scale: float, opendp_threshold: int) -> Any:
    """OpenDP measurement that keeps noisy counts >= ``opendp_threshold``."""
    _opendp_ready()
    domain, metric = _input_space()
    return dp.m.make_laplace_threshold(domain, metric, scale=scale, threshold=opendp_threshold)


def _d_in(m: int) -> tuple[int, int, int]:
    return (m, m, m)  # (l0, l1, linf)


def _spent(scale: float, threshold: int, m: int) -> tuple[float, float]:
    """(epsilon, delta) of "release iff noisy > threshold", from OpenDP's privacy map.

    OpenDP's map for a measurement built with ``threshold`` analyses exactly the "> threshold"
    rule (opendp#2922), which is what ``release_counts`` runs (OpenDP threshold + 1).
    """
    eps, delta = _measurement(scale, threshold).map(_d_in(m))
    return float(eps), float(delta)


@functools.lru_cache(maxsize=256)
def plan_release(params: ReleaseParameters) -> tuple[float, int]:
    """(scale, threshold) meeting the budget; deterministic (and cached).

    ``scale`` is the smallest whose epsilon <= ``params.epsilon``; ``threshold`` is the
    smallest integer >= m whose delta <= ``params.delta`` at that scale. A key is released
    iff its noisy count > threshold.
    """
    m = params.max_contributions
    eps_target = params.epsilon
    nominal = m / eps_target

    def eps_ok(scale: float) -> bool:
        return _spent(scale, _SCALE_SEARCH_THRESHOLD, m)[0] <= eps_target

    scale = float(dp.binary_search(eps_ok, bounds=(nominal / 2.0, nominal * 2.0), T=float))

    def delta_ok(threshold: int) -> bool:
        return _spent(scale, threshold, m)[1] <= params.delta

    # With a very large epsilon the smallest admissible threshold (m) may already suffice.
    threshold = m if delta_ok(m) else int(dp.binary_search(delta_ok, bounds=(m, None), T=int))

    eps, delta = _spent(scale, threshold, m)
    if not (eps <= params.epsilon and delta <= params.delta):  # pragma: no cover - defensive
        raise RuntimeError(f"plan ({scale}, {threshold}) spends ({eps}, {delta}) > {params}")
    return scale, threshold


def _as_int(x: object) -> int:
    if isinstance(x, bool):
        raise TypeError("bool is not a count or code")
    return operator.index(x)  # type: ignore[arg-type]  # int or numpy integer; else TypeError


def _validate(exact: Mapping[CountKey, int]) -> dict[CountKey, int]:
    """Normalised copy of ``exact`` with the zero counts dropped."""
    if not isinstance(exact, Mapping):
        raise ValueError(f"exact must be a mapping of (cell, label) -> count, got {type(exact)}")
    out: dict[CountKey, int] = {}
    for key, value in exact.items():
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], tuple)):
            raise ValueError(f"exact: key {key!r} is not (cell: tuple[int, ...], label)")
        cell_raw, label_raw = key
        try:
            cell: Cell = tuple(_as_int(c) for c in cell_raw)
            label = _as_int(label_raw)
        except TypeError:
            raise ValueError(f"exact: key {key!r} is not (tuple[int, ...], 0|1)") from None
        if label not in (0, 1):
            raise ValueError(f"exact: label in key {key!r} must be 0 or 1")
        try:
            count = _as_int(value)
        except TypeError:
            raise ValueError(f"exact: count for {key!r} must be an int, got {value!r}") from None
        if count < 0:
            raise ValueError(f"exact: count for {key!r} is negative ({count})")
        if count > MAX_COUNT:
            raise ValueError(f"exact: count for {key!r} exceeds {MAX_COUNT}")
        if count > 0:
            out[(cell, label)] = count
    return out


def _encode(key: CountKey) -> str:
    cell, label = key
    return ",".join(map(str, cell)) + "|" + str(label)


# Adds noise of a scale to each count. None everywhere below: OpenDP's own sampler (what a
# gateway uses); `evaluate --privacy --seed` passes a seeded one (privacy/seeded_noise.py).
NoiseSampler = Callable[[Sequence[int], float], list[int]]


def release_counts(
    exact: Mapping[CountKey, int],
    params: ReleaseParameters,
    *,
    noise: NoiseSampler | None = None,
) -> NoisyCounts:
    """Release ``exact`` with (epsilon, delta)-DP per card per period.

    Keys with count 0 are dropped before the mechanism (they are indistinguishable from
    absent keys). Raises ValueError for negative counts, non-integer counts, or keys that are
    not ``(tuple[int, ...], 0|1)``.

    Every call draws FRESH noise. The caller must noise a batch once, store it, record the
    returned epsilon/delta in the privacy ledger, and resend the stored payload on retry;
    never call this twice for the same site and period.
    """
    if not isinstance(params, ReleaseParameters):
        raise ValueError(f"params must be ReleaseParameters, got {type(params)}")
    clean = _validate(exact)
    scale, threshold = plan_release(params)
    m = params.max_contributions
    epsilon, delta = _spent(scale, threshold, m)

    # OpenDP keeps noisy >= its threshold; threshold + 1 gives "noisy > threshold" (#2922).
    if noise is None:
        meas = _measurement(scale, threshold + 1)
        by_name = {_encode(k): k for k in clean}
        noisy = meas({name: clean[key] for name, key in by_name.items()})
        counts = {by_name[name]: int(v) for name, v in noisy.items()}
    else:
        keys = list(clean)
        drawn = noise([clean[key] for key in keys], scale)
        counts = {key: v for key, v in zip(keys, drawn, strict=True) if v > threshold}
    if any(v <= threshold for v in counts.values()):  # pragma: no cover - defensive
        raise RuntimeError("OpenDP released a count at or below the threshold")

    return NoisyCounts(
        counts=counts,
        epsilon=epsilon,
        delta=delta,
        scale=scale,
        threshold=threshold,
        mechanism=(
            f"opendp {version('opendp')} laplace_threshold (discrete), l0=l1=linf={m}, "
            f"release iff noisy > {threshold} (opendp threshold {threshold + 1}, see #2922)"
        ),
    )


# -- cell tables: DP selection of cells on totals, then noisy fraud counts ------------------


@dataclass(frozen=True)
class NoisyTable:
    """A released (site, period) table: per released cell, noisy total and noisy fraud count.

    Fraud counts are NOT thresholded (fraud is rare: a threshold would erase it); they carry
    unbiased discrete Laplace noise and may be negative. Sum across batches first, clamp last.

    ``kind`` "threshold": cells whose noisy total passed ``threshold``; ``total_scale`` is the
    noise scale of the totals. ``kind`` "known_domain": every cell of the schema's domain,
    ``threshold`` None; genuine and fraud counts each carry noise of scale ``fraud_scale``
    (= ``total_scale``), and the total is their sum (its noise has sqrt(2) times the std).
    """

    cells: dict[Cell, tuple[int, int]]  # cell -> (noisy total, noisy fraud)
    epsilon: float
    delta: float
    total_scale: float
    fraud_scale: float
    threshold: int | None
    mechanism: str
    kind: Mechanism = "threshold"


def _discrete_laplace_vector(scale: float, size: int | None = None) -> Any:
    """Discrete Laplace on an i64 vector under L1: OpenDP's integer path samples exactly.
    Both mechanisms noise their counts with it (threshold: the fraud counts)."""
    _opendp_ready()
    domain = dp.vector_domain(dp.atom_domain(T=dp.i64), size=size)
    return dp.m.make_laplace(domain, dp.l1_distance(T=dp.i64), scale=scale)


def release_table(
    exact: Mapping[Cell, tuple[int, int]],
    params: ReleaseParameters,
    *,
    noise: NoiseSampler | None = None,
) -> NoisyTable:
    """Release a cell table (cell -> (n_genuine, n_fraud)) with (epsilon, delta)-DP per card.

    Half the epsilon selects cells by their noisy total (the thresholded mechanism above, so
    the set of populated cells is protected); the other half adds discrete Laplace noise to
    the fraud counts of the selected cells. A card moves at most m transactions, so the
    fraud vector changes by at most m in L1. Basic composition: epsilon adds, delta comes
    from the selection. Fresh noise on every call (see `release_counts`).

    The reported epsilon is always both halves, even when no cell passes the threshold:
    whether one does depends on the data, so the ledger must charge what the plan spends.
    """
    half = ReleaseParameters(params.epsilon / 2, params.delta, params.max_contributions)
    totals: dict[CountKey, int] = {}
    frauds: dict[Cell, int] = {}
    for cell, (genuine, fraud) in exact.items():
        if genuine < 0 or fraud < 0:
            raise ValueError(f"exact: negative count in cell {cell!r}")
        totals[(tuple(cell), 0)] = genuine + fraud
        frauds[tuple(cell)] = fraud
    selected = release_counts(totals, half, noise=noise)
    cells = sorted(cell for cell, _ in selected.counts)
    m = params.max_contributions
    fraud_scale = m / half.epsilon
    # The fraud half is charged whatever the selection let through (its map does not
    # depend on the vector's length; size 1 only lets it be built for an empty selection).
    measurement = _discrete_laplace_vector(fraud_scale, max(len(cells), 1))
    fraud_epsilon = float(measurement.map(m))
    noisy_fraud: list[int] = []
    if cells and noise is not None:
        noisy_fraud = noise([frauds[c] for c in cells], fraud_scale)
    elif cells:
        noisy_fraud = [int(v) for v in measurement([frauds[c] for c in cells])]
    return NoisyTable(
        cells={c: (selected.counts[(c, 0)], f) for c, f in zip(cells, noisy_fraud, strict=True)},
        epsilon=selected.epsilon + fraud_epsilon,
        delta=selected.delta,
        total_scale=selected.scale,
        fraud_scale=fraud_scale,
        threshold=selected.threshold,
        mechanism=(
            f"totals: {selected.mechanism}; frauds: opendp {version('opendp')} discrete "
            f"laplace scale {fraud_scale:g} on selected cells, l1={m}"
        ),
        kind="threshold",
    )


# -- known domain: every cell of the public domain, discrete Laplace, no selection ----------


@functools.lru_cache(maxsize=256)
def plan_known_domain(params: ReleaseParameters) -> float:
    """The smallest scale whose OpenDP epsilon at L1 distance m is <= ``params.epsilon``.

    Nominally m / epsilon; searched with ``dp.binary_search`` on OpenDP's privacy map so the
    float rounding of m / epsilon can never report a hair more than the request.
    """
    m = params.max_contributions
    nominal = m / params.epsilon

    def eps_ok(scale: float) -> bool:
        return float(_discrete_laplace_vector(scale).map(m)) <= params.epsilon

    scale = float(dp.binary_search(eps_ok, bounds=(nominal / 2.0, nominal * 2.0), T=float))
    if not eps_ok(scale):  # pragma: no cover - defensive
        raise RuntimeError(f"known-domain plan {scale} spends more than {params}")
    return scale


def _domain_cells(domain: BinSchema | Sequence[Cell]) -> list[Cell]:
    if isinstance(domain, BinSchema):
        if domain.domain_size() > MAX_DOMAIN_CELLS:
            raise ValueError(
                f"the bin schema's domain has {domain.domain_size():,} cells, more than "
                f"{MAX_DOMAIN_CELLS:,} a known-domain batch may carry; use a coarser schema "
                'or privacy.mechanism = "threshold"'
            )
        return list(domain.domain())
    try:
        cells = [tuple(_as_int(c) for c in cell) for cell in domain]
    except TypeError:
        raise ValueError("domain: every cell must be a tuple of int codes") from None
    if len(set(cells)) != len(cells):
        raise ValueError("domain: a cell is listed twice")
    if not cells:
        raise ValueError("domain: no cells")
    if len(cells) > MAX_DOMAIN_CELLS:
        raise ValueError(f"domain: {len(cells):,} cells is more than {MAX_DOMAIN_CELLS:,}")
    return sorted(cells)


def release_known_domain(
    exact: Mapping[Cell, tuple[int, int]],
    domain: BinSchema | Sequence[Cell],
    params: ReleaseParameters,
    *,
    noise: NoiseSampler | None = None,
) -> NoisyTable:
    """Release every cell of a public domain with pure epsilon-DP per card per period.

    ``exact`` maps cell -> (n_genuine, n_fraud) after contribution bounding (cells absent
    from it count 0); ``domain`` is the bin schema (its `domain()`) or the cells themselves.
    OpenDP's discrete Laplace (``make_laplace`` on an i64 vector, L1 metric) noises the
    vector of 2 x |domain| counts (every cell's genuine count, then every cell's fraud
    count). Sensitivity: a card moves at most m transactions and each one is exactly one
    of those counts, so neighbouring vectors are at most m apart in L1 (releasing (total,
    fraud) directly would be 2m: a fraud moves both). The scale is ``plan_known_domain``
    (about m / epsilon) and the epsilon reported is OpenDP's map at m. No cell is selected,
    so no delta is spent (reported 0; ``params.delta`` is not used).

    The payload keeps the (noisy total, noisy fraud) shape of the thresholded release:
    total = noisy genuine + noisy fraud is post-processing and costs nothing. Either may be
    zero or negative in an empty cell: sum across batches first, clamp last.

    Raises ValueError for a cell outside the domain (e.g. a missing value in a feature the
    schema does not list as nullable: the schema is wrong, nothing is released), negative
    or non-integer counts. Fresh noise on every call: store the result, never re-release.
    """
    if not isinstance(params, ReleaseParameters):
        raise ValueError(f"params must be ReleaseParameters, got {type(params)}")
    if not isinstance(exact, Mapping):
        raise ValueError(f"exact must be a mapping of cell -> (genuine, fraud), got {type(exact)}")
    cells = _domain_cells(domain)
    index = {cell: i for i, cell in enumerate(cells)}
    n = len(cells)
    counts = [0] * (2 * n)
    for raw_cell, value in exact.items():
        try:
            cell: Cell = tuple(_as_int(c) for c in raw_cell)
            genuine, fraud = (_as_int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(
                f"exact: {raw_cell!r} -> {value!r} is not cell -> (genuine, fraud) of ints"
            ) from None
        if cell not in index:
            raise ValueError(
                f"exact: cell {cell!r} is outside the domain (is a feature missing that the "
                "bin schema does not list as nullable?); nothing was released"
            )
        if not (0 <= genuine <= MAX_COUNT and 0 <= fraud <= MAX_COUNT):
            raise ValueError(f"exact: counts of cell {cell!r} must be in 0..{MAX_COUNT}")
        counts[index[cell]] += genuine
        counts[n + index[cell]] += fraud
    scale = plan_known_domain(params)
    m = params.max_contributions
    measurement = _discrete_laplace_vector(scale, 2 * n)
    epsilon = float(measurement.map(m))
    noisy = [int(v) for v in measurement(counts)] if noise is None else noise(counts, scale)
    return NoisyTable(
        cells={cell: (noisy[i] + noisy[n + i], noisy[n + i]) for i, cell in enumerate(cells)},
        epsilon=epsilon,
        delta=0.0,
        total_scale=scale,
        fraud_scale=scale,
        threshold=None,
        mechanism=(
            f"opendp {version('opendp')} known domain: discrete laplace (make_laplace, i64 "
            f"vector, L1) scale {scale:g} on the genuine and fraud counts of all {n} cells of "
            f"the bin schema's domain, no selection, l1={m}; noisy_total = noisy genuine + "
            "noisy fraud (post-processing); pure epsilon-DP, delta 0"
        ),
        kind="known_domain",
    )


def release(
    mechanism: Mechanism,
    exact: Mapping[Cell, tuple[int, int]],
    schema: BinSchema,
    params: ReleaseParameters,
) -> NoisyTable:
    """One (site, period) table with the configured mechanism (`privacy.mechanism`)."""
    if mechanism == "known_domain":
        return release_known_domain(exact, schema, params)
    if mechanism == "threshold":
        return release_table(exact, params)
    raise ValueError(f"mechanism must be one of {', '.join(MECHANISMS)}, got {mechanism!r}")
