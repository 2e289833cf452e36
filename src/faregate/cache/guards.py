"""Cheap refusals for semantic hits: the numbers, negation or names that differ between two queries.

Sentence embeddings place "Transfer $50 to savings" next to "Transfer $500 to savings", "Why was my
card declined" next to "Why wasn't my card declined", and "Flights to Paris" next to "Flights to
Rome": the words that change the answer are few and the rest agree. A semantic hit that passed the
similarity threshold is refused here when the stored query and the incoming one differ in:

- numbers, compared as sets (order does not matter; "5" equals "five"): digits (`1,000`, `2.50`,
  `50%`, versions like `2.10.0`), number words (zero to twenty, the tens, "twenty-five", "two
  hundred", "single"), ordinals (`2nd`, "my second card"); then currencies (`$`, `€`, "euros", USD)
  as sets too. Words that are numbers only sometimes are read in context: "one" is a pronoun in "the
  new one" or "one can", an ordinal word is an adverb unless a determiner precedes it ("check the
  tutorials first"), "a second" is time, and "several thousand" is no count;
- negation: whether a query holds a negator at all (not, no, never, n't, without, cannot, none,
  nobody, nothing, neither, nor, "non-"; also "cant", "dont" typed without the apostrophe). Presence,
  not count: "optional" against "not mandatory" is a false refusal we accept;
- named entities, by shape, without an NLP library: capitalised words that do not start a sentence
  and are not in a short stop list, ALL-CAPS tokens (IBAN, SWIFT, ATM, EU: they name different
  things, so they count; OK, AM and currency codes do not), camel case (PyTorch, iPhone), product
  codes and identifiers (letters mixed with digits, underscores, dotted names), e-mail addresses and
  URLs. An entity of one query that the other does not contain *at all* (in any case or position,
  singular or plural) is a difference: "Paris" against "paris" passes, a name on one side only does
  not. A query written all in capitals names nothing by capitals.

The entity guard needs capitals: all-lower-case queries (common in chat) get only the number and
negation guards. Guards refuse; they never accept: a pass means only "nothing cheap looked wrong",
and verification sampling measures what they miss. On GPTCache's 999 duplicate pairs (long, varied
paraphrases) they refuse 7.6% (tests/cache/test_guards.py keeps it under 10%).

Each query is analysed with precompiled regular expressions and one pass over its words, memoised by
text because the stored side of a pair recurs: a pair of chat-length queries costs ~10-20 µs cold
and ~1 µs when both are memoised.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["refuse"]


def _words(text: str) -> list[str]:
    """Word lists written as prose: easier to read and to extend than a literal of quoted strings."""
    return text.split()


_UNITS = _words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
)
_TENS = {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_ORDINALS = _words(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
    "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"
)
_NUMBER_WORDS: dict[str, int] = {w: i for i, w in enumerate(_UNITS)} | _TENS | {"single": 1}
_TENS_VALUES = frozenset({20, *_TENS.values()})
_ORDINAL_WORDS: dict[str, int] = {w: i + 1 for i, w in enumerate(_ORDINALS)}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMERIC_WORDS = frozenset({*_NUMBER_WORDS, *_ORDINAL_WORDS, *_SCALES})
# "one" is a pronoun after these ("the new one", "which one", "can one"), not a count
_ONE_PRONOUN_AFTER = frozenset(
    _words(
        "the this that which each every any no some another a an new old other same last next only right by "
        "wrong first second third better best correct can could should must may might would will does do did"
    )
)
# ... and before these ("one can", "one by one", "one another")
_ONE_PRONOUN_BEFORE = frozenset(
    _words("can could should must may might would will needs has gets by another of")
)
# An ordinal word counts after these ("my first card", "the second transfer"); elsewhere it is
# mostly an adverb ("check the tutorials first", "first, ...").
_ORDINAL_AFTER = frozenset(_words("the my your his her our their its this that a an every each"))
# A scale word needs a count before it: "two hundred", "a thousand"; not "several thousand"
_SCALE_ALONE_AFTER = frozenset(_words("a one"))
# "second" is a unit of time after these ("wait a second", "per second")
_SECOND_TIME_AFTER = frozenset(_words("a per one each every few several split"))

_NEGATORS = frozenset(
    _words(
        "not no never without cannot none nobody nothing neither nor nowhere "
        "cant dont doesnt didnt isnt arent wasnt werent wont wouldnt couldnt shouldnt havent hasnt hadnt "
        "aint mustnt neednt"
    )
)
_CURRENCY_WORDS = {
    "dollar": "$", "dollars": "$", "usd": "$", "euro": "€", "euros": "€", "eur": "€",
    "pound": "£", "pounds": "£", "gbp": "£", "yen": "¥", "jpy": "¥", "buck": "$", "bucks": "$",
}  # fmt: skip
_CURRENCY_SYMBOLS = {"$": "$", "€": "€", "£": "£", "¥": "¥"}

# Capitalised words that say nothing about what is asked when they are not at a sentence start:
# the pronoun I, greetings, and function words capitalised after a comma or an emoji.
_STOP = frozenset(
    _words(
        """i i'm i've i'd i'll im ive ok okay hi hello hey dear please pls thanks thank thx yes no sir madam
    mr mrs ms dr a an the and or but so if then than when what where why who whom whose which how is
    are was were be been am do does did can could will would shall should may might must have has had
    my your our their his her its it it's this that these those there here me we you they he she us
    them to of in on at by for from with about as into not also just still even any some all each
    every other another more most much many very too again why's what's how's where's who's don't
    doesn't didn't can't won't isn't aren't wasn't"""
    )
)

