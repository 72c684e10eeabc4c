"""`fraudscreen bench --front`: size against AP and native cost; the choice rule."""

from __future__ import annotations

import datetime as dt

import pytest

from fraudscreen.features.batch import compute_features
from fraudscreen.history import validate_history
from fraudscreen.model.front import FrontPoint, choose, format_front, size_front
from fraudscreen.model.train import TrainingConfig
from fraudscreen.simulate import SimulationConfig, simulate


def _point(leaves: int, trees: int, ap: float) -> FrontPoint:
    return FrontPoint(leaves, trees, ap, ap, 0.9, 0.3, 1.0)


def test_choice_is_the_smallest_model_within_the_tolerance_of_the_best() -> None:
    points = [_point(7, 300, 0.760), _point(15, 240, 0.766), _point(31, 143, 0.769)]
    # sizes 2,100 / 3,600 / 4,433; best 0.769: 0.766 is within 0.005, 0.760 is not
    assert choose(points) == points[1]
    assert choose(points, tolerance=0.01) == points[0]
    assert choose(points, tolerance=0.0) == points[2]
    assert "| 15 **chosen** | 240 | 3,600 |" in format_front(points, choose(points))


@pytest.mark.slow
def test_front_trains_compiles_and_times_each_leaf_budget() -> None:
    frame = validate_history(
        simulate(SimulationConfig(customers=600, terminals=1200, days=140), progress=False)
    )
    config = TrainingConfig(max_trees=40, early_stopping_rounds=10, min_data_in_leaf=20)
    assert config.train_end == dt.date(2018, 8, 1)
    points = size_front(frame, compute_features(frame), config, leaves=(3, 8), rows=200)
    assert [p.num_leaves for p in points] == [3, 8]
    for p in points:
        assert 1 <= p.trees <= 40
        assert 0 < p.validation_ap <= 1 and 0 < p.test_ap <= 1
        assert p.native_us > 0
