"""Prometheus metrics for `GET /metrics`, fed by settle's observer on every call.

Written by hand rather than with prometheus-client because the observer runs on every request: here
an observation is a handful of dict updates keyed by tuples of strings the event already holds, and
all text (escaping, label formatting) is built once per label set and joined only on scrape. Money is
summed as integer nano-dollars and printed exactly, never as a float sum.

`feature` and `model` come from clients, so each metric keeps at most `max_label_sets` label sets;
later ones fold into `feature="other"` / `model="other"` (counted in `faregate_metrics_overflow_total`).
Observe and render run on the gateway's event loop, so the dicts need no lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from itertools import accumulate

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faregate.call import Call, Result
from faregate.ledger import CostEvent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER = "other"  # the value of a client-controlled label past the cap
NONE = "none"  # the model of a call refused before it named one
DEFAULT_MAX_LABEL_SETS = 1_000
MAX_LABEL_CHARS = 200  # longer client values are cut: a scrape must stay small
# LLM calls take from tens of milliseconds (a cache warm-up) to minutes (long reasoning).
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
_STATUS_CLASS = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")
_CACHE_STRATEGY = {"hit": "exact_cache", "semantic-hit": "semantic_cache"}
_HITS = frozenset(_CACHE_STRATEGY)
_NANO = 1_000_000_000
CIRCUIT_STATES = ("closed", "open", "half_open")


class _Family:
    """One metric: label tuple -> value, plus each label set's rendered text, made once."""

    __slots__ = ("cap", "free", "help", "kind", "labels", "money", "name", "overflow", "text", "values")

    def __init__(
        self, name: str, help: str, labels: tuple[str, ...], *, cap: int, money: bool = False
    ) -> None:
        self.name = name
        self.help = help
        self.kind = "counter"
        self.labels = labels
        self.free = tuple(i for i, label in enumerate(labels) if label in ("feature", "model"))
        self.cap = cap
        self.money = money
        self.overflow = 0  # observations folded into "other"
        self.values: dict[tuple[str, ...], int] = {}
        self.text: dict[tuple[str, ...], str] = {}  # key -> 'feature="x",model="y"'

    def inc(self, key: tuple[str, ...], amount: int) -> None:
        try:
            self.values[key] += amount
        except KeyError:
            key = self._admit(key)
            self.values[key] = self.values.get(key, 0) + amount

    def _admit(self, key: tuple[str, ...]) -> tuple[str, ...]:
        """The key to store a new label set under: cut to length, or "other" past the cap.

        A raw key that is cut or folded is never stored, so its later observations come back here:
        slower, but only for the clients that caused it.
        """
        if any(len(key[i]) > MAX_LABEL_CHARS for i in self.free):
            key = tuple(v[:MAX_LABEL_CHARS] if i in self.free else v for i, v in enumerate(key))
        if key not in self.text and len(self.text) >= self.cap:
            self.overflow += 1
            key = tuple(OTHER if i in self.free else v for i, v in enumerate(key))
        if key not in self.text:
            self.text[key] = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(self.labels, key, strict=True))
        return key

    def lines(self) -> Iterable[str]:
        fmt = _usd if self.money else str
        name = self.name
        for key, value in self.values.items():
            yield f"{name}{{{self.text[key]}}} {fmt(value)}\n"


class _Histogram(_Family):
    """Values are rows: an int count per bucket (the last is +Inf), then the float sum."""

    __slots__ = ("bounds", "les", "rows", "templates")

    def __init__(self, name: str, help: str, labels: tuple[str, ...], *, cap: int, bounds: tuple[float, ...]):
        super().__init__(name, help, labels, cap=cap)
        self.kind = "histogram"
        self.bounds = bounds
        self.les = (*(repr(float(b)) for b in bounds), "+Inf")  # as prometheus-client: 1.0
        self.rows: dict[tuple[str, ...], list[float]] = {}
        self.templates: dict[tuple[str, ...], str] = {}  # built on the first scrape of a label set

    def observe(self, key: tuple[str, ...], value: float) -> None:
        try:
            row = self.rows[key]
        except KeyError:
            key = self._admit(key)
            row = self.rows.setdefault(key, [*[0] * (len(self.bounds) + 1), 0.0])
        row[bisect_left(self.bounds, value)] += 1  # `le` is inclusive, as bisect_left is
        row[-1] += value

    def lines(self) -> Iterable[str]:
        templates = self.templates
        for key, row in self.rows.items():
            template = templates.get(key) or self._template(key)
            yield template % (*accumulate(row[:-1]), row[-1], sum(row[:-1]))

    def _template(self, key: tuple[str, ...]) -> str:
        """One %-template per label set for its bucket, sum and count lines: a scrape formats once."""
        name, labels = self.name, self.text[key].replace("%", "%%")
        lines = [f'{name}_bucket{{{labels},le="{le}"}} %d\n' for le in self.les]
        lines += [f"{name}_sum{{{labels}}} %r\n", f"{name}_count{{{labels}}} %d\n"]
        template = self.templates[key] = "".join(lines)
        return template


