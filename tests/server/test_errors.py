"""Every failure answers in the client's own error format (the official SDKs raise the right typed
exception from it) and reaches the ledger with its status and error kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from faregate.config import UpstreamSettings
from faregate.fake_provider import FakeProvider, Scenario
from faregate.ledger import CostEvent
from faregate.pipeline.retry import RETRY_STATUSES
from tests.server._support import (
    SONNET,
    SONNET_DEPRECATION,
    GatewayView,
    anthropic_client,
    closed_port,
    custom_gateway,
    only_event,
    openai_client,
    wait_for_events,
)

pytestmark = pytest.mark.filterwarnings(SONNET_DEPRECATION)


MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


def assert_openai_error(body: Any, code: str) -> str:
    """OpenAI's error envelope; returns the message."""
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])


def assert_anthropic_error(body: Any, error_type: str) -> str:
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["message"])


def attempts(status: int) -> int:
    """Upstream requests a failing call makes: the first and, for a retryable status, the retries."""
    return 1 + UpstreamSettings().retries if status in RETRY_STATUSES else 1


def failing(status: int) -> list[Scenario]:
    """Enough failures that the gateway's retries all fail too: the upstream's error passes through."""
    return [Scenario(status=status)] * attempts(status)


def assert_recorded(event: CostEvent, status: int, error_kind: str) -> None:
    assert (event.status, event.error_kind) == (status, error_kind)
    assert event.cost_nusd == 0 and event.output_tokens == 0


