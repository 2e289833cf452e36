"""What the two inbound protocols share: JSON body parsing, field checks, and the shape of an adapter.

Everything a client sends is hostile until checked here: a body the later stages cannot walk safely
(nesting deeper than they recurse, a type they do not expect, an output limit the budget would price
at an absurd amount) is refused with a 400 in the client's error format before the pipeline sees it.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from typing import Any

import orjson

from faregate.call import Protocol
from faregate.errors import FareGateError, InvalidRequest

# Deeper JSON is refused: the stages that walk a body recurse (token counting, anatomy, prompt-cache
# fingerprints) and re-serialise it (orjson.dumps stops at 254 levels). Real requests, JSON Schemas
# of tools included, stay far below.
MAX_DEPTH = 128
# An output limit above this is a mistake or an attack, not a model (the largest ask for ~128k); the
# budget stage prices the limit, so it must be bounded before it gets there.
MAX_OUTPUT_TOKENS = 10_000_000
MAX_MODEL_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or an InvalidRequest saying what is wrong with it."""
    if not raw:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if "UTF-8" in reason or "surrogate" in reason:
            # orjson refuses invalid UTF-8 and lone surrogates (`"\ud800"`), which no database
            # column could store as text either.
            raise InvalidRequest(f"request body is not valid UTF-8 JSON: {reason}") from None
        if "depth limit" in reason or "recursion" in reason:
            raise InvalidRequest(f"request body nests deeper than {MAX_DEPTH} levels") from None
        raise InvalidRequest(f"request body is not valid JSON: {reason}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {_json_type(body)}")
    check_depth(raw, body)
    return body


def check_depth(raw: bytes, body: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than `limit` levels, without recursion.

    Counting brackets in the raw bytes (C speed) proves most bodies shallow without a walk; the
    others are walked level by level (0.5 ms for a 300 kB body of 1,000 messages, 3x faster than a
    stack of (value, depth) pairs; orjson.loads itself takes 0.3 ms).
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    level: list[Any] = [body]
    for _ in range(limit):
        below: list[Any] = []
        for value in level:
            children = value.values() if type(value) is dict else value
            below += [c for c in children if type(c) is dict or type(c) is list]
        if not below:
            return
        level = below
    raise InvalidRequest(f"request body nests deeper than {limit} levels")


def require_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        raise InvalidRequest(f"missing required parameter: '{key}'")
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{key}' must be a non-empty string")
    return value


def require_model(body: dict[str, Any]) -> str:
    """A model name: it is logged, stored and may be echoed in headers, so no control characters."""
    model = require_str(body, "model")
    if len(model) > MAX_MODEL_LENGTH or _CONTROL.search(model):
        raise InvalidRequest(
            f"'model' must be a model name (at most {MAX_MODEL_LENGTH} characters, no control characters)"
        )
    return model


def require_messages(body: dict[str, Any]) -> list[Any]:
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("missing required parameter: 'messages'")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{index}] must be an object with a string 'role'")
        check_content(message.get("content"), f"messages[{index}].content", nullable=True)
    return messages


def check_content(value: Any, where: str, *, nullable: bool = False) -> None:
    """Message content (and Anthropic's `system`): a string, or an array of content-part objects."""
    if value is None and nullable:
        return
    if isinstance(value, str):
        return
    if isinstance(value, list):
        for index, part in enumerate(value):
            if not isinstance(part, dict):
                raise InvalidRequest(f"{where}[{index}] must be an object (a content part)")
        return
    raise InvalidRequest(f"'{where}' must be a string or an array of content parts, got {_json_type(value)}")


def check_bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{key}' must be a boolean, got {_json_type(value)}")
    return value


def check_output_limit(body: dict[str, Any], key: str, *, required: bool = False) -> None:
    """An output token limit: an integer from 1 to MAX_OUTPUT_TOKENS (not a float, not a boolean)."""
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidRequest(f"{key}: Field required")
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise InvalidRequest(f"'{key}' must be an integer from 1 to {MAX_OUTPUT_TOKENS}")


def check_number(body: dict[str, Any], key: str, low: float, high: float) -> None:
    """An optional sampling parameter: a finite number within [low, high]."""
    value = body.get(key)
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidRequest(f"'{key}' must be a number, got {_json_type(value)}")
    if not low <= value <= high:
        raise InvalidRequest(f"'{key}' must be between {low:g} and {high:g}")


def check_int(body: dict[str, Any], key: str, low: int, high: int) -> None:
    value = body.get(key)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"'{key}' must be an integer from {low} to {high}")


def check_type(body: dict[str, Any], key: str, kind: type[list[Any]] | type[dict[str, Any]]) -> None:
    """An optional field that must be an array (`list`) or an object (`dict`) when present."""
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        expected = "an array" if kind is list else "an object"
        raise InvalidRequest(f"'{key}' must be {expected}, got {_json_type(value)}")


def check_objects(body: dict[str, Any], key: str) -> None:
    """An optional array of objects (`tools`, `functions`): later stages read their fields."""
    check_type(body, key, list)
    for index, item in enumerate(body.get(key) or ()):
        if not isinstance(item, dict):
            raise InvalidRequest(f"{key}[{index}] must be an object")


def _json_type(value: Any) -> str:
    """A value's type in JSON's words, for messages a client can act on."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


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
