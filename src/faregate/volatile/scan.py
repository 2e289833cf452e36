"""The scan: everything the detectors share, computed once per text, and the candidates they yield.

A detector takes a `_Scan` and yields candidates ``(rank, start, end, kind)``; `find_volatile_spans`
(in `faregate.volatile.spans`) keeps the best non-overlapping ones.
"""

from __future__ import annotations

import re

# Detector ranks: lower wins when candidates overlap.
_R_JSON, _R_TIMESTAMP, _R_DATE, _R_UUID, _R_SLOT, _R_TOKEN, _R_NUMBER, _R_COUNTER, _R_NAME = range(9)

# A candidate: (rank, start, end, kind).
_Cand = tuple[int, int, int, str]

_DIGIT_RUN_RE = re.compile(r"[0-9]+")
_WIDE_TOKEN_RE = re.compile(r"[0-9a-z_-]*")

_PAD_BEFORE = 32  # "Wednesday, September " before the first digit of a date
_PAD_AFTER = 16  # " PM", " GMT+01:00", "th, " after a digit
_MAX_DIGIT_FINDS = 64  # above this many digits, one regex pass finds the runs faster than str.find


class _Scan:
    """The text, its lower-cased and reversed forms, its digit runs and the windows around them.

    Most kinds contain digits, so the digit-driven detectors look only at runs of digits (numbers,
    counters, ids, numeric dates: anchored matches) or at small windows around the runs that can be
    part of a time or a natural-language date (`_is_anchor`; regex scans, each gated by a cheap
    substring test). Prose with a few numbers costs a few windows, not a scan of the text per pattern.
    """

    __slots__ = ("lo", "n", "regions", "rev", "runs", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        lo = text.lower()
        if len(lo) != len(text):  # a few characters ("İ") lower to two code points; keep offsets aligned
            lo = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
        self.lo = lo
        self.rev = lo[::-1]
        self.n = n = len(lo)
        self.runs = runs = _digit_runs(lo)
        clusters: list[tuple[int, int]] = []
        for a, b in runs:
            if not _is_anchor(lo, a, b):
                continue
            if clusters and a - clusters[-1][1] <= _PAD_BEFORE + _PAD_AFTER:
                clusters[-1] = (clusters[-1][0], b)
            else:
                clusters.append((a, b))
        self.regions: list[tuple[int, int, str]] = []
        for a, b in clusters:
            start, end = self._widen(max(0, a - _PAD_BEFORE), min(n, b + _PAD_AFTER))
            if self.regions and start <= self.regions[-1][1]:
                start = self.regions.pop()[0]
            self.regions.append((start, end, lo[start:end]))

    def _widen(self, start: int, end: int) -> tuple[int, int]:
        """Move a window's edges out to the nearest whitespace (up to 32 characters): an edge inside a
        word would hide "Wednesday" or an id."""
        lo = self.lo
        if start > 0 and not lo[start - 1].isspace():
            space = max(lo.rfind(" ", max(0, start - 32), start), lo.rfind("\n", max(0, start - 32), start))
            start = space + 1 if space >= 0 else max(0, start - 32)
        if end < self.n and not lo[end].isspace():
            space = lo.find(" ", end, end + 32)
            end = space if space >= 0 else min(self.n, end + 32)
        return start, end

    def token_start(self, pos: int) -> int:
        """Where the run of ``[0-9a-z_-]`` that ends at ``pos`` starts."""
        m = _WIDE_TOKEN_RE.match(self.rev, self.n - pos)
        return pos - (m.end() - m.start()) if m else pos

    def token_end(self, pos: int) -> int:
        """Where the run of ``[0-9a-z_-]`` that starts at ``pos`` ends."""
        m = _WIDE_TOKEN_RE.match(self.lo, pos)
        return m.end() if m else pos


def _is_anchor(lo: str, s: int, e: int) -> bool:
    """Whether the digit run ``lo[s:e]`` can be part of a time or a natural-language date.

    Only these runs open a window for the regex-scanned detectors: one next to ``:`` (a time), a year
    from 1900 to 2099, or a day of one or two digits beside a word ("March 3", "3 March", "3rd",
    "03-Mar"). List numbers, prices and quantities ("17.", "$500", "200 words") do not.
    """
    before = lo[s - 1] if s > 0 else ""
    after = lo[e : e + 2]
    if before == ":" or after[:1] == ":":
        return True
    if e - s == 4:
        return lo[s : s + 2] in ("19", "20")
    if e - s > 2:
        return False
    return (
        (before == " " and lo[max(0, s - 4) : s].rstrip()[-1:].isalpha())  # "Mar  3": ctime pads
        or (after[:1] in (" ", ",", "-") and lo[e + 1 : e + 2].isalpha())
        or after in ("st", "nd", "rd", "th")
    )


def _digit_runs(lo: str) -> list[tuple[int, int]]:
    # str.find is a vectorised search: with few digits, ten of them beat a regex pass over the text
    positions: list[int] = []
    for d in "0123456789":
        i = lo.find(d)
        while i >= 0:
            positions.append(i)
            if len(positions) > _MAX_DIGIT_FINDS:
                return [m.span() for m in _DIGIT_RUN_RE.finditer(lo)]
            i = lo.find(d, i + 1)
    if not positions:
        return []
    positions.sort()
    runs: list[tuple[int, int]] = []
    start = prev = positions[0]
    for p in positions[1:]:
        if p != prev + 1:
            runs.append((start, prev + 1))
            start = p
        prev = p
    runs.append((start, prev + 1))
    return runs
