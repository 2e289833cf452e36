import numpy as np
import pytest

from faregate.routing.policy import Policy, calibrate


def test_cheapest_tier_that_clears_its_bar() -> None:
    policy = Policy(("small", "medium", "frontier"), (0.8, 0.7))
    assert policy.decide({"small": 0.9, "medium": 0.95}) == ("small", 0.9, False)
    assert policy.decide({"small": 0.5, "medium": 0.75}) == ("medium", 0.75, False)


def test_frontier_when_nothing_clears_or_unsure() -> None:
    policy = Policy(("small", "frontier"), (0.8,))
    tier, confidence, fallback = policy.decide({"small": 0.6})
    assert (tier, fallback) == ("frontier", True)
    assert confidence == pytest.approx(0.4)
    assert policy.decide(None) == ("frontier", 0.0, True)
    assert policy.decide_index([0.99], unsure=True) == (1, 0.0, True)


def test_policy_needs_a_bar_per_cheaper_tier() -> None:
    with pytest.raises(ValueError, match="one bar per cheaper tier"):
        Policy(("small", "frontier"), (0.5, 0.5))


def _rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 1000
    prob = rng.random((n, 1))
    weak = (rng.random(n) < prob[:, 0]).astype(float)  # calibrated: P(weak right) = prob
    quality = np.column_stack([weak, np.ones(n)])
    cost = np.tile([1.0, 10.0], (n, 1))
    return prob, quality, cost


def test_calibrate_to_a_frontier_share() -> None:
    prob, quality, cost = _rows()
    unsure = np.zeros(len(prob), dtype=bool)
    policy, result = calibrate(["small", "frontier"], prob, quality, cost, unsure, target_frontier_share=0.3)
    assert result.shares[-1] == pytest.approx(0.3, abs=0.002)
    assert policy.bars[0] == pytest.approx(0.3, abs=0.03)


def test_calibrate_to_a_quality_target_is_the_cheapest_that_meets_it() -> None:
    prob, quality, cost = _rows()
    unsure = np.zeros(len(prob), dtype=bool)
    _, result = calibrate(["small", "frontier"], prob, quality, cost, unsure, target_quality=0.9)
    assert result.relative_quality >= 0.9
    _, stricter = calibrate(["small", "frontier"], prob, quality, cost, unsure, target_quality=0.97)
    assert stricter.relative_quality >= 0.97
    assert stricter.relative_cost > result.relative_cost
    # unsure rows always go to the frontier
    unsure[:500] = True
    _, cautious = calibrate(["small", "frontier"], prob, quality, cost, unsure, target_frontier_share=0.0)
    assert cautious.shares[-1] == pytest.approx(0.5)


def test_calibrate_needs_exactly_one_target() -> None:
    prob, quality, cost = _rows()
    unsure = np.zeros(len(prob), dtype=bool)
    with pytest.raises(ValueError, match="exactly one"):
        calibrate(["small", "frontier"], prob, quality, cost, unsure)
