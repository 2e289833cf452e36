"""The `faregate` command line: serve, spend, analyze, lint, prompt-cache, cache, history, router, keys,
simulate, demo."""

from __future__ import annotations

import re
import time
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from faregate.cli_common import ConfigOption, Format, console, err_console
from faregate.config import Config, load_config
from faregate.errors import ConfigError
from faregate.history.command import history_app
from faregate.keys.command import keys_app
from faregate.routing.command import router_app
from faregate.spend import spend_table

if TYPE_CHECKING:
    from collections.abc import Callable

    from faregate.cache.store import CacheStore
    from faregate.ledger.store import LedgerStore

app = typer.Typer(help="FareGate: an LLM cost-optimization gateway.", no_args_is_help=True)
SinceOption = Annotated[
    str | None, typer.Option(help="Only ledger events newer than 7d, 12h, 30m or a date.")
]
LedgerOption = Annotated[
    str | None, typer.Option(help="Ledger URL, sqlite:///PATH or postgresql://... (default: the config's).")
]
FormatOption = Annotated[Format, typer.Option("--format", "-f")]


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    html = "html"


def _load(config_path: Path | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOption = None,
    port: Annotated[int | None, typer.Option(help="Port (overrides server.port).")] = None,
    host: Annotated[str | None, typer.Option(help="Host (overrides server.host).")] = None,
) -> None:
    """Run the gateway.

    Example: faregate serve --config faregate.yaml --port 4000
    """
    import uvicorn

    from faregate.logs import configure_logging
    from faregate.server import create_app
    from faregate.server.auth import unprotected_bind

    settings = _load(config)
    problem = unprotected_bind(settings, host or settings.server.host)
    if problem is not None:  # before anything opens a database or a socket
        err_console.print(f"[red]error:[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    configure_logging(settings.logging.level, settings.logging.format, config=settings)
    try:
        application = create_app(settings)
    except (ConfigError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)  # paths stay whole
        raise typer.Exit(2) from None
    uvicorn.run(
        application,
        host=host or settings.server.host,
        port=settings.server.port if port is None else port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=30,
    )


_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """`7d`, `12h`, `30m` before now, or an ISO date/time."""
    if not value:
        return None
    now = time.time() if now is None else now
    match = _DURATION.match(value.strip().lower())
    if match:
        return now - int(match.group(1)) * _SECONDS[match.group(2)]
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use a duration like 7d, 12h, 30m or an ISO date") from None


@app.command()
def spend(
    by: Annotated[str, typer.Option(help="Group by these dimensions, comma-separated.")] = "feature",
    since: SinceOption = None,
    config: ConfigOption = None,
    db: LedgerOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Spend, requests and tokens from the ledger, grouped by attribution.

    Example: faregate spend --by feature,team --since 7d --format json
    """
    from faregate.ledger import open_store

    url = db or _load(config).database
    dimensions = [d.strip() for d in by.split(",") if d.strip()]
    store = open_store(url)
    try:
        rows = store.spend(dimensions, parse_since(since))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--by") from None
    finally:
        store.close()
    if format is Format.json:
        typer.echo(orjson.dumps({"rows": [_jsonable(r) for r in rows]}, option=orjson.OPT_INDENT_2))
        return
    console.print(spend_table(dimensions, rows))


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()}


@app.command()
def analyze(
    files: Annotated[
        list[Path] | None, typer.Argument(help="JSON Lines request logs (.jsonl or .jsonl.gz).")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(help="Analyze a FareGate ledger instead (sqlite:///... or postgresql://...)."),
    ] = None,
    format: Annotated[ReportFormat, typer.Option("--format", "-f")] = ReportFormat.table,
    out: Annotated[
        Path | None, typer.Option(help="Write the report here instead of standard output.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Where the tokens go, and what each optimisation would save, from your own request logs.

    Example: faregate analyze requests.jsonl.gz --format html --out report.html
    """
    from faregate.analyze.command import run_analyze

    settings = _load(config) if config else None
    code = run_analyze(files or [], db=db, format=format.value, out=out, config=settings, console=console)
    raise typer.Exit(code)


@app.command()
def lint(
    file: Annotated[
        Path,
        typer.Argument(help="A prompt file (.txt, .md), a JSON request body, or a JSON Lines request log."),
    ],
    format: FormatOption = Format.table,
    model: Annotated[
        str | None,
        typer.Option(help="Price findings for this model (default: a body's model; a log's own models)."),
    ] = None,
    requests_per_day: Annotated[
        int | None,
        typer.Option(min=1, help="Requests a day to price a prompt at (for a log: its lines a day)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Find what breaks provider prompt caching (timestamps, ids, names, tool order) and what it costs.

    Exit code 0: nothing found; 1: findings (gate CI on it); 2: bad input.

    Example: faregate lint system_prompt.md --model claude-sonnet-4-5 --requests-per-day 5000
    """
    from faregate.prompt_cache.lint import run_lint

    settings = _load(config) if config else None
    code = run_lint(
        file,
        format=format.value,
        model=model,
        requests_per_day=requests_per_day,
        config=settings,
        console=console,
    )
    raise typer.Exit(code)


@app.command()
def simulate(
    requests: Annotated[int, typer.Option(help="How many requests to generate.")] = 2000,
    out: Annotated[Path, typer.Option(help="Where to write the JSON Lines log (.gz to compress).")] = Path(
        "workload.jsonl"
    ),
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same log.")] = 7,
) -> None:
    """Write a realistic mixed workload (support FAQ, document analysis, multi-turn chat) as a log.

    Example: faregate simulate --requests 5000 --out workload.jsonl && faregate analyze workload.jsonl
    """
    from faregate.simulate import write_workload

    written = write_workload(requests=requests, out=out, seed=seed, console=console)
    console.print(f"wrote {written} requests to {out}")


@app.command()
def demo(
    requests: Annotated[int, typer.Option(help="How many requests to send through the gateway.")] = 2000,
    db: Annotated[str, typer.Option(help="Ledger for the demo.")] = "sqlite:///.faregate/demo.db",
) -> None:
    """Send a simulated day of traffic through the real gateway and print where the tokens go.

    Example: faregate demo --requests 2000
    """
    from faregate.demo import run_demo

    run_demo(requests=requests, database=db, console=console)


@app.command("prompt-cache")
def prompt_cache(
    since: SinceOption = None,
    config: ConfigOption = None,
    db: LedgerOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Prompt-cache health per feature: cache-read ratio, saving, prefix churn and cache breakers.

    Example: faregate prompt-cache --since 24h
    """
    from faregate.ledger import open_store
    from faregate.prompt_cache.report import report_json, report_table

    store = open_store(db or _load(config).database)
    try:
        entries = store.prompt_cache(parse_since(since))
    finally:
        store.close()
    if format is Format.json:
        typer.echo(orjson.dumps(report_json(entries), option=orjson.OPT_INDENT_2))
        return
    console.print(report_table(entries))


cache_app = typer.Typer(
    help="The response caches: measure a policy offline, see what they save, clear entries.",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("eval")
def cache_eval(
    pairs: Annotated[
        Path | None, typer.Option(help='Paraphrase pairs, one {"a", "b", "duplicate"} a line.')
    ] = None,
    stream: Annotated[
        Path | None, typer.Option(help='An intent stream, one {"text", "intent"} a line ("oos": none).')
    ] = None,
    warm: Annotated[Path | None, typer.Option(help="Intent lines stored before the --stream starts.")] = None,
    feature: Annotated[
        str | None, typer.Option(help="Measure this feature's threshold and guards (from --config).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Override the policy's threshold.")
    ] = None,
    config: ConfigOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Precision, recall and hit rate of a semantic-cache policy, offline, plus a threshold sweep.

    Pairs: each pair alone, `a` stored and `b` looked up. Stream: one cache, warmed with --warm, then
    each query looks up and is stored on a miss; a hit is right when both intents match (not "oos").
    Exit code 2 for unreadable input (a missing file, any malformed line).

    Example: faregate cache eval --stream test.jsonl --warm train.jsonl --format json
    """
    from faregate.cache.evaluate import Policy
    from faregate.cache.report import BadInput, policy_for, run_eval

    settings = _load(config)
    try:
        policy = policy_for(settings, feature)
    except BadInput as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if threshold is not None:
        policy = Policy(threshold, policy.guards)
    code = run_eval(
        pairs=pairs,
        stream=stream,
        warm=warm,
        policy=policy,
        model_dir=settings.cache.model_dir,
        format=format.value,
        console=console,
        err_console=err_console,
    )
    raise typer.Exit(code)


@cache_app.command("stats")
def cache_stats(
    since: SinceOption = None,
    config: ConfigOption = None,
    db: Annotated[str | None, typer.Option(help="Database URL for both the cache and the ledger.")] = None,
    format: FormatOption = Format.table,
) -> None:
    """Per feature: entries and hits in the cache store, requests, hit rate, saving and verified precision.

    Example: faregate cache stats --since 7d
    """
    from faregate.cache.report import cache_stats_report, stats_table
    from faregate.ledger import open_store

    settings = _load(config)
    cache_store = _cache_store(db or settings.cache.database or settings.database)
    try:
        entries = cache_store.stats()
        tightenings = cache_store.tightenings()
    finally:
        cache_store.close()
    try:
        ledger = open_store(db or settings.database)
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        requests = ledger.response_cache(parse_since(since))
    finally:
        ledger.close()
    report = cache_stats_report(entries, requests, tightenings)
    if format is Format.json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        return
    console.print(stats_table(report))


@cache_app.command("clear")
def cache_clear(
    feature: Annotated[str | None, typer.Option(help="Only this feature's entries.")] = None,
    template: Annotated[str | None, typer.Option(help="Only entries of this prompt template.")] = None,
    all_entries: Annotated[
        bool, typer.Option("--all", help="Clear every entry (required when no filter is given).")
    ] = False,
    config: ConfigOption = None,
    db: Annotated[str | None, typer.Option(help="Cache database URL (default: cache.database).")] = None,
) -> None:
    """Delete cache entries: a feature's, a template's, or (with --all) every one; prints how many.

    Example: faregate cache clear --feature support --template v3
    """
    if feature is None and template is None and not all_entries:
        err_console.print(
            "[red]error:[/red] name a --feature and/or a --template, or pass --all to clear every entry",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    settings = _load(config)
    store = _cache_store(db or settings.cache.database or settings.database)
    try:
        deleted = store.clear(feature=feature, template=template)
    finally:
        store.close()
    what = " and ".join(f"{k} {v!r}" for k, v in (("feature", feature), ("template", template)) if v)
    typer.echo(f"deleted {deleted} cache entr{'y' if deleted == 1 else 'ies'}{f' of {what}' if what else ''}")


app.add_typer(history_app, name="history")
app.add_typer(keys_app, name="keys")
app.add_typer(router_app, name="router")


@router_app.command("stats")
def router_stats(
    since: SinceOption = None,
    config: ConfigOption = None,
    db: LedgerOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Per feature: requests by tier, frontier share, fallbacks, shadow-check error estimate, feedback.

    Example: faregate router stats --since 7d
    """
    from faregate.routing.stats import stats_table

    report = _ledger_report(config, db, lambda ledger: ledger.routing(parse_since(since)))
    target = _router_target(config)
    for entry in report:
        entry["target_frontier_share"] = target
    if format is Format.json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        return
    console.print(stats_table(report))


@router_app.command("export")
def router_export(
    out: Annotated[Path, typer.Option("--out", help="Write the routing-outcome lines here (JSONL).")],
    since: SinceOption = None,
    config: ConfigOption = None,
    db: LedgerOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Shadow checks from the ledger as routing-outcome lines, to train a router on your own traffic.

    Needs `routing.shadow_fraction` (the checks) and `privacy.store_prompts: true` (the prompts).
    Example: faregate router export --since 30d --out outcomes.jsonl
    """
    from faregate.routing.export import outcome_rows

    checks = _ledger_report(config, db, lambda ledger: ledger.shadow_checks(parse_since(since)))
    rows, summary = outcome_rows(checks)
    if not rows:
        reason = (
            "no shadow checks in the ledger for this window: set routing.shadow_fraction"
            if not checks
            else f"none of the {len(checks):,} shadow checks has its prompt: the ledger keeps prompts "
            "only with privacy.store_prompts: true"
        )
        err_console.print(f"[red]error:[/red] nothing to export: {reason}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    try:
        out.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    except OSError as exc:
        err_console.print(f"[red]error:[/red] cannot write {out}: {exc.strerror}", highlight=False)
        raise typer.Exit(2) from None
    report = {"out": str(out), **summary.as_dict(), "tiers": summary.tiers_option()}
    if format is Format.json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        return
    console.print(
        f"wrote {summary.rows:,} routing outcomes to {out}: {summary.agreed:,} where the routed answer "
        f"agreed with the frontier's, {summary.rows - summary.agreed:,} where it did not",
        highlight=False,
    )
    if summary.skipped_no_prompt or summary.skipped_no_query:
        console.print(
            f"skipped {summary.skipped_no_prompt:,} checks without a stored prompt "
            f"(privacy.store_prompts) and {summary.skipped_no_query:,} without user text",
            highlight=False,
        )
    if report["tiers"]:
        console.print(
            f"train on it: faregate router train --data {out} --tiers {report['tiers']} --out router.npz",
            highlight=False,
        )


@history_app.command("stats")
def history_stats(
    since: SinceOption = None,
    config: ConfigOption = None,
    db: LedgerOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Per feature: history tokens sent before and after the policy, summary calls, output-cap cuts.

    Example: faregate history stats --since 7d
    """
    from faregate.history.stats import stats_table

    report = _ledger_report(config, db, lambda ledger: ledger.history(parse_since(since)))
    if format is Format.json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2, default=float))
        return
    console.print(stats_table(report))


def _router_target(config: Path | None) -> float | None:
    """The frontier share the configured router's calibration expects (None: routing off)."""
    from faregate.routing.artifact import RouterFileError, default_router_path, load_router

    routing = _load(config).routing
    if not routing.tiers:
        return None
    try:
        return load_router(routing.router or default_router_path()).expected_frontier_share
    except RouterFileError as exc:
        err_console.print(f"[yellow]note:[/yellow] {exc}", highlight=False, soft_wrap=True)
        return None


def _ledger_report(
    config: Path | None, db: str | None, read: Callable[[LedgerStore], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Open the ledger (`--db`, else the config's `database`), read one report from it, close it."""
    from faregate.ledger import open_store

    settings = _load(config)
    try:
        ledger = open_store(db or settings.database)
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        return read(ledger)
    finally:
        ledger.close()


def _cache_store(url: str) -> CacheStore:
    from faregate.cache.store import open_cache_store

    try:
        return open_cache_store(url)
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
