"""Slot and name detectors: labelled ids (``request_id``, ``user_id``), people's names in obvious slots
(``user_id``) and the date after a "today" cue (``date``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from faregate.volatile.dates import _DAY, _MONTH, _WEEKDAY
from faregate.volatile.scan import _R_DATE, _R_NAME, _R_SLOT, _Cand, _Scan

# Label cues. A slot label ends just before ":", "=" or "#", so slots are found by scanning the reversed
# text from those rare characters (a regex that starts with a character class is a fast C scan; one that
# starts with a word list is tried at every position). Each pattern below is written forwards and built
# reversed.


def _rev_words(words: str) -> str:
    """A regex alternation of the space-separated ``words``, each reversed; "_" in a word means [ _-]?."""
    items = sorted(words.split(), key=len, reverse=True)
    return "(?:" + "|".join(re.escape(w[::-1]).replace("_", "[ _-]?") for w in items) + ")"


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
# Word lists read better packed than one word a line.
# fmt: off
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
# fmt: on


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
