"""Selection logic of the window, retrieve and summary policies, on exchanges of known sizes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from faregate.history.exchanges import Conversation, Exchange
from faregate.history.policies import retrieve, summary, summary_due, window


def conversation(sizes: Sequence[int]) -> Conversation:
    """History exchanges costing `sizes` tokens (two messages each), then a one-message current one."""
    history = [Exchange(2 * i, 2 * i + 2, f"user: {i}", f"{i:032x}", size) for i, size in enumerate(sizes)]
    n = 2 * len(sizes)
    messages = [{"role": "user" if k % 2 == 0 else "assistant", "content": str(k)} for k in range(n + 1)]
    current = Exchange(n, n + 1, "user: now", "f" * 32, 7)
    return Conversation("openai", "gpt-4o", messages, (), history, current, "now")


def test_window_keeps_the_last_k() -> None:
    conv = conversation([10, 20, 30, 40, 50])
    selection = window(conv, keep_last=2, max_tokens=None)
    assert selection.keep == [3, 4]
    assert (selection.tokens_before, selection.tokens_after) == (150, 90)
    assert window(conv, keep_last=None, max_tokens=None).keep == [0, 1, 2, 3, 4]
    assert window(conv, keep_last=0, max_tokens=None).keep == []
    assert window(conv, keep_last=9, max_tokens=None).keep == [0, 1, 2, 3, 4]


def test_window_drops_oldest_while_over_budget() -> None:
    conv = conversation([10, 20, 30, 40, 50])
    assert window(conv, keep_last=4, max_tokens=120).keep == [2, 3, 4]  # 20+30+40+50 > 120 = 30+40+50
    assert window(conv, keep_last=None, max_tokens=90).keep == [3, 4]
    assert window(conv, keep_last=None, max_tokens=49).keep == []  # the newest alone does not fit
    assert window(conv, keep_last=None, max_tokens=49).tokens_after == 0


def test_window_on_no_history() -> None:
    selection = window(conversation([]), keep_last=4, max_tokens=100)
    assert selection.keep == [] and selection.tokens_before == 0


def test_retrieve_adds_the_most_similar_older_exchanges_in_order() -> None:
    conv = conversation([10] * 8)
    sims = [0.9, 0.1, 0.2, 0.8, 0.3, 0.0, 0.95, 0.99]  # the last two are recent anyway
    selection = retrieve(conv, keep_last=2, top=2, similarities=sims, max_tokens=None)
    assert selection.keep == [0, 3, 6, 7]
    assert selection.tokens_after == 40 and selection.tokens_before == 80
    assert retrieve(conv, keep_last=2, top=0, similarities=sims, max_tokens=None).keep == [6, 7]
    assert retrieve(conv, keep_last=0, top=1, similarities=sims, max_tokens=None).keep == [7]


def test_retrieve_breaks_ties_towards_recent() -> None:
    conv = conversation([10] * 5)
    assert retrieve(conv, keep_last=1, top=1, similarities=[0.5] * 5, max_tokens=None).keep == [3, 4]


def test_retrieve_without_similarities_is_a_window() -> None:
    conv = conversation([10, 20, 30, 40, 50])
    selection = retrieve(conv, keep_last=2, top=3, similarities=None, max_tokens=None)
    assert selection.keep == [3, 4]


def test_retrieve_under_a_budget_fills_recent_first_then_skips_what_does_not_fit() -> None:
    conv = conversation([100, 10, 500, 20, 30, 40])
    sims = [0.1, 0.5, 0.9, 0.7, 0.0, 0.0]
    # recent (4, 5) = 70; then by similarity: 2 (500) does not fit in 130 left, 3 (20) fits, 1 (10) fits
    selection = retrieve(conv, keep_last=2, top=2, similarities=sims, max_tokens=200)
    assert selection.keep == [1, 3, 4, 5]
    assert selection.tokens_after == 100
    # `top` still bounds what is retrieved when the budget has room
    assert retrieve(conv, keep_last=2, top=1, similarities=sims, max_tokens=200).keep == [3, 4, 5]
    # the recent ones are trimmed like a window when they alone exceed the budget
    # (40 of 50 left 10: only exchange 1 still fits)
    assert retrieve(conv, keep_last=2, top=2, similarities=sims, max_tokens=50).keep == [1, 5]
    assert retrieve(conv, keep_last=2, top=2, similarities=sims, max_tokens=None).keep == [2, 3, 4, 5]


def test_retrieve_wants_one_similarity_per_exchange() -> None:
    with pytest.raises(ValueError, match="similarities"):
        retrieve(conversation([10, 10]), keep_last=1, top=1, similarities=[0.1], max_tokens=None)


def test_summary_due_extends_in_large_steps() -> None:
    upto = 0
    ends = []
    for n_history in range(0, 30):
        upto = summary_due(n_history, keep_last=4, summarized_upto=upto, step=8)
        ends.append(upto)
    # due once 8 exchanges wait beyond the last 4: at 12 history exchanges, then at 20, then at 28
    assert ends[11] == 0 and ends[12] == 8
    assert set(ends[12:20]) == {8} and ends[20] == 16
    assert ends[28] == 24
    assert summary_due(3, keep_last=4, summarized_upto=8, step=8) == 3  # the client's history shrank
    with pytest.raises(ValueError):
        summary_due(10, keep_last=2, summarized_upto=0, step=0)


def test_summary_selection_counts_the_summary() -> None:
    conv = conversation([10, 20, 30, 40, 50])
    selection = summary(conv, summarized_upto=3, summary_tokens=25)
    assert selection.keep == [3, 4] and selection.summarized_upto == 3
    assert (selection.tokens_before, selection.tokens_after) == (150, 115)
    budgeted = summary(conv, summarized_upto=2, summary_tokens=25, max_tokens=100)
    assert budgeted.keep == [4] and budgeted.tokens_after == 75  # 30+40+50+25 > 100, 40+50+25 > 100
    nothing = summary(conv, summarized_upto=0, summary_tokens=25)
    assert nothing.keep == [0, 1, 2, 3, 4] and nothing.tokens_after == 150
