"""History policies and output caps per feature, from the ledger.

History: requests the policy saw, history tokens the clients sent against those sent upstream, the
summary calls (`history_policy = "summarize"`, with their cost: a summary is not free), and the
requests where the policy stepped aside or fell back, with the most frequent reason. Caps:
requests whose limit FareGate imposed and how many of those the cap cut short, so a cap that
truncates real answers is visible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from faregate.ledger.events import nanos_to_usd
from faregate.ledger.migrations import Dialect

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def history_report(run: Run, dialect: Dialect, since: float | None = None) -> list[dict[str, Any]]:
    """One entry per feature with a history policy or an output cap, most requests first."""
    where, params = "", []
    if since is not None:
        where, params = f" AND ts >= {dialect.param}", [since]
    features: dict[str, dict[str, Any]] = {}
    for feature, policy, requests, before, after, changed, noted, cost in run(
        "SELECT feature, history_policy, COUNT(*), SUM(history_tokens_before), SUM(history_tokens_after), "
        "SUM(CASE WHEN history_tokens_after < history_tokens_before THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN history_note IS NULL THEN 0 ELSE 1 END), SUM(cost_nusd) "
        f"FROM events WHERE history_policy IS NOT NULL{where} GROUP BY feature, history_policy",
        params,
    ):
        entry = features.setdefault(feature, _empty(feature))
        history = entry["history"]
        if policy == "summarize":
            history["summary_calls"] += int(requests)
            history["summary_cost_usd"] += nanos_to_usd(int(cost or 0))
            continue
        history["policy"] = policy
        history["requests"] += int(requests)
        history["tokens_before"] += int(before or 0)
        history["tokens_after"] += int(after or 0)
        history["shortened"] += int(changed or 0)
        history["stepped_aside"] += int(noted or 0)
    for feature, note, count in run(
        "SELECT feature, history_note, COUNT(*) FROM events "
        f"WHERE history_note IS NOT NULL AND history_policy <> 'summarize'{where} "
        "GROUP BY feature, history_note ORDER BY COUNT(*) DESC",
        params,
    ):
        history = features[feature]["history"]
        if history["top_note"] is None:
            history["top_note"] = f"{note} ({int(count)})"
    for feature, capped, cut in run(
        "SELECT feature, COUNT(*), SUM(CASE WHEN output_capped THEN 1 ELSE 0 END) "
        f"FROM events WHERE output_cap IS NOT NULL{where} GROUP BY feature",
        params,
    ):
        caps = features.setdefault(feature, _empty(feature))["caps"]
        caps["capped_requests"] = int(capped)
        caps["cut"] = int(cut or 0)
    report = [_finish(entry) for entry in features.values()]
    report.sort(key=lambda e: (-(e["history"]["requests"] + e["caps"]["capped_requests"]), e["feature"]))
    return report


def _empty(feature: str) -> dict[str, Any]:
    return {
        "feature": feature,
        "history": {
            "policy": None,
            "requests": 0,
            "tokens_before": 0,
            "tokens_after": 0,
            "shortened": 0,
            "stepped_aside": 0,
            "top_note": None,
            "summary_calls": 0,
            "summary_cost_usd": nanos_to_usd(0),
        },
        "caps": {"capped_requests": 0, "cut": 0},
    }


def _finish(entry: dict[str, Any]) -> dict[str, Any]:
    history = entry["history"]
    before = history["tokens_before"]
    history["reduction"] = 1 - history["tokens_after"] / before if before else 0.0
    caps = entry["caps"]
    caps["cut_share"] = caps["cut"] / caps["capped_requests"] if caps["capped_requests"] else 0.0
    return entry
