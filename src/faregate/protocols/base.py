"""What the two inbound protocols share: JSON body parsing and the shape of an adapter."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import orjson

from faregate.call import Protocol
from faregate.errors import FareGateError, InvalidRequest


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def require_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        raise InvalidRequest(f"missing required parameter: '{key}'")
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{key}' must be a non-empty string")
    return value


def require_messages(body: dict[str, Any]) -> list[Any]:
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("missing required parameter: 'messages'")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{index}] must be an object with a string 'role'")
    return messages


class InboundProtocol(ABC):
    """One client-facing wire format. Stateless: one module-level instance per protocol."""

    name: Protocol
    path: str

    @abstractmethod
    def validate(self, body: dict[str, Any]) -> tuple[str, bool]:
        """Check the fields FareGate relies on; return (model, stream)."""

    @abstractmethod
    def render_error(self, error: FareGateError) -> bytes:
        """The error body an official SDK of this protocol turns into its typed exception."""

    @abstractmethod
    def render_stream_error(self, error: FareGateError) -> bytes:
        """An SSE error event: once a stream has started, a failure can only be told in-band."""

    def wants_stream_usage(self, body: dict[str, Any]) -> bool:
        return False
