"""A cached answer in the client's protocol: what to store from a provider's answer, and how to replay it.

`answer_from_response` keeps only what can be reused as it stands: one choice of plain text that ended
normally (OpenAI `finish_reason` "stop"; Anthropic `stop_reason` "end_turn" or "stop_sequence") with
its usage. Tool calls, refusals, several choices, a truncated answer or one without usage are not
stored: replayed to another request they would be wrong, or a hit could not say what it saved.

`render_json` and `render_stream` write the answer back exactly as the provider would, so the
official SDKs parse a hit like any other response: a complete JSON body, or the provider's SSE
sequence with the text cut into a few deltas (a streaming client keeps its incremental rendering
path; one giant delta would also do, but looks like nothing a real provider sends). Every hit gets
fresh ids and `created` now: ids are how clients and logs tell responses apart.

Usage on a hit is the original call's, with nothing cached: OpenAI `prompt_tokens` (the whole prompt)
with `cached_tokens` 0; Anthropic `input_tokens` as the whole prompt (the original's input plus its
cache reads and writes) with the cache fields 0. It says what the request would have cost without the
cache, which is what the client's own accounting expects; the ledger records the hit at its real cost.
Reasoning tokens are not kept (`CachedAnswer` has no field for them) and replay as 0.

The model is `answer.model`, the name the provider reported (e.g. "gpt-4o-2024-08-06" for a request
naming "gpt-4o"), because that is what the real APIs return and what a miss on the same request
returned; `request_model` only stands in when the stored name is empty.

An Anthropic answer stopped by a stop sequence replays with `stop_sequence` null: `CachedAnswer`
does not keep which sequence matched (the request's `stop_sequences` are in the scope, so it is one
of those).
"""

from __future__ import annotations

import random
import re
import string
import time
from collections.abc import Mapping
from typing import Any

import orjson

from faregate.cache.entry import CachedAnswer
from faregate.call import Protocol

__all__ = ["answer_from_response", "render_json", "render_stream", "split_deltas"]

_MAPPING = (dict, Mapping)
_OPENAI_STOPS = frozenset({"stop"})
_ANTHROPIC_STOPS = frozenset({"end_turn", "stop_sequence"})
_ALNUM = string.ascii_letters + string.digits
_rng = random.Random()
_DONE = b"data: [DONE]\n\n"
_DELTA_CHARS = 20  # a delta holds whole words up to about this many characters
_PIECES = re.compile(r"\s*\S+\s*|\s+")


def answer_from_response(protocol: Protocol, body: Mapping[str, Any], cost_nusd: int) -> CachedAnswer | None:
    """The reusable answer in a provider's non-streaming response body, or None if there is none."""
    if protocol == "openai":
        return _from_openai(body, cost_nusd)
    return _from_anthropic(body, cost_nusd)


def _from_openai(body: Mapping[str, Any], cost_nusd: int) -> CachedAnswer | None:
    choices = body.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], _MAPPING):
        return None
    choice = choices[0]
    message = choice.get("message")
    if choice.get("finish_reason") not in _OPENAI_STOPS or not isinstance(message, _MAPPING):
        return None
    text = message.get("content")
    if not isinstance(text, str) or not text:
        return None
    if message.get("tool_calls") or message.get("function_call") or message.get("refusal"):
        return None
    if message.get("audio"):
        return None
    usage = body.get("usage")
    model = body.get("model")
    if not isinstance(usage, _MAPPING) or not isinstance(model, str):
        return None
    prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
    if prompt is None or completion is None:
        return None
    return CachedAnswer("openai", model, text, "stop", prompt, completion, cost_nusd)


def _from_anthropic(body: Mapping[str, Any], cost_nusd: int) -> CachedAnswer | None:
    stop_reason = body.get("stop_reason")
    content = body.get("content")
    if stop_reason not in _ANTHROPIC_STOPS or not isinstance(content, list) or not content:
        return None
    texts: list[str] = []
    for block in content:  # only text blocks: thinking, tool use, server tools and citations are not kept
        if not isinstance(block, _MAPPING) or block.get("type") != "text" or block.get("citations"):
            return None
        text = block.get("text")
        if not isinstance(text, str):
            return None
        texts.append(text)
    text = "".join(texts)
    usage = body.get("usage")
    model = body.get("model")
    if not text or not isinstance(usage, _MAPPING) or not isinstance(model, str):
        return None
    uncached, output = _count(usage, "input_tokens"), _count(usage, "output_tokens")
    if uncached is None or output is None:
        return None
    # the whole prompt: Anthropic reports cache reads and writes apart from `input_tokens`
    cached = (_count(usage, key) or 0 for key in ("cache_read_input_tokens", "cache_creation_input_tokens"))
    return CachedAnswer("anthropic", model, text, str(stop_reason), uncached + sum(cached), output, cost_nusd)