_CAPS_STOP = frozenset(_words("ok am pm"))

_RSQUO = "\u2019"  # the typographic apostrophe: "don\u2019t"
# Words, with what joins them into one token: apostrophes, hyphens, underscores, and dots before a
# lower-case letter or a digit (torch.utils, v2.1), not before a capital ("yet.Would": a missing space)
_WORD = re.compile(r"\w+(?:['\u2019\-_]\w+|\.(?=[a-z\d])\w+)*")
# 1,000 | 2.5 | 2.10.0 or v2.10.0 (a version, kept as written) | 1st; not the digits inside a word (A320)
_NUMBER = re.compile(
    r"(?<![\w.,])v?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)*)(?:(st|nd|rd|th)(?![^\W\d_]))?"
)
_CURRENCY_SYMBOL = re.compile(r"[$€£¥]")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
_BOUNDARY = re.compile(
    r"[.!?:;\n\"\u201c\u201d(\[*#>\u2022\-\u2013\u2014]"
)  # what may precede a sentence start
# 3pm, 10gb, 2nd: a number with its unit; v2.1: a version. Numbers, not product codes.
_UNIT_SUFFIX = re.compile(r"\d+(?:st|nd|rd|th|[a-z]{1,3})|v\d+(?:\.\d+)*")
_PARTS = re.compile(r"[.\-]")
_HAS_LETTER = re.compile(r"[^\W\d_]")
_HAS_DIGIT = re.compile(r"\d")
_TRAILING_PUNCT = ".,;:!?)]}'\""


@dataclass(frozen=True, slots=True)
class _Features:
    numbers: frozenset[str]
    currencies: frozenset[str]
    negated: bool
    entities: dict[str, str]  # normalised form -> the first spelling seen (for the reason)
    vocabulary: frozenset[str]  # every normalised token, to tell a missing entity from a recased one


