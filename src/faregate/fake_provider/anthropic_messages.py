"""Anthropic Messages as the real API speaks it: message objects, named SSE events, usage, errors.

Written from the API reference, independently of faregate.protocols, so the gateway's own parsing is
tested against an oracle rather than against itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ._common import (
    Output,
    Scenario,
    dumps,
    output_for,
    random_id,
    split_text,
    sse,
    write_stream,
)

NAME = "anthropic"
# id, display name, release date (the epoch where unknown, as the real API does)
MODELS: tuple[tuple[str, str, str], ...] = (
    ("claude-opus-4-7", "Claude Opus 4.7", "1970-01-01T00:00:00Z"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "1970-01-01T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
)
_DEFAULT_TOOL = "get_weather"

# status -> (error type, message) of the body the real API sends when a scenario names no body.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(
    status: int,
    message: str | None = None,
    *,
    model: str = "",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    kind, default_message = _ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", "Request failed.")
    )
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": kind, "message": message or default_message.format(model=model)},
    }
    return body


def new_request_id() -> str:
    return random_id("req_011C", 20)


def response_headers(request_id: str) -> dict[str, str]:
    return {"request-id": request_id, "anthropic-organization-id": "00000000-0000-0000-0000-000000000000"}


def check_auth(headers: Mapping[str, str], api_key: str) -> tuple[int, dict[str, Any]] | None:
    key = headers.get("x-api-key")
    if key is None and headers.get("authorization", "").startswith("Bearer "):
        key = headers["authorization"].removeprefix("Bearer ")
    if key is None:
        return 401, error_body(401, "x-api-key header is required")
    if key != api_key:
        return 401, error_body(401)
    return None


def invalid_json(detail: str) -> tuple[int, dict[str, Any]]:
    return 400, error_body(400, f"The request body is not valid JSON: {detail}")


def validate(body: dict[str, Any], headers: Mapping[str, str]) -> tuple[int, dict[str, Any]] | None:
    if "anthropic-version" not in headers:
        return 400, error_body(400, "anthropic-version: header is required")
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            return 400, error_body(400, f"{name}: Field required")
    if not isinstance(body["model"], str):
        return 400, error_body(400, "model: Input should be a valid string")
    if not isinstance(body["messages"], list):
        return 400, error_body(400, "messages: Input should be a valid list")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        return 400, error_body(400, "max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        return 400, error_body(400, "max_tokens: Input should be greater than or equal to 1")
    return None


def models_body() -> dict[str, Any]:
    data = [
        {"type": "model", "id": id_, "display_name": name, "created_at": created, "lifecycle": "active"}
        for id_, name, created in MODELS
    ]
    return {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}


def _uncached_input(scenario: Scenario) -> int:
    """Anthropic's `input_tokens` excludes cache reads and writes, which it reports apart."""
    cache = scenario.cached_tokens + scenario.cache_write_5m_tokens + scenario.cache_write_1h_tokens
    return max(0, scenario.prompt_tokens - cache)


def _usage(scenario: Scenario, out: Output, output_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": _uncached_input(scenario),
        "cache_creation_input_tokens": scenario.cache_write_5m_tokens + scenario.cache_write_1h_tokens,
        "cache_read_input_tokens": scenario.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": scenario.cache_write_5m_tokens,
            "ephemeral_1h_input_tokens": scenario.cache_write_1h_tokens,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
    if out.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": out.reasoning_tokens}
    return usage


def _delta_usage(scenario: Scenario, out: Output) -> dict[str, Any]:
    """`message_delta` carries cumulative totals; the SDK overwrites its snapshot with them."""
    usage: dict[str, Any] = {
        "input_tokens": _uncached_input(scenario),
        "cache_creation_input_tokens": scenario.cache_write_5m_tokens + scenario.cache_write_1h_tokens,
        "cache_read_input_tokens": scenario.cached_tokens,
        "output_tokens": out.completion_tokens,
    }
    if out.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": out.reasoning_tokens}
    return usage


def _tool_name(body: dict[str, Any]) -> str:
    """Call the first tool the request offered, so the answer is valid for the client's schema."""
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[0], dict):
        name = tools[0].get("name")
        if isinstance(name, str):
            return name
    return _DEFAULT_TOOL


def _stop_reason(scenario: Scenario, out: Output) -> str:
    if out.truncated:
        return "max_tokens"
    return "tool_use" if scenario.tool_call else "end_turn"


def _content(body: dict[str, Any], scenario: Scenario) -> list[dict[str, Any]]:
    """A tool call comes after a text block (as Claude usually explains first) unless text is empty."""
    blocks: list[dict[str, Any]] = []
    if scenario.text or not scenario.tool_call:
        blocks.append({"type": "text", "text": scenario.text})
    if scenario.tool_call:
        blocks.append(
            {
                "type": "tool_use",
                "id": random_id("toolu_01", 22),
                "name": _tool_name(body),
                "input": scenario.tool_input,
            }
        )
    return blocks


def message(body: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    out = output_for(scenario, body.get("max_tokens"))
    result: dict[str, Any] = {
        "id": random_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": _content(body, scenario),
        "stop_reason": _stop_reason(scenario, out),
        "stop_sequence": None,
    }
    if scenario.include_usage:
        result["usage"] = _usage(scenario, out, out.completion_tokens)
    return result


def stream_events(body: dict[str, Any], scenario: Scenario) -> list[bytes]:
    """Every SSE event of a streamed answer, in the order the real API sends them.

    message_start (input usage, output_tokens so far) → per block: content_block_start, deltas,
    content_block_stop (a ping follows the first block's start) → message_delta (stop reason, final
    usage) → message_stop.
    """
    out = output_for(scenario, body.get("max_tokens"))
    start: dict[str, Any] = {
        "id": random_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if scenario.include_usage:
        start["usage"] = _usage(scenario, out, min(1, out.completion_tokens))
    events = [sse({"type": "message_start", "message": start}, "message_start")]
    for index, block in enumerate(_content(body, scenario)):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [
                {"type": "text_delta", "text": piece} for piece in split_text(block["text"], scenario.chunks)
            ]
        else:
            opening = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": piece}
                for piece in split_text(dumps(block["input"]).decode(), scenario.chunks)
            ]
        events.append(
            sse(
                {"type": "content_block_start", "index": index, "content_block": opening},
                "content_block_start",
            )
        )
        if index == 0:
            events.append(sse({"type": "ping"}, "ping"))
        events += [
            sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
            for delta in deltas
        ]
        events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(scenario, out), "stop_sequence": None},
    }
    if scenario.include_usage:
        delta["usage"] = _delta_usage(scenario, out)
    events.append(sse(delta, "message_delta"))
    events.append(sse({"type": "message_stop"}, "message_stop"))
    return events


async def respond(
    request: web.Request, body: dict[str, Any], scenario: Scenario, headers: dict[str, str]
) -> web.StreamResponse:
    if body.get("stream") is not True:
        headers["Content-Type"] = "application/json"
        return web.Response(body=dumps(message(body, scenario)), headers=headers)
    return await write_stream(request, stream_events(body, scenario), scenario.chunk_delay, headers)
