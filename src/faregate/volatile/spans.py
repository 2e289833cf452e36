"""The public API: `KINDS`, `VolatileSpan`, `find_volatile_spans` and `stable_skeleton`.

`find_volatile_spans` runs every detector and resolves overlaps: the candidate with the lower rank
(`faregate.volatile.scan`) wins, then the longer one; see the `faregate.volatile` docstring.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from faregate.volatile.counters import _counters
from faregate.volatile.cues import _cues
from faregate.volatile.dates import _dates, _timestamps
from faregate.volatile.ids import _ids, _numbers
from faregate.volatile.scan import _Cand, _Scan
from faregate.volatile.unsorted_json import _unsorted_json

KINDS = ("timestamp", "date", "uuid", "request_id", "long_number", "counter", "unsorted_json", "user_id")


@dataclass(frozen=True, slots=True)
class VolatileSpan:
    """One volatile span: ``text == source[start:end]``."""

    kind: str
    text: str
    start: int
    end: int


_NUMERIC_KINDS = frozenset({"timestamp", "date", "long_number"})
_DETECTORS: tuple[Callable[[_Scan], Iterable[_Cand]], ...] = (
    _cues,
    _timestamps,
    _dates,
    _numbers,
    _ids,
    _counters,
)


def find_volatile_spans(text: str) -> list[VolatileSpan]:
    """The volatile spans of ``text``, sorted by start and non-overlapping (see the package docstring)."""
    if not text:
        return []
    candidates: list[_Cand] = list(_unsorted_json(text))
    scan = _Scan(text)
    for detector in _DETECTORS:
        candidates.extend(detector(scan))
    if not candidates:
        return []
    candidates.sort(key=lambda c: (c[0], c[1] - c[2], c[1]))
    starts: list[int] = []
    ends: list[int] = []
    kinds: list[str] = []
    for _, s, e, kind in candidates:
        i = bisect_left(starts, s)
        if (i > 0 and ends[i - 1] > s) or (i < len(starts) and starts[i] < e):
            continue
        starts.insert(i, s)
        ends.insert(i, e)
        kinds.insert(i, kind)
    return [VolatileSpan(k, text[s:e], s, e) for s, e, k in zip(starts, ends, kinds, strict=True)]


def stable_skeleton(text: str) -> str:
    """``text`` with each volatile span replaced by ``⟨kind⟩``.

    Two prompts that differ only in their volatile spans have the same skeleton, so grouping prompts by
    skeleton shows which of them would share a cacheable prefix once those spans are moved or removed.
    A bare run of digits found as a ``timestamp``, ``date`` or ``long_number`` becomes ``⟨number⟩``:
    its kind depends on its value (1741010733 is an epoch, 5741010733 is not; 20250303 is a date,
    20251399 is not), and one template slot must give one placeholder.
    """
    spans = find_volatile_spans(text)
    if not spans:
        return text
    parts: list[str] = []
    pos = 0
    for span in spans:
        parts.append(text[pos : span.start])
        if span.kind in _NUMERIC_KINDS and span.text.isdigit():
            parts.append("⟨number⟩")
        else:
            parts.append(f"⟨{span.kind}⟩")
        pos = span.end
    parts.append(text[pos:])
    return "".join(parts)
