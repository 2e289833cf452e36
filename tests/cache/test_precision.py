"""Verification sampling's decision: tighten a feature's threshold only when its checks show it short.

Simulated checks with a known true precision (seeded), against the tracker the cache stage uses. The
first two tests are the reason the rule acts on the interval's upper bound: acting on the lower one
raised a 98%-precise feature's threshold to the cap within 5,000 checks.
"""

from __future__ import annotations

import random

import pytest

from faregate.cache.precision import (
    MAX_THRESHOLD,
    MIN_SAMPLES,
    STEP,
    PrecisionTracker,
    wilson_lower,
    wilson_upper,
)

CONFIGURED = 0.90
TARGET = 0.97


def checks(tracker: PrecisionTracker, precision: float, n: int, seed: int) -> int | None:
    """Record `n` checks agreeing with probability `precision`; the 1-based check that first tightened."""
    rng = random.Random(seed)
    first = None
    for i in range(n):
        if tracker.record("faq", rng.random() < precision, TARGET) and first is None:
            first = i + 1
    return first


def test_wilson_interval_matches_known_values() -> None:
    assert wilson_lower(8, 10) == pytest.approx(0.4902, abs=1e-4)
    assert wilson_upper(8, 10) == pytest.approx(0.9433, abs=1e-4)
    assert wilson_lower(0, 0) == 0.0 and wilson_upper(0, 0) == 1.0
    assert wilson_upper(100, 100) == 1.0 and wilson_lower(0, 100) == 0.0
    assert wilson_lower(50, 100) == pytest.approx(1 - wilson_upper(50, 100))


@pytest.mark.parametrize("precision", [0.98, 0.99])
def test_a_feature_above_its_target_keeps_its_threshold(precision: float) -> None:
    for seed in range(5):
        tracker = PrecisionTracker()
        checks(tracker, precision, 5000, seed)
        assert tracker.threshold("faq", CONFIGURED) <= CONFIGURED + STEP + 1e-9


@pytest.mark.parametrize(("precision", "within"), [(0.80, 40), (0.90, 120), (0.93, 300)])
def test_a_feature_under_its_target_is_tightened_soon(precision: float, within: int) -> None:
    for seed in range(5):
        tracker = PrecisionTracker()
        first = checks(tracker, precision, within, seed)
        assert first is not None and first >= MIN_SAMPLES
        assert tracker.threshold("faq", CONFIGURED) > CONFIGURED


def test_counting_starts_again_after_a_step_and_stops_at_the_cap() -> None:
    tracker = PrecisionTracker()
    steps = [tracker.record("faq", False, TARGET) for _ in range(2 * MIN_SAMPLES)]
    assert [i + 1 for i, tightened in enumerate(steps) if tightened] == [MIN_SAMPLES, 2 * MIN_SAMPLES]
    assert tracker.threshold("faq", CONFIGURED) == pytest.approx(CONFIGURED + 2 * STEP)
    for _ in range(100 * MIN_SAMPLES):
        tracker.record("faq", False, TARGET)
    assert tracker.threshold("faq", CONFIGURED) == MAX_THRESHOLD
    assert tracker.threshold("other", CONFIGURED) == CONFIGURED  # per feature


def test_a_long_good_history_does_not_hide_a_drift() -> None:
    tracker = PrecisionTracker()
    for _ in range(20_000):
        tracker.record("faq", True, TARGET)
    assert tracker.threshold("faq", CONFIGURED) == CONFIGURED
    drifted = [tracker.record("faq", False, TARGET) for _ in range(200)]
    assert any(drifted[:100])  # old agreements fade; all 20,000 would take 669 failures to outweigh


def test_a_further_tightening_from_elsewhere_is_adopted_and_restarts_the_count() -> None:
    tracker = PrecisionTracker()
    for _ in range(MIN_SAMPLES - 1):
        tracker.record("faq", False, TARGET)
    assert tracker.adopt("faq", 2 * STEP)  # another replica, or the previous run, went further
    assert tracker.threshold("faq", CONFIGURED) == pytest.approx(CONFIGURED + 2 * STEP)
    assert not tracker.record("faq", False, TARGET)  # 19 old checks were at the looser threshold
    assert not tracker.adopt("faq", STEP)  # less than ours: nothing changes
    assert tracker.tightened_by("faq") == pytest.approx(2 * STEP)
