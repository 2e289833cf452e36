"""Volatile spans: the parts of a prompt prefix that change from one request to the next.

Provider prompt caching bills a repeated prefix at about a tenth of the input price, but only when the
prefix is byte-identical. One timestamp, request id or user name near the top of a system prompt makes
every request a cache miss. `find_volatile_spans` finds such spans; `stable_skeleton` replaces them with
placeholders, so two prompts that differ only in volatile spans get the same skeleton (the offline
analyzer groups prompts by skeleton to measure "prefix stability").

Kinds (`KINDS`; each detector function below documents its rules precisely):

``timestamp``      a date with a time of day, a time of day on its own, or a Unix epoch.
``date``           a calendar date that names a day (year-month alone is not flagged).
``uuid``           an RFC 4122-shaped UUID, hyphenated or 32 hex digits.
``request_id``     request/trace/session/tool-call ids: prefixed ids, labelled id slots, opaque tokens.
``long_number``    a bare number of 8 or more digits that is not a date or an epoch.
``counter``        a small number in a counter slot ("Request #1234", "turn 17", "message 42 of 50").
``unsorted_json``  a JSON object in the text whose keys (at any depth) are not in sorted order.
``user_id``        user ids and people's names in obvious slots ("user_id: u-123", "Hello, Alice").

Spans never overlap. When candidates overlap, the more specific detector wins, in this order:
unsorted_json (a whole object is one span; volatile values inside it are not reported separately),
timestamp, date, uuid, labelled id slots and prefixed ids, opaque tokens, long_number, counter, names.
Within one rank the longer candidate wins.

Deliberately *not* flagged (a false positive costs more than it saves: a lint that cries wolf is ignored):

- dates without a day ("knowledge cutoff: 2024-06", "March 2025") and bare years: almost always static
  instructions; a date that does name a day is also skipped when a static cue ("cutoff", "trained",
  "released", "effective", "version", "founded", "established") precedes it on the same line within 40
  characters;
- dates glued to an identifier by ``-``, ``_``, ``.`` or a letter: dated model ids such as
  ``gpt-4o-2024-08-06`` and ``claude-3-5-sonnet-20241022`` are stable (so are file names built that way);
- month and day without a year or weekday ("ends March 31"), unless after a "today is" cue;
- a time of day on its own when it is on the hour without seconds ("at 9:00 AM") or part of a range
  ("09:00-17:00", "from 9:30"), unless a clock cue precedes it ("Current time: 9:00"); single-digit
  hours without AM/PM ("John 3:16", "2:1") are verses, ratios and scores;
- version numbers ("v1.2.3", "2024.8.30"), prices and decimals, numbers with thousands separators or
  after ``+``/``-``/a currency sign, numbers that are plainly not random (binary strings, round
  numbers, one repeated digit) and any number under 8 digits outside a counter slot;
- enumerations and verbs: "Step 1:", "Question 2", "call 911", "run 8 laps", "will turn 27";
- names outside slots, role labels followed by a message ("User: How do I ..."), greetings to generic
  or assistant names ("Hello, World", "Hi Claude"), ALL_CAPS placeholders (``"tenant_id": TENANT_ID``)
  and placeholder words (``null``, ``string``) as slot values;
- chemical formulas (``CH3CHBrCHClCH2CH3``) and words glued to one number (``windows10professional``);
- JSON objects with sorted keys (their volatile values are still reported).

Not detected at all, by choice: relative times ("3 minutes ago"), a weekday outside a "today" cue,
e-mail addresses, phone numbers and IP addresses outside a labelled slot, lower-case greetings,
base64 blobs (they contain ``+``, ``/``, ``=``), random tokens with a single digit (about 1 in 5 of
16-character base62 tokens) and Python dict reprs (``{'b': 1, 'a': 2}``: not JSON, and parsing them
would cost ``ast.literal_eval`` per brace).

Skeletons use ``⟨kind⟩`` placeholders, except that a bare run of digits found as a timestamp, date or
long number becomes ``⟨number⟩`` (its kind depends on its value); and a 32-hex token is always a
``uuid``: one template slot must give one placeholder whatever value fills it.

Speed: digit-driven detectors look only at runs of digits or at small windows around the runs that can
belong to a time or a date, each window gated by a cheap substring test; slot labels are found by
scanning the reversed text from each ``:``, ``=`` and ``#``; every regex is precompiled. On one core,
an 8,000-character system prompt takes about 0.12-0.16 ms when it is prose, 0.19 ms with JSON tool
definitions, 0.42 ms as a numbered list of 100 rules (220 runs of digits) and 1.4 ms as a digit-dense
table (1,300 numbers, 180 dates); tests/test_volatile.py checks the list-style prompt stays under 1 ms.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["KINDS", "VolatileSpan", "find_volatile_spans", "stable_skeleton"]

KINDS = ("timestamp", "date", "uuid", "request_id", "long_number", "counter", "unsorted_json", "user_id")


@dataclass(frozen=True, slots=True)
class VolatileSpan:
    """One volatile span: ``text == source[start:end]``."""

    kind: str
    text: str
    start: int
    end: int


# Detector ranks: lower wins when candidates overlap.
_R_JSON, _R_TIMESTAMP, _R_DATE, _R_UUID, _R_SLOT, _R_TOKEN, _R_NUMBER, _R_COUNTER, _R_NAME = range(9)

# A candidate: (rank, start, end, kind).
_Cand = tuple[int, int, int, str]

# ---------------------------------------------------------------------------------------------------
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
_COMPACT_ISO_RE = re.compile(
    r"(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])t[0-2][0-9][0-5][0-9]"
    r"(?:[0-5][0-9](?:\.[0-9]+)?)?z?(?![0-9a-z])"
)
_CLOCK_HINT_RE = re.compile(r"[0-9]:[0-5][0-9]")
_NAME_STEM_RE = re.compile("jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun")
_UUID_RE = re.compile(
    r"(?<![0-9a-z])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-z])"
)
_TOKEN_RE = re.compile(r"(?<![0-9a-z])[0-9a-z]{16,}(?![0-9a-z])")
_HEX = frozenset("0123456789abcdef")
_BINARY = frozenset("01")
_DIGIT_RUN_RE = re.compile(r"[0-9]+")
_DIGITS = frozenset("0123456789")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_WIDE_TOKEN_RE = re.compile(r"[0-9a-z_-]*")

_FORMULA_RE = re.compile(r"(?:[A-Z][a-z]?[0-9]*)+")
_FORMULA_PART_RE = re.compile(r"[A-Z][a-z]?")
_ELEMENT_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb"
    " Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu"
    " Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr"
)
_ELEMENTS = frozenset(_ELEMENT_SYMBOLS.split())
_USER_PREFIXES = ("usr", "user", "cus", "cust", "customer", "acct", "account")
_PREFIXED_RE = re.compile(
    r"(?<![0-9a-z])(?P<p>req|request|sess|session|trace|span|run|msg|message|chatcmpl|call|toolu|conv"
    r"|conversation|thread|job|evt|event|txn|tx|corr|cid|rid|sid|tid|resp|usr|user|cus|cust|customer"
    r"|acct|account)[_-](?P<v>[0-9a-z][0-9a-z_-]{3,})"
)

# Strong counter words are nouns; weak ones are also enumerations or verbs ("Step 1:", "run 8 laps").
_STRONG_COUNTER = (
    "turn iteration iter attempt retry round request req message msg invocation interaction exchange"
    " seq nonce counter"
)
_WEAK_COUNTER = (
    "step question query ticket order case page item session conversation task issue call run episode"
    " generation sequence"
)
_COUNTER_CONTEXT_RE = re.compile(r"(?:this is|current|on)\s+(?:the\s+)?$")
_COUNTER_BEFORE = frozenset("abcdefghijklmnopqrstuvwxyz#:=.")
_OF_N_RE = re.compile(r"\s+of\s+[0-9]")
_SLASH_N_RE = re.compile(r"\s*/\s*[0-9]")
_COUNTER_END_RE = re.compile(r"[0-9a-z]|[.,:][0-9]")

# Label cues. A slot label ends just before ":", "=" or "#", so slots are found by scanning the reversed
# text from those rare characters (a regex that starts with a character class is a fast C scan; one that
# starts with a word list is tried at every position). Each pattern below is written forwards and built
# reversed.


def _rev_words(words: str) -> str:
    """A regex alternation of the space-separated ``words``, each reversed; "_" in a word means [ _-]?."""
    items = sorted(words.split(), key=len, reverse=True)
    return "(?:" + "|".join(re.escape(w[::-1]).replace("_", "[ _-]?") for w in items) + ")"


# Counter cues, read backwards from the number: "Request #", "turn ", "Step no. ", "seq=". The words
# are looked up in sets (one regex alternation of 35 words, tried at every number, costs more).
_REV_COUNTER_RE = re.compile(
    r"[ \t]*(?P<hash>#)?[ \t]*(?P<colon>[:=])?[ \t]*(?P<w1>\.?[a-z]+)(?:[ \t]+(?P<w2>[a-z]+))?"
)
_STRONG_WORDS = frozenset(w[::-1] for w in _STRONG_COUNTER.split())
_WEAK_WORDS = frozenset(w[::-1] for w in _WEAK_COUNTER.split())
_MARK_WORDS = frozenset(w[::-1] for w in ("no", "no.", "number", "num", "num.", "count", "id"))
_ID_SUFFIX = "id key token uuid"
_REQUEST_WORDS = (
    "request req trace span parent session sess correlation corr conversation conv thread run message msg"
    " call job transaction txn idempotency interaction event invocation execution chat"
)
_USER_SUFFIX = "id uid uuid identifier number no no. ref reference key handle login email e-mail phone"
_PERSON_WORDS = (
    "user customer client account member patient employee player subscriber visitor tenant contact caller"
    " device"
)
_NAME_QUALIFIERS = "full first last display preferred given family"
_NAME_HOLDERS = "user customer client member patient caller visitor student guest account_holder contact"
_ROLE_WORDS = "user customer client caller visitor patient"
_REV_SLOT_RE = re.compile(
    r"(?P<sep>[:=#])\s*[\"']?\s*(?:"
    rf"(?P<req>{_rev_words(_ID_SUFFIX)}[ _-]?{_rev_words(_REQUEST_WORDS)})"
    rf"|(?P<uid>{_rev_words(_USER_SUFFIX)}[ _-]?{_rev_words(_PERSON_WORDS)}|{_rev_words('uid username')})"
    rf"|(?P<name>eman[ _-]?(?:{_rev_words(_NAME_QUALIFIERS)}(?:[ _-]?(?:s')?{_rev_words(_NAME_HOLDERS)})?"
    rf"|(?:s')?{_rev_words(_NAME_HOLDERS)})|{_rev_words(_ROLE_WORDS)})"
    rf"|(?P<today>{_rev_words('date today_date today current_date date_today')})"
    r")(?![0-9a-z])"
)
# Each starts with a literal word, which sre finds with a fast substring search.
_TODAY_IS_RES = (
    re.compile(r"today(?:'s date)?\s+is\s+(?:the\s+)?"),
    re.compile(r"date(?: today)?\s+is\s+(?:the\s+)?"),
)
_SPEAKING_WITH_RE = re.compile(
    r"you are (?:now )?(?:(?:speaking|talking|chatting) (?:with|to)|helping|assisting)\s+"
)
# Greetings run on the original text: capitalised, as they are when they open a templated message (the
# capitals also make this a fast scan: only H, D, G and W are tried).
_GREETING_RE = re.compile(
    r"(?:Hello|Hi|Hey|Dear|Greetings|Welcome back|Welcome|Good morning|Good afternoon|Good evening)"
    r"[ \t]*,?[ \t]+"
)
_SLOT_VALUE_RE = re.compile(r"[ \t]*[\"']?(?P<v>[^\s\"',;<>(){}\[\]]+)")
_TODAY_VALUE_RE = re.compile(
    rf"[ \t\"']*(?P<v>{_WEEKDAY}(?:,?\s+(?:{_MONTH}\s*{_DAY}|(?:the\s+)?{_DAY}(?:\s+of)?\s+{_MONTH}))?"
    rf"|{_MONTH}\s*{_DAY}|{_DAY}(?:\s+of)?\s+{_MONTH})"
)
# Names run on the original text (case matters): one to four capitalised words, then the end of a clause.
_NAME_WORD = "[A-Z][A-Za-z'\u2019-]*\\.?"  # "O'Brien", "Jean-Luc", "J."
_NAME_RE = re.compile(
    rf"[ \t]*(?P<n>{_NAME_WORD}(?:[ \t]+{_NAME_WORD}){{0,3}})(?=[ \t]*(?:[,;:!?)\]\r\n(]|$)|\.)"
)
_NOT_NAMES = frozenset(
    {
        "hi", "hello", "hey", "thanks", "thank", "yes", "no", "ok", "okay", "sure", "please", "help", "what",
        "how", "why", "when", "where", "who", "which", "can", "could", "would", "will", "is", "are", "do",
        "does", "did", "i", "the", "a", "an", "this", "that", "it", "my", "we", "you", "your", "our",
        "assistant", "user", "customer", "client", "system", "claude", "chatgpt", "gpt", "gemini", "copilot",
        "bot", "ai", "there", "everyone", "all", "world", "team", "friend", "friends", "folks", "sir",
        "madam", "again", "back", "unknown", "anonymous", "guest", "none", "null", "n/a", "admin", "support",
        "agent", "human",
    }
)

_STRIP_VALUE = ".,;:!?)]}"
_PLACEHOLDERS = frozenset(
    ["null", "none", "nil", "unknown", "n/a", "string", "str", "integer", "int", "number", "required",
     "optional", "true", "false", "anonymous", "...", "xxx", "tbd"]
)


# ---------------------------------------------------------------------------------------------------
# The scan: everything the detectors share, computed once per text.

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


# ---------------------------------------------------------------------------------------------------
# Detectors. Each yields candidates (rank, start, end, kind); `find_volatile_spans` resolves overlaps.


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


def _numbers(scan: _Scan) -> Iterable[_Cand]:
    """``long_number`` (and compact dates and epochs): a bare run of 8 or more digits.

    A run glued to an identifier, a version or a decimal (``v12345678``, ``3.14159265``,
    ``claude-3-5-sonnet-20241022``), after ``+``, ``-`` or a currency sign, or with thousands separators
    is not a candidate. A candidate that is a valid ``YYYYMMDD`` is a ``date``; one that starts a compact
    ISO date-time (``20250303T140533Z``), 10 digits in [946684800, 4102444800) (epoch seconds,
    2000-2100), 13 digits in the same range in milliseconds or a valid ``YYYYMMDDhhmmss`` is a
    ``timestamp``; anything else is a ``long_number`` (order and account numbers, nonces). Numbers
    that are plainly not random are skipped: binary strings (``11010011``), round numbers
    (``145000000``) and one repeated digit (``99999999``).
    """
    lo, n = scan.lo, scan.n
    for s, e in scan.runs:
        if e - s < 8 or (s > 0 and lo[s - 1] in _NOT_BEFORE_NUMBER):
            continue
        if e < n and (lo[e] in _ALNUM or lo[e] == "_" or (lo[e] in ".," and lo[e + 1 : e + 2].isdigit())):
            if lo[e] == "t" and (m := _COMPACT_ISO_RE.match(lo, s)) is not None:
                yield (_R_TIMESTAMP, s, m.end(), "timestamp")
            continue
        digits = lo[s:e]
        if not _looks_random(digits):
            continue
        if e - s == 8 and _is_yyyymmdd(digits):
            if not _static_date_context(lo, s):
                yield (_R_DATE, s, e, "date")
        elif _is_epoch(digits) or (e - s == 14 and _is_yyyymmdd(digits[:8]) and _is_hhmmss(digits[8:])):
            yield (_R_TIMESTAMP, s, e, "timestamp")
        else:
            yield (_R_NUMBER, s, e, "long_number")


def _looks_random(d: str) -> bool:
    """False for binary strings, round numbers (4+ trailing zeros) and one repeated digit."""
    return not (_BINARY.issuperset(d) or d.endswith("0000") or d == d[0] * len(d))


def _is_epoch(d: str) -> bool:
    """Unix seconds (10 digits) or milliseconds (13 digits) from 2000-01-01 to 2100-01-01."""
    if len(d) == 10:
        return 946_684_800 <= int(d) < 4_102_444_800
    return len(d) == 13 and 946_684_800_000 <= int(d) < 4_102_444_800_000


def _is_yyyymmdd(d: str) -> bool:
    return d[:2] in ("19", "20") and 1 <= int(d[4:6]) <= 12 and 1 <= int(d[6:8]) <= 31


def _is_hhmmss(d: str) -> bool:
    return int(d[:2]) <= 23 and int(d[2:4]) <= 59 and int(d[4:6]) <= 59


def _ids(scan: _Scan) -> Iterable[_Cand]:
    """``uuid`` and shape-based ``request_id`` / ``user_id``: tokens of ``[0-9A-Za-z_-]`` around digits.

    - ``uuid``: ``8-4-4-4-12`` hex digits of any version, or 32 hex digits without hyphens
      (``uuid4().hex``). A 32-hex W3C trace id has the same shape and is reported as a ``uuid`` too:
      telling them apart by the version nibble would give one template slot two kinds (1 random trace
      id in 8 looks like a version-1-8 UUID) and break skeleton equality.
    - ``request_id``, prefixed: ``req_``, ``request-``, ``sess_``, ``session-``, ``trace-``, ``span_``,
      ``run_``, ``msg_``, ``chatcmpl-``, ``call_``, ``toolu_``, ``conv_``, ``thread_``, ``job_``, ``evt_``,
      ``txn_`` ... followed by 4+ characters of ``[0-9A-Za-z_-]`` that include a digit
      (``session-based`` is prose, ``req_8f3a21`` is an id). The same shape after ``usr``, ``user``,
      ``cus``, ``cust``, ``customer``, ``acct`` or ``account`` is a ``user_id``. Ids of stable objects
      (``file-``, ``asst_``, ``org-``) are not flagged.
    - ``request_id``, opaque token: 16+ characters of ``[0-9A-Za-z]`` that contain digits and letters and
      either are all hex (16-hex span and trace ids, content hashes) or hold two or more
      separate runs of digits (base62 tokens, ULIDs). A word glued to one number
      (``windows10professional``) is not random enough; so a random token with a single digit is
      missed (about 1 in 5 of 16-character base62 tokens, fewer for longer ones). Chemical formulas
      (``CH3CHBrCHClCH2CH3``) are not tokens.
    """
    lo, n = scan.lo, scan.n
    done = -1
    for s, e in scan.runs:
        if s < done:
            continue  # inside a token already examined
        before = s > 0 and lo[s - 1] in _TOKEN_CHARS
        if not before and not (e < n and lo[e] in _TOKEN_CHARS):
            continue  # a bare number
        ws = scan.token_start(s) if before else s
        we = done = scan.token_end(e)
        if we - ws < 8:
            continue  # the shortest id is "run_1234"
        token = lo[ws:we]
        if we - ws >= 36 and "-" in token:
            for m in _UUID_RE.finditer(lo, ws, we):
                yield (_R_UUID, m.start(), m.end(), "uuid")
        if "-" in token or "_" in token:
            for m in _PREFIXED_RE.finditer(lo, ws, we):
                value = m["v"].rstrip("_-")
                if len(value) >= 4 and not _DIGITS.isdisjoint(value):
                    kind = "user_id" if m["p"] in _USER_PREFIXES else "request_id"
                    yield (_R_SLOT, m.start(), m.start("v") + len(value), kind)
        if we - ws < 16:
            continue
        for m in _TOKEN_RE.finditer(lo, ws, we):
            word = m.group()
            if _DIGITS.isdisjoint(word) or word.isdigit():
                continue
            if _HEX.issuperset(word):
                if len(word) == 32:
                    yield (_R_UUID, m.start(), m.end(), "uuid")
                else:
                    yield (_R_TOKEN, m.start(), m.end(), "request_id")
            elif len(_DIGIT_RUN_RE.findall(word)) >= 2 and not _is_formula(scan.text[m.start() : m.end()]):
                yield (_R_TOKEN, m.start(), m.end(), "request_id")


def _is_formula(token: str) -> bool:
    """A chemical formula such as ``CH3CHBrCHClCH2CH3``: element symbols, each with an optional count."""
    return all(sym in _ELEMENTS for sym in _FORMULA_PART_RE.findall(token)) and bool(
        _FORMULA_RE.fullmatch(token)
    )


def _counters(scan: _Scan) -> Iterable[_Cand]:
    """``counter``: a number (1-7 digits) in a counter slot; the span is the number only.

    - After a counter noun (``turn``, ``iteration``, ``attempt``, ``retry``, ``round``, ``request``,
      ``message``, ``invocation``, ``interaction``, ``exchange``, ``seq``, ``nonce``, ``counter``) that is
      capitalised or follows "this is", "current" or "on": "Request 1234", "Turn 17", "This is turn 17",
      "on turn 17". Lower-case "turn 27" is usually a verb ("will turn 27").
    - After any counter or enumeration word (the nouns above and ``step``, ``question``, ``ticket``,
      ``order``, ``case``, ``page``, ``item``, ``session``, ``conversation``, ``task``, ``issue``,
      ``call``, ``run``, ``episode``, ``generation``, ``sequence``) with a mark (``#``, ``=``, ``no.``,
      ``number``, ``id``, ``count``) or as "N of M": "Request #1234", "Ticket #4471", "seq=12",
      "Step 3 of 5", "message 42 of 50"; after a counter noun also with ``:`` or as "N/M"
      ("Turn: 3", "attempt 2/5"). "Step 1", "call 911", "in this order: 1." are static.
    - Not when the number continues as a decimal, version or time ("turn 3.5", "round 2:1"), nor after
      an identifier (``flip_counter = 2``).
    """
    text, lo, rev, n = scan.text, scan.lo, scan.rev, scan.n
    for s, e in scan.runs:
        if e - s > 7 or s < 2:
            continue
        c = lo[s - 1]
        if c == " ":
            c = lo[s - 2]
        if c not in _COUNTER_BEFORE:
            continue  # "| 123", "item-123", "4.2": no counter word or mark right before
        m = _REV_COUNTER_RE.match(rev, n - s)
        if m is None or _COUNTER_END_RE.match(lo, e):
            continue
        word, word_end, marked = m["w1"], m.end("w1"), m["hash"] is not None
        if word in _MARK_WORDS and m["w2"] is not None:  # "Step no. 3": the cue is the word before
            word, word_end, marked = m["w2"], m.end("w2"), True
        if word_end < n and rev[word_end] == "_":
            continue  # "flip_counter = 2": an identifier, not a counter
        strong = word in _STRONG_WORDS
        if not strong and word not in _WEAK_WORDS:
            continue
        if marked or _OF_N_RE.match(lo, e):
            pass  # "Ticket #4471", "Step no. 3", "Step 3 of 5"
        elif not strong:
            if m["colon"] != "=":
                continue  # "in this order: 1.", "run 1/5 times"
        elif m["colon"] is None and not _SLASH_N_RE.match(lo, e):
            cue = n - word_end
            if not text[cue].isupper() and not _COUNTER_CONTEXT_RE.search(lo, max(0, cue - 16), cue):
                continue  # "turn 27" (a verb), not "Turn 27" or "this is turn 27"
        yield (_R_COUNTER, s, e, "counter")


def _cues(scan: _Scan) -> Iterable[_Cand]:
    """Labelled slots (``request_id``, ``user_id``), names (``user_id``) and "today" cues (``date``).

    - ``request_id`` slot: ``request_id``, ``x-request-id``, ``trace id``, ``session_id``,
      ``correlation-id``, ``conversation id``, ``thread_id``, ``run_id``, ``message id``, ``call_id``,
      ``job id``, ``transaction id``, ``idempotency key`` ... followed by ``:`` or ``=`` (a closing quote
      between label and colon is allowed, as in JSON): the value (up to whitespace, quote or bracket;
      trailing punctuation dropped) whatever its shape.
    - ``user_id`` slot: ``user_id``, ``customer id``, ``client-id``, ``account number``, ``member no.``,
      ``patient id``, ``user email``, ``device id``, ``uid``, ``username`` ... with ``:`` or ``=``: the
      value; ``User #123``, ``Customer # 42``: the number.
    - ``user_id`` name: a person's name (one to four capitalised words ending a clause) after
      ``User:``, ``Customer:``, ``Caller:``, ``Customer name:``, ``User's full name:``, ``First name:``,
      ``You are speaking with``, ``You are helping``, or after a capitalised greeting (``Hello, Alice``,
      ``Hi Alice Smith!``, ``Dear Ms. Jones,``). "User: How do I ..." is a transcript, not a name;
      generic and assistant names (``World``, ``There``, ``Claude``, ``Customer``) are skipped. A bare
      ``Name:`` is not a slot: in a system prompt it usually names the assistant.
    - ``date`` after ``Today is``, ``Today's date:``, ``Date:``, ``The current date is``: a weekday alone
      (``Today is Monday``) or a month and day without a year (dates with a year are found by `_dates`).
    """
    text, lo, n = scan.text, scan.lo, scan.n
    if ":" in lo or "=" in lo or "#" in lo:
        for m in _REV_SLOT_RE.finditer(scan.rev):
            group, pos = m.lastgroup, n - m.start()  # pos: just after the ":", "=" or "#"
            if m["sep"] == "#" or group in ("req", "uid"):
                if group == "today":
                    continue
                v = _SLOT_VALUE_RE.match(lo, pos)
                if v is None:
                    continue
                value = v["v"].rstrip(_STRIP_VALUE)
                if not value or (m["sep"] == "#" and not value.isdigit()) or value in _PLACEHOLDERS:
                    continue
                original = text[v.start("v") : v.start("v") + len(value)]
                if "_" in original and original.isupper():
                    continue  # a constant or template placeholder: "tenant_id": TENANT_ID
                kind = "request_id" if group == "req" else "user_id"
                yield (_R_SLOT, v.start("v"), v.start("v") + len(value), kind)
            elif group == "today":
                yield from _today_value(lo, pos)
            else:
                yield from _name_at(text, pos)
    for regex in _TODAY_IS_RES:
        for m in regex.finditer(lo):
            if m.start() == 0 or not lo[m.start() - 1].isalnum():
                yield from _today_value(lo, m.end())
    for m in _SPEAKING_WITH_RE.finditer(lo):
        if m.start() == 0 or not lo[m.start() - 1].isalnum():
            yield from _name_at(text, m.end())
    for m in _GREETING_RE.finditer(text):
        if m.start() == 0 or not text[m.start() - 1].isalnum():
            yield from _name_at(text, m.end())


def _today_value(lo: str, pos: int) -> Iterable[_Cand]:
    m = _TODAY_VALUE_RE.match(lo, pos)
    if m is not None:
        yield (_R_DATE, m.start("v"), m.end("v"), "date")


def _name_at(text: str, pos: int) -> Iterable[_Cand]:
    m = _NAME_RE.match(text, pos)
    if m is None:
        return
    name = m["n"]
    first = name.split(None, 1)[0].rstrip(".")
    if len(first) < 2 or first.lower() in _NOT_NAMES:
        return
    end = m.end()
    last = name.rsplit(None, 1)[-1]
    if last.endswith(".") and len(last) > 2:
        end -= 1  # "Smith." ends a sentence; "J." is an initial
    yield (_R_NAME, m.start("n"), end, "user_id")


def _unsorted_json(text: str) -> Iterable[_Cand]:
    """``unsorted_json``: a JSON object in the text whose keys are not in sorted order.

    Every ``{`` is tried as the start of a JSON value (``json.JSONDecoder.raw_decode``, the C scanner).
    An object that parses is flagged, as one span from ``{`` to its closing ``}``, when it or any object
    nested in it has two or more keys in an order other than ``sorted(keys)`` (the order of
    ``json.dumps(..., sort_keys=True)``). Such an object is only byte-stable if whatever serialised it
    always inserts keys in the same order; serialising with sorted keys removes the risk. Scanning resumes
    after a parsed object, so nested objects are never reported separately.
    """
    if "{" not in text:
        return
    found = [False]

    def hook(pairs: list[tuple[str, Any]]) -> None:
        if len(pairs) >= 2 and not found[0]:
            keys = [k for k, _ in pairs]
            if keys != sorted(keys):
                found[0] = True

    decoder = json.JSONDecoder(object_pairs_hook=hook)
    i = text.find("{")
    while i >= 0:
        found[0] = False
        try:
            _, end = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            i = text.find("{", i + 1)
            continue
        if found[0]:
            yield (_R_JSON, i, end, "unsorted_json")
        i = text.find("{", end)


# ---------------------------------------------------------------------------------------------------

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
    """The volatile spans of ``text``, sorted by start and non-overlapping (see the module docstring)."""
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
