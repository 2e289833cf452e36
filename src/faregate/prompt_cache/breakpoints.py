"""Anthropic `cache_control` breakpoints added by the gateway: where, how many, and with which TTL.

Anthropic caches a request's prefix (tools, then system, then messages) only up to a breakpoint, at
most four a request, and only when that prefix reaches the model's minimum length (`minimums`). A
client that places none pays the full input price for the tools and system prompt it resends on every
turn. FareGate adds breakpoints where the prefix repeats, by priority when slots are short:

1. ``system``: the last block of the system prompt (shared by every request of a feature);
2. ``history``: the last stable conversation turn, the prefix the conversation's next request repeats;
3. ``tools``: the last tool definition (survives a system-prompt change).

FareGate never makes a valid request invalid: a request with four client breakpoints, a client
breakpoint it cannot read or that sits on a block the API rejects, client TTLs out of order, or a
body not shaped as the Messages API expects is passed through untouched, so the provider's own error
(if any) is the truth. The input body is never mutated: only the containers on the paths to the
blocks that receive a breakpoint are copied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from faregate import tokens
from faregate.prompt_cache.minimums import min_cacheable_tokens

__all__ = ["MAX_BREAKPOINTS", "Placement", "Position", "Ttl", "count_client_breakpoints", "place_breakpoints"]

Ttl = Literal["5m", "1h"]
Position = Literal["tools", "system", "history"]

MAX_BREAKPOINTS = 4  # per request, the client's included (the API rejects a fifth)
_PRIORITY: tuple[Position, ...] = ("system", "history", "tools")
# Content blocks that accept `cache_control`; thinking blocks and unknown types are never marked.
_MARKABLE = frozenset({"text", "image", "document", "tool_use", "tool_result"})
_FLAT_RATE = frozenset({"image", "document"})  # counted at a flat rate by `tokens`, whatever their bytes

# Where a breakpoint sits, comparable in request order: (section, index, block). Sections: 0 tools
# (index = tool), 1 system (index = block), 2 messages (index = message, block = content block),
# 3 the top-level `cache_control` (automatic caching: the last cacheable block, after everything).
_Key = tuple[int, int, int]
_TOP_LEVEL: _Key = (3, 0, 0)


@dataclass(frozen=True, slots=True)
class Placement:
    body: dict[str, Any]  # the body to send upstream; the input is never mutated
    added: tuple[Position, ...]  # where FareGate added breakpoints, in request order
    ttls: tuple[Ttl, ...]  # the TTL of each added breakpoint, same order
    client_breakpoints: int  # how many the client had placed (a top-level `cache_control` counts one)


@dataclass(frozen=True, slots=True)
class _Mark:
    """A client breakpoint: where it is and its TTL."""

    key: _Key
    ttl: Ttl


@dataclass(frozen=True, slots=True)
class _Spot:
    """A place FareGate could add a breakpoint."""

    position: Position
    key: _Key


def count_client_breakpoints(body: Mapping[str, Any]) -> int:
    """Breakpoints the client placed: `cache_control` on tools, system blocks, message content blocks
    (and blocks inside a tool result), plus one for a top-level `cache_control`. Never raises.
    """
    return len(_scan(body)[0])


def place_breakpoints(body: Mapping[str, Any], model: str, ttl_for: Callable[[Position], Ttl]) -> Placement:
    """Add breakpoints to `body` for `model`, within the four-breakpoint limit; see the module docstring.

    `ttl_for(position)` is the TTL wanted at a position (`1h` when requests sharing that prefix come
    5 to 60 minutes apart). The API requires TTLs non-increasing in request order, so an added
    breakpoint before a `1h` one becomes `1h`, and one after a client `5m` breakpoint stays `5m`.
    Never raises: an odd body comes back unchanged with `added=()`.
    """
    marks, readable = _scan(body)
    unchanged = Placement(body if isinstance(body, dict) else dict(body), (), (), len(marks))
    slots = MAX_BREAKPOINTS - len(marks)
    if not readable or slots <= 0 or not _in_order([mark.ttl for mark in marks]):
        return unchanged
    try:
        spots = _choose(body, model, slots, marks)
    except (orjson.JSONEncodeError, UnicodeError):  # values no JSON body holds (sets, lone surrogates)
        return unchanged
    placed = _resolve_ttls(spots, [ttl_for(spot.position) for spot in spots], marks)
    if not placed:
        return unchanged
    return Placement(
        body=_write(body, placed),
        added=tuple(spot.position for spot, _ in placed),
        ttls=tuple(ttl for _, ttl in placed),
        client_breakpoints=len(marks),
    )


# --- reading the client's breakpoints -------------------------------------------------------------


def _scan(body: Mapping[str, Any]) -> tuple[list[_Mark], bool]:
    """The client's breakpoints in request order, and whether the body is fit to touch: shaped as the
    Messages API expects, every client breakpoint readable and on a block that accepts one.
    """
    marks: list[_Mark] = []
    fit = True

    def mark(key: _Key, holder: Mapping[str, Any], accepts: bool = True) -> None:
        nonlocal fit
        control = holder.get("cache_control")
        if control is None:  # absent, or serialised as null by an SDK
            return
        ttl = _client_ttl(control)
        if ttl is None or not accepts:
            fit = False
        marks.append(_Mark(key, ttl or "5m"))

    tools = body.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if isinstance(tool, Mapping):
                mark((0, i, 0), tool)
            else:
                fit = False
    elif tools is not None:
        fit = False

    system = body.get("system")
    if isinstance(system, list):
        for j, block in enumerate(system):
            if isinstance(block, Mapping):
                mark((1, j, 0), block, _accepts_cache_control(block))
            else:
                fit = False
    elif system is not None and not isinstance(system, str):
        fit = False

    messages = body.get("messages")
    if not isinstance(messages, list):
        fit = False
        messages = []
    for m, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("cache_control") is not None:
            fit = False
            continue
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            fit = False
            continue
        for b, block in enumerate(content):
            if not isinstance(block, Mapping):
                fit = False
                continue
            inner = block.get("content")
            if block.get("type") == "tool_result" and isinstance(inner, list):
                for part in inner:  # inside the result, so before the result block's own end
                    if isinstance(part, Mapping):
                        mark((2, m, b), part, _accepts_cache_control(part))
            mark((2, m, b), block, _accepts_cache_control(block))

    mark(_TOP_LEVEL, body)
    return marks, fit


def _client_ttl(control: Any) -> Ttl | None:
    if not isinstance(control, Mapping) or control.get("type") != "ephemeral":
        return None
    ttl = control.get("ttl", "5m")  # no ttl is the API's default, 5 minutes
    if ttl == "5m":
        return "5m"
    if ttl == "1h":
        return "1h"
    return None


def _accepts_cache_control(block: Mapping[str, Any]) -> bool:
    """False for blocks the API refuses a breakpoint on; unknown types get the benefit of the doubt."""
    kind = block.get("type")
    if kind in ("thinking", "redacted_thinking"):
        return False
    return kind != "text" or _non_blank(block.get("text"))


def _in_order(ttls: list[Ttl]) -> bool:
    """The API's rule: every `1h` breakpoint comes before any `5m` one."""
    return "1h" not in ttls[ttls.index("5m") :] if "5m" in ttls else True


