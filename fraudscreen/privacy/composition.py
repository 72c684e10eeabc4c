"""Several tables released in one period, composed inside the period's one epsilon.

A gateway may release more than one table for a day (one per deployed model version when
a swap splits the day, or several marginal tables). Everything it releases for a period
counts against the one epsilon per card per site per period: each of the k tables is
released with epsilon / k (and delta / k), each bounded to m transactions per card, and
the total is OpenDP's map of the composition of the k measurements (`make_composition`,
basic composition: epsilons add), which must not exceed the period's epsilon. The privacy
ledger records each table's epsilon; their sum is that total.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import opendp.prelude as dp

from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.privacy.release import (
    Mechanism,
    NoisyTable,
    ReleaseParameters,
    _discrete_laplace_vector,
    plan_known_domain,
    release,
)

Part = tuple[Mapping[Cell, tuple[int, int]], BinSchema]

# OpenDP's map of each table is at most its share; the float sum of k shares may exceed
# the period's epsilon by rounding only.
_ROUNDING = 1e-9


def share(params: ReleaseParameters, parts: int) -> ReleaseParameters:
    """Each of `parts` tables' budget: epsilon / parts and delta / parts."""
    if parts < 1:
        raise ValueError("a composed release needs at least one table")
    return ReleaseParameters(params.epsilon / parts, params.delta / parts, params.max_contributions)


def composed_epsilon(params: ReleaseParameters, parts: int) -> float:
    """OpenDP's epsilon for `parts` known-domain releases of `share(params, parts)`,
    composed (make_composition) and mapped at d_in = m."""
    scale = plan_known_domain(share(params, parts))
    measurements = [_discrete_laplace_vector(scale) for _ in range(parts)]
    if parts == 1:
        return float(measurements[0].map(params.max_contributions))
    return float(dp.c.make_composition(measurements).map(params.max_contributions))


def release_composed(
    mechanism: Mechanism, parts: Sequence[Part], params: ReleaseParameters
) -> list[NoisyTable]:
    """Release every table of one period inside `params.epsilon` (fresh noise each call).

    Raises RuntimeError if the tables' epsilons add up to more than the period's (which
    OpenDP's own maps would have to allow: a defect, never a rounding).
    """
    each = share(params, len(parts))
    tables = [release(mechanism, exact, schema, each) for exact, schema in parts]
    total = sum(t.epsilon for t in tables)
    if mechanism == "known_domain":
        total = max(total, composed_epsilon(params, len(parts)))
    if total > params.epsilon + _ROUNDING:  # pragma: no cover - defensive
        raise RuntimeError(f"{len(parts)} tables spend epsilon {total} > {params.epsilon}")
    return tables
