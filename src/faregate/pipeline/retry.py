"""When the upstream stage tries again, and how long it waits first.

Kept apart from the stage so the rules (which statuses, full-jitter backoff, `Retry-After`) can be
tested without a network, and read in one place:

- Retried: 408, 409, 429, 500, 502, 503, 504, 529 (Anthropic's "overloaded") and connection errors
  or timeouts, as the official SDKs do. Any other status is the client's problem (a 400 fails the
  same way every time) and goes straight back.
- The wait is full-jitter exponential backoff, `uniform(0, min(max, initial * 2**n))` for the n-th
  retry: spread-out retries do not hit a recovering provider in lock-step (AWS Architecture Blog,
  "Exponential Backoff And Jitter").
- A provider's `Retry-After` (seconds or an HTTP date) or `retry-after-ms` wins over the backoff; one
  longer than `retry_after_max_s` is not waited for: that upstream is given up (fallback or error).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

from faregate.config import UpstreamSettings

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# Statuses that say the upstream itself is in trouble (the circuit breaker counts these); a 429 or a
# 4xx says the upstream is up and answering, about this request or this key.
FAILURE_STATUSES = frozenset({500, 502, 503, 504, 529})


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the provider asks us to wait, from `retry-after-ms` or `retry-after`; None if absent
    or unreadable. `Retry-After` is delta-seconds or an HTTP date (RFC 9110 10.2.3); OpenAI also
    sends `retry-after-ms`, which is more precise and wins when both are present."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RetryPolicy:
    """The waits between attempts on one upstream; `random` is injectable for tests."""

    def __init__(self, settings: UpstreamSettings, random: Callable[[], float] = random.random) -> None:
        self.retries = settings.retries
        self.initial = settings.backoff_initial_s
        self.maximum = settings.backoff_max_s
        self.retry_after_max = settings.retry_after_max_s
        self._random = random

    def backoff(self, retry: int) -> float:
        """Full-jitter wait before retry number `retry` (0 for the first retry)."""
        ceiling = min(self.maximum, self.initial * (2 ** min(retry, 62)))
        return float(self._random() * ceiling)

    def delay(self, retry: int, headers: Mapping[str, str] | None) -> float | None:
        """How long to wait before retry number `retry`, or None: do not retry this upstream.

        The provider's own `Retry-After` wins over the backoff; one longer than `retry_after_max_s`
        means waiting would cost the client more than a fallback or an error now.
        """
        if retry >= self.retries:
            return None
        if headers is not None:
            asked = retry_after_s(headers)
            if asked is not None:
                return asked if asked <= self.retry_after_max else None
        return self.backoff(retry)
