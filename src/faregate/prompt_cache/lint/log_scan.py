"""Linting a request log: scan every record's prefix, group the findings, count the misses they cause.

A request log is JSON Lines, plain or gzipped, as `faregate analyze` reads it. Every record's prefix is
scanned (`findings.prefix_findings`, memoised by prefix, since logs repeat the same prompt), findings
are grouped by feature, kind and location label, and tools sent in more than one order are a
`tool_order` finding.

A request is a miss caused by the span when the span's text differs from the one in the previous
request of the same group (its feature, kind and location; for `tool_order`, the same tool set in
another order), in file order. A date then costs one miss a day, a timestamp one a request, and JSON
whose keys are unsorted but always in the same order costs nothing. The log's cost is scaled to 30 days
by its time span (or by `--requests-per-day`); a log spanning under an hour, or without timestamps, is
taken as one day of traffic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from faregate.analyze.command import ByteProgress
from faregate.analyze.reader import BadLine, ErrorLog, Record, parse_line, read_lines
from faregate.call import Protocol
from faregate.pricing import PriceBook
from faregate.prompt_cache.findings import TOOL_ORDER, Finding, PrefixBlock, prefix_blocks, tool_names
from faregate.prompt_cache.lint.costs import (
    DAYS_PER_MONTH,
    Misses,
    costed,
    json_text,
    note_unpriced,
    tools_tokens,
)
from faregate.prompt_cache.lint.report import Item, LintInputError, LintReport

__all__ = ["MIN_PERIOD_S", "lint_log"]

MIN_PERIOD_S = 3600.0  # a log spanning less than this is taken as one day of traffic
_DAY_S = 86400
_MEMO_MAX = 4096  # distinct prefixes memoised while reading a log
_MAX_ORDERS = 64  # distinct tool orders remembered per tool set (the count saturates there)


@dataclass(frozen=True, slots=True)
class _Span:
    """A finding of one prefix, one per (kind, location label): the first span and all span texts."""

    kind: str
    label: str
    text: str
    values: tuple[str, ...]
    miss_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class _Scanned:
    spans: tuple[_Span, ...]
    tools_miss_usd: Decimal | None


@dataclass(slots=True)
class _Group:
    text: str
    requests: int = 0
    misses: int = 0
    unpriced_misses: int = 0
    usd: Decimal = Decimal(0)
    last: tuple[str, ...] | None = None

    def add(self, value: tuple[str, ...], miss_usd: Decimal | None) -> None:
        self.requests += 1
        if self.last is not None and value != self.last:
            self.misses += 1
            if miss_usd is None:
                self.unpriced_misses += 1
            else:
                self.usd += miss_usd
        self.last = value


@dataclass(slots=True)
class _ToolSet:
    group: _Group
    orders: set[tuple[str, ...]] = field(default_factory=set)


class _LogScan:
    def __init__(self, model: str | None, book: PriceBook) -> None:
        self.model = model
        self.misses = Misses(book)
        self.memo: dict[tuple[str, str, str | None, bytes], _Scanned] = {}
        self.groups: dict[tuple[str, str, str], _Group] = {}
        self.tool_sets: dict[tuple[str, tuple[str, ...]], _ToolSet] = {}
        self.requests = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    def add(self, record: Record) -> None:
        self.requests += 1
        if record.ts is not None:
            self.first_ts = record.ts if self.first_ts is None else min(self.first_ts, record.ts)
            self.last_ts = record.ts if self.last_ts is None else max(self.last_ts, record.ts)
        # --model prices every record as that model: the log's provider hint names another model's seller
        model, provider = (self.model, None) if self.model else (record.model, record.provider)
        blocks = prefix_blocks(record.protocol, record.body)
        if not blocks:
            return
        scanned = self._scan(record.protocol, model, provider, blocks)
        for span in scanned.spans:
            key = (record.feature, span.kind, span.label)
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = _Group(span.text)
            group.add(span.values, span.miss_usd)
        names = tool_names(record.protocol, record.body)
        if names and len(names) > 1:
            tool_key = (record.feature, tuple(sorted(names)))
            tools = self.tool_sets.get(tool_key)
            if tools is None:
                tools = self.tool_sets[tool_key] = _ToolSet(_Group(""))
            if len(tools.orders) < _MAX_ORDERS:
                tools.orders.add(names)
            tools.group.add(names, scanned.tools_miss_usd)

    def _scan(
        self, protocol: Protocol, model: str, provider: str | None, blocks: list[PrefixBlock]
    ) -> _Scanned:
        digest = hashlib.blake2b(
            json_text([(b.label, b.value) for b in blocks]).encode("utf-8", "surrogatepass"), digest_size=16
        ).digest()
        key = (protocol, model, provider, digest)
        scanned = self.memo.get(key)
        if scanned is None:
            if len(self.memo) >= _MEMO_MAX:
                self.memo.clear()
            scanned = self.memo[key] = self._compute(model, provider, blocks)
        return scanned

    def _compute(self, model: str, provider: str | None, blocks: list[PrefixBlock]) -> _Scanned:
        first: dict[tuple[str, str], tuple[Finding, int]] = {}
        values: dict[tuple[str, str], list[str]] = {}
        for finding, tokens in costed(model, blocks):
            label = finding.location.rpartition(":")[0]
            first.setdefault((finding.kind, label), (finding, tokens))
            values.setdefault((finding.kind, label), []).append(finding.text)
        spans = tuple(
            _Span(
                kind,
                label,
                finding.text,
                tuple(values[kind, label]),
                self.misses.usd(model, provider, tokens),
            )
            for (kind, label), (finding, tokens) in first.items()
        )
        tools_miss: Decimal | None = None
        if any(b.section == "tools" for b in blocks):
            tools_miss = self.misses.usd(model, provider, tools_tokens(model, blocks))
        return _Scanned(spans, tools_miss)

    def report(self, path: Path, requests_per_day: int | None, errors: ErrorLog) -> LintReport:
        report = LintReport(str(path), "log")
        report.extra["requests"] = self.requests
        if requests_per_day is not None:
            days = Decimal(self.requests) / requests_per_day
            report.extra["period_days"] = float(days)
            report.notes.append(f"Costs for 30 days at {requests_per_day:,} requests a day like these.")
        elif (
            self.first_ts is not None
            and self.last_ts is not None
            and self.last_ts - self.first_ts >= MIN_PERIOD_S
        ):
            days = Decimal(self.last_ts - self.first_ts) / _DAY_S
            report.extra["period_days"] = float(days)
            report.notes.append(f"Costs scaled to 30 days from the log's {float(days):,.2f} days.")
        else:
            days = Decimal(1)
            report.extra["assumed_period_days"] = 1
            report.notes.append(
                "The log spans under an hour (or has no timestamps): taken as one day of traffic."
            )
        scale = DAYS_PER_MONTH / days
        for (feature, kind, label), group in self.groups.items():
            report.items.append(_log_item(kind, group.text, label, feature, group, scale))
        for (feature, sorted_names), tools in self.tool_sets.items():
            if len(tools.orders) > 1:
                text = f"{len(tools.orders)} orders of the same {len(sorted_names)} tools"
                report.items.append(_log_item(TOOL_ORDER, text, "tools", feature, tools.group, scale))
        report.extra["errors"] = errors.as_dict()
        if errors.count:
            report.notes.append(f"{errors.count:,} unreadable lines skipped.")
        note_unpriced(report, self.misses)
        return report


def _log_item(kind: str, text: str, location: str, feature: str, group: _Group, scale: Decimal) -> Item:
    priced = group.misses - group.unpriced_misses
    monthly = None if group.misses and not priced else group.usd * scale
    return Item(kind, text, location, monthly, feature, group.requests, group.misses)


def lint_log(path: Path, model: str | None, requests_per_day: int | None, book: PriceBook) -> LintReport:
    errors = ErrorLog()
    scan = _LogScan(model, book)
    name = str(path)
    with ByteProgress([path]) as progress:
        consumed = 0
        for number, line, position in read_lines(path, errors):
            try:
                record = parse_line(line)
            except BadLine as exc:
                errors.add(name, number, str(exc))
            else:
                scan.add(record)
            if progress is not None and position != consumed:
                progress(position - consumed)
                consumed = position
    if scan.requests == 0:
        detail = ""
        if errors.count:
            first = errors.first[0]
            detail = f" ({errors.count:,} unreadable lines; first: line {first['line']}: {first['error']})"
        raise LintInputError(f"no recognisable requests in {path}{detail}")
    return scan.report(path, requests_per_day, errors)
