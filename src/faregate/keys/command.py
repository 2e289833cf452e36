"""`faregate keys ...`: create, list and revoke virtual keys; mounted by `faregate.cli` as a sub-app.

The commands talk to the database named by the config's `database` (the gateway's own), so a key
created on an operator's machine against the shared PostgreSQL works on every replica at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from faregate.cli_common import ConfigOption, Format, console, err_console
from faregate.config import load_config
from faregate.errors import ConfigError
from faregate.keys.store import KeyRecord, KeyStore, open_key_store

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="FareGate virtual keys: one per team or app, with an optional budget and model allow-list.",
    no_args_is_help=True,
)


class Period(StrEnum):
    day = "day"
    month = "month"


FormatOption = Annotated[Format, typer.Option("--format", "-f")]


@keys_app.callback()
def keys() -> None:
    """FareGate virtual keys: one per team or app, with an optional budget and model allow-list."""


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@contextmanager
def _store(config_path: Path | None) -> Iterator[KeyStore]:
    try:
        database = load_config(config_path).database
        store = open_key_store(database)
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    try:
        yield store
    finally:
        store.close()


@keys_app.command("create")
def create(
    team: Annotated[str, typer.Option(help="The team the key spends for and reads as.")],
    name: Annotated[str, typer.Option(help="What the key is for (shown by `keys list`).")] = "",
    budget: Annotated[
        str | None, typer.Option(help="Spending limit of this key in US dollars per --budget-period.")
    ] = None,
    budget_period: Annotated[Period, typer.Option(help="The budget's period (UTC).")] = Period.month,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models the key may ask for (default: all).")
    ] = None,
    config: ConfigOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Create a key and print it once: FareGate keeps only a salted hash and cannot show it again.

    Example: faregate keys create --team search --budget 50 --models gpt-4o-mini,auto -c faregate.yaml
    """
    allowed = [m for m in models.split(",")] if models is not None else None
    with _store(config) as store:
        try:
            key, record = store.create(
                team, name=name, budget_usd=budget, budget_period=budget_period.value, models=allowed
            )
        except ValueError as exc:
            raise _fail(str(exc)) from None
    if format is Format.json:
        typer.echo(orjson.dumps({"key": key, **record.public()}, option=orjson.OPT_INDENT_2))
        return
    console.print(
        f"Created key [bold]{record.id}[/bold] for team [bold]{record.team}[/bold]:", highlight=False
    )
    typer.echo(key)
    err_console.print(
        "Store it now: FareGate keeps only a salted hash and cannot show this key again.", highlight=False
    )


@keys_app.command("list")
def list_keys(
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
    config: ConfigOption = None,
    format: FormatOption = Format.table,
) -> None:
    """The keys, with their team, budget and models (never the key or its hash).

    Example: faregate keys list --config faregate.yaml --format json
    """
    with _store(config) as store:
        records = store.list(team)
    if format is Format.json:
        typer.echo(orjson.dumps({"keys": [r.public() for r in records]}, option=orjson.OPT_INDENT_2))
        return
    console.print(keys_table(records))


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (as `keys list` shows it).")],
    config: ConfigOption = None,
) -> None:
    """Revoke a key: every replica refuses it within `auth.key_cache_s` seconds.

    Example: faregate keys revoke 3f2a9c0b41d7 --config faregate.yaml
    """
    key_id = _id_of(key_id)
    with _store(config) as store:
        record = store.revoke(key_id)
    if record is None:
        raise _fail(f"no key with id {key_id!r} (see `faregate keys list`)")
    console.print(f"Revoked key [bold]{record.id}[/bold] of team {record.team}.", highlight=False)


def _id_of(given: str) -> str:
    """Accept the id, or `fgk-<id>`, or a whole key pasted by mistake: only the id is used."""
    given = given.strip()
    if given.startswith("fgk-"):
        given = given[4:16]
    return given


def keys_table(records: list[KeyRecord]) -> Table:
    table = Table(title="FareGate virtual keys")
    for column in ("id", "team", "name", "budget", "models", "created", "revoked"):
        table.add_column(column)
    for r in records:
        budget = f"${r.budget_usd} / {r.budget_period}" if r.budget_usd is not None else "-"
        table.add_row(
            r.id,
            r.team,
            r.name or "-",
            budget,
            ", ".join(r.models) if r.models is not None else "all",
            _when(r.created_at),
            _when(r.revoked_at) if r.revoked_at is not None else "-",
        )
    return table


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
