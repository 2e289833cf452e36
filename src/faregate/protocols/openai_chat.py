"""OpenAI Chat Completions, as clients send it to `POST /v1/chat/completions`."""

from __future__ import annotations

from typing import Any

import orjson

from faregate.errors import FareGateError
from faregate.protocols.base import (
    InboundProtocol,
    check_bool,
    check_int,
    check_number,
    check_objects,
    check_output_limit,
    check_type,
    require_messages,
    require_model,
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",  # OpenAI's own 403s (region, model access) carry this type
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
}


class OpenAIChat(InboundProtocol):
    name = "openai"
    path = "/v1/chat/completions"

    def validate(self, body: dict[str, Any]) -> tuple[str, bool]:
        """The fields FareGate reads, with OpenAI's own types and ranges (so OpenAI would refuse
        them too): a wrong one is a 400 here, never a crash in a later stage or a priced absurdity."""
        model = require_model(body)
        require_messages(body)
        stream = check_bool(body, "stream")
        check_type(body, "stream_options", dict)
        for limit in ("max_tokens", "max_completion_tokens"):
            check_output_limit(body, limit)
        check_int(body, "n", 1, 128)
        check_number(body, "temperature", 0, 2)
        check_number(body, "top_p", 0, 1)
        check_number(body, "presence_penalty", -2, 2)
        check_number(body, "frequency_penalty", -2, 2)
        check_objects(body, "tools")
        check_objects(body, "functions")
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
