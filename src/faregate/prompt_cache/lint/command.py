"""The `faregate lint FILE` command: check the options, lint the file by its kind, write the report.

Exit codes: 0 no findings, 1 findings (so CI can gate on it), 2 bad input.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from rich.console import Console

from faregate.analyze.command import print_error
from faregate.config import Config
from faregate.pricing import PriceBook, overrides_from_config
from faregate.prompt_cache.lint.inputs import sniff
from faregate.prompt_cache.lint.log_scan import lint_log
from faregate.prompt_cache.lint.prompt import lint_body, lint_text
from faregate.prompt_cache.lint.render import render_json, render_table
from faregate.prompt_cache.lint.report import LintInputError, LintReport

__all__ = ["FORMATS", "lint_file", "run_lint"]

FORMATS = ("table", "json")


def run_lint(
    path: Path,
    *,
    format: str,
    model: str | None,
    requests_per_day: int | None,
    config: Config | None,
    console: Console,
) -> int:
    """Lint `path`, write the findings; return the exit code (0 none, 1 findings, 2 bad input)."""
    if format not in FORMATS:
        print_error(f"unknown format {format!r}: use table or json")
        return 2
    if requests_per_day is not None and requests_per_day < 1:
        print_error("--requests-per-day must be at least 1")
        return 2
    book = PriceBook(overrides_from_config(config.prices) if config else None)
    try:
        report = lint_file(path, model=model, requests_per_day=requests_per_day, prices=book)
    except LintInputError as exc:
        print_error(str(exc))
        return 2
    if format == "json":
        render_json(report, console)
    else:
        render_table(report, console)
    return 1 if report.items else 0


def lint_file(
    path: Path,
    *,
    model: str | None = None,
    requests_per_day: int | None = None,
    prices: PriceBook | None = None,
) -> LintReport:
    """The findings in `path`, sorted by monthly cost then requests; `LintInputError` for bad input."""
    book = prices or PriceBook()
    kind, body = sniff(path)
    if kind == "log":
        report = lint_log(path, model, requests_per_day, book)
    elif kind == "body":
        assert body is not None
        report = lint_body(path, body, model, requests_per_day, book)
    else:
        report = lint_text(path, model, requests_per_day, book)
    report.items.sort(
        key=lambda i: (
            -(i.monthly_usd if i.monthly_usd is not None else Decimal(-1)),
            -(i.requests or 0),
            i.feature or "",
            i.location,
            i.kind,
        )
    )
    return report