# --- choosing where ---------------------------------------------------------------------------------


def _choose(body: Mapping[str, Any], model: str, slots: int, marks: list[_Mark]) -> list[_Spot]:
    """Spots by priority, up to `slots`, skipping those a client breakpoint covers or whose prefix is
    under the model's minimum; in request order. A prefix is measured only when a slot is left for it.
    """
    covered = {mark.key for mark in marks}
    automatic = _TOP_LEVEL in covered  # the client caches the conversation itself
    meter = _Meter(model, min_cacheable_tokens(model))
    chosen: list[_Spot] = []
    for position in _PRIORITY:
        if len(chosen) == slots:
            break
        if position == "history" and automatic:
            continue
        spot = _spot(body, position)
        if spot is not None and spot.key not in covered and meter.reaches(body, spot.key):
            chosen.append(spot)
    return sorted(chosen, key=lambda spot: spot.key)


def _spot(body: Mapping[str, Any], position: Position) -> _Spot | None:
    if position == "tools":
        tools = body.get("tools")
        return _Spot("tools", (0, len(tools) - 1, 0)) if tools else None
    if position == "system":
        block = _last_markable(body.get("system"))
        return None if block is None else _Spot("system", (1, block, 0))
    messages: list[Mapping[str, Any]] = body["messages"]
    target = _stable_turn_end(messages)
    if target is None:
        return None
    block = _last_markable(messages[target].get("content"))
    return None if block is None else _Spot("history", (2, target, block))


