"""JSON detector: ``unsorted_json``, a JSON object whose keys (at any depth) are not in sorted order."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from faregate.volatile.scan import _R_JSON, _Cand


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
