import numpy as np
import pytest

from faregate.routing.metrics import (
    apgr,
    choose,
    cost_at,
    cost_quality_curve,
    cpt,
    pgr_curve,
)

# Four prompts: the weak model gets two right, the strong model all four.
WEAK = [0.0, 1.0, 0.0, 1.0]
STRONG = [1.0, 1.0, 1.0, 1.0]


def test_perfect_ranking_by_hand() -> None:
    # prompts 0 and 2 first (each recovers half the gap), then 1 and 3 (nothing left to recover):
    # PGR is 0 -> 1 over the first half, then flat at 1: area 0.25 + 0.5
    assert apgr([1, 0, 1, 0], WEAK, STRONG) == pytest.approx(0.75)
    curve = pgr_curve([1, 0, 1, 0], WEAK, STRONG)
    assert curve.share.tolist() == [0.0, 0.5, 1.0]
    assert curve.quality.tolist() == [0.5, 1.0, 1.0]
    assert cpt(curve, 0.5) == pytest.approx(0.25)
    assert cpt(curve, 0.8) == pytest.approx(0.4)


def test_reversed_ranking_by_hand() -> None:
    assert apgr([0, 1, 0, 1], WEAK, STRONG) == pytest.approx(0.25)
    assert cpt(pgr_curve([0, 1, 0, 1], WEAK, STRONG), 0.5) == pytest.approx(0.75)


def test_endpoints_are_always_weak_and_always_strong() -> None:
    rng = np.random.default_rng(0)
    weak = rng.integers(0, 2, 200).astype(float)
    strong = rng.integers(0, 2, 200).astype(float)
    strong[:40] = 1.0
    weak[:40] = 0.0
    curve = pgr_curve(rng.random(200), weak, strong)
    assert curve.share[0] == 0.0 and curve.share[-1] == 1.0
    assert curve.quality[0] == pytest.approx(weak.mean())
    assert curve.quality[-1] == pytest.approx(strong.mean())
    assert curve.pgr[0] == pytest.approx(0.0) and curve.pgr[-1] == pytest.approx(1.0)


def test_constant_score_is_exactly_half_and_random_is_about_half() -> None:
    rng = np.random.default_rng(1)
    weak = rng.integers(0, 2, 2000).astype(float)
    strong = np.maximum(weak, rng.integers(0, 2, 2000))
    assert apgr(np.zeros(2000), weak, strong) == pytest.approx(0.5)
    values = [apgr(rng.random(2000), weak, strong) for _ in range(20)]
    assert np.mean(values) == pytest.approx(0.5, abs=0.02)


def test_oracle_beats_one_when_the_weak_model_is_sometimes_the_only_one_right() -> None:
    weak = np.array([0, 0, 1, 1, 1, 0, 1, 0], dtype=float)
    strong = np.array([1, 1, 1, 0, 1, 0, 1, 1], dtype=float)
    assert apgr(strong - weak, weak, strong) > 1.0


def test_zero_gap_and_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="gap is zero"):
        apgr([0.1, 0.2], [1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="same, non-zero length"):
        apgr([0.1], [1.0, 0.0], [0.0, 1.0])


def test_three_tier_curve_and_cost_at_95() -> None:
    # three rows, tiers cheap/medium/frontier; cheap is right on row 0, medium on rows 0-1
    quality = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1]], dtype=float)
    cost = np.array([[1, 5, 10]] * 3, dtype=float)
    prob = np.array([[0.9, 0.95], [0.2, 0.9], [0.1, 0.2]])
    assert choose(prob, 0.5).tolist() == [0, 1, 2]
    assert choose(prob, 0.5, np.array([True, False, False])).tolist() == [2, 1, 2]
    curve = cost_quality_curve(prob, quality, cost)
    assert curve.frontier_quality == 1.0
    # the perfect policy (bar 0.5): quality 1.0 at (1 + 5 + 10) / 30 of the frontier's cost
    assert cost_at(curve, 0.95) == pytest.approx(16 / 30)
    assert cost_at(curve, 0.0) == pytest.approx(3 / 30)
    assert curve.cost[-1] == pytest.approx(1.0) and curve.quality[-1] == 1.0
