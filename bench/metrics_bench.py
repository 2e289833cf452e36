"""Benchmark the telemetry observers: what `Metrics.observe` adds to every request, and a scrape.

    .venv/bin/python bench/metrics_bench.py
    .venv/bin/python bench/metrics_bench.py --calls 200000 --label-sets 1000

`observe` runs on the event loop for every settled call, so its cost is per request: it is timed
in batches of 100 calls (a timer read per call would cost as much as the call) over a mix of 200
(feature, model) pairs, events carrying every token kind, cost, a cache status and a latency. The
render is timed with `--label-sets` distinct (feature, model) pairs in every metric, which is the
cap, so it is the largest scrape a gateway produces. With opentelemetry-sdk installed, the span
observer is timed too (an SDK tracer provider with no exporter: the span's own cost).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from faregate.call import Call, Result
from faregate.ledger import CostEvent
from faregate.telemetry import Metrics

BATCH = 100


def event(feature: str, model: str, i: int) -> CostEvent:
    return CostEvent(
        request_id=f"{i:032x}",
        ts=time.time(),
        feature=feature,
        team="team-a",
        template="v1",
        cohort="unattributed",
        user="unattributed",
        conversation="unattributed",
        task="unattributed",
        protocol="openai",
        provider="openai",
        model_requested=model,
        model_used=model,
        stream=False,
        status=200 if i % 50 else 502,
        error_kind=None,
        input_tokens=1500 + i % 700,
        cached_tokens=1024 if i % 3 else 0,
        cache_write_tokens=0 if i % 3 else 1024,
        cache_write_1h_tokens=0,
        output_tokens=120 + i % 90,
        reasoning_tokens=40 if i % 4 == 0 else 0,
        usage_estimated=False,
        price_known=True,
        cost_nusd=1_234_567 + i,
        baseline_cost_nusd=1_334_567 + i,
        latency_ms=800.0,
        upstream_ms=200.0 + (i % 4000),
        cache_status=("miss", "hit", "bypass")[i % 3],
        tier=("small", "frontier")[i % 2],
        route_fallback=i % 7 == 0,
    )


def workload(pairs: int, size: int) -> list[tuple[Call, Result, CostEvent]]:
    """`size` settled calls spread over `pairs` distinct (feature, model) pairs."""
    models = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "claude-haiku-4-5")
    names = [(f"feature-{p // len(models)}", models[p % len(models)]) for p in range(pairs)]
    call = Call("r", "openai", {}, b"", "gpt-4o-mini", False, {})
    result = Result(status=200, headers={})
    return [(call, result, event(*names[i % pairs], i)) for i in range(size)]


def time_observer(observe: Any, items: list[tuple[Call, Result, CostEvent]], calls: int) -> list[float]:
    """Microseconds per call, one figure per batch of BATCH calls."""
    per_call: list[float] = []
    n = len(items)
    for start in range(0, calls, BATCH):
        batch = [items[(start + j) % n] for j in range(BATCH)]
        began = time.perf_counter_ns()
        for call, result, ev in batch:
            observe(call, result, ev)
        per_call.append((time.perf_counter_ns() - began) / BATCH / 1000)
    return per_call


def summary(name: str, micros: list[float]) -> None:
    micros = sorted(micros)
    p50 = statistics.median(micros)
    p99 = micros[int(len(micros) * 0.99) - 1]
    print(f"{name:<34} p50 {p50:6.2f} µs   p99 {p99:6.2f} µs   ({len(micros) * BATCH:,} calls)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--label-sets", type=int, default=1_000)
    args = parser.parse_args()

    items = workload(200, 10_000)
    metrics = Metrics()
    time_observer(metrics.observe, items, 10_000)  # warm-up: every label set exists
    summary("Metrics.observe", time_observer(metrics.observe, items, args.calls))

    full = Metrics(max_label_sets=args.label_sets)
    for call, result, ev in workload(args.label_sets, args.label_sets * 4):
        full.observe(call, result, ev)
    series = sum(len(f.text) for f in full.families)
    renders = []
    for _ in range(20):
        began = time.perf_counter()
        body = full.render()
        renders.append((time.perf_counter() - began) * 1000)
    lines = body.count(b"\n")
    print(
        f"{'Metrics.render':<34} p50 {statistics.median(renders):6.2f} ms   max {max(renders):6.2f} ms   "
        f"({series:,} label sets, {lines:,} lines, {len(body) / 1024:,.0f} KiB)"
    )

    try:
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        print("OtelTracing.observe                skipped: opentelemetry-sdk is not installed")
        return
    from faregate.telemetry import OtelTracing

    tracing = OtelTracing(TracerProvider(), {"openai": "openai"})
    time_observer(tracing.observe, items, 2_000)
    summary("OtelTracing.observe (no exporter)", time_observer(tracing.observe, items, args.calls // 5))


if __name__ == "__main__":
    main()
