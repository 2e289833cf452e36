"""OpenAI Chat Completions, as clients send it to `POST /v1/chat/completions`."""

from __future__ import annotations

from typing import Any

import orjson

from faregate.errors import FareGateError, InvalidRequest
from faregate.protocols.base import InboundProtocol, require_messages, require_str

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
}


class OpenAIChat(InboundProtocol):
    name = "openai"
    path = "/v1/chat/completions"

    def validate(self, body: dict[str, Any]) -> tuple[str, bool]:
        model = require_str(body, "model")
        require_messages(body)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise InvalidRequest("'stream' must be a boolean")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise InvalidRequest("'stream_options' must be an object")
        return model, stream

    def wants_stream_usage(self, body: dict[str, Any]) -> bool:
        options = body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    def render_stream_error(self, error: FareGateError) -> bytes:
        # The OpenAI SDKs raise APIError on a `data:` event carrying an `error` object.
        return b"data: " + self.render_error(error) + b"\n\n"

    def render_error(self, error: FareGateError) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": error.message,
                    "type": _ERROR_TYPES.get(error.status, "api_error"),
                    "param": None,
                    "code": error.kind,
                }
            }
        )


OPENAI_CHAT = OpenAIChat()
