"""OpenAI Chat Completions as the real API speaks it: bodies, chunks, usage and error shapes.

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
    fingerprint,
    now,
    output_for,
    random_id,
    split_text,
    sse,
    write_stream,
)

NAME = "openai"
MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
)
_DONE = b"data: [DONE]\n\n"
_DEFAULT_TOOL = "get_weather"

# status -> (type, code, message) of the body the real API sends when a scenario names no body.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", None, "You are not allowed to sample from this model."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
}


def error_body(
    status: int,
    message: str | None = None,
    *,
    model: str = "",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    kind, default_code, default_message = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, "Request failed.")
    )
    return {
        "error": {
            "message": message or default_message.format(model=model),
            "type": kind,
            "param": param,
            "code": code or default_code,
        }
    }


def new_request_id() -> str:
    return random_id("req_", 32, "0123456789abcdef")


def response_headers(request_id: str) -> dict[str, str]:
    return {"x-request-id": request_id, "openai-version": "2020-10-01", "openai-processing-ms": "1"}


def check_auth(headers: Mapping[str, str], api_key: str) -> tuple[int, dict[str, Any]] | None:
    auth = headers.get("authorization", "")
    if not auth:
        return 401, error_body(
            401,
            "You didn't provide an API key. You need to provide your API key in "
            "an Authorization header using Bearer auth (i.e. Authorization: "
            "Bearer YOUR_KEY).",
            code="missing_api_key",
        )
    if auth != f"Bearer {api_key}":
        return 401, error_body(401, "Incorrect API key provided.")
    return None


def invalid_json(detail: str) -> tuple[int, dict[str, Any]]:
    return 400, error_body(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
        "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
        "valid JSON. If you have trouble figuring out how to fix this, please contact us through our "
        "help center at help.openai.com.)",
    )


def validate(body: dict[str, Any], headers: Mapping[str, str]) -> tuple[int, dict[str, Any]] | None:
    if not body.get("model"):
        return 400, error_body(400, "you must provide a model parameter")
    messages = body.get("messages")
    if messages is None:
        return 400, error_body(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list):
        return 400, error_body(
            400, "Invalid type for 'messages': expected an array.", param="messages", code="invalid_type"
        )
    if not messages:
        return 400, error_body(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum "
            "length 1, but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    if body.get("stream_options") is not None and body.get("stream") is not True:
        return 400, error_body(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    return None


def models_body() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 1715367049, "owned_by": "system"} for m in MODELS],
    }


def _usage(scenario: Scenario, out: Output) -> dict[str, Any]:
    return {
        "prompt_tokens": scenario.prompt_tokens,
        "completion_tokens": out.completion_tokens,
        "total_tokens": scenario.prompt_tokens + out.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": scenario.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": out.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_name(body: dict[str, Any]) -> str:
    """Call the first tool the request offered, so the answer is valid for the client's schema."""
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[0], dict):
        function = tools[0].get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return _DEFAULT_TOOL


def _finish_reason(scenario: Scenario, out: Output) -> str:
    if out.truncated:
        return "length"
    return "tool_calls" if scenario.tool_call else "stop"


def completion(body: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    out = output_for(scenario, body.get("max_completion_tokens", body.get("max_tokens")))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": scenario.text,
        "refusal": None,
        "annotations": [],
    }
    if scenario.tool_call:
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": random_id("call_", 24),
                "type": "function",
                "function": {"name": _tool_name(body), "arguments": dumps(scenario.tool_input).decode()},
            }
        ]
    result: dict[str, Any] = {
        "id": random_id("chatcmpl-", 29),
        "object": "chat.completion",
        "created": now(),
        "model": body["model"],
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(scenario, out)}
        ],
        "service_tier": "default",
        "system_fingerprint": fingerprint(),
    }
    if scenario.include_usage:
        result["usage"] = _usage(scenario, out)
    return result


def stream_events(body: dict[str, Any], scenario: Scenario) -> list[bytes]:
    """Every SSE frame of a streamed answer, `[DONE]` included.

    The usage chunk (empty `choices`) exists only when the client asked with
    `stream_options.include_usage`; then, and only then, every other chunk carries `"usage": null`.
    """
    out = output_for(scenario, body.get("max_completion_tokens", body.get("max_tokens")))
    options = body.get("stream_options")
    wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    base: dict[str, Any] = {
        "id": random_id("chatcmpl-", 29),
        "object": "chat.completion.chunk",
        "created": now(),
        "model": body["model"],
        "service_tier": "default",
        "system_fingerprint": fingerprint(),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        frame = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if wants_usage and scenario.include_usage:
            frame["usage"] = None
        return sse(frame)

    frames: list[bytes] = []
    if scenario.tool_call:
        arguments = dumps(scenario.tool_input).decode()
        frames.append(
            chunk(
                {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": random_id("call_", 24),
                            "type": "function",
                            "function": {"name": _tool_name(body), "arguments": ""},
                        }
                    ],
                }
            )
        )
        frames += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in split_text(arguments, scenario.chunks)
        ]
    else:
        frames.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        frames += [chunk({"content": piece}) for piece in split_text(scenario.text, scenario.chunks)]
    frames.append(chunk({}, _finish_reason(scenario, out)))
    if wants_usage and scenario.include_usage:
        frames.append(sse({**base, "choices": [], "usage": _usage(scenario, out)}))
    frames.append(_DONE)
    return frames


async def respond(
    request: web.Request, body: dict[str, Any], scenario: Scenario, headers: dict[str, str]
) -> web.StreamResponse:
    if body.get("stream") is not True:
        headers["Content-Type"] = "application/json"
        return web.Response(body=dumps(completion(body, scenario)), headers=headers)
    return await write_stream(request, stream_events(body, scenario), scenario.chunk_delay, headers)
