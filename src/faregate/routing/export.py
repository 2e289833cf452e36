"""`faregate router export`: production shadow checks as routing-outcome rows to train a router on.

The shipped router is trained on public benchmarks and transfers poorly to other kinds of traffic
(docs/routing.md); what a team needs is outcomes of its own prompts. Shadow checks are exactly that:
a request routed below the frontier was also answered by the frontier model, and the two answers
were compared. Each check becomes one line in the format `faregate router train` reads:
`{"id", "prompt", "category", "scores": {routed model: 1 if the answers agreed else 0, frontier
model: 1}, "costs": {model: usd}}`, the frontier's answer being the reference. The prompt is the
last user turn, as the router reads it, and exists only where `privacy.store_prompts` kept the
request body; checks without it are counted and skipped, never guessed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from faregate.ledger.events import nanos_to_usd
from faregate.pipeline.router import query_and_history


@dataclass(slots=True)
class ExportSummary:
    rows: int = 0
    agreed: int = 0
    skipped_no_prompt: int = 0  # privacy.store_prompts was off (or the body did not parse)
    skipped_no_query: int = 0  # no user text to route on (e.g. only tool results)
    models: Counter[tuple[str, str]] = field(default_factory=Counter)  # (tier, model) -> rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "agreed": self.agreed,
            "disagreed": self.rows - self.agreed,
            "skipped_no_prompt": self.skipped_no_prompt,
            "skipped_no_query": self.skipped_no_query,
            "models": [
                {"tier": tier, "model": model, "rows": n} for (tier, model), n in sorted(self.models.items())
            ],
        }

    def tiers_option(self) -> str | None:
        """`--tiers` for `faregate router train`, when each tier saw a single model."""
        by_tier: dict[str, set[str]] = {}
        for tier, model in self.models:
            by_tier.setdefault(tier, set()).add(model)
        if "frontier" not in by_tier or any(len(models) != 1 for models in by_tier.values()):
            return None
        order = [t for t in ("small", "medium") if t in by_tier] + ["frontier"]
        return ",".join(f"{t}={next(iter(by_tier[t]))}" for t in order)


def outcome_rows(checks: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], ExportSummary]:
    """Routing-outcome rows from `LedgerStore.shadow_checks`, and what was kept and skipped."""
    rows: list[dict[str, Any]] = []
    summary = ExportSummary()
    for check in checks:
        body = _body(check["prompt_text"])
        if body is None:
            summary.skipped_no_prompt += 1
            continue
        query, _ = query_and_history(str(check["protocol"]), body)
        if not query.strip():
            summary.skipped_no_query += 1
            continue
        routed, frontier = str(check["model"]), str(check["frontier_model"])
        agreed = bool(check["agreed"])
        rows.append(
            {
                "id": check["request_id"],
                "prompt": query,
                "category": check["feature"],
                "scores": {routed: 1.0 if agreed else 0.0, frontier: 1.0},
                "costs": {
                    routed: float(nanos_to_usd(int(check["cost_nusd"] or 0))),
                    frontier: float(nanos_to_usd(int(check["frontier_cost_nusd"] or 0))),
                },
            }
        )
        summary.rows += 1
        summary.agreed += agreed
        summary.models[(str(check["tier"]), routed)] += 1
        summary.models[("frontier", frontier)] += 1
    return rows, summary


def _body(prompt_text: str | None) -> dict[str, Any] | None:
    if not prompt_text:
        return None
    try:
        body = orjson.loads(prompt_text)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None