def _stable_turn_end(messages: list[Mapping[str, Any]]) -> int | None:
    """The last message the conversation's next request will repeat byte for byte, if any.

    Before the last user turn (the last user message that is not only tool results), that is the end
    of the history; when an agent loop (assistant tool use, user tool results) follows that turn, the
    whole loop so far is repeated by the loop's next iteration. A trailing assistant message is a
    prefill, which the reply rewrites, so it never counts.
    """
    end = len(messages)
    if end and messages[-1].get("role") == "assistant":
        end -= 1
    turn = next((i for i in range(end - 1, -1, -1) if _is_user_turn(messages[i])), None)
    if turn is None:
        return None
    target = end - 1 if turn < end - 1 else turn - 1
    return target if target >= 0 else None


def _is_user_turn(message: Mapping[str, Any]) -> bool:
    if message.get("role") != "user":
        return False
    content: Any = message.get("content")  # a string or a list of blocks: `_scan` checked
    return isinstance(content, str) or any(block.get("type") != "tool_result" for block in content)


def _last_markable(content: Any) -> int | None:
    """Index of the last block that can take a breakpoint (0 for a non-blank string)."""
    if isinstance(content, str):
        return 0 if _non_blank(content) else None
    if not isinstance(content, list):
        return None
    for i in range(len(content) - 1, -1, -1):
        block = content[i]
        kind = block.get("type")
        if isinstance(kind, str) and kind in _MARKABLE and (kind != "text" or _non_blank(block.get("text"))):
            return i
    return None


def _non_blank(text: Any) -> bool:
    return isinstance(text, str) and text != "" and not text.isspace()


# --- measuring prefixes -----------------------------------------------------------------------------

# A prefix part: ("tool", definition), ("system", str or blocks), ("message", content).
_Part = tuple[Literal["tool", "system", "message"], Any]


class _Meter:
    """Does the prefix through a spot reach the minimum? Measured lazily, cheapest test first.

    A token covers at least one UTF-8 byte, so a prefix with fewer bytes than the minimum (images at
    their flat rate) cannot qualify and is never tokenized. Otherwise tokens are counted part by part
    in request order (memoised by `tokens` for repeated texts) and counting stops at the minimum.
    Tools count as their JSON, system and messages as `tokens.count_content_anthropic` counts them,
    each message with its framing (`tokens.PER_MESSAGE_TOKENS`).
    """

    def __init__(self, model: str, minimum: int) -> None:
        self.model = model
        self.minimum = minimum

    def reaches(self, body: Mapping[str, Any], key: _Key) -> bool:
        total = 0
        for part in _prefix(body, key):
            total += self._bytes(part)
            if total >= self.minimum:
                break
        else:
            return False
        total = 0
        for part in _prefix(body, key):
            total += self._tokens(part)
            if total >= self.minimum:
                return True
        return False

    def _bytes(self, part: _Part) -> int:
        kind, value = part
        if kind == "tool":
            return len(orjson.dumps(value))
        framing = tokens.PER_MESSAGE_TOKENS if kind == "message" else 0
        return framing + _byte_bound(value)

    def _tokens(self, part: _Part) -> int:
        kind, value = part
        if kind == "tool":
            return tokens.count_text(self.model, orjson.dumps(value).decode())
        framing = tokens.PER_MESSAGE_TOKENS if kind == "message" else 0
        return framing + tokens.count_content_anthropic(self.model, value)


