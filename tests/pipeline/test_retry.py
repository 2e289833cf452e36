"""The retry policy: which waits, within which bounds, and when the provider's Retry-After wins."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from faregate.config import UpstreamSettings
from faregate.pipeline.retry import FAILURE_STATUSES, RETRY_STATUSES, RetryPolicy, retry_after_s


def policy(rnd: float | None = None, **settings: float) -> RetryPolicy:
    source = (lambda: rnd) if rnd is not None else random.Random(7).random
    return RetryPolicy(UpstreamSettings.model_validate(settings), source)


def test_statuses_retried_and_counted_as_failures() -> None:
    assert {429, 500, 502, 503, 504, 529} <= RETRY_STATUSES
    assert not {400, 401, 403, 404, 413, 422} & RETRY_STATUSES
    assert 429 not in FAILURE_STATUSES and FAILURE_STATUSES <= RETRY_STATUSES


def test_backoff_ceiling_doubles_up_to_the_max() -> None:
    top = policy(rnd=1.0 - 1e-12, backoff_initial_s=0.2, backoff_max_s=1.0, retries=10)
    ceilings = [round(top.backoff(n), 6) for n in range(5)]
    assert ceilings == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy(rnd=0.0).backoff(3) == 0.0  # full jitter: anywhere from zero


def test_backoff_is_jittered_within_bounds() -> None:
    p = policy(backoff_initial_s=0.5, backoff_max_s=8.0, retries=10)
    for n in range(6):
        waits = [p.backoff(n) for _ in range(400)]
        ceiling = min(8.0, 0.5 * 2**n)
        assert all(0 <= w <= ceiling for w in waits)
        assert len({round(w, 9) for w in waits}) > 300  # spread out, not one value
        assert max(waits) > 0.9 * ceiling and min(waits) < 0.1 * ceiling


def test_huge_retry_numbers_do_not_overflow() -> None:
    assert policy(rnd=0.5, backoff_max_s=3.0, retries=10).backoff(10_000) == 1.5


def test_delay_stops_after_the_configured_retries() -> None:
    p = policy(rnd=0.5, retries=2)
    assert p.delay(0, None) is not None and p.delay(1, None) is not None
    assert p.delay(2, None) is None
    assert policy(retries=0).delay(0, {}) is None


def test_retry_after_seconds_wins_over_backoff() -> None:
    p = policy(rnd=0.0, retries=2, retry_after_max_s=20)
    assert p.delay(0, {"retry-after": "3"}) == 3.0
    assert p.delay(0, {"retry-after": "0.5"}) == 0.5
    assert p.delay(0, {}) == 0.0  # no header: the (jittered) backoff


def test_retry_after_longer_than_the_max_gives_up() -> None:
    p = policy(retries=2, retry_after_max_s=20)
    assert p.delay(0, {"retry-after": "21"}) is None
    assert p.delay(0, {"retry-after": "20"}) == 20.0
    assert p.delay(0, {"retry-after-ms": "25000"}) is None


def test_retry_after_ms_is_more_precise_and_wins() -> None:
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5
    assert retry_after_s({"retry-after-ms": "junk", "retry-after": "2"}) == 2.0


def test_retry_after_http_date() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert later.endswith("GMT")
    assert retry_after_s({"retry-after": later}, now=now.timestamp()) == pytest.approx(7.0)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert retry_after_s({"retry-after": earlier}, now=now.timestamp()) == 0.0


@pytest.mark.parametrize("raw", ["", "soon", "-1", "nan", "inf", "Tue, 99 Foo 2026 00:00:00 GMT"])
def test_unreadable_retry_after_is_ignored(raw: str) -> None:
    assert retry_after_s({"retry-after": raw}) is None
    assert policy(rnd=0.5, backoff_initial_s=1.0).delay(0, {"retry-after": raw}) == 0.5


def test_no_retry_after_header() -> None:
    assert retry_after_s({}) is None
