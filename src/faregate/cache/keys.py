"""What makes two requests the same question in the same context: the scope, the exact key, the query.

A cache hit hands a stored answer to a different request, so the key must hold everything that can
change the answer. The request is cut in two at its last user turn (the last user message; for
Anthropic, a user message with something other than tool results, as `faregate.anatomy` defines it):

- `scope`: a hash of the tenant, feature, protocol, model and *everything else* in the body: system
  prompts, tools and `tool_choice`, `response_format`, every sampling parameter, unknown parameters,
  and every message before the last user turn. A follow-up ("What about the second one?") means
  something else in another conversation, so multi-turn requests only ever meet the exact same
  preceding turns. The semantic tier searches within a scope; it never crosses one.
- `exact_key`: the scope plus the last user turn's text, normalised (and, defensively, anything after
  that turn, which eligible requests do not have).
- `query`: the last user turn's text, what the semantic tier embeds and the guards compare.

The body is hashed as a denylist, not an allowlist: a parameter this module has never heard of goes
into the scope, because a parameter we do not know might change the answer. Only fields that cannot
change the answer are left out (`stream`, `stream_options`, `user`, `metadata`, `store`,
`service_tier`, `prompt_cache_key`, FareGate's own keys) and Anthropic `cache_control` breakpoints,
wherever they are: the prompt-cache stage adds and moves them, and a breakpoint changes what the
provider bills, not what the model says. Hashing uses canonical JSON (sorted keys, integral floats
written as integers so `temperature: 1` and `1.0` agree) and BLAKE2b-128.

The last turn's text is normalised for the exact key with Unicode NFC (the same characters typed on
another keyboard), whitespace runs collapsed to one space, and the ends stripped. Case is kept: it
can change the answer ("US" and "us", "Polish" and "polish", identifiers in code, "answer in
CAPITALS"), and folding what only looks alike is the semantic tier's job, guarded and measured.

A request that cannot be answered from a cache is still keyed (the stage may want to log its
scope), but `eligible` is False with a short `reason`:

- the last message is not a user turn (an Anthropic assistant prefill), or is a tool result (an
  agent loop working on a turn: its answer depends on live tool output);
- the last user turn holds something other than text (images, documents, audio, files): the query
  text alone would not say what was asked;
- no user text at all;
- `n` > 1 or `logprobs` (a cached answer holds one choice and no log probabilities);
- `tool_choice` forcing a tool call, audio output, or web search (live results): answers that are not
  a reusable plain text.

A high `temperature` without a `seed` stays eligible: the cached answer is one genuine sample from the
distribution the client asked for, the temperature is in the scope so it never reaches a client that
asked for determinism, and a feature that must not reuse creative answers turns its cache off.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

__all__ = ["RequestKeys", "normalise_query", "request_keys"]

_MAPPING = (dict, Mapping)  # dict first: parsed bodies hold dicts, and isinstance of an ABC is slow

# Body fields that cannot change the answer. Everything else is part of the scope.
_EXCLUDED = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "safety_identifier",  # OpenAI's successor to `user`
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "model",  # the `model` argument stands for it (the name the gateway resolved)
        "messages",  # hashed apart: split at the last user turn
    }
)
_WHITESPACE = re.compile(r"\s+")
_SCOPE_VERSION = "faregate-cache-scope/1"  # bump when the scope's recipe changes: old entries miss

_NOT_TEXT_REASONS = {
    "image_url": "image content",
    "image": "image content",
    "input_image": "image content",
    "input_audio": "audio content",
    "audio": "audio content",
    "file": "file content",
    "document": "document content",
}


@dataclass(frozen=True, slots=True)
class RequestKeys:
    scope: str  # hex BLAKE2b-128 of tenant, feature, protocol, model and all but the last user turn
    exact_key: str  # hex BLAKE2b-128 of the scope and the normalised last user turn (and what follows)
    query: str  # the last user turn's text (text parts joined): what is embedded and what guards compare
    eligible: bool  # False: never answered from or stored in a cache; `reason` says why
    reason: str | None  # e.g. "tool result continuation", "n > 1", "no user text", "image content"


def request_keys(
    protocol: Literal["openai", "anthropic"],
    body: Mapping[str, Any],
    *,
    tenant: str,
    feature: str,
    model: str,
) -> RequestKeys:
    """The cache keys of a request body as the client sent it, in `protocol`'s wire format."""
    raw = body.get("messages")
    messages: Sequence[Any] = raw if isinstance(raw, list | tuple) else ()
    last = _last_user_turn(protocol, messages)
    reason = _request_reason(protocol, body)
    query = ""
    turn_fields: dict[str, Any] = {}
    if last < 0:
        reason = reason or "no user message"
    else:
        message = messages[last]
        query, content_reason = _turn_text(message.get("content"))
        reason = reason or content_reason
        if last < len(messages) - 1:
            reason = reason or _after_reason(protocol, messages[last + 1 :])
        # the turn's other fields (an OpenAI `name`) are context, not the question
        turn_fields = {k: v for k, v in message.items() if k != "content"}
    if not query and reason is None:
        reason = "no user text"
    preceding = messages[:last] if last >= 0 else messages
    rest = {k: v for k, v in body.items() if k not in _EXCLUDED and not _is_faregate_key(k)}
    try:
        scope_doc = [_SCOPE_VERSION, tenant, feature, protocol, model, rest, list(preceding), turn_fields]
        scope = _digest(_canonical(scope_doc))
        following = list(messages[last + 1 :]) if last >= 0 else []
        exact_key = _digest(_canonical([scope, normalise_query(query), following]))
    except (TypeError, ValueError, RecursionError):  # values no JSON encoder takes, nesting beyond reason
        return RequestKeys("", "", query, False, "request cannot be hashed")
    return RequestKeys(scope, exact_key, query, reason is None, reason)


