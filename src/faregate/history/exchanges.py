"""A request's messages as *exchanges*: the unit every history policy keeps or drops.

An exchange is one user turn and everything after it up to the next user turn: the assistant's
replies, its tool calls, and the tool results (OpenAI `tool`/`function` messages; Anthropic user
messages made only of `tool_result` blocks, which are not user turns, as in `faregate.anatomy`).
Policies choose whole exchanges, so none can send a tool call without its result or a result
without its call. (An Anthropic user turn that also carries `tool_result` blocks answers the calls
before it, so it does not open an exchange: it stays in the one whose calls it answers.) For
Anthropic every exchange starts with a user message and, in a valid body, ends with an assistant
one, so any subset of exchanges keeps the roles alternating.

Messages a policy must never drop are *pinned*: OpenAI `system`/`developer` messages wherever they
are, and anything before the first user turn. The exchange holding the last user turn (`current`)
is always sent; the exchanges before it are `history`.

Each exchange carries a plain-text rendering (for embeddings and summaries), a digest of that text
(stable across processes and across the client re-sending the same turn, so summaries and vectors
can be stored by it) and its token cost counted exactly as `faregate.tokens` counts messages, so
that a policy's "tokens before / after" add up to what `count_messages_*` says about the body.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from faregate.tokens import REPLY_PRIMING_TOKENS, count_messages_anthropic, count_messages_openai, count_text

__all__ = ["Conversation", "Exchange", "Protocol", "role_problem", "split_conversation", "turn_text"]

Protocol = Literal["openai", "anthropic"]

_OPENAI_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_ANTHROPIC_ROLES = frozenset({"user", "assistant"})


@dataclass(slots=True, frozen=True)
class Exchange:
    """One user turn and what followed it; `messages[start:end]` minus pinned messages."""

    start: int  # index in body["messages"] of its first message
    end: int  # exclusive
    text: str  # "user: ...\nassistant: ..." (text parts, tool calls as name + JSON args, tool results)
    digest: str  # 32 hex chars, BLAKE2b of `text`
    tokens: int  # what its (non-pinned) messages cost, framing included, as faregate.tokens counts them


@dataclass(slots=True)
class Conversation:
    """A request body's messages seen as pinned messages, history exchanges and the current one."""

    protocol: Protocol
    model: str
    messages: list[Any]  # body["messages"] itself (never mutated)
    pinned: tuple[int, ...]  # indices always kept
    history: list[Exchange]  # completed exchanges before the current one
    current: Exchange | None  # the exchange holding the last user turn (always kept)
    query: str  # text of the last user turn


def split_conversation(protocol: Protocol, body: Mapping[str, Any], model: str) -> Conversation | None:
    """The body's messages as exchanges; None when `messages` is not a list or holds no user turn.

    Never raises on a parsed body: odd messages (not objects, unknown content) are rendered and
    counted as far as they can be, since `role_problem` is the place that judges them.
    """
    if protocol not in ("openai", "anthropic"):
        raise ValueError(f"unknown protocol {protocol!r}; expected 'openai' or 'anthropic'")
    messages = body.get("messages") if isinstance(body, Mapping) else None
    if not isinstance(messages, list):
        return None
    turns = [i for i, m in enumerate(messages) if _is_user_turn(protocol, m)]
    if not turns:
        return None
    pinned = list(range(turns[0]))
    if protocol == "openai":
        pinned += [
            i
            for i in range(turns[0], len(messages))
            if isinstance(messages[i], Mapping) and messages[i].get("role") in ("system", "developer")
        ]
    pinned_set = frozenset(pinned)
    starts = [turns[0], *(i for i in turns[1:] if _opens_exchange(protocol, messages[i]))]
    bounds = [*starts, len(messages)]
    exchanges = [
        _exchange(protocol, model, messages, start, end, pinned_set)
        for start, end in itertools.pairwise(bounds)
    ]
    return Conversation(
        protocol=protocol,
        model=model,
        messages=messages,
        pinned=tuple(sorted(pinned_set)),
        history=exchanges[:-1],
        current=exchanges[-1],
        query=_text(messages[turns[-1]]),
    )


