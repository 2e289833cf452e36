"""Ledger tests; `make_event` builds a valid event so each test states only what it is about."""

from __future__ import annotations

import itertools
from typing import Any

from faregate.ledger import CostEvent

_ids = itertools.count()


def make_event(**overrides: Any) -> CostEvent:
    n = next(_ids)
    fields: dict[str, Any] = {
        "request_id": f"req-{n:07d}",
        "ts": 1_700_000_000.0 + n / 1000,  # distinct and increasing: events() order is predictable
        "feature": "chat",
        "team": "core",
        "template": "unattributed",
        "cohort": "unattributed",
        "user": "u1",
        "conversation": "unattributed",
        "task": "unattributed",
        "protocol": "openai",
        "provider": "openai",
        "model_requested": "gpt-4o-mini",
        "model_used": "gpt-4o-mini",
        "stream": False,
        "status": 200,
        "error_kind": None,
        "input_tokens": 100,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "output_tokens": 10,
        "reasoning_tokens": 0,
        "usage_estimated": False,
        "price_known": True,
        "cost_nusd": 1_000,
        "baseline_cost_nusd": 1_000,
        "latency_ms": 12.5,
        "upstream_ms": 10.25,
    }
    fields.update(overrides)
    return CostEvent(**fields)
