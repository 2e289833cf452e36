"""Tenant isolation with virtual keys: one team's cache entries and conversations are never another's.

Each test has a positive control (a second key of the same team does hit, does reuse), so it fails
both when scoping is missing and when it scopes by the wrong thing (the key instead of the team,
or the spoofable `X-FareGate-Team` header instead of the key's team).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faregate.fake_provider import FakeProvider, Scenario
from faregate.pipeline.cache import HEADER
from tests.fixtures.gateway import RunningGateway
from tests.server.test_auth import Keyed, start_keyed
from tests.server.test_history import chat, sent

SYSTEM = {"role": "system", "content": "You answer questions about Northwind Bank accounts."}
FEATURES = {
    "faq": {"semantic_cache": True, "history": {"policy": "retrieve", "keep_last": 2, "top": 1}},
    "notes": {"history": {"policy": "summary", "keep_last": 2, "summary_every": 3, "summary_model": "fast"}},
}


def ask(keyed: Keyed, key: str, question: str, **headers: str) -> tuple[str, str]:
    """(answer, X-FareGate-Cache) of one single-turn `faq` question asked with `key`."""
    with keyed.openai(key, default_headers={"X-FareGate-Feature": "faq", **headers}) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[SYSTEM, {"role": "user", "content": question}]
        )
    return raw.parse().choices[0].message.content or "", raw.headers[HEADER]


def converse(keyed: Keyed, key: str, messages: list[dict[str, Any]], feature: str, **headers: str) -> None:
    with keyed.openai(key, default_headers={"X-FareGate-Feature": feature, **headers}) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]


def drain(keyed: Keyed) -> None:
    """Cache stores and history embeddings happen off the response path: wait for them."""
    running = keyed.running
    asyncio.run_coroutine_threadsafe(running.gateway.cache_drain(), running.loop).result(timeout=30)
    stage = running.gateway.histories.stage
    asyncio.run_coroutine_threadsafe(stage.drain(), running.loop).result(timeout=30)


def rows_by_tenant(keyed: Keyed, table: str) -> dict[str, int]:
    path = Path(keyed.running.config.database.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        return dict(conn.execute(f"SELECT tenant, COUNT(*) FROM {table} GROUP BY tenant").fetchall())


@pytest.fixture
def keyed(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Keyed]:
    keyed = start_keyed(make_gateway, fake_provider, monkeypatch, features=FEATURES)
    yield keyed
    keyed.keys.close()


def test_no_cache_hit_crosses_teams_for_identical_or_near_identical_prompts(
    keyed: Keyed, fake_provider: FakeProvider
) -> None:
    a1, _ = keyed.create("a")
    a2, _ = keyed.create("a")
    b, _ = keyed.create("b")
    fake_provider.push(Scenario(text="TEAM A ANSWER"))
    assert ask(keyed, a1, "How do I reset my card PIN?")[1] == "miss"
    drain(keyed)

    # Team b, identical and near-identical, even claiming to be team a in the header: its own answers.
    fake_provider.scenario = Scenario(text="TEAM B ANSWER")
    identical = ask(keyed, b, "How do I reset my card PIN?", **{"X-FareGate-Team": "a"})
    drain(keyed)
    near = ask(keyed, b, "how do I reset my card's PIN?")
    assert identical == ("TEAM B ANSWER", "miss")
    assert near[0] == "TEAM B ANSWER"  # a miss, or a hit on team b's own entry: never team a's

    # Team a's other key shares team a's cache: an exact hit, and a semantic hit on the paraphrase.
    assert ask(keyed, a2, "How do I reset my card PIN?") == ("TEAM A ANSWER", "hit")
    answer, status = ask(keyed, a2, "How can I reset the PIN of my card?")
    assert (answer, status) == ("TEAM A ANSWER", "semantic-hit")

    events = keyed.running.events()
    assert [(e.team, e.cache_status) for e in events if e.cache_status == "hit"] == [("a", "hit")]
    assert set(rows_by_tenant(keyed, "cache_entries")) == {"team:a", "team:b"}


def test_no_history_crosses_teams_even_with_the_same_conversation_id(
    keyed: Keyed, fake_provider: FakeProvider
) -> None:
    a1, _ = keyed.create("a")
    a2, _ = keyed.create("a")
    b, _ = keyed.create("b")
    messages = chat(5)
    fake_provider.push(Scenario(text="TEAM-A SUMMARY"))
    converse(keyed, a1, messages, "notes", **{"X-FareGate-Conversation": "c1"})
    drain(keyed)

    # Team b, same conversation id and the same turns, claiming team a: a summary of its own.
    fake_provider.push(Scenario(text="TEAM-B SUMMARY"))
    converse(keyed, b, messages, "notes", **{"X-FareGate-Conversation": "c1", "X-FareGate-Team": "a"})
    assert "TEAM-B SUMMARY" in sent(fake_provider)[1]["content"]
    drain(keyed)

    # Team a's other key reuses team a's summary: no new summary call, team a's text upstream.
    converse(keyed, a2, messages, "notes", **{"X-FareGate-Conversation": "c1"})
    assert "TEAM-A SUMMARY" in sent(fake_provider)[1]["content"]

    summaries = [e for e in keyed.running.events() if e.history_policy == "summarize"]
    assert sorted(e.team for e in summaries) == ["a", "b"]
    assert set(rows_by_tenant(keyed, "history_summaries")) == {"team:a", "team:b"}


def test_retrieval_embeddings_are_stored_and_searched_per_team(
    keyed: Keyed, fake_provider: FakeProvider
) -> None:
    a, _ = keyed.create("a")
    b, _ = keyed.create("b")
    messages = chat(6, query="Going back to Kenya: which vaccinations were required again?")

    converse(keyed, a, messages, "faq", **{"X-FareGate-Conversation": "trip"})
    drain(keyed)
    stored_for_a = rows_by_tenant(keyed, "history_turns")
    converse(keyed, b, messages, "faq", **{"X-FareGate-Conversation": "trip"})
    drain(keyed)
    stored = rows_by_tenant(keyed, "history_turns")

    # b found none of a's vectors, so it stored its own: one set per team, never a shared one.
    assert set(stored_for_a) == {"team:a"}
    assert stored["team:b"] == stored["team:a"] == stored_for_a["team:a"] > 0
    assert messages[1] in sent(fake_provider)  # and b's retrieval worked on its own turns