def turn_text(conv: Conversation, exchange: Exchange) -> str:
    """The words of the user turn that opens `exchange` (what `query` is for the current one).

    Retrieval can score an exchange by this as well as by its whole `text`: a short question is
    often closer to an earlier question than to that question's long answer (`Params.match`).
    """
    return _text(conv.messages[exchange.start])


def role_problem(protocol: Protocol, messages: Sequence[Any]) -> str | None:
    """Why `messages` already break the provider's rules (a short reason), or None.

    A history policy must not be blamed for a body that was invalid before it touched it, and must
    not turn a valid one invalid: the stage checks the client's messages before rewriting and the
    composed ones after.
    """
    roles = _ANTHROPIC_ROLES if protocol == "anthropic" else _OPENAI_ROLES
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            return f"message {i} is not an object"
        if message.get("role") not in roles:
            return f"message {i} has an unknown role {message.get('role')!r}"
    if protocol == "anthropic":
        return _anthropic_problem(messages)
    return _openai_problem(messages)


# --- rules ----------------------------------------------------------------------------------------


def _anthropic_problem(messages: Sequence[Mapping[str, Any]]) -> str | None:
    if messages and messages[0].get("role") != "user":
        return "the first message is not a user message"
    for i, message in enumerate(messages):
        if i and message.get("role") == messages[i - 1].get("role"):
            return f"messages {i - 1} and {i} are both {message.get('role')} messages"
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        results = [b for b in content if isinstance(b, Mapping) and b.get("type") == "tool_result"]
        if not results:
            continue
        calls = _anthropic_tool_use_ids(messages[i - 1]) if i else set()
        for block in results:
            if block.get("tool_use_id") not in calls:
                call_id = block.get("tool_use_id")
                return f"message {i} has a tool_result for {call_id!r}, not a tool_use of the message before"
    return None


def _anthropic_tool_use_ids(message: Mapping[str, Any]) -> set[Any]:
    content = message.get("content")
    if message.get("role") != "assistant" or not isinstance(content, list):
        return set()
    return {b.get("id") for b in content if isinstance(b, Mapping) and b.get("type") == "tool_use"}


def _openai_problem(messages: Sequence[Mapping[str, Any]]) -> str | None:
    open_calls: set[Any] = set()  # tool_call ids of the nearest assistant message not yet answered
    calls: set[Any] = set()  # all tool_call ids of that assistant message
    caller = -1
    for i, message in enumerate(messages):
        role = message.get("role")
        if role in ("user", "assistant"):
            if open_calls:
                return f"message {caller} has tool calls with no tool answer: {sorted(map(str, open_calls))}"
            calls, caller = set(), -1
            if role == "assistant":
                tool_calls = message.get("tool_calls")
                tool_calls = tool_calls if isinstance(tool_calls, list) else ()
                calls = {c.get("id") for c in tool_calls if isinstance(c, Mapping)}
                open_calls, caller = set(calls), i
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in calls:
                return f"message {i} answers tool call {call_id!r}, not one of the previous assistant message"
            open_calls.discard(call_id)
    return None  # calls still open at the very end: an agent loop the client has not answered yet


# --- exchanges ------------------------------------------------------------------------------------


def _is_user_turn(protocol: Protocol, message: Any) -> bool:
    if not isinstance(message, Mapping) or message.get("role") != "user":
        return False
    if protocol == "openai":
        return True
    content = message.get("content")
    if isinstance(content, str):
        return True
    if isinstance(content, list):
        return any(isinstance(b, Mapping) and b.get("type") != "tool_result" for b in content)
    return False


def _opens_exchange(protocol: Protocol, message: Any) -> bool:
    """A user turn that starts an exchange: an Anthropic turn that also carries tool results answers
    the previous exchange's tool calls, so it stays in that exchange (else a policy could keep the
    results and drop their calls).
    """
    if protocol == "anthropic" and isinstance(message.get("content"), list):
        return not any(isinstance(b, Mapping) and b.get("type") == "tool_result" for b in message["content"])
    return True


