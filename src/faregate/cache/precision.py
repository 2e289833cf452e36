"""Verification sampling: how often semantic hits are right, and the threshold that keeps them right.

A configured fraction of semantic hits is also sent upstream; when the fresh answer agrees with the
cached one (their embeddings are close), the hit counts as correct. Precision is estimated per
feature with a Wilson score lower bound, so a handful of lucky samples cannot look like 99%; when the
bound falls under the feature's target precision, the feature's threshold tightens by one step and
the count starts again (the old samples were taken at the looser threshold).

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
Z_95 = 1.959964  # two-sided 95%


def wilson_lower(successes: int, n: int, z: float = Z_95) -> float:
    """Lower end of the Wilson score interval for a proportion (0 when nothing was observed)."""
    if n <= 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


def samples_needed(target: float) -> int:
    """Verified hits before the bound can judge: the fewest for which a perfect record clears `target`.

    With fewer, even 20 agreements out of 20 give a 95% lower bound of 0.84: acting on it would
    tighten every threshold whose target is above that, whatever the real precision.
    """
    if target >= 1:
        return 1 << 62
    return max(MIN_SAMPLES, math.ceil(target * Z_95 * Z_95 / (1 - target)))


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

    def record(self, feature: str, agreed: bool, target: float) -> None:
        with self._lock:
            state = self._features.setdefault(feature, _Feature())
            state.verified += 1
            state.total_verified += 1
            if agreed:
                state.agreed += 1
                state.total_agreed += 1
            if (
                state.verified >= samples_needed(target)
                and wilson_lower(state.agreed, state.verified) < target
            ):
                state.tightened = round(state.tightened + STEP, 4)
                state.verified = state.agreed = 0

    def tightened_by(self, feature: str) -> float:
        state = self._features.get(feature)
        return 0.0 if state is None else state.tightened
