"""Upstream failure handling through a running gateway: retries, Retry-After, fallbacks, the circuit
breaker, timeouts and streams that fail mid-way, with what the ledger records for each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from faregate.fake_provider import FakeProvider, Faults, Scenario
from tests.fixtures.gateway import RunningGateway
from tests.server._support import (
    SONNET,
    SONNET_DEPRECATION,
    anthropic_client,
    async_openai_client,
    closed_port,
    only_event,
    openai_client,
    wait_for_events,
)

pytestmark = pytest.mark.filterwarnings(SONNET_DEPRECATION)

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
FAST_RETRIES = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}
MakeGateway = Callable[..., RunningGateway]


@pytest.fixture(scope="module")
def backup_server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def backup(backup_server: FakeProvider) -> Iterator[FakeProvider]:
    """A second provider: the fallback (or, with `down`, a dead primary whose requests we count)."""
    backup_server.reset()
    yield backup_server
    backup_server.reset()


def with_fallback(make_gateway: MakeGateway, backup: FakeProvider, **upstream: Any) -> RunningGateway:
    """`fast` (openai, the shared fake) falls back to `spare` (provider `backup`, the second fake)."""
    return make_gateway(
        providers={"backup": {"type": "openai", "base_url": f"{backup.url}/v1"}},
        models={
            "fast": {"provider": "openai", "model": "gpt-4o-mini", "fallbacks": ["spare"]},
            "spare": {"provider": "backup", "model": "gpt-4o"},
        },
        upstream={**FAST_RETRIES, **upstream},
    )


def ask(gw: RunningGateway, model: str = "fast", **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": model, "messages": MESSAGES},
        headers=headers,
        timeout=30,
    )


# --- retries --------------------------------------------------------------------------------------


def test_a_503_is_retried_and_the_retry_answers(
    make_gateway: MakeGateway, fake_provider: FakeProvider
) -> None:
    gw = make_gateway(upstream=FAST_RETRIES)
    fake_provider.push(Scenario(status=503))
    with openai_client(gw) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == Scenario.text
    first, second = fake_provider.requests
    assert first.raw == second.raw  # the same bytes, re-sent
    event = only_event(gw)
    assert (event.status, event.error_kind, event.upstream_retries) == (200, None, 1)
    assert event.upstream_fallbacks is None


@pytest.mark.parametrize("status", [500, 502, 504, 529, 429])
def test_retryable_statuses(make_gateway: MakeGateway, fake_provider: FakeProvider, status: int) -> None:
    gw = make_gateway(upstream=FAST_RETRIES)
    fake_provider.push(Scenario(status=status), Scenario(status=status))
    assert ask(gw, "gpt-4o-mini").status_code == 200
    assert len(fake_provider.requests) == 3
    assert only_event(gw).upstream_retries == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(
    make_gateway: MakeGateway, fake_provider: FakeProvider, status: int
) -> None:
    gw = make_gateway(upstream=FAST_RETRIES)
    fake_provider.push(Scenario(status=status))
    assert ask(gw, "gpt-4o-mini").status_code == status
    assert len(fake_provider.requests) == 1
    event = only_event(gw)
    assert (event.status, event.upstream_retries) == (status, 0)


def test_retry_after_is_honoured(make_gateway: MakeGateway, fake_provider: FakeProvider) -> None:
    gw = make_gateway(upstream=FAST_RETRIES)  # the backoff alone would wait at most 0.01 s
    fake_provider.push(Scenario(status=429, headers={"retry-after": "0.6"}))
    started = time.monotonic()
    assert ask(gw, "gpt-4o-mini").status_code == 200
    assert time.monotonic() - started >= 0.6
    assert len(fake_provider.requests) == 2
    assert only_event(gw).upstream_retries == 1


def test_retry_after_ms(make_gateway: MakeGateway, fake_provider: FakeProvider) -> None:
    gw = make_gateway(upstream=FAST_RETRIES)
    fake_provider.push(Scenario(status=503, headers={"retry-after-ms": "400", "retry-after": "30"}))
    started = time.monotonic()
    assert ask(gw, "gpt-4o-mini").status_code == 200
    assert 0.4 <= time.monotonic() - started < 5


def test_retry_after_too_long_is_not_waited_for(
    make_gateway: MakeGateway, fake_provider: FakeProvider
) -> None:
    gw = make_gateway(upstream={**FAST_RETRIES, "retry_after_max_s": 5})
    fake_provider.push(Scenario(status=429, headers={"retry-after": "60"}))
    started = time.monotonic()
    reply = ask(gw, "gpt-4o-mini")
    assert time.monotonic() - started < 3
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "60"  # the client (or its SDK) can honour it
    assert len(fake_provider.requests) == 1
    assert only_event(gw).upstream_retries == 0


def test_retries_exhausted_pass_the_upstream_error_through(
    make_gateway: MakeGateway, fake_provider: FakeProvider
) -> None:
    gw = make_gateway(upstream={**FAST_RETRIES, "retries": 3})
    odd = {"error": {"message": "busy", "type": "server_error", "param": None, "code": "x"}}
    fake_provider.push(*[Scenario(status=503, error_body=odd)] * 4)
    reply = ask(gw, "gpt-4o-mini")
    assert (reply.status_code, reply.json()) == (503, odd)
    assert len(fake_provider.requests) == 4
    event = only_event(gw)
    assert (event.status, event.error_kind, event.upstream_retries) == (503, "upstream_error", 3)


def test_retries_off(make_gateway: MakeGateway, fake_provider: FakeProvider) -> None:
    gw = make_gateway(upstream={"retries": 0})
    fake_provider.push(Scenario(status=503))
    assert ask(gw, "gpt-4o-mini").status_code == 503
    assert len(fake_provider.requests) == 1


# --- fallbacks --------------------------------------------------------------------------------------


def test_fallback_answers_when_the_primary_keeps_failing(
    make_gateway: MakeGateway, fake_provider: FakeProvider, backup: FakeProvider
) -> None:
    gw = with_fallback(make_gateway, backup)
    fake_provider.push(*[Scenario(status=503)] * 3)
    backup.push(Scenario(text="from the spare"))
    with openai_client(gw) as client:
        raw = client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "from the spare"
    assert raw.headers["x-faregate-fallback"] == "backup/gpt-4o"
    assert len(fake_provider.requests) == 3
    [spare] = backup.requests
    assert spare.body is not None and spare.body["model"] == "gpt-4o"
    event = only_event(gw)
    assert (event.status, event.provider, event.model_used, event.model_requested) == (
        200,
        "backup",
        "gpt-4o",
        "fast",
    )
    assert event.upstream_fallbacks == "openai/gpt-4o-mini:503"
    assert event.upstream_retries == 2
    assert event.cost_nusd > 0  # priced as the model that answered


def test_fallback_when_the_primary_is_unreachable(
    make_gateway: MakeGateway, fake_provider: FakeProvider, backup: FakeProvider
) -> None:
    gw = make_gateway(
        providers={
            "dead": {"type": "openai", "base_url": f"http://127.0.0.1:{closed_port()}/v1"},
            "backup": {"type": "openai", "base_url": f"{backup.url}/v1"},
        },
        models={
            "fast": {"provider": "dead", "model": "gpt-4o-mini", "fallbacks": ["spare"]},
            "spare": {"provider": "backup", "model": "gpt-4o-mini"},
        },
        upstream=FAST_RETRIES,
    )
    assert ask(gw).status_code == 200
    event = only_event(gw)
    assert (event.provider, event.upstream_fallbacks, event.upstream_retries) == (
        "backup",
        "dead/gpt-4o-mini:unreachable",
        2,
    )


def test_a_client_error_does_not_fall_back(
    make_gateway: MakeGateway, fake_provider: FakeProvider, backup: FakeProvider
) -> None:
    gw = with_fallback(make_gateway, backup)
    fake_provider.push(Scenario(status=400))
    assert ask(gw).status_code == 400
    assert backup.requests == []


def test_every_upstream_failing_returns_the_last_error(
    make_gateway: MakeGateway, fake_provider: FakeProvider, backup: FakeProvider
) -> None:
    gw = with_fallback(make_gateway, backup, retries=0)
    fake_provider.push(Scenario(status=503))
    backup.push(Scenario(status=500))
    reply = ask(gw)
    assert reply.status_code == 500
    assert "x-faregate-fallback" not in reply.headers
    event = only_event(gw)
    assert (event.provider, event.status, event.error_kind) == ("backup", 500, "upstream_error")
    assert event.upstream_fallbacks == "openai/gpt-4o-mini:503>backup/gpt-4o:500"


def test_timeout_falls_back(
    make_gateway: MakeGateway, fake_provider: FakeProvider, backup: FakeProvider
) -> None:
    gw = make_gateway(
        providers={
            "openai": {"type": "openai", "base_url": f"{fake_provider.url}/v1", "timeout_s": 0.3},
            "backup": {"type": "openai", "base_url": f"{backup.url}/v1"},
        },
        models={
            "fast": {"provider": "openai", "model": "gpt-4o-mini", "fallbacks": ["spare"]},
            "spare": {"provider": "backup", "model": "gpt-4o"},
        },
        upstream={**FAST_RETRIES, "retries": 1},
    )
    fake_provider.push(Scenario(delay=2.0), Scenario(delay=2.0))
    started = time.monotonic()
    assert ask(gw).status_code == 200
    assert time.monotonic() - started < 1.8
    event = only_event(gw)
    assert (event.provider, event.upstream_fallbacks, event.upstream_retries) == (
        "backup",
        "openai/gpt-4o-mini:timeout",
        1,
    )


# --- the circuit breaker ------------------------------------------------------------------------------


def dead_primary(make_gateway: MakeGateway, dead: FakeProvider, **upstream: Any) -> RunningGateway:
    """`fast` on provider `dead` (the second fake, down: it drops connections, and counts them),
    falling back to `spare` on the shared fake."""
    dead.down = True
    return make_gateway(
        providers={"dead": {"type": "openai", "base_url": f"{dead.url}/v1"}},
        models={
            "fast": {"provider": "dead", "model": "gpt-4o-mini", "fallbacks": ["spare"]},
            "spare": {"provider": "openai", "model": "gpt-4o-mini"},
        },
        upstream={**FAST_RETRIES, "retries": 0, **upstream},
    )


def test_breaker_keeps_a_dead_upstream_out_then_probes_it(
    make_gateway: MakeGateway, fake_provider: FakeProvider, backup: FakeProvider
) -> None:
    gw = dead_primary(make_gateway, backup, breaker_failures=3, breaker_cooldown_s=0.6)
    assert [ask(gw).status_code for _ in range(10)] == [200] * 10  # the fallback answers them all
    assert len(backup.requests) == 3  # open after 3 failures: the other 7 skipped it
    assert gw.gateway.upstream.breaker_states()["dead"] == "open"
    events = wait_for_events(gw, 10)
    assert [e.upstream_fallbacks for e in events[:3]] == ["dead/gpt-4o-mini:unreachable"] * 3
    assert [e.upstream_fallbacks for e in events[3:]] == ["dead/gpt-4o-mini:circuit_open"] * 7
    assert {e.provider for e in events} == {"openai"}

    time.sleep(0.7)  # cooldown over: half-open, and the provider is back
    backup.down = False
    assert ask(gw).status_code == 200
    assert len(backup.requests) == 4  # the probe went to it, and succeeded
    assert gw.gateway.upstream.breaker_states()["dead"] == "closed"
    assert ask(gw).status_code == 200
    assert len(backup.requests) == 5
    assert wait_for_events(gw, 12)[-1].provider == "dead"


def test_half_open_sends_one_probe_among_concurrent_requests(
    make_gateway: MakeGateway, fake_provider: FakeProvider, backup: FakeProvider
) -> None:
    gw = dead_primary(make_gateway, backup, breaker_failures=1, breaker_cooldown_s=1.0)
    assert ask(gw).status_code == 200
    assert len(backup.requests) == 1
    time.sleep(1.1)

    async def burst() -> list[int]:
        async with async_openai_client(gw) as client:
            replies = await asyncio.gather(
                *(
                    client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES)
                    for _ in range(8)
                )
            )
        return [r.http_response.status_code for r in replies]

    assert asyncio.run(burst()) == [200] * 8
    assert len(backup.requests) == 2  # exactly one probe; it failed, so the circuit re-opened
    assert gw.gateway.upstream.breaker_states()["dead"] == "open"


def test_open_circuit_without_fallback_is_a_503(make_gateway: MakeGateway, backup: FakeProvider) -> None:
    backup.down = True
    gw = make_gateway(
        providers={"dead": {"type": "openai", "base_url": f"{backup.url}/v1"}},
        models={"fast": {"provider": "dead", "model": "gpt-4o-mini"}},
        upstream={"retries": 0, "breaker_failures": 1, "breaker_cooldown_s": 60},
    )
    assert ask(gw).status_code == 502
    with openai_client(gw) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="fast", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert "circuit open for provider 'dead'" in caught.value.message
    assert len(backup.requests) == 1
    second = wait_for_events(gw, 2)[1]
    assert (second.status, second.error_kind, second.provider) == (503, "upstream_circuit_open", "dead")


def test_client_errors_do_not_open_the_circuit(
    make_gateway: MakeGateway, fake_provider: FakeProvider
) -> None:
    gw = make_gateway(upstream={"breaker_failures": 2})
    fake_provider.push(*[Scenario(status=400)] * 4, *[Scenario(status=429, headers={"retry-after": "0"})] * 3)
    assert [ask(gw, "gpt-4o-mini").status_code for _ in range(5)] == [400] * 4 + [429]
    assert gw.gateway.upstream.breaker_states()["openai"] == "closed"


# --- timeouts -------------------------------------------------------------------------------------------


def test_timeout_header_sets_a_deadline(make_gateway: MakeGateway, fake_provider: FakeProvider) -> None:
    gw = make_gateway(upstream=FAST_RETRIES)
    fake_provider.push(*[Scenario(delay=3.0)] * 3)
    started = time.monotonic()
    reply = ask(gw, "gpt-4o-mini", **{"X-FareGate-Timeout": "0.5"})
    assert time.monotonic() - started < 1.5  # retries included: the deadline is for the whole call
    assert reply.status_code == 504
    assert reply.json()["error"]["code"] == "upstream_timeout"
    assert gw.gateway.upstream.breaker_states()["openai"] == "closed"  # the client's choice, not a fault


def test_timeout_header_cannot_extend_the_configured_timeout(
    make_gateway: MakeGateway, fake_provider: FakeProvider
) -> None:
    gw = make_gateway(
        providers={"openai": {"type": "openai", "base_url": f"{fake_provider.url}/v1", "timeout_s": 0.3}},
        upstream={"retries": 0},
    )
    fake_provider.push(Scenario(delay=2.0))
    started = time.monotonic()
    assert ask(gw, "gpt-4o-mini", **{"X-FareGate-Timeout": "60"}).status_code == 504
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_invalid_timeout_header(make_gateway: MakeGateway, fake_provider: FakeProvider, value: str) -> None:
    gw = make_gateway()
    reply = ask(gw, "gpt-4o-mini", **{"X-FareGate-Timeout": value})
    assert reply.status_code == 400
    assert "X-FareGate-Timeout" in reply.json()["error"]["message"]
    assert fake_provider.requests == []


# --- streams --------------------------------------------------------------------------------------------


def test_a_stream_is_retried_before_its_first_byte(
    make_gateway: MakeGateway, fake_provider: FakeProvider
) -> None:
    gw = make_gateway(upstream=FAST_RETRIES)
    fake_provider.push(Scenario(status=503))
    with openai_client(gw) as client:
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == Scenario.text
    event = only_event(gw)
    assert (event.status, event.upstream_retries, event.partial) == (200, 1, None)


def test_openai_stream_failing_mid_way_is_partial(
    make_gateway: MakeGateway, fake_provider: FakeProvider
) -> None:
    gw = make_gateway(upstream=FAST_RETRIES)
    fake_provider.faults = Faults(disconnect_rate=1.0)
    text = []
    with openai_client(gw) as client, pytest.raises(openai.APIError, match="failed mid-stream"):
        for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            text.append(chunk.choices[0].delta.content or "")
    assert "".join(text) and "".join(text) != Scenario.text  # part of the answer arrived
    assert len(fake_provider.requests) == 1  # bytes were relayed: not retried
    event = only_event(gw)
    assert (event.status, event.partial, event.error_kind) == (200, True, "upstream_unavailable")
    assert event.output_tokens > 0 and event.usage_estimated


def test_anthropic_stream_failing_mid_way_is_partial(
    make_gateway: MakeGateway, fake_provider: FakeProvider
) -> None:
    gw = make_gateway(upstream=FAST_RETRIES)
    fake_provider.faults = Faults(disconnect_rate=1.0)
    text = []
    with anthropic_client(gw) as client, pytest.raises(anthropic.APIStatusError, match="failed mid-stream"):
        for event in client.messages.create(model=SONNET, max_tokens=50, messages=MESSAGES, stream=True):
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text.append(event.delta.text)
    assert "".join(text)
    ledger = only_event(gw)
    assert (ledger.status, ledger.partial, ledger.error_kind) == (200, True, "upstream_unavailable")
    assert ledger.output_tokens > 1 and ledger.usage_estimated  # more than message_start's count
    assert ledger.input_tokens == Scenario.prompt_tokens  # message_start's usage is kept


def test_stream_error_event_is_well_formed_sse(
    make_gateway: MakeGateway, fake_provider: FakeProvider
) -> None:
    gw = make_gateway()
    fake_provider.faults = Faults(disconnect_rate=1.0)
    body = {"model": SONNET, "max_tokens": 50, "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", f"{gw.url}/v1/messages", json=body, timeout=10) as reply:
        raw = b"".join(reply.iter_bytes())
    events = [e for e in raw.split(b"\n\n") if e]
    assert raw.endswith(b"\n\n")
    assert events[-1].startswith(b"event: error\ndata: {")
    assert all(e.startswith(b"event: ") for e in events)
    assert b"message_stop" not in raw