# A chat resends the same earlier exchanges with every request: (text, digest, tokens) of plain
# exchanges (messages of only `role` and string `content`) are remembered by their exact strings,
# so a 50-exchange conversation costs ~50 tuple hashes instead of ~50 renders, hashes and counts.
_MEMO: dict[tuple[Any, ...], tuple[str, str, int]] = {}
_MEMO_MAX = 65_536
_PLAIN_KEYS = frozenset({"role", "content"})


def _exchange(
    protocol: Protocol, model: str, messages: list[Any], start: int, end: int, pinned: frozenset[int]
) -> Exchange:
    own = [messages[i] for i in range(start, end) if i not in pinned]
    key = _plain_key(protocol, model, own)
    known = _MEMO.get(key) if key is not None else None
    if known is None:
        text = "\n".join(line for message in own for line in _render(protocol, message))
        known = (
            text,
            hashlib.blake2b(text.encode(), digest_size=16).hexdigest(),
            _count(protocol, model, own),
        )
        if key is not None:
            if len(_MEMO) >= _MEMO_MAX:
                _MEMO.clear()
            _MEMO[key] = known
    text, digest, tokens = known
    return Exchange(start=start, end=end, text=text, digest=digest, tokens=tokens)


def _plain_key(protocol: Protocol, model: str, own: list[Any]) -> tuple[Any, ...] | None:
    parts: list[Any] = [protocol, model]
    for message in own:
        if not isinstance(message, dict) or message.keys() != _PLAIN_KEYS:
            return None
        role, content = message["role"], message["content"]
        if not isinstance(role, str) or not isinstance(content, str):
            return None
        parts += (role, content)
    return tuple(parts)


def _render(protocol: Protocol, message: Any) -> list[str]:
    """One message as "role: text" lines: text parts, tool calls as `name args`, tool results."""
    if not isinstance(message, Mapping):
        return []
    role = str(message.get("role", ""))
    content = message.get("content")
    lines: list[str] = []
    if protocol == "openai" or not isinstance(content, list):
        speaker = "tool" if role in ("tool", "function") else role
        if text := content_text(content):
            lines.append(f"{speaker}: {text}")
        calls = message.get("tool_calls")
        functions = (
            [c.get("function") for c in calls if isinstance(c, Mapping)] if isinstance(calls, list) else []
        )
        functions.append(message.get("function_call"))
        for function in functions:
            if isinstance(function, Mapping):
                lines.append(f"{role}: {function.get('name', '')} {function.get('arguments', '')}".rstrip())
        return lines
    for block in content:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            lines.append(f"{role}: {block['text']}")
        elif kind == "tool_use":
            lines.append(f"{role}: {block.get('name', '')} {_json(block.get('input'))}")
        elif kind == "tool_result" and (text := content_text(block.get("content"))):
            lines.append(f"tool: {text}")
    return lines


def _text(message: Any) -> str:
    """The words of a user turn: its text, without tool results or images."""
    return content_text(message.get("content")) if isinstance(message, Mapping) else ""


def content_text(content: Any) -> str:
    """The text parts of a message's content (a string, or blocks of which `text` ones count)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text"
        )
    return ""


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _count(protocol: Protocol, model: str, messages: list[Any]) -> int:
    """The messages' share of `count_messages_*` (which sums message by message) without the reply
    priming; message by message, with a JSON fallback, for content it cannot encode.
    """
    counter = count_messages_anthropic if protocol == "anthropic" else count_messages_openai
    try:
        return counter(model, {"messages": messages}) - REPLY_PRIMING_TOKENS
    except (TypeError, ValueError, RecursionError):
        pass
    total = 0
    for message in messages:
        try:
            total += counter(model, {"messages": [message]}) - REPLY_PRIMING_TOKENS
        except (TypeError, ValueError, RecursionError):
            total += count_text(model, _json(message))
    return total
