"""OpenTelemetry spans for settled calls: one CLIENT span a call, GenAI semantic conventions + faregate.*.

Optional: opentelemetry-sdk is not a dependency of FareGate, so everything here imports it lazily and
`otel_tracing` fails at start-up, naming the package, when `telemetry.otel` is on and it is missing.
The span is recorded at settle (start = when the request arrived, end = now) rather than wrapped
around the pipeline, so it carries what only settle knows (cost, baseline, usage) and streams are
covered until their last byte, with no stage of the pipeline aware of tracing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from faregate import __version__
from faregate.call import UNATTRIBUTED, Call, Result
from faregate.config import Config
from faregate.errors import ConfigError
from faregate.ledger import CostEvent

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

SDK_PACKAGE = "opentelemetry-sdk"
OTLP_PACKAGE = "opentelemetry-exporter-otlp"
_OTLP_EXPORTERS = frozenset({"otlp", "otlp_proto_grpc", "otlp_proto_http"})
# gen_ai.provider.name's well-known values for the provider types FareGate speaks; an
# openai-compatible server is named by its configured provider name.
_SEMCONV_PROVIDER = {"openai": "openai", "anthropic": "anthropic"}


class OtelTracing:
    """A settle observer recording one span per call; `shutdown` flushes a provider it built."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        provider_names: Mapping[str, str] | None = None,
        *,
        owns_provider: bool = False,
    ) -> None:
        from opentelemetry import propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer_provider = provider
        self.tracer = provider.get_tracer("faregate", __version__)
        self.provider_names = dict(provider_names or {})
        self.owns_provider = owns_provider
        self._extract = propagate.extract
        self._client = SpanKind.CLIENT
        self._status = Status
        self._error = StatusCode.ERROR

    def observe(self, call: Call, result: Result, event: CostEvent) -> None:
        """Settle observer: the client's trace context (traceparent) is the span's parent."""
        requested = event.model_requested
        span = self.tracer.start_span(
            f"chat {requested}" if requested else "chat",
            context=self._extract(call.headers),
            kind=self._client,
            attributes=self._attributes(call, result, event),
            start_time=int(call.received_at * 1e9),
        )
        if event.status >= 400:
            span.set_status(self._status(self._error, event.error_kind or f"HTTP {event.status}"))
        span.end(time.time_ns())

    def _attributes(self, call: Call, result: Result, event: CostEvent) -> dict[str, Any]:
        attribution = call.attribution
        values: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": event.model_requested,
            "gen_ai.response.model": event.model_used,
            "gen_ai.usage.input_tokens": event.input_tokens,
            "gen_ai.usage.output_tokens": event.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": event.cached_tokens,
            "gen_ai.usage.cache_creation.input_tokens": event.cache_write_tokens,
            "faregate.request_id": event.request_id,
            "faregate.feature": event.feature,
            "faregate.team": event.team,
            "faregate.template": event.template,
            "faregate.price_known": event.price_known,
            "faregate.cache_status": event.cache_status,
            "faregate.tier": event.tier,
            "faregate.provider": event.provider,
            "error.type": event.error_kind if event.status >= 400 else None,
        }
        if event.provider is not None:
            values["gen_ai.provider.name"] = self.provider_names.get(event.provider, event.provider)
        if event.price_known:  # an unknown price is flagged, never reported as $0
            values["faregate.cost_usd"] = event.cost_nusd / 1e9
            values["faregate.baseline_cost_usd"] = event.baseline_cost_nusd / 1e9
        if attribution.conversation != UNATTRIBUTED:
            values["gen_ai.conversation.id"] = attribution.conversation
        if result.stop_reason:
            values["gen_ai.response.finish_reasons"] = (result.stop_reason,)
        return {key: value for key, value in values.items() if value is not None}

    def shutdown(self) -> None:
        """Export what is buffered and stop, if the provider is ours (blocking: run it off the loop)."""
        if self.owns_provider:
            shutdown = getattr(self.tracer_provider, "shutdown", None)
            if shutdown is not None:
                shutdown()


def otel_tracing(config: Config, environ: Mapping[str, str] | None = None) -> OtelTracing | None:
    """The tracing observer `telemetry.otel` asks for; None when it is off.

    A tracer provider already installed globally (`opentelemetry-instrument`, a host application)
    is used as it is. Otherwise FareGate builds one from the standard variables: OTEL_SERVICE_NAME /
    OTEL_RESOURCE_ATTRIBUTES (service.name defaults to "faregate") and OTEL_TRACES_EXPORTER
    (default otlp; console and none also work; the exporter reads its own OTEL_EXPORTER_* settings).
    """
    if not config.telemetry.otel:
        return None
    env = os.environ if environ is None else environ
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            f"telemetry.otel is on but {SDK_PACKAGE} is not installed: pip install {SDK_PACKAGE} "
            f"(and {OTLP_PACKAGE} to export over OTLP), or set telemetry.otel: false"
        ) from None
    names = {name: _SEMCONV_PROVIDER.get(settings.type, name) for name, settings in config.providers.items()}
    installed = trace.get_tracer_provider()
    if isinstance(installed, SdkTracerProvider):
        return OtelTracing(installed, names)
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "faregate"}))
    provider = SdkTracerProvider(resource=resource)
    for exporter in _exporters(env.get("OTEL_TRACES_EXPORTER") or "otlp"):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return OtelTracing(provider, names, owns_provider=True)


def _exporters(setting: str) -> list[Any]:
    """Span exporters named in OTEL_TRACES_EXPORTER, found by the SDK's own entry points."""
    known = {ep.name: ep for ep in entry_points(group="opentelemetry_traces_exporter")}
    exporters = []
    for name in (part.strip() for part in setting.split(",")):
        if not name or name == "none":
            continue
        if name not in known:
            package = (
                OTLP_PACKAGE if name in _OTLP_EXPORTERS else f"the package providing the {name!r} exporter"
            )
            raise ConfigError(
                f"telemetry.otel: OTEL_TRACES_EXPORTER={setting} needs {package}: pip install it, "
                "or set OTEL_TRACES_EXPORTER=console or none"
            )
        exporters.append(known[name].load()())
    return exporters