class Metrics:
    """The gateway's Prometheus metrics: `observe` is a settle observer, `render` the scrape body."""

    def __init__(
        self,
        max_label_sets: int = DEFAULT_MAX_LABEL_SETS,
        latency_buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> None:
        cap = max_label_sets
        fm = ("feature", "model")
        self.requests = _Family(
            "faregate_requests_total",
            "Requests settled, by HTTP status class.",
            (*fm, "status_class"),
            cap=cap,
        )
        self.tokens = _Family(
            "faregate_tokens_total",
            "Tokens billed, by kind: input counts all prompt tokens (cache reads and writes included), "
            "output includes reasoning.",
            (*fm, "kind"),
            cap=cap,
        )
        self.cost = _Family(
            "faregate_cost_usd_total", "Actual cost of priced requests, USD.", fm, cap=cap, money=True
        )
        self.baseline = _Family(
            "faregate_baseline_cost_usd_total",
            "Cost of priced requests as the client sent them, without FareGate's optimisations, USD.",
            fm,
            cap=cap,
            money=True,
        )
        self.unpriced = _Family(
            "faregate_unpriced_requests_total",
            "Requests whose price is unknown (not counted as $0).",
            fm,
            cap=cap,
        )
        self.savings = _Family(
            "faregate_savings_usd_total",
            "Baseline minus actual cost on requests where a strategy saved money, USD.",
            ("feature", "strategy"),
            cap=cap,
            money=True,
        )
        self.lost = _Family(
            "faregate_savings_lost_usd_total",
            "Actual minus baseline cost on requests where a strategy cost more (a prompt-cache write), USD; "
            "net saving = savings - lost.",
            ("feature", "strategy"),
            cap=cap,
            money=True,
        )
        self.cache = _Family(
            "faregate_cache_outcomes_total", "Response-cache outcomes.", ("feature", "status"), cap=cap
        )
        self.route = _Family(
            "faregate_route_outcomes_total",
            "Routed requests by tier and whether the router fell back to the frontier "
            "(shadow calls excluded).",
            ("feature", "tier", "fallback"),
            cap=cap,
        )
        self.history = _Family(
            "faregate_history_tokens_saved_total",
            "History tokens the history policy kept from being sent upstream.",
            ("feature", "policy"),
            cap=cap,
        )
        self.retries = _Family(
            "faregate_upstream_retries_total",
            "Extra upstream attempts (429, 5xx, connection errors, timeouts), by the model that answered.",
            fm,
            cap=cap,
        )
        self.fallbacks = _Family(
            "faregate_upstream_fallbacks_total",
            "Requests a fallback model answered (or that ran out of fallbacks), by the last model tried.",
            fm,
            cap=cap,
        )
        self.partial = _Family(
            "faregate_partial_streams_total",
            "Streams that failed mid-way (the client got part of an answer and an error event).",
            fm,
            cap=cap,
        )
        self.latency = _Histogram(
            "faregate_upstream_latency_seconds",
            "Time waiting on the provider (to headers; to the last byte for streams); cache hits excluded.",
            fm,
            cap=cap,
            bounds=latency_buckets,
        )
        self.families: tuple[_Family, ...] = (
            self.requests,
            self.tokens,
            self.cost,
            self.baseline,
            self.unpriced,
            self.savings,
            self.lost,
            self.cache,
            self.route,
            self.history,
            self.retries,
            self.fallbacks,
            self.partial,
            self.latency,
        )
        # provider -> circuit state ("closed", "open", "half_open"), read on scrape; set by the gateway.
        self.circuits: Callable[[], Mapping[str, str]] | None = None
        # feature -> {"configured", "effective"} semantic-cache threshold, read on scrape; set by the gateway.
        self.cache_thresholds: Callable[[], Mapping[str, Mapping[str, float]]] | None = None

    def observe(self, call: Call, result: Result, event: CostEvent) -> None:
        """Settle observer: count one settled call (runs on every request; keep it cheap)."""
        feature = event.feature
        model = event.model_used or event.model_requested or NONE
        fm = (feature, model)
        status = event.status
        self.requests.inc((feature, model, _STATUS_CLASS[status // 100] if 0 <= status < 600 else "other"), 1)
        tokens = self.tokens
        if event.input_tokens:
            tokens.inc((feature, model, "input"), event.input_tokens)
        if event.output_tokens:
            tokens.inc((feature, model, "output"), event.output_tokens)
        if event.cached_tokens:
            tokens.inc((feature, model, "cache_read"), event.cached_tokens)
        if event.cache_write_tokens:
            tokens.inc((feature, model, "cache_write"), event.cache_write_tokens)
        if event.reasoning_tokens:
            tokens.inc((feature, model, "reasoning"), event.reasoning_tokens)
        cache_status = event.cache_status
        if event.price_known:
            cost, baseline = event.cost_nusd, event.baseline_cost_nusd
            if cost:
                self.cost.inc(fm, cost)
            if baseline:
                self.baseline.inc(fm, baseline)
            for strategy, saving in _savings(call, event, cache_status):
                if saving > 0:
                    self.savings.inc((feature, strategy), saving)
                elif saving < 0:
                    self.lost.inc((feature, strategy), -saving)
        else:
            self.unpriced.inc(fm, 1)
        if cache_status is not None:
            self.cache.inc((feature, cache_status), 1)
        if event.tier is not None and event.route_shadow_of is None:
            self.route.inc((feature, event.tier, "true" if event.route_fallback else "false"), 1)
        before, after = event.history_tokens_before, event.history_tokens_after
        if before is not None and after is not None and before > after and event.history_policy:
            self.history.inc((feature, event.history_policy), before - after)
        if event.upstream_ms is not None and cache_status not in _HITS:
            self.latency.observe(fm, event.upstream_ms / 1000)
        if event.upstream_retries:
            self.retries.inc(fm, event.upstream_retries)
        if event.upstream_fallbacks is not None:
            self.fallbacks.inc(fm, 1)
        if event.partial:
            self.partial.inc(fm, 1)

    def render(self) -> bytes:
        """The text exposition format (0.0.4): built on scrape, never on the request path."""
        parts: list[str] = []
        for family in self.families:
            parts.append(
                f"# HELP {family.name} {_escape_help(family.help)}\n# TYPE {family.name} {family.kind}\n"
            )
            parts.extend(family.lines())
        parts.append(
            '# HELP faregate_metrics_overflow_total Observations folded into feature/model "other" '
            "because the metric reached its label-set cap.\n# TYPE faregate_metrics_overflow_total counter\n"
        )
        parts.extend(
            f'faregate_metrics_overflow_total{{metric="{f.name}"}} {f.overflow}\n'
            for f in self.families
            if f.overflow
        )
        if self.circuits is not None:
            parts.append(
                "# HELP faregate_upstream_circuit_state The circuit breaker's state per provider: 1 for "
                "the current state (closed, open, half_open).\n# TYPE faregate_upstream_circuit_state gauge\n"
            )
            for provider, state in sorted(self.circuits().items()):
                label = f'provider="{_escape(provider)}"'
                parts.extend(
                    f'faregate_upstream_circuit_state{{{label},state="{name}"}} {int(state == name)}\n'
                    for name in CIRCUIT_STATES
                )
        if self.cache_thresholds is not None:
            thresholds = self.cache_thresholds()
            if thresholds:
                parts.append(
                    "# HELP faregate_cache_threshold The semantic cache's similarity threshold per feature "
                    "on this replica: verification sampling raises it when answers show precision under "
                    "target.\n# TYPE faregate_cache_threshold gauge\n"
                )
                parts.extend(
                    f'faregate_cache_threshold{{feature="{_escape(feature)}"}} {values["effective"]:g}\n'
                    for feature, values in sorted(thresholds.items())
                )
        return "".join(parts).encode()


def metrics_route(metrics: Metrics, path: str = "/metrics") -> Route:
    """`GET /metrics` for Prometheus. Async on purpose: it renders on the loop that observes."""

    async def scrape(request: Request) -> Response:
        return Response(metrics.render(), headers={"content-type": CONTENT_TYPE})

    return Route(path, scrape, methods=["GET"])


def _savings(call: Call, event: CostEvent, cache_status: str | None) -> list[tuple[str, int]]:
    """Baseline minus cost, split by the optimisation it came from (as settle builds the baseline):
    a cache hit's whole difference; else routing, history and (when FareGate shaped the prefix)
    prompt caching, each from its own ledger field."""
    total = event.baseline_cost_nusd - event.cost_nusd
    if cache_status in _HITS:
        return [(_CACHE_STRATEGY[cache_status], total)]
    parts = [("routing", event.routing_saving_nusd), ("history", event.history_saving_nusd)]
    prefix = call.prefix
    if prefix is not None and prefix.enabled_caching:
        parts.append(("prompt_cache", event.prompt_cache_saving_nusd))
    rest = total - sum(saving for _, saving in parts)
    if rest:
        parts.append((OTHER, rest))
    return parts


def _escape(value: str) -> str:
    """Label values: backslash, double quote and line feed are escaped (exposition format 0.0.4)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _usd(nanos: int) -> str:
    """Exact decimal text of an integer nano-dollar sum (a float would round it)."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), _NANO)
    return f"{sign}{whole}.{frac:09d}"
