"""Opt-in simulation of provider prompt caching: usage derived from the request, billed as the real APIs bill.

Off by default, because a Scenario's token counts are what a test *states*. Turned on
(`FakeProvider(simulate_prompt_cache=True)` or `fake.prompt_cache = True`), the fake counts the prompt
itself and remembers what earlier requests cached, so a gateway test can show a write followed by a
read, a volatile span that spoils a prefix, or a TTL that lapsed, without scripting the numbers.
Completion tokens still come from the scenario.

Tokens are the fake's own and deliberately crude, so the fake stays an oracle independent of
FareGate's tokens.py: **one token per 4 bytes, rounded up**, of a canonical serialisation (orjson,
sorted keys). `cache_control` markers are left out of it: they say what to cache, not what is sent.

Anthropic (explicit caching). The prompt is a list of blocks in the order the API caches them: each
tool definition, each system block, each content block of each message (a string is one text block;
a message block is serialised with its role). A prompt's tokens are the sum of its blocks' tokens.
Breakpoints are the blocks carrying `cache_control`; a top-level `cache_control` marks the last block.
For each breakpoint the fake checks the prefixes ending at it and at each of the 20 block boundaries
before it (the real API's look-back), and reads the longest prefix still cached (A). Then, as the
API documents for mixed TTLs: B = the prefix at the last 1-hour breakpoint after A (else A),
C = the prefix at the last breakpoint after A (else A); 1-hour writes are B - A, 5-minute writes
C - B, `input_tokens` the rest. A prefix shorter than the model's minimum (1,024 tokens; 2,048 for
Haiku 3 / 3.5; 4,096 for Haiku 4.5 and Opus 4.5 onwards) is neither written nor read. Entries are kept
per model for their TTL (`"ttl": "1h"`, else 5 minutes), refreshed on each hit. Not simulated: the
4-breakpoint limit, and invalidation by `tool_choice`, images or thinking settings.

OpenAI (automatic caching). The prompt is each tool definition then each message, one canonical JSON
line each; a token is 4 bytes of it. Requests go to a cache chosen by `prompt_cache_key` when present,
else by a hash of the first 256 tokens. The cached part is the longest common prefix with a prompt
that cache holds, in whole tokens, rounded down to a multiple of 128 and only from 1,024 tokens on.
Prompts of 1,024 tokens or more are kept for 5 minutes after their last use (24 hours with
`prompt_cache_retention: "24h"`). OpenAI reports no cache writes.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from ._common import Scenario

BYTES_PER_TOKEN = 4
ANTHROPIC_LOOKBACK_BLOCKS = 20
OPENAI_MIN_TOKENS = 1024
OPENAI_INCREMENT = 128
OPENAI_ROUTE_TOKENS = 256
FIVE_MINUTES = 300.0
ONE_HOUR = 3600.0
OPENAI_EXTENDED = 24 * ONE_HOUR
# Bounds so a long demo run cannot grow the fake without limit (reset() empties everything).
_MAX_ANTHROPIC_ENTRIES = 4096
_MAX_PROMPTS_PER_ROUTE = 32

_HAIKU = re.compile(r"haiku-(\d)(?!\d)")  # one digit: not the date in claude-3-haiku-20240307
_OPUS = re.compile(r"opus-(\d)(?:-(\d{1,2}))?(?!\d)")


def tokens(data: bytes) -> int:
    """The fake's tokenizer: ceil(bytes / 4)."""
    return -(-len(data) // BYTES_PER_TOKEN)


def canonical(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def anthropic_minimum(model: str) -> int:
    """The shortest cacheable prefix for a Claude model, by its documented family."""
    if "haiku" in model:
        major = _HAIKU.search(model)
        return 4096 if major and int(major.group(1)) >= 4 else 2048  # claude-3(-5)-haiku: 2,048
    opus = _OPUS.search(model)
    if opus:
        version = (int(opus.group(1)), int(opus.group(2) or 0))
        if version >= (4, 5):
            return 4096
    return 1024


@dataclass(frozen=True, slots=True)
class CacheUsage:
    """A prompt's size and how much of it the provider read from or wrote to its cache."""

    prompt_tokens: int
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0

    def applied_to(self, scenario: Scenario) -> Scenario:
        return replace(
            scenario,
            prompt_tokens=self.prompt_tokens,
            cached_tokens=self.cache_read,
            cache_write_5m_tokens=self.cache_write_5m,
            cache_write_1h_tokens=self.cache_write_1h,
        )


@dataclass(slots=True)
class _Entry:
    ttl: float
    expires: float


@dataclass(slots=True)
class _Prompt:
    data: bytes
    ttl: float
    expires: float


@dataclass(frozen=True, slots=True)
class _Block:
    data: bytes
    cache_control: dict[str, Any] | None


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _block(kind: str, inner: Any, role: Any = None) -> _Block:
    """Serialise one block without its `cache_control`, remembering the marker apart."""
    marker: dict[str, Any] | None = None
    if isinstance(inner, dict):
        found = inner.get("cache_control")
        marker = found if isinstance(found, dict) else None
        inner = {k: v for k, v in inner.items() if k != "cache_control"}
    wrapper: dict[str, Any] = {kind: inner} if role is None else {"role": role, kind: inner}
    return _Block(canonical(wrapper), marker)


def _text_blocks(value: Any) -> list[Any]:
    """A string stands for one text block, as the API treats it."""
    return [{"type": "text", "text": value}] if isinstance(value, str) else _items(value)


def anthropic_blocks(body: dict[str, Any]) -> list[_Block]:
    blocks = [_block("tool", tool) for tool in _items(body.get("tools"))]
    blocks += [_block("system", part) for part in _text_blocks(body.get("system"))]
    for message in _items(body.get("messages")):
        if isinstance(message, dict):
            role = message.get("role")
            blocks += [_block("content", part, role) for part in _text_blocks(message.get("content"))]
    top = body.get("cache_control")
    if isinstance(top, dict) and blocks and blocks[-1].cache_control is None:
        blocks[-1] = _Block(blocks[-1].data, top)
    return blocks


def _ttl(marker: dict[str, Any] | None) -> float:
    return ONE_HOUR if marker is not None and marker.get("ttl") == "1h" else FIVE_MINUTES


def openai_prompt(body: dict[str, Any]) -> bytes:
    parts = [*_items(body.get("tools")), *_items(body.get("messages"))]
    return b"".join(canonical(part) + b"\n" for part in parts)


def common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix, by binary search on slice equality (C-speed compares)."""
    left, right = memoryview(a), memoryview(b)
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if left[:mid] == right[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass
class PromptCache:
    """Both providers' caches, with a clock a test can move forward instead of sleeping.

    Used from the server's loop and the test's thread, so every method holds the lock.
    """

    _anthropic: dict[bytes, _Entry] = field(default_factory=dict)
    _openai: dict[tuple[str, str], list[_Prompt]] = field(default_factory=dict)
    _offset: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def clear(self) -> None:
        with self._lock:
            self._anthropic.clear()
            self._openai.clear()
            self._offset = 0.0

    def usage(self, protocol: str, body: dict[str, Any]) -> CacheUsage:
        with self._lock:
            if protocol == "anthropic":
                return self._anthropic_usage(body)
            return self._openai_usage(body)

    def _anthropic_usage(self, body: dict[str, Any]) -> CacheUsage:
        now = self.now()
        self._anthropic = {key: e for key, e in self._anthropic.items() if e.expires > now}
        model = str(body.get("model", ""))
        blocks = anthropic_blocks(body)
        digest = hashlib.sha256(model.encode()).digest()
        hashes: list[bytes] = []
        ends: list[int] = []  # tokens of the prefix ending with each block
        total = 0
        for block in blocks:
            digest = hashlib.sha256(digest + block.data).digest()
            total += tokens(block.data)
            hashes.append(digest)
            ends.append(total)
        breakpoints = [i for i, block in enumerate(blocks) if block.cache_control is not None]
        hit = -1
        for point in breakpoints:
            for i in range(point, max(-1, point - ANTHROPIC_LOOKBACK_BLOCKS - 1), -1):
                if i > hit and hashes[i] in self._anthropic:
                    hit = i
                    break
        read = ends[hit] if hit >= 0 else 0
        minimum = anthropic_minimum(model)
        writes = [i for i in breakpoints if i > hit and ends[i] >= minimum]
        long_lived = [i for i in writes if _ttl(blocks[i].cache_control) == ONE_HOUR]
        b = ends[long_lived[-1]] if long_lived else read
        c = ends[writes[-1]] if writes else read
        for i in breakpoints:
            if i <= hit and (entry := self._anthropic.get(hashes[i])) is not None:
                entry.expires = now + entry.ttl
        if hit >= 0:
            entry = self._anthropic[hashes[hit]]
            entry.expires = now + entry.ttl
        for i in writes:
            if len(self._anthropic) >= _MAX_ANTHROPIC_ENTRIES:
                del self._anthropic[min(self._anthropic, key=lambda k: self._anthropic[k].expires)]
            ttl = _ttl(blocks[i].cache_control)
            self._anthropic[hashes[i]] = _Entry(ttl, now + ttl)
        return CacheUsage(total, read, cache_write_5m=c - b, cache_write_1h=b - read)

    def _openai_usage(self, body: dict[str, Any]) -> CacheUsage:
        now = self.now()
        model = str(body.get("model", ""))
        prompt = openai_prompt(body)
        size = tokens(prompt)
        key = body.get("prompt_cache_key")
        if isinstance(key, str) and key:
            route = (model, "key:" + key)
        else:
            head = prompt[: OPENAI_ROUTE_TOKENS * BYTES_PER_TOKEN]
            route = (model, "prefix:" + hashlib.sha256(head).hexdigest())
        kept = [p for p in self._openai.get(route, []) if p.expires > now]
        best: _Prompt | None = None
        common = 0
        for candidate in kept:
            length = common_prefix(prompt, candidate.data)
            if length > common:
                best, common = candidate, length
        common_tokens = common // BYTES_PER_TOKEN // OPENAI_INCREMENT * OPENAI_INCREMENT
        cached = common_tokens if common_tokens >= OPENAI_MIN_TOKENS else 0
        if cached and best is not None:
            best.expires = now + best.ttl
        if size >= OPENAI_MIN_TOKENS:
            ttl = OPENAI_EXTENDED if body.get("prompt_cache_retention") == "24h" else FIVE_MINUTES
            kept = [p for p in kept if p.data != prompt][-(_MAX_PROMPTS_PER_ROUTE - 1) :]
            kept.append(_Prompt(prompt, ttl, now + ttl))
        if kept:
            self._openai[route] = kept
        else:
            self._openai.pop(route, None)
        return CacheUsage(size, cache_read=cached)
