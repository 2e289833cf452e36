"""Volatile spans: the parts of a prompt prefix that change from one request to the next.

Provider prompt caching bills a repeated prefix at about a tenth of the input price, but only when the
prefix is byte-identical. One timestamp, request id or user name near the top of a system prompt makes
every request a cache miss. `find_volatile_spans` finds such spans; `stable_skeleton` replaces them with
placeholders, so two prompts that differ only in volatile spans get the same skeleton (the offline
analyzer groups prompts by skeleton to measure "prefix stability").

Kinds (`KINDS`; each detector function documents its rules precisely, in the modules listed below):

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

Modules, in reading order:

``spans``          `KINDS`, `VolatileSpan`, `find_volatile_spans` (overlap resolution) and
                   `stable_skeleton`.
``scan``           the candidate machinery the detectors share: ranks, digit runs, windows around them.
``dates``          ``timestamp`` and ``date``: the date and time patterns and their two detectors.
``ids``            ``long_number`` (with compact dates and epochs), ``uuid`` and shape-based ids.
``counters``       ``counter``: small numbers in counter slots.
``cues``           labelled slots (``request_id``, ``user_id``), names and "today" cues.
``unsorted_json``  ``unsorted_json``: JSON objects whose keys are not sorted.
"""

from faregate.volatile.spans import KINDS, VolatileSpan, find_volatile_spans, stable_skeleton

__all__ = ["KINDS", "VolatileSpan", "find_volatile_spans", "stable_skeleton"]
