"""`faregate history eval`'s input and output: conversation files in, Rich tables or JSON out.

Kept apart from `evaluate` (which measures) and `command` (which parses options), so that bench
scripts and tests read files and get dicts exactly as the command does.

Input is strict, as for `faregate cache eval`: a missing file or any malformed line (bad JSON, a
missing or mistyped field, evidence naming a turn the conversation does not have) is a `BadInput`
naming the lines, never skipped, because a silently smaller data set is a different measurement.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from faregate.history.evaluate import Dialogue, Params, Question, Turn, evaluate

__all__ = ["BadInput", "eval_tables", "parse_budgets", "read_conversations", "run_eval"]

LONG_RUN = 200  # conversations past which a terminal gets a progress bar
_ROLES = ("user", "assistant", "system")


class BadInput(ValueError):
    """An input or option that cannot be used as given (the command exits 2 with the message)."""


def read_conversations(path: Path) -> list[Dialogue]:
    """Conversations from a JSON Lines file (gzip when it ends in .gz), one object a line:
    `{"id", "turns": [{"id", "role", "content"}], "questions": [{"question", "answer", "evidence"}]}`.
    """
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
    dialogues: list[Dialogue] = []
    bad: list[str] = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            dialogues.append(_dialogue(row))
        except orjson.JSONDecodeError as exc:
            bad.append(f"{path}:{number}: invalid JSON ({str(exc).partition(':')[0]})")
        except ValueError as exc:
            bad.append(f"{path}:{number}: {exc}")
    if bad:
        shown = "\n  ".join(bad[:5]) + (f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise BadInput(f"{len(bad)} malformed line(s) in {path} (nothing was evaluated):\n  {shown}")
    if not dialogues:
        raise BadInput(f"{path} holds no conversations")
    return dialogues


def _dialogue(row: Any) -> Dialogue:
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    turns_in, questions_in = row.get("turns"), row.get("questions", [])
    if not isinstance(row.get("id"), str | int) or not isinstance(turns_in, list):
        raise ValueError('want {"id", "turns": [...], "questions": [...]}')
    turns = []
    for turn in turns_in:
        if not (
            isinstance(turn, dict)
            and isinstance(turn.get("id"), str | int)
            and turn.get("role") in _ROLES
            and isinstance(turn.get("content"), str)
        ):
            raise ValueError(f'want turns as {{"id", "role": {"|".join(_ROLES)}, "content": text}}')
        turns.append(Turn(str(turn["id"]), turn["role"], turn["content"]))
    if not any(t.role == "user" for t in turns):
        raise ValueError("no user turn")
    ids = {t.id for t in turns}
    if len(ids) != len(turns):
        raise ValueError("turn ids repeat")
    if not isinstance(questions_in, list):
        raise ValueError("questions is not a list")
    questions = []
    for q in questions_in:
        evidence = q.get("evidence") if isinstance(q, dict) else None
        if not (isinstance(q, dict) and isinstance(q.get("question"), str) and isinstance(evidence, list)):
            raise ValueError('want questions as {"question": text, "answer": text, "evidence": [turn ids]}')
        evidence_ids = tuple(str(e) for e in evidence)
        if missing := [e for e in evidence_ids if e not in ids]:
            raise ValueError(f"evidence names turns the conversation does not have: {missing[:3]}")
        questions.append(Question(q["question"], str(q.get("answer", "")), evidence_ids))
    return Dialogue(str(row["id"]), tuple(turns), tuple(questions))


def parse_budgets(value: str) -> tuple[int, ...]:
    """ "500,1000,2000" -> (500, 1000, 2000); positive integers only."""
    try:
        budgets = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise BadInput(f"--budgets wants comma-separated token counts, not {value!r}") from None
    if not budgets or any(b <= 0 for b in budgets):
        raise BadInput(f"--budgets wants positive token counts, not {value!r}")
    return tuple(dict.fromkeys(budgets))


def run_eval(
    *,
    conversations: Path,
    params: Params,
    limit: int | None,
    format: str,
    console: Console,
    err_console: Console,
) -> int:
    """Exit code 0 with the report printed; 2 (and a message on stderr) for unusable input."""
    from faregate.cache.embeddings import Embedder, EmbeddingModelMissing

    try:
        dialogues = read_conversations(conversations)
        # int8, like the gateway's history stage: the offline numbers are the production policy's
        embedder = Embedder.load(None, int8=True) if params.policy == "retrieve" else None
    except (BadInput, EmbeddingModelMissing) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    if limit is not None:
        dialogues = dialogues[:limit]
    with _progress(err_console, len(dialogues)) as on_progress:
        report = evaluate(dialogues, params, embedder.embed if embedder else None, on_progress)
    report["file"] = str(conversations)
    if format == "json":
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
    else:
        for table in eval_tables(report):
            console.print(table)
    return 0


@contextmanager
def _progress(err_console: Console, size: int) -> Iterator[Callable[[int, int], None] | None]:
    """A Rich bar on a terminal for long runs; nothing in pipes, CI logs and tests."""
    if size < LONG_RUN or not err_console.is_terminal:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("conversations", total=size)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def eval_tables(report: dict[str, Any]) -> Sequence[Table]:
    """The summary table and the per-request-number table."""
    params = report["params"]
    settings = [f"keep last {params['keep_last']}"]
    if params.get("top") is not None:
        settings.append(f"top {params['top']} ({params['match']})")
    if params.get("summary_every") is not None:
        settings.append(f"summary every {params['summary_every']}")
    if params.get("max_history_tokens") is not None:
        settings.append(f"history ≤ {params['max_history_tokens']:,} tokens")
    title = f"history policy {report['policy']}: {', '.join(settings)}"
    table = Table("measure", "value", title=title, title_justify="left")
    table.add_row("file", str(report.get("file", "-")))
    table.add_row("conversations (requests)", f"{report['conversations']:,} ({report['requests']:,})")
    table.add_row(
        "history tokens without / with",
        f"{report['history_tokens_without']:,} / {report['history_tokens_with']:,}",
    )
    table.add_row("history reduction", _pct(report["history_reduction"]))
    table.add_row("input reduction", _pct(report["input_reduction"]))
    long = report["long_conversations"]
    table.add_row(
        f"history reduction, {long['min_turns']}+ turns ({long['conversations']:,})",
        _pct(long["history_reduction"]),
    )
    late = report["late_requests"]
    table.add_row(
        f"history reduction, requests {late['from_request']}+ ({late['requests']:,})",
        _pct(late["history_reduction"]),
    )
    for bucket in report["by_length"]:
        table.add_row(
            f"history reduction, {bucket['requests']}-request chats ({bucket['conversations']:,})",
            _pct(bucket["history_reduction"]),
        )
    flat = report["flat_after_turn"]
    table.add_row("input tokens flat after request", "-" if flat is None else str(flat))
    if "summary_model" in report:
        table.add_row("summary tokens counted with", report["summary_model"])
    if "questions" in report:
        table.add_row("questions", f"{report['questions']:,}")
        table.add_row("evidence recall (verbatim)", _pct(report["evidence_recall"]))
        table.add_row("history tokens sent with a question", f"{report['question_history_tokens']:,.0f}")
        if "evidence_in_summary_input" in report:
            table.add_row("evidence verbatim or summarised", _pct(report["evidence_in_summary_input"]))
        for budget, recall in report.get("recall_by_budget", {}).items():
            table.add_row(f"evidence recall, history ≤ {int(budget):,} tokens", _pct(recall))
    turns = Table("request", "requests", "input tokens without", "with", title="mean input tokens by request")
    for row in report["per_turn"]:
        turns.add_row(
            str(row["turn"]),
            f"{row['requests']:,}",
            f"{row['input_tokens_without']:,.0f}",
            f"{row['input_tokens_with']:,.0f}",
        )
    return (table, turns)