def _prefix(body: Mapping[str, Any], key: _Key) -> Iterator[_Part]:
    """The parts of the request from its start through the block at `key`."""
    section, index, block = key
    for tool in body.get("tools") or ():
        yield ("tool", tool)  # a tools spot is always the last tool
    if section == 0:
        return
    if system := body.get("system"):
        yield ("system", system)  # blocks after the system spot are blank: no tokens
    if section == 1:
        return
    messages = body["messages"]
    for message in messages[:index]:
        yield ("message", message.get("content"))
    content = messages[index].get("content")
    yield ("message", content if isinstance(content, str) else content[: block + 1])


def _byte_bound(content: Any) -> int:
    """At least `tokens.count_content_anthropic(_, content)` for any model: UTF-8 bytes of what it
    counts as text, plus the flat rate of images and binary documents. Cheaper than tokenizing.
    """
    if content is None:
        return 0
    if isinstance(content, str):
        return _utf8_len(content)
    if not isinstance(content, list):
        return len(orjson.dumps(content))
    total = 0
    for block in content:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text" or kind == "thinking":
            total += _utf8_len(str(block.get(kind, "")))
        elif isinstance(kind, str) and kind in _FLAT_RATE:
            total += tokens.ANTHROPIC_IMAGE_TOKENS
            source = block.get("source")
            if isinstance(source, Mapping):  # a text document counts its data
                total += _utf8_len(str(source.get("data", "")))
        elif kind == "tool_use":
            total += _utf8_len(str(block.get("name", ""))) + len(orjson.dumps(block.get("input")))
        elif kind == "tool_result":
            total += _byte_bound(block.get("content"))
        else:  # not counted today; its JSON bounds whatever a future count of it would be
            total += len(orjson.dumps(block))
    return total


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


# --- TTLs and writing -------------------------------------------------------------------------------


def _resolve_ttls(spots: list[_Spot], wanted: list[Ttl], marks: list[_Mark]) -> list[tuple[_Spot, Ttl]]:
    """TTLs that keep the whole request in the API's order (all `1h` before any `5m`).

    Client breakpoints are fixed: an added one is `1h` when any later breakpoint is `1h` (an earlier
    added one is upgraded rather than a later one downgraded: both prefixes are worth keeping an hour),
    and `5m` after a client `5m` one. With the client's own TTLs in order, both never apply at once.
    """
    placed: list[tuple[_Spot, Ttl]] = []
    later_hour = False
    for spot, want in zip(reversed(spots), reversed(wanted), strict=True):
        floor_hour = later_hour or any(m.ttl == "1h" and m.key > spot.key for m in marks)
        capped = any(m.ttl == "5m" and m.key < spot.key for m in marks)
        if floor_hour and capped:  # unreachable while the client's order is valid; never add a wrong one
            continue
        ttl: Ttl = "1h" if floor_hour else "5m" if capped else want
        later_hour = later_hour or ttl == "1h"
        placed.append((spot, ttl))
    placed.reverse()
    return placed


def _cache_control(ttl: Ttl) -> dict[str, str]:
    # 5m is the API's default, written without `ttl` as most clients do
    return {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else {"type": "ephemeral"}


def _write(body: Mapping[str, Any], placed: list[tuple[_Spot, Ttl]]) -> dict[str, Any]:
    """A copy of `body` with the breakpoints; only containers on the touched paths are copied."""
    out = dict(body)
    for spot, ttl in placed:  # at most one spot per section
        control = _cache_control(ttl)
        section, index, block = spot.key
        if section == 0:
            tools = list(out["tools"])
            tools[index] = {**tools[index], "cache_control": control}
            out["tools"] = tools
        elif section == 1:
            out["system"] = _marked(out["system"], index, control)
        else:
            messages = list(out["messages"])
            message = messages[index]
            messages[index] = {**message, "content": _marked(message["content"], block, control)}
            out["messages"] = messages
    return out


def _marked(content: str | list[Any], block: int, control: dict[str, str]) -> list[Any]:
    """`content` with `control` on `block`; a string becomes one text block (the same tokens)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content, "cache_control": control}]
    blocks = list(content)
    blocks[block] = {**blocks[block], "cache_control": control}
    return blocks
