"""One SDK call being watched: the request as sent, then its response or its failure, recorded once.

Everything here runs on the application's thread, so it only copies what it needs; the pricing and the
anatomy run later on the recorder's thread (`faregate.sdk.events`). Nothing here may raise into the
application: a bug in recording is logged, and the call goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson

from faregate.call import ATTRIBUTION_DIMENSIONS, UNATTRIBUTED, Attribution, Protocol, Usage
from faregate.pipeline.identify import HEADER_PREFIX, MAX_VALUE_LENGTH
from faregate.providers.anthropic import usage_from_anthropic
from faregate.providers.openai import usage_from_openai
from faregate.sdk.events import Observed
from faregate.sdk.process import submit

log = logging.getLogger("faregate.sdk")
# Arguments of the SDKs' methods that are not part of the request body.
_NOT_BODY = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


@dataclasses.dataclass(frozen=True, slots=True)
class Tracker:
    """How one tracked client records: its wire format, attribution and where it sends requests."""

    protocol: Protocol
    is_async: bool
    attribution: Attribution
    base_url: str | None
    provider: str | None

    def begin(self, kwargs: Mapping[str, Any], stream: bool) -> Recording:
        return Recording(self, kwargs, stream)


class Recording:
    """Submitted to the recorder exactly once, whichever of success, failure or abandonment comes first."""

    __slots__ = ("_done", "_started", "seen")

    def __init__(self, tracker: Tracker, kwargs: Mapping[str, Any], stream: bool) -> None:
        self._started = time.perf_counter()
        self._done = False
        model = kwargs.get("model")
        self.seen = Observed(
            protocol=tracker.protocol,
            attribution=tracker.attribution,
            model_requested=model if isinstance(model, str) else None,
            stream=stream,
            base_url=tracker.base_url,
            provider=tracker.provider,
        )
        try:
            self.seen.body = request_body(kwargs)
            self.seen.attribution = _attribution(tracker, kwargs, self.seen.body)
        except Exception:
            log.exception("cannot read a request for the FareGate ledger")

    @property
    def done(self) -> bool:
        return self._done

    def succeed(self, response: Any) -> None:
        """A complete (non-streamed) response."""
        try:
            usage, model, text = read_response(self.seen.protocol, response)
        except Exception:
            log.exception("cannot read usage from a response")
            usage, model, text = None, None, ""
        self.finish(usage=usage, model=model, text=text)

    def fail(self, exc: BaseException, *, streaming: bool = False, **seen: Any) -> None:
        """The call raised: before any response, or (`streaming`) after a 200 had started a stream."""
        status, kind = classify(exc, streaming)
        completion = getattr(exc, "completion", None)  # `parse()` refusing a billed answer (length limit)
        if completion is not None and not seen:
            try:
                usage, model, text = read_response(self.seen.protocol, completion)
                seen = {"usage": usage, "model": model, "text": text}
                status = 200
            except Exception:
                log.exception("cannot read usage from a failed response")
        self.finish(status=status, error_kind=kind, **seen)

    def finish(
        self,
        *,
        usage: Usage | None = None,
        model: str | None = None,
        text: str = "",
        status: int = 200,
        error_kind: str | None = None,
    ) -> None:
        if self._done:
            return
        self._done = True
        seen = self.seen
        seen.latency_ms = (time.perf_counter() - self._started) * 1000
        seen.usage, seen.model_used, seen.output_text = usage, model, text
        seen.status, seen.error_kind = status, error_kind
        submit(seen)


def classify(exc: BaseException, streaming: bool) -> tuple[int, str]:
    """(status, error kind), in the gateway's vocabulary. Mid-stream the client already had its 200."""
    names = {cls.__name__ for cls in type(exc).__mro__}  # both SDKs name their errors alike
    status = getattr(exc, "status_code", None)
    if "APIStatusError" in names and isinstance(status, int):
        return status, "upstream_error"
    # Mid-stream the SDKs let the HTTP library's own errors through (TimeoutException, TransportError).
    if names & {"APITimeoutError", "TimeoutException"} or isinstance(exc, TimeoutError):
        return (200 if streaming else 504), "upstream_timeout"
    if names & {"APIConnectionError", "TransportError"}:
        return (200 if streaming else 502), "upstream_unavailable"
    if streaming:  # the application stopped reading (cancelled, or its own code raised)
        return 200, "client_disconnected"
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return 499, "client_disconnected"
    return 500, "sdk_error"


def request_body(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body the SDK sends for these arguments, as plain data (a snapshot: the application may
    append to its `messages` list before the recorder reads it)."""
    body = {k: plain(v) for k, v in kwargs.items() if k not in _NOT_BODY and not _omitted(v)}
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping):
        body.update(plain(extra))
    return body


def plain(value: Any) -> Any:
    """Dicts, lists and scalars; SDK models (a message from an earlier response) dumped as the SDK would
    send them. Other iterables are left alone: consuming a generator would empty the real request."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if not _omitted(v)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):  # an instance, not a `response_format` class
        return plain(dump(mode="json", exclude_unset=True))
    return value


def _omitted(value: Any) -> bool:
    return type(value).__name__ in ("NotGiven", "Omit")  # the SDKs' "argument not given" markers


def _attribution(tracker: Tracker, kwargs: Mapping[str, Any], body: Mapping[str, Any]) -> Attribution:
    """The client's attribution; per call, `X-FareGate-*` in `extra_headers` win (as at the gateway),
    and the provider-native end-user id names an unnamed user."""
    attribution = dataclasses.replace(tracker.attribution)
    headers = kwargs.get("extra_headers")
    if isinstance(headers, Mapping):
        for name, value in headers.items():
            lowered = str(name).lower()
            dimension = lowered[len(HEADER_PREFIX) :]
            usable = isinstance(value, str) and value.strip()
            if lowered.startswith(HEADER_PREFIX) and dimension in ATTRIBUTION_DIMENSIONS and usable:
                setattr(attribution, dimension, value.strip()[:MAX_VALUE_LENGTH])
    if attribution.user == UNATTRIBUTED:
        metadata = body.get("metadata")
        native = body.get("user") if tracker.protocol == "openai" else None
        if native is None and isinstance(metadata, Mapping):
            native = metadata.get("user_id")
        if isinstance(native, str) and native.strip():
            attribution.user = native.strip()[:MAX_VALUE_LENGTH]
    return attribution


def read_response(protocol: Protocol, response: Any) -> tuple[Usage | None, str | None, str]:
    """(usage, model used, output text); the text only when usage is missing and must be estimated."""
    raw = plain(getattr(response, "usage", None))
    usage = usage_from_openai(raw) if protocol == "openai" else usage_from_anthropic(raw)
    model = getattr(response, "model", None)
    text = "" if usage is not None else output_text(protocol, plain(response))
    return usage, model if isinstance(model, str) else None, text


def output_text(protocol: Protocol, body: Any) -> str:
    """All billed output of a response body: text, thinking, tool calls' names and arguments."""
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    if protocol == "openai":
        choices = body.get("choices") or [{}]
        message = (choices[0].get("message") or {}) if isinstance(choices[0], dict) else {}
        parts.append(message.get("content") or "")
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            parts += [function.get("name") or "", function.get("arguments") or ""]
    else:
        for block in body.get("content") or []:
            if block.get("type") == "tool_use":
                parts += [block.get("name") or "", orjson.dumps(block.get("input") or {}).decode()]
            else:
                parts.append(block.get("text") or block.get("thinking") or "")
    return "".join(p for p in parts if isinstance(p, str))
