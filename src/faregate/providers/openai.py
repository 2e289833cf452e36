"""OpenAI Chat Completions upstream; also every OpenAI-compatible server (vLLM, Ollama, Together...)."""

from __future__ import annotations

from typing import Any

import orjson

from faregate.call import Call, Usage
from faregate.providers.base import Provider, StreamTap, int_or_zero, sse_data


def usage_from_openai(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int_or_zero(raw.get("prompt_tokens")),
        cache_read_tokens=int_or_zero(prompt_details.get("cached_tokens")),
        output_tokens=int_or_zero(raw.get("completion_tokens")),
        reasoning_tokens=int_or_zero(completion_details.get("reasoning_tokens")),
    )


def _collect_output(message: dict[str, Any], output: list[str]) -> None:
    """Text and tool-call names and arguments: all of it is billed output when usage must be estimated."""
    content = message.get("content")
    if isinstance(content, str):
        output.append(content)
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list):
        for tool_call in tool_calls:
            function = tool_call.get("function") if isinstance(tool_call, dict) else None
            if isinstance(function, dict):
                output.extend(
                    v for v in (function.get("name"), function.get("arguments")) if isinstance(v, str)
                )


class OpenAIStreamTap(StreamTap):
    """Collects usage from the final chunk and hides that chunk when the client did not ask for it.

    FareGate always asks upstream for usage (`stream_options.include_usage`), because a stream
    without it cannot be priced exactly; a client that did not ask must see the stream it expects.
    """

    def __init__(self, show_usage_chunk: bool) -> None:
        super().__init__()
        self.show_usage_chunk = show_usage_chunk

    def keep(self, event: bytes) -> bool:
        data = sse_data(event)
        if data is None or data == b"[DONE]":
            return True
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(chunk, dict):
            return True
        if self.model is None and isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        choices = chunk.get("choices")
        if choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta")
            if isinstance(delta, dict):
                _collect_output(delta, self.text)
            if isinstance(reason := choices[0].get("finish_reason"), str):
                self.stop_reason = reason
        usage = usage_from_openai(chunk.get("usage"))
        if usage is None:
            return True
        self.usage = usage
        return self.show_usage_chunk or bool(choices)


class OpenAIProvider(Provider):
    protocol = "openai"
    # Pass the client's credential upstream when the gateway has no key of its own; never with
    # FareGate virtual keys (`auth.virtual_keys`): the gateway sets this False, and the client's
    # header then holds a FareGate key the provider must not see.
    forward_client_key = True

    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def request_headers(self, call: Call) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        elif self.forward_client_key and (auth := call.headers.get("authorization")):
            headers["authorization"] = auth
        for name in ("openai-organization", "openai-project"):
            if value := call.headers.get(name):
                headers[name] = value
        return headers

    def prepare_body(self, call: Call) -> dict[str, Any]:
        body = call.body
        if call.route is not None:
            body["model"] = call.route.model
        if call.stream:
            options = body.get("stream_options")
            body["stream_options"] = {**(options or {}), "include_usage": True}
        return body

    def read_response(self, body: dict[str, Any]) -> tuple[Usage | None, str | None, str]:
        output: list[str] = []
        choices = body.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            if isinstance(message, dict):
                _collect_output(message, output)
        model = body.get("model")
        return (
            usage_from_openai(body.get("usage")),
            model if isinstance(model, str) else None,
            "".join(output),
        )

    def stream_tap(self, call: Call) -> StreamTap:
        return OpenAIStreamTap(show_usage_chunk=call.client_wants_stream_usage)