# --- refused by FareGate before any upstream call -----------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b'{"model": "gpt-4o-mini", "messages": [', b"", b"[1, 2]", b"\xff\xfe"],
    ids=["truncated", "empty", "array", "not-utf8"],
)
def test_malformed_json_openai(shared_gateway: GatewayView, fake_provider: FakeProvider, raw: bytes) -> None:
    reply = httpx.post(
        f"{shared_gateway.url}{OPENAI_PATH}", content=raw, headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"
    assert_openai_error(reply.json(), "invalid_request")
    assert reply.headers["x-faregate-request-id"]
    assert fake_provider.requests == []
    event = only_event(shared_gateway)
    assert_recorded(event, 400, "invalid_request")
    assert (event.protocol, event.provider, event.model_requested) == ("openai", None, None)
    assert event.request_id == reply.headers["x-faregate-request-id"]


def test_malformed_json_anthropic(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    reply = httpx.post(
        f"{shared_gateway.url}{ANTHROPIC_PATH}",
        content=b'{"model": ',
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01"},
    )
    assert reply.status_code == 400
    assert "JSON" in assert_anthropic_error(reply.json(), "invalid_request_error")
    assert fake_provider.requests == []
    event = only_event(shared_gateway)
    assert_recorded(event, 400, "invalid_request")
    assert event.protocol == "anthropic"


def test_missing_messages_openai(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    with openai_client(shared_gateway) as client, pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body={"model": "gpt-4o-mini"}, cast_to=ChatCompletion)
    assert caught.value.status_code == 400
    assert "messages" in caught.value.message
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "invalid_request"
    assert fake_provider.requests == []
    event = only_event(shared_gateway)
    assert_recorded(event, 400, "invalid_request")
    assert event.model_requested == "gpt-4o-mini"  # recorded even though the body was refused


def test_missing_messages_anthropic(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    with anthropic_client(shared_gateway) as client, pytest.raises(anthropic.BadRequestError) as caught:
        client.post("/v1/messages", body={"model": SONNET, "max_tokens": 10}, cast_to=Message)
    assert "messages" in caught.value.message
    assert fake_provider.requests == []
    assert_recorded(only_event(shared_gateway), 400, "invalid_request")


def test_anthropic_missing_max_tokens(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    with anthropic_client(shared_gateway) as client, pytest.raises(anthropic.BadRequestError) as caught:
        client.post("/v1/messages", body={"model": SONNET, "messages": MESSAGES}, cast_to=Message)
    assert caught.value.status_code == 400
    assert "max_tokens" in caught.value.message
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert fake_provider.requests == []
    event = only_event(shared_gateway)
    assert_recorded(event, 400, "invalid_request")
    assert (event.protocol, event.model_requested) == ("anthropic", SONNET)


def test_metadata_not_an_object(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    with openai_client(shared_gateway) as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, metadata="nope")  # type: ignore[arg-type]
    assert "metadata" in caught.value.message
    assert fake_provider.requests == []
    assert_recorded(only_event(shared_gateway), 400, "invalid_request")


def test_unknown_model_without_a_provider_for_the_protocol(
    tmp_path: Path, fake_provider: FakeProvider
) -> None:
    raw = {"providers": {"anthropic": {"type": "anthropic", "base_url": fake_provider.url}}}
    with custom_gateway(tmp_path, raw) as gw, openai_client(gw) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert caught.value.status_code == 404
        assert "gpt-4o" in caught.value.message
        assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "model_not_found"
        assert fake_provider.requests == []
        event = only_event(gw)
    assert_recorded(event, 404, "model_not_found")
    assert (event.provider, event.model_requested) == (None, "gpt-4o")


def test_alias_of_the_other_protocol_is_not_found(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    """`fast` is an OpenAI model: asking for it in Anthropic Messages format is a 404, in that format."""
    with anthropic_client(shared_gateway) as client, pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="fast", max_tokens=10, messages=MESSAGES)
    assert "/v1/chat/completions" in caught.value.message
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert fake_provider.requests == []
    assert_recorded(only_event(shared_gateway), 404, "model_not_found")


LONG = [{"role": "user", "content": "x" * 2_000}]


def test_body_too_large_openai(make_gateway: Any, fake_provider: FakeProvider) -> None:
    gw = make_gateway(server={"max_body_bytes": 1000})
    with openai_client(gw) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=LONG)
        assert caught.value.status_code == 413
        assert "max_body_bytes" in caught.value.message
        # the connection the refused body was sent on must not poison the next request
        small = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert small.choices[0].message.content == Scenario.text
    assert len(fake_provider.requests) == 1
    refused, ok = gw.events()
    assert_recorded(refused, 413, "request_too_large")
    assert (ok.status, ok.error_kind) == (200, None)


def test_body_too_large_anthropic(make_gateway: Any, fake_provider: FakeProvider) -> None:
    gw = make_gateway(server={"max_body_bytes": 1000})
    with anthropic_client(gw) as client, pytest.raises(anthropic.ContentTooLargeError) as caught:
        client.messages.create(model=SONNET, max_tokens=10, messages=LONG)
    assert caught.value.status_code == 413
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "request_too_large"
    assert fake_provider.requests == []
    assert_recorded(only_event(gw), 413, "request_too_large")


def test_body_too_large_without_content_length(make_gateway: Any, fake_provider: FakeProvider) -> None:
    """A chunked upload declares no size: the limit is enforced while reading."""
    gw = make_gateway(server={"max_body_bytes": 1000})

    def chunks() -> Any:
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}]}'

    reply = httpx.post(f"{gw.url}{OPENAI_PATH}", content=chunks())
    assert reply.status_code == 413
    assert_openai_error(reply.json(), "request_too_large")
    assert fake_provider.requests == []
    assert_recorded(only_event(gw), 413, "request_too_large")


# --- upstream errors: passed through -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_upstream_error_passes_through_openai(
    shared_gateway: GatewayView,
    fake_provider: FakeProvider,
    status: int,
    exc_type: type[openai.APIStatusError],
) -> None:
    fake_provider.push(*failing(status))
    with openai_client(shared_gateway) as client, pytest.raises(exc_type) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    response = caught.value.response
    assert response.status_code == status
    assert len(fake_provider.requests) == attempts(status)  # 429 and 5xx retried, 4xx not
    upstream = fake_provider.requests[-1]
    assert upstream.path == OPENAI_PATH
    # the provider's own body and request id, untouched
    assert response.json()["error"]["type"] in {"invalid_request_error", "requests", "server_error"}
    assert response.headers["x-request-id"].startswith("req_")
    event = only_event(shared_gateway)
    assert_recorded(event, status, "upstream_error")
    assert (event.provider, event.model_requested) == ("openai", "gpt-4o-mini")
    assert event.upstream_ms is not None
    assert event.upstream_retries == attempts(status) - 1


