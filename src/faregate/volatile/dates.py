"""Date and time detectors: ``timestamp`` and ``date``, and the patterns they are built from.

Compact forms made of digits only (``20250303``, ``20250303T140533Z``, Unix epochs) are found with the
numbers, in `faregate.volatile.ids`; a weekday or a month and day after a "today" cue, in
`faregate.volatile.cues`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from faregate.volatile.scan import _R_DATE, _R_TIMESTAMP, _Cand, _Scan

# Building blocks. Every pattern below runs on the lower-cased text (same length as the original).

_MONTH = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december"
    r"|(?:jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?)(?![a-z])"
)
_WEEKDAY = (
    r"(?:(?:mon|tues|wednes|thurs|fri|satur|sun)day"
    r"|(?:mon|tues|tue|wed|thurs|thur|thu|fri|sat|sun)\.?)(?![a-z])"
)
_DAY = r"(?:3[01]|[12][0-9]|0?[1-9])(?:st|nd|rd|th)?(?![0-9a-z])"
_YEAR = r"(?:19|20)[0-9]{2}(?![0-9a-z])"
_ISO_DATE = r"(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
_YMD_SLASH = r"(?:19|20)[0-9]{2}/(?:0?[1-9]|1[0-2])/(?:3[01]|[12][0-9]|0?[1-9])"
# Day and month in either order (US or European); the month range is checked in code.
_DMY_SLASH = (
    r"(?:[0-3]?[0-9]/[0-3]?[0-9]/(?:19|20)[0-9]{2}|[0-3][0-9]/[0-3][0-9]/[0-9]{2}"
    r"|[0-3][0-9]\.[0-3][0-9]\.(?:19|20)[0-9]{2})"
)
_MDY = rf"(?:{_WEEKDAY},?\s+)?{_MONTH}\s*{_DAY},?\s+{_YEAR}"
_DMY = (
    rf"(?:{_WEEKDAY},?\s+)?(?:the\s+)?{_DAY}(?:\s+of)?[\s-]+{_MONTH},?[\s-]+"
    rf"(?:{_YEAR}|[0-9]{{2}}(?![0-9a-z]))"
)
_WEEKDAY_MD = rf"{_WEEKDAY},?\s+(?:{_MONTH}\s*{_DAY}|(?:the\s+)?{_DAY}(?:\s+of)?\s+{_MONTH})"
_NAT_DATE = rf"(?:{_MDY}|{_DMY}|{_WEEKDAY_MD})"
_NUM_DATE = rf"(?:{_ISO_DATE}|{_YMD_SLASH}|{_DMY_SLASH})"

_TZ_NAMES = (
    r"(?:utc|gmt|[ecmp][sd]t|ak[sd]t|hst|cet|cest|eet|eest|wet|west|bst|ist|jst|kst|hkt|sgt|aest|aedt)"
)
_TZ = (
    rf"(?:z(?![0-9a-z])|\s*{_TZ_NAMES}(?:\s*[+-][0-9]{{1,2}}(?::?[0-9]{{2}})?)?(?![a-z])"
    r"|\s*[+-](?:0[0-9]|1[0-4]):?[0-5][0-9](?![0-9]))"
)
_AMPM = r"(?:[ap]\.m\.|[ap]\.?m)(?![a-z])"  # "pm", "p.m.", not the full stop in "2 PM."
_CLOCK = rf"(?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]{{1,9}})?)?(?:\s*{_AMPM})?"
_TIME = rf"{_CLOCK}{_TZ}?"

_NOT_AFTER_IDENT = r"(?<![0-9a-z_.-])"  # not glued to an identifier, a version or a decimal

_TIMESTAMP_RE = re.compile(
    rf"""{_NOT_AFTER_IDENT}(?:
        {_ISO_DATE}(?:t|\s+(?:at\s+)?)(?:[01][0-9]|2[0-3]):[0-5][0-9]
            (?::[0-5][0-9](?:[.,][0-9]{{1,9}})?)?(?:\s*{_AMPM})?{_TZ}?
      | {_WEEKDAY}\s+{_MONTH}\s+{_DAY}\s+{_TIME}\s+{_YEAR}
      | (?:{_NAT_DATE}|{_NUM_DATE})(?:,?\s+(?:at\s+)?|\s*@\s*|\s+-\s+){_TIME}
      | {_TIME},?\s+(?:on\s+)?(?:{_NAT_DATE}|{_NUM_DATE})
    )(?![0-9a-z])""",
    re.VERBOSE,
)
_NAT_DATE_RE = re.compile(rf"{_NOT_AFTER_IDENT}{_NAT_DATE}(?![0-9a-z])")
_NUM_DATE_RE = re.compile(rf"{_NUM_DATE}(?![0-9a-z])")
_STANDALONE_TIME_RE = re.compile(
    rf"(?<![0-9a-z:.,/-])(?P<h>[0-9]{{1,2}}):(?P<m>[0-5][0-9])(?P<s>:[0-5][0-9](?:[.,][0-9]{{1,9}})?)?"
    rf"(?P<ap>\s*{_AMPM})?(?:z(?![0-9a-z])|\s*{_TZ_NAMES}(?![a-z]))?(?![0-9a-z]|:[0-9])"
)
_DASH = "(?:-|\u2013|\u2014)"  # hyphen, en dash, em dash
_RANGE_AFTER_RE = re.compile(rf"\s*(?:{_DASH}|to\b|until\b|till\b)\s*[0-9]")
_RANGE_BEFORE_RE = re.compile(  # searched in the 24 characters before a time
    rf"(?:[0-9](?:\s*{_AMPM})?\s*(?:{_DASH}|to)|\b(?:from|between|until|till)"
    r"|\bbetween\s+[0-9][0-9:.apm ]*and)\s*$"
)
_TIME_CUE_RE = re.compile(r"(?:\btime|\bnow|\bclock|\bit is|\bit's)\b[^0-9\n]{0,12}$")
_STATIC_DATE_CUE_RE = re.compile(r"cut-?off|trained|training|released?|effective|version|founded|established")

_NOT_BEFORE_NUMBER = frozenset("abcdefghijklmnopqrstuvwxyz_.,+-$\u20ac\u00a3\u00a5")  # letters _.,+- € £ ¥
_CLOCK_HINT_RE = re.compile(r"[0-9]:[0-5][0-9]")
_NAME_STEM_RE = re.compile("jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun")


def _timestamps(scan: _Scan) -> Iterable[_Cand]:
    """``timestamp``: a point in time precise to the minute or better.

    - ISO 8601 / RFC 3339 date-times: ``2025-03-03T14:05:33.123Z``, ``2025-03-03 14:05``,
      ``2025-03-03 14:05:33+01:00`` (the form of ``str(datetime.now())``); compact ``20250303T140533Z``
      (found with the numbers, see `_numbers`).
    - RFC 2822 / HTTP dates: ``Mon, 03 Mar 2025 14:05:33 GMT``, ``3 Mar 2025 14:05 +0000``, RFC 850
      ``Sunday, 06-Nov-94 08:49:37 GMT``; ``asctime``/``ctime``: ``Mon Mar  3 14:05:33 2025``.
    - Natural language: any flagged date followed by a time (``Monday, March 3, 2025 at 14:05``,
      ``3 March 2025, 2:05 PM``, ``03/03/2025 14:05``) or a time followed by a date
      (``14:05 on 3 March 2025``).
    - A time of day on its own: ``14:05:33`` (always), ``14:05`` (two-digit hour) and ``2:05 PM``, with
      an optional named zone; skipped on the hour without seconds ("at 9:00 AM") and in ranges
      ("09:00-17:00", "from 9:30"): those are schedules in the instructions. After a clock cue
      ("time", "now", "it is" up to 12 characters before: "Current time: 9:00", "It is 3:05") any
      valid time is flagged, on the hour or not, except in a range.
    - Unix epochs: 10 digits (seconds) or 13 digits (milliseconds) from 2000 to 2100, and 14-digit
      ``YYYYMMDDhhmmss``; see `_numbers`.
    """
    lo = scan.lo
    for start, end, region in scan.regions:
        if ":" not in region or _CLOCK_HINT_RE.search(region) is None:
            continue  # every form below contains a time of day
        for m in _TIMESTAMP_RE.finditer(lo, start, end):
            yield (_R_TIMESTAMP, m.start(), m.end(), "timestamp")
        for m in _STANDALONE_TIME_RE.finditer(lo, start, end):
            hour, has_seconds, has_ampm = m["h"], m["s"] is not None, m["ap"] is not None
            line_start = lo.rfind("\n", 0, m.start()) + 1
            before = max(line_start, m.start() - 24)
            if (has_ampm and not 1 <= int(hour) <= 12) or int(hour) > 23:
                continue
            if _TIME_CUE_RE.search(lo, before, m.start()) is None:  # "Current time: 9:00" is a clock
                if not has_ampm and len(hour) != 2:
                    continue  # "3:16", "2:1": verses, ratios, scores
                if not has_seconds and m["m"] == "00":
                    continue  # "at 9:00 AM": a schedule in the instructions
            if _RANGE_AFTER_RE.match(lo, m.end()) or _RANGE_BEFORE_RE.search(lo, before, m.start()):
                continue
            yield (_R_TIMESTAMP, m.start(), m.end(), "timestamp")


def _valid_day_month(a: int, b: int) -> bool:
    return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31)


def _static_date_context(lo: str, start: int) -> bool:
    line_start = lo.rfind("\n", 0, start) + 1
    return _STATIC_DATE_CUE_RE.search(lo, max(line_start, start - 40), start) is not None


def _dates(scan: _Scan) -> Iterable[_Cand]:
    """``date``: a calendar date that names a day.

    - ISO ``2025-03-03``; ``2025/03/03``; ``03/03/2025`` and ``3/3/2025`` (US or European order: one of
      the first two parts must be a month); ``03/03/25`` (both parts two digits); ``03.03.2025``.
    - Natural language with a year: ``March 3, 2025``, ``March 3rd, 2025``, ``Mar. 3 2025``,
      ``3 March 2025``, ``the 3rd of March, 2025``, ``03-Mar-2025``, each with an optional weekday.
    - A weekday with month and day and no year: ``Monday, March 3``, ``Monday 3rd March``.
    - After a "today" cue (``Today is``, ``Current date:``, ``Today's date is``): a weekday alone
      (``Today is Monday``) or a month and day without a year; see `_cues`.
    - Compact ``YYYYMMDD`` (8 digits, a valid date from 1900 to 2099); see `_numbers`.

    Skipped: dates without a day, dates glued to an identifier (``gpt-4o-2024-08-06``) and dates after
    a static cue on the same line ("knowledge cutoff", "released", ...).
    """
    lo, n = scan.lo, scan.n
    for s, e in scan.runs:  # numeric dates start with a run of 1, 2 or 4 digits and a separator
        if e + 1 >= n or lo[e] not in "-/." or e - s == 3 or e - s > 4 or not lo[e + 1].isdigit():
            continue
        if s > 0 and lo[s - 1] in _NOT_BEFORE_NUMBER:
            continue  # glued to an identifier or a version
        m = _NUM_DATE_RE.match(lo, s)
        if m is None:
            continue
        text = m.group()
        if "-" not in text:
            parts = re.split(r"[/.]", text)
            if len(parts[0]) != 4 and not _valid_day_month(int(parts[0]), int(parts[1])):
                continue
        if not _static_date_context(lo, s):
            yield (_R_DATE, s, m.end(), "date")
    for start, end, region in scan.regions:
        if _NAME_STEM_RE.search(region) is None:
            continue  # every natural-language date names a month or a weekday
        for m in _NAT_DATE_RE.finditer(lo, start, end):
            if not _static_date_context(lo, m.start()):
                yield (_R_DATE, m.start(), m.end(), "date")
