"""Alerts: budget thresholds, spend spikes and template regressions, to the log and a webhook.

An alert must never hurt a request: `send` logs first (so the log has every alert even when the
webhook is down), posts with a short timeout, and swallows every failure after logging it. The
webhook URL is never logged: chat webhooks carry their secret in the URL.

The detectors are small and separate: budget crossings are found by the budget stage when it
settles (the store remembers what was sent, so each threshold alerts once per period across
restarts and replicas); `SpikeDetector` is a settle observer keeping hourly sums in memory;
`detect_template_regressions` is a pure function over per-template rows from the ledger.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import orjson

from faregate.call import UNATTRIBUTED, Call, Result
from faregate.config import AlertSettings
from faregate.ledger.events import CostEvent, nanos_to_usd, usd_to_nanos

log = logging.getLogger("faregate.alerts")


class Alerter:
    """Sends alerts: a warning in the log, and `{kind, message, details, ts, text}` POSTed as JSON.

    `text` repeats the message so Slack-style incoming webhooks show it as is. The session is made
    on first use (inside the event loop) by `session_factory`, and closed by `close`.
    """

    def __init__(
        self,
        settings: AlertSettings,
        session_factory: Callable[[], aiohttp.ClientSession] = aiohttp.ClientSession,
        *,
        timeout_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self._factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._pending: set[asyncio.Task[bool]] = set()

    async def send(self, kind: str, message: str, details: Mapping[str, Any] | None = None) -> bool:
        """Log and post one alert; True if the webhook took it (or none is set). Never raises."""
        payload = {
            "kind": kind,
            "message": message,
            "details": dict(details or {}),
            "ts": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "text": f"FareGate: {message}",
        }
        log.warning("alert: %s", message, extra={"alert_kind": kind, "alert_details": payload["details"]})
        url = self.settings.webhook_url
        if url is None:
            return True
        try:
            if self._session is None or self._session.closed:
                self._session = self._factory()
            body = orjson.dumps(payload, default=str)
            headers = {"content-type": "application/json"}
            async with self._session.post(url, data=body, headers=headers, timeout=self._timeout) as response:
                if response.status >= 300:
                    log.error(
                        "alert webhook refused the alert",
                        extra={"alert_kind": kind, "status": response.status},
                    )
                    return False
        except Exception as exc:  # a webhook outage must not reach a request or a settle
            log.error("alert webhook failed", extra={"alert_kind": kind, "error": type(exc).__name__})
            return False
        return True

    def notify(self, kind: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        """`send` from synchronous code on the event loop (settle observers), without waiting."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a CLI report): the log still gets it
            log.warning(
                "alert: %s", message, extra={"alert_kind": kind, "alert_details": dict(details or {})}
            )
            return
        self.track(loop.create_task(self.send(kind, message, details)))

    def track(self, task: asyncio.Task[bool]) -> None:
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        """Wait for alerts in flight (each bounded by the timeout), then close the session."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(frozen=True, slots=True)
class Spike:
    feature: str
    hour_start: str  # ISO 8601, UTC
    spend_nusd: int
    baseline_nusd: int  # the trailing hourly mean
    factor: float


class SpikeDetector:
    """A `Settle.observers` entry: alerts when a feature's spend this hour exceeds `factor` times its
    trailing 24-hour hourly mean.

    Why the guards: a feature needs `min_history_hours` of history (since this process first saw
    it) before its mean means anything, so a restart or a new feature does not look like a spike;
    and the hour must reach `floor_usd`, so $0.02 after $0.005 does not page anyone. Each feature
    alerts at most once an hour. Sums live in memory (25 hours a feature, at most `max_features`).
    """

    def __init__(
        self,
        alerter: Alerter,
        factor: float | None = None,
        *,
        floor_usd: Decimal = Decimal("1"),
        min_history_hours: int = 3,
        max_features: int = 10_000,
    ) -> None:
        self.alerter = alerter
        self.factor = alerter.settings.spike_factor if factor is None else factor
        self.floor_nusd = usd_to_nanos(floor_usd)
        self.min_history_hours = max(1, min_history_hours)
        self.max_features = max_features
        self._hours: dict[str, dict[int, int]] = {}  # feature -> hour number -> spend
        self._first: dict[str, int] = {}  # feature -> first hour seen
        self._alerted: dict[str, int] = {}  # feature -> hour last alerted

    def __call__(self, call: Call, result: Result, event: CostEvent) -> None:
        spike = self.observe(event.feature, event.cost_nusd, event.ts)
        if spike is not None:
            self.alerter.notify("spend_spike", spike_message(spike), spike_details(spike))

    def observe(self, feature: str, cost_nusd: int, ts: float) -> Spike | None:
        """Add one event's cost; the spike it completes, if any."""
        hour = int(ts // 3600)
        hours = self._hours.get(feature)
        if hours is None:
            if len(self._hours) >= self.max_features:
                self._forget_stalest()
            hours = self._hours[feature] = {}
            self._first[feature] = hour
        hours[hour] = hours.get(hour, 0) + cost_nusd
        if len(hours) > 25:
            for old in [h for h in hours if h < hour - 24]:
                del hours[old]
        spend = hours[hour]
        if spend < self.floor_nusd or self._alerted.get(feature) == hour:
            return None
        observed = min(24, hour - self._first[feature])
        if observed < self.min_history_hours:
            return None
        baseline = sum(hours.get(h, 0) for h in range(hour - observed, hour)) / observed
        if spend <= self.factor * baseline:
            return None
        self._alerted[feature] = hour
        start = datetime.fromtimestamp(hour * 3600, UTC).isoformat().replace("+00:00", "Z")
        return Spike(feature, start, spend, round(baseline), self.factor)

    def _forget_stalest(self) -> None:
        stalest = min(self._hours, key=lambda f: max(self._hours[f], default=0))
        for table in (self._hours, self._first, self._alerted):
            table.pop(stalest, None)


def spike_message(spike: Spike) -> str:
    return (
        f"spend spike in feature {spike.feature}: ${format_usd(spike.spend_nusd)} this hour, "
        f"above {spike.factor:g}x the trailing hourly mean of ${format_usd(spike.baseline_nusd)}"
    )


def spike_details(spike: Spike) -> dict[str, Any]:
    return {
        "feature": spike.feature,
        "hour_start": spike.hour_start,
        "spend_usd": str(nanos_to_usd(spike.spend_nusd)),
        "baseline_usd": str(nanos_to_usd(spike.baseline_nusd)),
        "factor": spike.factor,
    }


@dataclass(frozen=True, slots=True)
class TemplateRegression:
    feature: str
    template: str  # the newest template of the feature
    previous: str  # the template it replaced
    cost_ratio: float  # cost per request, new over previous
    quality_change: float | None  # relative change of the quality signal (negative: worse)
    reasons: tuple[str, ...]  # "cost", "quality"

    @property
    def message(self) -> str:
        parts = [f"cost per request x{self.cost_ratio:.2f}"]
        if self.quality_change is not None:
            parts.append(f"quality {self.quality_change:+.0%}")
        return (
            f"template regression in feature {self.feature}: {self.template} vs {self.previous} "
            f"({', '.join(parts)})"
        )


def detect_template_regressions(
    rows: Iterable[Mapping[str, Any]], threshold: float, *, min_requests: int = 20
) -> list[TemplateRegression]:
    """Each feature's newest template against the one before it (a pure function).

    A row is one (feature, template): `feature`, `template`, `requests`, `cost_nusd` (their total
    cost), `first_ts` (when the template was first seen: it orders templates) and optionally
    `quality` (higher is better: a mean rating, a shadow-check agreement rate; None when unknown).
    A regression costs more than `1 + threshold` times as much per request, or has a quality lower
    by more than `threshold` (relative). Templates with fewer than `min_requests` requests and the
    `unattributed` template are not compared: too few requests are noise.
    """
    by_feature: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row["template"] != UNATTRIBUTED and int(row["requests"]) >= max(1, min_requests):
            by_feature.setdefault(str(row["feature"]), []).append(row)
    found: list[TemplateRegression] = []
    for feature, templates in sorted(by_feature.items()):
        if len(templates) < 2:
            continue
        previous, newest = sorted(templates, key=lambda r: float(r["first_ts"]))[-2:]
        old_cost = int(previous["cost_nusd"]) / int(previous["requests"])
        new_cost = int(newest["cost_nusd"]) / int(newest["requests"])
        ratio = new_cost / old_cost if old_cost else (1.0 if not new_cost else float("inf"))
        reasons = ["cost"] if ratio > 1 + threshold else []
        change = None
        old_q, new_q = previous.get("quality"), newest.get("quality")
        if old_q is not None and new_q is not None and float(old_q) > 0:
            change = (float(new_q) - float(old_q)) / float(old_q)
            if change < -threshold:
                reasons.append("quality")
        if reasons:
            found.append(
                TemplateRegression(
                    feature, str(newest["template"]), str(previous["template"]), ratio, change, tuple(reasons)
                )
            )
    return found


def notify_template_regressions(alerter: Alerter, regressions: Iterable[TemplateRegression]) -> None:
    """One `template_regression` alert per regression (call on the event loop)."""
    for r in regressions:
        details = {
            "feature": r.feature,
            "template": r.template,
            "previous": r.previous,
            "cost_ratio": r.cost_ratio,
            "quality_change": r.quality_change,
            "reasons": list(r.reasons),
        }
        alerter.notify("template_regression", r.message, details)


def format_usd(nanos: int) -> str:
    """Dollars for a message: cents, or more digits when cents would show a small amount as $0.00."""
    usd = nanos_to_usd(nanos)
    cents = f"{usd:.2f}"
    if Decimal(cents) == usd or abs(usd) >= 1:
        return cents
    return f"{usd:.6f}".rstrip("0")