def _count(usage: Mapping[str, Any], key: str) -> int | None:
    value = usage.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


# --- rendering ----------------------------------------------------------------------------------


def render_json(answer: CachedAnswer, request_model: str) -> bytes:
    """A complete non-streaming response body in `answer.protocol`'s format."""
    model = answer.model or request_model
    if answer.protocol == "openai":
        body: dict[str, Any] = {
            "id": _id("chatcmpl-", 29),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": answer.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": answer.stop_reason,
                }
            ],
            "usage": _openai_usage(answer),
            "system_fingerprint": None,
        }
    else:
        body = {
            "id": _id("msg_01", 22),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": answer.text}],
            "stop_reason": answer.stop_reason,
            "stop_sequence": None,
            "usage": _anthropic_usage(answer, answer.output_tokens),
        }
    return orjson.dumps(body)


def render_stream(answer: CachedAnswer, request_model: str, include_usage: bool) -> list[bytes]:
    """Every SSE event of the answer streamed as the provider streams it, one bytes object an event.

    `include_usage` is OpenAI's `stream_options.include_usage`: only then is there a usage chunk, and
    only then do the other chunks carry `"usage": null`. Anthropic always reports usage (in
    `message_start` and, final, in `message_delta`), so it ignores the flag.
    """
    model = answer.model or request_model
    if answer.protocol == "openai":
        return _openai_stream(answer, model, include_usage)
    return _anthropic_stream(answer, model)


def split_deltas(text: str, size: int = _DELTA_CHARS) -> list[str]:
    """`text` cut at word boundaries into pieces of about `size` characters; they join to `text`.

    A word longer than `size` stays whole: a delta never splits a word (or a multi-byte character).
    """
    pieces: list[str] = []
    current = ""
    for m in _PIECES.finditer(text):
        if current and len(current) + len(m.group()) > size:
            pieces.append(current)
            current = ""
        current += m.group()
    if current:
        pieces.append(current)
    return pieces


def _openai_stream(answer: CachedAnswer, model: str, include_usage: bool) -> list[bytes]:
    base: dict[str, Any] = {
        "id": _id("chatcmpl-", 29),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        frame = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            frame["usage"] = None
        return _sse(frame)

    frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
    frames += [chunk({"content": piece}) for piece in split_deltas(answer.text)]
    frames.append(chunk({}, answer.stop_reason))
    if include_usage:
        frames.append(_sse({**base, "choices": [], "usage": _openai_usage(answer)}))
    frames.append(_DONE)
    return frames


def _anthropic_stream(answer: CachedAnswer, model: str) -> list[bytes]:
    start: dict[str, Any] = {
        "id": _id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _anthropic_usage(answer, min(1, answer.output_tokens)),
    }
    events = [
        _sse({"type": "message_start", "message": start}, "message_start"),
        _sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
        _sse({"type": "ping"}, "ping"),
    ]
    events += [
        _sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            "content_block_delta",
        )
        for piece in split_deltas(answer.text)
    ]
    events.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    final_usage = {
        "input_tokens": answer.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": answer.output_tokens,
    }
    events.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason, "stop_sequence": None},
                "usage": final_usage,
            },
            "message_delta",
        )
    )
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return events


def _openai_usage(answer: CachedAnswer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _anthropic_usage(answer: CachedAnswer, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": answer.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
    }


def _id(prefix: str, length: int) -> str:
    """An id shaped like the provider's. Unique, not secret: a fast PRNG seeded from the OS will do."""
    return prefix + "".join(_rng.choices(_ALNUM, k=length))


def _sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; OpenAI sends `data:` lines only, Anthropic names every event."""
    payload = b"data: " + orjson.dumps(data) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + payload if event else payload
