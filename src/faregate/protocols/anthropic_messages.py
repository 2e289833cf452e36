"""Anthropic Messages, as clients send it to `POST /v1/messages`."""

from __future__ import annotations

from typing import Any

import orjson

from faregate.errors import FareGateError
from faregate.protocols.base import (
    InboundProtocol,
    check_bool,
    check_content,
    check_int,
    check_number,
    check_objects,
    check_output_limit,
    check_type,
    require_messages,
    require_model,
)

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
        """The fields FareGate reads, with Anthropic's own types and ranges: a wrong one is a 400
        here, never a crash in a later stage or an absurd `max_tokens` priced by the budget."""
        model = require_model(body)
        require_messages(body)
        check_output_limit(body, "max_tokens", required=True)
        stream = check_bool(body, "stream")
        if "system" in body:
            check_content(body["system"], "system", nullable=True)
        check_number(body, "temperature", 0, 1)
        check_number(body, "top_p", 0, 1)
        check_int(body, "top_k", 0, 1_000_000)
        check_objects(body, "tools")
        check_type(body, "stop_sequences", list)
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
