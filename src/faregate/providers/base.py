"""The shape every outbound provider adapter has: where to send, what to send, how to read usage.

Adapters only translate; cost is computed elsewhere from the `Usage` they return, so a pricing bug
is fixed once, not provider by provider.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from faregate.call import Call, Protocol, Usage
from faregate.config import ProviderSettings

# Upstream response headers a client (or its SDK's retry logic) may rely on.
PASS_THROUGH_HEADERS = (
    "content-type",
    "retry-after",
    "x-request-id",
    "request-id",
    "openai-processing-ms",
    "openai-version",
    "anthropic-organization-id",
)
PASS_THROUGH_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")


class StreamTap(ABC):
    """Reads an SSE stream on its way to the client: extracts usage, may hide events.

    `feed` takes bytes as they arrive (events may be split across reads) and returns the bytes to
    forward now; partial events are held until complete so a hidden event is never half-sent.
    """

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.model: str | None = None
        self.text: list[str] = []
        self.stop_reason: str | None = None  # finish_reason / stop_reason, once the stream says it
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        data = self._pending + data
        if b"\r" in data:  # some OpenAI-compatible servers frame SSE with CRLF; normalise to LF
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data
            return b""
        complete, self._pending = data[: end + 2], data[end + 2 :]
        out = [event for event in complete.split(b"\n\n") if event and self.keep(event)]
        return b"\n\n".join(out) + b"\n\n" if out else b""

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest

    @abstractmethod
    def keep(self, event: bytes) -> bool:
        """Inspect one complete SSE event (without its trailing blank line); False hides it."""


def sse_data(event: bytes) -> bytes | None:
    """The `data:` payload of one SSE event (FareGate's providers send one data line per event)."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


class Provider(ABC):
    """One configured upstream. `protocol` is the wire format it speaks natively."""

    protocol: Protocol

    def __init__(self, name: str, settings: ProviderSettings, default_timeout_s: float) -> None:
        self.name = name
        self.settings = settings
        self.base_url = settings.url
        self.api_key = settings.api_key()
        self.timeout_s = settings.timeout_s or default_timeout_s
        # genai-prices' provider id; an OpenAI-compatible server is priced by model name alone.
        self.pricing_id = settings.type if settings.type in ("openai", "anthropic") else None

    @abstractmethod
    def endpoint(self) -> str: ...

    @abstractmethod
    def request_headers(self, call: Call) -> dict[str, str]: ...

    @abstractmethod
    def prepare_body(self, call: Call) -> dict[str, Any]:
        """The body to send upstream: the client's, with the upstream model and FareGate's needs."""

    @abstractmethod
    def read_response(self, body: dict[str, Any]) -> tuple[Usage | None, str | None, str]:
        """(usage, model used, output text) from a non-streaming response body."""

    @abstractmethod
    def stream_tap(self, call: Call) -> StreamTap: ...


def int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