def refuse(stored: str, incoming: str) -> str | None:
    """None when a semantic hit of `incoming` on `stored` may stand, else a short reason."""
    if stored == incoming:
        return None
    a, b = _features(stored), _features(incoming)
    if a.numbers != b.numbers:
        return f"numbers differ: {_show(a.numbers - b.numbers)} vs {_show(b.numbers - a.numbers)}"
    if a.currencies != b.currencies:
        return f"currencies differ: {_show(a.currencies)} vs {_show(b.currencies)}"
    if a.negated != b.negated:
        return "negation differs"
    only_a = [spelling for key, spelling in a.entities.items() if not _present(key, b.vocabulary)]
    only_b = [spelling for key, spelling in b.entities.items() if not _present(key, a.vocabulary)]
    if only_a or only_b:
        return f"entities differ: {', '.join(only_a) or '-'} vs {', '.join(only_b) or '-'}"
    return None


def _present(key: str, vocabulary: frozenset[str]) -> bool:
    """An entity is present in the other query as one token, or as its hyphenated parts."""
    if key in vocabulary:
        return True
    return "-" in key and all(_normal(part) in vocabulary for part in key.split("-"))


def _show(values: frozenset[str]) -> str:
    return ", ".join(sorted(values)) or "-"


@functools.lru_cache(maxsize=4096)
def _features(text: str) -> _Features:
    entities: dict[str, str] = {}
    vocabulary: set[str] = set()
    if "@" in text or "://" in text or "www." in text:
        text = _take_addresses(text, entities, vocabulary)
    numbers: set[str] = set()
    if _HAS_DIGIT.search(text):
        for m in _NUMBER.finditer(text):
            whole, ordinal = m.groups()
            value = _canonical_number(whole)
            numbers.add(value + ordinal if ordinal else value)
    currencies = {_CURRENCY_SYMBOLS[s] for s in _CURRENCY_SYMBOL.findall(text)}
    shouting = text.isupper()
    negated = False
    previous = ""  # the previous word, lower case
    last_number = 0  # the whole number the previous word wrote, 0 if none
    wrote_one = False  # the previous word was "one", counted as 1
    end = 0
    for m in _WORD.finditer(text):
        token = m.group()
        plain = token.isalpha() and token.islower()  # most words: the fast path
        lower = token if plain else token.lower().replace(_RSQUO, "'")
        if wrote_one and lower in _ONE_PRONOUN_BEFORE:  # "one can ...": a pronoun after all
            numbers.discard("1")
        number = None
        if lower in _NUMERIC_WORDS or "-" in lower:
            number = _number_word(lower, previous, last_number, numbers)
        elif lower.isdecimal() and len(lower) <= 18:
            number = int(lower)
        last_number = number or 0
        wrote_one = number == 1 and lower == "one"
        if lower in _NEGATORS or (not plain and lower.endswith("n't")):
            negated = True
        if lower in _CURRENCY_WORDS:
            currencies.add(_CURRENCY_WORDS[lower])
        key = _normal(lower) if lower[-1] == "s" else lower
        vocabulary.add(key)
        if not plain:
            if "-" in lower or "." in lower:  # "non-streaming", "torch.utils.data.DataLoader"
                parts = _PARTS.split(lower)
                vocabulary.update(_normal(part) for part in parts)
                negated = negated or any(part in _NEGATORS or part == "non" for part in parts)
            if _is_entity(token, lower, shouting, text, end, m.start()):
                entities.setdefault(key, token)
        end = m.end()
        previous = lower
    return _Features(frozenset(numbers), frozenset(currencies), negated, entities, frozenset(vocabulary))


def _number_word(lower: str, previous: str, last_number: int, numbers: set[str]) -> int | None:
    """Add the number a word writes to `numbers`: "five", "twenty five" (replacing the 20 just added),
    "twenty-five", "fifth", "two hundred" (replacing the 2). Returns its value for the next word,
    None when the word writes no whole number.
    """
    value = _NUMBER_WORDS.get(lower)
    if value is not None:
        if lower == "one" and previous in _ONE_PRONOUN_AFTER:
            return None
        if 0 < value < 10 and last_number in _TENS_VALUES:
            numbers.discard(str(last_number))
            value += last_number
        numbers.add(str(value))
        return value
    scale = _SCALES.get(lower)
    if scale is not None:
        if last_number:
            numbers.discard(str(last_number))
            scale *= last_number
        elif previous not in _SCALE_ALONE_AFTER:
            return None
        numbers.add(str(scale))
        return scale
    ordinal = _ORDINAL_WORDS.get(lower)
    if ordinal is not None:
        if previous not in _ORDINAL_AFTER and last_number not in _TENS_VALUES:
            return None
        if lower == "second" and previous in _SECOND_TIME_AFTER:
            return None
        if ordinal < 10 and last_number in _TENS_VALUES:
            numbers.discard(str(last_number))
            ordinal += last_number
        numbers.add(f"{ordinal}{_ordinal_suffix(ordinal)}")
        return None
    if "-" in lower:
        compound = _compound_number(lower)
        if compound is not None:
            numbers.add(compound)
    return None


