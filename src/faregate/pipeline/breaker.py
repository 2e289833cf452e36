"""A circuit breaker per upstream provider: stop sending to one that keeps failing, probe it later.

    closed ──(breaker_failures consecutive failures)──▶ open ──(breaker_cooldown_s)──▶ half-open
      ▲                                                  ▲                                │
      └────────────────── probe succeeds ────────────────┴───────── probe fails ──────────┘

While open, calls skip the provider at once (their fallback answers, or a 503), instead of each
waiting for a connect timeout and its retries. Half-open lets exactly one request through as a
probe; everyone else keeps skipping until it reports back.

What counts: a failure is a connection error, a timeout, or a 500/502/503/504/529; a success is any
answer that shows the provider up, 4xx included (a 400 or 401 is about the request or the key, and
with pass-through keys one client's bad key must not cut the provider off for everyone). A 429 is a
success here for the same reason: rate limits are per key and per model, and the retry and fallback
logic already handles it per request.

All on one event loop: `allow` and `record` never await, so no lock is needed, but a probe is owned
by the caller that `allow` handed it to, and must be given back (`record` or `release`) even when
that caller is cancelled, or the provider would stay half-open forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from faregate.errors import UpstreamUnavailable

State = Literal["closed", "open", "half_open"]


class CircuitOpen(UpstreamUnavailable):
    """Every upstream that could answer has its circuit open: 503, the client may retry later."""

    status = 503
    kind = "upstream_circuit_open"


class Breaker:
    """The state of one provider. `allow()` → True: send (as the probe, if half-open); then `record`."""

    __slots__ = ("_clock", "_cooldown", "_failures", "_opened_at", "_probing", "_threshold", "state")

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = failures
        self._cooldown = cooldown_s
        self._clock = clock
        self.state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    def allow(self) -> bool:
        """May a request go to this provider now? In half-open state only the first caller may."""
        if self.state == "closed":
            return True
        if self.state == "open":
            if self._clock() - self._opened_at < self._cooldown:
                return False
            self.state = "half_open"
        if self._probing:
            return False
        self._probing = True
        return True

    def record(self, success: bool) -> None:
        """The outcome of a request `allow` let through."""
        if success:
            self._failures = 0
            self._probing = False
            self.state = "closed"
            return
        self._failures += 1
        # A failed probe re-opens; so does reaching the threshold. A late failure of a request sent
        # before the circuit opened does not push the end of an open circuit's cooldown back.
        if self.state == "half_open" or (self.state == "closed" and self._failures >= self._threshold):
            self._open()

    def release(self) -> None:
        """A request let through ended without telling us anything (the client went away): if it was
        the probe, the next caller probes instead."""
        if self.state == "half_open":
            self._probing = False

    def current(self) -> State:
        """The state as a caller would find it now: an open circuit past its cooldown is half-open."""
        if self.state == "open" and self._clock() - self._opened_at >= self._cooldown:
            return "half_open"
        return self.state

    def retry_in(self) -> float:
        """Seconds until an open circuit half-opens (0 when it is not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._cooldown - (self._clock() - self._opened_at))

    def _open(self) -> None:
        self.state = "open"
        self._opened_at = self._clock()
        self._probing = False


class Breakers:
    """One `Breaker` per provider name, created up front (no allocation on the request path)."""

    def __init__(
        self, names: list[str], failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.by_name = {name: Breaker(failures, cooldown_s, clock) for name in names}

    def __getitem__(self, name: str) -> Breaker:
        return self.by_name[name]

    def reset(self) -> None:
        """Close every circuit (an operator who knows the provider is back; tests sharing a gateway)."""
        for breaker in self.by_name.values():
            breaker.record(True)

    def states(self) -> dict[str, State]:
        """Provider → state, for metrics and the admin API."""
        return {name: breaker.current() for name, breaker in self.by_name.items()}
