"""`faregate analyze`: read logs (or a ledger), build the report, write it as a table, JSON or HTML.

Exit codes: 0 the report was written; 2 bad input (no files and no --db, a file that is missing,
unreadable or empty, a ledger that cannot be opened, or no recognisable request at all).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from faregate.analyze.observe import Observation, Observer
from faregate.analyze.parallel import ObserverSettings, observe_parallel
from faregate.analyze.reader import BadLine, ErrorLog, InputError, check_input, parse_line, read_lines
from faregate.analyze.render_table import render_table
from faregate.analyze.report import Analyzer
from faregate.config import Config
from faregate.ledger.events import CostEvent
from faregate.pricing import overrides_from_config

__all__ = ["ByteProgress", "analyze_files", "ledger_events", "observer_settings", "redact_url", "run_analyze"]

FORMATS = ("table", "json", "html")
PROGRESS_MIN_BYTES = 8 << 20  # inputs smaller than this finish before a progress bar helps
PARALLEL_MIN_BYTES = 64 << 20  # below this, starting worker processes costs more than it saves
MAX_WORKERS = 2
_LEDGER_PAGE = 50_000


def run_analyze(
    files: list[Path],
    *,
    db: str | None,
    format: str,
    out: Path | None,
    config: Config | None,
    console: Console,
) -> int:
    """Analyze `files` (and/or the ledger at `db`), write the report; return the exit code."""

    def fail(message: str) -> int:
        print_error(message)
        return 2

    if format not in FORMATS:
        return fail(f"unknown format {format!r}: use table, json or html")
    if not files and not db:
        return fail("nothing to analyze: give one or more JSON Lines files, or --db URL for a ledger")
    try:
        for path in files:
            check_input(path)
    except InputError as exc:
        return fail(str(exc))
    settings = observer_settings(config)
    analyzer = Analyzer(settings.price_book(), ledger=not files)
    errors = ErrorLog()
    inputs = [str(p) for p in files]
    with ByteProgress(files) as progress:
        analyze_files(files, settings, analyzer, errors, progress=progress)
    if db:
        inputs.append(redact_url(db))
        observer = settings.observer()
        try:
            for event in ledger_events(db):
                if event.error_kind is None or event.input_tokens > 0:  # failures that billed nothing: out
                    analyzer.add(observer.event(event))
        except Exception as exc:  # sqlite3, psycopg and URL errors alike: report, do not trace back
            return fail(f"cannot read the ledger {redact_url(db)}: {exc}")
    if analyzer.requests == 0:
        detail = ""
        if errors.count:
            detail = f" ({errors.count:,} unreadable lines; first: {_first_error(errors)})"
        return fail(f"no recognisable requests in {', '.join(inputs)}{detail}")
    report = analyzer.build(inputs, errors)
    return _write(report, format, out, console)


def analyze_files(
    files: Sequence[Path],
    settings: ObserverSettings,
    analyzer: Analyzer,
    errors: ErrorLog,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    block_bytes: int | None = None,
) -> None:
    """Stream every line of every file into `analyzer`; bad lines go to `errors`.

    `workers`: processes that tokenize; None picks `MAX_WORKERS` (at most one per CPU) for inputs of
    `PARALLEL_MIN_BYTES` or more, and the calling process for smaller ones. The report is the same
    either way. `block_bytes`: how the input is cut between workers (see `parallel`).
    """
    if workers is None:
        size = sum(path.stat().st_size for path in files)
        workers = min(MAX_WORKERS, os.cpu_count() or 1) if size >= PARALLEL_MIN_BYTES else 1
    if workers > 1:
        if block_bytes is None:
            size = sum(path.stat().st_size for path in files)
            block_bytes = min(max(size // (workers * 8), 4 << 20), 32 << 20)
        for observation in observe_parallel(files, settings, errors, workers, progress, block_bytes):
            analyzer.add(observation)
        return
    observer = settings.observer()
    for path in files:
        for observation in observe_file(path, observer, errors, progress):
            analyzer.add(observation)


def observe_file(
    path: Path, observer: Observer, errors: ErrorLog, progress: Callable[[int], None] | None = None
) -> Iterator[Observation]:
    name = str(path)
    consumed = 0
    for number, line, position in read_lines(path, errors):
        try:
            yield observer.record(parse_line(line))
        except BadLine as exc:
            errors.add(name, number, str(exc))
        if progress is not None and position != consumed:
            progress(position - consumed)
            consumed = position


def ledger_events(url: str) -> Iterator[CostEvent]:
    """Every event of the ledger, oldest first, a page at a time (the ledger may be large)."""
    from faregate.ledger import open_store

    store = open_store(url)
    try:
        since: float | None = None
        boundary: set[str] = set()  # request ids already read at timestamp `since`
        limit = _LEDGER_PAGE
        while True:
            page = store.events(since=since, limit=limit)
            fresh = [e for e in page if not (e.ts == since and e.request_id in boundary)]
            yield from fresh
            if len(page) < limit:
                return
            last = page[-1].ts
            if not fresh and last == since:
                limit *= 2  # a page holds nothing but one timestamp: read a wider page
                continue
            if last != since:
                boundary = set()
            boundary.update(e.request_id for e in page if e.ts == last)
            since = last
    finally:
        store.close()


def redact_url(url: str) -> str:
    """A database URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"{parts.username}@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc))


def observer_settings(config: Config | None) -> ObserverSettings:
    """Price overrides and per-feature context patterns from the config (defaults without one)."""
    if config is None:
        return ObserverSettings()
    return ObserverSettings(
        price_overrides=overrides_from_config(config.prices),
        context_patterns={
            name: list(feature.context_patterns)
            for name, feature in config.features.items()
            if feature.context_patterns
        },
    )


class ByteProgress:
    """A transient progress bar on stderr, by bytes of input read; silent off a terminal and for
    inputs small enough to finish before a bar would help."""

    def __init__(self, files: list[Path], console: Console | None = None) -> None:
        self.total = sum(path.stat().st_size for path in files)
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        if self.total >= PROGRESS_MIN_BYTES and self.console.is_terminal:
            self._progress = Progress(
                TextColumn("analyzing"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._task = self._progress.add_task("analyzing", total=self.total)

    def __enter__(self) -> Callable[[int], None] | None:
        if self._progress is None:
            return None
        self._progress.start()
        progress, task = self._progress, self._task
        return lambda nbytes: progress.advance(task, nbytes)

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def print_error(message: str) -> None:
    """One line on stderr, never wrapped or read as markup (paths may hold brackets)."""
    Console(stderr=True, highlight=False).print(
        Text.assemble(("error:", "red"), " ", message), soft_wrap=True
    )


def _first_error(errors: ErrorLog) -> str:
    first = errors.first[0]
    return f"{first['file']} line {first['line']}: {first['error']}"


def _write(report: dict[str, Any], format: str, out: Path | None, console: Console) -> int:
    if format == "table" and out is None:
        render_table(report, console)
        return 0
    if format == "table":
        buffer = io.StringIO()
        render_table(report, Console(file=buffer, width=120, force_terminal=False, color_system=None))
        text = buffer.getvalue()
    elif format == "json":
        text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        from faregate.analyze.html import render_html

        text = render_html(report)
    if out is None:
        console.file.write(text)
        return 0
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        print_error(f"cannot write {out}: {exc.strerror or exc}")
        return 2
    console.print(f"report written to {out}", markup=False, highlight=False)
    return 0
