"""Counter detector: ``counter``, a small number in a counter slot ("Request #1234", "turn 17")."""

from __future__ import annotations

import re
from collections.abc import Iterable

from faregate.volatile.scan import _R_COUNTER, _Cand, _Scan

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

# Counter cues, read backwards from the number: "Request #", "turn ", "Step no. ", "seq=". The words
# are looked up in sets (one regex alternation of 35 words, tried at every number, costs more).
_REV_COUNTER_RE = re.compile(
    r"[ \t]*(?P<hash>#)?[ \t]*(?P<colon>[:=])?[ \t]*(?P<w1>\.?[a-z]+)(?:[ \t]+(?P<w2>[a-z]+))?"
)
_STRONG_WORDS = frozenset(w[::-1] for w in _STRONG_COUNTER.split())
_WEAK_WORDS = frozenset(w[::-1] for w in _WEAK_COUNTER.split())
_MARK_WORDS = frozenset(w[::-1] for w in ("no", "no.", "number", "num", "num.", "count", "id"))


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
