"""Which history exchanges a request sends upstream: pure selection, no I/O, no models.

Three policies, all choosing whole exchanges (see `exchanges`), so a tool call always travels with
its result:

- `window`: the last K exchanges, trimmed from the oldest to a token budget. Cheap and predictable;
  forgets everything older.
- `retrieve`: the last K exchanges plus the R older ones most similar to the current query (the
  caller computes the similarities, e.g. embeddings of `Exchange.text` against `Conversation.query`).
  Keeps what an old turn said when a new question needs it, at a bounded cost.
- summary (`summary_due` + `summary`): older exchanges replaced by one summary text. The summarised
  span grows in large steps so that the summary, and with it the prompt prefix, stays byte-stable
  between extensions: a provider's prompt cache keeps hitting, and the summariser runs once a step,
  not once a request.

Selections keep the original order of exchanges; the current exchange and pinned messages are not
part of a selection: they are always sent (`compose.compose_body`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from faregate.history.exchanges import Conversation

__all__ = ["Selection", "retrieve", "summary", "summary_due", "window"]


@dataclass(slots=True)
class Selection:
    """What a policy sends of `conversation.history`, and what that saves."""

    keep: list[int]  # indices into conversation.history of exchanges sent verbatim, ascending
    summarized_upto: int = 0  # history[:summarized_upto] is replaced by the summary text (summary policy)
    tokens_before: int = 0  # history tokens the client sent
    tokens_after: int = 0  # history tokens sent upstream (kept exchanges + summary message)


def window(conv: Conversation, *, keep_last: int | None, max_tokens: int | None) -> Selection:
    """The last `keep_last` exchanges (None: all), then the oldest of those dropped while their tokens
    exceed `max_tokens` (None: no budget). May keep nothing.
    """
    n = len(conv.history)
    first = 0 if keep_last is None else max(0, n - max(0, keep_last))
    keep = _trim_oldest(conv, list(range(first, n)), max_tokens)
    return _selection(conv, keep)


def retrieve(
    conv: Conversation,
    *,
    keep_last: int,
    top: int,
    similarities: Sequence[float] | None,
    max_tokens: int | None,
) -> Selection:
    """The last `keep_last` exchanges plus the `top` older ones most similar to the query, in order.

    `similarities[i]` scores `history[i]`; None (no embedder, no query text) behaves like `window`.
    Ties go to the more recent exchange. With `max_tokens`, the recent exchanges are placed first
    (dropping the oldest of them while over), then older exchanges in order of similarity: one that
    does not fit in what is left is skipped and the next tried, until `top` are kept or the ranking
    ends, so one long exchange cannot push out several short, relevant ones.
    """
    if similarities is None:
        return window(conv, keep_last=keep_last, max_tokens=max_tokens)
    n = len(conv.history)
    if len(similarities) != n:
        raise ValueError(f"{len(similarities)} similarities for {n} history exchanges")
    split = max(0, n - max(0, keep_last))
    recent = _trim_oldest(conv, list(range(split, n)), max_tokens)
    ranked = sorted(range(split), key=lambda i: (-similarities[i], -i))
    if max_tokens is None:
        return _selection(conv, sorted(recent + ranked[: max(0, top)]))
    room = max_tokens - sum(conv.history[i].tokens for i in recent)
    retrieved: list[int] = []
    for i in ranked:
        if len(retrieved) >= top:
            break
        if conv.history[i].tokens <= room:
            retrieved.append(i)
            room -= conv.history[i].tokens
    return _selection(conv, sorted(recent + retrieved))


def summary_due(n_history: int, *, keep_last: int, summarized_upto: int, step: int) -> int:
    """The new end of the summarised span: `n_history - keep_last` once at least `step` exchanges
    past the current span are waiting (then the summary is extended once, with all of them), else
    `summarized_upto` unchanged (clamped to the history the client sent, in case it shrank).

    Between extensions the verbatim tail grows from `keep_last` to `keep_last + step - 1` exchanges;
    large steps trade a few more verbatim tokens for fewer summariser calls and a prefix that stays
    byte-identical (prompt-cache hits) for `step` requests at a time.
    """
    if step < 1:
        raise ValueError(f"step must be at least 1, not {step}")
    target = n_history - max(0, keep_last)
    if target - summarized_upto >= step:
        return target
    return max(0, min(summarized_upto, n_history))


def summary(
    conv: Conversation, *, summarized_upto: int, summary_tokens: int, max_tokens: int | None = None
) -> Selection:
    """The summary policy's selection: `history[summarized_upto:]` verbatim after a summary costing
    `summary_tokens` (`compose.summary_tokens`; ignored when nothing is summarised). With
    `max_tokens`, the oldest verbatim exchanges are dropped while summary plus verbatim exceed it
    (the summary itself is never cut: it is what stands for everything older).
    """
    n = len(conv.history)
    upto = max(0, min(summarized_upto, n))
    cost = summary_tokens if upto else 0
    budget = None if max_tokens is None else max_tokens - cost
    keep = _trim_oldest(conv, list(range(upto, n)), budget)
    selection = _selection(conv, keep)
    selection.summarized_upto = upto
    selection.tokens_after += cost
    return selection


def _trim_oldest(conv: Conversation, keep: list[int], max_tokens: int | None) -> list[int]:
    if max_tokens is None:
        return keep
    total = sum(conv.history[i].tokens for i in keep)
    start = 0
    while start < len(keep) and total > max_tokens:
        total -= conv.history[keep[start]].tokens
        start += 1
    return keep[start:]


def _selection(conv: Conversation, keep: list[int]) -> Selection:
    return Selection(
        keep=keep,
        tokens_before=sum(e.tokens for e in conv.history),
        tokens_after=sum(conv.history[i].tokens for i in keep),
    )
