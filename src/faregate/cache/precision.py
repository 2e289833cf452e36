"""Verification sampling: how often semantic hits are right, and the threshold that keeps them right.

A configured fraction of semantic hits is also sent upstream; when the fresh answer agrees with the
cached one (their embeddings are close), the hit counts as correct. Precision is estimated per
feature with a 95% Wilson score interval. The threshold tightens by one step when the interval's
*upper* bound falls under the feature's target precision, that is when the checks show the precision
short of the target, and the count starts again (the old samples were taken at the looser threshold).

Why not the lower bound: it sits under the target whenever the checks are too few to prove the
target met, and a window that restarts after each step never grows enough to prove it. Acting on it
raised every feature's threshold to the cap in the long run, however precise: simulated, a feature at
98% precision against a 97% target went from 0.90 to 0.99 in 5,000 checks (ending its hits), while
the upper bound leaves it at 0.90 (median of 20 seeded runs; 0.91 at worst) and still tightens a
feature at 80% after ~20 checks, at 93% after ~50 and at 95% after ~120. Old checks fade
(`WINDOW`), so a feature that was right for weeks and then drifts is caught within a window's worth
of checks, not diluted by its history. The cache store keeps each feature's tightening
(`cache_thresholds`), so replicas on one database adopt each other's and a restart keeps it.

`DEFAULT_THRESHOLD` was chosen on development data only, by bench/semantic_cache_quality.py (the
stream protocol of `faregate cache eval`, guards on): the lowest threshold of a 0.01-step sweep whose
hits met the 0.97 precision target on both banking77 (train split: 80% warms the cache, the held-out
20% is streamed) and CLINC150 (train warms, validation is streamed), and still did two steps higher.
It is a starting point, not a promise: on the test splits it measured 96.6% on banking77, whose
neighbouring intents overlap (docs/semantic-cache.md, "Measured quality"); verification sampling
tightens it per feature where live precision falls short.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

DEFAULT_THRESHOLD = 0.90
ANSWER_AGREEMENT = 0.80  # cosine between the cached and the fresh answer that counts as "the same answer"
STEP = 0.01  # how much a failing bound tightens the threshold
MAX_THRESHOLD = 0.99
MIN_SAMPLES = 20  # never act on fewer verified hits than this
WINDOW = 2000  # past this many checks since the last step, the counts are halved: old ones fade
Z_95 = 1.959964  # two-sided 95%


def wilson_lower(successes: int, n: int, z: float = Z_95) -> float:
    """Lower end of the Wilson score interval for a proportion (0 when nothing was observed)."""
    if n <= 0:
        return 0.0
    centre, margin = _wilson(successes, n, z)
    return max(0.0, centre - margin)


def wilson_upper(successes: int, n: int, z: float = Z_95) -> float:
    """Upper end of the Wilson score interval for a proportion (1 when nothing was observed)."""
    if n <= 0:
        return 1.0
    centre, margin = _wilson(successes, n, z)
    return min(1.0, centre + margin)


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    p = successes / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    return centre, margin


def shown_short(agreed: int, verified: int, target: float) -> bool:
    """Whether the checks show precision under `target`: enough of them, and the upper bound below it."""
    return verified >= MIN_SAMPLES and wilson_upper(agreed, verified) < target


@dataclass(slots=True)
class _Feature:
    verified: int = 0
    agreed: int = 0
    tightened: float = 0.0  # added to the configured threshold
    total_verified: int = 0  # across tightenings, for stats
    total_agreed: int = 0


class PrecisionTracker:
    """Per-feature verification counts and threshold adjustments, in memory (per replica).

    The ledger keeps every verification (`cache_status = "verify"`, `cache_verified`), so
    `faregate cache stats` reports the estimate over all replicas; this tracker only steers the
    threshold of the replica it lives in.
    """

    def __init__(self) -> None:
        self._features: dict[str, _Feature] = {}
        self._lock = threading.Lock()

    def threshold(self, feature: str, configured: float) -> float:
        state = self._features.get(feature)
        return configured if state is None else min(MAX_THRESHOLD, configured + state.tightened)

    def record(self, feature: str, agreed: bool, target: float) -> bool:
        """Count one check; True when it tightened the feature's threshold."""
        with self._lock:
            state = self._features.setdefault(feature, _Feature())
            state.verified += 1
            state.total_verified += 1
            if agreed:
                state.agreed += 1
                state.total_agreed += 1
            if shown_short(state.agreed, state.verified, target):
                state.tightened = round(state.tightened + STEP, 4)
                state.verified = state.agreed = 0
                return True
            if state.verified >= WINDOW:
                state.verified //= 2
                state.agreed //= 2
            return False

    def adopt(self, feature: str, tightened: float) -> bool:
        """Take another replica's (or an earlier run's) tightening when it goes further than ours.

        The counts restart, as after a step of our own: they were taken at the looser threshold.
        """
        with self._lock:
            state = self._features.setdefault(feature, _Feature())
            if tightened <= state.tightened:
                return False
            state.tightened = round(tightened, 4)
            state.verified = state.agreed = 0
            return True

    def tightened_by(self, feature: str) -> float:
        state = self._features.get(feature)
        return 0.0 if state is None else state.tightened
