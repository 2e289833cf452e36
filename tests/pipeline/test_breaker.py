"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

from faregate.pipeline.breaker import Breaker, Breakers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failing(breaker: Breaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record(False)


def test_opens_after_n_consecutive_failures() -> None:
    clock = Clock()
    breaker = Breaker(failures=3, cooldown_s=10, clock=clock)
    failing(breaker, 2)
    assert breaker.state == "closed" and breaker.allow()
    breaker.record(False)
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.retry_in() == 10


def test_a_success_resets_the_count() -> None:
    breaker = Breaker(failures=3, cooldown_s=10, clock=Clock())
    failing(breaker, 2)
    assert breaker.allow()
    breaker.record(True)
    failing(breaker, 2)
    assert breaker.state == "closed"


def test_half_open_lets_exactly_one_probe_through() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, cooldown_s=10, clock=clock)
    failing(breaker, 1)
    clock.now += 9.9
    assert not breaker.allow() and breaker.current() == "open"
    clock.now += 0.1
    assert breaker.current() == "half_open"
    assert breaker.allow()  # the probe
    assert [breaker.allow() for _ in range(5)] == [False] * 5  # everyone else waits for it
    assert breaker.state == "half_open"


def test_probe_success_closes() -> None:
    clock = Clock()
    breaker = Breaker(failures=2, cooldown_s=5, clock=clock)
    failing(breaker, 2)
    clock.now += 5
    assert breaker.allow()
    breaker.record(True)
    assert breaker.state == "closed"
    assert all(breaker.allow() for _ in range(3))
    failing(breaker, 1)
    assert breaker.state == "closed"  # the count started over


def test_probe_failure_reopens_for_a_new_cooldown() -> None:
    clock = Clock()
    breaker = Breaker(failures=2, cooldown_s=5, clock=clock)
    failing(breaker, 2)
    clock.now += 6
    assert breaker.allow()
    breaker.record(False)
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.retry_in() == 5
    clock.now += 5
    assert breaker.allow()  # the next probe


def test_a_probe_given_back_lets_the_next_caller_probe() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, cooldown_s=1, clock=clock)
    failing(breaker, 1)
    clock.now += 1
    assert breaker.allow()
    assert not breaker.allow()
    breaker.release()  # the probing client went away
    assert breaker.allow()


def test_late_failures_do_not_extend_the_cooldown() -> None:
    """Requests sent before the circuit opened may fail after: the cooldown still ends on time."""
    clock = Clock()
    breaker = Breaker(failures=2, cooldown_s=10, clock=clock)
    assert all(breaker.allow() for _ in range(4))  # four in flight
    breaker.record(False)
    breaker.record(False)
    assert breaker.state == "open"
    clock.now += 8
    breaker.record(False)
    breaker.record(False)
    clock.now += 2
    assert breaker.allow()


def test_release_while_closed_changes_nothing() -> None:
    breaker = Breaker(failures=1, cooldown_s=1, clock=Clock())
    assert breaker.allow()
    breaker.release()
    assert breaker.state == "closed" and breaker.allow()


def test_breakers_per_provider_and_reset() -> None:
    clock = Clock()
    breakers = Breakers(["a", "b"], failures=1, cooldown_s=10, clock=clock)
    failing(breakers["a"], 1)
    assert breakers.states() == {"a": "open", "b": "closed"}
    clock.now += 10
    assert breakers.states() == {"a": "half_open", "b": "closed"}
    breakers.reset()
    assert breakers.states() == {"a": "closed", "b": "closed"}