def test_upstream_error_body_is_verbatim(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    odd = {
        "error": {
            "message": "You exceeded your current quota.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        },
        "extra": [1, 2, 3],
    }
    fake_provider.push(*[Scenario(status=429, error_body=odd)] * attempts(429))
    reply = httpx.post(
        f"{shared_gateway.url}{OPENAI_PATH}", json={"model": "gpt-4o-mini", "messages": MESSAGES}
    )
    assert reply.status_code == 429
    assert reply.json() == odd
    assert_recorded(only_event(shared_gateway), 429, "upstream_error")


def test_upstream_error_on_a_stream_request(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    fake_provider.push(*failing(429))
    with openai_client(shared_gateway) as client, pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert "Rate limit" in caught.value.message
    event = only_event(shared_gateway)
    assert event.stream
    assert_recorded(event, 429, "upstream_error")


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (529, anthropic.OverloadedError),
    ],
)
def test_upstream_error_passes_through_anthropic(
    shared_gateway: GatewayView,
    fake_provider: FakeProvider,
    status: int,
    exc_type: type[anthropic.APIStatusError],
) -> None:
    fake_provider.push(*failing(status))
    with anthropic_client(shared_gateway) as client, pytest.raises(exc_type) as caught:
        client.messages.create(model=SONNET, max_tokens=10, messages=MESSAGES)
    response = caught.value.response
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error"
    assert body["request_id"] == response.headers["request-id"]  # the provider's id, in body and header
    assert_recorded(only_event(shared_gateway), status, "upstream_error")


def test_upstream_error_on_an_anthropic_stream(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    fake_provider.push(*failing(529))
    with (
        anthropic_client(shared_gateway) as client,
        pytest.raises(anthropic.OverloadedError),
        client.messages.stream(model=SONNET, max_tokens=10, messages=MESSAGES) as stream,
    ):
        stream.until_done()
    assert_recorded(only_event(shared_gateway), 529, "upstream_error")


# --- upstream unreachable or too slow ------------------------------------------------------------


def slow_providers(fake: FakeProvider, timeout_s: float) -> dict[str, Any]:
    return {
        "openai": {"type": "openai", "base_url": f"{fake.url}/v1", "timeout_s": timeout_s},
        "anthropic": {"type": "anthropic", "base_url": fake.url, "timeout_s": timeout_s},
    }


def test_upstream_timeout_openai(make_gateway: Any, fake_provider: FakeProvider) -> None:
    gw = make_gateway(providers=slow_providers(fake_provider, 0.2))
    fake_provider.push(*[Scenario(delay=1.0)] * attempts(504))  # a timeout is retried too
    with openai_client(gw) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 504
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "upstream_timeout"
    event = only_event(gw)
    assert_recorded(event, 504, "upstream_timeout")
    assert event.provider == "openai"


def test_upstream_timeout_anthropic(make_gateway: Any, fake_provider: FakeProvider) -> None:
    gw = make_gateway(providers=slow_providers(fake_provider, 0.2))
    fake_provider.push(*[Scenario(delay=1.0)] * attempts(504))
    with anthropic_client(gw) as client, pytest.raises(anthropic.GatewayTimeoutError) as caught:
        client.messages.create(model=SONNET, max_tokens=10, messages=MESSAGES)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "timeout_error"
    assert_recorded(only_event(gw), 504, "upstream_timeout")


def test_upstream_stalls_mid_stream(make_gateway: Any, fake_provider: FakeProvider) -> None:
    """Headers and the first chunk arrived, then nothing: the stream ends and the ledger says why."""
    gw = make_gateway(providers=slow_providers(fake_provider, 0.2))
    fake_provider.push(Scenario(chunk_delay=1.0, chunks=3))
    chunks = []
    with openai_client(gw) as client, pytest.raises(openai.APIError, match="stalled mid-stream"):
        for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            chunks.append(chunk)
    assert len(chunks) < 5  # role chunk + 3 text chunks + finish chunk when complete
    event = only_event(gw)
    assert event.error_kind == "upstream_timeout"
    assert event.stream


def test_anthropic_stream_stall_is_an_error_event(make_gateway: Any, fake_provider: FakeProvider) -> None:
    gw = make_gateway(providers=slow_providers(fake_provider, 0.2))
    fake_provider.push(Scenario(chunk_delay=1.0, chunks=3))
    with anthropic_client(gw) as client, pytest.raises(anthropic.APIStatusError) as caught:
        for _ in client.messages.create(model=SONNET, max_tokens=50, messages=MESSAGES, stream=True):
            pass
    assert "stalled mid-stream" in str(caught.value)
    assert only_event(gw).error_kind == "upstream_timeout"


def test_client_disconnect_mid_stream_is_recorded(make_gateway: Any, fake_provider: FakeProvider) -> None:
    gw = make_gateway()
    fake_provider.push(Scenario(chunk_delay=0.3, chunks=5))
    with openai_client(gw) as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        next(iter(stream))
        stream.close()
    (event,) = wait_for_events(gw, 1)
    assert (event.stream, event.error_kind) == (True, "client_disconnected")
    assert event.usage_estimated and event.input_tokens > 0  # upstream never sent its usage


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_connection_refused(make_gateway: Any, fake_provider: FakeProvider, protocol: str) -> None:
    port = closed_port()
    gw = make_gateway(
        providers={
            "openai": {"type": "openai", "base_url": f"http://127.0.0.1:{port}/v1"},
            "anthropic": {"type": "anthropic", "base_url": f"http://127.0.0.1:{port}"},
        }
    )
    if protocol == "openai":
        with openai_client(gw) as o, pytest.raises(openai.InternalServerError) as oe:
            o.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert oe.value.status_code == 502
        assert "unreachable" in oe.value.message
        assert isinstance(oe.value.body, dict) and oe.value.body["code"] == "upstream_unavailable"
    else:
        with anthropic_client(gw) as a, pytest.raises(anthropic.InternalServerError) as ae:
            a.messages.create(model=SONNET, max_tokens=10, messages=MESSAGES)
        assert ae.value.status_code == 502
        assert isinstance(ae.value.body, dict) and ae.value.body["error"]["type"] == "api_error"
    event = only_event(gw)
    assert_recorded(event, 502, "upstream_unavailable")
    assert event.provider == protocol


# --- every failure reaches the ledger ------------------------------------------------------------


def test_every_failure_is_one_ledger_event(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    fake_provider.push(*failing(500), *failing(429))
    url = shared_gateway.url
    replies = [
        httpx.post(f"{url}{OPENAI_PATH}", content=b"{"),
        httpx.post(f"{url}{OPENAI_PATH}", json={"model": "gpt-4o-mini"}),
        httpx.post(f"{url}{ANTHROPIC_PATH}", json={"model": SONNET, "messages": MESSAGES}),
        httpx.post(f"{url}{ANTHROPIC_PATH}", json={"model": "fast", "max_tokens": 5, "messages": MESSAGES}),
        httpx.post(f"{url}{OPENAI_PATH}", json={"model": "gpt-4o-mini", "messages": MESSAGES}),
        httpx.post(f"{url}{ANTHROPIC_PATH}", json={"model": SONNET, "max_tokens": 5, "messages": MESSAGES}),
        httpx.post(f"{url}{OPENAI_PATH}", json={"model": "gpt-4o-mini", "messages": MESSAGES}),
    ]
    assert [r.status_code for r in replies] == [400, 400, 400, 404, 500, 429, 200]
    events = {e.request_id: e for e in shared_gateway.events()}
    assert len(events) == len(replies)
    for reply in replies:
        event = events[reply.headers["x-faregate-request-id"]]
        assert event.status == reply.status_code
        assert (event.error_kind is None) == (reply.status_code == 200)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_inconsistent_upstream_usage_still_answers_and_is_recorded(
    shared_gateway: GatewayView, fake_provider: FakeProvider, stream: bool
) -> None:
    """A buggy OpenAI-compatible server reports more cached tokens than prompt tokens: the client
    still gets the answer, and the ledger records the call as unpriced rather than dropping it."""
    fake_provider.push(Scenario(prompt_tokens=100, cached_tokens=500))
    with openai_client(shared_gateway) as client:
        if stream:
            chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            text = (
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                .choices[0]
                .message.content
            )
    assert text == Scenario.text
    event = only_event(shared_gateway)
    assert (event.status, event.stream) == (200, stream)
    assert event.price_known is False and event.cost_nusd == 0
