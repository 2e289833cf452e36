"""Number and id detectors: ``long_number`` (with compact dates and epochs), ``uuid`` and shape-based
``request_id`` / ``user_id``: runs of digits, and tokens around them, that look random.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from faregate.volatile.dates import _NOT_BEFORE_NUMBER, _static_date_context
from faregate.volatile.scan import (
    _DIGIT_RUN_RE,
    _R_DATE,
    _R_NUMBER,
    _R_SLOT,
    _R_TIMESTAMP,
    _R_TOKEN,
    _R_UUID,
    _Cand,
    _Scan,
)

_COMPACT_ISO_RE = re.compile(
    r"(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])t[0-2][0-9][0-5][0-9]"
    r"(?:[0-5][0-9](?:\.[0-9]+)?)?z?(?![0-9a-z])"
)
_UUID_RE = re.compile(
    r"(?<![0-9a-z])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-z])"
)
_TOKEN_RE = re.compile(r"(?<![0-9a-z])[0-9a-z]{16,}(?![0-9a-z])")
_HEX = frozenset("0123456789abcdef")
_BINARY = frozenset("01")
_DIGITS = frozenset("0123456789")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")

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
