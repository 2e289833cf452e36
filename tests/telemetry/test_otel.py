"""OpenTelemetry spans: GenAI semantic-convention attributes, faregate.* attributes, start-up errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from faregate.call import Attribution, Result
from faregate.config import Config
from faregate.errors import ConfigError
from faregate.fake_provider import FakeProvider, Scenario
from faregate.telemetry import OtelTracing, otel_tracing
from tests.fixtures.gateway import RunningGateway
from tests.server._support import openai_client, wait_for_events
from tests.telemetry.test_metrics import make_call, make_event

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Iterator[OtelTracing]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield OtelTracing(provider, {"openai": "openai", "vllm": "vllm"})
    provider.shutdown()


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = exporter.get_finished_spans()
    return span


def test_a_span_per_call_with_genai_and_faregate_attributes(
    tracing: OtelTracing, exporter: InMemorySpanExporter
) -> None:
    call = make_call(
        attribution=Attribution(feature="faq", team="support", template="v2", conversation="c-9"),
        headers={"traceparent": TRACEPARENT},
    )
    call.received_at = 1_700_000_000.5
    event = make_event(
        request_id="req-1",
        feature="faq",
        team="support",
        template="v2",
        model_used="gpt-4o-mini-2024-07-18",
        input_tokens=1500,
        cached_tokens=1024,
        cache_write_tokens=0,
        output_tokens=60,
        cost_nusd=1_250_000,
        baseline_cost_nusd=2_000_000,
        cache_status="miss",
        tier="small",
    )
    tracing.observe(call, Result(status=200, headers={}, stop_reason="stop"), event)
    span = only_span(exporter)
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.start_time == 1_700_000_000_500_000_000
    assert span.end_time is not None and span.end_time > span.start_time
    assert span.status.status_code is StatusCode.UNSET
    assert span.parent is not None and span.parent.trace_id == int(TRACEPARENT.split("-")[1], 16)
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 1500,
        "gen_ai.usage.output_tokens": 60,
        "gen_ai.usage.cache_read.input_tokens": 1024,
        "gen_ai.usage.cache_creation.input_tokens": 0,
        "gen_ai.conversation.id": "c-9",
        "gen_ai.response.finish_reasons": ("stop",),
        "faregate.request_id": "req-1",
        "faregate.feature": "faq",
        "faregate.team": "support",
        "faregate.template": "v2",
        "faregate.provider": "openai",
        "faregate.price_known": True,
        "faregate.cost_usd": pytest.approx(0.00125),
        "faregate.baseline_cost_usd": pytest.approx(0.002),
        "faregate.cache_status": "miss",
        "faregate.tier": "small",
    }


def test_an_error_sets_the_error_status_and_an_unknown_price_is_not_zero(
    tracing: OtelTracing, exporter: InMemorySpanExporter
) -> None:
    event = make_event(
        status=502, error_kind="upstream_error", model_used=None, price_known=False, provider="vllm"
    )
    tracing.observe(make_call(), Result(status=502, headers={}), event)
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "upstream_error"
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "upstream_error"
    assert attributes["gen_ai.provider.name"] == "vllm"
    assert attributes["faregate.price_known"] is False
    assert "faregate.cost_usd" not in attributes and "gen_ai.response.model" not in attributes
    assert span.parent is None


def config(otel: bool) -> Config:
    return Config.model_validate(
        {
            "telemetry": {"otel": otel},
            "providers": {
                "openai": {"type": "openai"},
                "local": {"type": "openai-compatible", "base_url": "http://x"},
            },
        }
    )


def test_off_means_no_observer() -> None:
    assert otel_tracing(config(False)) is None


def test_on_builds_a_provider_from_the_otel_variables() -> None:
    tracing = otel_tracing(config(True), environ={"OTEL_TRACES_EXPORTER": "none"})
    assert tracing is not None and tracing.owns_provider
    assert tracing.provider_names == {"openai": "openai", "local": "local"}
    provider = tracing.tracer_provider
    assert isinstance(provider, TracerProvider)
    resource = provider.resource
    assert resource.attributes["service.name"] == "faregate"
    tracing.shutdown()


def test_on_without_the_sdk_is_a_clear_start_up_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ConfigError, match="pip install opentelemetry-sdk"):
        otel_tracing(config(True), environ={})


def test_an_exporter_that_is_not_installed_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("faregate.telemetry.otel.entry_points", lambda group: [])
    with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp"):
        otel_tracing(config(True), environ={"OTEL_TRACES_EXPORTER": "otlp"})


@pytest.fixture
def traced_gateway(make_gateway: Callable[..., RunningGateway], tracing: OtelTracing) -> RunningGateway:
    gw = make_gateway()
    gw.gateway.settle.observers.append(tracing.observe)
    return gw


def test_end_to_end_spans_match_the_ledger(
    traced_gateway: RunningGateway, exporter: InMemorySpanExporter, fake_provider: FakeProvider
) -> None:
    fake_provider.scenario = Scenario(prompt_tokens=1500, cached_tokens=1024, completion_tokens=60)
    client = openai_client(
        traced_gateway, default_headers={"X-FareGate-Feature": "chat", "traceparent": TRACEPARENT}
    )
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    [event] = wait_for_events(traced_gateway, 1)
    span = only_span(exporter)
    attributes: dict[str, Any] = dict(span.attributes or {})
    assert attributes["faregate.request_id"] == event.request_id
    assert attributes["gen_ai.usage.input_tokens"] == event.input_tokens == 1500
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == event.cached_tokens == 1024
    assert attributes["gen_ai.usage.output_tokens"] == event.output_tokens == 60
    assert attributes["faregate.cost_usd"] == pytest.approx(event.cost_nusd / 1e9)
    assert attributes["faregate.feature"] == "chat"
    assert span.context is not None and span.context.trace_id == int(TRACEPARENT.split("-")[1], 16)