def normalise_query(text: str) -> str:
    """The last turn's text as the exact key sees it: NFC, whitespace runs as one space, ends stripped."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


# --- the last user turn ---------------------------------------------------------------------------


def _last_user_turn(protocol: str, messages: Sequence[Any]) -> int:
    """Index of the last user turn, -1 if none (anatomy's definition, so both modules agree)."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if not isinstance(message, _MAPPING) or message.get("role") != "user":
            continue
        if protocol == "openai" or _is_anthropic_user_turn(message.get("content")):
            return i
    return -1


def _is_anthropic_user_turn(content: Any) -> bool:
    if isinstance(content, str):
        return True
    if isinstance(content, list):
        return any(isinstance(b, _MAPPING) and b.get("type") != "tool_result" for b in content)
    return False


def _turn_text(content: Any) -> tuple[str, str | None]:
    """(the turn's text, NFC and stripped; why it cannot be cached, or None)."""
    if isinstance(content, str):
        return unicodedata.normalize("NFC", content).strip(), None
    if not isinstance(content, list):
        return "", None if content is None else "unreadable user content"
    texts: list[str] = []
    reason: str | None = None
    for part in content:
        kind = part.get("type") if isinstance(part, _MAPPING) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif reason is None:
            if kind == "tool_result":
                reason = "tool result continuation"
            elif isinstance(kind, str):
                reason = _NOT_TEXT_REASONS.get(kind, f"non-text content ({kind})")
            else:
                reason = "unreadable user content"
    return unicodedata.normalize("NFC", "\n".join(texts)).strip(), reason


def _after_reason(protocol: str, following: Sequence[Any]) -> str:
    """Why messages after the last user turn make a request ineligible."""
    for message in following:
        role = message.get("role") if isinstance(message, _MAPPING) else None
        if role in ("tool", "function") or (protocol == "anthropic" and role == "user"):
            return "tool result continuation"
    return "last message is not a user message"


# --- parameters ---------------------------------------------------------------------------------


def _request_reason(protocol: str, body: Mapping[str, Any]) -> str | None:
    """Why the request's parameters rule out a cached answer, or None."""
    n = body.get("n")
    if isinstance(n, int | float) and not isinstance(n, bool) and n > 1:
        return "n > 1"
    if body.get("logprobs") or body.get("top_logprobs"):
        return "logprobs requested"
    if _forces_tool(body.get("tool_choice")) or _forces_tool(body.get("function_call")):
        return "tool call required by tool_choice"
    modalities = body.get("modalities")
    if body.get("audio") or (isinstance(modalities, list) and "audio" in modalities):
        return "audio output requested"
    if body.get("web_search_options") is not None:
        return "web search (live results)"
    return None


def _forces_tool(choice: Any) -> bool:
    """OpenAI "required" or a named function; Anthropic {"type": "any"} or {"type": "tool"}."""
    if isinstance(choice, str):
        return choice == "required"
    if isinstance(choice, _MAPPING):
        kind = choice.get("type")
        if kind == "allowed_tools":
            allowed = choice.get("allowed_tools")
            return isinstance(allowed, _MAPPING) and allowed.get("mode") == "required"
        return kind in ("function", "custom", "any", "tool") or "name" in choice
    return False


def _is_faregate_key(key: str) -> bool:
    lowered = key.lower()
    return lowered.startswith(("faregate", "x-faregate", "x_faregate"))


# --- hashing ------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """The value as hashed: no `cache_control` anywhere, integral floats as integers, and a content
    that is a single text block written as the plain string it is equivalent to.
    """
    if isinstance(value, _MAPPING):
        cleaned = {k: _clean(v) for k, v in value.items() if k != "cache_control"}
        content = cleaned.get("content")
        if isinstance(content, list) and len(content) == 1:
            cleaned["content"] = _single_text(content[0], content)
        system = cleaned.get("system")
        if isinstance(system, list) and len(system) == 1:
            cleaned["system"] = _single_text(system[0], system)
        return cleaned
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _single_text(block: Any, fallback: list[Any]) -> Any:
    if isinstance(block, dict) and block.keys() == {"type", "text"} and block["type"] == "text":
        return block["text"]
    return fallback


def _canonical(value: Any) -> bytes:
    """Canonical JSON (sorted keys, no spaces); the standard library for what orjson refuses
    (integers beyond 64 bits, non-string keys).
    """
    cleaned = _clean(value)
    try:
        return orjson.dumps(cleaned, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        text = json.dumps(cleaned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8", "surrogatepass")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()
