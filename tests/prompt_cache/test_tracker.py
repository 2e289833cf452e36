"""The tracker: new prefixes per hour, the scan budget, intervals for the TTL, tool order."""

from __future__ import annotations

from faregate.prompt_cache.fingerprint import Fingerprint
from faregate.prompt_cache.tracker import SCANS_PER_HOUR, PrefixTracker, ttl_for_interval

HOUR = 1_700_002_800.0


def print_(system: int, conversation: int | None = None, tools: int = 7) -> Fingerprint:
    """Distinct hashes per part, as BLAKE2b digests of different inputs are."""
    conversation = system + 10_000 if conversation is None else conversation
    return Fingerprint(tools=tools, system=system, conversation=conversation, empty_prefix=False)


def test_a_prefix_is_new_once_per_feature_and_hour() -> None:
    tracker = PrefixTracker()
    assert tracker.observe("a", print_(1), None, HOUR).new_prefix
    assert not tracker.observe("a", print_(1), None, HOUR + 10).new_prefix
    assert tracker.observe("b", print_(1), None, HOUR + 10).new_prefix  # another feature
    assert tracker.observe("a", print_(1), None, HOUR + 3600).new_prefix  # the next hour


def test_scans_stop_at_the_hourly_budget_and_resume_next_hour() -> None:
    tracker = PrefixTracker()
    scans = [tracker.observe("a", print_(i), None, HOUR + i).scan for i in range(SCANS_PER_HOUR + 5)]
    assert scans == [True] * SCANS_PER_HOUR + [False] * 5
    assert tracker.observe("a", print_(10_000), None, HOUR + 3600).scan


def test_intervals_are_smoothed_and_choose_the_ttl() -> None:
    tracker = PrefixTracker()
    seen = [tracker.observe("a", print_(1), None, HOUR + 600 * i).intervals for i in range(4)]
    assert seen[0]["system"] is None
    assert seen[1]["system"] == 600
    assert ttl_for_interval(seen[3]["system"]) == "1h"
    # one short pause does not flip a 10-minute rhythm back to 5 minutes
    quick = tracker.observe("a", print_(1), None, HOUR + 1800 + 30).intervals["system"]
    assert quick is not None and 300 < quick < 600 and ttl_for_interval(quick) == "1h"


def test_ttl_boundaries() -> None:
    assert [ttl_for_interval(s) for s in (None, 5, 300, 301, 3600, 3601)] == [
        "5m",
        "5m",
        "5m",
        "1h",
        "1h",
        "5m",
    ]


def test_tool_order_change_is_the_same_tools_in_another_order() -> None:
    tracker = PrefixTracker()
    assert not tracker.observe("a", print_(1), ("x", "y"), HOUR).tool_order_changed
    assert not tracker.observe("a", print_(1), ("x", "y"), HOUR).tool_order_changed
    assert tracker.observe("a", print_(2), ("y", "x"), HOUR).tool_order_changed
    assert not tracker.observe("a", print_(3), ("y", "z"), HOUR).tool_order_changed  # other tools


def test_memory_is_bounded() -> None:
    tracker = PrefixTracker(max_keys=10)
    for i in range(100):
        tracker.observe(f"f{i}", print_(i, conversation=i, tools=i), (str(i),), HOUR)
    assert len(tracker._intervals) <= 10 and len(tracker._hours) <= 10 and len(tracker._tools) <= 10
