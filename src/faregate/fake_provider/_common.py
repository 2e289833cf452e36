"""What both fake wire formats share: the scenario, the request log entry, ids and SSE framing."""

from __future__ import annotations

import asyncio
import random
import string
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

# Not a security boundary: ids only need to look like the real ones and not collide in a test run.
_rng = random.Random()
_ALNUM = string.ascii_letters + string.digits
_HEX = "0123456789abcdef"


@dataclass
class Scenario:
    """How the fake answers the next request(s).

    Token counts are what the provider *reports*, not derived from the prompt, so a test can state
    the exact usage it wants the gateway to price. `prompt_tokens` is the whole prompt: OpenAI
    reports it as is (cached part in `prompt_tokens_details`); Anthropic reports the uncached rest
    as `input_tokens` and cache reads/writes apart, as the real APIs do. When the request's
    `max_tokens` (or `max_completion_tokens`) is below `completion_tokens`, the reported output is
    clamped to it and the stop reason becomes `length` / `max_tokens`, again as the real APIs do.

    `replay_body` / `replay_stream` answer with recorded provider bytes instead, served verbatim (a
    regression test pins what a real provider sent, not what this fake would synthesise): a streaming
    request gets `replay_stream` (SSE, cut into one write per event) when it is set, any other request
    `replay_body` (JSON) when it is set, else whichever one is. Errors still come from `status`.
    """

    text: str = "Hello from the fake provider."
    prompt_tokens: int = 1200
    cached_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    completion_tokens: int = 20
    reasoning_tokens: int = 0
    include_usage: bool = True
    status: int = 200
    error_body: dict[str, Any] | None = None
    delay: float = 0.0
    tool_call: bool = False
    chunks: int = 3
    # Beyond the brief's minimum: pacing between stream events (time-to-first-token and
    # incremental-forwarding tests) and the arguments of the tool call.
    chunk_delay: float = 0.0
    tool_input: dict[str, Any] = field(default_factory=lambda: {"location": "Paris"})
    replay_body: bytes | None = None
    replay_stream: bytes | None = None
    # Extra response headers (say `retry-after` on a 429), sent with errors and answers alike.
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def replays(self) -> bool:
        return self.replay_body is not None or self.replay_stream is not None


@dataclass(frozen=True)
class Faults:
    """Random failures for load tests, drawn per request that no queued `Scenario` answers.

    Each rate is the share of requests that fail that way (they add up to at most 1): `error_rate`
    answers a 5xx with the provider's own error body (500/503 for OpenAI, 500/529 for Anthropic);
    `rate_limit_rate` a 429 with `Retry-After: retry_after_s`; `timeout_rate` hangs `hang_s` before
    answering (longer than the gateway's timeout); `disconnect_rate` drops the connection: half-way
    through a stream, before any byte of a full response. `down` drops every connection, as a
    provider whose load balancer has nothing behind it. The same `seed` draws the same faults.
    """

    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_s: float = 1.0
    timeout_rate: float = 0.0
    hang_s: float = 30.0
    disconnect_rate: float = 0.0
    down: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.rate_limit_rate, self.timeout_rate, self.disconnect_rate)
        if any(not 0 <= r <= 1 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be between 0 and 1 and add up to at most 1")

    @property
    def active(self) -> bool:
        return self.down or any(
            (self.error_rate, self.rate_limit_rate, self.timeout_rate, self.disconnect_rate)
        )

    def draw(self, rng: random.Random) -> str | None:
        """The fault for one request: "error", "rate_limit", "timeout", "disconnect" or None."""
        if self.down:
            return "disconnect"
        u = rng.random()
        for kind, rate in (
            ("error", self.error_rate),
            ("rate_limit", self.rate_limit_rate),
            ("timeout", self.timeout_rate),
            ("disconnect", self.disconnect_rate),
        ):
            if u < rate:
                return kind
            u -= rate
        return None


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as the fake saw it; header names are lower-cased (HTTP names are case-blind)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    raw: bytes = b""


@dataclass(frozen=True, slots=True)
class Output:
    """The usage and stop condition of one answer, after clamping to the request's token cap."""

    completion_tokens: int
    reasoning_tokens: int
    truncated: bool


def output_for(scenario: Scenario, cap: object) -> Output:
    completion = max(0, scenario.completion_tokens)
    truncated = False
    if isinstance(cap, int) and not isinstance(cap, bool) and 0 <= cap < completion:
        completion, truncated = cap, True
    return Output(completion, min(max(0, scenario.reasoning_tokens), completion), truncated)


def split_events(raw: bytes) -> list[bytes]:
    """Recorded SSE bytes cut after each blank line; the pieces concatenate to exactly `raw`."""
    frames: list[bytes] = []
    start = 0
    while (end := raw.find(b"\n\n", start)) != -1:
        frames.append(raw[start : end + 2])
        start = end + 2
    if start < len(raw):
        frames.append(raw[start:])
    return frames


def random_id(prefix: str, length: int, alphabet: str = _ALNUM) -> str:
    return prefix + "".join(_rng.choices(alphabet, k=length))


def fingerprint() -> str:
    return random_id("fp_", 10, _HEX)


def now() -> int:
    return int(time.time())


def split_text(text: str, parts: int) -> list[str]:
    """Cut `text` into at most `parts` contiguous pieces whose concatenation is exactly `text`."""
    if not text:
        return []
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    pieces: list[str] = []
    start = 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; OpenAI omits the `event:` line, Anthropic names every event."""
    payload = b"data: " + dumps(data) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + payload if event else payload


async def write_stream(
    request: web.Request,
    frames: list[bytes],
    pause: float,
    headers: dict[str, str],
    cut_after: int | None = None,
) -> web.StreamResponse:
    """Send frames one write each (separate chunks), stopping quietly if the client hangs up;
    `cut_after` frames, drop the connection (a provider failing mid-stream)."""
    headers["Content-Type"] = "text/event-stream; charset=utf-8"
    headers["Cache-Control"] = "no-cache"
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    try:
        for index, frame in enumerate(frames):
            if index == cut_after:
                if request.transport is not None:
                    request.transport.close()
                return response
            if pause and index:
                await asyncio.sleep(pause)
            await response.write(frame)
        await response.write_eof()
    except ConnectionError:
        pass
    return response
