"""`faregate router train | eval`: train a router from routing outcomes, and measure one.

Mounted by the main CLI as ``app.add_typer(router_app, name="router")``. Exit code 2 for input that
cannot be used (too few rows, unknown models, nothing to learn, a broken router file), with the reason.

Prompts are embedded with the bundled MiniLM, int8 by default (``Embedder.load(None, int8=True)``: ~2.3x
faster a query, and cross-validated routers route as well as on float32 vectors); ``train --embedding
float32`` for float32. The router's meta records which (`Router.embedding_model`), and ``eval`` embeds
the way the router expects (`Router.embedding_int8`), as the gateway must.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from faregate.cli_common import Format

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from faregate.cache.embeddings import Embedder

__all__ = ["Embedding", "LazyEmbed", "embed_with_progress", "router_app"]

router_app = typer.Typer(
    help="The model router: train one on your routing outcomes, measure it (APGR, CPT, cost).",
    no_args_is_help=True,
)

_CHUNK = 256  # prompts embedded between progress updates


class Embedding(StrEnum):
    """Which MiniLM embeddings a router is trained on (``faregate router train --embedding``)."""

    int8 = "int8"
    float32 = "float32"


def _single_threaded_blas() -> None:
    """One BLAS thread unless the user says otherwise, set before NumPy loads (it reads it once).

    Training is many small matrix products and solves; on a shared machine OpenBLAS's threads wait on
    each other and a 2-second training took 10-20 s in our runs (see `faregate.cache.embeddings`).
    Importing this module does not import NumPy, so the CLI gets here first.
    """
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _consoles() -> tuple[Console, Console]:
    return Console(width=None if sys.stdout.isatty() else 160), Console(stderr=True)


def _fail(err: Console, message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True, markup=True)
    return typer.Exit(2)


def embed_with_progress(
    texts: Sequence[str], err: Console, embedder: Embedder | None = None
) -> npt.NDArray[np.float32]:
    """Embed with ``embedder`` (None: the bundled float32 model), a progress bar on stderr when there are
    many texts."""
    import numpy as np

    from faregate.cache.embeddings import DIM, Embedder

    if embedder is None:
        embedder = Embedder.load(None, memo_size=0)
    out = np.empty((len(texts), DIM), dtype=np.float32)
    if len(texts) <= _CHUNK:
        out[:] = embedder.embed(list(texts))
        return out
    columns = (TextColumn("embedding prompts"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("embed", total=len(texts))
        for start in range(0, len(texts), _CHUNK):
            chunk = list(texts[start : start + _CHUNK])
            out[start : start + len(chunk)] = embedder.embed(chunk)
            progress.advance(task, len(chunk))
    return out


class LazyEmbed:
    """An `Embed` for the bundled model, float32 or int8, loaded on its first call, so that input the
    command refuses fails before the model loads (int8 takes ~1-2 s to quantize)."""

    def __init__(self, err: Console, *, int8: bool) -> None:
        self._err = err
        self._int8 = int8
        self._embedder: Embedder | None = None

    @property
    def name(self) -> str:
        """The name `Embedder.load` gives these vectors, known without loading the model: int8 ones
        carry an ``-int8`` suffix (only the ONNX backend quantizes; without it they are float32)."""
        from faregate.cache import onnx_bert
        from faregate.cache.embeddings import MODEL_NAME

        return f"{MODEL_NAME}-int8" if self._int8 and onnx_bert.available() else MODEL_NAME

    def __call__(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if self._embedder is None:
            from faregate.cache.embeddings import Embedder

            self._embedder = Embedder.load(None, memo_size=0, int8=self._int8)
            if self._embedder.name != self.name:
                raise RuntimeError(f"loaded embeddings {self._embedder.name}, expected {self.name}")
        return embed_with_progress(texts, self._err, self._embedder)


@router_app.command("train")
def train(
    data: Annotated[
        list[Path],
        typer.Option(
            "--data", help='Routing outcomes, {"prompt","category","scores",...} a line; repeatable.'
        ),
    ],
    tiers: Annotated[
        str,
        typer.Option(
            help="Tiers cheapest first, the frontier last: small=MODEL[,medium=MODEL],frontier=MODEL."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Where to write the router file (.npz).")],
    target_quality: Annotated[
        float | None,
        typer.Option(help="Calibrate to keep this fraction of the frontier's quality (default 0.95)."),
    ] = None,
    target_frontier_share: Annotated[
        float | None, typer.Option(help="Calibrate to send this share of calls to the frontier instead.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the cross-validation folds.")] = 0,
    embedding: Annotated[
        Embedding,
        typer.Option(
            "--embedding",
            help="Embed prompts with the int8 or the float32 MiniLM (recorded in the router file).",
        ),
    ] = Embedding.int8,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
) -> None:
    """Train a router on routing outcomes and calibrate its policy to a target.

    Example: faregate router train --data outcomes.jsonl --tiers small=gpt-4o-mini,frontier=gpt-4o
    --target-quality 0.95 --out router.npz
    """
    _single_threaded_blas()
    from faregate.routing.artifact import save_router
    from faregate.routing.data import BadData, parse_tiers, read_rows
    from faregate.routing.train import train_router

    console, err = _consoles()
    embed = LazyEmbed(err, int8=embedding is Embedding.int8)
    try:
        tier_list = parse_tiers(tiers)
        rows = read_rows(data)
        router, report = train_router(
            rows,
            tier_list,
            embed,
            target_quality=target_quality,
            target_frontier_share=target_frontier_share,
            seed=seed,
            embedding_model=embed.name,
        )
    except BadData as exc:
        raise _fail(err, str(exc)) from None
    try:
        size = save_router(out, router)
    except OSError as exc:
        raise _fail(err, f"cannot write {out}: {exc.strerror or exc}") from None
    report["out"] = str(out)
    report["bytes"] = size
    if format is Format.json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        return
    for line in train_lines(report):
        console.print(line, highlight=False, soft_wrap=True)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def train_lines(report: dict[str, Any]) -> list[str]:
    """The train report in a few lines."""
    tiers = ", ".join(f"{k}={v}" for k, v in report["tiers"].items())
    held = report["heldout"]
    clf = report["classifier"]
    apgrs = ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in held["apgr"].items())
    target = report["target"]
    goal = (
        f"quality >= {_pct(target['quality'])} of the frontier's"
        if "quality" in target
        else f"frontier share {_pct(target['frontier_share'])}"
    )
    bars = ", ".join(f"{k} {v:.3f}" for k, v in report["bars"].items())
    lines = [
        f"trained on {report['rows']} rows in {report['seconds']} s; tiers {tiers}; "
        f"embeddings {report['embedding']}",
        f"held-out APGR {apgrs} ({clf['folds']}-fold; L2 {clf['lambda']:g}, {clf['neighbours']} neighbours, "
        f"{clf['categories']} categories)",
        f"policy for {goal}: bar {bars} -> frontier {_pct(held['frontier_share'])} of calls, quality "
        f"{_pct(held['quality_vs_frontier'])} of the frontier's, cost {_pct(held['cost_vs_frontier'])} of "
        f"always-frontier (held-out, costs from {report['costs']})",
        f"wrote {report['out']} ({report['bytes'] / 1e6:.1f} MB)",
    ]
    lines.extend(f"note: {note}" for note in report["notes"])
    return lines


@router_app.command("eval")
def eval_(
    data: Annotated[Path, typer.Option("--data", help="Routing outcomes the router was not trained on.")],
    router: Annotated[
        Path | None, typer.Option("--router", help="A router file (default: the one shipped with FareGate).")
    ] = None,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
) -> None:
    """Measure a router: APGR, CPT(50%), CPT(80%), quality and cost at its policy, per category.

    Three or more tiers: the cost-quality curve and the cost at 95% of the frontier's quality. Prompts
    are embedded the way the router was trained (int8 or float32 MiniLM, from its file).

    Example: faregate router eval --data heldout.jsonl --router router.npz --format json
    """
    _single_threaded_blas()
    from faregate.routing.artifact import RouterFileError, default_router_path, load_router
    from faregate.routing.data import BadData, read_rows
    from faregate.routing.evaluate import evaluate_router

    console, err = _consoles()
    try:
        loaded = load_router(router or default_router_path())
        rows = read_rows([data])
        if not rows:
            raise BadData(f"{data}: no rows")
        embed = LazyEmbed(err, int8=loaded.embedding_int8)
        if embed.name != loaded.embedding_model:
            err.print(
                f"note: the router was trained on {loaded.embedding_model} embeddings; "
                f"evaluating with {embed.name}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
        report = evaluate_router(loaded, rows, embed)
    except (BadData, RouterFileError) as exc:
        raise _fail(err, str(exc)) from None
    report["router"] = str(router or default_router_path())
    report["embedding"] = embed.name
    if format is Format.json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        return
    console.print(eval_table(report))


def eval_table(report: dict[str, Any]) -> Table:
    """The eval report as a table: the headline numbers, then one row per category."""
    title = f"router {report['router']} on {report['rows']} rows"
    head = Table(title=title, show_header=False)
    head.add_column("metric")
    head.add_column("value", justify="right")
    if "embedding" in report:
        head.add_row("embeddings", str(report["embedding"]))
    for name, tier in report["tiers"].items():
        head.add_row(
            f"{name} ({tier['model']})", f"quality {tier['quality']:.3f}, ${tier['cost_per_call_usd']:.6f}"
        )
    if "apgr" in report:
        head.add_row("APGR", "n/a" if report["apgr"] is None else f"{report['apgr']:.3f}")
        head.add_row("CPT(50%)", _pct(report["cpt50"]))
        head.add_row("CPT(80%)", _pct(report["cpt80"]))
    else:
        for name, value in report["apgr_vs_frontier"].items():
            head.add_row(f"APGR {name} vs frontier", "n/a" if value is None else f"{value:.3f}")
        head.add_row("cost at 95% of frontier quality", _pct(report["cost_at_95"]))
    head.add_row(
        "quality at policy", f"{report['quality']:.3f} ({_pct(report['quality_vs_frontier'])} of frontier)"
    )
    head.add_row(
        "cost at policy", f"${report['cost']:.6f} a call ({_pct(report['cost_vs_frontier'])} of frontier)"
    )
    head.add_row(
        "frontier share", f"{_pct(report['frontier_share'])} (unsure {_pct(report['unsure_share'])})"
    )
    cats = report["per_category"]
    if len(cats) > 1:
        per = Table(title="per category")
        for col in (
            "category",
            "rows",
            "APGR",
            "quality",
            "vs frontier",
            "cost vs frontier",
            "frontier share",
        ):
            per.add_column(col, justify="left" if col == "category" else "right")
        for name, c in cats.items():
            value = c.get("apgr")
            per.add_row(
                name,
                str(c["rows"]),
                "n/a" if value is None else f"{value:.3f}",
                f"{c['quality']:.3f}",
                _pct(c["quality_vs_frontier"]),
                _pct(c["cost_vs_frontier"]),
                _pct(c["frontier_share"]),
            )
        outer = Table.grid()
        outer.add_row(head)
        outer.add_row(per)
        return outer
    return head
