"""Telemetry from settled calls: Prometheus metrics (`GET /metrics`) and optional OpenTelemetry spans.

Both are settle observers (`Settle.observers`): they see every call once, with its ledger event, and
never sit on the pipeline. OpenTelemetry is imported only when `telemetry.otel` is on.
"""

from faregate.telemetry.metrics import CONTENT_TYPE, Metrics, metrics_route
from faregate.telemetry.otel import OtelTracing, otel_tracing

__all__ = ["CONTENT_TYPE", "Metrics", "OtelTracing", "metrics_route", "otel_tracing"]
