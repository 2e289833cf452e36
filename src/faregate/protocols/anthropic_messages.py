"""Anthropic Messages, as clients send it to `POST /v1/messages`."""

from __future__ import annotations

from typing import Any

import orjson

from faregate.errors import FareGateError, InvalidRequest
from faregate.protocols.base import InboundProtocol, require_messages, require_str

# https://docs.anthropic.com/en/api/errors
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    502: "api_error",
    504: "timeout_error",
}


class AnthropicMessages(InboundProtocol):
    name = "anthropic"
    path = "/v1/messages"

    def validate(self, body: dict[str, Any]) -> tuple[str, bool]:
        model = require_str(body, "model")
        require_messages(body)
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise InvalidRequest("max_tokens: Field required")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise InvalidRequest("max_tokens: must be a positive integer")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise InvalidRequest("stream: must be a boolean")
        return model, stream

    def render_stream_error(self, error: FareGateError) -> bytes:
        # https://docs.anthropic.com/en/api/messages-streaming#error-events
        return b"event: error\ndata: " + self.render_error(error) + b"\n\n"

    def render_error(self, error: FareGateError) -> bytes:
        return orjson.dumps(
            {
                "type": "error",
                "error": {"type": _ERROR_TYPES.get(error.status, "api_error"), "message": error.message},
            }
        )


ANTHROPIC_MESSAGES = AnthropicMessages()
