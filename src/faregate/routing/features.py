"""Cheap features of a request for the router, next to the shared sentence embedding.

Length, structure (lines, sentences, questions, list items, multiple-choice options), math markers
(numbers, operators, LaTeX, fractions, percentages, money, quantity words and units), code markers
(fences, code-shaped lines, keywords) and the conversation's history length. Word lists are counted
from one pass over the prompt's words (a `Counter`), the rest are a few regular expressions: ~0.1 ms
for a typical prompt. A prompt longer than `SCAN_CHARS` is scanned up to there, its counts scaled to
its full length, so the cost is bounded.

Counts enter as log(1 + count), so that a feature's scale is the same for a one-line question and a
long document. The names in `FEATURE_NAMES` are stored in a router file, and a router refuses to load
when its names differ from this module's: a router never reads a feature vector it was not trained on.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import numpy.typing as npt

__all__ = ["FEATURE_NAMES", "SCAN_CHARS", "cheap_features", "cheap_features_into"]

SCAN_CHARS = 8000

FEATURE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "log_lines",
    "mean_word_len",
    "log_sentences",
    "questions",
    "list_items",
    "choices",
    "log_numbers",
    "log_distinct_numbers",
    "max_number_digits",
    "decimals",
    "percents",
    "money",
    "fractions",
    "operators",
    "latex",
    "math_words",
    "code_fence",
    "code_lines",
    "code_words",
    "digit_share",
    "upper_share",
    "non_ascii_share",
    "relations",
    "units",
    "names",
    "log_max_number",
    "log_distinct_words",
    "log_history",
)

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_DECIMAL = re.compile(r"\d\.\d")
_FRACTION = re.compile(r"\b\d+/\d+\b")
_OPERATOR = re.compile(r"(?<=[\w)\s])[-+*/^=<>](?=[\w(\s])")
_LATEX = re.compile(r"\\[a-zA-Z]+|\$[^$\n]+\$")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s", re.MULTILINE)
_CHOICE = re.compile(r"^\s*\(?[A-H][.)]\s", re.MULTILINE)
_CODE_LINE = re.compile(r"^(?: {4}|\t)\S|[{};]\s*$", re.MULTILINE)
_WORD = re.compile(r"\w+")
_UPPER = re.compile(r"[A-Z]")
_DIGIT = re.compile(r"\d")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_NAME = re.compile(r"(?<=[a-z,;:] )[A-Z][a-z]+")
_MONEY = re.compile(r"[$\u20ac\u00a3]\s?\d")


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


_MATH_WORDS = _vocabulary(
    "sum product equation equations solve integer integers integral derivative probability percent ratio "
    "average total remainder prime primes polynomial matrix vector function theorem prove compute "
    "calculate"
)
_RELATION_WORDS = _vocabulary(
    "twice half double triple third quarter times each per every remaining rest left more less fewer "
    "after then total together altogether average percent discount profit"
)
_UNIT_WORDS = _vocabulary(
    "second seconds minute minutes hour hours day days week weeks month months year years mile miles "
    "meter meters feet foot inches pound pounds dollar dollars cent cents cup cups liter liters gallon "
    "gallons kg km gram grams"
)
_CODE_WORDS = _vocabulary(
    "def class return import function const var let public static void int printf print SELECT FROM "
    "WHERE lambda null None True False self this"
)
_CODE_SYMBOLS = ("=>", "->", "::", "()", "==", "!=")


def cheap_features(prompt: str, history_len: int = 0) -> npt.NDArray[np.float32]:
    """The cheap features of one request, in `FEATURE_NAMES` order."""
    out = np.empty(len(FEATURE_NAMES), dtype=np.float32)
    cheap_features_into(out, prompt, history_len)
    return out


def _count(counts: Counter[str], vocabulary: frozenset[str]) -> int:
    return sum(counts[w] for w in vocabulary if w in counts)


def cheap_features_into(out: npt.NDArray[np.float32], prompt: str, history_len: int = 0) -> None:
    """Write the cheap features of one request into ``out`` (length len(FEATURE_NAMES))."""
    chars = len(prompt)
    text = prompt if chars <= SCAN_CHARS else prompt[:SCAN_CHARS]
    scale = chars / len(text) if text else 1.0  # counts over a truncated scan, scaled to the whole
    n = max(len(text), 1)
    words = _WORD.findall(text)
    cased = Counter(words)
    lower = Counter(_WORD.findall(text.lower()))
    numbers = _NUMBER.findall(text)
    log = math.log1p
    out[0] = log(chars)
    out[1] = log(len(words) * scale)
    out[2] = log((text.count("\n") + 1) * scale)
    out[3] = (sum(len(w) * c for w, c in cased.items()) / len(words)) if words else 0.0
    out[4] = log(len(_SENTENCE_END.findall(text)) * scale)
    out[5] = log(text.count("?") * scale)
    out[6] = log(len(_LIST_ITEM.findall(text)) * scale)
    out[7] = log(len(_CHOICE.findall(text)))
    out[8] = log(len(numbers) * scale)
    out[9] = log(len(set(numbers)))
    out[10] = min(max((len(x) for x in numbers), default=0), 20)
    out[11] = log(len(_DECIMAL.findall(text)))
    out[12] = log(text.count("%"))
    out[13] = log(len(_MONEY.findall(text)))
    out[14] = log(len(_FRACTION.findall(text)))
    out[15] = log(len(_OPERATOR.findall(text)) * scale)
    out[16] = log(len(_LATEX.findall(text)) * scale)
    out[17] = log(_count(lower, _MATH_WORDS) * scale)
    out[18] = 1.0 if "```" in text else 0.0
    out[19] = log(len(_CODE_LINE.findall(text)) * scale)
    out[20] = log((_count(cased, _CODE_WORDS) + sum(text.count(s) for s in _CODE_SYMBOLS)) * scale)
    out[21] = len(_DIGIT.findall(text)) / n
    out[22] = len(_UPPER.findall(text)) / n
    out[23] = len(_NON_ASCII.findall(text)) / n
    out[24] = log(_count(lower, _RELATION_WORDS) * scale)
    out[25] = log(_count(lower, _UNIT_WORDS) * scale)
    out[26] = log(len(set(_NAME.findall(text))))
    out[27] = log(max((_number(x) for x in numbers), default=0.0))
    out[28] = log(len(lower))
    out[29] = log(max(history_len, 0))


def _number(text: str) -> float:
    try:
        return min(float(text.replace(",", "")), 1e12)
    except ValueError:  # "1.2.3": a version or a date, not a quantity
        return 0.0
