"""What every CLI module shares: the consoles, the `--format table|json` choice, the `--config` option.

A module of its own because `faregate.cli` mounts the sub-apps (`history`, `router`, `keys`), so
they cannot import these from it.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

# Off a terminal (CI logs, pipes) Rich would wrap tables at 80 columns; reports need more.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file.", envvar="FAREGATE_CONFIG")
]


class Format(StrEnum):
    table = "table"
    json = "json"