def _take_addresses(text: str, entities: dict[str, str], vocabulary: set[str]) -> str:
    """Record URLs and e-mail addresses as entities, and blank them out of the text."""

    def take(m: re.Match[str]) -> str:
        found = m.group().rstrip(_TRAILING_PUNCT)
        key = found.lower()
        entities.setdefault(key, found)
        vocabulary.add(key)
        return " " * len(found) + m.group()[len(found) :]

    return _EMAIL.sub(take, _URL.sub(take, text))


def _is_entity(token: str, lower: str, shouting: bool, text: str, gap_start: int, gap_end: int) -> bool:
    """Whether a token names something; text[gap_start:gap_end] is what separates it from the
    previous word, to tell a sentence start (where any word is capitalised) from a name.
    """
    if token.isalpha():
        if token.islower() or shouting:
            return False
        if token.isupper():  # an acronym (US, EU, ATM, IBAN), unless OK, AM or a currency (compared apart)
            return len(token) > 1 and lower not in _CAPS_STOP and lower not in _CURRENCY_WORDS
        if lower in _STOP:
            return False
        # camel case (PyTorch, iPhone, eBay) anywhere; Capitalised only where a sentence cannot start
        return not token[1:].islower() or not _sentence_start(text, gap_start, gap_end)
    if _HAS_DIGIT.search(token):  # a product code or an identifier, not a number with its unit
        return _HAS_LETTER.search(token) is not None and _UNIT_SUFFIX.fullmatch(lower) is None
    if "_" in token:
        return True
    if "." in token:
        return any(len(part) > 2 for part in token.split("."))
    if shouting or token.islower() or lower in _STOP:
        return False
    if token.isupper():
        return True
    # McDonald's, Hugging-Face; Anglo-Saxon where no sentence starts
    return not token[1:].islower() or not _sentence_start(text, gap_start, gap_end)


def _sentence_start(text: str, gap_start: int, gap_end: int) -> bool:
    return gap_start == 0 or _BOUNDARY.search(text, gap_start, gap_end) is not None


def _normal(lower: str) -> str:
    """Possessives and plurals folded, so "Dataset" and "datasets" or "Visa's" and "visa" agree."""
    if lower.endswith("'s"):
        lower = lower[:-2]
    if len(lower) > 3 and lower.endswith("s") and not lower.endswith("ss"):
        lower = lower[:-1]
    return lower


def _canonical_number(written: str) -> str:
    """'1,000' as '1000', '2.50' as '2.5', '007' as '7'; a version ('2.10.0') as written."""
    whole, _, fraction = written.replace(",", "").partition(".")
    if "." in fraction:
        return written
    whole = whole.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def _compound_number(lower: str) -> str | None:
    """'twenty-five' as '25'; None for any other hyphenated word."""
    tens, _, unit = lower.partition("-")
    base = _TENS.get(tens, 20 if tens == "twenty" else 0)
    value = _NUMBER_WORDS.get(unit)
    if base and value is not None and 0 < value < 10:
        return str(base + value)
    ordinal = _ORDINAL_WORDS.get(unit)
    if base and ordinal is not None and ordinal < 10:
        return f"{base + ordinal}{_ordinal_suffix(base + ordinal)}"
    return None


def _ordinal_suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
