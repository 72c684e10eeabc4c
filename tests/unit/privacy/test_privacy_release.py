"""Tests for the DP release of count tables (fraudscreen.privacy.release)."""

from __future__ import annotations

import math
import statistics
from importlib.metadata import version
from typing import get_args

import numpy as np
import pytest

from fraudscreen.binschema import BinSchema
from fraudscreen.config import PrivacyConfig, ReleaseMechanism
from fraudscreen.privacy.release import (
    MAX_DOMAIN_CELLS,
    MECHANISMS,
    CountKey,
    Mechanism,
    NoisyCounts,
    ReleaseParameters,
    _discrete_laplace_vector,
    _measurement,
    _spent,
    plan_known_domain,
    plan_release,
    release,
    release_counts,
    release_known_domain,
    release_table,
)

EPSILONS = [0.5, 1.0, 2.0, 4.0, 8.0]
MS = [1, 5, 20]


def _table(n_keys: int, count: int, label: int = 0) -> dict[CountKey, int]:
    return {((i // 100, i % 100, 7), label): count for i in range(n_keys)}


def _discrete_laplace_tail(scale: float, k: int) -> float:
    """P(Z >= k) for k >= 1, Z ~ discrete Laplace(scale): P(Z=z) proportional to a^|z|."""
    a = math.exp(-1.0 / scale)
    return a**k / (1.0 + a)


def _discrete_laplace_std(scale: float) -> float:
    a = math.exp(-1.0 / scale)
    return math.sqrt(2.0 * a) / (1.0 - a)


@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("eps", EPSILONS)
def test_spent_budget_within_request(eps: float, m: int) -> None:
    params = ReleaseParameters(epsilon=eps, delta=1e-7, max_contributions=m)
    out = release_counts({((1, 2), 0): 500, ((1, 2), 1): 3}, params)
    assert isinstance(out, NoisyCounts)
    assert 0 < out.epsilon <= eps
    assert 0 < out.delta <= 1e-7
    assert out.epsilon == pytest.approx(eps, rel=1e-6)  # the budget is used, not wasted
    assert out.threshold >= m
    assert (out.scale, out.threshold) == plan_release(params)
    assert all(v > out.threshold for v in out.counts.values())


@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("eps", EPSILONS)
def test_reported_delta_covers_exact_release_probability(eps: float, m: int) -> None:
    """Independent check of the accounting (guards against opendp#2922).

    The worst neighbour adds m keys of count m (or removes them). Each is released iff
    m + Z > threshold, i.e. Z >= threshold + 1 - m, so the exact delta is
    1 - (1 - P(Z >= threshold + 1 - m))^m.
    """
    params = ReleaseParameters(epsilon=eps, delta=1e-7, max_contributions=m)
    scale, threshold = plan_release(params)
    p_single = _discrete_laplace_tail(scale, threshold + 1 - m)
    exact_delta = -math.expm1(m * math.log1p(-p_single))
    _, reported_delta = _spent(scale, threshold, m)
    assert exact_delta <= reported_delta * (1 + 1e-9)
    assert exact_delta <= 1e-7
    # Threshold is the smallest that works: one lower would blow the delta.
    p_lower = _discrete_laplace_tail(scale, threshold - m)
    if threshold > m:
        assert -math.expm1(m * math.log1p(-p_lower)) > 1e-7 * 0.999


def test_empirical_release_rate_matches_accounting() -> None:
    """At a noisy scale the keep-rate of a count-m key is measurable: check it is covered."""
    scale, threshold, m, n = 1.0, 4, 1, 20_000
    _, accounted = _spent(scale, threshold, m)  # l0 = 1: delta is the single-key rate
    meas = _measurement(scale, threshold + 1)  # what release_counts runs
    released = meas({f"k{i}": m for i in range(n)})
    assert all(v > threshold for v in released.values())
    rate = len(released) / n
    sigma = math.sqrt(accounted * (1 - accounted) / n)
    assert rate <= accounted + 6 * sigma


def test_larger_epsilon_gives_smaller_scale() -> None:
    for m in MS:
        scales = [
            plan_release(ReleaseParameters(epsilon=e, max_contributions=m))[0] for e in EPSILONS
        ]
        assert scales == sorted(scales, reverse=True)
        assert len(set(scales)) == len(scales)


def test_plan_is_deterministic() -> None:
    params = ReleaseParameters(epsilon=1.0, delta=1e-7, max_contributions=10)
    uncached = plan_release.__wrapped__
    assert uncached(params) == uncached(params) == plan_release(params)
    scale, threshold = plan_release(params)
    assert scale == pytest.approx(10.0)
    assert threshold == 187


def test_small_counts_are_suppressed() -> None:
    params = ReleaseParameters(epsilon=1.0, max_contributions=10)
    out = release_counts(_table(2000, 1), params)
    assert out.counts == {}
    out = release_counts(_table(2000, 10, label=1), params)  # even a full card's worth
    assert out.counts == {}


def test_large_counts_are_released_near_truth() -> None:
    params = ReleaseParameters(epsilon=1.0, max_contributions=10)
    exact = _table(50, 10_000)
    out = release_counts(exact, params)
    assert set(out.counts) == set(exact)
    for key, value in out.counts.items():
        assert abs(value - exact[key]) <= 15 * out.scale


def test_noise_is_integer_unbiased_and_scaled() -> None:
    params = ReleaseParameters(epsilon=1.0, max_contributions=10)
    exact = _table(2000, 1000)
    out = release_counts(exact, params)
    assert set(out.counts) == set(exact)  # 1000 is ~80 scales above the threshold
    assert all(type(v) is int for v in out.counts.values())
    errors = [out.counts[k] - exact[k] for k in exact]
    n = len(errors)
    exact_std = _discrete_laplace_std(out.scale)
    assert abs(statistics.fmean(errors)) < 5 * exact_std / math.sqrt(n)
    std = statistics.pstdev(errors)
    assert 0.8 * exact_std < std < 1.25 * exact_std
    assert 0.5 * math.sqrt(2) * out.scale < std < 2 * math.sqrt(2) * out.scale


def test_each_call_draws_fresh_noise() -> None:
    params = ReleaseParameters(epsilon=1.0, max_contributions=10)
    exact = _table(50, 1000)
    first = release_counts(exact, params)
    second = release_counts(exact, params)
    assert first.counts != second.counts


def test_zero_counts_dropped_and_empty_input() -> None:
    params = ReleaseParameters(epsilon=8.0, max_contributions=1)
    out = release_counts({((0,), 0): 0, ((1,), 1): 10_000}, params)
    assert list(out.counts) == [((1,), 1)]
    empty = release_counts({}, params)
    assert empty.counts == {}
    assert 0 < empty.epsilon <= 8.0


def test_numpy_keys_and_counts_are_normalised() -> None:
    params = ReleaseParameters(epsilon=8.0, max_contributions=1)
    exact = {((np.int64(3), np.int8(4)), np.int64(1)): np.int64(10_000)}
    out = release_counts(exact, params)  # type: ignore[arg-type]
    [(key, value)] = out.counts.items()
    assert key == ((3, 4), 1)
    assert all(type(c) is int for c in key[0])
    assert type(key[1]) is int
    assert type(value) is int


def test_mechanism_description() -> None:
    out = release_counts({}, ReleaseParameters(epsilon=1.0, max_contributions=10))
    assert out.mechanism.startswith(f"opendp {version('opendp')} laplace_threshold (discrete)")
    assert "l0=l1=linf=10" in out.mechanism


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"epsilon": 0.0}, "epsilon"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"epsilon": 50.5}, "epsilon"),
        ({"epsilon": math.nan}, "epsilon"),
        ({"epsilon": math.inf}, "epsilon"),
        ({"epsilon": True}, "epsilon"),
        ({"epsilon": "1"}, "epsilon"),
        ({"epsilon": 1.0, "delta": 0.0}, "delta"),
        ({"epsilon": 1.0, "delta": 1e-3}, "delta"),
        ({"epsilon": 1.0, "delta": -1e-7}, "delta"),
        ({"epsilon": 1.0, "delta": math.nan}, "delta"),
        ({"epsilon": 1.0, "max_contributions": 0}, "max_contributions"),
        ({"epsilon": 1.0, "max_contributions": 2.0}, "max_contributions"),
        ({"epsilon": 1.0, "max_contributions": True}, "max_contributions"),
    ],
)
def test_invalid_parameters(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ReleaseParameters(**kwargs)  # type: ignore[arg-type]


def test_boundary_parameters_accepted() -> None:
    out = release_counts({((1,), 0): 100}, ReleaseParameters(epsilon=50.0, delta=9.9e-4))
    assert out.epsilon <= 50.0
    assert out.delta <= 9.9e-4


@pytest.mark.parametrize(
    "exact",
    [
        {((1, 2), 0): -1},
        {((1, 2), 2): 5},
        {((1, 2), True): 5},
        {((1, "a"), 0): 5},
        {("1,2", 0): 5},
        {(1, 0): 5},
        {((1, 2), 0, 1): 5},
        {"cell": 5},
        {((1, 2), 0): 1.5},
        {((1, 2), 0): True},
        {((1, 2), 0): 2**63},
        [(((1, 2), 0), 5)],
    ],
)
def test_invalid_inputs(exact: object) -> None:
    params = ReleaseParameters(epsilon=1.0)
    with pytest.raises(ValueError, match="exact"):
        release_counts(exact, params)  # type: ignore[arg-type]


def test_invalid_params_object() -> None:
    with pytest.raises(ValueError, match="params"):
        release_counts({}, {"epsilon": 1.0})  # type: ignore[arg-type]


# -- release_table: the thresholded cell table ------------------------------------------------


@pytest.mark.parametrize("eps", [1.0, 8.0])
def test_threshold_table_charges_the_full_epsilon_when_nothing_passes(eps: float) -> None:
    """Whether a cell passes depends on the data; the ledger must not learn it (or undercharge)."""
    params = ReleaseParameters(epsilon=eps, max_contributions=2)
    empty = release_table({}, params)
    tiny = release_table({(0, 0): (1, 0)}, params)  # far below any threshold
    busy = release_table({(0, 0): (100_000, 50)}, params)
    assert empty.cells == tiny.cells == {}
    assert len(busy.cells) == 1
    assert empty.epsilon == tiny.epsilon == busy.epsilon == pytest.approx(eps, rel=1e-6)
    assert busy.epsilon <= eps
    assert empty.kind == busy.kind == "threshold"
    assert busy.threshold is not None


# -- release_known_domain: every cell of the public domain, pure DP --------------------------

SCHEMA = BinSchema.default()
DOMAIN = SCHEMA.domain()


def _kd_params(eps: float = 1.0, m: int = 2) -> ReleaseParameters:
    return ReleaseParameters(epsilon=eps, max_contributions=m)


@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("eps", [*EPSILONS, 0.3, 0.7, 3.3, 50.0])
def test_known_domain_spends_at_most_the_request(eps: float, m: int) -> None:
    """OpenDP's own map at L1 distance m, at the planned scale: <= epsilon, and not wasted.

    (m / eps rounds so that OpenDP's map gives a hair more than eps for some of these
    values; the plan must search, not divide.)
    """
    params = _kd_params(eps, m)
    scale = plan_known_domain(params)
    spent = float(_discrete_laplace_vector(scale, 4).map(m))
    assert 0 < spent <= eps
    assert spent == pytest.approx(eps, rel=1e-9)
    assert scale == pytest.approx(m / eps, rel=1e-9)


def test_known_domain_releases_every_domain_cell_pure_dp() -> None:
    exact = {DOMAIN[0]: (500, 3), DOMAIN[-1]: (0, 7)}
    out = release_known_domain(exact, SCHEMA, _kd_params(2.0, 2))
    assert set(out.cells) == set(DOMAIN)
    assert len(out.cells) == len(DOMAIN) == 2430
    assert out.delta == 0.0  # nothing selected: no delta
    assert 0 < out.epsilon <= 2.0
    assert out.epsilon == pytest.approx(2.0)
    assert out.threshold is None
    assert out.kind == "known_domain"
    assert out.total_scale == out.fraud_scale == plan_known_domain(_kd_params(2.0, 2))
    assert all(type(t) is int and type(f) is int for t, f in out.cells.values())
    # empty cells are released too, noise around 0: some zero or negative totals
    assert any(total <= 0 for total, _ in out.cells.values())
    assert out.mechanism.startswith(f"opendp {version('opendp')} known domain")
    assert "all 2430 cells" in out.mechanism and "l1=2" in out.mechanism
    assert "delta 0" in out.mechanism
    # an explicit cell list is a domain too
    small = release_known_domain({(1,): (5, 1)}, [(0,), (1,), (-1,)], _kd_params())
    assert set(small.cells) == {(0,), (1,), (-1,)}


def test_known_domain_noise_is_unbiased_and_matches_the_scale() -> None:
    """Genuine and fraud counts get independent discrete Laplace noise of the planned scale;
    the total is their sum (so its noise has twice the variance)."""
    params = _kd_params(1.0, 3)  # scale 3
    exact = {cell: (1000, 20) for cell in DOMAIN}
    out = release_known_domain(exact, SCHEMA, params)
    scale = out.fraud_scale
    sd = _discrete_laplace_std(scale)
    fraud_errors = [out.cells[c][1] - 20 for c in DOMAIN]
    genuine_errors = [out.cells[c][0] - out.cells[c][1] - 1000 for c in DOMAIN]
    total_errors = [out.cells[c][0] - 1020 for c in DOMAIN]
    n = len(DOMAIN)
    for errors in (fraud_errors, genuine_errors):
        assert abs(statistics.fmean(errors)) < 5 * sd / math.sqrt(n)
        assert 0.9 * sd < statistics.pstdev(errors) < 1.1 * sd
    assert 0.9 * math.sqrt(2) * sd < statistics.pstdev(total_errors) < 1.1 * math.sqrt(2) * sd
    # genuine and fraud noise are independent
    assert abs(float(np.corrcoef(fraud_errors, genuine_errors)[0, 1])) < 0.1


def test_known_domain_fresh_noise_and_nothing_outside_the_domain() -> None:
    params = _kd_params(1.0, 2)
    first = release_known_domain({}, SCHEMA, params)
    second = release_known_domain({}, SCHEMA, params)
    assert first.cells != second.cells
    missing_amount = (-1, 0, 0, 0, 0, 0, 0)  # TX_AMOUNT is not nullable in the default schema
    with pytest.raises(ValueError, match="outside the domain"):
        release_known_domain({missing_amount: (1, 0)}, SCHEMA, params)
    legacy = BinSchema(SCHEMA.features, SCHEMA.edges)  # every binned feature nullable
    assert set(release_known_domain({missing_amount: (1, 0)}, legacy, params).cells) == set(
        legacy.domain()
    )


@pytest.mark.parametrize(
    "exact",
    [
        {DOMAIN[0]: (-1, 0)},
        {DOMAIN[0]: (1, -2)},
        {DOMAIN[0]: (1.5, 0)},
        {DOMAIN[0]: (1, 2, 3)},
        {DOMAIN[0]: 5},
        {("a",): (1, 0)},
        [(DOMAIN[0], (1, 0))],
    ],
)
def test_known_domain_invalid_inputs(exact: object) -> None:
    with pytest.raises(ValueError, match="exact"):
        release_known_domain(exact, SCHEMA, _kd_params())  # type: ignore[arg-type]


def test_known_domain_invalid_domains() -> None:
    with pytest.raises(ValueError, match="twice"):
        release_known_domain({}, [(0,), (0,)], _kd_params())
    with pytest.raises(ValueError, match="no cells"):
        release_known_domain({}, [], _kd_params())
    huge = BinSchema.from_edges({f: tuple(range(9)) for f in list(SCHEMA.features)[:6]})
    assert huge.domain_size() > MAX_DOMAIN_CELLS
    with pytest.raises(ValueError, match="threshold"):
        release_known_domain({}, huge, _kd_params())
    with pytest.raises(ValueError, match="params"):
        release_known_domain({}, SCHEMA, {"epsilon": 1.0})  # type: ignore[arg-type]


def test_release_dispatches_on_the_mechanism() -> None:
    exact = {DOMAIN[3]: (100_000, 10)}
    assert release("known_domain", exact, SCHEMA, _kd_params()).kind == "known_domain"
    assert release("threshold", exact, SCHEMA, _kd_params()).kind == "threshold"
    with pytest.raises(ValueError, match="mechanism"):
        release("laplace", exact, SCHEMA, _kd_params())  # type: ignore[arg-type]


def test_config_and_release_agree_on_the_mechanisms() -> None:
    assert get_args(ReleaseMechanism) == get_args(Mechanism) == MECHANISMS
    assert PrivacyConfig().mechanism == "known_domain" == MECHANISMS[0]
