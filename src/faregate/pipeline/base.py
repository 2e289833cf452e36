"""The composer: an ordered list of stages, each `async def __call__(call, next) -> Result`.

A stage may answer without calling `next` (a cache hit), change the call before passing it on
(routing, history, prompt-cache shaping) or observe the result on the way back (ledger, cache store).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from faregate.call import Call, Result

Next = Callable[[Call], Awaitable[Result]]


class Stage(Protocol):
    async def __call__(self, call: Call, next: Next) -> Result: ...


async def _end_of_pipeline(call: Call) -> Result:
    raise RuntimeError("the last pipeline stage must answer without calling next")


def compose(stages: Sequence[Stage]) -> Next:
    """Bind each stage to its successor once, at start-up, so a request pays no dispatch loop."""
    handler: Next = _end_of_pipeline
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    return handler


def _bind(stage: Stage, successor: Next) -> Next:
    async def run(call: Call) -> Result:
        return await stage(call, successor)

    return run
