"""Observations in, the report object out (the format is docs/analyze-report.md).

`Analyzer.add` folds one `Observation` into bounded running totals (per feature, per model, per user
turn, per hour, per prefix); `Analyzer.build` turns them into the report. Nothing here holds the
requests themselves, so memory does not grow with the length of the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from faregate.analyze.observe import Observation
from faregate.analyze.reader import ErrorLog
from faregate.analyze.repetition import RepetitionCounter
from faregate.analyze.savings import STRATEGIES, SavingsInput, SavingsModel
from faregate.analyze.verdict import decide_verdict
from faregate.anatomy import COMPONENTS
from faregate.call import UNATTRIBUTED
from faregate.pricing import PriceBook

__all__ = ["STRATEGIES", "TOKEN_KEYS", "Analyzer"]

TOKEN_KEYS = (*COMPONENTS, "output")
MAX_GROUPS = 1000  # features or models beyond this many are counted under OTHER
OTHER = "(other)"
MAX_TURN = 1000  # conversations longer than this are counted at this turn
MAX_DISTINCT = 100_000  # distinct prefixes counted exactly per feature; beyond, "at least"
MAX_FINDINGS = 20
MIN_SPAN_S = 3600.0  # logs spanning less than this are not extrapolated from their timestamps
_ZERO = Decimal(0)


@dataclass
class _Group:
    requests: int = 0
    tokens: list[int] = field(default_factory=lambda: [0] * len(TOKEN_KEYS))
    cost: Decimal = _ZERO

    def add(self, obs: Observation) -> None:
        self.requests += 1
        a = obs.anatomy
        t = self.tokens
        t[0] += a.system
        t[1] += a.tools
        t[2] += a.history
        t[3] += a.context
        t[4] += a.query
        t[5] += a.overhead
        t[6] += obs.output_tokens
        self.cost += obs.cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "tokens": dict(zip(TOKEN_KEYS, self.tokens, strict=True)),
            "share": _shares(self.tokens),
            "cost_usd": _usd(self.cost),
        }


@dataclass
class _Prefixes:
    requests: int = 0
    prefixes: set[int] = field(default_factory=set)
    skeletons: set[int] = field(default_factory=set)
    volatile_requests: int = 0
    hourly: dict[int, set[int]] = field(default_factory=dict)  # unix hour -> distinct prefixes
    text_known: bool = True  # False once a ledger event (no prompt text, so no skeleton) is added


class Analyzer:
    def __init__(self, prices: PriceBook, *, ledger: bool = False, near_threshold: float = 0.8) -> None:
        self.ledger = ledger
        self.savings = SavingsModel(prices)
        self.repetition = RepetitionCounter(near_threshold=near_threshold)
        self.total = _Group()
        self.features: dict[str, _Group] = {}
        self.models: dict[str, _Group] = {}
        self.turns: dict[int, list[int]] = {}  # turn -> [requests, history tokens, other input tokens]
        self.prefixes: dict[str, _Prefixes] = {}
        self.findings: dict[tuple[str, str], list[Any]] = {}  # (feature, kind) -> [count, example]
        self.hours: dict[int, list[Any]] = {}  # unix hour -> [requests, cost]
        self.start: float | None = None
        self.end: float | None = None
        self.price_unknown = 0
        self.attributed = 0

    def add(self, obs: Observation) -> None:
        self.total.add(obs)
        _group(self.features, obs.feature).add(obs)
        _group(self.models, obs.model).add(obs)
        if not obs.price_known:
            self.price_unknown += 1
        if obs.feature != UNATTRIBUTED:
            self.attributed += 1
        a = obs.anatomy
        if obs.user_turns is not None and obs.user_turns > 0:
            turn = self.turns.setdefault(min(obs.user_turns, MAX_TURN), [0, 0, 0])
            turn[0] += 1
            turn[1] += a.history
            turn[2] += a.total() - a.history
        if obs.ts is not None:
            self.start = obs.ts if self.start is None else min(self.start, obs.ts)
            self.end = obs.ts if self.end is None else max(self.end, obs.ts)
            hour = self.hours.setdefault(int(obs.ts // 3600), [0, _ZERO])
            hour[0] += 1
            hour[1] += obs.cost
        if obs.system_hash is not None:
            self._add_prefix(obs, obs.system_hash, obs.skeleton_hash)
        duplicate = self.repetition.add(obs.feature, obs.query) if obs.query else None
        prefix_key: tuple[object, ...] = (obs.model, obs.skeleton_hash, obs.tools_hash)
        if obs.skeleton_hash is None:  # ledger: no prompt text, a feature's prefix is taken as shared
            prefix_key = (obs.model, obs.feature)
        self.savings.add(
            SavingsInput(
                feature=obs.feature,
                model=obs.model,
                provider=obs.provider,
                ts=obs.ts,
                cost=obs.cost,
                system=a.system,
                tools=a.tools,
                history=a.history,
                context=a.context,
                query=a.query,
                output_tokens=obs.output_tokens,
                cached_tokens=obs.cached_tokens,
                cache_write_tokens=obs.cache_write_tokens,
                user_turns=obs.user_turns,
                prefix_key=prefix_key,
                duplicate=duplicate,
            )
        )

    def _add_prefix(self, obs: Observation, system_hash: int, skeleton_hash: int | None) -> None:
        p = self.prefixes.get(obs.feature)
        if p is None:
            p = self.prefixes[obs.feature] = _Prefixes()
        p.requests += 1
        if len(p.prefixes) < MAX_DISTINCT:
            p.prefixes.add(system_hash)
        if obs.ts is not None:
            hourly = p.hourly.setdefault(int(obs.ts // 3600), set())
            if len(hourly) < MAX_DISTINCT:
                hourly.add(system_hash)
        if skeleton_hash is None:
            p.text_known = False
        elif len(p.skeletons) < MAX_DISTINCT:
            p.skeletons.add(skeleton_hash)
        if obs.volatile:
            p.volatile_requests += 1
            for kind, example in obs.volatile:
                finding = self.findings.get((obs.feature, kind))
                if finding is None:
                    finding = self.findings[(obs.feature, kind)] = [0, example]
                finding[0] += 1

    @property
    def requests(self) -> int:
        return self.total.requests

    def build(self, inputs: list[str], errors: ErrorLog, now: datetime | None = None) -> dict[str, Any]:
        """The report object, every key of docs/analyze-report.md, JSON-ready (floats, not Decimals)."""
        span = None if self.start is None or self.end is None else self.end - self.start
        days = None if span is None else span / 86400
        # Spans under an hour say nothing about a day's volume: such logs count as one day, like
        # logs without timestamps.
        days_used = days if span is not None and span >= MIN_SPAN_S else None
        per_day_basis = Decimal(repr(days_used)) if days_used else Decimal(1)
        monthly_factor = Decimal(30) / per_day_basis
        savings = self.savings.result(monthly_factor, ledger=self.ledger)
        monthly_cost = self.total.cost * monthly_factor
        requests_per_day = self.requests / days_used if days_used else None
        verdict, reason = decide_verdict(
            requests_per_day if requests_per_day is not None else float(self.requests),
            assumed_one_day=requests_per_day is None,
            spend_outgrows_requests=self._spend_outgrows_requests(days),
            coverage=self.attributed / self.requests if self.requests else 0.0,
            monthly_cost=float(monthly_cost),
            savings=savings,
        )
        return {
            "generated_at": _iso((now or datetime.now(UTC)).timestamp()),
            "inputs": inputs,
            "requests": self.requests,
            "period": {
                "start": _iso(self.start),
                "end": _iso(self.end),
                "days": None if days is None else round(days, 4),
            },
            "tokens": dict(zip(TOKEN_KEYS, self.total.tokens, strict=True)),
            "share": _shares(self.total.tokens),
            "cost_usd": _usd(self.total.cost),
            "price_unknown_requests": self.price_unknown,
            "by_feature": _groups(self.features),
            "by_model": _groups(self.models),
            "history_growth": self._history_growth(),
            "prefix_stability": self._prefix_stability(),
            "repetition": self.repetition.summary(),
            "savings": savings,
            "savings_total_monthly_usd": savings[-1]["stacked_monthly_usd"] if savings else 0.0,
            "monthly_cost_usd": _usd(monthly_cost),
            "requests_per_day": None if requests_per_day is None else round(requests_per_day, 2),
            "verdict": verdict,
            "verdict_reason": reason,
            "errors": errors.as_dict(),
        }

    def _history_growth(self) -> dict[str, Any]:
        by_turn = []
        crossover = None
        for turn in sorted(self.turns):
            requests, history, other = self.turns[turn]
            by_turn.append(
                {
                    "turn": turn,
                    "requests": requests,
                    "mean_history_tokens": round(history / requests, 1),
                    "mean_other_input_tokens": round(other / requests, 1),
                }
            )
            if crossover is None and history > other:
                crossover = turn
        return {"by_turn": by_turn, "crossover_turn": crossover}

    def _prefix_stability(self) -> dict[str, Any]:
        by_feature = {
            feature: {
                "requests": p.requests,
                "distinct_system_prefixes": len(p.prefixes),
                "distinct_skeletons": len(p.skeletons) if p.text_known else None,
                "peak_prefixes_per_hour": max(map(len, p.hourly.values()), default=None),
                "volatile_requests": p.volatile_requests,
            }
            for feature, p in sorted(self.prefixes.items(), key=lambda kv: (-kv[1].requests, kv[0]))
        }
        ranked = sorted(self.findings.items(), key=lambda kv: (-kv[1][0], kv[0]))[:MAX_FINDINGS]
        findings = [
            {"kind": kind, "text": example, "feature": feature, "count": count}
            for (feature, kind), (count, example) in ranked
        ]
        return {"by_feature": by_feature, "findings": findings}

    def _spend_outgrows_requests(self, days: float | None) -> tuple[float, float] | None:
        """(spend growth, request growth) from the first half of the period to the second, when spend
        grew more than 10% faster than requests over at least two days; otherwise None."""
        if days is None or days < 2 or self.start is None or self.end is None:
            return None
        middle = int((self.start + self.end) / 2 // 3600)
        requests = [0, 0]
        costs = [_ZERO, _ZERO]
        for hour, (count, cost) in self.hours.items():
            half = 0 if hour < middle else 1
            requests[half] += count
            costs[half] += cost
        if min(requests) < 50 or costs[0] <= 0:
            return None
        spend = float(costs[1] / costs[0])
        volume = requests[1] / requests[0]
        return (spend, volume) if spend > 1 and spend > volume * 1.1 else None


def _group(groups: dict[str, _Group], name: str) -> _Group:
    group = groups.get(name)
    if group is None:
        if len(groups) >= MAX_GROUPS:
            name = OTHER
            group = groups.get(name)
        if group is None:
            group = groups[name] = _Group()
    return group


def _groups(groups: dict[str, _Group]) -> dict[str, Any]:
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1].cost, -kv[1].requests, kv[0]))
    return {name: group.as_dict() for name, group in ranked}


def _shares(tokens: list[int]) -> dict[str, float]:
    total = sum(tokens[: len(COMPONENTS)])
    if total <= 0:
        return dict.fromkeys(COMPONENTS, 0.0)
    return {name: tokens[i] / total for i, name in enumerate(COMPONENTS)}


def _usd(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.000001")))


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
