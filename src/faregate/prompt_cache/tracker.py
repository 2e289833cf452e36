"""What the gateway remembers about prefixes between requests, in memory, per replica.

Three things need memory across requests:

- **TTL choice**: the interval between requests sharing a prefix. A 5-minute cache entry is refreshed
  on every hit, so a prefix reused every few minutes stays warm; one reused every 10-50 minutes
  misses every time with 5 minutes and hits with 1 hour (written at 2x instead of 1.25x the input
  price, read at 0.1x). The interval is smoothed (EWMA) so one odd pause does not flip the TTL.
- **Scan budget**: finding volatile spans costs ~0.1-1.5 ms for a long prompt, so a feature's
  prefix is scanned when it is new this hour, at most `SCANS_PER_HOUR` times per feature and hour
  (a prompt with a timestamp is new on every request; its first scans already say why).
- **Tool order**: the same tools sent in a different order break the cache just like a changed
  prompt; it shows only by comparing with the feature's previous request.

Prefix churn itself is counted from the ledger (`prefix_hash` per request), which every replica
writes; nothing here needs to be shared. Memory is bounded: each map is cleared when it fills.
"""

from __future__ import annotations

from dataclasses import dataclass

from faregate.prompt_cache.breakpoints import Position, Ttl
from faregate.prompt_cache.fingerprint import Fingerprint

SCANS_PER_HOUR = 32
MAX_KEYS = 100_000
ONE_HOUR_MIN_S = 300.0  # beyond the 5-minute TTL ...
ONE_HOUR_MAX_S = 3600.0  # ... and within the 1-hour one
_SMOOTHING = 0.3


@dataclass(slots=True)
class _Interval:
    last_seen: float
    mean: float | None = None


@dataclass(slots=True)
class _FeatureHour:
    hour: int
    prefixes: set[int]
    scans: int = 0


@dataclass(frozen=True, slots=True)
class Observation:
    """One request as the tracker saw it."""

    new_prefix: bool  # first request of this feature with this tools + system prefix this hour
    scan: bool  # look for volatile spans in this request's prefix (within the budget)
    tool_order_changed: bool  # same tools as the feature's previous request, in another order
    intervals: dict[Position, float | None]  # smoothed seconds between requests sharing each prefix


class PrefixTracker:
    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._intervals: dict[int, _Interval] = {}
        self._hours: dict[str, _FeatureHour] = {}
        self._tools: dict[str, tuple[str, ...]] = {}

    def observe(
        self, feature: str, print_: Fingerprint, tool_names: tuple[str, ...] | None, now: float
    ) -> Observation:
        hour = int(now // 3600)
        state = self._hours.get(feature)
        if state is None or state.hour != hour:
            if state is None and len(self._hours) >= self.max_keys:
                self._hours.clear()
            state = self._hours[feature] = _FeatureHour(hour, set())
        new_prefix = print_.system not in state.prefixes
        scan = False
        if new_prefix:
            if len(state.prefixes) < self.max_keys:
                state.prefixes.add(print_.system)
            if state.scans < SCANS_PER_HOUR:
                state.scans += 1
                scan = True
        intervals: dict[Position, float | None] = {
            "tools": self._interval(print_.tools, now) if print_.tools else None,
            "system": self._interval(print_.system, now),
            "history": self._interval(print_.conversation, now),
        }
        return Observation(new_prefix, scan, self._tool_order_changed(feature, tool_names), intervals)

    def _interval(self, key: int, now: float) -> float | None:
        entry = self._intervals.get(key)
        if entry is None:
            if len(self._intervals) >= self.max_keys:
                self._intervals.clear()
            self._intervals[key] = _Interval(now)
            return None
        gap = max(0.0, now - entry.last_seen)
        entry.last_seen = now
        entry.mean = gap if entry.mean is None else entry.mean + _SMOOTHING * (gap - entry.mean)
        return entry.mean

    def _tool_order_changed(self, feature: str, names: tuple[str, ...] | None) -> bool:
        if not names:
            return False
        previous = self._tools.get(feature)
        if previous is None and len(self._tools) >= self.max_keys:
            self._tools.clear()
        self._tools[feature] = names
        return previous is not None and previous != names and sorted(previous) == sorted(names)


def ttl_for_interval(interval: float | None) -> Ttl:
    """1h when requests sharing the prefix come 5 to 60 minutes apart; otherwise the 5m default."""
    if interval is not None and ONE_HOUR_MIN_S < interval <= ONE_HOUR_MAX_S:
        return "1h"
    return "5m"
