"""Text primitives for the simulator: the grammars, a token counter per tokenizer, sentence pools.

Token counts are what make a workload fast. Every piece of text that recurs is counted once, and a
message assembled from pieces is counted as the sum of its pieces. That sum equals the tokenizer's
count of the whole because pieces are cut where the tokenizers' pre-tokenisation always cuts: after a
sentence's closing punctuation (the next piece starts with a space or a letter), or after `>` or `.`
and newlines (the next piece starts with `<`, `#` or a letter). tests/test_simulate.py checks the sums
against `faregate.tokens.count_messages_*` on whole requests.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from random import Random
from typing import Any

import orjson
import tiktoken

from faregate.tokens import encoding_for_model

from ._grammar import (
    BANK_RULE_SLOTS,
    BANK_RULE_TEMPLATES,
    BANK_SLOTS,
    BANK_TEMPLATES,
    LEGAL_DOC_TEMPLATES,
    LEGAL_FOCUS_TEMPLATES,
    LEGAL_REPLY_TEMPLATES,
    LEGAL_SLOTS,
    WORK_ASK_TEMPLATES,
    WORK_DETAIL_TEMPLATES,
    WORK_DOC_TEMPLATES,
    WORK_REPLY_TEMPLATES,
    WORK_SLOTS,
    Grammar,
)

BANK = Grammar(BANK_SLOTS, BANK_TEMPLATES)
BANK_RULES = Grammar(BANK_RULE_SLOTS, BANK_RULE_TEMPLATES)
LEGAL = Grammar(LEGAL_SLOTS, LEGAL_DOC_TEMPLATES)
LEGAL_REPLIES = Grammar(LEGAL_SLOTS, LEGAL_REPLY_TEMPLATES)
LEGAL_FOCUS = Grammar(LEGAL_SLOTS, LEGAL_FOCUS_TEMPLATES)
WORK = Grammar(WORK_SLOTS, WORK_DOC_TEMPLATES)
WORK_ASKS = Grammar(WORK_SLOTS, WORK_ASK_TEMPLATES)
WORK_DETAILS = Grammar(WORK_SLOTS, WORK_DETAIL_TEMPLATES)
WORK_REPLIES = Grammar(WORK_SLOTS, WORK_REPLY_TEMPLATES)

DOCS_OPEN = "<documents>\n"
DOCS_CLOSE = "</documents>\n\n"
# faregate.tokens hands out encodings by model name: one model for each encoding a workload uses.
_MODEL_OF_ENCODING = {"o200k_base": "gpt-4o", "cl100k_base": "gpt-4"}


class Counter:
    """Token counts for one tokenizer; `__call__` remembers (for recurring text), `once` does not."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._encode = encoding.encode_ordinary
        self._memo: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        count = self._memo.get(text)
        if count is None:
            count = self._memo[text] = len(self._encode(text)) if text else 0
        return count

    def once(self, text: str) -> int:
        return len(self._encode(text)) if text else 0


def counter(model: str) -> Counter:
    """One counter per tokenizer, shared by the models that use it (gpt-4o and gpt-4.1: o200k_base)."""
    return _counter_for(encoding_for_model(model).name)


@functools.cache
def _counter_for(encoding: str) -> Counter:
    return Counter(encoding_for_model(_MODEL_OF_ENCODING[encoding]))


# --- sentences ------------------------------------------------------------------------------------
class Sentences:
    """A pool of sentences, each in the four spellings a message joins them with: alone, after a
    space, before a paragraph break, and both. The spellings are separate objects so their hashes
    (and token counts) are computed once.
    """

    def __init__(self, sentences: Sequence[str]) -> None:
        self.variants = [(s, " " + s, s + "\n\n", " " + s + "\n\n") for s in sentences]

    def __len__(self) -> int:
        return len(self.variants)

    def compose(
        self,
        rng: Random,
        target: int,
        count: Callable[[str], int],
        paragraph: tuple[int, int] = (2, 5),
        *,
        lead: bool = False,
        opener: Sentences | None = None,
    ) -> tuple[str, int]:
        """Paragraphs of random sentences, about `target` tokens: (text, its exact token count).

        `lead` starts the text with a space (to follow a sentence); `opener` draws the first sentence
        from another pool (a request, then its details).
        """
        chosen: list[tuple[str, str, str, str]] = []
        breaks: set[int] = set()
        tokens = 0
        left = rng.randint(*paragraph)
        shapes: set[str] = set()  # sentence openings used in this text: avoid saying the same thing twice
        while tokens < target or not chosen:
            source = opener if opener is not None and not chosen else self
            for _ in range(4):
                variants = source.variants[rng.randrange(len(source.variants))]
                if variants[0][:14] not in shapes:
                    break
            shapes.add(variants[0][:14])
            chosen.append(variants)
            tokens += count(variants[1])
            left -= 1
            if left == 0:
                breaks.add(len(chosen) - 1)
                left = rng.randint(*paragraph)
        pieces: list[str] = []
        total = 0
        last = len(chosen) - 1
        for position, variants in enumerate(chosen):
            space = (lead and position == 0) or (position > 0 and position - 1 not in breaks)
            trail = position in breaks and position != last
            piece = variants[int(space) + 2 * int(trail)]
            pieces.append(piece)
            total += count(piece)
        return "".join(pieces), total


def pool(grammar: Grammar, seed: int, size: int) -> list[str]:
    rng = Random(seed)
    seen: dict[str, None] = {}
    for _ in range(size * 4):
        seen.setdefault(grammar.sentence(rng))
        if len(seen) >= size:
            break
    return list(seen)


def tools_json(tools: list[dict[str, Any]] | None) -> str:
    return orjson.dumps(tools).decode() if tools else ""
