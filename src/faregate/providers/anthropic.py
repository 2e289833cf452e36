"""Anthropic Messages upstream."""

from __future__ import annotations

from typing import Any

import orjson

from faregate.call import Call, Usage
from faregate.providers.base import Provider, StreamTap, int_or_zero, sse_data

DEFAULT_VERSION = "2023-06-01"


def usage_from_anthropic(raw: Any) -> Usage | None:
    """Anthropic reports uncached input apart from cache reads and writes; Usage wants the total."""
    if not isinstance(raw, dict):
        return None
    uncached = int_or_zero(raw.get("input_tokens"))
    cache_read = int_or_zero(raw.get("cache_read_input_tokens"))
    cache_write = int_or_zero(raw.get("cache_creation_input_tokens"))
    creation = raw.get("cache_creation")
    write_1h = int_or_zero(creation.get("ephemeral_1h_input_tokens")) if isinstance(creation, dict) else 0
    return Usage(
        input_tokens=uncached + cache_read + cache_write,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=min(write_1h, cache_write),
        output_tokens=int_or_zero(raw.get("output_tokens")),
    )


def _block_output(block: dict[str, Any]) -> str:
    """The billed output of one content block: text, thinking, or a tool call's name and input."""
    if block.get("type") == "tool_use":
        return f"{block.get('name', '')}{orjson.dumps(block.get('input', {})).decode()}"
    for key in ("text", "thinking"):
        if isinstance(value := block.get(key), str):
            return value
    return ""


class AnthropicStreamTap(StreamTap):
    """Input usage arrives in `message_start`, the running output count in `message_delta`."""

    def keep(self, event: bytes) -> bool:
        if not event.startswith(b"event: message_") and not event.startswith(b"event: content_block_delta"):
            return True
        data = sse_data(event)
        if data is None:
            return True
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind == "message_start":
            message = payload.get("message") or {}
            self.model = message.get("model")
            self.usage = usage_from_anthropic(message.get("usage"))
        elif kind == "message_delta":
            self._add_output(payload.get("usage"))
            delta = payload.get("delta")
            if isinstance(delta, dict) and isinstance(reason := delta.get("stop_reason"), str):
                self.stop_reason = reason
        elif kind == "content_block_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict):
                # text_delta, input_json_delta (tool input) and thinking_delta are all billed output
                for key in ("text", "partial_json", "thinking"):
                    if isinstance(value := delta.get(key), str):
                        self.text.append(value)
        return True

    def _add_output(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            return
        if self.usage is None:
            self.usage = Usage()
        # message_delta counts are cumulative; newer API versions repeat input counts there too.
        self.usage.output_tokens = int_or_zero(raw.get("output_tokens")) or self.usage.output_tokens
        final = usage_from_anthropic(raw)
        if final is not None and final.input_tokens > self.usage.input_tokens:
            final.output_tokens = self.usage.output_tokens
            if not isinstance(raw.get("cache_creation"), dict):
                # message_delta may repeat the totals without the 5m/1h split; keep message_start's,
                # or 1-hour writes would be priced at the 5-minute rate.
                final.cache_write_1h_tokens = min(self.usage.cache_write_1h_tokens, final.cache_write_tokens)
            self.usage = final


class AnthropicProvider(Provider):
    protocol = "anthropic"
    # As OpenAIProvider.forward_client_key: False under virtual keys, so only the gateway's key goes.
    forward_client_key = True

    def endpoint(self) -> str:
        return f"{self.base_url}/v1/messages"

    def request_headers(self, call: Call) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "anthropic-version": call.headers.get("anthropic-version") or DEFAULT_VERSION,
        }
        beta = call.headers.get("anthropic-beta") or ""
        if call.betas:  # e.g. the 1-hour cache TTL FareGate chose; the client's betas stay first
            known = {b.strip() for b in beta.split(",")}
            beta = ",".join([*([beta] if beta else []), *(b for b in call.betas if b not in known)])
        if beta:
            headers["anthropic-beta"] = beta
        if self.api_key:
            headers["x-api-key"] = self.api_key
        elif not self.forward_client_key:
            pass
        elif key := call.headers.get("x-api-key"):
            headers["x-api-key"] = key
        elif auth := call.headers.get("authorization"):
            headers["authorization"] = auth
        return headers

    def prepare_body(self, call: Call) -> dict[str, Any]:
        if call.route is not None:
            call.body["model"] = call.route.model
        return call.body

    def read_response(self, body: dict[str, Any]) -> tuple[Usage | None, str | None, str]:
        parts = body.get("content")
        text = (
            "".join(_block_output(p) for p in parts if isinstance(p, dict)) if isinstance(parts, list) else ""
        )
        model = body.get("model")
        return usage_from_anthropic(body.get("usage")), model if isinstance(model, str) else None, text

    def stream_tap(self, call: Call) -> StreamTap:
        return AnthropicStreamTap()
