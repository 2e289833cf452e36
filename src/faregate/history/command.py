"""`faregate history ...`: the history commands, mounted by `faregate.cli` as a Typer sub-app."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from faregate.cli_common import Format, console, err_console

__all__ = ["history_app"]

history_app = typer.Typer(
    help="Conversation history policies: measure window, summary and retrieval offline.",
    no_args_is_help=True,
)


@history_app.callback()
def history() -> None:
    """Conversation history policies: measure window, summary and retrieval offline."""
    # A callback makes this a group even with one command, so `history eval` means the same whether
    # the app is mounted under `faregate` or invoked on its own (tests, bench scripts).


class PolicyName(StrEnum):
    window = "window"
    summary = "summary"
    retrieve = "retrieve"


@history_app.command("eval")
def history_eval(
    conversations: Annotated[
        Path, typer.Option(help="Conversations, JSON Lines (.gz accepted): {id, turns, questions}.")
    ],
    policy: Annotated[PolicyName, typer.Option(help="The history policy to replay.")] = PolicyName.window,
    keep_last: Annotated[int, typer.Option(min=0, help="Exchanges always sent verbatim (K).")] = 4,
    top: Annotated[int, typer.Option(min=0, help="retrieve: older exchanges retrieved (R).")] = 4,
    max_history_tokens: Annotated[
        int | None, typer.Option(min=1, help="Token budget for the history sent.")
    ] = None,
    summary_every: Annotated[
        int, typer.Option(min=1, help="summary: extend the summary once this many exchanges wait.")
    ] = 8,
    model: Annotated[str, typer.Option(help="Count tokens with this model's tokenizer.")] = "gpt-4o",
    budgets: Annotated[
        str, typer.Option(help="retrieve: history budgets for the recall-budget curve.")
    ] = "500,1000,2000,4000",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N conversations.")] = None,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
) -> None:
    """Replay conversations through a history policy: tokens saved per request, and evidence recall.

    Request t of a conversation is every turn before its t-th user turn plus that turn, sent with
    and without the policy. Conversations with labelled questions also measure whether the turns a
    question needs are still sent when it is asked after the last turn. Exit code 2 for unreadable
    input (a missing file, any malformed line).

    Example: faregate history eval --conversations long.jsonl --policy retrieve --format json
    """
    from faregate.history.evaluate import Params
    from faregate.history.report import BadInput, parse_budgets, run_eval

    try:
        budget_list = parse_budgets(budgets)
    except BadInput as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    params = Params(
        policy=policy.value,
        keep_last=keep_last,
        top=top,
        max_history_tokens=max_history_tokens,
        summary_every=summary_every,
        model=model,
        budgets=budget_list,
    )
    code = run_eval(
        conversations=conversations,
        params=params,
        limit=limit,
        format=format.value,
        console=console,
        err_console=err_console,
    )
    raise typer.Exit(code)
