"""Linting a prompt text or one request body, and estimating each finding's cost from a request rate.

- A single JSON request body: its prefix is scanned once.
- A prompt text (a system prompt in .txt or .md): scanned as a whole; locations are ``FILE:LINE:COL``,
  1-based, columns in characters.

With `--requests-per-day N` (and `--model`, or the body's model), the span is assumed to take a new
value on every request, except a date, which changes once a day. An upper bound: it ignores the minimum
cacheable length and the cache TTL.
"""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path
from typing import Any

from faregate.analyze.reader import detect_protocol
from faregate.pricing import PriceBook
from faregate.prompt_cache.findings import block_findings, prefix_blocks
from faregate.prompt_cache.lint.costs import DAYS_PER_MONTH, Misses, costed, note_unpriced
from faregate.prompt_cache.lint.inputs import read_all
from faregate.prompt_cache.lint.report import Item, LintInputError, LintReport
from faregate.tokens import count_text
from faregate.volatile import find_volatile_spans

__all__ = ["lint_body", "lint_text"]


def _per_month(kind: str, requests_per_day: int) -> int:
    """Misses a month: a date changes once a day, anything else is assumed new on every request."""
    return DAYS_PER_MONTH * (1 if kind == "date" else requests_per_day)


def lint_text(path: Path, model: str | None, requests_per_day: int | None, book: PriceBook) -> LintReport:
    try:
        text = read_all(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LintInputError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    report = LintReport(str(path), "text")
    pricing = _pricing(report, model, requests_per_day, book)
    line_starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n"]
    for span in find_volatile_spans(text):
        line = bisect_right(line_starts, span.start)
        item = Item(span.kind, span.text, f"{path}:{line}:{span.start - line_starts[line - 1] + 1}")
        if pricing is not None and model is not None and requests_per_day is not None:
            miss = pricing.usd(model, None, count_text(model, text[span.start :]))
            item.monthly_usd = None if miss is None else miss * _per_month(span.kind, requests_per_day)
        report.items.append(item)
    note_unpriced(report, pricing)
    return report


def lint_body(
    path: Path, data: dict[str, Any], model: str | None, requests_per_day: int | None, book: PriceBook
) -> LintReport:
    body: dict[str, Any] = data["request"] if isinstance(data.get("request"), dict) else data
    hint = data.get("provider") if body is not data else None
    provider = hint if hint in ("openai", "anthropic") else None
    messages = body.get("messages")
    protocol = detect_protocol(
        {**body, "messages": messages if isinstance(messages, list) else []}, None, provider
    )
    body_model = body.get("model")
    model = model or (body_model.strip() if isinstance(body_model, str) and body_model.strip() else None)
    report = LintReport(str(path), "body")
    pricing = _pricing(report, model, requests_per_day, book)
    blocks = prefix_blocks(protocol, body)
    if model is None or pricing is None or requests_per_day is None:
        report.items = [
            Item(f.kind, f.text, f"{path}:{f.location}") for b in blocks for f in block_findings(b)
        ]
        return report
    for finding, tokens in costed(model, blocks):
        miss = pricing.usd(model, provider, tokens)
        monthly = None if miss is None else miss * _per_month(finding.kind, requests_per_day)
        report.items.append(Item(finding.kind, finding.text, f"{path}:{finding.location}", monthly))
    note_unpriced(report, pricing)
    return report


def _pricing(
    report: LintReport, model: str | None, requests_per_day: int | None, book: PriceBook
) -> Misses | None:
    if requests_per_day is None:
        report.notes.append("Give --requests-per-day (and --model) to estimate what each finding costs.")
        return None
    if model is None:
        report.notes.append("Give --model to estimate what each finding costs.")
        return None
    report.extra.update(model=model, requests_per_day=requests_per_day)
    report.notes.append(
        f"Monthly cost at {requests_per_day:,} requests a day on {model}, assuming each span changes on "
        "every request (dates once a day): an upper bound."
    )
    return Misses(book)
