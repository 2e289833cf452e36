"""`log_cost_event(...)`: one cost event recorded by hand, for calls no tracked client made
(another SDK, a batch job's results, a provider FareGate has no wrapper for)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from faregate.call import Attribution, Protocol, Usage
from faregate.sdk.calls import plain
from faregate.sdk.events import Observed
from faregate.sdk.process import submit

log = logging.getLogger("faregate.sdk")


def log_cost_event(
    *,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    reasoning_tokens: int = 0,
    feature: str | None = None,
    team: str | None = None,
    template: str | None = None,
    cohort: str | None = None,
    user: str | None = None,
    conversation: str | None = None,
    task: str | None = None,
    provider: str | None = None,
    cost_usd: Decimal | str | float | None = None,
    protocol: Protocol | None = None,
    body: Mapping[str, Any] | None = None,
    model_requested: str | None = None,
    status: int = 200,
    error_kind: str | None = None,
    latency_ms: float = 0.0,
    stream: bool = False,
    ts: float | None = None,
) -> str:
    """Record one call; returns its request id in the ledger.

    Token counts follow the ledger's convention: `input_tokens` is the whole prompt, cached reads and
    cache writes included (OpenAI's `prompt_tokens`; for Anthropic, `input_tokens +
    cache_read_input_tokens + cache_creation_input_tokens`); `output_tokens` includes reasoning. Without
    `cost_usd` the call is priced like a gateway call (`provider` is a genai-prices id such as "openai",
    or any name, then the model name alone decides). `body`, the request as sent (Chat Completions, or
    Messages with `protocol="anthropic"`), gives the event its anatomy. Never raises: a bad argument is
    logged and the event recorded as well as it can be.
    """
    cost = _decimal(cost_usd)
    seen = Observed(
        protocol=protocol or ("anthropic" if provider == "anthropic" else "openai"),
        attribution=Attribution(
            **{
                k: v
                for k, v in {
                    "feature": feature,
                    "team": team,
                    "template": template,
                    "cohort": cohort,
                    "user": user,
                    "conversation": conversation,
                    "task": task,
                }.items()
                if v
            }
        ),
        model_requested=model_requested or model,
        model_used=model,
        stream=stream,
        provider=provider,
        status=status,
        error_kind=error_kind,
        usage=Usage(
            input_tokens=_count(input_tokens),
            cache_read_tokens=_count(cached_tokens),
            cache_write_tokens=_count(cache_write_tokens),
            cache_write_1h_tokens=_count(cache_write_1h_tokens),
            output_tokens=_count(output_tokens),
            reasoning_tokens=_count(reasoning_tokens),
        ),
        latency_ms=latency_ms,
        cost_usd=cost,
    )
    if ts is not None:
        seen.ts = ts
    if body is not None:
        try:
            seen.body = plain(body)
        except Exception:
            log.exception("log_cost_event: cannot read the request body")
    submit(seen)
    return seen.request_id


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    log.error("log_cost_event: a token count must be a non-negative int", extra={"value": repr(value)})
    return 0


def _decimal(value: Decimal | str | float | None) -> Decimal | None:
    """Money is exact: a float is read through its shortest repr (0.1 is 0.1, not 0.1000000000000000055)."""
    if value is None:
        return None
    try:
        cost = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        cost = Decimal("NaN")
    if not cost.is_finite() or cost < 0:
        log.error("log_cost_event: cost_usd must be finite and non-negative", extra={"value": repr(value)})
        return None
    return cost
